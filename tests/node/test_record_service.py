"""RecordService on a real cluster: real etcd, a real coordinator and three real storage
node processes on loopback, generated stubs, the Python client and grpcurl.

Most tests share one cluster (module fixture; each test uses its own topics); the
failover test kills a leader with SIGKILL, so it runs its own cluster, plaintext and
secure (`security_mode`: TLS + mTLS, `--authorizer acl`, nodes forwarding and replicating
with their node certificates, the client as user:alice with only the ACLs it needs).
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from brook.client import Admin, Consumer, Producer
from brook.client.records import TopicPartition
from brook.errors import from_partition_error
from brook.partitioner import partition_for_key
from brook.transport import default_security
from brook.v1 import record_service_pb2 as rs
from brook.v1 import record_service_pb2_grpc as rs_grpc
from brook.v1 import storage_pb2, storage_pb2_grpc
from tests.harness.cluster import LocalCluster
from tests.harness.grpcurl import GRPCURL, grpcurl, grpcurl_json
from tests.harness.rpc import LOOP_LAG_MS_MAX, loop_lag_ms, rpc_failure
from tests.harness.secure import client_acls, cluster_options, start_secured
from tests.harness.wait import eventually
from tests.node.cluster_helpers import FAST_NODE_ARGS

pytestmark = pytest.mark.integration

COORDINATOR_ARGS = ["--lease-ttl-s", "2", "--preferred-election-interval-s", "0"]
NOW_MS = int(time.time() * 1000)
WAIT_S = 20.0


def start_cluster(base: Path, etcd: str, name: str) -> LocalCluster:
    cluster = LocalCluster(etcd, base, name)
    cluster.add_coordinator(args=COORDINATOR_ARGS)
    for node_id in (1, 2, 3):
        cluster.add_node(node_id, args=FAST_NODE_ARGS)
    cluster.start()
    return cluster


@pytest.fixture(scope="module")
def cluster(etcd: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    started = start_cluster(tmp_path_factory.mktemp("records"), etcd, "records-shared")
    try:
        yield started
    finally:
        started.stop()
        print(started.dump_logs())


class Nodes:
    """RecordService and StorageService stubs on every node, and an Admin client (as
    the default client security says: plaintext, or the secure variant's principal)."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.channels = {
            node_id: default_security().channel(cluster.address(f"node-{node_id}"))
            for node_id in (1, 2, 3)
        }
        self.admin = Admin(cluster.address("coordinator"))

    def records(self, node_id: int) -> rs_grpc.RecordServiceStub:
        return rs_grpc.RecordServiceStub(self.channels[node_id])

    async def close(self) -> None:
        await self.admin.close()
        for channel in self.channels.values():
            await channel.close()

    async def create(
        self, name: str, placements: list[list[int]], configs: dict[str, str] | None = None
    ) -> None:
        """A topic whose partition i has replicas placements[i] (the first leads)."""
        await eventually(self._three_nodes, timeout_s=WAIT_S, what="three nodes registered")
        await self.admin.create_topic(
            name,
            len(placements),
            len(placements[0]),
            configs,
            replica_assignments=dict(enumerate(placements)),
            wait_for_leaders=True,
        )

    async def _three_nodes(self) -> bool:
        return len((await self.admin.describe_cluster()).nodes) == 3

    async def leader(self, topic: str, partition: int) -> int:
        described = await self.admin.describe_topic(topic)
        return int(described.partitions[partition].leader_id)

    async def high_watermarks(self, topic: str) -> list[int]:
        """Each partition's HW, from its leader's StorageService/ListOffsets."""
        described = await self.admin.describe_topic(topic)
        marks = []
        for state in described.partitions:
            stub = storage_pb2_grpc.StorageServiceStub(self.channels[state.leader_id])
            answer = await stub.ListOffsets(
                storage_pb2.ListOffsetsRequest(
                    partitions=[
                        storage_pb2.ListOffsetsPartition(
                            topic=topic,
                            partition=state.partition,
                            query=storage_pb2.OFFSET_QUERY_LATEST,
                            current_leader_epoch=-1,
                        )
                    ]
                ),
                timeout=10,
            )
            assert from_partition_error(answer.partitions[0].error) is None
            marks.append(answer.partitions[0].offset)
        return marks


@pytest.fixture
async def nodes(cluster: LocalCluster) -> AsyncIterator[Nodes]:
    made = Nodes(cluster)
    try:
        yield made
    finally:
        await made.close()


def text(value: str, key: str | None = None, **fields: Any) -> rs.PlainRecord:
    record = rs.PlainRecord(value_text=value, **fields)
    if key is not None:
        record.key_text = key
    return record


# -- produce and read ----------------------------------------------------------------------
async def test_produce_through_a_non_leader_read_through_another(nodes: Nodes) -> None:
    """Node 3 holds no replica of plain-0 (led by node 1): it encodes the records and
    forwards the batch; node 2 (a follower) reads them back through the leader."""
    await nodes.create("plain", [[1, 2]])
    produced = await nodes.records(3).ProduceRecords(
        rs.ProduceRecordsRequest(
            topic="plain",
            records=[
                text("hello", key="k1"),
                rs.PlainRecord(key=b"\x00\xff", value=b"\xde\xad\xbe\xef", timestamp_ms=1234),
                rs.PlainRecord(),
            ],
        ),
        timeout=WAIT_S,
    )
    assert [(r.partition, r.offset) for r in produced.results] == [(0, 0), (0, 1), (0, 2)]
    assert produced.results[1].timestamp_ms == 1234
    assert produced.results[1].timestamp.ToMilliseconds() == 1234
    assert abs(produced.results[0].timestamp_ms - int(time.time() * 1000)) < 60_000

    read = await nodes.records(2).ReadRecords(
        rs.ReadRecordsRequest(topic="plain", partition=0, offset=0, as_text=True), timeout=WAIT_S
    )
    assert (read.next_offset, read.high_watermark, read.log_start_offset) == (3, 3, 0)
    first, second, third = read.records
    assert (first.key_text, first.value_text, first.offset) == ("k1", "hello", 0)
    assert (second.key, second.value, second.timestamp_ms) == (
        b"\x00\xff",
        b"\xde\xad\xbe\xef",
        1234,
    )
    assert third.WhichOneof("key_kind") is None and third.value_text == ""
    assert first.leader_epoch == 0 and first.timestamp_ms == produced.results[0].timestamp_ms

    as_bytes = await nodes.records(1).ReadRecords(
        rs.ReadRecordsRequest(topic="plain", partition=0, offset=1, max_records=1), timeout=WAIT_S
    )
    assert [r.value for r in as_bytes.records] == [b"\xde\xad\xbe\xef"]
    assert as_bytes.next_offset == 2

    # acks=none: the leader answers before it appends, so offsets are -1; the record lands.
    unacked = await nodes.records(3).ProduceRecords(
        rs.ProduceRecordsRequest(topic="plain", acks=storage_pb2.ACKS_NONE, records=[text("late")]),
        timeout=WAIT_S,
    )
    assert [(r.partition, r.offset) for r in unacked.results] == [(0, -1)]

    async def landed() -> bool:
        read = await nodes.records(2).ReadRecords(
            rs.ReadRecordsRequest(topic="plain", offset=3, as_text=True), timeout=WAIT_S
        )
        return [r.value_text for r in read.records] == ["late"]

    await eventually(landed, timeout_s=WAIT_S, what="the acks=none record")


async def test_keyed_records_land_on_murmur2_and_the_python_consumer_reads_them(
    nodes: Nodes,
) -> None:
    """Keyed records go to murmur2(key) % partitions, keyless ones of a request together
    to one partition (the next request's to the next); brook.client's Consumer reads
    them byte for byte: keys, values, headers, timestamps, offsets."""
    await nodes.create("keyed", [[1], [2], [3], [1]])
    sent = [
        rs.PlainRecord(
            key=b"user-%d" % i,
            value=b"value-%d" % i,
            timestamp_ms=NOW_MS - 1000 + i,
            headers=[
                rs.PlainHeader(key="n", value=b"%d" % i),
                rs.PlainHeader(key="t", value_text="x"),
            ],
        )
        for i in range(40)
    ]
    produced = await nodes.records(2).ProduceRecords(
        rs.ProduceRecordsRequest(topic="keyed", records=sent, compression=2), timeout=WAIT_S
    )
    for record, result in zip(sent, produced.results, strict=True):
        assert result.partition == partition_for_key(record.key, 4)
    first = await nodes.records(1).ProduceRecords(
        rs.ProduceRecordsRequest(topic="keyed", records=[text("a"), text("b")]), timeout=WAIT_S
    )
    second = await nodes.records(1).ProduceRecords(
        rs.ProduceRecordsRequest(topic="keyed", records=[text("c")]), timeout=WAIT_S
    )
    assert first.results[0].partition == first.results[1].partition
    assert first.results[1].offset == first.results[0].offset + 1
    assert second.results[0].partition != first.results[0].partition

    got = []
    async with Consumer(
        nodes.cluster.address("coordinator"), auto_offset_reset="earliest"
    ) as consumer:
        consumer.assign(TopicPartition("keyed", p) for p in range(4))
        async with asyncio.timeout(WAIT_S):
            while len(got) < 43:
                got.extend(await consumer.poll(timeout_ms=500))
    by_position = {(r.partition, r.offset): r for r in got}
    for record, result in zip(sent, produced.results, strict=True):
        read = by_position[(result.partition, result.offset)]
        assert (read.key, read.value, read.timestamp_ms) == (
            record.key,
            record.value,
            record.timestamp_ms,
        )
        assert read.headers == [("n", record.headers[0].value), ("t", b"x")]
    keyless = by_position[(first.results[0].partition, first.results[0].offset)]
    assert (keyless.key, keyless.value) == (None, b"a")


@pytest.mark.parametrize("compression", ["zstd", "lz4", "gzip"])
async def test_python_producer_batches_read_back(nodes: Nodes, compression: str) -> None:
    """Batches the Python Producer compressed decode through ReadRecords unchanged."""
    topic = f"compressed-{compression}"
    await nodes.create(topic, [[2]])
    async with Producer(
        nodes.cluster.address("coordinator"), compression=compression, linger_ms=20
    ) as producer:
        futures = [
            await producer.send(
                topic,
                b"payload-%d-" % i + b"z" * 200,
                key=b"k%d" % i if i % 2 else None,
                headers=[("h", b"%d" % i)],
                partition=0,
                timestamp_ms=NOW_MS + i,
            )
            for i in range(50)
        ]
        await producer.flush()
    assert [f.result().offset for f in futures] == list(range(50))
    read = await nodes.records(3).ReadRecords(
        rs.ReadRecordsRequest(topic=topic, partition=0, max_records=1000), timeout=WAIT_S
    )
    assert len(read.records) == 50 and read.next_offset == 50
    for i, record in enumerate(read.records):
        assert record.offset == i and record.timestamp_ms == NOW_MS + i
        assert record.value == b"payload-%d-" % i + b"z" * 200
        assert (record.key if record.HasField("key") else None) == (b"k%d" % i if i % 2 else None)
        assert [(h.key, h.value) for h in record.headers] == [("h", b"%d" % i)]


async def test_read_by_timestamp_and_position(nodes: Nodes) -> None:
    await nodes.create("times", [[3, 1]])
    for index, stamp in enumerate((1_000, 2_000, 3_000)):
        produced = await nodes.records(1).ProduceRecords(
            rs.ProduceRecordsRequest(
                topic="times", records=[rs.PlainRecord(value=b"%d" % index, timestamp_ms=stamp)]
            ),
            timeout=WAIT_S,
        )
        assert produced.results[0].offset == index
    stub = nodes.records(2)
    by_ms = await stub.ReadRecords(rs.ReadRecordsRequest(topic="times", timestamp_ms=1_500))
    assert [r.offset for r in by_ms.records] == [1, 2]
    request = rs.ReadRecordsRequest(topic="times")
    request.timestamp.FromJsonString("1970-01-01T00:00:02.500Z")
    assert [r.value for r in (await stub.ReadRecords(request)).records] == [b"2"]
    after_all = await stub.ReadRecords(rs.ReadRecordsRequest(topic="times", timestamp_ms=9_000))
    assert (after_all.records, after_all.next_offset) == ([], 3)
    earliest = await stub.ReadRecords(
        rs.ReadRecordsRequest(topic="times", position=rs.READ_POSITION_EARLIEST)
    )
    assert [r.offset for r in earliest.records] == [0, 1, 2]
    latest = await stub.ReadRecords(
        rs.ReadRecordsRequest(topic="times", position=rs.READ_POSITION_LATEST)
    )
    assert (list(latest.records), latest.next_offset, latest.high_watermark) == ([], 3, 3)


async def test_long_poll_returns_when_a_record_arrives(nodes: Nodes) -> None:
    await nodes.create("polls", [[1, 2]])
    started = time.monotonic()
    waiting = asyncio.ensure_future(
        nodes.records(3).ReadRecords(
            rs.ReadRecordsRequest(
                topic="polls", position=rs.READ_POSITION_LATEST, max_wait_ms=20_000, as_text=True
            ),
            timeout=WAIT_S + 10,
        )
    )
    await asyncio.sleep(0.5)  # the read is parked on the leader's long-poll by now
    assert not waiting.done()
    await nodes.records(2).ProduceRecords(
        rs.ProduceRecordsRequest(topic="polls", records=[text("arrived")]), timeout=WAIT_S
    )
    read = await asyncio.wait_for(waiting, 10)
    assert [r.value_text for r in read.records] == ["arrived"]
    assert time.monotonic() - started < 10
    # Nothing arrives: the wait ends after max_wait_ms with no records.
    started = time.monotonic()
    empty = await nodes.records(3).ReadRecords(
        rs.ReadRecordsRequest(topic="polls", offset=1, max_wait_ms=300), timeout=WAIT_S
    )
    assert list(empty.records) == [] and empty.next_offset == 1
    assert 0.25 < time.monotonic() - started < 5


# -- bad requests ----------------------------------------------------------------------------
async def test_bad_requests_fail_with_their_reason_and_write_nothing(nodes: Nodes) -> None:
    await nodes.create("strict", [[1], [2]], {"max_batch_bytes": "2000"})
    stub = nodes.records(3)
    fine = await stub.ProduceRecords(
        rs.ProduceRecordsRequest(topic="strict", partition=0, records=[text("ok")]), timeout=WAIT_S
    )
    assert fine.results[0].offset == 0
    before = await nodes.high_watermarks("strict")
    assert before == [1, 0]

    def produce(**fields: Any) -> Any:
        return stub.ProduceRecords(rs.ProduceRecordsRequest(**fields), timeout=WAIT_S)

    ok = text("fine", key="a")
    far_future = rs.PlainRecord(value=b"x", timestamp_ms=NOW_MS + 10 * 3_600_000)
    cases: list[tuple[str, Any, grpc.StatusCode, str]] = [
        (
            "no records",
            produce(topic="strict"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
        ),
        (
            "10001 records",
            produce(topic="strict", records=[text("x")] * 10_001),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
        ),
        (
            "bad partition",
            produce(topic="strict", partition=2, records=[ok]),
            grpc.StatusCode.NOT_FOUND,
            "PARTITION_NOT_FOUND",
        ),
        (
            "unknown topic",
            produce(topic="nope", records=[ok]),
            grpc.StatusCode.NOT_FOUND,
            "TOPIC_NOT_FOUND",
        ),
        (
            "oversized batch (after a fine record for the other partition)",
            produce(topic="strict", records=[text("small", key="k3"), text("y" * 3000, key="k0")]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "BATCH_TOO_LARGE",
        ),
        (
            "101 headers",
            produce(
                topic="strict",
                records=[ok, rs.PlainRecord(headers=[rs.PlainHeader(key="h")] * 101)],
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
        ),
        (
            "timestamp far in the future",
            produce(topic="strict", records=[ok, far_future]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
        ),
        (
            "timeout above the cap",
            produce(topic="strict", records=[ok], timeout_ms=300_001),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
        ),
    ]
    assert partition_for_key(b"k3", 2) != partition_for_key(b"k0", 2)
    for what, call, code, reason in cases:
        failure = await rpc_failure(call)
        assert (failure.code, failure.reason) == (code, reason), what
        assert failure.trailer_bytes < 4096, what
    assert await nodes.high_watermarks("strict") == before

    def read(**fields: Any) -> Any:
        return stub.ReadRecords(rs.ReadRecordsRequest(topic="strict", **fields), timeout=WAIT_S)

    read_cases: list[tuple[str, Any, grpc.StatusCode, str]] = [
        (
            "negative max_wait",
            read(max_wait_ms=-1),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
        ),
        (
            "max_bytes above 3 MiB",
            read(max_bytes=(3 << 20) + 1),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
        ),
        (
            "max_records above 10000",
            read(max_records=10_001),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
        ),
        ("offset past the HW", read(offset=5), grpc.StatusCode.OUT_OF_RANGE, "OFFSET_OUT_OF_RANGE"),
        ("negative offset", read(offset=-1), grpc.StatusCode.OUT_OF_RANGE, "OFFSET_OUT_OF_RANGE"),
        ("bad partition", read(partition=7), grpc.StatusCode.NOT_FOUND, "PARTITION_NOT_FOUND"),
        (
            "unknown topic",
            stub.ReadRecords(rs.ReadRecordsRequest(topic="nope"), timeout=WAIT_S),
            grpc.StatusCode.NOT_FOUND,
            "TOPIC_NOT_FOUND",
        ),
        (
            "topic name too long",
            stub.ReadRecords(rs.ReadRecordsRequest(topic="t" * 250), timeout=WAIT_S),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
        ),
    ]
    for what, call, code, reason in read_cases:
        failure = await rpc_failure(call)
        assert (failure.code, failure.reason) == (code, reason), what
    past = await rpc_failure(read(offset=5))
    assert past.metadata["high_watermark"] == "1"
    assert await nodes.high_watermarks("strict") == before


@pytest.mark.timing
async def test_large_request_keeps_the_event_loop_free(nodes: Nodes) -> None:
    """10,000 records with 10 headers each (~100,000 header messages, ~11 MiB): the
    parsing, encoding and decoding run on the executor, the loop stays responsive."""
    await nodes.create("big", [[1], [2]])
    records = [
        rs.PlainRecord(
            key=b"key-%d" % i,
            value=b"v" * 1000,
            headers=[rs.PlainHeader(key=f"h{j}", value=b"x") for j in range(10)],
        )
        for i in range(10_000)
    ]
    channel = nodes.channels[3]
    await loop_lag_ms(channel)  # resets the node's maximum
    started = time.monotonic()
    produced = await nodes.records(3).ProduceRecords(
        rs.ProduceRecordsRequest(topic="big", records=records), timeout=WAIT_S
    )
    produce_s = time.monotonic() - started
    assert len(produced.results) == 10_000 and all(r.HasField("offset") for r in produced.results)
    started = time.monotonic()
    read = await nodes.records(3).ReadRecords(
        rs.ReadRecordsRequest(topic="big", partition=0, max_records=10_000, max_bytes=3 << 20),
        timeout=WAIT_S,
    )
    read_s = time.monotonic() - started
    lag = await loop_lag_ms(channel)
    print(
        f"produce 10,000 records x 10 headers: {produce_s:.2f}s; read {len(read.records)}"
        f" records: {read_s:.2f}s; node loop lag max {lag:.0f} ms"
    )
    assert read.records and len(read.records) <= 10_000
    assert sum(len(r.value) for r in read.records) <= 3 << 20
    assert lag < LOOP_LAG_MS_MAX


# -- operators -------------------------------------------------------------------------------
async def test_grpcurl_each_way_as_the_proto_says(nodes: Nodes) -> None:
    await nodes.create("orders", [[2, 3]])
    address = nodes.cluster.address("node-1")
    assert "brook.v1.RecordService" in grpcurl(address, "list").split()
    produced = await asyncio.to_thread(
        grpcurl_json,
        address,
        "brook.v1.RecordService/ProduceRecords",
        {"topic": "orders", "records": [{"key_text": "k1", "value_text": "hello"}]},
    )
    assert produced["results"][0]["partition"] == 0
    assert produced["results"][0]["offset"] in ("0", 0)
    assert produced["results"][0]["timestamp"].endswith("Z")
    read = await asyncio.to_thread(
        grpcurl_json,
        address,
        "brook.v1.RecordService/ReadRecords",
        {"topic": "orders", "partition": 0, "offset": "0", "as_text": True},
    )
    (record,) = read["records"]
    assert (record["keyText"], record["valueText"], record["offset"]) == ("k1", "hello", "0")
    assert read["nextOffset"] == "1" and read["highWatermark"] == "1"
    # A failure is a failed call (non-zero exit) with the ErrorInfo reason.
    failed = await asyncio.to_thread(
        subprocess.run,
        [str(GRPCURL), "-plaintext", "-d", json.dumps({"topic": "nope", "records": [{}]}),
         address, "brook.v1.RecordService/ProduceRecords"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert failed.returncode != 0 and "TOPIC_NOT_FOUND" in failed.stdout + failed.stderr


# -- failover --------------------------------------------------------------------------------
async def test_produce_survives_a_leader_killed(
    local_cluster: Callable[..., LocalCluster], security_mode: str
) -> None:
    """SIGKILL the leader: ProduceRecords (acks=all) through another node succeeds once
    the coordinator elected a new leader, within the request's timeout; nothing is lost."""
    cluster = local_cluster(**cluster_options(security_mode))
    cluster.add_coordinator(args=COORDINATOR_ARGS)
    for node_id in (1, 2, 3):
        cluster.add_node(node_id, args=FAST_NODE_ARGS)
    start_secured(cluster, client_acls(topics=["failover"], describe_cluster=True))
    nodes = Nodes(cluster)
    try:
        await nodes.create("failover", [[1, 2]])
        before = await nodes.records(3).ProduceRecords(
            rs.ProduceRecordsRequest(topic="failover", records=[text("before")]), timeout=WAIT_S
        )
        assert before.results[0].offset == 0
        await eventually(
            lambda: _in_sync(nodes, "failover"), timeout_s=WAIT_S, what="node 2 in the ISR"
        )
        cluster.kill("node-1", signal.SIGKILL)
        killed = time.monotonic()
        after = await nodes.records(3).ProduceRecords(
            rs.ProduceRecordsRequest(topic="failover", records=[text("after")], timeout_ms=20_000),
            timeout=30,
        )
        elapsed = time.monotonic() - killed
        print(f"produce acknowledged {elapsed:.2f}s after kill -9 of the leader")
        assert after.results[0].offset == 1
        assert elapsed < 20
        assert await nodes.leader("failover", 0) == 2
        read = await nodes.records(3).ReadRecords(
            rs.ReadRecordsRequest(topic="failover", partition=0, as_text=True), timeout=WAIT_S
        )
        assert [r.value_text for r in read.records] == ["before", "after"]
    finally:
        await nodes.close()


async def _in_sync(nodes: Nodes, topic: str) -> bool:
    described = await nodes.admin.describe_topic(topic)
    return sorted(described.partitions[0].isr_ids) == [1, 2]
