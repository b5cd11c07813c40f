"""GroupStore against a real etcd: coalescing, chunking, fencing, deletion, reload."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from brook.errors import BrookError
from brook.services.metadata.group_store import GroupStore
from brook.services.metadata.store import MetadataStore
from tests.harness.metadata import connected_store

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(etcd: str, cluster_name: str) -> AsyncIterator[MetadataStore]:
    async with connected_store(etcd, cluster_name, request_timeout_s=5.0) as connected:
        yield connected


@pytest.fixture
async def groups(store: MetadataStore) -> AsyncIterator[GroupStore]:
    group_store = GroupStore(store, flush_interval_ms=5)
    await group_store.start()
    try:
        yield group_store
    finally:
        await group_store.stop()


def offset_json(offset: int, metadata: str = "") -> bytes:
    return json.dumps({"offset": offset, "metadata": metadata}).encode()


async def test_concurrent_commits_share_few_transactions(
    groups: GroupStore, store: MetadataStore
) -> None:
    """200 concurrent single-partition commits to one group (several per partition) are
    acknowledged after a handful of transactions, and etcd holds the latest offset of each
    partition."""
    commits = [groups.commit_offsets("g", {("t", i % 50): offset_json(i)}) for i in range(200)]
    await asyncio.gather(*commits)
    assert groups.stats.txns <= 4, groups.stats
    assert groups.stats.writes_coalesced >= 150
    records, offsets = await GroupStore(store).load()
    assert records == []
    stored = {tp: json.loads(v)["offset"] for tp, v in offsets["g"].items()}
    assert stored == {("t", p): 150 + p for p in range(50)}


async def test_big_commit_is_chunked_under_etcd_limits(
    groups: GroupStore, store: MetadataStore
) -> None:
    """One commit of 700 partitions with 4 KiB metadata each (~2.9 MB) is split into
    transactions of at most 128 operations and under 1 MiB, and all of it is stored."""
    offsets = {("big", p): offset_json(p, "m" * 4096) for p in range(700)}
    await groups.commit_offsets("g", offsets)
    assert groups.stats.txns >= 3
    assert groups.stats.ops == 700
    assert groups.stats.bytes / groups.stats.txns < (1 << 20)
    _, loaded = await GroupStore(store).load()
    assert len(loaded["g"]) == 700


async def test_groups_share_transactions(groups: GroupStore) -> None:
    """Commits to 10 groups in one flush window share transactions: never more than one
    per group per flush, and here a single one (10 small writes fit in 128 operations)."""
    await asyncio.gather(
        *(groups.commit_offsets(f"g{i}", {("t", 0): offset_json(i)}) for i in range(10))
    )
    assert groups.stats.txns <= groups.stats.flushes
    assert groups.stats.ops == 10


async def test_records_and_deletes(groups: GroupStore, store: MetadataStore) -> None:
    """A group record and offsets round-trip through load(); delete_offsets removes single
    partitions; delete_group removes the record and every offset of that group only."""
    await groups.save_group("a/b", {"group_id": "a/b", "group_epoch": 3})
    await groups.commit_offsets("a/b", {("t", 0): offset_json(1), ("u", 1): offset_json(2)})
    await groups.commit_offsets("other", {("t", 0): offset_json(9)})
    await groups.delete_offsets("a/b", [("u", 1)])
    records, offsets = await GroupStore(store).load()
    assert records == [{"group_id": "a/b", "group_epoch": 3}]
    assert set(offsets["a/b"]) == {("t", 0)}
    await groups.delete_group("a/b")
    records, offsets = await GroupStore(store).load()
    assert records == [] and set(offsets) == {"other"}


async def test_fenced_writes_fail_with_not_coordinator(store: MetadataStore) -> None:
    """With a fence on the role key, writes succeed while the key is the one we created and
    fail with NOT_COORDINATOR (calling on_fenced) once another holder re-created it."""
    role_key = store.keys.role("groups")
    await store.client.put(role_key, b"me")
    created = (await store.client.get(role_key)).create_revision
    fenced: list[bool] = []
    group_store = GroupStore(store, on_fenced=lambda: fenced.append(True))
    group_store.set_fence(role_key, created)
    await group_store.start()
    try:
        await group_store.commit_offsets("g", {("t", 0): offset_json(1)})
        await store.client.delete(role_key)
        await store.client.put(role_key, b"someone else")
        with pytest.raises(BrookError) as error:
            await group_store.commit_offsets("g", {("t", 0): offset_json(2)})
        assert error.value.reason == "NOT_COORDINATOR"
        assert fenced == [True]
    finally:
        await group_store.stop()
    _, offsets = await GroupStore(store).load()
    assert json.loads(offsets["g"][("t", 0)])["offset"] == 1


async def test_stop_flushes_pending_then_refuses(store: MetadataStore) -> None:
    """stop() writes what is pending before returning; afterwards writes are refused."""
    group_store = GroupStore(store, flush_interval_ms=50)
    await group_store.start()
    pending = asyncio.ensure_future(group_store.commit_offsets("g", {("t", 3): offset_json(7)}))
    await asyncio.sleep(0)  # let the commit enqueue
    await group_store.stop()
    await pending
    with pytest.raises(BrookError, match="NOT_COORDINATOR"):
        await group_store.commit_offsets("g", {("t", 3): offset_json(8)})
    _, offsets = await GroupStore(store).load()
    assert json.loads(offsets["g"][("t", 3)])["offset"] == 7
