"""Follower replication: one fetcher task per source leader node (Kafka's
ReplicaFetcherThread, as asyncio tasks).

A fetcher batches every partition this node follows from one leader into one
ReplicaFetch long-poll. Each round:
1. partitions that just became followers first reconcile their log with the leader's:
   OffsetForLeaderEpoch for their latest epoch, then truncate where the logs diverge
   (KIP-101/279, `partition.truncation_target`);
2. one ReplicaFetch for all ready partitions (fetch_offset = our log end, the epoch we
   follow, last_fetched_epoch for the leader's divergence check, KIP-320);
3. per partition: append the leader's batches verbatim at their offsets and take the
   leader's HW; or truncate on `diverging_epoch`; or restart the log at the leader's log
   start on OFFSET_OUT_OF_RANGE (an empty or far-behind replica); or back off on epoch /
   leadership errors until metadata catches up.
The next request goes out as soon as the previous response is in the log: the leader
records fetch_offset as our log end, so it must never run ahead of what we appended.
One request is in flight per leader; a role change cancels it so new partitions are
picked up at once instead of after the long-poll.

Errors back off exponentially (bounded), per partition and per leader connection.

The replication throttle (issue 13, replication_throttle.py) applies to partitions this
node is being added to by a reassignment (it is in their `adding_replicas`), and to
nothing else. All fetchers of the node share one inbound budget: while it is in debt the
throttled partitions are left out of the ReplicaFetch; otherwise their
partition_max_bytes share what the budget allows; the bytes received are charged after
(a debt-based token bucket: a batch larger than the budget is taken whole and paid off
by holding back later). A fetcher that left throttled partitions out is woken when the
budget refills, which cancels a long-poll of the unthrottled ones and re-plans, so a
quiet long-poll never starves a move.

Thread-safety: one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc

from brook.clock import Clock
from brook.errors import BrookError, from_partition_error
from brook.services.common.metrics import family, node_metrics
from brook.services.common.tls import peer_channel, peer_security
from brook.services.node.config import NodeLimits
from brook.services.node.partition import Diverging, Role, truncation_target
from brook.services.node.replica import Replica
from brook.services.node.replication_throttle import ThrottleBudget
from brook.services.node.wire import FetchedPartitionView, parse_replica_fetch_response
from brook.structs import TopicPartition
from brook.v1 import errors_pb2, storage_pb2

if TYPE_CHECKING:
    from brook.services.node.replica_manager import ReplicaManager

log = logging.getLogger("brook.node.fetcher")

Key = TopicPartition
# Reasons after which a partition waits for metadata to catch up before fetching again.
_WAIT_FOR_METADATA = {
    "NOT_LEADER",
    "FENCED_LEADER_EPOCH",
    "UNKNOWN_LEADER_EPOCH",
    "NOT_LEADER_OR_FOLLOWER",
    "TOPIC_NOT_FOUND",
    "PARTITION_NOT_FOUND",
    "LEADER_NOT_AVAILABLE",
}
# Slack on top of the long-poll wait before a fetch RPC counts as lost.
_RPC_SLACK_S = 5.0


class _Backoff:
    """Exponential back-off state, doubling from min to max, reset on success."""

    def __init__(self, min_ms: int, max_ms: int, now: Callable[[], float]) -> None:
        self.min_s = min_ms / 1000
        self.max_s = max_ms / 1000
        self._now = now
        self.delay_s = 0.0
        self.until = 0.0

    def fail(self) -> None:
        self.delay_s = min(self.max_s, max(self.min_s, self.delay_s * 2))
        self.until = self._now() + self.delay_s

    def succeed(self) -> None:
        self.delay_s = 0.0
        self.until = 0.0

    def waiting(self) -> bool:
        return self._now() < self.until


class LeaderFetcher:
    """Replicates every partition this node follows from one leader node."""

    def __init__(self, owner: FetcherManager, leader_id: int) -> None:
        self.owner = owner
        self.leader_id = leader_id
        self.wake = asyncio.Event()
        self._channel: grpc.aio.Channel | None = None
        self._address = ""
        self._generation = 0
        self._fetch: grpc.aio.UnaryUnaryMultiCallable | None = None
        self._epochs: grpc.aio.UnaryUnaryMultiCallable | None = None
        limits = owner.limits
        now = owner.clock.monotonic_s
        self._now = now
        self._backoff = _Backoff(limits.replica_backoff_min_ms, limits.replica_backoff_max_ms, now)
        self._partition_backoff: dict[Key, _Backoff] = {}
        self._share_cursor = 0
        self._refill_timer: asyncio.TimerHandle | None = None
        self._closed = False
        self.task = asyncio.get_running_loop().create_task(
            self._run(), name=f"fetcher-from-{leader_id}"
        )

    async def close(self) -> None:
        self._closed = True
        if self._refill_timer is not None:
            self._refill_timer.cancel()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
        await self._close_channel()

    async def _close_channel(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()

    def _partitions(self) -> list[Replica]:
        return [
            replica
            for replica in self.owner.manager.replicas.values()
            if replica.partition.role is Role.FOLLOWER
            and replica.partition.leader_id == self.leader_id
            # An offline log's end is only memory: fetching would report it as ours.
            and not replica.log_offline
        ]

    def _partition_backoff_for(self, key: Key) -> _Backoff:
        backoff = self._partition_backoff.get(key)
        if backoff is None:
            limits = self.owner.limits
            backoff = _Backoff(limits.replica_backoff_min_ms, limits.replica_backoff_max_ms,
                               self._now)
            self._partition_backoff[key] = backoff
        return backoff

    def _throttled(self, replica: Replica) -> bool:
        """True when this node is being added to the partition (reassignment traffic)."""
        record = replica.partition.record
        return record is not None and self.owner.node_id in record.adding_replicas

    def _wake_after(self, delay_s: float) -> None:
        """Wakes the fetcher when the throttle's budget has refilled."""
        if self._refill_timer is not None:
            self._refill_timer.cancel()
        self._refill_timer = asyncio.get_running_loop().call_later(
            max(delay_s, 0.001), self.wake.set
        )

    def _apply_throttle(self, ready: list[Replica]) -> tuple[list[Replica], set[Key]]:
        """(the partitions to fetch now, the throttled ones among them): the throttled
        partitions are left out while the inbound budget is in debt."""
        budget = self.owner.throttle
        if not budget.throttled:
            return ready, set()
        throttled = {r.key for r in ready if self._throttled(r)}
        if not throttled:
            return ready, set()
        if budget.in_debt():
            self.owner.holds.inc()
            self._wake_after(budget.delay_s())
            return [r for r in ready if r.key not in throttled], set()
        return ready, throttled

    def _next_share(self, ready: list[Replica]) -> list[Replica]:
        """At most request_partitions_max partitions per request (the leader's bound),
        rotating through the rest over the following requests."""
        limit = self.owner.limits.request_partitions_max
        if len(ready) <= limit:
            return ready
        start = self._share_cursor % len(ready)
        self._share_cursor = start + limit
        return (ready[start:] + ready[:start])[:limit]

    async def _sleep(self, seconds: float) -> None:
        """Waits `seconds` or until woken (a role change), whichever comes first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), max(0.0, seconds))

    async def _ensure_channel(self, address: str) -> None:
        # A rotated client certificate (new credentials generation) gets a new channel.
        generation = peer_security().generation
        current = self._channel is not None and address == self._address
        if current and generation == self._generation:
            return
        await self._close_channel()
        limits = self.owner.limits
        self._generation = generation
        # TLS with this node's certificate (principal node:<id>) when the cluster is secure.
        self._channel = peer_channel(
            address,
            options=[
                ("grpc.max_receive_message_length", limits.replica_fetch_max_bytes + (16 << 20)),
                ("grpc.max_send_message_length", 4 << 20),
            ],
        )
        self._address = address
        self._fetch = self._channel.unary_unary(
            "/brook.v1.ReplicaService/ReplicaFetch",
            request_serializer=storage_pb2.ReplicaFetchRequest.SerializeToString,
            # Parsed by hand (wire.py): one bytes object per payload, no message copies.
            response_deserializer=parse_replica_fetch_response,
        )
        self._epochs = self._channel.unary_unary(
            "/brook.v1.ReplicaService/OffsetForLeaderEpoch",
            request_serializer=storage_pb2.OffsetForLeaderEpochRequest.SerializeToString,
            response_deserializer=storage_pb2.OffsetForLeaderEpochResponse.FromString,
        )

    async def _run(self) -> None:
        while not self._closed:
            self.wake.clear()
            partitions = self._partitions()
            if not partitions:
                await self.wake.wait()
                continue
            address = self.owner.manager.address_of(self.leader_id)
            if not address:
                await self._sleep(self.owner.limits.replica_backoff_max_ms / 1000)
                continue
            if self._backoff.waiting():
                await self._sleep(self._backoff.until - self._now())
                continue
            try:
                await self._ensure_channel(address)
                truncating = [r for r in partitions if r.partition.needs_truncation
                              and not self._partition_backoff_for(r.key).waiting()]
                if truncating:
                    await self._truncate(truncating[:self.owner.limits.request_partitions_max])
                ready = [r for r in partitions if not r.partition.needs_truncation
                         and not self._partition_backoff_for(r.key).waiting()]
                if not ready:
                    soonest = min(self._partition_backoff_for(r.key).until for r in partitions)
                    await self._sleep(max(soonest - self._now(), 0.005))
                    continue
                ready, throttled = self._apply_throttle(ready)
                if not ready:
                    # Only throttled partitions, and the budget is in debt: the refill
                    # timer (or a role change) wakes us.
                    await self.wake.wait()
                    continue
                await self._fetch_once(self._next_share(ready), throttled)
                self._backoff.succeed()
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as error:
                log.info("fetch from node %d (%s) failed: %s %s", self.leader_id, address,
                         error.code().name, error.details())
                node_metrics().follower_fetch_error(error.code().name)
                self._backoff.fail()
            except BrookError as error:
                log.warning("fetch from node %d: %s", self.leader_id, error)
                node_metrics().follower_fetch_error(error.reason)
                self._backoff.fail()
            except Exception:
                log.exception("fetcher from node %d failed", self.leader_id)
                self._backoff.fail()

    # -- truncation (KIP-101) ----------------------------------------------------------
    async def _truncate(self, replicas: list[Replica]) -> None:
        asks: dict[Key, tuple[Replica, int, int]] = {}
        for replica in replicas:
            partition = replica.partition
            latest = partition.log.latest_epoch()
            if latest is None:
                # Nothing to reconcile in an empty log; the fetch finds the leader's start.
                partition.truncation_done(partition.generation)
                continue
            asks[replica.key] = (replica, partition.generation, latest)
        if not asks:
            return
        assert self._epochs is not None
        request = storage_pb2.OffsetForLeaderEpochRequest(
            replica_id=self.owner.node_id,
            partitions=[
                storage_pb2.OffsetForLeaderEpochPartition(
                    topic=r.partition.topic, partition=r.partition.partition,
                    current_leader_epoch=r.partition.leader_epoch, leader_epoch=latest,
                )
                for r, _, latest in asks.values()
            ],
        )
        response = await self._epochs(request, timeout=_RPC_SLACK_S)
        for result in response.partitions:
            found = asks.get(TopicPartition(result.topic, result.partition))
            if found is None:
                continue
            replica, generation, _ = found
            partition = replica.partition
            if partition.generation != generation:
                continue
            error = from_partition_error(result.error)
            if error is not None:
                log.info("%s: OffsetForLeaderEpoch: %s", partition.name, error)
                self._partition_backoff_for(replica.key).fail()
                continue
            if result.end_offset >= 0:
                target = truncation_target(result.leader_epoch, result.end_offset, partition.log)
                async with replica.log.lock:
                    if partition.generation == generation:
                        await replica.truncate_to(
                            target, f"diverged from leader {self.leader_id} at epoch"
                            f" {partition.leader_epoch} (its epoch {result.leader_epoch}"
                            f" ends at {result.end_offset})",
                        )
            # An undefined answer (-1) leaves it to the fetch's divergence check.
            partition.truncation_done(generation)

    # -- fetching ----------------------------------------------------------------------
    async def _fetch_once(
        self, replicas: list[Replica], throttle_keys: set[Key] | None = None
    ) -> None:
        limits = self.owner.limits
        generations: dict[Key, int] = {}
        fetch_partitions = []
        chosen = throttle_keys or set()
        throttled = {r.key for r in replicas if r.key in chosen}
        throttled_max_bytes = limits.replica_fetch_partition_max_bytes
        if throttled:
            # What the budget allows now, shared by the throttled partitions.
            allowed = self.owner.throttle.available_bytes() // len(throttled)
            throttled_max_bytes = max(1, min(throttled_max_bytes, allowed))
        for replica in replicas:
            partition = replica.partition
            offset, last_epoch = partition.fetch_position()
            generations[replica.key] = partition.generation
            fetch_partitions.append(
                storage_pb2.ReplicaFetchPartition(
                    topic=partition.topic,
                    partition=partition.partition,
                    fetch_offset=offset,
                    current_leader_epoch=partition.leader_epoch,
                    last_fetched_epoch=last_epoch,
                    partition_max_bytes=(throttled_max_bytes if replica.key in throttled
                                         else limits.replica_fetch_partition_max_bytes),
                )
            )
        request = storage_pb2.ReplicaFetchRequest(
            replica_id=self.owner.node_id,
            max_wait_ms=limits.replica_fetch_wait_ms,
            min_bytes=1,
            max_bytes=limits.replica_fetch_max_bytes,
            partitions=fetch_partitions,
        )
        assert self._fetch is not None
        call = self._fetch(request, timeout=limits.replica_fetch_wait_ms / 1000 + _RPC_SLACK_S)
        answered: asyncio.Future[list[FetchedPartitionView]] = asyncio.ensure_future(call)
        woken: asyncio.Future[object] = asyncio.ensure_future(self.wake.wait())
        either: list[asyncio.Future[object]] = [answered, woken]  # type: ignore[list-item]
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            if not answered.done():
                call.cancel()  # the partition set changed (or we are closing): re-plan
                answered.cancel()
                with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                    await answered
        if answered.cancelled():
            return
        results = answered.result()
        if throttled:
            received = sum(len(payload)
                           for result in results
                           if TopicPartition(result.topic, result.partition) in throttled
                           for payload in result.batches)  # fmt: skip
            if received:
                self.owner.throttle.charge(received)
                self.owner.throttled_bytes.inc(received)
        for result in results:
            key = TopicPartition(result.topic, result.partition)
            fetched = self.owner.manager.replicas.get(key)
            if (
                fetched is None
                or fetched.partition.role is not Role.FOLLOWER
                or fetched.partition.generation != generations.get(key)
            ):
                continue
            await self._apply(fetched, result)

    async def _apply(self, replica: Replica, result: FetchedPartitionView) -> None:
        partition = replica.partition
        backoff = self._partition_backoff_for(replica.key)
        error = None
        if result.error is not None:
            error = from_partition_error(errors_pb2.PartitionError.FromString(result.error))
        if error is not None:
            node_metrics().follower_fetch_error(error.reason)
            if error.reason == "OFFSET_OUT_OF_RANGE":
                await self._out_of_range(replica, error)
                return
            if error.reason not in _WAIT_FOR_METADATA:
                log.warning("%s: replica fetch from %d: %s", partition.name, self.leader_id,
                            error)
            backoff.fail()
            return
        generation = partition.generation
        if result.diverging_epoch is not None:
            async with replica.log.lock:
                if partition.generation == generation:
                    await self._diverged(replica, Diverging(*result.diverging_epoch),
                                         result.log_start_offset)
            return
        appended = await replica.append_replicated(result.batches, result.high_watermark,
                                                   generation)
        if appended:
            node_metrics().topic(partition.topic).replication_in.inc(
                sum(len(payload) for payload in result.batches))
        backoff.succeed()

    async def _diverged(
        self, replica: Replica, diverging: Diverging, log_start_offset: int
    ) -> None:
        """Truncates to where the leader says our log diverges (caller holds the lock)."""
        epoch, end = diverging.epoch, diverging.end_offset
        leo = replica.log.log_end_offset
        target = truncation_target(epoch, end, replica.log)
        if target >= leo:
            # The leader says we diverge but the epoch history finds no point below our
            # end: our history is inconsistent. Rebuild from the leader (safe, slow).
            await replica.restart_at(
                log_start_offset,
                f"diverging epoch ({epoch}, {end}) gives no truncation point below {leo}",
            )
        else:
            await replica.truncate_to(
                target, f"diverging epoch ({epoch}, {end}) from leader {self.leader_id}"
            )

    async def _out_of_range(self, replica: Replica, error: BrookError) -> None:
        """Our position is outside the leader's log: restart at its start, or cut back to
        its end (a replica that is empty, far behind retention, or ahead after an
        unclean election)."""
        try:
            leader_start = int(error.metadata["log_start_offset"])
            leader_end = int(error.metadata["log_end_offset"])
        except (KeyError, ValueError):
            self._partition_backoff_for(replica.key).fail()
            return
        generation = replica.partition.generation
        async with replica.log.lock:
            if replica.partition.generation != generation:
                return
            leo = replica.log.log_end_offset
            if leo < leader_start:
                await replica.restart_at(
                    leader_start, f"the leader's log starts at {leader_start}, after our end"
                )
            elif leo > leader_end:
                await replica.truncate_to(
                    leader_end, f"the leader's log ends at {leader_end}, before ours"
                )
            else:
                self._partition_backoff_for(replica.key).fail()


class FetcherManager:
    """Keeps one LeaderFetcher per node this node follows partitions from."""

    def __init__(
        self, manager: ReplicaManager, limits: NodeLimits, node_id: int, clock: Clock,
        *, throttle: ThrottleBudget | None = None,
    ) -> None:  # fmt: skip
        self.manager = manager
        self.clock = clock
        # The inbound replication throttle, shared by every fetcher (issue 13).
        self.throttle = throttle if throttle is not None else ThrottleBudget(clock)
        self.throttled_bytes = family("brook_node_replication_throttled_bytes_total").labels("in")
        self.holds = family("brook_node_replication_throttle_holds_total").labels("in")
        self.limits = limits
        self.node_id = node_id
        self.fetchers: dict[int, LeaderFetcher] = {}
        self._closed = False
        self._stopping: set[asyncio.Task[None]] = set()

    def update(self, changed: list[Replica] | None = None) -> None:
        """Starts fetchers for new leaders, stops idle ones, and wakes the rest."""
        if self._closed:
            return
        leaders = {
            p.leader_id
            for p in (replica.partition for replica in self.manager.replicas.values())
            if p.role is Role.FOLLOWER and p.leader_id >= 0 and p.leader_id != self.node_id
        }
        for leader_id in leaders - set(self.fetchers):
            self.fetchers[leader_id] = LeaderFetcher(self, leader_id)
        for leader_id in set(self.fetchers) - leaders:
            fetcher = self.fetchers.pop(leader_id)
            task = asyncio.get_running_loop().create_task(fetcher.close())
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)
        for fetcher in self.fetchers.values():
            fetcher.wake.set()

    def throttle_changed(self) -> None:
        """The throttle's rate changed: every fetcher re-plans at once."""
        for fetcher in self.fetchers.values():
            fetcher.wake.set()

    async def close(self) -> None:
        self._closed = True
        fetchers = list(self.fetchers.values())
        self.fetchers.clear()
        for fetcher in fetchers:
            await fetcher.close()
        for task in list(self._stopping):
            with contextlib.suppress(Exception):
                await task

