"""The record API's pure core: plain records in, one batch per partition out; stored
batches in, plain records out (`brook.v1.RecordService`, served by `record_service.py`).

No I/O here, so every rule is testable without a network:
- `scan_produce_request` walks the top level of a serialized ProduceRecordsRequest by
  hand before anything parses it: it refuses more than 10,000 records after reading
  10,001 tags (a 64 MiB request of empty records takes protobuf ~15 s to parse), and
  parses the other fields (topic, partition, acks, ...) alone, as `head`;
- `prepare_records` parses the records in chunks (each one's parse bounded: at most 256
  records, each with at most `headers_per_record_max` headers, checked on the wire
  first), validates every record, places each on its partition (the request's, murmur2 of
  the key, or the keyless partition), and encodes one batch per partition
  (`brook.codec`), checked against the topic's max_batch_bytes. It raises before any
  batch leaves the node, so a bad request writes nothing;
- `produced_response` answers one ProducedRecord per input record, in order;
- `read_params` checks a ReadRecordsRequest; `page_of` decodes fetched batches
  (`brook.codec.decode_batch`: crc32c, decompression, records below the offset skipped)
  into ConsumedRecords within max_records / max_bytes, keys and values as text on request;
- `KeylessPartitions` picks the partition of a request's keyless records, in turn.

The contract's fixed numbers (records per request, read bounds, timeouts) come from
protos/brook/v1/record_service.proto; the node's own bounds from `RecordBounds`
(NodeLimits). The work here is CPU only: the driver runs the heavy calls on the loop's
executor.

Thread-safety: pure functions; `KeylessPartitions` belongs to one event loop.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast

from google.protobuf import timestamp_pb2
from google.protobuf.message import DecodeError

from brook.codec import NONE, WireBatch, batch_next_offset, compress, decode_batch, encode_records
from brook.errors import BrookError, Reason, every_partition_failed
from brook.partitioner import partition_for_key
from brook.records import ConsumerRecord, Header
from brook.services.common.bounds import check_chars, check_enum, check_range
from brook.services.metadata.model import TOPIC_NAME_CHARS_MAX
from brook.services.node.batches import UNCOMPRESSED_BATCH_BYTES_MAX
from brook.v1 import errors_pb2, record_service_pb2, records_pb2, storage_pb2
from brook.wire import (
    WIRE_FIXED32,
    WIRE_FIXED64,
    WIRE_LENGTH,
    WIRE_VARINT,
    MalformedWire,
    read_varint,
    varint,
)

# -- the contract's numbers (record_service.proto) ----------------------------------------
PRODUCE_RECORDS_MAX: Final = 10_000
TIMEOUT_DEFAULT_MS: Final = 30_000
TIMEOUT_MAX_MS: Final = 300_000
READ_RECORDS_DEFAULT: Final = 100
READ_RECORDS_MAX: Final = 10_000
READ_BYTES_DEFAULT: Final = 1 << 20
# So that a response (with per-record framing) always fits a stock client's 4 MiB.
READ_BYTES_MAX: Final = 3 << 20
READ_WAIT_MAX_MS: Final = 30_000

# Bytes of a ProduceRecordsRequest's fields other than records (topic <= 249 characters,
# client_id, a few numbers); refused above this before it is parsed.
PRODUCE_HEAD_BYTES_MAX: Final = 64 << 10
# Records parsed per protobuf call, and the bytes of one such chunk (one larger record
# goes alone): each parse stays in the low milliseconds.
PARSE_CHUNK_RECORDS: Final = 256
PARSE_CHUNK_BYTES: Final = 4 << 20
# A header's framing inside a response (tag and length of the entry and its fields), so
# max_bytes bounds what a record with many tiny headers costs too.
HEADER_FRAMING_BYTES: Final = 4

_RECORDS_FIELD: Final = 3
_HEADERS_FIELD: Final = 5
# The tag byte of PlainRecord.headers (field 5, length-delimited): a record's count of
# this byte (C speed) bounds its headers from above; only records above the limit are
# counted exactly, field by field.
_HEADER_TAG: Final = b"\x2a"

ACKS_VALUES: Final = frozenset(storage_pb2.Acks.values())
CODEC_VALUES: Final = frozenset(records_pb2.CompressionCodec.values())
POSITION_VALUES: Final = frozenset(record_service_pb2.ReadPosition.values())

# google.protobuf.Timestamp's range (0001-01-01 to 9999-12-31), in seconds.
_TIMESTAMP_SECONDS_MIN: Final = -62_135_596_800
_TIMESTAMP_SECONDS_MAX: Final = 253_402_300_799
INT64_MAX: Final = (1 << 63) - 1


@dataclass(frozen=True, slots=True)
class RecordBounds:
    """The node's bounds on plain records (from NodeLimits)."""

    headers_per_record_max: int = 100
    headers_per_request_max: int = 100_000
    header_key_chars_max: int = 1024
    client_id_chars_max: int = 255


def timestamp_of(ms: int) -> timestamp_pb2.Timestamp | None:
    """`ms` as a Timestamp, or None outside Timestamp's range (RFC 3339 cannot show it)."""
    seconds, millis = divmod(ms, 1000)
    if not _TIMESTAMP_SECONDS_MIN <= seconds <= _TIMESTAMP_SECONDS_MAX:
        return None
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=millis * 1_000_000)


def ms_of(timestamp: timestamp_pb2.Timestamp, field_name: str) -> int:
    """A request's Timestamp in ms since the Unix epoch (INVALID_REQUEST when invalid)."""
    if not (
        _TIMESTAMP_SECONDS_MIN <= timestamp.seconds <= _TIMESTAMP_SECONDS_MAX
        and 0 <= timestamp.nanos < 1_000_000_000
    ):
        raise BrookError(
            Reason.INVALID_REQUEST,
            f"{field_name} is not a valid Timestamp (seconds {timestamp.seconds},"
            f" nanos {timestamp.nanos})",
            {"field": field_name},
        )
    return timestamp.seconds * 1000 + timestamp.nanos // 1_000_000


# -- produce: scanning the request ---------------------------------------------------------
@dataclass(slots=True)
class ScannedProduce:
    """A ProduceRecordsRequest before its records are parsed: every other field, parsed
    (`head`), and where each record's field lies in the request bytes."""

    head: record_service_pb2.ProduceRecordsRequest
    # (start of the field's tag, start of the record's bytes, end), in request order.
    spans: list[tuple[int, int, int]] = field(default_factory=list)


def _skip_field(data: bytes, position: int, end: int) -> tuple[int, int, int, int]:
    """(number, wire type, start of the value, position after the field)."""
    key, position = read_varint(data, position, end)
    number, wire = key >> 3, key & 7
    if number == 0:
        raise MalformedWire("field number 0")
    start = position
    if wire == WIRE_VARINT:
        _, position = read_varint(data, position, end)
    elif wire == WIRE_LENGTH:
        length, start = read_varint(data, position, end)
        position = start + length
    elif wire == WIRE_FIXED64:
        position += 8
    elif wire == WIRE_FIXED32:
        position += 4
    else:
        raise MalformedWire(f"field {number} has unsupported wire type {wire}")
    if position > end:
        raise MalformedWire(f"field {number} runs past the end")
    return number, wire, start, position


def scan_produce_request(data: bytes) -> ScannedProduce:
    """The request's head and record spans; INVALID_REQUEST past PRODUCE_RECORDS_MAX
    records (counted without parsing them), on a head larger than PRODUCE_HEAD_BYTES_MAX,
    or on bytes that are not a ProduceRecordsRequest."""
    spans: list[tuple[int, int, int]] = []
    head_parts: list[bytes] = []
    head_bytes = 0
    position, end = 0, len(data)
    try:
        while position < end:
            tag_start = position
            number, wire, start, position = _skip_field(data, position, end)
            if number == _RECORDS_FIELD:
                if wire != WIRE_LENGTH:
                    raise MalformedWire("records must be length-delimited")
                if len(spans) == PRODUCE_RECORDS_MAX:
                    raise BrookError(
                        Reason.INVALID_REQUEST,
                        f"records has more than {PRODUCE_RECORDS_MAX} items; the limit is"
                        f" {PRODUCE_RECORDS_MAX} (send the rest in another request)",
                        {"field": "records", "limit": PRODUCE_RECORDS_MAX},
                    )
                spans.append((tag_start, start, position))
                continue
            head_bytes += position - tag_start
            if head_bytes > PRODUCE_HEAD_BYTES_MAX:
                raise BrookError(
                    Reason.INVALID_REQUEST,
                    f"the fields other than records (topic, client_id, ...) exceed"
                    f" {PRODUCE_HEAD_BYTES_MAX} bytes; the topic name is at most"
                    f" {TOPIC_NAME_CHARS_MAX} characters",
                    {"field": "topic", "limit": PRODUCE_HEAD_BYTES_MAX},
                )
            head_parts.append(data[tag_start:position])
    except MalformedWire as error:
        raise BrookError(Reason.INVALID_REQUEST, f"not a ProduceRecordsRequest: {error}") from None
    try:
        head = record_service_pb2.ProduceRecordsRequest.FromString(b"".join(head_parts))
    except DecodeError as error:
        raise BrookError(Reason.INVALID_REQUEST, f"not a ProduceRecordsRequest: {error}") from None
    return ScannedProduce(head, spans)


def check_produce_head(
    head: record_service_pb2.ProduceRecordsRequest, record_count: int, bounds: RecordBounds
) -> None:
    """The request-wide checks (before any metadata lookup or record work)."""
    if not head.topic:
        raise BrookError(Reason.INVALID_REQUEST, "topic is required", {"field": "topic"})
    check_chars("topic", head.topic, TOPIC_NAME_CHARS_MAX)
    if record_count == 0:
        raise BrookError(
            Reason.INVALID_REQUEST,
            f"records is empty; send 1 to {PRODUCE_RECORDS_MAX} records",
            {"field": "records", "count": 0, "min": 1},
        )
    check_range("timeout_ms", head.timeout_ms, 0, TIMEOUT_MAX_MS)
    check_enum("acks", head.acks, ACKS_VALUES)
    check_enum("compression", head.compression, CODEC_VALUES)
    check_chars("client_id", head.client_id, bounds.client_id_chars_max)
    if head.HasField("partition") and head.partition < 0:
        raise partition_not_found(head.topic, head.partition, None)


def partition_not_found(topic: str, partition: int, count: int | None) -> BrookError:
    has = f"has {count} partitions; " if count is not None else ""
    return BrookError(
        Reason.PARTITION_NOT_FOUND,
        f"topic {topic!r} {has}partition {partition} is not one of them",
        {"topic": topic, "partition": partition},
    )


# -- produce: records to batches -------------------------------------------------------------
class KeylessPartitions:
    """The partition of a request's keyless records, in turn across requests (per topic),
    among the partitions that have a leader when any has one.

    `peek` answers the next choice without taking it; `commit` takes it, once the request
    turned out to have keyless records (a request of keyed records leaves the turn alone).
    Remembers at most `topics_max` topics (then starts over).
    """

    def __init__(self, topics_max: int = 10_000) -> None:
        self._turns: dict[str, int] = {}
        self._topics_max = topics_max

    def peek(self, topic: str, partition_count: int, available: Sequence[int] = ()) -> int:
        turn = self._turns.get(topic, 0)
        candidates: Sequence[int] = available or range(partition_count)
        return candidates[turn % len(candidates)]

    def commit(self, topic: str) -> None:
        if topic not in self._turns and len(self._turns) >= self._topics_max:
            self._turns.clear()
        self._turns[topic] = self._turns.get(topic, 0) + 1


@dataclass(frozen=True, slots=True)
class ProduceSettings:
    """What `prepare_records` needs to know besides the records."""

    topic: str
    partition_count: int
    # The request's partition, when it named one.
    fixed_partition: int | None
    # Where keyless records go (KeylessPartitions.peek).
    keyless_partition: int
    # The node's clock: the timestamp of records that leave it unset.
    now_ms: int
    # Latest record timestamp accepted (the leader refuses batches beyond its clock plus
    # produce_timestamp_future_max_ms; checked here so no partition is written first).
    timestamp_max_ms: int
    codec: int
    max_batch_bytes: int
    bounds: RecordBounds = RecordBounds()


@dataclass(slots=True)
class PartitionBatch:
    """The records of one partition, encoded as one batch."""

    partition: int
    wire: WireBatch
    record_count: int


@dataclass(slots=True)
class PreparedProduce:
    """Every record placed and every partition's batch encoded, ready to send."""

    batches: list[PartitionBatch]
    # records[i] -> (partition, index within that partition's batch)
    placements: list[tuple[int, int]]
    # records[i]'s timestamp (given, or the node's clock)
    timestamps: list[int]
    # True when some record went to the keyless partition (commit the turn).
    uses_keyless: bool = False


class _Group:
    __slots__ = ("headers", "keyed", "keys", "timestamps", "values")

    def __init__(self) -> None:
        self.values: list[bytes] = []
        self.timestamps: list[int] = []
        self.keys: list[bytes | None] = []
        self.headers: dict[int, list[Header]] = {}
        self.keyed = False


def _count_headers(data: bytes, start: int, end: int, stop_at: int) -> int:
    """PlainRecord.headers entries in data[start:end], counting no further than stop_at."""
    count = 0
    position = start
    while position < end and count < stop_at:
        number, _, _, position = _skip_field(data, position, end)
        if number == _HEADERS_FIELD:
            count += 1
    return count


def _chunks(
    data: bytes, spans: Sequence[tuple[int, int, int]], bounds: RecordBounds
) -> list[tuple[int, int, int, int]]:
    """(start, end, first record index, record count) of each parse chunk, after checking
    each record's header count on the wire (so no parse meets a million headers)."""
    limit = bounds.headers_per_record_max
    chunks: list[tuple[int, int, int, int]] = []
    first = 0
    for index, (_tag, start, end) in enumerate(spans):
        if data.count(_HEADER_TAG, start, end) > limit:
            try:
                count = _count_headers(data, start, end, limit + 1)
            except MalformedWire as error:
                raise BrookError(
                    Reason.INVALID_REQUEST,
                    f"records[{index}] is malformed: {error}",
                    {"field": f"records[{index}]"},
                ) from None
            if count > limit:
                raise BrookError(
                    Reason.INVALID_REQUEST,
                    f"records[{index}].headers has more than {limit} items; the limit is {limit}",
                    {"field": f"records[{index}].headers", "limit": limit},
                )
        chunk_start = spans[first][0]
        if index > first and (
            index - first >= PARSE_CHUNK_RECORDS or end - chunk_start > PARSE_CHUNK_BYTES
        ):
            chunks.append((chunk_start, spans[index - 1][2], first, index - first))
            first = index
    if spans:
        chunks.append((spans[first][0], spans[-1][2], first, len(spans) - first))
    return chunks


def prepare_records(
    data: bytes, spans: Sequence[tuple[int, int, int]], settings: ProduceSettings
) -> PreparedProduce:
    """Parses, checks, places and encodes every record; raises (INVALID_REQUEST,
    BATCH_TOO_LARGE) before anything could be sent."""
    bounds = settings.bounds
    groups: dict[int, _Group] = {}
    placements: list[tuple[int, int]] = []
    timestamps: list[int] = []
    headers_total = 0
    uses_keyless = False
    count = settings.partition_count
    fixed = settings.fixed_partition
    key_chars_max = bounds.header_key_chars_max
    view = memoryview(data)
    for start, end, first, expected in _chunks(data, spans, bounds):
        try:
            # A view, not a copy (protobuf parses any buffer).
            chunk = cast(bytes, view[start:end])
            records = record_service_pb2.ProduceRecordsRequest.FromString(chunk).records
        except DecodeError as error:
            raise BrookError(
                Reason.INVALID_REQUEST,
                f"records[{first}..{first + expected - 1}] do not parse: {error}",
                {"field": "records"},
            ) from None
        if len(records) != expected:  # only record fields lie in a chunk's span
            raise BrookError(Reason.INVALID_REQUEST, "records are malformed", {"field": "records"})
        headers_total += sum(len(record.headers) for record in records)
        if headers_total > bounds.headers_per_request_max:
            raise BrookError(
                Reason.INVALID_REQUEST,
                f"the records carry more than {bounds.headers_per_request_max} headers in all;"
                f" the limit is {bounds.headers_per_request_max}",
                {"field": "records.headers", "limit": bounds.headers_per_request_max},
            )
        for offset, record in enumerate(records):
            index = first + offset
            # An unset bytes field reads b"": only the text variants need their kind.
            key_kind = record.WhichOneof("key_kind")
            if key_kind is None:
                key = None
            else:
                key = record.key_text.encode() if key_kind == "key_text" else record.key
            if record.WhichOneof("value_kind") == "value_text":
                value = record.value_text.encode()
            else:
                value = record.value
            headers: list[Header] = []
            for header in record.headers:
                name = header.key
                if len(name) > key_chars_max:
                    check_chars(f"records[{index}].headers.key", name, key_chars_max)
                if header.WhichOneof("value_kind") == "value_text":
                    headers.append((name, header.value_text.encode()))
                else:
                    headers.append((name, header.value))
            if record.HasField("timestamp_ms"):
                timestamp = record.timestamp_ms
                if not 1 <= timestamp <= settings.timestamp_max_ms:
                    raise BrookError(
                        Reason.INVALID_REQUEST,
                        f"records[{index}].timestamp_ms {timestamp} is outside 1.."
                        f"{settings.timestamp_max_ms} (ms since the Unix epoch, at most the"
                        " node's clock plus the allowed skew); leave it unset for the node's"
                        " clock",
                        {
                            "field": f"records[{index}].timestamp_ms",
                            "value": timestamp,
                            "max": settings.timestamp_max_ms,
                        },
                    )
            else:
                timestamp = settings.now_ms
            if fixed is not None:
                partition = fixed
            elif key is not None:
                partition = partition_for_key(key, count)
            else:
                partition = settings.keyless_partition
                uses_keyless = True
            group = groups.get(partition)
            if group is None:
                group = groups[partition] = _Group()
            position = len(group.values)
            placements.append((partition, position))
            timestamps.append(timestamp)
            group.values.append(value)
            group.timestamps.append(timestamp)
            group.keys.append(key)
            if key is not None:
                group.keyed = True
            if headers:
                group.headers[position] = headers
    batches = [_encode(partition, group, settings) for partition, group in groups.items()]
    return PreparedProduce(batches, placements, timestamps, uses_keyless)


def _encode(partition: int, group: _Group, settings: ProduceSettings) -> PartitionBatch:
    """One partition's batch (brook.codec: Records, compressed, crc32c), within bounds."""
    records_bytes = encode_records(
        group.values, group.timestamps, group.keys if group.keyed else None, group.headers
    )
    codec = settings.codec or NONE
    if len(records_bytes) > UNCOMPRESSED_BATCH_BYTES_MAX:
        raise _too_large(
            settings,
            partition,
            len(group.values),
            len(records_bytes),
            UNCOMPRESSED_BATCH_BYTES_MAX,
            "uncompressed",
        )
    payload = compress(records_bytes, codec)
    wire = WireBatch(
        payload,
        len(group.values),
        min(group.timestamps),
        max(group.timestamps),
        codec,
        len(records_bytes),
    )
    if wire.size > settings.max_batch_bytes:
        raise _too_large(
            settings, partition, len(group.values), wire.size, settings.max_batch_bytes, "encoded"
        )
    return PartitionBatch(partition, wire, len(group.values))


def _too_large(
    settings: ProduceSettings, partition: int, records: int, size: int, limit: int, what: str
) -> BrookError:
    limit_name = "max_batch_bytes" if what == "encoded" else "uncompressed batch bound"
    return BrookError(
        Reason.BATCH_TOO_LARGE,
        f"the {records} records for {settings.topic}-{partition} make a {size}-byte {what}"
        f" batch, more than the topic's {limit_name} {limit}; send fewer or smaller records"
        " per request (nothing was written)",
        {
            "topic": settings.topic,
            "partition": partition,
            "batch_bytes": size,
            "max_batch_bytes": limit,
            "records": records,
        },
    )


@dataclass(frozen=True, slots=True)
class PartitionOutcome:
    """What the leader answered for one partition's batch."""

    base_offset: int = -1
    error: BrookError | None = None


def produced_response(
    prepared: PreparedProduce, outcomes: Mapping[int, PartitionOutcome]
) -> record_service_pb2.ProduceRecordsResponse:
    """One ProducedRecord per input record, in request order."""
    errors: dict[int, errors_pb2.PartitionError] = {}
    for partition, outcome in outcomes.items():
        if outcome.error is not None:
            errors[partition] = outcome.error.to_partition_error()
    response = record_service_pb2.ProduceRecordsResponse()
    results = response.results
    # Records of one partition mostly share a timestamp (the node's clock): each answer is
    # a copy of a template with its offset set (~4x cheaper than building it).
    templates: dict[tuple[int, int], record_service_pb2.ProducedRecord] = {}
    for (partition, position), timestamp_ms in zip(
        prepared.placements, prepared.timestamps, strict=True
    ):
        error = errors.get(partition)
        result = results.add()
        if error is not None:
            result.partition = partition
            result.error.CopyFrom(error)
            continue
        template = templates.get((partition, timestamp_ms))
        if template is None:
            template = templates[(partition, timestamp_ms)] = record_service_pb2.ProducedRecord(
                partition=partition, timestamp_ms=timestamp_ms, timestamp=timestamp_of(timestamp_ms)
            )
        result.CopyFrom(template)
        base = outcomes[partition].base_offset
        result.offset = base + position if base >= 0 else -1
    return response


def produce_failure(
    response: record_service_pb2.ProduceRecordsResponse,
    prepared: PreparedProduce,
    outcomes: Mapping[int, PartitionOutcome],
) -> BrookError | None:
    """The call's failure when every record failed (the contract), else None: the first
    record's error, carrying the whole response in the status details when it fits a
    trailer (`every_partition_failed`), without it when it does not."""
    if not prepared.placements or any(o.error is None for o in outcomes.values()):
        return None
    failure = every_partition_failed(response, response.results)
    if failure is not None:
        return failure
    first = outcomes[prepared.placements[0][0]].error
    assert first is not None
    return BrookError(first.reason, first.message, first.metadata)


def produced_answer(
    prepared: PreparedProduce, outcomes: Mapping[int, PartitionOutcome]
) -> tuple[bytes, BrookError | None]:
    """The serialized ProduceRecordsResponse, and the call's failure when every record
    failed (then the call answers that instead)."""
    response = produced_response(prepared, outcomes)
    return response.SerializeToString(), produce_failure(response, prepared, outcomes)


# -- read ------------------------------------------------------------------------------------
class Start(enum.Enum):
    """Where a read starts."""

    OFFSET = "offset"
    TIMESTAMP = "timestamp"
    EARLIEST = "earliest"
    LATEST = "latest"


@dataclass(frozen=True, slots=True)
class ReadParams:
    """A checked ReadRecordsRequest, defaults applied."""

    topic: str
    partition: int
    start: Start
    # The offset (Start.OFFSET) or the time in ms (Start.TIMESTAMP).
    value: int
    max_records: int
    max_wait_ms: int
    max_bytes: int
    as_text: bool


def read_params(request: record_service_pb2.ReadRecordsRequest) -> ReadParams:
    """The request's bounds (INVALID_REQUEST), before any work."""
    if not request.topic:
        raise BrookError(Reason.INVALID_REQUEST, "topic is required", {"field": "topic"})
    check_chars("topic", request.topic, TOPIC_NAME_CHARS_MAX)
    if request.partition < 0:
        raise partition_not_found(request.topic, request.partition, None)
    check_range("max_records", request.max_records, 0, READ_RECORDS_MAX)
    check_range("max_wait_ms", request.max_wait_ms, 0, READ_WAIT_MAX_MS)
    check_range("max_bytes", request.max_bytes, 0, READ_BYTES_MAX)
    kind = request.WhichOneof("start")
    start, value = Start.EARLIEST, 0
    if kind == "offset":
        start, value = Start.OFFSET, request.offset
    elif kind == "timestamp_ms":
        check_range("timestamp_ms", request.timestamp_ms, 0, INT64_MAX)
        start, value = Start.TIMESTAMP, request.timestamp_ms
    elif kind == "timestamp":
        start, value = Start.TIMESTAMP, ms_of(request.timestamp, "timestamp")
        check_range("timestamp", value, 0, INT64_MAX)
    elif kind == "position":
        check_enum("position", request.position, POSITION_VALUES)
        if request.position == record_service_pb2.READ_POSITION_LATEST:
            start = Start.LATEST
    return ReadParams(
        topic=request.topic,
        partition=request.partition,
        start=start,
        value=value,
        max_records=request.max_records or READ_RECORDS_DEFAULT,
        max_wait_ms=request.max_wait_ms,
        max_bytes=request.max_bytes or READ_BYTES_DEFAULT,
        as_text=request.as_text,
    )


def record_bytes(record: ConsumerRecord) -> int:
    """What a record counts against max_bytes: key, value, header names and values (and a
    few bytes of framing per header)."""
    size = len(record.value)
    if record.key is not None:
        size += len(record.key)
    for name, value in record.headers:
        size += len(name.encode()) + len(value) + HEADER_FRAMING_BYTES
    return size


def _value_fields(data: bytes, bytes_field: str, text_field: str, as_text: bool) -> dict[str, Any]:
    if as_text:
        try:
            return {text_field: data.decode("utf-8")}
        except UnicodeDecodeError:
            pass
    return {bytes_field: data}


def consumed(record: ConsumerRecord, as_text: bool) -> record_service_pb2.ConsumedRecord:
    """A decoded record as the API answers it."""
    fields: dict[str, Any] = {
        "partition": record.partition,
        "offset": record.offset,
        "timestamp_ms": record.timestamp_ms,
        "leader_epoch": record.leader_epoch,
    }
    timestamp = timestamp_of(record.timestamp_ms)
    if timestamp is not None:
        fields["timestamp"] = timestamp
    if record.key is not None:
        fields.update(_value_fields(record.key, "key", "key_text", as_text))
    fields.update(_value_fields(record.value, "value", "value_text", as_text))
    if record.headers:
        fields["headers"] = [
            record_service_pb2.PlainHeader(
                key=name, **_value_fields(value, "value", "value_text", as_text)
            )
            for name, value in record.headers
        ]
    return record_service_pb2.ConsumedRecord(**fields)


@dataclass(slots=True)
class ReadPage:
    """The records of one ReadRecords answer and where to continue."""

    records: list[record_service_pb2.ConsumedRecord]
    next_offset: int


def page_of(
    batches: Sequence[records_pb2.RecordBatch],
    topic: str,
    partition: int,
    offset: int,
    max_records: int,
    max_bytes: int,
    as_text: bool,
) -> ReadPage:
    """Decodes batches (in offset order, from the one holding `offset`) into at most
    max_records records within max_bytes, at least one when there is one; a first record
    larger than READ_BYTES_MAX is BATCH_TOO_LARGE. Batches after the page fills are not
    decoded."""
    records: list[record_service_pb2.ConsumedRecord] = []
    total = 0
    next_offset = offset
    for batch in batches:
        for record in decode_batch(batch, topic, partition, offset):
            size = record_bytes(record)
            if not records:
                if size > READ_BYTES_MAX:
                    raise BrookError(
                        Reason.BATCH_TOO_LARGE,
                        f"the record at offset {record.offset} of {topic}-{partition} is"
                        f" {size} bytes, more than a ReadRecords answer holds"
                        f" ({READ_BYTES_MAX}); read it with StorageService/Fetch",
                        {
                            "topic": topic,
                            "partition": partition,
                            "offset": record.offset,
                            "required_bytes": size,
                            "limit": READ_BYTES_MAX,
                        },
                    )
            elif total + size > max_bytes:
                return ReadPage(records, next_offset)
            records.append(consumed(record, as_text))
            total += size
            next_offset = record.offset + 1
            if len(records) >= max_records:
                return ReadPage(records, next_offset)
        # The whole batch was taken: continue after it (also past offsets it lacks).
        next_offset = max(next_offset, batch_next_offset(batch))
    return ReadPage(records, next_offset)


# ReadRecordsResponse.records: field 1, length-delimited.
_READ_RECORDS_TAG: Final = b"\x0a"


def read_answer(page: ReadPage, high_watermark: int, log_start_offset: int) -> bytes:
    """The serialized ReadRecordsResponse, byte for byte what SerializeToString gives
    (fields in number order: the records, then the offsets), built one record at a time: a
    thread doing it hands the GIL back between small calls instead of holding it for one
    serialization of up to 3 MiB."""
    parts: list[bytes] = []
    append = parts.append
    for record in page.records:
        body = record.SerializeToString()
        append(_READ_RECORDS_TAG + varint(len(body)))
        append(body)
    append(
        record_service_pb2.ReadRecordsResponse(
            next_offset=page.next_offset,
            high_watermark=high_watermark,
            log_start_offset=log_start_offset,
        ).SerializeToString()
    )
    return b"".join(parts)
