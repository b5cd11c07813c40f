"""The leader-epoch history of a partition (Kafka's LeaderEpochFileCache, KIP-101/KIP-279).

File format: `leader-epoch-checkpoint`, a versioned checkpoint file (see
`checkpoint_file`) whose entries are `<epoch> <start_offset>` lines in ascending order:

    0
    2
    3 0
    5 1200

meaning epoch 3 led from offset 0 and epoch 5 from offset 1200 to the log end. Every change
is written atomically (tmp file, fsync, rename, directory fsync) before the caller goes on,
so the file on disk never lags the data appended under a new epoch.

Invariant: entries are strictly increasing in both epoch and start offset.

Thread-safety: none; the owning PartitionLog serializes access.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .checkpoint_file import CheckpointFile, CheckpointFormatError

LEADER_EPOCH_CHECKPOINT: Final = "leader-epoch-checkpoint"
UNDEFINED_EPOCH: Final = -1
UNDEFINED_OFFSET: Final = -1


@dataclass(frozen=True, slots=True)
class EpochEntry:
    """Epoch `epoch` led from `start_offset` until the next entry's start offset."""

    epoch: int
    start_offset: int


class LeaderEpochFileCache:
    """In-memory epoch history backed by its checkpoint file."""

    def __init__(self, directory: Path, entries: list[EpochEntry] | None = None) -> None:
        self._file = CheckpointFile(directory / LEADER_EPOCH_CHECKPOINT, 2)
        self._entries: list[EpochEntry] = list(entries or [])
        self._check_invariant()

    @classmethod
    def load(cls, directory: Path) -> tuple[LeaderEpochFileCache, bool]:
        """Reads the checkpoint; returns (cache, trustworthy).

        `trustworthy` is False when the file is missing or unreadable, so the loader knows
        to rebuild the history from the batch headers instead.
        """
        cache = cls(directory)
        try:
            rows = cache._file.read()
        except CheckpointFormatError:
            return cache, False
        if rows is None:
            return cache, False
        entries = [EpochEntry(epoch, start) for epoch, start in rows]
        ordered = all(
            earlier.epoch < later.epoch and earlier.start_offset < later.start_offset
            for earlier, later in itertools.pairwise(entries)
        )
        if not ordered or any(entry.epoch < 0 or entry.start_offset < 0 for entry in entries):
            return cache, False
        cache._entries = entries
        return cache, True

    @property
    def path(self) -> Path:
        return self._file.path

    def entries(self) -> list[EpochEntry]:
        return list(self._entries)

    @property
    def latest_epoch(self) -> int | None:
        return self._entries[-1].epoch if self._entries else None

    @property
    def earliest_epoch(self) -> int | None:
        return self._entries[0].epoch if self._entries else None

    def assign(self, epoch: int, start_offset: int, *, persist: bool = True) -> bool:
        """Records that `epoch` starts at `start_offset`; returns True if the history changed.

        Kafka semantics: re-assigning the latest epoch at a later offset is a no-op (the
        epoch already covers it); otherwise every entry with an epoch >= `epoch` or a start
        offset >= `start_offset` conflicts with the new one and is removed first.
        """
        if epoch < 0 or start_offset < 0:
            raise ValueError(f"epoch {epoch} and start offset {start_offset} must be >= 0")
        if self._entries:
            latest = self._entries[-1]
            if latest.epoch == epoch and latest.start_offset <= start_offset:
                return False
        entries = list(self._entries)
        while entries and (entries[-1].epoch >= epoch or entries[-1].start_offset >= start_offset):
            entries.pop()
        entries.append(EpochEntry(epoch, start_offset))
        if persist:
            # File first: if the write fails (a full disk), memory still matches the file.
            self._write(entries)
        self._entries = entries
        self._check_invariant()
        return True

    def end_offset_for(self, epoch: int, log_end_offset: int) -> tuple[int, int]:
        """(largest known epoch <= `epoch`, the offset where that epoch ended).

        The end of an epoch is the start offset of the next higher known epoch, or
        `log_end_offset` for the latest epoch. A requested epoch newer than every known one
        resolves to the latest epoch (it has not ended). (-1, -1) when the history is empty
        or `epoch` is older than the earliest known epoch: nothing is known about it.
        """
        if not self._entries or epoch < self._entries[0].epoch:
            return UNDEFINED_EPOCH, UNDEFINED_OFFSET
        epochs = [entry.epoch for entry in self._entries]
        floor = bisect.bisect_right(epochs, epoch) - 1
        if floor == len(self._entries) - 1:
            return self._entries[floor].epoch, log_end_offset
        return self._entries[floor].epoch, self._entries[floor + 1].start_offset

    def truncate_from_end(self, end_offset: int, *, persist: bool = True) -> bool:
        """Drops entries starting at or after `end_offset` (the log was truncated there)."""
        changed = False
        while self._entries and self._entries[-1].start_offset >= end_offset:
            self._entries.pop()
            changed = True
        if changed and persist:
            self.persist()
        return changed

    def truncate_from_start(self, start_offset: int, *, persist: bool = True) -> bool:
        """Forgets epochs that ended before `start_offset` (the log start moved there).

        The epoch in force at `start_offset` is kept, with its start moved up to
        `start_offset`, so the history still covers every stored offset.
        """
        index = 0
        while index < len(self._entries) and self._entries[index].start_offset <= start_offset:
            index += 1
        if index == 0:
            return False
        covering = self._entries[index - 1]
        if index == 1 and covering.start_offset == start_offset:
            return False
        self._entries = [EpochEntry(covering.epoch, start_offset), *self._entries[index:]]
        self._check_invariant()
        if persist:
            self.persist()
        return True

    def clear(self, *, persist: bool = True) -> None:
        self._entries = []
        if persist:
            self.persist()

    def persist(self) -> None:
        self._write(self._entries)

    def _write(self, entries: list[EpochEntry]) -> None:
        self._file.write([(entry.epoch, entry.start_offset) for entry in entries])

    def _check_invariant(self) -> None:
        for earlier, later in itertools.pairwise(self._entries):
            assert earlier.epoch < later.epoch, self._entries
            assert earlier.start_offset < later.start_offset, self._entries
