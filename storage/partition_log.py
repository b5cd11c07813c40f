"""One partition's log: the ordered segments in one directory (Kafka's UnifiedLog/LocalLog).

Directory layout (`<topic>-<partition>/`; formats in the modules named):

    00000000000000000000.log          segment files (`log_segment`, `record_batch`)
    00000000000000000000.index        sparse offset index (`offset_index`)
    00000000000000000000.timeindex    sparse time index (`time_index`)
    00000000000000012345.log ...      later segments; the last one is active
    *.deleted                         files of deleted segments, removed after a delay
    leader-epoch-checkpoint           epoch history (`leader_epoch_cache`)
    recovery-point-checkpoint         every offset below it is fsynced (`checkpoint_file`)
    log-start-offset-checkpoint       first offset exposed to readers (`checkpoint_file`)
    .clean-shutdown                   present only while the log is closed cleanly
    .lock                             flock held while the log is open (one opener only)

Offsets are assigned densely from 0 (or from wherever the log was started); the log
exposes [log_start_offset, log_end_offset). Recovery on open is done by `LogLoader`.

Thread-safety: a PartitionLog is driven by one thread at a time; the caller serializes
every call (the storage node runs them on one executor thread per partition). Reads use
os.pread, so they never move a shared file position an append depends on. No method
blocks on anything but the local disk.

I/O errors: any OSError raised by the disk takes the log offline (every later call raises
LogClosedError naming the cause) and is re-raised, so one bad disk does not silently keep
serving a log whose state is unknown. Reopening the log runs recovery. The exception is a
full disk (ENOSPC, EDQUOT): the call raises DiskFullError after undoing what it wrote
(an append is all or nothing), and the log stays online, readable and writable again as
soon as there is space.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Concatenate, Final, ParamSpec, TypeVar

from .checkpoint_file import OffsetCheckpoint
from .clock import Clock, SystemClock
from .config import LogConfig
from .errors import (
    BatchTooLargeError,
    CorruptBatchError,
    DiskFullError,
    InvalidBatchError,
    InvalidEpochError,
    InvalidOffsetError,
    LogClosedError,
    OffsetOutOfRangeError,
)
from .file_utils import Buffer, fsync_directory, lock_directory, remove_directory, remove_if_exists
from .leader_epoch_cache import EpochEntry
from .log_loader import (
    CLEAN_SHUTDOWN_FILE,
    LOCK_FILE,
    LOG_START_OFFSET_CHECKPOINT,
    RECOVERY_MAX_PAYLOAD_BYTES,
    RECOVERY_POINT_CHECKPOINT,
    LogLoader,
)
from .log_segment import LogSegment
from .record_batch import (
    HEADER_SIZE,
    INT32_MAX,
    INT64_MAX,
    NO_TIMESTAMP,
    AppendBatch,
    HeaderFields,
    PendingBatch,
    StoredBatch,
)
from .results import AppendInfo, ReadResult

logger = logging.getLogger("brook.storage")

P = ParamSpec("P")
R = TypeVar("R")
# Headers for this many batches are preallocated; a bigger append_batches grows the buffer.
_INITIAL_HEADER_BATCHES: Final = 256


# A full disk is not a broken disk: the failed call changed nothing (append cuts off what
# it wrote), so the log stays online for reads and for writes once space is freed.
OUT_OF_SPACE_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT})


def _takes_log_offline_on_io_error(
    method: Callable[Concatenate[PartitionLog, P], R],
) -> Callable[Concatenate[PartitionLog, P], R]:
    @functools.wraps(method)
    def guarded(self: PartitionLog, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except OSError as error:
            if error.errno in OUT_OF_SPACE_ERRNOS and self._offline_reason is None:
                raise DiskFullError(
                    f"{self.name}: disk full ({error}); nothing was written, the log is "
                    "unchanged and stays readable; retry once space is freed",
                    errno=error.errno,
                ) from error
            self._go_offline(error)
            raise

    return guarded


class PartitionLog:
    """Append, read, truncate and retain the batches of one partition. See module docs."""

    def __init__(
        self, directory: Path, config: LogConfig, clock: Clock, name: str, caller_flushes: bool
    ) -> None:
        """Use `PartitionLog.open`; this constructor runs recovery through it."""
        self.directory = directory
        self._caller_flushes = caller_flushes
        self.config = config
        self.name = name
        self._clock = clock
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = lock_directory(directory, LOCK_FILE)
        try:
            loaded = LogLoader(directory, config, name=name, now_ms=clock.now_ms()).load()
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._segments = loaded.segments
        self._log_start_offset = loaded.log_start_offset
        self._recovery_point = loaded.recovery_point
        self._epoch_cache = loaded.epoch_cache
        self.had_clean_shutdown = loaded.had_clean_shutdown
        self._clean_segments = loaded.clean_segments
        # First offset a read found damaged (CRC or header): nothing from there on may be
        # served; the owner re-replicates it (truncate, then fetch from the leader).
        self._corrupt_from: int | None = None
        self._recovery_checkpoint = OffsetCheckpoint(directory / RECOVERY_POINT_CHECKPOINT)
        self._start_checkpoint = OffsetCheckpoint(directory / LOG_START_OFFSET_CHECKPOINT)
        self._header_buffer = bytearray(HEADER_SIZE * _INITIAL_HEADER_BATCHES)
        self._unflushed_batches = 0
        self._last_flush_ms = clock.now_ms()
        # Segment files created or renamed since the directory was last fsynced.
        self._directory_dirty = False
        # path of a `.deleted` file -> clock time after which it may be unlinked
        self._pending_deletes: dict[Path, int] = {}
        self._closed = False
        self._offline_reason: str | None = None

    @classmethod
    def open(
        cls,
        directory: Path,
        config: LogConfig,
        *,
        clock: Clock | None = None,
        name: str | None = None,
        caller_flushes: bool = False,
    ) -> PartitionLog:
        """Opens (creating if missing) the log in `directory` and recovers it.

        `name` (e.g. "orders-3") prefixes log lines; it defaults to the directory name.
        `caller_flushes`: append never fsyncs; the caller applies the same flush policy by
        asking `flush_due()` after appends and calling `maybe_flush()` (an fsync) where it
        may block, e.g. a server whose appends run on an event loop.
        """
        config.validate()
        directory = Path(directory)
        return cls(
            directory, config, clock or SystemClock(), name or directory.name, caller_flushes
        )

    # -- state ------------------------------------------------------------------------------

    @property
    def log_start_offset(self) -> int:
        return self._log_start_offset

    @property
    def log_end_offset(self) -> int:
        return self._segments.active.next_offset

    @property
    def recovery_point(self) -> int:
        return self._recovery_point

    @property
    def size_bytes(self) -> int:
        """Bytes of all `.log` segment files (index files are not counted)."""
        return self._segments.size_bytes

    @property
    def latest_epoch(self) -> int | None:
        return self._epoch_cache.latest_epoch

    @property
    def segment_base_offsets(self) -> list[int]:
        return self._segments.base_offsets

    @property
    def closed(self) -> bool:
        return self._closed

    def update_config(self, config: LogConfig) -> None:
        """Applies a new config from now on (index sizing applies to new segments)."""
        config.validate()
        self.config = config

    # -- append -----------------------------------------------------------------------------

    @_takes_log_offline_on_io_error
    def append(
        self,
        payload: bytes,
        *,
        record_count: int,
        max_timestamp_ms: int,
        leader_epoch: int,
        base_offset: int | None = None,
    ) -> AppendInfo:
        """Appends one batch and returns where it landed (see `append_batches`)."""
        batch = AppendBatch(payload, record_count, max_timestamp_ms)
        return self.append_batches([batch], leader_epoch=leader_epoch, base_offset=base_offset)[0]

    @_takes_log_offline_on_io_error
    def append_batches(
        self,
        batches: Sequence[AppendBatch],
        *,
        leader_epoch: int,
        base_offset: int | None = None,
    ) -> list[AppendInfo]:
        """Appends batches, all or none, and returns where each landed.

        Leader mode (`base_offset` None) assigns offsets from the log end. Follower mode
        passes the leader's base offset of the first batch, which must equal the log end
        (the rest follow densely). Everything is validated before anything is written; the
        batches are then written with one pwritev per segment (rolling as needed). A new,
        higher `leader_epoch` is recorded in the epoch history at the first batch.
        """
        self._ensure_open()
        self._check_follower_offset(base_offset)
        self._validate_epoch(leader_epoch)
        for number, (payload, record_count, max_timestamp_ms) in enumerate(batches):
            self._validate_batch(number, payload, record_count, max_timestamp_ms)
        if not batches:
            return []
        previous_end = self.log_end_offset
        previous_active = self._segments.active.base_offset
        try:
            return self._append_validated(batches, leader_epoch)
        except OSError as error:
            if error.errno in OUT_OF_SPACE_ERRNOS:
                self._undo_append(previous_end, previous_active)
            raise

    def _undo_append(self, previous_end: int, previous_active: int) -> None:
        """Cuts off what a failed append wrote to earlier segments of its run (the failing
        segment already cut itself back) and drops segments it rolled, so the log is
        exactly as before: all or nothing, even when the disk filled up halfway."""
        now_ms = self._clock.now_ms()
        while self._segments.active.base_offset != previous_active:
            self._delete_segment(self._segments.active, now_ms)
        active = self._segments.active
        if active.next_offset > previous_end:
            active.truncate_to(previous_end, RECOVERY_MAX_PAYLOAD_BYTES)
        logger.warning(
            "%s: append failed for lack of space; the log is back at its end %d",
            self.name, self.log_end_offset,
        )

    def _check_follower_offset(self, base_offset: int | None) -> None:
        if base_offset is not None and base_offset != self.log_end_offset:
            raise InvalidOffsetError(
                f"{self.name}: follower append at base offset {base_offset}, but the log ends "
                f"at {self.log_end_offset}; truncate to the divergence point or fetch from "
                f"offset {self.log_end_offset}",
                log_end_offset=self.log_end_offset,
            )

    def _validate_epoch(self, leader_epoch: int) -> None:
        if not 0 <= leader_epoch <= INT32_MAX:
            raise InvalidBatchError(
                f"{self.name}: leader epoch {leader_epoch} is outside 0..{INT32_MAX}"
            )
        latest = self._epoch_cache.latest_epoch
        if latest is not None and leader_epoch < latest:
            raise InvalidEpochError(
                f"{self.name}: leader epoch {leader_epoch} is older than the log's latest "
                f"epoch {latest}; the sender is a fenced leader and must refresh its metadata",
                leader_epoch=leader_epoch,
                latest_epoch=latest,
            )

    def _validate_batch(
        self, number: int, payload: Buffer, record_count: int, max_timestamp_ms: int
    ) -> None:
        where = f"{self.name}: batch {number}" if number else f"{self.name}: batch"
        size = len(payload)
        if size == 0:
            raise InvalidBatchError(f"{where} has an empty payload; a batch needs >= 1 byte")
        if size > self.config.max_batch_bytes:
            raise BatchTooLargeError(
                f"{where} payload is {size} bytes, over max_batch_bytes="
                f"{self.config.max_batch_bytes}; split it into smaller batches or raise the "
                "topic's max_batch_bytes",
                payload_bytes=size,
                max_batch_bytes=self.config.max_batch_bytes,
            )
        if not 1 <= record_count <= INT32_MAX:
            raise InvalidBatchError(
                f"{where} has record_count {record_count}; it must be in 1..{INT32_MAX}"
            )
        if not NO_TIMESTAMP <= max_timestamp_ms <= INT64_MAX:
            raise InvalidBatchError(
                f"{where} has max_timestamp_ms {max_timestamp_ms}; use -1 for no timestamp "
                "or milliseconds since the epoch"
            )

    def _append_validated(
        self, batches: Sequence[AppendBatch], leader_epoch: int
    ) -> list[AppendInfo]:
        now_ms = self._clock.now_ms()
        next_offset = self.log_end_offset
        total_records = sum(record_count for _, record_count, _ in batches)
        if next_offset + total_records > INT64_MAX:
            raise InvalidOffsetError(
                f"{self.name}: appending {total_records} records would overflow int64 offsets",
                log_end_offset=next_offset,
            )
        latest = self._epoch_cache.latest_epoch
        if latest is None or leader_epoch > latest:
            # Persisted before the data: the history must never lag batches on disk.
            self._epoch_cache.assign(leader_epoch, next_offset)
        pending: list[PendingBatch] = []
        infos: list[AppendInfo] = []
        for payload, record_count, max_timestamp_ms in batches:
            pending.append(
                PendingBatch(payload, next_offset, record_count, max_timestamp_ms, leader_epoch)
            )
            infos.append(
                AppendInfo(next_offset, next_offset + record_count - 1, max_timestamp_ms, now_ms)
            )
            next_offset += record_count
        segment_bytes = self.config.segment_bytes
        start = 0
        while start < len(pending):
            segment = self._segment_for(pending[start], now_ms)
            # Extend the group while the batches fit the segment without a roll.
            size = segment.size_bytes + HEADER_SIZE + len(pending[start][0])
            limit = segment.entries_left()
            end = start + 1
            while end < len(pending) and end - start < limit:
                _, base_offset, record_count, _, _ = pending[end]
                stored = HEADER_SIZE + len(pending[end][0])
                if size + stored > segment_bytes or not segment.fits_relative_offset(
                    base_offset + record_count - 1
                ):
                    break
                size += stored
                end += 1
            group = pending[start:end]
            if len(self._header_buffer) < HEADER_SIZE * len(group):
                self._header_buffer = bytearray(HEADER_SIZE * len(group))
            segment.append(group, self._header_buffer, now_ms)
            start = end
        self._unflushed_batches += len(pending)
        if not self._caller_flushes:
            self._apply_flush_policy(now_ms)
        return infos

    def _segment_for(self, batch: PendingBatch, now_ms: int) -> LogSegment:
        """The active segment, after rolling it if this batch must not go into it."""
        active = self._segments.active
        if active.is_empty:
            # A batch bigger than segment_bytes still gets a segment of its own.
            return active
        payload, base_offset, record_count, _, _ = batch
        reason = None
        if active.size_bytes + HEADER_SIZE + len(payload) > self.config.segment_bytes:
            reason = "segment_bytes reached"
        elif (
            active.first_append_ms is not None
            and now_ms - active.first_append_ms > self.config.segment_ms
        ):
            reason = "segment_ms reached"
        elif active.entries_left() <= 0:
            reason = "index full"
        elif not active.fits_relative_offset(base_offset + record_count - 1):
            reason = "relative offset overflow"
        if reason is not None:
            logger.debug("%s: rolling segment at offset %d: %s", self.name, base_offset, reason)
            self._roll()
        return self._segments.active

    # -- flush ------------------------------------------------------------------------------

    def _apply_flush_policy(self, now_ms: int) -> None:
        if self._flush_due(now_ms):
            self._flush(now_ms)

    def flush_due(self) -> bool:
        """Whether the flush policy (flush_interval_batches or flush_interval_ms) wants an
        fsync now. In-memory only, so a caller that flushes itself (`caller_flushes`) can
        ask on its event loop and run `maybe_flush` where blocking is allowed."""
        return self._flush_due(self._clock.now_ms())

    def _flush_due(self, now_ms: int) -> bool:
        if self._unflushed_batches == 0:
            return False
        batches_due = 0 < self.config.flush_interval_batches <= self._unflushed_batches
        return batches_due or self._flush_time_due(now_ms)

    def _flush_time_due(self, now_ms: int) -> bool:
        interval = self.config.flush_interval_ms
        # A clock that went backwards also counts as due, so a clock step cannot stall fsyncs.
        return interval > 0 and (
            now_ms - self._last_flush_ms >= interval or now_ms < self._last_flush_ms
        )

    @_takes_log_offline_on_io_error
    def flush(self) -> None:
        """fsyncs every batch up to the log end and moves the recovery point there."""
        self._ensure_open()
        self._flush(self._clock.now_ms())

    @_takes_log_offline_on_io_error
    def maybe_flush(self) -> bool:
        """Applies the flush policy (batch count and time) now; returns True if it flushed."""
        self._ensure_open()
        now_ms = self._clock.now_ms()
        if self.log_end_offset == self._recovery_point and self._unflushed_batches == 0:
            # Nothing to make durable; restart the interval so the next append is not
            # flushed at once just because the log was idle.
            self._last_flush_ms = now_ms
            return False
        if not self._flush_due(now_ms):
            return False
        self._flush(now_ms)
        return True

    def _flush(self, now_ms: int, *, closing: bool = False) -> None:
        """fsyncs every segment from the one holding the recovery point on, then moves the
        recovery point to the log end. Segments below it are durable already."""
        active = self._segments.active
        first = self._segments.floor(self._recovery_point) or self._segments.first
        for segment in self._segments.from_segment(first.base_offset):
            # A clean shutdown trusts the active segment's indexes, so then they count too.
            segment.flush(include_indexes=closing or segment is not active)
            if segment is not active:
                # Written from checked batches and now durable: known clean (stamped once).
                self._clean_segments.mark_clean(segment.base_offset, segment.log_path)
        if self._directory_dirty:
            fsync_directory(self.directory)
            self._directory_dirty = False
        log_end_offset = self.log_end_offset
        if self._recovery_point != log_end_offset:
            # No directory fsync: if the rename is lost in a crash, the older, lower
            # recovery point comes back, which only means validating more on recovery.
            # (Truncation, which lowers it, writes it with the directory fsync.)
            self._recovery_checkpoint.write(log_end_offset, sync_directory=False)
            self._recovery_point = log_end_offset
        self._clean_segments.keep_only(set(self._segments.base_offsets[:-1]))
        self._clean_segments.persist_if_changed()
        self._unflushed_batches = 0
        self._last_flush_ms = now_ms

    # -- segments ---------------------------------------------------------------------------

    @_takes_log_offline_on_io_error
    def roll(self) -> None:
        """Starts a new active segment at the log end (no-op if the active one is empty)."""
        self._ensure_open()
        self._roll()

    def _roll(self) -> None:
        active = self._segments.active
        if active.is_empty:
            return
        active.on_become_inactive()
        self._segments.add(
            LogSegment.create(
                self.directory,
                self.log_end_offset,
                index_interval_bytes=self.config.index_interval_bytes,
                segment_index_bytes=self.config.segment_index_bytes,
            )
        )
        self._directory_dirty = True

    def _delete_segment(self, segment: LogSegment, now_ms: int) -> None:
        """Removes a segment from the log; its files are unlinked by delete_pending_files."""
        self._segments.remove(segment.base_offset)
        self._clean_segments.forget(segment.base_offset)
        deadline = now_ms + self.config.file_delete_delay_ms
        for path in segment.rename_to_deleted():
            self._pending_deletes[path] = deadline
        self._directory_dirty = True

    # -- read -------------------------------------------------------------------------------

    @_takes_log_offline_on_io_error
    def read(
        self, start_offset: int, max_bytes: int, *, max_offset: int | None = None
    ) -> ReadResult:
        """Reads whole batches from the one containing `start_offset`.

        Stops before a batch that would take `bytes_read` (header plus payload of each
        batch) past `max_bytes`, but returns at least one batch when one is available, so a
        consumer always makes progress. `max_offset` (exclusive, e.g. the high watermark)
        stops before any batch whose last offset is >= it. Reading at the log end returns
        nothing; outside [log_start_offset, log_end_offset] raises OffsetOutOfRangeError.
        """
        self._ensure_open()
        log_end_offset = self.log_end_offset
        if not self._log_start_offset <= start_offset <= log_end_offset:
            raise OffsetOutOfRangeError(
                f"{self.name}: offset {start_offset} is out of range; the log holds offsets "
                f"{self._log_start_offset}..{log_end_offset} (exclusive end); restart from "
                "log_start_offset or log_end_offset",
                offset=start_offset,
                log_start_offset=self._log_start_offset,
                log_end_offset=log_end_offset,
            )
        batches: list[StoredBatch] = []
        if start_offset == log_end_offset or (
            max_offset is not None and max_offset <= start_offset
        ):
            return ReadResult(batches, start_offset, 0)
        segment = self._segments.floor(start_offset)
        assert segment is not None
        found = self._find_batch(segment, start_offset)
        position, fields = found
        expected = fields.base_offset
        bytes_read = 0
        current: LogSegment | None = segment
        while current is not None:
            try:
                count, done = current.read(
                    position,
                    expected,
                    max_bytes=max_bytes - bytes_read,
                    max_offset=max_offset,
                    need_one=not batches,
                    max_payload_bytes=RECOVERY_MAX_PAYLOAD_BYTES,
                    out=batches,
                )
            except CorruptBatchError as error:
                self._note_corruption(error)
                raise
            bytes_read += count
            if done:
                break
            current = self._segments.next_after(current.base_offset)
            if current is not None:
                position, expected = 0, current.base_offset
        next_offset = batches[-1].header.next_offset if batches else start_offset
        return ReadResult(batches, next_offset, bytes_read)

    def _note_corruption(self, error: CorruptBatchError) -> None:
        offset = error.offset if error.offset is not None else self._log_start_offset
        if self._corrupt_from is not None and offset >= self._corrupt_from:
            return
        self._corrupt_from = offset
        logger.error(
            "%s: stored data from offset %d on is corrupt and must be re-replicated: %s",
            self.name, offset, error,
        )
        # So that a restart scans the segment instead of trusting it (best effort: the
        # read already failed; a failing stamp write must not hide that error).
        segment = self._segments.floor(offset)
        if segment is not None:
            self._clean_segments.forget(segment.base_offset)
            try:
                self._clean_segments.persist_if_changed()
            except OSError as write_error:
                logger.warning("%s: could not drop the clean stamp: %s", self.name, write_error)

    @property
    def corrupt_from(self) -> int | None:
        """First offset a read found damaged since the log was opened (or last truncated
        below it), None if none: the owner must not serve it (or lead it) any more, and
        truncating to it (then re-fetching) is the cure. In memory only: a reopen scans
        the segment, which is no longer known clean once its stamp is dropped."""
        return self._corrupt_from

    def _find_batch(self, segment: LogSegment, offset: int) -> tuple[int, HeaderFields]:
        """(position, header) of the batch holding `offset`, which the segment must have."""
        found = segment.find_batch(offset, RECOVERY_MAX_PAYLOAD_BYTES)
        if found is None:
            raise CorruptBatchError(
                f"{self.name}: offset {offset} should be in {segment.log_path.name} but its "
                f"batches end before it; the file changed underneath the log. Restart the node "
                "so recovery checks the segment"
            )
        return found

    @_takes_log_offline_on_io_error
    def offset_for_timestamp(self, timestamp_ms: int) -> int | None:
        """Base offset of the first batch whose max_timestamp_ms >= `timestamp_ms` (but not
        below log_start_offset), or None if no stored batch is that recent."""
        self._ensure_open()
        for segment in self._segments:
            if segment.max_timestamp_ms is None or segment.max_timestamp_ms < timestamp_ms:
                continue
            if segment.next_offset <= self._log_start_offset:
                continue
            found = segment.find_timestamp(
                timestamp_ms, self._log_start_offset, RECOVERY_MAX_PAYLOAD_BYTES
            )
            if found is not None:
                return max(found, self._log_start_offset)
        return None

    # -- truncation and retention -----------------------------------------------------------

    @_takes_log_offline_on_io_error
    def truncate_to(self, offset: int) -> None:
        """Removes every batch with last offset >= `offset` (a batch containing `offset` goes
        entirely). No-op at or past the log end. Durable when it returns."""
        self._ensure_open()
        if offset < 0:
            raise InvalidOffsetError(
                f"{self.name}: cannot truncate to negative offset {offset}",
                log_end_offset=self.log_end_offset,
            )
        if offset >= self.log_end_offset:
            return
        if offset < self._log_start_offset:
            self._truncate_fully_and_start_at(offset)
            return
        segment = self._segments.floor(offset)
        assert segment is not None
        found = self._find_batch(segment, offset)
        new_end = found[1].base_offset
        logger.info(
            "%s: truncating to offset %d (log end was %d)", self.name, new_end, self.log_end_offset
        )
        # Lower the recovery point first: after a crash mid-truncation, recovery must
        # validate everything from the cut instead of trusting stale bytes.
        if self._recovery_point > new_end:
            self._recovery_checkpoint.write(new_end)
            self._recovery_point = new_end
        now_ms = self._clock.now_ms()
        for later in reversed(self._segments.from_segment(segment.base_offset)[1:]):
            self._delete_segment(later, now_ms)
        self._clean_segments.forget(segment.base_offset)  # it is the active one now
        segment.truncate_to(offset, RECOVERY_MAX_PAYLOAD_BYTES)
        segment.flush()
        fsync_directory(self.directory)
        if self._corrupt_from is not None and self._corrupt_from >= new_end:
            self._corrupt_from = None
        self._directory_dirty = False
        self._epoch_cache.truncate_from_end(new_end)
        if self._log_start_offset > new_end:
            self._log_start_offset = new_end
            self._start_checkpoint.write(new_end)

    @_takes_log_offline_on_io_error
    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Deletes every segment and leaves an empty log whose next offset is `offset`."""
        self._ensure_open()
        if offset < 0:
            raise InvalidOffsetError(
                f"{self.name}: cannot start the log at negative offset {offset}",
                log_end_offset=self.log_end_offset,
            )
        self._truncate_fully_and_start_at(offset)

    def _truncate_fully_and_start_at(self, offset: int) -> None:
        logger.info(
            "%s: truncating fully and starting at offset %d (log was %d..%d)",
            self.name,
            offset,
            self._log_start_offset,
            self.log_end_offset,
        )
        # Checkpoints first, so a crash halfway leaves a log that starts at `offset`.
        self._start_checkpoint.write(offset)
        self._recovery_checkpoint.write(offset)
        now_ms = self._clock.now_ms()
        for segment in reversed(list(self._segments)):
            self._delete_segment(segment, now_ms)
        self._segments.add(
            LogSegment.create(
                self.directory,
                offset,
                index_interval_bytes=self.config.index_interval_bytes,
                segment_index_bytes=self.config.segment_index_bytes,
            )
        )
        self._segments.active.flush()
        fsync_directory(self.directory)
        self._directory_dirty = False
        self._log_start_offset = offset
        self._recovery_point = offset
        self._unflushed_batches = 0
        self._corrupt_from = None
        self._epoch_cache.clear()

    @_takes_log_offline_on_io_error
    def delete_records_before(self, offset: int) -> None:
        """Moves log_start_offset up to `offset` (persisted) and deletes the non-active
        segments that then hold only offsets below it."""
        self._ensure_open()
        if offset > self.log_end_offset:
            raise OffsetOutOfRangeError(
                f"{self.name}: cannot delete records before {offset}: the log ends at "
                f"{self.log_end_offset}",
                offset=offset,
                log_start_offset=self._log_start_offset,
                log_end_offset=self.log_end_offset,
            )
        if offset <= self._log_start_offset:
            return
        self._advance_log_start(offset)
        now_ms = self._clock.now_ms()
        while len(self._segments) > 1 and self._segments.first.next_offset <= offset:
            self._delete_segment(self._segments.first, now_ms)

    @_takes_log_offline_on_io_error
    def apply_retention(self) -> list[int]:
        """Deletes whole non-active segments past retention; returns their base offsets.

        First the oldest segments whose newest batch (largest max_timestamp_ms) is older
        than retention_ms, stopping at the first that is not; then the oldest segments
        while size_bytes > retention_bytes. log_start_offset moves to the first remaining
        segment. Files are renamed to `.deleted` now and unlinked by delete_pending_files.
        """
        self._ensure_open()
        now_ms = self._clock.now_ms()
        deleted: list[int] = []
        if self.config.retention_ms >= 0:
            cutoff_ms = now_ms - self.config.retention_ms
            while len(self._segments) > 1:
                oldest = self._segments.first
                if oldest.max_timestamp_ms is None or oldest.max_timestamp_ms >= cutoff_ms:
                    break
                deleted.append(oldest.base_offset)
                self._delete_segment(oldest, now_ms)
        if self.config.retention_bytes >= 0:
            size = self.size_bytes
            while len(self._segments) > 1 and size > self.config.retention_bytes:
                oldest = self._segments.first
                size -= oldest.size_bytes
                deleted.append(oldest.base_offset)
                self._delete_segment(oldest, now_ms)
        if deleted:
            logger.info(
                "%s: retention deleted %d segments; log now starts at %d",
                self.name,
                len(deleted),
                self._segments.first.base_offset,
            )
            self._advance_log_start(self._segments.first.base_offset)
        return deleted

    def _advance_log_start(self, offset: int) -> None:
        if offset <= self._log_start_offset:
            return
        self._log_start_offset = offset
        self._start_checkpoint.write(offset)
        self._epoch_cache.truncate_from_start(offset)

    def delete_pending_files(self) -> int:
        """Unlinks `.deleted` files whose delay has passed; returns how many."""
        now_ms = self._clock.now_ms()
        removed = 0
        for path, deadline in list(self._pending_deletes.items()):
            if now_ms >= deadline:
                remove_if_exists(path)
                del self._pending_deletes[path]
                removed += 1
        return removed

    # -- leader epochs ----------------------------------------------------------------------

    def epoch_entries(self) -> list[EpochEntry]:
        return self._epoch_cache.entries()

    @_takes_log_offline_on_io_error
    def assign_epoch_start(self, epoch: int, start_offset: int) -> None:
        """Records that `epoch` starts at `start_offset` (Kafka semantics: entries with an
        epoch or start offset >= the new one are replaced)."""
        self._ensure_open()
        if not 0 <= epoch <= INT32_MAX:
            raise InvalidBatchError(f"{self.name}: leader epoch {epoch} is outside 0..{INT32_MAX}")
        if not 0 <= start_offset <= self.log_end_offset:
            raise InvalidOffsetError(
                f"{self.name}: epoch {epoch} cannot start at offset {start_offset}; it must be "
                f"in 0..{self.log_end_offset} (the log end)",
                log_end_offset=self.log_end_offset,
            )
        self._epoch_cache.assign(epoch, start_offset)

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """(largest known epoch <= `epoch`, the offset where it ended): the start offset of
        the next higher epoch, or log_end_offset for the latest one. (-1, -1) if `epoch` is
        below the earliest known epoch or the history is empty."""
        self._ensure_open()
        return self._epoch_cache.end_offset_for(epoch, self.log_end_offset)

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Flushes, writes the clean-shutdown marker and closes the files. Idempotent."""
        if self._closed:
            return
        try:
            if self._offline_reason is None:
                self._flush(self._clock.now_ms(), closing=True)
                marker = self.directory / CLEAN_SHUTDOWN_FILE
                marker.touch()
                fsync_directory(self.directory)
        except OSError as error:
            self._go_offline(error)
            raise
        finally:
            self._close_files()

    def delete(self) -> None:
        """Closes the log without flushing and removes its whole directory (topic deletion).

        The directory is renamed to `<name>.deleting` first, so a crash halfway through
        never leaves a partial log under the partition's name."""
        self._close_files()
        remove_directory(self.directory)

    def _close_files(self) -> None:
        for segment in self._segments:
            segment.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the directory lock
            self._lock_fd = -1
        self._closed = True

    def _go_offline(self, error: OSError) -> None:
        if self._offline_reason is not None:
            return
        self._offline_reason = f"{type(error).__name__}: {error}"
        logger.error(
            "%s: taking the log offline after an I/O error: %s", self.name, self._offline_reason
        )
        self._close_files()

    def _ensure_open(self) -> None:
        if not self._closed:
            return
        if self._offline_reason is not None:
            raise LogClosedError(
                f"{self.name}: log is offline after an I/O error ({self._offline_reason}); "
                "fix the disk and reopen it"
            )
        raise LogClosedError(f"{self.name}: log is closed")

    def __repr__(self) -> str:
        return (
            f"PartitionLog(name={self.name!r}, log_start_offset={self._log_start_offset}, "
            f"log_end_offset={self.log_end_offset}, segments={len(self._segments)})"
        )
