"""The replication throttle on the leader's side (ReplicaService.replica_fetch): only the
partitions the asking node is being added to are capped, charged and held back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from unittest import mock

from brook.clock import ManualClock
from brook.errors import BrookError
from brook.services.metadata.model import PartitionRecord
from brook.services.node.config import NodeLimits
from brook.services.node.data_path import FollowerRead
from brook.services.node.partition import ReplicaReadPlan
from brook.services.node.replica_service import ReplicaService
from brook.services.node.replication_throttle import ThrottleBudget
from brook.services.node.wire import parse_replica_fetch_response
from brook.structs import TopicPartition
from brook.v1 import storage_pb2

MOVING = TopicPartition("t", 0)  # node 5 is being added to it
STEADY = TopicPartition("t", 1)  # node 5 is a plain follower of it
BATCH = b"x" * 50_000


@dataclass
class FakeDataPath:
    clock: ManualClock
    asked: list[list[tuple[TopicPartition, int]]] = field(default_factory=list)
    waits: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        records = {
            MOVING: PartitionRecord("t", 0, "id", (1, 5), leader=1, isr=(1,),
                                    adding_replicas=(5,)),
            STEADY: PartitionRecord("t", 1, "id", (1, 5), leader=1, isr=(1, 5)),
        }  # fmt: skip

        def lookup(key: TopicPartition) -> Any:
            if key not in records:
                raise BrookError("PARTITION_NOT_FOUND", str(key))
            return SimpleNamespace(partition=SimpleNamespace(record=records[key]))

        self.replicas = SimpleNamespace(lookup=lookup)

    async def replica_fetch(
        self, replica_id: int, partitions: Sequence[storage_pb2.ReplicaFetchPartition],
        max_bytes: int, min_bytes: int, max_wait_ms: int,
    ) -> list[FollowerRead]:  # fmt: skip
        self.asked.append([(TopicPartition.of(p), p.partition_max_bytes) for p in partitions])
        self.waits.append(max_wait_ms)
        return [FollowerRead(TopicPartition.of(p), ReplicaReadPlan(0, 1, 0, 1), [BATCH])
                for p in partitions]  # fmt: skip


def request(replica_id: int = 5, max_wait_ms: int = 500) -> storage_pb2.ReplicaFetchRequest:
    return storage_pb2.ReplicaFetchRequest(
        replica_id=replica_id, max_wait_ms=max_wait_ms, min_bytes=1, max_bytes=1 << 20,
        partitions=[
            storage_pb2.ReplicaFetchPartition(topic=k.topic, partition=k.partition,
                                              current_leader_epoch=0, last_fetched_epoch=-1,
                                              partition_max_bytes=1 << 20)
            for k in (MOVING, STEADY)
        ],
    )  # fmt: skip


def service(rate: int) -> tuple[ReplicaService, FakeDataPath, ThrottleBudget]:
    clock = ManualClock()
    data_path = FakeDataPath(clock)
    budget = ThrottleBudget(clock, rate, burst_s=0.1)
    return ReplicaService(data_path, NodeLimits(), throttle=budget), data_path, budget  # type: ignore[arg-type]


async def fetch(svc: ReplicaService, req: storage_pb2.ReplicaFetchRequest) -> set[TopicPartition]:
    answer = await svc.replica_fetch(req, mock.MagicMock())
    return {TopicPartition(p.topic, p.partition) for p in parse_replica_fetch_response(answer)}


async def test_unthrottled_nothing_is_capped_or_held() -> None:
    svc, data_path, budget = service(0)
    assert await fetch(svc, request()) == {MOVING, STEADY}
    assert data_path.asked[-1] == [(MOVING, 1 << 20), (STEADY, 1 << 20)]
    assert budget.charged_bytes == 0


async def test_the_moving_partition_is_capped_and_charged_the_steady_one_is_not() -> None:
    svc, data_path, budget = service(1_000_000)
    assert await fetch(svc, request()) == {MOVING, STEADY}
    assert data_path.asked[-1] == [(MOVING, 100_000), (STEADY, 1 << 20)]
    assert budget.charged_bytes == len(BATCH)  # the moving partition's bytes only


async def test_in_debt_the_moving_partition_is_left_out_and_the_wait_shortened() -> None:
    svc, data_path, budget = service(1_000_000)
    budget.charge(1_000_000)  # 0.9 s of debt
    assert await fetch(svc, request(max_wait_ms=5000)) == {STEADY}
    assert data_path.asked[-1] == [(STEADY, 1 << 20)]
    assert data_path.waits[-1] <= 901  # woken when the budget has refilled
    data_path.clock.advance(1000)
    assert await fetch(svc, request()) == {MOVING, STEADY}


async def test_a_plain_follower_is_never_throttled_even_in_debt() -> None:
    svc, data_path, budget = service(1_000_000)
    budget.charge(10_000_000)
    assert await fetch(svc, request(replica_id=1)) == {MOVING, STEADY}
    assert data_path.asked[-1] == [(MOVING, 1 << 20), (STEADY, 1 << 20)]


async def test_a_request_of_moving_partitions_only_waits_within_its_long_poll() -> None:
    svc, data_path, budget = service(1_000_000)
    budget.charge(1_000_000)
    req = request(max_wait_ms=0)
    del req.partitions[1]
    assert await fetch(svc, req) == set()  # still in debt after its (zero) wait: held
    assert data_path.asked == []
