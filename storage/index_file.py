"""Shared file mechanics of the two sparse indexes (`OffsetIndex`, `TimeIndex`).

File format: a flat array of fixed-size big-endian entries, no header; the subclass fixes
the entry layout. Entries live in memory (lookups never touch the disk); new entries are
written to the file lazily, when the segment is flushed, rolled or closed, because an index
is cheap to rebuild from its segment and the loader rebuilds any index it cannot trust.

Thread-safety: none; the owning LogSegment's PartitionLog serializes access.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from .faults import io_for
from .file_utils import remove_if_exists


class IndexFile:
    """Lazy-writing, truncatable array of struct entries backed by one file."""

    def __init__(self, path: Path, entry: struct.Struct, max_index_bytes: int) -> None:
        self.path = path
        self._entry = entry
        self.max_entries = max(1, max_index_bytes // entry.size)
        # Entries [0, _persisted) are in the file; the rest are only in memory.
        self._persisted = 0
        self._needs_fsync = False

    # -- subclass hooks -------------------------------------------------------------------

    def __len__(self) -> int:
        raise NotImplementedError

    def _entry_fields(self, index: int) -> tuple[int, ...]:
        raise NotImplementedError

    def _drop_from(self, index: int) -> None:
        raise NotImplementedError

    # -- file mechanics -------------------------------------------------------------------

    @property
    def is_full(self) -> bool:
        return len(self) >= self.max_entries

    def create_empty(self) -> None:
        """Creates (or empties) the file so a missing index always means something is wrong."""
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.close(fd)
        self._persisted = 0
        self._needs_fsync = True

    def read_raw_entries(self) -> list[tuple[int, ...]] | None:
        """Entries stored in the file, or None if it is missing or its length is not a
        whole number of entries (a torn write)."""
        try:
            data = io_for(self.path).read_bytes(self.path)
        except FileNotFoundError:
            return None
        if len(data) % self._entry.size:
            return None
        return list(self._entry.iter_unpack(data))

    def mark_persisted(self) -> None:
        """The in-memory entries were just loaded from the file, which holds them all."""
        self._persisted = len(self)
        self._needs_fsync = False

    def write_pending(self) -> None:
        count = len(self)
        if self._persisted >= count:
            return
        data = b"".join(
            self._entry.pack(*self._entry_fields(index)) for index in range(self._persisted, count)
        )
        io = io_for(self.path)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            view = memoryview(data)
            position = self._persisted * self._entry.size
            while view:
                written = io.pwrite(fd, view, position)
                view = view[written:]
                position += written
        finally:
            os.close(fd)
        self._persisted = count
        self._needs_fsync = True

    def flush(self) -> None:
        """Writes pending entries and fsyncs the file if anything changed since the last fsync."""
        self.write_pending()
        if not self._needs_fsync:
            return
        fd = os.open(self.path, os.O_RDONLY)
        try:
            io_for(self.path).fsync(fd)
        finally:
            os.close(fd)
        self._needs_fsync = False

    def truncate_entries(self, keep: int) -> None:
        """Keeps the first `keep` entries, in memory and in the file."""
        if keep >= len(self):
            return
        self._drop_from(keep)
        if self._persisted > keep:
            self._persisted = keep
            try:
                os.truncate(self.path, keep * self._entry.size)
            except FileNotFoundError:
                self.create_empty()
            self._needs_fsync = True

    def reset(self) -> None:
        """Drops every entry and empties the file (before a rebuild)."""
        self._drop_from(0)
        self.create_empty()

    def rename(self, path: Path) -> None:
        if self.path.exists():
            os.replace(self.path, path)
        self.path = path

    def delete(self) -> None:
        remove_if_exists(self.path)
