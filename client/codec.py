"""Record batch encoding and decoding: `brook.v1.Records` inside a `brook.v1.RecordBatch`.

Encoding writes the protobuf wire format of `Records` directly instead of building one
`Record` message per record: measured with the upb runtime on 100-byte values, the
direct writer costs about 0.6 us per record against 1.3 us for `records.add(...)` and
2.1 us for constructing `Record` objects and extending. The output is byte-for-byte what
`Records.SerializeToString()` gives for the same records (fields in number order, zero
values omitted), which the tests check.

Decoding goes the other way through the generated parser (one C call per batch) and
builds `ConsumerRecord` tuples. It checks crc32c over the records bytes exactly as sent,
refuses to inflate past the header's `uncompressed_bytes` (itself bounded), and skips
records below the fetch offset (a fetch starts with the whole batch holding it).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import cast

import crc32c as _crc32c
import lz4.frame
import zstandard

from brook.client import defaults
from brook.client.records import ConsumerRecord, Header
from brook.errors import BrookError
from brook.v1 import records_pb2

NONE = records_pb2.COMPRESSION_CODEC_NONE
ZSTD = records_pb2.COMPRESSION_CODEC_ZSTD
LZ4 = records_pb2.COMPRESSION_CODEC_LZ4
GZIP = records_pb2.COMPRESSION_CODEC_GZIP

CODECS: dict[str, int] = {"none": NONE, "zstd": ZSTD, "lz4": LZ4, "gzip": GZIP}

# Not idempotent: the producer fields stay at "none" (-1) until idempotence lands.
NO_PRODUCER_ID = -1

_UINT64_MASK = (1 << 64) - 1


def codec_from_name(name: str | None) -> int:
    """The CompressionCodec value for a user-facing name (None, "none", "zstd", "lz4", "gzip")."""
    if name is None:
        return NONE
    try:
        return CODECS[name.lower()]
    except KeyError:
        raise ValueError(
            f"unknown compression {name!r}; expected one of {', '.join(CODECS)}"
        ) from None


def encode_varint(value: int) -> bytes:
    """Protobuf base-128 varint; negative int64 values take ten bytes (two's complement)."""
    value &= _UINT64_MASK
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Varints of every length and offset delta a typical batch needs, computed once: a table
# lookup is several times cheaper than encoding in Python.
_VARINT_TABLE_SIZE = 1 << 14
_VARINT: list[bytes] = [encode_varint(n) for n in range(_VARINT_TABLE_SIZE)]


# Record.offset_delta (field 1) as encoded, omitted when zero.
_OFFSET_DELTA_FIELD: list[bytes] = [b"\x08" + v if n else b"" for n, v in enumerate(_VARINT)]


def _varint(value: int) -> bytes:
    return _VARINT[value] if 0 <= value < _VARINT_TABLE_SIZE else encode_varint(value)


def _encode_headers(headers: Sequence[Header]) -> bytes:
    """Record.headers (field 5) entries, each a RecordHeader{key=1 string, value=2 bytes}."""
    parts: list[bytes] = []
    for name, value in headers:
        name_bytes = name.encode()
        inner = b""
        if name_bytes:
            inner += b"\x0a" + _varint(len(name_bytes)) + name_bytes
        if value:
            inner += b"\x12" + _varint(len(value)) + bytes(value)
        parts.append(b"\x2a" + _varint(len(inner)) + inner)
    return b"".join(parts)


def _encode_plain(values: Sequence[bytes], timestamps_ms: Sequence[int]) -> bytes:
    """Keyless, headerless records: the perf path, free of branches it does not need.

    Raises IndexError when an index or a length is past the varint table; the caller then
    takes the general path.
    """
    table = _VARINT
    deltas = _OFFSET_DELTA_FIELD
    parts: list[bytes] = []
    append = parts.append
    join = b"".join
    last_timestamp = None
    timestamp_field = b""
    for index, value in enumerate(values):
        timestamp = timestamps_ms[index]
        if timestamp != last_timestamp:
            last_timestamp = timestamp
            timestamp_field = b"\x10" + encode_varint(timestamp) if timestamp else b""
        # Zero-valued fields are omitted, as protobuf's own serializer does.
        if value:
            body = join((deltas[index], timestamp_field, b"\x22", table[len(value)], value))
        else:
            body = join((deltas[index], timestamp_field))
        append(b"\x0a")
        append(table[len(body)])
        append(body)
    return join(parts)


def encode_records(
    values: Sequence[bytes],
    timestamps_ms: Sequence[int],
    keys: Sequence[bytes | None] | None = None,
    headers: Mapping[int, Sequence[Header]] | None = None,
) -> bytes:
    """Serializes records as a `brook.v1.Records` message.

    `keys` is None when no record has a key (the fast path); otherwise one entry per
    record, None for "no key". `headers` maps a record index to its headers (sparse:
    most records have none). Offset deltas are the record indexes.
    """
    if keys is None and not headers:
        try:
            return _encode_plain(values, timestamps_ms)
        except IndexError:
            pass  # an index or length beyond the varint table: take the general path
    parts: list[bytes] = []
    append = parts.append
    last_timestamp = None
    timestamp_field = b""
    for index, value in enumerate(values):
        timestamp = timestamps_ms[index]
        if timestamp != last_timestamp:
            last_timestamp = timestamp
            timestamp_field = b"\x10" + encode_varint(timestamp) if timestamp else b""
        pieces: list[bytes] = []
        if index:
            pieces.append(b"\x08" + _varint(index))
        pieces.append(timestamp_field)
        key = keys[index] if keys is not None else None
        if key:
            pieces.append(b"\x1a" + _varint(len(key)) + key)
        if value:
            pieces.append(b"\x22" + _varint(len(value)) + value)
        if headers:
            record_headers = headers.get(index)
            if record_headers:
                pieces.append(_encode_headers(record_headers))
        if key is not None:
            pieces.append(b"\x30\x01")
        body = b"".join(pieces)
        append(b"\x0a")
        append(_varint(len(body)))
        append(body)
    return b"".join(parts)


def compress(data: bytes, codec: int) -> bytes:
    """Compresses serialized Records with a CompressionCodec value."""
    if codec in (NONE, records_pb2.COMPRESSION_CODEC_UNSPECIFIED):
        return data
    if codec == ZSTD:
        # write_content_size lets a reader check the size before it inflates anything.
        return zstandard.ZstdCompressor(level=3, write_content_size=True).compress(data)
    if codec == LZ4:
        return lz4.frame.compress(data, store_size=True)
    if codec == GZIP:
        compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        return compressor.compress(data) + compressor.flush()
    raise ValueError(f"unknown compression codec {codec}")


def decompress(data: bytes, codec: int, uncompressed_bytes: int) -> bytes:
    """Inflates records bytes, never past `uncompressed_bytes` (checked exactly)."""
    if codec in (NONE, records_pb2.COMPRESSION_CODEC_UNSPECIFIED):
        return data
    if not 0 <= uncompressed_bytes <= defaults.MAX_UNCOMPRESSED_BATCH_BYTES:
        raise BrookError(
            "CORRUPT_BATCH",
            f"batch claims {uncompressed_bytes} uncompressed bytes; the limit is "
            f"{defaults.MAX_UNCOMPRESSED_BATCH_BYTES}",
        )
    try:
        if codec == ZSTD:
            declared = zstandard.frame_content_size(data)
            if declared > uncompressed_bytes:
                raise BrookError(
                    "CORRUPT_BATCH",
                    f"zstd frame declares {declared} bytes, header says {uncompressed_bytes}",
                )
            out = zstandard.ZstdDecompressor().decompress(data, max_output_size=uncompressed_bytes)
        elif codec == LZ4:
            out = lz4.frame.LZ4FrameDecompressor().decompress(
                data, max_length=uncompressed_bytes + 1
            )
        elif codec == GZIP:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out = inflater.decompress(data, uncompressed_bytes + 1)
        else:
            raise BrookError("CORRUPT_BATCH", f"unknown compression codec {codec}")
    except BrookError:
        raise
    except Exception as error:  # each library raises its own type for garbage input
        raise BrookError("CORRUPT_BATCH", f"cannot decompress batch: {error}") from error
    if len(out) != uncompressed_bytes:
        raise BrookError(
            "CORRUPT_BATCH",
            f"batch inflated to {len(out)} bytes, header says {uncompressed_bytes}",
        )
    return out


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) as RecordBatch.crc32c carries it."""
    return int(_crc32c.crc32c(data))


def build_batch(
    records_bytes: bytes,
    record_count: int,
    first_timestamp_ms: int,
    max_timestamp_ms: int,
    codec: int = NONE,
) -> records_pb2.RecordBatch:
    """A RecordBatch ready to produce: compressed, checksummed, offsets left to the leader."""
    payload = compress(records_bytes, codec)
    return records_pb2.RecordBatch(
        record_count=record_count,
        first_timestamp_ms=first_timestamp_ms,
        max_timestamp_ms=max_timestamp_ms,
        compression=cast("records_pb2.CompressionCodec.ValueType", codec),
        crc32c=crc32c(payload),
        producer_id=NO_PRODUCER_ID,
        producer_epoch=NO_PRODUCER_ID,
        base_sequence=NO_PRODUCER_ID,
        records=payload,
        uncompressed_bytes=len(records_bytes),
    )


def encode_batch(
    values: Sequence[bytes],
    timestamps_ms: Sequence[int],
    keys: Sequence[bytes | None] | None = None,
    headers: Mapping[int, Sequence[Header]] | None = None,
    codec: int = NONE,
) -> records_pb2.RecordBatch:
    """Records to a RecordBatch in one call (encode, compress, checksum, header)."""
    if not values:
        raise ValueError("a batch holds at least one record")
    return build_batch(
        encode_records(values, timestamps_ms, keys, headers),
        len(values),
        min(timestamps_ms),
        max(timestamps_ms),
        codec,
    )


def decode_batch(
    batch: records_pb2.RecordBatch,
    topic: str,
    partition: int,
    fetch_offset: int = 0,
    *,
    check_crc: bool = True,
) -> list[ConsumerRecord]:
    """The records of a fetched batch at or after `fetch_offset`, as ConsumerRecords.

    Raises BrookError CORRUPT_BATCH when the checksum, the compression or the record
    count does not match the header.
    """
    payload = batch.records
    if check_crc and _crc32c.crc32c(payload) != batch.crc32c:
        raise BrookError(
            "CORRUPT_BATCH",
            f"crc32c mismatch in {topic}-{partition} batch at offset {batch.base_offset}",
            {"topic": topic, "partition": partition, "base_offset": batch.base_offset},
        )
    data = decompress(payload, batch.compression, batch.uncompressed_bytes)
    try:
        records = records_pb2.Records.FromString(data).records
    except Exception as error:  # protobuf's DecodeError
        raise BrookError(
            "CORRUPT_BATCH", f"undecodable records in {topic}-{partition}: {error}"
        ) from error
    if len(records) != batch.record_count:
        raise BrookError(
            "CORRUPT_BATCH",
            f"{topic}-{partition} batch at {batch.base_offset} holds {len(records)} records,"
            f" header says {batch.record_count}",
        )
    base_offset = batch.base_offset
    epoch = batch.partition_leader_epoch
    default_timestamp = batch.max_timestamp_ms
    skip = fetch_offset - base_offset
    new = tuple.__new__
    cls = ConsumerRecord
    out: list[ConsumerRecord] = []
    append = out.append
    for record in records:
        delta = record.offset_delta
        if delta < skip:
            continue
        headers = record.headers
        append(
            new(
                cls,
                (
                    topic,
                    partition,
                    base_offset + delta,
                    record.timestamp_ms or default_timestamp,
                    record.key if record.has_key else None,
                    record.value,
                    [(header.key, header.value) for header in headers] if headers else [],
                    epoch,
                ),
            )
        )
    return out


def batch_next_offset(batch: records_pb2.RecordBatch) -> int:
    """The offset after the batch's last record."""
    return int(batch.base_offset + batch.record_count)
