"""LagMonitor: consumer lag of every group, in records and in seconds, sampled
periodically with a bounded budget, with a one-hour history per group and partition.

Lag of a group on a partition (what DescribeGroup answers as `lag`, plus time):
- in records: the partition's high watermark minus the committed offset (the whole log,
  HW minus log start, when nothing is committed);
- in seconds: the age of the first unconsumed record, now minus the timestamp of the
  record at the committed offset (0 when the group is caught up). That timestamp is read
  with a small Fetch from the leader (`max_bytes` 1: the one batch holding the offset,
  decoded off the loop) and remembered while the committed offset stays where it is, so a
  group that does not move costs nothing more than its ListOffsets.

A round (every `interval_s`, while this process is the active group manager) takes at
most `partitions_max` (group, partition) pairs, continuing from where the previous round
stopped (so every group is measured over a few rounds however many there are; the pairs
left over are counted in brook_group_manager_lag_partitions_skipped_total), asks each
leader for the HW (one ListOffsets per node), then fetches the timestamps it does not
know, at most FETCHES_CONCURRENT at a time. Partitions whose leader is unknown or
unreachable are counted in brook_group_manager_lag_sample_errors_total and keep their
previous value out of the metrics.

History: one point per round per (group, partition), kept for `history_s` (one hour) in
fixed-size rings of floats (24 bytes a point), for at most `history_partitions_max`
pairs (the least recently measured go first). `history(group_id)` and
`latest(group_id)` are what the web console will read; the Prometheus families come
from `sample_metrics` (brook_group_lag_*, groups by state, members).

Thread-safety: one event loop.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from brook import codec
from brook.clock import SYSTEM_CLOCK, Clock
from brook.errors import BrookError, from_partition_error, from_rpc_error, partitioned
from brook.services.common import metrics
from brook.services.common.metrics import PartitionSeriesBudget, group_metrics
from brook.services.groups.log_offsets import EARLIEST, LATEST, LogOffsets
from brook.services.metadata.model import NO_LEADER
from brook.structs import TopicPartition
from brook.v1 import records_pb2, storage_pb2

if TYPE_CHECKING:
    from brook.services.groups.manager import GroupManager

log = logging.getLogger("brook.groups.lag")

INTERVAL_S_DEFAULT = 15.0
PARTITIONS_MAX_DEFAULT = 2000
HISTORY_S_DEFAULT = 3600.0
HISTORY_PARTITIONS_MAX_DEFAULT = 5000
# Timestamp fetches in flight at once, and the bound on one.
FETCHES_CONCURRENT = 8
FETCH_TIMEOUT_S = 3.0
# Batches larger than this (uncompressed) are not decoded: the batch's smallest timestamp
# stands for the record's (an upper bound on its age, by at most the batch's span).
DECODE_BYTES_MAX = 8 << 20

Key = tuple[str, TopicPartition]


@dataclass(frozen=True, slots=True)
class LagPoint:
    """One measurement of a group on a partition."""

    time_ms: int  # wall clock when measured
    lag_records: int
    lag_seconds: float | None  # None: the record at the committed offset was not readable
    committed_offset: int  # -1: nothing committed (lag counts from the log start)
    high_watermark: int


class _Ring:
    """The last `capacity` points of one pair, as floats (time, records, seconds)."""

    __slots__ = ("capacity", "count", "next", "records", "seconds", "times")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.times = array.array("d", bytes(8 * capacity))
        self.records = array.array("d", bytes(8 * capacity))
        self.seconds = array.array("d", bytes(8 * capacity))
        self.next = 0
        self.count = 0

    def add(self, point: LagPoint) -> None:
        index = self.next
        self.times[index] = point.time_ms
        self.records[index] = point.lag_records
        self.seconds[index] = math.nan if point.lag_seconds is None else point.lag_seconds
        self.next = (index + 1) % self.capacity
        self.count = min(self.count + 1, self.capacity)

    def points(self, since_ms: float) -> list[tuple[int, int, float | None]]:
        """(time_ms, lag_records, lag_seconds) from `since_ms` on, oldest first."""
        out = []
        start = (self.next - self.count) % self.capacity
        for step in range(self.count):
            index = (start + step) % self.capacity
            when = self.times[index]
            if when < since_ms:
                continue
            seconds = self.seconds[index]
            out.append(
                (int(when), int(self.records[index]), None if math.isnan(seconds) else seconds)
            )
        return out


def record_timestamp(batch: records_pb2.RecordBatch, offset: int) -> int:
    """The timestamp of the record at `offset` in `batch` (create time; a record without
    one has the batch's max). Raises BrookError CORRUPT_BATCH on an undecodable batch."""
    if batch.first_timestamp_ms > 0 and (
        batch.uncompressed_bytes > DECODE_BYTES_MAX or batch.record_count == 1
    ):
        # The smallest timestamp in the batch: exact for one record, else an upper bound
        # on the age (too large a batch to decode here).
        return int(batch.first_timestamp_ms)
    data = codec.decompress(batch.records, batch.compression, batch.uncompressed_bytes)
    try:
        records = records_pb2.Records.FromString(data).records
    except Exception as error:  # protobuf's DecodeError
        raise BrookError("CORRUPT_BATCH", f"undecodable batch: {error}") from error
    skip = max(0, offset - batch.base_offset)
    chosen = None
    if skip < len(records) and records[skip].offset_delta == skip:
        chosen = records[skip]
    else:
        chosen = next((r for r in records if r.offset_delta >= skip), None)
    if chosen is None:
        return int(batch.max_timestamp_ms)
    return int(chosen.timestamp_ms or batch.max_timestamp_ms)


def _partitions_of(group: Any) -> set[TopicPartition]:
    """What DescribeGroup reports lag for: committed, owned and targeted partitions."""
    partitions = set(group.offsets) | set(group.owners)
    for tps in group.target.values():
        partitions |= tps
    return partitions


class LagMonitor:
    """Samples every group's lag; see the module docs."""

    def __init__(
        self,
        manager: GroupManager,
        *,
        interval_s: float = INTERVAL_S_DEFAULT,
        partitions_max: int = PARTITIONS_MAX_DEFAULT,
        history_s: float = HISTORY_S_DEFAULT,
        history_partitions_max: int = HISTORY_PARTITIONS_MAX_DEFAULT,
        budget: PartitionSeriesBudget | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.manager = manager
        self.log_offsets: LogOffsets = manager.log_offsets
        self.interval_s = interval_s
        self.partitions_max = max(1, partitions_max)
        self.history_s = history_s
        self.history_partitions_max = max(1, history_partitions_max)
        self._capacity = max(1, math.ceil(history_s / max(interval_s, 0.001)) + 1)
        self.budget = budget or PartitionSeriesBudget()
        self._clock = clock
        self._metrics = group_metrics()
        self._latest: dict[Key, LagPoint] = {}
        self._history: OrderedDict[Key, _Ring] = OrderedDict()
        # (partition, offset) -> timestamp of the record there, for committed offsets.
        self._timestamps: dict[tuple[TopicPartition, int], int] = {}
        self._cursor = ""  # the group id the next round starts after
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="lag-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            started = time.perf_counter()
            try:
                await self.sample_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("lag sampling round failed")
            self._metrics.lag_sample_duration.observe(time.perf_counter() - started)
            await asyncio.sleep(self.interval_s)  # the sampling period

    # -- reading ---------------------------------------------------------------------
    def latest(self, group_id: str) -> dict[TopicPartition, LagPoint]:
        """The group's last measurement of each partition."""
        return {tp: point for (group, tp), point in self._latest.items() if group == group_id}

    def history(self, group_id: str) -> dict[TopicPartition, list[LagPoint]]:
        """The group's measurements over the last `history_s`, oldest first, by partition
        (committed offset and HW are given for the latest point only; -1 before)."""
        since = self._clock.now_ms() - self.history_s * 1000
        out: dict[TopicPartition, list[LagPoint]] = {}
        for (group, tp), ring in self._history.items():
            if group != group_id:
                continue
            latest = self._latest.get((group, tp))
            points = [
                LagPoint(when, records, seconds, -1, -1)
                for when, records, seconds in ring.points(since)
            ]
            if points and latest is not None and points[-1].time_ms == latest.time_ms:
                points[-1] = latest
            out[tp] = points
        return out

    # -- sampling ----------------------------------------------------------------------
    def _pairs(self) -> list[tuple[str, TopicPartition, int | None]]:
        """Up to partitions_max (group, partition, committed offset or None) of the next
        groups after the cursor; the rest is counted as skipped."""
        registry = self.manager.registry
        group_ids = sorted(registry.groups)
        if not group_ids:
            return []
        start = next((i for i, g in enumerate(group_ids) if g > self._cursor), 0)
        pairs: list[tuple[str, TopicPartition, int | None]] = []
        skipped = 0
        resume_after = ""
        for position, group_id in enumerate(group_ids[start:] + group_ids[:start]):
            group = registry.groups[group_id]
            room = self.partitions_max - len(pairs)
            if room <= 0:
                skipped += len(_partitions_of(group))
                continue
            partitions = sorted(_partitions_of(group))
            taken = partitions[:room]
            for tp in taken:
                record = group.offsets.get(tp)
                pairs.append(
                    (group_id, TopicPartition(*tp), record.offset if record is not None else None)
                )
            skipped += len(partitions) - len(taken)
            # The next round goes on after the last group measured whole, or after a first
            # group larger than the whole budget (measured on its first partitions_max).
            if len(taken) == len(partitions) or position == 0:
                resume_after = group_id
        self._cursor = resume_after if skipped else ""
        if skipped:
            self._metrics.lag_skipped.inc(skipped)
        return pairs

    async def sample_once(self) -> int:
        """One round; returns how many (group, partition) pairs were measured."""
        if not self.manager.active:
            self._latest.clear()
            self._history.clear()
            self._timestamps.clear()
            return 0
        pairs = self._pairs()
        if not pairs:
            self._forget_missing(set())
            return 0
        partitions = {tp for _, tp, _ in pairs}
        uncommitted = {tp for _, tp, committed in pairs if committed is None}
        latest, earliest = await asyncio.gather(
            self.log_offsets.query(partitions, LATEST),
            self.log_offsets.query(uncommitted, EARLIEST),
        )
        now_ms = self._clock.now_ms()
        wanted: dict[tuple[TopicPartition, int], None] = {}
        measured: list[tuple[str, TopicPartition, int, int, int]] = []
        for group_id, tp, committed in pairs:
            end = latest.get(tp)
            start = committed if committed is not None else earliest.get(tp)
            if not isinstance(end, int) or not isinstance(start, int):
                failure = end if isinstance(end, BrookError) else start
                reason = failure.reason if isinstance(failure, BrookError) else "UNKNOWN"
                self._metrics.lag_sample_error(str(reason))
                continue
            position = min(start, end)
            measured.append((group_id, tp, position, end, -1 if committed is None else committed))
            if position < end and (tp, position) not in self._timestamps:
                wanted[(tp, position)] = None
        found = await self._fetch_timestamps(list(wanted))
        self._timestamps.update(found)
        keep: set[tuple[TopicPartition, int]] = set()
        seen: set[Key] = set()
        for group_id, tp, position, end, committed in measured:
            seconds: float | None = 0.0
            if position < end:
                keep.add((tp, position))
                stamp = self._timestamps.get((tp, position))
                seconds = None if stamp is None else max(0.0, (now_ms - stamp) / 1000)
            point = LagPoint(now_ms, end - position, seconds, committed, end)
            self._record((group_id, tp), point)
            seen.add((group_id, tp))
        # Timestamps of offsets no group sits at any more are forgotten (those of partitions
        # this round did not measure are kept for the round that does).
        self._timestamps = {
            k: v for k, v in self._timestamps.items() if k in keep or k[0] not in partitions
        }
        if len(self._timestamps) > 4 * self.history_partitions_max:
            self._timestamps = {k: v for k, v in self._timestamps.items() if k in keep}
        self._forget_missing({(g, tp) for g, tp, _ in pairs})
        self.rounds += 1
        return len(seen)

    def _record(self, key: Key, point: LagPoint) -> None:
        self._latest[key] = point
        ring = self._history.get(key)
        if ring is None:
            ring = self._history[key] = _Ring(self._capacity)
            while len(self._history) > self.history_partitions_max:
                evicted, _ = self._history.popitem(last=False)
                self._latest.pop(evicted, None)
        else:
            self._history.move_to_end(key)
        ring.add(point)

    def _forget_missing(self, sampled: set[Key]) -> None:
        """Drops pairs whose group or partition is gone (deleted group, offsets of a
        deleted topic): what the registry no longer has is no longer measured."""
        groups = self.manager.registry.groups
        known: dict[str, set[TopicPartition]] = {}
        for key in [k for k in self._latest if k not in sampled]:
            if key[0] not in known:
                group = groups.get(key[0])
                known[key[0]] = _partitions_of(group) if group is not None else set()
            if key[1] not in known[key[0]]:
                self._latest.pop(key, None)
                self._history.pop(key, None)

    async def _fetch_timestamps(
        self, wanted: list[tuple[TopicPartition, int]]
    ) -> dict[tuple[TopicPartition, int], int]:
        """The timestamp of the record at each (partition, offset), read from its leader;
        those that fail are left out (and counted)."""
        found: dict[tuple[TopicPartition, int], int] = {}
        slots = asyncio.Semaphore(FETCHES_CONCURRENT)

        async def one(tp: TopicPartition, offset: int) -> None:
            async with slots:
                try:
                    found[(tp, offset)] = await self._fetch_timestamp(tp, offset)
                except BrookError as error:
                    self._metrics.lag_sample_error(str(error.reason))
                except grpc.RpcError as error:
                    self._metrics.lag_sample_error(str(from_rpc_error(error).reason))

        await asyncio.gather(*(one(tp, offset) for tp, offset in wanted))
        return found

    async def _fetch_timestamp(self, tp: TopicPartition, offset: int) -> int:
        cache = self.manager.cache
        record = cache.partitions.get(tp)
        node = (
            cache.nodes.get(record.leader)
            if record is not None and record.leader != NO_LEADER
            else None
        )
        if node is None:
            raise BrookError("LEADER_NOT_AVAILABLE", f"{tp} has no live leader")
        request = storage_pb2.FetchRequest(
            max_wait_ms=0,
            min_bytes=1,
            max_bytes=1,
            partitions=[
                storage_pb2.FetchPartition(
                    topic=tp.topic,
                    partition=tp.partition,
                    fetch_offset=offset,
                    current_leader_epoch=-1,
                    partition_max_bytes=1,
                )
            ],
        )
        response = await partitioned(
            self.log_offsets.stub(node.address).Fetch(request, timeout=FETCH_TIMEOUT_S),
            storage_pb2.FetchResponse,
        )
        for answer in response.partitions:
            error = from_partition_error(answer.error)
            if error is not None:
                raise error
            for batch in answer.batches:
                if batch.base_offset + batch.record_count > offset:
                    return await asyncio.to_thread(record_timestamp, batch, offset)
        raise BrookError("OFFSET_OUT_OF_RANGE", f"no record at {tp} offset {offset}")

    # -- metrics -----------------------------------------------------------------------
    async def sample_metrics(self) -> list[Any]:
        """Groups by state and members (active manager only), and the lag families."""
        if not self.manager.active:
            return []
        states: dict[str, int] = {}
        members = 0
        for group in list(self.manager.registry.groups.values()):
            state = group.state.name.lower()
            states[state] = states.get(state, 0) + 1
            members += len(group.members)
        by_state = metrics.sampled_family("brook_group_manager_groups")
        for state in ("empty", "reconciling", "stable"):
            by_state.add_metric([state], states.get(state, 0))
        families: list[Any] = [by_state, metrics.gauge("brook_group_manager_members", members)]
        total = metrics.sampled_family("brook_group_total_lag_records")
        worst = metrics.sampled_family("brook_group_max_lag_seconds")
        totals: dict[str, int] = {}
        maxima: dict[str, float] = {}
        points = list(self._latest.items())
        for (group_id, _), point in points:
            totals[group_id] = totals.get(group_id, 0) + point.lag_records
            if point.lag_seconds is not None:
                maxima[group_id] = max(maxima.get(group_id, 0.0), point.lag_seconds)
        for group_id, value in sorted(totals.items()):
            total.add_metric([group_id], value)
        for group_id, seconds in sorted(maxima.items()):
            worst.add_metric([group_id], seconds)
        families += [total, worst]
        series = sum(1 + (point.lag_seconds is not None) for _, point in points)
        if self.budget.allows(series):
            families += self._partition_families(points)
        return families

    @staticmethod
    def _partition_families(points: Iterable[tuple[Key, LagPoint]]) -> list[Any]:
        records = metrics.sampled_family("brook_group_lag_records")
        seconds = metrics.sampled_family("brook_group_lag_seconds")
        for (group_id, tp), point in sorted(points):
            labels = [group_id, tp.topic, str(tp.partition)]
            records.add_metric(labels, point.lag_records)
            if point.lag_seconds is not None:
                seconds.add_metric(labels, point.lag_seconds)
        return [records, seconds]
