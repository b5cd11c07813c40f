"""The values a client hands out: topic-partitions, consumed records, delivery reports.

They are tuples (NamedTuple) because a consumer builds one per record and a tuple is
the cheapest object Python can build; they are immutable and compare by value.
`TopicPartition` (`brook.structs`), `ConsumerRecord` and `Header` (`brook.records`) are
the kernel's, re-exported here.
"""

from __future__ import annotations

from typing import NamedTuple

from brook.records import ConsumerRecord, Header
from brook.structs import TopicPartition

__all__ = ["BatchResult", "ConsumerRecord", "Header", "RecordMetadata", "TopicPartition"]


class RecordMetadata(NamedTuple):
    """Where an acknowledged record landed.

    `offset` is -1 with acks=0: the leader answers before it appends.
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int


class BatchResult(NamedTuple):
    """One produced batch's outcome, handed to batch listeners (see Producer).

    `timestamps_ms` are the records' timestamps in batch order (their create time unless
    the caller set one), so a listener can compute per-record latency without a future
    per record. `error` is None on success; then `base_offset` is the first record's
    offset (-1 with acks=0).
    """

    topic: str
    partition: int
    base_offset: int
    record_count: int
    timestamps_ms: list[int]
    value_bytes: int
    error: Exception | None
