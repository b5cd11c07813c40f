"""Prometheus metrics of the Brook server processes: one catalogue, one registry, one
/metrics endpoint per process.

- `CATALOGUE`: every metric a server process exports (name, type, labels, who exports it,
  meaning). It is the one list: metric objects are made from it, the README's table in
  "Operating" is checked against it (tests/observability), and so are the dashboard and
  the alert rules in ops/. The Python client's own metrics are in `brook.client.metrics`.
- Names are Prometheus-style: `brook_` prefix, base units (`_bytes`, `_seconds`),
  `_total` on counters, `_seconds` histograms.
- Events are counted where they happen, per request or per batch, never per record
  (`family(name)`; role groups `NodeMetrics`, `CoordinatorMetrics`, `GroupMetrics`
  bind the label children a hot path uses once). Per-call RPC counts, errors by reason
  and latency are recorded in one place, `brook.services.common.rpc`.
- State (partitions led, log sizes, lag, ...) is read when Prometheus scrapes: a
  `LoopCollector` runs its sampler *on the process's event loop* (where that state lives
  and changes; the samplers yield every few hundred partitions), waiting at most
  `SAMPLE_TIMEOUT_S`; a stalled loop is answered with the previous sample.
- Cardinality: per-partition series (`brook_partition_*`, `brook_group_lag_*`) are
  bounded by `--metrics-partition-series-max` (`PartitionSeriesBudget`): above it they
  are left out of the scrape, node- and group-level totals stay, and
  `brook_metrics_partition_series_dropped_total` counts what was left out.
  `--no-metrics-partition-series` turns them off.
- `MetricsEndpoint`: the HTTP server (`--metrics-listen HOST:PORT`, empty = off, port 0 =
  a free port) in daemon threads (`metrics_http.py`): over TLS, authenticated and
  authorized in a secure process (`http_security.py`); its address goes into the ready
  file as `metrics_address`.

Thread-safety: event metrics are single-writer families (`Family`: written by the event
loop, read by the scrape thread); samplers run on the event loop; the HTTP thread only
formats what they return.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import importlib.metadata
import json
import logging
import math
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from brook.services.common.http_security import PLAINTEXT_HTTP, HttpSecurity
from brook.services.common.metrics_http import serve_metrics

log = logging.getLogger("brook.metrics")

# How long a scrape waits for a state sample taken on the event loop.
SAMPLE_TIMEOUT_S = 5.0
# Default bound on per-partition series of one process (see PartitionSeriesBudget).
PARTITION_SERIES_MAX_DEFAULT = 10_000

# Latency buckets (seconds): sub-millisecond appends up to 30 s long polls.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0)  # fmt: skip
LOOP_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DISK_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Spec:
    """One metric: `kind` counter | gauge | histogram; `process` all | node | coordinator
    | groups; `sampled` gauges are computed at scrape time (no metric object)."""

    name: str
    kind: str
    labels: tuple[str, ...]
    process: str
    help: str
    sampled: bool = False
    buckets: tuple[float, ...] = LATENCY_BUCKETS


def _spec(
    name: str,
    kind: str,
    labels: str,
    process: str,
    help_: str,
    *,
    sampled: bool = False,
    buckets: tuple[float, ...] = LATENCY_BUCKETS,
) -> Spec:
    return Spec(name, kind, tuple(labels.split()) if labels else (), process, help_, sampled,
                buckets)  # fmt: skip


# fmt: off
_SPECS = [
    # -- every process ---------------------------------------------------------------------
    _spec("brook_build_info", "gauge", "version role", "all",
          "1, labelled with the Brook version and the process's role"),
    _spec("brook_rpc_requests_total", "counter", "service method", "all",
          "calls received by a Brook RPC method (a stream counts when it opens)"),
    _spec("brook_rpc_errors_total", "counter", "service method reason", "all",
          "calls that ended with an error status, by Brook ErrorReason (INTERNAL: a bug;"
          " CANCELLED: the caller went away)"),
    _spec("brook_rpc_duration_seconds", "histogram", "service method", "all",
          "time in the handler of unary calls (Fetch and ReplicaFetch include their long-poll"
          " wait)"),
    _spec("brook_rpc_streams_open", "gauge", "service method", "all",
          "server streams open now (Subscribe, WatchGroup)"),
    _spec("brook_rpc_stream_messages_total", "counter", "service method", "all",
          "messages sent on server streams"),
    _spec("brook_rpc_connections", "gauge", "", "all",
          "client connections open to this process's gRPC server", sampled=True),
    _spec("brook_event_loop_lag_seconds", "histogram", "", "all",
          "how late the event loop ran a 20 ms timer, per sample", buckets=LOOP_LAG_BUCKETS),
    _spec("brook_event_loop_lag_max_seconds", "gauge", "", "all",
          "largest event-loop lag over the last 10 s"),
    _spec("brook_etcd_request_duration_seconds", "histogram", "operation", "all",
          "etcd calls of the metadata layer, retries included"),
    _spec("brook_etcd_request_errors_total", "counter", "operation", "all",
          "etcd calls that failed, after their bounded retries"),
    _spec("brook_role_active", "gauge", "role", "coordinator, groups",
          "1 while this process is the active coordinator / group manager, 0 as a standby"),
    _spec("brook_metrics_partition_series", "gauge", "", "node, groups",
          "per-partition series in the last scrape"),
    _spec("brook_metrics_partition_series_dropped_total", "counter", "", "node, groups",
          "per-partition series left out of scrapes (over --metrics-partition-series-max, or"
          " turned off)"),
    _spec("brook_metrics_sample_failures_total", "counter", "", "all",
          "scrapes whose state sample did not finish on the event loop in time (the previous"
          " sample was served)"),
    # -- storage node ----------------------------------------------------------------------
    _spec("brook_node_registered", "gauge", "", "node",
          "1 while the node holds its etcd lease and may lead", sampled=True),
    _spec("brook_node_partitions_led", "gauge", "", "node",
          "partitions this node leads", sampled=True),
    _spec("brook_node_replicas", "gauge", "", "node",
          "partition replicas on this node, any role", sampled=True),
    _spec("brook_node_under_replicated_partitions", "gauge", "", "node",
          "partitions this node leads whose ISR is smaller than their replica set", sampled=True),
    _spec("brook_node_under_min_isr_partitions", "gauge", "", "node",
          "partitions this node leads whose ISR is below min_insync_replicas (acks=all"
          " refused)", sampled=True),
    _spec("brook_node_offline_replicas", "gauge", "", "node",
          "replicas whose log went offline after an I/O error", sampled=True),
    _spec("brook_node_log_size_bytes", "gauge", "", "node",
          "bytes of the segment files of every partition log", sampled=True),
    _spec("brook_node_log_segments", "gauge", "", "node",
          "segments of every partition log", sampled=True),
    _spec("brook_node_disk_free_bytes", "gauge", "", "node",
          "free bytes of the data directory's filesystem (as an unprivileged user sees it)",
          sampled=True),
    _spec("brook_node_disk_total_bytes", "gauge", "", "node",
          "size of the data directory's filesystem", sampled=True),
    _spec("brook_node_acks_none_queue_depth", "gauge", "", "node",
          "acks=none appends answered and waiting to be appended", sampled=True),
    _spec("brook_node_produce_bytes_total", "counter", "topic", "node",
          "batch bytes appended as leader (every acks mode)"),
    _spec("brook_node_produce_records_total", "counter", "topic", "node",
          "records appended as leader"),
    _spec("brook_node_produce_batches_total", "counter", "topic", "node",
          "batches appended as leader"),
    _spec("brook_node_fetch_bytes_total", "counter", "topic", "node",
          "batch bytes read for consumers (Fetch, Subscribe)"),
    _spec("brook_node_fetch_records_total", "counter", "topic", "node",
          "records in the batches read for consumers"),
    _spec("brook_node_replication_bytes_out_total", "counter", "topic", "node",
          "batch bytes served to followers (ReplicaFetch)"),
    _spec("brook_node_replication_bytes_in_total", "counter", "topic", "node",
          "batch bytes appended as follower"),
    _spec("brook_node_partition_errors_total", "counter", "operation reason", "node",
          "per-partition errors in answers (produce, fetch, subscribe, replica_fetch)"),
    _spec("brook_node_isr_shrinks_total", "counter", "", "node",
          "ISR shrinks this node committed (as leader, or leaving an ISR itself)"),
    _spec("brook_node_isr_expands_total", "counter", "", "node",
          "ISR expansions this node committed as leader"),
    _spec("brook_node_role_changes_total", "counter", "role", "node",
          "partition role changes applied: leader, follower, none"),
    _spec("brook_node_append_duration_seconds", "histogram", "", "node",
          "one engine append of one partition (a leader's produce, or a follower's fetched"
          " batches)", buckets=DISK_BUCKETS),
    _spec("brook_node_flush_duration_seconds", "histogram", "", "node",
          "one fsync of a partition log", buckets=DISK_BUCKETS),
    _spec("brook_node_follower_fetch_errors_total", "counter", "reason", "node",
          "failed fetches from leaders as follower (transport code or partition reason)"),
    _spec("brook_node_replication_throttle_rate_bytes", "gauge", "direction", "node",
          "the reassignment replication throttle in force on this node, bytes per second in"
          " (as adding replica) and out (as leader); 0 when unthrottled"),
    _spec("brook_node_replication_throttled_bytes_total", "counter", "direction", "node",
          "reassignment replication bytes charged to the throttle, in and out"),
    _spec("brook_node_replication_throttle_holds_total", "counter", "direction", "node",
          "fetch rounds in which throttled partitions were held back (budget in debt)"),
    # -- storage node, per partition (bounded by --metrics-partition-series-max) -----------
    _spec("brook_partition_log_size_bytes", "gauge", "topic partition", "node",
          "bytes of the partition log's segment files", sampled=True),
    _spec("brook_partition_log_segments", "gauge", "topic partition", "node",
          "segments of the partition log", sampled=True),
    _spec("brook_partition_log_start_offset", "gauge", "topic partition", "node",
          "first offset in the local log", sampled=True),
    _spec("brook_partition_log_end_offset", "gauge", "topic partition", "node",
          "offset the next appended record gets (local log)", sampled=True),
    _spec("brook_partition_high_watermark", "gauge", "topic partition", "node",
          "high watermark as this replica knows it", sampled=True),
    _spec("brook_partition_is_leader", "gauge", "topic partition", "node",
          "1 when this node leads the partition", sampled=True),
    _spec("brook_partition_in_sync_replicas", "gauge", "topic partition", "node",
          "ISR size (exported by the leader)", sampled=True),
    _spec("brook_partition_replicas", "gauge", "topic partition", "node",
          "replica set size (exported by the leader)", sampled=True),
    _spec("brook_partition_under_replicated", "gauge", "topic partition", "node",
          "1 when the ISR is smaller than the replica set (exported by the leader)", sampled=True),
    _spec("brook_partition_follower_lag_records", "gauge", "topic partition follower", "node",
          "leader's log end minus the follower's last fetch offset (exported by the leader)",
          sampled=True),
    _spec("brook_partition_follower_lag_seconds", "gauge", "topic partition follower", "node",
          "time since the follower last had everything the leader had (exported by the"
          " leader)", sampled=True),
    # -- coordinator -----------------------------------------------------------------------
    _spec("brook_coordinator_elections_total", "counter", "cause", "coordinator",
          "leader changes committed (epoch bumps), by cause: node_change, preferred,"
          " reassignment, admin, controlled_shutdown"),
    _spec("brook_coordinator_partition_writes_total", "counter", "cause", "coordinator",
          "partition records written by compare-and-swap, by the same causes"),
    _spec("brook_coordinator_reassignments_in_progress", "gauge", "", "coordinator",
          "partitions with a reassignment in flight", sampled=True),
    _spec("brook_cluster_nodes", "gauge", "", "coordinator",
          "live storage nodes (registered in etcd)", sampled=True),
    _spec("brook_cluster_topics", "gauge", "", "coordinator",
          "topics", sampled=True),
    _spec("brook_cluster_partitions", "gauge", "", "coordinator",
          "partitions of all topics", sampled=True),
    _spec("brook_cluster_offline_partitions", "gauge", "", "coordinator",
          "partitions without a live leader", sampled=True),
    _spec("brook_cluster_under_replicated_partitions", "gauge", "", "coordinator",
          "partitions whose ISR is smaller than their replica set", sampled=True),
    _spec("brook_cluster_under_min_isr_partitions", "gauge", "", "coordinator",
          "partitions whose ISR is below min_insync_replicas", sampled=True),
    # -- group manager ---------------------------------------------------------------------
    _spec("brook_group_manager_groups", "gauge", "state", "groups",
          "groups by state: empty, reconciling, stable (active manager)", sampled=True),
    _spec("brook_group_manager_members", "gauge", "", "groups",
          "members of all groups (active manager)", sampled=True),
    _spec("brook_group_manager_rebalances_total", "counter", "", "groups",
          "group epoch bumps (a member joined or left, a subscription or topic changed)"),
    _spec("brook_group_manager_offset_commits_total", "counter", "", "groups",
          "partition offsets committed (CommitOffsets, ResetOffsets)"),
    _spec("brook_group_manager_commit_duration_seconds", "histogram", "", "groups",
          "time to make one commit durable in etcd (its linger included)"),
    _spec("brook_group_manager_lag_sample_duration_seconds", "histogram", "", "groups",
          "one lag sampling round over the groups"),
    _spec("brook_group_manager_lag_sample_errors_total", "counter", "reason", "groups",
          "partitions whose lag a round could not measure (no leader, fetch failed)"),
    _spec("brook_group_manager_lag_partitions_skipped_total", "counter", "", "groups",
          "partitions left for a later round by --lag-sample-partitions-max"),
    _spec("brook_group_lag_records", "gauge", "group topic partition", "groups",
          "high watermark minus committed offset (the whole log when nothing is committed)",
          sampled=True),
    _spec("brook_group_lag_seconds", "gauge", "group topic partition", "groups",
          "age of the first unconsumed record: now minus the timestamp of the record at the"
          " committed offset (0 when caught up)", sampled=True),
    _spec("brook_group_total_lag_records", "gauge", "group", "groups",
          "lag in records summed over the group's partitions", sampled=True),
    _spec("brook_group_max_lag_seconds", "gauge", "group", "groups",
          "largest time lag over the group's partitions", sampled=True),
]
# fmt: on

CATALOGUE: dict[str, Spec] = {spec.name: spec for spec in _SPECS}

REGISTRY = CollectorRegistry(auto_describe=False)


# -- event metrics: single-writer families, cheap on the event loop ----------------------
# prometheus_client's metric objects take a lock per increment (~0.6 us for a counter, 1-2
# us for a histogram observation, measured here); these cost a dict lookup and an addition.
# Children are written by the process's event loop (one thread) and read by the scrape
# thread: reading an int or float is atomic under the GIL, and children are added and
# removed under a lock that the scrape also takes to copy the list. Should two threads
# write one child (several loops in one test process) an increment may be lost, nothing
# worse.
class CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class GaugeChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def set(self, value: float) -> None:
        self.value = value

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount


class HistogramChild:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value


class Family:
    """One catalogue metric's children by label values; unlabelled families also act as
    their single child (`inc`, `set`, `observe`)."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self._children: dict[tuple[str, ...], Any] = {}
        self._lock = threading.Lock()
        self._single = self.labels() if not spec.labels else None

    def _new_child(self) -> Any:
        if self.spec.kind == "counter":
            return CounterChild()
        if self.spec.kind == "gauge":
            return GaugeChild()
        return HistogramChild(self.spec.buckets)

    def labels(self, *values: object) -> Any:
        key = tuple(str(value) for value in values)
        child = self._children.get(key)
        if child is None:
            if len(key) != len(self.spec.labels):
                raise ValueError(f"{self.spec.name} takes labels {self.spec.labels}, got {key}")
            with self._lock:
                child = self._children.setdefault(key, self._new_child())
        return child

    def remove(self, *values: object) -> None:
        with self._lock:
            self._children.pop(tuple(str(value) for value in values), None)

    def inc(self, amount: float = 1.0) -> None:
        self._single.inc(amount)  # type: ignore[union-attr]

    def dec(self, amount: float = 1.0) -> None:
        self._single.dec(amount)  # type: ignore[union-attr]

    def set(self, value: float) -> None:
        self._single.set(value)  # type: ignore[union-attr]

    def observe(self, value: float) -> None:
        self._single.observe(value)  # type: ignore[union-attr]

    def collect(self) -> Any:
        spec = self.spec
        with self._lock:
            children = list(self._children.items())
        labels = list(spec.labels)
        if spec.kind == "histogram":
            histogram = HistogramMetricFamily(spec.name, spec.help, labels=labels)
            for key, child in children:
                counts, total = list(child.counts), child.sum
                running, buckets = 0, []
                for bound, count in zip((*spec.buckets, math.inf), counts, strict=True):
                    running += count
                    buckets.append((floatToGoString(bound), running))
                histogram.add_metric(list(key), buckets, total)
            return histogram
        metric = (CounterMetricFamily if spec.kind == "counter" else GaugeMetricFamily)(
            spec.name, spec.help, labels=labels
        )
        for key, child in children:
            metric.add_metric(list(key), child.value)
        return metric


class _Families(Collector):
    """Every family made so far, in REGISTRY."""

    def __init__(self) -> None:
        self.made: dict[str, Family] = {}
        self.lock = threading.Lock()

    def collect(self) -> Iterable[Any]:
        with self.lock:
            families = list(self.made.values())
        return [family.collect() for family in families]

    def describe(self) -> Iterable[Any]:
        return []


_families = _Families()
REGISTRY.register(_families)


def family(name: str) -> Any:
    """The family of a catalogue counter, histogram or (non-sampled) gauge, made on first
    use (so a process exports only what it uses)."""
    made = _families.made.get(name)
    if made is not None:
        return made
    spec = CATALOGUE[name]
    if spec.sampled:
        raise ValueError(f"{name} is computed at scrape time; use sampled_family()")
    with _families.lock:
        made = _families.made.get(name)
        if made is None:
            made = _families.made[name] = Family(spec)
    return made


def sampled_family(name: str) -> GaugeMetricFamily | CounterMetricFamily:
    """A fresh family of a catalogue metric computed at scrape time."""
    spec = CATALOGUE[name]
    if spec.kind == "counter":
        return CounterMetricFamily(name, spec.help, labels=list(spec.labels))
    return GaugeMetricFamily(name, spec.help, labels=list(spec.labels))


def gauge(name: str, value: float) -> GaugeMetricFamily:
    """An unlabelled sampled gauge with one value."""
    spec = CATALOGUE[name]
    assert not spec.labels, name
    return GaugeMetricFamily(name, spec.help, value=value)


# -- RPC metrics (recorded by services/common/rpc.py) -------------------------------------
def rpc_labels(qualname: str) -> tuple[str, str]:
    """(service, method) of a servicer method: `StorageService.produce` ->
    ("StorageService", "Produce"); `AdminServicer.CreateTopic` -> ("AdminService",
    "CreateTopic")."""
    owner, _, name = qualname.rpartition(".")
    owner = owner.rpartition(".")[2] or "unknown"
    if owner.endswith("Servicer"):
        owner = owner[: -len("r")]
    if "_" in name or name[:1].islower():
        name = "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)
    return owner, name


class RpcMetrics:
    """The children one RPC method records into, bound once when it is decorated."""

    __slots__ = ("_errors", "duration", "labels", "messages", "requests", "streams")

    def __init__(self, qualname: str) -> None:
        service, method = rpc_labels(qualname)
        self.labels = (service, method)
        self.requests = family("brook_rpc_requests_total").labels(service, method)
        self.duration = family("brook_rpc_duration_seconds").labels(service, method)
        self.streams = family("brook_rpc_streams_open").labels(service, method)
        self.messages = family("brook_rpc_stream_messages_total").labels(service, method)
        self._errors: dict[str, Any] = {}

    def error(self, reason: str) -> None:
        child = self._errors.get(reason)
        if child is None:
            child = self._errors[reason] = family("brook_rpc_errors_total").labels(
                *self.labels, reason
            )
        child.inc()


# -- event loop lag, etcd, roles ---------------------------------------------------------
def observe_loop_lag(lag_s: float, window_max_s: float) -> None:
    family("brook_event_loop_lag_seconds").observe(lag_s)
    family("brook_event_loop_lag_max_seconds").set(window_max_s)


class _EtcdOperation:
    __slots__ = ("duration", "errors")

    def __init__(self, operation: str) -> None:
        self.duration = family("brook_etcd_request_duration_seconds").labels(operation)
        self.errors = family("brook_etcd_request_errors_total").labels(operation)


_etcd_operations: dict[str, _EtcdOperation] = {}


def observe_etcd(operation: str, seconds: float, failed: bool) -> None:
    """One etcd call of the metadata layer (`operation`: its fixed description)."""
    bound = _etcd_operations.get(operation)
    if bound is None:
        bound = _etcd_operations[operation] = _EtcdOperation(operation.replace(" ", "_"))
    bound.duration.observe(seconds)
    if failed:
        bound.errors.inc()


def set_role_active(role: str, active: bool) -> None:
    family("brook_role_active").labels(role).set(1 if active else 0)


# -- per-partition series ------------------------------------------------------------------
class PartitionSeriesBudget:
    """Whether a scrape may carry `count` per-partition series: at most `limit`, and only
    when enabled; otherwise they are left out (all of them, so no partial picture) and
    counted in brook_metrics_partition_series_dropped_total."""

    def __init__(self, limit: int = PARTITION_SERIES_MAX_DEFAULT, enabled: bool = True) -> None:
        self.limit = limit
        self.enabled = enabled and limit > 0
        self._series = family("brook_metrics_partition_series")
        self._dropped = family("brook_metrics_partition_series_dropped_total")

    def allows(self, count: int) -> bool:
        if self.enabled and count <= self.limit:
            self._series.set(count)
            return True
        self._series.set(0)
        if count:
            self._dropped.inc(count)
        return False


# -- state sampled on the event loop at scrape time --------------------------------------
Sampler = Callable[[], Awaitable[Iterable[Any]]]


class LoopCollector(Collector):
    """A collector whose `sampler` (a coroutine function returning metric families) runs
    on `loop` when Prometheus scrapes, at most SAMPLE_TIMEOUT_S; on a stalled or closed
    loop the previous sample is served and brook_metrics_sample_failures_total counts it."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sampler: Sampler,
        *,
        timeout_s: float = SAMPLE_TIMEOUT_S,
    ) -> None:
        self._loop = loop
        self._sampler = sampler
        self._timeout_s = timeout_s
        self._last: list[Any] = []
        self._failures = family("brook_metrics_sample_failures_total")

    async def _sample(self) -> list[Any]:
        return list(await self._sampler())

    def collect(self) -> Iterable[Any]:
        if self._loop.is_closed():
            return self._last
        try:
            future = asyncio.run_coroutine_threadsafe(self._sample(), self._loop)
        except RuntimeError:
            return self._last
        try:
            self._last = future.result(self._timeout_s)
        except Exception as error:
            future.cancel()
            self._failures.inc()
            log.warning(
                "metrics sample failed (%s); serving the previous one", type(error).__name__
            )
        return self._last

    def describe(self) -> Iterable[Any]:
        return []


def grpc_server_connections() -> int | None:
    """Connections open to this process's gRPC servers (grpc core's channelz), or None
    when channelz is not available."""
    try:
        from grpc._cython import cygrpc  # grpc core; channelz is on by default

        total = 0
        servers = json.loads(cygrpc.channelz_get_servers(0))
        for server in servers.get("server", []):
            server_id = int(server["ref"]["serverId"])
            start = 0
            while True:
                page = json.loads(cygrpc.channelz_get_server_sockets(server_id, start, 0))
                refs = page.get("socketRef", [])
                total += len(refs)
                if page.get("end", True) or not refs:
                    break
                start = max(int(ref["socketId"]) for ref in refs) + 1
        return total
    except Exception:
        return None


class _ConnectionsCollector(Collector):
    def collect(self) -> Iterable[Any]:
        count = grpc_server_connections()
        return [] if count is None else [gauge("brook_rpc_connections", count)]

    def describe(self) -> Iterable[Any]:
        return []


# -- options and the endpoint -----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MetricsOptions:
    listen: str = ""
    partition_series_max: int = PARTITION_SERIES_MAX_DEFAULT
    partition_series: bool = True

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> MetricsOptions:
        return cls(
            listen=getattr(args, "metrics_listen", "") or "",
            partition_series_max=getattr(
                args, "metrics_partition_series_max", PARTITION_SERIES_MAX_DEFAULT
            ),
            partition_series=getattr(args, "metrics_partition_series", True),
        )

    def budget(self) -> PartitionSeriesBudget:
        return PartitionSeriesBudget(self.partition_series_max, self.partition_series)


def add_metrics_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-listen",
        default="",
        help="HOST:PORT to serve Prometheus /metrics on; empty: off, port 0"
        " picks a free port (written to the ready file as metrics_address)",
    )
    parser.add_argument(
        "--metrics-partition-series-max",
        type=int,
        default=PARTITION_SERIES_MAX_DEFAULT,
        help="per-partition series one scrape may carry; above it they are"
        " left out (totals stay) and counted as dropped",
    )
    parser.add_argument(
        "--metrics-partition-series",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="export per-partition series (default on)",
    )


_standard_collectors_added = False


def _add_standard_collectors() -> None:
    """process_* (CPU, memory, open fds), python_gc_* and python_info, once per process."""
    global _standard_collectors_added
    with _families.lock:
        if _standard_collectors_added:
            return
        _standard_collectors_added = True
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        with contextlib.suppress(ValueError):
            REGISTRY.register(collector)
    REGISTRY.register(_ConnectionsCollector())


def brook_version() -> str:
    try:
        return importlib.metadata.version("brook")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@dataclass
class MetricsEndpoint:
    """A process's /metrics HTTP endpoint (off when `listen` is empty)."""

    listen: str
    role: str
    # TLS and who may scrape (http_security.py); plaintext and open by default.
    security: HttpSecurity = PLAINTEXT_HTTP
    address: str = ""
    _server: Any = None
    _thread: threading.Thread | None = None
    _collectors: list[Collector] = field(default_factory=list)

    def add_sampler(self, sampler: Sampler) -> None:
        """Exports what `sampler` returns at every scrape, sampled on the running loop
        (nothing when the endpoint is off)."""
        if not self.listen:
            return
        collector = LoopCollector(asyncio.get_running_loop(), sampler)
        REGISTRY.register(collector)
        self._collectors.append(collector)

    def start(self) -> str:
        """Binds and serves; returns the bound HOST:PORT ("" when off)."""
        _make_all("all")
        family("brook_build_info").labels(brook_version(), self.role).set(1)
        if not self.listen:
            return ""
        _add_standard_collectors()
        host, _, port = self.listen.rpartition(":")
        host = host.strip("[]") or "0.0.0.0"
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        self._server, self._thread = serve_metrics(host, int(port), REGISTRY, self.security,
                                                   loop)  # fmt: skip
        bound_port = self._server.server_port
        shown = f"[{host}]" if ":" in host else host
        self.address = f"{shown}:{bound_port}"
        log.info("serving metrics on %s://%s/metrics", self.security.scheme, self.address)
        return self.address

    async def stop(self) -> None:
        """Stops serving (the HTTP thread's shutdown waits up to its 0.5 s poll: off the
        loop) and forgets this endpoint's samplers."""
        for collector in self._collectors:
            with contextlib.suppress(KeyError):
                REGISTRY.unregister(collector)
        self._collectors.clear()
        server, self._server = self._server, None
        thread, self._thread = self._thread, None
        if server is None:
            return

        def shut() -> None:
            server.shutdown()
            server.server_close()
            if thread is not None:
                thread.join(timeout=5.0)

        await asyncio.to_thread(shut)


# -- the role groups: label children bound once for the hot paths ----------------------
class TopicCounters:
    """A storage node's per-topic counters (one dict lookup per request and partition)."""

    __slots__ = (
        "fetch_bytes",
        "fetch_records",
        "produce_batches",
        "produce_bytes",
        "produce_records",
        "replication_in",
        "replication_out",
    )

    def __init__(self, topic: str) -> None:
        self.produce_bytes = family("brook_node_produce_bytes_total").labels(topic)
        self.produce_records = family("brook_node_produce_records_total").labels(topic)
        self.produce_batches = family("brook_node_produce_batches_total").labels(topic)
        self.fetch_bytes = family("brook_node_fetch_bytes_total").labels(topic)
        self.fetch_records = family("brook_node_fetch_records_total").labels(topic)
        self.replication_out = family("brook_node_replication_bytes_out_total").labels(topic)
        self.replication_in = family("brook_node_replication_bytes_in_total").labels(topic)


_TOPIC_FAMILIES = ("brook_node_produce_bytes_total", "brook_node_produce_records_total",
                   "brook_node_produce_batches_total", "brook_node_fetch_bytes_total",
                   "brook_node_fetch_records_total", "brook_node_replication_bytes_out_total",
                   "brook_node_replication_bytes_in_total")  # fmt: skip


def _make_all(process: str) -> None:
    """Makes every event metric of `process` now, so a scrape lists them (at 0, or with
    no series yet) before the first event."""
    for spec in _SPECS:
        if spec.process == process and not spec.sampled:
            family(spec.name)


class NodeMetrics:
    """The storage node's event metrics (state is sampled: services/node/node_metrics.py)."""

    def __init__(self) -> None:
        _make_all("node")
        self._topics: dict[str, TopicCounters] = {}
        self._partition_errors: dict[tuple[str, str], Any] = {}
        self._follower_errors: dict[str, Any] = {}
        self._roles: dict[str, Any] = {}
        self.isr_shrinks = family("brook_node_isr_shrinks_total")
        self.isr_expands = family("brook_node_isr_expands_total")
        self.append_duration = family("brook_node_append_duration_seconds")
        self.flush_duration = family("brook_node_flush_duration_seconds")

    def topic(self, topic: str) -> TopicCounters:
        counters = self._topics.get(topic)
        if counters is None:
            counters = self._topics[topic] = TopicCounters(topic)
        return counters

    def forget_topic(self, topic: str) -> None:
        """Drops a deleted topic's series (they would otherwise stay until restart)."""
        if self._topics.pop(topic, None) is None:
            return
        for name in _TOPIC_FAMILIES:
            with contextlib.suppress(KeyError):
                family(name).remove(topic)

    def partition_error(self, operation: str, reason: str, count: int = 1) -> None:
        key = (operation, reason)
        child = self._partition_errors.get(key)
        if child is None:
            child = self._partition_errors[key] = family(
                "brook_node_partition_errors_total"
            ).labels(operation, reason)
        child.inc(count)

    def follower_fetch_error(self, reason: str) -> None:
        child = self._follower_errors.get(reason)
        if child is None:
            child = self._follower_errors[reason] = family(
                "brook_node_follower_fetch_errors_total"
            ).labels(reason)
        child.inc()

    def role_change(self, role: str) -> None:
        child = self._roles.get(role)
        if child is None:
            child = self._roles[role] = family("brook_node_role_changes_total").labels(role)
        child.inc()


class CoordinatorMetrics:
    """The coordinator's event metrics (cluster state is sampled by the controller)."""

    CAUSES = ("node_change", "preferred", "reassignment", "admin", "controlled_shutdown")

    def __init__(self) -> None:
        _make_all("coordinator")
        self.elections = {cause: family("brook_coordinator_elections_total").labels(cause)
                          for cause in self.CAUSES}  # fmt: skip
        self.writes = {cause: family("brook_coordinator_partition_writes_total").labels(cause)
                       for cause in self.CAUSES}  # fmt: skip


class GroupMetrics:
    """The group manager's event metrics (groups and lag are sampled)."""

    def __init__(self) -> None:
        _make_all("groups")
        self.rebalances = family("brook_group_manager_rebalances_total")
        self.offset_commits = family("brook_group_manager_offset_commits_total")
        self.commit_duration = family("brook_group_manager_commit_duration_seconds")
        self.lag_sample_duration = family("brook_group_manager_lag_sample_duration_seconds")
        self.lag_skipped = family("brook_group_manager_lag_partitions_skipped_total")
        self._lag_errors: dict[str, Any] = {}

    def lag_sample_error(self, reason: str) -> None:
        child = self._lag_errors.get(reason)
        if child is None:
            child = self._lag_errors[reason] = family(
                "brook_group_manager_lag_sample_errors_total"
            ).labels(reason)
        child.inc()


_node: NodeMetrics | None = None
_coordinator: CoordinatorMetrics | None = None
_groups: GroupMetrics | None = None


def node_metrics() -> NodeMetrics:
    global _node
    if _node is None:
        _node = NodeMetrics()
    return _node


def coordinator_metrics() -> CoordinatorMetrics:
    global _coordinator
    if _coordinator is None:
        _coordinator = CoordinatorMetrics()
    return _coordinator


def group_metrics() -> GroupMetrics:
    global _groups
    if _groups is None:
        _groups = GroupMetrics()
    return _groups
