"""The on-disk batch: a fixed header framing an opaque payload.

File format. A segment's `.log` file is a sequence of batches, each a 33-byte header
followed by the payload, with no padding between batches. The header is big-endian:

    offset  size  field
    0       8     base_offset       int64   offset of the first record in the batch
    8       4     payload_length    int32   bytes of payload after the header, >= 1
    12      1     magic             int8    format version, currently 1
    13      4     record_count      int32   records in the payload, >= 1
    17      8     max_timestamp_ms  int64   largest record timestamp, -1 = none
    25      4     leader_epoch      int32   epoch of the leader that first appended it
    29      4     crc               uint32  CRC32C of bytes 0..28 of the header, then of
                                            the payload (one running CRC)

The CRC covers every header field except itself and the whole payload, so any flipped
byte in a stored batch is detected (the CRC field itself is covered by the comparison).
The payload is never decoded by the engine; it is exactly the bytes given to append.

Thread-safety: every function here is pure; the dataclasses are immutable.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, NamedTuple

from crc32c import crc32c

from .file_utils import Buffer

MAGIC: Final = 1
# Header fields before the CRC, then the CRC alone: the CRC is computed over the packed prefix.
_PREFIX: Final = struct.Struct(">qibiqi")
_CRC: Final = struct.Struct(">I")
_HEADER: Final = struct.Struct(">qibiqiI")
PREFIX_SIZE: Final = _PREFIX.size
HEADER_SIZE: Final = _HEADER.size
INT32_MAX: Final = (1 << 31) - 1
INT64_MAX: Final = (1 << 63) - 1
# -1 is Kafka's "no timestamp"; anything lower is a caller bug.
NO_TIMESTAMP: Final = -1
# The payload length is an int32 and the batch must fit a segment position (int32) too.
MAX_PAYLOAD_BYTES: Final = INT32_MAX - HEADER_SIZE

assert PREFIX_SIZE == 29 and HEADER_SIZE == 33


class HeaderFields(NamedTuple):
    """The raw fields of a stored header, as unpacked (nothing checked yet)."""

    base_offset: int
    payload_length: int
    magic: int
    record_count: int
    max_timestamp_ms: int
    leader_epoch: int
    crc: int

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.record_count - 1

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.record_count


class AppendBatch(NamedTuple):
    """One batch for `PartitionLog.append_batches`: the opaque payload and the two header
    fields the engine cannot read from it."""

    payload: Buffer
    record_count: int
    max_timestamp_ms: int


class PendingBatch(NamedTuple):
    """A validated batch with its assigned offset, waiting to be framed into a segment."""

    payload: Buffer
    base_offset: int
    record_count: int
    max_timestamp_ms: int
    leader_epoch: int


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """The decoded fixed header of one stored batch (without its CRC)."""

    base_offset: int
    record_count: int
    max_timestamp_ms: int
    leader_epoch: int
    payload_bytes: int

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.record_count - 1

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.record_count

    @property
    def stored_bytes(self) -> int:
        """Bytes the batch takes in the segment file: header plus payload."""
        return HEADER_SIZE + self.payload_bytes


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """One batch as read back: its header and the exact payload bytes given to append."""

    header: BatchHeader
    payload: bytes


def encode_header_into(
    buffer: bytearray | memoryview,
    position: int,
    *,
    base_offset: int,
    record_count: int,
    max_timestamp_ms: int,
    leader_epoch: int,
    payload: bytes | bytearray | memoryview,
) -> None:
    """Writes the header for `payload` at `buffer[position:position + HEADER_SIZE]`.

    Packs into a caller-owned buffer so the append path frames many batches without
    allocating a bytes object per header.
    """
    _PREFIX.pack_into(
        buffer,
        position,
        base_offset,
        len(payload),
        MAGIC,
        record_count,
        max_timestamp_ms,
        leader_epoch,
    )
    prefix = memoryview(buffer)[position : position + PREFIX_SIZE]
    _CRC.pack_into(buffer, position + PREFIX_SIZE, crc32c(payload, crc32c(prefix)))


def encode_header(
    *,
    base_offset: int,
    record_count: int,
    max_timestamp_ms: int,
    leader_epoch: int,
    payload: bytes | bytearray | memoryview,
) -> bytes:
    """Returns the header for `payload` as a new bytes object (tests and tools)."""
    buffer = bytearray(HEADER_SIZE)
    encode_header_into(
        buffer,
        0,
        base_offset=base_offset,
        record_count=record_count,
        max_timestamp_ms=max_timestamp_ms,
        leader_epoch=leader_epoch,
        payload=payload,
    )
    return bytes(buffer)


def unpack_header(buffer: bytes | bytearray | memoryview, position: int) -> HeaderFields:
    """Returns the raw header fields at `position`; no checks."""
    return HeaderFields._make(_HEADER.unpack_from(buffer, position))


def header_problem(fields: HeaderFields, *, max_payload_bytes: int) -> str | None:
    """Returns why a raw header cannot be a batch this engine wrote, or None if it can.

    Checks only what the header says about itself; contiguity and the CRC are checked by
    the caller, which knows the expected offset and has the payload.
    """
    base_offset, payload_length, magic, record_count, max_timestamp_ms, leader_epoch, _ = fields
    if magic != MAGIC:
        return f"unknown magic byte {magic} (expected {MAGIC})"
    if payload_length < 1 or payload_length > max_payload_bytes:
        return f"payload length {payload_length} outside 1..{max_payload_bytes}"
    if record_count < 1:
        return f"record count {record_count} < 1"
    if base_offset < 0 or base_offset + record_count - 1 > INT64_MAX:
        return f"base offset {base_offset} out of range"
    if leader_epoch < 0:
        return f"leader epoch {leader_epoch} < 0"
    if max_timestamp_ms < NO_TIMESTAMP:
        return f"max timestamp {max_timestamp_ms} < -1"
    return None


def batch_crc(
    prefix: bytes | bytearray | memoryview, payload: bytes | bytearray | memoryview
) -> int:
    """The CRC32C a header must carry, given its 29-byte prefix and the payload."""
    return crc32c(payload, crc32c(prefix))


def header_from_fields(fields: HeaderFields) -> BatchHeader:
    base_offset, payload_length, _, record_count, max_timestamp_ms, leader_epoch, _ = fields
    return BatchHeader(base_offset, record_count, max_timestamp_ms, leader_epoch, payload_length)
