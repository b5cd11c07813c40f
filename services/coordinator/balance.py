"""What automatic balancing and decommissioning decide (issue 13), as pure functions of
the cluster's records; `balance_driver.py` is the I/O around them.

- `node_statuses`: each node's state for `brook node list`: active, decommissioning
  (draining, marked by an operator), drained (decommissioning and holding nothing: safe to
  remove), offline (not registered, not decommissioned).
- `planner_input`: the balancer's view of the cluster. A decommissioning node does not
  accept replicas; an offline node that was not decommissioned keeps its replicas (a
  restarting node is not drained) but receives none. A partition being moved counts on
  its target replicas.
- `needs_pass`: whether the cluster is off balance enough to start balancing: a
  decommissioning node still holds replicas, a live active node holds nothing while
  another holds two or more (a node joined), or live active nodes differ by more than
  `skew_threshold` replicas. Once started, the driver runs until the plan is empty.
- `moves_to_start`: a plan's moves the driver may start now: none that touches a partition
  already moving, none that adds an offline node, at most `max_in_flight` copying moves
  in flight (reordering moves copy nothing and finish at once, so they are not counted).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from brook.services.coordinator import balancer, reassignment
from brook.services.coordinator.balancer import Move, NodeView, PartitionView
from brook.services.metadata.model import (
    NODE_STATE_DECOMMISSIONING,
    NodeInfo,
    NodeStateRecord,
    PartitionRecord,
)
from brook.structs import TopicPartition

STATUS_ACTIVE = "active"
STATUS_DECOMMISSIONING = "decommissioning"
STATUS_DRAINED = "drained"
STATUS_OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """One node as `brook node list` shows it."""

    node_id: int
    status: str
    live: bool
    address: str = ""
    rack: str = ""
    replicas: int = 0
    leaders: int = 0
    size_bytes: int = 0


def draining(states: Mapping[int, NodeStateRecord]) -> frozenset[int]:
    return frozenset(n for n, s in states.items() if s.state == NODE_STATE_DECOMMISSIONING)


def node_statuses(
    nodes: Mapping[int, NodeInfo],
    states: Mapping[int, NodeStateRecord],
    records: Iterable[PartitionRecord],
    sizes: Mapping[int, int] | None = None,
) -> list[NodeStatus]:
    """Every node that is live, has a state, or holds a replica; by id."""
    replicas: Counter[int] = Counter()
    leaders: Counter[int] = Counter()
    for record in records:
        for node in record.replicas:
            replicas[node] += 1
        if record.leader in nodes:
            leaders[record.leader] += 1
    leaving = draining(states)
    result = []
    for node_id in sorted(set(nodes) | set(states) | set(replicas)):
        info = nodes.get(node_id)
        if node_id in leaving:
            status = STATUS_DRAINED if not replicas[node_id] else STATUS_DECOMMISSIONING
        else:
            status = STATUS_ACTIVE if info is not None else STATUS_OFFLINE
        result.append(
            NodeStatus(
                node_id=node_id,
                status=status,
                live=info is not None,
                address=info.address if info else "",
                rack=info.rack if info else "",
                replicas=replicas[node_id],
                leaders=leaders[node_id],
                size_bytes=(sizes or {}).get(node_id, 0),
            )
        )
    return result


def planner_input(
    nodes: Mapping[int, NodeInfo],
    states: Mapping[int, NodeStateRecord],
    records: Iterable[PartitionRecord],
    sizes: Mapping[TopicPartition, int] | None = None,
) -> tuple[list[NodeView], list[PartitionView]]:
    """The balancer's nodes and partitions (see the module docstring)."""
    leaving = draining(states)
    kept = [
        r
        for r in records
        if all(n in nodes or n in leaving for n in reassignment.target_replicas(r))
    ]
    racks = {n: info.rack for n, info in nodes.items()}
    views = [
        NodeView(node_id, racks.get(node_id, ""), accepts=node_id not in leaving)
        for node_id in sorted(set(nodes) | leaving)
    ]
    partitions = [
        PartitionView(
            TopicPartition(r.topic, r.partition),
            reassignment.target_replicas(r),
            (sizes or {}).get(TopicPartition(r.topic, r.partition), 0),
        )
        for r in kept
    ]
    return views, partitions


def needs_pass(
    nodes: Mapping[int, NodeInfo],
    states: Mapping[int, NodeStateRecord],
    records: Iterable[PartitionRecord],
    *,
    skew_threshold: int,
) -> bool:
    """True when a decommissioning node holds replicas, a live active node holds none
    while another holds two or more (a node joined), or live active nodes' replica
    counts differ by more than `skew_threshold`. (The driver, once started, runs until
    the plan is empty, so the threshold only decides when balancing starts: a manual
    reassignment that leaves a skew within it is not undone.)"""
    leaving = draining(states)
    counts: Counter[int] = Counter({n: 0 for n in nodes if n not in leaving})
    for record in records:
        for node in reassignment.target_replicas(record):
            if node in leaving:
                return True
            if node in counts:
                counts[node] += 1
    if len(counts) < 2:
        return False
    low, high = min(counts.values()), max(counts.values())
    return high - low > skew_threshold or (low == 0 and high >= 2)


def moves_to_start(
    plan: balancer.Plan,
    records: Mapping[TopicPartition, PartitionRecord],
    live: Collection[int],
    *,
    max_in_flight: int,
) -> list[Move]:
    """The plan's moves to start now, in plan order (see the module docstring)."""
    in_flight = sum(1 for r in records.values() if reassignment.is_reassigning(r))
    room = max(0, max_in_flight - in_flight)
    chosen: list[Move] = []
    for move in plan.moves:
        record = records.get(move.key)
        if record is None or reassignment.is_reassigning(record):
            continue
        if record.replicas != move.old_replicas:
            continue  # planned on an older view
        if any(n not in live for n in move.added):
            continue
        if move.added:
            if room <= 0:
                continue
            room -= 1
        chosen.append(move)
    return chosen


def plan_for(
    nodes: Mapping[int, NodeInfo],
    states: Mapping[int, NodeStateRecord],
    records: Sequence[PartitionRecord],
    sizes: Mapping[TopicPartition, int] | None = None,
) -> balancer.Plan:
    """The whole plan for the cluster as it is (no bound: callers filter)."""
    views, partitions = planner_input(nodes, states, records, sizes)
    return balancer.plan(views, partitions)
