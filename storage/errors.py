"""Exceptions raised by the log engine.

Every exception derives from `StorageError`, so a caller can catch the whole family in one
place. The ones caused by bad input (a request a caller could fix and retry) also derive
from `ValueError`; the ones caused by the disk do not.

Thread-safety: exceptions are immutable after construction.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every error raised by `brook.storage`."""


class InvalidConfigError(StorageError, ValueError):
    """A `LogConfig` field is outside its allowed range, or a config key is unknown."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"invalid log config {field!r}: {message}")
        self.field = field


class InvalidBatchError(StorageError, ValueError):
    """A batch handed to append is malformed: empty payload, record_count < 1, bad epoch."""


class InvalidEpochError(InvalidBatchError):
    """The batch's leader epoch is older than the newest epoch the log has seen (fencing)."""

    def __init__(self, message: str, *, leader_epoch: int, latest_epoch: int) -> None:
        super().__init__(message)
        self.leader_epoch = leader_epoch
        self.latest_epoch = latest_epoch


class BatchTooLargeError(InvalidBatchError):
    """The batch payload is larger than `LogConfig.max_batch_bytes`."""

    def __init__(self, message: str, *, payload_bytes: int, max_batch_bytes: int) -> None:
        super().__init__(message)
        self.payload_bytes = payload_bytes
        self.max_batch_bytes = max_batch_bytes


class InvalidOffsetError(StorageError, ValueError):
    """An offset argument is inconsistent with the log (e.g. a follower's base offset)."""

    def __init__(self, message: str, *, log_end_offset: int) -> None:
        super().__init__(message)
        self.log_end_offset = log_end_offset


class OffsetOutOfRangeError(StorageError, ValueError):
    """A read or delete asked for an offset outside [log_start_offset, log_end_offset]."""

    def __init__(
        self, message: str, *, offset: int, log_start_offset: int, log_end_offset: int
    ) -> None:
        super().__init__(message)
        self.offset = offset
        self.log_start_offset = log_start_offset
        self.log_end_offset = log_end_offset


class CorruptBatchError(StorageError):
    """A stored batch failed its header or CRC check when it was read back.

    `offset` is where the damage starts (the offset the bad batch should begin at) when
    known: the log must not serve anything from there on until it is re-replicated."""

    def __init__(self, message: str, *, offset: int | None = None) -> None:
        super().__init__(message)
        self.offset = offset


class DiskFullError(StorageError):
    """A write failed because the disk (or the user's quota) is full (ENOSPC, EDQUOT).

    The log is left exactly as before the call (a partial append is cut off) and stays
    online: reads keep working and the same call succeeds once space is freed."""

    def __init__(self, message: str, *, errno: int) -> None:
        super().__init__(message)
        self.errno = errno


class LogClosedError(StorageError):
    """The log was closed (or taken offline after an I/O error) and cannot be used."""
