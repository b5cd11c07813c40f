"""Tests of the node's data path over real logs: produce (acks none/leader/all), consumer
fetch long-polls, follower fetch and replicated appends, with a ManualClock-free event
loop and no network: `DataPath` is called directly, as the servicers do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from brook.clock import SYSTEM_CLOCK, ManualClock
from brook.errors import BrookError
from brook.services.node.acks import Acks
from brook.services.node.config import NodeLimits
from brook.services.node.data_path import Closing, DataPath
from brook.services.node.partition import PartitionSettings
from brook.services.node.replica import Replica, WaiterLimits
from brook.structs import TopicPartition
from brook.v1 import records_pb2, storage_pb2
from tests.node.helpers import decode_values, open_replica, raw_batch, record

KEY = TopicPartition("t", 0)


@dataclass
class Batches:
    topic: str = "t"
    partition: int = 0
    current_leader_epoch: int = -1
    batches: list[bytes] = field(default_factory=list)


class OneReplica:
    """The data path's view of the node: one replica."""

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.isr_checks = 0

    def lookup(self, key: TopicPartition) -> Replica:
        if key != KEY:
            raise BrookError("TOPIC_NOT_FOUND", f"{key}")
        return self.replica

    def maybe_change_isr(self, replica: Replica) -> None:
        self.isr_checks += 1


def leader(
    tmp_path: Path,
    *,
    replicas: tuple[int, ...] = (1,),
    min_isr: int = 1,
    limits: WaiterLimits | None = None,
) -> tuple[DataPath, Replica]:
    replica = open_replica(
        tmp_path,
        ManualClock(),
        settings=PartitionSettings(min_insync_replicas=min_isr),
        limits=limits,
    )
    replica.apply_record(record(leader=1, epoch=5, replicas=replicas), 10)
    path = DataPath(OneReplica(replica), NodeLimits(), SYSTEM_CLOCK, Closing())
    return path, replica


def produce(path: DataPath, acks: Acks, *values: bytes, timeout_ms: int = 5000):  # type: ignore[no-untyped-def]
    return path.produce(acks, timeout_ms, [Batches(batches=[raw_batch(list(values))])])


def follower_fetch(path: DataPath, offset: int, replica_id: int = 2, last_epoch: int = 5):  # type: ignore[no-untyped-def]
    wanted = storage_pb2.ReplicaFetchPartition(
        topic="t",
        partition=0,
        fetch_offset=offset,
        current_leader_epoch=5,
        last_fetched_epoch=last_epoch,
    )
    return path.replica_fetch(replica_id, [wanted], 1 << 20, 1, 0)


async def until(condition: Callable[[], bool]) -> None:
    """Lets other tasks run until `condition` holds (loop turns, not wall-clock time)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def fetch_request(offset: int) -> list[storage_pb2.FetchPartition]:
    return [
        storage_pb2.FetchPartition(
            topic="t", partition=0, fetch_offset=offset, current_leader_epoch=-1
        )
    ]


async def test_leader_stamps_offsets_and_epoch(tmp_path: Path) -> None:
    """Stored batches carry their offsets and the leader's epoch, and fetch returns them."""
    path, _ = leader(tmp_path)
    [first] = await produce(path, Acks.LEADER, b"a", b"b")
    [second] = await produce(path, Acks.LEADER, b"c")
    assert (first.base_offset, first.last_offset, second.base_offset) == (0, 1, 2)
    [read] = await path.fetch(fetch_request(1), 1 << 20, 1, 0)
    assert [decode_values(p) for p in read.batches] == [(0, [b"a", b"b"]), (2, [b"c"])]
    assert records_pb2.RecordBatch.FromString(read.batches[0]).partition_leader_epoch == 5


async def test_acks_all_completes_when_isr_has_it(tmp_path: Path) -> None:
    """An acks=all produce answers only once every ISR member fetched past it."""
    path, replica = leader(tmp_path, replicas=(1, 2, 3), min_isr=2)
    producing = asyncio.ensure_future(produce(path, Acks.ALL, b"a", b"b"))
    await until(lambda: len(replica.produce_waiters) >= 1)
    [read] = await follower_fetch(path, 0, last_epoch=-1)
    assert len(read.batches) == 1
    await follower_fetch(path, 2, replica_id=2)
    await asyncio.sleep(0)
    assert not producing.done()  # follower 3 is still missing it
    await follower_fetch(path, 2, replica_id=3)
    [outcome] = await asyncio.wait_for(producing, 1.0)
    assert outcome.error is None and outcome.last_offset == 1


async def test_acks_all_times_out_and_frees_its_slot(tmp_path: Path) -> None:
    path, replica = leader(tmp_path, replicas=(1, 2), min_isr=2)
    [outcome] = await produce(path, Acks.ALL, b"a", timeout_ms=10)
    assert outcome.error is not None and outcome.error.reason == "REQUEST_TIMED_OUT"
    assert len(replica.produce_waiters) == 0


async def test_acks_all_waiters_are_bounded(tmp_path: Path) -> None:
    """The produce waiter set is bounded: the next acks=all is refused before appending."""
    path, replica = leader(tmp_path, replicas=(1, 2), min_isr=2, limits=WaiterLimits(produce=2))
    waiting = [asyncio.ensure_future(produce(path, Acks.ALL, b"x")) for _ in range(2)]
    await until(lambda: len(replica.produce_waiters) >= 2)
    end = replica.log.log_end_offset
    [outcome] = await produce(path, Acks.ALL, b"y")
    assert outcome.error is not None and outcome.error.reason == "TOO_MANY_REQUESTS"
    assert replica.log.log_end_offset == end
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)


async def test_leadership_change_fails_waiting_produces(tmp_path: Path) -> None:
    path, replica = leader(tmp_path, replicas=(1, 2), min_isr=2)
    producing = asyncio.ensure_future(produce(path, Acks.ALL, b"a"))
    await until(lambda: len(replica.produce_waiters) >= 1)
    replica.apply_record(record(leader=2, epoch=6, replicas=(1, 2)), 11)
    [outcome] = await asyncio.wait_for(producing, 1.0)
    assert outcome.error is not None and outcome.error.reason == "NOT_LEADER"
    assert outcome.error.metadata["leader_id"] == "2"


async def test_fetch_long_poll_wakes_on_hw(tmp_path: Path) -> None:
    """A consumer long-poll at the HW answers when the HW passes its offset, not on the
    (uncommitted) append."""
    path, replica = leader(tmp_path, replicas=(1, 2))
    polling = asyncio.ensure_future(path.fetch(fetch_request(0), 1 << 20, 1, 20_000))
    await until(lambda: len(replica.fetch_waiters) >= 1)
    await produce(path, Acks.LEADER, b"a")
    await asyncio.sleep(0)
    assert not polling.done()  # appended, not yet committed
    await follower_fetch(path, 1, last_epoch=5)
    [read] = await asyncio.wait_for(polling, 1.0)
    assert [decode_values(p) for p in read.batches] == [(0, [b"a"])]


async def test_acks_none_answers_before_the_append(tmp_path: Path) -> None:
    """acks=none: the answer comes once the request is validated; the append follows in
    the background, in order; a bad batch is refused up front, a failed append logged."""
    path, replica = leader(tmp_path)
    path.start()
    try:
        outcomes = await produce(path, Acks.NONE, b"a")
        assert outcomes[0].error is None and outcomes[0].base_offset == -1
        await produce(path, Acks.NONE, b"b")
        assert path._queued is not None
        await asyncio.wait_for(path._queued.join(), 5.0)
        [read] = await path.fetch(fetch_request(0), 1 << 20, 1, 0)
        assert [decode_values(p) for p in read.batches] == [(0, [b"a"]), (1, [b"b"])]
        [bad] = await path.produce(Acks.NONE, 0, [Batches(batches=[b"\xff"])])
        assert bad.error is not None and bad.error.reason == "CORRUPT_BATCH"
    finally:
        await path.close()
        replica.log.plog.close()


async def test_replicated_batches_append_verbatim(tmp_path: Path) -> None:
    """A follower appends the leader's stored payloads at their offsets and takes its HW."""
    path, _ = leader(tmp_path / "l", replicas=(1, 2))
    await produce(path, Acks.LEADER, b"a", b"b")
    await produce(path, Acks.LEADER, b"c")
    [read] = await follower_fetch(path, 0, last_epoch=-1)
    follower = open_replica(tmp_path / "f", ManualClock(), node_id=2)
    follower.apply_record(record(leader=1, epoch=5, replicas=(1, 2)), 10)
    assert read.plan is not None
    appended = await follower.append_replicated(read.batches, 3, follower.partition.generation)
    assert appended == 2
    assert follower.log.log_end_offset == 3 and follower.partition.high_watermark == 3
    assert follower.log.epoch_entries() == [(5, 0)]
    # A re-sent response appends nothing.
    assert await follower.append_replicated(read.batches, 3, follower.partition.generation) == 0


async def test_list_offsets_by_timestamp(tmp_path: Path) -> None:
    path, _ = leader(tmp_path)
    await path.produce(Acks.LEADER, 0, [Batches(batches=[raw_batch([b"a"], timestamp_ms=1000)])])
    await path.produce(
        Acks.LEADER, 0, [Batches(batches=[raw_batch([b"b", b"c"], timestamp_ms=2000)])]
    )
    assert await path.list_offset(KEY, "timestamp", 1500, 5) == (1, 2000, 5)
    assert await path.list_offset(KEY, "timestamp", 500, 5) == (0, 1000, 5)
    assert await path.list_offset(KEY, "timestamp", 5000, 5) == (3, -1, 5)
    assert await path.list_offset(KEY, "latest", 0, -1) == (3, -1, 5)


@pytest.mark.parametrize("acks", [Acks.LEADER, Acks.ALL])
async def test_fenced_epoch_appends_nothing(tmp_path: Path, acks: Acks) -> None:
    path, replica = leader(tmp_path)
    [outcome] = await path.produce(
        acks, 0, [Batches(current_leader_epoch=4, batches=[raw_batch([b"x"])])]
    )
    assert outcome.error is not None and outcome.error.reason == "FENCED_LEADER_EPOCH"
    assert replica.log.log_end_offset == 0
