"""ReplicaService: what followers ask of a leader (ReplicaFetch, OffsetForLeaderEpoch):
parse, call the data path (`data_path.py`), encode.

ReplicaFetch answers with a serialized `ReplicaFetchResponseWire` (stored payloads as raw
bytes, which the follower appends verbatim), built by `wire.encode_fetched_partition` as
one join of the payloads and their tags: no message objects, one copy on the leader.

Replication is between nodes only (issue 11). With an authorizer, a call must come from
the node it names (principal `node:<replica_id>`, from its certificate; super users do not
pass) and each partition asked about must have that node among its replicas, else
PERMISSION_DENIED: a forged ReplicaFetch cannot move a follower's position, the ISR or the
high watermark. Without an authorizer (no authentication either) the node still refuses a
replica_id that is not a replica of the partition from touching the ISR or the high
watermark (`Partition.follower_fetch`: NOT_LEADER_OR_FOLLOWER).

The replication throttle (issue 13, replication_throttle.py), leader side: partitions
asked by a node that is in their `adding_replicas` (reassignment traffic) share the
node's outbound budget. While it is in debt they are left out of the answer (a request
of nothing else waits for the refill first, bounded by its max_wait_ms); otherwise their
partition_max_bytes is capped by what the budget allows, and the bytes served are
charged. Other partitions are never held.

Thread-safety: one event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sized

import grpc

from brook.errors import BrookError
from brook.services.common.authz import ALLOW_ALL, Authorizer, Resource, ResourceType
from brook.services.common.authz.model import Operation
from brook.services.common.metrics import family
from brook.services.common.principal import Principal
from brook.services.common.rpc import handle_errors
from brook.services.common.server import add_generic_service
from brook.services.node.config import NodeLimits
from brook.services.node.data_path import (
    YIELD_EVERY_PARTITIONS,
    DataPath,
    FollowerRead,
    yield_every,
)
from brook.services.node.replication_throttle import ThrottleBudget
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
# The RPCs, as the operations table names them.
REPLICA_FETCH = SERVICE_NAME + "/ReplicaFetch"
OFFSET_FOR_LEADER_EPOCH = SERVICE_NAME + "/OffsetForLeaderEpoch"


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

    def __init__(
        self, data_path: DataPath, limits: NodeLimits, *, authz: Authorizer = ALLOW_ALL,
        throttle: ThrottleBudget | None = None,
    ) -> None:  # fmt: skip
        self.data_path = data_path
        self.limits = limits
        self.authz = authz
        # The outbound replication throttle (issue 13); unthrottled when not given.
        self.throttle = throttle if throttle is not None else ThrottleBudget(data_path.clock)
        self._throttled_bytes = family("brook_node_replication_throttled_bytes_total").labels(
            "out")
        self._holds = family("brook_node_replication_throttle_holds_total").labels("out")

    def _throttled(
        self, replica_id: int, partitions: list[storage_pb2.ReplicaFetchPartition]
    ) -> set[TopicPartition]:
        """The partitions `replica_id` is being added to (only while throttled)."""
        if not self.throttle.throttled:
            return set()
        found = set()
        for wanted in partitions:
            key = TopicPartition.of(wanted)
            try:
                record = self.data_path.replicas.lookup(key).partition.record
            except BrookError:
                continue
            if record is not None and replica_id in record.adding_replicas:
                found.add(key)
        return found

    async def _hold_or_cap(
        self, partitions: list[storage_pb2.ReplicaFetchPartition],
        throttled: set[TopicPartition], max_wait_ms: int,
    ) -> tuple[list[storage_pb2.ReplicaFetchPartition], int]:  # fmt: skip
        """(the partitions to read now, the long-poll wait): the throttled ones are left
        out while the budget is in debt, else capped by what it allows."""
        budget = self.throttle
        if budget.in_debt():
            delay_s = budget.delay_s()
            if len(throttled) == len(partitions):
                # Nothing else asked for: wait for the refill (rate limiting, bounded by
                # the request's own long-poll wait), then serve.
                await asyncio.sleep(min(delay_s, max_wait_ms / 1000))
            if budget.in_debt():
                self._holds.inc()
                rest = [p for p in partitions if TopicPartition.of(p) not in throttled]
                return rest, min(max_wait_ms, int(budget.delay_s() * 1000) + 1)
        share = max(1, budget.available_bytes() // len(throttled))
        default = self.limits.replica_fetch_partition_max_bytes
        for wanted in partitions:
            if TopicPartition.of(wanted) in throttled:
                wanted.partition_max_bytes = min(wanted.partition_max_bytes or default, share)
        return partitions, max_wait_ms

    def _not_replicas(
        self, context: grpc.aio.ServicerContext, method: str, principal: Principal,
        node_id: int, keys: list[TopicPartition],
    ) -> dict[TopicPartition, BrookError]:  # fmt: skip
        """PERMISSION_DENIED for each partition hosted here that `node_id` is not a replica
        of (with an authorizer only; partitions not hosted here answer their own error)."""
        if not self.authz.enabled:
            return {}
        refused: dict[TopicPartition, BrookError] = {}
        for key in keys:
            try:
                replicas = self.data_path.replicas.lookup(key).partition.replicas
            except BrookError:
                continue
            if node_id not in replicas:
                refused[key] = self.authz.deny(
                    context, method, principal, Operation.CLUSTER_ACTION,
                    Resource(ResourceType.TOPIC, key.topic), "not_a_replica",
                    f"node {node_id} is not a replica of {key.topic}-{key.partition}"
                    f" (replicas {list(replicas)})",
                )  # fmt: skip
        return refused

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
        principal = self.authz.require_node(context, REPLICA_FETCH, request.replica_id)
        keys = [TopicPartition.of(p) for p in request.partitions]
        refused = self._not_replicas(context, REPLICA_FETCH, principal, request.replica_id, keys)
        wanted = [p for p, key in zip(request.partitions, keys, strict=True)
                  if key not in refused] if refused else list(request.partitions)  # fmt: skip
        max_wait_ms = request.max_wait_ms
        throttled = self._throttled(request.replica_id, wanted)
        if throttled:
            wanted, max_wait_ms = await self._hold_or_cap(wanted, throttled, max_wait_ms)
        reads: list[FollowerRead] = []
        if wanted:
            reads = await self.data_path.replica_fetch(
                request.replica_id, wanted, max_bytes, min_bytes, max_wait_ms
            )
        if throttled:
            served_bytes = sum(len(batch) for read in reads if read.key in throttled
                               for batch in read.batches)  # fmt: skip
            if served_bytes:
                self.throttle.charge(served_bytes)
                self._throttled_bytes.inc(served_bytes)
        if refused or len(reads) < len(keys):
            # Refused partitions answer their error; held ones are left out this round
            # (the follower asks again).
            served = {read.key: read for read in reads}
            reads = [FollowerRead(key, error=refused[key]) if key in refused else served[key]
                     for key in keys if key in refused or key in served]  # fmt: skip
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
        principal = self.authz.require_node(context, OFFSET_FOR_LEADER_EPOCH, request.replica_id)
        refused = self._not_replicas(context, OFFSET_FOR_LEADER_EPOCH, principal,
                                     request.replica_id,
                                     [TopicPartition.of(p) for p in request.partitions])
        answers = []
        for index, wanted in enumerate(request.partitions):
            if index % YIELD_EVERY_PARTITIONS == YIELD_EVERY_PARTITIONS - 1:
                await asyncio.sleep(0)  # let the lease keep-alive and others run
            answer = storage_pb2.OffsetForLeaderEpochResult(
                topic=wanted.topic, partition=wanted.partition, leader_epoch=-1, end_offset=-1
            )
            answers.append(answer)
            try:
                if refused and TopicPartition.of(wanted) in refused:
                    raise refused[TopicPartition.of(wanted)]
                answer.leader_epoch, answer.end_offset = await self.data_path.end_offset_for_epoch(
                    TopicPartition.of(wanted), wanted.leader_epoch, wanted.current_leader_epoch
                )
            except BrookError as error:
                answer.error.CopyFrom(error.to_partition_error())
        return storage_pb2.OffsetForLeaderEpochResponse(partitions=answers)
