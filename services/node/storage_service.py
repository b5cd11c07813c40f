"""StorageService: Produce, Fetch, Subscribe and ListOffsets on the partitions this node
leads: parse, call the data path (`data_path.py`), encode.

Batches are never decoded here. The service is registered with a generic handler and its
own (de)serializers, under the public name `brook.v1.StorageService` (so reflection and
generated clients work unchanged):
- Produce requests are parsed as `ProduceRequestWire` by `wire.parse_produce_request`:
  each batch arrives as a view of its raw serialized bytes;
- Fetch and Subscribe answers are `FetchResponseWire` / `SubscribeResponseWire`: stored
  payloads go out as they are, and clients decode them as `RecordBatch`.

Every failure of one partition is a `PartitionError` in that partition's entry; only
whole-call problems (bad arguments, too many requests on a connection) end the call with
a status. Every bound comes from `NodeLimits`.

Thread-safety: one event loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import grpc

from brook.errors import BrookError
from brook.internal.v1 import wire_pb2
from brook.services.common.rpc import handle_errors, handle_stream_errors
from brook.services.common.server import (
    add_generic_service,
    unary_stream_handler,
    unary_unary_handler,
)
from brook.services.node.acks import Acks
from brook.services.node.config import NodeLimits
from brook.services.node.data_path import DataPath, PartitionRead, ProduceOutcome
from brook.services.node.wire import ProduceRequestView, parse_produce_request
from brook.structs import TopicPartition
from brook.v1 import storage_pb2

SERVICE_NAME = "brook.v1.StorageService"

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


def _fetched(read: PartitionRead) -> wire_pb2.FetchedPartitionWire:
    answer = wire_pb2.FetchedPartitionWire(
        topic=read.key.topic, partition=read.key.partition, high_watermark=read.high_watermark,
        log_start_offset=read.log_start_offset, batches=read.batches,
    )
    if read.error is not None:
        answer.error.CopyFrom(read.error.to_partition_error())
    return answer


class StorageService:
    """brook.v1.StorageService over the node's data path."""

    def __init__(self, data_path: DataPath, limits: NodeLimits) -> None:
        self.data_path = data_path
        self.limits = limits
        self._inflight_by_connection: dict[str, int] = {}
        self._streams = 0

    def register(self, server: grpc.aio.Server) -> None:
        add_generic_service(server, SERVICE_NAME, {
            # Parsed by hand: batches stay views into the request bytes (wire.py).
            "Produce": grpc.unary_unary_rpc_method_handler(
                self.produce,
                request_deserializer=parse_produce_request,
                response_serializer=storage_pb2.ProduceResponse.SerializeToString,
            ),
            "Fetch": unary_unary_handler(
                self.fetch, storage_pb2.FetchRequest, wire_pb2.FetchResponseWire
            ),
            "Subscribe": unary_stream_handler(
                self.subscribe, storage_pb2.SubscribeRequest, wire_pb2.SubscribeResponseWire
            ),
            "ListOffsets": unary_unary_handler(
                self.list_offsets, storage_pb2.ListOffsetsRequest, storage_pb2.ListOffsetsResponse
            ),
        })

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

    @handle_errors
    async def produce(
        self, request: ProduceRequestView, context: grpc.aio.ServicerContext
    ) -> storage_pb2.ProduceResponse:
        acks = Acks.from_wire(request.acks)
        if request.timeout_ms < 0:
            raise BrookError("INVALID_REQUEST", f"timeout_ms {request.timeout_ms} < 0")
        with self._connection_slot(context.peer() or "unknown"):
            outcomes = await self.data_path.produce(acks, request.timeout_ms, request.partitions)
        if acks is Acks.NONE:
            # Nothing is reported with acks=none (the append has not happened): names only.
            return storage_pb2.ProduceResponse(partitions=[
                storage_pb2.ProducePartitionResponse(
                    topic=outcome.key.topic, partition=outcome.key.partition
                )
                for outcome in outcomes
            ])
        return storage_pb2.ProduceResponse(partitions=[_produced(o) for o in outcomes])

    @handle_errors
    async def fetch(
        self, request: storage_pb2.FetchRequest, context: grpc.aio.ServicerContext
    ) -> wire_pb2.FetchResponseWire:
        limits = self.limits
        if request.max_bytes < 0 or request.min_bytes < 0 or request.max_wait_ms < 0:
            raise BrookError("INVALID_REQUEST", "max_bytes, min_bytes and max_wait_ms must be >= 0")
        max_bytes = _clamp(request.max_bytes or limits.fetch_default_bytes, 1,
                           limits.fetch_max_bytes)
        min_bytes = _clamp(request.min_bytes, 1, max_bytes)
        reads = await self.data_path.fetch(request.partitions, max_bytes, min_bytes,
                                           request.max_wait_ms)
        return wire_pb2.FetchResponseWire(partitions=[_fetched(read) for read in reads])

    @handle_stream_errors
    async def subscribe(
        self, request: storage_pb2.SubscribeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[wire_pb2.SubscribeResponseWire]:
        limits = self.limits
        if not request.partitions:
            raise BrookError("INVALID_REQUEST", "subscribe to at least one partition")
        keys = {TopicPartition.of(p) for p in request.partitions}
        if len(keys) != len(request.partitions):
            raise BrookError("INVALID_REQUEST", "a partition appears twice in one subscribe")
        if request.max_bytes_per_response < 0:
            raise BrookError("INVALID_REQUEST", "max_bytes_per_response must be >= 0")
        if self._streams >= limits.subscribe_streams_max:
            raise BrookError(
                "TOO_MANY_REQUESTS",
                f"{limits.subscribe_streams_max} subscribe streams are open on this node;"
                " retry later or use Fetch",
                {"limit": limits.subscribe_streams_max},
            )
        max_bytes = _clamp(request.max_bytes_per_response or limits.subscribe_buffer_bytes, 1,
                           limits.subscribe_buffer_bytes)
        self._streams += 1
        try:
            # One message at a time: the next is read only once gRPC flow control has
            # taken this one, so a slow reader holds at most one buffer.
            async for reads in self.data_path.subscribe(request.partitions, max_bytes):
                yield wire_pb2.SubscribeResponseWire(partitions=[_fetched(r) for r in reads])
        finally:
            self._streams -= 1

    @handle_errors
    async def list_offsets(
        self, request: storage_pb2.ListOffsetsRequest, context: grpc.aio.ServicerContext
    ) -> storage_pb2.ListOffsetsResponse:
        answers = []
        for query in request.partitions:
            answer = storage_pb2.ListedOffset(topic=query.topic, partition=query.partition,
                                              offset=-1, timestamp_ms=-1, leader_epoch=-1)
            answers.append(answer)
            try:
                kind = _QUERIES.get(query.query)
                if kind is None:
                    raise BrookError(
                        "INVALID_REQUEST",
                        f"query must be EARLIEST, LATEST or TIMESTAMP, got {query.query}",
                    )
                answer.offset, answer.timestamp_ms, answer.leader_epoch = (
                    await self.data_path.list_offset(TopicPartition.of(query), kind,
                                                     query.timestamp_ms,
                                                     query.current_leader_epoch)
                )
            except BrookError as error:
                answer.error.CopyFrom(error.to_partition_error())
        return storage_pb2.ListOffsetsResponse(partitions=answers)
