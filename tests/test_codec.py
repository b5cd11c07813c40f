"""Record batch encoding and decoding (brook.codec)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brook import codec
from brook.errors import BrookError
from brook.v1 import records_pb2, storage_pb2

CODECS = ["none", "zstd", "lz4", "gzip"]


def _reference(values, timestamps, keys=None, headers=None) -> bytes:  # type: ignore[no-untyped-def]
    """What protobuf's own serializer makes of the same records."""
    message = records_pb2.Records()
    for index, value in enumerate(values):
        record = message.records.add(
            offset_delta=index, timestamp_ms=timestamps[index], value=value
        )
        key = keys[index] if keys else None
        if key is not None:
            record.key = key
            record.has_key = True
        for name, header_value in (headers or {}).get(index, []):
            record.headers.add(key=name, value=header_value)
    return message.SerializeToString()


@pytest.mark.parametrize("name", CODECS)
def test_round_trip_every_codec_with_keys_and_headers(name: str) -> None:
    """Proves a batch decodes to exactly what was encoded, for every codec, and that null
    keys, empty keys, empty values and headers survive; by encoding then decoding."""
    values = [b"v0", b"", b"v2" * 500, b"v3"]
    keys = [None, b"", b"k2", None]
    headers = {0: [("h", b"1"), ("h", b"2")], 3: [("empty", b"")]}
    timestamps = [1_000, 1_001, 1_001, 999]
    batch = codec.encode_batch(values, timestamps, keys, headers, codec.codec_from_name(name))
    assert batch.record_count == 4
    assert batch.first_timestamp_ms == 999
    assert batch.max_timestamp_ms == 1_001
    assert batch.crc32c == codec.crc32c(batch.records)
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (-1, -1, -1)
    batch.base_offset = 100
    batch.partition_leader_epoch = 7
    records = codec.decode_batch(batch, "t", 3)
    assert [r.offset for r in records] == [100, 101, 102, 103]
    assert [r.value for r in records] == values
    assert [r.key for r in records] == keys
    assert records[0].headers == [("h", b"1"), ("h", b"2")]
    assert records[3].headers == [("empty", b"")]
    assert records[1].headers == []
    assert [r.timestamp_ms for r in records] == timestamps
    assert {(r.topic, r.partition, r.leader_epoch) for r in records} == {("t", 3, 7)}


def test_encoding_is_byte_identical_to_protobuf() -> None:
    """Proves the hand-written encoder emits exactly protobuf's bytes (zero values omitted,
    fields in order), including past the varint table (>16384 records, long values)."""
    count = 17_000
    values = [b"x" * (i % 7) for i in range(count)]
    timestamps = [1_700_000_000_000 + i // 1000 for i in range(count)]
    assert codec.encode_records(values, timestamps) == _reference(values, timestamps)
    long_values = [b"y" * 20_000, b"z"]
    assert codec.encode_records(long_values, [5, 0]) == _reference(long_values, [5, 0])
    keys = [b"k", None]
    headers = {1: [("a", b"b")]}
    assert codec.encode_records(long_values, [5, -3], keys, headers) == _reference(
        long_values, [5, -3], keys, headers
    )


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.binary(max_size=40),
            st.one_of(st.none(), st.binary(max_size=10)),
            st.integers(min_value=-(2**40), max_value=2**45),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_encoder_matches_protobuf_for_any_records(records: list) -> None:  # type: ignore[type-arg]
    """Proves byte equality with protobuf on generated records (keys, negative times)."""
    values = [r[0] for r in records]
    keys = [r[1] for r in records]
    timestamps = [r[2] for r in records]
    assert codec.encode_records(values, timestamps, keys) == _reference(values, timestamps, keys)
    assert codec.encode_records(values, timestamps) == _reference(values, timestamps)


def test_decode_skips_records_below_the_fetch_offset() -> None:
    """Proves a fetch that starts inside a batch gets only records at or after its offset."""
    batch = codec.encode_batch([b"a", b"b", b"c"], [1, 2, 3])
    batch.base_offset = 10
    assert [r.value for r in codec.decode_batch(batch, "t", 0, fetch_offset=11)] == [b"b", b"c"]
    assert codec.decode_batch(batch, "t", 0, fetch_offset=13) == []


def test_zero_timestamp_means_the_batch_max_timestamp() -> None:
    """Proves a record timestamp of 0 reads as the batch's max_timestamp_ms (the proto rule)."""
    batch = codec.encode_batch([b"a"], [0])
    batch.max_timestamp_ms = 42
    assert codec.decode_batch(batch, "t", 0)[0].timestamp_ms == 42


def test_corrupt_batches_are_refused() -> None:
    """Proves a wrong crc32c, a lying uncompressed size and a wrong record count each raise
    CORRUPT_BATCH instead of returning bad records or inflating without bound."""
    batch = codec.encode_batch([b"a" * 100], [1], codec=codec.ZSTD)
    bad_crc = records_pb2.RecordBatch()
    bad_crc.CopyFrom(batch)
    bad_crc.crc32c ^= 1
    with pytest.raises(BrookError) as caught:
        codec.decode_batch(bad_crc, "t", 0)
    assert caught.value.reason == "CORRUPT_BATCH"
    for name in ("zstd", "lz4", "gzip"):
        small = codec.encode_batch([b"a" * 1000], [1], codec=codec.codec_from_name(name))
        small.uncompressed_bytes = 10  # the frame inflates to far more
        with pytest.raises(BrookError, match=r"inflated|declares"):
            codec.decode_batch(small, "t", 0)
    huge = codec.encode_batch([b"a"], [1], codec=codec.ZSTD)
    huge.uncompressed_bytes = 2**31 - 1
    with pytest.raises(BrookError):
        codec.decode_batch(huge, "t", 0)
    wrong_count = codec.encode_batch([b"a", b"b"], [1, 1])
    wrong_count.record_count = 3
    with pytest.raises(BrookError, match="header says"):
        codec.decode_batch(wrong_count, "t", 0)


def test_unknown_codec_name_is_a_clear_error() -> None:
    """Proves a typo in a compression name fails with the list of valid names."""
    with pytest.raises(ValueError, match="zstd"):
        codec.codec_from_name("snappy")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.binary(max_size=300),
            st.one_of(st.none(), st.binary(max_size=10)),
            st.integers(min_value=-(2**40), max_value=2**45),
            st.lists(st.tuples(st.text(max_size=5), st.binary(max_size=5)), max_size=2),
        ),
        min_size=1,
        max_size=20,
    ),
    st.sampled_from(CODECS),
)
def test_wire_batch_is_byte_identical_to_protobuf(records: list, name: str) -> None:  # type: ignore[type-arg]
    """Proves the producer's hand-serialized RecordBatch (head, records, tail pieces) is
    exactly protobuf's serialization of the same batch, for every codec, with keys,
    headers and negative timestamps; by comparing it with encode_batch's message."""
    values = [r[0] for r in records]
    keys = [r[1] for r in records]
    timestamps = [r[2] for r in records]
    headers = {index: r[3] for index, r in enumerate(records) if r[3]}
    compression = codec.codec_from_name(name)
    wire = codec.encode_wire_batch(values, timestamps, keys, headers, compression)
    message = codec.encode_batch(values, timestamps, keys, headers, compression)
    assert wire.to_bytes() == message.SerializeToString()
    assert wire.size == len(wire.to_bytes())
    assert (wire.record_count, wire.records_bytes) == (len(values), len(message.records))
    assert wire.to_message() == message


def test_produce_request_is_byte_identical_to_protobuf() -> None:
    """Proves encode_produce_request serializes exactly what protobuf makes of the same
    ProduceRequest (many partitions and batches, acks 0, an empty client id, a non-ASCII
    topic), so the server parses it as it would the generated message. Epochs have
    presence: 0 is sent (and checked), -1 is left unset (no check)."""
    first = codec.encode_wire_batch([b"a" * 300, b""], [1, 2])
    second = codec.encode_wire_batch([b"b"] * 200, [0] * 200, codec=codec.ZSTD)
    cases = [
        (storage_pb2.ACKS_LEADER, 30_000, [("t", 0, 3, [first, second])], "brook-producer"),
        (storage_pb2.ACKS_NONE, 0, [("t", 5, -1, [second]), ("té", 0, 0, [first])], ""),
        (storage_pb2.ACKS_ALL, 1, [], "c"),
    ]
    for acks, timeout_ms, partitions, client_id in cases:
        expected = storage_pb2.ProduceRequest(
            acks=acks,  # type: ignore[arg-type]
            timeout_ms=timeout_ms,
            client_id=client_id,
            partitions=[
                storage_pb2.ProducePartition(
                    topic=topic,
                    partition=partition,
                    batches=[batch.to_message() for batch in batches],
                    **({"current_leader_epoch": epoch} if epoch >= 0 else {}),
                )
                for topic, partition, epoch, batches in partitions
            ],
        )
        encoded = codec.encode_produce_request(acks, timeout_ms, partitions, client_id)
        assert encoded == expected.SerializeToString()
        assert storage_pb2.ProduceRequest.FromString(encoded) == expected
        for sent, (_, _, epoch, _) in zip(
            storage_pb2.ProduceRequest.FromString(encoded).partitions, partitions, strict=True
        ):
            assert sent.HasField("current_leader_epoch") == (epoch >= 0)


def test_decode_reads_offsets_from_deltas_when_they_are_not_indexes() -> None:
    """Proves the index shortcut (offset = base + index, slicing below the fetch offset)
    is taken only for deltas 0..n-1: a batch written with other deltas (gaps) decodes
    with each record's own delta and skips by delta; by hand-building such a batch."""
    message = records_pb2.Records()
    for delta, value in ((0, b"a"), (2, b"b"), (5, b"c")):
        message.records.add(offset_delta=delta, timestamp_ms=7, value=value)
    batch = codec.build_batch(message.SerializeToString(), 3, 7, 7)
    batch.base_offset = 100
    decoded = codec.decode_batch(batch, "t", 0, fetch_offset=101)
    assert [(r.offset, r.value) for r in decoded] == [(102, b"b"), (105, b"c")]
    indexed = codec.encode_batch([b"a", b"b", b"c"], [7, 7, 7], headers={2: [("h", b"v")]})
    indexed.base_offset = 100
    decoded = codec.decode_batch(indexed, "t", 0, fetch_offset=99)
    assert [(r.offset, r.value, r.headers) for r in decoded] == [
        (100, b"a", []),
        (101, b"b", []),
        (102, b"c", [("h", b"v")]),
    ]
    assert [r.offset for r in codec.decode_batch(indexed, "t", 0, fetch_offset=102)] == [102]


def test_lz4_frames_use_independent_blocks() -> None:
    """Proves LZ4 batches set the frame's block-independence flag (FLG bit 5), even above
    one 64 KiB block: lz4-java's LZ4FrameInputStream refuses linked blocks."""
    data = bytes(range(256)) * 2048  # 512 KiB: several blocks
    frame = codec.compress(data, records_pb2.COMPRESSION_CODEC_LZ4)
    assert frame[:4] == b"\x04\x22\x4d\x18"  # the LZ4 frame magic number
    assert frame[4] >> 5 & 1 == 1
    assert codec.decompress(frame, records_pb2.COMPRESSION_CODEC_LZ4, len(data)) == data


def test_a_non_empty_key_counts_even_without_has_key() -> None:
    """Proves a record from a client that set `key` but forgot `has_key` keeps its key, and
    an empty key without has_key is no key (records.proto)."""
    records = records_pb2.Records(records=[
        records_pb2.Record(offset_delta=0, key=b"k", value=b"v"),
        records_pb2.Record(offset_delta=1, value=b"w"),
    ])  # fmt: skip
    data = records.SerializeToString()
    batch = records_pb2.RecordBatch(
        record_count=2, compression=records_pb2.COMPRESSION_CODEC_NONE,
        crc32c=codec.crc32c(data), records=data, uncompressed_bytes=len(data),
    )  # fmt: skip
    assert [r.key for r in codec.decode_batch(batch, "t", 0)] == [b"k", None]
