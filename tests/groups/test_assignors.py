"""Property tests of the server-side assignors (pure functions, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brook.services.groups.assignors import (
    ASSIGNORS,
    Assignment,
    MemberSubscription,
    TopicPartition,
    range_assign,
    uniform_assign,
)

TOPICS = ["a", "b", "c", "d"]

topic_partitions_strategy = st.dictionaries(
    st.sampled_from(TOPICS), st.integers(min_value=1, max_value=24), min_size=1
)
member_ids_strategy = st.lists(
    st.text(alphabet="mnopq0123", min_size=1, max_size=4), min_size=1, max_size=12, unique=True
)


def _check_exactly_once(
    members: Mapping[str, MemberSubscription],
    topic_partitions: Mapping[str, int],
    result: Assignment,
) -> None:
    assert set(result) == set(members)
    seen: dict[TopicPartition, str] = {}
    for member_id, tps in result.items():
        for tp in tps:
            assert tp not in seen, f"{tp} given to {seen[tp]} and {member_id}"
            seen[tp] = member_id
            assert tp[0] in members[member_id].topics, f"{member_id} not subscribed to {tp}"
            assert 0 <= tp[1] < topic_partitions[tp[0]]
    for topic, count in topic_partitions.items():
        if any(topic in sub.topics for sub in members.values()):
            for partition in range(count):
                assert (topic, partition) in seen, f"{(topic, partition)} unassigned"


@st.composite
def uniform_groups(draw: st.DrawFn) -> tuple[dict[str, MemberSubscription], dict[str, int]]:
    topic_partitions = draw(topic_partitions_strategy)
    topics = frozenset(draw(st.sets(st.sampled_from(sorted(topic_partitions)), min_size=1)))
    members = {m: MemberSubscription(topics) for m in draw(member_ids_strategy)}
    return members, topic_partitions


@st.composite
def mixed_groups(draw: st.DrawFn) -> tuple[dict[str, MemberSubscription], dict[str, int]]:
    topic_partitions = draw(topic_partitions_strategy)
    # Subscriptions may name topics that do not exist (ignored by assignors).
    members = {
        m: MemberSubscription(frozenset(draw(st.sets(st.sampled_from(TOPICS), min_size=1))))
        for m in draw(member_ids_strategy)
    }
    return members, topic_partitions


@pytest.mark.parametrize("name", sorted(ASSIGNORS))
@settings(max_examples=40, deadline=None)
@given(group=mixed_groups(), data=st.data())
def test_every_partition_assigned_exactly_once_among_subscribers(
    name: str,
    group: tuple[dict[str, MemberSubscription], dict[str, int]],
    data: st.DataObject,
) -> None:
    """Every assignor, any subscriptions and any (even invalid) previous assignment: each
    partition of a subscribed topic goes to exactly one of its subscribers."""
    members, topic_partitions = group
    all_tps = [(t, p) for t, n in topic_partitions.items() for p in range(n + 2)]
    current = {m: set(data.draw(st.lists(st.sampled_from(all_tps), max_size=10))) for m in members}
    result = ASSIGNORS[name](members, topic_partitions, current)
    _check_exactly_once(members, topic_partitions, result)
    assert result == ASSIGNORS[name](members, topic_partitions, current), "deterministic"


@pytest.mark.parametrize("name", ["uniform", "roundrobin"])
@settings(max_examples=60, deadline=None)
@given(group=uniform_groups(), data=st.data())
def test_balanced_within_one_for_uniform_subscriptions(
    name: str,
    group: tuple[dict[str, MemberSubscription], dict[str, int]],
    data: st.DataObject,
) -> None:
    """With identical subscriptions, member partition counts differ by at most one, whatever
    the previous assignment was."""
    members, topic_partitions = group
    all_tps = [(t, p) for t, n in topic_partitions.items() for p in range(n)]
    current = {m: set(data.draw(st.lists(st.sampled_from(all_tps), max_size=20))) for m in members}
    result = ASSIGNORS[name](members, topic_partitions, current)
    counts = [len(tps) for tps in result.values()]
    assert max(counts) - min(counts) <= 1


@settings(max_examples=50, deadline=None)
@given(group=uniform_groups())
def test_range_is_balanced_within_one_per_topic(
    group: tuple[dict[str, MemberSubscription], dict[str, int]],
) -> None:
    """Range balances each topic separately: per topic, counts differ by at most one."""
    members, topic_partitions = group
    result = range_assign(members, topic_partitions, {})
    for topic in next(iter(members.values())).topics:
        counts = [sum(1 for tp in tps if tp[0] == topic) for tps in result.values()]
        assert max(counts) - min(counts) <= 1


@settings(max_examples=60, deadline=None)
@given(group=uniform_groups(), newcomer=st.text(alphabet="xyz", min_size=1, max_size=3))
def test_sticky_join_moves_only_to_the_newcomer(
    group: tuple[dict[str, MemberSubscription], dict[str, int]], newcomer: str
) -> None:
    """A member joining a balanced group: no existing member gains a partition, so every
    moved partition goes to the newcomer, and it gets no more than its fair share."""
    members, topic_partitions = group
    before = uniform_assign(members, topic_partitions, {})
    joined = {**members, newcomer: next(iter(members.values()))}
    after = uniform_assign(joined, topic_partitions, before)
    _check_exactly_once(joined, topic_partitions, after)
    for member_id in members:
        assert after[member_id] <= before[member_id], f"{member_id} gained a partition"
    total = sum(len(tps) for tps in after.values())
    assert len(after[newcomer]) <= -(-total // len(joined))


@settings(max_examples=60, deadline=None)
@given(group=uniform_groups(), data=st.data())
def test_sticky_leave_moves_only_the_leavers_partitions(
    group: tuple[dict[str, MemberSubscription], dict[str, int]], data: st.DataObject
) -> None:
    """A member leaving a balanced group: every remaining member keeps all it had, so only
    the leaver's partitions move."""
    members, topic_partitions = group
    if len(members) < 2:
        return
    before = uniform_assign(members, topic_partitions, {})
    leaver = data.draw(st.sampled_from(sorted(members)))
    remaining = {m: s for m, s in members.items() if m != leaver}
    after = uniform_assign(remaining, topic_partitions, before)
    _check_exactly_once(remaining, topic_partitions, after)
    for member_id in remaining:
        assert before[member_id] <= after[member_id], f"{member_id} lost a partition"


@settings(max_examples=50, deadline=None)
@given(group=mixed_groups())
def test_sticky_is_stable_when_nothing_changes(
    group: tuple[dict[str, MemberSubscription], dict[str, int]],
) -> None:
    """Recomputing with the same members and topics moves nothing (any subscriptions)."""
    members, topic_partitions = group
    first = uniform_assign(members, topic_partitions, {})
    assert uniform_assign(members, topic_partitions, first) == first


def test_deleted_topic_partitions_disappear() -> None:
    """A topic missing from topic_partitions (deleted) is dropped from the assignment even
    when the members still subscribe to it and currently own its partitions."""
    members = {
        "m1": MemberSubscription(frozenset({"a", "b"})),
        "m2": MemberSubscription(frozenset({"a", "b"})),
    }
    before = uniform_assign(members, {"a": 4, "b": 4}, {})
    after = uniform_assign(members, {"a": 4}, before)
    assert all(tp[0] == "a" for tps in after.values() for tp in tps)
    assert sum(len(tps) for tps in after.values()) == 4
