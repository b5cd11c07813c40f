"""ReplicaManager: the node's partitions, driven by the metadata cache (Kafka's
ReplicaManager, thinned to what Brook needs).

It owns the `Replica`s (core + log + waiters) and is the one place that turns metadata
into local state:
- reconcile: after every cache change, open logs of partitions that list this node as a
  replica, apply each partition's record (become leader / follower / stop), update topic
  configs, and delete logs of topics that no longer exist (or were re-created under the
  same name, detected by topic id, which is kept in `<data-dir>/topic-ids.json` so a
  restarted node also notices);
- ISR changes: commits what a leader's core proposes to etcd with `cas_partition` on
  the record's mod revision (the core relies on the new ISR only once this succeeds);
- housekeeping: the engine's time-based flush policy and retention, in the executor;
- fencing: `fence_all` when the node's lease is lost;
- leaving ISRs it can no longer back (defect 1): a node whose data directory is new
  (no storage id: first start, or wiped) removes itself from every ISR that lists it
  before it registers, and a replica whose log went offline removes itself at once, so
  the coordinator never elects a replica that lacks the records its ISR membership
  vouches for. A leader doing so also resigns (leader -1, epoch + 1), which makes the
  coordinator elect another ISR member.

Lookups for the servicers raise the right BrookError: TOPIC_NOT_FOUND,
PARTITION_NOT_FOUND, or NOT_LEADER naming the leader from the cache when the partition
has no replica here.

Thread-safety: one event loop; engine calls hold the partition's LogHandle lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import uuid
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING

from brook.clock import Clock
from brook.errors import BrookError
from brook.services.common.metrics import node_metrics
from brook.services.metadata.configs import config_int, log_config_for
from brook.services.metadata.model import NO_LEADER, PartitionRecord, TopicRecord
from brook.services.node.batches import STAMP_OVERHEAD_BYTES
from brook.services.node.config import NodeLimits
from brook.services.node.corruption import hand_off_record, leave_corrupt_range
from brook.services.node.data_path import yield_every
from brook.services.node.partition import (
    ROLE_CHANGES,
    IsrProposal,
    Partition,
    PartitionSettings,
    Role,
)
from brook.services.node.replica import Replica, WaiterLimits
from brook.services.node.storage_log import LogHandle, run_to_completion
from brook.storage import LogConfig, LogManager, PartitionLog
from brook.storage.record_batch import MAX_PAYLOAD_BYTES
from brook.structs import TopicPartition

if TYPE_CHECKING:
    from brook.services.metadata.cache import MetadataCache
    from brook.services.metadata.store import MetadataStore

log = logging.getLogger("brook.node.replicas")

TOPIC_IDS_FILE = "topic-ids.json"
LOGS_DIR = "logs"
# Written at the first start of a data directory: its absence means the directory is new
# (or was wiped), so this node's logs hold nothing its ISR memberships vouch for.
STORAGE_ID_FILE = "storage-id"
# Compare-and-swap attempts to leave an ISR before giving up until the next check.
LEAVE_ISR_ATTEMPTS = 5
# Logs opened per executor call when many partitions appear at once.
LOG_OPEN_BATCH = 32
# Shortest pause between two reconcile passes (each is O(partitions in the cache)).
RECONCILE_MIN_INTERVAL_S = 0.05


def open_storage_id(data_dir: Path, logs_dir: Path) -> tuple[str, bool]:
    """(this data directory's storage id, whether the directory is new). A directory
    from before storage ids that already holds partition logs is not new."""
    path = data_dir / STORAGE_ID_FILE
    with contextlib.suppress(FileNotFoundError):
        return path.read_text().strip(), False
    had_logs = logs_dir.is_dir() and any(logs_dir.iterdir())
    storage_id = uuid.uuid4().hex
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as file:
        file.write(storage_id)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)
    return storage_id, not had_logs



class TopicIds:
    """topic name -> topic id of the logs on this disk (atomically rewritten JSON)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.ids: dict[str, str] = json.loads(path.read_text())
        except FileNotFoundError:
            self.ids = {}
        except ValueError:
            log.error("%s is unreadable; treating every local log as unknown", path)
            self.ids = {}

    def set(self, topic: str, topic_id: str) -> None:
        if self.ids.get(topic) != topic_id:
            self.ids[topic] = topic_id
            self._save()

    def forget(self, topic: str) -> None:
        if self.ids.pop(topic, None) is not None:
            self._save()

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as file:
            json.dump(self.ids, file, sort_keys=True)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, self.path)


def partition_settings(topic: TopicRecord, limits: NodeLimits) -> PartitionSettings:
    return PartitionSettings(
        min_insync_replicas=config_int(topic, "min_insync_replicas"),
        replica_lag_max_ms=config_int(topic, "replica_lag_max_ms"),
        max_batch_bytes=config_int(topic, "max_batch_bytes"),
        isr_rejoin_min_ms=limits.isr_rejoin_min_ms,
    )


def engine_config(topic: TopicRecord) -> LogConfig:
    """The engine's config for a topic, with room for the offsets stamped into each batch
    (the flush policy is the engine's; logs are opened `caller_flushes`, see storage_log)."""
    values = log_config_for(topic)
    values["max_batch_bytes"] = min(values["max_batch_bytes"] + STAMP_OVERHEAD_BYTES,
                                    MAX_PAYLOAD_BYTES)
    return LogConfig(**values)


def without_node_in_isr(
    record: PartitionRecord, node_id: int, live: Collection[int]
) -> PartitionRecord | None:
    """The record with `node_id` out of the ISR, or None when it is not a member or is
    the only one. A leader hands leadership to the first other live ISR member
    (corruption.hand_off_record), or, with none live, leaves the partition leaderless
    (epoch + 1) until one returns, rather than lead with what it lacks."""
    if node_id not in record.isr or tuple(record.isr) == (node_id,):
        return None
    if record.leader == node_id:
        handed = hand_off_record(record, node_id, live)
        if handed is not None:
            return handed
        return record.evolve(leader=NO_LEADER, leader_epoch=record.leader_epoch + 1,
                             isr=tuple(r for r in record.isr if r != node_id))
    return record.evolve(isr=tuple(r for r in record.isr if r != node_id))


class ReplicaManager:
    """All partition replicas of this node and their reconciliation with etcd."""

    def __init__(
        self,
        node_id: int,
        data_dir: Path,
        limits: NodeLimits,
        *,
        store: MetadataStore,
        cache: MetadataCache,
        clock: Clock,
        leadership_valid: Callable[[], bool],
        executor: Executor | None = None,
    ) -> None:
        self.node_id = node_id
        self.executor = executor
        self.limits = limits
        self.store = store
        self.cache = cache
        self._clock = clock
        self._leadership_valid = leadership_valid
        data_dir.mkdir(parents=True, exist_ok=True)
        self.storage_id, self.fresh_storage = open_storage_id(data_dir, data_dir / LOGS_DIR)
        self.log_manager = LogManager(data_dir / LOGS_DIR, clock=clock, caller_flushes=True)
        self.topic_ids = TopicIds(data_dir / TOPIC_IDS_FILE)
        self.replicas: dict[TopicPartition, Replica] = {}
        self._waiter_limits = WaiterLimits(
            produce=limits.produce_waiters_per_partition_max,
            fetch=limits.fetch_waiters_per_partition_max,
            replica=limits.replica_waiters_per_partition_max,
        )
        # Called with the partitions whose role or leader changed (the fetcher manager).
        self.on_roles_changed: Callable[[list[Replica]], None] = lambda changed: None
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._isr_tasks: set[asyncio.Task[None]] = set()
        # Partitions whose ISR this node is leaving (one attempt in flight each).
        self._leaving: set[TopicPartition] = set()
        # Local logs whose deletion failed (and why they go): retried every reconcile.
        self._deletions_pending: dict[TopicPartition, str] = {}
        # Logs waiting to be opened by the opener task, and whether an open failed.
        self._to_open: dict[TopicPartition, TopicRecord] = {}
        self._opener: asyncio.Task[None] | None = None
        self._open_failed = False
        # The topic record each replica's configs were last set from (by identity: the
        # cache makes a new object when the topic changes).
        self._configured: dict[TopicPartition, TopicRecord] = {}
        self._closed = False
        self._swept = False
        self.reconciled = asyncio.Event()
        self.metrics = node_metrics()

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Starts reconciling on cache changes and the housekeeping loops."""
        loop = asyncio.get_running_loop()
        self.cache.add_listener(self._changed.set)
        self._changed.set()
        self._tasks = [
            loop.create_task(self._reconcile_loop(), name="reconcile"),
            loop.create_task(self._isr_loop(), name="isr-check"),
            loop.create_task(self._flush_loop(), name="flush"),
            loop.create_task(self._retention_loop(), name="retention"),
        ]

    async def close(self) -> None:
        """Stops the loops, fails every waiter, flushes and closes every log."""
        self._closed = True
        self.cache.remove_listener(self._changed.set)
        opener = [self._opener] if self._opener is not None else []
        for task in [*self._tasks, *self._isr_tasks, *opener]:
            task.cancel()
        for task in [*self._tasks, *self._isr_tasks, *opener]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for replica in self.replicas.values():
            replica.close()
        for key, replica in list(self.replicas.items()):
            try:
                await replica.log.run_locked_in_executor(replica.log.plog.close)
            except BrookError as error:
                log.error("%s: close failed: %s", key, error)
        self.replicas.clear()

    def fence_all(self) -> None:
        """The lease is lost: every led partition stops acting as leader at once."""
        for replica in self.replicas.values():
            if replica.partition.role is Role.LEADER:
                replica.fence()

    def leadership_restored(self) -> None:
        """The node holds a valid lease again: leaders may advance their HW."""
        for replica in self.replicas.values():
            if replica.partition.role is Role.LEADER:
                replica.leadership_restored()

    # -- lookups for servicers ---------------------------------------------------------
    def lookup(self, key: TopicPartition) -> Replica:
        """The local replica of a partition, or the error a client should see."""
        topic, index = key
        replica = self.replicas.get(key)
        if replica is not None and replica.partition.role is not Role.NONE:
            return replica
        topic_record = self.cache.topics.get(topic)
        if topic_record is None:
            raise BrookError("TOPIC_NOT_FOUND", f"topic {topic!r} does not exist",
                             {"topic": topic})
        if not 0 <= index < topic_record.partition_count:
            raise BrookError(
                "PARTITION_NOT_FOUND",
                f"topic {topic!r} has {topic_record.partition_count} partitions; {index} is not"
                " one of them",
                {"topic": topic, "partition": index},
            )
        record = self.cache.partitions.get(key)
        leader = record.leader if record is not None else NO_LEADER
        epoch = record.leader_epoch if record is not None else -1
        address = self.address_of(leader) if leader != NO_LEADER else ""
        where = f"node {leader} at {address}" if leader != NO_LEADER else "no leader known"
        raise BrookError(
            "NOT_LEADER",
            f"node {self.node_id} has no replica of {topic}-{index}; {where}; refresh metadata",
            {"topic": topic, "partition": index, "leader_id": leader,
             "leader_address": address, "leader_epoch": epoch},
        )

    def address_of(self, node_id: int) -> str:
        node = self.cache.nodes.get(node_id)
        return node.address if node is not None else ""

    # -- reconciliation ----------------------------------------------------------------
    async def _reconcile_loop(self) -> None:
        while not self._closed:
            await self._changed.wait()
            self._changed.clear()
            try:
                complete = await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconcile failed")
                complete = False
            if not complete:
                # Not fatal, and only the failed partitions are retried: every other
                # partition was reconciled (defect 7: one failure broke all of them).
                await asyncio.sleep(self.limits.replica_backoff_max_ms / 1000)
                self._changed.set()
            self.reconciled.set()
            # Coalesce bursts of cache events (thousands of ISR writes after a big
            # topic is created): one pass over every partition per interval at most.
            await asyncio.sleep(RECONCILE_MIN_INTERVAL_S)

    async def reconcile(self) -> bool:
        """Makes local replicas match the cache (see the module docs); False when some
        partition failed (logged; the loop retries it)."""
        changed: list[Replica] = []
        ok = await self._delete_pending()
        wanted = await self._wanted_here()
        ok &= await self._replace_recreated(wanted)
        await self._schedule_opens(wanted)
        if not self._swept:
            # At start the node registers only once its logs are open (it leads nothing
            # before); later, opening runs beside reconciling (a big topic's thousands
            # of logs must not hold up other partitions' leader changes).
            await self._opened_all()
            ok &= not self._open_failed
        ok &= await self._apply_records(list(wanted.items()), changed)
        ok &= await self._delete_unwanted(set(wanted), changed)
        if not self._swept:
            ok &= await self._delete_unwanted_logs(set(wanted))
            self._swept = True
        if changed:
            self.on_roles_changed(changed)
        return ok

    async def _wanted_here(self) -> dict[TopicPartition, tuple[TopicRecord, PartitionRecord]]:
        """The partitions the cache places on this node, with their topic and record."""
        cache = self.cache
        wanted: dict[TopicPartition, tuple[TopicRecord, PartitionRecord]] = {}
        for index, (cache_key, record) in enumerate(list(cache.partitions.items())):
            await yield_every(index)
            topic = cache.topics.get(cache_key[0])
            if topic is None or record.topic_id != topic.topic_id:
                continue
            if self.node_id in record.replicas or self.node_id in record.adding_replicas:
                wanted[TopicPartition(*cache_key)] = (topic, record)
        return wanted

    async def _replace_recreated(
        self, wanted: dict[TopicPartition, tuple[TopicRecord, PartitionRecord]]
    ) -> bool:
        """Deletes local replicas of an older topic of the same name (by topic id)."""
        ok = True
        for key, (topic, _) in wanted.items():
            replica = self.replicas.get(key)
            record = replica.partition.record if replica is not None else None
            if record is not None and record.topic_id != topic.topic_id:
                ok &= await self._try_delete(key, "the topic was re-created")
        return ok

    async def _apply_records(
        self, wanted: list[tuple[TopicPartition, tuple[TopicRecord, PartitionRecord]]],
        changed: list[Replica],
    ) -> bool:
        """Applies each opened replica's record and topic configs (role changes go to
        `changed`); False when one failed (logged, retried by the next reconcile).

        Only what changed is touched: a record at the revision already applied under the
        same topic record is skipped (defect 4: every cache event re-applied all 10,000
        partitions, O(n) per event), and the configs are computed once per topic."""
        ok = True
        settings: dict[str, tuple[PartitionSettings, LogConfig]] = {}
        for index, (key, (topic, record)) in enumerate(wanted):
            await yield_every(index)
            replica = self.replicas.get(key)
            if replica is None:
                continue
            revision = self.cache.partition_revisions.get(key, 0)
            if revision <= replica.partition.record_revision and (
                self._configured.get(key) is topic
            ):
                continue
            try:
                if topic.name not in settings:
                    settings[topic.name] = (partition_settings(topic, self.limits),
                                            engine_config(topic))
                self._update_configs(replica, *settings[topic.name])
                self._configured[key] = topic
                if replica.apply_record(record, revision) in ROLE_CHANGES:
                    changed.append(replica)
            except Exception:
                log.exception("%s: applying its record failed; retrying", key)
                ok = False
        return ok

    async def _schedule_opens(
        self, wanted: dict[TopicPartition, tuple[TopicRecord, PartitionRecord]]
    ) -> None:
        """Queues the logs of wanted partitions without a replica for the opener task."""
        missing = {key: topic for key, (topic, _) in wanted.items()
                   if key not in self.replicas and key not in self._to_open}
        if not missing:
            return
        for topic in {topic.name: topic for topic in missing.values()}.values():
            await self._forget_previous_topic(topic)
        self._to_open.update(missing)
        if self._opener is None or self._opener.done():
            self._opener = asyncio.get_running_loop().create_task(self._open_queued(),
                                                                  name="log-opener")

    async def _opened_all(self) -> None:
        if self._opener is not None:
            await asyncio.shield(self._opener)

    async def _open_queued(self) -> None:
        """Opens the queued logs (defect 4: thousands appear at once when a big topic is
        created). A new log costs ~30 ms of fsyncs and ~4 ms of CPU, so they open in
        batches of LOG_OPEN_BATCH per executor call (one thread hop and one loop wake-up
        per batch, not per log), log_open_concurrency batches at a time (the rest of the
        executor and the CPU stay free for produce, fetch and the lease); each batch
        takes its record from the cache as soon as it is open."""
        loop = asyncio.get_running_loop()
        self._open_failed = False
        opened_count = 0
        while self._to_open and not self._closed:
            keys = list(self._to_open)[:LOG_OPEN_BATCH * self.limits.log_open_concurrency]
            batches = [[(key, self._to_open[key]) for key in keys[i:i + LOG_OPEN_BATCH]]
                       for i in range(0, len(keys), LOG_OPEN_BATCH)]
            results = await asyncio.gather(*(
                loop.run_in_executor(self.executor, self._open_logs, batch)
                for batch in batches))
            changed: list[Replica] = []
            for batch, opened in zip(batches, results, strict=True):
                for (key, topic), plog in zip(batch, opened, strict=True):
                    self._to_open.pop(key, None)
                    if plog is None:
                        self._open_failed = True
                        continue
                    opened_count += 1
                    if key not in self.replicas:
                        self._add_replica(key, topic, plog)
                await self._apply_records(self._current(key for key, _ in batch), changed)
            if changed:
                self.on_roles_changed(changed)
        if opened_count > 1:
            log.info("opened %d logs", opened_count)
        if self._open_failed and not self._swept:
            return  # the first reconcile reports it and retries
        if self._open_failed:
            await asyncio.sleep(self.limits.replica_backoff_max_ms / 1000)
            self._changed.set()  # the reconcile loop queues the failed ones again

    def _current(
        self, keys: Iterable[TopicPartition]
    ) -> list[tuple[TopicPartition, tuple[TopicRecord, PartitionRecord]]]:
        """(key, (topic, record)) from the cache now, for keys still placed here."""
        found = []
        for key in keys:
            record = self.cache.partitions.get(key)
            topic = self.cache.topics.get(key.topic)
            if record is not None and topic is not None and record.topic_id == topic.topic_id:
                found.append((key, (topic, record)))
        return found

    def _open_logs(
        self, batch: list[tuple[TopicPartition, TopicRecord]]
    ) -> list[PartitionLog | None]:
        """In the executor: opens each log of the batch; None (logged) for one that fails,
        so one bad partition does not stop the others."""
        opened: list[PartitionLog | None] = []
        for key, topic in batch:
            try:
                opened.append(self.log_manager.open_log(key.topic, key.partition,
                                                        engine_config(topic)))
            except Exception:
                log.exception("%s: could not open the log", key)
                opened.append(None)
        return opened

    async def _delete_unwanted(self, wanted: set[TopicPartition], changed: list[Replica]) -> bool:
        """Deletes local replicas the cache no longer places here."""
        ok = True
        cache = self.cache
        for key in list(self.replicas):
            if key in wanted:
                continue
            topic = cache.topics.get(key.topic)
            replica = self.replicas[key]
            record_now = replica.partition.record
            if topic is None or (record_now is not None and record_now.topic_id != topic.topic_id):
                why = "the topic was deleted"
            elif key not in cache.partitions or self.node_id not in (
                set(cache.partitions[key].replicas) | set(cache.partitions[key].adding_replicas)
            ):
                why = "this node is no longer a replica"
            else:
                continue
            ok &= await self._try_delete(key, why)
            changed.append(replica)
        return ok

    async def _try_delete(self, key: TopicPartition, why: str) -> bool:
        """`_delete`, or (on failure) logged and kept for the next reconcile to retry."""
        try:
            await self._delete(key, why)
        except Exception:
            log.exception("%s: deleting the local log failed; retrying", key)
            self._deletions_pending[key] = why
            return False
        self._deletions_pending.pop(key, None)
        return True

    async def _delete_pending(self) -> bool:
        """Retries deletions that failed before (the replica is already gone)."""
        ok = True
        for key, why in list(self._deletions_pending.items()):
            if key in self.replicas:
                continue  # wanted again meanwhile: reconcile decides afresh
            ok &= await self._try_delete(key, why)
        return ok

    async def _forget_previous_topic(self, topic: TopicRecord) -> None:
        """Deletes logs of an older topic with the same name (deleted while we were down),
        once per topic, before its new logs open."""
        known_id = self.topic_ids.ids.get(topic.name)
        if known_id is not None and known_id != topic.topic_id:
            loop = asyncio.get_running_loop()
            existing = await loop.run_in_executor(self.executor,
                                                  self.log_manager.existing_partitions)
            for stale in [k for k in existing if k[0] == topic.name]:
                log.warning("%s-%d: deleting the log of a previous topic %r (id %s)",
                            stale[0], stale[1], topic.name, known_id)
                await loop.run_in_executor(
                    self.executor, self.log_manager.delete_log, stale[0], stale[1]
                )
        self.topic_ids.set(topic.name, topic.topic_id)

    def _add_replica(self, key: TopicPartition, topic: TopicRecord, plog: PartitionLog) -> Replica:
        """The replica over an opened log (on the loop: no I/O)."""
        handle = LogHandle(
            plog, executor=self.executor, inline_max_bytes=self.limits.append_inline_max_bytes
        )
        partition = Partition(
            key, self.node_id, handle,
            clock=self._clock,
            settings=partition_settings(topic, self.limits),
            leadership_valid=self._leadership_valid,
            address_of=self.address_of,
        )
        replica = Replica(partition, handle, self._waiter_limits)
        handle.on_corruption = lambda offset: self._on_corruption(replica, offset)
        self.replicas[key] = replica
        log.debug("%s: opened log %d..%d", key, plog.log_start_offset, plog.log_end_offset)
        return replica

    def _update_configs(
        self, replica: Replica, settings: PartitionSettings, config: LogConfig
    ) -> None:
        if settings != replica.partition.settings:
            replica.partition.settings = settings
        if config != replica.log.plog.config:
            replica.log.plog.update_config(config)

    async def _delete(self, key: TopicPartition, why: str) -> None:
        replica = self.replicas.pop(key, None)
        self._configured.pop(key, None)
        if replica is not None:
            replica.close()
        log.info("%s: deleting the local log: %s", key, why)
        loop = asyncio.get_running_loop()
        if replica is not None:
            async with replica.log.lock:
                # To completion even if cancelled: the lock must not go while files go.
                await run_to_completion(
                    self.executor, lambda: self.log_manager.delete_log(key[0], key[1])
                )
        else:
            await loop.run_in_executor(self.executor, self.log_manager.delete_log, key[0], key[1])
        if not any(k.topic == key[0] for k in self.replicas):
            self.metrics.forget_topic(key[0])  # its per-topic series go with it
            if key[0] not in self.cache.topics:
                self.topic_ids.forget(key[0])

    async def _delete_unwanted_logs(self, wanted: set[TopicPartition]) -> bool:
        """Once, at start: deletes on-disk logs that etcd no longer places here (the topic
        was deleted, or the replica moved, while the node was down)."""
        loop = asyncio.get_running_loop()
        existing = await loop.run_in_executor(self.executor, self.log_manager.existing_partitions)
        ok = True
        for topic, index in existing:
            if (topic, index) in wanted:
                continue
            why = "deleted topic" if topic not in self.cache.topics else "replica moved away"
            log.info("%s-%d: deleting a log this node no longer hosts (%s)", topic, index, why)
            try:
                await loop.run_in_executor(self.executor, self.log_manager.delete_log, topic,
                                           index)
            except Exception:
                log.exception("%s-%d: deleting the log failed; retrying", topic, index)
                self._deletions_pending[TopicPartition(topic, index)] = why
                ok = False
                continue
            if topic not in self.cache.topics:
                self.topic_ids.forget(topic)
        return ok

    async def refresh_from_etcd(self) -> None:
        """Re-reads every local partition's record straight from etcd (after the lease
        was re-acquired, the cache may not have caught up yet) and applies it."""
        changed: list[Replica] = []
        for topic in {key.topic for key in self.replicas}:
            for record, revision in await self.store.get_partitions(topic):
                replica = self.replicas.get(TopicPartition(topic, record.partition))
                if replica is None:
                    continue
                if replica.apply_record(record, revision) in ROLE_CHANGES:
                    changed.append(replica)
        if changed:
            self.on_roles_changed(changed)

    def _on_corruption(self, replica: Replica, offset: int) -> None:
        """A read found the log corrupt from `offset`: stop leading it, re-fetch it
        (corruption.py); one hand-off at a time per partition."""
        name = f"corrupt-{replica.partition.name}"
        if self._closed or any(task.get_name() == name for task in self._isr_tasks):
            return
        task = asyncio.get_running_loop().create_task(leave_corrupt_range(
            replica, offset, node_id=self.node_id, store=self.store,
            live_nodes=lambda: set(self.cache.nodes), on_roles_changed=self.on_roles_changed,
        ), name=name)
        self._isr_tasks.add(task)
        task.add_done_callback(self._isr_tasks.discard)

    # -- ISR changes -------------------------------------------------------------------
    def maybe_change_isr(self, replica: Replica) -> None:
        """Starts committing the ISR change the partition's leader core wants, if any."""
        partition = replica.partition
        proposal = partition.isr_change_wanted()
        if proposal is None or self._closed:
            return
        partition.begin_isr_change(proposal)
        task = asyncio.get_running_loop().create_task(
            self._commit_isr(replica, proposal), name=f"isr-{partition.name}"
        )
        self._isr_tasks.add(task)
        task.add_done_callback(self._isr_tasks.discard)

    async def _commit_isr(self, replica: Replica, proposal: IsrProposal) -> None:
        partition = replica.partition
        base: PartitionRecord = proposal.base_record
        new = base.evolve(isr=proposal.isr)
        try:
            if not partition.is_leader or base.leader != self.node_id or (
                base.leader_epoch != partition.leader_epoch
            ):
                return
            revision = await self.store.cas_partition(new, proposal.base_revision)
            if revision is not None:
                log.info("%s: ISR %s -> %s (added %s, removed %s) at epoch %d",
                         partition.name, base.isr, proposal.isr, proposal.added,
                         proposal.removed, base.leader_epoch, extra=partition.log_fields())
                if proposal.removed:
                    self.metrics.isr_shrinks.inc()
                if proposal.added:
                    self.metrics.isr_expands.inc()
                replica.apply_record(new, revision)
                return
            # Someone else wrote first (the coordinator): re-read, the core re-decides.
            fresh = await self.store.get_partition(partition.topic, partition.partition)
            if fresh is not None and replica.apply_record(*fresh) in ROLE_CHANGES:
                self.on_roles_changed([replica])
        except asyncio.CancelledError:
            raise
        except BrookError as error:
            log.warning("%s: ISR change %s not committed: %s", partition.name, proposal.isr,
                        error)
        finally:
            replica.finish_isr_change(proposal)

    async def _isr_loop(self) -> None:
        interval_s = self.limits.isr_check_interval_ms / 1000
        while not self._closed:
            await asyncio.sleep(interval_s)
            for index, replica in enumerate(list(self.replicas.values())):
                await yield_every(index)  # thousands of partitions: give the loop turns
                if replica.log_offline:
                    self._leave_isr_soon(replica.key, "its log is offline")
                elif replica.partition.role is Role.LEADER:
                    self.maybe_change_isr(replica)

    # -- leaving ISRs this node cannot back (defect 1) ---------------------------------
    async def leave_isrs_if_fresh_storage(self) -> None:
        """At start, before registering: a new (or wiped) data directory backs none of
        the ISR memberships etcd records for this node; leave them all first, so no
        election can pick this node's empty logs."""
        if not self.fresh_storage:
            return
        keys = [key for key, replica in self.replicas.items()
                if replica.partition.record is not None
                and self.node_id in replica.partition.record.isr]
        for key in keys:
            await self.leave_isr(key, "this node's data directory is new (wiped?)")
        self.fresh_storage = False

    def _leave_isr_soon(self, key: TopicPartition, why: str) -> None:
        replica = self.replicas.get(key)
        record = replica.partition.record if replica is not None else None
        if key in self._leaving or record is None or self.node_id not in record.isr:
            return
        self._leaving.add(key)
        task = asyncio.get_running_loop().create_task(self._try_leave_isr(key, why),
                                                      name=f"leave-isr-{key}")
        self._isr_tasks.add(task)
        task.add_done_callback(self._isr_tasks.discard)
        task.add_done_callback(lambda _: self._leaving.discard(key))

    async def _try_leave_isr(self, key: TopicPartition, why: str) -> None:
        try:
            await self.leave_isr(key, why)
        except BrookError as error:  # etcd trouble: the next ISR check tries again
            log.warning("%s: leaving the ISR failed: %s", key, error)

    async def leave_isr(self, key: TopicPartition, why: str) -> None:
        """Removes this node from the partition's ISR in etcd (CAS), resigning if it
        leads. The sole ISR member stays: the ISR is never emptied (election.py), and
        no other replica is known to have more."""
        for _ in range(LEAVE_ISR_ATTEMPTS):
            found = await self.store.get_partition(key.topic, key.partition)
            if found is None:
                return
            record, revision = found
            new = without_node_in_isr(record, self.node_id, set(self.cache.nodes))
            if new is None:
                if self.node_id in record.isr:
                    log.error("%s: %s, but this node is its only in-sync replica; staying",
                              key, why)
                return
            written = await self.store.cas_partition(new, revision)
            if written is not None:
                log.warning("%s: left the ISR %s -> %s%s: %s", key, record.isr, new.isr,
                            " and resigned as leader" if record.leader == self.node_id else "",
                            why, extra={"topic": key.topic, "partition": key.partition,
                                        "epoch": new.leader_epoch})
                self.metrics.isr_shrinks.inc()
                replica = self.replicas.get(key)
                if replica is not None and replica.apply_record(new, written) in ROLE_CHANGES:
                    self.on_roles_changed([replica])
                return
        log.warning("%s: could not leave the ISR (the record kept changing); retrying", key)

    # -- housekeeping ------------------------------------------------------------------
    async def _flush_loop(self) -> None:
        interval_s = self.limits.flush_check_interval_ms / 1000
        while not self._closed:
            await asyncio.sleep(interval_s)
            for index, (key, replica) in enumerate(list(self.replicas.items())):
                await yield_every(index)  # thousands of partitions: give the loop turns
                plog = replica.log.plog
                if plog.closed or not plog.flush_due():  # in memory: most are not due
                    continue
                try:
                    await replica.log.flush_if_due()
                except BrookError as error:
                    log.error("%s: flush failed: %s", key, error)

    async def _retention_loop(self) -> None:
        interval_s = self.limits.retention_check_interval_ms / 1000
        while not self._closed:
            await asyncio.sleep(interval_s)
            for key, replica in list(self.replicas.items()):
                plog = replica.log.plog

                def retain(plog: PartitionLog = plog) -> None:
                    plog.apply_retention()
                    plog.delete_pending_files()

                try:
                    await replica.log.run_locked_in_executor(retain)
                except BrookError as error:
                    log.error("%s: retention failed: %s", key, error)
