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
- fencing: `fence_all` when the node's lease is lost.

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
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING

from brook.clock import Clock
from brook.errors import BrookError
from brook.services.metadata.configs import config_int, log_config_for
from brook.services.metadata.model import NO_LEADER, PartitionRecord, TopicRecord
from brook.services.node.batches import STAMP_OVERHEAD_BYTES
from brook.services.node.config import NodeLimits
from brook.services.node.partition import (
    ROLE_CHANGES,
    IsrProposal,
    Partition,
    PartitionSettings,
    Role,
)
from brook.services.node.replica import Replica, WaiterLimits
from brook.services.node.storage_log import LogHandle
from brook.storage import LogConfig, LogManager, PartitionLog
from brook.storage.record_batch import MAX_PAYLOAD_BYTES
from brook.structs import TopicPartition

if TYPE_CHECKING:
    from brook.services.metadata.cache import MetadataCache
    from brook.services.metadata.store import MetadataStore

log = logging.getLogger("brook.node.replicas")

TOPIC_IDS_FILE = "topic-ids.json"
LOGS_DIR = "logs"



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


def partition_settings(topic: TopicRecord) -> PartitionSettings:
    return PartitionSettings(
        min_insync_replicas=config_int(topic, "min_insync_replicas"),
        replica_lag_max_ms=config_int(topic, "replica_lag_max_ms"),
        max_batch_bytes=config_int(topic, "max_batch_bytes"),
    )


def engine_config(topic: TopicRecord) -> LogConfig:
    """The engine's config for a topic, with room for the offsets stamped into each batch
    (the flush policy is the engine's; logs are opened `caller_flushes`, see storage_log)."""
    values = log_config_for(topic)
    values["max_batch_bytes"] = min(values["max_batch_bytes"] + STAMP_OVERHEAD_BYTES,
                                    MAX_PAYLOAD_BYTES)
    return LogConfig(**values)


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
        self._closed = False
        self._swept = False
        self.reconciled = asyncio.Event()

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
        for task in [*self._tasks, *self._isr_tasks]:
            task.cancel()
        for task in [*self._tasks, *self._isr_tasks]:
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
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:
                # Not fatal: the next change (or the retry below) reconciles again.
                log.exception("reconcile failed; retrying shortly")
                await asyncio.sleep(self.limits.replica_backoff_max_ms / 1000)
                self._changed.set()
            self.reconciled.set()

    async def reconcile(self) -> None:
        """Makes local replicas match the cache (see the module docs)."""
        cache = self.cache
        changed: list[Replica] = []
        wanted: set[TopicPartition] = set()
        for cache_key, record in list(cache.partitions.items()):
            key = TopicPartition(*cache_key)
            topic = cache.topics.get(key[0])
            if topic is None or record.topic_id != topic.topic_id:
                continue
            members = set(record.replicas) | set(record.adding_replicas)
            if self.node_id not in members:
                continue
            wanted.add(key)
            replica = self.replicas.get(key)
            if replica is not None and replica.partition.record is not None and (
                replica.partition.record.topic_id != topic.topic_id
            ):
                await self._delete(key, "the topic was re-created")
                replica = None
            if replica is None:
                replica = await self._open(key, topic)
                if replica is None:
                    continue
            self._update_configs(replica, topic)
            revision = cache.partition_revisions.get(key, 0)
            if replica.apply_record(record, revision) in ROLE_CHANGES:
                changed.append(replica)
        for key in list(self.replicas):
            if key in wanted:
                continue
            topic = cache.topics.get(key.topic)
            replica = self.replicas[key]
            record_now = replica.partition.record
            if topic is None or (record_now is not None and record_now.topic_id != topic.topic_id):
                await self._delete(key, "the topic was deleted")
                changed.append(replica)
            elif key not in cache.partitions or self.node_id not in (
                set(cache.partitions[key].replicas) | set(cache.partitions[key].adding_replicas)
            ):
                await self._delete(key, "this node is no longer a replica")
                changed.append(replica)
        if not self._swept:
            await self._delete_unwanted_logs(wanted)
            self._swept = True
        if changed:
            self.on_roles_changed(changed)

    async def _open(self, key: TopicPartition, topic: TopicRecord) -> Replica | None:
        known_id = self.topic_ids.ids.get(key[0])
        if known_id is not None and known_id != topic.topic_id:
            # Logs of an older topic with the same name (deleted while we were down).
            for stale in [k for k in self.log_manager.existing_partitions() if k[0] == key[0]]:
                log.warning("%s-%d: deleting the log of a previous topic %r (id %s)",
                            stale[0], stale[1], key[0], known_id)
                await asyncio.get_running_loop().run_in_executor(
                    self.executor, self.log_manager.delete_log, stale[0], stale[1]
                )
        self.topic_ids.set(key[0], topic.topic_id)
        config = engine_config(topic)
        try:
            plog = await asyncio.get_running_loop().run_in_executor(
                self.executor, self.log_manager.open_log, key[0], key[1], config
            )
        except Exception:
            log.exception("%s-%d: could not open the log", key[0], key[1])
            return None
        if key in self.replicas:  # opened concurrently by an earlier reconcile
            return self.replicas[key]
        handle = LogHandle(
            plog, executor=self.executor, inline_max_bytes=self.limits.append_inline_max_bytes
        )
        partition = Partition(
            key, self.node_id, handle,
            clock=self._clock,
            settings=partition_settings(topic),
            leadership_valid=self._leadership_valid,
            address_of=self.address_of,
        )
        replica = Replica(partition, handle, self._waiter_limits)
        self.replicas[key] = replica
        log.info("%s: opened log %d..%d", key, plog.log_start_offset, plog.log_end_offset)
        return replica

    def _update_configs(self, replica: Replica, topic: TopicRecord) -> None:
        settings = partition_settings(topic)
        if settings != replica.partition.settings:
            replica.partition.settings = settings
        config = engine_config(topic)
        if config != replica.log.plog.config:
            replica.log.plog.update_config(config)

    async def _delete(self, key: TopicPartition, why: str) -> None:
        replica = self.replicas.pop(key, None)
        if replica is not None:
            replica.close()
        log.info("%s: deleting the local log: %s", key, why)
        if replica is not None:
            async with replica.log.lock:
                await asyncio.get_running_loop().run_in_executor(
                    self.executor, self.log_manager.delete_log, key[0], key[1]
                )
        if not any(k.topic == key[0] for k in self.replicas):
            if key[0] not in self.cache.topics:
                self.topic_ids.forget(key[0])

    async def _delete_unwanted_logs(self, wanted: set[TopicPartition]) -> None:
        """Once, at start: deletes on-disk logs that etcd no longer places here (the topic
        was deleted, or the replica moved, while the node was down)."""
        loop = asyncio.get_running_loop()
        existing = await loop.run_in_executor(self.executor, self.log_manager.existing_partitions)
        for topic, index in existing:
            if (topic, index) in wanted:
                continue
            why = "deleted topic" if topic not in self.cache.topics else "replica moved away"
            log.info("%s-%d: deleting a log this node no longer hosts (%s)", topic, index, why)
            await loop.run_in_executor(self.executor, self.log_manager.delete_log, topic, index)
            if topic not in self.cache.topics:
                self.topic_ids.forget(topic)

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
                         proposal.removed, base.leader_epoch)
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
            for replica in list(self.replicas.values()):
                if replica.partition.role is Role.LEADER:
                    self.maybe_change_isr(replica)

    # -- housekeeping ------------------------------------------------------------------
    async def _flush_loop(self) -> None:
        interval_s = self.limits.flush_check_interval_ms / 1000
        while not self._closed:
            await asyncio.sleep(interval_s)
            for key, replica in list(self.replicas.items()):
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
