"""Clients in Go, Node and Java, built from protos/brook/v1 alone (examples/), against a real
cluster: they read each other's records and the Python client's byte for byte, Python reads
theirs, every codec the Python producer writes is read by each, and each one's group join +
commit shows in GroupService.FetchOffsets.

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
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import pytest

from brook.client import Admin, Consumer, GroupAdmin, Producer
from brook.client.records import TopicPartition
from brook.v1 import common_pb2, groups_pb2
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

    async def produce(self, topic: str, partition: int, records: Sequence[Rec], codec: str) -> int:
        """Produces records in one batch; returns the base offset."""
        stdout = await self.run(
            "produce",
            topic,
            "--partition",
            str(partition),
            "--compression",
            codec,
            stdin="".join(input_line(r) + "\n" for r in records),
        )
        lines = [line.split("\t") for line in stdout.splitlines()]
        assert len(lines) == 1 and lines[0][:2] == ["produced", str(partition)], stdout
        base, last = int(lines[0][2]), int(lines[0][3])
        assert last == base + len(records) - 1, stdout
        return base

    async def consume(self, topic: str, partition: int, offset: int, count: int) -> list[Rec]:
        stdout = await self.run(
            "consume",
            topic,
            "--partition",
            str(partition),
            "--from",
            str(offset),
            "--count",
            str(count),
        )
        return records_of(stdout)


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
       the Python Consumer reads exactly those records (offsets, timestamps, keys incl.
       none vs empty, values, headers in order);
    2. the Python Producer writes the sample once per codec (none, gzip, zstd, lz4) to
       partition 1, and the program reads all of it, and from the middle of a batch (it
       skips the batch's earlier records);
    3. it joins a group, is assigned both partitions, reads them and commits; the commit
       (member id + epoch) shows in GroupService.FetchOffsets and DescribeGroup.
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
    assert await python_read(cluster, topic, 0, len(written)) == written

    python_written: list[Rec] = []
    for python_codec in PYTHON_CODECS:
        records = sample(f"py-{python_codec}", now + 10 * len(python_written))
        base = await python_write(cluster, topic, 1, records, python_codec)
        assert base == len(python_written)
        python_written += placed(records, 1, base)
    read = await program.consume(topic, 1, 0, len(python_written))
    assert read == python_written
    middle = len(sample("x", 0)) * 2 + 2  # the third record of the zstd batch
    read = await program.consume(topic, 1, middle, len(python_written) - middle)
    assert read == python_written[middle:]

    # Beyond the log end: a per-partition error named by its reason, exit 1.
    beyond = await program.run(
        "consume", topic, "--partition", "1", "--from", "100000", exit_code=1
    )
    assert "OFFSET_OUT_OF_RANGE" in beyond, beyond
    if language == "go":  # a wrong crc32c is refused and appends nothing
        refused = await program.run(
            "produce",
            topic,
            "--corrupt-crc",
            stdin=input_line(sample("bad", now)[0]) + "\n",
            exit_code=1,
        )
        assert "reason=CORRUPT_BATCH" in refused, refused

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
        described = await admin.describe(group)
        assert {o.partition: o.committed_offset for o in described.offsets} == ends
        assert {o.partition: o.lag for o in described.offsets} == {0: 0, 1: 0}

    # A second run resumes from the commit: nothing left to read, nothing to commit.
    stdout = await program.run("group", topic, "--group", group, "--count", "1000")
    assert records_of(stdout) == [] and "committed" not in stdout, stdout


@pytest.mark.timeout(BUILD_TIMEOUT_S)
async def test_languages_read_each_other(cluster: str) -> None:
    """Every available language produces the sample to one partition (each with a
    different codec); every language then reads the whole partition byte for byte."""
    programs = [
        program_for(language, cluster)
        for language in LANGUAGES
        if shutil.which(build.TOOLCHAINS[language]) is not None
    ]
    if len(programs) < 2:
        pytest.skip("fewer than two of go, node, mvn are on PATH")
    topic = "interop-cross"
    await create_topic(cluster, topic)
    written: list[Rec] = []
    for index, program in enumerate(programs):
        codecs = PRODUCE_CODECS[program.language]
        records = sample(f"cross-{program.language}", 1_700_000_000_000 + 10 * index)
        base = await program.produce(topic, 0, records, codecs[(index + 1) % len(codecs)])
        written += placed(records, 0, base)
    for program in programs:
        assert await program.consume(topic, 0, 0, len(written)) == written, program.language
    assert await python_read(cluster, topic, 0, len(written)) == written
