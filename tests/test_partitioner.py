"""Partition choice: Kafka's murmur2 and the KIP-480 sticky partitioner."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from brook.partitioner import (
    StickyPartitioner,
    murmur2,
    partition_for_key,
    to_positive,
)

# Kafka's own vectors (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java,
# testMurmur2), as signed 32-bit ints.
KAFKA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "expected"), sorted(KAFKA_VECTORS.items()))
def test_murmur2_matches_kafka(key: bytes, expected: int) -> None:
    """Proves murmur2 returns Kafka's values for Kafka's test vectors (every tail length)."""
    assert murmur2(key) == expected


def test_partition_for_key_is_kafkas_formula() -> None:
    """Proves the default partition is toPositive(murmur2(key)) % n, sign bit cleared."""
    assert to_positive(-1) == 0x7FFFFFFF
    assert to_positive(-(2**31)) == 0
    for key, hashed in KAFKA_VECTORS.items():
        assert partition_for_key(key, 6) == (hashed & 0x7FFFFFFF) % 6


def test_keys_spread_evenly_over_partitions() -> None:
    """Proves 60,000 distinct keys land within 5% of an even share on 6 partitions."""
    counts = Counter(partition_for_key(f"key-{i}".encode(), 6) for i in range(60_000))
    assert set(counts) == set(range(6))
    assert all(abs(count - 10_000) < 500 for count in counts.values())


def test_sticky_partition_holds_until_a_new_batch() -> None:
    """Proves keyless records stick to one partition and move (to a different, available
    partition) only when the accumulator reports a new batch for the sticky one."""
    partitioner = StickyPartitioner(random.Random(1))
    first = partitioner.partition("t", 6)
    assert all(partitioner.partition("t", 6) == first for _ in range(100))
    second = partitioner.on_new_batch("t", 6, first)
    assert second != first
    assert partitioner.partition("t", 6) == second
    # A stale report about a partition that is no longer sticky changes nothing.
    assert partitioner.on_new_batch("t", 6, first) == second
    # Only partitions with a leader are chosen when the caller says which those are.
    seen = {
        partitioner.on_new_batch("t", 6, partitioner.partition("t", 6), [1, 4]) for _ in range(50)
    }
    assert seen <= {1, 4}
    assert partitioner.on_new_batch("t", 1, 0) == 0


def test_sticky_choices_cover_all_partitions() -> None:
    """Proves batch after batch, the sticky partitioner visits every partition."""
    partitioner = StickyPartitioner(random.Random(7))
    current = partitioner.partition("t", 4)
    seen = {current}
    for _ in range(200):
        current = partitioner.on_new_batch("t", 4, current)
        seen.add(current)
    assert seen == {0, 1, 2, 3}
