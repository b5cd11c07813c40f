"""Bounded waiting on conditions (never a bare sleep as synchronization)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    *,
    timeout_s: float,
    interval_s: float = 0.05,
    what: str = "condition",
) -> T:
    """Calls `probe` until it returns a truthy value without raising; returns that value.

    Raises TimeoutError (with the last exception or value) once timeout_s has passed.
    """
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        try:
            value = await probe()
            if value:
                return value
            last = value
        except Exception as error:  # the condition is not true yet; remember why
            last = error
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not reached within {timeout_s}s; last: {last!r}")
        await asyncio.sleep(interval_s)
