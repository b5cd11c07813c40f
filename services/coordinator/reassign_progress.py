"""Reassignment progress (issue 13): how far each adding replica has copied its leader's
log, how fast, and how long it has left, for ListReassignments; and partition sizes for
the balancer's planner.

The figures come from the storage nodes' own DescribeLogDirs (per replica: size_bytes,
log_start_offset, log_end_offset), asked of the leader and the adding nodes of the
partitions listed, filtered by topic, with bounded concurrency and a timeout per call
(`gather_log_dirs`). A node that does not answer leaves its figures unset.

The rate is the slope of an adding replica's size over the samples the coordinator took
of it in the last `window_s` seconds (`RateTracker`, in memory: a new coordinator starts
without a rate until it has two samples). The estimate is remaining bytes over that rate.

Pure but for `gather_log_dirs` (gRPC); time comes from an injected clock.

Thread-safety: one event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

import grpc

from brook.clock import Clock
from brook.services.common.tls import peer_channel
from brook.services.metadata.model import NodeInfo
from brook.structs import TopicPartition
from brook.v1 import storage_pb2, storage_pb2_grpc

log = logging.getLogger("brook.coordinator.reassign_progress")

# The rate is measured over samples at most this old.
RATE_WINDOW_S_DEFAULT = 30.0
# Samples closer together than this give no rate (sizes move in whole batches).
RATE_SPAN_S_MIN = 0.5
# Samples kept per replica, and replicas tracked (oldest forgotten first).
SAMPLES_PER_REPLICA_MAX = 64
TRACKED_REPLICAS_MAX = 100_000
# DescribeLogDirs calls in flight at once, and each call's timeout.
LOG_DIRS_CONCURRENCY = 8
LOG_DIRS_TIMEOUT_S = 3.0
# A node answers -1 for a log busy appending at that instant: asked again, at most this
# many times in all, for the replicas it could not size.
LOG_DIRS_ATTEMPTS = 3

ReplicaKey = tuple[str, int, int]  # (topic, partition, node id)


@dataclass(frozen=True, slots=True)
class LogDir:
    """One replica's log as its node describes it."""

    size_bytes: int
    log_start_offset: int
    log_end_offset: int


@dataclass(frozen=True, slots=True)
class ReplicaProgress:
    """One adding replica's progress; None where a node did not answer."""

    node_id: int
    copied_bytes: int | None = None
    remaining_bytes: int | None = None
    copied_records: int | None = None
    remaining_records: int | None = None
    rate_bytes_per_s: float | None = None
    eta_s: float | None = None


class RateTracker:
    """Each replica's copy rate from its size samples over the last `window_s`."""

    def __init__(self, clock: Clock, *, window_s: float = RATE_WINDOW_S_DEFAULT,
                 max_replicas: int = TRACKED_REPLICAS_MAX) -> None:  # fmt: skip
        if window_s <= RATE_SPAN_S_MIN:
            raise ValueError(f"window_s must be more than {RATE_SPAN_S_MIN}")
        self._clock = clock
        self.window_s = window_s
        self.max_replicas = max_replicas
        self._samples: dict[ReplicaKey, deque[tuple[float, int]]] = {}

    def __len__(self) -> int:
        return len(self._samples)

    def observe(self, key: ReplicaKey, copied_bytes: int) -> float | None:
        """Records a sample; answers the rate in bytes/s (None until two samples at
        least RATE_SPAN_S_MIN apart are in the window)."""
        now = self._clock.monotonic_s()
        samples = self._samples.pop(key, None)
        if samples is None:
            samples = deque(maxlen=SAMPLES_PER_REPLICA_MAX)
            while len(self._samples) >= self.max_replicas:
                self._samples.pop(next(iter(self._samples)))  # the least recently seen
        if samples and copied_bytes < samples[-1][1]:
            samples.clear()  # the replica restarted its log (truncated, rebuilt)
        samples.append((now, copied_bytes))
        while len(samples) > 1 and now - samples[0][0] > self.window_s:
            samples.popleft()
        self._samples[key] = samples  # re-inserted: most recently seen last
        return self.rate(key)

    def rate(self, key: ReplicaKey) -> float | None:
        samples = self._samples.get(key)
        if not samples or len(samples) < 2:
            return None
        (first_t, first_b), (last_t, last_b) = samples[0], samples[-1]
        span = last_t - first_t
        if span < RATE_SPAN_S_MIN:
            return None
        return max(0.0, (last_b - first_b) / span)

    def forget_except(self, keep: Collection[ReplicaKey]) -> None:
        """Drops the samples of replicas no longer being added."""
        for key in [k for k in self._samples if k not in keep]:
            del self._samples[key]


def replica_progress(
    node_id: int, leader: LogDir | None, adding: LogDir | None, rate_bytes_per_s: float | None
) -> ReplicaProgress:
    """The figures of one adding replica from its and its leader's log dirs."""
    if adding is None:
        return ReplicaProgress(node_id, rate_bytes_per_s=rate_bytes_per_s)
    copied_bytes = max(0, adding.size_bytes)
    copied_records = max(0, adding.log_end_offset - adding.log_start_offset)
    if leader is None or leader.size_bytes < 0:
        return ReplicaProgress(node_id, copied_bytes, None, copied_records, None,
                               rate_bytes_per_s)  # fmt: skip
    remaining_bytes = max(0, leader.size_bytes - copied_bytes)
    remaining_records = max(0, leader.log_end_offset - max(adding.log_end_offset,
                                                            leader.log_start_offset))
    eta = None
    if rate_bytes_per_s:
        eta = remaining_bytes / rate_bytes_per_s
    elif rate_bytes_per_s is not None and remaining_bytes == 0:
        eta = 0.0
    return ReplicaProgress(node_id, copied_bytes, remaining_bytes, copied_records,
                           remaining_records, rate_bytes_per_s, eta)  # fmt: skip


# -- I/O: asking the nodes ---------------------------------------------------------------
LogDirs = dict[int, dict[TopicPartition, LogDir]]


async def gather_log_dirs(
    nodes: Mapping[int, NodeInfo],
    asks: Iterable[tuple[int, str]],
    *,
    concurrency: int = LOG_DIRS_CONCURRENCY,
    timeout_s: float = LOG_DIRS_TIMEOUT_S,
) -> LogDirs:
    """DescribeLogDirs of each (node id, topic) in `asks` (topic "" for every replica on
    the node), at most `concurrency` at a time; by node id, then partition. Nodes that
    are not live, fail or time out are left out (logged at debug), and so are replicas
    whose size the node could not read (offline, or busy in every attempt)."""
    wanted = sorted(set(asks))
    found: LogDirs = {}
    if not wanted:
        return found
    limit = asyncio.Semaphore(max(1, concurrency))
    channels: dict[int, grpc.aio.Channel] = {}

    async def ask(node_id: int, topic: str) -> None:
        info = nodes.get(node_id)
        if info is None or not info.address:
            return
        async with limit:
            channel = channels.get(node_id)
            if channel is None:
                channel = channels[node_id] = peer_channel(info.address)
            stub = storage_pb2_grpc.StorageServiceStub(channel)
            dirs: dict[TopicPartition, LogDir] = {}
            for _ in range(LOG_DIRS_ATTEMPTS):
                try:
                    response = await stub.DescribeLogDirs(
                        storage_pb2.DescribeLogDirsRequest(topic=topic), timeout=timeout_s
                    )
                except grpc.aio.AioRpcError as error:
                    log.debug("DescribeLogDirs of node %d: %s %s", node_id,
                              error.code().name, error.details())  # fmt: skip
                    break
                busy = False
                for replica in response.replicas:
                    key = TopicPartition(replica.topic, replica.partition)
                    if replica.offline or key in dirs:
                        continue
                    if replica.size_bytes < 0:
                        busy = True
                        continue
                    dirs[key] = LogDir(
                        replica.size_bytes, replica.log_start_offset, replica.log_end_offset
                    )
                if not busy:
                    break
        if dirs:
            found.setdefault(node_id, {}).update(dirs)

    try:
        await asyncio.gather(*(ask(node_id, topic) for node_id, topic in wanted))
    finally:
        for channel in channels.values():
            await channel.close()
    return found
