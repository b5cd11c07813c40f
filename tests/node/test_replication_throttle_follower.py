"""The replication throttle on the follower's side (fetcher.LeaderFetcher): only the
partitions this node is being added to are held back while the inbound budget is in
debt, and the fetcher is woken when it has refilled."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from brook.clock import ManualClock
from brook.services.metadata.model import PartitionRecord
from brook.services.node.config import NodeLimits
from brook.services.node.fetcher import LeaderFetcher
from brook.services.node.replication_throttle import ThrottleBudget
from brook.structs import TopicPartition

MOVING = TopicPartition("t", 0)
STEADY = TopicPartition("t", 1)


class Counter:
    def __init__(self) -> None:
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        self.value += amount


def replica(key: TopicPartition, adding: tuple[int, ...]) -> Any:
    record = PartitionRecord(key.topic, key.partition, "id", (1, 4), leader=1, isr=(1,),
                             adding_replicas=adding)  # fmt: skip
    return SimpleNamespace(key=key, partition=SimpleNamespace(record=record))


def fetcher_with(rate: int) -> tuple[LeaderFetcher, ThrottleBudget, Any]:
    clock = ManualClock()
    owner = SimpleNamespace(
        limits=NodeLimits(), clock=clock, node_id=4,
        manager=SimpleNamespace(replicas={}),  # the fetcher's own loop has nothing to do
        throttle=ThrottleBudget(clock, rate, burst_s=0.1), holds=Counter(),
        throttled_bytes=Counter(),
    )  # fmt: skip
    return LeaderFetcher(owner, 1), owner.throttle, owner  # type: ignore[arg-type]


READY = [replica(MOVING, (4,)), replica(STEADY, ())]


async def test_unthrottled_every_partition_is_fetched_and_none_counts() -> None:
    fetcher, _, _ = fetcher_with(0)
    try:
        ready, throttled = fetcher._apply_throttle(READY)
        assert [r.key for r in ready] == [MOVING, STEADY] and throttled == set()
    finally:
        await fetcher.close()


async def test_with_budget_the_moving_partition_is_fetched_as_throttled() -> None:
    fetcher, _, owner = fetcher_with(1_000_000)
    try:
        ready, throttled = fetcher._apply_throttle(READY)
        assert [r.key for r in ready] == [MOVING, STEADY] and throttled == {MOVING}
        assert owner.holds.value == 0
    finally:
        await fetcher.close()


async def test_in_debt_the_moving_partition_waits_and_the_fetcher_is_woken() -> None:
    fetcher, budget, owner = fetcher_with(1_000_000)
    try:
        budget.charge(110_000)  # 10 ms of debt at 1 MB/s
        ready, throttled = fetcher._apply_throttle(READY)
        assert [r.key for r in ready] == [STEADY] and throttled == set()
        assert owner.holds.value == 1
        # The refill timer (loop time, about the debt's 10 ms) wakes the fetcher, which
        # cancels a long-poll of the steady partition and plans again.
        assert await asyncio.wait_for(fetcher.wake.wait(), 5.0)
    finally:
        await fetcher.close()


async def test_a_plain_follower_partition_is_never_held() -> None:
    fetcher, budget, _ = fetcher_with(1_000_000)
    try:
        budget.charge(10_000_000)
        ready, throttled = fetcher._apply_throttle([replica(STEADY, ())])
        assert [r.key for r in ready] == [STEADY] and throttled == set()
    finally:
        await fetcher.close()
