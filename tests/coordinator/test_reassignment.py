"""Reassignment decisions (pure): start, completion once caught up, cancel."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from brook.services.coordinator import reassignment
from brook.services.metadata.model import PartitionRecord

LIVE = {1, 2, 3, 4, 5}


def _record(**changes: object) -> PartitionRecord:
    base = PartitionRecord(
        topic="t", partition=0, topic_id="id", replicas=(1, 2, 3), leader=1, leader_epoch=4,
        isr=(1, 2, 3), partition_epoch=7,
    )  # fmt: skip
    return base.evolve(**changes) if changes else base


def test_move_to_new_nodes_waits_for_isr_then_completes() -> None:
    """Moving (1,2,3) -> (4,2,3): 4 is added and 1 marked removing; nothing completes
    until 4 is in the ISR; then replicas become the target, 1 leaves the ISR, and since
    the leader (1) was removed, the first ISR member of the target leads with epoch + 1."""
    started = reassignment.start(_record(), (4, 2, 3), LIVE).record
    assert started is not None
    assert started.replicas == (4, 2, 3, 1)
    assert (started.adding_replicas, started.removing_replicas) == ((4,), (1,))
    assert started.leader == 1 and started.leader_epoch == 4
    assert reassignment.progress(started, LIVE) is None
    caught_up = started.evolve(isr=(1, 2, 3, 4))
    done = reassignment.progress(caught_up, LIVE)
    assert done is not None
    assert done.replicas == (4, 2, 3) and set(done.isr) == {2, 3, 4}
    assert (done.adding_replicas, done.removing_replicas) == ((), ())
    assert done.leader == 4 and done.leader_epoch == 5


def test_shrink_completes_at_once_and_keeps_a_live_leader() -> None:
    """Dropping a follower needs no catch-up: done in one step, leader and epoch kept."""
    done = reassignment.start(_record(), (1, 2), LIVE).record
    assert done is not None
    assert (done.replicas, done.isr, done.leader, done.leader_epoch) == ((1, 2), (1, 2), 1, 4)


def test_second_move_is_rejected_and_same_move_is_a_no_op() -> None:
    """While a move runs, another target is REASSIGNMENT_IN_PROGRESS; the same is a no-op."""
    started = reassignment.start(_record(), (4, 2, 3), LIVE).record
    assert started is not None
    assert reassignment.start(started, (5, 2, 3), LIVE).reason == "REASSIGNMENT_IN_PROGRESS"
    same = reassignment.start(started, (4, 2, 3), LIVE)
    assert same.record is None and same.reason is None


def test_cancel_reverts() -> None:
    """Cancel restores the original replica set (in the order the move left it, as Kafka
    does) and drops the adding ones from the ISR; the live leader keeps leading."""
    started = reassignment.start(_record(), (4, 2, 3), LIVE).record
    assert started is not None
    reverted = reassignment.cancel(started.evolve(isr=(1, 2, 3, 4)), LIVE).record
    assert reverted is not None
    assert (reverted.replicas, reverted.isr) == ((2, 3, 1), (1, 2, 3))
    assert (reverted.leader, reverted.leader_epoch) == (1, 4)
    assert reassignment.cancel(_record(), LIVE).reason == "NO_REASSIGNMENT_IN_PROGRESS"


@settings(max_examples=300)
@given(
    st.lists(st.sampled_from(sorted(LIVE)), min_size=1, max_size=4, unique=True),
    st.sets(st.sampled_from(sorted(LIVE))),
)
def test_completed_moves_land_on_the_target(target: list[int], joined: set[int]) -> None:
    """Whatever subset of new replicas has joined the ISR, a completed move has exactly the
    target replicas, an ISR inside them, and a leader in that ISR (or none)."""
    started = reassignment.start(_record(), target, LIVE)
    record = started.record
    if record is None:
        return
    if reassignment.is_reassigning(record):
        record = record.evolve(
            isr=(*record.isr, *[r for r in record.adding_replicas if r in joined])
        )
        done = reassignment.progress(record, LIVE)
        if done is None:
            assert not set(record.adding_replicas) <= joined
            return
        record = done
    assert record.replicas == tuple(target)
    assert set(record.isr) <= set(target) and record.isr
    assert record.leader == -1 or record.leader in record.isr
