"""The client's retry helper (brook.client.retry), on a manual clock: no real sleeping."""

from __future__ import annotations

import pytest

from brook.client.retry import Retry, RetryPolicy, call_with_retry
from brook.clock import ManualClock
from brook.errors import BrookError, Reason


class FakeSleep:
    """Records each back-off and moves the manual clock by it instead of sleeping."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.delays_s: list[float] = []

    async def __call__(self, delay_s: float) -> None:
        self.delays_s.append(delay_s)
        self.clock.advance(round(delay_s * 1000))


class Flaky:
    """An attempt that fails with the given errors, in order, then returns "ok"."""

    def __init__(self, *errors: BrookError) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def unavailable() -> BrookError:
    return BrookError(Reason.COORDINATOR_NOT_AVAILABLE, "no coordinator yet")


POLICY = RetryPolicy(attempts_max=5, backoff_ms_min=100, backoff_ms_max=400, jitter_ratio=0)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sleep(clock: ManualClock) -> FakeSleep:
    return FakeSleep(clock)


async def test_retriable_errors_are_retried_with_capped_exponential_backoff(
    clock: ManualClock, sleep: FakeSleep
) -> None:
    """Proves retriable failures are retried until the call succeeds, with back-off
    doubling from the minimum up to the cap."""
    attempt = Flaky(*(unavailable() for _ in range(4)))
    result = await call_with_retry(attempt, POLICY, clock=clock, sleep=sleep)
    assert result == "ok" and attempt.calls == 5
    assert sleep.delays_s == [0.1, 0.2, 0.4, 0.4]


async def test_attempts_are_bounded(clock: ManualClock, sleep: FakeSleep) -> None:
    """Proves an operation that keeps failing stops after attempts_max attempts and raises
    the last error."""
    errors = [unavailable() for _ in range(10)]
    attempt = Flaky(*errors)
    with pytest.raises(BrookError) as raised:
        await call_with_retry(attempt, POLICY, clock=clock, sleep=sleep)
    assert attempt.calls == POLICY.attempts_max
    assert raised.value is errors[POLICY.attempts_max - 1]
    assert len(sleep.delays_s) == POLICY.attempts_max - 1


async def test_non_retriable_error_raises_at_once(clock: ManualClock, sleep: FakeSleep) -> None:
    """Proves a non-retriable error is raised on the first attempt, without back-off or
    hooks."""
    refreshed: list[BrookError] = []
    attempt = Flaky(BrookError(Reason.TOPIC_ALREADY_EXISTS, "exists"))
    with pytest.raises(BrookError, match="TOPIC_ALREADY_EXISTS"):
        await call_with_retry(
            attempt, POLICY, on_refresh=refreshed.append, clock=clock, sleep=sleep
        )
    assert attempt.calls == 1 and sleep.delays_s == [] and refreshed == []


async def test_caller_may_narrow_what_is_retried(clock: ManualClock, sleep: FakeSleep) -> None:
    """Proves `retriable=` narrows the taxonomy: a retriable error the caller refuses (a
    mutating call that timed out) is raised at once."""
    attempt = Flaky(BrookError(Reason.REQUEST_TIMED_OUT, "may have been applied"))
    with pytest.raises(BrookError, match="REQUEST_TIMED_OUT"):
        await call_with_retry(
            attempt,
            POLICY,
            retriable=lambda e: e.reason is not Reason.REQUEST_TIMED_OUT,
            clock=clock,
            sleep=sleep,
        )
    assert attempt.calls == 1


async def test_deadline_is_respected(clock: ManualClock, sleep: FakeSleep) -> None:
    """Proves the total deadline stops retrying before a back-off would pass it, even
    with attempts left, and that no sleep goes beyond it."""
    policy = RetryPolicy(
        attempts_max=100, backoff_ms_min=100, backoff_ms_max=1000, deadline_ms=1000, jitter_ratio=0
    )
    attempt = Flaky(*(unavailable() for _ in range(100)))
    start_s = clock.monotonic_s()
    with pytest.raises(BrookError, match="COORDINATOR_NOT_AVAILABLE"):
        await call_with_retry(attempt, policy, clock=clock, sleep=sleep)
    assert sleep.delays_s == [0.1, 0.2, 0.4]  # 0.8 s will not fit in the 0.3 s left
    assert clock.monotonic_s() - start_s <= 1.0
    assert attempt.calls == 4


async def test_deadline_counts_time_spent_in_attempts(clock: ManualClock, sleep: FakeSleep) -> None:
    """Proves slow attempts use up the deadline too (not only the back-offs)."""
    policy = RetryPolicy(
        attempts_max=100, backoff_ms_min=10, backoff_ms_max=10, deadline_ms=500, jitter_ratio=0
    )
    calls = 0

    async def slow_failure() -> None:
        nonlocal calls
        calls += 1
        clock.advance(200)
        raise unavailable()

    with pytest.raises(BrookError):
        await call_with_retry(slow_failure, policy, clock=clock, sleep=sleep)
    assert calls == 3  # 3 x 200 ms of attempts: the third one ends past the deadline


async def test_refresh_hook_runs_for_refresh_metadata_errors(
    clock: ManualClock, sleep: FakeSleep
) -> None:
    """Proves `on_refresh` runs before the back-off when the error asks for a metadata
    refresh, and not for a retriable error that does not."""
    refreshed: list[Reason] = []
    moved = BrookError(Reason.COORDINATOR_NOT_AVAILABLE, "moved")  # refresh_metadata
    busy = BrookError(Reason.TOO_MANY_REQUESTS, "busy")  # retriable, no refresh
    attempt = Flaky(moved, busy)

    async def refresh(error: BrookError) -> None:
        refreshed.append(error.reason)

    assert await call_with_retry(attempt, POLICY, on_refresh=refresh, clock=clock, sleep=sleep)
    assert refreshed == [Reason.COORDINATOR_NOT_AVAILABLE]
    assert len(sleep.delays_s) == 2


async def test_redirect_is_followed_at_once(clock: ManualClock, sleep: FakeSleep) -> None:
    """Proves NOT_COORDINATOR with an `on_redirect` hook retries at once (no back-off)
    after the hook, while it still counts as an attempt; without the hook it is an
    ordinary refresh-and-back-off."""
    redirected: list[str] = []
    attempt = Flaky(BrookError(Reason.NOT_COORDINATOR, "standby", {"address": "b:1"}))
    assert await call_with_retry(
        attempt,
        POLICY,
        on_redirect=lambda e: redirected.append(e.metadata["address"]),
        clock=clock,
        sleep=sleep,
    )
    assert redirected == ["b:1"] and sleep.delays_s == [] and attempt.calls == 2

    refreshed: list[Reason] = []
    attempt = Flaky(BrookError(Reason.NOT_COORDINATOR, "standby"))
    await call_with_retry(
        attempt, POLICY, on_refresh=lambda e: refreshed.append(e.reason), clock=clock, sleep=sleep
    )
    assert refreshed == [Reason.NOT_COORDINATOR] and sleep.delays_s == [0.1]

    one_attempt = RetryPolicy(attempts_max=1, backoff_ms_min=1, backoff_ms_max=1)
    attempt = Flaky(BrookError(Reason.NOT_COORDINATOR, "standby"))
    with pytest.raises(BrookError, match="NOT_COORDINATOR"):
        await call_with_retry(attempt, one_attempt, on_redirect=lambda e: None, clock=clock)


def test_jitter_shortens_the_backoff_within_its_ratio() -> None:
    """Proves jitter takes at most `jitter_ratio` off a delay and never adds to it."""
    policy = RetryPolicy(attempts_max=3, backoff_ms_min=100, backoff_ms_max=1000, jitter_ratio=0.5)
    assert policy.backoff_s(1, 0.0) == pytest.approx(0.1)
    assert policy.backoff_s(1, 0.999) == pytest.approx(0.05, rel=0.01)
    assert policy.backoff_s(2, 0.5) == pytest.approx(0.15)
    assert policy.backoff_s(1000, 0.0) == pytest.approx(1.0)


async def test_reset_gives_a_fresh_budget(clock: ManualClock, sleep: FakeSleep) -> None:
    """Proves a loop that resets after each success (a reconnecting stream) may fail
    attempts_max - 1 times between successes without giving up."""
    retry = Retry(POLICY, clock=clock, sleep=sleep)
    for _ in range(3):
        for _ in range(POLICY.attempts_max - 1):
            await retry.failed(unavailable())
        retry.reset()
    with pytest.raises(BrookError):
        for _ in range(POLICY.attempts_max):
            await retry.failed(unavailable())


def test_policy_rejects_impossible_bounds() -> None:
    """Proves a policy without an attempt, or with a cap below the minimum, is refused."""
    with pytest.raises(ValueError, match="attempts_max"):
        RetryPolicy(attempts_max=0, backoff_ms_min=1, backoff_ms_max=1)
    with pytest.raises(ValueError, match="backoff_ms_min"):
        RetryPolicy(attempts_max=1, backoff_ms_min=10, backoff_ms_max=1)
