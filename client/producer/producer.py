"""The asyncio producer: records in, batches out, one Produce per node carrying many.

Flow: `send()` picks a partition (murmur2 of the key, the sticky partition for keyless
records, or the caller's), reserves buffer memory (waiting, bounded, when it is full:
back-pressure), and appends to the partition's open batch in the `RecordAccumulator`. A
sender task, owned by the producer, wakes when batches open or fill, drains ready
batches per leader node into one ProduceRequest (many partitions, many batches each),
keeps up to `max_in_flight_per_node` requests in flight per node, and completes each
batch's futures and batch listeners from the per-partition answers.

Retries and ordering. A partition error marked `retriable` puts the partition's batches
back at the head of its queue after an exponential back-off, refreshing metadata first
when the error says `refresh_metadata` (NOT_LEADER, FENCED_LEADER_EPOCH, a transport
failure...). A batch is retried at most `retries` times and never past its delivery
deadline (`delivery_timeout_ms` from its first append); then, like any non-retriable
error, its futures fail with the BrookError. With retries enabled the producer keeps at
most one request in flight *per partition* (Kafka's max.in.flight=1 guarantee): a retried
batch can never land behind a later one, so per-partition order survives retries, while
different partitions still pipeline up to `max_in_flight_per_node` requests per node.
With `retries=0` nothing is retried, so a partition may have several requests in flight.
(Idempotent production, which would allow both, is reserved in the protocol.)
While a partition waits on its request, the sender encodes the batches that close
meanwhile, so the next request leaves as soon as the answer arrives and the node is not
left idle while the client encodes.

Fast path. `append_nowait()` creates no future: outcomes reach batch listeners
(`add_batch_listener`) once per batch with the records' timestamps, which is how
`brook perf produce` measures latency at a few microseconds per record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc

from brook import codec
from brook.client import defaults
from brook.client.metadata import (
    ChannelPool,
    ClusterMetadata,
    TopicInfo,
    retriable_if_node_lags,
)
from brook.client.metrics import ClientMetrics
from brook.client.producer.accumulator import (
    BufferPool,
    PartitionQueue,
    ProducerBatch,
    RecordAccumulator,
)
from brook.client.records import BatchResult, Header, RecordMetadata
from brook.clock import SYSTEM_CLOCK, Clock
from brook.errors import BrookError, from_partition_error, from_rpc_error, partitioned
from brook.partitioner import StickyPartitioner, partition_for_key
from brook.transport import ChannelSecurity, client_security
from brook.v1 import storage_pb2

log = logging.getLogger("brook.client.producer")

_RECORD_OVERHEAD_BYTES = defaults.RECORD_OVERHEAD_BYTES
_time_ns = time.time_ns

ACKS: dict[str, int] = {
    "all": storage_pb2.ACKS_ALL,
    "-1": storage_pb2.ACKS_ALL,
    "1": storage_pb2.ACKS_LEADER,
    "0": storage_pb2.ACKS_NONE,
}

BatchListener = Callable[[BatchResult], None]

# The full method name the generated StorageServiceStub uses for Produce.
PRODUCE_METHOD = "/brook.v1.StorageService/Produce"


class WouldBlock(Exception):
    """A *_nowait call would have to wait: buffer memory is full or the topic's metadata is
    not loaded yet. Await `send()` / `append()` (or `wait_for_room()`) instead."""


@dataclass
class ProducerStats:
    """Counters for logs and perf output."""

    records_sent: int = 0
    batches_sent: int = 0
    requests_sent: int = 0
    retries: int = 0
    batches_failed: int = 0


class Producer:
    """Produces records to Brook topics. Use `async with Producer(...) as producer:`.

    Not thread-safe: call it from the event loop it runs on (see brook.client.sync for
    a blocking facade).
    """

    def __init__(
        self,
        bootstrap: str | Sequence[str],
        *,
        acks: str | int = "all",
        linger_ms: float = defaults.LINGER_MS,
        batch_bytes: int = defaults.BATCH_BYTES,
        buffer_memory: int = defaults.BUFFER_MEMORY_BYTES,
        max_in_flight_per_node: int = defaults.IN_FLIGHT_PER_NODE_MAX,
        retries: int = defaults.RETRIES,
        delivery_timeout_ms: int = defaults.DELIVERY_TIMEOUT_MS,
        retry_backoff_ms: int = defaults.RETRY_BACKOFF_MS,
        retry_backoff_max_ms: int = defaults.RETRY_BACKOFF_MS_MAX,
        compression: str | None = None,
        request_timeout_ms: int = defaults.REQUEST_TIMEOUT_MS,
        max_request_bytes: int = defaults.REQUEST_BYTES_MAX,
        max_block_ms: int = defaults.BLOCK_MS_MAX,
        client_id: str = "brook-producer",
        partitioner: StickyPartitioner | None = None,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        token: str | None = None,
        security: ChannelSecurity | None = None,
        metrics: ClientMetrics | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        acks_key = str(acks).lower()
        if acks_key not in ACKS:
            raise ValueError(f"acks must be one of 'all', '1', '0' (got {acks!r})")
        if batch_bytes <= 0 or buffer_memory < batch_bytes:
            raise ValueError("batch_bytes must be positive and at most buffer_memory")
        if max_in_flight_per_node < 1 or retries < 0:
            raise ValueError("max_in_flight_per_node must be >= 1 and retries >= 0")
        self.acks = ACKS[acks_key]
        self.compression = codec.codec_from_name(compression)
        self.retries = retries
        self.max_in_flight_per_node = max_in_flight_per_node
        self.request_timeout_ms = request_timeout_ms
        self.client_id = client_id
        self._retry_backoff_s = retry_backoff_ms / 1000
        self._retry_backoff_max_s = retry_backoff_max_ms / 1000
        self._max_block_s = max_block_ms / 1000
        self._max_record_bytes = min(max_request_bytes, buffer_memory)
        self._clock = clock
        # Bound once: as cheap to call as time.monotonic, on paths that read it per record.
        self._monotonic_s = clock.monotonic_s
        self._channels = ChannelPool(
            security=client_security(
                tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key, token=token, security=security
            )
        )
        self._metadata = ClusterMetadata(
            bootstrap, self._channels, request_timeout_ms=request_timeout_ms, clock=clock
        )
        self._metadata.add_listener(self._wake)
        self._partitioner = partitioner or StickyPartitioner()
        self._pool = BufferPool(buffer_memory)
        self._accumulator = RecordAccumulator(
            batch_bytes=batch_bytes,
            linger_ms=linger_ms,
            max_request_bytes=max_request_bytes,
            delivery_timeout_ms=delivery_timeout_ms,
            # One in flight per partition keeps order across retries (see module doc).
            max_in_flight_per_partition=1 if retries > 0 else max_in_flight_per_node,
            clock=self._monotonic_s,
            on_new_batch=self._wake,
        )
        self._listeners: list[BatchListener] = []
        self._batch_bytes = batch_bytes
        self._sticky_batches: dict[str, ProducerBatch] = {}
        self._node_in_flight: dict[int, int] = {}
        self._requests: set[asyncio.Task[None]] = set()
        self._produce_calls: dict[str, grpc.aio.UnaryUnaryMultiCallable] = {}
        self._sender: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._closing = False
        self._closed = False
        self.stats = ProducerStats()
        # Opt-in Prometheus metrics (brook.client.metrics): per batch and request only.
        self._metrics = metrics.producer(self, client_id) if metrics is not None else None

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Producer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Loads cluster metadata (checking the bootstrap answers) and starts the sender."""
        await self._metadata.refresh()
        self._ensure_sender()

    def _ensure_sender(self) -> None:
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(
                self._run_sender(), name="brook-producer-sender"
            )

    async def close(self, timeout_s: float | None = None) -> None:
        """Sends what is buffered (bounded by each batch's delivery timeout, or `timeout_s`),
        then stops the sender and closes connections. Unsent records fail."""
        if self._closed:
            return
        self._closing = True
        self._accumulator.closing = True
        self._wake()
        try:
            pending = list(self._accumulator.incomplete)
            if pending and self._sender is not None:
                await asyncio.wait(self._accumulator.wait_batches(pending), timeout=timeout_s)
        finally:
            self._closed = True
            if self._sender is not None:
                self._sender.cancel()
                await asyncio.gather(self._sender, return_exceptions=True)
            for task in list(self._requests):
                task.cancel()
            await asyncio.gather(*self._requests, return_exceptions=True)
            closed = BrookError("UNAVAILABLE", "the producer was closed before delivery")
            for queue, batch in self._accumulator.all_queued():
                del queue
                self._finish(batch, closed, -1)
            for batch in list(self._accumulator.incomplete):
                self._finish(batch, closed, -1)
            await self._metadata.close()
            await self._channels.close()

    # -- metadata ----------------------------------------------------------------------------

    @property
    def metadata(self) -> ClusterMetadata:
        return self._metadata

    def metrics_buffer(self) -> tuple[str, int, int]:
        """(client_id, buffer bytes in use, buffer limit), read by brook.client.metrics."""
        return self.client_id, self._pool.used_bytes, self._pool.limit_bytes

    async def partitions_for(self, topic: str) -> list[int]:
        """The topic's partition indexes (loading its metadata; TOPIC_NOT_FOUND if none)."""
        info = await self._topic(topic)
        return list(range(info.partition_count))

    async def _topic(self, topic: str) -> TopicInfo:
        info = self._metadata.topics.get(topic)
        if info is None:
            info = await self._metadata.wait_for_topic(topic)
        return info

    # -- sending -----------------------------------------------------------------------------

    def add_batch_listener(self, listener: BatchListener) -> None:
        """Calls `listener(BatchResult)` on the loop when each batch is acknowledged or fails."""
        self._listeners.append(listener)

    async def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Sequence[Header] | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        """Buffers a record; waits (up to max_block_ms) for buffer space and topic metadata.

        Returns a future of the record's RecordMetadata, failing with a BrookError when the
        record cannot be delivered.
        """
        future: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        await self._send(topic, value, key, headers, partition, timestamp_ms, future)
        return future

    async def append(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Sequence[Header] | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> None:
        """Like send() without a per-record future; outcomes reach batch listeners."""
        await self._send(topic, value, key, headers, partition, timestamp_ms, None)

    def send_nowait(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Sequence[Header] | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        """Like send(), but raises WouldBlock instead of waiting."""
        future: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        self._append_nowait(topic, value, key, headers, partition, timestamp_ms, future)
        return future

    def append_nowait(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Sequence[Header] | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> None:
        """The fastest path: no future, no waiting (raises WouldBlock).

        A keyless record for the topic's sticky partition whose batch has room takes a
        shortcut of a few list appends; anything else goes the general way.
        """
        if key is None and headers is None and partition is None and timestamp_ms is None:
            batch = self._sticky_batches.get(topic)
            if batch is not None and not batch.closed and type(value) is bytes:
                size = batch.size_bytes + len(value) + _RECORD_OVERHEAD_BYTES
                # Within the batch's reserved memory (never more than batch_bytes).
                if size <= batch.reserved_bytes:
                    batch.size_bytes = size
                    batch.values.append(value)
                    batch.timestamps.append(_time_ns() // 1_000_000)
                    if batch.keys is not None:
                        batch.keys.append(None)
                    return
        self._append_nowait(topic, value, key, headers, partition, timestamp_ms, None)

    async def wait_for_room(self, topic: str, size: int = 0) -> None:
        """Waits until the topic's metadata is loaded and a record of `size` value bytes
        could be buffered (bounded by max_block_ms); for callers of the *_nowait methods."""
        await self._topic(topic)
        granted = self._accumulator.reserve_bytes_for(size + _RECORD_OVERHEAD_BYTES)
        await self._reserve(granted)
        self._pool.release(granted)

    async def _send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Sequence[Header] | None,
        partition: int | None,
        timestamp_ms: int | None,
        future: asyncio.Future[RecordMetadata] | None,
    ) -> None:
        self._check_open()
        info = self._metadata.topics.get(topic) or await self._topic(topic)
        value, key, header_list, size = self._prepare(value, key, headers)
        if self._append(
            info, topic, value, key, header_list, partition, timestamp_ms, size, future
        ):
            return
        # The pool is full: wait (bounded) for room, then append with what was granted.
        granted = self._accumulator.reserve_bytes_for(size)
        await self._reserve(granted)
        try:
            self._check_open()
            appended = self._append(
                info,
                topic,
                value,
                key,
                header_list,
                partition,
                timestamp_ms,
                size,
                future,
                granted,
            )
        except BaseException:
            self._pool.release(granted)
            raise
        assert appended, "an append with a grant of at least the record's size cannot fail"

    def _append_nowait(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Sequence[Header] | None,
        partition: int | None,
        timestamp_ms: int | None,
        future: asyncio.Future[RecordMetadata] | None,
    ) -> None:
        if self._closing:
            self._check_open()
        info = self._metadata.topics.get(topic)
        if info is None:
            raise WouldBlock(f"metadata for topic {topic!r} is not loaded yet")
        if type(value) is bytes and key is None and headers is None:
            size = len(value) + _RECORD_OVERHEAD_BYTES
            header_list = None
            if size > self._max_record_bytes:
                self._prepare(value, key, headers)  # raises the clear error
        else:
            value, key, header_list, size = self._prepare(value, key, headers)
        if not self._append(
            info, topic, value, key, header_list, partition, timestamp_ms, size, future
        ):
            raise WouldBlock("buffer memory is full")

    def _prepare(
        self, value: bytes, key: bytes | None, headers: Sequence[Header] | None
    ) -> tuple[bytes, bytes | None, list[Header] | None, int]:
        """Normalizes a record's parts to bytes and estimates its buffered size."""
        if type(value) is not bytes:
            if not isinstance(value, bytes | bytearray | memoryview):
                raise TypeError(f"value must be bytes, not {type(value).__name__}")
            value = bytes(value)
        size = len(value) + defaults.RECORD_OVERHEAD_BYTES
        if key is not None:
            if type(key) is not bytes:
                if not isinstance(key, bytes | bytearray | memoryview):
                    raise TypeError(f"key must be bytes or None, not {type(key).__name__}")
                key = bytes(key)
            size += len(key)
        header_list: list[Header] | None = None
        if headers:
            header_list = []
            for name, header_value in headers:
                if not isinstance(name, str) or not isinstance(header_value, bytes | bytearray):
                    raise TypeError("headers must be (str, bytes) pairs")
                header_list.append((name, bytes(header_value)))
                size += len(name) + len(header_value) + 4
        if size > self._max_record_bytes:
            raise BrookError(
                "BATCH_TOO_LARGE",
                f"a record of {size} bytes is larger than the producer's limit of"
                f" {self._max_record_bytes} (max_request_bytes / buffer_memory)",
            )
        return value, key, header_list, size

    async def _reserve(self, size: int) -> None:
        try:
            await self._pool.reserve(size, self._max_block_s)
        except TimeoutError:
            raise BrookError(
                "REQUEST_TIMED_OUT",
                f"no buffer space for {self._max_block_s:.0f}s (buffer_memory is full:"
                " the cluster is slower than the producer)",
            ) from None

    def _append(
        self,
        info: TopicInfo,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: list[Header] | None,
        partition: int | None,
        timestamp_ms: int | None,
        size: int,
        future: asyncio.Future[RecordMetadata] | None,
        granted_bytes: int = 0,
    ) -> bool:
        """Appends to the chosen partition; False when buffer memory is full (no change)."""
        accumulator = self._accumulator
        count = len(info.partitions)
        sticky = False
        if partition is None:
            if key is not None:
                partition = partition_for_key(key, count)
                queue = accumulator.queue(topic, partition)
            else:
                partition = self._partitioner.partition(topic, count, info.available)
                queue = accumulator.queue(topic, partition)
                if accumulator.would_open_batch(queue, size):
                    # KIP-480: a new batch means the sticky partition's last one is done.
                    partition = self._partitioner.on_new_batch(
                        topic, count, partition, info.available
                    )
                    queue = accumulator.queue(topic, partition)
                sticky = True
        elif 0 <= partition < count:
            queue = accumulator.queue(topic, partition)
        else:
            raise BrookError(
                "PARTITION_NOT_FOUND",
                f"topic {topic!r} has {count} partitions; there is no partition {partition}",
                {"topic": topic, "partition": partition},
            )
        if timestamp_ms is None:
            timestamp_ms = _time_ns() // 1_000_000
        batch = accumulator.append(
            queue, value, key, headers, timestamp_ms, size, future, self._pool, granted_bytes
        )
        if batch is None:
            return False
        if sticky:
            # The shortcut of append_nowait() appends here while the batch stays open.
            self._sticky_batches[topic] = batch
        if self._sender is None:
            self._ensure_sender()
        return True

    def _check_open(self) -> None:
        if self._closing:
            raise BrookError("INVALID_REQUEST", "the producer is closed")

    async def flush(self, timeout_s: float | None = None) -> None:
        """Sends every buffered record now and waits until each is acknowledged or failed.

        Records that fail still fail through their futures / batch listeners; flush itself
        raises only TimeoutError when `timeout_s` passes first.
        """
        batches = list(self._accumulator.incomplete)
        if not batches:
            return
        self._ensure_sender()
        self._accumulator.flushing += 1
        self._wake()
        try:
            waiters = self._accumulator.wait_batches(batches)
            await asyncio.wait_for(asyncio.gather(*waiters), timeout_s)
        finally:
            self._accumulator.flushing -= 1

    # -- the sender ------------------------------------------------------------------------

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    def _leader_id(self, topic: str, partition: int) -> int | None:
        leader = self._metadata.leader(topic, partition)
        return None if leader is None else leader[0].node_id

    async def _run_sender(self) -> None:
        loop = asyncio.get_running_loop()
        accumulator = self._accumulator
        while True:
            now = self._monotonic_s()
            for _queue, batch in accumulator.expired(now):
                self._finish(batch, self._timeout_error(batch), -1)
            by_node, next_s, unknown_leader = accumulator.ready(now, self._leader_id)
            if unknown_leader:
                self._metadata.request_refresh()
                next_s = min(next_s, now + self._retry_backoff_s)
            elif self._metadata.stale:
                self._metadata.request_refresh()
            sent = False
            for node_id, queues in by_node.items():
                if self._node_in_flight.get(node_id, 0) >= self.max_in_flight_per_node:
                    continue
                drained = accumulator.drain(queues, now, self.compression)
                if not drained:
                    continue
                sent = True
                self._node_in_flight[node_id] = self._node_in_flight.get(node_id, 0) + 1
                task = loop.create_task(self._send_request(node_id, drained))
                self._requests.add(task)
                task.add_done_callback(self._requests.discard)
            if sent:
                await asyncio.sleep(0)  # let responses and appends run, then look again
                continue
            accumulator.encode_closed(self.compression)
            wake_at = min(next_s, accumulator.next_deadline())
            self._wakeup = loop.create_future()
            handle = None
            if wake_at != float("inf"):
                handle = loop.call_later(max(0.0, wake_at - self._monotonic_s()), self._wake)
            try:
                await self._wakeup
            finally:
                self._wakeup = None
                if handle is not None:
                    handle.cancel()

    def _produce_call(self, address: str) -> grpc.aio.UnaryUnaryMultiCallable:
        """StorageService.Produce taking an already serialized ProduceRequest (bytes)."""
        call = self._produce_calls.get(address)
        if call is None:
            call = self._produce_calls[address] = self._channels.get(address).unary_unary(
                PRODUCE_METHOD,
                request_serializer=None,  # the request is bytes from encode_produce_request
                response_deserializer=storage_pb2.ProduceResponse.FromString,
            )
        return call

    async def _send_request(
        self, node_id: int, drained: list[tuple[PartitionQueue, list[ProducerBatch]]]
    ) -> None:
        try:
            node = self._metadata.nodes.get(node_id)
            if node is None:
                error = BrookError("LEADER_NOT_AVAILABLE", f"node {node_id} is not known")
                for queue, batches in drained:
                    self._retry_or_fail(queue, batches, error)
                return
            partitions: list[tuple[str, int, int, list[codec.WireBatch]]] = []
            for queue, batches in drained:
                leader = self._metadata.leader(queue.topic, queue.partition)
                epoch = leader[1] if leader is not None and leader[0].node_id == node_id else -1
                partitions.append(
                    (
                        queue.topic,
                        queue.partition,
                        epoch,
                        [batch.encode(self.compression) for batch in batches],
                    )
                )
            # Serialized by hand (brook.codec): one copy of the records bytes
            # instead of protobuf's copy per nesting level plus its serialization.
            request = codec.encode_produce_request(
                self.acks, self.request_timeout_ms, partitions, self.client_id
            )
            self.stats.requests_sent += 1
            started = time.perf_counter()
            try:
                # The server bounds replication by timeout_ms; the deadline adds a margin
                # so its REQUEST_TIMED_OUT answer arrives before our own deadline fires.
                response = await partitioned(
                    self._produce_call(node.address)(
                        request, timeout=self.request_timeout_ms / 1000 + 5
                    ),
                    storage_pb2.ProduceResponse,
                )
            except grpc.aio.AioRpcError as rpc_error:
                error = from_rpc_error(rpc_error)
                if self._metrics is not None:
                    self._metrics.produce.answered(started, str(error.reason))
                if error.code is grpc.StatusCode.UNAVAILABLE:
                    error.refresh_metadata = True
                for queue, batches in drained:
                    self._retry_or_fail(queue, batches, error)
                return
            if self._metrics is not None:
                self._metrics.produce.answered(started)
            answers = {(p.topic, p.partition): p for p in response.partitions}
            for queue, batches in drained:
                answer = answers.get((queue.topic, queue.partition))
                if answer is None:
                    self._retry_or_fail(
                        queue,
                        batches,
                        BrookError("INTERNAL", "the node did not answer for this partition"),
                    )
                    continue
                partition_error = from_partition_error(answer.error)
                if partition_error is not None:
                    known = queue.topic in self._metadata.topics
                    self._retry_or_fail(
                        queue, batches, retriable_if_node_lags(partition_error, known)
                    )
                    continue
                base_offset = answer.base_offset if self.acks != storage_pb2.ACKS_NONE else -1
                for batch in batches:
                    # _finish releases the batch's records; take the count first.
                    record_count = batch.record_count
                    self._finish(batch, None, base_offset)
                    if base_offset >= 0:
                        base_offset += record_count
        finally:
            for queue, _batches in drained:
                queue.in_flight -= 1
            self._node_in_flight[node_id] -= 1
            self._wake()

    def _retry_or_fail(
        self, queue: PartitionQueue, batches: list[ProducerBatch], error: BrookError
    ) -> None:
        now = self._monotonic_s()
        if error.refresh_metadata:
            self._metadata.request_refresh()
        if error.retriable and not self._closed:
            keep: list[ProducerBatch] = []
            for batch in batches:
                if batch.attempts <= self.retries and now < batch.deadline_s:
                    keep.append(batch)
                else:
                    self._finish(
                        batch,
                        error
                        if batch.attempts > self.retries
                        else self._timeout_error(batch, error),
                        -1,
                    )
            if keep:
                attempts = keep[0].attempts
                backoff = min(
                    self._retry_backoff_s * (2 ** max(0, attempts - 1)), self._retry_backoff_max_s
                )
                self.stats.retries += 1
                if self._metrics is not None:
                    self._metrics.retried(len(keep))
                log.debug(
                    "retrying %d batches of %s-%d in %.0f ms after %s",
                    len(keep),
                    queue.topic,
                    queue.partition,
                    backoff * 1000,
                    error,
                )
                self._accumulator.requeue(queue, keep, now + backoff)
            return
        for batch in batches:
            self._finish(batch, error, -1)

    @staticmethod
    def _timeout_error(batch: ProducerBatch, cause: BrookError | None = None) -> BrookError:
        suffix = f" (last error: {cause})" if cause is not None else ""
        return BrookError(
            "REQUEST_TIMED_OUT",
            f"{batch.record_count} records for {batch.topic}-{batch.partition} expired after"
            f" delivery_timeout_ms without an acknowledgement{suffix}",
            {"topic": batch.topic, "partition": batch.partition},
        )

    def _finish(self, batch: ProducerBatch, error: BrookError | None, base_offset: int) -> None:
        """Completes a batch for good: futures, listeners, buffer memory, flush waiters."""
        if batch not in self._accumulator.incomplete:
            return
        topic, partition = batch.topic, batch.partition
        if batch.futures:
            timestamps = batch.timestamps
            for index, future in batch.futures:
                if future.done():
                    continue
                if error is not None:
                    future.set_exception(error)
                else:
                    offset = base_offset + index if base_offset >= 0 else -1
                    future.set_result(RecordMetadata(topic, partition, offset, timestamps[index]))
        if error is None:
            self.stats.records_sent += batch.record_count
            self.stats.batches_sent += 1
        else:
            self.stats.batches_failed += 1
            log.debug("batch for %s-%d failed: %s", topic, partition, error)
        if self._metrics is not None:
            self._metrics.batch_done(topic, batch.record_count, batch.size_bytes, error is None)
        if self._listeners:
            result = BatchResult(
                topic,
                partition,
                base_offset,
                batch.record_count,
                batch.timestamps,
                batch.value_bytes(),
                error,
            )
            for listener in self._listeners:
                try:
                    listener(result)
                except Exception:  # a listener's bug must not stop delivery of the rest
                    log.exception("batch listener failed")
        self._pool.release(batch.reserved_bytes)
        batch.reserved_bytes = 0
        # Drop the records: the batch object may live on in a caller's flush list.
        batch.values = []
        batch.encoded = None
        self._accumulator.complete(batch)
