"""What a client written from the protos alone relies on (issue 10), against real nodes.

- Trap 1: an unset `current_leader_epoch` means "no check" on Produce, Fetch and
  ListOffsets, before and after a leader change; 0 is a real epoch and is checked.
  Replication requests must carry their epochs.
- Trap 3: a stock gRPC client (4 MiB receive limit) reads batches larger than that.
- Trap 2: one error vocabulary. A PartitionError's `error_info` is the ErrorInfo a failed
  call carries (reason without prefix, "retriable"/"refresh_metadata" as strings); a
  request whose every partition failed is a failed call whose status details hold the
  whole response, and a partly failed one is answered OK with per-partition errors.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from brook import codec
from brook.errors import from_rpc_error
from brook.services.metadata.store import MetadataStore
from brook.v1 import errors_pb2, storage_pb2, storage_pb2_grpc
from tests.harness.cluster import LocalCluster
from tests.harness.grpcurl import grpcurl_result
from tests.harness.rpc import rpc_failure
from tests.node.cluster_helpers import (
    FAST_NODE_ARGS,
    NodeClient,
    create_topic,
    move_leader,
    wait_until,
)
from tests.node.helpers import make_batch

pytestmark = pytest.mark.integration


def produce_request(
    topic: str, partitions: list[int], epoch: int | None = None
) -> storage_pb2.ProduceRequest:
    """One batch per partition; `epoch` None leaves current_leader_epoch unset."""
    entries = []
    for partition in partitions:
        entry = storage_pb2.ProducePartition(
            topic=topic, partition=partition, batches=[make_batch([b"v"])]
        )
        if epoch is not None:
            entry.current_leader_epoch = epoch
        entries.append(entry)
    return storage_pb2.ProduceRequest(acks=storage_pb2.ACKS_LEADER, partitions=entries)


def fetch_request(topic: str, epoch: int | None = None) -> storage_pb2.FetchRequest:
    entry = storage_pb2.FetchPartition(topic=topic, partition=0, fetch_offset=0)
    if epoch is not None:
        entry.current_leader_epoch = epoch
    return storage_pb2.FetchRequest(partitions=[entry])


def list_request(topic: str, epoch: int | None = None) -> storage_pb2.ListOffsetsRequest:
    entry = storage_pb2.ListOffsetsPartition(
        topic=topic, partition=0, query=storage_pb2.OFFSET_QUERY_LATEST
    )
    if epoch is not None:
        entry.current_leader_epoch = epoch
    return storage_pb2.ListOffsetsRequest(partitions=[entry])


def assert_same_vocabulary(error: errors_pb2.PartitionError) -> None:
    """error_info says what the typed fields say, in the status vocabulary."""
    info = error.error_info
    assert info.domain == "brook.v1"
    assert info.reason == errors_pb2.ErrorReason.Name(error.reason).removeprefix("ERROR_REASON_")
    assert info.metadata["retriable"] == ("true" if error.retriable else "false")
    assert info.metadata["refresh_metadata"] == ("true" if error.refresh_metadata else "false")


@pytest.fixture
def two_nodes(local_cluster: Callable[..., LocalCluster]) -> LocalCluster:
    cluster = local_cluster()
    for node_id in (1, 2):
        cluster.add_node(node_id, args=FAST_NODE_ARGS)
    cluster.start()
    return cluster


async def test_unset_epochs_skip_the_check_after_a_leader_change(
    two_nodes: LocalCluster, store: MetadataStore, clients: Callable[[str], NodeClient]
) -> None:
    """Trap 1: at epoch 0 and after the leader moved (epoch 1), requests that leave
    current_leader_epoch out are served; an explicit stale 0 is FENCED_LEADER_EPOCH."""
    await create_topic(store, "epochs", [(1, (1, 2))], epoch=0)
    nodes = {i: clients(two_nodes.address(f"node-{i}")) for i in (1, 2)}
    await wait_until(lambda: nodes[1].leads("epochs", 0), 10, "node 1 to lead")
    first = await nodes[1].stub.Produce(produce_request("epochs", [0], epoch=0), timeout=10)
    assert not first.partitions[0].HasField("error")
    assert first.partitions[0].HasField("base_offset")  # 0, and present
    assert first.partitions[0].base_offset == 0

    await move_leader(store, "epochs", 0, 2)
    await wait_until(lambda: nodes[2].leads("epochs", 0), 10, "node 2 to lead")
    stub = nodes[2].stub
    produced = await stub.Produce(produce_request("epochs", [0]), timeout=10)
    assert not produced.partitions[0].HasField("error"), produced
    fetched = await stub.Fetch(fetch_request("epochs"), timeout=10)
    assert not fetched.partitions[0].HasField("error"), fetched
    listed = await stub.ListOffsets(list_request("epochs"), timeout=10)
    assert not listed.partitions[0].HasField("error"), listed
    assert listed.partitions[0].leader_epoch == 1

    for call in (
        stub.Produce(produce_request("epochs", [0], epoch=0), timeout=10),
        stub.Fetch(fetch_request("epochs", epoch=0), timeout=10),
        stub.ListOffsets(list_request("epochs", epoch=0), timeout=10),
    ):
        failure = await rpc_failure(call)
        assert failure.code is grpc.StatusCode.FAILED_PRECONDITION
        assert failure.reason == "FENCED_LEADER_EPOCH"
        assert failure.metadata["retriable"] == "true"


async def test_replication_requests_must_carry_their_epochs(
    two_nodes: LocalCluster, store: MetadataStore
) -> None:
    """Trap 1, replica side: a ReplicaFetch or OffsetForLeaderEpoch without its epochs is
    refused whole with INVALID_REQUEST naming the field (a replica never skips fencing)."""
    await create_topic(store, "rep-epochs", [(1, (1, 2))])
    async with grpc.aio.insecure_channel(two_nodes.address("node-1")) as channel:
        stub = storage_pb2_grpc.ReplicaServiceStub(channel)
        unset = storage_pb2.ReplicaFetchRequest(
            replica_id=2,
            partitions=[storage_pb2.ReplicaFetchPartition(topic="rep-epochs", partition=0)],
        )
        failure = await rpc_failure(stub.ReplicaFetch(unset, timeout=10))
        assert failure.code is grpc.StatusCode.INVALID_ARGUMENT
        assert failure.reason == "INVALID_REQUEST"
        assert failure.metadata["field"] == "partitions.current_leader_epoch"
        asked = storage_pb2.OffsetForLeaderEpochRequest(
            replica_id=2,
            partitions=[
                storage_pb2.OffsetForLeaderEpochPartition(
                    topic="rep-epochs", partition=0, current_leader_epoch=1
                )
            ],
        )
        failure = await rpc_failure(stub.OffsetForLeaderEpoch(asked, timeout=10))
        assert failure.reason == "INVALID_REQUEST"
        assert failure.metadata["field"] == "partitions.leader_epoch"


async def test_every_partition_failed_is_a_failed_call_with_the_response(
    two_nodes: LocalCluster, store: MetadataStore, clients: Callable[[str], NodeClient]
) -> None:
    """Trap 2: a produce whose only partition is refused fails with that partition's
    status and ErrorInfo, and the details hold the ProduceResponse; two refused partitions
    likewise (both in the details); one refused beside one accepted is answered OK, the
    refused one's PartitionError speaking the ErrorInfo vocabulary. Nothing is appended
    for the refused partitions."""
    await create_topic(store, "vocab", [(1, (1,))])
    node = clients(two_nodes.address("node-1"))
    await wait_until(lambda: node.leads("vocab", 0), 10, "node 1 to lead")

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await node.stub.Produce(produce_request("vocab", [7]), timeout=10)
    error = from_rpc_error(caught.value)
    assert caught.value.code() is error.code
    response = error.response_as(storage_pb2.ProduceResponse)
    assert response is not None and len(response.partitions) == 1
    only = response.partitions[0]
    assert only.partition == 7
    assert only.error.error_info.reason == error.reason.value
    assert_same_vocabulary(only.error)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await node.stub.Produce(produce_request("vocab", [7, 8]), timeout=10)
    both = from_rpc_error(caught.value).response_as(storage_pb2.ProduceResponse)
    assert both is not None
    assert [p.partition for p in both.partitions] == [7, 8]

    mixed = await node.stub.Produce(produce_request("vocab", [0, 9]), timeout=10)
    ok, refused = mixed.partitions
    assert not ok.HasField("error") and ok.HasField("base_offset")
    assert refused.HasField("error")
    assert_same_vocabulary(refused.error)
    assert (await node.list_offset("vocab", 0)).offset == 1  # only the accepted batch


async def test_grpcurl_exits_non_zero_on_a_rejected_request(
    two_nodes: LocalCluster, store: MetadataStore, clients: Callable[[str], NodeClient]
) -> None:
    """Trap 2 from grpcurl: a fetch of a partition the node does not have exits non-zero
    and prints the reason; one of a partition it leads exits 0 with partition 0 and high
    watermark 0 present in the JSON (no -emit-defaults needed)."""
    await create_topic(store, "cli", [(1, (1,))])
    address = two_nodes.address("node-1")
    node = clients(address)
    await wait_until(lambda: node.leads("cli", 0), 10, "node 1 to lead")
    missing = {"partitions": [{"topic": "cli", "partition": 3}]}
    code, output = grpcurl_result(address, "brook.v1.StorageService/Fetch", missing)
    assert code != 0
    assert "PARTITION_NOT_FOUND" in output or "NOT_LEADER" in output, output
    code, output = grpcurl_result(
        address, "brook.v1.StorageService/Fetch", {"partitions": [{"topic": "cli"}]}
    )
    assert code == 0, output
    assert '"partition": 0' in output and '"highWatermark": "0"' in output, output


async def test_a_stock_client_reads_a_5_mib_batch_by_fetch_and_subscribe(
    two_nodes: LocalCluster, store: MetadataStore
) -> None:
    """Trap 3: a stock gRPC channel (4 MiB receive limit, nothing configured) fetches and
    subscribes to a 5 MiB batch: the node serves it as smaller batches of the same
    records, so every record arrives byte for byte and no message is refused. A single
    record too large for the limit is BATCH_TOO_LARGE naming the limit needed, and read
    once the client states a larger limit."""
    mib = 1 << 20
    await create_topic(store, "big", [(1, (1,))], configs={"max_batch_bytes": str(8 * mib)})
    values = [bytes([i]) * mib for i in range(5)]
    async with grpc.aio.insecure_channel(two_nodes.address("node-1")) as channel:
        stub = storage_pb2_grpc.StorageServiceStub(channel)
        node = NodeClient(two_nodes.address("node-1"))
        try:
            await wait_until(lambda: node.leads("big", 0), 10, "node 1 to lead")
        finally:
            await node.close()
        request = storage_pb2.ProduceRequest(
            acks=storage_pb2.ACKS_LEADER,
            partitions=[
                storage_pb2.ProducePartition(topic="big", partition=0, batches=[make_batch(values)])
            ],
        )
        produced = await stub.Produce(request, timeout=30)
        assert not produced.partitions[0].HasField("error"), produced
        tail = storage_pb2.ProduceRequest(
            acks=storage_pb2.ACKS_LEADER,
            partitions=[
                storage_pb2.ProducePartition(
                    topic="big", partition=0, batches=[make_batch([b"y" * (5 * mib)])]
                )
            ],
        )
        assert not (await stub.Produce(tail, timeout=30)).partitions[0].HasField("error")

        read: list[bytes] = []
        offset = 0
        while offset < 5:
            fetched = await stub.Fetch(
                storage_pb2.FetchRequest(
                    partitions=[
                        storage_pb2.FetchPartition(topic="big", partition=0, fetch_offset=offset)
                    ]
                ),
                timeout=30,
            )
            entry = fetched.partitions[0]
            assert not entry.HasField("error"), entry.error
            records = [r for b in entry.batches for r in codec.decode_batch(b, "big", 0, offset)]
            read.extend(r.value for r in records[: 5 - offset])
            offset = records[-1].offset + 1
        assert read == values

        failure = await rpc_failure(
            stub.Fetch(
                storage_pb2.FetchRequest(
                    partitions=[
                        storage_pb2.FetchPartition(topic="big", partition=0, fetch_offset=5)
                    ]
                ),
                timeout=30,
            )
        )
        assert failure.reason == "BATCH_TOO_LARGE"
        needed = int(failure.metadata["required_bytes"])
        assert needed > 5 * mib

        stream = stub.Subscribe(
            storage_pb2.SubscribeRequest(
                partitions=[storage_pb2.FetchPartition(topic="big", partition=0, fetch_offset=0)]
            )
        )
        streamed: list[bytes] = []
        try:
            async for message in stream:
                for entry in message.partitions:
                    for batch in entry.batches:
                        streamed.extend(r.value for r in codec.decode_batch(batch, "big", 0))
                if len(streamed) >= 5:
                    break
        except grpc.aio.AioRpcError as error:
            raise AssertionError(f"stream failed after {len(streamed)} records: {error}") from None
        finally:
            stream.cancel()
        assert streamed[:5] == values

    options = [("grpc.max_receive_message_length", needed)]
    async with grpc.aio.insecure_channel(two_nodes.address("node-1"), options=options) as big:
        fetched = await storage_pb2_grpc.StorageServiceStub(big).Fetch(
            storage_pb2.FetchRequest(
                receive_limit_bytes=needed,
                partitions=[storage_pb2.FetchPartition(topic="big", partition=0, fetch_offset=5)],
            ),
            timeout=30,
        )
        [batch] = fetched.partitions[0].batches
        assert codec.decode_batch(batch, "big", 0)[0].value == b"y" * (5 * mib)
