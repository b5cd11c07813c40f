"""Server-side partition assignors: pure functions from members to partitions.

Every assignor has the same shape:

    assign(members, topic_partitions, current) -> {member_id: {(topic, partition), ...}}

- `members`: member id -> `MemberSubscription` (resolved topic names, rack);
- `topic_partitions`: topic -> partition count, for the topics that exist; a subscribed
  topic missing here is ignored (it does not exist, or was deleted);
- `current`: the previous target assignment, used only by the sticky assignor.

Guarantees (checked by property tests): every partition of a topic that has at least
one subscriber goes to exactly one of its subscribers, no member gets a partition of a
topic it does not subscribe to, and every member id appears in the result (possibly
with an empty set). The result is deterministic: same input, same output.

- `range`: per topic, contiguous ranges of partitions to the subscribers sorted by id
  (balanced within one per topic, not across topics).
- `roundrobin`: all partitions sorted, dealt to subscribers in turn.
- `uniform` (default): sticky. Keeps as much of `current` as balance allows and moves
  the rest; with identical subscriptions the counts differ by at most one, a joining
  member only takes partitions (nobody else gains one) and a leaving member's
  partitions only go to others (nobody else loses one).

Racks are carried for future rack-aware placement; the assignors do not use them yet
because the assignor input has no partition racks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass

from brook.structs import TopicPartition

Assignment = dict[str, set[TopicPartition]]

DEFAULT_ASSIGNOR = "uniform"

# Bounds the balancing pass of the heterogeneous sticky assignor. Every move strictly
# lowers the sum of squared member loads, so the pass ends on its own; the bound is a
# guard against a programming error turning it into a hang.
_BALANCE_MOVES_MAX_FACTOR = 4


@dataclass(frozen=True)
class MemberSubscription:
    """What a member consumes: resolved topic names (regex already applied) and its rack."""

    topics: frozenset[str]
    rack: str = ""


Assignor = Callable[
    [Mapping[str, MemberSubscription], Mapping[str, int], Mapping[str, Set[TopicPartition]]],
    Assignment,
]


def _subscribers(
    members: Mapping[str, MemberSubscription], topic_partitions: Mapping[str, int]
) -> dict[str, list[str]]:
    """Topic -> sorted ids of the members subscribed to it, for existing topics only."""
    result: dict[str, list[str]] = {}
    for member_id in sorted(members):
        for topic in members[member_id].topics:
            if topic_partitions.get(topic, 0) > 0:
                result.setdefault(topic, []).append(member_id)
    return result


def range_assign(
    members: Mapping[str, MemberSubscription],
    topic_partitions: Mapping[str, int],
    current: Mapping[str, Set[TopicPartition]],
) -> Assignment:
    """Per topic, the first `count % n` subscribers (by id) get one partition more."""
    del current  # range is not sticky
    result: Assignment = {member_id: set() for member_id in members}
    for topic, subscribers in sorted(_subscribers(members, topic_partitions).items()):
        count = topic_partitions[topic]
        base, extra = divmod(count, len(subscribers))
        start = 0
        for index, member_id in enumerate(subscribers):
            size = base + (1 if index < extra else 0)
            result[member_id].update(TopicPartition(topic, p) for p in range(start, start + size))
            start += size
    return result


def round_robin_assign(
    members: Mapping[str, MemberSubscription],
    topic_partitions: Mapping[str, int],
    current: Mapping[str, Set[TopicPartition]],
) -> Assignment:
    """Partitions sorted by (topic, index) are dealt to subscribers in id order, in turn."""
    del current  # round-robin is not sticky
    result: Assignment = {member_id: set() for member_id in members}
    ring = sorted(members)
    if not ring:
        return result
    position = 0
    for topic in sorted(_subscribers(members, topic_partitions)):
        for partition in range(topic_partitions[topic]):
            # The next member in the ring that subscribes to this topic; one exists.
            for _ in range(len(ring)):
                member_id = ring[position % len(ring)]
                position += 1
                if topic in members[member_id].topics:
                    result[member_id].add(TopicPartition(topic, partition))
                    break
    return result


def _kept_partitions(
    members: Mapping[str, MemberSubscription],
    topic_partitions: Mapping[str, int],
    current: Mapping[str, Set[TopicPartition]],
) -> Assignment:
    """The part of `current` still valid: existing partition, subscribed, claimed once."""
    kept: Assignment = {member_id: set() for member_id in members}
    claimed: set[TopicPartition] = set()
    for member_id in sorted(members):
        topics = members[member_id].topics
        for tp in sorted(current.get(member_id, ())):
            topic, partition = tp
            if (
                topic in topics
                and 0 <= partition < topic_partitions.get(topic, 0)
                and tp not in claimed
            ):
                kept[member_id].add(tp)
                claimed.add(tp)
    return kept


def uniform_assign(
    members: Mapping[str, MemberSubscription],
    topic_partitions: Mapping[str, int],
    current: Mapping[str, Set[TopicPartition]],
) -> Assignment:
    """Sticky and balanced: keep what balance allows, move the rest (see module doc)."""
    if not members:
        return {}
    subscriptions = {frozenset(sub.topics & topic_partitions.keys()) for sub in members.values()}
    if len(subscriptions) == 1:
        return _uniform_homogeneous(members, topic_partitions, current)
    return _uniform_heterogeneous(members, topic_partitions, current)


def _uniform_homogeneous(
    members: Mapping[str, MemberSubscription],
    topic_partitions: Mapping[str, int],
    current: Mapping[str, Set[TopicPartition]],
) -> Assignment:
    """Every member subscribes to the same topics: exact quotas, fill from the free pool."""
    kept = _kept_partitions(members, topic_partitions, current)
    topics = next(iter(members.values())).topics & topic_partitions.keys()
    all_partitions = [
        TopicPartition(t, p) for t in sorted(topics) for p in range(topic_partitions[t])
    ]
    base, extra = divmod(len(all_partitions), len(members))
    # The members that already hold the most get the `extra` larger quotas, so nobody
    # gives up a partition only to be handed another one.
    by_load = sorted(members, key=lambda m: (-len(kept[m]), m))
    quota = {m: base + (1 if i < extra else 0) for i, m in enumerate(by_load)}
    free: list[TopicPartition] = []
    for member_id in sorted(members):
        surplus = len(kept[member_id]) - quota[member_id]
        if surplus > 0:
            # Give up the highest partitions: deterministic, and keeps low ones in place.
            for tp in sorted(kept[member_id])[-surplus:]:
                kept[member_id].discard(tp)
                free.append(tp)
    taken = set().union(*kept.values(), free)
    free.extend(tp for tp in all_partitions if tp not in taken)
    free.sort()
    cursor = 0
    for member_id in sorted(members):
        need = quota[member_id] - len(kept[member_id])
        if need > 0:
            kept[member_id].update(free[cursor : cursor + need])
            cursor += need
    assert cursor == len(free), "quotas must add up to the partition count"
    return kept


def _uniform_heterogeneous(
    members: Mapping[str, MemberSubscription],
    topic_partitions: Mapping[str, int],
    current: Mapping[str, Set[TopicPartition]],
) -> Assignment:
    """Different subscriptions: keep current, place free partitions on the least loaded
    eligible member (scarce topics first), then move partitions from a member to an
    eligible one with at least two fewer until no such move exists."""
    kept = _kept_partitions(members, topic_partitions, current)
    subscribers = _subscribers(members, topic_partitions)
    owner: dict[TopicPartition, str] = {tp: m for m, tps in kept.items() for tp in tps}
    # Topics with the fewest subscribers first: their partitions have the least choice.
    for topic in sorted(subscribers, key=lambda t: (len(subscribers[t]), t)):
        eligible = subscribers[topic]
        for partition in range(topic_partitions[topic]):
            tp = TopicPartition(topic, partition)
            if tp in owner:
                continue
            member_id = min(eligible, key=lambda m: (len(kept[m]), m))
            kept[member_id].add(tp)
            owner[tp] = member_id
    moves_max = _BALANCE_MOVES_MAX_FACTOR * (len(owner) + 1) * (len(members) + 1)
    moves = 0
    moved = True
    while moved and moves < moves_max:
        moved = False
        for member_id in sorted(members, key=lambda m: (-len(kept[m]), m)):
            for tp in sorted(kept[member_id], reverse=True):
                eligible = subscribers[tp[0]]
                target = min(eligible, key=lambda m: (len(kept[m]), m))
                if len(kept[target]) + 1 < len(kept[member_id]):
                    kept[member_id].discard(tp)
                    kept[target].add(tp)
                    moves += 1
                    moved = True
    return kept


ASSIGNORS: dict[str, Assignor] = {
    "uniform": uniform_assign,
    "range": range_assign,
    "roundrobin": round_robin_assign,
}


def get_assignor(name: str) -> Assignor:
    """The assignor called `name` ("" means the default); KeyError for unknown names."""
    return ASSIGNORS[name or DEFAULT_ASSIGNOR]
