"""MetadataCache against a real etcd: snapshot, watch, reload after etcd restarts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from brook.services.metadata import (
    Endpoint,
    MetadataCache,
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


def _topic(name: str, count: int) -> tuple[TopicRecord, list[PartitionRecord]]:
    topic = TopicRecord(
        name=name, topic_id=f"{name}-id", partition_count=count, replication_factor=1
    )
    parts = [
        PartitionRecord(
            topic=name, partition=i, topic_id=topic.topic_id, replicas=(1,), leader=1, isr=(1,)
        )
        for i in range(count)
    ]
    return topic, parts


async def test_snapshot_then_watch(store: MetadataStore) -> None:
    """State written before start is in the first snapshot; changes after start arrive by
    watch (puts, CAS updates, deletes, lease expiry of a role), and listeners are called."""
    await store.create_topic(*_topic("before", 2))
    node_lease = await store.register_node(NodeInfo(1, "127.0.0.1:1"), ttl_s=5)
    cache = MetadataCache(store)
    calls: list[int] = []
    cache.add_listener(lambda: calls.append(cache.revision))
    await cache.start()
    try:
        assert set(cache.topics) == {"before"}
        assert len(cache.topic_partitions("before")) == 2
        assert set(cache.nodes) == {1}
        assert cache.cluster_id == await store.cluster_id()

        await store.create_topic(*_topic("after", 1))
        assert await cache.wait_for(lambda c: "after" in c.topics, 5)
        assert len(cache.topic_partitions("after")) == 1

        record, revision = (await store.get_partition("after", 0)) or (None, 0)
        assert record is not None
        new_revision = await store.cas_partition(record.evolve(leader=2, leader_epoch=1), revision)
        assert await cache.wait_for(
            lambda c: c.partition_revisions.get(("after", 0)) == new_revision, 5
        )
        assert cache.partitions[("after", 0)].leader == 2

        role_lease = await store.campaign("coordinator", Endpoint("c1", "127.0.0.1:9"), ttl_s=5)
        assert await cache.wait_for(lambda c: c.coordinator is not None, 5)
        await role_lease.revoke()
        assert await cache.wait_for(lambda c: c.coordinator is None, 5)

        await node_lease.revoke()
        assert await cache.wait_for(lambda c: not c.nodes, 5)
        await store.delete_topic("before")
        assert await cache.wait_for(
            lambda c: "before" not in c.topics and ("before", 0) not in c.partitions, 5
        )
        assert calls, "listeners were never called"
        assert cache.revision >= new_revision
    finally:
        await cache.stop()


async def test_wait_for_times_out(store: MetadataStore) -> None:
    """wait_for returns False once its bound passes with the predicate still false."""
    cache = MetadataCache(store)
    await cache.start()
    try:
        assert not await cache.wait_for(lambda c: "never" in c.topics, 0.2)
    finally:
        await cache.stop()


async def test_reload_after_etcd_restart(etcd_server: EtcdServer, cluster_name: str) -> None:
    """When etcd restarts (the watch stream breaks), the cache reloads and keeps following:
    a topic created after the restart shows up."""
    store = MetadataStore(etcd_server.address, cluster_name=cluster_name, request_timeout_s=1.0)
    await store.connect()
    cache = MetadataCache(store)
    await cache.start()
    try:
        await store.create_topic(*_topic("one", 1))
        assert await cache.wait_for(lambda c: "one" in c.topics, 5)
        etcd_server.restart()
        await store.create_topic(*_topic("two", 1))
        assert await cache.wait_for(lambda c: "two" in c.topics, 10)
        assert "one" in cache.topics
    finally:
        await cache.stop()
        await store.close()
