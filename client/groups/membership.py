"""The consumer side of the group protocol: heartbeats in the background, reconciliation on
the application's turn.

`GroupMembership` owns one background task that heartbeats to the active group manager
(found through `ClusterMetadata.group_manager_address`) and records the assignment the
server hands out. It never changes what the application consumes by itself: the owner
(`GroupConsumer`) calls `reconcile(handler)` from `poll()`, `commit()` and `close()`, and
reconciliation runs the rebalance callbacks there, between two polls, so the application
is never processing a record of a partition that has already been given away:

1. partitions lost (the member was fenced or timed out): `handler.lose(...)`;
2. partitions no longer assigned: `handler.revoke(...)`, then the next heartbeat (sent at
   once) omits them from `owned_partitions`, which lets the server hand them on;
3. newly assigned partitions: `handler.assign(...)`.

Failures: NOT_COORDINATOR / COORDINATOR_NOT_AVAILABLE / transport errors refresh metadata
and retry with back-off while keeping the partitions, for at most the session timeout;
after that the member assumes it was removed and treats its partitions as lost.
UNKNOWN_MEMBER_ID and FENCED_MEMBER_EPOCH mean the member was removed: partitions are
lost and it rejoins at once. UNRELEASED_INSTANCE_ID (a static member restarted before
its old incarnation timed out) retries the join for a bounded time. Anything else
(INVALID_REGEX, INVALID_REQUEST...) is fatal and raised by the next `poll()`.

Not thread-safe: one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import grpc

from brook.client import defaults
from brook.client.metadata import ChannelPool, ClusterMetadata
from brook.client.records import TopicPartition
from brook.client.retry import RetryPolicy, call_with_retry
from brook.clock import SYSTEM_CLOCK, Clock
from brook.errors import BrookError, Reason, from_partition_error, from_rpc_error
from brook.v1 import common_pb2, groups_pb2, groups_pb2_grpc

T = TypeVar("T")

log = logging.getLogger("brook.client.groups.membership")

# Every attempt of a commit or offset fetch on the group manager (see brook.client.retry).
COMMIT_RETRY_POLICY = RetryPolicy(
    attempts_max=defaults.COMMIT_ATTEMPTS_MAX,
    backoff_ms_min=defaults.GROUP_RETRY_BACKOFF_MS,
    backoff_ms_max=defaults.GROUP_RETRY_BACKOFF_MS_MAX,
    deadline_ms=defaults.COMMIT_DEADLINE_MS,
)
# Failed heartbeats back off the same way; their bound is the session timeout instead.
HEARTBEAT_BACKOFF = COMMIT_RETRY_POLICY

JOIN_EPOCH = 0
LEAVE_EPOCH = -1
STATIC_LEAVE_EPOCH = -2

_REJOIN_REASONS = {Reason.UNKNOWN_MEMBER_ID, Reason.FENCED_MEMBER_EPOCH}


class RebalanceListener:
    """Rebalance callbacks; subclass and override what you need. Methods may be plain
    functions or coroutines. They run inside `GroupConsumer.poll()` (or close()).

    - on_partitions_revoked: these partitions are about to go to another member; commit
      what you processed. They are consumed by nobody until this returns.
    - on_partitions_assigned: these partitions are now yours; positions are set from the
      committed offsets (or auto_offset_reset).
    - on_partitions_lost: this member was removed from the group (session timeout,
      fenced); the partitions may already belong to someone else, so do not commit.
      By default it calls on_partitions_revoked, as Kafka's consumer does.
    """

    def on_partitions_revoked(self, partitions: set[TopicPartition]) -> Any:
        return None

    def on_partitions_assigned(self, partitions: set[TopicPartition]) -> Any:
        return None

    def on_partitions_lost(self, partitions: set[TopicPartition]) -> Any:
        return self.on_partitions_revoked(partitions)


async def call_listener(listener: Any, name: str, partitions: set[TopicPartition]) -> None:
    """Calls listener.<name>(partitions) if it exists, awaiting it when it is a coroutine;
    a failing callback is logged and does not break the member."""
    method = getattr(listener, name, None)
    if method is None:
        if name == "on_partitions_lost":
            method = getattr(listener, "on_partitions_revoked", None)
        if method is None:
            return
    try:
        result = method(set(partitions))
        if inspect.isawaitable(result):
            await result
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("rebalance listener %s failed", name)


class ReconcileHandler(Protocol):
    """What the owner of a membership does when the assignment changes."""

    async def lose(self, partitions: set[TopicPartition]) -> None: ...

    async def revoke(self, partitions: set[TopicPartition]) -> None: ...

    async def assign(self, partitions: set[TopicPartition]) -> None: ...


@dataclass(frozen=True)
class CommittedOffset:
    offset: int
    leader_epoch: int = -1
    metadata: str = ""


def tps_to_proto(tps: Iterable[TopicPartition]) -> list[common_pb2.TopicPartitions]:
    by_topic: dict[str, list[int]] = {}
    for topic, partition in sorted(tps):
        by_topic.setdefault(topic, []).append(partition)
    return [common_pb2.TopicPartitions(topic=t, partitions=ps) for t, ps in by_topic.items()]


def tps_from_proto(items: Iterable[common_pb2.TopicPartitions]) -> set[TopicPartition]:
    return {TopicPartition(item.topic, int(p)) for item in items for p in item.partitions}


class GroupMembership:
    """One member of a consumer group: its heartbeat task and its assignment."""

    def __init__(
        self,
        group_id: str,
        metadata: ClusterMetadata,
        channels: ChannelPool,
        *,
        topics: Iterable[str] = (),
        pattern: str = "",
        instance_id: str = "",
        rack_id: str = "",
        assignor: str = "uniform",
        session_timeout_ms: int = defaults.SESSION_TIMEOUT_MS,
        rebalance_timeout_ms: int = defaults.REBALANCE_TIMEOUT_MS,
        client_id: str = "brook-group-consumer",
        request_timeout_ms: int = defaults.GROUP_REQUEST_TIMEOUT_MS,
        find_manager: Callable[[], Awaitable[str]] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        commit_retry_policy: RetryPolicy = COMMIT_RETRY_POLICY,
    ) -> None:
        if not group_id:
            raise ValueError("group_id must not be empty")
        self.group_id = group_id
        self.instance_id = instance_id
        self.rack_id = rack_id
        self.assignor = assignor
        self.session_timeout_ms = session_timeout_ms
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.client_id = client_id
        self._metadata = metadata
        self._channels = channels
        self._request_timeout_s = request_timeout_ms / 1000
        self._find_manager = find_manager or self._manager_from_metadata
        self._clock = clock
        self._commit_retry_policy = commit_retry_policy
        self._host = socket.gethostname()
        self.topics: tuple[str, ...] = tuple(sorted(set(topics)))
        self.pattern = pattern
        # What the server said last; what the application consumes (reconciled).
        self.member_id = ""
        self.member_epoch = JOIN_EPOCH
        self.group_epoch = -1
        self.owned: set[TopicPartition] = set()
        self._target: set[TopicPartition] = set()
        self._lost: set[TopicPartition] = set()
        self.fatal: BrookError | None = None
        # Set whenever the application has reconciliation to do.
        self.changed = asyncio.Event()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._last_success_s = self._clock.monotonic_s()
        self._interval_s = defaults.HEARTBEAT_INTERVAL_MS / 1000
        self._unreleased_since_s: float | None = None
        # Bumped when the member loses its partitions; a reconcile in progress notices.
        self._incarnation = 0
        self.heartbeats = 0

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._last_success_s = self._clock.monotonic_s()
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"brook-membership-{self.group_id}"
            )

    def subscribe(self, topics: Iterable[str] = (), pattern: str = "") -> None:
        """Changes the subscription; the next heartbeat (sent at once) carries it. An
        empty subscription revokes everything (on the next reconcile) and then leaves."""
        self.topics = tuple(sorted(set(topics)))
        self.pattern = pattern
        if not self.subscribed:
            self._target = set()
            if self.owned:
                self.changed.set()
        self._wake.set()

    @property
    def subscribed(self) -> bool:
        return bool(self.topics or self.pattern)

    def wake(self) -> None:
        """Heartbeat now instead of at the next interval."""
        self._wake.set()

    def pending(self) -> bool:
        """True when reconcile() has something to do."""
        return bool(self._lost) or self._target != self.owned

    async def close(self, handler: ReconcileHandler, *, leave: bool = True) -> None:
        """Revokes everything (callbacks run), stops heartbeating, and leaves the group:
        epoch -2 for a static member (it keeps its partitions for the session timeout),
        -1 otherwise."""
        if self._closing:
            return
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        async with self._lock:
            if self._lost:
                lost, self._lost = self._lost, set()
                await handler.lose(lost)
            if self.owned:
                owned = set(self.owned)
                await handler.revoke(owned)
                self.owned.clear()
        if leave and self.member_id:
            epoch = STATIC_LEAVE_EPOCH if self.instance_id else LEAVE_EPOCH
            try:
                await asyncio.wait_for(self._send(epoch=epoch), defaults.LEAVE_TIMEOUT_MS / 1000)
            except (BrookError, TimeoutError) as error:
                log.info("leave of group %s not confirmed: %s", self.group_id, error)
            self.member_id, self.member_epoch = "", JOIN_EPOCH

    # -- reconciliation (the application's turn) ----------------------------------------
    async def reconcile(self, handler: ReconcileHandler) -> None:
        """Applies what the server decided: lost, then revoked, then assigned."""
        if self.fatal is not None:
            raise self.fatal
        if not self.pending():
            return
        async with self._lock:
            self.changed.clear()
            if self._lost:
                lost, self._lost = self._lost, set()
                await handler.lose(lost)
            incarnation = self._incarnation
            revoked = self.owned - self._target
            if revoked:
                await handler.revoke(revoked)
                if incarnation != self._incarnation:
                    return  # removed meanwhile: the next reconcile handles the loss
                self.owned -= revoked
                self._wake.set()  # report the revocation now: the new owner is waiting
            added = self._target - self.owned
            if added:
                await handler.assign(added)
                if incarnation != self._incarnation:
                    self._lost |= added  # given to the consumer, but no longer ours
                    self.changed.set()
                    return
                self.owned |= added
                self._wake.set()

    # -- the heartbeat task ----------------------------------------------------------------
    async def _run(self) -> None:
        failures = 0
        while not self._closing:
            wait_s = self._interval_s
            try:
                if self.subscribed:
                    await self._heartbeat()
                    failures = 0
                    wait_s = self._interval_s
                elif self.member_id and not self.owned:
                    # Unsubscribed and everything revoked by the application: leave. (While
                    # the application is still revoking, no heartbeat is sent: the server
                    # needs a subscription in every heartbeat.)
                    await self._send(epoch=LEAVE_EPOCH)
                    self.member_id, self.member_epoch = "", JOIN_EPOCH
            except asyncio.CancelledError:
                raise
            except BrookError as error:
                failures += 1
                wait_s = self._on_error(error, self._heartbeat_backoff_s(failures))
            except Exception as error:  # a bug must not kill the member silently
                log.exception("heartbeat of group %s failed", self.group_id)
                failures += 1
                wait_s = self._heartbeat_backoff_s(failures)
                self._check_session(BrookError(Reason.INTERNAL, str(error)))
            if self.fatal is not None:
                self.changed.set()
                return
            if wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait_s)
            self._wake.clear()

    @staticmethod
    def _heartbeat_backoff_s(failures: int) -> float:
        return HEARTBEAT_BACKOFF.backoff_s(failures, random.random())

    async def _heartbeat(self) -> None:
        owned = set(self.owned)
        response = await self._send(epoch=self.member_epoch, owned=owned)
        self.heartbeats += 1
        self._last_success_s = self._clock.monotonic_s()
        self._unreleased_since_s = None
        joined = not self.member_id
        self.member_id = response.member_id
        self.member_epoch = response.member_epoch
        self.group_epoch = response.group_epoch
        if response.heartbeat_interval_ms > 0:
            self._interval_s = response.heartbeat_interval_ms / 1000
        target = tps_from_proto(response.assignment)
        if target != self._target or joined:
            log.debug(
                "group %s member %s epoch %d: assignment %d partitions",
                self.group_id,
                self.member_id,
                self.member_epoch,
                len(target),
            )
        # An unsubscribe that raced with this heartbeat wins: nothing is assigned.
        self._target = target if self.subscribed else set()
        if self.pending():
            self.changed.set()

    async def _send(
        self, *, epoch: int, owned: set[TopicPartition] | None = None
    ) -> groups_pb2.HeartbeatResponse:
        address = await self._find_manager()
        stub = groups_pb2_grpc.GroupServiceStub(self._channels.get(address))
        request = groups_pb2.HeartbeatRequest(
            group_id=self.group_id,
            member_id=self.member_id,
            member_epoch=epoch,
            instance_id=self.instance_id,
            rack_id=self.rack_id,
            rebalance_timeout_ms=self.rebalance_timeout_ms,
            subscribed_topic_names=list(self.topics),
            subscribed_topic_regex=self.pattern,
            server_assignor=self.assignor,
            owned_partitions=tps_to_proto(owned or ()),
            client_id=self.client_id,
            client_host=self._host,
            session_timeout_ms=self.session_timeout_ms,
        )
        if epoch in (LEAVE_EPOCH, STATIC_LEAVE_EPOCH):
            # A leave proves it comes from this member with the epoch it holds.
            request.current_member_epoch = self.member_epoch
        try:
            return await stub.Heartbeat(request, timeout=self._request_timeout_s)
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None

    def _on_error(self, error: BrookError, backoff_s: float) -> float:
        """Handles a failed heartbeat; returns how long to wait before the next one."""
        if error.reason in _REJOIN_REASONS:
            log.warning(
                "member %s of group %s was removed (%s); rejoining",
                self.member_id,
                self.group_id,
                error.reason,
            )
            self._mark_lost()
            return 0.0
        if error.reason is Reason.UNRELEASED_INSTANCE_ID:
            now = self._clock.monotonic_s()
            if self._unreleased_since_s is None:
                self._unreleased_since_s = now
            limit_s = defaults.UNRELEASED_INSTANCE_RETRY_SESSIONS * self.session_timeout_ms / 1000
            if now - self._unreleased_since_s > limit_s:
                self.fatal = error
            return max(backoff_s, self._interval_s)
        if error.retriable:
            if error.refresh_metadata:
                self._metadata.request_refresh()
            self._check_session(error)
            return backoff_s
        log.error("group %s: %s", self.group_id, error)
        self.fatal = error
        return 0.0

    def _check_session(self, error: BrookError) -> None:
        """Without a heartbeat answer for a session timeout, the server has surely
        removed us: stop treating the partitions as ours."""
        silent_s = self._clock.monotonic_s() - self._last_success_s
        if self.member_id and silent_s * 1000 > self.session_timeout_ms:
            log.warning(
                "group %s: no heartbeat answer for %.1fs (%s); partitions lost",
                self.group_id,
                silent_s,
                error,
            )
            self._mark_lost()

    def _mark_lost(self) -> None:
        self._incarnation += 1
        self._lost |= self.owned
        self.owned = set()
        self._target = set()
        self.member_id = ""
        self.member_epoch = JOIN_EPOCH
        self._last_success_s = self._clock.monotonic_s()
        self.changed.set()

    async def _manager_from_metadata(self) -> str:
        address = self._metadata.group_manager_address
        if not address:
            await self._metadata.refresh()
            address = self._metadata.group_manager_address
        if not address:
            raise BrookError(Reason.COORDINATOR_NOT_AVAILABLE, "no active group manager is known")
        return address

    # -- offsets ---------------------------------------------------------------------------
    async def _call_manager(
        self, call: Callable[[groups_pb2_grpc.GroupServiceStub], Awaitable[T]]
    ) -> T:
        """One GroupService call on the active manager; retriable failures are retried
        (bounded, with back-off, refreshing metadata when the error asks for it)."""

        async def attempt() -> T:
            address = await self._find_manager()
            stub = groups_pb2_grpc.GroupServiceStub(self._channels.get(address))
            try:
                return await call(stub)
            except grpc.aio.AioRpcError as rpc_error:
                raise from_rpc_error(rpc_error) from None

        return await call_with_retry(
            attempt,
            self._commit_retry_policy,
            on_refresh=lambda _error: self._metadata.request_refresh(),
            clock=self._clock,
        )

    async def commit(
        self, offsets: Mapping[TopicPartition, CommittedOffset], *, as_member: bool = True
    ) -> None:
        """Stores offsets for the group, fenced by this member's epoch; retries retriable
        failures (bounded). Raises the first partition error, or the request's error."""
        if not offsets:
            return

        async def send(
            stub: groups_pb2_grpc.GroupServiceStub,
        ) -> groups_pb2.CommitOffsetsResponse:
            # Built per attempt: the member's id and epoch may change between attempts.
            if as_member and not self.member_id:
                raise BrookError(
                    Reason.UNKNOWN_MEMBER_ID,
                    f"not a member of group {self.group_id!r} (yet); nothing to commit as",
                )
            request = groups_pb2.CommitOffsetsRequest(
                group_id=self.group_id,
                member_id=self.member_id if as_member else "",
                member_epoch=self.member_epoch if as_member else -1,
                offsets=[
                    groups_pb2.OffsetCommit(
                        topic=tp[0],
                        partition=tp[1],
                        offset=value.offset,
                        leader_epoch=value.leader_epoch,
                        metadata=value.metadata,
                    )
                    for tp, value in sorted(offsets.items())
                ],
            )
            return await stub.CommitOffsets(request, timeout=self._request_timeout_s)

        response = await self._call_manager(send)
        for result in response.results:
            failure = from_partition_error(result.error)
            if failure is not None:
                raise failure

    async def fetch_committed(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, CommittedOffset | None]:
        """Committed offsets of the partitions (None where nothing is committed)."""
        wanted = sorted(set(partitions))
        if not wanted:
            return {}
        request = groups_pb2.FetchOffsetsRequest(
            group_id=self.group_id, partitions=tps_to_proto(wanted)
        )
        response = await self._call_manager(
            lambda stub: stub.FetchOffsets(request, timeout=self._request_timeout_s)
        )
        result: dict[TopicPartition, CommittedOffset | None] = dict.fromkeys(wanted)
        for item in response.offsets:
            tp = TopicPartition(item.topic, item.partition)
            if item.offset >= 0:
                result[tp] = CommittedOffset(item.offset, item.leader_epoch, item.metadata)
        return result
