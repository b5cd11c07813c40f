"""Opt-in Prometheus metrics of the Python client (`brook.client.metrics`).

Nothing is recorded unless the application asks for it: make a `ClientMetrics` (its own
`CollectorRegistry`, or one you pass, e.g. `prometheus_client.REGISTRY`), give it to the
producers and consumers you want measured, and expose the registry as you expose your
application's other metrics:

    import prometheus_client
    from brook.client import Producer
    from brook.client.metrics import ClientMetrics

    metrics = ClientMetrics()
    prometheus_client.start_http_server(9400, registry=metrics.registry)
    async with Producer("127.0.0.1:7070", metrics=metrics, client_id="billing") as producer:
        ...

(`GroupConsumer(..., metrics=metrics)` passes it to its consumer.) Every series is
labelled with the client's `client_id`. Counting is per batch and per request, never per
record; buffer gauges are read when Prometheus scrapes. `CLIENT_CATALOGUE` lists the
metrics (the README's table in "Operating" is checked against it).

Thread-safety: metric objects are thread-safe; the scrape reads the clients' buffer
counters (plain integers) from the HTTP thread.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# name -> (type, labels, meaning)
CLIENT_CATALOGUE: dict[str, tuple[str, tuple[str, ...], str]] = {
    "brook_client_records_sent_total": (
        "counter",
        ("client_id", "topic"),
        "records acknowledged by the cluster",
    ),
    "brook_client_records_failed_total": (
        "counter",
        ("client_id", "topic"),
        "records whose delivery failed for good",
    ),
    "brook_client_batch_size_bytes": (
        "histogram",
        ("client_id",),
        "size of the batches the producer completed (records bytes)",
    ),
    "brook_client_batch_records": ("histogram", ("client_id",), "records per completed batch"),
    "brook_client_retries_total": (
        "counter",
        ("client_id",),
        "batches sent again after a retriable error",
    ),
    "brook_client_buffer_used_bytes": (
        "gauge",
        ("client_id",),
        "producer buffer memory held by unacknowledged records",
    ),
    "brook_client_buffer_limit_bytes": (
        "gauge",
        ("client_id",),
        "producer buffer memory limit (buffer_memory)",
    ),
    "brook_client_request_duration_seconds": (
        "histogram",
        ("client_id", "method"),
        "Produce and Fetch calls, sent to answered (a Fetch includes its long-poll wait)",
    ),
    "brook_client_request_errors_total": (
        "counter",
        ("client_id", "method", "reason"),
        "Produce and Fetch calls that failed as a whole, by reason",
    ),
    "brook_client_records_received_total": (
        "counter",
        ("client_id", "topic"),
        "records handed to the application by poll()",
    ),
    "brook_client_consumer_buffered_bytes": (
        "gauge",
        ("client_id",),
        "fetched bytes waiting for poll() (bounded by prefetch_max_bytes)",
    ),
}

BATCH_BYTES_BUCKETS = tuple(float(1 << shift) for shift in range(8, 25, 2))  # 256 B..16 MiB
BATCH_RECORDS_BUCKETS = (1.0, 10.0, 100.0, 1000.0, 10_000.0, 100_000.0)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0)  # fmt: skip


def _help(name: str) -> str:
    return CLIENT_CATALOGUE[name][2]


class _BufferCollector(Collector):
    """Buffer gauges of the live clients, summed per client_id, read at scrape time."""

    def __init__(self) -> None:
        self.producers: weakref.WeakSet[Any] = weakref.WeakSet()
        self.consumers: weakref.WeakSet[Any] = weakref.WeakSet()

    @staticmethod
    def _alive(clients: weakref.WeakSet[Any]) -> list[Any]:
        for _ in range(3):
            try:
                return list(clients)
            except RuntimeError:  # added to while we copied it (another thread)
                continue
        return []

    def collect(self) -> Iterable[Any]:
        used = GaugeMetricFamily(
            "brook_client_buffer_used_bytes",
            _help("brook_client_buffer_used_bytes"),
            labels=["client_id"],
        )
        limit = GaugeMetricFamily(
            "brook_client_buffer_limit_bytes",
            _help("brook_client_buffer_limit_bytes"),
            labels=["client_id"],
        )
        buffered = GaugeMetricFamily(
            "brook_client_consumer_buffered_bytes",
            _help("brook_client_consumer_buffered_bytes"),
            labels=["client_id"],
        )
        totals: dict[str, list[int]] = {}
        for producer in self._alive(self.producers):
            client_id, in_use, most = producer.metrics_buffer()
            entry = totals.setdefault(client_id, [0, 0])
            entry[0] += in_use
            entry[1] += most
        for client_id, (in_use, most) in sorted(totals.items()):
            used.add_metric([client_id], in_use)
            limit.add_metric([client_id], most)
        held: dict[str, int] = {}
        for consumer in self._alive(self.consumers):
            client_id, nbytes = consumer.metrics_buffered()
            held[client_id] = held.get(client_id, 0) + nbytes
        for client_id, nbytes in sorted(held.items()):
            buffered.add_metric([client_id], nbytes)
        return [used, limit, buffered]

    def describe(self) -> Iterable[Any]:
        return []


class ClientMetrics:
    """The client's metrics in one registry; pass it as `metrics=` to clients."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry

        def counter(name: str) -> Counter:
            return Counter(name, _help(name), CLIENT_CATALOGUE[name][1], registry=r)

        self.records_sent = counter("brook_client_records_sent_total")
        self.records_failed = counter("brook_client_records_failed_total")
        self.retries = counter("brook_client_retries_total")
        self.request_errors = counter("brook_client_request_errors_total")
        self.records_received = counter("brook_client_records_received_total")
        self.batch_bytes = Histogram(
            "brook_client_batch_size_bytes",
            _help("brook_client_batch_size_bytes"),
            ["client_id"],
            registry=r,
            buckets=BATCH_BYTES_BUCKETS,
        )
        self.batch_records = Histogram(
            "brook_client_batch_records",
            _help("brook_client_batch_records"),
            ["client_id"],
            registry=r,
            buckets=BATCH_RECORDS_BUCKETS,
        )
        self.request_duration = Histogram(
            "brook_client_request_duration_seconds",
            _help("brook_client_request_duration_seconds"),
            ["client_id", "method"],
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self._buffers = _BufferCollector()
        r.register(self._buffers)

    def producer(self, producer: Any, client_id: str) -> ProducerMetrics:
        """The bound metrics of one producer (`producer.metrics_buffer()` is read at scrape)."""
        self._buffers.producers.add(producer)
        return ProducerMetrics(self, client_id)

    def consumer(self, consumer: Any, client_id: str) -> ConsumerMetrics:
        """The bound metrics of one consumer (`consumer.metrics_buffered()` is read)."""
        self._buffers.consumers.add(consumer)
        return ConsumerMetrics(self, client_id)


class _RequestMetrics:
    """Latency and errors of one client's calls of one method."""

    def __init__(self, metrics: ClientMetrics, client_id: str, method: str) -> None:
        self._metrics = metrics
        self._labels = (client_id, method)
        self.duration = metrics.request_duration.labels(client_id, method)

    def started(self) -> float:
        return time.perf_counter()

    def answered(self, started: float, error_reason: str | None = None) -> None:
        self.duration.observe(time.perf_counter() - started)
        if error_reason is not None:
            self._metrics.request_errors.labels(*self._labels, error_reason).inc()


class ProducerMetrics:
    """What one producer records: per completed batch, per retry, per request."""

    def __init__(self, metrics: ClientMetrics, client_id: str) -> None:
        self._metrics = metrics
        self.client_id = client_id
        self._sent: dict[str, Any] = {}
        self._failed: dict[str, Any] = {}
        self._batch_bytes = metrics.batch_bytes.labels(client_id)
        self._batch_records = metrics.batch_records.labels(client_id)
        self._retries = metrics.retries.labels(client_id)
        self.produce = _RequestMetrics(metrics, client_id, "Produce")

    def batch_done(self, topic: str, records: int, size_bytes: int, ok: bool) -> None:
        if ok:
            child = self._sent.get(topic)
            if child is None:
                child = self._sent[topic] = self._metrics.records_sent.labels(self.client_id, topic)
            self._batch_bytes.observe(size_bytes)
            self._batch_records.observe(records)
        else:
            child = self._failed.get(topic)
            if child is None:
                child = self._failed[topic] = self._metrics.records_failed.labels(
                    self.client_id, topic
                )
        child.inc(records)

    def retried(self, batches: int) -> None:
        self._retries.inc(batches)


class ConsumerMetrics:
    """What one consumer records: per fetch request, per batch handed out."""

    def __init__(self, metrics: ClientMetrics, client_id: str) -> None:
        self._metrics = metrics
        self.client_id = client_id
        self._received: dict[str, Any] = {}
        self.fetch = _RequestMetrics(metrics, client_id, "Fetch")

    def received(self, topic: str, records: int) -> None:
        child = self._received.get(topic)
        if child is None:
            child = self._received[topic] = self._metrics.records_received.labels(
                self.client_id, topic
            )
        child.inc(records)
