"""Unit tests of the group state machine with a fake clock (pure core, no I/O)."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brook.errors import BrookError
from brook.services.groups.assignors import TopicPartition
from brook.services.groups.state import (
    Group,
    GroupConfig,
    GroupRegistry,
    GroupState,
    HeartbeatInput,
    HeartbeatOutput,
    OffsetCommitInput,
    OffsetRecord,
)

SESSION_MS = 3000
REBALANCE_MS = 5000


class FakeClient:
    """A well-behaved member as seen from the server: it consumes exactly what the last
    response allowed, and revokes before it reports (it applies each response at once)."""

    def __init__(
        self, registry: GroupRegistry, group_id: str, topics: tuple[str, ...], instance_id: str = ""
    ) -> None:
        self.registry = registry
        self.group_id = group_id
        self.topics = topics
        self.instance_id = instance_id
        self.member_id = ""
        self.epoch = 0
        self.owned: set[TopicPartition] = set()
        self.revoked_ever: set[TopicPartition] = set()

    def heartbeat(
        self, now_ms: int, *, owned: set[TopicPartition] | None = None
    ) -> HeartbeatOutput:
        response = self.registry.heartbeat(
            HeartbeatInput(
                group_id=self.group_id,
                member_id=self.member_id,
                member_epoch=self.epoch,
                instance_id=self.instance_id,
                topics=self.topics,
                owned=frozenset(self.owned if owned is None else owned),
                session_timeout_ms=SESSION_MS,
                rebalance_timeout_ms=REBALANCE_MS,
            ),
            now_ms,
        )
        self.member_id = response.member_id
        self.epoch = response.member_epoch
        self.revoked_ever |= self.owned - response.assignment
        self.owned = set(response.assignment)
        return response

    def leave(self, now_ms: int, epoch: int = -1) -> HeartbeatOutput:
        response = self.registry.heartbeat(
            HeartbeatInput(
                group_id=self.group_id,
                member_id=self.member_id,
                member_epoch=epoch,
                instance_id=self.instance_id,
                current_member_epoch=self.epoch,
            ),
            now_ms,
        )
        self.owned = set()
        self.member_id, self.epoch = "", 0
        return response


def make_registry(topics: dict[str, int] | None = None) -> GroupRegistry:
    counter = itertools.count(1)
    registry = GroupRegistry(GroupConfig(), new_member_id=lambda: f"m{next(counter)}")
    registry.set_topics(topics or {"t": 12}, 0)
    return registry


def assert_disjoint(clients: list[FakeClient]) -> None:
    seen: dict[TopicPartition, str] = {}
    for client in clients:
        for tp in client.owned:
            assert tp not in seen, f"{tp} consumed by {seen[tp]} and {client.member_id}"
            seen[tp] = client.member_id


def settle(
    registry: GroupRegistry, clients: list[FakeClient], now_ms: int, rounds: int = 6
) -> None:
    for _ in range(rounds):
        for client in clients:
            client.heartbeat(now_ms)
            assert_disjoint(clients)
            registry.groups[client.group_id].check_invariants()


def all_partitions(n: int = 12) -> set[TopicPartition]:
    return {("t", p) for p in range(n)}


def test_first_member_joins_and_gets_everything() -> None:
    """A join creates the group at epoch 1 and the only member owns all 12 partitions."""
    registry = make_registry()
    client = FakeClient(registry, "g", ("t",))
    response = client.heartbeat(0)
    assert response.member_id == "m1"
    assert response.member_epoch == 1 == response.group_epoch
    assert response.assignment == all_partitions()
    assert registry.groups["g"].state is GroupState.STABLE
    assert "g" in registry.dirty


def test_cooperative_handoff_new_owner_waits_for_revocation() -> None:
    """A second member joins: it gets a partition only after the first member has stopped
    reporting it; at no point do both members hold the same partition."""
    registry = make_registry()
    a, b = FakeClient(registry, "g", ("t",)), FakeClient(registry, "g", ("t",))
    a.heartbeat(0)
    response_b = b.heartbeat(10)
    assert response_b.group_epoch == 2
    assert response_b.assignment == frozenset(), "a still owns everything"
    assert registry.groups["g"].state is GroupState.RECONCILING
    # b heartbeats again before a has revoked: still nothing.
    assert b.heartbeat(20).assignment == frozenset()
    # a is told to revoke half; it stays at epoch 1 while revoking.
    response_a = a.heartbeat(30, owned=a.owned)
    assert len(response_a.assignment) == 6
    assert response_a.member_epoch == 1
    pending = set(registry.groups["g"].members["m1"].pending_revocation)
    assert len(pending) == 6
    assert b.heartbeat(40).assignment == frozenset(), "a has not reported the revoke yet"
    # a reports its smaller owned set: moves to epoch 2, the partitions are released.
    assert a.heartbeat(50).member_epoch == 2
    response_b = b.heartbeat(60)
    assert response_b.assignment == frozenset(pending)
    assert_disjoint([a, b])
    assert registry.groups["g"].state is GroupState.STABLE
    assert b.revoked_ever == set() and len(a.revoked_ever) == 6


def test_leave_frees_partitions_for_the_others() -> None:
    """A member that leaves (epoch -1) frees its partitions at once; the remaining member
    gets them on its next heartbeat with a new epoch."""
    registry = make_registry()
    a, b = FakeClient(registry, "g", ("t",)), FakeClient(registry, "g", ("t",))
    settle(registry, [a, b], 0)
    epoch = registry.groups["g"].group_epoch
    b.leave(100)
    assert registry.groups["g"].group_epoch == epoch + 1
    response = a.heartbeat(110)
    assert response.assignment == all_partitions()
    assert response.member_epoch == epoch + 1


def test_session_timeout_removes_member_and_frees_partitions() -> None:
    """A member silent for longer than its session timeout is removed by tick(); its
    partitions go to the survivor; its own later heartbeat gets UNKNOWN_MEMBER_ID."""
    registry = make_registry()
    a, b = FakeClient(registry, "g", ("t",)), FakeClient(registry, "g", ("t",))
    settle(registry, [a, b], 0)
    a.heartbeat(SESSION_MS)  # a stays alive, b goes silent after time 0
    assert registry.tick(SESSION_MS) == set()
    assert registry.next_deadline_ms() == SESSION_MS
    assert registry.tick(SESSION_MS + 1) == {"g"}
    assert set(registry.groups["g"].members) == {a.member_id}
    assert a.heartbeat(SESSION_MS + 2).assignment == all_partitions()
    with pytest.raises(BrookError) as error:
        b.heartbeat(SESSION_MS + 3)
    assert error.value.reason == "UNKNOWN_MEMBER_ID"


def test_rebalance_timeout_fences_a_member_that_does_not_revoke() -> None:
    """A member that keeps reporting a partition it was told to revoke is removed once its
    rebalance timeout passes, and the partition moves on."""
    registry = make_registry()
    a, b = FakeClient(registry, "g", ("t",)), FakeClient(registry, "g", ("t",))
    a.heartbeat(0)
    b.heartbeat(0)
    stubborn = set(a.owned)
    a.heartbeat(10, owned=stubborn)  # told to revoke 6
    for now in range(1000, REBALANCE_MS, 1000):
        a.heartbeat(now, owned=stubborn)  # alive, but never lets go
        b.heartbeat(now)
        assert registry.tick(now) == set()
        assert b.owned == set()
    assert registry.tick(10 + REBALANCE_MS + 1) == {"g"}
    assert list(registry.groups["g"].members) == [b.member_id]
    assert b.heartbeat(10 + REBALANCE_MS + 2).assignment == all_partitions()


def test_static_member_rejoins_without_new_epoch() -> None:
    """A static member that leaves with -2 and comes back with the same instance_id within
    the session timeout gets its partitions back, and the group epoch does not move."""
    registry = make_registry()
    a = FakeClient(registry, "g", ("t",), instance_id="worker-1")
    b = FakeClient(registry, "g", ("t",), instance_id="worker-2")
    settle(registry, [a, b], 0)
    mine = set(a.owned)
    epoch = registry.groups["g"].group_epoch
    assert a.leave(100, epoch=-2).member_epoch == -2
    # While it is away its partitions stay with it: b gets nothing more.
    assert b.heartbeat(200).assignment == frozenset(b.owned)
    assert len(b.owned) == 6
    response = a.heartbeat(SESSION_MS)  # rejoin (epoch 0) before 100 + SESSION_MS
    assert response.assignment == frozenset(mine)
    assert response.group_epoch == epoch
    assert response.member_epoch == epoch
    assert registry.tick(SESSION_MS + 200) == set()


def test_static_member_expires_after_session_timeout() -> None:
    """A static member that left with -2 and does not return is removed after its session
    timeout, and its partitions move to the others."""
    registry = make_registry()
    a = FakeClient(registry, "g", ("t",), instance_id="worker-1")
    b = FakeClient(registry, "g", ("t",))
    settle(registry, [a, b], 0)
    a.leave(100, epoch=-2)
    b.heartbeat(100 + SESSION_MS)
    assert registry.tick(100 + SESSION_MS + 1) == {"g"}
    assert b.heartbeat(100 + SESSION_MS + 2).assignment == all_partitions()


def test_unreleased_instance_id_while_the_holder_is_alive() -> None:
    """A second process joining with an instance_id a live member holds is refused."""
    registry = make_registry()
    FakeClient(registry, "g", ("t",), instance_id="w").heartbeat(0)
    with pytest.raises(BrookError) as error:
        FakeClient(registry, "g", ("t",), instance_id="w").heartbeat(1)
    assert error.value.reason == "UNRELEASED_INSTANCE_ID"


def test_fenced_and_unknown_member_commits() -> None:
    """Commits: the current epoch passes; a stale epoch is FENCED_MEMBER_EPOCH; a removed
    member is UNKNOWN_MEMBER_ID; a non-member commit is refused while members exist and
    allowed once the group is empty; a partition the member does not own is fenced."""
    registry = make_registry()
    a, b = FakeClient(registry, "g", ("t",)), FakeClient(registry, "g", ("t",))
    settle(registry, [a, b], 0)
    tp = sorted(a.owned)[0]
    commit = [OffsetCommitInput("t", tp[1], 10)]
    assert registry.check_commit("g", a.member_id, a.epoch, commit) == {tp: None}
    with pytest.raises(BrookError) as error:
        registry.check_commit("g", a.member_id, a.epoch + 5, commit)
    assert error.value.reason == "FENCED_MEMBER_EPOCH"
    not_mine = sorted(b.owned)[0]
    result = registry.check_commit("g", a.member_id, a.epoch, [OffsetCommitInput(*not_mine, 1)])
    assert result[not_mine] is not None and result[not_mine].reason == "FENCED_MEMBER_EPOCH"
    with pytest.raises(BrookError) as error:
        registry.check_commit("g", "", -1, commit)
    assert error.value.reason == "UNKNOWN_MEMBER_ID"
    old_id, old_epoch = b.member_id, b.epoch
    b.leave(10)
    with pytest.raises(BrookError) as error:
        registry.check_commit("g", old_id, old_epoch, commit)
    assert error.value.reason == "UNKNOWN_MEMBER_ID"
    a.leave(20)
    assert registry.check_commit("g", "", -1, commit) == {tp: None}


def test_commit_partition_errors() -> None:
    """Per-partition commit checks: unknown topic, unknown partition, metadata over 4096
    bytes, and negative offset each fail only their own partition."""
    registry = make_registry()
    result = registry.check_commit(
        "g",
        "",
        -1,
        [
            OffsetCommitInput("nope", 0, 1),
            OffsetCommitInput("t", 99, 1),
            OffsetCommitInput("t", 0, 1, metadata="x" * 4097),
            OffsetCommitInput("t", 1, -5),
            OffsetCommitInput("t", 2, 5, metadata="x" * 4096),
        ],
    )
    reasons = {tp: (e.reason if e else None) for tp, e in result.items()}
    assert reasons == {
        ("nope", 0): "TOPIC_NOT_FOUND",
        ("t", 99): "PARTITION_NOT_FOUND",
        ("t", 0): "OFFSET_METADATA_TOO_LARGE",
        ("t", 1): "INVALID_REQUEST",
        ("t", 2): None,
    }


def test_commit_with_previous_epoch_during_epoch_change() -> None:
    """A commit sent with the epoch a member had just before its last heartbeat moved it
    is accepted (the response may still be in flight); an older one is not."""
    registry = make_registry()
    a = FakeClient(registry, "g", ("t",))
    a.heartbeat(0)
    b = FakeClient(registry, "g", ("t",))
    b.heartbeat(1)
    old_epoch = a.epoch
    a.heartbeat(2)
    a.heartbeat(3)  # revoked, moved to epoch 2
    assert a.epoch == old_epoch + 1
    tp = sorted(a.owned)[0]
    assert registry.check_commit("g", a.member_id, old_epoch, [OffsetCommitInput(*tp, 1)]) == {
        tp: None
    }


def test_invalid_regex_and_regex_resolution() -> None:
    """An invalid regex is INVALID_REGEX; a valid one subscribes to every matching topic,
    including topics created later (the group epoch moves when one appears)."""
    registry = make_registry({"orders-eu": 2, "orders-us": 2, "clicks": 2})
    with pytest.raises(BrookError) as error:
        registry.heartbeat(HeartbeatInput(group_id="g", regex="orders-(", owned=frozenset()), 0)
    assert error.value.reason == "INVALID_REGEX"
    response = registry.heartbeat(HeartbeatInput(group_id="g", regex="orders-.*"), 0)
    assert {tp[0] for tp in response.assignment} == {"orders-eu", "orders-us"}
    epoch = response.group_epoch
    registry.set_topics({"orders-eu": 2, "orders-us": 2, "clicks": 2, "orders-ap": 1}, 10)
    assert registry.groups["g"].group_epoch == epoch + 1
    response = registry.heartbeat(
        HeartbeatInput(
            group_id="g",
            member_id=response.member_id,
            member_epoch=response.member_epoch,
            regex="orders-.*",
            owned=response.assignment,
        ),
        20,
    )
    assert ("orders-ap", 0) in response.assignment


def test_topic_deletion_drops_assignment_and_offsets() -> None:
    """Deleting a topic removes its partitions from every member's assignment and target,
    and reports its committed offsets for deletion."""
    registry = make_registry({"t": 4, "u": 4})
    client = FakeClient(registry, "g", ("t", "u"))
    client.heartbeat(0)
    registry.apply_offsets("g", {("u", 1): OffsetRecord(7)})
    change = registry.set_topics({"t": 4}, 10)
    assert change.changed_groups == {"g"}
    assert change.deleted_offsets == {"g": {("u", 1)}}
    assert client.heartbeat(20).assignment == {("t", p) for p in range(4)}
    registry.groups["g"].check_invariants()


def test_delete_and_reset_need_an_empty_group() -> None:
    """DeleteGroup refuses a group with members (GROUP_NOT_EMPTY), reset refuses it
    (GROUP_NOT_EMPTY, as DeleteGroup); an unknown group is GROUP_NOT_FOUND."""
    registry = make_registry()
    FakeClient(registry, "g", ("t",)).heartbeat(0)
    with pytest.raises(BrookError, match="GROUP_NOT_EMPTY"):
        registry.check_deletable("g")
    with pytest.raises(BrookError, match="GROUP_NOT_EMPTY"):
        registry.check_resettable("g")
    with pytest.raises(BrookError, match="GROUP_NOT_FOUND"):
        registry.check_deletable("other")


def test_group_record_round_trips_through_json() -> None:
    """to_record -> JSON -> from_record gives the same members, epochs, target and
    ownership, so a standby continues where the old manager stopped."""
    registry = make_registry()
    a, b = FakeClient(registry, "g", ("t",)), FakeClient(registry, "g", ("t",))
    a.heartbeat(0)
    b.heartbeat(1)
    a.heartbeat(2)  # a has pending revocations in the saved state
    group = registry.groups["g"]
    loaded = Group.from_record(json.loads(json.dumps(group.to_record())), 1000)
    assert loaded.to_record() == group.to_record()
    assert loaded.owners == group.owners
    standby = make_registry()
    standby.load([group.to_record()], {"g": {("t", 0): OffsetRecord(5)}}, 1000)
    # Members continue with their ids and epochs on the new manager.
    a.registry = b.registry = standby
    settle(standby, [a, b], 1001)
    assert standby.groups["g"].state is GroupState.STABLE
    assert standby.committed("g")[("t", 0)].offset == 5


def test_list_groups_pages() -> None:
    """ListGroups pages by group id with an opaque token and filters by state."""
    registry = make_registry()
    for index in range(5):
        registry.apply_offsets(f"g{index}", {})
    FakeClient(registry, "g2", ("t",)).heartbeat(0)
    page, token = registry.list_groups(2, "", set())
    assert [g.group_id for g in page] == ["g0", "g1"]
    page, token = registry.list_groups(2, token, set())
    assert [g.group_id for g in page] == ["g2", "g3"]
    page, token = registry.list_groups(2, token, set())
    assert [g.group_id for g in page] == ["g4"] and token == ""
    page, _ = registry.list_groups(10, "", {GroupState.STABLE})
    assert [g.group_id for g in page] == ["g2"]
    with pytest.raises(BrookError, match="INVALID_PAGE_TOKEN"):
        registry.list_groups(2, "garbage!", set())


@settings(max_examples=60, deadline=None)
@given(
    actions=st.lists(
        st.tuples(st.sampled_from(["hb", "join", "leave", "crash", "tick"]), st.integers(0, 7)),
        max_size=60,
    )
)
def test_random_histories_never_share_a_partition(actions: list[tuple[str, int]]) -> None:
    """Random joins, leaves, crashes, heartbeats and clock ticks against well-behaved
    clients: no two live clients ever consume the same partition, the server's ownership
    index stays consistent, and once things calm down the group converges to STABLE with
    every partition assigned."""
    registry = make_registry({"t": 12, "u": 5})
    live: list[FakeClient] = []
    now = 0
    for action, index in actions:
        now += 100
        if action == "join" and len(live) < 6:
            client = FakeClient(registry, "g", ("t", "u"))
            client.heartbeat(now)
            live.append(client)
        elif live and action == "hb":
            live[index % len(live)].heartbeat(now)
        elif live and action == "leave":
            live.pop(index % len(live)).leave(now)
        elif live and action == "crash":
            live.pop(index % len(live))  # stops heartbeating; the session timeout cleans up
        elif action == "tick":
            for client in live:  # live clients heartbeat well within their session
                client.heartbeat(now)
            now += SESSION_MS // 2
            registry.tick(now)
        assert_disjoint(live)
        if "g" in registry.groups:
            registry.groups["g"].check_invariants()
    now += SESSION_MS + 1
    for client in live:
        client.heartbeat(now)
    registry.tick(now + 1)
    settle(registry, live, now + 2)
    if live:
        group = registry.groups["g"]
        assert group.state is GroupState.STABLE
        owned = set().union(*(c.owned for c in live))
        assert owned == {("t", p) for p in range(12)} | {("u", p) for p in range(5)}
        counts = [len(c.owned) for c in live]
        assert max(counts) - min(counts) <= 1


def test_fields_sent_once_are_kept_when_a_later_heartbeat_omits_them() -> None:
    """Issue 10, trap 8: a heartbeat that leaves client_id, client_host, rack_id, the
    timeouts and the subscription empty keeps what the member sent at join (as KIP-848's
    "null means unchanged"); a heartbeat that sends a new value changes it."""
    registry = make_registry({"orders": 2, "audit": 1})
    joined = registry.heartbeat(
        HeartbeatInput(
            group_id="g", member_epoch=0, topics=("orders",), client_id="billing",
            client_host="10.0.0.7", rack_id="r1", session_timeout_ms=20_000,
            rebalance_timeout_ms=40_000,
        ),
        0,
    )  # fmt: skip
    minimal = HeartbeatInput(group_id="g", member_id=joined.member_id,
                             member_epoch=joined.member_epoch)  # fmt: skip
    registry.heartbeat(minimal, 100)
    member = registry.groups["g"].members[joined.member_id]
    assert (member.client_id, member.client_host, member.rack_id) == ("billing", "10.0.0.7", "r1")
    assert (member.session_timeout_ms, member.rebalance_timeout_ms) == (20_000, 40_000)
    assert member.subscribed_topic_names == ("orders",)

    registry.heartbeat(
        HeartbeatInput(group_id="g", member_id=joined.member_id,
                       member_epoch=member.member_epoch, topics=("audit",), client_id="v2"),
        200,
    )  # fmt: skip
    assert member.subscribed_topic_names == ("audit",) and member.client_id == "v2"
    assert member.rack_id == "r1"
