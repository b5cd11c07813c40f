"""Hand-(de)serialized messages of the replication data path, byte-compatible with their
`brook.internal.v1` wire twins.

Why by hand: the protobuf runtime copies every `bytes` field twice on the way in (parse,
then again on each field access) and twice on the way out (building the message, then
serializing it). On the 2-core dev VM that was ~0.5 ms of CPU per MiB per hop, a large
share of a node's work per replicated byte. Here:
- `parse_produce_request` reads a `ProduceRequestWire` and returns each batch as a
  memoryview of the request bytes (no copy; stamping makes the one copy the log needs);
- `encode_fetched_partition` emits a `ReplicaFetchResponseWire` entry as a list of
  pre-encoded tags and the stored payloads, joined once by the caller;
- `parse_replica_fetch_response` is the follower's side: one bytes slice per payload.

Parsing follows protobuf's rules: unknown fields are skipped, the last occurrence of a
scalar wins, int32 values keep their low 32 bits, strings must be UTF-8. Malformed input
raises `ValueError` (gRPC answers INTERNAL, as it does when a generated parser fails).
`tests/node/test_wire.py` checks both directions against the generated classes.

Thread-safety: pure functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from brook.services.node.batches import encode_varint

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


def _read_varint(data: bytes | memoryview, position: int, end: int) -> tuple[int, int]:
    value = 0
    shift = 0
    limit = min(end, position + 10)
    while position < limit:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value & 0xFFFFFFFFFFFFFFFF, position
        shift += 7
    raise ValueError("truncated or overlong varint")


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _fields(
    data: bytes | memoryview, start: int, end: int
) -> list[tuple[int, int, int, int]]:
    """(number, wire type, value or start of the bytes, end of the bytes) of each field."""
    out = []
    position = start
    while position < end:
        key, position = _read_varint(data, position, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire == _VARINT:
            value, position = _read_varint(data, position, end)
            out.append((number, wire, value, 0))
        elif wire == _LENGTH:
            length, position = _read_varint(data, position, end)
            if position + length > end:
                raise ValueError(f"field {number} runs past the end")
            out.append((number, wire, position, position + length))
            position += length
        elif wire in (_FIXED64, _FIXED32):
            position += 8 if wire == _FIXED64 else 4
            if position > end:
                raise ValueError(f"field {number} runs past the end")
            out.append((number, wire, 0, 0))
        else:
            raise ValueError(f"field {number} has unsupported wire type {wire}")
    return out


def _expect(number: int, wire: int, wanted: int) -> None:
    if wire != wanted:
        raise ValueError(f"field {number} has wire type {wire}, expected {wanted}")


# -- Produce (client -> leader) ------------------------------------------------------------
@dataclass(slots=True)
class ProducePartitionView:
    """A `ProducePartitionWire` whose batches are views into the request bytes."""

    topic: str = ""
    partition: int = 0
    current_leader_epoch: int = 0
    batches: list[memoryview] = field(default_factory=list)


@dataclass(slots=True)
class ProduceRequestView:
    """A parsed `ProduceRequestWire` (the fields the leader reads)."""

    acks: int = 0
    timeout_ms: int = 0
    partitions: list[ProducePartitionView] = field(default_factory=list)
    client_id: str = ""


def parse_produce_request(data: bytes) -> ProduceRequestView:
    """Parses a serialized ProduceRequestWire without copying its batches."""
    view = memoryview(data)
    request = ProduceRequestView()
    for number, wire, a, b in _fields(view, 0, len(view)):
        if number == 1:
            _expect(number, wire, _VARINT)
            request.acks = _int32(a)
        elif number == 2:
            _expect(number, wire, _VARINT)
            request.timeout_ms = _int32(a)
        elif number == 3:
            _expect(number, wire, _LENGTH)
            request.partitions.append(_parse_produce_partition(view, a, b))
        elif number == 4:
            _expect(number, wire, _LENGTH)
            request.client_id = str(view[a:b], "utf-8")
    return request


def _parse_produce_partition(view: memoryview, start: int, end: int) -> ProducePartitionView:
    partition = ProducePartitionView()
    for number, wire, a, b in _fields(view, start, end):
        if number == 1:
            _expect(number, wire, _LENGTH)
            partition.topic = str(view[a:b], "utf-8")
        elif number == 2:
            _expect(number, wire, _VARINT)
            partition.partition = _int32(a)
        elif number == 3:
            _expect(number, wire, _VARINT)
            partition.current_leader_epoch = _int32(a)
        elif number == 4:
            _expect(number, wire, _LENGTH)
            partition.batches.append(view[a:b])
    return partition


# -- ReplicaFetch response (leader -> follower) --------------------------------------------
# Field tags (field number << 3 | wire type) of ReplicaFetchResponseWire and
# ReplicaFetchedPartitionWire (protos/brook/internal/v1/wire.proto).
_RESPONSE_PARTITIONS = b"\x0a"
_TOPIC, _PARTITION, _ERROR = b"\x0a", b"\x10", b"\x1a"
_HIGH_WATERMARK, _LOG_START, _LOG_END = b"\x20", b"\x28", b"\x30"
_DIVERGING, _EPOCH, _END_OFFSET = b"\x3a", b"\x08", b"\x10"
_BATCH = b"\x42"


def _varint_field(tag: bytes, value: int) -> bytes:
    # proto3 leaves zero scalars out (the canonical encoding).
    return tag + encode_varint(value) if value else b""


def encode_fetched_partition(
    out: list[bytes],
    topic: str,
    partition: int,
    error: bytes | None,
    high_watermark: int,
    log_start_offset: int,
    log_end_offset: int,
    diverging: tuple[int, int] | None,
    batches: Sequence[bytes],
) -> None:
    """Appends one encoded `partitions` entry of a ReplicaFetchResponseWire to `out`.

    `error` is a serialized brook.v1.PartitionError. The payloads go into `out` as they
    are: the caller joins everything once, the only copy of the data on the leader.
    """
    name = topic.encode()
    head = [_TOPIC, encode_varint(len(name)), name, _varint_field(_PARTITION, partition)]
    if error is not None:
        head += (_ERROR, encode_varint(len(error)), error)
    head += (
        _varint_field(_HIGH_WATERMARK, high_watermark),
        _varint_field(_LOG_START, log_start_offset),
        _varint_field(_LOG_END, log_end_offset),
    )
    if diverging is not None:
        epoch = _varint_field(_EPOCH, diverging[0]) + _varint_field(_END_OFFSET, diverging[1])
        head += (_DIVERGING, encode_varint(len(epoch)), epoch)
    body = [b"".join(head)]
    for batch in batches:
        body += (_BATCH + encode_varint(len(batch)), batch)
    out.append(_RESPONSE_PARTITIONS + encode_varint(sum(len(piece) for piece in body)))
    out += body


@dataclass(slots=True)
class FetchedPartitionView:
    """A parsed `ReplicaFetchedPartitionWire` (`error` still serialized, or None)."""

    topic: str = ""
    partition: int = 0
    error: bytes | None = None
    high_watermark: int = 0
    log_start_offset: int = 0
    log_end_offset: int = 0
    diverging_epoch: tuple[int, int] | None = None
    batches: list[bytes] = field(default_factory=list)


def parse_replica_fetch_response(data: bytes) -> list[FetchedPartitionView]:
    """Parses a serialized ReplicaFetchResponseWire: its partitions, one copy per payload."""
    answers = []
    for number, wire, a, b in _fields(data, 0, len(data)):
        if number == 1:
            _expect(number, wire, _LENGTH)
            answers.append(_parse_fetched_partition(data, a, b))
    return answers


def _parse_fetched_partition(data: bytes, start: int, end: int) -> FetchedPartitionView:
    answer = FetchedPartitionView()
    for number, wire, a, b in _fields(data, start, end):
        if number == 8:
            _expect(number, wire, _LENGTH)
            answer.batches.append(data[a:b])
        elif number == 1:
            _expect(number, wire, _LENGTH)
            answer.topic = data[a:b].decode()
        elif number == 2:
            _expect(number, wire, _VARINT)
            answer.partition = _int32(a)
        elif number == 3:
            _expect(number, wire, _LENGTH)
            # Repeated occurrences of a message field merge, and concatenating
            # serialized messages is exactly protobuf's merge.
            answer.error = (answer.error or b"") + data[a:b]
        elif number in (4, 5, 6):
            _expect(number, wire, _VARINT)
            value = _int64(a)
            if number == 4:
                answer.high_watermark = value
            elif number == 5:
                answer.log_start_offset = value
            else:
                answer.log_end_offset = value
        elif number == 7:
            _expect(number, wire, _LENGTH)
            epoch, end_offset = answer.diverging_epoch or (0, 0)
            for inner, inner_wire, value, _ in _fields(data, a, b):
                if inner == 1:
                    _expect(inner, inner_wire, _VARINT)
                    epoch = _int32(value)
                elif inner == 2:
                    _expect(inner, inner_wire, _VARINT)
                    end_offset = _int64(value)
            answer.diverging_epoch = (epoch, end_offset)
    return answer
