"""The hand-(de)serialized data-path messages (services/node/wire.py) agree with the
generated protobuf classes they replace, byte for byte and field for field."""

from __future__ import annotations

import pytest

from brook.errors import BrookError
from brook.internal.v1 import wire_pb2
from brook.services.node.wire import (
    encode_fetched_partition,
    parse_produce_request,
    parse_replica_fetch_response,
)
from brook.v1 import errors_pb2, storage_pb2

_ERROR = BrookError(
    "OFFSET_OUT_OF_RANGE",
    "offset 9 is outside [0, 3]",
    {"log_start_offset": 0, "log_end_offset": 3},
)
# (topic, partition, error, hw, log start, log end, diverging, batches)
_CASES: list[
    tuple[str, int, BrookError | None, int, int, int, tuple[int, int] | None, list[bytes]]
] = [
    ("t", 0, None, 10, 0, 12, None, [b"\x01\x02", b"x" * 300, b""]),
    ("topic-é", 5, _ERROR, -1, 0, 3, None, []),
    ("t", 1, None, 7, 2, 9, (-1, 2), []),
    ("t", 1, None, 7, 2, 9, (0, 0), []),
    ("t", 2, None, 0, 0, 0, None, []),
    ("t", 2_000_000, None, 1 << 40, 1 << 33, (1 << 40) + 5, None, [b"y" * 70_000]),
]


def _expected() -> wire_pb2.ReplicaFetchResponseWire:
    response = wire_pb2.ReplicaFetchResponseWire()
    for topic, partition, error, hw, start, end, diverging, batches in _CASES:
        answer = response.partitions.add(
            topic=topic,
            partition=partition,
            high_watermark=hw,
            log_start_offset=start,
            log_end_offset=end,
            batches=batches,
        )
        if error is not None:
            answer.error.CopyFrom(error.to_partition_error())
        if diverging is not None:
            answer.diverging_epoch.epoch = diverging[0]
            answer.diverging_epoch.end_offset = diverging[1]
    return response


def _encoded() -> bytes:
    pieces: list[bytes] = []
    for topic, partition, error, hw, start, end, diverging, batches in _CASES:
        # Deterministic: map entries (the error's metadata) in a comparable order.
        encoded_error = (
            None
            if error is None
            else error.to_partition_error().SerializeToString(deterministic=True)
        )
        encode_fetched_partition(
            pieces,
            topic,
            partition,
            encoded_error,
            hw,
            start,
            end,
            diverging,
            batches,
        )
    return b"".join(pieces)


def test_replica_fetch_response_encoding_matches_the_message() -> None:
    """Encodes data, an error, divergence (with -1 and 0 values), an empty answer and large
    offsets by hand and with wire_pb2; the bytes are identical and parse back equal."""
    encoded = _encoded()
    expected = _expected()
    assert encoded == expected.SerializeToString(deterministic=True)
    parsed = wire_pb2.ReplicaFetchResponseWire.FromString(encoded)
    assert parsed == expected
    assert parsed.partitions[3].HasField("diverging_epoch")
    assert not parsed.partitions[4].HasField("diverging_epoch")


def test_replica_fetch_response_parsing_matches_the_message() -> None:
    """Parses wire_pb2-serialized responses (plus an unknown field) by hand and compares
    every field the follower reads with the generated parser's view."""
    data = _expected().SerializeToString() + b"\x78\x05"  # unknown field 15, varint
    parsed = parse_replica_fetch_response(data)
    expected = wire_pb2.ReplicaFetchResponseWire.FromString(data)
    assert len(parsed) == len(expected.partitions)
    for mine, theirs in zip(parsed, expected.partitions, strict=True):
        assert (
            mine.topic,
            mine.partition,
            mine.high_watermark,
            mine.log_start_offset,
            mine.log_end_offset,
            mine.batches,
        ) == (
            theirs.topic,
            theirs.partition,
            theirs.high_watermark,
            theirs.log_start_offset,
            theirs.log_end_offset,
            list(theirs.batches),
        )
        if theirs.HasField("error"):
            assert mine.error is not None
            assert errors_pb2.PartitionError.FromString(mine.error) == theirs.error
        else:
            assert mine.error is None
        if theirs.HasField("diverging_epoch"):
            assert mine.diverging_epoch == (
                theirs.diverging_epoch.epoch,
                theirs.diverging_epoch.end_offset,
            )
        else:
            assert mine.diverging_epoch is None


def test_produce_request_parsing_matches_the_message() -> None:
    """Parses ProduceRequestWire bytes (negative int32s, several partitions, repeated
    scalars where the last wins, an unknown fixed64 field) by hand and compares with
    wire_pb2; batches are views into the request, not copies."""
    request = wire_pb2.ProduceRequestWire(acks=-1, timeout_ms=1500, client_id="c-ü")
    request.partitions.add(
        topic="a", partition=3, current_leader_epoch=-1, batches=[b"one", b"", b"z" * 5000]
    )
    request.partitions.add(topic="b", partition=0, current_leader_epoch=7)
    data = request.SerializeToString() + b"\x08\x01" + b"\x29" + bytes(8)  # acks=1; field 5
    expected = wire_pb2.ProduceRequestWire.FromString(data)
    parsed = parse_produce_request(data)
    assert (
        (parsed.acks, parsed.timeout_ms, parsed.client_id)
        == (expected.acks, expected.timeout_ms, expected.client_id)
        == (1, 1500, "c-ü")
    )
    assert [
        (p.topic, p.partition, p.current_leader_epoch, [bytes(b) for b in p.batches])
        for p in parsed.partitions
    ] == [
        (p.topic, p.partition, p.current_leader_epoch, list(p.batches)) for p in expected.partitions
    ]
    assert parsed.partitions[0].batches[2].obj is data


@pytest.mark.parametrize(
    "data",
    [
        b"\x1a\x05\x0a",  # partition runs past the end
        b"\x08",  # truncated varint
        b"\x08" + b"\xff" * 11,  # overlong varint
        b"\x0a\x01x",  # acks with the wrong wire type
        b"\x1b",  # start group: unsupported
        b"\x1a\x03\x0a\x01\xff",  # topic is not UTF-8
    ],
)
def test_malformed_produce_requests_are_refused(data: bytes) -> None:
    """Malformed requests raise ValueError (gRPC answers INTERNAL, like a failed generated
    parse) instead of yielding a half-read request."""
    with pytest.raises(ValueError):
        parse_produce_request(data)


def test_an_unset_leader_epoch_parses_as_no_check() -> None:
    """Issue 10, trap 1: a partition entry without current_leader_epoch asks for no
    epoch check (-1); an explicit 0 is epoch 0, checked like any other."""

    unset = storage_pb2.ProducePartition(topic="t", partition=0)
    zero = storage_pb2.ProducePartition(topic="t", partition=1, current_leader_epoch=0)
    request = storage_pb2.ProduceRequest(partitions=[unset, zero]).SerializeToString()
    parsed = parse_produce_request(request)
    assert [p.current_leader_epoch for p in parsed.partitions] == [-1, 0]
