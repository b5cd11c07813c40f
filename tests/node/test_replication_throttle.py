"""The replication throttle's budget (services/node/replication_throttle.py): a
debt-based token bucket on an injected clock."""

from __future__ import annotations

import pytest

from brook.clock import ManualClock
from brook.services.node.replication_throttle import (
    BURST_BYTES_MIN,
    UNLIMITED_BYTES,
    NodeThrottle,
    ThrottleBudget,
    effective_rate,
)

MB = 1_000_000


def test_an_unthrottled_budget_never_holds_or_counts() -> None:
    budget = ThrottleBudget(ManualClock())
    assert not budget.throttled
    assert budget.available_bytes() == UNLIMITED_BYTES
    budget.charge(10 * MB)
    assert not budget.in_debt() and budget.delay_s() == 0.0
    assert budget.charged_bytes == 0


def test_a_new_budget_starts_with_its_burst_and_refills_at_the_rate() -> None:
    clock = ManualClock()
    budget = ThrottleBudget(clock, MB, burst_s=0.1)
    assert budget.available_bytes() == 100_000
    budget.charge(100_000)
    assert budget.in_debt()
    clock.advance(50)  # 50 ms at 1 MB/s
    assert budget.available_bytes() == 50_000
    clock.advance(10_000)  # idle: capped at the burst, not 10 MB
    assert budget.available_bytes() == 100_000


def test_a_batch_larger_than_the_budget_is_paid_off_as_debt() -> None:
    clock = ManualClock()
    budget = ThrottleBudget(clock, MB, burst_s=0.1)
    budget.charge(1_100_000)  # 100 kB available, 1.1 MB taken: 1 MB of debt
    assert budget.in_debt()
    assert budget.delay_s() == pytest.approx(1.0, rel=1e-3)
    clock.advance(999)
    assert budget.in_debt()
    clock.advance(2)
    assert not budget.in_debt()


def test_the_long_run_rate_is_exact_whatever_the_batch_size() -> None:
    """A follower that takes whole batches of any size whenever the budget is not in debt
    moves rate x time bytes (plus at most one burst and one batch)."""
    for batch in (10_000, 300_000, 2_500_000):
        clock = ManualClock()
        budget = ThrottleBudget(clock, MB, burst_s=0.1)
        moved = 0
        for _ in range(200_000):
            if clock.monotonic_s() - 1000.0 >= 20.0:
                break
            if budget.in_debt():
                clock.advance(max(1, int(budget.delay_s() * 1000) + 1))
                continue
            budget.charge(batch)
            moved += batch
        elapsed = clock.monotonic_s() - 1000.0
        assert moved / elapsed == pytest.approx(MB, rel=0.15), batch
        assert moved <= MB * elapsed + 100_000 + batch


def test_a_rate_change_takes_effect_at_once_and_keeps_the_debt() -> None:
    clock = ManualClock()
    budget = ThrottleBudget(clock, MB, burst_s=0.1)
    budget.charge(1_100_000)
    budget.set_rate(2 * MB)
    assert budget.delay_s() == pytest.approx(0.5, rel=1e-3)
    budget.set_rate(0)
    assert not budget.in_debt() and budget.available_bytes() == UNLIMITED_BYTES
    budget.set_rate(MB)  # from unthrottled: full again
    assert budget.available_bytes() == 100_000


def test_a_tiny_rate_still_allows_a_minimum_burst() -> None:
    budget = ThrottleBudget(ManualClock(), 10)
    assert budget.available_bytes() == BURST_BYTES_MIN


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        ThrottleBudget(ManualClock(), -1)
    with pytest.raises(ValueError):
        ThrottleBudget(ManualClock(), burst_s=0)


def test_the_node_throttle_sets_both_directions() -> None:
    throttle = NodeThrottle(ManualClock())
    assert throttle.set_rate(MB)
    assert not throttle.set_rate(MB)  # unchanged
    assert throttle.inbound.rate_bytes_per_s == throttle.outbound.rate_bytes_per_s == MB
    assert throttle.rate_bytes_per_s == MB


def test_a_node_override_wins_over_the_cluster_rate() -> None:
    assert effective_rate(MB, None) == MB
    assert effective_rate(MB, 2 * MB) == 2 * MB
    assert effective_rate(0, 0) == 0
