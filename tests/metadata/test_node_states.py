"""Node states (issue 13: decommission) live in etcd under node_states/<id>: a cache that
starts later loads them (a new coordinator after failover), a running one follows them."""

from __future__ import annotations

from brook.services.metadata import MetadataCache
from brook.services.metadata.keys import KIND_NODE_STATE, Keys
from brook.services.metadata.model import NODE_STATE_DECOMMISSIONING, NodeStateRecord
from tests.harness.metadata import connected_store


def test_the_key_is_spelled_and_parsed_in_one_place() -> None:
    keys = Keys("c")
    assert keys.node_state(4) == b"/brook/c/node_states/4"
    parsed = keys.parse(keys.node_state(4))
    assert parsed is not None and (parsed.kind, parsed.parts) == (KIND_NODE_STATE, ("4",))
    assert keys.node_states_prefix == b"/brook/c/node_states/"


async def test_a_cache_loads_and_follows_node_states(etcd: str, cluster_name: str) -> None:
    record = NodeStateRecord(4, NODE_STATE_DECOMMISSIONING, 1234)
    async with connected_store(etcd, cluster_name) as store:
        await store.put_node_state(record)
        cache = MetadataCache(store)
        await cache.start()
        try:
            assert cache.node_states == {4: record}  # loaded with the snapshot
            await store.put_node_state(NodeStateRecord(5, NODE_STATE_DECOMMISSIONING))
            assert await cache.wait_for(lambda c: 5 in c.node_states, 5.0)  # followed
            await store.delete_node_state(4)
            assert await cache.wait_for(lambda c: 4 not in c.node_states, 5.0)
            assert NodeStateRecord.from_json(record.to_json()) == record
        finally:
            await cache.stop()
