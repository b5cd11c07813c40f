"""The ordered set of segments of one partition log (Kafka's LogSegments).

No file format of its own: it indexes the `LogSegment` objects of a partition directory
by base offset. The last segment is the active one (the only one appended to).

Thread-safety: none; the owning PartitionLog serializes access.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

from .log_segment import LogSegment


class LogSegments:
    def __init__(self) -> None:
        self._base_offsets: list[int] = []
        self._segments: dict[int, LogSegment] = {}

    def __len__(self) -> int:
        return len(self._base_offsets)

    def __iter__(self) -> Iterator[LogSegment]:
        return (self._segments[base] for base in list(self._base_offsets))

    def add(self, segment: LogSegment) -> None:
        base = segment.base_offset
        assert base not in self._segments, f"segment {base} already exists"
        bisect.insort(self._base_offsets, base)
        self._segments[base] = segment

    def remove(self, base_offset: int) -> LogSegment:
        segment = self._segments.pop(base_offset)
        self._base_offsets.remove(base_offset)
        return segment

    @property
    def base_offsets(self) -> list[int]:
        return list(self._base_offsets)

    @property
    def active(self) -> LogSegment:
        return self._segments[self._base_offsets[-1]]

    @property
    def first(self) -> LogSegment:
        return self._segments[self._base_offsets[0]]

    def floor(self, offset: int) -> LogSegment | None:
        """The segment with the largest base offset <= `offset` (the one that holds it)."""
        index = bisect.bisect_right(self._base_offsets, offset) - 1
        if index < 0:
            return None
        return self._segments[self._base_offsets[index]]

    def from_segment(self, base_offset: int) -> list[LogSegment]:
        """The segment with this base offset and every later one, in order."""
        index = bisect.bisect_left(self._base_offsets, base_offset)
        return [self._segments[base] for base in self._base_offsets[index:]]

    def next_after(self, base_offset: int) -> LogSegment | None:
        index = bisect.bisect_right(self._base_offsets, base_offset)
        if index >= len(self._base_offsets):
            return None
        return self._segments[self._base_offsets[index]]

    @property
    def size_bytes(self) -> int:
        return sum(segment.size_bytes for segment in self._segments.values())
