"""`Replica`: one partition replica on this node, the driver around its pure core.

It binds the `Partition` state machine to its log (`LogHandle`) and to the futures that
wait on it (`OffsetWaiters`), and carries out what the core decides: after every step
it takes the core's `Ready` and tells the waiters (`settle`), and it runs the follower's
log changes (append the leader's batches, truncate) under the partition's lock. The
leader's request paths are in `data_path.py`.

Thread-safety: one event loop; engine calls hold the log's lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from brook.services.common.metrics import node_metrics
from brook.services.metadata.model import PartitionRecord
from brook.services.node.batches import BatchInfo, read_batch_info
from brook.services.node.partition import Change, IsrProposal, Partition, Role
from brook.services.node.storage_log import AppendRun, LogHandle
from brook.services.node.waiters import OffsetWaiters
from brook.storage import AppendBatch
from brook.structs import TopicPartition


@dataclass(frozen=True, slots=True)
class WaiterLimits:
    """How many callers may wait on one partition, per kind (why: bounded memory)."""

    produce: int = 1024
    fetch: int = 1024
    replica: int = 64


class Replica:
    """A partition's core, log and waiters; every step ends with `settle`."""

    def __init__(self, partition: Partition, log: LogHandle, limits: WaiterLimits) -> None:
        self.partition = partition
        self.log = log
        # acks=all produces: resolved when the HW passes their last offset.
        self.produce_waiters = OffsetWaiters("acks=all produce", limits.produce)
        # Consumer long-polls: resolved when the HW passes their fetch offset.
        self.fetch_waiters = OffsetWaiters("fetch", limits.fetch)
        # Follower long-polls: resolved when the log end passes their fetch offset
        # (followers replicate uncommitted data).
        self.replica_waiters = OffsetWaiters("replica fetch", limits.replica)

    @property
    def key(self) -> TopicPartition:
        return self.partition.key

    def settle(self) -> None:
        """Tells the waiters what the core's last steps decided."""
        ready = self.partition.take_ready()
        if ready.role_reset is not None:
            self.produce_waiters.fail_all(ready.role_reset)
            # Long-polls re-read and get the new role's answer.
            self.fetch_waiters.wake_all()
            self.replica_waiters.wake_all()
        if ready.isr_below_min is not None:
            self.produce_waiters.fail_all(ready.isr_below_min)
        if ready.high_watermark is not None:
            self.fetch_waiters.advance(ready.high_watermark)
            self.produce_waiters.advance(ready.high_watermark)

    def log_end_offset_for(self, fetch_offset: int) -> int:
        """Where a follower long-poll at fetch_offset stands: the log end while we lead;
        past it otherwise, so the caller re-reads and gets the new role's answer."""
        if not self.partition.is_leader:
            return fetch_offset + 1
        return self.log.log_end_offset

    @property
    def log_offline(self) -> bool:
        """The engine took the log offline (an I/O error, e.g. its directory is gone):
        what it says about its end is memory, not disk, so it neither fetches nor leads."""
        return self.log.plog.closed

    def log_grew(self) -> None:
        self.replica_waiters.advance(self.log.log_end_offset)

    # -- metadata steps ----------------------------------------------------------------
    def apply_record(self, record: PartitionRecord, revision: int) -> Change:
        change = self.partition.apply_record(record, revision)
        self.settle()
        role = _ROLE_OF_CHANGE.get(change)
        if role is not None:
            node_metrics().role_change(role)
        return change

    def fence(self) -> None:
        self.partition.fence()
        self.settle()

    def leadership_restored(self) -> None:
        self.partition.leadership_restored()
        self.settle()

    def finish_isr_change(self, proposal: IsrProposal) -> None:
        self.partition.finish_isr_change(proposal)
        self.settle()

    def close(self) -> None:
        self.partition.close()
        self.settle()

    # -- follower steps (the fetcher) --------------------------------------------------
    async def append_replicated(
        self, payloads: Sequence[bytes], leader_high_watermark: int, generation: int
    ) -> int:
        """Appends the leader's batches verbatim at their offsets and takes its HW;
        returns how many were appended (0 when the role moved on meanwhile)."""
        infos = [read_batch_info(payload) for payload in payloads]
        async with self.log.lock:
            if self.partition.generation != generation:
                return 0
            wanted = self.partition.follower_batches_to_append(infos)
            await self.log.append_async(epoch_runs(payloads, infos, wanted))
            if self.partition.generation != generation:
                return 0
            self.partition.update_follower_high_watermark(leader_high_watermark)
            self.settle()
        return len(wanted)

    async def truncate_to(self, offset: int, why: str) -> None:
        """Truncates (caller holds the lock); the core caps its HW to what is left."""
        await self.log.truncate_to_async(offset, why)
        self.partition.after_truncation()
        self.settle()

    async def restart_at(self, offset: int, why: str) -> None:
        """Empties the log and restarts it at `offset` (caller holds the lock)."""
        await self.log.restart_at_async(offset, why)
        self.partition.after_truncation()
        self.settle()


_ROLE_OF_CHANGE = {
    Change.BECAME_LEADER: Role.LEADER.value,
    Change.BECAME_FOLLOWER: Role.FOLLOWER.value,
    Change.STOPPED: Role.NONE.value,
}


def epoch_runs(
    payloads: Sequence[bytes], infos: Sequence[BatchInfo], wanted: Sequence[int]
) -> list[AppendRun]:
    """The wanted batches grouped into runs of one leader epoch (one engine call each)."""
    runs: list[AppendRun] = []
    for index in wanted:
        info = infos[index]
        batch = AppendBatch(payloads[index], info.record_count, info.max_timestamp_ms)
        if runs and runs[-1].leader_epoch == info.leader_epoch:
            runs[-1].batches.append(batch)
        else:
            runs.append(AppendRun(info.base_offset, info.leader_epoch, [batch]))
    return runs
