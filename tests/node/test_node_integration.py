"""Storage node integration tests: real etcd, real node processes, generated gRPC stubs.

Topics are written straight into etcd with MetadataStore (what the coordinator would
write), so these tests need no coordinator: a node becomes leader or follower from the
partition record alone, and a failover is a CAS of that record with a new epoch.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
from collections.abc import Awaitable, Callable

import grpc
import pytest

from brook.errors import from_partition_error
from brook.services.metadata.store import MetadataStore
from brook.v1 import storage_pb2
from tests.harness.cluster import LocalCluster
from tests.node.cluster_helpers import (
    FAST_NODE_ARGS,
    NodeClient,
    create_topic,
    move_leader,
    wait_until,
)
from tests.node.helpers import make_batch

pytestmark = pytest.mark.integration


def start_nodes(
    local_cluster: Callable[..., LocalCluster], count: int, extra: list[str] | None = None
) -> LocalCluster:
    cluster = local_cluster()
    for node_id in range(1, count + 1):
        cluster.add_node(node_id, args=[*FAST_NODE_ARGS, *(extra or [])])
    cluster.start()
    return cluster


async def test_produce_fetch_subscribe_list_offsets_round_trip(
    local_cluster: Callable[..., LocalCluster],
    store: MetadataStore,
    clients: Callable[[str], NodeClient],
) -> None:
    """One node leads a partition: produce (acks=all) assigns offsets, Fetch returns the
    producer's batches with those offsets, Subscribe streams a batch produced after it
    started, ListOffsets answers earliest/latest/timestamp."""
    cluster = start_nodes(local_cluster, 1)
    await create_topic(store, "orders", [(1, (1,))])
    node = clients(cluster.address("node-1"))
    await wait_until(lambda: node.leads("orders", 0), 10, "node 1 to lead orders-0")

    first = await node.produce("orders", 0, [make_batch([b"a", b"b"], timestamp_ms=1000)])
    second = await node.produce("orders", 0, [make_batch([b"c"], timestamp_ms=2000)])
    assert from_partition_error(first.error) is None
    assert (first.base_offset, first.last_offset, second.base_offset) == (0, 1, 2)

    fetched = await node.fetch("orders", 0, 1)
    assert [b.base_offset for b in fetched.batches] == [0, 2]
    assert fetched.high_watermark == 3
    assert fetched.batches[0].records == make_batch([b"a", b"b"], timestamp_ms=1000).records
    assert await node.read_all("orders", 0) == [b"a", b"b", b"c"]

    earliest = await node.list_offset("orders", 0, storage_pb2.OFFSET_QUERY_EARLIEST)
    latest = await node.list_offset("orders", 0, storage_pb2.OFFSET_QUERY_LATEST)
    by_time = await node.list_offset("orders", 0, storage_pb2.OFFSET_QUERY_TIMESTAMP, 1500)
    assert (earliest.offset, latest.offset, by_time.offset, by_time.timestamp_ms) == (0, 3, 2, 2000)
    assert latest.leader_epoch == 1

    stream = node.stub.Subscribe(
        storage_pb2.SubscribeRequest(
            partitions=[
                storage_pb2.FetchPartition(
                    topic="orders", partition=0, fetch_offset=2, current_leader_epoch=-1
                )
            ]
        )
    )
    try:
        message = await asyncio.wait_for(stream.read(), 10)
        assert [b.base_offset for b in message.partitions[0].batches] == [2]
        await node.produce("orders", 0, [make_batch([b"d"])])
        message = await asyncio.wait_for(stream.read(), 10)
        assert [b.base_offset for b in message.partitions[0].batches] == [3]
    finally:
        stream.cancel()


async def test_fetch_long_poll_wakes_on_produce(
    local_cluster: Callable[..., LocalCluster],
    store: MetadataStore,
    clients: Callable[[str], NodeClient],
) -> None:
    """A Fetch at the HW with max_wait_ms waits, and answers as soon as a batch arrives."""
    cluster = start_nodes(local_cluster, 1)
    await create_topic(store, "polls", [(1, (1,))])
    node = clients(cluster.address("node-1"))
    await wait_until(lambda: node.leads("polls", 0), 10, "node 1 to lead")
    waiting = asyncio.ensure_future(node.fetch("polls", 0, 0, max_wait_ms=20_000))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await node.produce("polls", 0, [make_batch([b"x"])])
    fetched = await asyncio.wait_for(waiting, 5)
    assert [b.base_offset for b in fetched.batches] == [0]


async def test_non_leader_answers_not_leader_and_appends_nothing(
    local_cluster: Callable[..., LocalCluster],
    store: MetadataStore,
    clients: Callable[[str], NodeClient],
) -> None:
    """A follower and a non-replica answer NOT_LEADER naming the leader's id and address;
    the leader's log is unchanged; bad batches are CORRUPT_BATCH / BATCH_TOO_LARGE."""
    cluster = start_nodes(local_cluster, 2)
    await create_topic(store, "t", [(2, (1, 2)), (2, (2,))], configs={"max_batch_bytes": "1000"})
    follower = clients(cluster.address("node-1"))
    leader = clients(cluster.address("node-2"))
    await wait_until(lambda: leader.leads("t", 0), 10, "node 2 to lead t-0")
    await wait_until(lambda: leader.leads("t", 1), 10, "node 2 to lead t-1")
    for partition in (0, 1):  # 0: node 1 is a follower; 1: node 1 is not a replica
        answer = await follower.produce("t", partition, [make_batch([b"x"])])
        error = from_partition_error(answer.error)
        assert error is not None and error.reason == "NOT_LEADER", error
        assert error.metadata["leader_id"] == "2"
        assert error.metadata["leader_address"] == cluster.address("node-2")
        assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    bad_crc = make_batch([b"y"])
    bad_crc.crc32c ^= 1
    answer = await leader.produce("t", 0, [make_batch([b"ok"]), bad_crc])
    assert from_partition_error(answer.error).reason == "CORRUPT_BATCH"  # type: ignore[union-attr]
    answer = await leader.produce("t", 0, [make_batch([b"z" * 2000])])
    assert from_partition_error(answer.error).reason == "BATCH_TOO_LARGE"  # type: ignore[union-attr]
    assert (await leader.list_offset("t", 0)).offset == 0
    unknown = await leader.produce("nope", 0, [make_batch([b"x"])])
    assert from_partition_error(unknown.error).reason == "TOPIC_NOT_FOUND"  # type: ignore[union-attr]


async def test_restart_keeps_acknowledged_data(
    local_cluster: Callable[..., LocalCluster],
    store: MetadataStore,
    clients: Callable[[str], NodeClient],
) -> None:
    """Batches acknowledged before a SIGKILL are all there after the node restarts."""
    cluster = start_nodes(local_cluster, 1)
    await create_topic(store, "durable", [(1, (1,))])
    node = clients(cluster.address("node-1"))
    await wait_until(lambda: node.leads("durable", 0), 10, "node 1 to lead")
    values = [f"v{i}".encode() for i in range(20)]
    for value in values:
        answer = await node.produce("durable", 0, [make_batch([value])])
        assert from_partition_error(answer.error) is None
    cluster.kill("node-1", signal.SIGKILL)
    cluster.restart("node-1")
    await wait_until(lambda: node.leads("durable", 0), 20, "node 1 to lead after restart")
    assert await node.read_all("durable", 0) == values


async def isr_of(store: MetadataStore, topic: str, partition: int) -> tuple[int, ...]:
    found = await store.get_partition(topic, partition)
    assert found is not None
    return found[0].isr


async def test_three_node_replication_with_acks_all_and_failover(
    local_cluster: Callable[..., LocalCluster],
    store: MetadataStore,
    clients: Callable[[str], NodeClient],
) -> None:
    """acks=all batches are on the followers: after the leader moves (epoch + 1), the new
    leader serves all of them, the old leader answers NOT_LEADER and follows, and acks=all
    keeps working through the new leader."""
    cluster = start_nodes(local_cluster, 3)
    await create_topic(store, "rep", [(1, (1, 2, 3))], configs={"min_insync_replicas": "2"})
    nodes = {i: clients(cluster.address(f"node-{i}")) for i in (1, 2, 3)}
    await wait_until(lambda: nodes[1].leads("rep", 0), 10, "node 1 to lead")
    values = [f"r{i}".encode() for i in range(10)]
    for value in values:
        answer = await nodes[1].produce("rep", 0, [make_batch([value])])
        assert from_partition_error(answer.error) is None, answer.error
    await move_leader(store, "rep", 0, 2)
    await wait_until(lambda: nodes[2].leads("rep", 0), 10, "node 2 to lead")
    # The new leader's HW catches up once its followers fetch from it at the new epoch.
    await wait_until(lambda: _reads(nodes[2], "rep", values), 10, "node 2 to serve everything")
    stale = await nodes[1].produce("rep", 0, [make_batch([b"stale"])], epoch=1)
    assert from_partition_error(stale.error).reason in (  # type: ignore[union-attr]
        "NOT_LEADER",
        "FENCED_LEADER_EPOCH",
    )
    answer = await nodes[2].produce("rep", 0, [make_batch([b"after"])])
    assert from_partition_error(answer.error) is None, answer.error
    assert (await nodes[2].read_all("rep", 0))[-1] == b"after"


async def test_lagging_follower_leaves_isr_and_rejoins(
    local_cluster: Callable[..., LocalCluster],
    store: MetadataStore,
    clients: Callable[[str], NodeClient],
) -> None:
    """A stopped follower is dropped from the ISR in etcd after replica_lag_max_ms, so
    acks=all completes with the rest; once resumed it catches up and is added back."""
    cluster = start_nodes(local_cluster, 3)
    await create_topic(
        store,
        "lag",
        [(1, (1, 2, 3))],
        configs={"min_insync_replicas": "2", "replica_lag_max_ms": "1000"},
    )
    leader = clients(cluster.address("node-1"))
    await wait_until(lambda: leader.leads("lag", 0), 10, "node 1 to lead")
    answer = await leader.produce("lag", 0, [make_batch([b"a"])])
    assert from_partition_error(answer.error) is None
    cluster.kill("node-3", signal.SIGSTOP)
    try:
        answer = await leader.produce("lag", 0, [make_batch([b"b"])], timeout_ms=15_000)
        assert from_partition_error(answer.error) is None, answer.error
        assert await isr_of(store, "lag", 0) == (1, 2)
    finally:
        cluster.kill("node-3", signal.SIGCONT)
    await wait_until(lambda: _isr_is(store, "lag", (1, 2, 3)), 20, "node 3 to rejoin the ISR")


async def _isr_is(store: MetadataStore, topic: str, isr: tuple[int, ...]) -> bool:
    return await isr_of(store, topic, 0) == isr


async def test_paused_leader_acknowledges_nothing_and_truncates(
    local_cluster: Callable[..., LocalCluster],
    store: MetadataStore,
    clients: Callable[[str], NodeClient],
) -> None:
    """A leader SIGSTOPped past its lease while an acks=all produce waits: a new leader is
    elected meanwhile; when the old one wakes, the parked produce fails, new produces get
    NOT_LEADER, and as a follower it truncates the unreplicated batch away."""
    cluster = start_nodes(local_cluster, 2)
    await create_topic(
        store,
        "fence",
        [(1, (1, 2))],
        configs={"min_insync_replicas": "2", "replica_lag_max_ms": "60000"},
    )
    old = clients(cluster.address("node-1"))
    new = clients(cluster.address("node-2"))
    await wait_until(lambda: old.leads("fence", 0), 10, "node 1 to lead")
    answer = await old.produce("fence", 0, [make_batch([b"kept"])])
    assert from_partition_error(answer.error) is None
    cluster.kill("node-2", signal.SIGSTOP)
    # Part of the fault, not synchronization: the stopped follower may have a long-poll
    # ReplicaFetch parked at the leader; had it been answered with the next batch, that
    # batch would sit in the follower's socket and be appended when it wakes (a legitimate
    # outcome, but then there is nothing to truncate). Outwait the long poll (200 ms) by a
    # wide margin so the next batch stays on the old leader only.
    await asyncio.sleep(1.0)
    parked = asyncio.ensure_future(
        old.produce("fence", 0, [make_batch([b"lost"])], timeout_ms=30_000)
    )
    try:
        await asyncio.sleep(0.3)
        assert not parked.done()  # waiting for node 2, which is stopped
        cluster.kill("node-1", signal.SIGSTOP)
        # The old leader's lease expires in etcd; the "coordinator" elects node 2.
        await wait_until(_node_gone(store, 1), 15, "node 1's registration to expire")
        await move_leader(store, "fence", 0, 2, isr=(2,))
    finally:
        cluster.kill("node-2", signal.SIGCONT)
    await wait_until(lambda: new.leads("fence", 0), 15, "node 2 to lead")
    cluster.kill("node-1", signal.SIGCONT)
    answer = await asyncio.wait_for(parked, 20)
    error = from_partition_error(answer.error)
    assert error is not None and error.reason in ("NOT_LEADER", "REQUEST_TIMED_OUT"), error
    refused = await old.produce("fence", 0, [make_batch([b"refused"])])
    assert from_partition_error(refused.error).reason in (  # type: ignore[union-attr]
        "NOT_LEADER",
        "FENCED_LEADER_EPOCH",
    )
    # Node 1 follows node 2 again, is added back to the ISR, and its log matches node 2's.
    await wait_until(lambda: _isr_is(store, "fence", (1, 2)), 20, "node 1 back in the ISR")
    answer = await new.produce("fence", 0, [make_batch([b"after"])])
    assert from_partition_error(answer.error) is None, answer.error
    await move_leader(store, "fence", 0, 1)
    await wait_until(lambda: old.leads("fence", 0), 15, "node 1 to lead again")
    await wait_until(lambda: _reads(old, "fence", [b"kept", b"after"]), 10, "node 1's log")


def _node_gone(store: MetadataStore, node_id: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return all(node.node_id != node_id for node in await store.list_nodes())

    return check


async def _reads(client: NodeClient, topic: str, expected: list[bytes], start: int = 0) -> bool:
    return await client.read_all(topic, 0, start) == expected


async def test_sigterm_exits_cleanly_and_empty_replica_rebuilds(
    local_cluster: Callable[..., LocalCluster],
    store: MetadataStore,
    clients: Callable[[str], NodeClient],
) -> None:
    """SIGTERM drains and exits 0, releasing the node's registration at once; a follower
    restarted on an empty disk copies the leader's log, rejoins the ISR and can lead."""
    cluster = start_nodes(local_cluster, 2)
    await create_topic(
        store,
        "rebuild",
        [(1, (1, 2))],
        configs={"min_insync_replicas": "2", "replica_lag_max_ms": "1000"},
    )
    leader = clients(cluster.address("node-1"))
    await wait_until(lambda: leader.leads("rebuild", 0), 10, "node 1 to lead")
    values = [f"x{i}".encode() for i in range(5)]
    for value in values:
        answer = await leader.produce("rebuild", 0, [make_batch([value])])
        assert from_partition_error(answer.error) is None, answer.error
    cluster.kill("node-2", signal.SIGTERM)
    assert cluster.wait_exit("node-2", 15) == 0
    assert all(node.node_id != 2 for node in await store.list_nodes())
    await wait_until(lambda: _isr_is(store, "rebuild", (1,)), 10, "node 2 to leave the ISR")
    shutil.rmtree(cluster.base_dir / "node-2-data")
    cluster.restart("node-2")
    await wait_until(lambda: _isr_is(store, "rebuild", (1, 2)), 20, "node 2 back in the ISR")
    await move_leader(store, "rebuild", 0, 2)
    follower = clients(cluster.address("node-2"))
    await wait_until(lambda: _reads(follower, "rebuild", values), 15, "node 2 to serve the log")


async def test_new_replica_starts_at_leader_log_start_after_retention(
    local_cluster: Callable[..., LocalCluster],
    store: MetadataStore,
    clients: Callable[[str], NodeClient],
) -> None:
    """Retention moves the leader's log start past 0; a replica added later (empty disk)
    restarts its log at the leader's log start, catches up, joins the ISR and can lead."""
    cluster = start_nodes(local_cluster, 2, ["--retention-check-interval-ms", "100"])
    await create_topic(
        store, "ret", [(1, (1,))], configs={"segment_bytes": "1024", "retention_bytes": "2048"}
    )
    leader = clients(cluster.address("node-1"))
    await wait_until(lambda: leader.leads("ret", 0), 10, "node 1 to lead")
    for index in range(60):
        answer = await leader.produce("ret", 0, [make_batch([b"v%03d" % index])])
        assert from_partition_error(answer.error) is None, answer.error

    async def log_start() -> int:
        return (await leader.list_offset("ret", 0, storage_pb2.OFFSET_QUERY_EARLIEST)).offset

    await wait_until(lambda: _positive(log_start), 10, "retention to move the log start")
    found = await store.get_partition("ret", 0)
    assert found is not None
    record, revision = found
    assert await store.cas_partition(record.evolve(replicas=(1, 2)), revision) is not None
    await wait_until(lambda: _isr_is(store, "ret", (1, 2)), 15, "node 2 to join the ISR")
    await move_leader(store, "ret", 0, 2)
    follower = clients(cluster.address("node-2"))
    await wait_until(lambda: follower.leads("ret", 0), 10, "node 2 to lead")

    async def serves_retained_tail() -> bool:
        # Retention keeps running on both nodes: read from wherever the log starts now.
        start = (await follower.list_offset("ret", 0, storage_pb2.OFFSET_QUERY_EARLIEST)).offset
        expected = [b"v%03d" % index for index in range(start, 60)]
        return start > 0 and await follower.read_all("ret", 0, start) == expected

    await wait_until(serves_retained_tail, 10, "node 2 to serve the retained log")


async def _positive(value: Callable[[], Awaitable[int]]) -> bool:
    return await value() > 0
