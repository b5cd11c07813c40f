"""Leader election decisions: pure functions from (PartitionRecord, live nodes) to the next
record, or None when nothing should change. The coordinator commits what they return with
a compare-and-swap and, on losing the race, re-reads and asks again.

Rules (Kafka's, with one refinement noted below):
- A partition whose leader is alive keeps it; dead followers leave the ISR.
- A partition whose leader is dead (or that has none) gets the first replica, in replica
  order, that is alive and in the ISR. The ISR shrinks to its live members.
- With no live ISR member the partition goes offline (leader -1). The ISR is then left as
  recorded, never emptied: every recorded ISR member holds every committed record, because
  a leader can only commit past a follower after recording the follower's removal from the
  ISR. (Kafka keeps only the last member; keeping all of them is as safe and lets whichever
  member returns first lead.) An unclean election (any live replica, possibly losing
  acknowledged records) happens only when the topic allows it.
- Every leader change bumps leader_epoch; every write bumps partition_epoch (`evolve`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from brook.errors import Reason
from brook.services.metadata.model import NO_LEADER, PartitionRecord

# Reasons an election did not happen (members of brook.errors.Reason, so a BrookError
# built from one is always valid).
ELECTION_NOT_NEEDED = Reason.ELECTION_NOT_NEEDED
ELIGIBLE_LEADERS_NOT_AVAILABLE = Reason.ELIGIBLE_LEADERS_NOT_AVAILABLE


@dataclass(frozen=True)
class Outcome:
    """An election's result: the record to write, or the reason nothing changes."""

    record: PartitionRecord | None
    reason: Reason | None = None


def _live_isr(record: PartitionRecord, live: Collection[int]) -> tuple[int, ...]:
    return tuple(r for r in record.isr if r in live)


def _first_eligible(record: PartitionRecord, eligible: Collection[int]) -> int | None:
    """The first replica, in replica (preference) order, that is eligible."""
    for replica in record.replicas:
        if replica in eligible:
            return replica
    return None


def leader_is_live(record: PartitionRecord, live: Collection[int]) -> bool:
    return record.leader != NO_LEADER and record.leader in live


def decide_leadership(
    record: PartitionRecord, live: Collection[int], *, unclean_allowed: bool = False
) -> PartitionRecord | None:
    """The record after the live node set changed (node lost or returned), or None.

    Covers node loss (new leader from the live ISR, ISR shrink), an offline partition
    whose ISR member is back (it leads again), and unclean election when allowed.
    """
    live_isr = _live_isr(record, live)
    if leader_is_live(record, live):
        if live_isr == record.isr or not live_isr:
            return None
        return record.evolve(isr=live_isr)
    leader = _first_eligible(record, live_isr)
    if leader is not None:
        return record.evolve(leader=leader, leader_epoch=record.leader_epoch + 1, isr=live_isr)
    if unclean_allowed:
        leader = _first_eligible(record, live)
        if leader is not None:
            return record.evolve(leader=leader, leader_epoch=record.leader_epoch + 1, isr=(leader,))
    if record.leader == NO_LEADER:
        return None  # already offline; waiting for an ISR member
    # Offline: no leader; the ISR stays as recorded (see the module docstring).
    return record.evolve(leader=NO_LEADER, leader_epoch=record.leader_epoch + 1)


def preferred_election(record: PartitionRecord, live: Collection[int]) -> Outcome:
    """Move leadership to the first replica when it is alive and in the ISR."""
    if not record.replicas:
        return Outcome(None, ELIGIBLE_LEADERS_NOT_AVAILABLE)
    preferred = record.replicas[0]
    if record.leader == preferred and preferred in live:
        return Outcome(None, ELECTION_NOT_NEEDED)
    if preferred not in live or preferred not in record.isr:
        return Outcome(None, ELIGIBLE_LEADERS_NOT_AVAILABLE)
    return Outcome(
        record.evolve(
            leader=preferred,
            leader_epoch=record.leader_epoch + 1,
            isr=_live_isr(record, live) or (preferred,),
        )
    )


def unclean_election(record: PartitionRecord, live: Collection[int]) -> Outcome:
    """Elect a leader for a partition without a live leader, from any live replica
    (the live ISR first). Acknowledged records may be lost."""
    if leader_is_live(record, live):
        return Outcome(None, ELECTION_NOT_NEEDED)
    decided = decide_leadership(record, live, unclean_allowed=True)
    if decided is None or decided.leader == NO_LEADER:
        return Outcome(None, ELIGIBLE_LEADERS_NOT_AVAILABLE)
    return Outcome(decided)


def leadership_drain(record: PartitionRecord, node_id: int, live: Collection[int]) -> Outcome:
    """Moves leadership off `node_id` (a controlled shutdown) to the first other live
    ISR member in replica order; the ISR is unchanged (the node still follows until it
    stops, and its lease loss then shrinks the ISR)."""
    if record.leader != node_id:
        return Outcome(None, ELECTION_NOT_NEEDED)
    leader = _first_eligible(record, [r for r in record.isr if r != node_id and r in live])
    if leader is None:
        return Outcome(None, ELIGIBLE_LEADERS_NOT_AVAILABLE)
    return Outcome(record.evolve(leader=leader, leader_epoch=record.leader_epoch + 1))


def needs_preferred_election(record: PartitionRecord, live: Collection[int]) -> bool:
    """True when a preferred election would move leadership (cheap filter for the loop)."""
    return preferred_election(record, live).record is not None
