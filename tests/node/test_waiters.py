"""Unit tests of the bounded offset-keyed waiter sets behind acks=all and long-polls."""

from __future__ import annotations

import asyncio

import pytest

from brook.errors import BrookError
from brook.services.node.waiters import OffsetWaiters


async def test_advance_resolves_only_satisfied_waiters() -> None:
    """advance(v) resolves exactly the waiters needing <= v, in any insertion order."""
    waiters = OffsetWaiters("test", 10)
    late, early, middle = waiters.add(30, 0), waiters.add(10, 0), waiters.add(20, 0)
    assert waiters.advance(20) == 2
    assert early.future.done() and middle.future.done() and not late.future.done()
    assert len(waiters) == 1


async def test_already_satisfied_waiter_does_not_take_a_slot() -> None:
    """A waiter whose offset is already reached resolves at once, even when the set is full."""
    waiters = OffsetWaiters("test", 1)
    waiters.add(5, 0)
    done = waiters.add(3, 4)
    assert done.future.done()


async def test_bounded_and_discard_frees_the_slot() -> None:
    """The limit-th + 1 waiter is refused with TOO_MANY_REQUESTS; discard frees a slot."""
    waiters = OffsetWaiters("test", 2)
    first = waiters.add(1, 0)
    waiters.add(2, 0)
    with pytest.raises(BrookError) as caught:
        waiters.add(3, 0)
    assert caught.value.reason == "TOO_MANY_REQUESTS"
    first.discard()
    assert first.future.cancelled()
    waiters.add(3, 0)
    # Timed-out (discarded) waiters do not pile up in the heap.
    churn = OffsetWaiters("churn", 2)
    churn.add(1, 0)
    for _ in range(100):
        churn.add(9, 0).discard()
    assert len(churn) == 1 and len(churn._heap) <= 2 * 1 + 16


async def test_fail_all_and_wake_all() -> None:
    """fail_all fails every parked waiter; wake_all resolves them (callers re-check)."""
    waiters = OffsetWaiters("test", 10)
    parked = [waiters.add(i, 0) for i in range(1, 4)]
    waiters.fail_all(BrookError("NOT_LEADER", "moved"))
    for waiter in parked:
        with pytest.raises(BrookError):
            await asyncio.wait_for(waiter.future, 1)
    woken = waiters.add(9, 0)
    waiters.wake_all()
    await asyncio.wait_for(woken.future, 1)
    assert len(waiters) == 0


def test_produce_in_flight_per_connection_is_bounded() -> None:
    """A connection's produce slots are bounded (TOO_MANY_REQUESTS) and freed on exit."""
    from brook.services.node.config import NodeLimits
    from brook.services.node.storage_service import StorageService

    limits = NodeLimits(produce_inflight_per_connection_max=2)
    service = StorageService(object(), limits)  # type: ignore[arg-type]
    with service._connection_slot("peer-a"), service._connection_slot("peer-a"):
        with pytest.raises(BrookError) as caught, service._connection_slot("peer-a"):
            pass
        assert caught.value.reason == "TOO_MANY_REQUESTS"
        with service._connection_slot("peer-b"):
            pass
    assert service._inflight_by_connection == {}
