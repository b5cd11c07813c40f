"""Helpers for storage-node tests: building produce batches and test partitions."""

from __future__ import annotations

from pathlib import Path

from crc32c import crc32c

from brook.clock import ManualClock
from brook.services.metadata.model import PartitionRecord
from brook.services.node.partition import Partition, PartitionSettings
from brook.services.node.replica import Replica, WaiterLimits
from brook.services.node.storage_log import LogHandle
from brook.storage import LogConfig, PartitionLog
from brook.structs import TopicPartition
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


class FakeLog:
    """An in-memory LogPosition: offsets and the epoch history, no bytes (core tests)."""

    def __init__(self, start: int = 0) -> None:
        self.log_start_offset = start
        self.log_end_offset = start
        self.epochs: list[tuple[int, int]] = []  # (epoch, start offset)

    def latest_epoch(self) -> int | None:
        return self.epochs[-1][0] if self.epochs else None

    def epoch_entries(self) -> list[tuple[int, int]]:
        return list(self.epochs)

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        floor = [(e, start) for e, start in self.epochs if e <= epoch]
        if not floor:
            return -1, -1
        found = floor[-1][0]
        later = [start for e, start in self.epochs if e > found]
        return found, later[0] if later else self.log_end_offset

    def append(self, records: int, epoch: int) -> None:
        if self.latest_epoch() is None or epoch > (self.latest_epoch() or 0):
            self.epochs.append((epoch, self.log_end_offset))
        self.log_end_offset += records

    def truncate_to(self, offset: int) -> None:
        if offset < self.log_start_offset:
            self.log_start_offset = self.log_end_offset = offset
            self.epochs = []
            return
        self.log_end_offset = min(offset, self.log_end_offset)
        self.epochs = [(e, start) for e, start in self.epochs if start < self.log_end_offset]


def core_partition(
    clock: ManualClock,
    *,
    log_position: FakeLog | None = None,
    node_id: int = 1,
    settings: PartitionSettings | None = None,
    leadership: list[bool] | None = None,
) -> Partition:
    """A Partition over an in-memory log (no disk, no network)."""
    valid = leadership if leadership is not None else [True]
    return Partition(
        TopicPartition("t", 0),
        node_id,
        log_position or FakeLog(),
        clock=clock,
        settings=settings,
        leadership_valid=lambda: valid[0],
        address_of=lambda node: f"127.0.0.1:{9000 + node}",
    )


def open_replica(
    directory: Path,
    clock: ManualClock,
    *,
    node_id: int = 1,
    settings: PartitionSettings | None = None,
    limits: WaiterLimits | None = None,
    leadership: list[bool] | None = None,
) -> Replica:
    """A Replica over a real PartitionLog in `directory`."""
    plog = PartitionLog.open(directory / "t-0", LogConfig(), caller_flushes=True)
    handle = LogHandle(plog)
    valid = leadership if leadership is not None else [True]
    partition = Partition(
        TopicPartition("t", 0),
        node_id,
        handle,
        clock=clock,
        settings=settings,
        leadership_valid=lambda: valid[0],
        address_of=lambda node: f"127.0.0.1:{9000 + node}",
    )
    return Replica(partition, handle, limits or WaiterLimits())


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
