"""RecordService (ProduceRecords / ReadRecords): plain records to and from any node.

    RecordService (servicer: bounds, errors)  ->  RecordRouter (routing, retries, executor)
                                                     |  record_api (pure: place, encode, decode)
                                                     +- PeerChannels -> leader's StorageService

The node never takes a shortcut into its own data path: every batch goes to the
partition's leader as a normal `StorageService/Produce`, every read is a
`StorageService/Fetch` (and `ListOffsets` for times and positions), also when the leader
is this node (loopback gRPC), so there is one data path with one set of checks.

Routing: leaders, epochs and node addresses come from the node's MetadataCache (fed by its
etcd watch). A retriable failure (NOT_LEADER, LEADER_NOT_AVAILABLE, FENCED_LEADER_EPOCH,
a leader that is down, ...) is retried with bounded back-off until the request's timeout,
woken early when the cache shows a new leader. Not retried for produce: outcomes that may
have been appended already (REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS_AFTER_APPEND, a call
that hit its deadline), so a retry never writes a batch twice that the leader reported
as appended. (A connection lost in the middle of a call can still be retried, as by
Brook's producer: records are not idempotent yet.)

Heavy CPU work (scanning and parsing a request's records, encoding and compressing batches,
parsing Fetch answers, decoding, building and serializing answers) runs on the executor
the node gives (`--record-threads` threads at niceness +10, main.py); the loop only routes.
The calls there are kept small where Brook controls them (records parsed 256 at a time,
answers serialized record by record), so the GIL goes back to the loop every few ms.

Thread-safety: one event loop (the executor runs pure functions only).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import grpc

from brook.clock import Clock
from brook.codec import encode_produce_request
from brook.errors import (
    CLIENT_ONLY_REASONS,
    BrookError,
    Reason,
    from_partition_error,
    from_rpc_error,
)
from brook.services.common.authz import check_call, check_produce_records
from brook.services.common.quotas import Quotas, throttle
from brook.services.common.rpc import handle_errors
from brook.services.common.server import add_generic_service
from brook.services.common.tls import peer_channel
from brook.services.metadata.cache import MetadataCache
from brook.services.metadata.configs import config_int
from brook.services.metadata.model import NO_LEADER, TopicRecord
from brook.services.node.config import NodeLimits
from brook.services.node.data_path import Closing
from brook.services.node.record_api import (
    TIMEOUT_DEFAULT_MS,
    KeylessPartitions,
    PartitionBatch,
    PartitionOutcome,
    ProduceSettings,
    ReadParams,
    RecordBounds,
    Start,
    check_produce_head,
    page_of,
    partition_not_found,
    prepare_records,
    produced_answer,
    read_answer,
    read_params,
    scan_produce_request,
)
from brook.services.node.request_bounds import OversizedRequest, admit, bounded_parser
from brook.v1 import record_service_pb2, records_pb2, storage_pb2, storage_pb2_grpc

log = logging.getLogger("brook.node.records")

SERVICE_NAME = "brook.v1.RecordService"
_PRODUCE_METHOD = "/brook.v1.StorageService/Produce"
_FETCH_METHOD = "/brook.v1.StorageService/Fetch"

T = TypeVar("T")

# How long a request for a topic the cache does not know waits for the watch to bring it
# (a topic created a moment ago reaches every node's cache within milliseconds).
TOPIC_GRACE_S: Final = 0.25
# The leader's produce timeout leaves this share of our time, so its REQUEST_TIMED_OUT
# arrives before our own deadline does.
LEADER_TIMEOUT_SHARE: Final = 0.9
# Decoding at most this many records inline (the rest goes to the executor).
INLINE_RECORDS_MAX: Final = 1000
# An evicted peer channel lets its calls finish for this long (a long-poll's bound).
EVICTED_CHANNEL_GRACE_S: Final = 35.0
# Reasons a produce never retries: the batch may be in the log already.
_MAYBE_APPENDED: Final = frozenset(
    {Reason.REQUEST_TIMED_OUT, Reason.NOT_ENOUGH_REPLICAS_AFTER_APPEND}
)
# Transport failures that are not retried (gRPC's own RESOURCE_EXHAUSTED is a message over
# a channel's size limit; the leader's TOO_MANY_REQUESTS comes with ErrorInfo and is).
_TRANSPORT_FINAL: Final = frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED})
# A node learns topics by its watch: the leader may not know a topic we know yet.
_NODE_MAY_LAG: Final = frozenset({Reason.TOPIC_NOT_FOUND, Reason.PARTITION_NOT_FOUND})


def bounds_of(limits: NodeLimits) -> RecordBounds:
    return RecordBounds(
        headers_per_record_max=limits.record_headers_per_record_max,
        headers_per_request_max=limits.record_headers_per_request_max,
        header_key_chars_max=limits.record_header_key_chars_max,
        client_id_chars_max=limits.record_client_id_chars_max,
    )


def server_error(error: BrookError) -> BrookError:
    """A failure as this server may answer it: the client-side reasons of a call to a
    peer (TRANSPORT, UNAVAILABLE) become the server reasons that say the same."""
    if error.reason not in CLIENT_ONLY_REASONS:
        return error
    code = error.code
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        reason = Reason.REQUEST_TIMED_OUT
    elif code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        reason = Reason.TOO_MANY_REQUESTS
    elif code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        reason = Reason.LEADER_NOT_AVAILABLE
    else:
        reason = Reason.INTERNAL
    return BrookError(
        reason, f"the call to the partition leader failed: {error.message}", error.metadata
    )


def _gave_up(error: BrookError, waited_ms: int) -> BrookError:
    """The last retriable error once the request's time is up (its reason, so the caller
    sees why), saying so."""
    if waited_ms <= 0 or not error.retriable:
        return error
    final = BrookError(
        error.reason, f"{error.message} (retried for {waited_ms} ms)", error.metadata
    )
    return final


class Deadline:
    """A point on the monotonic clock."""

    def __init__(self, clock: Clock, timeout_s: float) -> None:
        self._clock = clock
        self.started_s = clock.monotonic_s()
        self.at_s = self.started_s + max(0.0, timeout_s)

    def left_s(self) -> float:
        return max(0.0, self.at_s - self._clock.monotonic_s())

    def elapsed_ms(self) -> int:
        return int((self._clock.monotonic_s() - self.started_s) * 1000)


class _Backoff:
    """Doubling from min to max."""

    def __init__(self, min_s: float, max_s: float) -> None:
        self.min_s = min_s
        self.max_s = max_s
        self._next = min_s

    def next_s(self) -> float:
        delay, self._next = self._next, min(self.max_s, self._next * 2)
        return delay


@dataclass(frozen=True, slots=True)
class Route:
    """Where a partition's leader is, as the cache says."""

    leader: int
    address: str
    epoch: int


class _Peer:
    """The calls the record API makes on one node."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        # Produce takes the request already serialized (brook.codec.encode_produce_request).
        self.produce = channel.unary_unary(
            _PRODUCE_METHOD,
            request_serializer=None,
            response_deserializer=storage_pb2.ProduceResponse.FromString,
        )
        # Fetch answers are parsed by the caller (off the loop when large).
        self.fetch = channel.unary_unary(
            _FETCH_METHOD,
            request_serializer=storage_pb2.FetchRequest.SerializeToString,
            response_deserializer=None,
        )
        self.list_offsets = storage_pb2_grpc.StorageServiceStub(channel).ListOffsets


class PeerChannels:
    """One gRPC channel per node address, at most `channels_max` (least recently used goes
    first, and so do addresses no node has any more); closed by `close`."""

    def __init__(
        self,
        channels_max: int,
        receive_bytes_max: int,
        send_bytes_max: int,
        live_addresses: Callable[[], Iterable[str]],
    ) -> None:
        self._max = channels_max
        self._live = live_addresses
        self._options = [
            ("grpc.max_receive_message_length", receive_bytes_max),
            ("grpc.max_send_message_length", send_bytes_max),
            # We retry by our own rules (epochs, metadata); gRPC must not replay a Produce.
            ("grpc.enable_retries", 0),
            # A restarted node comes back at the same address: reconnect quickly.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ]
        self._peers: OrderedDict[str, _Peer] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._peers)

    def get(self, address: str) -> _Peer:
        peer = self._peers.get(address)
        if peer is not None:
            self._peers.move_to_end(address)
            return peer
        if self._closed:
            raise BrookError(Reason.LEADER_NOT_AVAILABLE, "this node is stopping")
        if len(self._peers) >= self._max:
            live = set(self._live())
            for gone in [a for a in self._peers if a not in live]:
                self._evict(gone)
            while len(self._peers) >= self._max:
                self._evict(next(iter(self._peers)))
        # TLS with this node's certificate when the cluster is secure (as replication).
        peer = _Peer(peer_channel(address, self._options))
        self._peers[address] = peer
        return peer

    def _evict(self, address: str) -> None:
        peer = self._peers.pop(address)
        task = asyncio.get_running_loop().create_task(
            peer.channel.close(grace=EVICTED_CHANNEL_GRACE_S), name=f"close-channel-{address}"
        )
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        self._closed = True
        peers, self._peers = list(self._peers.values()), OrderedDict()
        for peer in peers:
            with contextlib.suppress(Exception):
                await peer.channel.close(grace=None)
        for task in list(self._closing):
            task.cancel()
        await asyncio.gather(*self._closing, return_exceptions=True)


@dataclass(slots=True)
class _Fetched:
    """One partition's Fetch answer (batches decoded as RecordBatch messages)."""

    batches: list[records_pb2.RecordBatch]
    high_watermark: int
    log_start_offset: int


class RecordRouter:
    """The record API's driver: metadata, leaders, retries, peer calls, executor work."""

    def __init__(
        self,
        cache: MetadataCache,
        limits: NodeLimits,
        clock: Clock,
        closing: Closing,
        channels: PeerChannels,
        receive_limit_bytes: int,
        executor: Executor | None = None,
    ) -> None:
        self.cache = cache
        # Where the CPU work goes (None: the loop's default executor).
        self.executor = executor
        self.limits = limits
        self.clock = clock
        self.closing = closing
        self.channels = channels
        self.bounds = bounds_of(limits)
        self.keyless = KeylessPartitions()
        # What our channels accept in one Fetch answer (FetchRequest.receive_limit_bytes,
        # which the proto bounds to 64 KiB..256 MiB).
        self.receive_limit_bytes = max(64 << 10, min(receive_limit_bytes, 256 << 20))
        # A request to one leader carries at most this many batch bytes (the leader's
        # request bound, less room for framing); one larger batch goes alone.
        self.request_bytes_max = max(1 << 20, limits.request_max_bytes - (1 << 20))
        self._backoff_min_s = limits.record_retry_backoff_min_ms / 1000
        self._backoff_max_s = limits.record_retry_backoff_max_ms / 1000

    async def close(self) -> None:
        await self.channels.close()

    # -- shared ----------------------------------------------------------------------------
    async def _compute(self, heavy: bool, function: Callable[..., T], *args: Any) -> T:
        """function(*args), on the record executor when heavy."""
        if not heavy:
            return function(*args)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(function, *args))

    async def _topic(self, name: str) -> TopicRecord:
        topic = self.cache.topics.get(name)
        if topic is None:
            await self._until_closing(
                self.cache.wait_for(lambda cache: name in cache.topics, TOPIC_GRACE_S)
            )
            topic = self.cache.topics.get(name)
        if topic is None:
            raise BrookError(
                Reason.TOPIC_NOT_FOUND, f"topic {name!r} does not exist", {"topic": name}
            )
        return topic

    def _topic_known(self, topic: TopicRecord) -> bool:
        current = self.cache.topics.get(topic.name)
        return current is not None and current.topic_id == topic.topic_id

    def route(self, topic: TopicRecord, partition: int) -> Route:
        """The partition's leader from the cache, or why there is none to call."""
        if not self._topic_known(topic):
            raise BrookError(
                Reason.TOPIC_NOT_FOUND, f"topic {topic.name!r} was deleted", {"topic": topic.name}
            )
        record = self.cache.partitions.get((topic.name, partition))
        where = {"topic": topic.name, "partition": partition}
        if record is None or record.topic_id != topic.topic_id:
            raise BrookError(
                Reason.LEADER_NOT_AVAILABLE,
                f"{topic.name}-{partition} has no partition record yet",
                where,
            )
        if record.leader == NO_LEADER:
            raise BrookError(
                Reason.LEADER_NOT_AVAILABLE,
                f"{topic.name}-{partition} has no leader (offline)",
                where,
            )
        node = self.cache.nodes.get(record.leader)
        if node is None:
            raise BrookError(
                Reason.LEADER_NOT_AVAILABLE,
                f"the leader of {topic.name}-{partition}, node {record.leader}, is not"
                " registered (down?); waiting for a new leader",
                {**where, "leader_id": record.leader},
            )
        return Route(record.leader, node.address, record.leader_epoch)

    def _route_or_none(self, topic: TopicRecord, partition: int) -> Route | None:
        try:
            return self.route(topic, partition)
        except BrookError:
            return None

    def _moved(self, topic: TopicRecord, used: dict[int, Route | None]) -> bool:
        """True once the cache routes any of the partitions elsewhere than `used`."""
        return any(self._route_or_none(topic, p) != route for p, route in used.items())

    def _may_retry(self, error: BrookError, topic: TopicRecord, produce: bool) -> bool:
        if self.closing.is_set():
            return False
        if error.reason in _NODE_MAY_LAG:
            return self._topic_known(topic)
        if error.reason is Reason.TRANSPORT and error.code in _TRANSPORT_FINAL:
            return False  # a message over a size limit does not shrink by waiting
        if produce and (
            error.reason in _MAYBE_APPENDED
            or (
                error.reason is Reason.TRANSPORT and error.code == grpc.StatusCode.DEADLINE_EXCEEDED
            )
        ):
            return False
        return error.retriable

    async def _until_closing(self, awaitable: Awaitable[T]) -> T | None:
        """`awaitable`'s result, or None as soon as the node starts stopping."""
        task = asyncio.ensure_future(awaitable)
        try:
            waits: list[asyncio.Future[Any]] = [task, self.closing.future]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        return task.result() if task.done() and not task.cancelled() else None

    async def _pause(
        self, backoff: _Backoff, deadline: Deadline, changed: Callable[[], bool]
    ) -> None:
        """Back-off before a retry: at least the minimum, then until the cache shows a new
        route (`changed`) or the back-off ends."""
        delay_s = min(backoff.next_s(), deadline.left_s())
        floor_s = min(self._backoff_min_s, delay_s)
        await self._until_closing(asyncio.sleep(floor_s))
        rest_s = delay_s - floor_s
        if rest_s > 0 and not changed():
            await self._until_closing(self.cache.wait_for(lambda _: changed(), rest_s))

    async def _retrying(
        self,
        topic: TopicRecord,
        partition: int,
        deadline: Deadline,
        attempt: Callable[[Route], Awaitable[T]],
    ) -> T:
        """attempt(route) until it succeeds, fails for good, or the time is up."""
        backoff = _Backoff(self._backoff_min_s, self._backoff_max_s)
        while True:
            used: Route | None = None
            try:
                used = self.route(topic, partition)
                return await attempt(used)
            except BrookError as error:
                if deadline.left_s() <= 0 or not self._may_retry(error, topic, produce=False):
                    raise _gave_up(server_error(error), deadline.elapsed_ms()) from None
                log.debug("%s-%d: retrying after %s", topic.name, partition, error)
            await self._pause(
                backoff, deadline, functools.partial(self._moved, topic, {partition: used})
            )

    # -- produce ---------------------------------------------------------------------------
    async def produce(self, data: bytes, context_left_s: float | None) -> bytes:
        """ProduceRecords: checks every record, places and encodes them, sends one batch per
        partition to its leader, answers each record's outcome (a serialized
        ProduceRecordsResponse: 10,000 results take a while to serialize, off the loop)."""
        scanned = await self._compute(True, scan_produce_request, data)
        head = scanned.head
        check_produce_head(head, len(scanned.spans), self.bounds)
        timeout_s = (head.timeout_ms or TIMEOUT_DEFAULT_MS) / 1000
        if context_left_s is not None:
            timeout_s = min(timeout_s, context_left_s)
        deadline = Deadline(self.clock, timeout_s)
        topic = await self._topic(head.topic)
        count = topic.partition_count
        fixed = head.partition if head.HasField("partition") else None
        if fixed is not None and fixed >= count:
            raise partition_not_found(topic.name, fixed, count)
        keyless = 0
        if fixed is None:
            available = [p for p in range(count) if self._route_or_none(topic, p) is not None]
            keyless = self.keyless.peek(topic.name, count, available)
        now_ms = self.clock.now_ms()
        settings = ProduceSettings(
            topic=topic.name,
            partition_count=count,
            fixed_partition=fixed,
            keyless_partition=keyless,
            now_ms=now_ms,
            timestamp_max_ms=now_ms + self.limits.produce_timestamp_future_max_ms,
            codec=head.compression,
            max_batch_bytes=config_int(topic, "max_batch_bytes"),
            bounds=self.bounds,
        )
        prepared = await self._compute(True, prepare_records, data, scanned.spans, settings)
        if prepared.uses_keyless:
            self.keyless.commit(topic.name)
        outcomes = await self._send_all(topic, head, prepared.batches, deadline)
        answer, failure = await self._compute(
            len(prepared.placements) > INLINE_RECORDS_MAX, produced_answer, prepared, outcomes
        )
        if failure is not None:
            raise failure
        return answer

    async def _send_all(
        self,
        topic: TopicRecord,
        head: record_service_pb2.ProduceRecordsRequest,
        batches: list[PartitionBatch],
        deadline: Deadline,
    ) -> dict[int, PartitionOutcome]:
        """Each batch to its partition's leader (one Produce per leader, or a few when the
        batches exceed its request bound), retrying the retriable failures."""
        pending = {batch.partition: batch for batch in batches}
        outcomes: dict[int, PartitionOutcome] = {}
        last: dict[int, BrookError] = {}
        backoff = _Backoff(self._backoff_min_s, self._backoff_max_s)
        while True:
            by_address: dict[str, list[tuple[PartitionBatch, int]]] = {}
            used: dict[int, Route | None] = {}
            for partition, batch in pending.items():
                try:
                    route = self.route(topic, partition)
                except BrookError as error:
                    last[partition] = error
                    used[partition] = None
                    continue
                used[partition] = route
                by_address.setdefault(route.address, []).append((batch, route.epoch))
            calls = [
                self._produce_to(address, topic.name, head, part, deadline)
                for address, items in by_address.items()
                for part in self._split(items)
            ]
            for answered in await asyncio.gather(*calls):
                for partition, outcome in answered.items():
                    if outcome.error is None:
                        outcomes[partition] = outcome
                        pending.pop(partition)
                    else:
                        last[partition] = outcome.error
            for partition in list(pending):
                failure = last[partition]
                if deadline.left_s() <= 0 or not self._may_retry(failure, topic, produce=True):
                    outcomes[partition] = PartitionOutcome(
                        error=_gave_up(server_error(failure), deadline.elapsed_ms())
                    )
                    pending.pop(partition)
            if not pending:
                return outcomes
            for partition in pending:
                log.debug(
                    "%s-%d: retrying produce after %s", topic.name, partition, last[partition]
                )
            await self._pause(
                backoff,
                deadline,
                functools.partial(self._moved, topic, {p: used[p] for p in pending}),
            )

    def _split(
        self, items: list[tuple[PartitionBatch, int]]
    ) -> list[list[tuple[PartitionBatch, int]]]:
        """A leader's batches in requests of at most request_bytes_max (one larger alone)."""
        parts: list[list[tuple[PartitionBatch, int]]] = [[]]
        size = 0
        for item in items:
            batch_bytes = item[0].wire.size
            if parts[-1] and size + batch_bytes > self.request_bytes_max:
                parts.append([])
                size = 0
            parts[-1].append(item)
            size += batch_bytes
        return parts

    async def _produce_to(
        self,
        address: str,
        topic: str,
        head: record_service_pb2.ProduceRecordsRequest,
        items: list[tuple[PartitionBatch, int]],
        deadline: Deadline,
    ) -> dict[int, PartitionOutcome]:
        """One StorageService/Produce to one leader; each partition's outcome."""
        left_s = deadline.left_s()
        leader_timeout_ms = max(1, int(left_s * 1000 * LEADER_TIMEOUT_SHARE))
        size = sum(batch.wire.size for batch, _ in items)
        request = await self._compute(
            size > self.limits.record_inline_bytes_max,
            encode_produce_request,
            head.acks,
            leader_timeout_ms,
            [(topic, batch.partition, epoch, [batch.wire]) for batch, epoch in items],
            head.client_id,
        )
        try:
            response = await self.channels.get(address).produce(request, timeout=left_s)
        except grpc.aio.AioRpcError as rpc_error:
            error = from_rpc_error(rpc_error)
            # Every partition failed: the leader fails the call, the response in details.
            response = error.response_as(storage_pb2.ProduceResponse)
            if response is None:
                return {batch.partition: PartitionOutcome(error=error) for batch, _ in items}
        except BrookError as error:  # no channel (stopping)
            return {batch.partition: PartitionOutcome(error=error) for batch, _ in items}
        answers = {
            answer.partition: answer for answer in response.partitions if answer.topic == topic
        }
        outcomes: dict[int, PartitionOutcome] = {}
        acks_none = head.acks == storage_pb2.ACKS_NONE
        for batch, _ in items:
            answer = answers.get(batch.partition)
            if answer is None:
                outcomes[batch.partition] = PartitionOutcome(
                    error=BrookError(
                        Reason.INTERNAL,
                        f"the leader at {address} did not answer for {topic}-{batch.partition}",
                    )
                )
                continue
            partition_error = from_partition_error(answer.error)
            if partition_error is not None:
                outcomes[batch.partition] = PartitionOutcome(error=partition_error)
            else:
                outcomes[batch.partition] = PartitionOutcome(
                    base_offset=-1 if acks_none else answer.base_offset
                )
        return outcomes

    # -- read ------------------------------------------------------------------------------
    async def read(self, params: ReadParams, context_left_s: float | None) -> bytes:
        """ReadRecords: resolve the start (ListOffsets), Fetch (long-polling when nothing is
        there yet), decode within the bounds."""
        timeout_s = (TIMEOUT_DEFAULT_MS + params.max_wait_ms) / 1000
        if context_left_s is not None:
            timeout_s = min(timeout_s, context_left_s)
        deadline = Deadline(self.clock, timeout_s)
        topic = await self._topic(params.topic)
        partition = params.partition
        if partition >= topic.partition_count:
            raise partition_not_found(topic.name, partition, topic.partition_count)
        if params.start is Start.OFFSET:
            offset = params.value
        else:
            offset = await self._retrying(
                topic,
                partition,
                deadline,
                lambda route: self._list_offset(route, topic.name, partition, params, deadline),
            )
        wait_until_s = self.clock.monotonic_s() + params.max_wait_ms / 1000
        fetched = await self._retrying(
            topic,
            partition,
            deadline,
            lambda route: self._fetch(
                route, topic.name, partition, offset, params, wait_until_s, deadline
            ),
        )
        uncompressed = sum(b.uncompressed_bytes or len(b.records) for b in fetched.batches)
        records = sum(b.record_count for b in fetched.batches)
        heavy = (
            uncompressed > self.limits.record_inline_bytes_max
            or min(records, params.max_records) > INLINE_RECORDS_MAX
        )
        return await self._compute(
            heavy, self._answer, fetched, topic.name, partition, offset, params
        )

    @staticmethod
    def _answer(
        fetched: _Fetched, topic: str, partition: int, offset: int, params: ReadParams
    ) -> bytes:
        """The serialized ReadRecordsResponse (pure: runs on the record threads)."""
        page = page_of(
            fetched.batches,
            topic,
            partition,
            offset,
            params.max_records,
            params.max_bytes,
            params.as_text,
        )
        return read_answer(page, fetched.high_watermark, fetched.log_start_offset)

    async def _list_offset(
        self, route: Route, topic: str, partition: int, params: ReadParams, deadline: Deadline
    ) -> int:
        query = {
            Start.EARLIEST: storage_pb2.OFFSET_QUERY_EARLIEST,
            Start.LATEST: storage_pb2.OFFSET_QUERY_LATEST,
            Start.TIMESTAMP: storage_pb2.OFFSET_QUERY_TIMESTAMP,
        }[params.start]
        request = storage_pb2.ListOffsetsRequest(
            partitions=[
                storage_pb2.ListOffsetsPartition(
                    topic=topic,
                    partition=partition,
                    query=query,
                    timestamp_ms=params.value if params.start is Start.TIMESTAMP else 0,
                    current_leader_epoch=route.epoch,
                )
            ]
        )
        try:
            response = await self.channels.get(route.address).list_offsets(
                request, timeout=deadline.left_s()
            )
        except grpc.aio.AioRpcError as rpc_error:
            raise from_rpc_error(rpc_error) from None
        answer = response.partitions[0] if response.partitions else None
        if answer is None:
            raise BrookError(Reason.INTERNAL, f"the leader at {route.address} sent no offset")
        error = from_partition_error(answer.error)
        if error is not None:
            raise error
        return int(answer.offset)

    async def _fetch_once(
        self, route: Route, request: storage_pb2.FetchRequest, timeout_s: float
    ) -> _Fetched:
        try:
            data = await self.channels.get(route.address).fetch(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as rpc_error:
            raise from_rpc_error(rpc_error) from None
        heavy = len(data) > self.limits.record_inline_bytes_max
        response = await self._compute(heavy, storage_pb2.FetchResponse.FromString, data)
        answer = response.partitions[0] if response.partitions else None
        if answer is None:
            raise BrookError(Reason.INTERNAL, f"the leader at {route.address} sent no partition")
        error = from_partition_error(answer.error)
        if error is not None:
            raise error
        return _Fetched(list(answer.batches), answer.high_watermark, answer.log_start_offset)

    async def _fetch(
        self,
        route: Route,
        topic: str,
        partition: int,
        offset: int,
        params: ReadParams,
        wait_until_s: float,
        deadline: Deadline,
    ) -> _Fetched:
        """A Fetch at once; when it finds nothing and the caller waits, one long-poll Fetch
        for the rest of max_wait_ms (ended early when the node stops)."""
        request = storage_pb2.FetchRequest(
            max_wait_ms=0,
            min_bytes=1,
            max_bytes=params.max_bytes,
            receive_limit_bytes=self.receive_limit_bytes,
            partitions=[
                storage_pb2.FetchPartition(
                    topic=topic,
                    partition=partition,
                    fetch_offset=offset,
                    current_leader_epoch=route.epoch,
                    partition_max_bytes=params.max_bytes,
                )
            ],
        )
        fetched = await self._fetch_once(route, request, deadline.left_s())
        if offset > fetched.high_watermark:
            raise BrookError(
                Reason.OFFSET_OUT_OF_RANGE,
                f"offset {offset} of {topic}-{partition} is past the high watermark"
                f" {fetched.high_watermark} (log start {fetched.log_start_offset})",
                {
                    "topic": topic,
                    "partition": partition,
                    "offset": offset,
                    "high_watermark": fetched.high_watermark,
                    "log_start_offset": fetched.log_start_offset,
                },
            )
        wait_ms = int((wait_until_s - self.clock.monotonic_s()) * 1000)
        if fetched.batches or wait_ms <= 0 or self.closing.is_set():
            return fetched
        request.max_wait_ms = wait_ms
        waited = await self._until_closing(self._fetch_once(route, request, deadline.left_s()))
        return waited if waited is not None else fetched


class RecordService:
    """brook.v1.RecordService: bounds the requests, calls the router, maps errors."""

    def __init__(
        self, router: RecordRouter, limits: NodeLimits, quotas: Quotas | None = None
    ) -> None:
        self.router = router
        self.limits = limits
        # Enforced here, for the caller: the leader sees this node, not the client.
        self.quotas = quotas or Quotas()

    def register(self, server: grpc.aio.Server) -> None:
        add_generic_service(
            server,
            SERVICE_NAME,
            {
                # Raw bytes: the records are counted on the wire before anything parses them.
                "ProduceRecords": grpc.unary_unary_rpc_method_handler(
                    self.produce_records,
                    request_deserializer=bytes,
                    # Serialized by the router (off the loop when large).
                    response_serializer=bytes,
                ),
                "ReadRecords": grpc.unary_unary_rpc_method_handler(
                    self.read_records,
                    request_deserializer=bounded_parser(
                        record_service_pb2.ReadRecordsRequest.FromString,
                        self.limits.request_metadata_max_bytes,
                        "ReadRecords",
                    ),
                    response_serializer=bytes,
                ),
            },
        )

    @handle_errors
    async def produce_records(self, data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        principal = check_produce_records(context, data)  # authorization (issue 11)
        await throttle(self.quotas, context, principal)
        self.quotas.charge(principal, "produce_bytes_per_s", len(data))
        return await self.router.produce(data, context.time_remaining())

    @handle_errors
    async def read_records(
        self,
        request: (
            record_service_pb2.ReadRecordsRequest
            | OversizedRequest[record_service_pb2.ReadRecordsRequest]
        ),
        context: grpc.aio.ServicerContext,
    ) -> bytes:
        params = read_params(admit(request))
        principal = check_call(context, f"{SERVICE_NAME}/ReadRecords", topic=params.topic)
        await throttle(self.quotas, context, principal)
        answer = await self.router.read(params, context.time_remaining())
        self.quotas.charge(principal, "fetch_bytes_per_s", len(answer))
        return answer
