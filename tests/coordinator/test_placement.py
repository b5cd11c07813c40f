"""Replica placement properties (pure function; hypothesis generates clusters)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brook.services.coordinator.placement import NodeLoad, current_load, place_replicas
from brook.services.metadata.model import NodeInfo


@st.composite
def clusters(draw: st.DrawFn, racks: bool) -> tuple[list[NodeInfo], int, int]:
    node_count = draw(st.integers(1, 12))
    ids = draw(
        st.lists(st.integers(0, 1000), min_size=node_count, max_size=node_count, unique=True)
    )
    rack_count = draw(st.integers(1, 4)) if racks else 1
    nodes = [
        NodeInfo(
            node_id,
            f"h{node_id}:1",
            rack=f"rack-{draw(st.integers(0, rack_count - 1))}" if racks else "",
        )
        for node_id in ids
    ]
    factor = draw(st.integers(1, node_count))
    partitions = draw(st.integers(0, 60))
    return nodes, factor, partitions


@settings(max_examples=200, deadline=None)
@given(clusters(racks=True))
def test_replicas_are_distinct_live_and_rack_spread(case: tuple[list[NodeInfo], int, int]) -> None:
    """Every partition gets RF distinct live nodes spanning min(RF, racks) racks."""
    nodes, factor, partitions = case
    racks = {n.node_id: n.rack for n in nodes}
    placed = place_replicas(partitions, factor, nodes)
    assert len(placed) == partitions
    for replicas in placed:
        assert len(replicas) == factor
        assert len(set(replicas)) == factor
        assert set(replicas) <= set(racks)
        assert len({racks[r] for r in replicas}) == min(factor, len(set(racks.values())))


@settings(max_examples=200, deadline=None)
@given(clusters(racks=False))
def test_load_is_even_without_racks(case: tuple[list[NodeInfo], int, int]) -> None:
    """Without racks, replica counts per node differ by at most one, and so do leader
    (first replica) counts."""
    nodes, factor, partitions = case
    placed = place_replicas(partitions, factor, nodes)
    replica_counts = {n.node_id: 0 for n in nodes}
    leader_counts = {n.node_id: 0 for n in nodes}
    for replicas in placed:
        leader_counts[replicas[0]] += 1
        for r in replicas:
            replica_counts[r] += 1
    assert max(replica_counts.values()) - min(replica_counts.values()) <= 1
    assert max(leader_counts.values()) - min(leader_counts.values()) <= 1


@settings(max_examples=100, deadline=None)
@given(clusters(racks=False), st.integers(0, 30))
def test_new_partitions_fill_the_least_loaded_nodes(
    case: tuple[list[NodeInfo], int, int], existing: int
) -> None:
    """Placing in two steps (existing load passed in) is as even as placing at once: a
    new node (no load) gets the new replicas first."""
    nodes, factor, partitions = case
    first = place_replicas(existing, factor, nodes[:-1] if len(nodes) > factor else nodes)
    load = current_load(first, [r[0] for r in first])
    second = place_replicas(partitions, factor, nodes, load)
    counts = {n.node_id: load.get(n.node_id, NodeLoad()).replicas for n in nodes}
    for replicas in second:
        for r in replicas:
            counts[r] += 1
    spread_before = max(load.get(n.node_id, NodeLoad()).replicas for n in nodes) - min(
        load.get(n.node_id, NodeLoad()).replicas for n in nodes
    )
    # Greedy filling never makes the spread worse, and ends within one when it can.
    assert max(counts.values()) - min(counts.values()) <= max(spread_before, 1)


def test_too_few_nodes_is_an_error() -> None:
    """Asking for more replicas than live nodes raises (the servicer reports it)."""
    with pytest.raises(ValueError):
        place_replicas(1, 3, [NodeInfo(1, "a:1"), NodeInfo(2, "b:1")])


def test_two_racks_alternate() -> None:
    """RF 2 over two racks puts one replica in each rack for every partition."""
    nodes = [NodeInfo(i, f"h{i}:1", rack="a" if i <= 2 else "b") for i in range(1, 5)]
    for replicas in place_replicas(8, 2, nodes):
        assert {nodes[r - 1].rack for r in replicas} == {"a", "b"}
