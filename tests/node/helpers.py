"""Helpers for storage-node tests: building produce batches and test partitions."""

from __future__ import annotations

from pathlib import Path

from crc32c import crc32c

from brook.services.metadata.model import PartitionRecord
from brook.services.node.partition import Partition, PartitionSettings, WaiterLimits
from brook.services.node.storage_log import LogHandle
from brook.storage import LogConfig, PartitionLog
from brook.v1 import records_pb2

TIMESTAMP_MS = 1_700_000_000_000


def make_batch(
    values: list[bytes], *, timestamp_ms: int = TIMESTAMP_MS, keys: list[bytes] | None = None
) -> records_pb2.RecordBatch:
    """A RecordBatch as a producer sends it: Records serialized, crc32c over the bytes."""
    records = records_pb2.Records(
        records=[
            records_pb2.Record(
                offset_delta=index,
                timestamp_ms=timestamp_ms,
                value=value,
                key=(keys[index] if keys else b""),
                has_key=keys is not None,
            )
            for index, value in enumerate(values)
        ]
    )
    data = records.SerializeToString()
    return records_pb2.RecordBatch(
        record_count=len(values),
        first_timestamp_ms=timestamp_ms,
        max_timestamp_ms=timestamp_ms,
        compression=records_pb2.COMPRESSION_CODEC_NONE,
        crc32c=crc32c(data),
        records=data,
        uncompressed_bytes=len(data),
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
    )


def raw_batch(values: list[bytes], **kwargs: object) -> bytes:
    return make_batch(values, **kwargs).SerializeToString()  # type: ignore[arg-type]


def decode_values(payload: bytes) -> tuple[int, list[bytes]]:
    """(base_offset, values) of a stored/fetched batch."""
    batch = records_pb2.RecordBatch.FromString(payload)
    records = records_pb2.Records.FromString(batch.records)
    return batch.base_offset, [r.value for r in records.records]


class FakeClock:
    """A monotonic millisecond clock the test moves."""

    def __init__(self, start_ms: int = 1_000_000) -> None:
        self.now = start_ms

    def __call__(self) -> int:
        return self.now

    def advance(self, delta_ms: int) -> None:
        self.now += delta_ms


def open_partition(
    directory: Path,
    clock: FakeClock,
    *,
    node_id: int = 1,
    topic: str = "t",
    partition: int = 0,
    settings: PartitionSettings | None = None,
    limits: WaiterLimits | None = None,
    leadership: list[bool] | None = None,
) -> Partition:
    """A Partition over a real PartitionLog in `directory` (engine flushing off)."""
    plog = PartitionLog.open(
        directory / f"{topic}-{partition}",
        LogConfig(flush_interval_ms=0, flush_interval_batches=0),
    )
    handle = LogHandle(plog, flush_interval_ms=0, flush_interval_batches=0, monotonic_ms=clock)
    valid = leadership if leadership is not None else [True]
    return Partition(
        topic,
        partition,
        node_id,
        handle,
        settings=settings,
        limits=limits,
        monotonic_ms=clock,
        leadership_valid=lambda: valid[0],
        address_of=lambda node: f"127.0.0.1:{9000 + node}",
    )


def record(
    *,
    leader: int,
    epoch: int,
    replicas: tuple[int, ...] = (1,),
    isr: tuple[int, ...] | None = None,
    topic: str = "t",
    partition: int = 0,
) -> PartitionRecord:
    return PartitionRecord(
        topic=topic,
        partition=partition,
        topic_id="tid",
        replicas=replicas,
        leader=leader,
        leader_epoch=epoch,
        isr=isr if isr is not None else replicas,
    )
