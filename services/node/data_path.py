"""The node's data path (Kafka's ReplicaManager.appendRecords / fetchMessages): produce,
consumer fetch, subscribe and follower fetch, once, for the servicers to call.

It owns the orchestration the servicers must not: the partition lock around every
engine call, validate -> stamp -> append -> flush policy, waiting for the ISR
(acks=all), the acks=none background appends, byte budgets across partitions, and the
one long-poll skeleton (`long_poll`) that Fetch and ReplicaFetch share. The decisions
themselves (may we append, where, what is committed, where a follower diverges) are
the `Partition` core's; the I/O is `LogHandle`'s.

    servicer (parse, encode)  ->  DataPath (lock, append, wait)  ->  Replica.settle
                                    |  Partition (decide)              (waiters)
                                    +- LogHandle (engine, executor)

Thread-safety: one event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from brook.clock import Clock
from brook.errors import BrookError
from brook.services.common.metrics import NodeMetrics, node_metrics
from brook.services.node.acks import Acks
from brook.services.node.batches import RawBatch, ValidBatch, stamp, validate_batches
from brook.services.node.config import NodeLimits
from brook.services.node.partition import AppendGrant, ReplicaReadPlan
from brook.services.node.replica import Replica
from brook.services.node.request_bounds import requested_epoch
from brook.services.node.storage_log import AppendRun
from brook.services.node.waiters import OffsetWaiters
from brook.storage import AppendBatch
from brook.structs import TopicPartition
from brook.v1 import storage_pb2

log = logging.getLogger("brook.node.data_path")

T = TypeVar("T")

# A Subscribe stream with nothing to send re-checks its partitions at least this often
# (so it notices a shutdown or a deleted topic without a data event).
SUBSCRIBE_IDLE_RECHECK_S = 1.0
# When a partition's waiter set is full, a long-poll re-reads after this pause instead.
WAITERS_FULL_PAUSE_S = 0.05
# acks=none appends still queued at shutdown get this long to land.
ACKS_NONE_DRAIN_S = 5.0
# Loops over a request's partitions yield to the event loop this often (why: each
# partition costs ~5-20 us of Python; without yields the largest allowed request would
# hold the loop, and the lease keep-alive with it, for ~100 ms).
YIELD_EVERY_PARTITIONS = 256


async def yield_every(index: int) -> None:
    """Lets other tasks run after every YIELD_EVERY_PARTITIONS partitions."""
    if index % YIELD_EVERY_PARTITIONS == YIELD_EVERY_PARTITIONS - 1:
        await asyncio.sleep(0)


class Replicas(Protocol):
    """Where the data path finds replicas (the ReplicaManager)."""

    def lookup(self, key: TopicPartition) -> Replica: ...

    def maybe_change_isr(self, replica: Replica) -> None: ...


class Closing:
    """Set once at shutdown so long-polls and streams end instead of pinning the drain."""

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None

    @property
    def future(self) -> asyncio.Future[None]:
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
        return self._future

    def set(self) -> None:
        if not self.future.done():
            self.future.set_result(None)

    def is_set(self) -> bool:
        return self._future is not None and self._future.done()


# -- the long-poll skeleton ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class WaitTarget:
    """Park on `waiters` until their offset reaches `required`. `current(argument)` says
    where it is, read when parking: a step between the read and the park (any await)
    may have moved it already, and its wake-up must not be lost."""

    waiters: OffsetWaiters
    required: int
    current: Callable[[int], int]
    argument: int


@dataclass(slots=True)
class Round:
    """One read of a long-poll: the answer so far, and what to wait on for more."""

    answer_now: bool
    waits: list[WaitTarget] = field(default_factory=list)


async def wait_for_any(targets: Sequence[WaitTarget], timeout_s: float, closing: Closing) -> None:
    """Parks on every target until one advances, closing, or timeout_s. When a
    partition's waiter set is full the caller re-reads after a short pause instead."""
    parked = []
    try:
        for target in targets:
            current = target.current(target.argument)
            parked.append(target.waiters.add(target.required, current))
    except BrookError:  # TOO_MANY_REQUESTS: do not wait on a full set
        timeout_s = min(timeout_s, WAITERS_FULL_PAUSE_S)
    try:
        futures: list[asyncio.Future[None]] = [waiter.future for waiter in parked]
        futures.append(closing.future)
        await asyncio.wait(futures, timeout=max(0.0, timeout_s),
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in parked:
            waiter.discard()


async def long_poll(
    read: Callable[[], Awaitable[Round]], wait_s: float, clock: Clock, closing: Closing
) -> None:
    """Reads until a round answers, nothing is left to wait on, wait_s passes or the node
    closes; between rounds it parks on what the round said (the caller keeps the last
    round's answer)."""
    deadline_s = clock.monotonic_s() + wait_s
    while True:
        round_ = await read()
        left_s = deadline_s - clock.monotonic_s()
        if round_.answer_now or left_s <= 0 or not round_.waits or closing.is_set():
            return
        await wait_for_any(round_.waits, left_s, closing)


# -- results (the servicers encode them) -----------------------------------------------------
@dataclass(slots=True)
class ProduceOutcome:
    key: TopicPartition
    base_offset: int = -1
    last_offset: int = -1
    log_append_time_ms: int = -1
    log_start_offset: int = -1
    error: BrookError | None = None


@dataclass(slots=True)
class PartitionRead:
    """A consumer read of one partition."""

    key: TopicPartition
    high_watermark: int = -1
    log_start_offset: int = -1
    batches: list[bytes] = field(default_factory=list)
    # Where the next read continues (after the last batch returned).
    next_offset: int = -1
    error: BrookError | None = None
    # Records in `batches` (from the storage headers), for the metrics.
    records: int = 0


@dataclass(slots=True)
class FollowerRead:
    """A follower read of one partition: the leader's plan and the batches, or an error."""

    key: TopicPartition
    plan: ReplicaReadPlan | None = None
    batches: list[bytes] = field(default_factory=list)
    error: BrookError | None = None


@dataclass(frozen=True, slots=True)
class _Appended:
    base_offset: int
    last_offset: int
    generation: int


@dataclass(frozen=True, slots=True)
class _QueuedAppend:
    """An acks=none append, validated and answered, waiting for its turn."""

    key: TopicPartition
    leader_epoch: int
    batches: list[ValidBatch]


class ProducePartition(Protocol):
    """A partition's part of a produce request (wire.ProducePartitionView)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def current_leader_epoch(self) -> int: ...

    @property
    def batches(self) -> Sequence[RawBatch]: ...


def stamped_run(batches: Sequence[ValidBatch], grant: AppendGrant) -> AppendRun:
    """The batches stamped with their offsets from the grant's base and its epoch."""
    next_offset = grant.base_offset
    stamped: list[AppendBatch] = []
    for batch in batches:
        payload = stamp(batch, next_offset, grant.leader_epoch)
        stamped.append(AppendBatch(payload, batch.record_count, batch.max_timestamp_ms))
        next_offset += batch.record_count
    return AppendRun(grant.base_offset, grant.leader_epoch, stamped)


class DataPath:
    """Produce, Fetch, Subscribe and ReplicaFetch over the node's replicas."""

    def __init__(
        self, replicas: Replicas, limits: NodeLimits, clock: Clock, closing: Closing,
        metrics: NodeMetrics | None = None,
    ) -> None:
        self.replicas = replicas
        self.limits = limits
        self.clock = clock
        self.closing = closing
        # Counted per request and partition, never per record (services/common/metrics.py).
        self.metrics = metrics or node_metrics()
        # acks=none appends run here, in arrival order; bounded, so a producer that sends
        # faster than the disk takes it waits for room (back-pressure, not memory).
        self._queued: asyncio.Queue[_QueuedAppend] | None = None
        self._worker: asyncio.Task[None] | None = None

    @property
    def acks_none_queued(self) -> int:
        """acks=none appends answered and not yet appended."""
        return self._queued.qsize() if self._queued is not None else 0

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        self._queued = asyncio.Queue(self.limits.acks_none_queue_max)
        self._worker = asyncio.get_running_loop().create_task(
            self._append_queued(), name="acks-none-appends"
        )

    async def close(self) -> None:
        """Lets queued acks=none appends land (bounded), then stops the worker."""
        if self._queued is not None:
            try:
                await asyncio.wait_for(self._queued.join(), ACKS_NONE_DRAIN_S)
            except TimeoutError:
                log.warning("%d acks=none appends dropped at shutdown", self._queued.qsize())
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)

    # -- produce -----------------------------------------------------------------------
    async def produce(
        self, acks: Acks, timeout_ms: int, partitions: Sequence[ProducePartition]
    ) -> list[ProduceOutcome]:
        """Appends every partition's batches (all or none per partition) and, for
        acks=all, waits until the ISR has them; failures are per partition."""
        timeout_s = min(timeout_ms or self.limits.produce_timeout_default_ms,
                        self.limits.produce_timeout_max_ms) / 1000
        outcomes: list[ProduceOutcome] = []
        waits: list[Awaitable[None]] = []
        # The servicer has refused a request naming a partition twice (defect 12), so no
        # partition's append can precede the refusal of another.
        for index, wanted in enumerate(partitions):
            await yield_every(index)
            outcome = ProduceOutcome(TopicPartition(wanted.topic, wanted.partition))
            outcomes.append(outcome)
            try:
                replica = self.replicas.lookup(outcome.key)
                if acks is Acks.NONE:
                    await self._enqueue(replica, wanted)
                    continue
                appended = await self._append_as_leader(
                    replica, wanted.current_leader_epoch, wanted.batches, acks
                )
                outcome.base_offset, outcome.last_offset = (appended.base_offset,
                                                            appended.last_offset)
                outcome.log_append_time_ms = self.clock.now_ms()
                outcome.log_start_offset = replica.log.log_start_offset
                if acks is Acks.ALL:
                    waits.append(self._commit_or_error(replica, appended, timeout_s, outcome))
            except BrookError as error:
                outcome.error = error
                self.metrics.partition_error("produce", error.reason)
        await asyncio.gather(*waits)
        return outcomes

    def _validate(self, replica: Replica, raw: Sequence[RawBatch]) -> list[ValidBatch]:
        """The batch checks, and timestamps no further ahead of our clock than allowed
        (defect 12: 2^62 was accepted, and time-based retention and lookups then treat
        the batch as newer than everything forever)."""
        validated = validate_batches(raw, replica.partition.settings.max_batch_bytes)
        latest_ms = self.clock.now_ms() + self.limits.produce_timestamp_future_max_ms
        for index, batch in enumerate(validated):
            if batch.max_timestamp_ms > latest_ms:
                raise BrookError(
                    "INVALID_REQUEST",
                    f"batch {index} has max_timestamp_ms {batch.max_timestamp_ms}, more than"
                    f" {self.limits.produce_timestamp_future_max_ms} ms past this node's"
                    " clock; nothing of this partition was appended",
                    {"batch": index, "max_timestamp_ms": batch.max_timestamp_ms,
                     "limit": latest_ms},
                )
        return validated

    async def _append_as_leader(
        self, replica: Replica, leader_epoch: int, raw: Sequence[RawBatch], acks: Acks,
        validated: Sequence[ValidBatch] | None = None,
    ) -> _Appended:
        """Checks, stamps from the log end and appends, holding the lock from the grant to
        the HW update so the log end cannot move in between."""
        partition = replica.partition
        async with replica.log.lock:
            grant = partition.grant_leader_append(leader_epoch, acks)
            if acks is Acks.ALL and replica.produce_waiters.full:
                raise BrookError(
                    "TOO_MANY_REQUESTS",
                    f"{replica.produce_waiters.limit} acks=all produces already wait on"
                    f" {partition.name}; back off and retry",
                    {"topic": partition.topic, "partition": partition.partition},
                )
            if validated is None:
                validated = self._validate(replica, raw)
            run = stamped_run(validated, grant)
            await replica.log.append_async([run])
            replica.log_grew()
            records = sum(b.record_count for b in validated)
            counters = self.metrics.topic(partition.topic)
            counters.produce_bytes.inc(run.payload_bytes)
            counters.produce_records.inc(records)
            counters.produce_batches.inc(len(validated))
            try:
                partition.leader_appended(grant)
            finally:
                replica.settle()
        last_offset = grant.base_offset + records - 1
        return _Appended(grant.base_offset, last_offset, grant.generation)

    async def _commit_or_error(
        self, replica: Replica, appended: _Appended, timeout_s: float, outcome: ProduceOutcome
    ) -> None:
        try:
            await self._wait_for_commit(replica, appended, timeout_s)
        except BrookError as error:
            outcome.error = error
            self.metrics.partition_error("produce", error.reason)

    async def _wait_for_commit(
        self, replica: Replica, appended: _Appended, timeout_s: float
    ) -> None:
        """Waits until the HW passes the append with an ISR of at least the minimum."""
        partition = replica.partition
        if partition.check_commit(appended.last_offset, appended.generation):
            return
        waiter = replica.produce_waiters.add(appended.last_offset + 1, partition.high_watermark)
        try:
            await asyncio.wait_for(waiter.future, max(0.0, timeout_s))
        except TimeoutError:
            raise partition.commit_timed_out(appended.last_offset, timeout_s) from None
        finally:
            waiter.discard()
        partition.check_commit(appended.last_offset, appended.generation)

    # -- produce, acks=none --------------------------------------------------------------
    async def _enqueue(self, replica: Replica, wanted: ProducePartition) -> None:
        """Validates now (the answer says the request was well-formed and reached the
        leader), appends later; waits for room in the queue, never grows it."""
        replica.partition.require_leader(wanted.current_leader_epoch)
        valid = self._validate(replica, wanted.batches)
        assert self._queued is not None, "DataPath.start() was not called"
        await self._queued.put(_QueuedAppend(replica.key, wanted.current_leader_epoch, valid))

    async def _append_queued(self) -> None:
        assert self._queued is not None
        while True:
            queued = await self._queued.get()
            try:
                replica = self.replicas.lookup(queued.key)
                await self._append_as_leader(replica, queued.leader_epoch, (), Acks.NONE,
                                             validated=queued.batches)
            except BrookError as error:
                # acks=none reports nothing to the producer, by contract: log it.
                log.warning("%s: acks=none append dropped: %s", queued.key, error)
            except Exception:
                log.exception("%s: acks=none append failed", queued.key)
            finally:
                self._queued.task_done()

    # -- consumer fetch ------------------------------------------------------------------
    async def fetch(
        self, partitions: Sequence[storage_pb2.FetchPartition], max_bytes: int,
        min_bytes: int, max_wait_ms: int,
    ) -> list[PartitionRead]:
        """Committed batches of each partition, long-polling up to max_wait_ms for
        min_bytes; at most max_bytes plus one batch."""
        reads: list[PartitionRead] = []

        async def read() -> Round:
            nonlocal reads
            reads = []
            total, waits, failed = await self._read_committed(partitions, max_bytes, reads)
            return Round(failed or total >= min_bytes, waits)

        wait_s = min(max_wait_ms, self.limits.long_poll_max_ms) / 1000
        await long_poll(read, wait_s, self.clock, self.closing)
        await self._count_reads("fetch", reads)
        return reads

    async def _count_reads(
        self, operation: str, reads: Sequence[PartitionRead | FollowerRead]
    ) -> None:
        """Bytes (and records) out per topic and errors by reason, once per answer: the
        errors of a request are added up first (a 10,000-partition answer of errors costs
        one increment per reason), with turns for the loop as the data path gives them."""
        metrics = self.metrics
        errors: dict[str, int] = {}
        for index, read in enumerate(reads):
            await yield_every(index)
            if read.batches:
                counters = metrics.topic(read.key.topic)
                size = sum(len(batch) for batch in read.batches)
                if isinstance(read, PartitionRead):
                    counters.fetch_bytes.inc(size)
                    counters.fetch_records.inc(read.records)
                else:
                    counters.replication_out.inc(size)
            elif read.error is not None:
                why = str(read.error.reason)
                errors[why] = errors.get(why, 0) + 1
        for why, count in errors.items():
            metrics.partition_error(operation, why, count)

    async def _read_committed(
        self,
        wanted: Sequence[storage_pb2.FetchPartition],
        max_bytes: int,
        out: list[PartitionRead],
        positions: list[int] | None = None,
    ) -> tuple[int, list[WaitTarget], bool]:
        """Reads each partition into `out`; returns (bytes, what to wait on, any error).

        `positions` overrides each partition's fetch offset (Subscribe's moving cursor).
        The first batch found is returned even when larger than the budget; later ones
        only when they fit, so a response is bounded by max_bytes plus one batch.
        """
        total = 0
        waits: list[WaitTarget] = []
        failed = False
        for index, fetch in enumerate(wanted):
            await yield_every(index)
            offset = positions[index] if positions is not None else fetch.fetch_offset
            read = PartitionRead(TopicPartition.of(fetch))
            out.append(read)
            try:
                share = fetch.partition_max_bytes or self.limits.fetch_partition_default_bytes
                replica = self.replicas.lookup(read.key)
                empty = await self._read_one(replica, offset, requested_epoch(fetch),
                                             min(share, max_bytes - total), total == 0, read)
            except BrookError as error:
                read.error = error
                failed = True
                continue
            if read.batches:
                total += sum(len(batch) for batch in read.batches)
                if positions is not None:
                    positions[index] = read.next_offset
            elif empty:
                waits.append(WaitTarget(replica.fetch_waiters, offset + 1,
                                        replica.partition.fetch_wait_floor, offset))
        return total, waits, failed

    async def _read_one(
        self, replica: Replica, offset: int, leader_epoch: int, budget: int, first: bool,
        read: PartitionRead,
    ) -> bool:
        """One partition's committed read within `budget` (`first`: the response is still
        empty, so one batch larger than the budget is taken). True when there is nothing
        yet: worth waiting for."""
        partition = replica.partition
        async with replica.log.lock:
            if budget <= 0:  # the response is full: only say where the partition is
                partition.require_leader(leader_epoch)
                read.high_watermark = partition.high_watermark
                read.log_start_offset = replica.log.log_start_offset
                return False
            plan = partition.committed_read(offset, leader_epoch)
            read.high_watermark, read.log_start_offset = plan.high_watermark, plan.log_start_offset
            if not plan.reads:
                return True
            batches, next_offset, records = replica.log.read_counted(offset, budget,
                                                                     plan.high_watermark)
        size = sum(len(batch) for batch in batches)
        if batches and (first or size <= budget):
            read.batches, read.next_offset, read.records = batches, next_offset, records
        return not batches

    # -- subscribe -----------------------------------------------------------------------
    async def subscribe(
        self, partitions: Sequence[storage_pb2.FetchPartition], max_bytes: int,
        encode: Callable[[list[PartitionRead]], Awaitable[list[T]]],
    ) -> AsyncIterator[T]:
        """Yields the messages `encode(reads)` makes of reads with batches or errors, as
        data arrives, until closing or every partition failed; one read's worth
        (max_bytes) at a time (more than one message only when a batch is split to fit
        the client's receive limit).

        Memory (defect 8: idle readers cost ~20 MiB per stream): the reads are dropped
        before the encoded message is yielded, so while gRPC holds a message that the
        client is slow to take, the stream keeps only that one encoded copy.
        """
        wanted = list(partitions)
        positions = [p.fetch_offset for p in wanted]
        while wanted and not self.closing.is_set():
            reads: list[PartitionRead] = []
            total, waits, failed = await self._read_committed(wanted, max_bytes, reads,
                                                              positions)
            if failed:
                # An error ends that partition's part of the stream (e.g. NOT_LEADER
                # after a failover); the client re-subscribes where it should.
                keep = [i for i, read in enumerate(reads) if read.error is None]
                wanted = [wanted[i] for i in keep]
                positions = [positions[i] for i in keep]
            sent = [read for read in reads if read.batches or read.error is not None]
            await self._count_reads("subscribe", sent)
            reads = []
            if not sent:
                await wait_for_any(waits, SUBSCRIBE_IDLE_RECHECK_S, self.closing)
                continue
            messages = await encode(sent)
            sent = []
            while messages:
                yield messages.pop(0)
            if total > 0:
                # Rotate, so a busy partition early in the list does not starve the
                # others of the per-message budget.
                wanted = wanted[1:] + wanted[:1]
                positions = positions[1:] + positions[:1]

    # -- follower fetch (leader side) ------------------------------------------------------
    async def replica_fetch(
        self, replica_id: int, partitions: Sequence[storage_pb2.ReplicaFetchPartition],
        max_bytes: int, min_bytes: int, max_wait_ms: int,
    ) -> list[FollowerRead]:
        """What each partition has for the follower from its fetch offset (uncommitted
        too), long-polling on the log end for min_bytes up to max_wait_ms."""
        reads: list[FollowerRead] = []

        async def read() -> Round:
            nonlocal reads
            reads = []
            return await self._read_for_follower(replica_id, partitions, max_bytes,
                                                 min_bytes, reads)

        wait_s = min(max_wait_ms, self.limits.long_poll_max_ms) / 1000
        await long_poll(read, wait_s, self.clock, self.closing)
        await self._count_reads("replica_fetch", reads)
        return reads

    async def _read_for_follower(
        self, replica_id: int, partitions: Sequence[storage_pb2.ReplicaFetchPartition],
        max_bytes: int, min_bytes: int, out: list[FollowerRead],
    ) -> Round:
        total = 0
        round_ = Round(answer_now=False)
        for index, wanted in enumerate(partitions):
            await yield_every(index)
            read = FollowerRead(TopicPartition.of(wanted))
            out.append(read)
            try:
                replica = self.replicas.lookup(read.key)
                share = wanted.partition_max_bytes or self.limits.replica_fetch_partition_max_bytes
                budget = min(share, max_bytes - total)
                async with replica.log.lock:
                    read.plan = replica.partition.follower_fetch(
                        replica_id, wanted.fetch_offset, wanted.current_leader_epoch,
                        wanted.last_fetched_epoch,
                    )
                    replica.settle()
                    batches = (replica.log.read(wanted.fetch_offset, max(budget, 1),
                                                read.plan.log_end_offset)[0]
                               if read.plan.reads else [])
            except BrookError as error:
                read.error = error
                round_.answer_now = True
                continue
            if read.plan.diverging is not None:
                round_.answer_now = True
                continue
            size = sum(len(batch) for batch in batches)
            if batches and (total == 0 or size <= budget):
                read.batches = batches
                total += size
            elif not batches:
                round_.waits.append(WaitTarget(replica.replica_waiters, wanted.fetch_offset + 1,
                                               replica.log_end_offset_for, wanted.fetch_offset))
            if replica_id not in replica.partition.isr:
                # A possible expansion, decided at once; shrinks are the ISR loop's
                # (asking every partition on every fetch cost ~12% of a leader's loop
                # with thousands of partitions).
                self.replicas.maybe_change_isr(replica)
        round_.answer_now = round_.answer_now or total >= min_bytes
        return round_

    # -- offsets -------------------------------------------------------------------------
    async def list_offset(
        self, key: TopicPartition, query: str, timestamp_ms: int, leader_epoch: int
    ) -> tuple[int, int, int]:
        """(offset, timestamp_ms, leader_epoch) for "earliest", "latest" or "timestamp"."""
        replica = self.replicas.lookup(key)
        partition = replica.partition
        async with replica.log.lock:
            offset = partition.list_offset(query, leader_epoch)
            if offset is not None:
                return offset, -1, partition.leader_epoch
            found = replica.log.offset_for_timestamp(timestamp_ms)
            offset, timestamp = partition.timestamp_offset(found)
        return offset, timestamp, partition.leader_epoch

    async def end_offset_for_epoch(
        self, key: TopicPartition, epoch: int, current_leader_epoch: int
    ) -> tuple[int, int]:
        """OffsetForLeaderEpoch: (largest epoch <= `epoch` here, where it ends)."""
        replica = self.replicas.lookup(key)
        async with replica.log.lock:
            return replica.partition.end_offset_for_epoch(epoch, current_leader_epoch)
