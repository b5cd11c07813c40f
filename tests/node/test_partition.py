"""Unit tests of the storage node's partition core: epochs, HW, ISR, acks=all decisions,
divergence. The core is a state machine over an in-memory log position (`FakeLog`) and a
ManualClock: no disk, no network, no event loop.
"""

from __future__ import annotations

import pytest

from brook.clock import ManualClock
from brook.errors import BrookError
from brook.services.node.acks import Acks
from brook.services.node.partition import (
    Change,
    Diverging,
    Partition,
    PartitionSettings,
    Role,
    truncation_target,
)
from tests.node.helpers import FakeLog, core_partition, record

LAG_MS = 1000


def leader_of(
    clock: ManualClock,
    *,
    replicas: tuple[int, ...] = (1, 2, 3),
    isr: tuple[int, ...] | None = None,
    min_isr: int = 1,
    leadership: list[bool] | None = None,
) -> Partition:
    partition = core_partition(
        clock,
        settings=PartitionSettings(min_insync_replicas=min_isr, replica_lag_max_ms=LAG_MS),
        leadership=leadership,
    )
    change = partition.apply_record(record(leader=1, epoch=5, replicas=replicas, isr=isr), 10)
    assert change is Change.BECAME_LEADER
    partition.take_ready()
    return partition


def append(
    partition: Partition, records: int = 1, *, acks: Acks = Acks.LEADER, epoch: int = 5
) -> int:
    """The driver's leader append: grant, 'write' to the fake log, report; last offset."""
    grant = partition.grant_leader_append(epoch, acks)
    log = partition.log
    assert isinstance(log, FakeLog)
    log.append(records, grant.leader_epoch)
    partition.leader_appended(grant)
    return grant.base_offset + records - 1


def expect_error(reason: str, action: object) -> BrookError:
    with pytest.raises(BrookError) as caught:
        action()  # type: ignore[operator]
    assert caught.value.reason == reason, caught.value
    return caught.value


# -- epochs and roles ----------------------------------------------------------------------
def test_epoch_checks() -> None:
    """A caller epoch below ours is FENCED, above is UNKNOWN, -1 and equal pass."""
    partition = leader_of(ManualClock(), replicas=(1,))
    partition.check_epoch(-1)
    partition.check_epoch(5)
    expect_error("FENCED_LEADER_EPOCH", lambda: partition.check_epoch(4))
    expect_error("UNKNOWN_LEADER_EPOCH", lambda: partition.check_epoch(6))
    # The epoch check applies to produce too, before anything is granted.
    expect_error("FENCED_LEADER_EPOCH", lambda: partition.grant_leader_append(4, Acks.LEADER))


def test_single_replica_leader_grants_from_log_end_and_commits_at_once() -> None:
    """With ISR = {leader}, an append is committed at once; grants follow the log end."""
    partition = leader_of(ManualClock(), replicas=(1,))
    assert append(partition, 2) == 1
    grant = partition.grant_leader_append(5, Acks.LEADER)
    assert (grant.base_offset, grant.leader_epoch) == (2, 5)
    assert partition.high_watermark == 2
    assert partition.take_ready().high_watermark == 2
    plan = partition.committed_read(1, -1)
    assert plan.reads and plan.high_watermark == 2


def test_follower_rejects_produce_with_leader_details() -> None:
    """A follower answers NOT_LEADER naming the leader's id and address."""
    partition = core_partition(ManualClock())
    assert partition.apply_record(record(leader=2, epoch=3, replicas=(1, 2)), 7) is (
        Change.BECAME_FOLLOWER
    )
    error = expect_error("NOT_LEADER", lambda: partition.grant_leader_append(-1, Acks.LEADER))
    assert error.metadata["leader_id"] == "2"
    assert error.metadata["leader_address"] == "127.0.0.1:9002"
    assert error.metadata["leader_epoch"] == "3"
    expect_error("NOT_LEADER", lambda: partition.committed_read(0, 3))


def test_records_apply_in_revision_order() -> None:
    """An older etcd revision is ignored; a newer epoch switches the role."""
    partition = core_partition(ManualClock())
    partition.apply_record(record(leader=1, epoch=2, replicas=(1, 2)), 10)
    assert partition.apply_record(record(leader=2, epoch=1, replicas=(1, 2)), 9) is Change.NOTHING
    assert partition.role is Role.LEADER
    assert partition.apply_record(record(leader=2, epoch=3, replicas=(1, 2)), 11) is (
        Change.BECAME_FOLLOWER
    )
    assert partition.needs_truncation
    assert partition.take_ready().role_reset is not None
    assert partition.apply_record(record(leader=2, epoch=3, replicas=(2, 3)), 12) is Change.STOPPED
    assert partition.role is Role.NONE


# -- high watermark --------------------------------------------------------------------------
def test_hw_is_min_leo_over_isr() -> None:
    """The HW waits for every ISR member; a follower outside the ISR does not hold it back."""
    partition = leader_of(ManualClock(), replicas=(1, 2, 3), isr=(1, 2))
    append(partition)
    append(partition)
    assert partition.high_watermark == 0  # follower 2 has not fetched yet
    partition.follower_fetch(2, 1, 5, 5)
    assert partition.high_watermark == 1
    partition.follower_fetch(3, 0, 5, -1)  # not in the ISR: no effect
    partition.follower_fetch(2, 2, 5, 5)
    assert partition.high_watermark == 2
    # The HW never goes back, even if a follower reports less (after a restart).
    partition.follower_fetch(2, 1, 5, 5)
    assert partition.high_watermark == 2


def test_consumer_reads_stop_at_hw() -> None:
    """A consumer read plan stops at the HW; past the log end is OFFSET_OUT_OF_RANGE."""
    partition = leader_of(ManualClock(), replicas=(1, 2), isr=(1, 2))
    append(partition)
    append(partition)
    partition.follower_fetch(2, 1, 5, 5)
    plan = partition.committed_read(0, 5)
    assert plan.reads and plan.high_watermark == 1
    assert not partition.committed_read(1, 5).reads
    error = expect_error("OFFSET_OUT_OF_RANGE", lambda: partition.committed_read(3, 5))
    assert error.metadata["log_end_offset"] == "2"
    assert partition.list_offset("latest", -1) == 1
    assert partition.list_offset("earliest", -1) == 0
    assert partition.list_offset("timestamp", -1) is None


def test_timestamp_offsets_count_only_committed_batches() -> None:
    """A timestamp lookup's answer counts only below the HW; otherwise the HW."""
    partition = leader_of(ManualClock(), replicas=(1,))
    append(partition, 3)
    assert partition.timestamp_offset((1, 2000)) == (1, 2000)
    assert partition.timestamp_offset((3, 2000)) == (3, -1)
    assert partition.timestamp_offset(None) == (3, -1)


# -- acks=all decisions -------------------------------------------------------------------------
def test_acks_all_commits_when_isr_has_it() -> None:
    """An acks=all append is committed only once every ISR member fetched past it."""
    partition = leader_of(ManualClock(), replicas=(1, 2, 3), min_isr=2)
    last = append(partition, 2, acks=Acks.ALL)
    generation = partition.generation
    partition.follower_fetch(2, 2, 5, 5)
    assert not partition.check_commit(last, generation)  # follower 3 is still missing it
    partition.follower_fetch(3, 2, 5, 5)
    assert partition.check_commit(last, generation)
    assert partition.take_ready().high_watermark == 2


def test_acks_all_refused_before_append_when_isr_too_small() -> None:
    """ISR below min_insync_replicas: NOT_ENOUGH_REPLICAS and no grant."""
    partition = leader_of(ManualClock(), replicas=(1, 2, 3), isr=(1,), min_isr=2)
    expect_error("NOT_ENOUGH_REPLICAS", lambda: partition.grant_leader_append(5, Acks.ALL))
    assert partition.log.log_end_offset == 0
    append(partition, acks=Acks.LEADER)  # acks=leader does not need the ISR
    assert partition.log.log_end_offset == 1


def test_isr_shrink_below_min_fails_commits() -> None:
    """A committed ISR shrink below the minimum: waiters must fail AFTER_APPEND."""
    partition = leader_of(ManualClock(), replicas=(1, 2, 3), min_isr=2)
    last = append(partition, acks=Acks.ALL)
    partition.apply_record(record(leader=1, epoch=5, replicas=(1, 2, 3), isr=(1,)), 11)
    ready = partition.take_ready()
    assert ready.isr_below_min is not None
    assert ready.isr_below_min.reason == "NOT_ENOUGH_REPLICAS_AFTER_APPEND"
    expect_error(
        "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        lambda: partition.check_commit(last, partition.generation),
    )


def test_leadership_change_resets_waiters() -> None:
    """Becoming follower tells waiters NOT_LEADER naming the new leader."""
    partition = leader_of(ManualClock(), replicas=(1, 2), min_isr=2)
    last = append(partition, acks=Acks.ALL)
    generation = partition.generation
    partition.apply_record(record(leader=2, epoch=6, replicas=(1, 2)), 11)
    ready = partition.take_ready()
    assert ready.role_reset is not None and ready.role_reset.metadata["leader_id"] == "2"
    expect_error("NOT_LEADER", lambda: partition.check_commit(last, generation))


def test_fenced_leader_acknowledges_nothing() -> None:
    """Lease lost: the HW does not move on a (stale) follower fetch, waiters are reset
    and new produces refused, even though etcd still names us leader."""
    leadership = [True]
    partition = leader_of(ManualClock(), replicas=(1, 2), min_isr=2, leadership=leadership)
    last = append(partition, acks=Acks.ALL)
    generation = partition.generation
    # The process was paused past its lease: the lease is no longer valid when it wakes,
    # before the lease watcher has even run. A stale fetch must not advance the HW.
    leadership[0] = False
    expect_error("NOT_LEADER", lambda: partition.follower_fetch(2, 1, 5, 5))
    assert partition.high_watermark == 0
    assert partition.take_ready().high_watermark is None
    partition.fence()
    ready = partition.take_ready()
    assert ready.role_reset is not None and ready.role_reset.metadata["leader_id"] == "-1"
    expect_error("NOT_LEADER", lambda: partition.check_commit(last, generation))
    expect_error("NOT_LEADER", lambda: partition.grant_leader_append(5, Acks.LEADER))


def test_append_spanning_a_role_change_is_not_acknowledged() -> None:
    """Granted as leader, lost and regained leadership before the append finished: the
    offset may now hold other data, so the append and its commit wait fail."""
    partition = leader_of(ManualClock(), replicas=(1,))
    grant = partition.grant_leader_append(5, Acks.ALL)
    partition.apply_record(record(leader=2, epoch=6, replicas=(1, 2)), 11)
    partition.apply_record(record(leader=1, epoch=7, replicas=(1,)), 12)
    expect_error("NOT_LEADER", lambda: partition.leader_appended(grant))
    expect_error("NOT_LEADER", lambda: partition.check_commit(0, grant.generation))


# -- ISR shrink and expand ---------------------------------------------------------------------
def test_isr_shrinks_after_lag_and_expands_when_caught_up() -> None:
    """A follower not caught up for replica_lag_max_ms is proposed for removal; when it is
    back at the HW it is proposed for addition. The HW counts a pending member."""
    clock = ManualClock()
    partition = leader_of(clock, replicas=(1, 2, 3))
    append(partition)
    partition.follower_fetch(2, 1, 5, 5)
    partition.follower_fetch(3, 1, 5, 5)
    assert partition.isr_change_wanted() is None
    clock.advance(LAG_MS // 2)
    append(partition)
    partition.follower_fetch(2, 2, 5, 5)  # 2 keeps up; 3 is silent
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
    append(partition)
    partition.follower_fetch(2, 3, 5, 5)
    assert partition.high_watermark == 3  # 3 no longer holds it back
    # 3 comes back and fetches up to the HW: proposed for addition.
    partition.follower_fetch(3, 3, 5, 5)
    proposal = partition.isr_change_wanted()
    assert proposal is not None and proposal.isr == (1, 2, 3) and proposal.added == (3,)
    partition.begin_isr_change(proposal)
    # While the expansion is pending, the HW counts 3 too.
    append(partition)
    partition.follower_fetch(2, 4, 5, 5)
    assert partition.high_watermark == 3
    partition.follower_fetch(3, 4, 5, 5)
    assert partition.high_watermark == 4


def test_busy_follower_counts_as_caught_up_at_its_previous_fetch() -> None:
    """A follower that always fetches what the leader had at its previous fetch stays in
    the ISR even though the leader keeps appending between its fetches."""
    clock = ManualClock()
    partition = leader_of(clock, replicas=(1, 2))
    for step in range(10):
        append(partition)
        # The follower asks for everything the leader had at its previous fetch.
        partition.follower_fetch(2, step, 5, 5 if step else -1)
        clock.advance(LAG_MS // 3)
    assert partition.isr_change_wanted() is None


def test_follower_joins_only_after_reaching_current_epoch() -> None:
    """An out-of-ISR follower at the HW but below the leader epoch start is not added."""
    partition = core_partition(ManualClock(), settings=PartitionSettings(replica_lag_max_ms=LAG_MS))
    partition.apply_record(record(leader=1, epoch=4, replicas=(1,)), 5)
    append(partition, 2, epoch=4)
    partition.apply_record(record(leader=1, epoch=5, replicas=(1, 2), isr=(1,)), 6)
    assert partition.leader_epoch_start_offset == 2
    partition.follower_fetch(2, 0, 5, -1)
    assert partition.isr_change_wanted() is None
    partition.follower_fetch(2, 2, 5, 4)
    proposal = partition.isr_change_wanted()
    assert proposal is not None and proposal.added == (2,)


def test_follower_fetching_below_the_hw_leaves_the_isr_at_once() -> None:
    """Defect 1: a member whose log lost committed records (its data directory was wiped,
    so it fetches from 0) is proposed for removal on the next check, not after the lag."""
    clock = ManualClock()
    partition = leader_of(clock, replicas=(1, 2, 3))
    append(partition, 3)
    partition.follower_fetch(2, 3, 5, 5)
    partition.follower_fetch(3, 3, 5, 5)
    assert partition.high_watermark == 3 and partition.isr_change_wanted() is None
    partition.follower_fetch(3, 0, 5, -1)  # wiped and restarted: an empty log
    proposal = partition.isr_change_wanted()
    assert proposal is not None and proposal.removed == (3,)


def test_member_never_heard_from_stays_until_records_wait_for_it() -> None:
    """Defect 4: a member that has not fetched at all at this epoch (its log is still
    being opened) is not removed after replica_lag_max_ms while nothing waits for the
    ISR (log end = HW: it lacks no committed record), so thousands of idle new
    partitions do not each write an ISR change; it is removed once a record waits."""
    clock = ManualClock()
    partition = leader_of(clock, replicas=(1, 2, 3))
    clock.advance(LAG_MS + 1)
    assert partition.isr_change_wanted() is None
    append(partition)
    proposal = partition.isr_change_wanted()
    assert proposal is not None and proposal.removed == (2, 3)


def test_rejoin_needs_a_fetch_at_the_log_end_not_a_claim() -> None:
    """Defect 1: an out-of-ISR follower whose first fetch claims an offset at the HW but
    short of the leader's log end is not added; it is once a fetch reaches the log end."""
    clock = ManualClock()
    partition = leader_of(clock, replicas=(1, 2, 3), isr=(1, 2))
    append(partition, 2)
    partition.follower_fetch(2, 2, 5, 5)
    append(partition, 2)  # log end 4, HW 2
    partition.follower_fetch(3, 2, 5, 5)
    assert partition.isr_change_wanted() is None
    partition.follower_fetch(3, 4, 5, 5)
    proposal = partition.isr_change_wanted()
    assert proposal is not None and proposal.added == (3,)


def test_isr_membership_has_hysteresis() -> None:
    """Defect 1: a follower that left the ISR is not added back before isr_rejoin_min_ms,
    however caught up it claims to be, so membership cannot flip at the check rate."""
    clock = ManualClock()
    partition = core_partition(
        clock, settings=PartitionSettings(replica_lag_max_ms=LAG_MS, isr_rejoin_min_ms=500)
    )
    partition.apply_record(record(leader=1, epoch=5, replicas=(1, 2), isr=(1, 2)), 10)
    append(partition)
    partition.follower_fetch(2, 1, 5, 5)
    partition.follower_fetch(2, 0, 5, -1)  # below the HW now: out
    proposal = partition.isr_change_wanted()
    assert proposal is not None and proposal.removed == (2,)
    partition.begin_isr_change(proposal)
    partition.apply_record(proposal.base_record.evolve(isr=(1,)), 11)
    partition.finish_isr_change(proposal)
    partition.follower_fetch(2, 1, 5, 5)  # caught up at once
    clock.advance(499)
    partition.follower_fetch(2, 1, 5, 5)
    assert partition.isr_change_wanted() is None
    clock.advance(1)
    proposal = partition.isr_change_wanted()
    assert proposal is not None and proposal.added == (2,)


# -- divergence and truncation ------------------------------------------------------------------
def log_with_epochs(runs: list[tuple[int, int]]) -> FakeLog:
    """A log holding `count` records per (epoch, count) run."""
    log = FakeLog()
    for epoch, count in runs:
        log.append(count, epoch)
    return log


def test_truncation_target_rules() -> None:
    """KIP-279: agree up to the smaller end of a shared epoch; drop epochs the leader lacks."""
    follower = log_with_epochs([(1, 3), (2, 4), (4, 2)])  # 0..3, 3..7, 7..9
    # Leader knows epoch 4 ending at 8: keep 0..8.
    assert truncation_target(4, 8, follower) == 8
    # Leader's floor of our epoch 4 is 3 (it never had 4): we do not have epoch 3, so our
    # floor of 3 is 2, which ends at 7.
    assert truncation_target(3, 7, follower) == 7
    # Leader's floor is 2 ending at 5: our 2 ends at 7: keep 0..5.
    assert truncation_target(2, 5, follower) == 5
    # Leader knows nothing that old: keep nothing from our first epoch on.
    assert truncation_target(0, 2, follower) == 0
    # Undefined epoch: truncate to the leader's end offset (if below ours).
    assert truncation_target(-1, 4, follower) == 4
    assert truncation_target(-1, -1, follower) == 9


def test_leader_reports_divergence_and_follower_converges() -> None:
    """A follower with an uncommitted tail from an old epoch gets diverging_epoch and,
    after truncating there, fetches from the point where the logs agree."""
    clock = ManualClock()
    leader = core_partition(clock, log_position=log_with_epochs([(1, 3), (3, 2)]))
    follower_log = log_with_epochs([(1, 3), (2, 3)])  # 0..3 e1, 3..6 e2
    follower = core_partition(clock, log_position=follower_log, node_id=2)
    leader.apply_record(record(leader=1, epoch=3, replicas=(1, 2)), 100)
    follower.apply_record(record(leader=1, epoch=3, replicas=(1, 2)), 100)
    assert follower.role is Role.FOLLOWER
    offset, last_epoch = follower.fetch_position()
    assert (offset, last_epoch) == (6, 2)
    plan = leader.follower_fetch(2, offset, 3, last_epoch)
    assert plan.diverging == Diverging(1, 3) and not plan.reads
    follower_log.truncate_to(truncation_target(1, 3, follower_log))
    follower.after_truncation()
    offset, last_epoch = follower.fetch_position()
    plan = leader.follower_fetch(2, offset, 3, last_epoch)
    assert plan.diverging is None and plan.reads and plan.fetch_offset == 3


def test_follower_appends_only_what_continues_its_log() -> None:
    """Re-sent batches are skipped; a gap is CORRUPT_BATCH (the fetcher re-truncates)."""
    from brook.services.node.batches import BatchInfo

    follower_log = log_with_epochs([(1, 2)])
    follower = core_partition(ManualClock(), log_position=follower_log, node_id=2)
    follower.apply_record(record(leader=1, epoch=1, replicas=(1, 2)), 5)
    batches = [BatchInfo(0, 2, -1, 1), BatchInfo(2, 1, -1, 1), BatchInfo(3, 2, -1, 2)]
    assert follower.follower_batches_to_append(batches) == [1, 2]
    expect_error(
        "CORRUPT_BATCH", lambda: follower.follower_batches_to_append([BatchInfo(4, 1, -1, 1)])
    )


def test_follower_hw_follows_leader_capped_by_its_log() -> None:
    """A follower's HW is min(leader HW, own log end) and never moves back."""
    follower_log = FakeLog()
    follower = core_partition(ManualClock(), log_position=follower_log, node_id=2)
    follower.apply_record(record(leader=1, epoch=1, replicas=(1, 2)), 5)
    follower_log.append(2, 1)
    follower.update_follower_high_watermark(10)
    assert follower.high_watermark == 2
    follower.update_follower_high_watermark(1)
    assert follower.high_watermark == 2


def test_same_epoch_offline_record_stops_leading() -> None:
    """A record naming no leader at our epoch (offline partition) makes us stop leading."""
    partition = leader_of(ManualClock(), replicas=(1, 2))
    partition.apply_record(record(leader=-1, epoch=5, replicas=(1, 2)), 11)
    assert partition.role is Role.FOLLOWER and not partition.needs_truncation
    expect_error("NOT_LEADER", lambda: partition.grant_leader_append(5, Acks.LEADER))


def test_core_imports_no_io() -> None:
    """The core is I/O-free: no asyncio, no log engine, no gRPC in its imports."""
    import ast
    import inspect

    from brook.services.node import partition as module

    tree = ast.parse(inspect.getsource(module))
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {
        name
        for name in imported
        if name.split(".")[0] in ("asyncio", "grpc", "os")
        or name.startswith(("brook.storage", "brook.services.node.storage_log"))
    }


def test_a_forged_claim_past_the_log_end_moves_nothing() -> None:
    """A ReplicaFetch claiming an offset past the leader's log end (a forged or confused
    follower) gets diverging_epoch or OFFSET_OUT_OF_RANGE, never a recorded position: the
    claimant is not added to the ISR and the HW does not move."""
    partition = core_partition(ManualClock(), settings=PartitionSettings(replica_lag_max_ms=LAG_MS))
    partition.apply_record(record(leader=1, epoch=5, replicas=(1, 2), isr=(1,)), 6)
    append(partition, 3)
    high_watermark = partition.high_watermark
    plan = partition.follower_fetch(2, 1_000_003, 5, 5)
    assert plan.diverging is not None and not plan.reads
    expect_error("OFFSET_OUT_OF_RANGE", lambda: partition.follower_fetch(2, 1_000_003, 5, -1))
    assert partition.isr_change_wanted() is None
    assert partition.high_watermark == high_watermark
