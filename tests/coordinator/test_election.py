"""Leader election decisions (pure): properties over random partitions and live sets,
plus the named cases from Kafka's rules."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from brook.services.coordinator import election
from brook.services.metadata.model import NO_LEADER, PartitionRecord

NODES = list(range(1, 7))


@st.composite
def partitions(draw: st.DrawFn) -> PartitionRecord:
    replicas = tuple(draw(st.lists(st.sampled_from(NODES), min_size=1, max_size=5, unique=True)))
    isr = tuple(r for r in replicas if draw(st.booleans()))
    leader = draw(st.sampled_from([NO_LEADER, *isr])) if isr else NO_LEADER
    return PartitionRecord(
        topic="t",
        partition=0,
        topic_id="id",
        replicas=replicas,
        leader=leader,
        leader_epoch=draw(st.integers(0, 100)),
        isr=isr or replicas[:1],
        partition_epoch=draw(st.integers(0, 100)),
    )


live_sets = st.sets(st.sampled_from(NODES))


@settings(max_examples=200, deadline=None)
@given(partitions(), live_sets, st.booleans())
def test_decisions_keep_the_invariants(
    record: PartitionRecord, live: set[int], unclean: bool
) -> None:
    """Any decision: the leader is live (or none); a clean leader comes from the old ISR;
    the ISR is never empty and only holds replicas; leader_epoch goes up by exactly one
    when and only when the leader changes; partition_epoch goes up by one on every write."""
    new = election.decide_leadership(record, live, unclean_allowed=unclean)
    if new is None:
        return
    assert new.partition_epoch == record.partition_epoch + 1
    assert new.isr and set(new.isr) <= set(new.replicas)
    if new.leader != record.leader:
        assert new.leader_epoch == record.leader_epoch + 1
    else:
        assert new.leader_epoch == record.leader_epoch
    if new.leader != NO_LEADER:
        assert new.leader in live
        assert new.leader in new.isr
        if not unclean:
            assert new.leader in record.isr


@settings(max_examples=200, deadline=None)
@given(partitions(), live_sets, st.booleans())
def test_decisions_are_stable(record: PartitionRecord, live: set[int], unclean: bool) -> None:
    """Deciding again on the decided record with the same live set changes nothing (the
    controller's reconcile loop converges instead of bumping epochs forever)."""
    new = election.decide_leadership(record, live, unclean_allowed=unclean)
    if new is not None:
        assert election.decide_leadership(new, live, unclean_allowed=unclean) is None


@settings(max_examples=200, deadline=None)
@given(partitions(), live_sets)
def test_clean_election_prefers_replica_order(record: PartitionRecord, live: set[int]) -> None:
    """A new clean leader is the first replica (preference order) that is live and in the ISR."""
    new = election.decide_leadership(record, live)
    if new is not None and new.leader != record.leader and new.leader != NO_LEADER:
        eligible = [r for r in record.replicas if r in live and r in record.isr]
        assert new.leader == eligible[0]


def _record(**changes: object) -> PartitionRecord:
    base = PartitionRecord(
        topic="t",
        partition=0,
        topic_id="id",
        replicas=(1, 2, 3),
        leader=1,
        leader_epoch=5,
        isr=(1, 2, 3),
        partition_epoch=9,
    )
    return base.evolve(**changes) if changes else base


def test_leader_loss_elects_next_isr_member() -> None:
    """Leader 1 dies: replica 2 (next in order, in ISR, live) leads; ISR drops 1."""
    new = election.decide_leadership(_record(), {2, 3})
    assert new is not None
    assert (new.leader, new.leader_epoch, new.isr) == (2, 6, (2, 3))


def test_follower_loss_only_shrinks_isr() -> None:
    """Follower 3 dies: leader and epoch stay, the ISR drops 3."""
    new = election.decide_leadership(_record(), {1, 2})
    assert new is not None
    assert (new.leader, new.leader_epoch, new.isr) == (1, 5, (1, 2))


def test_no_live_isr_goes_offline_and_keeps_isr() -> None:
    """ISR {1} (leader) dies while 2 and 3 (out of sync) live: offline, ISR kept as {1}."""
    record = _record(isr=(1,))
    new = election.decide_leadership(record, {2, 3})
    assert new is not None
    assert (new.leader, new.leader_epoch, new.isr) == (NO_LEADER, 6, (1,))
    assert election.decide_leadership(new, {2, 3}) is None  # stays offline, no epoch churn
    back = election.decide_leadership(new, {1, 2, 3})
    assert back is not None and (back.leader, back.leader_epoch) == (1, 7)


def test_unclean_election_only_when_allowed() -> None:
    """With unclean election allowed, an out-of-sync live replica leads with ISR = itself."""
    record = _record(isr=(1,))
    new = election.decide_leadership(record, {3}, unclean_allowed=True)
    assert new is not None and (new.leader, new.isr) == (3, (3,))


def test_preferred_election() -> None:
    """Preferred replica 1 in ISR and live but not leading: it leads, epoch + 1. Already
    leading: ELECTION_NOT_NEEDED. Out of the ISR: ELIGIBLE_LEADERS_NOT_AVAILABLE."""
    moved = election.preferred_election(_record(leader=2), {1, 2, 3})
    assert moved.record is not None and moved.record.leader == 1
    assert moved.record.leader_epoch == 6
    assert election.preferred_election(_record(), {1, 2, 3}).reason == "ELECTION_NOT_NEEDED"
    out = election.preferred_election(_record(leader=2, isr=(2, 3)), {1, 2, 3})
    assert out.reason == "ELIGIBLE_LEADERS_NOT_AVAILABLE"


@settings(max_examples=300, deadline=None)
@given(partitions(), live_sets, st.sampled_from(NODES))
def test_leadership_drain_moves_only_to_another_live_isr_member(
    record: PartitionRecord, live: set[int], node: int
) -> None:
    """A controlled shutdown's election: the node's leadership goes to the first other
    live ISR replica in replica order (epoch + 1, ISR and replicas unchanged), and
    nothing else ever changes."""
    outcome = election.leadership_drain(record, node, live)
    others = [r for r in record.replicas if r in record.isr and r != node and r in live]
    if record.leader != node:
        assert outcome.record is None
        return
    if not others:
        assert outcome.record is None and outcome.reason is not None
        return
    new = outcome.record
    assert new is not None
    assert new.leader == others[0] and new.leader_epoch == record.leader_epoch + 1
    assert (new.isr, new.replicas) == (record.isr, record.replicas)
