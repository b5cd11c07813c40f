"""MetadataStore and Lease against a real etcd."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from brook.errors import BrookError
from brook.services.metadata import (
    Endpoint,
    MetadataStore,
    NodeInfo,
    PartitionRecord,
    TopicRecord,
)
from tests.harness.etcd import EtcdServer
from tests.harness.metadata import connected_store

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(etcd: str, cluster_name: str) -> AsyncIterator[MetadataStore]:
    async with connected_store(etcd, cluster_name, request_timeout_s=2.0) as connected:
        yield connected


def _topic(
    name: str, count: int, topic_id: str = "id-1"
) -> tuple[TopicRecord, list[PartitionRecord]]:
    topic = TopicRecord(name=name, topic_id=topic_id, partition_count=count, replication_factor=1)
    parts = [
        PartitionRecord(
            topic=name, partition=i, topic_id=topic_id, replicas=(1,), leader=1, isr=(1,)
        )
        for i in range(count)
    ]
    return topic, parts


async def test_cluster_id_is_created_once(store: MetadataStore) -> None:
    """The first cluster_id call creates the id; later calls (any store) read the same one."""
    first = await store.cluster_id()
    other = MetadataStore(store.etcd_address, cluster_name=store.cluster_name)
    await other.connect()
    try:
        assert await other.cluster_id() == first
    finally:
        await other.close()
    assert len(first) == 32


async def test_create_get_list_delete_topic(store: MetadataStore) -> None:
    """A topic and its partitions round-trip; a second create of the name fails with
    TOPIC_ALREADY_EXISTS; delete removes the topic and every partition key."""
    topic, parts = _topic("orders", 3)
    await store.create_topic(topic, parts)
    found = await store.get_topic("orders")
    assert found is not None and found[0] == topic
    assert [p for p, _ in await store.get_partitions("orders")] == parts
    assert [t.name for t in await store.list_topics()] == ["orders"]

    with pytest.raises(BrookError) as error:
        await store.create_topic(*_topic("orders", 1, topic_id="id-2"))
    assert error.value.reason == "TOPIC_ALREADY_EXISTS"

    # A retry of the same create (same topic id) is treated as success.
    await store.create_topic(topic, parts)

    deleted = await store.delete_topic("orders")
    assert deleted.topic_id == "id-1"
    assert await store.get_topic("orders") is None
    assert await store.get_partitions("orders") == []
    with pytest.raises(BrookError) as error:
        await store.delete_topic("orders")
    assert error.value.reason == "TOPIC_NOT_FOUND"


async def test_large_topic_is_written_in_chunks(store: MetadataStore) -> None:
    """A topic with more partitions than one etcd transaction allows (128 ops) is stored
    whole; a name that merely shares a prefix ('big' vs 'big2') is not affected."""
    await store.create_topic(*_topic("big2", 1))
    topic, parts = _topic("big", 350)
    await store.create_topic(topic, parts)
    assert len(await store.get_partitions("big")) == 350
    await store.delete_topic("big")
    assert len(await store.get_partitions("big2")) == 1


async def test_cas_partition_wins_once(store: MetadataStore) -> None:
    """Two writers holding the same mod revision: the first CAS wins and returns the new
    revision; the second gets None and, after re-reading, sees the winner's record."""
    topic, parts = _topic("cas", 1)
    await store.create_topic(topic, parts)
    found = await store.get_partition("cas", 0)
    assert found is not None
    record, revision = found
    first = record.evolve(leader=2, leader_epoch=1)
    second = record.evolve(leader=3, leader_epoch=1)
    new_revision = await store.cas_partition(first, revision)
    assert new_revision is not None and new_revision > revision
    assert await store.cas_partition(second, revision) is None
    again = await store.get_partition("cas", 0)
    assert again == (first, new_revision)


async def test_put_topic_cas(store: MetadataStore) -> None:
    """put_topic writes only against the current mod revision."""
    topic, parts = _topic("cfg", 1)
    await store.create_topic(topic, parts)
    found = await store.get_topic("cfg")
    assert found is not None
    _, revision = found
    changed = TopicRecord(**{**topic.__dict__, "configs": {"retention_ms": "1000"}})
    assert await store.put_topic(changed, revision)
    assert not await store.put_topic(topic, revision)
    now = await store.get_topic("cfg")
    assert now is not None and now[0].configs == {"retention_ms": "1000"}


async def test_register_node_and_revoke(store: MetadataStore) -> None:
    """A registered node is listed while its lease lives and disappears on revoke."""
    lease = await store.register_node(
        NodeInfo(7, "127.0.0.1:1", rack="r1", process_id="p"), ttl_s=5
    )
    assert [n.node_id for n in await store.list_nodes()] == [7]
    assert lease.time_left_s() > 0
    await lease.revoke()
    assert await store.list_nodes() == []


async def test_register_node_twice_waits_then_fails(store: MetadataStore) -> None:
    """A second process registering a live node id is refused after its bounded wait."""
    lease = await store.register_node(NodeInfo(8, "a:1", process_id="p1"), ttl_s=5)
    try:
        with pytest.raises(BrookError) as error:
            await store.register_node(NodeInfo(8, "b:1", process_id="p2"), wait_timeout_s=0.5)
        assert error.value.reason == "INVALID_REQUEST"
    finally:
        await lease.revoke()


async def test_campaign_hands_over_on_revoke(store: MetadataStore) -> None:
    """The first campaigner wins at once; a second waits until the first revokes, then
    wins (woken by the watch, well before the TTL)."""
    first = Endpoint("a", "127.0.0.1:1")
    second = Endpoint("b", "127.0.0.1:2")
    lease_a = await store.campaign("coordinator", first, ttl_s=10)
    assert await store.get_role_holder("coordinator") == first
    waiting = asyncio.create_task(store.campaign("coordinator", second, ttl_s=10))
    await asyncio.sleep(0.3)  # give the waiter time to find the role taken
    assert not waiting.done()
    started = time.monotonic()
    await lease_a.revoke()
    lease_b = await asyncio.wait_for(waiting, 5)
    assert time.monotonic() - started < 3
    assert await store.get_role_holder("coordinator") == second
    await lease_b.revoke()
    assert await store.get_role_holder("coordinator") is None


async def test_lease_lost_when_etcd_hangs(etcd_server: EtcdServer, cluster_name: str) -> None:
    """With etcd SIGSTOPped longer than the TTL, `lost` is set before the TTL has passed
    since the last refresh (the holder steps down before the server could expire it)."""
    store = MetadataStore(etcd_server.address, cluster_name=cluster_name, request_timeout_s=1.0)
    await store.connect()
    try:
        lease = await store.grant_lease(2)
        await asyncio.sleep(0.1)
        assert not lease.lost.is_set()
        etcd_server.pause()
        paused_at = time.monotonic()
        try:
            await asyncio.wait_for(lease.lost.wait(), timeout=lease.ttl_s + 1)
            lost_after = time.monotonic() - paused_at
        finally:
            etcd_server.resume()
        # The last successful refresh was at most ttl/3 before the pause.
        assert lost_after < lease.ttl_s
        assert lease.time_left_s() == 0
    finally:
        await store.close()


async def test_connect_fails_bounded_when_etcd_is_down(cluster_name: str) -> None:
    """connect to a port nothing listens on gives COORDINATOR_NOT_AVAILABLE within its bound."""
    from tests.harness.ports import free_port

    store = MetadataStore(f"127.0.0.1:{free_port()}", cluster_name=cluster_name)
    started = time.monotonic()
    with pytest.raises(BrookError) as error:
        await store.connect(timeout_s=1.0)
    assert error.value.reason == "COORDINATOR_NOT_AVAILABLE"
    assert time.monotonic() - started < 5
    await store.close()
