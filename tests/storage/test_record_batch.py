"""The on-disk batch header: layout, CRC coverage and sanity checks."""

from __future__ import annotations

import struct

import crc32c

from brook.storage.record_batch import (
    HEADER_SIZE,
    MAX_PAYLOAD_BYTES,
    PREFIX_SIZE,
    BatchHeader,
    batch_crc,
    encode_header,
    header_problem,
    unpack_header,
)


def test_layout_matches_the_documented_format() -> None:
    """The header is 33 big-endian bytes in the documented field order, and its CRC is
    CRC32C over the 29 bytes before it followed by the payload."""
    payload = b"hello, brook"
    header = encode_header(
        base_offset=0x0102030405060708,
        record_count=7,
        max_timestamp_ms=1_700_000_000_123,
        leader_epoch=9,
        payload=payload,
    )
    assert HEADER_SIZE == len(header) == 33
    base, length, magic, count, timestamp, epoch, crc = struct.unpack(">qibiqiI", header)
    assert (base, length, magic, count, timestamp, epoch) == (
        0x0102030405060708,
        len(payload),
        1,
        7,
        1_700_000_000_123,
        9,
    )
    assert header[:8] == bytes(range(1, 9))
    assert crc == crc32c.crc32c(payload, crc32c.crc32c(header[:29]))


def test_every_flipped_byte_is_detected() -> None:
    """Flipping any single byte of a stored batch (any header field, the CRC or the
    payload) makes either the header sanity check or the CRC comparison fail."""
    payload = bytes(range(200))
    stored = (
        encode_header(
            base_offset=42, record_count=3, max_timestamp_ms=5, leader_epoch=1, payload=payload
        )
        + payload
    )
    for position in range(len(stored)):
        for flip in (0x01, 0x80, 0xFF):
            damaged = bytearray(stored)
            damaged[position] ^= flip
            fields = unpack_header(damaged, 0)
            problem = header_problem(fields, max_payload_bytes=MAX_PAYLOAD_BYTES)
            if problem is None and fields[0] == 42:
                body = bytes(damaged[HEADER_SIZE : HEADER_SIZE + fields[1]])
                assert batch_crc(damaged[:PREFIX_SIZE], body) != fields[6], (position, flip)


def test_header_problem_names_the_bad_field() -> None:
    """Each sanity rule reports which field broke it, in words a person can act on."""
    good = (10, 5, 1, 2, 100, 3, 0)
    assert header_problem(good, max_payload_bytes=100) is None
    cases = {
        (10, 5, 2, 2, 100, 3, 0): "magic",
        (10, 0, 1, 2, 100, 3, 0): "payload length",
        (10, 101, 1, 2, 100, 3, 0): "payload length",
        (10, 5, 1, 0, 100, 3, 0): "record count",
        (-1, 5, 1, 2, 100, 3, 0): "base offset",
        (10, 5, 1, 2, 100, -1, 0): "leader epoch",
        (10, 5, 1, 2, -2, 3, 0): "timestamp",
    }
    for fields, word in cases.items():
        problem = header_problem(fields, max_payload_bytes=100)
        assert problem is not None and word in problem, (fields, problem)


def test_batch_header_offsets() -> None:
    """last_offset and next_offset follow from base_offset and record_count."""
    header = BatchHeader(
        base_offset=100, record_count=5, max_timestamp_ms=1, leader_epoch=0, payload_bytes=10
    )
    assert header.last_offset == 104
    assert header.next_offset == 105
    assert header.stored_bytes == HEADER_SIZE + 10
