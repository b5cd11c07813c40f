"""Choosing a partition: Kafka's murmur2 for keyed records, sticky for keyless ones.

`murmur2` is exactly Kafka's `Utils.murmur2` (seed 0x9747b28c, 32-bit signed result),
and `partition_for_key` is Kafka's default `toPositive(murmur2(key)) % partitions`, so a
key lands on the same partition number as with a Kafka producer.

The sticky partitioner (KIP-480) sends keyless records to one partition until a batch
for it is complete, then moves to another: batches fill up instead of every partition
getting a trickle, which is what makes linger cheap at low rates.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK32 = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of `data`, as a signed 32-bit int (what Java returns)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK32
    words = length >> 2
    if words:
        for k in struct.unpack_from(f"<{words}I", data):
            k = (k * _M) & _MASK32
            k ^= k >> 24
            k = (k * _M) & _MASK32
            h = ((h * _M) & _MASK32) ^ k
    tail = length & 3
    if tail:
        base = length & ~3
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h ^= data[base]
        h = (h * _M) & _MASK32
    h ^= h >> 13
    h = (h * _M) & _MASK32
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def to_positive(number: int) -> int:
    """Kafka's Utils.toPositive: clears the sign bit (not abs, so MIN_VALUE maps to 0)."""
    return number & 0x7FFFFFFF


def partition_for_key(key: bytes, partition_count: int) -> int:
    """Kafka's default partition for a key."""
    return to_positive(murmur2(key)) % partition_count


class StickyPartitioner:
    """Picks the partition of keyless records, per topic, KIP-480 style.

    `partition(topic, count)` answers the topic's current sticky partition;
    `on_new_batch(topic, count, previous)` is called by the accumulator when the sticky
    partition's batch was completed and a new one would be opened, and moves the topic to
    another partition, preferring ones that have a leader. Not thread-safe: one producer
    loop owns it. `rng` is injectable so tests are deterministic.
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._current: dict[str, int] = {}

    def partition(
        self, topic: str, partition_count: int, available: Sequence[int] | None = None
    ) -> int:
        current = self._current.get(topic)
        if current is None or current >= partition_count:
            current = self._choose(partition_count, available, None)
            self._current[topic] = current
        return current

    def on_new_batch(
        self,
        topic: str,
        partition_count: int,
        previous: int,
        available: Sequence[int] | None = None,
    ) -> int:
        """Moves the topic off `previous` (if it is still current) and answers the new one."""
        current = self._current.get(topic)
        if current is None or current == previous or current >= partition_count:
            current = self._choose(partition_count, available, previous)
            self._current[topic] = current
        return current

    def _choose(
        self, partition_count: int, available: Sequence[int] | None, previous: int | None
    ) -> int:
        candidates: Sequence[int] = available if available else range(partition_count)
        if len(candidates) == 1:
            return candidates[0]
        while True:
            choice = candidates[self._rng.randrange(len(candidates))]
            if choice != previous:
                return choice
