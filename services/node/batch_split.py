"""Serving a stored batch to a client whose receive limit it exceeds (issue 10, trap 3).

A fetch returns whole stored batches, and at least one so a consumer always progresses.
A stock gRPC client refuses any message over 4 MiB, so a batch larger than the client's
stated `receive_limit_bytes` would leave it stuck at that offset with "Received message
larger than max". Instead the node re-encodes that one batch as smaller batches holding
the same records: same offsets, timestamps, keys, values, headers, leader epoch, codec
and producer fields, with new checksums. Only this rare path decodes records on the node;
the bytes of every batch that fits are served as stored.

A record is never split: one record larger than the limit is `RecordTooLarge`, which the
caller reports as BATCH_TOO_LARGE saying how large the limit must be.

Thread-safety: pure functions; the caller runs them in an executor (a multi-MiB batch
takes tens of ms to inflate and re-encode).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from brook.codec import compress, crc32c, decompress
from brook.errors import BrookError, Reason
from brook.v1 import records_pb2

# Room in a piece for the RecordBatch fields around the records bytes (12 fields, each at
# most a tag and a 10-byte varint) and the response's tag and length for the batch.
PIECE_HEADER_BYTES: Final = 160
# Bytes a Record adds inside Records beyond its own size: its tag and length varint.
_RECORD_FRAMING_BYTES: Final = 6


class RecordTooLarge(Exception):
    """The first record to serve does not fit a piece by itself."""

    def __init__(self, offset: int, piece_bytes: int) -> None:
        super().__init__(f"the record at offset {offset} needs a {piece_bytes}-byte batch")
        self.offset = offset
        # The smallest piece_max_bytes that holds the record.
        self.piece_bytes = piece_bytes


def split_batch(stored: bytes, piece_max_bytes: int, from_offset: int) -> list[bytes]:
    """The records of `stored` (a serialized RecordBatch) at or after `from_offset`, as
    serialized RecordBatches of at most `piece_max_bytes` each, in offset order.

    Raises RecordTooLarge when the first record to serve does not fit a piece by itself,
    and BrookError CORRUPT_BATCH when the stored batch does not decode.
    """
    batch = records_pb2.RecordBatch.FromString(stored)
    data = decompress(batch.records, batch.compression, batch.uncompressed_bytes)
    try:
        records = list(records_pb2.Records.FromString(data).records)
    except Exception as error:  # protobuf's DecodeError
        raise BrookError(Reason.CORRUPT_BATCH, f"stored batch does not decode: {error}") from None
    wanted = [r for r in records if batch.base_offset + r.offset_delta >= from_offset]
    room = piece_max_bytes - PIECE_HEADER_BYTES
    pieces: list[bytes] = []
    group: list[records_pb2.Record] = []
    group_bytes = 0
    for record in wanted:
        size = record.ByteSize() + _RECORD_FRAMING_BYTES
        if size > room:
            if pieces or group:
                break  # serve what fits; the next fetch starts at this record and fails
            raise RecordTooLarge(batch.base_offset + record.offset_delta,
                                 size + PIECE_HEADER_BYTES)
        if group_bytes + size > room:
            pieces.extend(_encode_pieces(batch, group, piece_max_bytes))
            group, group_bytes = [], 0
        group.append(record)
        group_bytes += size
    if group:
        pieces.extend(_encode_pieces(batch, group, piece_max_bytes))
    return pieces


def _encode_pieces(
    batch: records_pb2.RecordBatch, group: Sequence[records_pb2.Record], piece_max_bytes: int
) -> list[bytes]:
    """`group` as one batch, or as halves when compression made it larger than a piece
    (incompressible data grows by a few bytes per block)."""
    piece = _encode_piece(batch, group)
    if len(piece) <= piece_max_bytes or len(group) == 1:
        return [piece]
    middle = len(group) // 2
    return _encode_pieces(batch, group[:middle], piece_max_bytes) + _encode_pieces(
        batch, group[middle:], piece_max_bytes
    )


def _encode_piece(batch: records_pb2.RecordBatch, group: Sequence[records_pb2.Record]) -> bytes:
    first_delta = group[0].offset_delta
    rebased = records_pb2.Records()
    for record in group:
        copy = rebased.records.add()
        copy.CopyFrom(record)
        copy.offset_delta = record.offset_delta - first_delta
        # 0 means "the batch's max timestamp": the piece's own max may differ, so say it.
        copy.timestamp_ms = record.timestamp_ms or batch.max_timestamp_ms
    timestamps = [record.timestamp_ms for record in rebased.records]
    plain = rebased.SerializeToString()
    payload = compress(plain, batch.compression)
    piece = records_pb2.RecordBatch()
    piece.CopyFrom(batch)
    piece.base_offset = batch.base_offset + first_delta
    if batch.producer_id >= 0:  # an idempotent producer's sequence numbers follow offsets
        piece.base_sequence = batch.base_sequence + first_delta
    piece.record_count = len(group)
    piece.first_timestamp_ms = min(timestamps)
    piece.max_timestamp_ms = max(timestamps)
    piece.records = payload
    piece.crc32c = crc32c(payload)
    piece.uncompressed_bytes = len(plain)
    return piece.SerializeToString()
