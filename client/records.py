"""The values a client hands out: topic-partitions, consumed records, delivery reports.

They are tuples (NamedTuple) because a consumer builds one per record and a tuple is
the cheapest object Python can build; they are immutable and compare by value.
`TopicPartition` is Brook's one partition key (`brook.structs`), re-exported here.
"""

from __future__ import annotations

from typing import NamedTuple

from brook.structs import TopicPartition

__all__ = ["BatchResult", "ConsumerRecord", "Header", "RecordMetadata", "TopicPartition"]

Header = tuple[str, bytes]


class ConsumerRecord(NamedTuple):
    """A record read from a partition.

    `key` is None for a record produced without a key and b"" for an empty key.
    `leader_epoch` is the epoch of the leader that appended the record's batch.
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    headers: list[Header]
    leader_epoch: int


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
