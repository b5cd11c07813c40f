"""The node's handle on one `brook.storage.PartitionLog`: the `ReplicaLog` the core uses,
the per-partition lock, the node-side flush policy, and storage errors as BrookErrors.

Disk I/O placement (measured, see services/node/README.md): on the 2-core dev VM a
1 MiB append (pwritev into the page cache) costs ~2.7 ms, too much for the event loop, so
appends larger than `inline_max_bytes` (default 64 KiB), truncations, flushes, retention
and log open/close run on the node's I/O executor. Reads are page-cache copies (~0.2 ms
per MiB) and stay on the loop. A PartitionLog must be driven by one thread at a time, so
every call into it, on the loop or in the executor, holds the partition's `lock` (an
asyncio.Lock: a produce waits for a running flush of the same partition, never the loop).

The engine's own flush policy would fsync inside append (on the loop), so logs are opened
with it turned off and this handle applies the topic's `flush_interval_ms` /
`flush_interval_batches` instead: the time policy from the node's flush task, the batch
policy right after the append that reached it (before the produce is acknowledged).

Thread-safety: the lock serializes; the counters are touched on the loop only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from typing import TypeVar

from brook.errors import BrookError
from brook.services.node.partition import StampedBatch
from brook.storage import (
    BatchTooLargeError,
    CorruptBatchError,
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
    except (LogClosedError, CorruptBatchError, OSError) as error:
        raise BrookError(
            "STORAGE_ERROR", f"{name}: {error}", {"partition_log": name}
        ) from error
    except StorageError as error:
        raise BrookError("INVALID_REQUEST", f"{name}: {error}") from error


class LogHandle:
    """ReplicaLog over a PartitionLog, with the lock and flush policy of the node."""

    def __init__(
        self,
        partition_log: PartitionLog,
        *,
        flush_interval_ms: int,
        flush_interval_batches: int,
        monotonic_ms: Callable[[], int],
        executor: Executor | None = None,
        inline_max_bytes: int = DEFAULT_INLINE_MAX_BYTES,
    ) -> None:
        self.plog = partition_log
        self.executor = executor
        self.inline_max_bytes = inline_max_bytes
        self.name = partition_log.name
        self.lock = asyncio.Lock()
        self.flush_interval_ms = flush_interval_ms
        self.flush_interval_batches = flush_interval_batches
        self._monotonic_ms = monotonic_ms
        self.unflushed_batches = 0
        self.last_flush_ms = monotonic_ms()

    # -- ReplicaLog --------------------------------------------------------------------
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

    def append(self, batches: Sequence[StampedBatch]) -> None:
        """Appends contiguous batches from the log end, one engine call per epoch run.

        Leader batches share one epoch (one call: one pwritev, all or nothing); follower
        batches may span epochs and are appended run by run.
        """
        if not batches:
            return
        with storage_errors(self.name):
            start = 0
            while start < len(batches):
                epoch = batches[start].leader_epoch
                end = start + 1
                while end < len(batches) and batches[end].leader_epoch == epoch:
                    end += 1
                run = batches[start:end]
                expected = run[0].base_offset
                if expected != self.plog.log_end_offset:
                    raise InvalidOffsetError(
                        f"{self.name}: batch at {expected} does not continue the log end"
                        f" {self.plog.log_end_offset}",
                        log_end_offset=self.plog.log_end_offset,
                    )
                infos = self.plog.append_batches(
                    [(b.payload, b.record_count, b.max_timestamp_ms) for b in run],
                    leader_epoch=epoch,
                )
                # The engine assigns offsets from its log end; they must be the ones the
                # payloads carry (a mismatch would serve batches at wrong offsets).
                assert all(
                    info.base_offset == b.base_offset for info, b in zip(infos, run, strict=True)
                ), (infos, [b.base_offset for b in run])
                self.unflushed_batches += len(run)
                start = end

    def read(self, start_offset: int, max_bytes: int, max_offset: int) -> tuple[list[bytes], int]:
        with storage_errors(self.name):
            result = self.plog.read(start_offset, max_bytes, max_offset=max_offset)
        return [batch.payload for batch in result.batches], result.next_offset

    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        with storage_errors(self.name):
            offset = self.plog.offset_for_timestamp(timestamp_ms)
            if offset is None:
                return None
            found = self.plog.read(offset, 1)
        timestamp = found.batches[0].header.max_timestamp_ms if found.batches else -1
        return offset, timestamp

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        with storage_errors(self.name):
            return self.plog.end_offset_for_epoch(epoch)

    def truncate_to(self, offset: int) -> None:
        with storage_errors(self.name):
            self.plog.truncate_to(offset)

    def truncate_fully_and_start_at(self, offset: int) -> None:
        with storage_errors(self.name):
            self.plog.truncate_fully_and_start_at(offset)
        self.unflushed_batches = 0

    # -- off the loop (the caller holds `lock`) ----------------------------------------
    async def call(self, action: Callable[[], T], *, inline: bool = False) -> T:
        """Runs an engine call on the loop (inline) or the I/O executor."""
        if inline:
            return action()
        return await asyncio.get_running_loop().run_in_executor(self.executor, action)

    async def append_async(self, batches: Sequence[StampedBatch]) -> None:
        """`append`, in the executor unless the batches are small."""
        if not batches:
            return
        size = sum(len(batch.payload) for batch in batches)
        await self.call(lambda: self.append(batches), inline=size <= self.inline_max_bytes)

    async def truncate_to_async(self, offset: int, why: str) -> None:
        """Truncates to `offset` (restarting the log there if below its start)."""
        start, end = self.plog.log_start_offset, self.plog.log_end_offset
        if offset >= end:
            return
        log.warning("%s: truncating %d..%d to %d: %s", self.name, start, end, offset, why)
        if offset < start:
            await self.call(lambda: self.truncate_fully_and_start_at(offset))
        else:
            await self.call(lambda: self.truncate_to(offset))

    async def restart_at_async(self, offset: int, why: str) -> None:
        """Empties the log and restarts it at `offset`."""
        log.warning("%s: emptying the log (%d..%d) and restarting it at %d: %s", self.name,
                    self.plog.log_start_offset, self.plog.log_end_offset, offset, why)
        await self.call(lambda: self.truncate_fully_and_start_at(offset))

    # -- flush policy ------------------------------------------------------------------
    def batch_flush_due(self) -> bool:
        return 0 < self.flush_interval_batches <= self.unflushed_batches

    def time_flush_due(self) -> bool:
        if self.unflushed_batches == 0 or self.flush_interval_ms <= 0:
            return False
        return self._monotonic_ms() - self.last_flush_ms >= self.flush_interval_ms

    async def flush(self, *, locked: bool = False) -> None:
        """fsyncs the log in the executor (holding the lock unless the caller does)."""
        if locked:
            await self._flush_now()
            return
        async with self.lock:
            await self._flush_now()

    async def _flush_now(self) -> None:
        pending = self.unflushed_batches
        if self.plog.closed:
            return
        with storage_errors(self.name):
            await asyncio.get_running_loop().run_in_executor(self.executor, self.plog.flush)
        self.unflushed_batches = max(0, self.unflushed_batches - pending)
        self.last_flush_ms = self._monotonic_ms()

    async def run_locked_in_executor(self, action: Callable[[], T]) -> T:
        """Runs a blocking engine call (retention, close) in the executor under the lock."""
        async with self.lock:
            with storage_errors(self.name):
                return await asyncio.get_running_loop().run_in_executor(self.executor, action)
