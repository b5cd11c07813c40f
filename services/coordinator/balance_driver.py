"""The balancer's driver (issue 13): runs `balancer.plan` on the cluster and starts its
moves through the reassignment machinery, bounded, while this coordinator is active.

Thin I/O around `balance.py`'s decisions: on every metadata change (a node joins, a move
completes, a node is decommissioned) and every `interval_s`, when `balance.needs_pass`
says the cluster is off balance, it plans and starts `balance.moves_to_start` of the plan
with one compare-and-swap per partition (`Controller.commit` with `reassignment.start`).
The moves live in the partition records, so a coordinator that takes over finishes them
(the controller's reassignment loop) and its own driver plans the rest. Decommissioning
is the same pass: a decommissioning node accepts nothing, so the plan drains it.

`enabled` (`--auto-balance`, default on) turns the automatic passes on; the
RebalancePartitions call plans (and with execute starts) on demand either way.
Hysteresis: a pass starts balancing when `needs_pass` says so and keeps planning after
each move until the plan is empty, so a cluster ends balanced, not merely within the
threshold.

Partition sizes (so plans report bytes_to_copy and balance bytes): each live node's
DescribeLogDirs, asked at most every `SIZES_TTL_S` (reassign_progress.gather_log_dirs,
bounded concurrency and timeouts); a partition's size is its leader's log size, or the
largest replica's when the leader did not answer; 0 when no replica answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from brook.clock import SYSTEM_CLOCK, Clock
from brook.errors import BrookError
from brook.services.coordinator import balance, balancer, reassignment
from brook.services.coordinator.balancer import Move
from brook.services.coordinator.controller import Controller
from brook.services.coordinator.limits import (
    BALANCE_INTERVAL_S,
    BALANCE_MAX_MOVES_IN_FLIGHT_DEFAULT,
    BALANCE_SKEW_THRESHOLD_DEFAULT,
    REASSIGN_SCAN_INTERVAL_S_MIN,
)
from brook.services.coordinator.reassign_progress import LogDirs, gather_log_dirs
from brook.services.metadata.model import PartitionRecord
from brook.structs import TopicPartition

log = logging.getLogger("brook.coordinator.balance")

# How long partition sizes asked of the nodes are reused.
SIZES_TTL_S = 10.0


def partition_sizes(
    records: dict[TopicPartition, PartitionRecord], dirs: LogDirs
) -> dict[TopicPartition, int]:
    """Each partition's size: its leader's log, else its largest replica's (see above)."""
    sizes: dict[TopicPartition, int] = {}
    for key, record in records.items():
        leader = dirs.get(record.leader, {}).get(key)
        if leader is not None:
            sizes[key] = leader.size_bytes
            continue
        found = [d[key].size_bytes for n in record.replicas if key in (d := dirs.get(n, {}))]
        if found:
            sizes[key] = max(found)
    return sizes


class BalanceDriver:
    """Plans and starts balancing moves while the controller is active."""

    def __init__(
        self,
        controller: Controller,
        *,
        enabled: bool = True,
        max_moves_in_flight: int = BALANCE_MAX_MOVES_IN_FLIGHT_DEFAULT,
        skew_threshold: int = BALANCE_SKEW_THRESHOLD_DEFAULT,
        interval_s: float = BALANCE_INTERVAL_S,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if max_moves_in_flight < 1:
            raise ValueError("max_moves_in_flight must be at least 1")
        self.controller = controller
        self.cache = controller.cache
        self.enabled = enabled
        self.max_moves_in_flight = max_moves_in_flight
        self.skew_threshold = skew_threshold
        self.interval_s = interval_s
        self.moves_started = 0
        # True from a pass that found the cluster off balance until a plan comes back empty.
        self.balancing = False
        self._changed = asyncio.Event()
        self._planning = asyncio.Lock()
        self._dirs: LogDirs = {}
        self._dirs_at: float | None = None
        self._refresh: asyncio.Task[None] | None = None  # owned; cancelled when run ends
        self._clock = clock
        if enabled:
            controller.add_background(self.run)

    # -- the view ----------------------------------------------------------------------
    def records(self) -> dict[TopicPartition, PartitionRecord]:
        return {
            TopicPartition(*key): record
            for key, record in self.cache.partitions.items()
            if key[0] in self.cache.topics
        }

    def plan(self) -> balancer.Plan:
        """The whole plan for the cluster as the cache shows it now (on the caller's
        thread: tests and small clusters; the coordinator uses `plan_async`)."""
        records = self.records()
        return balance.plan_for(
            self.cache.nodes, self.cache.node_states, list(records.values()),
            partition_sizes(records, self._dirs),
        )  # fmt: skip

    def known_node_sizes(self) -> dict[int, int]:
        """Each node's replica bytes as the last DescribeLogDirs round found them (no call;
        empty before the first plan)."""
        return {node: sum(d.size_bytes for d in dirs.values())
                for node, dirs in self._dirs.items()}  # fmt: skip

    async def log_dirs(self, *, wait: bool = True) -> LogDirs:
        """Every live node's replicas and sizes, asked again after SIZES_TTL_S. With
        `wait` off (the automatic passes) the sizes known now are answered at once and a
        stale set is refreshed in the background: a hung node (its DescribeLogDirs waits
        out its timeout) must not hold a pass back, or the pass misses a node that is
        live only briefly."""
        now = self._clock.monotonic_s()
        stale = self._dirs_at is None or now - self._dirs_at >= SIZES_TTL_S
        if stale and (self._refresh is None or self._refresh.done()):
            self._refresh = asyncio.get_running_loop().create_task(
                self._refresh_dirs(), name="balancer-log-dirs"
            )
        if stale and wait and self._refresh is not None:
            await asyncio.shield(self._refresh)
        return self._dirs

    async def _refresh_dirs(self) -> None:
        try:
            self._dirs = await gather_log_dirs(
                dict(self.cache.nodes), [(node_id, "") for node_id in self.cache.nodes]
            )
        except Exception:  # sizes are an aid to the plan: keep the last ones
            log.warning("partition sizes could not be refreshed", exc_info=True)
        self._dirs_at = self._clock.monotonic_s()

    async def plan_async(self, *, wait_for_sizes: bool = True) -> balancer.Plan:
        """`plan`, computed off the event loop: the planner takes up to seconds on tens of
        thousands of partitions (bench/planner_bench.py: 0.6 s for 5,000 partitions on
        10 nodes, 2 s for 30,000 on 30), and the loop must keep the lease alive. Its
        input is copied on the loop (immutable views), so the cache may change meanwhile.
        One plan at a time."""
        dirs = await self.log_dirs(wait=wait_for_sizes)
        records = self.records()
        views, partitions = balance.planner_input(
            self.cache.nodes, self.cache.node_states, list(records.values()),
            partition_sizes(records, dirs),
        )  # fmt: skip
        async with self._planning:
            return await asyncio.to_thread(balancer.plan, views, partitions)

    # -- acting ------------------------------------------------------------------------
    async def run(self) -> None:
        """Automatic passes until cancelled (the controller cancels it on lease loss)."""
        self.cache.add_listener(self._changed.set)
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), self.interval_s)
                self._changed.clear()
                try:
                    started = await self.run_pass()
                    if started:
                        log.info("balancer started %d moves", started)
                except BrookError as error:
                    log.warning("balancer pass failed: %s", error)
                    if error.reason == "NOT_COORDINATOR":
                        return
                except Exception:  # a bug here must not stop the controller's other loops
                    log.exception("balancer pass failed")
                # Rate limit, as the reassignment loop: ISR changes come often.
                await asyncio.sleep(REASSIGN_SCAN_INTERVAL_S_MIN)
        finally:
            self.cache.remove_listener(self._changed.set)
            if self._refresh is not None:  # a refresh outliving the term is not needed
                self._refresh.cancel()

    async def run_pass(self) -> int:
        """One automatic pass: plans when off balance, starts what the bound allows."""
        records = self.records()
        # Hysteresis: the threshold starts balancing, an empty plan ends it.
        self.balancing = self.balancing or balance.needs_pass(
            self.cache.nodes,
            self.cache.node_states,
            records.values(),
            skew_threshold=self.skew_threshold,
        )
        if not self.balancing:
            return 0
        plan = await self.plan_async(wait_for_sizes=False)
        records = self.records()  # the plan took a while: start from the newest view
        if not plan.moves:
            self.balancing = False
            log.info("balancer: the cluster is balanced")
            return 0
        moves = balance.moves_to_start(
            plan, records, frozenset(self.cache.nodes), max_in_flight=self.max_moves_in_flight
        )
        return await self.start(moves)

    async def start(self, moves: list[Move]) -> int:
        """Starts `moves` (one CAS each); returns how many were written."""
        started = 0
        for move in moves:
            target = move.new_replicas

            def decide(
                record: PartitionRecord, target: tuple[int, ...] = target
            ) -> PartitionRecord | None:
                return reassignment.start(record, target, frozenset(self.cache.nodes)).record

            written, _ = await self.controller.commit(move.key, decide, cause="reassignment")
            if written is not None:
                started += 1
                log.info(
                    "balancer: %s-%d %s -> %s", move.key.topic, move.key.partition,
                    list(move.old_replicas), list(move.new_replicas),
                )  # fmt: skip
        self.moves_started += started
        if started:
            self.controller.request_preferred_election()
        return started
