"""Values returned by PartitionLog operations.

No file format. Thread-safety: immutable dataclasses (the `batches` list of a ReadResult
belongs to the caller once returned).
"""

from __future__ import annotations

from dataclasses import dataclass

from .record_batch import StoredBatch


@dataclass(frozen=True, slots=True)
class AppendInfo:
    """Where an appended batch landed."""

    base_offset: int
    last_offset: int
    max_timestamp_ms: int
    # Clock time of the append (the log's clock), e.g. for LogAppendTime topics.
    log_append_time_ms: int


@dataclass(frozen=True, slots=True)
class ReadResult:
    """Whole batches read from the log.

    `next_offset` is where the next read should start: the offset after the last returned
    batch, or the requested start offset if nothing was returned. `bytes_read` counts the
    batches as stored (header plus payload), the same measure `max_bytes` limits.
    """

    batches: list[StoredBatch]
    next_offset: int
    bytes_read: int
