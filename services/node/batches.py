"""Checking produce batches and stamping them for the log (the leader's only per-batch work).

A producer sends each batch as a serialized `brook.v1.RecordBatch`; the leader receives it
as raw bytes (`ProduceRequestWire`), so it can check the header and checksum without
building the records. It also checks what the checksum cannot: that the codec is known,
the records inflate to `uncompressed_bytes` and parse as a `Records` message holding
exactly `record_count` records (`records_problem`), so every batch it accepts is one every
consumer can read. The storage payload of a batch is a serialized RecordBatch with
`base_offset` and `partition_leader_epoch` set: exactly the bytes that Fetch later serves
and clients decode.

How, cheaply: `scan_batch` reads the header fields straight from the protobuf wire format
(a few varints; the records field is skipped by its length, never copied), checks the
crc32c over a memoryview of the records, and `stamp` appends the two assigned fields to
the producer's bytes. Protobuf parsers keep the last occurrence of a non-repeated field,
so the result decodes exactly like a re-serialized batch, in every language, while the
leader does one copy of the batch instead of three (parse, serialize, concatenate).

All batches of one partition are validated before any is appended, so a request with one
bad batch appends nothing (no partial write).

Thread-safety: pure functions over immutable inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from crc32c import crc32c
from google.protobuf.message import DecodeError

from brook.codec import decompress
from brook.errors import BrookError, Reason
from brook.v1 import records_pb2
from brook.wire import (
    WIRE_FIXED32,
    WIRE_FIXED64,
    WIRE_LENGTH,
    WIRE_VARINT,
    MalformedWire,
    as_int64,
    read_varint,
    tag,
    varint,
)

# A batch may claim at most this many records (Kafka has no such limit; a bound keeps a
# claimed count from moving the log end by billions, whatever the bytes say).
RECORD_COUNT_MAX: Final = 1 << 20
# Largest decompressed size the node inflates to check a batch. The check runs on the event
# loop: 32 MiB inflates and parses in well under 100 ms (bench/validate_bench.py); a
# producer's batch_bytes (default 1 MiB) is far below it.
UNCOMPRESSED_BATCH_BYTES_MAX: Final = 32 << 20
_MIN_RECORD_BYTES: Final = 2
UNCOMPRESSED_CODECS: Final[frozenset[int]] = frozenset({
    records_pb2.COMPRESSION_CODEC_UNSPECIFIED, records_pb2.COMPRESSION_CODEC_NONE,
})
_CODEC_NAMES: Final[dict[int, str]] = {
    records_pb2.COMPRESSION_CODEC_UNSPECIFIED: "unspecified",
    records_pb2.COMPRESSION_CODEC_NONE: "none",
    records_pb2.COMPRESSION_CODEC_ZSTD: "zstd",
    records_pb2.COMPRESSION_CODEC_LZ4: "lz4",
    records_pb2.COMPRESSION_CODEC_GZIP: "gzip",
}
KNOWN_CODECS: Final[frozenset[int]] = frozenset(_CODEC_NAMES)

# Stamping appends two varint fields to a batch (base_offset: tag + up to 10 bytes,
# partition_leader_epoch: tag + up to 10 bytes): the log engine's max_batch_bytes must
# leave this much room above the topic's max_batch_bytes.
STAMP_OVERHEAD_BYTES: Final = 24
# The storage header's "no timestamp" value; anything lower cannot be stored.
NO_TIMESTAMP: Final = -1
# producer_id of a batch from a producer that is not idempotent (records.proto).
NO_PRODUCER_ID: Final = -1

# A produce batch as received: bytes, or a view into the request (`wire.py`, no copy).
RawBatch = bytes | memoryview


@dataclass(frozen=True, slots=True)
class ValidBatch:
    """A checked produce batch (its bytes as sent), waiting for its offsets."""

    raw: RawBatch
    record_count: int
    max_timestamp_ms: int


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """The header fields the log engine needs, read from a stored (stamped) batch."""

    base_offset: int
    record_count: int
    max_timestamp_ms: int
    leader_epoch: int

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.record_count


@dataclass(frozen=True, slots=True)
class ScannedBatch:
    """RecordBatch header fields as found on the wire (last occurrence wins)."""

    base_offset: int
    partition_leader_epoch: int
    record_count: int
    max_timestamp_ms: int
    crc32c: int
    records_start: int
    records_end: int
    compression: int = 0
    uncompressed_bytes: int = 0
    producer_id: int = 0


# RecordBatch field numbers (records.proto) of the fields the node reads.
_BASE_OFFSET = 1
_LEADER_EPOCH = 2
_RECORD_COUNT = 3
_MAX_TIMESTAMP = 5
_COMPRESSION = 6
_CRC32C = 7
_PRODUCER_ID = 8
_RECORDS = 11
_UNCOMPRESSED_BYTES = 12
_BASE_OFFSET_TAG: Final = tag(_BASE_OFFSET, WIRE_VARINT)
_LEADER_EPOCH_TAG: Final = tag(_LEADER_EPOCH, WIRE_VARINT)
# A RecordBatch has 12 fields; more than this many is garbage (and scanning it field by
# field in Python would let one request hold the event loop).
_MAX_FIELDS = 256


def scan_batch(data: RawBatch) -> ScannedBatch:
    """Reads the header fields of a serialized RecordBatch without copying the records.

    Raises MalformedWire when the bytes are not a well-formed protobuf message or a known
    field has the wrong wire type. Unknown fields are skipped (newer producers).
    """
    fields = {_BASE_OFFSET: 0, _LEADER_EPOCH: 0, _RECORD_COUNT: 0, _MAX_TIMESTAMP: 0,
              _COMPRESSION: 0, _CRC32C: 0, _UNCOMPRESSED_BYTES: 0, _PRODUCER_ID: 0}
    records = (0, 0)
    position = 0
    size = len(data)
    for _ in range(_MAX_FIELDS):
        if position >= size:
            break
        key, position = read_varint(data, position, size)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise MalformedWire("field number 0")
        if wire == WIRE_VARINT:
            value, position = read_varint(data, position, size)
            if number in fields:
                fields[number] = value
        elif wire == WIRE_LENGTH:
            length, position = read_varint(data, position, size)
            if position + length > size:
                raise MalformedWire(f"field {number} runs past the end")
            if number == _RECORDS:
                records = (position, position + length)
            elif number in fields:
                raise MalformedWire(f"field {number} has wire type {wire}")
            position += length
        elif wire in (WIRE_FIXED64, WIRE_FIXED32) and number not in fields and (
            number != _RECORDS
        ):
            position += 8 if wire == WIRE_FIXED64 else 4
            if position > size:
                raise MalformedWire(f"field {number} runs past the end")
        else:
            raise MalformedWire(f"field {number} has wire type {wire}")
    else:
        if position < size:
            raise MalformedWire(f"more than {_MAX_FIELDS} fields")
    epoch = as_int64(fields[_LEADER_EPOCH])
    count = as_int64(fields[_RECORD_COUNT])
    return ScannedBatch(
        base_offset=as_int64(fields[_BASE_OFFSET]),
        partition_leader_epoch=epoch,
        record_count=count,
        max_timestamp_ms=as_int64(fields[_MAX_TIMESTAMP]),
        crc32c=fields[_CRC32C] & 0xFFFFFFFF,
        records_start=records[0],
        records_end=records[1],
        compression=as_int64(fields[_COMPRESSION]),
        uncompressed_bytes=as_int64(fields[_UNCOMPRESSED_BYTES]),
        producer_id=as_int64(fields[_PRODUCER_ID]),
    )


def _corrupt(message: str, index: int) -> BrookError:
    return BrookError(
        "CORRUPT_BATCH", f"batch {index}: {message}; nothing was appended", {"batch": index}
    )


def validate_batch(raw: RawBatch, max_batch_bytes: int, index: int = 0) -> ValidBatch:
    """Checks one produce batch; raises BATCH_TOO_LARGE or CORRUPT_BATCH."""
    if len(raw) > max_batch_bytes:
        raise BrookError(
            "BATCH_TOO_LARGE",
            f"batch {index} is {len(raw)} bytes, more than the topic's max_batch_bytes"
            f" {max_batch_bytes}; split it into smaller batches",
            {"batch": index, "batch_bytes": len(raw), "max_batch_bytes": max_batch_bytes},
        )
    try:
        header = scan_batch(raw)
    except MalformedWire as error:
        raise _corrupt(f"not a RecordBatch ({error})", index) from None
    if header.record_count < 1:
        raise _corrupt(f"record_count {header.record_count} < 1", index)
    if header.producer_id not in (0, NO_PRODUCER_ID):
        # Reserved for idempotent production, which no Brook node implements yet: an id
        # it cannot honour must not look accepted.
        raise BrookError(
            Reason.INVALID_REQUEST,
            f"batch {index}: producer_id {header.producer_id} is reserved for idempotent"
            " production, which this cluster does not support; send -1; nothing was appended",
            {"batch": index, "producer_id": header.producer_id},
        )
    if header.records_end <= header.records_start:
        raise _corrupt("records is empty", index)
    if header.max_timestamp_ms < NO_TIMESTAMP:
        raise _corrupt(f"max_timestamp_ms {header.max_timestamp_ms} < -1", index)
    records = memoryview(raw)[header.records_start : header.records_end]  # no copy
    if crc32c(records) != header.crc32c:
        raise _corrupt("crc32c of records does not match the batch's crc32c", index)
    problem = records_problem(header, records)
    if problem is not None:
        raise _corrupt(problem, index)
    return ValidBatch(raw, header.record_count, header.max_timestamp_ms)


def records_problem(header: ScannedBatch, records: memoryview) -> str | None:
    """Why a consumer could not read the batch's records, or None: the codec must be known,
    the bytes must inflate (if compressed) to exactly `uncompressed_bytes` and parse as a
    Records message holding exactly `record_count` records.

    Why parse at all: the CRC only proves the bytes arrived as sent, not that they are
    records. A batch whose count, codec or structure is wrong would be stored, replicated
    and then rejected by every consumer, blocking the partition at that offset forever.
    How, cheaply: the parse is protobuf's C parser (upb) over a view of the bytes, the same
    parser and rules a consumer uses, and only `len()` of the repeated field is taken, so
    no Python object is built per record (~0.07 ms per MiB of 1 KiB records, ~0.4 ms per
    MiB of 100-byte ones; a hand walk of the top-level fields in Python was 15-20x
    slower; `bench/validate_bench.py`).
    """
    count = header.record_count
    if count > RECORD_COUNT_MAX:
        return f"record_count {count} is more than the limit {RECORD_COUNT_MAX}"
    codec = header.compression
    if codec not in KNOWN_CODECS:
        return f"unknown compression codec {codec} (known: {sorted(KNOWN_CODECS)})"
    if codec in UNCOMPRESSED_CODECS:
        data: bytes | memoryview = records
    else:
        inflated = _inflate(records, codec, header.uncompressed_bytes)
        if isinstance(inflated, str):
            return inflated
        data = inflated
    # Each Record takes at least 2 bytes in Records (a tag and a length), so a count above
    # half the size cannot be right; checked before parsing so a huge count costs nothing.
    if count > len(data) // _MIN_RECORD_BYTES:
        return (
            f"record_count {count} cannot fit in {len(data)} bytes of records (each record"
            f" takes at least {_MIN_RECORD_BYTES} bytes)"
        )
    try:
        # A view parses without a copy (upb takes any buffer; the stub says bytes).
        actual = len(records_pb2.Records.FromString(data).records)  # type: ignore[arg-type]
    except DecodeError as error:
        name = _CODEC_NAMES.get(codec, str(codec))
        return f"records bytes are not a Records message (codec {name}): {error}"
    if actual != count:
        return f"record_count is {count} but the records hold {actual}"
    return None


def _inflate(records: memoryview, codec: int, declared: int) -> bytes | str:
    """The decompressed records, never more than `declared` bytes, or why not."""
    name = _CODEC_NAMES[codec]
    if not 0 < declared <= UNCOMPRESSED_BATCH_BYTES_MAX:
        return (
            f"uncompressed_bytes {declared} of a {name} batch is outside"
            f" 1..{UNCOMPRESSED_BATCH_BYTES_MAX}"
        )
    try:
        return decompress(records, codec, declared, UNCOMPRESSED_BATCH_BYTES_MAX)
    except BrookError as error:
        return error.message


def validate_batches(raws: Sequence[RawBatch], max_batch_bytes: int) -> list[ValidBatch]:
    """Checks every batch of a partition's request; raises on the first bad one."""
    if not raws:
        raise BrookError("INVALID_REQUEST", "a partition in a produce request has no batches")
    return [validate_batch(raw, max_batch_bytes, index) for index, raw in enumerate(raws)]


def stamp(valid: ValidBatch, base_offset: int, leader_epoch: int) -> bytes:
    """The storage payload: the producer's bytes plus the assigned base offset and epoch
    (appended fields win over any earlier occurrence when parsed)."""
    return b"".join((
        valid.raw, _BASE_OFFSET_TAG, varint(base_offset), _LEADER_EPOCH_TAG, varint(leader_epoch)
    ))


def read_batch_info(payload: bytes) -> BatchInfo:
    """Reads the header fields of a stored batch (a follower appending leader payloads).

    Raises CORRUPT_BATCH when the payload does not parse or its fields cannot be stored.
    """
    try:
        header = scan_batch(payload)
    except MalformedWire as error:
        raise BrookError("CORRUPT_BATCH", f"replicated batch does not parse: {error}") from None
    if header.record_count < 1 or header.base_offset < 0 or header.partition_leader_epoch < 0:
        raise BrookError(
            "CORRUPT_BATCH",
            f"replicated batch header out of range: base_offset={header.base_offset}"
            f" record_count={header.record_count} epoch={header.partition_leader_epoch}",
        )
    return BatchInfo(
        header.base_offset,
        header.record_count,
        max(header.max_timestamp_ms, NO_TIMESTAMP),
        header.partition_leader_epoch,
    )
