"""Small versioned text files holding offsets, replaced atomically.

File format (UTF-8 text, one item per line, like Kafka's checkpoint files):

    0                 <- format version
    2                 <- number of entries that follow
    3 0               <- one entry: integers separated by one space
    5 1200

Writes go to `<name>.tmp`, are fsynced, renamed over `<name>` and (normally) the
directory is fsynced, so a reader sees the old file or the new one, never a mix. A leftover `.tmp`
from a crash is removed by the log loader.

Thread-safety: none; the owning PartitionLog serializes access.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from .errors import StorageError
from .faults import io_for
from .file_utils import fsync_directory

CHECKPOINT_VERSION: Final = 0
TMP_SUFFIX: Final = ".tmp"


class CheckpointFormatError(StorageError):
    """A checkpoint file exists but does not parse."""


class CheckpointFile:
    """One checkpoint file holding entries of `fields_per_entry` integers each."""

    def __init__(self, path: Path, fields_per_entry: int) -> None:
        self.path = path
        self.fields_per_entry = fields_per_entry

    def write(self, entries: Sequence[Sequence[int]], *, sync_directory: bool = True) -> None:
        """Replaces the file. `sync_directory=False` skips the directory fsync: the new
        contents are complete either way, but after a crash the old file may come back,
        which is only acceptable when an older value is still safe to act on."""
        lines = [str(CHECKPOINT_VERSION), str(len(entries))]
        for entry in entries:
            assert len(entry) == self.fields_per_entry, entry
            lines.append(" ".join(str(value) for value in entry))
        data = ("\n".join(lines) + "\n").encode()
        tmp_path = self.path.with_name(self.path.name + TMP_SUFFIX)
        io = io_for(tmp_path)
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[io.write(fd, view) :]
            io.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_path, self.path)
        if sync_directory:
            fsync_directory(self.path.parent)

    def read(self) -> list[tuple[int, ...]] | None:
        """Returns the entries, None if the file does not exist; raises on a bad format."""
        try:
            text = io_for(self.path).read_bytes(self.path).decode(errors="replace")
        except FileNotFoundError:
            return None
        lines = text.splitlines()
        try:
            version = int(lines[0])
            count = int(lines[1])
            if version != CHECKPOINT_VERSION:
                raise CheckpointFormatError(
                    f"{self.path}: unsupported checkpoint version {version}"
                )
            if count < 0 or len(lines) != 2 + count:
                raise CheckpointFormatError(
                    f"{self.path}: header says {count} entries, file has {len(lines) - 2}"
                )
            entries = []
            for line in lines[2:]:
                fields = tuple(int(field) for field in line.split(" "))
                if len(fields) != self.fields_per_entry:
                    raise CheckpointFormatError(f"{self.path}: malformed entry {line!r}")
                entries.append(fields)
        except (IndexError, ValueError) as error:
            raise CheckpointFormatError(f"{self.path}: cannot parse: {error}") from None
        return entries


class OffsetCheckpoint:
    """A checkpoint holding a single offset (recovery point, log start offset)."""

    def __init__(self, path: Path) -> None:
        self._file = CheckpointFile(path, 1)

    @property
    def path(self) -> Path:
        return self._file.path

    def write(self, offset: int, *, sync_directory: bool = True) -> None:
        self._file.write([(offset,)], sync_directory=sync_directory)

    def read(self) -> int | None:
        entries = self._file.read()
        if entries is None:
            return None
        if len(entries) != 1 or entries[0][0] < 0:
            raise CheckpointFormatError(f"{self.path}: expected one offset >= 0, got {entries}")
        return entries[0][0]
