"""GroupManager: the asyncio driver around the pure GroupRegistry.

It owns what the core must not: etcd persistence (GroupStore), the clock, the timer that
expires sessions and revocations, topic metadata from the MetadataCache, and log offsets
for lag and resets. The order is always: the core decides, the shell persists the
changed group records, and only then answers, so a standby that loads the records
continues exactly where this process stopped.

Lifecycle: a process creates one manager; `activate()` after winning the "groups" role
(loads everything from etcd), `deactivate()` when the lease is lost, fenced, or the
process stops. While inactive every call raises NOT_COORDINATOR.

Thread-safety: one event loop. Core calls never await, so each sees a consistent state.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from brook.clock import SYSTEM_CLOCK, Clock
from brook.errors import BrookError
from brook.services.common import logs, metrics
from brook.services.common.metrics import group_metrics
from brook.services.groups.limits import (
    COMMIT_FLUSH_INTERVAL_MS_DEFAULT,
    TICK_INTERVAL_MS_MAX,
    TICK_INTERVAL_MS_MIN,
)
from brook.services.groups.log_offsets import EARLIEST, LATEST, TIMESTAMP, LogOffsets
from brook.services.groups.state import (
    NO_OFFSET,
    Group,
    GroupConfig,
    GroupRegistry,
    GroupState,
    HeartbeatInput,
    HeartbeatOutput,
    OffsetCommitInput,
    OffsetRecord,
    TopicsChange,
    validate_group_id,
)
from brook.services.metadata.cache import MetadataCache
from brook.services.metadata.group_store import GroupStore
from brook.services.metadata.store import MetadataStore
from brook.structs import TopicPartition

log = logging.getLogger("brook.groups")


@dataclass(frozen=True)
class OffsetChangeResult:
    """One partition of a reset: before and after."""

    topic: str
    partition: int
    previous_offset: int
    new_offset: int


@dataclass(frozen=True)
class ResetTarget:
    """Where ResetOffsets moves offsets; exactly one field is meaningful (by `kind`)."""

    kind: str  # "earliest" | "latest" | "timestamp" | "offset" | "shift"
    value: int = 0


@dataclass(frozen=True)
class PartitionLagInfo:
    topic: str
    partition: int
    committed_offset: int
    log_end_offset: int
    lag: int
    member_id: str
    metadata: str


class GroupManager:
    """The group manager's state and persistence; active only while holding the role."""

    def __init__(
        self,
        store: MetadataStore,
        cache: MetadataCache,
        *,
        config: GroupConfig | None = None,
        flush_interval_ms: int = COMMIT_FLUSH_INTERVAL_MS_DEFAULT,
        clock: Clock = SYSTEM_CLOCK,
        topic_visible: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.store = store
        # (principal, topic) -> may describe: what a member's regex may match (None: all).
        self.topic_visible = topic_visible
        self.cache = cache
        self.config = config or GroupConfig()
        self.flush_interval_ms = flush_interval_ms
        self._clock = clock
        self.registry = self._new_registry()
        self.group_store: GroupStore | None = None
        self.log_offsets = LogOffsets(cache)
        self.active = False
        # Set when etcd refused a write because the role key is no longer ours.
        self.fenced = asyncio.Event()
        self._inflight: dict[str, asyncio.Future[None]] = {}
        self._versions: dict[str, int] = {}
        self._changed = asyncio.Event()
        self._tick_task: asyncio.Task[None] | None = None
        self._topics_seen: dict[str, int] | None = None
        self._background: set[asyncio.Future[None]] = set()
        # Group epochs as last persisted: an increase is a rebalance (metrics, log line).
        self._epochs: dict[str, int] = {}
        self.metrics = group_metrics()
        metrics.set_role_active("groups", False)
        cache.add_listener(self._on_metadata)

    def _new_registry(self) -> GroupRegistry:
        return GroupRegistry(self.config, topic_visible=self.topic_visible)

    def on_acls_changed(self) -> None:
        """The ACLs changed (the ACL cache's listener): regexes are resolved again, for
        what each member's principal may describe now."""
        if not self.active:
            return
        changed = self.registry.refresh_subscriptions(self._now())
        if changed:
            log.info("ACLs changed: regex subscriptions of %d groups re-resolved", len(changed))
        self._persist_dirty()

    # -- lifecycle -----------------------------------------------------------------
    async def activate(self, role_key: bytes, role_create_revision: int) -> None:
        """Loads groups, targets and offsets from etcd and starts acting."""
        self.fenced.clear()
        group_store = GroupStore(
            self.store, flush_interval_ms=self.flush_interval_ms, on_fenced=self.fenced.set
        )
        group_store.set_fence(role_key, role_create_revision)
        records, raw_offsets = await group_store.load()
        offsets: dict[str, dict[TopicPartition, OffsetRecord]] = {}
        for group_id, partitions in raw_offsets.items():
            for tp, value in partitions.items():
                try:
                    offsets.setdefault(group_id, {})[tp] = OffsetRecord.from_json(value)
                except (ValueError, KeyError, TypeError) as error:
                    log.error("skipping unreadable offset %s %s: %s", group_id, tp, error)
        registry = self._new_registry()
        topics, ids = self._topics()
        registry.set_topics(topics, self._now(), ids)
        good_records = []
        for record in records:
            try:
                Group.from_record(record, 0)
                good_records.append(record)
            except (ValueError, KeyError, TypeError, AssertionError) as error:
                log.error("skipping unreadable group record %r: %s", record.get("group_id"), error)
        change = registry.load(good_records, offsets, self._now())
        await group_store.start()
        self.group_store = group_store
        self.registry = registry
        self._topics_seen = topics
        self._epochs = {group_id: g.group_epoch for group_id, g in registry.groups.items()}
        self.active = True
        metrics.set_role_active("groups", True)
        self._apply_topics_change(change)
        self._persist_dirty()
        self._tick_task = asyncio.get_running_loop().create_task(self._tick(), name="group-tick")
        log.info(
            "active group manager: %d groups, %d committed offsets",
            len(registry.groups),
            sum(len(g.offsets) for g in registry.groups.values()),
        )
        self._notify_all()

    async def deactivate(self, *, flush: bool) -> None:
        """Stops acting at once; with flush, first writes what is pending (clean stop)."""
        if not self.active and self.group_store is None:
            return
        self.active = False
        metrics.set_role_active("groups", False)
        task, self._tick_task = self._tick_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        group_store, self.group_store = self.group_store, None
        if group_store is not None:
            await group_store.stop(flush=flush)
        self.registry = self._new_registry()
        self._inflight.clear()
        self._topics_seen = None
        self._notify_all()
        log.info("group manager inactive")

    async def close(self) -> None:
        await self.deactivate(flush=True)
        self.cache.remove_listener(self._on_metadata)
        await self.log_offsets.close()

    def require_active(self) -> GroupStore:
        if not self.active or self.group_store is None:
            holder = self.cache.group_manager
            metadata = {"group_manager_address": holder.address} if holder else {}
            raise BrookError(
                "NOT_COORDINATOR",
                "this group manager is a standby; ask GetMetadata for the active one",
                metadata,
            )
        return self.group_store

    def _now(self) -> int:
        """Monotonic milliseconds: what session and rebalance timeouts are measured on."""
        return int(self._clock.monotonic_s() * 1000)

    def _wall_ms(self) -> int:
        """Wall-clock milliseconds: the commit timestamps clients see."""
        return self._clock.now_ms()

    # -- persistence -----------------------------------------------------------------
    def _persist_dirty(self) -> None:
        """Enqueues the records of every changed group (they are written in the next
        flush); callers that must answer after durability await `_durable(group_id)`."""
        group_store = self.group_store
        if group_store is None:
            return
        for group_id in sorted(self.registry.dirty):
            group = self.registry.groups.get(group_id)
            if group is None:
                self._epochs.pop(group_id, None)
                continue
            self._note_epoch(group)
            # Serialized when the flush starts: one JSON per group per flush, however many
            # heartbeats changed it meanwhile (a large group's record is tens of KB).
            future = group_store.save_group(group_id, self._record_of(group_id))
            self._inflight[group_id] = future
            future.add_done_callback(functools.partial(self._saved, group_id))
            self._bump_version(group_id)
        self.registry.dirty.clear()

    def _note_epoch(self, group: Group) -> None:
        """Counts and logs a rebalance when the group's epoch moved since last persisted."""
        previous = self._epochs.get(group.group_id, 0)
        if group.group_epoch > previous:
            self.metrics.rebalances.inc(group.group_epoch - previous)
            log.info("group %s: rebalance to epoch %d, %d members", group.group_id,
                     group.group_epoch, len(group.members),
                     extra={"group": group.group_id, "epoch": group.group_epoch})
        self._epochs[group.group_id] = group.group_epoch

    def _record_of(self, group_id: str) -> Callable[[], dict[str, Any] | None]:
        registry = self.registry

        def build() -> dict[str, Any] | None:
            group = registry.groups.get(group_id)
            return group.to_record() if group is not None else None

        return build

    def _saved(self, group_id: str, future: asyncio.Future[None]) -> None:
        if self._inflight.get(group_id) is future:
            del self._inflight[group_id]
        if future.cancelled() or future.exception() is not None:
            if self.active:  # memory is ahead of etcd: save again with the next change
                self.registry.dirty.add(group_id)

    async def _durable(self, group_id: str) -> None:
        """Returns once the latest change of `group_id` is in etcd."""
        self._persist_dirty()
        future = self._inflight.get(group_id)
        if future is not None:
            await asyncio.shield(future)

    def _bump_version(self, group_id: str) -> None:
        self._versions[group_id] = self._versions.get(group_id, 0) + 1
        self._notify_all()

    def _notify_all(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def version(self, group_id: str) -> int:
        return self._versions.get(group_id, 0)

    async def wait_changed(self, timeout_s: float) -> None:
        """Returns when any group changes, or after timeout_s."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout_s)

    def _background_task(self, future: asyncio.Future[None], what: str) -> None:
        def done(f: asyncio.Future[None]) -> None:
            self._background.discard(f)
            if not f.cancelled() and f.exception() is not None:
                log.warning("%s failed: %s", what, f.exception())

        self._background.add(future)
        future.add_done_callback(done)

    # -- timers and metadata -------------------------------------------------------------
    async def _tick(self) -> None:
        while self.active:
            now = self._now()
            changed = self.registry.tick(now)
            if changed:
                log.info("members expired in %s", ", ".join(sorted(changed)))
                self._persist_dirty()
            deadline = self.registry.next_deadline_ms()
            wait_ms = TICK_INTERVAL_MS_MAX if deadline is None else deadline - now + 1
            wait_ms = max(TICK_INTERVAL_MS_MIN, min(TICK_INTERVAL_MS_MAX, wait_ms))
            await asyncio.sleep(wait_ms / 1000)  # a timer: expiry is driven by the clock

    def _topics(self) -> tuple[dict[str, int], dict[str, str]]:
        topics = {name: t.partition_count for name, t in self.cache.topics.items()}
        ids = {name: t.topic_id for name, t in self.cache.topics.items()}
        return topics, ids

    def _on_metadata(self) -> None:
        if not self.active:
            return
        topics, ids = self._topics()
        if topics == self._topics_seen and ids == self.registry.topic_ids:
            return
        self._topics_seen = topics
        change = self.registry.set_topics(topics, self._now(), ids)
        self._apply_topics_change(change)
        self._persist_dirty()

    def _apply_topics_change(self, change: TopicsChange) -> None:
        if self.group_store is None:
            return
        for group_id, partitions in change.deleted_offsets.items():
            future = self.group_store.delete_offsets(group_id, partitions)
            self._background_task(future, f"deleting offsets of deleted topics in {group_id}")

    # -- group protocol ------------------------------------------------------------------
    async def heartbeat(self, request: HeartbeatInput) -> HeartbeatOutput:
        self.require_active()
        with logs.context(group=request.group_id, member=request.member_id or None):
            try:
                output = self.registry.heartbeat(request, self._now())
            except BrookError:
                self._persist_dirty()  # a refused call may still have changed the group
                raise
            await self._durable(request.group_id)
        return output

    async def commit(
        self,
        group_id: str,
        member_id: str,
        member_epoch: int,
        offsets: list[OffsetCommitInput],
        principal: str | None = None,
    ) -> dict[TopicPartition, BrookError | None]:
        group_store = self.require_active()
        results = self.registry.check_commit(
            group_id, member_id, member_epoch, offsets, principal
        )
        now_ms = self._wall_ms()
        records = {
            TopicPartition.of(c): OffsetRecord(c.offset, c.leader_epoch, c.metadata, now_ms)
            for c in offsets
            if results.get(TopicPartition.of(c)) is None
        }
        await self._store_offsets(group_store, group_id, records)
        return results

    async def _store_offsets(
        self, group_store: GroupStore, group_id: str, records: Mapping[TopicPartition, OffsetRecord]
    ) -> None:
        if not records:
            return
        started = time.perf_counter()
        await group_store.commit_offsets(group_id, {tp: r.to_json() for tp, r in records.items()})
        self.metrics.commit_duration.observe(time.perf_counter() - started)
        self.metrics.offset_commits.inc(len(records))
        if self.group_store is not group_store:
            return  # stepped down meanwhile: the successor loads what etcd holds
        self.registry.apply_offsets(group_id, records)
        self._persist_dirty()  # a group created by its first commit gets a record
        self._bump_version(group_id)

    def fetch_offsets(
        self, group_id: str, wanted: list[tuple[str, list[int]]]
    ) -> list[tuple[TopicPartition, OffsetRecord | None]]:
        """Committed offsets: of the named partitions (None when absent), or all."""
        self.require_active()
        validate_group_id(group_id)
        committed = self.registry.committed(group_id)
        if not wanted:
            return [(tp, committed[tp]) for tp in sorted(committed)]
        result: list[tuple[TopicPartition, OffsetRecord | None]] = []
        for topic, partitions in wanted:
            if partitions:
                result.extend(
                    (TopicPartition(topic, p), committed.get(TopicPartition(topic, p)))
                    for p in partitions
                )
            else:
                result.extend((tp, committed[tp]) for tp in sorted(committed) if tp[0] == topic)
        return result

    def list_groups(
        self, page_size: int, page_token: str, states: set[GroupState],
        visible: Callable[[str], bool] | None = None,
    ) -> tuple[list[Group], str]:
        self.require_active()
        return self.registry.list_groups(page_size, page_token, states, visible)

    def get_group(self, group_id: str) -> Group:
        self.require_active()
        validate_group_id(group_id)
        group = self.registry.groups.get(group_id)
        if group is None:
            raise BrookError(
                "GROUP_NOT_FOUND", f"group {group_id!r} does not exist", {"group_id": group_id}
            )
        return group

    async def lag(self, group: Group) -> list[PartitionLagInfo]:
        """Committed offset, log end offset and lag of every partition the group owns,
        targets or has committed, by (topic, partition)."""
        partitions = set(group.offsets) | set(group.owners)
        for tps in group.target.values():
            partitions |= tps
        committed = dict(group.offsets)
        owners = dict(group.owners)
        uncommitted = [tp for tp in partitions if tp not in committed]
        latest, earliest = await asyncio.gather(
            self.log_offsets.query(partitions, LATEST),
            self.log_offsets.query(uncommitted, EARLIEST),
        )
        result = []
        for tp in sorted(partitions):
            record = committed.get(tp)
            end = latest.get(tp)
            end_offset = end if isinstance(end, int) else -1
            if end_offset < 0:
                lag = -1
            elif record is not None:
                lag = max(0, end_offset - record.offset)
            else:
                start = earliest.get(tp)
                lag = end_offset - start if isinstance(start, int) else -1
            result.append(
                PartitionLagInfo(
                    topic=tp[0],
                    partition=tp[1],
                    committed_offset=record.offset if record else NO_OFFSET,
                    log_end_offset=end_offset,
                    lag=lag,
                    member_id=owners.get(tp, ""),
                    metadata=record.metadata if record else "",
                )
            )
        return result

    # -- administration ------------------------------------------------------------------
    async def delete_group(self, group_id: str) -> None:
        group_store = self.require_active()
        validate_group_id(group_id)
        self.registry.check_deletable(group_id)
        await group_store.delete_group(group_id)
        if self.group_store is group_store:
            self.registry.remove_group(group_id)
            self._bump_version(group_id)

    async def reset_offsets(
        self,
        group_id: str,
        wanted: list[tuple[str, list[int]]],
        target: ResetTarget,
        dry_run: bool,
    ) -> list[OffsetChangeResult]:
        group_store = self.require_active()
        self.registry.check_resettable(group_id)
        partitions = self._reset_partitions(group_id, wanted)
        committed = self.registry.committed(group_id)
        new_offsets = await self._reset_offsets(partitions, committed, target)
        changes = [
            OffsetChangeResult(
                tp[0],
                tp[1],
                committed[tp].offset if tp in committed else NO_OFFSET,
                new_offsets[tp],
            )
            for tp in sorted(new_offsets)
        ]
        if dry_run:
            return changes
        self.registry.check_resettable(group_id)  # members may have joined meanwhile
        now_ms = self._wall_ms()
        records = {
            tp: OffsetRecord(
                offset,
                committed[tp].leader_epoch if tp in committed else -1,
                committed[tp].metadata if tp in committed else "",
                now_ms,
            )
            for tp, offset in new_offsets.items()
        }
        await self._store_offsets(group_store, group_id, records)
        return changes

    def _reset_partitions(
        self, group_id: str, wanted: list[tuple[str, list[int]]]
    ) -> list[TopicPartition]:
        topics = self.registry.topics
        if not wanted:  # every topic the group has committed offsets for
            committed_topics = sorted({tp[0] for tp in self.registry.committed(group_id)})
            wanted = [(t, []) for t in committed_topics if t in topics]
            if not wanted:
                raise BrookError(
                    "INVALID_REQUEST",
                    f"group {group_id!r} has no committed offsets; name the topics to reset",
                )
        result: list[TopicPartition] = []
        for topic, partitions in wanted:
            if topic not in topics:
                raise BrookError(
                    "TOPIC_NOT_FOUND", f"topic {topic!r} does not exist", {"topic": topic}
                )
            for p in partitions or range(topics[topic]):
                if not 0 <= p < topics[topic]:
                    raise BrookError(
                        "PARTITION_NOT_FOUND",
                        f"topic {topic!r} has no partition {p}",
                        {"topic": topic, "partition": p},
                    )
                result.append(TopicPartition(topic, p))
        return sorted(set(result))

    async def _reset_offsets(
        self,
        partitions: Iterable[TopicPartition],
        committed: Mapping[TopicPartition, OffsetRecord],
        target: ResetTarget,
    ) -> dict[TopicPartition, int]:
        partitions = list(partitions)

        def checked(
            answers: Mapping[TopicPartition, int | BrookError],
        ) -> dict[TopicPartition, int]:
            result = {}
            for tp in partitions:
                answer = answers.get(tp)
                if isinstance(answer, BrookError):
                    raise answer
                assert answer is not None
                result[tp] = answer
            return result

        if target.kind == "timestamp":
            return checked(await self.log_offsets.query(partitions, TIMESTAMP, target.value))
        earliest_answers, latest_answers = await asyncio.gather(
            self.log_offsets.query(partitions, EARLIEST),
            self.log_offsets.query(partitions, LATEST),
        )
        earliest, latest = checked(earliest_answers), checked(latest_answers)
        result: dict[TopicPartition, int] = {}
        for tp in partitions:
            if target.kind == "earliest":
                offset = earliest[tp]
            elif target.kind == "latest":
                offset = latest[tp]
            elif target.kind == "offset":
                offset = target.value
            elif target.kind == "shift":
                base = committed[tp].offset if tp in committed else earliest[tp]
                offset = base + target.value
            else:
                raise BrookError("INVALID_REQUEST", "set one reset target")
            result[tp] = max(earliest[tp], min(latest[tp], offset))
        return result
