"""Which sealed segments are known clean, so the loader need not re-read them on open.

File format: `clean-segments-checkpoint`, a checkpoint file (`checkpoint_file`) whose
entries are `<base_offset> <size_bytes> <mtime_ns> <ctime_ns>`, one per sealed (non-active)
segment, in offset order:

    0
    2
    0 1048571 1718000000123456789 1718000000123456789
    7204 1048390 1718000000456789012 1718000000456789012

What "known clean" means: the segment was either written by this engine from batches
whose CRC it computed and then fsynced (stamped when the first flush after its roll makes
it durable), or read back whole with every batch's header and CRC checked (the loader's
full scan); and the file has not been changed since (its size, mtime and ctime are the
ones recorded then). Any write to the file through the file system, even one that puts
the old mtime back, changes its ctime, so the loader scans it again. A segment without a
matching entry (never verified, an older Brook, a changed file) is scanned on open even
after a clean shutdown, and stamped once it passes.

What it does not catch: bits that rot on the medium without a write. Those are found when
the batch is read (every read checks the CRC); the node then stops leading that range and
re-fetches it (services/node/README.md, "Corrupt data").

Thread-safety: none; the owning PartitionLog (or its loader) serializes access.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final, NamedTuple

from .checkpoint_file import CheckpointFile, CheckpointFormatError

CLEAN_SEGMENTS_CHECKPOINT: Final = "clean-segments-checkpoint"


class FileStamp(NamedTuple):
    """What identifies the unchanged contents of a segment file."""

    size_bytes: int
    mtime_ns: int
    ctime_ns: int


def stamp_of(path: Path) -> FileStamp:
    status = os.stat(path)
    return FileStamp(status.st_size, status.st_mtime_ns, status.st_ctime_ns)


class CleanSegments:
    """base offset -> stamp of each sealed segment known clean, backed by its file."""

    def __init__(self, directory: Path) -> None:
        self._file = CheckpointFile(directory / CLEAN_SEGMENTS_CHECKPOINT, 4)
        self.stamps: dict[int, FileStamp] = {}
        self._written: dict[int, FileStamp] = {}

    def load(self) -> str | None:
        """Reads the file; returns why it was ignored (then nothing is known clean)."""
        try:
            rows = self._file.read()
        except CheckpointFormatError as error:
            return str(error)
        self.stamps = {row[0]: FileStamp(*row[1:]) for row in rows or []}
        self._written = dict(self.stamps)
        return None

    def is_clean(self, base_offset: int, path: Path) -> bool:
        stamp = self.stamps.get(base_offset)
        return stamp is not None and stamp == stamp_of(path)

    def mark_clean(self, base_offset: int, path: Path) -> None:
        """Records the segment's current stamp, once: a file that changes after it was
        stamped must not be re-stamped, or the change would pass as clean."""
        if base_offset not in self.stamps:
            self.stamps[base_offset] = stamp_of(path)

    def forget(self, base_offset: int) -> None:
        """The segment was truncated, deleted or is active again."""
        self.stamps.pop(base_offset, None)

    def keep_only(self, base_offsets: set[int]) -> None:
        for base in [base for base in self.stamps if base not in base_offsets]:
            del self.stamps[base]

    def persist_if_changed(self) -> None:
        """Writes the file when the stamps changed (no directory fsync: losing the rename
        in a crash only means scanning those segments again)."""
        if self.stamps == self._written:
            return
        entries = [(base, *stamp) for base, stamp in sorted(self.stamps.items())]
        self._file.write(entries, sync_directory=False)
        self._written = dict(self.stamps)
