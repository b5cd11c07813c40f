"""GroupService: the thin gRPC shell of the group manager.

Each method validates and converts the request, authorizes it (`Authorizer`, the
operations table in `brook.services.common.authz.table`), calls the `GroupManager` (which
calls the pure core and persists), and converts the answer. Errors are `BrookError`s,
mapped to statuses in one place (`handle_errors`); per-partition failures go into the
partition's `error` field. A standby answers every call with NOT_COORDINATOR.

Member ids, epochs and instance ids are what a member proves itself with, so a group
description shows them only to principals with alter on the group (super users included);
a describer sees them blank.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import TypeVar

import grpc

from brook.clock import SYSTEM_CLOCK, Clock
from brook.errors import BrookError, Reason
from brook.services.common.authz import ALLOW_ALL, Authorizer, Operation, Resource, ResourceType
from brook.services.common.bounds import (
    check_chars,
    check_count,
    check_each_chars,
    check_enum,
    check_range,
    check_unique,
)
from brook.services.common.principal import ANONYMOUS, Principal
from brook.services.common.quotas import Quotas
from brook.services.common.rpc import handle_errors, handle_stream_errors
from brook.services.groups import limits
from brook.services.groups.lag_monitor import LagMonitor, LagPoint
from brook.services.groups.manager import GroupManager, PartitionLagInfo, ResetTarget
from brook.services.groups.state import (
    NON_MEMBER_EPOCH,
    Group,
    GroupState,
    HeartbeatInput,
    OffsetCommitInput,
)
from brook.structs import TopicPartition
from brook.v1 import common_pb2, groups_pb2, groups_pb2_grpc

log = logging.getLogger("brook.groups.service")

# GroupState numbers a ListGroups filter may name (UNSPECIFIED matches every state).
GROUP_STATE_FILTERS = tuple(groups_pb2.GroupState.values())

# The RPCs, as the operations table names them.
_SERVICE = "brook.v1.GroupService/"
HEARTBEAT = _SERVICE + "Heartbeat"
COMMIT_OFFSETS = _SERVICE + "CommitOffsets"
FETCH_OFFSETS = _SERVICE + "FetchOffsets"
LIST_GROUPS = _SERVICE + "ListGroups"
DESCRIBE_GROUP = _SERVICE + "DescribeGroup"
DELETE_GROUP = _SERVICE + "DeleteGroup"
RESET_OFFSETS = _SERVICE + "ResetOffsets"
WATCH_GROUP = _SERVICE + "WatchGroup"
GET_LAG_HISTORY = _SERVICE + "GetLagHistory"

T = TypeVar("T")

# GetLagHistory's bounds: partitions per answer and points per partition.
LAG_SERIES_DEFAULT = 100
LAG_SERIES_MAX = 1000
LAG_POINTS_DEFAULT = 240
LAG_POINTS_MAX = 1000


def _bounded(field: str, value: int, default: int, most: int) -> int:
    if value < 0:
        raise BrookError("INVALID_REQUEST", f"{field} must not be negative")
    return min(value or default, most)


def thin(points: Sequence[T], most: int) -> list[T]:
    """At most `most` of `points`, evenly spaced, the last one always kept."""
    if len(points) <= most:
        return list(points)
    if most == 1:
        return [points[-1]]
    step = (len(points) - 1) / (most - 1)
    return [points[round(i * step)] for i in range(most)]


def check_group_id(group_id: str) -> None:
    """1 to GROUP_ID_CHARS_MAX characters (the message never quotes it)."""
    if not group_id:
        raise BrookError(Reason.INVALID_REQUEST, "group_id is empty", {"field": "group_id"})
    check_chars("group_id", group_id, limits.GROUP_ID_CHARS_MAX)


def check_topic_names(field: str, names: Sequence[str]) -> None:
    check_count(field, names, limits.TOPICS_PER_REQUEST_MAX)
    check_each_chars(field, names, limits.TOPIC_NAME_CHARS_MAX)


def check_partition_lists(
    field: str, items: Sequence[common_pb2.TopicPartitions], partitions_max: int
) -> None:
    """Bounds of a repeated TopicPartitions field: topics, name lengths, partitions."""
    check_topic_names(f"{field}.topic", [item.topic for item in items])
    total = sum(len(item.partitions) for item in items)
    if total > partitions_max:
        raise BrookError(
            Reason.INVALID_REQUEST,
            f"{field} names {total} partitions; the limit is {partitions_max}",
            {"field": field, "count": total, "limit": partitions_max},
        )


def check_heartbeat(request: groups_pb2.HeartbeatRequest) -> None:
    """Every field of a heartbeat within its bound, before the manager sees it (issue 9,
    defects 11 and 12: a 1 MB client_id once answered INTERNAL yet stayed in memory)."""
    check_group_id(request.group_id)
    check_chars("member_id", request.member_id, limits.MEMBER_ID_CHARS_MAX)
    check_chars("instance_id", request.instance_id, limits.INSTANCE_ID_CHARS_MAX)
    check_chars("rack_id", request.rack_id, limits.RACK_ID_CHARS_MAX)
    check_chars("client_id", request.client_id, limits.CLIENT_ID_CHARS_MAX)
    check_chars("client_host", request.client_host, limits.CLIENT_HOST_CHARS_MAX)
    check_chars("server_assignor", request.server_assignor, limits.ASSIGNOR_NAME_CHARS_MAX)
    check_chars(
        "subscribed_topic_regex",
        request.subscribed_topic_regex,
        limits.REGEX_CHARS_MAX,
        reason=Reason.INVALID_REGEX,
    )
    check_count(
        "subscribed_topic_names", request.subscribed_topic_names, limits.SUBSCRIBED_TOPICS_MAX
    )
    check_each_chars(
        "subscribed_topic_names", request.subscribed_topic_names, limits.TOPIC_NAME_CHARS_MAX
    )
    check_partition_lists("owned_partitions", request.owned_partitions, limits.OWNED_PARTITIONS_MAX)
    # 0 means the server's default; a negative timeout is a client bug, not a default.
    check_range("session_timeout_ms", request.session_timeout_ms, 0, 2**31 - 1)
    check_range("rebalance_timeout_ms", request.rebalance_timeout_ms, 0, 2**31 - 1)


def check_commit(request: groups_pb2.CommitOffsetsRequest) -> None:
    """Bounds of a commit; an offset outside -1..COMMITTED_OFFSET_MAX refuses the whole
    request (issue 9, defect 12: 2^63-1 was stored). Metadata size is checked per
    partition by the registry (OFFSET_METADATA_TOO_LARGE in that partition's result)."""
    check_group_id(request.group_id)
    check_chars("member_id", request.member_id, limits.MEMBER_ID_CHARS_MAX)
    check_count("offsets", request.offsets, limits.OFFSETS_PER_COMMIT_MAX)
    for item in request.offsets:
        check_chars("offsets.topic", item.topic, limits.TOPIC_NAME_CHARS_MAX)
        check_range(
            "offsets.offset", item.offset, limits.COMMITTED_OFFSET_MIN, limits.COMMITTED_OFFSET_MAX
        )


def check_list_groups(request: groups_pb2.ListGroupsRequest) -> None:
    check_count("states", request.states, limits.LIST_STATES_MAX)
    for state in request.states:
        check_enum("states", state, GROUP_STATE_FILTERS)
    check_chars("page_token", request.page_token, limits.PAGE_TOKEN_CHARS_MAX,
                reason=Reason.INVALID_PAGE_TOKEN)  # fmt: skip


def tps_to_proto(tps: Iterable[TopicPartition]) -> list[common_pb2.TopicPartitions]:
    by_topic: dict[str, list[int]] = {}
    for topic, partition in sorted(tps):
        by_topic.setdefault(topic, []).append(partition)
    return [common_pb2.TopicPartitions(topic=t, partitions=ps) for t, ps in by_topic.items()]


def tps_from_proto(items: Iterable[common_pb2.TopicPartitions]) -> frozenset[TopicPartition]:
    return frozenset(TopicPartition(item.topic, int(p)) for item in items for p in item.partitions)


def wanted_from_proto(items: Iterable[common_pb2.TopicPartitions]) -> list[tuple[str, list[int]]]:
    return [(item.topic, [int(p) for p in item.partitions]) for item in items]


def describe(
    group: Group,
    lag: list[PartitionLagInfo] | None,
    *,
    detail: bool = True,
    time_lag: Mapping[TopicPartition, LagPoint] | None = None,
) -> groups_pb2.GroupDescription:
    """The group as the API describes it; without `detail` (the caller may only describe
    the group) member ids, epochs and instance ids are left blank. `time_lag` (the lag
    monitor's latest samples) fills each partition's lag_ms when measured."""
    description = groups_pb2.GroupDescription(
        group_id=group.group_id,
        state=group.state.value,  # type: ignore[arg-type]
        group_epoch=group.group_epoch,
        assignment_epoch=group.assignment_epoch,
        assignor=group.assignor,
    )
    for member in sorted(group.members.values(), key=lambda m: m.member_id):
        entry = groups_pb2.MemberDescription(
            client_id=member.client_id,
            client_host=member.client_host,
            rack_id=member.rack_id,
            subscribed_topic_names=list(member.subscribed_topic_names),
            subscribed_topic_regex=member.subscribed_topic_regex,
            assignment=tps_to_proto(member.owned),
            target_assignment=tps_to_proto(group.target.get(member.member_id, ())),
        )
        if detail:
            entry.member_id = member.member_id
            entry.instance_id = member.instance_id
            entry.member_epoch = -2 if member.departed else member.member_epoch
        description.members.append(entry)
    if lag is None:
        owners = group.owners
        for tp in sorted(set(group.offsets) | set(owners)):
            record = group.offsets.get(tp)
            description.offsets.append(
                groups_pb2.PartitionLag(
                    topic=tp[0],
                    partition=tp[1],
                    committed_offset=record.offset if record else -1,
                    log_end_offset=-1,
                    lag=-1,
                    member_id=owners.get(tp, "") if detail else "",
                    metadata=record.metadata if record else "",
                )
            )
    else:
        for item in lag:
            description.offsets.append(
                groups_pb2.PartitionLag(
                    topic=item.topic,
                    partition=item.partition,
                    committed_offset=item.committed_offset,
                    log_end_offset=item.log_end_offset,
                    lag=item.lag,
                    member_id=item.member_id if detail else "",
                    metadata=item.metadata,
                )
            )
    for position in description.offsets:
        point = (time_lag or {}).get(TopicPartition(position.topic, position.partition))
        if point is not None and point.lag_seconds is not None:
            position.lag_ms = int(point.lag_seconds * 1000)
            position.lag_sampled_at_ms = point.time_ms
    return description



def _commit_epoch(request: groups_pb2.CommitOffsetsRequest) -> int:
    """The member epoch a commit is fenced by. Unset means a non-member commit (-1) when
    member_id is empty; a member that leaves it out is refused, because 0 is a real epoch
    and guessing would let a fenced member commit."""
    if request.HasField("member_epoch"):
        return request.member_epoch
    if request.member_id:
        raise BrookError(
            "INVALID_REQUEST",
            "member_epoch is required with member_id: send the epoch of your last heartbeat"
            " (leave both out for a non-member commit)",
            {"field": "member_epoch"},
        )
    return NON_MEMBER_EPOCH

def describable_topics(authz: Authorizer) -> Callable[[str, str], bool] | None:
    """What a member's regex may match: (principal, topic) -> may the principal describe
    the topic (as Kafka's regex subscriptions); None with the authorizer off."""
    if not authz.enabled:
        return None
    parse = functools.lru_cache(maxsize=4096)(Principal.parse)

    def visible(principal: str, topic: str) -> bool:
        try:
            who = parse(principal) if principal else ANONYMOUS
        except ValueError:
            return False
        return authz.may(who, Operation.DESCRIBE, Resource(ResourceType.TOPIC, topic))

    return visible


class GroupService(groups_pb2_grpc.GroupServiceServicer):
    """brook.v1.GroupService over a GroupManager."""

    def __init__(
        self, manager: GroupManager, *, clock: Clock = SYSTEM_CLOCK,
        authz: Authorizer = ALLOW_ALL,
        lag_monitor: LagMonitor | None = None,
        quotas: Quotas | None = None,
    ) -> None:  # fmt: skip
        self.manager = manager
        self._clock = clock
        self.authz = authz
        # Client quotas (common/quotas.py): streams_max bounds a principal's WatchGroups.
        self.quotas = quotas if quotas is not None else Quotas(clock)
        # The lag monitor: its latest samples fill lag_ms, its history GetLagHistory.
        self.lag_monitor = lag_monitor

    def _time_lag(self, group_id: str) -> Mapping[TopicPartition, LagPoint]:
        return self.lag_monitor.latest(group_id) if self.lag_monitor is not None else {}

    @handle_errors
    async def GetLagHistory(
        self, request: groups_pb2.GetLagHistoryRequest, context: grpc.aio.ServicerContext
    ) -> groups_pb2.GetLagHistoryResponse:
        check_group_id(request.group_id)
        self.authz.require(context, GET_LAG_HISTORY, group=request.group_id)
        max_series = _bounded("max_series", request.max_series, LAG_SERIES_DEFAULT, LAG_SERIES_MAX)
        max_points = _bounded("max_points", request.max_points, LAG_POINTS_DEFAULT, LAG_POINTS_MAX)
        self.manager.get_group(request.group_id)  # NOT_COORDINATOR, GROUP_NOT_FOUND
        monitor = self.lag_monitor
        response = groups_pb2.GetLagHistoryResponse()
        if monitor is None:
            return response
        response.interval_ms = int(monitor.interval_s * 1000)
        history = monitor.history(request.group_id)
        keys = sorted(history)
        response.truncated = len(keys) > max_series
        for index, tp in enumerate(keys[:max_series]):
            if index % 50 == 49:
                await asyncio.sleep(0)  # the lease keep-alive and others run meanwhile
            series = response.series.add(topic=tp.topic, partition=tp.partition)
            for point in thin(history[tp], max_points):
                sample = series.points.add(time_ms=point.time_ms, lag_records=point.lag_records)
                if point.lag_seconds is not None:
                    sample.lag_ms = int(point.lag_seconds * 1000)
        return response

    @handle_errors
    async def Heartbeat(
        self, request: groups_pb2.HeartbeatRequest, context: grpc.aio.ServicerContext
    ) -> groups_pb2.HeartbeatResponse:
        check_heartbeat(request)
        principal = self.authz.require(context, HEARTBEAT, group=request.group_id)
        self.authz.require_topics(context, HEARTBEAT, principal, request.subscribed_topic_names)
        owned = tps_from_proto(request.owned_partitions)
        output = await self.manager.heartbeat(
            HeartbeatInput(
                group_id=request.group_id,
                member_id=request.member_id,
                member_epoch=request.member_epoch,
                instance_id=request.instance_id,
                rack_id=request.rack_id,
                rebalance_timeout_ms=request.rebalance_timeout_ms,
                topics=tuple(request.subscribed_topic_names),
                regex=request.subscribed_topic_regex,
                assignor=request.server_assignor,
                owned=owned,
                client_id=request.client_id,
                client_host=request.client_host or _peer_host(context),
                session_timeout_ms=request.session_timeout_ms,
                current_member_epoch=(
                    request.current_member_epoch
                    if request.HasField("current_member_epoch") else None
                ),
                principal=str(principal),
            )
        )
        return groups_pb2.HeartbeatResponse(
            member_id=output.member_id,
            member_epoch=output.member_epoch,
            heartbeat_interval_ms=output.heartbeat_interval_ms,
            assignment=tps_to_proto(output.assignment),
            group_epoch=output.group_epoch,
        )

    @handle_errors
    async def CommitOffsets(
        self, request: groups_pb2.CommitOffsetsRequest, context: grpc.aio.ServicerContext
    ) -> groups_pb2.CommitOffsetsResponse:
        check_commit(request)
        check_unique("offsets", (TopicPartition.of(item) for item in request.offsets))
        principal = self.authz.require(context, COMMIT_OFFSETS, group=request.group_id)
        denied = self.authz.topic_errors(context, COMMIT_OFFSETS, principal,
                                         (item.topic for item in request.offsets))
        offsets = [
            OffsetCommitInput(
                topic=item.topic,
                partition=item.partition,
                offset=item.offset,
                # Unset is "unknown" (-1): 0 is a real epoch (explicit presence).
                leader_epoch=item.leader_epoch if item.HasField("leader_epoch") else -1,
                metadata=item.metadata,
            )
            for item in request.offsets
        ]
        allowed = [commit for commit in offsets if commit.topic not in denied]
        results: dict[TopicPartition, BrookError | None] = {}
        if allowed or not denied:
            results = dict(await self.manager.commit(
                request.group_id, request.member_id, _commit_epoch(request), allowed,
                str(principal),
            ))  # fmt: skip
        for commit in offsets:
            if commit.topic in denied:
                results[TopicPartition.of(commit)] = denied[commit.topic]
        response = groups_pb2.CommitOffsetsResponse()
        for commit in offsets:
            result = groups_pb2.CommitOffsetResult(topic=commit.topic, partition=commit.partition)
            error = results.get(TopicPartition.of(commit))
            if error is not None:
                result.error.CopyFrom(error.to_partition_error())
            response.results.append(result)
        return response

    @handle_errors
    async def FetchOffsets(
        self, request: groups_pb2.FetchOffsetsRequest, context: grpc.aio.ServicerContext
    ) -> groups_pb2.FetchOffsetsResponse:
        check_group_id(request.group_id)
        check_partition_lists("partitions", request.partitions, limits.PARTITIONS_PER_REQUEST_MAX)
        principal = self.authz.require(context, FETCH_OFFSETS, group=request.group_id)
        self.authz.require_topics(context, FETCH_OFFSETS, principal,
                                  (item.topic for item in request.partitions))
        found = self.manager.fetch_offsets(request.group_id, wanted_from_proto(request.partitions))
        if not request.partitions:  # everything committed: the topics the caller may see
            visible = set(self.authz.visible_topics(FETCH_OFFSETS, principal,
                                                    {tp[0] for tp, _ in found}))
            found = [(tp, record) for tp, record in found if tp[0] in visible]
        response = groups_pb2.FetchOffsetsResponse()
        for (topic, partition), record in found:
            if record is None:
                response.offsets.append(
                    groups_pb2.CommittedOffset(
                        topic=topic, partition=partition, offset=-1, leader_epoch=-1
                    )
                )
            else:
                response.offsets.append(
                    groups_pb2.CommittedOffset(
                        topic=topic,
                        partition=partition,
                        offset=record.offset,
                        leader_epoch=record.leader_epoch,
                        metadata=record.metadata,
                        commit_timestamp_ms=record.commit_timestamp_ms,
                    )
                )
        return response

    @handle_errors
    async def ListGroups(
        self, request: groups_pb2.ListGroupsRequest, context: grpc.aio.ServicerContext
    ) -> groups_pb2.ListGroupsResponse:
        check_list_groups(request)
        principal = self.authz.require(context, LIST_GROUPS)
        page_size = request.page_size or limits.LIST_PAGE_SIZE_DEFAULT
        if not 1 <= page_size <= limits.LIST_PAGE_SIZE_MAX:
            raise BrookError(
                "INVALID_REQUEST", f"page_size must be 1 to {limits.LIST_PAGE_SIZE_MAX}"
            )
        requested = set(request.states)
        states: set[GroupState] = set()  # empty: every state
        if requested and groups_pb2.GROUP_STATE_UNSPECIFIED not in requested:
            valid = {state.value for state in GroupState}
            states = {GroupState(s) for s in requested if s in valid}
            if not states:  # only ASSIGNING, which is never reported
                return groups_pb2.ListGroupsResponse()
        groups, token = self.manager.list_groups(
            page_size, request.page_token, states,
            lambda group_id: self.authz.visible_groups(LIST_GROUPS, principal, group_id),
        )  # fmt: skip
        return groups_pb2.ListGroupsResponse(
            groups=[
                groups_pb2.GroupSummary(
                    group_id=g.group_id,
                    state=g.state.value,  # type: ignore[arg-type]
                    member_count=len(g.members),
                    assignor=g.assignor,
                )
                for g in groups
            ],
            next_page_token=token,
        )

    @handle_errors
    async def DescribeGroup(
        self, request: groups_pb2.DescribeGroupRequest, context: grpc.aio.ServicerContext
    ) -> groups_pb2.DescribeGroupResponse:
        check_group_id(request.group_id)
        principal = self.authz.require(context, DESCRIBE_GROUP, group=request.group_id)
        detail = self.authz.shows_detail(DESCRIBE_GROUP, principal, request.group_id)
        group = self.manager.get_group(request.group_id)
        if not request.include_lag:
            return groups_pb2.DescribeGroupResponse(group=describe(group, None, detail=detail))
        lag = await self.manager.lag(group)
        # Describe the group as it is now, after the lag lookups.
        group = self.manager.get_group(request.group_id)
        return groups_pb2.DescribeGroupResponse(
            group=describe(group, lag, detail=detail, time_lag=self._time_lag(group.group_id))
        )

    @handle_errors
    async def DeleteGroup(
        self, request: groups_pb2.DeleteGroupRequest, context: grpc.aio.ServicerContext
    ) -> groups_pb2.DeleteGroupResponse:
        check_group_id(request.group_id)
        self.authz.require(context, DELETE_GROUP, group=request.group_id)
        await self.manager.delete_group(request.group_id)
        return groups_pb2.DeleteGroupResponse()

    @handle_errors
    async def ResetOffsets(
        self, request: groups_pb2.ResetOffsetsRequest, context: grpc.aio.ServicerContext
    ) -> groups_pb2.ResetOffsetsResponse:
        check_group_id(request.group_id)
        check_partition_lists("partitions", request.partitions, limits.PARTITIONS_PER_REQUEST_MAX)
        principal = self.authz.require(context, RESET_OFFSETS, group=request.group_id)
        # No partitions named: every topic the group has committed offsets for.
        topics = [item.topic for item in request.partitions] or sorted(
            {tp[0] for tp in self.manager.registry.committed(request.group_id)}
        )
        self.authz.require_topics(context, RESET_OFFSETS, principal, topics)
        which = request.WhichOneof("target")
        if which is None:
            raise BrookError(
                "INVALID_REQUEST",
                "set a target: to_earliest, to_latest, to_timestamp_ms, to_offset or shift_by",
            )
        target = {
            "to_earliest": ResetTarget("earliest"),
            "to_latest": ResetTarget("latest"),
            "to_timestamp_ms": ResetTarget("timestamp", request.to_timestamp_ms),
            "to_offset": ResetTarget("offset", request.to_offset),
            "shift_by": ResetTarget("shift", request.shift_by),
        }[which]
        changes = await self.manager.reset_offsets(
            request.group_id, wanted_from_proto(request.partitions), target, request.dry_run
        )
        return groups_pb2.ResetOffsetsResponse(
            changes=[
                groups_pb2.OffsetChange(
                    topic=c.topic,
                    partition=c.partition,
                    previous_offset=c.previous_offset,
                    new_offset=c.new_offset,
                )
                for c in changes
            ]
        )

    @handle_stream_errors
    async def WatchGroup(
        self, request: groups_pb2.WatchGroupRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[groups_pb2.WatchGroupResponse]:
        check_group_id(request.group_id)
        principal = self.authz.require(context, WATCH_GROUP, group=request.group_id)
        detail = self.authz.shows_detail(WATCH_GROUP, principal, request.group_id)
        interval_ms = request.lag_interval_ms or limits.WATCH_LAG_INTERVAL_MS_DEFAULT
        if interval_ms < limits.WATCH_LAG_INTERVAL_MS_MIN:
            raise BrookError(
                "INVALID_REQUEST",
                f"lag_interval_ms must be at least {limits.WATCH_LAG_INTERVAL_MS_MIN}",
            )
        self.manager.get_group(request.group_id)  # GROUP_NOT_FOUND up front
        with self.quotas.stream(principal):  # THROTTLED past the principal's streams_max
            updates = self._watch(context, request, interval_ms, principal, detail)
            async with contextlib.aclosing(updates):
                async for update in updates:
                    yield update

    async def _watch(
        self, context: grpc.aio.ServicerContext, request: groups_pb2.WatchGroupRequest,
        interval_ms: int, principal: Principal, detail: bool,
    ) -> AsyncGenerator[groups_pb2.WatchGroupResponse, None]:  # fmt: skip
        manager = self.manager
        group_id = request.group_id
        sent_version = -1
        next_lag_at = 0.0
        while True:
            manager.require_active()
            version = manager.version(group_id)
            now = self._clock.monotonic_s()
            if version != sent_version or now >= next_lag_at:
                sent_version = version
                next_lag_at = now + interval_ms / 1000
                group_now = manager.registry.groups.get(group_id)
                if group_now is None:  # deleted while watched: say so, then end
                    dead = groups_pb2.GroupDescription(
                        group_id=group_id, state=groups_pb2.GROUP_STATE_DEAD
                    )
                    yield groups_pb2.WatchGroupResponse(group=dead)
                    return
                lag = await manager.lag(group_now)
                group = manager.registry.groups.get(group_id) or group_now
                # ACLs may change while the stream is open: each update is checked again.
                principal = self.authz.require(context, WATCH_GROUP, group=group_id)
                detail = self.authz.shows_detail(WATCH_GROUP, principal, group_id)
                time_lag = self._time_lag(group_id)
                yield groups_pb2.WatchGroupResponse(
                    group=describe(group, lag, detail=detail, time_lag=time_lag)
                )
                await asyncio.sleep(limits.WATCH_COALESCE_MS / 1000)  # rate limit, not a sync
            left = max(0.0, next_lag_at - self._clock.monotonic_s())
            if manager.version(group_id) == sent_version:
                await manager.wait_changed(left)


def _peer_host(context: grpc.aio.ServicerContext) -> str:
    """The caller's host from the gRPC peer string ("ipv4:1.2.3.4:5678")."""
    try:
        peer = context.peer() or ""
    except Exception:
        return ""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        return rest.rsplit(":", 1)[0].strip("[]")
    return rest
