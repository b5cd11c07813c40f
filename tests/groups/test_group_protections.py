"""Group protections of issue 11, without a network: a leave must prove it comes from
the member (its current epoch), and a description shown to a principal that may only
describe the group blanks what a member proves itself with (ids, epochs, instance ids).

How: the pure GroupRegistry and the servicer's `describe` conversion, driven directly."""

from __future__ import annotations

import pytest

from brook.errors import BrookError
from brook.services.groups.service import describe
from brook.services.groups.state import GroupConfig, GroupRegistry, HeartbeatInput
from brook.structs import TopicPartition


def registry() -> GroupRegistry:
    groups = GroupRegistry(GroupConfig())
    groups.set_topics({"orders": 2}, 0)
    return groups


def join(groups: GroupRegistry, instance_id: str = "") -> tuple[str, int]:
    out = groups.heartbeat(HeartbeatInput(group_id="g", topics=("orders",),
                                          instance_id=instance_id), 0)  # fmt: skip
    return out.member_id, out.member_epoch


def leave(groups: GroupRegistry, member_id: str, proof: int | None, epoch: int = -1,
          instance_id: str = "") -> None:  # fmt: skip
    groups.heartbeat(HeartbeatInput(group_id="g", member_id=member_id, member_epoch=epoch,
                                    instance_id=instance_id, current_member_epoch=proof), 10)


def test_a_leave_needs_the_members_current_epoch() -> None:
    """Knowing a member id (as DescribeGroup once showed it to anyone) is not enough to
    make the member leave: without its epoch, or with a wrong one, the leave is
    FENCED_MEMBER_EPOCH and the member stays; with it, the member leaves."""
    groups = registry()
    member_id, epoch = join(groups)
    for proof in (None, -1, epoch + 7):
        with pytest.raises(BrookError, match="FENCED_MEMBER_EPOCH"):
            leave(groups, member_id, proof)
        assert member_id in groups.groups["g"].members
    leave(groups, member_id, epoch)
    assert member_id not in groups.groups["g"].members


def test_a_static_leave_needs_it_too() -> None:
    groups = registry()
    member_id, epoch = join(groups, instance_id="i-1")
    with pytest.raises(BrookError, match="FENCED_MEMBER_EPOCH"):
        leave(groups, member_id, None, epoch=-2, instance_id="i-1")
    assert not groups.groups["g"].members[member_id].departed
    leave(groups, member_id, epoch, epoch=-2, instance_id="i-1")
    assert groups.groups["g"].members[member_id].departed


def test_a_describer_sees_no_member_ids_or_epochs() -> None:
    """describe(detail=False) keeps the shape (members, assignments, offsets) but blanks
    member ids, epochs, instance ids and partition owners."""
    groups = registry()
    member_id, _ = join(groups, instance_id="i-1")
    group = groups.groups["g"]
    full = describe(group, None)
    assert full.members[0].member_id == member_id and full.members[0].HasField("member_epoch")
    assert full.members[0].instance_id == "i-1"
    blank = describe(group, None, detail=False)
    assert len(blank.members) == 1
    member = blank.members[0]
    assert member.member_id == "" and not member.HasField("member_epoch")
    assert member.instance_id == ""
    assert list(member.subscribed_topic_names) == ["orders"]
    assert {TopicPartition(t.topic, p) for t in member.target_assignment for p in t.partitions}
    assert all(entry.member_id == "" for entry in blank.offsets)
    assert any(entry.member_id == member_id for entry in full.offsets)
