"""Partition reassignment decisions (pure), Kafka-style (KIP-455).

A move from the original replicas O to a target T is recorded in the PartitionRecord
itself, so it survives coordinator failover:

    replicas          = T followed by the members of O not in T
    adding_replicas   = T - O      (new replicas, catching up from the leader)
    removing_replicas = O - T      (dropped once every adding replica is in the ISR)

So T = replicas without removing_replicas, and O = replicas without adding_replicas.
Storage nodes treat every member of `replicas` as a replica (the adding ones fetch like
any follower); the leader adds them to the ISR once caught up. When every adding replica
is in the ISR the coordinator completes the move: replicas = T, the ISR loses the removed
members, and if the leader was removed the first live ISR member of T leads (epoch + 1).
Cancelling reverts to O the same way (O's members in their order within `replicas`, as
in Kafka; the original preferred leader may then come later in the list).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from brook.errors import Reason
from brook.services.coordinator.election import Outcome
from brook.services.metadata.model import NO_LEADER, PartitionRecord

REASSIGNMENT_IN_PROGRESS = Reason.REASSIGNMENT_IN_PROGRESS
NO_REASSIGNMENT_IN_PROGRESS = Reason.NO_REASSIGNMENT_IN_PROGRESS
ELIGIBLE_LEADERS_NOT_AVAILABLE = Reason.ELIGIBLE_LEADERS_NOT_AVAILABLE


def is_reassigning(record: PartitionRecord) -> bool:
    return bool(record.adding_replicas or record.removing_replicas)


def target_replicas(record: PartitionRecord) -> tuple[int, ...]:
    return tuple(r for r in record.replicas if r not in record.removing_replicas)


def original_replicas(record: PartitionRecord) -> tuple[int, ...]:
    return tuple(r for r in record.replicas if r not in record.adding_replicas)


def _settle(
    record: PartitionRecord, replicas: tuple[int, ...], live: Collection[int]
) -> PartitionRecord | None:
    """The record with the move finished onto `replicas`, or None when no member of the
    new replica set is in the ISR (the move must wait, or cannot be undone safely)."""
    isr = tuple(r for r in record.isr if r in replicas)
    if not isr:
        return None
    leader, epoch = record.leader, record.leader_epoch
    if leader not in replicas or leader == NO_LEADER or leader not in live:
        eligible = [r for r in replicas if r in isr and r in live]
        if eligible:
            leader, epoch = eligible[0], epoch + 1
        elif leader != NO_LEADER:
            leader, epoch = NO_LEADER, epoch + 1
    return record.evolve(
        replicas=replicas,
        isr=isr,
        leader=leader,
        leader_epoch=epoch,
        adding_replicas=(),
        removing_replicas=(),
    )


def start(record: PartitionRecord, target: Sequence[int], live: Collection[int]) -> Outcome:
    """Begins moving the partition onto `target` (validated by the caller: non-empty,
    distinct, live nodes). Completes at once when nothing needs to catch up. An outcome
    with neither record nor reason means there is nothing to do (already there, or the
    same move is already running)."""
    target = tuple(target)
    if is_reassigning(record):
        if target == target_replicas(record):
            return Outcome(None)  # the same move is already running: nothing to do
        return Outcome(None, REASSIGNMENT_IN_PROGRESS)
    if target == record.replicas:
        return Outcome(None)  # already there
    adding = tuple(r for r in target if r not in record.replicas)
    removing = tuple(r for r in record.replicas if r not in target)
    if not adding:
        settled = _settle(record, target, live)
        if settled is None:
            return Outcome(None, ELIGIBLE_LEADERS_NOT_AVAILABLE)
        return Outcome(settled)
    return Outcome(
        record.evolve(
            replicas=(*target, *removing),
            adding_replicas=adding,
            removing_replicas=removing,
        )
    )


def progress(record: PartitionRecord, live: Collection[int]) -> PartitionRecord | None:
    """Completes a running move once every adding replica is in the ISR; else None."""
    if not is_reassigning(record):
        return None
    if any(r not in record.isr for r in record.adding_replicas):
        return None
    return _settle(record, target_replicas(record), live)


def cancel(record: PartitionRecord, live: Collection[int]) -> Outcome:
    """Reverts a running move to the original replicas."""
    if not is_reassigning(record):
        return Outcome(None, NO_REASSIGNMENT_IN_PROGRESS)
    settled = _settle(record, original_replicas(record), live)
    if settled is None:
        return Outcome(None, ELIGIBLE_LEADERS_NOT_AVAILABLE)
    return Outcome(settled)
