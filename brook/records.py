"""The record as a reader sees it, shared by the client and the node's record API.

A tuple (NamedTuple) because a consumer builds one per record and a tuple is the
cheapest object Python can build; immutable, compared by value.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["ConsumerRecord", "Header"]

# A record header: its name and its value bytes. Several headers may share a name.
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
