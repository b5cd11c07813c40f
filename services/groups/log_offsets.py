"""Log offsets (earliest, latest, by timestamp) from partition leaders, for lag and resets.

The group manager asks `StorageService.ListOffsets` on each partition's leader, as the
`MetadataCache` names it: one call per leader node, concurrently, each bounded by
`timeout_s`. A partition whose leader is unknown, unreachable or answers with an error
gets a `BrookError` instead of an offset; callers decide (lag shows -1, a reset fails).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import grpc

from brook.errors import BrookError, from_partition_error, from_rpc_error, partitioned
from brook.services.common.tls import peer_channel
from brook.services.metadata.cache import MetadataCache
from brook.services.metadata.model import NO_LEADER
from brook.structs import TopicPartition
from brook.v1 import storage_pb2, storage_pb2_grpc

EARLIEST = storage_pb2.OFFSET_QUERY_EARLIEST
LATEST = storage_pb2.OFFSET_QUERY_LATEST
TIMESTAMP = storage_pb2.OFFSET_QUERY_TIMESTAMP

# Bound on one ListOffsets call to one node.
LIST_OFFSETS_TIMEOUT_S = 3.0
# Channels kept open to storage nodes; the oldest is closed beyond this.
CHANNELS_MAX = 256


class LogOffsets:
    """Looks up log offsets on partition leaders; owns its channels (close() them)."""

    def __init__(self, cache: MetadataCache, *, timeout_s: float = LIST_OFFSETS_TIMEOUT_S) -> None:
        self.cache = cache
        self.timeout_s = timeout_s
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _stub(self, address: str) -> storage_pb2_grpc.StorageServiceStub:
        channel = self._channels.get(address)
        if channel is None:
            if len(self._channels) >= CHANNELS_MAX:
                oldest = next(iter(self._channels))
                old = self._channels.pop(oldest)
                asyncio.get_running_loop().create_task(old.close())
            channel = peer_channel(address)  # TLS with our certificate when secured
            self._channels[address] = channel
        return storage_pb2_grpc.StorageServiceStub(channel)

    def stub(self, address: str) -> storage_pb2_grpc.StorageServiceStub:
        """A StorageService stub on this object's channel to `address` (the lag monitor's
        timestamp fetches share the ListOffsets channels)."""
        return self._stub(address)

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            with contextlib.suppress(Exception):
                await channel.close(grace=None)

    async def query(
        self, partitions: Iterable[TopicPartition], query: int, timestamp_ms: int = 0
    ) -> dict[TopicPartition, int | BrookError]:
        """The offset `query` answers for each partition, or the error that prevented it."""
        results: dict[TopicPartition, int | BrookError] = {}
        by_address: dict[str, list[TopicPartition]] = {}
        for tp in partitions:
            record = self.cache.partitions.get(tp)
            if record is None:
                results[tp] = BrookError(
                    "PARTITION_NOT_FOUND", f"{tp[0]}-{tp[1]} is not in the metadata"
                )
                continue
            node = self.cache.nodes.get(record.leader) if record.leader != NO_LEADER else None
            if node is None:
                results[tp] = BrookError(
                    "LEADER_NOT_AVAILABLE", f"{tp[0]}-{tp[1]} has no live leader"
                )
                continue
            by_address.setdefault(node.address, []).append(tp)

        async def ask(address: str, tps: list[TopicPartition]) -> None:
            request = storage_pb2.ListOffsetsRequest(
                partitions=[
                    storage_pb2.ListOffsetsPartition(
                        topic=t,
                        partition=p,
                        query=query,  # type: ignore[arg-type]
                        timestamp_ms=timestamp_ms,
                        current_leader_epoch=-1,
                    )
                    for t, p in tps
                ]
            )
            try:
                response = await partitioned(
                    self._stub(address).ListOffsets(request, timeout=self.timeout_s),
                    storage_pb2.ListOffsetsResponse,
                )
            except grpc.RpcError as error:
                failure = from_rpc_error(error)
                for tp in tps:
                    results[tp] = failure
                return
            for answer in response.partitions:
                tp = TopicPartition.of(answer)
                failed = from_partition_error(answer.error)
                results[tp] = failed if failed is not None else int(answer.offset)
            for tp in tps:
                results.setdefault(
                    tp, BrookError("INTERNAL", f"no answer for {tp[0]}-{tp[1]} from {address}")
                )

        await asyncio.gather(*(ask(a, tps) for a, tps in by_address.items()))
        return results
