"""The client's view of the cluster: where each partition's leader is, and channels to it.

`ClusterMetadata` asks `MetadataService.GetMetadata` (served by every coordinator,
active or standby) at a bootstrap address, caches nodes and the topics the client uses,
and refreshes on demand: when a call fails with `refresh_metadata`, when a topic is first
used, or when the cache is older than `max_age_ms`. Concurrent refresh requests share one
call; refreshes asked for by errors are spaced by a minimum interval, and failed ones back
off exponentially up to a bound, so an outage costs a bounded trickle of calls.

`ChannelPool` holds one `grpc.aio` channel per address with the client's channel options
(message size, keepalive, fast reconnect) and security (plaintext, or TLS with a CA,
client certificate and/or bearer token: `brook.transport`). Everything here runs on one
event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import grpc

from brook.client import defaults
from brook.client.retry import RetryPolicy, call_with_retry
from brook.clock import SYSTEM_CLOCK, Clock
from brook.errors import BrookError, Reason, from_partition_error, from_rpc_error
from brook.transport import ChannelSecurity, default_security
from brook.v1 import metadata_pb2, metadata_pb2_grpc

log = logging.getLogger("brook.client.metadata")

NO_LEADER = -1


def parse_bootstrap(bootstrap: str | Sequence[str]) -> list[str]:
    """'host:port,host:port' (or a list of them) to a list of addresses, order kept."""
    items = bootstrap.split(",") if isinstance(bootstrap, str) else list(bootstrap)
    addresses = [item.strip() for item in items if item.strip()]
    if not addresses:
        raise ValueError("bootstrap names no address (expected host:port[,host:port...])")
    for address in addresses:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"bad bootstrap address {address!r} (expected host:port)")
    return addresses


def channel_options(max_message_bytes: int = defaults.MESSAGE_BYTES_MAX) -> list[tuple[str, int]]:
    """The options of every client channel."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", defaults.KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", defaults.KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.http2.max_pings_without_data", 0),
        # The client retries by its own rules (epochs, metadata refresh); gRPC must not
        # replay a Produce behind its back.
        ("grpc.enable_retries", 0),
        # A restarted node comes back at the same address: reconnect within seconds, not
        # gRPC's default of up to two minutes.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 2_000),
        # Each channel gets its own connection, so one client's nodes never share one.
        ("grpc.use_local_subchannel_pool", 1),
    ]


# A storage node learns topics from its etcd watch, so just after CreateTopic or
# CreatePartitions it may answer these for a partition the client's metadata already lists.
NODE_MAY_LAG_REASONS = frozenset({Reason.TOPIC_NOT_FOUND, Reason.PARTITION_NOT_FOUND})


def retriable_if_node_lags(error: BrookError, topic_known: bool) -> BrookError:
    """Treats a node's TOPIC_NOT_FOUND / PARTITION_NOT_FOUND as retriable (with a metadata
    refresh) while the client's metadata still lists the topic, as Kafka treats
    UNKNOWN_TOPIC_OR_PARTITION; the caller's retry bounds still apply. Once a refresh drops
    the topic, the error is final again."""
    if topic_known and error.reason in NODE_MAY_LAG_REASONS:
        error.retriable = True
        error.refresh_metadata = True
    return error


class ChannelPool:
    """One grpc.aio channel per address, created on first use, closed by close().

    `security` (brook.transport.ChannelSecurity) makes them TLS channels verifying the
    servers against a CA, with the client's certificate and/or bearer token; default
    plaintext. When the credential files change (a rotated client certificate), new
    calls get new channels and the old ones close once their calls are done (bounded).
    """

    def __init__(
        self,
        max_message_bytes: int = defaults.MESSAGE_BYTES_MAX,
        *,
        security: ChannelSecurity | None = None,
    ) -> None:
        self._options = channel_options(max_message_bytes)
        self.security = security or default_security()
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._generation = 0
        self._retiring: set[asyncio.Task[None]] = set()
        self._closed = False

    def get(self, address: str) -> grpc.aio.Channel:
        if self.security.tls:
            generation = self.security.generation
            if generation != self._generation:
                self._generation = generation
                self._retire_all()
        channel = self._channels.get(address)
        if channel is None:
            if self._closed:
                raise BrookError(Reason.UNAVAILABLE, "the client is closed")
            channel = self.security.channel(address, self._options)
            self._channels[address] = channel
        return channel

    def _retire_all(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            task = asyncio.get_running_loop().create_task(
                channel.close(grace=defaults.RETIRED_CHANNEL_GRACE_S)
            )
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def close(self) -> None:
        self._closed = True
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close(grace=None)
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)


@dataclass(frozen=True)
class NodeInfo:
    """A live storage node."""

    node_id: int
    address: str
    rack: str = ""


@dataclass(frozen=True)
class PartitionInfo:
    """One partition's leadership as the client last saw it."""

    topic: str
    partition: int
    leader_id: int
    leader_epoch: int
    replica_ids: tuple[int, ...] = ()
    isr_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class TopicInfo:
    """A topic's partitions; `available` lists the partitions that have a leader."""

    name: str
    topic_id: str
    partitions: tuple[PartitionInfo, ...]
    available: tuple[int, ...]

    @property
    def partition_count(self) -> int:
        return len(self.partitions)


class ClusterMetadata:
    """A cache of nodes and topic partition maps, refreshed on demand.

    Not thread-safe: one event loop owns it. `clock` is injectable.
    """

    def __init__(
        self,
        bootstrap: str | Sequence[str],
        pool: ChannelPool,
        *,
        request_timeout_ms: int = defaults.REQUEST_TIMEOUT_MS,
        min_refresh_interval_ms: int = defaults.METADATA_REFRESH_INTERVAL_MS_MIN,
        refresh_backoff_max_ms: int = defaults.METADATA_REFRESH_BACKOFF_MS_MAX,
        max_rounds: int = defaults.METADATA_ROUNDS_MAX,
        max_age_ms: int = defaults.METADATA_AGE_MS_MAX,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._bootstrap = parse_bootstrap(bootstrap)
        self._pool = pool
        self._request_timeout_s = request_timeout_ms / 1000
        self._min_interval_s = min_refresh_interval_ms / 1000
        self._backoff_max_s = refresh_backoff_max_ms / 1000
        # A refresh tries every address once per round; rounds back off like any retry.
        self._rounds_policy = RetryPolicy(
            attempts_max=max_rounds,
            backoff_ms_min=min_refresh_interval_ms,
            backoff_ms_max=max(min_refresh_interval_ms, refresh_backoff_max_ms),
        )
        self._max_age_s = max_age_ms / 1000
        self._clock = clock
        self.cluster_id = ""
        self.revision = -1
        self.nodes: dict[int, NodeInfo] = {}
        self.topics: dict[str, TopicInfo] = {}
        self.missing_topics: set[str] = set()
        # Topics GetMetadata refused to describe to this principal (PERMISSION_DENIED).
        self.denied_topics: dict[str, BrookError] = {}
        self.coordinator_address: str | None = None
        self.group_manager_address: str | None = None
        # Bumped on every applied answer; waiters compare it.
        self.version = 0
        self._interest: set[str] = set()
        self._last_refresh_s = -1e18
        self._refresh_task: asyncio.Task[None] | None = None
        self._refresh_topics: frozenset[str] = frozenset()
        self._background: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[], None]] = []
        self._closed = False

    # -- reading the cache -------------------------------------------------------------

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Called (on the loop) after every applied refresh."""
        self._listeners.append(callback)

    def leader(self, topic: str, partition: int) -> tuple[NodeInfo, int] | None:
        """The leader node and epoch of a partition, or None when unknown or offline."""
        info = self.topics.get(topic)
        if info is None or partition >= len(info.partitions):
            return None
        state = info.partitions[partition]
        node = self.nodes.get(state.leader_id)
        if node is None:
            return None
        return node, state.leader_epoch

    def metadata_addresses(self) -> list[str]:
        """Where GetMetadata may be asked: the active coordinator first, then bootstrap."""
        addresses = list(self._bootstrap)
        if self.coordinator_address and self.coordinator_address not in addresses:
            addresses.insert(0, self.coordinator_address)
        return addresses

    @property
    def stale(self) -> bool:
        return self._clock.monotonic_s() - self._last_refresh_s > self._max_age_s

    # -- refreshing --------------------------------------------------------------------

    def add_topics(self, topics: Iterable[str]) -> None:
        self._interest.update(topics)

    async def refresh(self, topics: Iterable[str] = ()) -> None:
        """Refreshes the cache (and adds `topics` to what it tracks); coalesces callers.

        Raises BrookError UNAVAILABLE when no metadata server answered within the bounds.
        """
        self._interest.update(topics)
        while True:
            task = self._refresh_task
            if task is None or task.done():
                self._refresh_topics = frozenset(self._interest)
                task = asyncio.get_running_loop().create_task(self._refresh_once())
                self._refresh_task = task
                await asyncio.shield(task)
                return
            covers = self._interest <= self._refresh_topics
            try:
                await asyncio.shield(task)
            except BrookError:
                if covers:
                    raise
            if covers:
                return

    def request_refresh(self) -> None:
        """Starts a background refresh unless one is running; errors are logged, not raised."""
        if self._closed:
            return
        if self._background is not None and not self._background.done():
            return
        self._background = asyncio.get_running_loop().create_task(self._background_refresh())

    async def _background_refresh(self) -> None:
        try:
            await self.refresh()
        except BrookError as error:
            log.warning("metadata refresh failed: %s", error)

    async def wait_for_topic(
        self, topic: str, timeout_ms: int = defaults.TOPIC_WAIT_MS
    ) -> TopicInfo:
        """The topic's partition map, refreshing until it appears or `timeout_ms` passes.

        A topic just created can take a moment to reach the coordinator's cache, hence the
        bounded wait. Raises BrookError TOPIC_NOT_FOUND after it.
        """
        info = self.topics.get(topic)
        if info is not None:
            return info
        deadline = self._clock.monotonic_s() + timeout_ms / 1000
        delay = self._min_interval_s
        while True:
            await self.refresh([topic])
            info = self.topics.get(topic)
            if info is not None:
                return info
            denied = self.denied_topics.get(topic)
            if denied is not None:
                raise denied
            remaining = deadline - self._clock.monotonic_s()
            if remaining <= 0:
                raise BrookError(
                    Reason.TOPIC_NOT_FOUND, f"topic {topic!r} does not exist", {"topic": topic}
                )
            await asyncio.sleep(min(delay, remaining))  # back-off between polls of a bound wait
            delay = min(delay * 2, self._backoff_max_s)

    async def _refresh_once(self) -> None:
        wait = self._last_refresh_s + self._min_interval_s - self._clock.monotonic_s()
        if wait > 0:
            await asyncio.sleep(wait)  # spacing between refreshes, not synchronization
        request = metadata_pb2.GetMetadataRequest(topics=sorted(self._refresh_topics))
        try:
            response = await call_with_retry(
                lambda: self._get_metadata_anywhere(request),
                self._rounds_policy,
                # Any server's failure may be that server's alone: another round may find
                # one that answers. UNAVAILABLE (the client is closed) is final.
                retriable=lambda error: error.reason is not Reason.UNAVAILABLE,
                clock=self._clock,
            )
        except BrookError as last_error:
            if last_error.reason is Reason.UNAVAILABLE:
                raise
            raise BrookError(
                Reason.UNAVAILABLE,
                f"no metadata server answered at {', '.join(self._bootstrap)}: {last_error}",
            ) from None
        self._apply(response)

    async def _get_metadata_anywhere(
        self, request: metadata_pb2.GetMetadataRequest
    ) -> metadata_pb2.GetMetadataResponse:
        """One round: every metadata address in turn; the last failure when none answered."""
        last_error = BrookError(Reason.UNAVAILABLE, "no metadata address to ask")
        for address in self.metadata_addresses():
            stub = metadata_pb2_grpc.MetadataServiceStub(self._pool.get(address))
            try:
                response: metadata_pb2.GetMetadataResponse = await stub.GetMetadata(
                    request, timeout=self._request_timeout_s
                )
                return response
            except grpc.aio.AioRpcError as error:
                last_error = from_rpc_error(error)
                log.debug("GetMetadata at %s failed: %s", address, last_error)
                if address == self.coordinator_address:
                    self.coordinator_address = None
        raise last_error

    def _apply(self, response: metadata_pb2.GetMetadataResponse) -> None:
        self._last_refresh_s = self._clock.monotonic_s()
        if response.metadata_revision < self.revision:
            return  # an older view than ours (a lagging standby): keep what we have
        self.revision = response.metadata_revision
        self.cluster_id = response.cluster_id
        self.nodes = {
            node.node_id: NodeInfo(node.node_id, node.address, node.rack) for node in response.nodes
        }
        self.coordinator_address = response.coordinator.address or None
        self.group_manager_address = response.group_manager.address or None
        requested_all = not self._refresh_topics
        seen: set[str] = set()
        for topic in response.topics:
            error = from_partition_error(topic.error)
            if error is not None:
                if error.reason is Reason.TOPIC_NOT_FOUND:
                    self.topics.pop(topic.name, None)
                    self.missing_topics.add(topic.name)
                elif error.reason is Reason.PERMISSION_DENIED:
                    # Say so at once: waiting for the topic to "appear" would end in a
                    # misleading TOPIC_NOT_FOUND.
                    self.topics.pop(topic.name, None)
                    self.denied_topics[topic.name] = error
                continue
            seen.add(topic.name)
            self.missing_topics.discard(topic.name)
            self.denied_topics.pop(topic.name, None)
            partitions = tuple(
                PartitionInfo(
                    topic.name,
                    state.partition,
                    state.leader_id,
                    state.leader_epoch,
                    tuple(state.replica_ids),
                    tuple(state.isr_ids),
                )
                for state in sorted(topic.partitions, key=lambda s: s.partition)
            )
            available = tuple(
                p.partition
                for p in partitions
                if p.leader_id != NO_LEADER and p.leader_id in self.nodes
            )
            self.topics[topic.name] = TopicInfo(topic.name, topic.topic_id, partitions, available)
        if requested_all:
            for name in list(self.topics):
                if name not in seen:
                    del self.topics[name]
        self.version += 1
        for listener in self._listeners:
            listener()

    async def close(self) -> None:
        self._closed = True
        for task in (self._refresh_task, self._background):
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, BrookError):
                    pass
