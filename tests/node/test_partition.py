"""Unit tests of the storage node's partition core: epochs, HW, ISR, acks=all, divergence.

The core runs over a real PartitionLog in a temp dir (through LogHandle) with a fake
monotonic clock and a switchable leadership flag; no network, no etcd.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from brook.errors import BrookError
from brook.services.node.partition import (
    Change,
    Partition,
    PartitionSettings,
    Role,
    WaiterLimits,
    truncation_target,
)
from tests.node.helpers import FakeClock, decode_values, open_partition, raw_batch, record

LAG_MS = 1000


def leader_of(tmp_path: Path, clock: FakeClock, *, replicas: tuple[int, ...] = (1, 2, 3),
              isr: tuple[int, ...] | None = None, min_isr: int = 1,
              leadership: list[bool] | None = None, limits: WaiterLimits | None = None,
              ) -> Partition:
    partition = open_partition(
        tmp_path, clock,
        settings=PartitionSettings(min_insync_replicas=min_isr, replica_lag_max_ms=LAG_MS),
        leadership=leadership, limits=limits,
    )
    change = partition.apply_record(record(leader=1, epoch=5, replicas=replicas, isr=isr), 10)
    assert change is Change.BECAME_LEADER
    return partition


def append(partition: Partition, *values: bytes, acks_all: bool = False) -> int:
    result = partition.append_raw_as_leader([raw_batch(list(values))], 5, acks_all)
    return result.last_offset


def expect_error(reason: str, action: object) -> BrookError:
    with pytest.raises(BrookError) as caught:
        action()  # type: ignore[operator]
    assert caught.value.reason == reason, caught.value
    return caught.value


# -- epochs and roles ----------------------------------------------------------------------
def test_epoch_checks(tmp_path: Path) -> None:
    """A caller epoch below ours is FENCED, above is UNKNOWN, -1 and equal pass."""
    partition = leader_of(tmp_path, FakeClock(), replicas=(1,))
    partition.check_epoch(-1)
    partition.check_epoch(5)
    expect_error("FENCED_LEADER_EPOCH", lambda: partition.check_epoch(4))
    expect_error("UNKNOWN_LEADER_EPOCH", lambda: partition.check_epoch(6))
    # The epoch check applies to produce too, before anything is appended.
    expect_error("FENCED_LEADER_EPOCH",
                 lambda: partition.append_raw_as_leader([raw_batch([b"x"])], 4, False))
    assert partition.log.log_end_offset == 0


def test_single_replica_leader_stamps_and_commits_at_once(tmp_path: Path) -> None:
    """With ISR = {leader}, an append is committed at once; batches carry offsets and epoch."""
    partition = leader_of(tmp_path, FakeClock(), replicas=(1,))
    assert append(partition, b"a", b"b") == 1
    assert append(partition, b"c") == 2
    assert partition.high_watermark == 3
    read = partition.read_committed(1, -1, 1 << 20)
    assert [decode_values(p) for p in read.batches] == [(0, [b"a", b"b"]), (2, [b"c"])]
    from brook.v1 import records_pb2

    assert records_pb2.RecordBatch.FromString(read.batches[0]).partition_leader_epoch == 5


def test_follower_rejects_produce_with_leader_details(tmp_path: Path) -> None:
    """A follower answers NOT_LEADER naming the leader's id and address; its log is unchanged."""
    partition = open_partition(tmp_path, FakeClock())
    assert partition.apply_record(record(leader=2, epoch=3, replicas=(1, 2)), 7) is (
        Change.BECAME_FOLLOWER
    )
    error = expect_error(
        "NOT_LEADER", lambda: partition.append_raw_as_leader([raw_batch([b"x"])], -1, False)
    )
    assert error.metadata["leader_id"] == "2"
    assert error.metadata["leader_address"] == "127.0.0.1:9002"
    assert error.metadata["leader_epoch"] == "3"
    assert partition.log.log_end_offset == 0
    expect_error("NOT_LEADER", lambda: partition.read_committed(0, 3, 100))


def test_records_apply_in_revision_order(tmp_path: Path) -> None:
    """An older etcd revision is ignored; a newer epoch switches the role."""
    partition = open_partition(tmp_path, FakeClock())
    partition.apply_record(record(leader=1, epoch=2, replicas=(1, 2)), 10)
    assert partition.apply_record(record(leader=2, epoch=1, replicas=(1, 2)), 9) is Change.NOTHING
    assert partition.role is Role.LEADER
    assert partition.apply_record(record(leader=2, epoch=3, replicas=(1, 2)), 11) is (
        Change.BECAME_FOLLOWER
    )
    assert partition.needs_truncation
    assert partition.apply_record(record(leader=2, epoch=3, replicas=(2, 3)), 12) is Change.STOPPED
    assert partition.role is Role.NONE


# -- high watermark --------------------------------------------------------------------------
def test_hw_is_min_leo_over_isr(tmp_path: Path) -> None:
    """The HW waits for every ISR member; a follower outside the ISR does not hold it back."""
    partition = leader_of(tmp_path, FakeClock(), replicas=(1, 2, 3), isr=(1, 2))
    append(partition, b"a")
    append(partition, b"b")
    assert partition.high_watermark == 0  # follower 2 has not fetched yet
    partition.read_for_follower(2, 1, 5, 5, 1 << 20)
    assert partition.high_watermark == 1
    partition.read_for_follower(3, 0, 5, -1, 1 << 20)  # not in the ISR: no effect
    partition.read_for_follower(2, 2, 5, 5, 1 << 20)
    assert partition.high_watermark == 2
    # The HW never goes back, even if a follower reports less (after a restart).
    partition.read_for_follower(2, 1, 5, 5, 1 << 20)
    assert partition.high_watermark == 2


def test_consumer_reads_stop_at_hw(tmp_path: Path) -> None:
    """Fetch returns only committed batches; past the log end is OFFSET_OUT_OF_RANGE."""
    partition = leader_of(tmp_path, FakeClock(), replicas=(1, 2), isr=(1, 2))
    append(partition, b"a")
    append(partition, b"b")
    partition.read_for_follower(2, 1, 5, 5, 1 << 20)
    read = partition.read_committed(0, 5, 1 << 20)
    assert [decode_values(p)[0] for p in read.batches] == [0]
    assert read.high_watermark == 1
    assert partition.read_committed(1, 5, 1 << 20).batches == []
    error = expect_error("OFFSET_OUT_OF_RANGE", lambda: partition.read_committed(3, 5, 100))
    assert error.metadata["log_end_offset"] == "2"
    assert partition.list_offset("latest", 0, -1) == (1, -1)
    assert partition.list_offset("earliest", 0, -1) == (0, -1)


def test_list_offsets_by_timestamp(tmp_path: Path) -> None:
    """A timestamp query finds the first committed batch at or after the time, else the HW."""
    partition = leader_of(tmp_path, FakeClock(), replicas=(1,))
    partition.append_raw_as_leader([raw_batch([b"a"], timestamp_ms=1000)], 5, False)
    partition.append_raw_as_leader([raw_batch([b"b", b"c"], timestamp_ms=2000)], 5, False)
    assert partition.list_offset("timestamp", 1500, 5) == (1, 2000)
    assert partition.list_offset("timestamp", 500, 5) == (0, 1000)
    assert partition.list_offset("timestamp", 5000, 5) == (3, -1)


# -- acks=all -------------------------------------------------------------------------------
async def test_acks_all_completes_when_isr_has_it(tmp_path: Path) -> None:
    """An acks=all waiter resolves only once every ISR member fetched past its last offset."""
    partition = leader_of(tmp_path, FakeClock(), replicas=(1, 2, 3), min_isr=2)
    last = append(partition, b"a", b"b", acks_all=True)
    waiter = asyncio.create_task(partition.wait_for_commit(last, 5.0))
    partition.read_for_follower(2, 2, 5, 5, 1 << 20)
    await asyncio.sleep(0)
    assert not waiter.done()  # follower 3 is still missing it
    partition.read_for_follower(3, 2, 5, 5, 1 << 20)
    await asyncio.wait_for(waiter, 1.0)


async def test_acks_all_refused_before_append_when_isr_too_small(tmp_path: Path) -> None:
    """ISR below min_insync_replicas: NOT_ENOUGH_REPLICAS and nothing appended."""
    partition = leader_of(tmp_path, FakeClock(), replicas=(1, 2, 3), isr=(1,), min_isr=2)
    expect_error("NOT_ENOUGH_REPLICAS", lambda: append(partition, b"a", acks_all=True))
    assert partition.log.log_end_offset == 0
    append(partition, b"a", acks_all=False)  # acks=leader does not need the ISR
    assert partition.log.log_end_offset == 1


async def test_acks_all_fails_when_isr_shrinks_while_waiting(tmp_path: Path) -> None:
    """A committed ISR shrink below the minimum fails parked waiters AFTER_APPEND."""
    partition = leader_of(tmp_path, FakeClock(), replicas=(1, 2, 3), min_isr=2)
    last = append(partition, b"a", acks_all=True)
    waiter = asyncio.create_task(partition.wait_for_commit(last, 5.0))
    await asyncio.sleep(0)
    partition.apply_record(record(leader=1, epoch=5, replicas=(1, 2, 3), isr=(1,)), 11)
    with pytest.raises(BrookError) as caught:
        await asyncio.wait_for(waiter, 1.0)
    assert caught.value.reason == "NOT_ENOUGH_REPLICAS_AFTER_APPEND"


async def test_acks_all_times_out(tmp_path: Path) -> None:
    """Nobody replicates: the waiter fails REQUEST_TIMED_OUT and frees its slot."""
    partition = leader_of(tmp_path, FakeClock(), replicas=(1, 2), min_isr=2)
    last = append(partition, b"a", acks_all=True)
    with pytest.raises(BrookError) as caught:
        await partition.wait_for_commit(last, 0.01)
    assert caught.value.reason == "REQUEST_TIMED_OUT"
    assert len(partition._produce_waiters) == 0


async def test_acks_all_waiters_are_bounded(tmp_path: Path) -> None:
    """The produce waiter set is bounded: the next acks=all is refused before appending."""
    partition = leader_of(tmp_path, FakeClock(), replicas=(1, 2), min_isr=2,
                          limits=WaiterLimits(produce=2))
    waiters = [asyncio.create_task(partition.wait_for_commit(append(partition, b"x",
                                                                    acks_all=True), 5.0))
               for _ in range(2)]
    await asyncio.sleep(0)
    end = partition.log.log_end_offset
    expect_error("TOO_MANY_REQUESTS", lambda: append(partition, b"y", acks_all=True))
    assert partition.log.log_end_offset == end
    for task in waiters:
        task.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)


async def test_leadership_change_fails_waiters(tmp_path: Path) -> None:
    """Becoming follower fails parked acks=all produces with NOT_LEADER."""
    partition = leader_of(tmp_path, FakeClock(), replicas=(1, 2), min_isr=2)
    last = append(partition, b"a", acks_all=True)
    waiter = asyncio.create_task(partition.wait_for_commit(last, 5.0))
    await asyncio.sleep(0)
    partition.apply_record(record(leader=2, epoch=6, replicas=(1, 2)), 11)
    with pytest.raises(BrookError) as caught:
        await asyncio.wait_for(waiter, 1.0)
    assert caught.value.reason == "NOT_LEADER"
    assert caught.value.metadata["leader_id"] == "2"


async def test_fenced_leader_acknowledges_nothing(tmp_path: Path) -> None:
    """Lease lost: parked waiters fail, the HW does not move on a (stale) follower fetch,
    and new produces are refused, even though etcd still names us leader."""
    leadership = [True]
    partition = leader_of(tmp_path, FakeClock(), replicas=(1, 2), min_isr=2,
                          leadership=leadership)
    last = append(partition, b"a", acks_all=True)
    waiter = asyncio.create_task(partition.wait_for_commit(last, 5.0))
    await asyncio.sleep(0)
    # The process was paused past its lease: the lease is no longer valid when it wakes,
    # before the lease watcher has even run. A stale fetch must not advance the HW.
    leadership[0] = False
    with pytest.raises(BrookError):
        partition.read_for_follower(2, 1, 5, 5, 1 << 20)
    assert partition.high_watermark == 0
    assert not waiter.done()
    partition.fence()
    with pytest.raises(BrookError) as caught:
        await asyncio.wait_for(waiter, 1.0)
    assert caught.value.reason == "NOT_LEADER"
    assert caught.value.metadata["leader_id"] == "-1"
    expect_error("NOT_LEADER", lambda: append(partition, b"b"))


async def test_fetch_waiter_wakes_on_hw(tmp_path: Path) -> None:
    """A consumer long-poll at the HW wakes when the HW passes its offset."""
    partition = leader_of(tmp_path, FakeClock(), replicas=(1, 2))
    waiter = partition.fetch_waiter(0)
    append(partition, b"a")
    assert not waiter.future.done()  # appended, not yet committed
    partition.read_for_follower(2, 1, 5, 5, 1 << 20)
    await asyncio.wait_for(waiter.future, 1.0)


# -- ISR shrink and expand ---------------------------------------------------------------------
def test_isr_shrinks_after_lag_and_expands_when_caught_up(tmp_path: Path) -> None:
    """A follower not caught up for replica_lag_max_ms is proposed for removal; when it is
    back at the HW it is proposed for addition. The HW counts a pending member."""
    clock = FakeClock()
    partition = leader_of(tmp_path, clock, replicas=(1, 2, 3))
    append(partition, b"a")
    partition.read_for_follower(2, 1, 5, 5, 1 << 20)
    partition.read_for_follower(3, 1, 5, 5, 1 << 20)
    assert partition.isr_change_wanted() is None
    clock.advance(LAG_MS // 2)
    append(partition, b"b")
    partition.read_for_follower(2, 2, 5, 5, 1 << 20)  # 2 keeps up; 3 is silent
    clock.advance(LAG_MS // 2)
    assert partition.isr_change_wanted() is None  # 3 caught up exactly LAG_MS ago
    clock.advance(1)
    proposal = partition.isr_change_wanted()
    assert proposal is not None and proposal.isr == (1, 2) and proposal.removed == (3,)
    partition.begin_isr_change(proposal)
    assert partition.isr_change_wanted() is None  # one change in flight at a time
    partition.finish_isr_change(proposal)
    partition.apply_record(proposal.base_record.evolve(isr=proposal.isr), 11)
    assert partition.isr == (1, 2)
    assert partition.high_watermark == 2
    append(partition, b"c")
    partition.read_for_follower(2, 3, 5, 5, 1 << 20)
    assert partition.high_watermark == 3  # 3 no longer holds it back
    # 3 comes back and fetches up to the HW: proposed for addition.
    partition.read_for_follower(3, 3, 5, 5, 1 << 20)
    proposal = partition.isr_change_wanted()
    assert proposal is not None and proposal.isr == (1, 2, 3) and proposal.added == (3,)
    partition.begin_isr_change(proposal)
    # While the expansion is pending, the HW counts 3 too.
    append(partition, b"d")
    partition.read_for_follower(2, 4, 5, 5, 1 << 20)
    assert partition.high_watermark == 3
    partition.read_for_follower(3, 4, 5, 5, 1 << 20)
    assert partition.high_watermark == 4


def test_busy_follower_counts_as_caught_up_at_its_previous_fetch(tmp_path: Path) -> None:
    """A follower that always fetches what the leader had at its previous fetch stays in
    the ISR even though the leader keeps appending between its fetches."""
    clock = FakeClock()
    partition = leader_of(tmp_path, clock, replicas=(1, 2))
    for step in range(10):
        append(partition, b"x")
        # The follower asks for everything the leader had at its previous fetch.
        partition.read_for_follower(2, step, 5, 5 if step else -1, 1 << 20)
        clock.advance(LAG_MS // 3)
    assert partition.isr_change_wanted() is None


def test_follower_joins_only_after_reaching_current_epoch(tmp_path: Path) -> None:
    """An out-of-ISR follower at the HW but below the leader epoch start is not added."""
    partition = open_partition(tmp_path, FakeClock(),
                               settings=PartitionSettings(replica_lag_max_ms=LAG_MS))
    partition.apply_record(record(leader=1, epoch=4, replicas=(1,)), 5)
    append_epoch = partition.append_raw_as_leader
    append_epoch([raw_batch([b"a", b"b"])], 4, False)
    partition.apply_record(record(leader=1, epoch=5, replicas=(1, 2), isr=(1,)), 6)
    assert partition.leader_epoch_start_offset == 2
    partition.read_for_follower(2, 0, 5, -1, 1 << 20)
    assert partition.isr_change_wanted() is None
    partition.read_for_follower(2, 2, 5, 4, 1 << 20)
    proposal = partition.isr_change_wanted()
    assert proposal is not None and proposal.added == (2,)


# -- divergence and truncation ------------------------------------------------------------------
def follower_with_epochs(tmp_path: Path, name: str, runs: list[tuple[int, int]]) -> Partition:
    """A replica whose log holds `count` single-record batches per (epoch, count) run."""
    partition = open_partition(tmp_path / name, FakeClock())
    for epoch, count in runs:
        partition.apply_record(record(leader=1, epoch=epoch, replicas=(1, 2)),
                               partition.record_revision + 1)
        for _ in range(count):
            partition.append_raw_as_leader([raw_batch([b"x"])], epoch, False)
    return partition


def test_truncation_target_rules(tmp_path: Path) -> None:
    """KIP-279: agree up to the smaller end of a shared epoch; drop epochs the leader lacks."""
    follower = follower_with_epochs(tmp_path, "f", [(1, 3), (2, 4), (4, 2)])  # 0..3, 3..7, 7..9
    # Leader knows epoch 4 ending at 8: keep 0..8.
    assert truncation_target(4, 8, follower.log) == 8
    # Leader's floor of our epoch 4 is 3 (it never had 4): drop to our end of 3, i.e. the
    # start of 4 (7)... we do not have epoch 3, so our floor of 3 is 2, which ends at 7.
    assert truncation_target(3, 7, follower.log) == 7
    # Leader's floor is 2 ending at 5: our 2 ends at 7: keep 0..5.
    assert truncation_target(2, 5, follower.log) == 5
    # Leader knows nothing that old: keep nothing from our first epoch on... capped by its end.
    assert truncation_target(0, 2, follower.log) == 0
    # Undefined epoch: truncate to the leader's end offset (if below ours).
    assert truncation_target(-1, 4, follower.log) == 4
    assert truncation_target(-1, -1, follower.log) == 9


def test_leader_reports_divergence_and_follower_converges(tmp_path: Path) -> None:
    """A follower with an uncommitted tail from an old epoch gets diverging_epoch and,
    after truncating, fetches the leader's batches for the same offsets."""
    leader = follower_with_epochs(tmp_path, "l", [(1, 3), (3, 2)])  # 0..3 e1, 3..5 e3
    follower = follower_with_epochs(tmp_path, "f", [(1, 3), (2, 3)])  # 0..3 e1, 3..6 e2
    leader.apply_record(record(leader=1, epoch=3, replicas=(1, 2)), 100)
    follower.node_id = 2
    follower.apply_record(record(leader=1, epoch=3, replicas=(1, 2)), 100)
    assert follower.role is Role.FOLLOWER
    offset, last_epoch = follower.fetch_position()
    assert (offset, last_epoch) == (6, 2)
    read = leader.read_for_follower(2, offset, 3, last_epoch, 1 << 20)
    assert read.diverging == (1, 3) and read.batches == []
    follower.truncate_to(truncation_target(*read.diverging, follower.log))
    assert follower.log.log_end_offset == 3
    offset, last_epoch = follower.fetch_position()
    read = leader.read_for_follower(2, offset, 3, last_epoch, 1 << 20)
    assert read.diverging is None and len(read.batches) == 2
    assert follower.append_as_follower(read.batches, read.high_watermark) == 2
    assert follower.log.log_end_offset == 5
    assert follower.log.epoch_entries() == [(1, 0), (3, 3)]


def test_empty_follower_rebuilds_from_leader_log_start(tmp_path: Path) -> None:
    """An empty replica asking below the leader's log start gets OFFSET_OUT_OF_RANGE with
    the log start, restarts its log there and then appends the leader's batches."""
    leader = follower_with_epochs(tmp_path, "l", [(1, 4)])
    leader.log.plog.roll()  # type: ignore[attr-defined]
    leader.append_raw_as_leader([raw_batch([b"y"])], 1, False)
    leader.log.plog.delete_records_before(4)  # type: ignore[attr-defined]
    leader.apply_record(record(leader=1, epoch=2, replicas=(1, 2)), 100)
    follower = open_partition(tmp_path / "f", FakeClock(), node_id=2)
    follower.apply_record(record(leader=1, epoch=2, replicas=(1, 2)), 100)
    error = expect_error("OFFSET_OUT_OF_RANGE",
                         lambda: leader.read_for_follower(2, 0, 2, -1, 1 << 20))
    follower.truncate_fully_and_start_at(int(error.metadata["log_start_offset"]))
    read = leader.read_for_follower(2, 4, 2, -1, 1 << 20)
    follower.append_as_follower(read.batches, read.high_watermark)
    assert (follower.log.log_start_offset, follower.log.log_end_offset) == (4, 5)


def test_follower_hw_follows_leader_capped_by_its_log(tmp_path: Path) -> None:
    """A follower's HW is min(leader HW, own log end) and never moves back."""
    follower = open_partition(tmp_path, FakeClock(), node_id=2)
    follower.apply_record(record(leader=1, epoch=1, replicas=(1, 2)), 5)
    batch = raw_batch([b"a", b"b"])
    from brook.v1 import records_pb2

    stored = records_pb2.RecordBatch.FromString(batch)
    stored.partition_leader_epoch = 1
    follower.append_as_follower([stored.SerializeToString()], 10)
    assert follower.high_watermark == 2
    follower.update_follower_high_watermark(1)
    assert follower.high_watermark == 2


async def test_commit_wait_spanning_a_role_change_fails(tmp_path: Path) -> None:
    """Appended as leader, lost and regained leadership before waiting: the offset may now
    hold other data, so the acks=all wait fails instead of acknowledging it."""
    partition = leader_of(tmp_path, FakeClock(), replicas=(1,))
    appended = partition.append_raw_as_leader([raw_batch([b"a"])], 5, True)
    partition.apply_record(record(leader=2, epoch=6, replicas=(1, 2)), 11)
    partition.apply_record(record(leader=1, epoch=7, replicas=(1,)), 12)
    assert partition.high_watermark >= 1
    with pytest.raises(BrookError) as caught:
        await partition.wait_for_commit(appended.last_offset, 1.0, appended.generation)
    assert caught.value.reason == "NOT_LEADER"


def test_same_epoch_offline_record_stops_leading(tmp_path: Path) -> None:
    """A record naming no leader at our epoch (offline partition) makes us stop leading."""
    partition = leader_of(tmp_path, FakeClock(), replicas=(1, 2))
    partition.apply_record(record(leader=-1, epoch=5, replicas=(1, 2)), 11)
    assert partition.role is Role.FOLLOWER and not partition.needs_truncation
    expect_error("NOT_LEADER", lambda: append(partition, b"x"))
