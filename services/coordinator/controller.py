"""The active coordinator's control loop: leader elections when nodes come and go,
periodic preferred-leader elections, and completing partition reassignments.

The decisions are pure (`election.py`); this shell feeds them the cache's view and commits
each new record with a compare-and-swap on the partition's mod revision
(`metadata.cas.compare_and_swap`). On a lost race it re-reads the partition from etcd and
decides again (bounded). It acts only while the
coordinator lease is held: `run(lease)` returns as soon as the lease is lost, and every
write is fenced on the role key (the store raises NOT_COORDINATOR after a takeover).

The coordinator never talks to storage nodes: node liveness is the presence of their key
in etcd, and nodes learn decisions from etcd.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from brook.clock import SYSTEM_CLOCK, Clock
from brook.errors import BrookError, Reason
from brook.services.common import metrics
from brook.services.common.metrics import coordinator_metrics
from brook.services.coordinator import election, reassignment
from brook.services.coordinator.limits import (
    PARTITION_COMMITS_CONCURRENT_MAX,
    PREFERRED_ELECTION_INTERVAL_S_DEFAULT,
    REASSIGN_SCAN_INTERVAL_S_MIN,
    RECONCILE_INTERVAL_S,
    RECONCILE_RETRY_S,
)
from brook.services.metadata import configs
from brook.services.metadata.cache import MetadataCache
from brook.services.metadata.cas import CasExhausted, compare_and_swap
from brook.services.metadata.model import PartitionRecord
from brook.services.metadata.store import Lease, MetadataStore
from brook.structs import TopicPartition

log = logging.getLogger("brook.coordinator.controller")

Decide = Callable[[PartitionRecord], PartitionRecord | None]
# The metrics sample yields to the loop this often (thousands of partitions).
SAMPLE_YIELD_EVERY = 256
PartitionKey = TopicPartition


async def _run(loop: Callable[[], Awaitable[None]]) -> None:
    await loop()


class Controller:
    """Reacts to node liveness changes while this process is the active coordinator."""

    def __init__(
        self,
        store: MetadataStore,
        cache: MetadataCache,
        *,
        preferred_election_interval_s: float = PREFERRED_ELECTION_INTERVAL_S_DEFAULT,
        reconcile_interval_s: float = RECONCILE_INTERVAL_S,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.store = store
        self._clock = clock
        # Nodes in a controlled shutdown (DrainLeadership) and until when preferred
        # elections keep leadership off them (monotonic seconds; at most one per node).
        self._draining: dict[int, float] = {}
        self.cache = cache
        self.preferred_election_interval_s = preferred_election_interval_s
        self.reconcile_interval_s = reconcile_interval_s
        self.active = False
        self.lease: Lease | None = None
        self.elections_committed = 0
        self._wake = asyncio.Event()
        self._preferred_due = asyncio.Event()
        self._changed = asyncio.Event()
        self._known_nodes: frozenset[int] = frozenset()
        # More loops to run while active (the balancer's driver), cancelled with the rest.
        self._background: list[Callable[[], Awaitable[None]]] = []
        self.metrics = coordinator_metrics()
        metrics.set_role_active("coordinator", False)

    def add_background(self, loop: Callable[[], Awaitable[None]]) -> None:
        """Runs `loop()` as a task whenever this process acts as the coordinator."""
        self._background.append(loop)

    def request_preferred_election(self) -> None:
        """Runs a preferred-leader pass soon (after the balancer reordered replicas)."""
        self._preferred_due.set()

    # -- running while active ----------------------------------------------------------
    async def run(self, lease: Lease) -> None:
        """Acts as the active coordinator until `lease` is lost (or the task is cancelled)."""
        self.lease = lease
        self.active = True
        metrics.set_role_active("coordinator", True)
        self._known_nodes = frozenset(self.cache.nodes)
        self.cache.add_listener(self._on_cache_change)
        self._wake.set()  # a new coordinator reconciles at once: losses may have gone unseen
        tasks: list[asyncio.Task[object]] = [
            asyncio.create_task(self._reconcile_loop(), name="coordinator-reconcile"),
            asyncio.create_task(self._reassignment_loop(), name="coordinator-reassign"),
        ]
        if self.preferred_election_interval_s > 0:
            tasks.append(asyncio.create_task(self._preferred_loop(), name="coordinator-preferred"))
        for index, loop in enumerate(self._background):
            tasks.append(asyncio.create_task(_run(loop), name=f"coordinator-background-{index}"))
        lost: asyncio.Task[object] = asyncio.create_task(lease.lost.wait())
        try:
            await asyncio.wait([lost, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    log.error("controller task failed", exc_info=task.exception())
        finally:
            self.active = False
            metrics.set_role_active("coordinator", False)
            self.store.clear_fence()
            self.cache.remove_listener(self._on_cache_change)
            for task in [lost, *tasks]:
                task.cancel()
            for task in [lost, *tasks]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        log.warning("stopped acting as coordinator (lease lost)")

    def _on_cache_change(self) -> None:
        self._changed.set()
        nodes = frozenset(self.cache.nodes)
        if nodes != self._known_nodes:
            returned = nodes - self._known_nodes
            self._known_nodes = nodes
            self._wake.set()
            if returned:
                self._preferred_due.set()

    async def _reconcile_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.reconcile_interval_s)
            self._wake.clear()
            try:
                changed = await self.reconcile()
                if changed:
                    log.info("leadership reconcile changed %d partitions", changed)
            except BrookError as error:
                log.warning("reconcile pass failed: %s", error)
                if error.reason == "NOT_COORDINATOR":
                    return
                await asyncio.sleep(RECONCILE_RETRY_S)  # etcd trouble: back off, then retry
                self._wake.set()

    async def _preferred_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._preferred_due.wait(), self.preferred_election_interval_s
                )
            self._preferred_due.clear()
            try:
                moved = await self.run_preferred_elections()
                if moved:
                    log.info("preferred-leader election moved %d leaders", moved)
            except BrookError as error:
                log.warning("preferred-leader pass failed: %s", error)
                if error.reason == "NOT_COORDINATOR":
                    return

    async def _reassignment_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self.reconcile_interval_s)
            self._changed.clear()
            try:
                completed = await self.progress_reassignments()
                if completed:
                    log.info("completed %d partition reassignments", completed)
            except BrookError as error:
                log.warning("reassignment pass failed: %s", error)
                if error.reason == "NOT_COORDINATOR":
                    return
            # Rate limit: one scan of all partitions per REASSIGN_SCAN_MIN_S at most, however
            # often ISRs change.
            await asyncio.sleep(REASSIGN_SCAN_INTERVAL_S_MIN)

    # -- metrics -----------------------------------------------------------------------
    async def sample_metrics(self) -> list[Any]:
        """The cluster as this coordinator's cache sees it (every coordinator exports it,
        active or standby: alerts take the max), sampled on the loop at scrape time."""
        cache = self.cache
        live = self._live()
        offline = under_replicated = under_min_isr = moving = partitions = 0
        min_isr: dict[str, int] = {}
        for index, (key, record) in enumerate(list(cache.partitions.items())):
            if index % SAMPLE_YIELD_EVERY == SAMPLE_YIELD_EVERY - 1:
                await asyncio.sleep(0)
            topic = cache.topics.get(key[0])
            if topic is None:
                continue
            partitions += 1
            if not election.leader_is_live(record, live):
                offline += 1
            if len(record.isr) < len(record.replicas):
                under_replicated += 1
            if topic.name not in min_isr:
                min_isr[topic.name] = configs.config_int(topic, "min_insync_replicas")
            if len(record.isr) < min_isr[topic.name]:
                under_min_isr += 1
            if reassignment.is_reassigning(record):
                moving += 1
        return [
            metrics.gauge("brook_cluster_nodes", len(live)),
            metrics.gauge("brook_cluster_topics", len(cache.topics)),
            metrics.gauge("brook_cluster_partitions", partitions),
            metrics.gauge("brook_cluster_offline_partitions", offline),
            metrics.gauge("brook_cluster_under_replicated_partitions", under_replicated),
            metrics.gauge("brook_cluster_under_min_isr_partitions", under_min_isr),
            metrics.gauge("brook_coordinator_reassignments_in_progress", moving),
        ]

    # -- passes ------------------------------------------------------------------------
    def _unclean_allowed(self, topic: str) -> bool:
        record = self.cache.topics.get(topic)
        return record is not None and configs.config_bool(record, "unclean_leader_election_enable")

    def _live(self) -> frozenset[int]:
        return frozenset(self.cache.nodes)

    async def reconcile(self) -> int:
        """Runs the node-loss / node-return decision for every partition; returns how many
        changed."""
        live = self._live()
        todo: list[PartitionKey] = []
        for key, record in list(self.cache.partitions.items()):
            if key[0] not in self.cache.topics:
                continue
            if election.decide_leadership(
                record, live, unclean_allowed=self._unclean_allowed(key[0])
            ):
                todo.append(TopicPartition(*key))

        def decide(record: PartitionRecord) -> PartitionRecord | None:
            return election.decide_leadership(
                record, self._live(), unclean_allowed=self._unclean_allowed(record.topic)
            )

        return await self._commit_many(todo, decide, "node_change")

    def _preferred_live(self) -> frozenset[int]:
        """The live nodes preferred elections may hand leadership to: not those draining
        for a controlled shutdown (their hold not yet over)."""
        now = self._clock.monotonic_s()
        for node, until in list(self._draining.items()):
            if until <= now:
                del self._draining[node]
        return self._live() - frozenset(self._draining)

    async def drain_leadership(self, node_id: int, hold_s: float) -> tuple[int, int]:
        """A controlled shutdown's first step: moves every leadership of `node_id` to
        another live ISR member and keeps preferred elections off it for `hold_s`.
        Returns (leaderships moved, partitions it still leads)."""
        self._draining[node_id] = self._clock.monotonic_s() + hold_s
        led = [TopicPartition(*key) for key, record in list(self.cache.partitions.items())
               if record.leader == node_id and key[0] in self.cache.topics]  # fmt: skip

        def decide(record: PartitionRecord) -> PartitionRecord | None:
            return election.leadership_drain(record, node_id, self._live()).record

        semaphore = asyncio.Semaphore(PARTITION_COMMITS_CONCURRENT_MAX)

        async def one(key: PartitionKey) -> tuple[bool, bool]:
            """(moved, still led by the node), from what the write saw, not the cache
            (which learns of the writes by its watch, a moment later)."""
            async with semaphore:
                self._require_acting()
                written, seen = await self.commit(key, decide, cause="controlled_shutdown")
                still = written is None and seen is not None and seen.leader == node_id
                return written is not None, still

        results = await asyncio.gather(*(one(key) for key in led))
        return sum(m for m, _ in results), sum(s for _, s in results)

    async def run_preferred_elections(self) -> int:
        """Moves leadership back to preferred replicas that are in the ISR; returns count."""
        live = self._preferred_live()
        todo = [
            TopicPartition(*key)
            for key, record in list(self.cache.partitions.items())
            if key[0] in self.cache.topics and election.needs_preferred_election(record, live)
        ]

        def decide(record: PartitionRecord) -> PartitionRecord | None:
            return election.preferred_election(record, self._preferred_live()).record

        return await self._commit_many(todo, decide, "preferred")

    async def progress_reassignments(self) -> int:
        """Completes moves whose adding replicas have all joined the ISR; returns count."""
        live = self._live()
        todo = [
            TopicPartition(*key)
            for key, record in list(self.cache.partitions.items())
            if key[0] in self.cache.topics and reassignment.progress(record, live) is not None
        ]

        def decide(record: PartitionRecord) -> PartitionRecord | None:
            return reassignment.progress(record, self._live())

        return await self._commit_many(todo, decide, "reassignment")

    async def _commit_many(
        self, keys: Iterable[PartitionKey], decide: Decide, cause: str
    ) -> int:
        semaphore = asyncio.Semaphore(PARTITION_COMMITS_CONCURRENT_MAX)
        changed = 0

        async def one(key: PartitionKey) -> None:
            nonlocal changed
            async with semaphore:
                if not self.active:
                    return
                record, _ = await self.commit(key, decide, cause=cause)
                if record is not None:
                    changed += 1

        results = await asyncio.gather(*(one(k) for k in keys), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return changed

    def _require_acting(self) -> None:
        if not self.active or (self.lease is not None and self.lease.lost.is_set()):
            raise BrookError(Reason.NOT_COORDINATOR, "this process is no longer the coordinator")

    async def commit(
        self, key: PartitionKey, decide: Decide, *, cause: str = "admin"
    ) -> tuple[PartitionRecord | None, PartitionRecord | None]:
        """Decides on the partition's current record and writes the result with CAS.

        Returns (written record or None when no change was needed, last record seen).
        `cause` (node_change, preferred, reassignment, admin) labels the write and, when
        the leader epoch moved, the election in the metrics and the log line.
        Starts from the cache; after a lost race re-reads etcd. Bounded attempts: when
        they run out, nothing is written (the next pass tries again).
        """
        topic, index = key
        cached = self.cache.partitions.get(key)
        revision = self.cache.partition_revisions.get(key)

        async def write(new: PartitionRecord, expected_revision: int) -> bool:
            return await self.store.cas_partition(new, expected_revision) is not None

        try:
            outcome = await compare_and_swap(
                read=lambda: self.store.get_partition(topic, index),
                decide=decide,
                write=write,
                what=f"partition {topic}-{index}",
                first=(cached, revision) if cached is not None and revision is not None else None,
                before_attempt=self._require_acting,
            )
        except CasExhausted:
            return None, self.cache.partitions.get(key)
        new, seen = outcome.decision, outcome.current
        if new is not None and seen is not None:
            self.elections_committed += 1
            self.metrics.writes[cause].inc()
            if new.leader_epoch != seen.leader_epoch:
                self.metrics.elections[cause].inc()
            log.info(
                "partition %s-%d: leader %d -> %d (epoch %d), isr %s (%s)",
                topic, index, seen.leader, new.leader, new.leader_epoch, list(new.isr), cause,
                extra={"topic": topic, "partition": index, "epoch": new.leader_epoch},
            )  # fmt: skip
            return new, new
        return None, seen
