"""StorageService: Produce, Fetch, Subscribe and ListOffsets on the partitions this node
leads (the thin gRPC shell over `Partition`).

Batches are never decoded here. The service is registered with a generic handler and its
own (de)serializers, under the public name `brook.v1.StorageService` (so reflection and
generated clients work unchanged):
- Produce requests are parsed as `ProduceRequestWire` by `wire.parse_produce_request`:
  each batch arrives as a view of its raw serialized bytes, checked by
  `batches.validate_batch` and stored re-stamped (one copy);
- Fetch and Subscribe answers are `FetchResponseWire` / `SubscribeResponseWire`: stored
  payloads go out as they are, and clients decode them as `RecordBatch`.

Every failure of one partition is a `PartitionError` in that partition's entry; only
whole-call problems (bad arguments, too many requests on a connection) end the call with
a status. Every bound comes from `NodeLimits`.

Thread-safety: one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator, Sequence

import grpc

from brook.errors import BrookError
from brook.internal.v1 import wire_pb2
from brook.services.common.rpc import handle_errors, handle_stream_errors
from brook.services.common.server import (
    add_generic_service,
    unary_stream_handler,
    unary_unary_handler,
)
from brook.services.node.config import NodeLimits
from brook.services.node.partition import AppendResult, Partition
from brook.services.node.replica_manager import ReplicaManager
from brook.services.node.wire import ProduceRequestView, parse_produce_request
from brook.v1 import storage_pb2

SERVICE_NAME = "brook.v1.StorageService"
# A Subscribe stream with nothing to send re-checks its partitions at least this often
# (so it notices a shutdown or a deleted topic without a data event).
SUBSCRIBE_IDLE_RECHECK_S = 1.0
# When a partition's waiter set is full, a long-poll re-reads after this pause instead.
WAITERS_FULL_PAUSE_S = 0.05

_QUERIES = {
    storage_pb2.OFFSET_QUERY_EARLIEST: "earliest",
    storage_pb2.OFFSET_QUERY_LATEST: "latest",
    storage_pb2.OFFSET_QUERY_TIMESTAMP: "timestamp",
}


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(value, high))


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Closing:
    """Set once at shutdown so long-polls and streams end instead of pinning the drain."""

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None

    @property
    def future(self) -> asyncio.Future[None]:
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
        return self._future

    def set(self) -> None:
        if not self.future.done():
            self.future.set_result(None)

    def is_set(self) -> bool:
        return self._future is not None and self._future.done()


async def wait_for_any(
    waiters: Sequence[tuple[Partition, int]],
    kind: str,
    timeout_s: float,
    closing: Closing,
) -> None:
    """Parks on each (partition, offset) until one advances, closing, or timeout_s.

    `kind` is "fetch" (HW passes offset) or "replica" (log end passes offset). When a
    partition's waiter set is full the caller re-reads after a short pause instead.
    """
    parked = []
    try:
        for partition, offset in waiters:
            if kind == "fetch":
                parked.append(partition.fetch_waiter(offset))
            else:
                parked.append(partition.replica_waiter(offset))
    except BrookError:  # TOO_MANY_REQUESTS: do not wait on a full set
        timeout_s = min(timeout_s, WAITERS_FULL_PAUSE_S)
    try:
        futures: list[asyncio.Future[None]] = [w.future for w in parked]
        futures.append(closing.future)
        await asyncio.wait(futures, timeout=max(0.0, timeout_s),
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in parked:
            waiter.discard()


class StorageService:
    """brook.v1.StorageService over the node's ReplicaManager."""

    def __init__(self, manager: ReplicaManager, limits: NodeLimits, closing: Closing) -> None:
        self.manager = manager
        self.limits = limits
        self.closing = closing
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

    # -- Produce -----------------------------------------------------------------------
    @contextlib.contextmanager
    def _connection_slot(self, peer: str) -> Iterator[None]:
        count = self._inflight_by_connection.get(peer, 0)
        limit = self.limits.max_inflight_produce_per_connection
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
        acks = request.acks or storage_pb2.ACKS_ALL
        if acks not in (storage_pb2.ACKS_NONE, storage_pb2.ACKS_LEADER, storage_pb2.ACKS_ALL):
            raise BrookError("INVALID_REQUEST", f"unknown acks value {request.acks}")
        if request.timeout_ms < 0:
            raise BrookError("INVALID_REQUEST", f"timeout_ms {request.timeout_ms} < 0")
        timeout_ms = min(request.timeout_ms or self.limits.default_produce_timeout_ms,
                         self.limits.max_produce_timeout_ms)
        acks_all = acks == storage_pb2.ACKS_ALL
        with self._connection_slot(context.peer() or "unknown"):
            answers: list[storage_pb2.ProducePartitionResponse] = []
            waits: list[tuple[storage_pb2.ProducePartitionResponse, Partition, AppendResult]] = []
            seen: set[tuple[str, int]] = set()
            for wanted in request.partitions:
                answer = storage_pb2.ProducePartitionResponse(
                    topic=wanted.topic, partition=wanted.partition, base_offset=-1,
                    last_offset=-1, log_append_time_ms=-1, log_start_offset=-1,
                )
                answers.append(answer)
                try:
                    key = (wanted.topic, wanted.partition)
                    if key in seen:
                        raise BrookError(
                            "INVALID_REQUEST",
                            f"{wanted.topic}-{wanted.partition} appears twice in one request",
                        )
                    seen.add(key)
                    partition, handle = self.manager.lookup(*key)
                    async with handle.lock:
                        prepared = partition.prepare_leader_append(
                            wanted.batches, wanted.current_leader_epoch, acks_all
                        )
                        await handle.append_async(prepared.batches)
                        result = partition.complete_leader_append(prepared)
                        if handle.batch_flush_due():
                            await handle.flush(locked=True)
                    answer.base_offset = result.base_offset
                    answer.last_offset = result.last_offset
                    answer.log_append_time_ms = wall_clock_ms()
                    answer.log_start_offset = handle.log_start_offset
                    if acks_all:
                        waits.append((answer, partition, result))
                except BrookError as error:
                    answer.error.CopyFrom(error.to_partition_error())
            if waits:
                outcomes = await asyncio.gather(
                    *(partition.wait_for_commit(appended.last_offset, timeout_ms / 1000,
                                                appended.generation)
                      for _, partition, appended in waits),
                    return_exceptions=True,
                )
                for (answer, _, _), outcome in zip(waits, outcomes, strict=True):
                    if isinstance(outcome, BrookError):
                        answer.error.CopyFrom(outcome.to_partition_error())
                    elif isinstance(outcome, BaseException):
                        raise outcome
        if acks == storage_pb2.ACKS_NONE:
            # Failures are not reported with acks=none: name the partitions only.
            return storage_pb2.ProduceResponse(
                partitions=[
                    storage_pb2.ProducePartitionResponse(topic=a.topic, partition=a.partition)
                    for a in answers
                ]
            )
        return storage_pb2.ProduceResponse(partitions=answers)

    # -- Fetch -------------------------------------------------------------------------
    async def _read_partitions(
        self,
        wanted: Sequence[storage_pb2.FetchPartition],
        max_bytes: int,
        out: list[wire_pb2.FetchedPartitionWire],
        positions: list[int] | None = None,
    ) -> tuple[int, list[tuple[Partition, int]], bool]:
        """Reads each partition into `out`; returns (bytes, what to wait on, any error).

        `positions` overrides each partition's fetch offset (Subscribe's moving cursor).
        The first batch found is returned even when larger than the budget; later ones
        only when they fit, so a response is bounded by max_bytes plus one batch.
        """
        total = 0
        waitable: list[tuple[Partition, int]] = []
        failed = False
        for index, fetch in enumerate(wanted):
            offset = positions[index] if positions is not None else fetch.fetch_offset
            answer = wire_pb2.FetchedPartitionWire(topic=fetch.topic, partition=fetch.partition,
                                                   high_watermark=-1, log_start_offset=-1)
            out.append(answer)
            try:
                partition, handle = self.manager.lookup(fetch.topic, fetch.partition)
                share = fetch.partition_max_bytes or self.limits.default_partition_fetch_bytes
                budget = min(share, max_bytes - total)
                async with handle.lock:
                    if budget <= 0:
                        partition.require_leader(fetch.current_leader_epoch)
                        answer.high_watermark = partition.high_watermark
                        answer.log_start_offset = handle.log_start_offset
                        continue
                    read = partition.read_committed(offset, fetch.current_leader_epoch, budget)
                answer.high_watermark = read.high_watermark
                answer.log_start_offset = read.log_start_offset
                size = sum(len(batch) for batch in read.batches)
                if read.batches and (total == 0 or size <= budget):
                    answer.batches.extend(read.batches)
                    total += size
                    if positions is not None:
                        positions[index] = read.next_offset
                elif not read.batches:
                    waitable.append((partition, offset))
            except BrookError as error:
                answer.error.CopyFrom(error.to_partition_error())
                failed = True
        return total, waitable, failed

    @handle_errors
    async def fetch(
        self, request: storage_pb2.FetchRequest, context: grpc.aio.ServicerContext
    ) -> wire_pb2.FetchResponseWire:
        limits = self.limits
        if request.max_bytes < 0 or request.min_bytes < 0 or request.max_wait_ms < 0:
            raise BrookError("INVALID_REQUEST", "max_bytes, min_bytes and max_wait_ms must be >= 0")
        max_bytes = _clamp(request.max_bytes or limits.default_fetch_bytes, 1,
                           limits.max_fetch_bytes)
        min_bytes = _clamp(request.min_bytes, 1, max_bytes)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(request.max_wait_ms, limits.max_wait_ms) / 1000
        while True:
            answers: list[wire_pb2.FetchedPartitionWire] = []
            total, waitable, failed = await self._read_partitions(
                request.partitions, max_bytes, answers
            )
            left = deadline - loop.time()
            if failed or total >= min_bytes or left <= 0 or not waitable or self.closing.is_set():
                return wire_pb2.FetchResponseWire(partitions=answers)
            await wait_for_any(waitable, "fetch", left, self.closing)

    # -- Subscribe ---------------------------------------------------------------------
    @handle_stream_errors
    async def subscribe(
        self, request: storage_pb2.SubscribeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[wire_pb2.SubscribeResponseWire]:
        limits = self.limits
        if not request.partitions:
            raise BrookError("INVALID_REQUEST", "subscribe to at least one partition")
        keys = [(p.topic, p.partition) for p in request.partitions]
        if len(set(keys)) != len(keys):
            raise BrookError("INVALID_REQUEST", "a partition appears twice in one subscribe")
        if request.max_bytes_per_response < 0:
            raise BrookError("INVALID_REQUEST", "max_bytes_per_response must be >= 0")
        if self._streams >= limits.max_subscribe_streams:
            raise BrookError(
                "TOO_MANY_REQUESTS",
                f"{limits.max_subscribe_streams} subscribe streams are open on this node;"
                " retry later or use Fetch",
                {"limit": limits.max_subscribe_streams},
            )
        max_bytes = _clamp(request.max_bytes_per_response or limits.subscribe_buffer_bytes, 1,
                           limits.subscribe_buffer_bytes)
        wanted = list(request.partitions)
        positions = [p.fetch_offset for p in wanted]
        self._streams += 1
        try:
            while wanted and not self.closing.is_set():
                answers: list[wire_pb2.FetchedPartitionWire] = []
                total, waitable, failed = await self._read_partitions(
                    wanted, max_bytes, answers, positions
                )
                sent = [a for a in answers if a.batches or a.HasField("error")]
                if failed:
                    # An error ends that partition's part of the stream (e.g. NOT_LEADER
                    # after a failover); the client re-subscribes where it should.
                    keep = [i for i, a in enumerate(answers) if not a.HasField("error")]
                    wanted = [wanted[i] for i in keep]
                    positions = [positions[i] for i in keep]
                if sent:
                    # One message at a time: the next is read only once gRPC flow control
                    # has taken this one, so a slow reader holds at most one buffer.
                    yield wire_pb2.SubscribeResponseWire(partitions=sent)
                    if total > 0:
                        # Rotate, so a busy partition early in the list does not starve
                        # the others of the per-message budget.
                        wanted = wanted[1:] + wanted[:1]
                        positions = positions[1:] + positions[:1]
                    continue
                await wait_for_any(waitable, "fetch", SUBSCRIBE_IDLE_RECHECK_S, self.closing)
        finally:
            self._streams -= 1

    # -- ListOffsets -------------------------------------------------------------------
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
                partition, handle = self.manager.lookup(query.topic, query.partition)
                async with handle.lock:
                    offset, timestamp_ms = partition.list_offset(
                        kind, query.timestamp_ms, query.current_leader_epoch
                    )
                answer.offset = offset
                answer.timestamp_ms = timestamp_ms
                answer.leader_epoch = partition.leader_epoch
            except BrookError as error:
                answer.error.CopyFrom(error.to_partition_error())
        return storage_pb2.ListOffsetsResponse(partitions=answers)
