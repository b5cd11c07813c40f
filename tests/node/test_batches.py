"""Unit tests of produce-batch validation: checksum, size, header checks, no partial write."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brook.clock import SYSTEM_CLOCK, ManualClock
from brook.errors import BrookError
from brook.services.node.acks import Acks
from brook.services.node.batches import read_batch_info, stamp, validate_batch, validate_batches
from brook.services.node.config import NodeLimits
from brook.services.node.data_path import Closing, DataPath
from brook.services.node.partition import PartitionSettings
from brook.structs import TopicPartition
from brook.v1 import records_pb2
from tests.node.helpers import make_batch, open_replica, raw_batch, record


def test_valid_batch_is_stamped_without_touching_records() -> None:
    """Stamping sets base_offset and epoch; records and crc32c stay as the producer sent them."""
    original = make_batch([b"a", b"b"])
    valid = validate_batch(original.SerializeToString(), 1 << 20)
    stored = records_pb2.RecordBatch.FromString(stamp(valid, 41, 7))
    assert (stored.base_offset, stored.partition_leader_epoch) == (41, 7)
    assert stored.records == original.records and stored.crc32c == original.crc32c
    info = read_batch_info(stamp(valid, 41, 7))
    assert (info.base_offset, info.record_count, info.leader_epoch) == (41, 2, 7)


def test_bad_crc_is_corrupt_batch() -> None:
    """A flipped byte in records fails the crc32c check with CORRUPT_BATCH."""
    batch = make_batch([b"hello"])
    batch.records = batch.records[:-1] + bytes([batch.records[-1] ^ 1])
    with pytest.raises(BrookError) as caught:
        validate_batch(batch.SerializeToString(), 1 << 20)
    assert caught.value.reason == "CORRUPT_BATCH"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: setattr(b, "record_count", 0),
        lambda b: setattr(b, "max_timestamp_ms", -2),
        lambda b: b.ClearField("records"),
    ],
    ids=["no-records-counted", "timestamp-below-minus-one", "empty-records"],
)
def test_header_checks(mutate: object) -> None:
    """record_count >= 1, a storable timestamp and non-empty records are required."""
    batch = make_batch([b"x"])
    mutate(batch)  # type: ignore[operator]
    with pytest.raises(BrookError) as caught:
        validate_batch(batch.SerializeToString(), 1 << 20)
    assert caught.value.reason == "CORRUPT_BATCH"


def test_garbage_is_corrupt_batch() -> None:
    """Bytes that are not a RecordBatch are CORRUPT_BATCH, not an internal error."""
    with pytest.raises(BrookError) as caught:
        validate_batch(b"\xff\xff\xff\xff\xff", 1 << 20)
    assert caught.value.reason == "CORRUPT_BATCH"


def test_oversized_batch_is_too_large() -> None:
    """A batch over max_batch_bytes is BATCH_TOO_LARGE with the limit in the metadata."""
    raw = raw_batch([b"x" * 2000])
    with pytest.raises(BrookError) as caught:
        validate_batch(raw, 1000)
    assert caught.value.reason == "BATCH_TOO_LARGE"
    assert caught.value.metadata["max_batch_bytes"] == "1000"


@pytest.mark.parametrize("bad", ["crc", "size"])
async def test_one_bad_batch_appends_nothing(tmp_path: Path, bad: str) -> None:
    """A request whose second batch is bad appends none of its batches (no partial write)."""
    replica = open_replica(
        tmp_path, ManualClock(), settings=PartitionSettings(max_batch_bytes=1000)
    )
    replica.apply_record(record(leader=1, epoch=1), 2)
    second = make_batch([b"y" * (2000 if bad == "size" else 10)])
    if bad == "crc":
        second.crc32c ^= 1

    class Request:
        topic, partition, current_leader_epoch = "t", 0, -1
        batches = [raw_batch([b"x"]), second.SerializeToString()]

    class OneReplica:
        def lookup(self, key: TopicPartition) -> object:
            return replica

        def maybe_change_isr(self, replica: object) -> None: ...

    path = DataPath(OneReplica(), NodeLimits(), SYSTEM_CLOCK, Closing())  # type: ignore[arg-type]
    [outcome] = await path.produce(Acks.LEADER, 0, [Request()])
    assert outcome.error is not None
    assert outcome.error.reason == ("CORRUPT_BATCH" if bad == "crc" else "BATCH_TOO_LARGE")
    assert replica.log.log_end_offset == 0
    assert validate_batches([raw_batch([b"x"])], 1000)[0].record_count == 1


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.binary(max_size=64), min_size=1, max_size=8),
    st.integers(0, 1 << 40),
    st.integers(0, (1 << 31) - 1),
)
def test_stamp_roundtrip(values: list[bytes], base_offset: int, epoch: int) -> None:
    """Any valid batch stamped at any offset/epoch reads back with those header fields."""
    valid = validate_batch(raw_batch(values), 1 << 20)
    info = read_batch_info(stamp(valid, base_offset, epoch))
    assert (info.base_offset, info.record_count, info.leader_epoch) == (
        base_offset,
        len(values),
        epoch,
    )


@settings(max_examples=100, deadline=None)
@given(
    base_offset=st.integers(-(1 << 63), (1 << 63) - 1),
    epoch=st.integers(-(1 << 31), (1 << 31) - 1),
    record_count=st.integers(-(1 << 31), (1 << 31) - 1),
    max_timestamp_ms=st.integers(-(1 << 63), (1 << 63) - 1),
    crc=st.integers(0, (1 << 32) - 1),
    records=st.binary(max_size=300),
    producer_id=st.integers(-(1 << 63), (1 << 63) - 1),
    uncompressed=st.integers(-(1 << 31), (1 << 31) - 1),
)
def test_scanner_agrees_with_protobuf(
    base_offset: int,
    epoch: int,
    record_count: int,
    max_timestamp_ms: int,
    crc: int,
    records: bytes,
    producer_id: int,
    uncompressed: int,
) -> None:
    """The wire scanner reads the same header fields protobuf decodes, for any values."""
    from brook.services.node.batches import scan_batch

    message = records_pb2.RecordBatch(
        base_offset=base_offset,
        partition_leader_epoch=epoch,
        record_count=record_count,
        max_timestamp_ms=max_timestamp_ms,
        crc32c=crc,
        records=records,
        producer_id=producer_id,
        uncompressed_bytes=uncompressed,
    )
    data = message.SerializeToString()
    scanned = scan_batch(data)
    assert (
        scanned.base_offset,
        scanned.partition_leader_epoch,
        scanned.record_count,
        scanned.max_timestamp_ms,
        scanned.crc32c,
    ) == (base_offset, epoch, record_count, max_timestamp_ms, crc)
    assert data[scanned.records_start : scanned.records_end] == records


def test_stamp_overrides_producer_offsets() -> None:
    """A producer that set base_offset/epoch anyway gets them replaced (last field wins)."""
    batch = make_batch([b"a"])
    batch.base_offset = 999
    batch.partition_leader_epoch = 77
    valid = validate_batch(batch.SerializeToString(), 1 << 20)
    stored = records_pb2.RecordBatch.FromString(stamp(valid, 0, 3))
    assert (stored.base_offset, stored.partition_leader_epoch) == (0, 3)
    assert read_batch_info(stamp(valid, 0, 3)).base_offset == 0


@pytest.mark.parametrize("producer_id", [42, 1, -7])
def test_a_reserved_producer_id_is_refused(producer_id: int) -> None:
    """Issue 10, trap 9: producer_id is reserved for idempotent production, which Brook does
    not implement: any id but -1 (or unset) is INVALID_REQUEST, not silently accepted."""
    batch = make_batch([b"v"])
    batch.producer_id = producer_id
    with pytest.raises(BrookError) as refused:
        validate_batch(batch.SerializeToString(), 1 << 20)
    assert refused.value.reason == "INVALID_REQUEST" and "producer_id" in refused.value.message


@pytest.mark.parametrize("producer_id", [-1, 0])
def test_no_producer_id_is_accepted(producer_id: int) -> None:
    batch = make_batch([b"v"])
    batch.producer_id = producer_id
    assert validate_batch(batch.SerializeToString(), 1 << 20).record_count == 1
