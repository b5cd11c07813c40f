"""Keeping every Fetch and Subscribe message within the client's receive limit (issue 10,
trap 3).

gRPC clients refuse messages over their max receive message length, 4 MiB by default in
every stock client. A client states its limit in `receive_limit_bytes` (unset: 4 MiB); the
node then packs batches into `limit - overhead` bytes, where the overhead bounds the
response's own fields (topic names, offsets, errors), and serves a stored batch too big to
fit alone as smaller batches of the same records (`batch_split`). Fetch answers the pieces
that fit (the client's next fetch continues inside the stored batch); Subscribe sends every
piece, spread over as many messages as it takes, since its cursor has moved past the whole
batch.

Thread-safety: one event loop; splitting runs in the loop's default executor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from brook.errors import BrookError, Reason
from brook.internal.v1 import wire_pb2
from brook.services.node.batch_split import RecordTooLarge, split_batch
from brook.services.node.data_path import PartitionRead

DEFAULT_RECEIVE_LIMIT_BYTES: Final = 4 << 20
RECEIVE_LIMIT_BYTES_MIN: Final = 64 << 10
RECEIVE_LIMIT_BYTES_MAX: Final = 256 << 20
# Per partition entry: tag, length, partition, high watermark, log start offset and batch
# framing. Errors are known only after the reads: `check_response_size` measures the
# response that is actually sent.
_ENTRY_OVERHEAD_BYTES: Final = 64
# The response's own framing, with margin.
_RESPONSE_OVERHEAD_BYTES: Final = 4096
# A batch's tag and length inside its partition entry.
_BATCH_FRAMING_BYTES: Final = 6


def receive_limit(requested: int) -> int:
    """The limit a request states (0: the stock 4 MiB), or INVALID_REQUEST."""
    if requested == 0:
        return DEFAULT_RECEIVE_LIMIT_BYTES
    if not RECEIVE_LIMIT_BYTES_MIN <= requested <= RECEIVE_LIMIT_BYTES_MAX:
        raise BrookError(
            Reason.INVALID_REQUEST,
            f"receive_limit_bytes {requested} is outside {RECEIVE_LIMIT_BYTES_MIN}.."
            f"{RECEIVE_LIMIT_BYTES_MAX} (0 means {DEFAULT_RECEIVE_LIMIT_BYTES}, the default"
            " of stock gRPC clients)",
            {"field": "receive_limit_bytes", "min": RECEIVE_LIMIT_BYTES_MIN,
             "max": RECEIVE_LIMIT_BYTES_MAX},
        )
    return requested


@dataclass(frozen=True, slots=True)
class Budget:
    """A message's receive limit and the bytes of batches it may hold under it."""

    limit: int
    batch_bytes: int

    def trim(self, entries: Sequence[wire_pb2.FetchedPartitionWire], size: int) -> None:
        """Drops batches from the end of `entries` (a response of `size` bytes) until the
        response fits the limit (the partitions continue from there next time); raises
        INVALID_REQUEST when the entries alone, without any batch, exceed it."""
        for entry in reversed(entries):
            while size > self.limit and entry.batches:
                dropped = entry.batches.pop()
                size -= len(dropped) + _BATCH_FRAMING_BYTES
        if size > self.limit:
            raise BrookError(
                Reason.INVALID_REQUEST,
                f"the answer for {len(entries)} partitions is {size} bytes without any records,"
                f" over receive_limit_bytes {self.limit}: name fewer partitions per request"
                " or raise the limit",
                {"field": "partitions", "receive_limit_bytes": self.limit},
            )

    def too_large(self, error: RecordTooLarge) -> BrookError:
        required = error.piece_bytes + self.limit - self.batch_bytes
        return BrookError(
            Reason.BATCH_TOO_LARGE,
            f"the record at offset {error.offset} does not fit receive_limit_bytes"
            f" {self.limit}; set receive_limit_bytes (and your gRPC channel's max receive"
            f" message length) to at least {required}",
            {"offset": error.offset, "receive_limit_bytes": self.limit,
             "required_bytes": required},
        )


def batch_budget(limit: int, request_bytes: int, partition_count: int) -> Budget:
    """The Budget of a message under `limit` for a request of `request_bytes` naming
    `partition_count` partitions, or INVALID_REQUEST when the partition entries alone
    could exceed it."""
    # The request's entries (topic, partition, offsets) are about the size of the
    # response's; measured in C, so 10,000 partitions cost no Python loop.
    overhead = (_RESPONSE_OVERHEAD_BYTES + request_bytes
                + _ENTRY_OVERHEAD_BYTES * partition_count)
    if overhead * 2 > limit:
        raise BrookError(
            Reason.INVALID_REQUEST,
            f"{partition_count} partitions leave too little of receive_limit_bytes {limit} for"
            " batches: name fewer partitions per request or raise the limit",
            {"field": "partitions", "receive_limit_bytes": limit},
        )
    return Budget(limit, limit - overhead)


async def fit_fetch(
    reads: list[PartitionRead], fetch_offsets: Sequence[int], limits: Budget
) -> None:
    """Fits `reads` (in request order) to the budget. The data path packs batches up to
    max_bytes (at most the budget) but always returns the response's first batch: when
    that one alone exceeds the budget it is replaced by the pieces of it that fit (the
    partition continues inside the stored batch on the next fetch), and the batches
    after it are dropped. A record too large for any piece fails its partition."""
    first = next((index for index, read in enumerate(reads) if read.batches), None)
    if first is None or len(reads[first].batches[0]) <= limits.batch_bytes:
        return
    read = reads[first]
    try:
        pieces = await _split(read.batches[0], limits.batch_bytes, fetch_offsets[first])
    except RecordTooLarge as error:
        read.error = limits.too_large(error)
        read.batches = []
        return
    kept: list[bytes] = []
    total = 0
    for piece in pieces:
        if total + len(piece) > limits.batch_bytes:
            break
        kept.append(piece)
        total += len(piece)
    read.batches = kept
    for later in reads[first + 1 :]:
        later.batches = []


async def subscribe_messages(
    reads: list[PartitionRead], limits: Budget
) -> list[list[PartitionRead]]:
    """`reads` as messages of at most `budget` bytes of batches each, every batch sent
    (the stream's cursor is past them): oversized batches go as their pieces. One message
    when everything fits (the common case, no copy). Raises BATCH_TOO_LARGE when one
    record alone exceeds the budget."""
    budget = limits.batch_bytes
    if sum(len(b) for read in reads for b in read.batches) <= budget:
        return [reads]
    messages: list[list[PartitionRead]] = []
    current: dict[int, PartitionRead] = {}
    used = 0

    def flush() -> None:
        nonlocal current, used
        if current:
            messages.append(list(current.values()))
        current, used = {}, 0

    for position, read in enumerate(reads):
        if not read.batches:
            _entry(current, position, read)  # an error, or an empty partition
            continue
        for batch in read.batches:
            # A record too large for the limit ends the stream with BATCH_TOO_LARGE (its
            # cursor is past it): the client resubscribes with a larger limit.
            try:
                pieces = [batch] if len(batch) <= budget else await _split(batch, budget, 0)
            except RecordTooLarge as error:
                raise limits.too_large(error) from None
            for piece in pieces:
                if used + len(piece) > budget:
                    flush()
                _entry(current, position, read).batches.append(piece)
                used += len(piece)
    flush()
    return messages


def _entry(message: dict[int, PartitionRead], position: int, read: PartitionRead) -> PartitionRead:
    """This message's entry for `read`'s partition (same offsets and error, its own
    batches)."""
    entry = message.get(position)
    if entry is None:
        entry = message[position] = PartitionRead(
            read.key, read.high_watermark, read.log_start_offset, [], read.next_offset, read.error
        )
    return entry


async def _split(batch: bytes, budget: int, from_offset: int) -> list[bytes]:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, split_batch, batch, budget, from_offset)
