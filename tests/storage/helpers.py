"""Shared helpers for the storage tests.

`scan_log_files` re-implements the documented on-disk batch format with struct and crc32c
directly (not through brook.storage), so tests check the files against the format spec
rather than against the engine's own decoder.
"""

from __future__ import annotations

import itertools
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import crc32c

from brook.storage import PartitionLog, StoredBatch

HEADER = struct.Struct(">qibiqiI")


@dataclass(frozen=True)
class DiskBatch:
    file: str
    position: int
    base_offset: int
    record_count: int
    max_timestamp_ms: int
    leader_epoch: int
    payload: bytes

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.record_count - 1


def scan_log_files(directory: Path) -> list[DiskBatch]:
    """Every batch in every `.log` file of `directory`, asserting the format holds: magic 1,
    CRC32C over the header prefix and payload, whole batches, contiguous offsets."""
    batches: list[DiskBatch] = []
    for path in sorted(directory.glob("*.log")):
        data = path.read_bytes()
        position = 0
        expected = int(path.name[:20])
        while position < len(data):
            assert position + HEADER.size <= len(data), f"{path.name}: partial header"
            base, length, magic, count, timestamp, epoch, crc = HEADER.unpack_from(data, position)
            assert magic == 1, f"{path.name}@{position}: magic {magic}"
            assert base == expected, f"{path.name}@{position}: base {base}, expected {expected}"
            end = position + HEADER.size + length
            assert end <= len(data), f"{path.name}@{position}: batch past end of file"
            payload = data[position + HEADER.size : end]
            computed = crc32c.crc32c(payload, crc32c.crc32c(data[position : position + 29]))
            assert computed == crc, f"{path.name}@{position}: CRC mismatch"
            batches.append(DiskBatch(path.name, position, base, count, timestamp, epoch, payload))
            expected = base + count
            position = end
    for earlier, later in itertools.pairwise(batches):
        assert later.base_offset == earlier.last_offset + 1, "segments not contiguous"
    return batches


def read_all(log: PartitionLog, start: int | None = None) -> list[StoredBatch]:
    """Every batch from `start` (default: log start) to the log end, via the public API."""
    offset = log.log_start_offset if start is None else start
    batches: list[StoredBatch] = []
    while offset < log.log_end_offset:
        result = log.read(offset, 1 << 20)
        assert result.batches, f"no progress at offset {offset}"
        batches.extend(result.batches)
        offset = result.next_offset
    return batches


def payload_for(number: int, size: int) -> bytes:
    """A deterministic, distinguishable payload."""
    seed = number.to_bytes(8, "big")
    return (seed * (size // 8 + 1))[:size]


def directory_snapshot(directory: Path) -> dict[str, int]:
    """File name -> size, for asserting that a failed call changed nothing on disk."""
    return {entry.name: entry.stat().st_size for entry in os.scandir(directory)}


def iter_files(directory: Path, suffix: str) -> Iterator[Path]:
    return iter(sorted(directory.glob(f"*{suffix}")))


OpenLog = Callable[..., PartitionLog]
