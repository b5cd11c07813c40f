"""Automatic balancing and decommissioning (issue 13): the pure decisions (balance.py) and
the driver's use of them (balance_driver.py) over a fake controller and cache."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from brook.services.coordinator import balance, balancer
from brook.services.coordinator.balance_driver import BalanceDriver
from brook.services.metadata.model import (
    NODE_STATE_DECOMMISSIONING,
    NodeInfo,
    NodeStateRecord,
    PartitionRecord,
    TopicRecord,
)
from brook.structs import TopicPartition


def nodes(*ids: int, racks: dict[int, str] | None = None) -> dict[int, NodeInfo]:
    return {n: NodeInfo(n, f"127.0.0.1:{9000 + n}", (racks or {}).get(n, "")) for n in ids}


def record(partition: int, replicas: tuple[int, ...], **kw: object) -> PartitionRecord:
    values: dict[str, object] = {"leader": replicas[0], "isr": replicas}
    values.update(kw)
    return PartitionRecord("t", partition, "id", replicas, **values)  # type: ignore[arg-type]


def six_on_three() -> list[PartitionRecord]:
    layout = [(1, 2), (2, 3), (3, 1), (1, 2), (2, 3), (3, 1)]
    return [record(i, r) for i, r in enumerate(layout)]


DECOM = {4: NodeStateRecord(4, NODE_STATE_DECOMMISSIONING)}


# -- pure decisions --------------------------------------------------------------------
def test_a_new_node_makes_a_pass_due_and_gets_its_share() -> None:
    records = six_on_three()
    assert not balance.needs_pass(nodes(1, 2, 3), {}, records, skew_threshold=1)
    assert balance.needs_pass(nodes(1, 2, 3, 4), {}, records, skew_threshold=1)
    plan = balance.plan_for(nodes(1, 2, 3, 4), {}, records)
    assert plan.after[4].replicas == 3  # 12 replicas over 4 nodes
    assert all(share.replicas == 3 for share in plan.after.values())


def test_a_joined_node_starts_balancing_whatever_the_threshold() -> None:
    records = six_on_three()
    assert balance.needs_pass(nodes(1, 2, 3, 4), {}, records, skew_threshold=100)
    # 3 partitions RF 1 on 3 nodes: a 4th holds nothing, but no node holds two.
    single = [record(i, (i + 1,)) for i in range(3)]
    assert not balance.needs_pass(nodes(1, 2, 3, 4), {}, single, skew_threshold=2)


def test_a_manual_move_within_the_threshold_is_left_alone() -> None:
    # The README's move: payments-0 [1,2] -> [3,1] leaves counts 2, 1, 3 (skew 2).
    records = [record(0, (3, 1)), record(1, (2, 3)), record(2, (3, 1))]
    assert not balance.needs_pass(nodes(1, 2, 3), {}, records, skew_threshold=2)
    assert balance.needs_pass(nodes(1, 2, 3), {}, records, skew_threshold=1)


def test_a_draining_node_is_emptied_and_then_drained() -> None:
    records = [record(6 + i, (4, 1 + i % 3)) for i in range(3)] + six_on_three()
    assert balance.needs_pass(nodes(1, 2, 3, 4), DECOM, records, skew_threshold=100)
    plan = balance.plan_for(nodes(1, 2, 3, 4), DECOM, records)
    assert all(4 not in m.new_replicas for m in plan.moves)
    assert {m.key.partition for m in plan.moves if 4 in m.old_replicas} == {6, 7, 8}
    statuses = {s.node_id: s.status for s in balance.node_statuses(nodes(1, 2, 3, 4), DECOM,
                                                                    records)}  # fmt: skip
    assert statuses[4] == balance.STATUS_DECOMMISSIONING
    moved = {m.key.partition: m.new_replicas for m in plan.moves}
    emptied = [record(r.partition, moved.get(r.partition, r.replicas)) for r in records]
    statuses = {s.node_id: s.status for s in balance.node_statuses(nodes(1, 2, 3, 4), DECOM,
                                                                    emptied)}  # fmt: skip
    assert statuses[4] == balance.STATUS_DRAINED
    assert not balance.needs_pass(nodes(1, 2, 3, 4), DECOM, emptied, skew_threshold=1)


def test_node_statuses_name_offline_and_dead_decommissioned_nodes() -> None:
    records = [record(0, (1, 5))]
    states = {6: NodeStateRecord(6, "decommissioning")}
    statuses = {
        s.node_id: (s.status, s.live, s.replicas, s.leaders)
        for s in balance.node_statuses(nodes(1), states, records)
    }
    assert statuses == {
        1: ("active", True, 1, 1),
        5: ("offline", False, 1, 0),
        6: ("drained", False, 0, 0),
    }


def test_an_offline_node_is_not_drained_and_its_partitions_stay() -> None:
    # Node 3 is restarting: its partitions are left alone, nothing moves onto it.
    records = six_on_three()
    views, partitions = balance.planner_input(nodes(1, 2), {}, records)
    assert {v.node_id for v in views} == {1, 2}
    assert [p.key.partition for p in partitions] == [0, 3]
    plan = balance.plan_for(nodes(1, 2), {}, records)
    assert all(3 not in m.new_replicas for m in plan.moves)


def test_a_dead_decommissioned_node_is_still_drained() -> None:
    records = [record(0, (1, 4)), record(1, (2, 3))]
    plan = balance.plan_for(nodes(1, 2, 3), DECOM, records)
    assert [m.key.partition for m in plan.moves if m.added] == [0]
    assert 4 not in plan.moves[0].new_replicas


def test_moves_to_start_respects_in_flight_and_skips_moving_partitions() -> None:
    records = {TopicPartition("t", r.partition): r for r in six_on_three()}
    plan = balance.plan_for(nodes(1, 2, 3, 4), {}, list(records.values()))
    copying = [m for m in plan.moves if m.added]
    assert len(copying) >= 2
    chosen = balance.moves_to_start(plan, records, {1, 2, 3, 4}, max_in_flight=1)
    assert len([m for m in chosen if m.added]) == 1
    # One partition already moving: it is skipped, and it uses up the one slot.
    first = copying[0].key
    records[first] = records[first].evolve(
        replicas=(*records[first].replicas, 4), adding_replicas=(4,)
    )
    chosen = balance.moves_to_start(plan, records, {1, 2, 3, 4}, max_in_flight=1)
    assert all(m.key != first for m in chosen) and not [m for m in chosen if m.added]
    # A move onto a node that went away is not started.
    chosen = balance.moves_to_start(plan, records, {1, 2, 3}, max_in_flight=10)
    assert all(4 not in m.added for m in chosen)


def test_rack_spread_is_kept_while_draining() -> None:
    racks = {1: "a", 2: "b", 3: "a", 4: "b", 5: "b"}
    records = [record(i, (4, 1 + 2 * (i % 2))) for i in range(4)]  # (4:b, 1|3:a)
    plan = balance.plan_for(nodes(1, 2, 3, 4, 5, racks=racks), DECOM, records)
    for move in plan.moves:
        assert len({racks[n] for n in move.new_replicas}) == 2
        assert 4 not in move.new_replicas


# -- the driver, over fakes ------------------------------------------------------------
@dataclass
class FakeCache:
    nodes: dict[int, NodeInfo]
    partitions: dict[tuple[str, int], PartitionRecord]
    node_states: dict[int, NodeStateRecord] = field(default_factory=dict)
    topics: dict[str, TopicRecord] = field(
        default_factory=lambda: {"t": TopicRecord("t", "id", 6, 2)}
    )
    listeners: list[Callable[[], None]] = field(default_factory=list)

    def add_listener(self, callback: Callable[[], None]) -> None:
        self.listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        self.listeners.remove(callback)


class FakeController:
    def __init__(self, cache: FakeCache) -> None:
        self.cache = cache
        self.background: list[object] = []
        self.commits: list[TopicPartition] = []
        self.preferred_requests = 0

    def add_background(self, loop: object) -> None:
        self.background.append(loop)

    def request_preferred_election(self) -> None:
        self.preferred_requests += 1

    async def commit(self, key: TopicPartition, decide, *, cause: str = "admin"):  # type: ignore[no-untyped-def]
        current = self.cache.partitions[(key.topic, key.partition)]
        new = decide(current)
        if new is not None:
            self.commits.append(key)
            self.cache.partitions[(key.topic, key.partition)] = new
        return new, new or current


def driver_over(cache: FakeCache, **kw: object) -> tuple[BalanceDriver, FakeController]:
    controller = FakeController(cache)
    return BalanceDriver(controller, **kw), controller  # type: ignore[arg-type]


def complete_moves(cache: FakeCache) -> None:
    """What the controller does once adding replicas are in sync."""
    for key, r in list(cache.partitions.items()):
        if r.adding_replicas:
            target = tuple(n for n in r.replicas if n not in r.removing_replicas)
            cache.partitions[key] = r.evolve(
                replicas=target, isr=target, leader=target[0],
                adding_replicas=(), removing_replicas=(),
            )  # fmt: skip


def replica_counts(cache: FakeCache) -> dict[int, int]:
    views = [balancer.PartitionView(TopicPartition(*k), r.replicas) for k, r in
             cache.partitions.items()]  # fmt: skip
    return {n: s.replicas for n, s in balancer.shares(views).items()}


async def test_the_driver_starts_bounded_moves_and_replans_as_they_finish() -> None:
    cache = FakeCache(nodes(1, 2, 3, 4), {("t", r.partition): r for r in six_on_three()})
    driver, controller = driver_over(cache, max_moves_in_flight=1)
    assert controller.background == [driver.run]
    assert await driver.run_pass() >= 1
    moving = [r for r in cache.partitions.values() if r.adding_replicas]
    assert len(moving) == 1 and moving[0].adding_replicas == (4,)
    assert await driver.run_pass() == 0  # the one slot is taken
    for _ in range(10):  # the controller completes each move; the driver plans the next
        complete_moves(cache)
        if not await driver.run_pass():
            break
    assert replica_counts(cache) == {1: 3, 2: 3, 3: 3, 4: 3}
    assert controller.preferred_requests >= 1


async def test_once_started_the_driver_runs_until_the_plan_is_empty() -> None:
    # Counts 4, 4, 2, 2 are within a threshold of 2: no pass starts...
    layout = [(1, 2), (1, 2), (1, 2), (1, 2), (3, 4), (3, 4)]
    cache = FakeCache(nodes(1, 2, 3, 4), {("t", i): record(i, r) for i, r in enumerate(layout)})
    driver, _ = driver_over(cache, skew_threshold=2, max_moves_in_flight=1)
    assert await driver.run_pass() == 0 and not driver.balancing
    # ...until one is started (a node joined, say): then it balances fully.
    driver.balancing = True
    for _ in range(10):
        complete_moves(cache)
        if not await driver.run_pass():
            break
    assert not driver.balancing
    assert replica_counts(cache) == {1: 3, 2: 3, 3: 3, 4: 3}


async def test_a_disabled_driver_runs_no_loop_but_still_plans() -> None:
    cache = FakeCache(nodes(1, 2, 3, 4), {("t", r.partition): r for r in six_on_three()})
    driver, controller = driver_over(cache, enabled=False)
    assert controller.background == []
    assert driver.plan().moves


async def test_the_driver_loop_wakes_on_cache_changes_and_stops_on_cancel() -> None:
    cache = FakeCache(nodes(1, 2, 3), {("t", r.partition): r for r in six_on_three()})
    driver, controller = driver_over(cache, interval_s=60.0)
    task = asyncio.create_task(driver.run())
    await asyncio.sleep(0)
    assert cache.listeners
    cache.nodes.update(nodes(4))
    for listener in cache.listeners:
        listener()
    for _ in range(200):
        if controller.commits:
            break
        await asyncio.sleep(0.01)
    assert controller.commits
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert not cache.listeners
