"""How late a process's event loop runs timers: the lag every request, lease keep-alive
and replication step waits behind (defect 5: a 4 s stall cost a node its lease).

A task sleeps `interval_s` again and again and records how much later than asked it
woke up. Any lag above `warn_ms` is logged at once (a stall worth knowing about); the
maximum is kept two ways: since the last `take_max_ms()` (tests bracket a request with
it) and over the last `window_s`. Both are served as JSON by an unlisted diagnostics
method (`LOOP_LAG_SERVICE`/`LoopLag`, raw bytes, not part of the public API), and every
sample is exported as `brook_event_loop_lag_seconds` (histogram) and
`brook_event_loop_lag_max_seconds` (the window's maximum) (services/common/metrics.py).

Thread-safety: one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque

import grpc

from brook.clock import Clock
from brook.services.common.metrics import observe_loop_lag

log = logging.getLogger("brook.loop")


class LoopLagMonitor:
    """Measures event-loop lag with a periodic timer."""

    def __init__(
        self, clock: Clock, *, interval_s: float = 0.02, window_s: float = 10.0,
        warn_ms: float = 100.0,
    ) -> None:
        self._clock = clock
        self.interval_s = interval_s
        self.window_s = window_s
        self.warn_ms = warn_ms
        self._max_since_take_ms = 0.0
        # (when, lag_ms) of samples in the window with a lag above the interval's noise.
        self._recent: deque[tuple[float, float]] = deque()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def record(self, lag_ms: float) -> None:
        now = self._clock.monotonic_s()
        self._max_since_take_ms = max(self._max_since_take_ms, lag_ms)
        while self._recent and self._recent[0][0] < now - self.window_s:
            self._recent.popleft()
        # Keep the window a strictly decreasing run of lags: an older, smaller lag can
        # never be the window's maximum again (O(1) amortized per sample).
        while self._recent and self._recent[-1][1] <= lag_ms:
            self._recent.pop()
        self._recent.append((now, lag_ms))
        # The window is a decreasing run: its first entry is its maximum.
        observe_loop_lag(lag_ms / 1000, self._recent[0][1] / 1000)
        if lag_ms >= self.warn_ms:
            log.warning("event loop lag %.0f ms (a handler held the loop)", lag_ms)

    def take_max_ms(self) -> float:
        """The largest lag since the previous call (and resets it)."""
        value, self._max_since_take_ms = self._max_since_take_ms, 0.0
        return value

    def window_max_ms(self) -> float:
        """The largest lag over the last `window_s`."""
        horizon = self._clock.monotonic_s() - self.window_s
        return max((lag for when, lag in self._recent if when >= horizon), default=0.0)

    async def _run(self) -> None:
        while True:
            asked_at = self._clock.monotonic_s()
            await asyncio.sleep(self.interval_s)
            late_s = self._clock.monotonic_s() - asked_at - self.interval_s
            self.record(max(0.0, late_s) * 1000)


LOOP_LAG_SERVICE = "brook.internal.v1.Diagnostics"


def register_diagnostics(server: grpc.aio.Server, monitor: LoopLagMonitor) -> None:
    """Serves `{"max_ms_since_last_call": x, "window_max_ms": y, "window_s": w}`."""

    async def loop_lag(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return json.dumps({
            "max_ms_since_last_call": monitor.take_max_ms(),
            "window_max_ms": monitor.window_max_ms(),
            "window_s": monitor.window_s,
        }).encode()

    handler = grpc.unary_unary_rpc_method_handler(
        loop_lag, request_deserializer=bytes, response_serializer=bytes
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(LOOP_LAG_SERVICE, {"LoopLag": handler}),)
    )
