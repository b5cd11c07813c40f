"""Serving a batch larger than the client's receive limit (issue 10, trap 3), unit level:
`split_batch` re-encodes a stored batch as smaller batches holding the same records, and
the response fitting of Fetch and Subscribe (`receive_limit`) uses it only when a batch
does not fit."""

from __future__ import annotations

import pytest

from brook import codec
from brook.errors import BrookError
from brook.records import ConsumerRecord
from brook.services.node.batch_split import RecordTooLarge, split_batch
from brook.services.node.data_path import PartitionRead
from brook.services.node.receive_limit import (
    Budget,
    batch_budget,
    fit_fetch,
    receive_limit,
    subscribe_messages,
)
from brook.structs import TopicPartition
from brook.v1 import records_pb2, storage_pb2

MIB = 1 << 20
KEY = TopicPartition("t", 0)
# A stock client's limit, with room for the response's own fields.
FOUR_MIB = Budget(4 * MIB, 4 * MIB - 8192)


def stored_batch(
    values: list[bytes], compression: str = "none", base_offset: int = 100
) -> bytes:
    """A batch as the log stores it: offsets and epoch stamped, keys, headers, times."""
    batch = codec.encode_batch(
        values,
        [1_700_000_000_000 + i for i in range(len(values))],
        keys=[f"k{i}".encode() if i % 2 else None for i in range(len(values))],
        headers={1: [("h", b"v1"), ("h", b"v2")]},
        codec=codec.codec_from_name(compression),
    )
    batch.base_offset = base_offset
    batch.partition_leader_epoch = 4
    return batch.SerializeToString()


def records_of(payloads: list[bytes], from_offset: int = 0) -> list[ConsumerRecord]:
    out: list[ConsumerRecord] = []
    for payload in payloads:
        out.extend(codec.decode_batch(records_pb2.RecordBatch.FromString(payload), "t", 0,
                                      from_offset))
    return out


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd", "lz4"])
def test_pieces_hold_the_same_records_within_the_limit(compression: str) -> None:
    """A 5 MiB batch (five 1 MiB records) served to a 4 MiB client: every piece fits, has
    a valid checksum and the batch's codec and epoch, and together they decode to exactly
    the stored records (offsets, timestamps, keys, values, headers)."""
    values = [bytes([i]) * MIB for i in range(5)]
    stored = stored_batch(values, compression)
    pieces = split_batch(stored, 4 * MIB, from_offset=0)
    assert len(pieces) >= 2
    assert all(len(piece) <= 4 * MIB for piece in pieces)
    for piece in pieces:
        batch = records_pb2.RecordBatch.FromString(piece)
        assert batch.compression == codec.codec_from_name(compression)
        assert batch.partition_leader_epoch == 4
    assert records_of(pieces) == records_of([stored])


def test_pieces_start_at_the_fetch_offset() -> None:
    stored = stored_batch([bytes([i]) * MIB for i in range(5)])
    pieces = split_batch(stored, 2 * MIB, from_offset=103)
    assert [r.offset for r in records_of(pieces)] == [103, 104]
    assert records_pb2.RecordBatch.FromString(pieces[0]).base_offset == 103


def test_a_record_larger_than_the_limit_says_what_limit_it_needs() -> None:
    stored = stored_batch([b"x" * (5 * MIB)])
    with pytest.raises(RecordTooLarge) as caught:
        split_batch(stored, 4 * MIB, from_offset=0)
    assert caught.value.offset == 100
    # The piece size it names holds the record: splitting with it succeeds.
    [piece] = split_batch(stored, caught.value.piece_bytes, from_offset=0)
    assert len(piece) <= caught.value.piece_bytes


def test_pieces_before_an_oversized_record_are_served_first() -> None:
    """Records that fit are served; the oversized one fails the next fetch, not this."""
    stored = stored_batch([b"a" * MIB, b"b" * (5 * MIB)])
    pieces = split_batch(stored, 4 * MIB, from_offset=0)
    assert [r.offset for r in records_of(pieces)] == [100]


def test_receive_limit_defaults_to_the_stock_four_mib_and_is_bounded() -> None:
    assert receive_limit(0) == 4 * MIB
    assert receive_limit(64 * MIB) == 64 * MIB
    for bad in (1000, -1, 1 << 30):
        with pytest.raises(BrookError) as caught:
            receive_limit(bad)
        assert caught.value.reason == "INVALID_REQUEST"
    many = storage_pb2.FetchRequest(
        partitions=[storage_pb2.FetchPartition(topic="t" * 249, partition=i) for i in range(8000)]
    )
    with pytest.raises(BrookError):  # the entries alone could not fit
        batch_budget(4 * MIB, many.ByteSize(), len(many.partitions))
    assert batch_budget(4 * MIB, 100, 1).batch_bytes > 4 * MIB - 8192


async def test_fetch_keeps_stored_bytes_that_fit_and_splits_only_the_first() -> None:
    small = stored_batch([b"s"], base_offset=0)
    read = PartitionRead(KEY, 10, 0, [small, small])
    await fit_fetch([read], [0], FOUR_MIB)
    assert read.batches == [small, small]  # untouched: the stored bytes as they are
    big = stored_batch([bytes([i]) * MIB for i in range(5)])
    read = PartitionRead(KEY, 200, 0, [big])
    await fit_fetch([read], [100], FOUR_MIB)
    assert sum(map(len, read.batches)) <= 4 * MIB
    assert [r.offset for r in records_of(read.batches)] == [100, 101, 102]


async def test_fetch_reports_a_record_too_large_as_the_partition_error() -> None:
    read = PartitionRead(KEY, 200, 0, [stored_batch([b"x" * (5 * MIB)])])
    await fit_fetch([read], [100], FOUR_MIB)
    assert read.batches == [] and read.error is not None
    assert read.error.reason == "BATCH_TOO_LARGE"
    assert int(read.error.metadata["required_bytes"]) > 5 * MIB
    assert read.error.metadata["offset"] == "100"


async def test_subscribe_sends_every_record_over_several_messages() -> None:
    big = stored_batch([bytes([i]) * MIB for i in range(5)])
    other = PartitionRead(TopicPartition("t", 1), 1, 0, [stored_batch([b"o"], base_offset=0)])
    messages = await subscribe_messages([PartitionRead(KEY, 105, 0, [big]), other], FOUR_MIB)
    assert len(messages) >= 2
    for message in messages:
        assert sum(len(b) for read in message for b in read.batches) <= 4 * MIB
    sent = [b for message in messages for read in message if read.key == KEY for b in read.batches]
    assert records_of(sent) == records_of([big])
    assert any(read.key.partition == 1 for message in messages for read in message)
