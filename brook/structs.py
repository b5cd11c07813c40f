"""Values every Brook package names the same way.

`TopicPartition` is the key of a partition everywhere: in the client's records, in the
node's partition table, in the group manager's assignments and offsets. It is a
NamedTuple, so it is as cheap as the `(topic, partition)` tuple it replaces and equal to
one (`TopicPartition("t", 0) == ("t", 0)`), and every proto message with `topic` and
`partition` fields converts through `of` / `fields`.

Thread-safety: immutable values.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol


class HasTopicPartition(Protocol):
    """A proto message (or anything) with `topic` and `partition` fields."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...


class TopicPartition(NamedTuple):
    """One partition of a topic."""

    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}-{self.partition}"

    @classmethod
    def of(cls, message: HasTopicPartition) -> TopicPartition:
        """The partition a proto message names in its `topic` and `partition` fields."""
        return cls(message.topic, message.partition)

    def fields(self) -> dict[str, str | int]:
        """Keyword arguments for a proto message's `topic` and `partition` fields."""
        return {"topic": self.topic, "partition": self.partition}
