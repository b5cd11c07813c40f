"""Injected wall-clock time.

The log engine never calls `time.time()` itself: segment age, retention and time-based
flushing all read a `Clock`, so tests drive them with a `ManualClock` instead of sleeping.

Thread-safety: `SystemClock` is stateless. `ManualClock` is a plain counter meant for a
single test thread.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Source of wall-clock time in milliseconds since the Unix epoch."""

    def now_ms(self) -> int: ...


class SystemClock:
    """The real wall clock."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that moves only when a test tells it to."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now_ms = start_ms

    def now_ms(self) -> int:
        return self._now_ms

    def advance(self, delta_ms: int) -> None:
        if delta_ms < 0:
            raise ValueError(f"a ManualClock only moves forward; got delta_ms={delta_ms}")
        self._now_ms += delta_ms

    def set(self, now_ms: int) -> None:
        self._now_ms = now_ms
