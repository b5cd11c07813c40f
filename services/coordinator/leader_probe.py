"""Waits until every partition of a new topic has a leader that serves it.

CreateTopic stores the topic in etcd; each node learns it from its watch and opens its
logs a moment later. A client that produces in between gets an error, so CreateTopic
with `wait_for_leaders` asks each leader, with ListOffsets (latest) for the partitions it
leads, until every partition answers without error, or the deadline passes. The probe
is the same call a client's first read makes, so "answers" means "serves".

Bounds: at most `partitions_per_call_max` partitions per ListOffsets (a node bounds its
request lists), one call in flight per leader node, a capped pause between rounds.

Thread-safety: one event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence

import grpc

from brook.clock import Clock
from brook.errors import BrookError, Reason, partitioned
from brook.services.common.tls import peer_channel
from brook.services.metadata.cache import MetadataCache
from brook.structs import TopicPartition
from brook.v1 import storage_pb2, storage_pb2_grpc

log = logging.getLogger("brook.coordinator.leader_probe")

PARTITIONS_PER_CALL_MAX = 1000
ROUND_PAUSE_S_MIN = 0.02
ROUND_PAUSE_S_MAX = 0.25
CALL_TIMEOUT_S_MAX = 5.0


async def wait_for_leaders(
    cache: MetadataCache,
    topic: str,
    timeout_s: float,
    clock: Clock,
    *,
    partitions_per_call_max: int = PARTITIONS_PER_CALL_MAX,
) -> None:
    """Returns once every partition of `topic` is served by its leader; REQUEST_TIMED_OUT
    (retriable) naming how many are still waiting when `timeout_s` passes first."""
    deadline = clock.monotonic_s() + timeout_s
    record = cache.topics.get(topic)
    if record is None:
        raise BrookError(Reason.TOPIC_NOT_FOUND, f"topic {topic!r} is not in the metadata yet")
    waiting = {TopicPartition(topic, index) for index in range(record.partition_count)}
    channels: dict[str, grpc.aio.Channel] = {}
    pause_s = ROUND_PAUSE_S_MIN
    try:
        while waiting:
            time_left_s = deadline - clock.monotonic_s()
            if time_left_s <= 0:
                raise BrookError(
                    Reason.REQUEST_TIMED_OUT,
                    f"topic {topic!r} was created, but {len(waiting)} of"
                    f" {record.partition_count} partitions have no serving leader yet;"
                    " producers get the retriable LEADER_NOT_AVAILABLE meanwhile",
                    {"topic": topic, "partitions_waiting": len(waiting)},
                )
            call_timeout_s = min(time_left_s, CALL_TIMEOUT_S_MAX)
            served = await _probe_round(
                cache, waiting, channels, call_timeout_s, partitions_per_call_max
            )
            waiting -= served
            if waiting:
                await asyncio.sleep(min(pause_s, max(0.0, deadline - clock.monotonic_s())))
                pause_s = min(pause_s * 2, ROUND_PAUSE_S_MAX)
    finally:
        for channel in channels.values():
            await channel.close()


async def _probe_round(
    cache: MetadataCache,
    waiting: set[TopicPartition],
    channels: dict[str, grpc.aio.Channel],
    call_timeout_s: float,
    partitions_per_call_max: int,
) -> set[TopicPartition]:
    """One ListOffsets per leader (in chunks); the partitions that answered cleanly."""
    by_address: dict[str, list[storage_pb2.ListOffsetsPartition]] = defaultdict(list)
    for key in waiting:
        partition = cache.partitions.get(key)
        node = cache.nodes.get(partition.leader) if partition is not None else None
        if partition is None or node is None:
            continue  # no leader yet (or the cache has not seen it): next round
        by_address[node.address].append(
            storage_pb2.ListOffsetsPartition(
                topic=key.topic,
                partition=key.partition,
                query=storage_pb2.OFFSET_QUERY_LATEST,
                current_leader_epoch=partition.leader_epoch,
            )
        )
    calls = []
    for address, queries in by_address.items():
        channel = channels.get(address)
        if channel is None:
            channel = channels[address] = peer_channel(address)
        calls.append(_ask(channel, queries, call_timeout_s, partitions_per_call_max))
    served: set[TopicPartition] = set()
    for answered in await asyncio.gather(*calls):
        served |= answered
    return served


async def _ask(
    channel: grpc.aio.Channel,
    queries: Sequence[storage_pb2.ListOffsetsPartition],
    call_timeout_s: float,
    partitions_per_call_max: int,
) -> set[TopicPartition]:
    stub = storage_pb2_grpc.StorageServiceStub(channel)
    served: set[TopicPartition] = set()
    for start in range(0, len(queries), partitions_per_call_max):
        chunk = queries[start : start + partitions_per_call_max]
        try:
            response = await partitioned(
                stub.ListOffsets(
                    storage_pb2.ListOffsetsRequest(partitions=chunk), timeout=call_timeout_s
                ),
                storage_pb2.ListOffsetsResponse,
            )
        except grpc.aio.AioRpcError as error:  # the node is not up yet: next round
            log.debug("leader probe: %s", error.details())
            return served
        served |= {
            TopicPartition(answer.topic, answer.partition)
            for answer in response.partitions
            if not answer.HasField("error") or answer.error.reason == 0
        }
    return served
