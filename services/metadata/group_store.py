"""GroupStore: the group manager's etcd persistence (group records and committed offsets).

Keys (spelled by `keys.py`):

    /brook/<cluster>/groups/<group_id>                 group record JSON (epochs, assignor,
                                                       members, target assignment)
    /brook/<cluster>/offsets/<group_id>/<topic>/<p>    committed offset JSON

Writes are coalesced. Callers enqueue a group record and/or offsets and get a future
that resolves once those bytes are in etcd. A single flusher task lingers
`flush_interval_ms` after the first pending write (or less, when the batch fills), then
writes each group's pending state: the latest record and the latest offset per
partition. At most one transaction per group per flush: small groups share one, a large
group is chunked (`txn.chunk_ops`), so that every transaction stays under `txn_ops_max`
operations and `txn_bytes_max` bytes (etcd's limits, in `txn.py`). Flushes run one
after another, so a later write of a key never lands before an earlier one.

Fencing: after winning the "groups" role, `set_fence(role key, create revision)` makes
every transaction conditional on the role key still being the one this process created;
a failed guard fails the waiting writes with NOT_COORDINATOR and calls `on_fenced`, so a
manager that lost its lease while paused cannot overwrite its successor's writes.

Thread-safety: one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aetcd.rpc

from brook.errors import BrookError
from brook.services.metadata import keys as keyspace
from brook.services.metadata.keys import prefix_range_end
from brook.services.metadata.store import MetadataStore
from brook.services.metadata.txn import TXN_BYTES_MAX, TXN_OPS_MAX, chunk_ops, sized_op
from brook.structs import TopicPartition

log = logging.getLogger("brook.groups.store")

RecordSource = Mapping[str, Any] | Callable[[], Mapping[str, Any] | None]

# Linger after the first pending write so concurrent commits share one transaction.
FLUSH_INTERVAL_MS = 5
# A flush starts at once when this many operations are pending.
BATCH_OPS_FLUSH = 4 * TXN_OPS_MAX
# Back-pressure: writers wait (bounded) while this many operations are pending.
PENDING_OPS_MAX = 100_000
PENDING_WAIT_S = 5.0
# Transactions of different groups run concurrently up to this many at a time.
CONCURRENT_TXNS_MAX = 8
# Keys read per page when loading at election.
LOAD_PAGE_KEYS = 1000


@dataclass
class _Pending:
    """One group's writes waiting for the next flush."""

    delete_group: bool = False
    # The group record, or a function that builds it: called at flush time, so a group
    # changed by many calls between two flushes is serialized once.
    record: RecordSource | None = None
    # partition -> offset JSON, or None to delete the key (topic deleted)
    offsets: dict[TopicPartition, bytes | None] = field(default_factory=dict)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    def op_count(self) -> int:
        return (1 if self.record is not None else 0) + len(self.offsets)


@dataclass
class GroupStoreStats:
    """Counters for benchmarks and logs."""

    flushes: int = 0
    txns: int = 0
    ops: int = 0
    bytes: int = 0
    writes_coalesced: int = 0


class GroupStore:
    """Coalescing, fenced etcd persistence of consumer groups; one per group manager."""

    def __init__(
        self,
        store: MetadataStore,
        *,
        flush_interval_ms: int = FLUSH_INTERVAL_MS,
        txn_ops_max: int = TXN_OPS_MAX,
        txn_bytes_max: int = TXN_BYTES_MAX,
        pending_ops_max: int = PENDING_OPS_MAX,
        on_fenced: Callable[[], None] | None = None,
    ) -> None:
        if not 1 <= txn_ops_max <= TXN_OPS_MAX:
            raise ValueError(f"txn_ops_max must be 1..{TXN_OPS_MAX}")
        self.store = store
        self.keys = store.keys
        self.flush_interval_ms = flush_interval_ms
        self.txn_ops_max = txn_ops_max
        self.txn_bytes_max = txn_bytes_max
        self.pending_ops_max = pending_ops_max
        self.on_fenced = on_fenced
        self.stats = GroupStoreStats()
        self._fence: tuple[bytes, int] | None = None
        self._pending: dict[str, _Pending] = {}
        self._pending_ops = 0
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._task: asyncio.Task[None] | None = None
        self._closed = True

    # -- lifecycle ---------------------------------------------------------------------
    def set_fence(self, role_key: bytes, create_revision: int) -> None:
        """Makes every write conditional on `role_key` having this create revision."""
        self._fence = (role_key, create_revision)

    async def start(self) -> None:
        """Starts the flusher; writes are refused (NOT_COORDINATOR) before and after."""
        self._closed = False
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="group-store-flusher"
            )

    async def stop(self, *, flush: bool = True) -> None:
        """Stops the flusher. With flush, it first writes what is pending (bounded by
        twice the store's request timeout); without (leadership lost), pending writes
        fail with NOT_COORDINATOR at once."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            if flush:
                self._wake.set()
                self._full.set()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(task), self.store.request_timeout_s * 2)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._fail_all(BrookError("NOT_COORDINATOR", "the group manager stepped down"))

    # -- reads -------------------------------------------------------------------------
    async def load(
        self,
    ) -> tuple[list[dict[str, Any]], dict[str, dict[TopicPartition, bytes]]]:
        """Every group record and committed offset (as raw JSON), read at one revision."""
        records: list[dict[str, Any]] = []
        offsets: dict[str, dict[TopicPartition, bytes]] = {}
        revision = 0
        for prefix in (self.keys.groups_prefix, self.keys.all_offsets_prefix):
            kvs, revision = await self._scan(prefix, revision)
            for key, value in kvs:
                parsed = self.keys.parse(key)
                try:
                    if parsed is not None and parsed.kind == keyspace.KIND_GROUP:
                        records.append(json.loads(value))
                    elif parsed is not None and parsed.kind == keyspace.KIND_OFFSET:
                        group_id, topic, partition = parsed.parts
                        tp = TopicPartition(topic, int(partition))
                        offsets.setdefault(group_id, {})[tp] = value
                except (ValueError, TypeError) as error:
                    log.error("skipping unreadable key %r: %s", key, error)
        return records, offsets

    async def _scan(self, prefix: bytes, revision: int) -> tuple[list[tuple[bytes, bytes]], int]:
        """Every key-value under a prefix, paged, read at `revision` (0: the current one,
        returned so the next scan reads at the same revision)."""
        start = prefix
        end = prefix_range_end(prefix)
        kvs: list[tuple[bytes, bytes]] = []
        while True:
            request = aetcd.rpc.RangeRequest(
                key=start, range_end=end, limit=LOAD_PAGE_KEYS, revision=revision
            )
            response = await self.store.txn([], [aetcd.rpc.RequestOp(request_range=request)])
            if revision == 0:
                revision = int(response.header.revision)
            page = response.responses[0].response_range
            kvs.extend((bytes(kv.key), bytes(kv.value)) for kv in page.kvs)
            if not page.more or not page.kvs:
                return kvs, revision
            start = bytes(page.kvs[-1].key) + b"\0"

    # -- writes ------------------------------------------------------------------------
    def save_group(self, group_id: str, record: RecordSource) -> asyncio.Future[None]:
        """Enqueues the group's record (or a function returning it, called when the flush
        starts; None means nothing to write); the future resolves once it is in etcd."""
        pending = self._pending_for(group_id)
        if pending.record is not None:
            self.stats.writes_coalesced += 1
        else:
            self._pending_ops += 1
        pending.record = record
        return self._wait_for_flush(pending)

    async def commit_offsets(self, group_id: str, offsets: Mapping[TopicPartition, bytes]) -> None:
        """Stores offsets (JSON per partition); returns once they are in etcd."""
        if not offsets:
            return
        await self._wait_for_space(len(offsets))
        pending = self._pending_for(group_id)
        for tp, value in offsets.items():
            if tp in pending.offsets:
                self.stats.writes_coalesced += 1
            else:
                self._pending_ops += 1
            pending.offsets[tp] = value
        await self._wait_for_flush(pending)

    def delete_offsets(
        self, group_id: str, partitions: Iterable[TopicPartition]
    ) -> asyncio.Future[None]:
        """Enqueues deletion of some committed offsets (their topic was deleted)."""
        pending = self._pending_for(group_id)
        for tp in partitions:
            if tp not in pending.offsets:
                self._pending_ops += 1
            pending.offsets[tp] = None
        return self._wait_for_flush(pending)

    async def delete_group(self, group_id: str) -> None:
        """Deletes the group record and all its offsets; returns once etcd has done it.
        Writes enqueued earlier for the group are dropped; later ones land after it."""
        pending = self._pending_for(group_id)
        self._pending_ops -= pending.op_count()
        pending.record = None
        pending.offsets.clear()
        pending.delete_group = True
        await self._wait_for_flush(pending)

    def _pending_for(self, group_id: str) -> _Pending:
        if self._closed:
            raise BrookError("NOT_COORDINATOR", "the group store is not active")
        pending = self._pending.get(group_id)
        if pending is None:
            pending = self._pending[group_id] = _Pending()
        return pending

    def _wait_for_flush(self, pending: _Pending) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        pending.waiters.append(future)
        self._wake.set()
        if self._pending_ops >= BATCH_OPS_FLUSH:
            self._full.set()
        if self._pending_ops >= self.pending_ops_max:
            self._space.clear()
        return future

    async def _wait_for_space(self, ops: int) -> None:
        if self._pending_ops + ops <= self.pending_ops_max:
            return
        try:
            await asyncio.wait_for(self._space.wait(), PENDING_WAIT_S)
        except TimeoutError as error:
            raise BrookError(
                "TOO_MANY_REQUESTS", "too many offset commits waiting for etcd; retry later"
            ) from error

    # -- the flusher -------------------------------------------------------------------
    def _take(self) -> dict[str, _Pending]:
        batch, self._pending = self._pending, {}
        self._pending_ops = 0
        self._full.clear()
        self._space.set()
        return batch

    async def _run(self) -> None:
        while True:
            if self._closed and not self._pending:
                return  # stop(flush=True): everything pending has been written
            await self._wake.wait()
            self._wake.clear()
            if not self._full.is_set() and self.flush_interval_ms > 0:
                # Linger so concurrent writers share the transaction; a full batch cuts
                # the wait short.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.flush_interval_ms / 1000)
            batch = self._take()
            if batch:
                try:
                    await self._flush(batch)
                except asyncio.CancelledError:
                    _fail(batch, BrookError("NOT_COORDINATOR", "the group manager stepped down"))
                    raise

    async def _flush(self, batch: dict[str, _Pending]) -> None:
        """Writes one batch: group deletions first (each its own transaction, since etcd
        refuses a range delete and a put of a key inside it in one transaction), then
        every group's puts packed into as few transactions as the limits allow, at most
        `CONCURRENT_TXNS_MAX` at a time. A group's waiters succeed when every transaction
        holding its writes has; a failure fails the waiters of the groups it held."""
        self.stats.flushes += 1
        limit = asyncio.Semaphore(CONCURRENT_TXNS_MAX)
        failures: dict[str, BaseException] = {}

        async def run(ops: list[Any], size: int, group_ids: set[str]) -> None:
            async with limit:
                try:
                    await self._txn(ops, size)
                except Exception as error:
                    for group_id in group_ids:
                        failures.setdefault(group_id, error)

        deletions = [
            run(self._delete_group_ops(group_id), 64, {group_id})
            for group_id, pending in batch.items()
            if pending.delete_group
        ]
        if deletions:
            await asyncio.gather(*deletions)
        group_ops: list[tuple[str, list[tuple[Any, int]]]] = []
        for group_id, pending in batch.items():
            if group_id in failures:
                continue
            try:
                group_ops.append((group_id, self._group_ops(group_id, pending)))
            except BrookError as too_large:
                log.error("not writing group %s: %s", group_id, too_large)
                failures[group_id] = too_large
        chunks = self._pack(group_ops)
        await asyncio.gather(*(run(ops, size, ids) for ops, size, ids in chunks))
        for group_id, pending in batch.items():
            failure = failures.get(group_id)
            for waiter in pending.waiters:
                if waiter.done():
                    continue
                if failure is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(
                        failure
                        if isinstance(failure, BrookError)
                        else BrookError(
                            "COORDINATOR_NOT_AVAILABLE", f"etcd write failed: {failure}"
                        )
                    )
                    waiter.exception()  # retrieved: callers that went away do not warn

    def _delete_group_ops(self, group_id: str) -> list[Any]:
        prefix = self.keys.offsets_prefix(group_id)
        return [_delete(self.keys.group(group_id)), _delete(prefix, prefix_range_end(prefix))]

    def _group_ops(self, group_id: str, pending: _Pending) -> list[tuple[Any, int]]:
        """(op, size) of one group's puts and single-key deletes, record first."""
        ops: list[tuple[Any, int]] = []
        record = pending.record() if callable(pending.record) else pending.record
        if record is not None:
            key = self.keys.group(group_id)
            data = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
            if len(key) + len(data) > self.txn_bytes_max:
                raise BrookError(
                    "INTERNAL",
                    f"group {group_id!r} record is {len(data)} bytes, over the "
                    f"{self.txn_bytes_max}-byte transaction limit",
                )
            ops.append(sized_op(_put(key, data), key, data))
        for (topic, partition), value in sorted(pending.offsets.items()):
            key = self.keys.offset(group_id, topic, partition)
            if value is None:
                ops.append(sized_op(_delete(key), key))
            else:
                ops.append(sized_op(_put(key, value), key, value))
        return ops

    def _pack(
        self, groups: Iterable[tuple[str, list[tuple[Any, int]]]]
    ) -> list[tuple[list[Any], int, set[str]]]:
        """Fills transactions with the groups' ops in order, each under `txn_ops_max`
        operations and `txn_bytes_max` bytes: (ops, bytes, group ids) per transaction."""
        tagged = (
            ((group_id, op), op_bytes)
            for group_id, group_ops in groups
            for op, op_bytes in group_ops
        )
        chunks = chunk_ops(tagged, ops_max=self.txn_ops_max, bytes_max=self.txn_bytes_max)
        return [
            ([op for _, op in items], size, {group_id for group_id, _ in items})
            for items, size in chunks
        ]

    async def _txn(self, ops: list[Any], size: int) -> None:
        compare = []
        if self._fence is not None:
            key, revision = self._fence
            compare.append(
                aetcd.rpc.Compare(
                    key=key,
                    result=aetcd.rpc.Compare.EQUAL,
                    target=aetcd.rpc.Compare.CREATE,
                    create_revision=revision,
                )
            )
        response = await self.store.txn(compare, ops)
        self.stats.txns += 1
        self.stats.ops += len(ops)
        self.stats.bytes += size
        if not response.succeeded:
            log.warning("group store fenced: the groups role key is no longer ours")
            if self.on_fenced is not None:
                self.on_fenced()
            raise BrookError("NOT_COORDINATOR", "this process no longer holds the groups role")

    def _fail_all(self, error: BrookError) -> None:
        _fail(self._take(), error)


def _fail(batch: Mapping[str, _Pending], error: BrookError) -> None:
    for pending in batch.values():
        for waiter in pending.waiters:
            if not waiter.done():
                waiter.set_exception(error)
                waiter.exception()  # retrieved: callers that went away do not warn


def _put(key: bytes, value: bytes) -> Any:
    return aetcd.rpc.RequestOp(request_put=aetcd.rpc.PutRequest(key=key, value=value))


def _delete(key: bytes, range_end: bytes | None = None) -> Any:
    request = aetcd.rpc.DeleteRangeRequest(key=key)
    if range_end is not None:
        request.range_end = range_end
    return aetcd.rpc.RequestOp(request_delete_range=request)
