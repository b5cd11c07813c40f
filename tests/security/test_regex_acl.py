"""Regex subscriptions under ACLs (unit): a member's subscribed_topic_regex matches only the
topics its principal may describe (as Kafka's), re-resolved when the ACLs change; the
principal is kept with the member (and in its record), so its id used from another
principal neither acts as it nor widens what it is assigned."""

from __future__ import annotations

import json

import pytest

from brook.errors import BrookError
from brook.services.common.authz import AclBinding, Authorizer
from brook.services.groups.service import describable_topics
from brook.services.groups.state import (
    LEAVE_EPOCH,
    Group,
    GroupRegistry,
    HeartbeatInput,
    OffsetCommitInput,
)

TOPICS = {"team-a.orders": 2, "team-a.refunds": 1, "team-b.payroll": 1, "audit": 1}
ALICE = "user:alice"
MALLORY = "user:mallory"


class Acls:
    """An AclSource whose bindings a test changes (version moves on each change)."""

    def __init__(self, bindings: list[AclBinding]) -> None:
        self.version = 0
        self._bindings = list(bindings)

    def bindings(self) -> list[AclBinding]:
        return list(self._bindings)

    def set(self, bindings: list[AclBinding]) -> None:
        self._bindings = list(bindings)
        self.version += 1


def team_a(principal: str = ALICE) -> list[AclBinding]:
    """describe and read on every topic named team-a.*"""
    return [AclBinding.create(principal, "topic", "team-a.", op, pattern_type="prefixed")
            for op in ("describe", "read")]  # fmt: skip


def registry_with(acls: Acls) -> GroupRegistry:
    authz = Authorizer(acls, super_users=["user:admin"])
    registry = GroupRegistry(topic_visible=describable_topics(authz))
    registry.set_topics(TOPICS, 0)
    return registry


def topics_of(assignment: frozenset[tuple[str, int]]) -> set[str]:
    return {tp[0] for tp in assignment}


def test_a_regex_matches_only_describable_topics() -> None:
    acls = Acls(team_a())
    registry = registry_with(acls)
    joined = registry.heartbeat(HeartbeatInput(group_id="g", regex=".*", principal=ALICE), 0)
    member = registry.groups["g"].members[joined.member_id]
    assert member.principal == ALICE
    assert member.resolved_topics == {"team-a.orders", "team-a.refunds"}
    assert topics_of(joined.assignment) == {"team-a.orders", "team-a.refunds"}
    # A principal with no ACL matches nothing; a super user everything.
    nobody = registry.heartbeat(HeartbeatInput(group_id="h", regex=".*", principal=MALLORY), 0)
    assert registry.groups["h"].members[nobody.member_id].resolved_topics == frozenset()
    admin = registry.heartbeat(HeartbeatInput(group_id="i", regex=".*", principal="user:admin"), 0)
    assert registry.groups["i"].members[admin.member_id].resolved_topics == set(TOPICS)
    # Without an authorizer (none), a regex matches every topic, as before.
    open_registry = GroupRegistry(topic_visible=describable_topics(Authorizer()))
    open_registry.set_topics(TOPICS, 0)
    out = open_registry.heartbeat(HeartbeatInput(group_id="g", regex=".*", principal=ALICE), 0)
    assert open_registry.groups["g"].members[out.member_id].resolved_topics == set(TOPICS)


def test_acl_changes_re_resolve_regexes() -> None:
    acls = Acls(team_a())
    registry = registry_with(acls)
    joined = registry.heartbeat(HeartbeatInput(group_id="g", regex="team-.*", principal=ALICE), 0)
    epoch = registry.groups["g"].group_epoch
    registry.dirty.clear()
    acls.set([*team_a(), AclBinding.create(ALICE, "topic", "team-b.payroll", "read")])
    assert registry.refresh_subscriptions(10) == {"g"}
    group = registry.groups["g"]
    assert group.group_epoch == epoch + 1 and "g" in registry.dirty
    assert group.members[joined.member_id].resolved_topics == {
        "team-a.orders", "team-a.refunds", "team-b.payroll"}  # fmt: skip
    # Nothing changed: no new epoch.
    assert registry.refresh_subscriptions(20) == set()
    # Revoked: the topic leaves the target (and the member is told to give it up).
    acls.set([AclBinding.create(ALICE, "topic", "team-b.payroll", "read")])
    registry.refresh_subscriptions(30)
    assert group.members[joined.member_id].resolved_topics == {"team-b.payroll"}
    assert topics_of(frozenset(group.target[joined.member_id])) == {"team-b.payroll"}


def test_a_member_id_acts_only_for_its_principal() -> None:
    acls = Acls([*team_a(), *team_a(MALLORY)])
    registry = registry_with(acls)
    alice = registry.heartbeat(HeartbeatInput(group_id="g", regex=".*", principal=ALICE), 0)
    group = registry.groups["g"]
    # Mallory knows alice's id and epoch (say from a describe): a heartbeat, a leave and a
    # commit as that member are refused; nothing about the member changes.
    as_alice = {"group_id": "g", "member_id": alice.member_id, "principal": MALLORY}
    for request in (
        HeartbeatInput(member_epoch=alice.member_epoch, regex="team-b.*", **as_alice),
        HeartbeatInput(member_epoch=LEAVE_EPOCH, current_member_epoch=alice.member_epoch,
                       **as_alice),
    ):  # fmt: skip
        with pytest.raises(BrookError) as caught:
            registry.heartbeat(request, 1)
        assert caught.value.reason == "UNKNOWN_MEMBER_ID"
    commit = [OffsetCommitInput("team-a.orders", 0, 5)]
    with pytest.raises(BrookError) as refused:
        registry.check_commit("g", alice.member_id, alice.member_epoch, commit, MALLORY)
    assert refused.value.reason == "UNKNOWN_MEMBER_ID"
    # A rejoin (epoch 0) naming alice's id does not remove alice: mallory is a new member.
    rejoined = registry.heartbeat(
        HeartbeatInput(group_id="g", member_id=alice.member_id, regex=".*", principal=MALLORY), 2
    )
    assert rejoined.member_id != alice.member_id
    assert set(group.members) == {alice.member_id, rejoined.member_id}
    assert group.members[alice.member_id].principal == ALICE
    # Alice herself goes on; her own commit is checked as before.
    again = registry.heartbeat(HeartbeatInput(
        group_id="g", member_id=alice.member_id, member_epoch=alice.member_epoch,
        principal=ALICE), 3)  # fmt: skip
    assert again.member_id == alice.member_id
    assert registry.check_commit("g", alice.member_id, again.member_epoch, [], ALICE) == {}


def test_the_principal_survives_a_failover() -> None:
    """Stored in the group record: a standby that loads it resolves for the same principal
    and refuses the id from another; a record without one adopts its next caller."""
    acls = Acls(team_a())
    registry = registry_with(acls)
    alice = registry.heartbeat(HeartbeatInput(group_id="g", regex=".*", principal=ALICE), 0)
    record = json.loads(json.dumps(registry.groups["g"].to_record()))
    assert record["members"][alice.member_id]["principal"] == ALICE
    standby = registry_with(acls)
    standby.load([record], {}, 100)
    member = standby.groups["g"].members[alice.member_id]
    assert member.principal == ALICE
    assert member.resolved_topics == {"team-a.orders", "team-a.refunds"}
    with pytest.raises(BrookError, match=r"no member"):
        standby.heartbeat(HeartbeatInput(group_id="g", member_id=alice.member_id,
                                         member_epoch=alice.member_epoch,
                                         principal=MALLORY), 101)  # fmt: skip
    # An older record (no principal): the first caller's principal is adopted, and its
    # regex resolves for it.
    del record["members"][alice.member_id]["principal"]
    old = registry_with(Acls([*team_a(MALLORY)]))
    old.load([record], {}, 100)
    assert Group.from_record(record, 0).members[alice.member_id].principal == ""
    out = old.heartbeat(HeartbeatInput(group_id="g", member_id=alice.member_id,
                                       member_epoch=alice.member_epoch,
                                       principal=MALLORY), 101)  # fmt: skip
    assert old.groups["g"].members[out.member_id].principal == MALLORY
    assert old.groups["g"].members[out.member_id].resolved_topics == {
        "team-a.orders", "team-a.refunds"}  # fmt: skip
