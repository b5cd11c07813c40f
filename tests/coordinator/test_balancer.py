"""The balancer's planner (issue 13), property-tested: drains never leave a replica on a
draining node, replica counts end within one when racks allow, rack spread never drops,
every partition moves at most once and keeps its replication factor, a balanced cluster
plans nothing, and a new node receives its share."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from brook.services.coordinator.balancer import NodeView, PartitionView, plan, shares
from brook.structs import TopicPartition


def cluster(
    node_count: int, partition_count: int, rf: int, racks: int = 1
) -> tuple[list[NodeView], list[PartitionView]]:
    """Partitions placed round-robin on the first node_count nodes."""
    nodes = [NodeView(i, f"r{i % racks}") for i in range(1, node_count + 1)]
    partitions = [
        PartitionView(
            TopicPartition("t", p),
            tuple(((p + k) % node_count) + 1 for k in range(rf)),
            size_bytes=1000 * (p + 1),
        )
        for p in range(partition_count)
    ]
    return nodes, partitions


def apply(partitions: list[PartitionView], moves: tuple) -> list[PartitionView]:
    new = {m.key: m.new_replicas for m in moves}
    return [PartitionView(p.key, new.get(p.key, p.replicas), p.size_bytes) for p in partitions]


def test_a_new_node_receives_its_share() -> None:
    nodes, partitions = cluster(3, 12, 3)
    nodes.append(NodeView(4, "r0"))
    result = plan(nodes, partitions)
    after = shares(apply(partitions, result.moves), [4])
    assert after[4].replicas == 9  # 36 replicas over 4 nodes
    assert all(s.replicas == 9 for s in result.after.values())
    assert result.replica_moves == 9
    assert result.bytes_to_copy == sum(m.size_bytes for m in result.moves if m.added)
    assert max(s.leaders for s in result.after.values()) <= 3


def test_a_balanced_cluster_plans_nothing() -> None:
    nodes, partitions = cluster(3, 12, 3)
    assert plan(nodes, partitions).moves == ()
    nodes.append(NodeView(4))
    first = plan(nodes, partitions)
    assert plan(nodes, apply(partitions, first.moves)).moves == ()


def test_decommission_moves_every_replica_off() -> None:
    nodes, partitions = cluster(4, 10, 2)
    nodes[3] = NodeView(4, nodes[3].rack, accepts=False)
    result = plan(nodes, partitions)
    moved = apply(partitions, result.moves)
    assert all(4 not in p.replicas for p in moved)
    assert all(len(set(p.replicas)) == 2 for p in moved)
    drains = [m for m in result.moves if 4 in m.removed]
    assert list(result.moves[: len(drains)]) == drains  # drains run first


def test_max_moves_bounds_a_plan() -> None:
    nodes, partitions = cluster(3, 30, 2)
    nodes.append(NodeView(4))
    assert len(plan(nodes, partitions, max_moves=3).moves) == 3


@settings(max_examples=200, deadline=None)
@given(
    node_count=st.integers(2, 7),
    partition_count=st.integers(1, 40),
    rf=st.integers(1, 3),
    racks=st.integers(1, 3),
    new_nodes=st.integers(0, 2),
    drained=st.integers(0, 1),
)
def test_plans_keep_their_invariants(
    node_count: int, partition_count: int, rf: int, racks: int, new_nodes: int, drained: int
) -> None:
    rf = min(rf, node_count)
    nodes, partitions = cluster(node_count, partition_count, rf, racks)
    total = node_count + new_nodes
    nodes += [NodeView(i, f"r{i % racks}") for i in range(node_count + 1, total + 1)]
    if drained and total - 1 >= rf:
        nodes[0] = NodeView(1, nodes[0].rack, accepts=False)
    result = plan(nodes, partitions)
    active = {n.node_id for n in nodes if n.accepts}
    rack_of = {n.node_id: n.rack for n in nodes}
    keys = [m.key for m in result.moves]
    assert len(keys) == len(set(keys))  # each partition moves at most once
    before = {p.key: p.replicas for p in partitions}
    for move in result.moves:
        assert move.old_replicas == before[move.key]
        assert len(move.new_replicas) == len(set(move.new_replicas)) == rf
        assert set(move.new_replicas) <= active
        old_racks = {rack_of[n] for n in move.old_replicas if n in active}
        assert len({rack_of[n] for n in move.new_replicas}) >= len(old_racks)
    moved = apply(partitions, result.moves)
    assert all(set(p.replicas) <= active for p in moved)
    if racks == 1:
        counts = [s.replicas for n, s in result.after.items() if n in active]
        assert max(counts) - min(counts) <= 1, result.after
    # Planning again changes no replica set (only leaders may still be reordered: no data).
    again = plan(nodes, moved)
    assert all(set(m.new_replicas) == set(m.old_replicas) for m in again.moves)
