"""StorageService: Produce, Fetch, Subscribe and ListOffsets on the partitions this node
leads: parse, call the data path (`data_path.py`), encode.

Batches are never decoded here. The service is registered with a generic handler and its
own (de)serializers, under the public name `brook.v1.StorageService` (so reflection and
generated clients work unchanged):
- Produce requests are parsed as `ProduceRequestWire` by `wire.produce_request_steps`
  in the handler (yielding to the loop between partitions, stopping at the bounds):
  each batch arrives as a view of its raw serialized bytes;
- Fetch and Subscribe answers are `FetchResponseWire` / `SubscribeResponseWire`: stored
  payloads go out as they are, and clients decode them as `RecordBatch`.

Authorization (issue 11, the operations table in `brook.services.common.authz.table`):
each call names its RPC to the `Authorizer` once parsed and bounded, before the data
path sees it; a partition whose topic the caller may not write (Produce), read (Fetch,
Subscribe) or describe (ListOffsets) answers PERMISSION_DENIED in its entry and is never
passed on, while the others are served.

Every failure of one partition is a `PartitionError` in that partition's entry (its
`error_info` is the ErrorInfo a status would carry). Whole-call problems (bad arguments, too
many requests on a connection) end the call with a status, and so does a Produce, Fetch or
ListOffsets whose every partition failed: the first failure's status, with the response
in its details (`brook.errors.every_partition_failed`). Every bound comes from `NodeLimits`.

Thread-safety: one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    Sequence,
    Sized,
)
from typing import TYPE_CHECKING, Protocol, TypeVar

import grpc
from google.protobuf.internal.containers import RepeatedCompositeFieldContainer

from brook.errors import FAILED_CALL_PARTITIONS_MAX, BrookError, every_partition_failed
from brook.internal.v1 import wire_pb2
from brook.services.common.authz import ALLOW_ALL, Authorizer
from brook.services.common.quotas import WAIT_MAX_S, Quotas, throttle
from brook.services.common.rpc import handle_errors, handle_stream_errors
from brook.services.common.server import add_generic_service
from brook.services.node.acks import Acks
from brook.services.node.config import NodeLimits
from brook.services.node.data_path import (
    YIELD_EVERY_PARTITIONS,
    DataPath,
    PartitionRead,
    ProduceOutcome,
    yield_every,
)
from brook.services.node.partition import Role
from brook.services.node.receive_limit import (
    Budget,
    batch_budget,
    fit_fetch,
    receive_limit,
    subscribe_messages,
)
from brook.services.node.request_bounds import (
    KeysOf,
    OversizedRequest,
    admit,
    bounded_parser,
    check_count,
    check_unique,
    requested_epoch,
)
from brook.services.node.wire import ProduceRequestView, produce_request_steps
from brook.structs import TopicPartition
from brook.v1 import storage_pb2
from brook.wire import MalformedWire

if TYPE_CHECKING:
    from brook.services.node.replica import Replica

SERVICE_NAME = "brook.v1.StorageService"

# A multi-partition response message (ProduceResponse, FetchResponse, ListOffsetsResponse).
R = TypeVar("R")
# A per-partition answer (ProduceOutcome, PartitionRead).
A = TypeVar("A")
# A requested partition (ProducePartitionView, FetchPartition).
P = TypeVar("P", bound="_Named")

# The RPCs, as the operations table names them.
PRODUCE = SERVICE_NAME + "/Produce"
FETCH = SERVICE_NAME + "/Fetch"
SUBSCRIBE = SERVICE_NAME + "/Subscribe"
LIST_OFFSETS = SERVICE_NAME + "/ListOffsets"
DESCRIBE_LOG_DIRS = SERVICE_NAME + "/DescribeLogDirs"


class _Named(Protocol):
    topic: str
    partition: int


def _allowed(partitions: Sequence[P], denied: dict[str, BrookError]) -> Sequence[P]:
    """The partitions whose topic was not refused (all of them, unchanged, usually)."""
    if not denied:
        return partitions
    return [p for p in partitions if p.topic not in denied]


def _merged(
    partitions: Sequence[_Named], denied: dict[str, BrookError], served: list[A],
    refused: Callable[[TopicPartition, BrookError], A],
) -> list[A]:  # fmt: skip
    """One answer per requested partition, in request order: the refused ones, and the
    served ones (answers to `_allowed(partitions, denied)`, in its order)."""
    if not denied:
        return served
    rest = iter(served)
    return [
        refused(TopicPartition(p.topic, p.partition), denied[p.topic]) if p.topic in denied
        else next(rest)
        for p in partitions
    ]  # fmt: skip

_QUERIES = {
    storage_pb2.OFFSET_QUERY_EARLIEST: "earliest",
    storage_pb2.OFFSET_QUERY_LATEST: "latest",
    storage_pb2.OFFSET_QUERY_TIMESTAMP: "timestamp",
}


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(value, high))


def _produced(outcome: ProduceOutcome) -> storage_pb2.ProducePartitionResponse:
    answer = storage_pb2.ProducePartitionResponse(
        topic=outcome.key.topic, partition=outcome.key.partition,
        base_offset=outcome.base_offset, last_offset=outcome.last_offset,
        log_append_time_ms=outcome.log_append_time_ms, log_start_offset=outcome.log_start_offset,
    )
    if outcome.error is not None:
        answer.error.CopyFrom(outcome.error.to_partition_error())
    return answer


def _unless_every_partition_failed(response: R) -> R:
    """`response`, or the call's failure when every partition in it failed: a status with
    the first failure's code and ErrorInfo, and `response` itself in the details (so a
    rejected single-partition call is a failed call, and nothing is lost)."""
    failure = every_partition_failed(response, response.partitions)  # type: ignore[attr-defined]
    if failure is not None:
        raise failure
    return response


def _failed_read(read: PartitionRead) -> storage_pb2.FetchedPartition:
    assert read.error is not None
    return storage_pb2.FetchedPartition(topic=read.key.topic, partition=read.key.partition,
                                        error=read.error.to_partition_error())


def _fill(answer: wire_pb2.FetchedPartitionWire, read: PartitionRead) -> None:
    answer.topic = read.key.topic
    answer.partition = read.key.partition
    if read.error is not None:
        answer.error.CopyFrom(read.error.to_partition_error())
        return
    answer.high_watermark = read.high_watermark
    answer.log_start_offset = read.log_start_offset
    answer.batches.extend(read.batches)


async def _fetched_into(
    entries: RepeatedCompositeFieldContainer[wire_pb2.FetchedPartitionWire],
    reads: list[PartitionRead],
) -> None:
    """Every read's entry, added in place (a message built from a list of 10,000 entries
    deep-copies them: ~50 ms of one loop turn), yielding to the loop as the data path does
    (encoding 10,000 partition errors is ~200 ms of Python)."""
    for index, read in enumerate(reads):
        await yield_every(index)
        _fill(entries.add(), read)


def _subscribe_encoder(budget: Budget) -> Callable[[list[PartitionRead]], Awaitable[list[bytes]]]:
    """Serializes reads as Subscribe messages of at most `budget` bytes of batches each
    (the stream then holds these copies only)."""

    async def encode(reads: list[PartitionRead]) -> list[bytes]:
        messages = []
        for part in await subscribe_messages(reads, budget):
            message = wire_pb2.SubscribeResponseWire()
            await _fetched_into(message.partitions, part)
            messages.append(message.SerializeToString())
        return messages

    return encode


class StorageService:
    """brook.v1.StorageService over the node's data path."""

    def __init__(
        self, data_path: DataPath, limits: NodeLimits, *, authz: Authorizer = ALLOW_ALL,
        quotas: Quotas | None = None,
        replicas: Callable[[], Mapping[TopicPartition, Replica]] | None = None,
        data_dir: str = "",
        node_id: int = -1,
    ) -> None:
        self.data_path = data_path
        self.limits = limits
        self.authz = authz
        # DescribeLogDirs: the node's replicas (the ReplicaManager's) and data directory.
        self._replicas = replicas or dict
        self.data_dir = data_dir
        self.node_id = node_id
        # Client quotas (services/common/quotas.py): none configured means no wait.
        self.quotas = quotas or Quotas()
        self._inflight_by_connection: dict[str, int] = {}
        self._streams = 0
        self._streams_by_peer: dict[str, int] = {}

    def register(self, server: grpc.aio.Server) -> None:
        limits = self.limits
        metadata_max = limits.request_metadata_max_bytes
        add_generic_service(server, SERVICE_NAME, {
            # Parsed by hand in the handler (`_parse_produce`): batches stay views into
            # the request bytes (wire.py).
            "Produce": grpc.unary_unary_rpc_method_handler(
                self.produce,
                request_deserializer=bytes,
                response_serializer=storage_pb2.ProduceResponse.SerializeToString,
            ),
            # Requests without payloads are refused by size before they are parsed.
            # Serialized by the handler, which checks the size against the client's limit.
            "Fetch": grpc.unary_unary_rpc_method_handler(
                self.fetch,
                request_deserializer=bounded_parser(storage_pb2.FetchRequest.FromString,
                                                    metadata_max, "Fetch"),
                response_serializer=bytes,
            ),
            # Messages are serialized by the handler (one copy held per stream).
            "Subscribe": grpc.unary_stream_rpc_method_handler(
                self.subscribe,
                request_deserializer=bounded_parser(storage_pb2.SubscribeRequest.FromString,
                                                    metadata_max, "Subscribe"),
                response_serializer=bytes,
            ),
            "ListOffsets": grpc.unary_unary_rpc_method_handler(
                self.list_offsets,
                request_deserializer=bounded_parser(storage_pb2.ListOffsetsRequest.FromString,
                                                    metadata_max, "ListOffsets"),
                response_serializer=storage_pb2.ListOffsetsResponse.SerializeToString,
            ),
            "DescribeLogDirs": grpc.unary_unary_rpc_method_handler(
                self.describe_log_dirs,
                request_deserializer=bounded_parser(
                    storage_pb2.DescribeLogDirsRequest.FromString, metadata_max,
                    "DescribeLogDirs"),
                response_serializer=storage_pb2.DescribeLogDirsResponse.SerializeToString,
            ),
        })

    def _check_partitions(self, field: str, partitions: Sized, keys: KeysOf) -> None:
        """The partition bound (on the count alone, O(1)), then uniqueness."""
        check_count(field, partitions, self.limits.request_partitions_max)
        check_unique(field, keys())

    @contextlib.contextmanager
    def _connection_slot(self, peer: str) -> Iterator[None]:
        """Admission: at most produce_inflight_per_connection_max calls per connection."""
        count = self._inflight_by_connection.get(peer, 0)
        limit = self.limits.produce_inflight_per_connection_max
        if count >= limit:
            raise BrookError(
                "TOO_MANY_REQUESTS",
                f"{limit} produce requests are already in flight on this connection; wait"
                " for answers before sending more",
                {"limit": limit},
            )
        self._inflight_by_connection[peer] = count + 1
        try:
            yield
        finally:
            left = self._inflight_by_connection[peer] - 1
            if left:
                self._inflight_by_connection[peer] = left
            else:
                del self._inflight_by_connection[peer]

    async def _parse_produce(self, data: bytes) -> ProduceRequestView:
        """The request, parsed with a turn for the loop every YIELD_EVERY_PARTITIONS
        partitions, stopping one partition or batch past the bounds."""
        request = ProduceRequestView()
        steps = produce_request_steps(data, request, self.limits.request_partitions_max,
                                      self.limits.produce_batches_max)
        try:
            for index, _ in enumerate(steps):
                await yield_every(index)
        except MalformedWire as error:
            raise BrookError("INVALID_REQUEST", f"not a ProduceRequest: {error}") from None
        return request

    @handle_errors
    async def produce(
        self, data: bytes, context: grpc.aio.ServicerContext
    ) -> storage_pb2.ProduceResponse:
        request = await self._parse_produce(data)
        if request.over_bounds:
            limits = self.limits
            raise BrookError(
                "INVALID_REQUEST",
                f"a produce request may name at most {limits.request_partitions_max}"
                f" partitions and carry at most {limits.produce_batches_max} batches",
                {"field": "partitions", "limit": limits.request_partitions_max,
                 "batches_limit": limits.produce_batches_max},
            )
        self._check_partitions("partitions", request.partitions, lambda: [
            TopicPartition(p.topic, p.partition) for p in request.partitions])
        acks = Acks.from_wire(request.acks)
        if request.timeout_ms < 0:
            raise BrookError("INVALID_REQUEST", f"timeout_ms {request.timeout_ms} < 0")
        principal = self.authz.require(context, PRODUCE)
        denied = self.authz.topic_errors(context, PRODUCE, principal,
                                         (p.topic for p in request.partitions))
        allowed = _allowed(request.partitions, denied)
        # A principal over its quota waits here, before any work (back-pressure).
        await throttle(self.quotas, context, principal)
        self.quotas.charge(principal, "produce_bytes_per_s", len(data))
        outcomes: list[ProduceOutcome] = []
        if allowed:
            with self._connection_slot(context.peer() or "unknown"):
                outcomes = await self.data_path.produce(acks, request.timeout_ms, allowed)
        outcomes = _merged(request.partitions, denied, outcomes,
                           lambda key, error: ProduceOutcome(key, error=error))
        if acks is Acks.NONE:
            # With acks=none the append has not happened: offsets and time are unknown (-1,
            # as Kafka answers), never a plausible 0. A refused partition says so.
            answers = [
                storage_pb2.ProducePartitionResponse(
                    topic=outcome.key.topic, partition=outcome.key.partition,
                    base_offset=-1, last_offset=-1, log_append_time_ms=-1, log_start_offset=-1,
                )
                for outcome in outcomes
            ]
            if denied:
                for answer, outcome in zip(answers, outcomes, strict=True):
                    if outcome.key.topic in denied and outcome.error is not None:
                        answer.error.CopyFrom(outcome.error.to_partition_error())
                return _unless_every_partition_failed(
                    storage_pb2.ProduceResponse(partitions=answers))
            return storage_pb2.ProduceResponse(partitions=answers)
        answers = []
        for index, outcome in enumerate(outcomes):
            await yield_every(index)
            answers.append(_produced(outcome))
        return _unless_every_partition_failed(storage_pb2.ProduceResponse(partitions=answers))

    @handle_errors
    async def fetch(
        self, request: storage_pb2.FetchRequest | OversizedRequest[storage_pb2.FetchRequest],
        context: grpc.aio.ServicerContext,
    ) -> bytes:
        request = admit(request)
        self._check_partitions("partitions", request.partitions,
                               lambda: [TopicPartition.of(p) for p in request.partitions])
        limits = self.limits
        if request.max_bytes < 0 or request.min_bytes < 0 or request.max_wait_ms < 0:
            raise BrookError("INVALID_REQUEST", "max_bytes, min_bytes and max_wait_ms must be >= 0")
        # Batches fit the client's receive limit (stock clients: 4 MiB), whatever max_bytes.
        budget = batch_budget(receive_limit(request.receive_limit_bytes), request.ByteSize(),
                              len(request.partitions))
        max_bytes = _clamp(request.max_bytes or limits.fetch_default_bytes, 1,
                           min(limits.fetch_max_bytes, budget.batch_bytes))
        min_bytes = _clamp(request.min_bytes, 1, max_bytes)
        principal = self.authz.require(context, FETCH)
        denied = self.authz.topic_errors(context, FETCH, principal,
                                         (p.topic for p in request.partitions))
        allowed = _allowed(request.partitions, denied)
        await throttle(self.quotas, context, principal)
        reads: list[PartitionRead] = []
        if allowed:  # nothing to wait for when every partition was refused
            reads = await self.data_path.fetch(allowed, max_bytes, min_bytes,
                                               request.max_wait_ms)
        reads = _merged(request.partitions, denied, reads,
                        lambda key, error: PartitionRead(key, error=error))
        await fit_fetch(reads, [p.fetch_offset for p in request.partitions], budget)
        if len(reads) <= FAILED_CALL_PARTITIONS_MAX and all(r.error is not None for r in reads):
            # Errors only, no batches: the public message costs nothing to build.
            _unless_every_partition_failed(storage_pb2.FetchResponse(
                partitions=[_failed_read(read) for read in reads]))
        response = wire_pb2.FetchResponseWire()
        await _fetched_into(response.partitions, reads)
        data = response.SerializeToString()
        if len(data) > budget.limit:  # errors made the entries larger than estimated
            budget.trim(response.partitions, len(data))
            data = response.SerializeToString()
        self.quotas.charge(principal, "fetch_bytes_per_s", len(data))
        return data

    @handle_stream_errors
    async def subscribe(
        self,
        request: storage_pb2.SubscribeRequest | OversizedRequest[storage_pb2.SubscribeRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[bytes]:
        """Serialized SubscribeResponseWire messages, one at a time: the next is read only
        once gRPC has taken this one, so a reader that never reads holds at most one
        message of at most subscribe_buffer_bytes (plus gRPC's own copy) on the node."""
        request = admit(request)
        limits = self.limits
        if not request.partitions:
            raise BrookError("INVALID_REQUEST", "subscribe to at least one partition")
        self._check_partitions("partitions", request.partitions,
                               lambda: [TopicPartition.of(p) for p in request.partitions])
        if request.max_bytes_per_response < 0:
            raise BrookError("INVALID_REQUEST", "max_bytes_per_response must be >= 0")
        budget = batch_budget(receive_limit(request.receive_limit_bytes), request.ByteSize(),
                              len(request.partitions))
        max_bytes = _clamp(request.max_bytes_per_response or limits.subscribe_buffer_bytes, 1,
                           min(limits.subscribe_buffer_bytes, budget.batch_bytes))
        principal = self.authz.require(context, SUBSCRIBE)
        denied = self.authz.topic_errors(context, SUBSCRIBE, principal,
                                         (p.topic for p in request.partitions))
        allowed = _allowed(request.partitions, denied)
        if not allowed:
            raise next(iter(denied.values()))
        with self._stream_slot(context.peer() or "unknown"), self.quotas.stream(principal):
            await throttle(self.quotas, context, principal)
            if denied:  # the refused partitions' part of the stream ends at once
                refused = wire_pb2.SubscribeResponseWire()
                for wanted in request.partitions:
                    if wanted.topic in denied:
                        _fill(refused.partitions.add(), PartitionRead(
                            TopicPartition.of(wanted), error=denied[wanted.topic]))  # fmt: skip
                yield refused.SerializeToString()
            topics = {p.topic for p in allowed}
            async for message in self.data_path.subscribe(allowed, max_bytes,
                                                          _subscribe_encoder(budget)):
                # An ACL revoked while the stream is open ends it (decisions are cached).
                self.authz.require_topics(context, SUBSCRIBE, principal, topics)
                # Over its fetch rate, the stream waits before the next message.
                await self.quotas.admit(principal, WAIT_MAX_S, requests=0)
                self.quotas.charge(principal, "fetch_bytes_per_s", len(message))
                yield message

    @contextlib.contextmanager
    def _stream_slot(self, peer: str) -> Iterator[None]:
        """Admission: subscribe_streams_max on the node, subscribe_streams_per_peer_max
        per client connection (so one client cannot take every slot)."""
        limits = self.limits
        if self._streams >= limits.subscribe_streams_max:
            raise BrookError(
                "TOO_MANY_REQUESTS",
                f"{limits.subscribe_streams_max} subscribe streams are open on this node;"
                " retry later or use Fetch",
                {"limit": limits.subscribe_streams_max},
            )
        mine = self._streams_by_peer.get(peer, 0)
        if mine >= limits.subscribe_streams_per_peer_max:
            raise BrookError(
                "TOO_MANY_REQUESTS",
                f"{limits.subscribe_streams_per_peer_max} subscribe streams are already open"
                " on this connection; close one or subscribe to more partitions per stream",
                {"limit": limits.subscribe_streams_per_peer_max, "scope": "connection"},
            )
        self._streams += 1
        self._streams_by_peer[peer] = mine + 1
        try:
            yield
        finally:
            self._streams -= 1
            left = self._streams_by_peer[peer] - 1
            if left:
                self._streams_by_peer[peer] = left
            else:
                del self._streams_by_peer[peer]

    @handle_errors
    async def list_offsets(
        self,
        request: storage_pb2.ListOffsetsRequest | OversizedRequest[storage_pb2.ListOffsetsRequest],
        context: grpc.aio.ServicerContext,
    ) -> storage_pb2.ListOffsetsResponse:
        request = admit(request)
        self._check_partitions("partitions", request.partitions,
                               lambda: [TopicPartition.of(p) for p in request.partitions])
        principal = self.authz.require(context, LIST_OFFSETS)
        denied = self.authz.topic_errors(context, LIST_OFFSETS, principal,
                                         (p.topic for p in request.partitions))
        answers = []
        for index, query in enumerate(request.partitions):
            if index % YIELD_EVERY_PARTITIONS == YIELD_EVERY_PARTITIONS - 1:
                await asyncio.sleep(0)  # let the lease keep-alive and others run
            answer = storage_pb2.ListedOffset(topic=query.topic, partition=query.partition,
                                              offset=-1, timestamp_ms=-1, leader_epoch=-1)
            answers.append(answer)
            try:
                if query.topic in denied:
                    raise denied[query.topic]
                kind = _QUERIES.get(query.query)
                if kind is None:
                    raise BrookError(
                        "INVALID_REQUEST",
                        f"query must be EARLIEST, LATEST or TIMESTAMP, got {query.query}",
                    )
                answer.offset, answer.timestamp_ms, answer.leader_epoch = (
                    await self.data_path.list_offset(TopicPartition.of(query), kind,
                                                     query.timestamp_ms,
                                                     requested_epoch(query))
                )
            except BrookError as error:
                answer.error.CopyFrom(error.to_partition_error())
        return _unless_every_partition_failed(storage_pb2.ListOffsetsResponse(partitions=answers))

    @handle_errors
    async def describe_log_dirs(
        self,
        request: storage_pb2.DescribeLogDirsRequest
        | OversizedRequest[storage_pb2.DescribeLogDirsRequest],
        context: grpc.aio.ServicerContext,
    ) -> storage_pb2.DescribeLogDirsResponse:
        """The data directory's filesystem and each replica's log size, sorted by topic
        and partition, at most max_partitions of them (the node's partition bound)."""
        request = admit(request)
        self.authz.require(context, DESCRIBE_LOG_DIRS)
        bound = self.limits.request_partitions_max
        if request.max_partitions < 0:
            raise BrookError("INVALID_REQUEST", "max_partitions must not be negative")
        wanted = min(request.max_partitions or bound, bound)
        replicas = self._replicas()
        keys = sorted(k for k in replicas if not request.topic or k.topic == request.topic)
        response = storage_pb2.DescribeLogDirsResponse(
            node_id=self.node_id, data_dir=self.data_dir, total_bytes=-1, free_bytes=-1,
            replica_count=len(replicas), truncated=len(keys) > wanted,
        )
        try:
            stats = os.statvfs(self.data_dir) if self.data_dir else None
        except OSError:
            stats = None
        if stats is not None:
            response.total_bytes = stats.f_blocks * stats.f_frsize
            response.free_bytes = stats.f_bavail * stats.f_frsize
        total = 0
        for index, key in enumerate(keys[:wanted]):
            await yield_every(index)  # the lease keep-alive and others run meanwhile
            replica = replicas.get(key)
            if replica is None:  # removed while we yielded
                continue
            plog = replica.log.plog
            entry = response.replicas.add(
                topic=key.topic, partition=key.partition, size_bytes=-1, segments=-1,
                is_leader=replica.partition.role is Role.LEADER, offline=plog.closed,
            )
            try:
                entry.log_start_offset = plog.log_start_offset
                entry.log_end_offset = plog.log_end_offset
                if not plog.closed and not replica.log.lock.locked():
                    entry.size_bytes = plog.size_bytes
                    entry.segments = len(plog.segment_base_offsets)
                    total += entry.size_bytes
            except (RuntimeError, OSError, ValueError):
                pass  # offline or changing under us: unknown (-1)
        for index, key in enumerate(keys[wanted:]):  # the total covers those left out too
            await yield_every(index)
            replica = replicas.get(key)
            if replica is not None and not replica.log.lock.locked():
                with contextlib.suppress(RuntimeError, OSError, ValueError):
                    total += replica.log.plog.size_bytes
        response.size_bytes = total
        return response
