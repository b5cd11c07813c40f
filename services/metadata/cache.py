"""MetadataCache: a process's watch-fed snapshot of the cluster map.

`start` reads everything the cache holds at one etcd revision R (`read_snapshot`), then
watches the cluster prefix from R+1, so no change is missed or applied twice. When the
watch breaks (etcd restarted, connection lost, revision compacted) the cache reloads a
fresh snapshot and watches again, retrying with capped back-off until `stop`.

Readers use the public dicts directly; they are replaced or mutated only on the event
loop, between awaits, so a reader that does not await sees a consistent view. Listeners
run on the loop once per applied batch of events (events that arrive together are
applied together, then listeners are called once).

Thread-safety: one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from brook.clock import SYSTEM_CLOCK, Clock
from brook.services.metadata import keys as keyspace
from brook.services.metadata.keys import prefix_range_end
from brook.services.metadata.model import (
    Endpoint,
    NodeInfo,
    NodeStateRecord,
    PartitionRecord,
    TopicRecord,
)
from brook.services.metadata.store import MetadataStore
from brook.services.metadata.watched import WatchedView

log = logging.getLogger("brook.metadata.cache")

# Keys under the cluster prefix that other caches follow: no change to this view.
_OWN_CACHES = frozenset({keyspace.KIND_GROUP, keyspace.KIND_OFFSET, keyspace.KIND_ACL,
                         keyspace.KIND_QUOTA, keyspace.KIND_REPLICATION_THROTTLE})  # fmt: skip


class MetadataCache(WatchedView):
    """Watch-fed snapshot of nodes, roles, topics and partitions; one per process."""

    def __init__(self, store: MetadataStore, *, clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(store, "metadata", clock)
        self.cluster_id = ""
        self.nodes: dict[int, NodeInfo] = {}
        # Operator-set node states (decommission), live nodes or not; absent: active.
        self.node_states: dict[int, NodeStateRecord] = {}
        self.topics: dict[str, TopicRecord] = {}
        self.partitions: dict[tuple[str, int], PartitionRecord] = {}
        self.partition_revisions: dict[tuple[str, int], int] = {}
        self.topic_revisions: dict[str, int] = {}
        self.coordinator: Endpoint | None = None
        self.group_manager: Endpoint | None = None
        self._listeners: list[Callable[[], None]] = []
        self._notify_scheduled = False

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Loads the first snapshot and starts following changes (raises if etcd is down)."""
        self.cluster_id = await self.store.cluster_id()
        await super().start()

    # -- queries -----------------------------------------------------------------------
    def topic_partitions(self, topic: str) -> list[PartitionRecord]:
        """The partitions of `topic` (indexes below its partition count), by index."""
        record = self.topics.get(topic)
        if record is None:
            return []
        found = (self.partitions.get((topic, index)) for index in range(record.partition_count))
        return [p for p in found if p is not None and p.topic_id == record.topic_id]

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Calls `callback()` on the loop after each applied batch of events or reload."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(callback)

    # -- internals ---------------------------------------------------------------------
    async def _load(self) -> None:
        """Replaces the whole view with a snapshot and opens a watch just after it."""
        revision, kvs = await self.store.read_snapshot()
        nodes: dict[int, NodeInfo] = {}
        node_states: dict[int, NodeStateRecord] = {}
        topics: dict[str, TopicRecord] = {}
        topic_revisions: dict[str, int] = {}
        partitions: dict[tuple[str, int], PartitionRecord] = {}
        partition_revisions: dict[tuple[str, int], int] = {}
        roles: dict[str, Endpoint] = {}
        for kv in kvs:
            parsed = self.store.keys.parse(bytes(kv.key))
            if parsed is None:
                continue
            try:
                value = bytes(kv.value)
                if parsed.kind == keyspace.KIND_NODE:
                    node = NodeInfo.from_json(value)
                    nodes[node.node_id] = node
                elif parsed.kind == keyspace.KIND_NODE_STATE:
                    state = NodeStateRecord.from_json(value)
                    node_states[state.node_id] = state
                elif parsed.kind == keyspace.KIND_TOPIC:
                    topics[parsed.parts[0]] = TopicRecord.from_json(value)
                    topic_revisions[parsed.parts[0]] = kv.mod_revision
                elif parsed.kind == keyspace.KIND_PARTITION:
                    index = (parsed.parts[0], int(parsed.parts[1]))
                    partitions[index] = PartitionRecord.from_json(value)
                    partition_revisions[index] = kv.mod_revision
                elif parsed.kind == keyspace.KIND_ROLE:
                    roles[parsed.parts[0]] = Endpoint.from_json(value)
                elif parsed.kind == keyspace.KIND_CLUSTER_ID:
                    self.cluster_id = value.decode()
            except (ValueError, TypeError, KeyError) as error:
                log.error("skipping unreadable key %r: %s", bytes(kv.key), error)
        await self._cancel_watch()
        prefix = self.store.keys.prefix
        self._watch = await self.store.client.watch(
            prefix, range_end=prefix_range_end(prefix), start_revision=revision + 1
        )
        # Swap in the new view only once the watch exists, so the view and the stream of
        # changes to it start at the same revision.
        self.nodes = nodes
        self.node_states = node_states
        self.topics = topics
        self.topic_revisions = topic_revisions
        self.partitions = partitions
        self.partition_revisions = partition_revisions
        self.coordinator = roles.get(keyspace.ROLE_COORDINATOR)
        self.group_manager = roles.get(keyspace.ROLE_GROUPS)
        self.revision = revision
        self.loaded.set()
        self._schedule_notify()

    def _apply(self, event: Any) -> None:
        kv = event.kv
        parsed = self.store.keys.parse(kv.key)
        self.revision = max(self.revision, kv.mod_revision)
        if parsed is None or parsed.kind in _OWN_CACHES:
            return
        deleted = event.kind == "DELETE"
        try:
            if parsed.kind == keyspace.KIND_NODE:
                node_id = int(parsed.parts[0])
                if deleted:
                    self.nodes.pop(node_id, None)
                else:
                    self.nodes[node_id] = NodeInfo.from_json(kv.value)
            elif parsed.kind == keyspace.KIND_NODE_STATE:
                node_id = int(parsed.parts[0])
                if deleted:
                    self.node_states.pop(node_id, None)
                else:
                    self.node_states[node_id] = NodeStateRecord.from_json(kv.value)
            elif parsed.kind == keyspace.KIND_TOPIC:
                name = parsed.parts[0]
                if deleted:
                    self.topics.pop(name, None)
                    self.topic_revisions.pop(name, None)
                else:
                    self.topics[name] = TopicRecord.from_json(kv.value)
                    self.topic_revisions[name] = kv.mod_revision
            elif parsed.kind == keyspace.KIND_PARTITION:
                index = (parsed.parts[0], int(parsed.parts[1]))
                if deleted:
                    self.partitions.pop(index, None)
                    self.partition_revisions.pop(index, None)
                else:
                    self.partitions[index] = PartitionRecord.from_json(kv.value)
                    self.partition_revisions[index] = kv.mod_revision
            elif parsed.kind == keyspace.KIND_ROLE:
                endpoint = None if deleted else Endpoint.from_json(kv.value)
                if parsed.parts[0] == keyspace.ROLE_COORDINATOR:
                    self.coordinator = endpoint
                elif parsed.parts[0] == keyspace.ROLE_GROUPS:
                    self.group_manager = endpoint
            elif parsed.kind == keyspace.KIND_CLUSTER_ID and not deleted:
                self.cluster_id = kv.value.decode()
        except (ValueError, TypeError, KeyError) as error:
            log.error("skipping unreadable key %r: %s", kv.key, error)
            return
        self._schedule_notify()

    def _schedule_notify(self) -> None:
        # Coalesce: the callback runs once the loop regains control, i.e. after every
        # event already queued by the watch has been applied.
        if not self._notify_scheduled:
            self._notify_scheduled = True
            asyncio.get_running_loop().call_soon(self._notify)

    def _notify(self) -> None:
        self._notify_scheduled = False
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                log.exception("metadata listener failed")
