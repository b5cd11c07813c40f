"""Bounded sets of futures waiting for a partition offset (high watermark or log end) to
reach a value.

A produce with acks=all waits for the high watermark to pass its last offset; a fetch
long-poll waits for it to pass the fetch offset; a follower's ReplicaFetch long-poll waits
for the log end offset. Each partition keeps one `OffsetWaiters` per kind, keyed by the
offset each waiter needs, so an advance wakes exactly the waiters it satisfies (a heap:
O(log n) per waiter, no broadcast to every waiter on every advance).

Every set is bounded: `add` raises TOO_MANY_REQUESTS once `limit` waiters are parked.

Thread-safety: one event loop.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Final

from brook.errors import BrookError

_NEXT_ID: Final = itertools.count()


class Waiter:
    """One parked caller: resolved (None) when the offset is reached, or failed."""

    __slots__ = ("_owner", "future", "required", "waiter_id")

    def __init__(self, owner: OffsetWaiters, required: int, future: asyncio.Future[None]) -> None:
        self._owner = owner
        self.required = required
        self.future = future
        self.waiter_id = next(_NEXT_ID)

    def discard(self) -> None:
        """Stops waiting (timeout or caller gone); frees the slot at once."""
        self._owner._forget(self)
        if not self.future.done():
            self.future.cancel()


class OffsetWaiters:
    """Waiters keyed by the offset they need; `advance(value)` resolves those <= value."""

    def __init__(self, kind: str, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"waiter limit must be >= 1, got {limit}")
        self.kind = kind
        self.limit = limit
        self._heap: list[tuple[int, int, Waiter]] = []
        self._live: dict[int, Waiter] = {}

    def __len__(self) -> int:
        return len(self._live)

    @property
    def full(self) -> bool:
        return len(self._live) >= self.limit

    def add(self, required: int, current: int) -> Waiter:
        """A waiter for `required`; already resolved when `current` >= `required`."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = Waiter(self, required, future)
        if current >= required:
            future.set_result(None)
            return waiter
        if len(self._live) >= self.limit:
            raise BrookError(
                "TOO_MANY_REQUESTS",
                f"{self.limit} {self.kind} requests are already waiting on this partition;"
                " back off and retry",
                {"limit": self.limit},
            )
        self._live[waiter.waiter_id] = waiter
        heapq.heappush(self._heap, (required, waiter.waiter_id, waiter))
        return waiter

    def advance(self, value: int) -> int:
        """Resolves every waiter whose required offset is <= value; returns how many."""
        resolved = 0
        while self._heap and self._heap[0][0] <= value:
            _, waiter_id, waiter = heapq.heappop(self._heap)
            if self._live.pop(waiter_id, None) is None:
                continue  # discarded earlier; its heap entry was left behind
            if not waiter.future.done():
                waiter.future.set_result(None)
                resolved += 1
        self._compact()
        return resolved

    def wake_all(self) -> None:
        """Resolves every waiter (their callers re-check state, e.g. after a role change)."""
        for waiter in self._drain():
            if not waiter.future.done():
                waiter.future.set_result(None)

    def fail_all(self, error: BaseException) -> None:
        """Fails every waiter with `error` (leadership lost, ISR too small)."""
        for waiter in self._drain():
            if not waiter.future.done():
                waiter.future.set_exception(error)
                # The caller may already be gone (timed out); do not warn about it.
                waiter.future.add_done_callback(_consume_exception)

    def _drain(self) -> list[Waiter]:
        waiters = list(self._live.values())
        self._live.clear()
        self._heap.clear()
        return waiters

    def _forget(self, waiter: Waiter) -> None:
        self._live.pop(waiter.waiter_id, None)
        self._compact()

    def _compact(self) -> None:
        # Discarded waiters leave heap entries behind; rebuild when they dominate, so the
        # heap stays within twice the live bound.
        if len(self._heap) > 2 * len(self._live) + 16:
            self._heap = [entry for entry in self._heap if entry[1] in self._live]
            heapq.heapify(self._heap)


def _consume_exception(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
