"""Reassignment progress figures and copy rates (services/coordinator/reassign_progress.py),
on an injected clock."""

from __future__ import annotations

import pytest

from brook.clock import ManualClock
from brook.services.coordinator.balance_driver import partition_sizes
from brook.services.coordinator.reassign_progress import (
    LogDir,
    RateTracker,
    replica_progress,
)
from brook.services.metadata.model import PartitionRecord
from brook.structs import TopicPartition

KEY = ("t", 0, 4)


def test_no_rate_until_two_samples_half_a_second_apart() -> None:
    clock = ManualClock()
    rates = RateTracker(clock)
    assert rates.observe(KEY, 0) is None
    clock.advance(100)
    assert rates.observe(KEY, 100_000) is None
    clock.advance(900)
    assert rates.observe(KEY, 1_000_000) == pytest.approx(1_000_000)


def test_the_rate_is_measured_over_the_window_only() -> None:
    clock = ManualClock()
    rates = RateTracker(clock, window_s=10)
    rates.observe(KEY, 0)
    for second in range(1, 21):  # 1 MB/s for 10 s, then 2 MB/s for 10 s
        clock.advance(1000)
        size = second * 1_000_000 if second <= 10 else 10_000_000 + (second - 10) * 2_000_000
        rate = rates.observe(KEY, size)
    assert rate == pytest.approx(2_000_000)


def test_a_replica_that_restarts_its_log_starts_a_new_measure() -> None:
    clock = ManualClock()
    rates = RateTracker(clock)
    rates.observe(KEY, 5_000_000)
    clock.advance(1000)
    assert rates.observe(KEY, 1_000) is None  # smaller: truncated or rebuilt


def test_finished_moves_are_forgotten_and_the_tracker_is_bounded() -> None:
    clock = ManualClock()
    rates = RateTracker(clock, max_replicas=2)
    for partition in range(3):
        rates.observe(("t", partition, 4), 0)
    assert len(rates) == 2 and rates.rate(("t", 0, 4)) is None
    rates.forget_except({("t", 2, 4)})
    assert len(rates) == 1


def test_progress_figures_and_the_estimate() -> None:
    leader = LogDir(size_bytes=10_000_000, log_start_offset=100, log_end_offset=10_100)
    adding = LogDir(size_bytes=4_000_000, log_start_offset=100, log_end_offset=4_100)
    progress = replica_progress(4, leader, adding, 1_000_000.0)
    assert (progress.copied_bytes, progress.remaining_bytes) == (4_000_000, 6_000_000)
    assert (progress.copied_records, progress.remaining_records) == (4_000, 6_000)
    assert progress.eta_s == pytest.approx(6.0)


def test_unknown_figures_stay_unset() -> None:
    adding = LogDir(4_000_000, 0, 4_000)
    assert replica_progress(4, None, None, None).copied_bytes is None
    no_leader = replica_progress(4, None, adding, None)
    assert no_leader.copied_bytes == 4_000_000 and no_leader.remaining_bytes is None
    no_rate = replica_progress(4, LogDir(9_000_000, 0, 9_000), adding, None)
    assert no_rate.remaining_bytes == 5_000_000 and no_rate.eta_s is None
    stalled = replica_progress(4, LogDir(9_000_000, 0, 9_000), adding, 0.0)
    assert stalled.eta_s is None
    done = replica_progress(4, LogDir(4_000_000, 0, 4_000), adding, 0.0)
    assert done.eta_s == 0.0 and done.remaining_bytes == 0


def test_an_adding_replica_ahead_of_the_leader_start_counts_from_it() -> None:
    """The leader deleted old segments meanwhile: remaining records count from its start."""
    leader = LogDir(1_000, 5_000, 6_000)
    adding = LogDir(10, 0, 10)
    assert replica_progress(4, leader, adding, None).remaining_records == 1_000


def test_partition_sizes_come_from_the_leader_else_the_largest_replica() -> None:
    a, b, c = TopicPartition("t", 0), TopicPartition("t", 1), TopicPartition("t", 2)
    records = {
        a: PartitionRecord("t", 0, "id", (1, 2), leader=1, isr=(1, 2)),
        b: PartitionRecord("t", 1, "id", (2, 3), leader=2, isr=(2, 3)),
        c: PartitionRecord("t", 2, "id", (3, 1), leader=3, isr=(3, 1)),
    }
    dirs = {
        1: {a: LogDir(100, 0, 1), c: LogDir(70, 0, 1)},
        2: {a: LogDir(90, 0, 1)},
        3: {b: LogDir(50, 0, 1)},
    }
    # a: its leader (1); b: leader 2 has no entry, replica 3's; c: leader 3 has no entry.
    assert partition_sizes(records, dirs) == {a: 100, b: 50, c: 70}
