"""The node's handle on one `brook.storage.PartitionLog`: the `LogPosition` the core reads,
the per-partition lock, I/O placement, and storage errors as BrookErrors.

Disk I/O placement (measured, see services/node/README.md): on the 2-core dev VM a
1 MiB append (pwritev into the page cache) costs ~2.7 ms, too much for the event loop, so
appends larger than `inline_max_bytes` (default 64 KiB), truncations, flushes, retention
and log open/close run on the node's I/O executor. Reads are page-cache copies (~0.2 ms
per MiB) and stay on the loop. A PartitionLog must be driven by one thread at a time, so
every call into it, on the loop or in the executor, holds the partition's `lock` (an
asyncio.Lock: a produce waits for a running flush of the same partition, never the loop).

The flush policy (the topic's `flush_interval_ms` / `flush_interval_batches`) is the
engine's; the node opens logs with `caller_flushes` so an append never fsyncs inside
the call (it may run on the loop), asks `PartitionLog.flush_due()` (in memory) right after
each append (before the produce is acknowledged) and from the flush task, and runs the
fsync (`maybe_flush`) on the executor, under the lock: an fsync never overlaps an append.

Thread-safety: the lock serializes every engine call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TypeVar

from brook.errors import BrookError
from brook.services.common.metrics import node_metrics
from brook.storage import (
    AppendBatch,
    BatchTooLargeError,
    CorruptBatchError,
    DiskFullError,
    InvalidEpochError,
    InvalidOffsetError,
    LogClosedError,
    OffsetOutOfRangeError,
    PartitionLog,
    StorageError,
)

T = TypeVar("T")

log = logging.getLogger("brook.node.storage")

# Appends of at most this many payload bytes run on the loop (cheaper than a thread hop).
DEFAULT_INLINE_MAX_BYTES = 64 * 1024


@contextlib.contextmanager
def storage_errors(name: str) -> Iterator[None]:
    """Maps log-engine exceptions onto the error taxonomy (the one place that does)."""
    try:
        yield
    except OffsetOutOfRangeError as error:
        raise BrookError(
            "OFFSET_OUT_OF_RANGE",
            str(error),
            {
                "offset": error.offset,
                "log_start_offset": error.log_start_offset,
                "log_end_offset": error.log_end_offset,
            },
        ) from error
    except BatchTooLargeError as error:
        raise BrookError(
            "BATCH_TOO_LARGE", str(error), {"max_batch_bytes": error.max_batch_bytes}
        ) from error
    except InvalidEpochError as error:
        raise BrookError(
            "FENCED_LEADER_EPOCH", str(error), {"leader_epoch": error.latest_epoch}
        ) from error
    except InvalidOffsetError as error:
        # A follower append at the wrong base offset: the follower's view of the leader's
        # log is off (it refetches after truncation), not a corrupt batch.
        raise BrookError(
            "INVALID_REQUEST", str(error), {"log_end_offset": error.log_end_offset}
        ) from error
    except DiskFullError as error:
        # Retriable: nothing was written and the log is unchanged; writes resume once the
        # disk has room, and reads keep working meanwhile.
        raise BrookError(
            "STORAGE_ERROR", f"{name}: {error}", {"partition_log": name, "cause": "disk_full"}
        ) from error
    except (LogClosedError, CorruptBatchError, OSError) as error:
        raise BrookError(
            "STORAGE_ERROR", f"{name}: {error}", {"partition_log": name}
        ) from error
    except StorageError as error:
        raise BrookError("INVALID_REQUEST", f"{name}: {error}") from error


@dataclass(frozen=True, slots=True)
class AppendRun:
    """Contiguous batches of one leader epoch, the first at `base_offset` (one engine call:
    one pwritev, all or nothing)."""

    base_offset: int
    leader_epoch: int
    batches: list[AppendBatch]

    @property
    def payload_bytes(self) -> int:
        return sum(len(batch.payload) for batch in self.batches)


class LogHandle:
    """LogPosition over a PartitionLog, with the node's lock and I/O placement."""

    def __init__(
        self,
        partition_log: PartitionLog,
        *,
        executor: Executor | None = None,
        inline_max_bytes: int = DEFAULT_INLINE_MAX_BYTES,
    ) -> None:
        self.plog = partition_log
        self.executor = executor
        self.inline_max_bytes = inline_max_bytes
        self.name = partition_log.name
        self.lock = asyncio.Lock()
        # Called with the first damaged offset when a read finds stored data corrupt (the
        # owner stops leading that range and re-fetches it; see replica_manager).
        self.on_corruption: Callable[[int], None] = lambda offset: None
        self._metrics = node_metrics()

    # -- LogPosition -------------------------------------------------------------------
    @property
    def log_start_offset(self) -> int:
        return self.plog.log_start_offset

    @property
    def log_end_offset(self) -> int:
        return self.plog.log_end_offset

    def latest_epoch(self) -> int | None:
        return self.plog.latest_epoch

    def epoch_entries(self) -> list[tuple[int, int]]:
        return [(entry.epoch, entry.start_offset) for entry in self.plog.epoch_entries()]

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        with storage_errors(self.name):
            return self.plog.end_offset_for_epoch(epoch)

    # -- engine calls on the loop (the caller holds `lock`) ----------------------------
    def append(self, runs: Sequence[AppendRun]) -> None:
        """Appends runs in order; each starts where the log ends (engine follower mode,
        so the engine checks the offsets the payloads carry are the ones it assigns)."""
        with storage_errors(self.name):
            for run in runs:
                self.plog.append_batches(
                    run.batches, leader_epoch=run.leader_epoch, base_offset=run.base_offset
                )

    def read(self, start_offset: int, max_bytes: int, max_offset: int) -> tuple[list[bytes], int]:
        """(stored payloads, next offset): whole batches from the one holding start_offset,
        ending below max_offset, up to max_bytes (at least one when one is available)."""
        payloads, next_offset, _ = self.read_counted(start_offset, max_bytes, max_offset)
        return payloads, next_offset

    def read_counted(
        self, start_offset: int, max_bytes: int, max_offset: int
    ) -> tuple[list[bytes], int, int]:
        """`read`, with the number of records in the batches (from their storage headers:
        per batch, nothing decoded), for the fetch metrics."""
        try:
            with storage_errors(self.name):
                result = self.plog.read(start_offset, max_bytes, max_offset=max_offset)
        except BrookError:
            self._report_corruption()
            raise
        batches = result.batches
        records = sum(batch.header.record_count for batch in batches)
        return [batch.payload for batch in batches], result.next_offset, records

    def _report_corruption(self) -> None:
        corrupt_from = self.plog.corrupt_from
        if corrupt_from is not None:
            self.on_corruption(corrupt_from)

    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        """(offset, max_timestamp_ms) of the first batch with max_timestamp_ms >= the
        given time, or None."""
        with storage_errors(self.name):
            offset = self.plog.offset_for_timestamp(timestamp_ms)
            if offset is None:
                return None
            try:
                found = self.plog.read(offset, 1)
            except CorruptBatchError:
                self._report_corruption()
                raise
        timestamp = found.batches[0].header.max_timestamp_ms if found.batches else -1
        return offset, timestamp

    # -- engine calls that may block (the caller holds `lock`) -------------------------
    async def call(self, action: Callable[[], T], *, inline: bool = False) -> T:
        """Runs an engine call on the loop (inline) or the I/O executor."""
        if inline:
            return action()
        return await run_to_completion(self.executor, action)

    async def append_async(self, runs: Sequence[AppendRun]) -> None:
        """`append`, in the executor unless the batches are small; then the batch flush
        policy, before anyone is told the batches are there."""
        if not runs:
            return
        size = sum(run.payload_bytes for run in runs)
        started = time.perf_counter()
        await self.call(lambda: self.append(runs), inline=size <= self.inline_max_bytes)
        self._metrics.append_duration.observe(time.perf_counter() - started)
        await self.flush_if_due(locked=True)

    async def truncate_to_async(self, offset: int, why: str) -> None:
        """Truncates to `offset` (restarting the log there if below its start)."""
        start, end = self.plog.log_start_offset, self.plog.log_end_offset
        if offset >= end:
            return
        log.warning("%s: truncating %d..%d to %d: %s", self.name, start, end, offset, why)
        await self.call(lambda: self._truncate_to(offset))

    def _truncate_to(self, offset: int) -> None:
        with storage_errors(self.name):
            self.plog.truncate_to(offset)

    async def restart_at_async(self, offset: int, why: str) -> None:
        """Empties the log and restarts it at `offset`."""
        log.warning("%s: emptying the log (%d..%d) and restarting it at %d: %s", self.name,
                    self.plog.log_start_offset, self.plog.log_end_offset, offset, why)
        await self.call(lambda: self._restart_at(offset))

    def _restart_at(self, offset: int) -> None:
        with storage_errors(self.name):
            self.plog.truncate_fully_and_start_at(offset)

    # -- flush policy (the engine's; the fsync on the executor) ------------------------
    async def flush_if_due(self, *, locked: bool = False) -> None:
        """fsyncs when the engine's flush policy wants it (holding the lock unless the
        caller does): the check is in memory, so an idle partition costs no thread hop."""
        if self.plog.closed or not self.plog.flush_due():
            return
        if locked:
            await self._maybe_flush()
            return
        async with self.lock:
            await self._maybe_flush()

    async def _maybe_flush(self) -> None:
        if self.plog.closed:
            return
        started = time.perf_counter()
        with storage_errors(self.name):
            flushed = await run_to_completion(self.executor, self.plog.maybe_flush)
        if flushed:
            self._metrics.flush_duration.observe(time.perf_counter() - started)

    async def run_locked_in_executor(self, action: Callable[[], T]) -> T:
        """Runs a blocking engine call (retention, close) in the executor under the lock."""
        async with self.lock:
            with storage_errors(self.name):
                return await run_to_completion(self.executor, action)


async def run_to_completion(executor: Executor | None, action: Callable[[], T]) -> T:
    """Runs a blocking engine call on `executor` and waits for it to end even when the
    awaiting task is cancelled (then re-raises the cancellation).

    Why: callers hold the partition's asyncio lock around engine calls, and the engine
    allows one call at a time per log. A cancelled `await run_in_executor(...)` would
    release the lock while the thread still runs (a flush writing the recovery-point
    checkpoint), and the next holder's call would race it on the same files: seen as a
    checkpoint rename failing with ENOENT and the log going offline after a lease loss
    cancelled a follower's fetcher mid-flush. Engine calls are bounded (one append, one
    fsync, one truncation), so waiting them out delays the cancellation only that long.
    """
    future = asyncio.get_running_loop().run_in_executor(executor, action)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            try:
                await asyncio.wait([future])
            except asyncio.CancelledError:
                continue  # cancelled again: the call still has to end before the lock goes
        raise
