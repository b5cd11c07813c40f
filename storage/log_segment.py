"""One segment of a partition log: a `.log` file of batches plus its two sparse indexes
(Kafka's LogSegment).

File format. A segment is named by the offset of its first batch, zero-padded to 20
digits so `ls` sorts segments in offset order:

    00000000000000001200.log        batches, back to back (format: `record_batch`)
    00000000000000001200.index      sparse offset -> position (format: `offset_index`)
    00000000000000001200.timeindex  sparse timestamp -> offset (format: `time_index`)

A deleted segment's files get the extra suffix `.deleted` and are unlinked later. Batches
in a segment have contiguous offsets, the first one equal to the segment's base offset.
The `.log` file is only ever appended to (at explicit positions, with pwritev) or
truncated; nothing is preallocated, so its size is exactly the bytes of its batches.

Thread-safety: none for writers; the owning PartitionLog is driven by one thread at a
time. Reads use os.pread and never move a shared file position, so they cannot disturb
an append's position even if a caller overlaps them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from .errors import CorruptBatchError
from .faults import io_for
from .file_utils import Buffer, pwrite_fully, remove_if_exists
from .offset_index import OFFSET_INDEX_SUFFIX, OffsetIndex
from .record_batch import (
    HEADER_SIZE,
    INT32_MAX,
    PREFIX_SIZE,
    HeaderFields,
    PendingBatch,
    StoredBatch,
    batch_crc,
    encode_header_into,
    header_from_fields,
    header_problem,
    unpack_header,
)
from .time_index import TIME_INDEX_SUFFIX, TimeIndex

LOG_SUFFIX: Final = ".log"
DELETED_SUFFIX: Final = ".deleted"
# Bytes read per pread when walking headers without their payloads. Large enough to hold
# the headers of every small batch between two index entries (default interval 4 KiB).
HEADER_SCAN_CHUNK_BYTES: Final = 16 * 1024
# Bytes read per pread when validating whole batches during recovery.
RECOVERY_CHUNK_BYTES: Final = 4 * 1024 * 1024
# A payload at least this large is read with its own pread, straight into the bytes object
# returned (no copy); smaller ones are sliced out of a shared buffer of at most
# READ_BUFFER_BYTES, so a read of many small batches costs few syscalls.
DIRECT_READ_PAYLOAD_BYTES: Final = 64 * 1024
READ_BUFFER_BYTES: Final = 1024 * 1024



def segment_file_stem(base_offset: int) -> str:
    return f"{base_offset:020d}"


def parse_segment_base(file_name: str) -> int | None:
    """Base offset of a `.log` file name, None if the name is not a segment's."""
    if not file_name.endswith(LOG_SUFFIX):
        return None
    stem = file_name[: -len(LOG_SUFFIX)]
    if len(stem) != 20 or not stem.isdigit():
        return None
    return int(stem)


@dataclass
class RecoveryResult:
    """What a full validation of a segment found."""

    valid_bytes: int
    dropped_bytes: int
    next_offset: int
    # Why the batch at `valid_bytes` was rejected; None if the whole file was valid.
    problem: str | None
    # Highest offset found in the dropped bytes by a best-effort header walk; None if the
    # walk could not reach the end of the file (so the extent of the loss is unknown).
    dropped_last_offset: int | None
    # (leader_epoch, base_offset) of each batch whose epoch differs from the batch before.
    epoch_transitions: list[tuple[int, int]] = field(default_factory=list)


class LogSegment:
    """A `.log` file, its indexes, and the in-memory facts the log needs about it."""

    def __init__(
        self,
        directory: Path,
        base_offset: int,
        fd: int,
        *,
        index_interval_bytes: int,
        segment_index_bytes: int,
    ) -> None:
        self.directory = directory
        self.base_offset = base_offset
        stem = segment_file_stem(base_offset)
        self.log_path = directory / (stem + LOG_SUFFIX)
        self.offset_index = OffsetIndex(
            directory / (stem + OFFSET_INDEX_SUFFIX), base_offset, segment_index_bytes
        )
        self.time_index = TimeIndex(
            directory / (stem + TIME_INDEX_SUFFIX), base_offset, segment_index_bytes
        )
        self.index_interval_bytes = index_interval_bytes
        self._fd = fd
        # Decided once per file: the real calls unless fault injection is on (tests).
        self._io = io_for(self.log_path)
        self.size_bytes = os.fstat(fd).st_size
        self.next_offset = base_offset
        # Largest max_timestamp_ms of any batch, and the first batch that carried it.
        self.max_timestamp_ms: int | None = None
        self._offset_of_max_timestamp = base_offset
        # Clock time the segment got its first batch (or was loaded); drives age-based rolls.
        self.first_append_ms: int | None = None
        self._bytes_since_index_entry = 0
        self._needs_fsync = False

    # -- lifecycle ------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        directory: Path,
        base_offset: int,
        *,
        index_interval_bytes: int,
        segment_index_bytes: int,
    ) -> LogSegment:
        """Creates an empty segment (replacing stale files of the same name)."""
        path = directory / (segment_file_stem(base_offset) + LOG_SUFFIX)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        segment = cls(
            directory,
            base_offset,
            fd,
            index_interval_bytes=index_interval_bytes,
            segment_index_bytes=segment_index_bytes,
        )
        segment.offset_index.create_empty()
        segment.time_index.create_empty()
        segment._needs_fsync = True
        return segment

    @classmethod
    def open_existing(
        cls,
        directory: Path,
        base_offset: int,
        *,
        index_interval_bytes: int,
        segment_index_bytes: int,
    ) -> LogSegment:
        """Opens the `.log` file; the caller then loads or rebuilds the indexes."""
        path = directory / (segment_file_stem(base_offset) + LOG_SUFFIX)
        fd = os.open(path, os.O_RDWR)
        return cls(
            directory,
            base_offset,
            fd,
            index_interval_bytes=index_interval_bytes,
            segment_index_bytes=segment_index_bytes,
        )

    @property
    def is_empty(self) -> bool:
        return self.size_bytes == 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def flush(self, *, include_indexes: bool = True) -> None:
        """fsyncs the log file and (unless told not to) writes pending index entries and
        fsyncs the index files.

        The active segment's indexes need not be durable: the recovery point lies inside
        that segment, so after a crash recovery rebuilds them from the log anyway."""
        if self._needs_fsync:
            self._io.fsync(self._fd)
            self._needs_fsync = False
        if include_indexes:
            self.offset_index.flush()
            self.time_index.flush()

    def on_become_inactive(self) -> None:
        """Called when the log rolls past this segment: records its largest timestamp as the
        final time-index entry (so a reload knows it without a scan) and writes the indexes."""
        if self.max_timestamp_ms is not None:
            self.time_index.maybe_append(self.max_timestamp_ms, self._offset_of_max_timestamp)
        self.offset_index.write_pending()
        self.time_index.write_pending()

    def rename_to_deleted(self) -> list[Path]:
        """Closes the segment and renames its files to `<name>.deleted`; returns the new paths."""
        self.close()
        renamed = []
        log_deleted = self.log_path.with_name(self.log_path.name + DELETED_SUFFIX)
        os.replace(self.log_path, log_deleted)
        renamed.append(log_deleted)
        for index in (self.offset_index, self.time_index):
            target = index.path.with_name(index.path.name + DELETED_SUFFIX)
            if index.path.exists():
                index.rename(target)
                renamed.append(target)
        return renamed

    def delete_files(self) -> None:
        self.close()
        remove_if_exists(self.log_path)
        self.offset_index.delete()
        self.time_index.delete()

    # -- append ---------------------------------------------------------------------------

    def append(
        self, batches: Sequence[PendingBatch], header_buffer: bytearray, now_ms: int
    ) -> None:
        """Frames and writes `batches` with one pwritev (per IOV_MAX buffers), then indexes them.

        `header_buffer` must hold HEADER_SIZE bytes per batch; headers are packed into it
        so no per-batch bytes object is allocated and payloads are never copied. On a write
        error the file is cut back to its previous size and the error re-raised.
        """
        buffers: list[Buffer] = []
        view = memoryview(header_buffer)
        for number, (payload, base_offset, record_count, max_timestamp_ms, epoch) in enumerate(
            batches
        ):
            start = number * HEADER_SIZE
            encode_header_into(
                header_buffer,
                start,
                base_offset=base_offset,
                record_count=record_count,
                max_timestamp_ms=max_timestamp_ms,
                leader_epoch=epoch,
                payload=payload,
            )
            buffers.append(view[start : start + HEADER_SIZE])
            buffers.append(payload)
        start_position = self.size_bytes
        try:
            written = pwrite_fully(self._fd, buffers, start_position, self._io)
        except BaseException:
            # Cut off a partial batch so the file stays a whole number of batches. If that
            # fails too, the log is going offline anyway and recovery cuts the torn tail.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start_position)
            raise
        self._needs_fsync = True
        position = start_position
        for payload, base_offset, record_count, max_timestamp_ms, _ in batches:
            self._index_batch(
                base_offset, record_count, max_timestamp_ms, position, HEADER_SIZE + len(payload)
            )
            position += HEADER_SIZE + len(payload)
        assert position == start_position + written, (position, start_position, written)
        self.size_bytes = position
        if self.first_append_ms is None:
            self.first_append_ms = now_ms

    def _index_batch(
        self,
        base_offset: int,
        record_count: int,
        max_timestamp_ms: int,
        position: int,
        stored_bytes: int,
    ) -> None:
        """Updates the in-memory facts and sparse indexes for a batch written at `position`."""
        if self.max_timestamp_ms is None or max_timestamp_ms > self.max_timestamp_ms:
            self.max_timestamp_ms = max_timestamp_ms
            self._offset_of_max_timestamp = base_offset
        if self._bytes_since_index_entry >= self.index_interval_bytes:
            self.offset_index.append(base_offset, position)
            self.time_index.maybe_append(self.max_timestamp_ms, self._offset_of_max_timestamp)
            self._bytes_since_index_entry = 0
        self._bytes_since_index_entry += stored_bytes
        self.next_offset = base_offset + record_count

    def entries_left(self) -> int:
        """How many more batches can be appended before an index could be full."""
        return min(
            self.offset_index.max_entries - len(self.offset_index),
            self.time_index.max_entries - len(self.time_index),
        )

    def fits_relative_offset(self, last_offset: int) -> bool:
        """Index entries store offsets relative to the base as int32."""
        return last_offset - self.base_offset <= INT32_MAX

    # -- read -----------------------------------------------------------------------------

    def iter_headers(
        self, position: int, end: int | None = None
    ) -> Iterator[tuple[int, HeaderFields]]:
        """Yields (position, raw header fields) of each batch from `position`, skipping
        payloads. Stops at `end` (default: file size), at a partial header, or after a
        header whose length field is not positive; the caller validates the fields."""
        end = self.size_bytes if end is None else end
        buffer = b""
        buffer_start = position
        while position + HEADER_SIZE <= end:
            relative = position - buffer_start
            if relative < 0 or relative + HEADER_SIZE > len(buffer):
                buffer = self._io.pread(
                    self._fd, min(HEADER_SCAN_CHUNK_BYTES, end - position), position
                )
                buffer_start, relative = position, 0
                if len(buffer) < HEADER_SIZE:
                    return
            fields = unpack_header(buffer, relative)
            yield position, fields
            if fields.payload_length < 1:
                return
            position += HEADER_SIZE + fields.payload_length

    def find_batch(self, offset: int, max_payload_bytes: int) -> tuple[int, HeaderFields] | None:
        """(position, header) of the first batch whose last offset is >= `offset`."""
        expected, position = self.offset_index.lookup(offset)
        for batch_position, fields in self.iter_headers(position):
            self._check_header(fields, expected, batch_position, max_payload_bytes)
            if fields.last_offset >= offset:
                return batch_position, fields
            expected = fields.next_offset
        return None

    def _check_header(
        self, fields: HeaderFields, expected_offset: int, position: int, max_payload_bytes: int
    ) -> None:
        problem = header_problem(fields, max_payload_bytes=max_payload_bytes)
        if problem is None and fields.base_offset != expected_offset:
            problem = f"base offset {fields.base_offset}, expected {expected_offset}"
        if problem is None and position + HEADER_SIZE + fields.payload_length > self.size_bytes:
            problem = (
                f"batch of {fields.payload_length} payload bytes runs past the end of the file"
            )
        if problem is not None:
            raise CorruptBatchError(
                f"{self.log_path}: batch at position {position} (offset {expected_offset}) is "
                f"corrupt ({problem}); the replica drops it and everything after it and "
                "re-fetches them from the leader",
                offset=expected_offset,
            )

    def read(
        self,
        position: int,
        expected_offset: int,
        *,
        max_bytes: int,
        max_offset: int | None,
        need_one: bool,
        max_payload_bytes: int,
        out: list[StoredBatch],
    ) -> tuple[int, bool]:
        """Appends whole batches from `position` to `out`; returns (bytes read, done).

        Stops before a batch whose last offset is >= `max_offset` or that would take the
        bytes read past `max_bytes` (unless `need_one` and nothing was read yet). `done` is
        True if it stopped for one of those reasons, False if it reached the end of the
        segment. Every batch's header and CRC are checked before it is returned.
        """
        fd = self._fd
        pread = self._io.pread
        end = self.size_bytes
        bytes_read = 0
        buffer = b""
        buffer_start = position
        while position < end:
            if bytes_read + HEADER_SIZE + 1 > max_bytes and (bytes_read or not need_one):
                return bytes_read, True
            relative = position - buffer_start
            payload: bytes | None = None
            if relative < 0 or relative + HEADER_SIZE > len(buffer):
                # Peek at the header to learn the batch size before reading the batch.
                buffer = pread(fd, HEADER_SIZE, position)
                buffer_start, relative = position, 0
                if len(buffer) < HEADER_SIZE:
                    raise CorruptBatchError(
                        f"{self.log_path}: short read at position {position}",
                        offset=expected_offset,
                    )
                fields = unpack_header(buffer, 0)
                self._check_header(fields, expected_offset, position, max_payload_bytes)
                stored = HEADER_SIZE + fields.payload_length
                if max_offset is not None and fields.last_offset >= max_offset:
                    return bytes_read, True
                if bytes_read + stored > max_bytes and (bytes_read or not need_one):
                    return bytes_read, True
                if fields.payload_length >= DIRECT_READ_PAYLOAD_BYTES:
                    # A large payload is read straight into the bytes object handed to the
                    # caller: no copy out of a shared buffer, no oversized allocation.
                    payload = pread(fd, fields.payload_length, position + HEADER_SIZE)
                else:
                    # Small batches: one pread for as many as the byte budget allows (plus
                    # the next header, to learn its size); payloads are sliced out of it.
                    budget = min(max_bytes - bytes_read, READ_BUFFER_BYTES)
                    want = max(budget, stored) + HEADER_SIZE
                    buffer = pread(fd, min(end - position, want), position)
            fields = unpack_header(buffer, relative)
            self._check_header(fields, expected_offset, position, max_payload_bytes)
            payload_length = fields.payload_length
            stored = HEADER_SIZE + payload_length
            if max_offset is not None and fields.last_offset >= max_offset:
                return bytes_read, True
            if bytes_read + stored > max_bytes and (bytes_read or not need_one):
                return bytes_read, True
            if payload is None:
                payload_start = relative + HEADER_SIZE
                if payload_start + payload_length > len(buffer) and buffer_start != position:
                    # The batch runs past the end of the shared buffer (capped at
                    # READ_BUFFER_BYTES): read it afresh, starting at its header.
                    buffer = b""
                    continue
                payload = buffer[payload_start : payload_start + payload_length]
            if len(payload) != payload_length:
                raise CorruptBatchError(
                    f"{self.log_path}: short read of batch at position {position}",
                    offset=expected_offset,
                )
            prefix = memoryview(buffer)[relative : relative + PREFIX_SIZE]
            if batch_crc(prefix, payload) != fields.crc:
                raise CorruptBatchError(
                    f"{self.log_path}: batch at offset {fields.base_offset} (position {position})"
                    " failed "
                    "its CRC check; the replica drops it and everything after it and "
                    "re-fetches them from the leader",
                    offset=expected_offset,
                )
            out.append(StoredBatch(header_from_fields(fields), payload))
            bytes_read += stored
            position += stored
            expected_offset = fields.next_offset
        return bytes_read, False

    def find_timestamp(
        self, timestamp_ms: int, min_last_offset: int, max_payload_bytes: int
    ) -> int | None:
        """Base offset of the first batch with max timestamp >= `timestamp_ms` and last
        offset >= `min_last_offset`, None if this segment has none."""
        start_offset = max(self.time_index.lookup(timestamp_ms), min_last_offset)
        found = self.find_batch(start_offset, max_payload_bytes)
        if found is None:
            return None
        position, fields = found
        expected = fields.base_offset
        for _, fields in self.iter_headers(position):
            # Positions come from the walk; contiguity is what detects a misparse here.
            if fields.base_offset != expected or fields.payload_length < 1:
                raise CorruptBatchError(
                    f"{self.log_path}: inconsistent header at {fields.base_offset}"
                )
            if fields.max_timestamp_ms >= timestamp_ms and (
                fields.last_offset >= min_last_offset
            ):
                return int(fields.base_offset)
            expected = fields.next_offset
        return None

    # -- truncation -----------------------------------------------------------------------

    def truncate_to(self, offset: int, max_payload_bytes: int) -> int:
        """Removes every batch whose last offset is >= `offset`; returns the bytes removed."""
        found = self.find_batch(offset, max_payload_bytes)
        if found is None:
            return 0
        position, fields = found
        cut_offset = fields.base_offset
        # Indexes first: a crash between the two leaves index entries pointing at
        # positions past the end, which the loader detects, never at reused positions.
        self.offset_index.truncate_to(cut_offset)
        self.time_index.truncate_to(cut_offset)
        removed = self.size_bytes - position
        os.ftruncate(self._fd, position)
        self.size_bytes = position
        self.next_offset = cut_offset
        self._needs_fsync = True
        self._reset_running_state_from_indexes(max_payload_bytes)
        return removed

    def _reset_running_state_from_indexes(self, max_payload_bytes: int) -> None:
        """Recomputes the largest timestamp, next offset and bytes since the last index entry
        from the index tails plus a walk of the batches after the last offset-index entry.

        Every batch before the last offset-index entry's batch has a timestamp <= the last
        time-index entry's, so only the tail needs reading.
        """
        last_time_entry = self.time_index.last_entry()
        if last_time_entry is None:
            self.max_timestamp_ms = None
            self._offset_of_max_timestamp = self.base_offset
        else:
            self.max_timestamp_ms, self._offset_of_max_timestamp = last_time_entry
        last_index_entry = self.offset_index.last_entry()
        expected, position = last_index_entry or (self.base_offset, 0)
        last_index_position = position
        for batch_position, fields in self.iter_headers(position):
            self._check_header(fields, expected, batch_position, max_payload_bytes)
            if self.max_timestamp_ms is None or fields.max_timestamp_ms > self.max_timestamp_ms:
                self.max_timestamp_ms = fields.max_timestamp_ms
                self._offset_of_max_timestamp = fields.base_offset
            expected = fields.next_offset
            position = batch_position + HEADER_SIZE + fields.payload_length
        if position != self.size_bytes:
            raise CorruptBatchError(
                f"{self.log_path}: {self.size_bytes - position} bytes after the last whole batch"
            )
        self.next_offset = expected
        self._bytes_since_index_entry = self.size_bytes - last_index_position
        if self.is_empty:
            self.first_append_ms = None

    # -- recovery (used by LogLoader) -----------------------------------------------------

    def load_indexes_and_check_tail(self, max_payload_bytes: int) -> str | None:
        """Loads trusted index files and walks the headers after the last offset-index entry.

        Returns why the segment needs a full recovery instead (an index fails its sanity
        check, or the tail does not parse into whole contiguous batches), or None.
        """
        problem = self.offset_index.load(self.size_bytes)
        if problem is not None:
            return f"{self.offset_index.path.name}: {problem}"
        problem = self.time_index.load()
        if problem is not None:
            return f"{self.time_index.path.name}: {problem}"
        try:
            self.next_offset = self.base_offset
            self._reset_running_state_from_indexes(max_payload_bytes)
        except CorruptBatchError as error:
            return f"tail check failed: {error}"
        last_time_entry = self.time_index.last_entry()
        if last_time_entry is not None and last_time_entry[1] >= self.next_offset:
            return (
                f"{self.time_index.path.name}: entry for offset {last_time_entry[1]} past the end"
            )
        return None

    def recover(self, max_payload_bytes: int) -> RecoveryResult:
        """Validates every batch (header sanity, contiguous offsets, CRC) and rebuilds both
        indexes; truncates the file at the first invalid batch."""
        self.offset_index.reset()
        self.time_index.reset()
        self.max_timestamp_ms = None
        self._offset_of_max_timestamp = self.base_offset
        self._bytes_since_index_entry = 0
        self.next_offset = self.base_offset
        transitions: list[tuple[int, int]] = []
        previous_epoch: int | None = None
        end = self.size_bytes
        position = 0
        expected = self.base_offset
        problem: str | None = None
        buffer = b""
        buffer_start = 0
        while position < end:
            relative = position - buffer_start
            if relative + HEADER_SIZE > len(buffer):
                buffer = self._io.pread(
                    self._fd, min(RECOVERY_CHUNK_BYTES, end - position), position
                )
                buffer_start, relative = position, 0
                if len(buffer) < HEADER_SIZE:
                    problem = f"partial batch header ({len(buffer)} bytes)"
                    break
            fields = unpack_header(buffer, relative)
            problem = header_problem(fields, max_payload_bytes=max_payload_bytes)
            if problem is None and fields.base_offset != expected:
                problem = f"base offset {fields.base_offset}, expected {expected}"
            stored = HEADER_SIZE + fields.payload_length
            if problem is None and position + stored > end:
                problem = f"batch needs {stored} bytes but only {end - position} remain in the file"
            if problem is not None:
                break
            payload: Buffer
            if relative + stored <= len(buffer):
                payload = memoryview(buffer)[relative + HEADER_SIZE : relative + stored]
            else:
                payload = self._io.pread(self._fd, fields.payload_length, position + HEADER_SIZE)
            prefix = memoryview(buffer)[relative : relative + PREFIX_SIZE]
            if batch_crc(prefix, payload) != fields.crc:
                problem = f"CRC mismatch in batch at offset {fields.base_offset}"
                break
            if fields.leader_epoch != previous_epoch:
                transitions.append((fields.leader_epoch, fields.base_offset))
                previous_epoch = fields.leader_epoch
            self._index_batch(
                fields.base_offset, fields.record_count, fields.max_timestamp_ms, position, stored
            )
            expected = fields.next_offset
            position += stored
        dropped_last: int | None = None
        if problem is not None:
            dropped_last = self.walk_extent(position, expected, max_payload_bytes)
            os.ftruncate(self._fd, position)
            self._needs_fsync = True
        self.size_bytes = position
        self.next_offset = expected
        return RecoveryResult(
            valid_bytes=position,
            dropped_bytes=end - position,
            next_offset=expected,
            problem=problem,
            dropped_last_offset=dropped_last,
            epoch_transitions=transitions,
        )

    def walk_extent(self, position: int, expected: int, max_payload_bytes: int) -> int | None:
        """Best effort: the last offset of the batches from `position` to the end of the file,
        following sane, contiguous headers (ignoring CRCs). None if the walk cannot reach the
        end, i.e. how far the offsets went is unknown. A final batch cut short by the end of
        the file still counts: its header says which offsets it held."""
        last: int | None = None
        for batch_position, fields in self.iter_headers(position):
            if header_problem(fields, max_payload_bytes=max_payload_bytes) is not None:
                return None
            if fields.base_offset != expected:
                return None
            last = fields.last_offset
            expected = last + 1
            if batch_position + HEADER_SIZE + fields.payload_length >= self.size_bytes:
                return last
        return None

    def epoch_transitions(self, max_payload_bytes: int) -> list[tuple[int, int]]:
        """(leader_epoch, base_offset) wherever the epoch changes, from a header walk."""
        transitions: list[tuple[int, int]] = []
        previous: int | None = None
        expected = self.base_offset
        for position, fields in self.iter_headers(0):
            self._check_header(fields, expected, position, max_payload_bytes)
            if fields.leader_epoch != previous:
                transitions.append((fields.leader_epoch, fields.base_offset))
                previous = fields.leader_epoch
            expected = fields.next_offset
        return transitions

    def __repr__(self) -> str:
        return (
            f"LogSegment(base_offset={self.base_offset}, next_offset={self.next_offset}, "
            f"size_bytes={self.size_bytes})"
        )
