"""Clients in Go, Node and Java, built from protos/ alone (examples/), against a real
cluster: they read each other's records and the Python client's byte for byte, Python reads
theirs, every codec the Python producer writes is read by each, and each one's group join +
commit shows in GroupService.FetchOffsets. Both data APIs: the batch API (StorageService
Produce/Fetch, `--api batch`) and the record API (RecordService ProduceRecords/ReadRecords,
`--api records`, on any node; without `--partition` the node picks by key): what one
language writes with either is read by the others with either, and by Python. A stored
batch larger than 4 MiB is read by each with stock gRPC receive limits (the server splits
it, FetchRequest.receive_limit_bytes unset).

The programs are built by tests/interop/build.py (stamps skip unchanged builds). A language
whose toolchain (go, node, mvn) is not on PATH is skipped with the reason. The cluster is
real and shared by the module: etcd, a coordinator, a group manager and two storage nodes
(topics with replication factor 2, so acks=all waits for a follower) on loopback.

Every program speaks the same line format (examples/README.md): produce reads
`TIMESTAMP_MS KEY VALUE HEADERS` lines, reads print
`record PARTITION OFFSET TIMESTAMP_MS KEY VALUE HEADERS`, bytes in hex, "-" for no key.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import grpc
import pytest

from brook.client import Admin, Consumer, GroupAdmin, Producer
from brook.client.records import TopicPartition
from brook.partitioner import partition_for_key
from brook.v1 import common_pb2, groups_pb2, storage_pb2, storage_pb2_grpc
from tests.harness.cluster import LocalCluster
from tests.harness.wait import eventually
from tests.interop import build

pytestmark = [pytest.mark.integration]

LANGUAGES = ["go", "node", "java"]
# What each program can write; every one reads all four.
PRODUCE_CODECS = {
    "go": ["none", "gzip", "zstd", "lz4"],
    "node": ["none", "gzip", "lz4"],  # Node 20 has no zstd compressor; fzstd only inflates
    "java": ["none", "gzip", "zstd", "lz4"],
}
PYTHON_CODECS: list[str | None] = [None, "gzip", "zstd", "lz4"]
PARTITIONS = 2
REPLICATION = 2
# Bounds: node liveness and topic metadata on a loaded 2-core box; one program run (a JVM
# start is about 1 s); the program's own deadline sits inside the run's.
WAIT_S = 30.0
RUN_TIMEOUT_S = 60.0
PROGRAM_DEADLINE_MS = 30000
# A first build on a fresh machine downloads Go modules, npm packages and Maven artifacts
# and compiles (minutes on 2 busy cores; each step is bounded by build.STEP_TIMEOUT_S);
# later runs reuse the builds.
BUILD_TIMEOUT_S = 1500
NODE_ARGS = ["--lease-ttl-s", "2", "--drain-timeout-s", "2"]
# The large-batch case: one stored batch of LARGE_RECORDS incompressible values, larger
# than the 4 MiB a stock gRPC client receives, each record well under it (a single record
# over the limit cannot be split). The topic's max_batch_bytes admits the batch.
LARGE_RECORDS = 5
LARGE_VALUE_BYTES = (1 << 20) - (4 << 10)
LARGE_MAX_BATCH_BYTES = 16 << 20
STOCK_RECEIVE_LIMIT_BYTES = 4 << 20


class Rec(NamedTuple):
    """A record as every side sees it: what must agree byte for byte."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


def sample(tag: str, base_timestamp_ms: int) -> list[Rec]:
    """Records that exercise the edges: no key, empty key, empty value, binary bytes
    (NUL, 0xff, tab, newline), repeated header names, a non-ASCII header name, a
    100 KiB value."""
    blob = bytes(range(256))
    rows: list[tuple[bytes | None, bytes, tuple[tuple[str, bytes], ...]]] = [
        (f"{tag}-key-0".encode(), f"{tag}-value-0".encode(), ()),
        (None, f"{tag}-no-key".encode(), (("h", b"1"),)),
        (b"", b"", (("h", b""), ("h", b"\x00\xff"))),
        (b"\x00\t\n\xff" + tag.encode(), blob, (("nämé-✓", "zstd ⚡".encode()),)),
        (f"{tag}-key-4".encode(), f"{tag}-value-4".encode() * 50, (("trace", b"\t\n"),)),
        # > 64 KiB: an LZ4 frame of the batch has several (linked) blocks, zstd and gzip
        # several internal blocks.
        (f"{tag}-big".encode(), blob * 400 + tag.encode(), ()),
    ]
    return [
        Rec(0, 0, base_timestamp_ms + i, key, value, headers)
        for i, (key, value, headers) in enumerate(rows)
    ]


def input_line(r: Rec) -> str:
    key = "-" if r.key is None else r.key.hex()
    headers = ",".join(f"{n.encode().hex()}={v.hex()}" for n, v in r.headers) or "-"
    return f"{r.timestamp_ms}\t{key}\t{r.value.hex()}\t{headers}"


def parse_record(line: str) -> Rec:
    tag, partition, offset, timestamp, key, value, headers = line.split("\t")
    assert tag == "record", line
    pairs = [] if headers == "-" else [h.split("=") for h in headers.split(",")]
    return Rec(
        int(partition),
        int(offset),
        int(timestamp),
        None if key == "-" else bytes.fromhex(key),
        bytes.fromhex(value),
        tuple((bytes.fromhex(n).decode(), bytes.fromhex(v)) for n, v in pairs),
    )


def records_of(stdout: str) -> list[Rec]:
    return [parse_record(line) for line in stdout.splitlines() if line.startswith("record\t")]


def placed(records: Sequence[Rec], partition: int, base: int) -> list[Rec]:
    return [r._replace(partition=partition, offset=base + i) for i, r in enumerate(records)]


class Program:
    """One example client: its command and how to run it against the cluster."""

    def __init__(self, language: str, command: list[str], bootstrap: str) -> None:
        self.language = language
        self.command = command
        self.bootstrap = bootstrap

    async def run(
        self, verb: str, topic: str, *args: str, stdin: str = "", exit_code: int = 0
    ) -> str:
        """Runs one command in a thread (the event loop stays free); asserts its exit code.
        Returns stdout, or stderr when a failure was expected."""
        command = [
            *self.command,
            verb,
            "--bootstrap",
            self.bootstrap,
            "--topic",
            topic,
            "--timeout-ms",
            str(PROGRAM_DEADLINE_MS),
            *args,
        ]
        done = await asyncio.to_thread(
            subprocess.run,
            command,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
        assert done.returncode == exit_code, (
            f"{self.language} {verb} exited {done.returncode}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
        return done.stdout if exit_code == 0 else done.stderr

    async def produce_spans(
        self,
        topic: str,
        partition: int | None,
        records: Sequence[Rec],
        codec: str,
        api: str = "batch",
    ) -> list[tuple[int, int, int]]:
        """Produces records in one batch (batch API) or one ProduceRecords request (record
        API; partition None: the node picks by key). Returns the `produced` lines as
        (partition, first offset, last offset), one per partition written."""
        where = [] if partition is None else ["--partition", str(partition)]
        stdout = await self.run(
            "produce",
            topic,
            "--api",
            api,
            *where,
            "--compression",
            codec,
            stdin="".join(input_line(r) + "\n" for r in records),
        )
        spans: list[tuple[int, int, int]] = []
        for line in stdout.splitlines():
            tag, p, first, last = line.split("\t")
            assert tag == "produced", stdout
            spans.append((int(p), int(first), int(last)))
        assert sum(last - first + 1 for _, first, last in spans) == len(records), stdout
        return spans

    async def produce(
        self, topic: str, partition: int, records: Sequence[Rec], codec: str, api: str = "batch"
    ) -> int:
        """Produces records to one partition in one batch; returns the base offset."""
        spans = await self.produce_spans(topic, partition, records, codec, api)
        assert len(spans) == 1 and spans[0][0] == partition, spans
        return spans[0][1]

    async def consume(
        self, topic: str, partition: int, offset: int, count: int, api: str = "batch"
    ) -> list[Rec]:
        stdout = await self.run(
            "consume",
            topic,
            "--api",
            api,
            "--partition",
            str(partition),
            "--from",
            str(offset),
            "--count",
            str(count),
        )
        return records_of(stdout)


def placed_by_key(
    records: Sequence[Rec], spans: Sequence[tuple[int, int, int]], partitions: int
) -> list[Rec]:
    """Where a ProduceRecords request without a partition put `records`, from its `produced`
    spans: a keyed record (an empty key included) on murmur2(key) modulo the partition
    count, what Kafka's and Brook's producers pick; the keyless ones together on one
    partition; each partition's records in request order from its first offset."""

    def keyed_to(p: int) -> list[Rec]:
        return [
            r for r in records if r.key is not None and partition_for_key(r.key, partitions) == p
        ]

    out: list[Rec] = []
    for p, first, last in spans:
        mine = keyed_to(p)
        if len(mine) != last - first + 1:  # the keyless records went here too
            mine = [r for r in records if r.key is None or r in keyed_to(p)]
        assert len(mine) == last - first + 1, (p, first, last)
        out += placed(mine, p, first)
    assert len(out) == len(records), spans  # every record once, keyless ones in one place
    return out


@pytest.fixture(scope="module")
def cluster(etcd: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Coordinator, group manager and nodes 1-2 for the whole module; the bootstrap."""
    local = LocalCluster(etcd, tmp_path_factory.mktemp("interop"), f"t{uuid.uuid4().hex[:12]}")
    local.add_coordinator()
    local.add_groups()
    local.add_node(1, args=NODE_ARGS)
    local.add_node(2, args=NODE_ARGS)
    try:
        local.start()
        yield local.address("coordinator")
    finally:
        local.stop()
        print(local.dump_logs())


async def create_topic(bootstrap: str, name: str) -> None:
    async with Admin(bootstrap) as admin:

        async def nodes_live() -> bool:
            described = await admin.describe_cluster()
            return len(described.nodes) >= REPLICATION

        await eventually(nodes_live, timeout_s=WAIT_S, what="both nodes live")
        await admin.create_topic(
            name, partitions=PARTITIONS, replication_factor=REPLICATION, wait_for_leaders=True
        )


async def python_read(bootstrap: str, topic: str, partition: int, count: int) -> list[Rec]:
    """The first `count` records of a partition, read with the Python Consumer."""
    out: list[Rec] = []
    async with Consumer(bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([TopicPartition(topic, partition)])
        async with asyncio.timeout(WAIT_S):
            while len(out) < count:
                for r in await consumer.poll(timeout_ms=500):
                    out.append(
                        Rec(r.partition, r.offset, r.timestamp_ms, r.key, r.value, tuple(r.headers))
                    )
    return out


async def python_write(
    bootstrap: str, topic: str, partition: int, records: Sequence[Rec], codec: str | None
) -> int:
    """Writes records with the Python Producer (one batch: linger); returns the first offset."""
    async with Producer(bootstrap, acks="all", compression=codec, linger_ms=200) as producer:
        futures = [
            await producer.send(
                topic,
                r.value,
                key=r.key,
                headers=list(r.headers),
                partition=partition,
                timestamp_ms=r.timestamp_ms,
            )
            for r in records
        ]
        await producer.flush(timeout_s=WAIT_S)
    offsets = [future.result().offset for future in futures]
    assert offsets == list(range(offsets[0], offsets[0] + len(records)))
    return offsets[0]


_built: dict[str, list[str]] = {}


def program_for(language: str, bootstrap: str) -> Program:
    """Builds (or reuses) a language's program; skips when its toolchain is missing."""
    tool = build.TOOLCHAINS[language]
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not on PATH, so the {language} example cannot be built")
    if language not in _built:
        _built[language] = build.BUILDERS[language]()
    return Program(language, _built[language], bootstrap)


@pytest.mark.timeout(BUILD_TIMEOUT_S)
@pytest.mark.parametrize("language", LANGUAGES)
async def test_language_round_trip_with_python(cluster: str, language: str) -> None:
    """For one language, on its own topic:

    1. it produces the sample once per codec it writes (one batch each) to partition 0, and
       once more with the record API to partition 0 (`--partition 0`; the node builds a
       zstd batch), and the Python Consumer reads exactly those records (offsets,
       timestamps, keys incl. none vs empty, values, headers in order);
    2. the Python Producer writes the sample once per codec (none, gzip, zstd, lz4) to
       partition 1, and the program reads all of it with the batch API and with the record
       API (ReadRecords), and from the middle of a batch (it skips the batch's earlier
       records);
    3. reading beyond the log end fails with OFFSET_OUT_OF_RANGE named in the one error
       format, through either API (a failed call, or a partition error);
    4. it joins a group, is assigned both partitions, reads them and commits; the commit
       (member id + epoch) shows in GroupService.FetchOffsets and DescribeGroup; a second
       run, reading with the record API, resumes from the commit.
    """
    program = program_for(language, cluster)
    topic = f"interop-{language}"
    await create_topic(cluster, topic)
    now = 1_700_000_000_000

    written: list[Rec] = []
    for codec in PRODUCE_CODECS[language]:
        records = sample(f"{language}-{codec}", now + 10 * len(written))
        base = await program.produce(topic, 0, records, codec)
        assert base == len(written)
        written += placed(records, 0, base)
    records = sample(f"{language}-records", now + 10 * len(written))
    base = await program.produce(topic, 0, records, "zstd", api="records")
    assert base == len(written)
    written += placed(records, 0, base)
    assert await python_read(cluster, topic, 0, len(written)) == written

    python_written: list[Rec] = []
    for python_codec in PYTHON_CODECS:
        records = sample(f"py-{python_codec}", now + 10 * len(python_written))
        base = await python_write(cluster, topic, 1, records, python_codec)
        assert base == len(python_written)
        python_written += placed(records, 1, base)
    for api in ("batch", "records"):
        read = await program.consume(topic, 1, 0, len(python_written), api=api)
        assert read == python_written, api
    middle = len(sample("x", 0)) * 2 + 2  # the third record of the zstd batch
    read = await program.consume(topic, 1, middle, len(python_written) - middle)
    assert read == python_written[middle:]

    # Beyond the log end: OFFSET_OUT_OF_RANGE in the one format, exit 1.
    for api in ("batch", "records"):
        beyond = await program.run(
            "consume", topic, "--api", api, "--partition", "1", "--from", "100000", exit_code=1
        )
        assert "reason=OFFSET_OUT_OF_RANGE code=OUT_OF_RANGE" in beyond, beyond
        assert "domain=brook.v1" in beyond, beyond
    if language == "go":  # a wrong crc32c is refused and appends nothing
        refused = await program.run(
            "produce",
            topic,
            "--corrupt-crc",
            stdin=input_line(sample("bad", now)[0]) + "\n",
            exit_code=1,
        )
        assert "reason=CORRUPT_BATCH code=INVALID_ARGUMENT" in refused, refused

    group = f"group-{language}"
    stdout = await program.run("group", topic, "--group", group, "--count", "1000")
    lines = [line.split("\t") for line in stdout.splitlines()]
    assert lines[0][0] == "member" and lines[0][1] and int(lines[0][2]) > 0, stdout
    assert [line for line in lines if line[0] == "assigned"] == [
        ["assigned", topic, str(p)] for p in range(PARTITIONS)
    ], stdout
    assert records_of(stdout) == written + python_written
    ends = {0: len(written), 1: len(python_written)}
    assert [line for line in lines if line[0] == "committed"] == [
        ["committed", topic, str(p), str(ends[p])] for p in range(PARTITIONS)
    ], stdout
    assert lines[-1] == ["left"], stdout

    async with GroupAdmin(cluster) as admin:
        fetched = await admin.call(
            "FetchOffsets",
            groups_pb2.FetchOffsetsRequest(
                group_id=group,
                partitions=[common_pb2.TopicPartitions(topic=topic, partitions=[0, 1])],
            ),
        )
        assert {o.partition: o.offset for o in fetched.offsets} == ends
        # The leader epoch of the last record read is committed with the offset.
        assert all(o.HasField("leader_epoch") and o.leader_epoch >= 0 for o in fetched.offsets)
        described = await admin.describe(group)
        assert {o.partition: o.committed_offset for o in described.offsets} == ends
        assert {o.partition: o.lag for o in described.offsets} == {0: 0, 1: 0}

    # A second run resumes from the commit: nothing left to read, nothing to commit.
    stdout = await program.run(
        "group", topic, "--api", "records", "--group", group, "--count", "1000"
    )
    assert records_of(stdout) == [] and "committed" not in stdout, stdout
    assert stdout.splitlines()[-1] == "left", stdout


@pytest.mark.timeout(BUILD_TIMEOUT_S)
async def test_languages_read_each_other(cluster: str) -> None:
    """Every available language produces the sample to partition 0 with the batch API
    (each with a different codec), and again with the record API without a partition (the
    node picks each keyed record's partition by murmur2, keyless ones go together; the node
    builds the batches, each language asking for another codec). Every language then reads
    both partitions byte for byte, one with each API (alternating, so every partition is
    read through both), and so does Python."""
    programs = [
        program_for(language, cluster)
        for language in LANGUAGES
        if shutil.which(build.TOOLCHAINS[language]) is not None
    ]
    if len(programs) < 2:
        pytest.skip("fewer than two of go, node, mvn are on PATH")
    topic = "interop-cross"
    await create_topic(cluster, topic)
    written: dict[int, list[Rec]] = {p: [] for p in range(PARTITIONS)}
    for index, program in enumerate(programs):
        codecs = PRODUCE_CODECS[program.language]
        records = sample(f"cross-{program.language}", 1_700_000_000_000 + 10 * index)
        base = await program.produce(topic, 0, records, codecs[(index + 1) % len(codecs)])
        written[0] += placed(records, 0, base)
        records = sample(f"cross-records-{program.language}", 1_700_000_100_000 + 10 * index)
        spans = await program.produce_spans(
            topic, None, records, ["zstd", "lz4", "gzip", "none"][index % 4], api="records"
        )
        for r in placed_by_key(records, spans, PARTITIONS):
            assert r.offset == len(written[r.partition]), (r, spans)
            written[r.partition].append(r)
    assert all(written.values()), "the keys of the sample hash to both partitions"
    for index, program in enumerate(programs):
        for p in range(PARTITIONS):
            api = ("batch", "records")[(index + p) % 2]
            read = await program.consume(topic, p, 0, len(written[p]), api=api)
            assert read == written[p], (program.language, p, api)
    for p in range(PARTITIONS):
        assert await python_read(cluster, topic, p, len(written[p])) == written[p]


async def stored_batches(bootstrap: str, topic: str, partition: int) -> list[int]:
    """The record counts of a partition's stored batches, read from its leader with a
    receive limit large enough for any of them (so the server need not split them)."""
    async with Admin(bootstrap) as admin:
        metadata = await admin.get_metadata([topic])
    addresses = {n.node_id: n.address for n in metadata.nodes}
    (state,) = [s for s in metadata.topics[0].partitions if s.partition == partition]
    limit = 64 << 20
    async with grpc.aio.insecure_channel(
        addresses[state.leader_id], options=[("grpc.max_receive_message_length", limit)]
    ) as channel:
        response = await storage_pb2_grpc.StorageServiceStub(channel).Fetch(
            storage_pb2.FetchRequest(
                max_bytes=limit,
                receive_limit_bytes=limit,
                partitions=[
                    storage_pb2.FetchPartition(topic=topic, partition=partition, fetch_offset=0)
                ],
            ),
            timeout=WAIT_S,
        )
    (answer,) = response.partitions
    assert not answer.HasField("error"), answer.error
    return [batch.record_count for batch in answer.batches]


@pytest.mark.timeout(BUILD_TIMEOUT_S)
async def test_batch_over_stock_receive_limit(cluster: str) -> None:
    """Python stores one batch of about 5 MiB (LARGE_RECORDS incompressible values of almost
    1 MiB) on a topic whose max_batch_bytes admits it; every language reads it with the
    batch API and gRPC's stock 4 MiB receive limit, byte for byte: the server splits the
    stored batch into smaller batches of the same records (FetchRequest.receive_limit_bytes
    unset means 4 MiB)."""
    programs = [
        program_for(language, cluster)
        for language in LANGUAGES
        if shutil.which(build.TOOLCHAINS[language]) is not None
    ]
    if not programs:
        pytest.skip("none of go, node, mvn is on PATH")
    topic = "interop-large"
    async with Admin(cluster) as admin:
        await admin.create_topic(
            topic,
            partitions=1,
            replication_factor=REPLICATION,
            configs={"max_batch_bytes": str(LARGE_MAX_BATCH_BYTES)},
            wait_for_leaders=True,
        )
    records = [
        Rec(
            0,
            i,
            1_700_000_000_000 + i,
            f"large-{i}".encode(),
            os.urandom(LARGE_VALUE_BYTES),
            (("i", bytes([i])),),
        )
        for i in range(LARGE_RECORDS)
    ]
    async with Producer(
        cluster, acks="all", linger_ms=200, batch_bytes=LARGE_MAX_BATCH_BYTES
    ) as producer:
        futures = [
            await producer.send(
                topic,
                r.value,
                key=r.key,
                headers=list(r.headers),
                partition=0,
                timestamp_ms=r.timestamp_ms,
            )
            for r in records
        ]
        await producer.flush(timeout_s=WAIT_S)
    assert [f.result().offset for f in futures] == list(range(LARGE_RECORDS))
    assert await stored_batches(cluster, topic, 0) == [LARGE_RECORDS], "stored as one batch"
    assert LARGE_RECORDS * LARGE_VALUE_BYTES > STOCK_RECEIVE_LIMIT_BYTES
    for program in programs:
        read = await program.consume(topic, 0, 0, LARGE_RECORDS)
        assert read == records, program.language
