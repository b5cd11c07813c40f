"""ReplicaService: what followers ask of a leader (ReplicaFetch, OffsetForLeaderEpoch):
parse, call the data path (`data_path.py`), encode.

ReplicaFetch answers with a serialized `ReplicaFetchResponseWire` (stored payloads as raw
bytes, which the follower appends verbatim), built by `wire.encode_fetched_partition` as
one join of the payloads and their tags: no message objects, one copy on the leader.

Thread-safety: one event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sized

import grpc

from brook.errors import BrookError
from brook.services.common.rpc import handle_errors
from brook.services.common.server import add_generic_service
from brook.services.node.config import NodeLimits
from brook.services.node.data_path import (
    YIELD_EVERY_PARTITIONS,
    DataPath,
    FollowerRead,
    yield_every,
)
from brook.services.node.request_bounds import (
    KeysOf,
    OversizedRequest,
    admit,
    bounded_parser,
    check_count,
    check_unique,
    require_epochs,
)
from brook.services.node.wire import encode_fetched_partition
from brook.structs import TopicPartition
from brook.v1 import storage_pb2

SERVICE_NAME = "brook.v1.ReplicaService"


def _already_serialized(response: bytes) -> bytes:
    return response


def _encode(pieces: list[bytes], read: FollowerRead) -> None:
    """Appends one partition's entry of the ReplicaFetchResponseWire to `pieces`."""
    topic, partition = read.key
    if read.error is not None:
        log_start, log_end = -1, -1
        if read.error.reason == "OFFSET_OUT_OF_RANGE":
            # The follower restarts its log from these: send them as fields too.
            log_start = int(read.error.metadata.get("log_start_offset", -1))
            log_end = int(read.error.metadata.get("log_end_offset", -1))
        error = read.error.to_partition_error().SerializeToString()
        encode_fetched_partition(pieces, topic, partition, error, -1, log_start, log_end,
                                 None, [])
        return
    plan = read.plan
    assert plan is not None
    diverging = (plan.diverging.epoch, plan.diverging.end_offset) if plan.diverging else None
    encode_fetched_partition(pieces, topic, partition, None, plan.high_watermark,
                             plan.log_start_offset, plan.log_end_offset, diverging, read.batches)


class ReplicaService:
    """brook.v1.ReplicaService over the node's data path."""

    def __init__(self, data_path: DataPath, limits: NodeLimits) -> None:
        self.data_path = data_path
        self.limits = limits

    def register(self, server: grpc.aio.Server) -> None:
        metadata_max = self.limits.request_metadata_max_bytes
        add_generic_service(server, SERVICE_NAME, {
            # Answered as pre-serialized bytes (see encode_fetched_partition); requests
            # are refused by size before they are parsed (request_bounds.py).
            "ReplicaFetch": grpc.unary_unary_rpc_method_handler(
                self.replica_fetch,
                request_deserializer=bounded_parser(
                    storage_pb2.ReplicaFetchRequest.FromString, metadata_max, "ReplicaFetch"),
                response_serializer=_already_serialized,
            ),
            "OffsetForLeaderEpoch": grpc.unary_unary_rpc_method_handler(
                self.offset_for_leader_epoch,
                request_deserializer=bounded_parser(
                    storage_pb2.OffsetForLeaderEpochRequest.FromString, metadata_max,
                    "OffsetForLeaderEpoch"),
                response_serializer=storage_pb2.OffsetForLeaderEpochResponse.SerializeToString,
            ),
        })

    def _check_partitions(self, partitions: Sized, keys: KeysOf) -> None:
        """The partition bound (on the count alone, O(1)), then uniqueness."""
        check_count("partitions", partitions, self.limits.request_partitions_max)
        check_unique("partitions", keys())

    @handle_errors
    async def replica_fetch(
        self,
        request: storage_pb2.ReplicaFetchRequest | OversizedRequest[
            storage_pb2.ReplicaFetchRequest],
        context: grpc.aio.ServicerContext,
    ) -> bytes:
        """A serialized ReplicaFetchResponseWire: one join of the stored payloads and
        pre-encoded tags (no message objects, one copy of the data)."""
        request = admit(request)
        self._check_partitions(request.partitions,
                               lambda: [TopicPartition.of(p) for p in request.partitions])
        require_epochs("partitions", request.partitions, "current_leader_epoch",
                       "last_fetched_epoch")
        limits = self.limits
        if request.max_bytes < 0 or request.max_wait_ms < 0 or request.min_bytes < 0:
            raise BrookError("INVALID_REQUEST", "max_bytes, min_bytes and max_wait_ms must be >= 0")
        max_bytes = max(1, min(request.max_bytes or limits.replica_fetch_max_bytes,
                               limits.replica_fetch_max_bytes))
        min_bytes = max(1, min(request.min_bytes, max_bytes))
        reads = await self.data_path.replica_fetch(
            request.replica_id, request.partitions, max_bytes, min_bytes, request.max_wait_ms
        )
        pieces: list[bytes] = []
        for index, read in enumerate(reads):
            await yield_every(index)
            _encode(pieces, read)
        return b"".join(pieces)

    @handle_errors
    async def offset_for_leader_epoch(
        self,
        request: storage_pb2.OffsetForLeaderEpochRequest | OversizedRequest[
            storage_pb2.OffsetForLeaderEpochRequest],
        context: grpc.aio.ServicerContext,
    ) -> storage_pb2.OffsetForLeaderEpochResponse:
        request = admit(request)
        self._check_partitions(request.partitions,
                               lambda: [TopicPartition.of(p) for p in request.partitions])
        require_epochs("partitions", request.partitions, "current_leader_epoch", "leader_epoch")
        answers = []
        for index, wanted in enumerate(request.partitions):
            if index % YIELD_EVERY_PARTITIONS == YIELD_EVERY_PARTITIONS - 1:
                await asyncio.sleep(0)  # let the lease keep-alive and others run
            answer = storage_pb2.OffsetForLeaderEpochResult(
                topic=wanted.topic, partition=wanted.partition, leader_epoch=-1, end_offset=-1
            )
            answers.append(answer)
            try:
                answer.leader_epoch, answer.end_offset = await self.data_path.end_offset_for_epoch(
                    TopicPartition.of(wanted), wanted.leader_epoch, wanted.current_leader_epoch
                )
            except BrookError as error:
                answer.error.CopyFrom(error.to_partition_error())
        return storage_pb2.OffsetForLeaderEpochResponse(partitions=answers)
