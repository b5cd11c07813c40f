"""The balancer's planner (issue 13): which replicas to move so every node carries its
share, as a pure function of the nodes and the partitions, property-tested without etcd.

Input: the nodes (id, rack, whether they may hold replicas: active, or draining for a
decommission) and every partition (replicas in preference order, the leader, its size).
Output: a `Plan` of moves, each a partition's new replica list, and what they cost.

The rules, in priority order:
1. drain: a replica on a node that may not hold replicas (decommissioning, or gone) is
   moved to an active node that does not hold the partition yet;
2. rack spread never gets worse: a move never takes a partition off a rack it would not
   be on afterwards unless another replica covers it (the number of distinct racks of a
   partition never drops), and drains prefer racks the partition does not use;
3. replica counts per active node end within one of each other when racks allow it, then
   bytes: among candidate moves the smallest partition moves first (fewest bytes to copy
   for the same balance);
4. fewest moves: a partition appears in at most one move per plan (its final replica
   list), a replica placed by the plan is not moved again, the smallest partitions move
   first, and a plan on a balanced cluster is empty; `max_moves` bounds a plan (automatic
   balancing runs bounded plans, one after another);
5. leadership: preferred leaders (the first replica) are spread so no node is the
   preferred leader of more than its share, by reordering replica lists (no copy).

A move keeps the replication factor. The reassignment that runs it adds the new replica
first and removes the old one only once the new one is in sync, so the ISR never drops
below what it was (services/coordinator/reassignment.py).

Thread-safety: pure functions over immutable inputs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from brook.structs import TopicPartition

# A balanced cluster: every active node within this many replicas of the mean.
REPLICA_SKEW_MAX: Final = 1


@dataclass(frozen=True, slots=True)
class NodeView:
    """A node as the planner sees it. `accepts` is False for a node being drained."""

    node_id: int
    rack: str = ""
    accepts: bool = True


@dataclass(frozen=True, slots=True)
class PartitionView:
    """A partition: replicas in preference order (the first is the preferred leader)."""

    key: TopicPartition
    replicas: tuple[int, ...]
    size_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Move:
    """One partition's new replica list; `added` replicas copy `size_bytes` each."""

    key: TopicPartition
    old_replicas: tuple[int, ...]
    new_replicas: tuple[int, ...]
    size_bytes: int

    @property
    def added(self) -> tuple[int, ...]:
        return tuple(n for n in self.new_replicas if n not in self.old_replicas)

    @property
    def removed(self) -> tuple[int, ...]:
        return tuple(n for n in self.old_replicas if n not in self.new_replicas)

    @property
    def bytes_to_copy(self) -> int:
        return self.size_bytes * len(self.added)


@dataclass(frozen=True, slots=True)
class NodeShare:
    """What a node holds: replicas, preferred leaderships and bytes."""

    replicas: int = 0
    leaders: int = 0
    size_bytes: int = 0


@dataclass(frozen=True)
class Plan:
    """The moves, in the order to run them, and the shares before and after."""

    moves: tuple[Move, ...]
    before: Mapping[int, NodeShare] = field(default_factory=dict)
    after: Mapping[int, NodeShare] = field(default_factory=dict)

    @property
    def bytes_to_copy(self) -> int:
        return sum(move.bytes_to_copy for move in self.moves)

    @property
    def replica_moves(self) -> int:
        return sum(1 for move in self.moves if move.added)


def shares(partitions: Iterable[PartitionView], nodes: Iterable[int] = ()) -> dict[int, NodeShare]:
    """Replicas, preferred leaderships and bytes per node (every id of `nodes` listed)."""
    replicas: Counter[int] = Counter()
    leaders: Counter[int] = Counter()
    sizes: Counter[int] = Counter()
    for partition in partitions:
        for node in partition.replicas:
            replicas[node] += 1
            sizes[node] += partition.size_bytes
        if partition.replicas:
            leaders[partition.replicas[0]] += 1
    ids = set(nodes) | set(replicas)
    return {n: NodeShare(replicas[n], leaders[n], sizes[n]) for n in sorted(ids)}


def plan(
    nodes: Sequence[NodeView],
    partitions: Sequence[PartitionView],
    *,
    max_moves: int | None = None,
    balance_leaders: bool = True,
) -> Plan:
    """The moves that drain non-accepting nodes, then even out replicas, then leaders."""
    active = {n.node_id: n for n in nodes if n.accepts}
    racks = {n.node_id: n.rack for n in nodes}
    current = {p.key: p.replicas for p in partitions}
    sizes = {p.key: p.size_bytes for p in partitions}
    before = shares(partitions, active)
    if not active:
        return Plan((), before, before)
    state = _State(active, racks, current, sizes)
    state.drain()
    state.balance_replicas()
    if balance_leaders:
        state.balance_leaders()
    moves = [
        Move(key, current[key], replicas, sizes[key])
        for key, replicas in state.assignment.items()
        if replicas != current[key]
    ]
    # Drains first (they restore safety), then the rest, smallest first (fastest gain).
    draining = {n.node_id for n in nodes if not n.accepts}
    moves.sort(key=lambda m: (0 if set(m.removed) & draining else 1, m.size_bytes, m.key))
    if max_moves is not None:
        moves = moves[:max_moves]
    applied = dict(current)
    applied.update({m.key: m.new_replicas for m in moves})
    after_views = [PartitionView(k, r, sizes[k]) for k, r in applied.items()]
    return Plan(tuple(moves), before, shares(after_views, active))


class _State:
    """The assignment being planned; every partition moves at most once."""

    def __init__(
        self,
        active: Mapping[int, NodeView],
        racks: Mapping[int, str],
        current: Mapping[TopicPartition, tuple[int, ...]],
        sizes: Mapping[TopicPartition, int],
    ) -> None:
        self.active = active
        self.racks = racks
        self.sizes = sizes
        self.assignment: dict[TopicPartition, tuple[int, ...]] = dict(current)
        # Replicas this plan adds, per partition: never moved again within the plan.
        self.added: dict[TopicPartition, set[int]] = {}
        self.count: Counter[int] = Counter({n: 0 for n in active})
        self.bytes: Counter[int] = Counter({n: 0 for n in active})
        for key, replicas in current.items():
            for node in replicas:
                if node in active:
                    self.count[node] += 1
                    self.bytes[node] += sizes[key]
        # Per node, the partitions it held when planning began, smallest first (sizes do
        # not change while planning), and how far `_move_one_off` has consumed them: a
        # replica the plan placed is never moved again, so the partitions a node may
        # give away only shrink, and each move scans on from where the last one stopped
        # instead of sorting all partitions again (what made plans quadratic).
        self._candidates: dict[int, list[tuple[int, TopicPartition]]] = {}
        self._cursor: Counter[int] = Counter()

    def _best_target(
        self, replicas: tuple[int, ...], leaving: int, among: Iterable[int] | None = None
    ) -> int | None:
        """The active node (of `among`, default all) best placed to take `leaving`'s
        place, or None: the rack spread does not drop (a new rack first), then fewest
        replicas, fewest bytes, lowest id. (One pass, no sort: it runs once per
        candidate partition.)"""
        racks = self.racks
        used_racks = {racks.get(n, "") for n in replicas if n != leaving}
        spread_now = len(used_racks | {racks.get(leaving, "")}) if leaving in self.active else 0
        best: tuple[bool, int, int, int] | None = None
        for node in self.active if among is None else among:
            if node in replicas:
                continue
            new_rack = racks.get(node, "") not in used_racks
            if len(used_racks) + new_rack < spread_now:
                continue  # the spread would drop
            rank = (not new_rack, self.count[node], self.bytes[node], node)
            if best is None or rank < best:
                best = rank
        return None if best is None else best[3]

    def _replace(self, key: TopicPartition, leaving: int, joining: int) -> None:
        replicas = self.assignment[key]
        self.assignment[key] = tuple(joining if n == leaving else n for n in replicas)
        self.added.setdefault(key, set()).add(joining)
        size = self.sizes[key]
        if leaving in self.active:
            self.count[leaving] -= 1
            self.bytes[leaving] -= size
        self.count[joining] += 1
        self.bytes[joining] += size

    def drain(self) -> None:
        for key in sorted(self.assignment):
            for leaving in self.assignment[key]:
                if leaving in self.active:
                    continue
                target = self._best_target(self.assignment[key], leaving)
                if target is not None:
                    self._replace(key, leaving, target)

    def balance_replicas(self) -> None:
        total = sum(self.count.values())
        if not total:
            return
        ceiling = -(-total // len(self.active))  # ceil(mean)
        floor = total // len(self.active)
        while True:
            heaviest = max(self.active, key=lambda n: (self.count[n], self.bytes[n], -n))
            lightest = min(self.active, key=lambda n: (self.count[n], self.bytes[n], n))
            if self.count[heaviest] - self.count[lightest] <= REPLICA_SKEW_MAX and (
                self.count[heaviest] <= ceiling and self.count[lightest] >= floor
            ):
                return
            if not self._move_one_off(heaviest):
                return

    def _move_one_off(self, heaviest: int) -> bool:
        """Moves the smallest partition of `heaviest` to a lighter node (never a replica
        this plan just placed there); False when none can move (the rack spread forbids
        it)."""
        mine = self._candidates.get(heaviest)
        if mine is None:
            mine = self._candidates[heaviest] = sorted(
                (self.sizes[key], key)
                for key, replicas in self.assignment.items()
                if heaviest in replicas
            )
        # Only nodes at least two replicas lighter can take one (the move must narrow the
        # gap); the best of those for each partition, so a partition is passed over only
        # when none of them may take it (rack spread), not when a heavier node on a new
        # rack would be preferred.
        lighter = [n for n in self.active if self.count[n] + 1 < self.count[heaviest]]
        if not lighter:
            return False
        start = self._cursor[heaviest]
        for index in range(start, len(mine)):
            key = mine[index][1]
            if heaviest not in self.assignment[key] or heaviest in self.added.get(key, ()):
                if index == self._cursor[heaviest]:
                    self._cursor[heaviest] = index + 1  # gone for good: skip it next time
                continue
            target = self._best_target(self.assignment[key], heaviest, lighter)
            if target is not None:
                self._replace(key, heaviest, target)
                return True
        return False

    def balance_leaders(self) -> None:
        """Reorders replica lists so preferred leaderships are spread (no data moves)."""
        leaders: Counter[int] = Counter({n: 0 for n in self.active})
        for replicas in self.assignment.values():
            if replicas:
                leaders[replicas[0]] += 1
        partitions = len(self.assignment)
        share = -(-partitions // len(self.active)) if partitions else 0
        for key in sorted(self.assignment):
            replicas = self.assignment[key]
            if not replicas or leaders[replicas[0]] <= share:
                continue
            best = min(
                (n for n in replicas[1:] if n in self.active),
                key=lambda n: (leaders[n], n),
                default=None,
            )
            if best is None or leaders[best] + 1 > share:
                continue
            leaders[replicas[0]] -= 1
            leaders[best] += 1
            self.assignment[key] = (best, *[n for n in replicas if n != best])
