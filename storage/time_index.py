"""Sparse map from timestamps to offsets in one segment (Kafka's TimeIndex).

File format: `<base offset, 20 digits>.timeindex`, a flat array of 12-byte big-endian
entries

    timestamp_ms     int64   largest batch max_timestamp_ms seen in the segment so far
    relative_offset  int32   base offset (minus the segment base) of the first batch that
                             carried that timestamp

with strictly increasing timestamps. Entries are added together with offset-index entries,
only when the running maximum grew, plus one final entry when the segment stops being
active, so the last entry is the segment's largest timestamp. Because every batch before
an entry's batch has a smaller timestamp, a search for timestamp T may start at the batch
of the last entry with timestamp <= T.

Thread-safety: none; the owning PartitionLog serializes access.
"""

from __future__ import annotations

import bisect
import struct
from array import array
from pathlib import Path
from typing import Final

from .index_file import IndexFile

TIME_INDEX_SUFFIX: Final = ".timeindex"
ENTRY: Final = struct.Struct(">qi")


class TimeIndex(IndexFile):
    def __init__(self, path: Path, base_offset: int, max_index_bytes: int) -> None:
        super().__init__(path, ENTRY, max_index_bytes)
        self.base_offset = base_offset
        self._timestamps: array[int] = array("q")
        self._relative_offsets: array[int] = array("i")

    def __len__(self) -> int:
        return len(self._timestamps)

    def _entry_fields(self, index: int) -> tuple[int, ...]:
        return self._timestamps[index], self._relative_offsets[index]

    def _drop_from(self, index: int) -> None:
        del self._timestamps[index:]
        del self._relative_offsets[index:]

    def maybe_append(self, timestamp_ms: int, offset: int) -> bool:
        """Adds an entry if `timestamp_ms` is larger than the last one; returns True if added."""
        if self._timestamps and timestamp_ms <= self._timestamps[-1]:
            return False
        relative = offset - self.base_offset
        assert not self._relative_offsets or relative >= self._relative_offsets[-1]
        self._timestamps.append(timestamp_ms)
        self._relative_offsets.append(relative)
        return True

    def last_entry(self) -> tuple[int, int] | None:
        """(timestamp_ms, absolute offset) of the newest entry."""
        if not self._timestamps:
            return None
        return self._timestamps[-1], self.base_offset + self._relative_offsets[-1]

    def lookup(self, timestamp_ms: int) -> int:
        """Offset where a search for the first batch with max timestamp >= `timestamp_ms`
        may start: the batch of the last entry with a timestamp <= it, else the segment base."""
        index = bisect.bisect_right(self._timestamps, timestamp_ms) - 1
        if index < 0:
            return self.base_offset
        return self.base_offset + self._relative_offsets[index]

    def truncate_to(self, offset: int) -> None:
        """Drops entries pointing at batches at or after `offset`."""
        keep = bisect.bisect_left(self._relative_offsets, offset - self.base_offset)
        self.truncate_entries(keep)

    def load(self) -> str | None:
        """Loads the file; returns why it cannot be trusted (and leaves it empty), or None."""
        rows = self.read_raw_entries()
        if rows is None:
            return "missing or not a whole number of entries"
        previous_timestamp: int | None = None
        previous_relative = 0
        for timestamp_ms, relative in rows:
            if previous_timestamp is not None and timestamp_ms <= previous_timestamp:
                return f"timestamps not increasing at {timestamp_ms}"
            if relative < previous_relative:
                return f"offsets decreasing at relative offset {relative}"
            previous_timestamp, previous_relative = timestamp_ms, relative
        self._timestamps = array("q", (row[0] for row in rows))
        self._relative_offsets = array("i", (row[1] for row in rows))
        self.mark_persisted()
        return None
