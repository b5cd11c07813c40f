"""The asyncio consumer without groups: assign partitions, seek, poll.

Shape: each assigned partition has a `_PartitionState` (position handed to the user,
fetch position ahead of it, pause flag, pending offset reset, error). A fetcher task,
owned by the consumer, keeps at most one Fetch outstanding per leader node (long poll,
`fetch_max_wait_ms`) for the partitions that node leads, as long as fetched-but-unpolled
bytes stay under `prefetch_max_bytes`. Fetched batches wait in a buffer per partition and
are decoded only when `poll()` hands their records out, so `max_records` bounds the work
of one poll and the prefetch bound is in stored bytes.

Every state change bumps the partition's `generation`; a fetch answer for an older
generation (the user seeked meanwhile, or reassigned) is dropped, so a seek is exact.

Errors: NOT_LEADER, FENCED/UNKNOWN_LEADER_EPOCH, LEADER_NOT_AVAILABLE and transport
failures refresh metadata and retry the partition after a back-off. OFFSET_OUT_OF_RANGE
resets the position per `auto_offset_reset` ("earliest" / "latest"); with "none" it, like
any other non-retriable error, is raised by `poll()` until the partition is seeked.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias, cast

import grpc

from brook import codec
from brook.client import defaults
from brook.client.metadata import (
    NODE_MAY_LAG_REASONS,
    ChannelPool,
    ClusterMetadata,
    retriable_if_node_lags,
)
from brook.client.metrics import ClientMetrics
from brook.client.records import ConsumerRecord, TopicPartition
from brook.client.retry import Retry, RetryPolicy
from brook.clock import SYSTEM_CLOCK, Clock
from brook.errors import BrookError, Reason, from_partition_error, from_rpc_error, partitioned
from brook.transport import ChannelSecurity, client_security
from brook.v1 import records_pb2, storage_pb2, storage_pb2_grpc

log = logging.getLogger("brook.client.consumer")

RESET_POLICIES = ("earliest", "latest", "none")
_QUERIES = {
    "earliest": storage_pb2.OFFSET_QUERY_EARLIEST,
    "latest": storage_pb2.OFFSET_QUERY_LATEST,
}
# Per-batch protobuf framing added to len(records) when accounting buffered bytes.
_BATCH_OVERHEAD_BYTES = 64

TopicPartitionLike: TypeAlias = TopicPartition | tuple[str, int]


def _tp(value: TopicPartitionLike) -> TopicPartition:
    topic, partition = value
    return TopicPartition(topic, int(partition))


@dataclass
class _Buffered:
    """Batches of one fetch answer not yet handed out, decoded one batch at a time."""

    generation: int
    batches: deque[records_pb2.RecordBatch]
    nbytes: int


@dataclass
class _PartitionState:
    position: int | None = None
    fetch_position: int | None = None
    paused: bool = False
    generation: int = 0
    reset: str | None = None
    error: BrookError | None = None
    retry_at_s: float = 0.0
    backoff_s: float = 0.0
    high_watermark: int = -1
    log_start_offset: int = -1
    buffered: deque[_Buffered] = field(default_factory=deque)
    # Records decoded from the head batch and not yet handed out.
    pending: deque[ConsumerRecord] = field(default_factory=deque)


class Consumer:
    """Reads assigned partitions. Use `async with Consumer(...) as consumer:`.

    Not thread-safe (see brook.client.sync for a blocking facade). `assign`, `seek`,
    `pause`, `resume`, `position` and `poll` are the stable surface that
    brook.client.groups.group_consumer builds on.
    """

    def __init__(
        self,
        bootstrap: str | Sequence[str],
        *,
        client_id: str = "brook-consumer",
        auto_offset_reset: str = "latest",
        fetch_max_wait_ms: int = defaults.FETCH_WAIT_MS_MAX,
        fetch_min_bytes: int = defaults.FETCH_BYTES_MIN,
        fetch_max_bytes: int = defaults.FETCH_BYTES_MAX,
        max_partition_fetch_bytes: int = defaults.PARTITION_FETCH_BYTES_MAX,
        prefetch_max_bytes: int = defaults.PREFETCH_BYTES_MAX,
        max_poll_records: int = defaults.POLL_RECORDS_MAX,
        request_timeout_ms: int = defaults.REQUEST_TIMEOUT_MS,
        retry_backoff_ms: int = defaults.RETRY_BACKOFF_MS,
        retry_backoff_max_ms: int = defaults.RETRY_BACKOFF_MS_MAX,
        check_crcs: bool = True,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        token: str | None = None,
        security: ChannelSecurity | None = None,
        metrics: ClientMetrics | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if auto_offset_reset not in RESET_POLICIES:
            raise ValueError(
                f"auto_offset_reset must be one of {', '.join(RESET_POLICIES)}"
                f" (got {auto_offset_reset!r})"
            )
        self.client_id = client_id
        self.auto_offset_reset = auto_offset_reset
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.fetch_min_bytes = fetch_min_bytes
        self.fetch_max_bytes = fetch_max_bytes
        self.max_partition_fetch_bytes = max_partition_fetch_bytes
        self.prefetch_max_bytes = prefetch_max_bytes
        self.max_poll_records = max_poll_records
        self.check_crcs = check_crcs
        self._request_timeout_s = request_timeout_ms / 1000
        self._retry_backoff_s = retry_backoff_ms / 1000
        self._retry_backoff_max_s = retry_backoff_max_ms / 1000
        self._list_offsets_policy = RetryPolicy(
            attempts_max=defaults.LIST_OFFSETS_ATTEMPTS_MAX,
            backoff_ms_min=retry_backoff_ms,
            backoff_ms_max=max(retry_backoff_ms, retry_backoff_max_ms),
        )
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
        self._metadata.add_listener(self._wake_fetcher)
        self._states: dict[TopicPartition, _PartitionState] = {}
        self._buffered_bytes = 0
        self._fetches: dict[int, asyncio.Task[None]] = {}
        self._resets: set[asyncio.Task[None]] = set()
        self._fetcher: asyncio.Task[None] | None = None
        self._fetcher_wakeup: asyncio.Future[None] | None = None
        self._data_ready: asyncio.Event | None = None
        self._stubs: dict[str, storage_pb2_grpc.StorageServiceStub] = {}
        self._round_robin = 0
        self._closed = False
        # Opt-in Prometheus metrics (brook.client.metrics): per fetch and batch only.
        self._metrics = metrics.consumer(self, client_id) if metrics is not None else None

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Consumer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Loads metadata (checking the bootstrap answers) and starts the fetcher."""
        await self._metadata.refresh()
        self._ensure_fetcher()

    def _ensure_fetcher(self) -> None:
        if self._closed:
            raise BrookError("INVALID_REQUEST", "the consumer is closed")
        if self._fetcher is None:
            self._data_ready = asyncio.Event()
            self._fetcher = asyncio.get_running_loop().create_task(
                self._run_fetcher(), name="brook-consumer-fetcher"
            )

    async def close(self) -> None:
        """Stops the fetcher and every request in flight, and closes connections."""
        if self._closed:
            return
        self._closed = True
        tasks = [*self._fetches.values(), *self._resets]
        if self._fetcher is not None:
            tasks.append(self._fetcher)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._metadata.close()
        await self._channels.close()

    @property
    def metadata(self) -> ClusterMetadata:
        return self._metadata

    def metrics_buffered(self) -> tuple[str, int]:
        """(client_id, fetched bytes waiting for poll()), read by brook.client.metrics."""
        return self.client_id, self._buffered_bytes

    # -- assignment and positions -------------------------------------------------------------

    def assign(self, partitions: Iterable[TopicPartitionLike]) -> None:
        """Sets the partitions to read (replacing the previous assignment).

        Partitions kept from the previous assignment keep their positions and buffered
        records; new ones start per auto_offset_reset unless seeked.
        """
        wanted = {_tp(p) for p in partitions}
        for tp in list(self._states):
            if tp not in wanted:
                self._drop_buffers(self._states.pop(tp))
        for tp in wanted:
            if tp not in self._states:
                state = _PartitionState()
                state.reset = self.auto_offset_reset
                self._states[tp] = state
        self._metadata.add_topics(tp.topic for tp in wanted)
        self._wake_fetcher()

    def assignment(self) -> set[TopicPartition]:
        return set(self._states)

    def _state(self, tp: TopicPartitionLike) -> _PartitionState:
        state = self._states.get(_tp(tp))
        if state is None:
            raise BrookError(
                "INVALID_REQUEST", f"partition {tp[0]}-{tp[1]} is not assigned to this consumer"
            )
        return state

    def _drop_buffers(self, state: _PartitionState) -> None:
        for item in state.buffered:
            self._buffered_bytes -= item.nbytes
        state.buffered.clear()
        state.pending.clear()

    def seek(self, tp: TopicPartitionLike, offset: int) -> None:
        """The next poll returns records of `tp` from `offset` on."""
        if offset < 0:
            raise ValueError("offset must be >= 0")
        state = self._state(tp)
        self._set_position(state, offset)

    def _set_position(self, state: _PartitionState, offset: int) -> None:
        self._drop_buffers(state)
        state.generation += 1
        state.position = offset
        state.fetch_position = offset
        state.reset = None
        state.error = None
        state.retry_at_s = 0.0
        self._wake_fetcher()

    def _request_reset(self, state: _PartitionState, policy: str) -> None:
        self._drop_buffers(state)
        state.generation += 1
        state.position = None
        state.fetch_position = None
        state.reset = policy
        state.error = None
        self._wake_fetcher()

    def seek_to_beginning(self, *partitions: TopicPartitionLike) -> None:
        """Moves to each partition's log start (resolved on the next poll or position())."""
        for tp in partitions or tuple(self._states):
            self._request_reset(self._state(tp), "earliest")

    def seek_to_end(self, *partitions: TopicPartitionLike) -> None:
        """Moves to each partition's high watermark (resolved on the next poll or position())."""
        for tp in partitions or tuple(self._states):
            self._request_reset(self._state(tp), "latest")

    async def seek_to_timestamp(
        self, timestamps_ms: Mapping[TopicPartitionLike, int]
    ) -> dict[TopicPartition, int]:
        """Seeks each partition to the first offset whose batch has a timestamp at or after
        the given one (the high watermark when there is none); returns the offsets."""
        offsets = await self.offsets_for_times(timestamps_ms)
        for tp, offset in offsets.items():
            self._set_position(self._state(tp), offset)
        return offsets

    async def position(self, tp: TopicPartitionLike) -> int:
        """The offset of the next record poll() returns for `tp` (resolving a pending reset)."""
        state = self._state(tp)
        if state.position is None:
            if state.error is not None:
                raise state.error
            await self._resolve_resets([_tp(tp)])
            if state.error is not None:
                raise state.error
            assert state.position is not None
        return state.position

    def highwater(self, tp: TopicPartitionLike) -> int:
        """The partition's high watermark from the last fetch answer (-1 before any)."""
        return self._state(tp).high_watermark

    def pause(self, *partitions: TopicPartitionLike) -> None:
        """Stops fetching and returning records of these partitions (buffers are kept)."""
        for tp in partitions:
            self._state(tp).paused = True

    def resume(self, *partitions: TopicPartitionLike) -> None:
        for tp in partitions:
            self._state(tp).paused = False
        self._wake_fetcher()
        if self._data_ready is not None:
            self._data_ready.set()

    def paused(self) -> set[TopicPartition]:
        return {tp for tp, state in self._states.items() if state.paused}

    # -- offsets lookups ---------------------------------------------------------------------

    async def beginning_offsets(
        self, partitions: Iterable[TopicPartitionLike]
    ) -> dict[TopicPartition, int]:
        answers = await self._list_offsets({_tp(p): ("earliest", 0) for p in partitions})
        return {tp: offset for tp, (offset, _ts) in answers.items()}

    async def end_offsets(
        self, partitions: Iterable[TopicPartitionLike]
    ) -> dict[TopicPartition, int]:
        answers = await self._list_offsets({_tp(p): ("latest", 0) for p in partitions})
        return {tp: offset for tp, (offset, _ts) in answers.items()}

    async def offsets_for_times(
        self, timestamps_ms: Mapping[TopicPartitionLike, int]
    ) -> dict[TopicPartition, int]:
        answers = await self._list_offsets(
            {_tp(tp): ("timestamp", int(ts)) for tp, ts in timestamps_ms.items()}
        )
        return {tp: offset for tp, (offset, _ts) in answers.items()}

    async def partitions_for(self, topic: str) -> list[int]:
        """The topic's partition indexes (TOPIC_NOT_FOUND when it does not exist)."""
        info = self._metadata.topics.get(topic) or await self._metadata.wait_for_topic(topic)
        return list(range(info.partition_count))

    async def _list_offsets(
        self, queries: Mapping[TopicPartition, tuple[str, int]]
    ) -> dict[TopicPartition, tuple[int, int]]:
        """ListOffsets by leader, retrying retriable errors after metadata refreshes."""
        self._metadata.add_topics(tp.topic for tp in queries)
        remaining = dict(queries)
        answers: dict[TopicPartition, tuple[int, int]] = {}
        last_error: BrookError | None = None
        retry = Retry(self._list_offsets_policy, clock=self._clock)
        while True:
            if retry.failures or any(self._metadata.leader(*tp) is None for tp in remaining):
                await self._metadata.refresh([tp.topic for tp in remaining])
            by_node: dict[str, list[TopicPartition]] = {}
            for tp in remaining:
                leader = self._metadata.leader(*tp)
                if leader is None:
                    if tp.topic not in self._metadata.topics:
                        info = await self._metadata.wait_for_topic(tp.topic)
                        if tp.partition >= info.partition_count:
                            raise BrookError(
                                Reason.PARTITION_NOT_FOUND,
                                f"{tp.topic} has no partition {tp.partition}",
                            )
                    last_error = BrookError(Reason.LEADER_NOT_AVAILABLE, f"{tp} has no leader")
                    continue
                by_node.setdefault(leader[0].address, []).append(tp)
            for address, tps in by_node.items():
                request = storage_pb2.ListOffsetsRequest()
                for tp in tps:
                    kind, timestamp = remaining[tp]
                    leader = self._metadata.leader(*tp)
                    request.partitions.add(
                        topic=tp.topic,
                        partition=tp.partition,
                        query=_QUERIES.get(kind, storage_pb2.OFFSET_QUERY_TIMESTAMP),
                        timestamp_ms=timestamp,
                        current_leader_epoch=leader[1] if leader else -1,
                    )
                try:
                    response = await partitioned(
                        self._stub(address).ListOffsets(request, timeout=self._request_timeout_s),
                        storage_pb2.ListOffsetsResponse,
                    )
                except grpc.aio.AioRpcError as rpc_error:
                    last_error = from_rpc_error(rpc_error)
                    if not last_error.retriable:
                        raise last_error from None
                    continue
                for item in response.partitions:
                    tp = TopicPartition(item.topic, item.partition)
                    item_error = from_partition_error(item.error)
                    if item_error is not None:
                        known = tp.topic in self._metadata.topics
                        item_error = retriable_if_node_lags(item_error, known)
                        if not item_error.retriable:
                            raise item_error
                        last_error = item_error
                        continue
                    if tp in remaining:
                        answers[tp] = (item.offset, item.timestamp_ms)
                        del remaining[tp]
            if not remaining:
                return answers
            # Every error kept in last_error is retriable; failed() raises it when the
            # attempts are used up.
            incomplete = BrookError(Reason.LEADER_NOT_AVAILABLE, "ListOffsets did not complete")
            await retry.failed(last_error or incomplete)

    async def _resolve_resets(self, partitions: Iterable[TopicPartition]) -> None:
        """Turns pending resets into positions with ListOffsets."""
        queries: dict[TopicPartition, tuple[str, int]] = {}
        generations: dict[TopicPartition, int] = {}
        for tp in partitions:
            state = self._states.get(tp)
            if state is None or state.reset is None or state.error is not None:
                continue
            if state.reset == "none":
                state.error = BrookError(
                    "OFFSET_OUT_OF_RANGE",
                    f"no valid position for {tp} and auto_offset_reset is 'none':"
                    " seek to an offset first",
                    {"topic": tp.topic, "partition": tp.partition},
                )
                continue
            queries[tp] = (state.reset, 0)
            generations[tp] = state.generation
        if not queries:
            return
        answers = await self._list_offsets(queries)
        for tp, (offset, _ts) in answers.items():
            state = self._states.get(tp)
            if state is not None and state.generation == generations[tp] and state.reset:
                self._set_position(state, offset)

    # -- polling ---------------------------------------------------------------------------

    async def poll(
        self, timeout_ms: float = 1000, max_records: int | None = None
    ) -> list[ConsumerRecord]:
        """Records from assigned, unpaused partitions; waits up to `timeout_ms` for some.

        Returns an empty list when nothing arrived in time. Raises the BrookError of a
        partition that cannot progress (e.g. OFFSET_OUT_OF_RANGE with reset 'none').
        """
        self._ensure_fetcher()
        assert self._data_ready is not None
        limit = max_records or self.max_poll_records
        deadline = self._monotonic_s() + timeout_ms / 1000
        while True:
            for state in self._states.values():
                if state.error is not None:
                    raise state.error
            records = self._collect(limit)
            if records:
                return records
            remaining = deadline - self._monotonic_s()
            if remaining <= 0:
                return []
            self._data_ready.clear()
            try:
                await asyncio.wait_for(self._data_ready.wait(), remaining)
            except TimeoutError:
                pass

    def __aiter__(self) -> AsyncIterator[ConsumerRecord]:
        return self

    async def __anext__(self) -> ConsumerRecord:
        """The next record, waiting as long as it takes. One record per step, so that the
        position after `break` is exactly the record after the last one seen."""
        while True:
            records = await self.poll(timeout_ms=self.fetch_max_wait_ms * 2, max_records=1)
            if records:
                return records[0]

    def _collect(self, limit: int) -> list[ConsumerRecord]:
        """Hands out up to `limit` buffered records, rotating over partitions for fairness."""
        out: list[ConsumerRecord] = []
        items = list(self._states.items())
        if not items:
            return out
        start = self._round_robin % len(items)
        self._round_robin += 1
        for tp, state in items[start:] + items[:start]:
            if state.paused or (not state.pending and not state.buffered):
                continue
            self._take(tp, state, limit - len(out), out)
            if len(out) >= limit:
                break
        if out:
            self._wake_fetcher()  # buffer space freed
        return out

    def _take(
        self, tp: TopicPartition, state: _PartitionState, limit: int, out: list[ConsumerRecord]
    ) -> None:
        while limit > 0:
            if state.pending:
                pending = state.pending
                take = min(limit, len(pending))
                if take == len(pending):
                    out.extend(pending)
                    pending.clear()
                else:
                    for _ in range(take):
                        out.append(pending.popleft())
                limit -= take
                state.position = out[-1].offset + 1
                continue
            if not state.buffered:
                return
            head = state.buffered[0]
            if head.generation != state.generation or not head.batches:
                self._buffered_bytes -= head.nbytes
                head.nbytes = 0
                state.buffered.popleft()
                continue
            batch = head.batches.popleft()
            size = len(batch.records) + _BATCH_OVERHEAD_BYTES
            head.nbytes -= size
            self._buffered_bytes -= size
            position = state.position if state.position is not None else 0
            try:
                records = codec.decode_batch(
                    batch, tp.topic, tp.partition, position, check_crc=self.check_crcs
                )
            except BrookError as error:
                state.error = error
                return
            if records:
                state.pending.extend(records)
                if self._metrics is not None:
                    self._metrics.received(tp.topic, len(records))
            next_offset = batch.base_offset + batch.record_count
            if next_offset > position and not records:
                state.position = next_offset  # a batch wholly below the position

    # -- the fetcher -----------------------------------------------------------------------

    def _wake_fetcher(self) -> None:
        wakeup = self._fetcher_wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    def _stub(self, address: str) -> storage_pb2_grpc.StorageServiceStub:
        stub = self._stubs.get(address)
        if stub is None:
            stub = self._stubs[address] = storage_pb2_grpc.StorageServiceStub(
                self._channels.get(address)
            )
        return stub

    async def _run_fetcher(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = self._monotonic_s()
            next_s = float("inf")
            needs_reset: list[TopicPartition] = []
            by_node: dict[int, list[TopicPartition]] = {}
            unknown_leader = False
            room = self._buffered_bytes < self.prefetch_max_bytes
            for tp, state in self._states.items():
                if state.error is not None or state.paused:
                    continue
                if state.retry_at_s > now:
                    next_s = min(next_s, state.retry_at_s)
                    continue
                if state.reset is not None:
                    needs_reset.append(tp)
                    continue
                if not room or state.fetch_position is None:
                    continue
                leader = self._metadata.leader(*tp)
                if leader is None:
                    unknown_leader = True
                    continue
                by_node.setdefault(leader[0].node_id, []).append(tp)
            if unknown_leader:
                self._metadata.request_refresh()
                next_s = min(next_s, now + self._retry_backoff_s)
            if needs_reset and not self._resets:
                task = loop.create_task(self._reset_task(needs_reset))
                self._resets.add(task)
                task.add_done_callback(self._resets.discard)
            for node_id, tps in by_node.items():
                if node_id in self._fetches:
                    continue
                # Positions are taken now: a seek before the task runs bumps the
                # generation, and the answer for this snapshot is then dropped.
                snapshot = [
                    (tp, self._states[tp].generation, cast(int, self._states[tp].fetch_position))
                    for tp in tps
                ]
                task = loop.create_task(self._fetch(node_id, snapshot))
                self._fetches[node_id] = task
                task.add_done_callback(functools.partial(self._fetch_done, node_id))
            self._fetcher_wakeup = loop.create_future()
            handle = None
            if next_s != float("inf"):
                handle = loop.call_later(max(0.0, next_s - self._monotonic_s()), self._wake_fetcher)
            try:
                await self._fetcher_wakeup
            finally:
                self._fetcher_wakeup = None
                if handle is not None:
                    handle.cancel()

    def _fetch_done(self, node_id: int, _task: object = None) -> None:
        self._fetches.pop(node_id, None)
        self._wake_fetcher()

    async def _reset_task(self, partitions: list[TopicPartition]) -> None:
        try:
            await self._resolve_resets(partitions)
        except BrookError as error:
            if not error.retriable:
                for tp in partitions:
                    state = self._states.get(tp)
                    if state is not None and state.reset is not None:
                        state.error = error
                if self._data_ready is not None:
                    self._data_ready.set()
            else:
                self._back_off(partitions, error)
        finally:
            self._wake_fetcher()

    def _back_off(self, partitions: Iterable[TopicPartition], error: BrookError) -> None:
        now = self._monotonic_s()
        if error.refresh_metadata:
            self._metadata.request_refresh()
        for tp in partitions:
            state = self._states.get(tp)
            if state is None:
                continue
            state.backoff_s = min(
                max(state.backoff_s * 2, self._retry_backoff_s), self._retry_backoff_max_s
            )
            state.retry_at_s = now + state.backoff_s
        log.debug("backing off %s after %s", list(partitions), error)

    async def _fetch(self, node_id: int, snapshot: list[tuple[TopicPartition, int, int]]) -> None:
        node = self._metadata.nodes.get(node_id)
        if node is None:
            return
        request = storage_pb2.FetchRequest(
            max_wait_ms=self.fetch_max_wait_ms,
            min_bytes=self.fetch_min_bytes,
            max_bytes=self.fetch_max_bytes,
            # What this client's channels accept (ChannelPool's default), so the node does
            # not cap responses at the 4 MiB of stock clients.
            receive_limit_bytes=defaults.MESSAGE_BYTES_MAX,
        )
        generations: dict[TopicPartition, tuple[int, int]] = {}
        for tp, generation, fetch_position in snapshot:
            leader = self._metadata.leader(*tp)
            request.partitions.add(
                topic=tp.topic,
                partition=tp.partition,
                fetch_offset=fetch_position,
                current_leader_epoch=leader[1] if leader is not None else -1,
                partition_max_bytes=self.max_partition_fetch_bytes,
            )
            generations[tp] = (generation, fetch_position)
        partitions = list(generations)
        started = time.perf_counter()
        try:
            response = await partitioned(
                self._stub(node.address).Fetch(
                    request, timeout=self.fetch_max_wait_ms / 1000 + self._request_timeout_s
                ),
                storage_pb2.FetchResponse,
            )
        except grpc.aio.AioRpcError as rpc_error:
            error = from_rpc_error(rpc_error)
            if self._metrics is not None:
                self._metrics.fetch.answered(started, str(error.reason))
            if error.code is grpc.StatusCode.UNAVAILABLE:
                error.refresh_metadata = True
            self._back_off(partitions, error)
            return
        if self._metrics is not None:
            self._metrics.fetch.answered(started)
        got_data = False
        for answer in response.partitions:
            tp = TopicPartition(answer.topic, answer.partition)
            found = self._states.get(tp)
            sent = generations.get(tp)
            if found is None or sent is None or found.generation != sent[0]:
                continue  # unassigned or seeked while the fetch was out: drop it
            state = found
            partition_error = from_partition_error(answer.error)
            if partition_error is not None:
                got_data |= self._fetch_error(tp, state, partition_error)
                continue
            state.backoff_s = 0.0
            state.high_watermark = answer.high_watermark
            state.log_start_offset = answer.log_start_offset
            batches = answer.batches
            if not batches:
                continue
            fetch_offset = sent[1]
            kept: deque[records_pb2.RecordBatch] = deque()
            nbytes = 0
            for batch in batches:
                if batch.base_offset + batch.record_count <= fetch_offset:
                    continue
                kept.append(batch)
                nbytes += len(batch.records) + _BATCH_OVERHEAD_BYTES
            if not kept:
                continue
            last = kept[-1]
            state.fetch_position = last.base_offset + last.record_count
            state.buffered.append(_Buffered(state.generation, kept, nbytes))
            self._buffered_bytes += nbytes
            got_data = True
        if got_data and self._data_ready is not None:
            self._data_ready.set()

    def _fetch_error(self, tp: TopicPartition, state: _PartitionState, error: BrookError) -> bool:
        """Acts on one partition's fetch error; True when poll() should look (an error)."""
        if error.reason == "OFFSET_OUT_OF_RANGE":
            if self.auto_offset_reset in ("earliest", "latest"):
                log.info(
                    "%s: fetch offset %s out of range; resetting to %s",
                    tp,
                    state.fetch_position,
                    self.auto_offset_reset,
                )
                self._request_reset(state, self.auto_offset_reset)
                return False
            state.error = BrookError(
                "OFFSET_OUT_OF_RANGE",
                f"offset {state.fetch_position} is out of range for {tp} ({error.message})"
                " and auto_offset_reset is 'none': seek to a valid offset",
                {**error.metadata, "topic": tp.topic, "partition": tp.partition},
            )
            return True
        if error.retriable or error.reason in NODE_MAY_LAG_REASONS:
            # A missing topic may be metadata lag (or a re-creation): refresh and retry.
            self._back_off([tp], error)
            return False
        state.error = error
        return True
