"""The producer's pure core: per-partition batches, readiness, draining, buffer memory.

Thread-safety: none; one event loop owns an accumulator. Time is injected (`clock`,
monotonic seconds), so tests drive linger and timeouts without sleeping.

Shape (Kafka's RecordAccumulator, simplified):
- one `PartitionQueue` per topic-partition: a deque of `ProducerBatch`; only the last
  batch is open for appends. A batch closes when the next record would push it past
  `batch_bytes` (a record larger than that gets a batch of its own).
- a queue's head batch is *ready* when it is closed, its linger has passed, a flush is
  in progress, or the producer is closing; and the queue is not muted (in-flight limit
  per partition) nor backing off after a retriable error.
- `drain` takes, for one node, the ready batches of every partition that node leads, up
  to `max_request_bytes` (always at least one batch), so one Produce carries many.
- `BufferPool` bounds the bytes held by records not yet acknowledged; appends reserve,
  completed batches release, and waiters are served first in, first out.

Per-record work happens in `ProducerBatch.append`, which is kept to a few list appends:
records are encoded in one pass per batch (brook.codec), when the batch is drained
or, if it closed while its partition waits on a request in flight, by `encode_closed`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable

from brook import codec
from brook.client.records import Header, RecordMetadata


class ProducerBatch:
    """Records appended to one partition, sent and acknowledged together."""

    __slots__ = (
        "attempts",
        "closed",
        "created_s",
        "deadline_s",
        "done",
        "encoded",
        "futures",
        "headers",
        "keys",
        "partition",
        "reserved_bytes",
        "size_bytes",
        "timestamps",
        "topic",
        "values",
    )

    def __init__(self, topic: str, partition: int, created_s: float, deadline_s: float) -> None:
        self.topic = topic
        self.partition = partition
        self.created_s = created_s
        self.deadline_s = deadline_s
        self.values: list[bytes] = []
        self.timestamps: list[int] = []
        # None while every record is keyless (the encoder's fast path); else one per record.
        self.keys: list[bytes | None] | None = None
        self.headers: dict[int, list[Header]] | None = None
        self.futures: list[tuple[int, asyncio.Future[RecordMetadata]]] | None = None
        self.size_bytes = 0
        # Buffer memory held for this batch, reserved in chunks ahead of its records so
        # most appends need no trip to the BufferPool (reserved_bytes >= size_bytes).
        self.reserved_bytes = 0
        self.closed = False
        self.attempts = 0
        self.encoded: codec.WireBatch | None = None
        self.done: asyncio.Future[None] | None = None

    @property
    def record_count(self) -> int:
        return len(self.values)

    def value_bytes(self) -> int:
        return sum(map(len, self.values))

    def append(
        self,
        value: bytes,
        key: bytes | None,
        headers: list[Header] | None,
        timestamp_ms: int,
        size: int,
        future: asyncio.Future[RecordMetadata] | None,
    ) -> None:
        index = len(self.values)
        self.values.append(value)
        self.timestamps.append(timestamp_ms)
        if key is not None or self.keys is not None:
            if self.keys is None:
                self.keys = [None] * index
            self.keys.append(key)
        if headers:
            if self.headers is None:
                self.headers = {}
            self.headers[index] = headers
        if future is not None:
            if self.futures is None:
                self.futures = []
            self.futures.append((index, future))
        self.size_bytes += size

    def encode(self, compression: int) -> codec.WireBatch:
        """The batch as serialized RecordBatch pieces, encoded once (retries resend the
        same bytes)."""
        if self.encoded is None:
            self.encoded = codec.encode_wire_batch(
                self.values, self.timestamps, self.keys, self.headers, compression
            )
        return self.encoded

    def wire_bytes(self) -> int:
        """Size on the wire, known exactly once encoded, estimated before."""
        return self.encoded.size if self.encoded is not None else self.size_bytes


class PartitionQueue:
    """The batches of one partition, oldest first; only the last may be open."""

    __slots__ = ("batches", "in_flight", "partition", "retry_at_s", "topic")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.batches: deque[ProducerBatch] = deque()
        self.in_flight = 0
        self.retry_at_s = 0.0

    def open_batch(self) -> ProducerBatch | None:
        if self.batches:
            last = self.batches[-1]
            if not last.closed:
                return last
        return None


class BufferPool:
    """Bounded bytes for records not yet acknowledged; waiters are served FIFO."""

    def __init__(self, limit_bytes: int) -> None:
        if limit_bytes <= 0:
            raise ValueError("buffer_memory must be positive")
        self.limit_bytes = limit_bytes
        self.used_bytes = 0
        self.waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    def try_reserve(self, size: int) -> bool:
        if self.waiters or self.used_bytes + size > self.limit_bytes:
            return False
        self.used_bytes += size
        return True

    async def reserve(self, size: int, timeout_s: float) -> None:
        """Waits (bounded) until `size` bytes fit; raises TimeoutError after `timeout_s`."""
        if size > self.limit_bytes:
            raise ValueError(f"a record of {size} bytes can never fit in buffer_memory")
        if self.try_reserve(size):
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (size, waiter)
        self.waiters.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout_s)
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release(size)  # granted just as we gave up: hand it back
            else:
                waiter.cancel()
                try:
                    self.waiters.remove(entry)
                except ValueError:
                    pass
                self._wake()
            raise

    def release(self, size: int) -> None:
        self.used_bytes -= size
        self._wake()

    def _wake(self) -> None:
        while self.waiters:
            size, waiter = self.waiters[0]
            if waiter.done():
                self.waiters.popleft()
                continue
            if self.used_bytes + size > self.limit_bytes:
                return
            self.waiters.popleft()
            self.used_bytes += size
            waiter.set_result(None)


class RecordAccumulator:
    """Batches per partition; decides what is ready and drains it per node."""

    def __init__(
        self,
        *,
        batch_bytes: int,
        linger_ms: float,
        max_request_bytes: int,
        delivery_timeout_ms: int,
        max_in_flight_per_partition: int,
        clock: Callable[[], float],
        reserve_chunk_bytes: int = 64 << 10,
        on_new_batch: Callable[[], None] = lambda: None,
    ) -> None:
        self.batch_bytes = batch_bytes
        self.reserve_chunk_bytes = reserve_chunk_bytes
        self.linger_s = linger_ms / 1000
        self.max_request_bytes = max_request_bytes
        self.delivery_timeout_s = delivery_timeout_ms / 1000
        self.max_in_flight_per_partition = max_in_flight_per_partition
        self.clock = clock
        # Called when a batch is opened or closes full: the sender may have work.
        self.wake = on_new_batch
        self.queues: dict[str, list[PartitionQueue]] = {}
        self.incomplete: set[ProducerBatch] = set()
        self.flushing = 0
        self.closing = False

    def queue(self, topic: str, partition: int) -> PartitionQueue:
        queues = self.queues.get(topic)
        if queues is None:
            queues = self.queues[topic] = []
        while len(queues) <= partition:
            queues.append(PartitionQueue(topic, len(queues)))
        return queues[partition]

    def append(
        self,
        queue: PartitionQueue,
        value: bytes,
        key: bytes | None,
        headers: list[Header] | None,
        timestamp_ms: int,
        size: int,
        future: asyncio.Future[RecordMetadata] | None,
        pool: BufferPool,
        granted_bytes: int = 0,
    ) -> ProducerBatch | None:
        """Appends to the partition's open batch, opening one when needed.

        Buffer memory comes from the batch's reservation, then from `granted_bytes` the
        caller already reserved (all of it is handed to the batch), then from `pool` in
        chunks of up to `reserve_chunk_bytes`. Returns None, changing nothing, when the
        pool has no room (the caller waits for room and tries again with a grant).
        """
        batch = queue.open_batch()
        if batch is not None and batch.values and batch.size_bytes + size > self.batch_bytes:
            batch.closed = True
            batch = None
            self.wake()
        used = batch.size_bytes if batch is not None else 0
        free = (batch.reserved_bytes - used if batch is not None else 0) + granted_bytes
        if free < size:
            chunk = max(size - free, min(self.reserve_chunk_bytes, self.batch_bytes - used - free))
            if not pool.try_reserve(chunk):
                return None
            free += chunk
        if batch is None:
            now = self.clock()
            batch = ProducerBatch(queue.topic, queue.partition, now, now + self.delivery_timeout_s)
            queue.batches.append(batch)
            self.incomplete.add(batch)
            self.wake()
        batch.reserved_bytes = used + free
        batch.append(value, key, headers, timestamp_ms, size, future)
        if batch.size_bytes >= self.batch_bytes:
            batch.closed = True
            self.wake()
        return batch

    def reserve_bytes_for(self, size: int) -> int:
        """What a caller should reserve before retrying an append of `size` bytes that
        found the pool full: enough for any batch it may land in."""
        return max(size, min(self.reserve_chunk_bytes, self.batch_bytes))

    def would_open_batch(self, queue: PartitionQueue, size: int) -> bool:
        """True when appending `size` bytes would start a new batch (sticky partitioning)."""
        batch = queue.open_batch()
        return batch is None or (batch.size_bytes + size > self.batch_bytes and bool(batch.values))

    # -- the sender's side ---------------------------------------------------------------

    def _head_ready(self, queue: PartitionQueue, now: float) -> tuple[bool, float]:
        """(ready, when it will be ready if not) for the queue's head batch."""
        head = queue.batches[0]
        if queue.in_flight >= self.max_in_flight_per_partition:
            return False, float("inf")  # woken by the response instead
        if queue.retry_at_s > now:
            return False, queue.retry_at_s
        if head.closed or head.attempts or self.flushing or self.closing:
            return True, now
        linger_end = head.created_s + self.linger_s
        if linger_end <= now:
            return True, now
        return False, linger_end

    def ready(
        self, now: float, leader_of: Callable[[str, int], int | None]
    ) -> tuple[dict[int, list[PartitionQueue]], float, bool]:
        """Ready queues by leader node, the next time something may become ready, and
        whether some ready partition has no known leader (the caller refreshes metadata).
        """
        by_node: dict[int, list[PartitionQueue]] = {}
        next_s = float("inf")
        unknown_leader = False
        for queues in self.queues.values():
            for queue in queues:
                if not queue.batches:
                    continue
                is_ready, when = self._head_ready(queue, now)
                if not is_ready:
                    next_s = min(next_s, when)
                    continue
                node = leader_of(queue.topic, queue.partition)
                if node is None:
                    unknown_leader = True
                    continue
                by_node.setdefault(node, []).append(queue)
        return by_node, next_s, unknown_leader

    def drain(
        self, queues: Iterable[PartitionQueue], now: float, compression: int
    ) -> list[tuple[PartitionQueue, list[ProducerBatch]]]:
        """Takes ready batches from `queues` (all led by one node) for one request.

        Every batch drained is closed and encoded; each queue drained counts one more
        request in flight. The request holds at most max_request_bytes, except that its
        first batch always goes.
        """
        taken: list[tuple[PartitionQueue, list[ProducerBatch]]] = []
        request_bytes = 0
        for queue in queues:
            batches: list[ProducerBatch] = []
            while queue.batches:
                head = queue.batches[0]
                if (
                    batches
                    and not head.closed
                    and not (self.flushing or self.closing or head.created_s + self.linger_s <= now)
                ):
                    break  # an open batch still lingering stays
                head.closed = True
                size = head.encode(compression).size
                if (batches or taken) and request_bytes + size > self.max_request_bytes:
                    break
                queue.batches.popleft()
                head.attempts += 1
                batches.append(head)
                request_bytes += size
            if batches:
                queue.in_flight += 1
                taken.append((queue, batches))
            if request_bytes >= self.max_request_bytes:
                break
        return taken

    def encode_closed(self, compression: int) -> int:
        """Encodes every closed batch not encoded yet; returns how many it encoded.

        The sender calls this while it waits on requests in flight: with one request in
        flight per partition, batches that fill meanwhile are then ready to go the moment
        the answer arrives, instead of being encoded while the node sits idle.
        """
        count = 0
        for queues in self.queues.values():
            for queue in queues:
                for batch in queue.batches:
                    if not batch.closed:
                        break  # only the last batch may be open
                    if batch.encoded is None:
                        batch.encode(compression)
                        count += 1
        return count

    def requeue(
        self, queue: PartitionQueue, batches: list[ProducerBatch], retry_at_s: float
    ) -> None:
        """Puts batches back at the head of their queue, in order, for a retry."""
        for batch in reversed(batches):
            queue.batches.appendleft(batch)
        queue.retry_at_s = retry_at_s

    def expired(self, now: float) -> list[tuple[PartitionQueue, ProducerBatch]]:
        """Queued (not in flight) batches past their delivery deadline, removed from queues."""
        out: list[tuple[PartitionQueue, ProducerBatch]] = []
        for queues in self.queues.values():
            for queue in queues:
                while queue.batches and queue.batches[0].deadline_s <= now:
                    out.append((queue, queue.batches.popleft()))
        return out

    def next_deadline(self) -> float:
        deadline = float("inf")
        for queues in self.queues.values():
            for queue in queues:
                if queue.batches:
                    deadline = min(deadline, queue.batches[0].deadline_s)
        return deadline

    def all_queued(self) -> list[tuple[PartitionQueue, ProducerBatch]]:
        """Every queued batch, removed from its queue (used when closing for good)."""
        out: list[tuple[PartitionQueue, ProducerBatch]] = []
        for queues in self.queues.values():
            for queue in queues:
                while queue.batches:
                    out.append((queue, queue.batches.popleft()))
        return out

    def complete(self, batch: ProducerBatch) -> None:
        self.incomplete.discard(batch)
        done = batch.done
        if done is not None and not done.done():
            done.set_result(None)

    def wait_batches(self, batches: Iterable[ProducerBatch]) -> list[asyncio.Future[None]]:
        """Futures done when each batch is acknowledged or failed for good."""
        loop = asyncio.get_running_loop()
        waiters: list[asyncio.Future[None]] = []
        for batch in batches:
            if batch.done is None:
                batch.done = loop.create_future()
            waiters.append(batch.done)
        return waiters
