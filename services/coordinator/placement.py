"""Replica placement: which nodes hold each new partition, and which one leads it.

A pure function of the live nodes and their current load, so it is property-tested
without etcd. The rules, in priority order, for each replica slot of each partition:

1. never two replicas of a partition on one node;
2. spread across racks: prefer a node whose rack the partition does not use yet, so a
   partition spans min(replication_factor, rack count) racks;
3. even load: prefer the node holding the fewest replicas (existing + placed so far);
4. then a rotating tie-break so equal nodes take turns.

The first replica is the preferred leader: the node leading the fewest partitions among
the replication_factor least loaded ones. Followers break replica-count ties towards
nodes that already lead more, which keeps leaderless nodes eligible for the next
partition. Without racks and from an empty cluster this keeps both replica and leader
counts within one of each other (checked by the property tests).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from brook.services.metadata.model import NodeInfo


@dataclass(frozen=True)
class NodeLoad:
    """What a node carries now: replicas placed on it and partitions it leads."""

    replicas: int = 0
    leaders: int = 0


def current_load(
    replica_lists: Sequence[Sequence[int]], leaders: Sequence[int]
) -> dict[int, NodeLoad]:
    """Load per node id from existing partitions' replica lists and leaders."""
    replicas: dict[int, int] = {}
    leading: dict[int, int] = {}
    for replica_list in replica_lists:
        for node_id in replica_list:
            replicas[node_id] = replicas.get(node_id, 0) + 1
    for leader in leaders:
        if leader >= 0:
            leading[leader] = leading.get(leader, 0) + 1
    return {
        node_id: NodeLoad(replicas.get(node_id, 0), leading.get(node_id, 0))
        for node_id in set(replicas) | set(leading)
    }


def place_replicas(
    partition_count: int,
    replication_factor: int,
    nodes: Sequence[NodeInfo],
    load: Mapping[int, NodeLoad] | None = None,
) -> list[tuple[int, ...]]:
    """Replica lists (preferred leader first) for `partition_count` new partitions.

    Raises ValueError when there are fewer live nodes than `replication_factor`, or the
    counts are not positive (callers validate first and report INVALID_* errors).
    """
    if partition_count < 0 or replication_factor < 1:
        raise ValueError("partition_count must be >= 0 and replication_factor >= 1")
    by_id = {node.node_id: node for node in nodes}
    if len(by_id) < replication_factor:
        raise ValueError(
            f"replication factor {replication_factor} needs that many live nodes;"
            f" {len(by_id)} are live"
        )
    node_ids = sorted(by_id)
    replica_load = {n: (load or {}).get(n, NodeLoad()).replicas for n in node_ids}
    leader_load = {n: (load or {}).get(n, NodeLoad()).leaders for n in node_ids}
    position = {n: i for i, n in enumerate(node_ids)}
    result: list[tuple[int, ...]] = []
    for partition in range(partition_count):

        def rotation(node_id: int, partition: int = partition) -> int:
            # Equally ranked nodes take turns, partition by partition.
            return (position[node_id] - partition) % len(node_ids)

        # The leader comes from the nodes the replica rule could pick (the RF least
        # loaded), choosing the one leading the fewest partitions.
        threshold = sorted(replica_load.values())[replication_factor - 1]
        leader = min(
            (n for n in node_ids if replica_load[n] <= threshold),
            key=lambda n: (leader_load[n], replica_load[n], rotation(n)),
        )
        chosen = [leader]
        racks_used = {by_id[leader].rack}
        for _ in range(replication_factor - 1):
            # Followers: a new rack first, then the fewest replicas; among equals, the node
            # leading the MOST partitions, which keeps nodes that still need leadership in
            # the least-loaded tier where the leader rule can pick them next time.
            follower = min(
                (n for n in node_ids if n not in chosen),
                key=lambda n: (
                    0 if by_id[n].rack not in racks_used else 1,
                    replica_load[n],
                    -leader_load[n],
                    rotation(n),
                ),
            )
            chosen.append(follower)
            racks_used.add(by_id[follower].rack)
        for node_id in chosen:
            replica_load[node_id] += 1
        leader_load[leader] += 1
        result.append(tuple(chosen))
    return result
