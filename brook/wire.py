"""Protobuf wire-format helpers shared by the client's encoder and the node's data path.

Brook's hot paths read and write a few protobuf messages by hand (the node never decodes
records; the client writes batches in wire form), so the base-128 varint and the field
tags live here once. Encodings follow https://protobuf.dev/programming-guides/encoding/:
a tag is `field_number << 3 | wire_type`; int32/int64 negatives take ten bytes (64-bit
two's complement); zero scalars are left out by proto3's canonical encoding.

Thread-safety: pure functions and immutable tables.
"""

from __future__ import annotations

from typing import Final

WIRE_VARINT: Final = 0
WIRE_FIXED64: Final = 1
WIRE_LENGTH: Final = 2
WIRE_FIXED32: Final = 5

# A varint carries at most 64 bits: ten 7-bit groups.
VARINT_BYTES_MAX: Final = 10
_UINT64_MASK: Final = (1 << 64) - 1


class MalformedWire(ValueError):
    """Bytes that are not a well-formed protobuf encoding."""


def encode_varint(value: int) -> bytes:
    """Protobuf base-128 varint; negative values as 64-bit two's complement."""
    value &= _UINT64_MASK
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Varints of every small value, computed once: a table lookup is several times cheaper
# than encoding in Python, and lengths and offset deltas are nearly always below this.
_VARINT_TABLE_SIZE: Final = 1 << 14
_VARINT_TABLE: Final[list[bytes]] = [encode_varint(n) for n in range(_VARINT_TABLE_SIZE)]


def varint(value: int) -> bytes:
    """`encode_varint`, from a table for small non-negative values."""
    return _VARINT_TABLE[value] if 0 <= value < _VARINT_TABLE_SIZE else encode_varint(value)


def read_varint(data: bytes | bytearray | memoryview, position: int, end: int) -> tuple[int, int]:
    """(value as unsigned 64-bit, position after it); MalformedWire when truncated or overlong."""
    value = 0
    shift = 0
    limit = min(end, position + VARINT_BYTES_MAX)
    while position < limit:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value & _UINT64_MASK, position
        shift += 7
    raise MalformedWire("truncated or overlong varint")


def as_int32(value: int) -> int:
    """An unsigned varint read as protobuf int32."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def as_int64(value: int) -> int:
    """An unsigned varint read as protobuf int64."""
    return value - (1 << 64) if value >= 1 << 63 else value


def tag(field_number: int, wire_type: int) -> bytes:
    """The encoded tag of a field."""
    return encode_varint(field_number << 3 | wire_type)


def varint_field(field_tag: bytes, value: int) -> bytes:
    """A varint field as proto3 writes it: nothing when the value is zero."""
    return field_tag + varint(value) if value else b""


def length_field(field_tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field (bytes, string, or an embedded message)."""
    return field_tag + varint(len(payload)) + payload
