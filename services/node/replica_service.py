"""ReplicaService: what followers ask of a leader (ReplicaFetch, OffsetForLeaderEpoch).

ReplicaFetch answers with `ReplicaFetchResponseWire` (stored payloads as raw bytes, which
the follower appends verbatim). Each read records the follower's position in the leader's
core (for the HW and the ISR) and may start an ISR expansion; when nothing new is there
the call long-polls on the partitions' log end (not the HW: followers replicate
uncommitted data), bounded by the request's max_wait_ms and the node's cap.

Thread-safety: one event loop.
"""

from __future__ import annotations

import asyncio

import grpc

from brook.errors import BrookError
from brook.internal.v1 import wire_pb2
from brook.services.common.rpc import handle_errors
from brook.services.common.server import add_generic_service, unary_unary_handler
from brook.services.node.config import NodeLimits
from brook.services.node.partition import Partition
from brook.services.node.replica_manager import ReplicaManager
from brook.services.node.storage_service import Closing, wait_for_any
from brook.v1 import storage_pb2

SERVICE_NAME = "brook.v1.ReplicaService"


class ReplicaService:
    """brook.v1.ReplicaService over the node's ReplicaManager."""

    def __init__(self, manager: ReplicaManager, limits: NodeLimits, closing: Closing) -> None:
        self.manager = manager
        self.limits = limits
        self.closing = closing

    def register(self, server: grpc.aio.Server) -> None:
        add_generic_service(server, SERVICE_NAME, {
            "ReplicaFetch": unary_unary_handler(
                self.replica_fetch,
                storage_pb2.ReplicaFetchRequest,
                wire_pb2.ReplicaFetchResponseWire,
            ),
            "OffsetForLeaderEpoch": unary_unary_handler(
                self.offset_for_leader_epoch,
                storage_pb2.OffsetForLeaderEpochRequest,
                storage_pb2.OffsetForLeaderEpochResponse,
            ),
        })

    async def _read(
        self, request: storage_pb2.ReplicaFetchRequest, max_bytes: int
    ) -> tuple[list[wire_pb2.ReplicaFetchedPartitionWire], int, list[tuple[Partition, int]], bool]:
        answers = []
        total = 0
        waitable: list[tuple[Partition, int]] = []
        answer_now = False
        for wanted in request.partitions:
            answer = wire_pb2.ReplicaFetchedPartitionWire(
                topic=wanted.topic, partition=wanted.partition, high_watermark=-1,
                log_start_offset=-1, log_end_offset=-1,
            )
            answers.append(answer)
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
                answer.high_watermark = read.high_watermark
                answer.log_start_offset = read.log_start_offset
                answer.log_end_offset = read.log_end_offset
                if read.diverging is not None:
                    answer.diverging_epoch.epoch = read.diverging[0]
                    answer.diverging_epoch.end_offset = read.diverging[1]
                    answer_now = True
                    continue
                size = sum(len(batch) for batch in read.batches)
                if read.batches and (total == 0 or size <= budget):
                    answer.batches.extend(read.batches)
                    total += size
                elif not read.batches:
                    waitable.append((partition, wanted.fetch_offset))
                self.manager.maybe_change_isr(partition)
            except BrookError as error:
                answer.error.CopyFrom(error.to_partition_error())
                if error.reason == "OFFSET_OUT_OF_RANGE":
                    # The follower restarts its log from these: send them as fields too.
                    answer.log_start_offset = int(error.metadata.get("log_start_offset", -1))
                    answer.log_end_offset = int(error.metadata.get("log_end_offset", -1))
                answer_now = True
        return answers, total, waitable, answer_now

    @handle_errors
    async def replica_fetch(
        self, request: storage_pb2.ReplicaFetchRequest, context: grpc.aio.ServicerContext
    ) -> wire_pb2.ReplicaFetchResponseWire:
        limits = self.limits
        if request.max_bytes < 0 or request.max_wait_ms < 0 or request.min_bytes < 0:
            raise BrookError("INVALID_REQUEST", "max_bytes, min_bytes and max_wait_ms must be >= 0")
        max_bytes = max(1, min(request.max_bytes or limits.replica_fetch_max_bytes,
                               limits.replica_fetch_max_bytes))
        min_bytes = max(1, min(request.min_bytes, max_bytes))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(request.max_wait_ms, limits.max_wait_ms) / 1000
        while True:
            answers, total, waitable, answer_now = await self._read(request, max_bytes)
            left = deadline - loop.time()
            if answer_now or total >= min_bytes or left <= 0 or not waitable or (
                self.closing.is_set()
            ):
                return wire_pb2.ReplicaFetchResponseWire(partitions=answers)
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
