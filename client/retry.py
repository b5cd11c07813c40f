"""The client's one retry rule for calls to the coordinator and the group manager.

A call is retried only when its `BrookError` is `retriable` (the caller may narrow that
with `retriable=`), within three bounds: a number of attempts, capped exponential
back-off with jitter between them, and a total deadline that no back-off overshoots.
The error's hints decide what happens before the next attempt:

- NOT_COORDINATOR with an `on_redirect` hook: the hook follows the redirect (a standby
  did nothing with the request) and the next attempt goes at once, without back-off;
- `refresh_metadata` (leaders, the coordinator or the group manager moved): `on_refresh`
  runs, then the back-off;
- anything else retriable: only the back-off.

`Retry` is the state of one retried operation, for loops that cannot be one call (a
stream that reconnects, a loop that resets its budget after each success);
`call_with_retry` is the common case built on it. Time (`brook.clock.Clock`), sleeping
and randomness are injected, so tests run without real sleeps.

Not thread-safe: one event loop.
"""

from __future__ import annotations

import asyncio
import random as _random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from brook.clock import SYSTEM_CLOCK, Clock
from brook.errors import BrookError, Reason

T = TypeVar("T")

Sleep = Callable[[float], Awaitable[object]]
Hook = Callable[[BrookError], Awaitable[None] | None]


def is_retriable(error: BrookError) -> bool:
    """The taxonomy's answer: the server (or the transport) said the call may succeed.

    UNAVAILABLE is the client's own verdict (it is closed, or no metadata server answered
    within the metadata cache's own retry bounds), so retrying it again only multiplies
    the bounds.
    """
    return error.retriable and error.reason is not Reason.UNAVAILABLE


@dataclass(frozen=True)
class RetryPolicy:
    """How far one operation is retried.

    `attempts_max` counts every attempt, the first included. Before retry n (n = 1, 2...)
    the client waits `backoff_ms_min * 2**(n-1)`, capped at `backoff_ms_max`, less up to
    `jitter_ratio` of it (drawn at random, so clients that failed together do not retry
    together). `deadline_ms` bounds the whole operation from its first attempt; None means
    the attempts alone bound it.
    """

    attempts_max: int
    backoff_ms_min: float
    backoff_ms_max: float
    deadline_ms: float | None = None
    jitter_ratio: float = 0.2

    def __post_init__(self) -> None:
        if self.attempts_max < 1:
            raise ValueError(f"attempts_max must be >= 1, got {self.attempts_max}")
        if not 0 <= self.backoff_ms_min <= self.backoff_ms_max:
            raise ValueError("expected 0 <= backoff_ms_min <= backoff_ms_max")
        if not 0 <= self.jitter_ratio <= 1:
            raise ValueError(f"jitter_ratio must be within [0, 1], got {self.jitter_ratio}")

    def backoff_s(self, retry_number: int, draw: float) -> float:
        """Seconds to wait before retry `retry_number` (from 1); `draw` is in [0, 1)."""
        exponent = min(max(retry_number - 1, 0), 62)  # 2**62 ms is past any cap already
        capped_ms = min(self.backoff_ms_min * (1 << exponent), self.backoff_ms_max)
        return capped_ms * (1 - self.jitter_ratio * draw) / 1000


class Retry:
    """The budget of one retried operation: attempts made, time left, the next delay."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        retriable: Callable[[BrookError], bool] = is_retriable,
        on_refresh: Hook | None = None,
        on_redirect: Hook | None = None,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Sleep = asyncio.sleep,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.policy = policy
        self._retriable = retriable
        self._on_refresh = on_refresh
        self._on_redirect = on_redirect
        self._clock = clock
        self._sleep = sleep
        self._random = random
        self.failures = 0
        self._started_s = clock.monotonic_s()

    def reset(self) -> None:
        """A success: the next failure starts a fresh budget (attempts and deadline)."""
        self.failures = 0
        self._started_s = self._clock.monotonic_s()

    def time_left_s(self) -> float | None:
        """Seconds until the deadline (never negative), or None without one."""
        if self.policy.deadline_ms is None:
            return None
        elapsed_s = self._clock.monotonic_s() - self._started_s
        return max(0.0, self.policy.deadline_ms / 1000 - elapsed_s)

    async def failed(self, error: BrookError) -> None:
        """Records a failed attempt and prepares the next one (hooks, back-off).

        Raises `error` itself when it may not be retried: not retriable, the attempts are
        used up, or the deadline leaves no time for the back-off and another attempt.
        """
        self.failures += 1
        if not self._retriable(error) or self.failures >= self.policy.attempts_max:
            raise error
        if error.reason is Reason.NOT_COORDINATOR and self._on_redirect is not None:
            await _run_hook(self._on_redirect, error)
            self._check_deadline(error, 0.0)
            return
        if error.refresh_metadata and self._on_refresh is not None:
            await _run_hook(self._on_refresh, error)
        delay_s = self.policy.backoff_s(self.failures, self._random())
        self._check_deadline(error, delay_s)
        if delay_s > 0:
            await self._sleep(delay_s)  # back-off of a bounded retry

    def _check_deadline(self, error: BrookError, delay_s: float) -> None:
        left_s = self.time_left_s()
        if left_s is not None and left_s <= delay_s:
            raise error


async def _run_hook(hook: Hook, error: BrookError) -> None:
    result = hook(error)
    if result is not None:
        await result


async def call_with_retry(
    attempt: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    retriable: Callable[[BrookError], bool] = is_retriable,
    on_refresh: Hook | None = None,
    on_redirect: Hook | None = None,
    clock: Clock = SYSTEM_CLOCK,
    sleep: Sleep = asyncio.sleep,
    random: Callable[[], float] = _random.random,
) -> T:
    """`attempt()`'s result, retrying its BrookErrors by `policy` (see the module doc).

    `attempt` raises BrookError for failures (convert gRPC errors with
    `brook.errors.from_rpc_error`); any other exception propagates at once.
    """
    retry = Retry(
        policy,
        retriable=retriable,
        on_refresh=on_refresh,
        on_redirect=on_redirect,
        clock=clock,
        sleep=sleep,
        random=random,
    )
    while True:
        try:
            return await attempt()
        except BrookError as error:
            await retry.failed(error)
