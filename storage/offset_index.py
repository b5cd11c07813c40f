"""Sparse map from offsets to file positions in one segment (Kafka's OffsetIndex).

File format: `<base offset, 20 digits>.index`, a flat array of 8-byte big-endian entries

    relative_offset  int32   batch base offset minus the segment's base offset
    position         int32   byte position of that batch's header in the `.log` file

both strictly increasing. An entry is added for the batch that is appended after at least
`index_interval_bytes` were appended since the previous entry, so a lookup lands at most
about that many bytes before the batch it wants. A segment with no entries is scanned
from position 0.

Thread-safety: none; the owning PartitionLog serializes access.
"""

from __future__ import annotations

import bisect
import struct
from array import array
from pathlib import Path
from typing import Final

from .index_file import IndexFile

OFFSET_INDEX_SUFFIX: Final = ".index"
ENTRY: Final = struct.Struct(">ii")


class OffsetIndex(IndexFile):
    def __init__(self, path: Path, base_offset: int, max_index_bytes: int) -> None:
        super().__init__(path, ENTRY, max_index_bytes)
        self.base_offset = base_offset
        self._relative_offsets: array[int] = array("i")
        self._positions: array[int] = array("i")

    def __len__(self) -> int:
        return len(self._relative_offsets)

    def _entry_fields(self, index: int) -> tuple[int, ...]:
        return self._relative_offsets[index], self._positions[index]

    def _drop_from(self, index: int) -> None:
        del self._relative_offsets[index:]
        del self._positions[index:]

    def append(self, offset: int, position: int) -> None:
        relative = offset - self.base_offset
        if self._relative_offsets:
            assert relative > self._relative_offsets[-1], (offset, self.last_entry())
            assert position > self._positions[-1], (position, self.last_entry())
        self._relative_offsets.append(relative)
        self._positions.append(position)

    def last_entry(self) -> tuple[int, int] | None:
        """(absolute offset, position) of the newest entry."""
        if not self._relative_offsets:
            return None
        return self.base_offset + self._relative_offsets[-1], self._positions[-1]

    def lookup(self, offset: int) -> tuple[int, int]:
        """(offset, position) of the last entry at or before `offset`, else the segment start."""
        index = bisect.bisect_right(self._relative_offsets, offset - self.base_offset) - 1
        if index < 0:
            return self.base_offset, 0
        return self.base_offset + self._relative_offsets[index], self._positions[index]

    def truncate_to(self, offset: int) -> None:
        """Drops entries for batches at or after `offset`."""
        keep = bisect.bisect_left(self._relative_offsets, offset - self.base_offset)
        self.truncate_entries(keep)

    def load(self, segment_bytes: int) -> str | None:
        """Loads the file; returns why it cannot be trusted (and leaves it empty), or None."""
        rows = self.read_raw_entries()
        if rows is None:
            return "missing or not a whole number of entries"
        previous_relative, previous_position = -1, -1
        for relative, position in rows:
            if relative <= previous_relative or position <= previous_position:
                return f"entries not increasing at relative offset {relative}"
            if position >= segment_bytes:
                return f"position {position} beyond the segment size {segment_bytes}"
            previous_relative, previous_position = relative, position
        self._relative_offsets = array("i", (row[0] for row in rows))
        self._positions = array("i", (row[1] for row in rows))
        self.mark_persisted()
        return None
