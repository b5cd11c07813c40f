"""Injected time, for every Brook process and the client.

Nothing in Brook reads `time.time()` or `time.monotonic()` where a decision depends on
it: code takes a `Clock`, so tests drive segment age, retention, lag, timeouts and
session expiry with a `ManualClock` instead of sleeping.

- `now_ms()`: wall-clock milliseconds since the Unix epoch (timestamps, retention);
- `monotonic_s()`: seconds on a clock that never goes back (timeouts, rates, ages).

Thread-safety: `SystemClock` is stateless. `ManualClock` is a plain counter meant for
one test thread (or one event loop).
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """A source of wall-clock and monotonic time."""

    def now_ms(self) -> int: ...

    def monotonic_s(self) -> float: ...


class SystemClock:
    """The real clocks."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic_s(self) -> float:
        return time.monotonic()


SYSTEM_CLOCK = SystemClock()


class ManualClock:
    """A clock that moves only when a test tells it to; both readings move together."""

    def __init__(
        self, start_ms: int = 1_700_000_000_000, start_monotonic_s: float = 1000.0
    ) -> None:
        self._now_ms = start_ms
        self._monotonic_s = start_monotonic_s

    def now_ms(self) -> int:
        return self._now_ms

    def monotonic_s(self) -> float:
        return self._monotonic_s

    def advance(self, delta_ms: int) -> None:
        if delta_ms < 0:
            raise ValueError(f"a ManualClock only moves forward; got delta_ms={delta_ms}")
        self._now_ms += delta_ms
        self._monotonic_s += delta_ms / 1000.0

    def set(self, now_ms: int) -> None:
        """Sets the wall clock (which may jump back, as a real one can); monotonic stays."""
        self._now_ms = now_ms
