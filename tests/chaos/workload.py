"""A reusable fault-test workload: producers of checkable records, a live reader, a drain.

    workload = Workload(bootstrap, WorkloadConfig(topic="chaos", partitions=3))
    await workload.start()
    ...inject faults, waiting on conditions (wait_for_progress, wait_for_leaders...)...
    await workload.drain()
    report = workload.check()          # tests.chaos.checker.Report
    assert report.ok, report.summary()

Producers. `workers` asyncio tasks, each with its own `brook.client.Producer` (acks=all,
bounded retries and delivery timeout), send unique record ids (`w3-000123`: worker 3,
sequence 123) keyed by the worker to one explicit partition (worker i -> partition
i % partitions), with at most `window` records in flight. Every acknowledgement becomes
a `checker.Ack(record_id, (topic, partition), offset, producer, sequence)`; failures are
counted by reason (they are allowed: the checker only holds acknowledged records to
account). A worker stops by itself after `max_records_per_worker` records or
`max_duration_s`, whichever comes first, or when `drain()` asks.

Reader. With `live_consumer`, one `brook.client.Consumer` reads every partition from
offset 0 while the faults run and records each `checker.Read` (it only sees records
below the high watermark, so each one must still be in the final log).

Drain. `drain()` stops producing (bounded), waits until every partition has a live
leader, waits (bounded) until each partition's high watermark covers its highest
acknowledged offset (a leader elected moments ago raises its HW only once followers
fetch from it), then reads every partition from 0 to its high watermark (ListOffsets
LATEST) into `final`. If the HW never gets there the records are reported lost by the
checker, which is the point.

Helpers for tests: `describe`, `leader_of`, `busiest_partitions`, `wait_for_leaders`
(optionally a new epoch, or away from given nodes), `wait_in_sync` (a restarted node is
back in the ISR of every partition it replicates), `produce_direct` (one raw Produce to
one node, for fencing checks), and `Stopwatch`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import time
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from brook import codec
from brook.client.admin import Admin
from brook.client.consumer import Consumer
from brook.client.producer import Producer
from brook.client.records import RecordMetadata, TopicPartition
from brook.errors import BrookError, from_partition_error, from_rpc_error
from brook.v1 import common_pb2, storage_pb2, storage_pb2_grpc
from tests.chaos.checker import Ack, PartitionKey, Read, Report, check
from tests.harness.wait import eventually

log = logging.getLogger("tests.chaos.workload")

# Bounds (why): a worker's in-flight records wait at most their delivery timeout; this
# margin covers the producer's own close.
CLOSE_MARGIN_S = 10.0
# The final read polls in steps of this long; the whole read is bounded by drain's timeout.
READ_POLL_MS = 500
# How long the live reader backs off after an error it cannot get past by itself.
READER_BACKOFF_S = 0.5
# DescribeTopic / ListOffsets polling interval while waiting for a condition.
POLL_INTERVAL_S = 0.1


@dataclass(frozen=True)
class WorkloadConfig:
    """What the workload produces and how hard it tries; every number is a bound."""

    topic: str
    partitions: int
    workers: int = 3
    # Records one worker may have sent and not yet seen answered.
    window: int = 8
    # Each worker stops by itself after this many records or this long.
    max_records_per_worker: int = 50_000
    max_duration_s: float = 240.0
    # Producer retry bounds: count, whole-record deadline, per-request timeout (which is
    # also the server's acks=all wait), back-off.
    retries: int = 20
    delivery_timeout_ms: int = 30_000
    request_timeout_ms: int = 3_000
    retry_backoff_ms: int = 50
    retry_backoff_max_ms: int = 500
    linger_ms: float = 2
    live_consumer: bool = True
    # Records per second one worker sends at most (0: as fast as answers come back); a
    # long campaign paces itself so its histories stay a bounded size.
    max_rate_per_worker: float = 0.0


@dataclass
class Histories:
    """What the workload saw; the checker's three inputs plus failure counts."""

    acks: list[Ack] = field(default_factory=list)
    reads: list[Read] = field(default_factory=list)
    final: list[Read] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    # The first message seen for each failure reason (for reports).
    failure_examples: dict[str, str] = field(default_factory=dict)
    sent: int = 0


class Stopwatch:
    """Elapsed wall time since construction (or the last `restart`), monotonic."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def restart(self) -> None:
        self.started = time.monotonic()

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started


def record_id(worker: int, sequence: int) -> str:
    return f"w{worker}-{sequence:06d}"


class Workload:
    """Producers + optional live reader on one topic; see the module docstring."""

    def __init__(self, bootstrap: str | Sequence[str], config: WorkloadConfig) -> None:
        self.bootstrap = bootstrap
        self.config = config
        self.history = Histories()
        self.consumer_errors: list[str] = []
        self._stop = asyncio.Event()
        self._progress = asyncio.Event()
        self._acked_on: Counter[int] = Counter()
        self._workers: list[asyncio.Task[None]] = []
        self._reader: asyncio.Task[None] | None = None
        self._reader_stop = asyncio.Event()
        self._drained = False

    # -- running -------------------------------------------------------------------------
    async def start(self) -> None:
        """Starts the workers (and reader); each producer loads metadata first."""
        producers: list[Producer] = []
        try:
            for index in range(self.config.workers):
                producer = self._producer(index)
                await producer.start()
                producers.append(producer)
        except BaseException:
            for producer in producers:
                await producer.close(timeout_s=1)
            raise
        loop = asyncio.get_running_loop()
        for index, producer in enumerate(producers):
            self._workers.append(
                loop.create_task(self._run_worker(index, producer), name=f"chaos-worker-{index}")
            )
        if self.config.live_consumer:
            self._reader = loop.create_task(self._run_reader(), name="chaos-reader")

    def _producer(self, index: int) -> Producer:
        config = self.config
        return Producer(
            self.bootstrap,
            acks="all",
            linger_ms=config.linger_ms,
            retries=config.retries,
            delivery_timeout_ms=config.delivery_timeout_ms,
            request_timeout_ms=config.request_timeout_ms,
            retry_backoff_ms=config.retry_backoff_ms,
            retry_backoff_max_ms=config.retry_backoff_max_ms,
            max_block_ms=config.delivery_timeout_ms,
            client_id=f"chaos-w{index}",
        )

    async def _run_worker(self, index: int, producer: Producer) -> None:
        config = self.config
        name = f"w{index}"
        partition = index % config.partitions
        key = name.encode()
        window = asyncio.Semaphore(config.window)
        outstanding: set[asyncio.Future[RecordMetadata]] = set()
        started = time.monotonic()
        deadline = started + config.max_duration_s
        try:
            for sequence in range(config.max_records_per_worker):
                if self._stop.is_set() or time.monotonic() > deadline:
                    break
                if config.max_rate_per_worker > 0:
                    # Pacing (not synchronization): stay at or below the configured rate.
                    ahead_s = started + sequence / config.max_rate_per_worker - time.monotonic()
                    if ahead_s > 0:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._stop.wait(), ahead_s)
                        if self._stop.is_set():
                            break
                await window.acquire()
                if self._stop.is_set():
                    window.release()
                    break
                rid = record_id(index, sequence)
                try:
                    future = await producer.send(
                        config.topic, rid.encode(), key=key, partition=partition
                    )
                except BrookError as error:
                    window.release()
                    self.history.failures[error.reason] += 1
                    self.history.failure_examples.setdefault(error.reason, str(error))
                    continue
                self.history.sent += 1
                outstanding.add(future)
                future.add_done_callback(
                    functools.partial(
                        self._answered,
                        rid=rid,
                        producer=name,
                        sequence=sequence,
                        window=window,
                        outstanding=outstanding,
                    )
                )
            if outstanding:
                await asyncio.wait(
                    outstanding, timeout=config.delivery_timeout_ms / 1000 + CLOSE_MARGIN_S
                )
        finally:
            await producer.close(timeout_s=CLOSE_MARGIN_S)

    def _answered(
        self,
        future: asyncio.Future[RecordMetadata],
        rid: str,
        producer: str,
        sequence: int,
        window: asyncio.Semaphore,
        outstanding: set[asyncio.Future[RecordMetadata]],
    ) -> None:
        window.release()
        outstanding.discard(future)
        if future.cancelled():
            self.history.failures["CANCELLED"] += 1
            return
        error = future.exception()
        if error is not None:
            reason = error.reason if isinstance(error, BrookError) else type(error).__name__
            self.history.failures[reason] += 1
            self.history.failure_examples.setdefault(reason, str(error))
            return
        metadata = future.result()
        self.history.acks.append(
            Ack(
                rid,
                (metadata.topic, metadata.partition),
                metadata.offset,
                producer,
                sequence,
                time.monotonic(),
            )
        )
        self._acked_on[metadata.partition] += 1
        self._progress.set()

    async def _run_reader(self) -> None:
        config = self.config
        tps = [TopicPartition(config.topic, p) for p in range(config.partitions)]
        async with Consumer(self.bootstrap, auto_offset_reset="earliest") as consumer:
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, 0)
            while not self._reader_stop.is_set():
                try:
                    records = await consumer.poll(timeout_ms=200)
                except BrookError as error:
                    # Not retriable by the consumer itself: note it, start the partitions
                    # again from where they were (bounded by the run's length).
                    self.consumer_errors.append(str(error))
                    log.warning("live reader: %s", error)
                    await asyncio.sleep(READER_BACKOFF_S)  # back-off before re-seeking
                    for tp in tps:
                        with contextlib.suppress(BrookError):
                            consumer.seek(tp, await consumer.position(tp))
                    continue
                for record in records:
                    self.history.reads.append(
                        Read((record.topic, record.partition), record.offset, record.value.decode())
                    )

    @property
    def acked(self) -> int:
        return len(self.history.acks)

    def acked_by_partition(self) -> Counter[PartitionKey]:
        return Counter(ack.partition for ack in self.history.acks)

    async def wait_for_progress(
        self,
        new_acks: int,
        timeout_s: float,
        what: str = "",
        partitions: Collection[int] | None = None,
    ) -> float:
        """Waits until `new_acks` more records are acknowledged (on each of `partitions`
        when given, else in total); returns the seconds it took.

        Raises TimeoutError naming the failure counts when production does not resume.
        """
        targets: dict[int | None, int]
        if partitions is None:
            targets = {None: self.acked + new_acks}
        else:
            targets = {p: self._acked_on.get(p, 0) + new_acks for p in partitions}
        watch = Stopwatch()
        deadline = watch.started + timeout_s
        while True:
            short = [
                p
                for p, target in targets.items()
                if (self.acked if p is None else self._acked_on.get(p, 0)) < target
            ]
            if not short:
                return watch.elapsed_s()
            if all(task.done() for task in self._workers):
                raise RuntimeError(f"every worker has stopped ({self.describe_run()})")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                where = "in total" if partitions is None else f"on partitions {short}"
                raise TimeoutError(
                    f"{new_acks} more acks {where} {what} not reached within {timeout_s}s"
                    f" ({self.describe_run()})"
                )
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), remaining)

    def describe_run(self) -> str:
        failures = ", ".join(f"{k}={v}" for k, v in sorted(self.history.failures.items()))
        return (
            f"sent={self.history.sent} acked={self.acked} read_live={len(self.history.reads)}"
            f" failures: {failures or 'none'}"
        )

    # -- ending ----------------------------------------------------------------------------
    async def stop_producing(self) -> None:
        """Stops the workers; each waits (bounded) for its in-flight records' answers."""
        self._stop.set()
        if self._workers:
            await asyncio.gather(*self._workers, return_exceptions=True)

    async def stop_reader(self) -> None:
        self._reader_stop.set()
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, CLOSE_MARGIN_S)
            except (TimeoutError, asyncio.CancelledError):
                self._reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._reader
            except Exception as error:  # the reader's own failure is part of the report
                self.consumer_errors.append(f"reader failed: {error!r}")

    async def close(self) -> None:
        """Stops everything without reading (for finally blocks); idempotent."""
        self._stop.set()
        for task in self._workers:
            if not task.done():
                task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        await self.stop_reader()

    async def drain(
        self, admin: Admin, timeout_s: float = 60.0, incomplete: dict[str, str] | None = None
    ) -> Histories:
        """Stops producing and reading, then reads every partition to its HW (bounded).

        With `incomplete`, a final read that does not finish in time keeps what it read
        and names the partitions it could not read to the end there (their records the
        checker then reports lost); without it, that is a TimeoutError."""
        watch = Stopwatch()
        await self.stop_producing()
        await self.stop_reader()
        topic = self.config.topic
        await wait_for_leaders(admin, topic, timeout_s=timeout_s)
        highest: dict[int, int] = {}
        for ack in self.history.acks:
            highest[ack.partition[1]] = max(highest.get(ack.partition[1], -1), ack.offset)
        tps = [TopicPartition(topic, p) for p in range(self.config.partitions)]
        async with Consumer(self.bootstrap, auto_offset_reset="earliest") as consumer:
            remaining = max(1.0, timeout_s - watch.elapsed_s())
            ends = await self._wait_for_high_watermarks(consumer, tps, highest, remaining)
            remaining = max(1.0, timeout_s - watch.elapsed_s())
            self.history.final = await read_to(consumer, tps, ends, remaining, incomplete)
        self._drained = True
        log.info("drained in %.1fs: %s", watch.elapsed_s(), self.describe_run())
        return self.history

    async def _wait_for_high_watermarks(
        self,
        consumer: Consumer,
        tps: list[TopicPartition],
        highest: Mapping[int, int],
        timeout_s: float,
    ) -> dict[TopicPartition, int]:
        """End offsets once each covers the partition's highest ack, or at the bound."""
        deadline = time.monotonic() + timeout_s
        ends: dict[TopicPartition, int] = {}
        while True:
            try:
                ends = await consumer.end_offsets(tps)
            except BrookError as error:
                if time.monotonic() > deadline:
                    raise
                log.info("end offsets not available yet: %s", error)
                await asyncio.sleep(POLL_INTERVAL_S)  # polling a condition, bounded
                continue
            short = {tp: end for tp, end in ends.items() if end <= highest.get(tp.partition, -1)}
            if not short or time.monotonic() > deadline:
                if short:
                    log.warning("high watermarks still below acknowledged offsets: %s", short)
                return ends
            await asyncio.sleep(POLL_INTERVAL_S)  # polling a condition, bounded

    def dump(self, path: Path) -> None:
        """Writes the histories as JSON lines: {"kind": "ack"|"read"|"final", ...}."""
        with open(path, "w") as out:
            for kind, items in (
                ("ack", self.history.acks),
                ("read", self.history.reads),
                ("final", self.history.final),
            ):
                for item in items:
                    out.write(json.dumps({"kind": kind, **dataclasses.asdict(item)}) + "\n")

    def check(self) -> Report:
        """The checker's verdict on this run (call after drain)."""
        if not self._drained:
            raise RuntimeError("drain() first: the final read is missing")
        return check(self.history.acks, self.history.reads, self.history.final)


async def drain_and_check(
    workload: Workload, admin: Admin, timeout_s: float, dump_path: Path | None = None
) -> Report:
    """Drains the workload, prints what happened and asserts the checker found nothing
    that must not happen (duplicates are reported, not failed). On a failure the
    histories are written to `dump_path` (JSON lines) for a closer look."""
    await workload.drain(admin, timeout_s)
    report = workload.check()
    if not report.ok and dump_path is not None:
        workload.dump(dump_path)
        print(f"histories written to {dump_path}")
    print(f"{workload.describe_run()}\nchecker: {report.summary()}")
    for reason, example in workload.history.failure_examples.items():
        print(f"failed sends, e.g. {reason}: {example}")
    if workload.consumer_errors:
        print(f"live reader errors: {workload.consumer_errors[:5]}")
    assert report.ok, (
        report.summary(),
        report.lost[:10],
        report.inconsistent[:10],
        report.order_violations[:10],
        report.vanished_reads[:10],
    )
    return report


async def read_to(
    consumer: Consumer,
    tps: Iterable[TopicPartition],
    ends: Mapping[TopicPartition, int],
    timeout_s: float,
    incomplete: dict[str, str] | None = None,
) -> list[Read]:
    """Every record of `tps` from offset 0 up to (excluding) `ends`, bounded by timeout_s.

    At the bound: TimeoutError, or (with `incomplete`) what was read, with
    `incomplete[partition] = "position/end"` for each partition not read to its end."""
    wanted = {tp: ends[tp] for tp in tps if ends.get(tp, 0) > 0}
    reads: list[Read] = []
    if not wanted:
        return reads
    consumer.assign(wanted)
    for tp in wanted:
        consumer.seek(tp, 0)
    deadline = time.monotonic() + timeout_s
    done: set[TopicPartition] = set()
    while len(done) < len(wanted):
        if time.monotonic() > deadline:
            positions = {str(tp): await consumer.position(tp) for tp in wanted}
            if incomplete is not None:
                incomplete.update(
                    {
                        str(tp): f"{positions[str(tp)]}/{end}"
                        for tp, end in wanted.items()
                        if tp not in done
                    }
                )
                return reads
            raise TimeoutError(
                f"final read incomplete within {timeout_s}s: at {positions}"
                f" of { ({str(tp): end for tp, end in wanted.items()}) }"
            )
        try:
            polled = await consumer.poll(timeout_ms=READ_POLL_MS)
        except BrookError as error:
            if incomplete is None:
                raise
            # A partition that cannot be served (e.g. a corrupt batch): keep reading the
            # others until the bound, then report it incomplete.
            log.warning("final read: %s", error)
            polled = []
            await asyncio.sleep(READER_BACKOFF_S)  # back-off before polling again
        for record in polled:
            tp = TopicPartition(record.topic, record.partition)
            if tp in done or record.offset >= wanted[tp]:
                continue
            reads.append(
                Read((record.topic, record.partition), record.offset, record.value.decode())
            )
        for tp, end in wanted.items():
            if tp not in done and await consumer.position(tp) >= end:
                done.add(tp)
                consumer.pause(tp)
    return reads


# -- cluster views -----------------------------------------------------------------------


async def describe(admin: Admin, topic: str) -> dict[int, common_pb2.PartitionState]:
    """The topic's partitions as the active coordinator sees them, by index."""
    description = await admin.describe_topic(topic)
    return {state.partition: state for state in description.partitions}


def has_live_leader(state: common_pb2.PartitionState) -> bool:
    return state.leader_id >= 0 and state.leader_id not in state.offline_replica_ids


async def leader_of(admin: Admin, topic: str, partition: int) -> tuple[int, int]:
    """(leader node id, leader epoch) of one partition; the leader is -1 when offline."""
    state = (await describe(admin, topic))[partition]
    return state.leader_id, state.leader_epoch


def busiest_partitions(acks: Iterable[Ack], count: int = 1) -> list[PartitionKey]:
    """The `count` partitions with the most acknowledged records, busiest first."""
    return [key for key, _ in Counter(ack.partition for ack in acks).most_common(count)]


async def wait_for_leaders(
    admin: Admin,
    topic: str,
    *,
    timeout_s: float,
    partitions: Collection[int] | None = None,
    not_on: Collection[int] = (),
    epoch_above: Mapping[int, int] | None = None,
) -> dict[int, common_pb2.PartitionState]:
    """Waits until each partition (default: all) has a live leader that is not one of
    `not_on` and whose epoch is above `epoch_above[partition]` when given."""

    async def probe() -> dict[int, common_pb2.PartitionState]:
        states = await describe(admin, topic)
        for index, state in states.items():
            if partitions is not None and index not in partitions:
                continue
            if not has_live_leader(state) or state.leader_id in not_on:
                return {}  # falsy: not yet
            if epoch_above is not None and state.leader_epoch <= epoch_above.get(index, -1):
                return {}
        return states

    return await eventually(
        probe, timeout_s=timeout_s, interval_s=POLL_INTERVAL_S, what=f"leaders of {topic}"
    )


async def wait_in_sync(
    admin: Admin, topic: str, node_ids: Collection[int] | None = None, *, timeout_s: float
) -> dict[int, common_pb2.PartitionState]:
    """Waits until `node_ids` (default: every replica) are in the ISR of every partition
    they replicate, each partition has a live leader, and no replica is offline."""

    async def probe() -> dict[int, common_pb2.PartitionState]:
        states = await describe(admin, topic)
        for state in states.values():
            wanted = (
                set(state.replica_ids)
                if node_ids is None
                else (set(node_ids) & set(state.replica_ids))
            )
            if not has_live_leader(state) or not wanted <= set(state.isr_ids):
                return {}  # falsy: not yet
            if wanted & set(state.offline_replica_ids):
                return {}
        return states

    return await eventually(
        probe, timeout_s=timeout_s, interval_s=POLL_INTERVAL_S, what=f"ISR of {topic} full"
    )


async def produce_direct(
    address: str,
    topic: str,
    partition: int,
    values: Sequence[bytes],
    *,
    epoch: int = -1,
    acks: int = storage_pb2.ACKS_ALL,
    timeout_ms: int = 3_000,
) -> int:
    """One Produce straight to the node at `address` (no client retries, no metadata);
    returns the base offset or raises the BrookError of the answer."""
    now_ms = time.time_ns() // 1_000_000
    batch = codec.encode_batch(list(values), [now_ms] * len(values))
    request = storage_pb2.ProduceRequest(
        acks=acks,  # type: ignore[arg-type]
        timeout_ms=timeout_ms,
        partitions=[
            storage_pb2.ProducePartition(
                topic=topic, partition=partition, current_leader_epoch=epoch, batches=[batch]
            )
        ],
        client_id="chaos-direct",
    )
    async with grpc.aio.insecure_channel(address) as channel:
        stub = storage_pb2_grpc.StorageServiceStub(channel)
        try:
            response = await stub.Produce(request, timeout=timeout_ms / 1000 + 5)
        except grpc.aio.AioRpcError as rpc_error:
            raise from_rpc_error(rpc_error) from None
    answer = response.partitions[0]
    error = from_partition_error(answer.error)
    if error is not None:
        raise error
    return int(answer.base_offset)
