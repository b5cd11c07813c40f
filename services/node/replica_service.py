"""ReplicaService: what followers ask of a leader (ReplicaFetch, OffsetForLeaderEpoch).

ReplicaFetch answers with a serialized `ReplicaFetchResponseWire` (stored payloads as raw
bytes, which the follower appends verbatim), built by `wire.encode_fetched_partition` as
one join of the payloads and their tags: no message objects, one copy on the leader.
Each read records the follower's position in the leader's core (for the HW and the ISR)
and may start an ISR expansion; when nothing new is there the call long-polls on the
partitions' log end (not the HW: followers replicate uncommitted data), bounded by the
request's max_wait_ms and the node's cap.

Thread-safety: one event loop.
"""

from __future__ import annotations

import asyncio

import grpc

from brook.errors import BrookError
from brook.services.common.rpc import handle_errors
from brook.services.common.server import add_generic_service, unary_unary_handler
from brook.services.node.config import NodeLimits
from brook.services.node.partition import Partition
from brook.services.node.replica_manager import ReplicaManager
from brook.services.node.storage_service import Closing, wait_for_any
from brook.services.node.wire import encode_fetched_partition
from brook.v1 import storage_pb2

SERVICE_NAME = "brook.v1.ReplicaService"


def _already_serialized(response: bytes) -> bytes:
    return response


class ReplicaService:
    """brook.v1.ReplicaService over the node's ReplicaManager."""

    def __init__(self, manager: ReplicaManager, limits: NodeLimits, closing: Closing) -> None:
        self.manager = manager
        self.limits = limits
        self.closing = closing

    def register(self, server: grpc.aio.Server) -> None:
        add_generic_service(server, SERVICE_NAME, {
            # Answered as pre-serialized bytes (see encode_fetched_partition).
            "ReplicaFetch": grpc.unary_unary_rpc_method_handler(
                self.replica_fetch,
                request_deserializer=storage_pb2.ReplicaFetchRequest.FromString,
                response_serializer=_already_serialized,
            ),
            "OffsetForLeaderEpoch": unary_unary_handler(
                self.offset_for_leader_epoch,
                storage_pb2.OffsetForLeaderEpochRequest,
                storage_pb2.OffsetForLeaderEpochResponse,
            ),
        })

    async def _read(
        self, request: storage_pb2.ReplicaFetchRequest, max_bytes: int
    ) -> tuple[list[bytes], int, list[tuple[Partition, int]], bool]:
        """Reads every partition; returns (encoded response pieces, payload bytes, what to
        wait on, whether to answer at once)."""
        pieces: list[bytes] = []
        total = 0
        waitable: list[tuple[Partition, int]] = []
        answer_now = False
        for wanted in request.partitions:
            try:
                partition, handle = self.manager.lookup(wanted.topic, wanted.partition)
                share = wanted.partition_max_bytes or self.limits.replica_fetch_partition_max_bytes
                budget = min(share, max_bytes - total)
                async with handle.lock:
                    read = partition.read_for_follower(
                        request.replica_id,
                        wanted.fetch_offset,
                        wanted.current_leader_epoch,
                        wanted.last_fetched_epoch,
                        max(budget, 1),
                    )
                batches: list[bytes] = []
                if read.diverging is not None:
                    answer_now = True
                else:
                    size = sum(len(batch) for batch in read.batches)
                    if read.batches and (total == 0 or size <= budget):
                        batches = read.batches
                        total += size
                    elif not read.batches:
                        waitable.append((partition, wanted.fetch_offset))
                    self.manager.maybe_change_isr(partition)
                encode_fetched_partition(
                    pieces, wanted.topic, wanted.partition, None, read.high_watermark,
                    read.log_start_offset, read.log_end_offset, read.diverging, batches,
                )
            except BrookError as error:
                log_start, log_end = -1, -1
                if error.reason == "OFFSET_OUT_OF_RANGE":
                    # The follower restarts its log from these: send them as fields too.
                    log_start = int(error.metadata.get("log_start_offset", -1))
                    log_end = int(error.metadata.get("log_end_offset", -1))
                encode_fetched_partition(
                    pieces, wanted.topic, wanted.partition,
                    error.to_partition_error().SerializeToString(), -1, log_start, log_end,
                    None, [],
                )
                answer_now = True
        return pieces, total, waitable, answer_now

    @handle_errors
    async def replica_fetch(
        self, request: storage_pb2.ReplicaFetchRequest, context: grpc.aio.ServicerContext
    ) -> bytes:
        """Answers with a serialized ReplicaFetchResponseWire, built as one join of the
        stored payloads and pre-encoded tags (no message objects, one copy of the data)."""
        limits = self.limits
        if request.max_bytes < 0 or request.max_wait_ms < 0 or request.min_bytes < 0:
            raise BrookError("INVALID_REQUEST", "max_bytes, min_bytes and max_wait_ms must be >= 0")
        max_bytes = max(1, min(request.max_bytes or limits.replica_fetch_max_bytes,
                               limits.replica_fetch_max_bytes))
        min_bytes = max(1, min(request.min_bytes, max_bytes))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(request.max_wait_ms, limits.max_wait_ms) / 1000
        while True:
            pieces, total, waitable, answer_now = await self._read(request, max_bytes)
            left = deadline - loop.time()
            if answer_now or total >= min_bytes or left <= 0 or not waitable or (
                self.closing.is_set()
            ):
                return b"".join(pieces)
            await wait_for_any(waitable, "replica", left, self.closing)

    @handle_errors
    async def offset_for_leader_epoch(
        self, request: storage_pb2.OffsetForLeaderEpochRequest, context: grpc.aio.ServicerContext
    ) -> storage_pb2.OffsetForLeaderEpochResponse:
        answers = []
        for wanted in request.partitions:
            answer = storage_pb2.OffsetForLeaderEpochResult(
                topic=wanted.topic, partition=wanted.partition, leader_epoch=-1, end_offset=-1
            )
            answers.append(answer)
            try:
                partition, handle = self.manager.lookup(wanted.topic, wanted.partition)
                async with handle.lock:
                    epoch, end = partition.end_offset_for_epoch(
                        wanted.leader_epoch, wanted.current_leader_epoch
                    )
                answer.leader_epoch = epoch
                answer.end_offset = end
            except BrookError as error:
                answer.error.CopyFrom(error.to_partition_error())
        return storage_pb2.OffsetForLeaderEpochResponse(partitions=answers)
