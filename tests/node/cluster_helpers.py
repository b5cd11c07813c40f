"""Helpers for storage-node integration tests: topics written straight into etcd (no
coordinator needed), generated-stub calls, and bounded condition polling."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeAlias

import grpc

from brook.errors import BrookError, from_partition_error, partitioned
from brook.services.metadata.model import PartitionRecord, TopicRecord
from brook.services.metadata.store import MetadataStore
from brook.v1 import records_pb2, storage_pb2, storage_pb2_grpc

Acks: TypeAlias = storage_pb2.Acks.ValueType
Query: TypeAlias = storage_pb2.OffsetQuery.ValueType

# Flags that make node tests fast: a short lease (etcd's minimum is about 2 s), quick
# ISR checks and replica long-polls.
FAST_NODE_ARGS = [
    "--lease-ttl-s",
    "2",
    "--isr-check-interval-ms",
    "100",
    "--replica-fetch-wait-ms",
    "200",
    "--drain-timeout-s",
    "2",
]


async def wait_until(
    condition: Callable[[], Awaitable[bool]],
    timeout_s: float,
    what: str,
    interval_s: float = 0.05,
) -> None:
    """Polls `condition` until true; fails the test after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if await condition():
                return
        except (grpc.aio.AioRpcError, BrookError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(interval_s)  # polling a condition with a bounded deadline


async def create_topic(
    store: MetadataStore,
    name: str,
    placements: Sequence[tuple[int, tuple[int, ...]]],
    *,
    configs: dict[str, str] | None = None,
    epoch: int = 1,
) -> TopicRecord:
    """A topic whose partition i is led by placements[i][0] with replicas placements[i][1]."""
    topic = TopicRecord(
        name=name,
        topic_id=uuid.uuid4().hex,
        partition_count=len(placements),
        replication_factor=len(placements[0][1]),
        configs=configs or {},
    )
    partitions = [
        PartitionRecord(
            topic=name,
            partition=index,
            topic_id=topic.topic_id,
            replicas=replicas,
            leader=leader,
            leader_epoch=epoch,
            isr=replicas,
        )
        for index, (leader, replicas) in enumerate(placements)
    ]
    await store.create_topic(topic, partitions)
    return topic


async def move_leader(
    store: MetadataStore,
    topic: str,
    partition: int,
    leader: int,
    isr: tuple[int, ...] | None = None,
) -> PartitionRecord:
    """What the coordinator does on a failover: new leader, epoch + 1 (CAS)."""
    for _ in range(10):
        found = await store.get_partition(topic, partition)
        assert found is not None
        record, revision = found
        new = record.evolve(
            leader=leader,
            leader_epoch=record.leader_epoch + 1,
            isr=isr if isr is not None else record.isr,
        )
        if await store.cas_partition(new, revision) is not None:
            return new
    raise AssertionError("could not move the leader: the record kept changing")


class NodeClient:
    """Generated StorageService stub on one node's address."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.channel = grpc.aio.insecure_channel(
            address,
            options=[
                ("grpc.max_receive_message_length", 64 << 20),
                ("grpc.max_send_message_length", 64 << 20),
            ],
        )
        self.stub = storage_pb2_grpc.StorageServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    async def produce(
        self,
        topic: str,
        partition: int,
        batches: Sequence[records_pb2.RecordBatch],
        *,
        acks: Acks = storage_pb2.ACKS_ALL,
        epoch: int = -1,
        timeout_ms: int = 10_000,
    ) -> storage_pb2.ProducePartitionResponse:
        # Every partition failed -> a failed call with the response in its details;
        # `partitioned` reads it back, so tests see each partition's error.
        response = await partitioned(
            self.stub.Produce(
                storage_pb2.ProduceRequest(
                    acks=acks,
                    timeout_ms=timeout_ms,
                    partitions=[
                        storage_pb2.ProducePartition(
                            topic=topic,
                            partition=partition,
                            current_leader_epoch=epoch,
                            batches=list(batches),
                        )
                    ],
                ),
                timeout=timeout_ms / 1000 + 10,
            ),
            storage_pb2.ProduceResponse,
        )
        return response.partitions[0]

    async def fetch(
        self,
        topic: str,
        partition: int,
        offset: int,
        *,
        max_wait_ms: int = 0,
        max_bytes: int = 1 << 20,
        epoch: int = -1,
    ) -> storage_pb2.FetchedPartition:
        # Every partition failed -> a failed call with the response in its details;
        # `partitioned` reads it back, so tests see each partition's error.
        response = await partitioned(
            self.stub.Fetch(
                storage_pb2.FetchRequest(
                    max_wait_ms=max_wait_ms,
                    min_bytes=1,
                    max_bytes=max_bytes,
                    partitions=[
                        storage_pb2.FetchPartition(
                            topic=topic,
                            partition=partition,
                            fetch_offset=offset,
                            current_leader_epoch=epoch,
                        )
                    ],
                ),
                timeout=max_wait_ms / 1000 + 10,
            ),
            storage_pb2.FetchResponse,
        )
        return response.partitions[0]

    async def list_offset(
        self,
        topic: str,
        partition: int,
        query: Query = storage_pb2.OFFSET_QUERY_LATEST,
        timestamp_ms: int = 0,
    ) -> storage_pb2.ListedOffset:
        # Every partition failed -> a failed call with the response in its details;
        # `partitioned` reads it back, so tests see each partition's error.
        response = await partitioned(
            self.stub.ListOffsets(
                storage_pb2.ListOffsetsRequest(
                    partitions=[
                        storage_pb2.ListOffsetsPartition(
                            topic=topic,
                            partition=partition,
                            query=query,
                            timestamp_ms=timestamp_ms,
                            current_leader_epoch=-1,
                        )
                    ]
                ),
                timeout=10,
            ),
            storage_pb2.ListOffsetsResponse,
        )
        return response.partitions[0]

    async def leads(self, topic: str, partition: int) -> bool:
        """True once this node answers ListOffsets for the partition as its leader."""
        answer = await self.list_offset(topic, partition)
        return from_partition_error(answer.error) is None

    async def read_all(self, topic: str, partition: int, start: int = 0) -> list[bytes]:
        """Every committed record value from `start` to the HW."""
        values: list[bytes] = []
        offset = start
        while True:
            fetched = await self.fetch(topic, partition, offset)
            error = from_partition_error(fetched.error)
            if error is not None:
                raise error
            if not fetched.batches:
                return values
            for batch in fetched.batches:
                records = records_pb2.Records.FromString(batch.records)
                for record in records.records:
                    if batch.base_offset + record.offset_delta >= offset:
                        values.append(record.value)
                offset = batch.base_offset + batch.record_count
