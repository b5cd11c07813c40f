"""Request bounds of the storage node through a real node process.

Defect 5: one Fetch naming 400,000 nonexistent partitions blocked a node's event loop
for 4.1 s, it lost its lease and every partition it led failed over. Defect 12 (node
part): the same partition twice in one Produce appended the first and refused the
second; timestamps of 2^62 were accepted.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import grpc
import pytest

from brook.errors import BrookError, from_partition_error, from_rpc_error
from brook.services.metadata.store import MetadataStore
from brook.v1 import storage_pb2, storage_pb2_grpc
from tests.harness.cluster import LocalCluster
from tests.harness.rpc import loop_lag_ms
from tests.node.cluster_helpers import FAST_NODE_ARGS, NodeClient, create_topic, wait_until
from tests.node.helpers import make_batch

pytestmark = [pytest.mark.integration, pytest.mark.timing]

PARTITIONS_MAX = 10_000  # NodeLimits.request_partitions_max (the default)
LOOP_LAG_BUDGET_MS = 100.0


@pytest.fixture
async def node(
    local_cluster: Callable[..., LocalCluster], store: MetadataStore
) -> AsyncIterator[NodeClient]:
    cluster = local_cluster()
    cluster.add_node(1, args=FAST_NODE_ARGS)
    cluster.start()
    await create_topic(store, "t", [(1, (1,))])
    client = NodeClient(cluster.address("node-1"))
    try:
        await wait_until(lambda: client.leads("t", 0), 10, "node 1 to lead t-0")
        yield client
    finally:
        await client.close()


async def loop_lag(client: NodeClient) -> float:
    """The node's largest event-loop lag since the previous call, in ms."""
    return await loop_lag_ms(client.channel)


async def refused(call: object) -> BrookError:
    """The BrookError of a call that must fail with INVALID_ARGUMENT + ErrorInfo."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value
    error = from_rpc_error(caught.value)
    assert error.reason == "INVALID_REQUEST", error
    return error


def fetch_request(count: int, topic: str = "nope") -> storage_pb2.FetchRequest:
    """`count` partitions of `topic` (epoch 0 left out: small enough that 400,000 pass the
    byte bound and meet the partition bound)."""
    return storage_pb2.FetchRequest(
        max_wait_ms=0,
        partitions=[storage_pb2.FetchPartition(topic=topic, partition=i) for i in range(count)],
    )


async def test_fetch_of_400k_partitions_is_refused_and_the_largest_allowed_is_cheap(
    node: NodeClient, store: MetadataStore
) -> None:
    """Defect 5: a Fetch naming 400,000 nonexistent partitions is refused with
    INVALID_ARGUMENT + ErrorInfo naming the limit, before any per-partition work; one
    naming the maximum allowed (10,000) is answered with per-partition errors while the
    node's event loop never lags 100 ms; the node stays registered (its lease held)."""
    await loop_lag(node)  # reset the node's running maximum
    error = await refused(node.stub.Fetch(fetch_request(400_000, topic="n"), timeout=30))
    assert error.metadata.get("limit") == str(PARTITIONS_MAX), error.metadata
    started = time.monotonic()
    answer = await node.stub.Fetch(fetch_request(PARTITIONS_MAX), timeout=30)
    elapsed_s = time.monotonic() - started
    assert len(answer.partitions) == PARTITIONS_MAX
    assert all(from_partition_error(p.error) is not None for p in answer.partitions)
    lag_ms = await loop_lag(node)
    print(f"max-size Fetch answered in {elapsed_s * 1000:.0f} ms; loop lag {lag_ms:.1f} ms")
    assert lag_ms < LOOP_LAG_BUDGET_MS, f"the event loop lagged {lag_ms:.0f} ms"
    assert any(n.node_id == 1 for n in await store.list_nodes())


async def test_every_repeated_field_is_bounded(node: NodeClient) -> None:
    """Defect 5: Produce, Subscribe, ListOffsets, ReplicaFetch and OffsetForLeaderEpoch
    naming one partition more than the limit are refused whole (INVALID_REQUEST); so is
    a payload-free request larger than request_metadata_max_bytes, before parsing."""
    over = PARTITIONS_MAX + 1
    produce = storage_pb2.ProduceRequest(
        acks=storage_pb2.ACKS_LEADER,
        partitions=[
            storage_pb2.ProducePartition(topic="t", partition=i, batches=[make_batch([b"x"])])
            for i in range(over)
        ],
    )
    await refused(node.stub.Produce(produce, timeout=30))
    listed = storage_pb2.ListOffsetsRequest(
        partitions=[storage_pb2.ListOffsetsPartition(topic="t", partition=i) for i in range(over)]
    )
    await refused(node.stub.ListOffsets(listed, timeout=30))
    subscribe = storage_pb2.SubscribeRequest(partitions=fetch_request(over).partitions)
    stream = node.stub.Subscribe(subscribe, timeout=30)
    await refused(stream.read())
    replica = storage_pb2_grpc.ReplicaServiceStub(node.channel)
    await refused(
        replica.ReplicaFetch(
            storage_pb2.ReplicaFetchRequest(
                replica_id=2,
                partitions=[
                    storage_pb2.ReplicaFetchPartition(topic="t", partition=i) for i in range(over)
                ],
            ),
            timeout=30,
        )
    )
    await refused(
        replica.OffsetForLeaderEpoch(
            storage_pb2.OffsetForLeaderEpochRequest(
                partitions=[
                    storage_pb2.OffsetForLeaderEpochPartition(topic="t", partition=i)
                    for i in range(over)
                ]
            ),
            timeout=30,
        )
    )
    error = await refused(node.stub.Fetch(fetch_request(100, topic="x" * 60_000), timeout=30))
    assert "bytes" in str(error), error
    # Still serving.
    assert from_partition_error((await node.list_offset("t", 0)).error) is None


async def test_duplicate_partition_in_produce_appends_nothing(node: NodeClient) -> None:
    """Defect 12: a Produce naming t-0 twice is refused whole with INVALID_ARGUMENT
    before anything is appended (it used to append the first and refuse the second)."""
    entry = storage_pb2.ProducePartition(topic="t", partition=0, batches=[make_batch([b"a"])])
    request = storage_pb2.ProduceRequest(acks=storage_pb2.ACKS_ALL, partitions=[entry, entry])
    error = await refused(node.stub.Produce(request, timeout=10))
    assert "twice" in str(error)
    assert (await node.list_offset("t", 0)).offset == 0


@pytest.mark.parametrize("timestamp_ms", [2**62, -5])
async def test_produce_refuses_insane_timestamps(node: NodeClient, timestamp_ms: int) -> None:
    """Defect 12: a batch whose max_timestamp_ms is beyond now + the allowed skew (2^62)
    or negative other than -1 is refused for its partition; nothing is appended."""
    answer = await node.produce("t", 0, [make_batch([b"a"], timestamp_ms=timestamp_ms)])
    error = from_partition_error(answer.error)
    assert error is not None and error.reason in ("INVALID_REQUEST", "CORRUPT_BATCH"), error
    assert (await node.list_offset("t", 0)).offset == 0
    ok = await node.produce("t", 0, [make_batch([b"b"], timestamp_ms=int(time.time() * 1000))])
    assert from_partition_error(ok.error) is None, ok.error


async def test_malformed_produce_bytes_are_invalid_request(node: NodeClient) -> None:
    """Defect 11: bytes that are not a ProduceRequest answered UNKNOWN; now INVALID_ARGUMENT
    with ErrorInfo (INVALID_REQUEST), and the node goes on serving."""
    raw = node.channel.unary_unary(
        "/brook.v1.StorageService/Produce",
        request_serializer=bytes,
        response_deserializer=bytes,
    )
    for garbage in (b"\x0a\xff\xff\xff\xff\x0f", b"\x00\x01\x02", b"\x0b" * 64):
        error = await refused(raw(garbage, timeout=10))
        assert "not a ProduceRequest" in str(error), error
    assert from_partition_error((await node.list_offset("t", 0)).error) is None


async def test_acks_none_answers_minus_one_not_offset_zero(node: NodeClient) -> None:
    """Issue 10, trap 9: acks=none answered offset 0 and time 0, plausible values for an
    append that has not happened yet; the answer says -1 (as Kafka), and the records are
    appended after it (they become readable)."""
    answer = await node.produce("t", 0, [make_batch([b"fire", b"forget"])],
                                acks=storage_pb2.ACKS_NONE)  # fmt: skip
    assert (answer.base_offset, answer.last_offset, answer.log_append_time_ms) == (-1, -1, -1)

    async def appended() -> bool:
        return (await node.list_offset("t", 0)).offset == 2

    await wait_until(appended, 10, "the acks=none batch to be appended")
