"""LagMonitor (services/groups/lag_monitor.py) against fakes of the manager, the leaders'
ListOffsets and Fetch: lag in records and seconds, timestamps fetched once per committed
offset, the per-round budget with rotation, the bounded history, and what is exported."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from brook import codec
from brook.clock import Clock
from brook.errors import BrookError
from brook.services.common.metrics import PartitionSeriesBudget
from brook.services.groups.lag_monitor import LagMonitor, LagPoint, _Ring, record_timestamp
from brook.services.groups.log_offsets import EARLIEST, LATEST
from brook.services.groups.state import Group, OffsetRecord
from brook.services.metadata.model import NodeInfo, PartitionRecord
from brook.structs import TopicPartition
from brook.v1 import storage_pb2

NOW_MS = 1_800_000_000_000


class FixedClock(Clock):
    def __init__(self) -> None:
        self.now = NOW_MS

    def now_ms(self) -> int:
        return self.now

    def monotonic_s(self) -> float:
        return self.now / 1000

    async def sleep(self, seconds: float) -> None:  # pragma: no cover - unused
        self.now += int(seconds * 1000)


def batch_at(base_offset: int, timestamps: list[int]) -> Any:
    """A stored-looking RecordBatch of len(timestamps) records from base_offset."""
    records = codec.encode_records([b"v"] * len(timestamps), timestamps)
    batch = codec.build_batch(records, len(timestamps), min(timestamps), max(timestamps))
    batch.base_offset = base_offset
    return batch


@dataclass
class FakeStub:
    log: FakeLeaders

    async def Fetch(self, request: Any, **options: Any) -> Any:
        (wanted,) = request.partitions
        self.log.fetches.append((wanted.topic, wanted.partition, wanted.fetch_offset))
        answer = storage_pb2.FetchedPartition(topic=wanted.topic, partition=wanted.partition)
        # One batch of 10 records per 10 offsets; record o is stamped stamp(o).
        base = wanted.fetch_offset - wanted.fetch_offset % 10
        answer.batches.append(batch_at(base, [self.log.stamp(o) for o in range(base, base + 10)]))
        return storage_pb2.FetchResponse(partitions=[answer])


@dataclass
class FakeLeaders:
    """ListOffsets and Fetch of every partition's leader."""

    hw: dict[TopicPartition, int] = field(default_factory=dict)
    start: dict[TopicPartition, int] = field(default_factory=dict)
    fetches: list[tuple[str, int, int]] = field(default_factory=list)
    down: set[TopicPartition] = field(default_factory=set)

    @staticmethod
    def stamp(offset: int) -> int:
        return NOW_MS - 1_000_000 + offset * 1000  # record o is (1000 - o) s old

    async def query(self, partitions: Any, query: int, timestamp_ms: int = 0) -> dict[Any, Any]:
        answers: dict[Any, Any] = {}
        for tp in partitions:
            if tp in self.down:
                answers[tp] = BrookError("LEADER_NOT_AVAILABLE", "down")
            elif query == LATEST:
                answers[tp] = self.hw[tp]
            elif query == EARLIEST:
                answers[tp] = self.start.get(tp, 0)
        return answers

    def stub(self, address: str) -> FakeStub:
        return FakeStub(self)


class FakeCache:
    def __init__(self, partitions: list[TopicPartition]) -> None:
        self.partitions = {
            tp: PartitionRecord(tp.topic, tp.partition, "id", (1,), leader=1) for tp in partitions
        }
        self.nodes = {1: NodeInfo(1, "node-1:1")}


class FakeRegistry:
    def __init__(self) -> None:
        self.groups: dict[str, Group] = {}


class FakeManager:
    def __init__(self, leaders: FakeLeaders, partitions: list[TopicPartition]) -> None:
        self.active = True
        self.registry = FakeRegistry()
        self.log_offsets = leaders
        self.cache = FakeCache(partitions)


def group(group_id: str, committed: dict[TopicPartition, int]) -> Group:
    return Group(group_id, offsets={tp: OffsetRecord(offset) for tp, offset in committed.items()})


def monitor_for(
    count: int, **kwargs: Any
) -> tuple[LagMonitor, FakeManager, FakeLeaders, FixedClock, list[TopicPartition]]:
    tps = [TopicPartition("orders", p) for p in range(count)]
    leaders = FakeLeaders(hw={tp: 100 for tp in tps})
    manager = FakeManager(leaders, tps)
    clock = FixedClock()
    monitor = LagMonitor(manager, clock=clock, **kwargs)  # type: ignore[arg-type]
    return monitor, manager, leaders, clock, tps


def test_record_timestamp_reads_the_record_at_the_offset() -> None:
    batch = batch_at(40, [5000, 7000, 6000])
    assert [record_timestamp(batch, o) for o in (40, 41, 42)] == [5000, 7000, 6000]
    assert record_timestamp(batch_at(7, [123]), 7) == 123


def test_the_ring_keeps_the_last_points() -> None:
    ring = _Ring(3)
    for step in range(5):
        ring.add(LagPoint(step * 1000, step, None if step == 4 else float(step), -1, -1))
    assert ring.points(0) == [(2000, 2, 2.0), (3000, 3, 3.0), (4000, 4, None)]
    assert ring.points(3500) == [(4000, 4, None)]


async def test_lag_in_records_and_seconds_and_timestamps_fetched_once() -> None:
    monitor, manager, leaders, clock, tps = monitor_for(2)
    manager.registry.groups["billing"] = group("billing", {tps[0]: 25, tps[1]: 100})
    manager.registry.groups["fresh"] = Group("fresh", owners={tps[0]: "m-1"})
    leaders.start[tps[0]] = 10
    assert await monitor.sample_once() == 3
    billing = monitor.latest("billing")
    assert billing[tps[0]].lag_records == 75
    assert billing[tps[0]].lag_seconds == (NOW_MS - leaders.stamp(25)) / 1000  # 975 s
    assert (billing[tps[1]].lag_records, billing[tps[1]].lag_seconds) == (0, 0.0)
    fresh = monitor.latest("fresh")[tps[0]]  # nothing committed: from the log start
    assert (fresh.lag_records, fresh.committed_offset) == (90, -1)
    assert fresh.lag_seconds == (NOW_MS - leaders.stamp(10)) / 1000
    assert sorted(leaders.fetches) == [("orders", 0, 10), ("orders", 0, 25)]
    # A second round with the same committed offsets fetches nothing; time moves on.
    clock.now += 15_000
    await monitor.sample_once()
    assert len(leaders.fetches) == 2
    assert monitor.latest("billing")[tps[0]].lag_seconds == 975 + 15
    history = monitor.history("billing")[tps[0]]
    assert [p.lag_records for p in history] == [75, 75]
    assert history[-1].committed_offset == 25 and history[0].committed_offset == -1

    families = {f.name: f for f in await monitor.sample_metrics()}
    lag = {tuple(s.labels.values()): s.value for s in families["brook_group_lag_records"].samples}
    assert lag == {
        ("billing", "orders", "0"): 75,
        ("billing", "orders", "1"): 0,
        ("fresh", "orders", "0"): 90,
    }
    total = {s.labels["group"]: s.value for s in families["brook_group_total_lag_records"].samples}
    assert total == {"billing": 75, "fresh": 90}
    states = {s.labels["state"]: s.value for s in families["brook_group_manager_groups"].samples}
    assert states == {"empty": 2, "reconciling": 0, "stable": 0}


async def test_unreachable_leaders_are_left_out_and_deleted_groups_forgotten() -> None:
    monitor, manager, leaders, _, tps = monitor_for(2)
    manager.registry.groups["billing"] = group("billing", {tps[0]: 25, tps[1]: 30})
    leaders.down.add(tps[1])
    await monitor.sample_once()
    assert set(monitor.latest("billing")) == {tps[0]}
    del manager.registry.groups["billing"]
    await monitor.sample_once()
    assert monitor.latest("billing") == {} and monitor.history("billing") == {}


async def test_the_round_budget_rotates_over_the_groups() -> None:
    monitor, manager, _, _, tps = monitor_for(3, partitions_max=4)
    for name in ("a", "b", "c"):
        manager.registry.groups[name] = group(name, {tp: 50 for tp in tps})
    assert await monitor.sample_once() == 4  # a (3 partitions) and one of b
    assert await monitor.sample_once() == 4
    assert await monitor.sample_once() == 4
    measured = {g for g in ("a", "b", "c") if len(monitor.latest(g)) == 3}
    assert measured == {"a", "b", "c"}


async def test_history_is_bounded_and_a_standby_exports_nothing() -> None:
    monitor, manager, _, clock, tps = monitor_for(3, history_partitions_max=2, interval_s=1800.0)
    manager.registry.groups["g"] = group("g", {tp: 50 for tp in tps})
    for _ in range(5):
        await monitor.sample_once()
        clock.now += 1_800_000
    assert len(monitor._history) == 2
    assert all(len(points) <= 3 for points in monitor.history("g").values())  # one hour
    monitor.budget = PartitionSeriesBudget(limit=1)
    names = {f.name for f in await monitor.sample_metrics()}
    assert "brook_group_lag_records" not in names  # over the series budget
    assert "brook_group_total_lag_records" in names
    manager.active = False
    assert await monitor.sample_metrics() == []
    await monitor.sample_once()
    assert monitor.latest("g") == {}


async def test_a_group_larger_than_the_budget_does_not_starve_the_others() -> None:
    monitor, manager, _, _, tps = monitor_for(3, partitions_max=2)
    manager.registry.groups["a-big"] = group("a-big", {tp: 50 for tp in tps})
    for name in ("b", "c"):
        manager.registry.groups[name] = group(name, {tps[0]: 50})
    for _ in range(3):
        await monitor.sample_once()
    assert len(monitor.latest("a-big")) == 2  # its first partitions_max partitions
    assert len(monitor.latest("b")) == 1 and len(monitor.latest("c")) == 1
