"""The consumer-group state machine: membership, target assignment, reconciliation, offsets.

Pure: no I/O, no clock of its own (every call takes `now_ms`), no protobuf. The gRPC
shell converts requests into the dataclasses below, calls `GroupRegistry`, persists the
groups it reports dirty, and only then answers (see `service.py`).

Model (server-side cooperative assignment, after Kafka's KIP-848):

- A group has a `group_epoch`, bumped when membership, a subscription or the metadata of
  a subscribed topic changes. Each bump recomputes the target assignment at once (the
  assignors are fast), so `assignment_epoch == group_epoch` after every call.
- Each member has a `member_epoch`: the assignment epoch it has reconciled to. Per
  member the server keeps `assigned` (partitions the member may consume now) and
  `pending_revocation` (partitions it was told to give up but still reports owning).
  A partition is *owned* by at most one member at any moment: `owners` maps it to the
  member whose `assigned` or `pending_revocation` holds it.
- Reconciliation (on the member's own heartbeat): first revocations: partitions not in
  the member's target move from `assigned` to `pending_revocation`, and the member stays
  at its epoch; a pending partition is released when the member's heartbeat omits it from
  `owned_partitions`. With nothing pending, the member moves to the assignment epoch and
  is granted the target partitions that no other member owns; the rest arrive on later
  heartbeats once their previous owner releases them.
- Time: a member silent for its session timeout is removed (its partitions are freed);
  a member that does not revoke within its rebalance timeout is fenced (removed).
- Static members (instance_id): member_epoch -2 is a temporary leave; the member keeps
  its assignment for the session timeout, and a member joining with the same
  instance_id within it takes over that assignment and epoch without a new group epoch.
- Leaving (member_epoch -1, or -2 for static members) needs the member's current (or
  just-previous) epoch as `current_member_epoch`: an id alone (DescribeGroup shows ids
  to the group's admins) proves nothing.
- Offsets: a member commits with its current (or just-previous) epoch, only for
  partitions it owns; a non-member commits with member_epoch -1 only in an empty group.
- Regex subscriptions under ACLs (as Kafka's): a member's `subscribed_topic_regex` matches
  only the topics its principal may describe (`topic_visible`, given by the shell; None:
  every topic). The principal is the one that joined, kept with the member (and in its
  record): a heartbeat, leave or commit for that member id from another principal is
  UNKNOWN_MEMBER_ID, so a borrowed id never widens access. `refresh_subscriptions`
  re-resolves every regex when the ACLs change.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

import re2

from brook.errors import BrookError
from brook.services.common.bounds import quote
from brook.services.groups import limits
from brook.services.groups.assignors import (
    ASSIGNORS,
    DEFAULT_ASSIGNOR,
    MemberSubscription,
    get_assignor,
)
from brook.structs import TopicPartition

GROUP_ID_MAX_CHARS = limits.GROUP_ID_CHARS_MAX
OFFSET_METADATA_MAX_BYTES = limits.OFFSET_METADATA_BYTES_MAX
JOIN_EPOCH = 0
LEAVE_EPOCH = -1
STATIC_LEAVE_EPOCH = -2
NON_MEMBER_EPOCH = -1
NO_OFFSET = -1
GROUP_RECORD_VERSION = 1


@dataclass(frozen=True)
class GroupConfig:
    """Server-side bounds and defaults (flags of `brook groups`)."""

    heartbeat_interval_ms: int = limits.HEARTBEAT_INTERVAL_MS_DEFAULT
    reconciling_heartbeat_interval_ms: int = limits.RECONCILING_HEARTBEAT_INTERVAL_MS_DEFAULT
    session_timeout_ms_default: int = limits.SESSION_TIMEOUT_MS_DEFAULT
    session_timeout_ms_min: int = limits.SESSION_TIMEOUT_MS_MIN
    session_timeout_ms_max: int = limits.SESSION_TIMEOUT_MS_MAX
    rebalance_timeout_ms_default: int = limits.REBALANCE_TIMEOUT_MS_DEFAULT
    rebalance_timeout_ms_min: int = limits.REBALANCE_TIMEOUT_MS_MIN
    rebalance_timeout_ms_max: int = limits.REBALANCE_TIMEOUT_MS_MAX
    # Bounds on what one group and one process hold in memory.
    members_per_group_max: int = limits.MEMBERS_PER_GROUP_MAX
    groups_max: int = limits.GROUPS_MAX
    subscribed_topics_max: int = limits.SUBSCRIBED_TOPICS_MAX
    regex_chars_max: int = limits.REGEX_CHARS_MAX


class GroupState(Enum):
    """Mirrors brook.v1.GroupState (without ASSIGNING: targets are computed synchronously)."""

    EMPTY = 1
    RECONCILING = 3
    STABLE = 4
    DEAD = 5


@dataclass(frozen=True)
class HeartbeatInput:
    """A member's heartbeat, as the shell decoded it."""

    group_id: str
    member_id: str = ""
    member_epoch: int = JOIN_EPOCH
    instance_id: str = ""
    rack_id: str = ""
    rebalance_timeout_ms: int = 0
    topics: tuple[str, ...] = ()
    regex: str = ""
    assignor: str = ""
    owned: frozenset[TopicPartition] = frozenset()
    client_id: str = ""
    client_host: str = ""
    session_timeout_ms: int = 0
    # A leave's proof that it comes from the member: its current epoch (None: not sent).
    current_member_epoch: int | None = None
    # Who is calling (str(Principal); "" when the shell has no authenticated caller).
    principal: str = ""


@dataclass(frozen=True)
class HeartbeatOutput:
    """What the member is told: its id, epoch and the partitions it may consume now."""

    member_id: str
    member_epoch: int
    heartbeat_interval_ms: int
    assignment: frozenset[TopicPartition]
    group_epoch: int


@dataclass(frozen=True)
class OffsetRecord:
    """A committed position, as stored in etcd (JSON) and answered by FetchOffsets."""

    offset: int
    leader_epoch: int = -1
    metadata: str = ""
    commit_timestamp_ms: int = 0

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "offset": self.offset,
                "leader_epoch": self.leader_epoch,
                "metadata": self.metadata,
                "commit_timestamp_ms": self.commit_timestamp_ms,
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> OffsetRecord:
        values = json.loads(data)
        record = cls(
            offset=int(values["offset"]),
            leader_epoch=int(values.get("leader_epoch", -1)),
            metadata=str(values.get("metadata", "")),
            commit_timestamp_ms=int(values.get("commit_timestamp_ms", 0)),
        )
        if record.offset < 0:
            raise ValueError(f"stored offset {record.offset} is negative")
        return record


@dataclass(frozen=True)
class OffsetCommitInput:
    """One partition of a CommitOffsets request."""

    topic: str
    partition: int
    offset: int
    leader_epoch: int = -1
    metadata: str = ""


@dataclass
class Member:
    """One member of a group. `assigned` and `pending_revocation` are disjoint."""

    member_id: str
    instance_id: str = ""
    rack_id: str = ""
    client_id: str = ""
    client_host: str = ""
    member_epoch: int = 0
    previous_member_epoch: int = -1
    subscribed_topic_names: tuple[str, ...] = ()
    subscribed_topic_regex: str = ""
    resolved_topics: frozenset[str] = frozenset()
    assigned: set[TopicPartition] = field(default_factory=set)
    pending_revocation: set[TopicPartition] = field(default_factory=set)
    session_timeout_ms: int = 10_000
    rebalance_timeout_ms: int = 30_000
    last_heartbeat_ms: int = 0
    rebalance_deadline_ms: int | None = None
    # A static member that left with epoch -2: keeps its partitions until it comes back
    # or last_heartbeat_ms + session_timeout_ms passes.
    departed: bool = False
    # The principal that joined as this member: what its regex resolves for, and the only
    # one that may act as it ("" in a record written before principals were kept).
    principal: str = ""

    @property
    def owned(self) -> set[TopicPartition]:
        return self.assigned | self.pending_revocation

    def persistent_view(self) -> tuple[Any, ...]:
        """The fields the group record stores; a change means the group must be saved."""
        return (
            self.instance_id,
            self.rack_id,
            self.client_id,
            self.client_host,
            self.member_epoch,
            self.previous_member_epoch,
            self.subscribed_topic_names,
            self.subscribed_topic_regex,
            frozenset(self.assigned),
            frozenset(self.pending_revocation),
            self.session_timeout_ms,
            self.rebalance_timeout_ms,
            self.departed,
            self.principal,
        )


@dataclass
class Group:
    """One consumer group: members, target assignment, ownership and committed offsets."""

    group_id: str
    group_epoch: int = 0
    assignment_epoch: int = 0
    assignor: str = DEFAULT_ASSIGNOR
    members: dict[str, Member] = field(default_factory=dict)
    target: dict[str, set[TopicPartition]] = field(default_factory=dict)
    owners: dict[TopicPartition, str] = field(default_factory=dict)
    offsets: dict[TopicPartition, OffsetRecord] = field(default_factory=dict)
    # Partition counts of the subscribed topics the target was computed from.
    subscription_metadata: dict[str, int] = field(default_factory=dict)
    # Set when something in this call needs a new group epoch; settled once per call so
    # one change (say a join, which also sets a subscription) bumps the epoch once.
    bump_requested: bool = False

    @property
    def state(self) -> GroupState:
        if not self.members:
            return GroupState.EMPTY
        for member in self.members.values():
            if (
                member.member_epoch != self.assignment_epoch
                or member.pending_revocation
                or member.assigned != self.target.get(member.member_id, set())
            ):
                return GroupState.RECONCILING
        return GroupState.STABLE

    def static_member(self, instance_id: str) -> Member | None:
        for member in self.members.values():
            if member.instance_id == instance_id:
                return member
        return None

    def check_invariants(self) -> None:
        """Each partition is owned by at most one member, and `owners` says which."""
        expected: dict[TopicPartition, str] = {}
        for member in self.members.values():
            assert not (member.assigned & member.pending_revocation), member.member_id
            for tp in member.owned:
                assert tp not in expected, f"{tp} owned by {expected[tp]} and {member.member_id}"
                expected[tp] = member.member_id
        assert expected == self.owners, "owners index out of sync"
        assert set(self.target) <= set(self.members), "target names a non-member"

    # -- persistence -----------------------------------------------------------------
    def to_record(self) -> dict[str, Any]:
        """The JSON-able group record (without offsets, which have their own keys)."""
        return {
            "version": GROUP_RECORD_VERSION,
            "group_id": self.group_id,
            "group_epoch": self.group_epoch,
            "assignment_epoch": self.assignment_epoch,
            "assignor": self.assignor,
            "subscription_metadata": dict(sorted(self.subscription_metadata.items())),
            "target": {m: _tps_to_json(tps) for m, tps in sorted(self.target.items())},
            "members": {
                m.member_id: {
                    "instance_id": m.instance_id,
                    "rack_id": m.rack_id,
                    "client_id": m.client_id,
                    "client_host": m.client_host,
                    "member_epoch": m.member_epoch,
                    "previous_member_epoch": m.previous_member_epoch,
                    "subscribed_topic_names": list(m.subscribed_topic_names),
                    "subscribed_topic_regex": m.subscribed_topic_regex,
                    "assigned": _tps_to_json(m.assigned),
                    "pending_revocation": _tps_to_json(m.pending_revocation),
                    "session_timeout_ms": m.session_timeout_ms,
                    "rebalance_timeout_ms": m.rebalance_timeout_ms,
                    "departed": m.departed,
                    "principal": m.principal,
                }
                for m in sorted(self.members.values(), key=lambda m: m.member_id)
            },
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any], now_ms: int) -> Group:
        """Loads a stored group; timers restart at `now_ms` so members get a full session
        timeout to find the new manager."""
        group = cls(
            group_id=str(record["group_id"]),
            group_epoch=int(record["group_epoch"]),
            assignment_epoch=int(record["assignment_epoch"]),
            assignor=str(record.get("assignor") or DEFAULT_ASSIGNOR),
            subscription_metadata={
                str(t): int(n) for t, n in record.get("subscription_metadata", {}).items()
            },
            target={str(m): _tps_from_json(tps) for m, tps in record.get("target", {}).items()},
        )
        for member_id, values in record.get("members", {}).items():
            member = Member(
                member_id=str(member_id),
                instance_id=str(values.get("instance_id", "")),
                rack_id=str(values.get("rack_id", "")),
                client_id=str(values.get("client_id", "")),
                client_host=str(values.get("client_host", "")),
                member_epoch=int(values["member_epoch"]),
                previous_member_epoch=int(values.get("previous_member_epoch", -1)),
                subscribed_topic_names=tuple(values.get("subscribed_topic_names", ())),
                subscribed_topic_regex=str(values.get("subscribed_topic_regex", "")),
                assigned=_tps_from_json(values.get("assigned", {})),
                pending_revocation=_tps_from_json(values.get("pending_revocation", {})),
                session_timeout_ms=int(values["session_timeout_ms"]),
                rebalance_timeout_ms=int(values["rebalance_timeout_ms"]),
                last_heartbeat_ms=now_ms,
                departed=bool(values.get("departed", False)),
                principal=str(values.get("principal", "")),
            )
            if member.pending_revocation:
                member.rebalance_deadline_ms = now_ms + member.rebalance_timeout_ms
            group.members[member.member_id] = member
            for tp in member.owned:
                group.owners[tp] = member.member_id
        group.check_invariants()
        return group


def _tps_to_json(tps: Iterable[TopicPartition]) -> dict[str, list[int]]:
    result: dict[str, list[int]] = {}
    for topic, partition in sorted(tps):
        result.setdefault(topic, []).append(partition)
    return result


def _tps_from_json(values: Mapping[str, Iterable[int]]) -> set[TopicPartition]:
    return {
        TopicPartition(str(topic), int(p))
        for topic, partitions in values.items()
        for p in partitions
    }


def encode_page_token(after_group_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": after_group_id}).encode()).decode()


def decode_page_token(token: str) -> str:
    """The group id a page token continues after; INVALID_PAGE_TOKEN when malformed."""
    try:
        after = json.loads(base64.urlsafe_b64decode(token.encode()))["after"]
    except (ValueError, KeyError, TypeError) as error:
        raise BrookError("INVALID_PAGE_TOKEN", "page_token is malformed; start over") from error
    if not isinstance(after, str):
        raise BrookError("INVALID_PAGE_TOKEN", "page_token is malformed; start over")
    return after


def validate_group_id(group_id: str) -> None:
    if not 1 <= len(group_id) <= GROUP_ID_MAX_CHARS:
        raise BrookError(
            "INVALID_REQUEST", f"group_id must be 1 to {GROUP_ID_MAX_CHARS} characters"
        )


class CompiledPattern(Protocol):
    """What the registry needs of a compiled subscription pattern (an RE2 program)."""

    def fullmatch(self, text: str) -> object: ...


def _regex_options() -> Any:
    options = re2.Options()
    options.max_mem = limits.REGEX_PROGRAM_BYTES_MAX
    options.log_errors = False  # a client's bad pattern is its error, not our log's
    return options


_REGEX_OPTIONS = _regex_options()


def compile_regex(pattern: str) -> CompiledPattern:
    """Compiles a subscription pattern with RE2: matching is linear in the topic name, so
    no pattern can stall the manager (issue 9, defect 6: `(a+)+b` against 28 `a`s took
    Python's backtracking `re` 8.8 s). RE2 refuses what it cannot run in linear time
    (backreferences, lookaround): INVALID_REGEX, with the reason."""
    try:
        return re2.compile(pattern, _REGEX_OPTIONS)
    except re2.error as error:
        why = error.args[0] if error.args else error
        if isinstance(why, bytes):
            why = why.decode(errors="replace")
        raise BrookError(
            "INVALID_REGEX",
            f"subscribed_topic_regex {quote(pattern)} is not a valid RE2 pattern:"
            f" {quote(str(why))}",
            {"field": "subscribed_topic_regex"},
        ) from None


@dataclass
class TopicsChange:
    """What a topic-metadata update did: groups to save and offsets to delete."""

    changed_groups: set[str] = field(default_factory=set)
    deleted_offsets: dict[str, set[TopicPartition]] = field(default_factory=dict)


class GroupRegistry:
    """Every group of the active manager, and the topic metadata assignments use.

    Single-threaded (the asyncio loop). `dirty` collects ids of groups whose persistent
    record changed; the shell saves them and clears the set.
    """

    def __init__(
        self,
        config: GroupConfig | None = None,
        *,
        new_member_id: Callable[[], str] | None = None,
        topic_visible: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.config = config or GroupConfig()
        # (principal, topic) -> may the principal describe the topic: what a regex may
        # match (None: every topic; the authorizer is off).
        self.topic_visible = topic_visible
        self.groups: dict[str, Group] = {}
        self.topics: dict[str, int] = {}
        self.topic_ids: dict[str, str] = {}
        self.dirty: set[str] = set()
        self._new_member_id = new_member_id or (lambda: uuid.uuid4().hex)
        self._regex_cache: dict[str, CompiledPattern] = {}

    # -- topics --------------------------------------------------------------------
    def set_topics(
        self,
        topic_partitions: Mapping[str, int],
        now_ms: int,
        topic_ids: Mapping[str, str] | None = None,
    ) -> TopicsChange:
        """Applies new topic metadata: drops partitions of deleted (or re-created) topics
        from assignments and offsets, re-resolves regexes, and bumps affected groups."""
        del now_ms  # no timer depends on topic changes; kept for a uniform core API
        topic_ids = dict(topic_ids or {})
        gone = {
            t
            for t in self.topics
            if t not in topic_partitions
            or (t in topic_ids and t in self.topic_ids and topic_ids[t] != self.topic_ids[t])
        }
        self.topics = dict(topic_partitions)
        self.topic_ids = topic_ids
        change = TopicsChange()
        for group in self.groups.values():
            if self._apply_topics(group, gone, change):
                change.changed_groups.add(group.group_id)
        self.dirty |= change.changed_groups
        return change

    def _exists(self, tp: TopicPartition) -> bool:
        return 0 <= tp[1] < self.topics.get(tp[0], 0)

    def _apply_topics(self, group: Group, gone: set[str], change: TopicsChange) -> bool:
        changed = False
        for member in group.members.values():
            for tps in (member.assigned, member.pending_revocation):
                dead = {tp for tp in tps if tp[0] in gone or not self._exists(tp)}
                if dead:
                    tps -= dead
                    for tp in dead:
                        group.owners.pop(tp, None)
                    changed = True
            member.resolved_topics = self._resolve(member)
        for member_id, tps in group.target.items():
            alive = {tp for tp in tps if tp[0] not in gone and self._exists(tp)}
            if alive != tps:
                group.target[member_id] = alive
                changed = True
        dead_offsets = {tp for tp in group.offsets if tp[0] in gone or not self._exists(tp)}
        if dead_offsets:
            for tp in dead_offsets:
                del group.offsets[tp]
            change.deleted_offsets[group.group_id] = dead_offsets
        if group.members and self._subscription_metadata(group) != group.subscription_metadata:
            group.bump_requested = True
        if group.bump_requested:
            self._settle(group)
            changed = True
        return changed

    # -- heartbeat -----------------------------------------------------------------
    def heartbeat(self, request: HeartbeatInput, now_ms: int) -> HeartbeatOutput:
        """Joins, keeps or removes a member and returns what it may consume now."""
        validate_group_id(request.group_id)
        if request.member_epoch < STATIC_LEAVE_EPOCH:
            raise BrookError("INVALID_REQUEST", f"member_epoch {request.member_epoch} is invalid")
        if request.member_epoch in (LEAVE_EPOCH, STATIC_LEAVE_EPOCH):
            return self._leave(request, now_ms)
        group = self.groups.get(request.group_id)
        try:
            if request.member_epoch == JOIN_EPOCH:
                group, member = self._join(request, group, now_ms)
            else:
                member = self._existing_member(request, group)
                assert group is not None
        except BrookError:
            # A refused join may already have removed a stale incarnation: settle that.
            if group is not None:
                self._settle(group)
            raise
        before = member.persistent_view()
        epoch_before = group.group_epoch
        if member.principal != request.principal:
            # A new member (or a returning static one, or one from an older record): its
            # regex resolves for the principal now acting as it.
            member.principal = request.principal
            resolved = self._resolve(member)
            if resolved != member.resolved_topics:
                member.resolved_topics = resolved
                group.bump_requested = True
        self._update_member(group, member, request, now_ms)
        self._release_revoked(group, member, request.owned)
        self._settle(group)
        self._reconcile(group, member, now_ms)
        if member.persistent_view() != before or group.group_epoch != epoch_before:
            self.dirty.add(group.group_id)
        return HeartbeatOutput(
            member_id=member.member_id,
            member_epoch=member.member_epoch,
            heartbeat_interval_ms=self._heartbeat_interval_ms(group, member),
            assignment=frozenset(member.assigned),
            group_epoch=group.group_epoch,
        )

    def _heartbeat_interval_ms(self, group: Group, member: Member) -> int:
        interval = min(self.config.heartbeat_interval_ms, max(1, member.session_timeout_ms // 3))
        waiting = member.assigned != group.target.get(member.member_id, set())
        if waiting or member.pending_revocation:
            interval = min(interval, self.config.reconciling_heartbeat_interval_ms)
        return interval

    def _validate_subscription(self, request: HeartbeatInput) -> None:
        if not request.topics and not request.regex:
            raise BrookError(
                "INVALID_REQUEST",
                "set subscribed_topic_names or subscribed_topic_regex",
                {"group_id": request.group_id},
            )
        if len(request.topics) > self.config.subscribed_topics_max:
            raise BrookError(
                "INVALID_REQUEST",
                f"at most {self.config.subscribed_topics_max} subscribed topics",
            )
        if request.regex:
            if len(request.regex) > self.config.regex_chars_max:
                raise BrookError(
                    "INVALID_REGEX",
                    f"subscribed_topic_regex longer than {self.config.regex_chars_max} chars",
                )
            self._regex(request.regex)
        if request.assignor and request.assignor not in ASSIGNORS:
            raise BrookError(
                "INVALID_REQUEST",
                f"unknown server_assignor {request.assignor!r}; use one of "
                + ", ".join(sorted(ASSIGNORS)),
            )

    def _regex(self, pattern: str) -> CompiledPattern:
        compiled = self._regex_cache.get(pattern)
        if compiled is None:
            compiled = compile_regex(pattern)
            if len(self._regex_cache) > 10_000:  # bounded: distinct patterns are few
                self._regex_cache.clear()
            self._regex_cache[pattern] = compiled
        return compiled

    def _resolve(self, member: Member) -> frozenset[str]:
        topics = set(member.subscribed_topic_names)
        if member.subscribed_topic_regex:
            pattern = self._regex(member.subscribed_topic_regex)
            visible = self.topic_visible
            principal = member.principal
            topics.update(
                t for t in self.topics
                if pattern.fullmatch(t) and (visible is None or visible(principal, t))
            )  # fmt: skip
        return frozenset(topics)

    def refresh_subscriptions(self, now_ms: int) -> set[str]:
        """Re-resolves every member's regex (the ACLs changed: what a principal may
        describe did); bumps the groups whose subscriptions moved. Their ids."""
        change = self.set_topics(self.topics, now_ms, self.topic_ids)
        return change.changed_groups

    @staticmethod
    def _check_principal(group_id: str, member: Member, principal: str) -> None:
        """A member id acts only for the principal that joined as it (a member loaded
        from a record without one adopts the first caller's)."""
        if member.principal and member.principal != principal:
            raise BrookError(
                "UNKNOWN_MEMBER_ID",
                f"group {group_id!r} has no member {member.member_id!r} of this principal;"
                " rejoin with an empty member_id and member_epoch 0",
                {"group_id": group_id},
            )

    def _join(
        self, request: HeartbeatInput, group: Group | None, now_ms: int
    ) -> tuple[Group, Member]:
        self._validate_subscription(request)
        if group is None:
            if len(self.groups) >= self.config.groups_max:
                raise BrookError("TOO_MANY_REQUESTS", "the group manager holds too many groups")
            group = Group(group_id=request.group_id)
            self.groups[group.group_id] = group
            self.dirty.add(group.group_id)
        if not group.members:
            group.assignor = request.assignor or DEFAULT_ASSIGNOR
        stale = group.members.get(request.member_id) if request.member_id else None
        if stale is not None and stale.principal in ("", request.principal):
            # A member rejoining with epoch 0 lost its state: start it over (only its own
            # principal may: another one just joins as a new member).
            self._remove_member(group, stale)
        if request.instance_id:
            previous = group.static_member(request.instance_id)
            if previous is not None:
                if not previous.departed:
                    raise BrookError(
                        "UNRELEASED_INSTANCE_ID",
                        f"instance_id {request.instance_id!r} is held by a live member; it "
                        "is released when that member leaves or its session times out",
                        {"group_id": group.group_id, "instance_id": request.instance_id},
                    )
                return group, self._replace_static(group, previous, now_ms)
        if len(group.members) >= self.config.members_per_group_max:
            raise BrookError(
                "TOO_MANY_REQUESTS",
                f"group {group.group_id!r} has {len(group.members)} members, the maximum",
            )
        member = Member(
            member_id=self._new_member_id(),
            instance_id=request.instance_id,
            last_heartbeat_ms=now_ms,
        )
        group.members[member.member_id] = member
        group.target[member.member_id] = set()
        group.bump_requested = True
        return group, member

    def _replace_static(self, group: Group, previous: Member, now_ms: int) -> Member:
        """The returning static member takes over the departed one's epoch and partitions."""
        member = Member(
            member_id=self._new_member_id(),
            instance_id=previous.instance_id,
            member_epoch=previous.member_epoch,
            previous_member_epoch=previous.previous_member_epoch,
            subscribed_topic_names=previous.subscribed_topic_names,
            subscribed_topic_regex=previous.subscribed_topic_regex,
            resolved_topics=previous.resolved_topics,
            rack_id=previous.rack_id,
            assigned=set(previous.assigned),
            pending_revocation=set(previous.pending_revocation),
            session_timeout_ms=previous.session_timeout_ms,
            rebalance_timeout_ms=previous.rebalance_timeout_ms,
            last_heartbeat_ms=now_ms,
            rebalance_deadline_ms=previous.rebalance_deadline_ms,
        )
        del group.members[previous.member_id]
        group.members[member.member_id] = member
        group.target[member.member_id] = group.target.pop(previous.member_id, set())
        for tp in member.owned:
            group.owners[tp] = member.member_id
        self.dirty.add(group.group_id)
        return member

    def _existing_member(self, request: HeartbeatInput, group: Group | None) -> Member:
        member = group.members.get(request.member_id) if group else None
        if member is None or member.departed:
            raise BrookError(
                "UNKNOWN_MEMBER_ID",
                f"group {request.group_id!r} has no member {request.member_id!r}; rejoin "
                "with an empty member_id and member_epoch 0",
                {"group_id": request.group_id},
            )
        self._check_principal(request.group_id, member, request.principal)
        if request.instance_id != member.instance_id:
            raise BrookError(
                "INVALID_REQUEST",
                f"instance_id {request.instance_id!r} does not match the member's "
                f"{member.instance_id!r}",
            )
        if request.member_epoch == member.member_epoch:
            return member
        # The previous epoch is accepted when the last response was lost, as long as the
        # member reports nothing it was not given.
        if request.member_epoch == member.previous_member_epoch and request.owned <= member.owned:
            return member
        raise BrookError(
            "FENCED_MEMBER_EPOCH",
            f"member epoch {request.member_epoch} is stale (current {member.member_epoch}); "
            "rejoin with member_epoch 0",
            {"group_id": request.group_id, "member_epoch": member.member_epoch},
        )

    def _update_member(
        self, group: Group, member: Member, request: HeartbeatInput, now_ms: int
    ) -> None:
        # Sent once, kept until changed (KIP-848): a field left empty (or 0) on a later
        # heartbeat keeps the member's value; the join sets every one (0 = the default).
        config = self.config
        joining = request.member_epoch == JOIN_EPOCH
        member.last_heartbeat_ms = now_ms
        member.rack_id = request.rack_id or ("" if joining else member.rack_id)
        member.client_id = request.client_id or ("" if joining else member.client_id)
        member.client_host = request.client_host or ("" if joining else member.client_host)
        if joining or request.session_timeout_ms:
            member.session_timeout_ms = _clamp(
                request.session_timeout_ms or config.session_timeout_ms_default,
                config.session_timeout_ms_min,
                config.session_timeout_ms_max,
            )
        if joining or request.rebalance_timeout_ms:
            member.rebalance_timeout_ms = _clamp(
                request.rebalance_timeout_ms or config.rebalance_timeout_ms_default,
                config.rebalance_timeout_ms_min,
                config.rebalance_timeout_ms_max,
            )
        if not joining and not request.topics and not request.regex:
            return  # the subscription is unchanged
        topics = tuple(sorted(set(request.topics)))
        if (
            topics != member.subscribed_topic_names
            or request.regex != member.subscribed_topic_regex
        ):
            self._validate_subscription(request)
            member.subscribed_topic_names = topics
            member.subscribed_topic_regex = request.regex
            resolved = self._resolve(member)
            if resolved != member.resolved_topics:
                member.resolved_topics = resolved
                group.bump_requested = True

    def _release_revoked(
        self, group: Group, member: Member, owned: frozenset[TopicPartition]
    ) -> None:
        """Pending partitions the member no longer reports are free for their new owner."""
        released = member.pending_revocation - owned
        for tp in released:
            member.pending_revocation.discard(tp)
            del group.owners[tp]
        if not member.pending_revocation:
            member.rebalance_deadline_ms = None

    def _reconcile(self, group: Group, member: Member, now_ms: int) -> None:
        if member.departed:
            return
        target = group.target.get(member.member_id, set())
        revoke = member.assigned - target
        if revoke:
            member.assigned -= revoke
            member.pending_revocation |= revoke
        if member.pending_revocation:
            if member.rebalance_deadline_ms is None:
                member.rebalance_deadline_ms = now_ms + member.rebalance_timeout_ms
            return  # revocations first: the member stays at its epoch until it lets go
        if member.member_epoch != group.assignment_epoch:
            member.previous_member_epoch = member.member_epoch
            member.member_epoch = group.assignment_epoch
        for tp in sorted(target - member.assigned):
            if tp not in group.owners:
                member.assigned.add(tp)
                group.owners[tp] = member.member_id

    def _leave(self, request: HeartbeatInput, now_ms: int) -> HeartbeatOutput:
        group = self.groups.get(request.group_id)
        member = group.members.get(request.member_id) if group else None
        if group is None or member is None or member.departed:
            raise BrookError(
                "UNKNOWN_MEMBER_ID",
                f"group {request.group_id!r} has no member {request.member_id!r}",
                {"group_id": request.group_id},
            )
        self._check_principal(request.group_id, member, request.principal)
        # Knowing a member's id is not being the member (issue 11): a leave carries the
        # member's current epoch (or the previous one, when the last answer was lost).
        proof = request.current_member_epoch
        if proof is None or proof < JOIN_EPOCH or proof not in (
            member.member_epoch, member.previous_member_epoch
        ):
            raise BrookError(
                "FENCED_MEMBER_EPOCH",
                f"a leave needs the member's current epoch in current_member_epoch (got"
                f" {'none' if proof is None else proof}); the member stays",
                {"group_id": request.group_id, "field": "current_member_epoch"},
            )
        if request.member_epoch == STATIC_LEAVE_EPOCH:
            if not member.instance_id:
                raise BrookError(
                    "INVALID_REQUEST", "member_epoch -2 (temporary leave) needs an instance_id"
                )
            member.departed = True
            member.last_heartbeat_ms = now_ms
            # It stopped consuming everything before leaving, so what it was revoking
            # is free now; what it still holds waits for it to come back.
            self._release_revoked(group, member, frozenset())
        else:
            self._remove_member(group, member)
            self._settle(group)
        self.dirty.add(group.group_id)
        return HeartbeatOutput(
            member_id=member.member_id,
            member_epoch=request.member_epoch,
            heartbeat_interval_ms=0,
            assignment=frozenset(),
            group_epoch=group.group_epoch,
        )

    def _remove_member(self, group: Group, member: Member) -> None:
        for tp in member.owned:
            if group.owners.get(tp) == member.member_id:
                del group.owners[tp]
        del group.members[member.member_id]
        group.target.pop(member.member_id, None)
        group.bump_requested = True
        self.dirty.add(group.group_id)

    # -- target assignment -----------------------------------------------------------
    def _subscription_metadata(self, group: Group) -> dict[str, int]:
        topics: set[str] = set()
        for member in group.members.values():
            topics |= member.resolved_topics
        return {t: self.topics[t] for t in sorted(topics) if t in self.topics}

    def _settle(self, group: Group) -> None:
        """Bumps the group epoch once if this call asked for it."""
        if group.bump_requested:
            group.bump_requested = False
            self._bump(group)

    def _bump(self, group: Group) -> None:
        """A new group epoch and the target assignment for it."""
        group.group_epoch += 1
        metadata = self._subscription_metadata(group)
        subscriptions = {
            m.member_id: MemberSubscription(m.resolved_topics, m.rack_id)
            for m in group.members.values()
        }
        assignor = get_assignor(group.assignor)
        group.target = assignor(subscriptions, metadata, group.target)
        group.subscription_metadata = metadata
        group.assignment_epoch = group.group_epoch
        self.dirty.add(group.group_id)

    # -- time ----------------------------------------------------------------------
    def tick(self, now_ms: int) -> set[str]:
        """Removes members past their session timeout or their revocation deadline.
        Returns the ids of the groups that changed."""
        changed: set[str] = set()
        for group in self.groups.values():
            expired = [
                m
                for m in group.members.values()
                if now_ms - m.last_heartbeat_ms > m.session_timeout_ms
                or (m.rebalance_deadline_ms is not None and now_ms > m.rebalance_deadline_ms)
            ]
            for member in expired:
                self._remove_member(group, member)
                changed.add(group.group_id)
            self._settle(group)
        return changed

    def next_deadline_ms(self) -> int | None:
        """The earliest time at which tick() would remove someone, or None."""
        deadlines = [
            min(
                m.last_heartbeat_ms + m.session_timeout_ms,
                m.rebalance_deadline_ms if m.rebalance_deadline_ms is not None else 2**62,
            )
            for g in self.groups.values()
            for m in g.members.values()
        ]
        return min(deadlines) if deadlines else None

    # -- offsets -------------------------------------------------------------------
    def check_commit(
        self,
        group_id: str,
        member_id: str,
        member_epoch: int,
        offsets: Iterable[OffsetCommitInput],
        principal: str | None = None,
    ) -> dict[TopicPartition, BrookError | None]:
        """Checks a commit; raises for the whole request (fencing), or returns each
        partition's error (None when the offset may be stored). With `principal`, a
        member's commit must come from the principal that joined as it."""
        validate_group_id(group_id)
        group = self.groups.get(group_id)
        member: Member | None = None
        if not member_id and member_epoch == NON_MEMBER_EPOCH:
            if group is not None and group.members:
                raise BrookError(
                    "UNKNOWN_MEMBER_ID",
                    f"group {group_id!r} has members; commit as a member, or stop them first",
                    {"group_id": group_id},
                )
        else:
            member = group.members.get(member_id) if group else None
            if member is None or member.departed:
                raise BrookError(
                    "UNKNOWN_MEMBER_ID",
                    f"group {group_id!r} has no member {member_id!r}",
                    {"group_id": group_id},
                )
            if principal is not None:
                self._check_principal(group_id, member, principal)
            if member_epoch <= 0 or member_epoch not in (
                member.member_epoch,
                member.previous_member_epoch,
            ):
                raise BrookError(
                    "FENCED_MEMBER_EPOCH",
                    f"member epoch {member_epoch} is stale (current {member.member_epoch})",
                    {"group_id": group_id, "member_epoch": member.member_epoch},
                )
        results: dict[TopicPartition, BrookError | None] = {}
        for commit in offsets:
            tp = TopicPartition.of(commit)
            results[tp] = self._check_offset(commit, member)
        return results

    def _check_offset(self, commit: OffsetCommitInput, member: Member | None) -> BrookError | None:
        tp = TopicPartition.of(commit)
        where = {"topic": commit.topic, "partition": commit.partition}
        if commit.topic not in self.topics:
            return BrookError("TOPIC_NOT_FOUND", f"topic {commit.topic!r} does not exist", where)
        if not self._exists(tp):
            return BrookError(
                "PARTITION_NOT_FOUND",
                f"topic {commit.topic!r} has no partition {commit.partition}",
                where,
            )
        if commit.offset < 0:  # -1 ("no offset") passes the request bounds, not this check
            return BrookError("INVALID_REQUEST", "offset must be >= 0", where)
        if len(commit.metadata.encode()) > OFFSET_METADATA_MAX_BYTES:
            return BrookError(
                "OFFSET_METADATA_TOO_LARGE",
                f"metadata is over {OFFSET_METADATA_MAX_BYTES} bytes",
                where,
            )
        if member is not None and tp not in member.owned:
            return BrookError(
                "FENCED_MEMBER_EPOCH",
                f"member does not own {commit.topic}-{commit.partition}; it moved elsewhere",
                where,
            )
        return None

    def apply_offsets(self, group_id: str, offsets: Mapping[TopicPartition, OffsetRecord]) -> None:
        """Records stored offsets (after etcd has them); creates an empty group if needed."""
        group = self.groups.get(group_id)
        if group is None:
            group = Group(group_id=group_id)
            self.groups[group_id] = group
            self.dirty.add(group_id)
        group.offsets.update(offsets)

    def committed(self, group_id: str) -> dict[TopicPartition, OffsetRecord]:
        group = self.groups.get(group_id)
        return dict(group.offsets) if group else {}

    # -- administration --------------------------------------------------------------
    def check_deletable(self, group_id: str) -> Group:
        group = self.groups.get(group_id)
        if group is None:
            raise BrookError("GROUP_NOT_FOUND", f"group {group_id!r} does not exist")
        if group.members:
            raise BrookError(
                "GROUP_NOT_EMPTY",
                f"group {group_id!r} has {len(group.members)} members; stop them first",
                {"group_id": group_id},
            )
        return group

    def remove_group(self, group_id: str) -> None:
        self.groups.pop(group_id, None)
        self.dirty.discard(group_id)

    def check_resettable(self, group_id: str) -> None:
        validate_group_id(group_id)
        group = self.groups.get(group_id)
        if group is not None and group.members:
            raise BrookError(
                "GROUP_NOT_EMPTY",
                f"group {group_id!r} has {len(group.members)} members; stop its consumers "
                "before resetting offsets",
                {"group_id": group_id},
            )

    def list_groups(
        self, page_size: int, page_token: str, states: set[GroupState],
        visible: Callable[[str], bool] | None = None,
    ) -> tuple[list[Group], str]:
        """One page of groups by id, filtered by state (and by `visible`, the caller's
        right to see a group id); and the next page's token."""
        after = decode_page_token(page_token) if page_token else ""
        page: list[Group] = []
        for group_id in sorted(self.groups):
            if group_id <= after:
                continue
            group = self.groups[group_id]
            if states and group.state not in states:
                continue
            if visible is not None and not visible(group_id):
                continue
            if len(page) == page_size:
                return page, encode_page_token(page[-1].group_id)
            page.append(group)
        return page, ""

    # -- loading -------------------------------------------------------------------
    def load(
        self,
        records: Iterable[Mapping[str, Any]],
        offsets: Mapping[str, Mapping[TopicPartition, OffsetRecord]],
        now_ms: int,
    ) -> TopicsChange:
        """Replaces all state with what etcd holds (on election), then reconciles it with
        the current topics (which may have changed while no manager was active)."""
        self.groups = {}
        self.dirty = set()
        for record in records:
            group = Group.from_record(record, now_ms)
            for member in group.members.values():
                member.resolved_topics = self._resolve(member)
            self.groups[group.group_id] = group
        for group_id, group_offsets in offsets.items():
            if group_id not in self.groups:
                self.groups[group_id] = Group(group_id=group_id)
            self.groups[group_id].offsets.update(group_offsets)
        change = TopicsChange()
        for group in self.groups.values():
            if self._apply_topics(group, set(), change):
                change.changed_groups.add(group.group_id)
        self.dirty |= change.changed_groups
        return change


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))
