"""A replica that finds its stored data corrupt stops leading it and re-fetches it.

Why: a leader whose log fails its read-back CRC check at offset X answers STORAGE_ERROR
for every read at or past X, while other in-sync replicas hold good copies. It must not
keep leading that range (architecture: "a replica that cannot serve a range does not
lead it"), and it must not truncate while it leads: followers would truncate to its
shorter log and lose committed records.

What, in order (`leave_corrupt_range`):
  1. A leader stops acting as leader at once (`fence`: no grant, no HW move).
  2. It hands leadership to the first other live in-sync replica in replica order: a CAS
     on the partition record (epoch + 1, itself out of the ISR), the same step the
     coordinator takes on node loss. With no other in-sync replica it keeps leading
     (nothing better exists; reads of the range keep failing, logged at ERROR).
  3. As a follower, it truncates to X (logging the offsets dropped); the fetcher then
     re-fetches X onwards from the new leader and the replica rejoins the ISR as any
     follower does.

Thread-safety: one event loop; the truncation holds the partition's lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from brook.services.metadata.model import PartitionRecord
from brook.services.node.partition import Role
from brook.services.node.replica import Replica

if TYPE_CHECKING:
    from brook.services.metadata.store import MetadataStore

log = logging.getLogger("brook.node.corruption")

# CAS attempts when the record keeps changing underneath (an ISR change, the coordinator).
_HAND_OFF_ATTEMPTS = 5


def hand_off_record(
    record: PartitionRecord, node_id: int, live: Collection[int]
) -> PartitionRecord | None:
    """The record with leadership moved from `node_id` to the first other live ISR member
    (replica order), `node_id` out of the ISR, epoch + 1; None when there is none."""
    successors = [
        replica for replica in record.replicas
        if replica != node_id and replica in record.isr and replica in live
    ]
    if not successors:
        return None
    return record.evolve(
        leader=successors[0],
        leader_epoch=record.leader_epoch + 1,
        isr=tuple(replica for replica in record.isr if replica != node_id),
    )


async def leave_corrupt_range(
    replica: Replica,
    corrupt_from: int,
    *,
    node_id: int,
    store: MetadataStore,
    live_nodes: Callable[[], Collection[int]],
    on_roles_changed: Callable[[list[Replica]], None],
) -> None:
    """See the module docs."""
    partition = replica.partition
    if partition.role is Role.LEADER and not await _hand_off(
        replica, node_id, store, live_nodes, on_roles_changed
    ):
        return
    if partition.role is not Role.FOLLOWER:
        return
    async with replica.log.lock:
        if replica.log.plog.corrupt_from is None:
            return  # already truncated (a second report of the same damage)
        await replica.truncate_to(
            corrupt_from,
            f"stored batches from offset {corrupt_from} failed their CRC check on read;"
            " dropping them to re-fetch them from the leader",
        )
    on_roles_changed([replica])


async def _hand_off(
    replica: Replica,
    node_id: int,
    store: MetadataStore,
    live_nodes: Callable[[], Collection[int]],
    on_roles_changed: Callable[[list[Replica]], None],
) -> bool:
    """True once this node no longer leads the partition."""
    partition = replica.partition
    for _ in range(_HAND_OFF_ATTEMPTS):
        found = await store.get_partition(partition.topic, partition.partition)
        if found is None:
            return False
        record, revision = found
        if record.leader != node_id:
            replica.apply_record(record, revision)
            on_roles_changed([replica])
            return True
        new = hand_off_record(record, node_id, live_nodes())
        if new is None:
            log.error(
                "%s: stored data is corrupt from offset %d, but no other live in-sync replica"
                " exists (isr %s); still leading, reads of that range fail",
                partition.name, replica.log.plog.corrupt_from, record.isr,
            )
            return False
        replica.fence()  # no produce, fetch or HW move as leader from here on
        committed = await store.cas_partition(new, revision)
        if committed is not None:
            log.warning(
                "%s: stored data is corrupt from offset %d; handed leadership to node %d"
                " (epoch %d, isr %s) to re-fetch it",
                partition.name, replica.log.plog.corrupt_from, new.leader, new.leader_epoch,
                new.isr,
            )
            replica.apply_record(new, committed)
            on_roles_changed([replica])
            return True
    log.error("%s: could not hand off leadership after %d attempts", partition.name,
              _HAND_OFF_ATTEMPTS)
    return False
