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
raises `brook.wire.MalformedWire`, a ValueError (gRPC answers INTERNAL, as it does when
a generated parser fails).
`tests/node/test_wire.py` checks both directions against the generated classes.

Thread-safety: pure functions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from brook.wire import (
    WIRE_FIXED32,
    WIRE_FIXED64,
    WIRE_LENGTH,
    WIRE_VARINT,
    MalformedWire,
    as_int32,
    as_int64,
    read_varint,
    tag,
    varint,
    varint_field,
)


def _fields(
    data: bytes | memoryview, start: int, end: int
) -> list[tuple[int, int, int, int]]:
    """(number, wire type, value or start of the bytes, end of the bytes) of each field."""
    return list(_iter_fields(data, start, end))


def _iter_fields(
    data: bytes | memoryview, start: int, end: int
) -> Iterator[tuple[int, int, int, int]]:
    """`_fields` one at a time, so a caller can stop early (a request over its bounds)."""
    position = start
    while position < end:
        key, position = read_varint(data, position, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise MalformedWire("field number 0")
        if wire == WIRE_VARINT:
            value, position = read_varint(data, position, end)
            yield number, wire, value, 0
        elif wire == WIRE_LENGTH:
            length, position = read_varint(data, position, end)
            if position + length > end:
                raise MalformedWire(f"field {number} runs past the end")
            yield number, wire, position, position + length
            position += length
        elif wire in (WIRE_FIXED64, WIRE_FIXED32):
            position += 8 if wire == WIRE_FIXED64 else 4
            if position > end:
                raise MalformedWire(f"field {number} runs past the end")
            yield number, wire, 0, 0
        else:
            raise MalformedWire(f"field {number} has unsupported wire type {wire}")


def _expect(number: int, wire: int, wanted: int) -> None:
    if wire != wanted:
        raise MalformedWire(f"field {number} has wire type {wire}, expected {wanted}")


# -- Produce (client -> leader) ------------------------------------------------------------
@dataclass(slots=True)
class ProducePartitionView:
    """A `ProducePartitionWire` whose batches are views into the request bytes."""

    topic: str = ""
    partition: int = 0
    # Unset on the wire means "no check" (-1), as the proto says: 0 is a real epoch.
    current_leader_epoch: int = -1
    batches: list[memoryview] = field(default_factory=list)


@dataclass(slots=True)
class ProduceRequestView:
    """A parsed `ProduceRequestWire` (the fields the leader reads)."""

    acks: int = 0
    timeout_ms: int = 0
    partitions: list[ProducePartitionView] = field(default_factory=list)
    client_id: str = ""
    # Batches over all partitions (what the request asks the node to check).
    batch_count: int = 0
    # Parsing stopped at the first partition or batch over these bounds (the handler
    # refuses the request; nothing more of it was read).
    over_bounds: bool = False


def parse_produce_request(
    data: bytes, partitions_max: int | None = None, batches_max: int | None = None
) -> ProduceRequestView:
    """Parses a serialized ProduceRequestWire without copying its batches; stops as soon
    as it holds more than `partitions_max` partitions or `batches_max` batches (why: a
    64 MiB request of tiny entries would otherwise take seconds of Python)."""
    request = ProduceRequestView()
    for _ in produce_request_steps(data, request, partitions_max, batches_max):
        pass
    return request


def produce_request_steps(
    data: bytes, request: ProduceRequestView, partitions_max: int | None = None,
    batches_max: int | None = None,
) -> Iterator[None]:
    """`parse_produce_request` into `request`, one step per partition, so an async caller
    can give the event loop a turn between steps (10,000 partitions are ~130 ms)."""
    view = memoryview(data)
    for number, wire, a, b in _iter_fields(view, 0, len(view)):
        if number == 1:
            _expect(number, wire, WIRE_VARINT)
            request.acks = as_int32(a)
        elif number == 2:
            _expect(number, wire, WIRE_VARINT)
            request.timeout_ms = as_int32(a)
        elif number == 3:
            _expect(number, wire, WIRE_LENGTH)
            left = None if batches_max is None else batches_max - request.batch_count
            partition = _parse_produce_partition(view, a, b, left)
            request.partitions.append(partition)
            request.batch_count += len(partition.batches)
            if (partitions_max is not None and len(request.partitions) > partitions_max) or (
                batches_max is not None and request.batch_count > batches_max
            ):
                request.over_bounds = True
                return
            yield
        elif number == 4:
            _expect(number, wire, WIRE_LENGTH)
            request.client_id = str(view[a:b], "utf-8")


def _parse_produce_partition(
    view: memoryview, start: int, end: int, batches_max: int | None = None
) -> ProducePartitionView:
    """One partition's entry; stops one batch past `batches_max` (the caller refuses)."""
    partition = ProducePartitionView()
    for number, wire, a, b in _iter_fields(view, start, end):
        if batches_max is not None and len(partition.batches) > batches_max:
            break
        if number == 1:
            _expect(number, wire, WIRE_LENGTH)
            partition.topic = str(view[a:b], "utf-8")
        elif number == 2:
            _expect(number, wire, WIRE_VARINT)
            partition.partition = as_int32(a)
        elif number == 3:
            _expect(number, wire, WIRE_VARINT)
            partition.current_leader_epoch = as_int32(a)
        elif number == 4:
            _expect(number, wire, WIRE_LENGTH)
            partition.batches.append(view[a:b])
    return partition


# -- ReplicaFetch response (leader -> follower) --------------------------------------------
# Field tags (field number << 3 | wire type) of ReplicaFetchResponseWire and
# ReplicaFetchedPartitionWire (protos/brook/internal/v1/wire.proto).
_RESPONSE_PARTITIONS = tag(1, WIRE_LENGTH)
_TOPIC, _PARTITION, _ERROR = tag(1, WIRE_LENGTH), tag(2, WIRE_VARINT), tag(3, WIRE_LENGTH)
_HIGH_WATERMARK, _LOG_START = tag(4, WIRE_VARINT), tag(5, WIRE_VARINT)
_LOG_END = tag(6, WIRE_VARINT)
_DIVERGING, _EPOCH, _END_OFFSET = tag(7, WIRE_LENGTH), tag(1, WIRE_VARINT), tag(2, WIRE_VARINT)
_BATCH = tag(8, WIRE_LENGTH)


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
    head = [_TOPIC, varint(len(name)), name, varint_field(_PARTITION, partition)]
    if error is not None:
        head += (_ERROR, varint(len(error)), error)
    head += (
        varint_field(_HIGH_WATERMARK, high_watermark),
        varint_field(_LOG_START, log_start_offset),
        varint_field(_LOG_END, log_end_offset),
    )
    if diverging is not None:
        epoch = varint_field(_EPOCH, diverging[0]) + varint_field(_END_OFFSET, diverging[1])
        head += (_DIVERGING, varint(len(epoch)), epoch)
    body = [b"".join(head)]
    for batch in batches:
        body += (_BATCH + varint(len(batch)), batch)
    out.append(_RESPONSE_PARTITIONS + varint(sum(len(piece) for piece in body)))
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
            _expect(number, wire, WIRE_LENGTH)
            answers.append(_parse_fetched_partition(data, a, b))
    return answers


def _parse_fetched_partition(data: bytes, start: int, end: int) -> FetchedPartitionView:
    answer = FetchedPartitionView()
    for number, wire, a, b in _fields(data, start, end):
        if number == 8:
            _expect(number, wire, WIRE_LENGTH)
            answer.batches.append(data[a:b])
        elif number == 1:
            _expect(number, wire, WIRE_LENGTH)
            answer.topic = data[a:b].decode()
        elif number == 2:
            _expect(number, wire, WIRE_VARINT)
            answer.partition = as_int32(a)
        elif number == 3:
            _expect(number, wire, WIRE_LENGTH)
            # Repeated occurrences of a message field merge, and concatenating
            # serialized messages is exactly protobuf's merge.
            answer.error = (answer.error or b"") + data[a:b]
        elif number in (4, 5, 6):
            _expect(number, wire, WIRE_VARINT)
            value = as_int64(a)
            if number == 4:
                answer.high_watermark = value
            elif number == 5:
                answer.log_start_offset = value
            else:
                answer.log_end_offset = value
        elif number == 7:
            _expect(number, wire, WIRE_LENGTH)
            epoch, end_offset = answer.diverging_epoch or (0, 0)
            for inner, inner_wire, value, _ in _fields(data, a, b):
                if inner == 1:
                    _expect(inner, inner_wire, WIRE_VARINT)
                    epoch = as_int32(value)
                elif inner == 2:
                    _expect(inner, inner_wire, WIRE_VARINT)
                    end_offset = as_int64(value)
            answer.diverging_epoch = (epoch, end_offset)
    return answer
