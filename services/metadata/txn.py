"""etcd transaction limits and the one chunker that keeps writes under them.

Every multi-key write of Brook (a topic's partitions, a consumer group's offsets) is split
into transactions that etcd accepts with its default limits. Both the store and the
group store chunk through `chunk_ops`, so the limits live here once.

Thread-safety: pure functions and constants.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

# etcd's --max-txn-ops default is 128: it counts the compare, success and failure lists
# separately, so each list may hold up to 128 operations (guards are compares and do not
# use the success list's room).
TXN_OPS_MAX = 128
# etcd's --max-request-bytes default is 1.5 MiB; stay well under it (keys + values).
TXN_BYTES_MAX = 1 << 20
# Rough per-op overhead in a TxnRequest beyond key and value bytes.
OP_OVERHEAD_BYTES = 16


def sized_op(op: Any, key: bytes, value: bytes = b"") -> tuple[Any, int]:
    """(op, its approximate size in a TxnRequest): what `chunk_ops` packs."""
    return op, len(key) + len(value) + OP_OVERHEAD_BYTES


def chunk_ops(
    sized_ops: Iterable[tuple[Any, int]],
    *,
    ops_max: int = TXN_OPS_MAX,
    bytes_max: int = TXN_BYTES_MAX,
) -> list[tuple[list[Any], int]]:
    """Packs ops, in order, into transactions of at most `ops_max` operations and
    `bytes_max` bytes: (ops, bytes) per transaction.

    Order is kept, so an op given last (say the topic key that makes a topic visible)
    lands in the final transaction. A single op larger than `bytes_max` gets a transaction
    of its own (etcd then decides; callers bound record sizes before).
    """
    chunks: list[tuple[list[Any], int]] = []
    ops: list[Any] = []
    size = 0
    for op, op_bytes in sized_ops:
        if ops and (len(ops) >= ops_max or size + op_bytes > bytes_max):
            chunks.append((ops, size))
            ops, size = [], 0
        ops.append(op)
        size += op_bytes
    if ops:
        chunks.append((ops, size))
    return chunks


def ops_of(chunks: Sequence[tuple[list[Any], int]]) -> list[list[Any]]:
    """Just the op lists of `chunk_ops`' answer."""
    return [ops for ops, _ in chunks]
