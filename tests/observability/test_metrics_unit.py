"""The metrics machinery without a cluster: RPC metrics recorded by handle_errors /
handle_stream_errors, the per-partition series budget, state sampled on the event loop,
the /metrics endpoint, and the client's opt-in registry."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from brook.client.metrics import ClientMetrics
from brook.errors import BrookError
from brook.services.common import metrics
from brook.services.common.metrics import (
    REGISTRY,
    LoopCollector,
    MetricsEndpoint,
    PartitionSeriesBudget,
    rpc_labels,
)
from brook.services.common.rpc import handle_errors, handle_stream_errors
from tests.observability.helpers import scrape, value


class FakeContext:
    """What handle_errors needs of a grpc.aio.ServicerContext."""

    def __init__(self) -> None:
        self.aborted: Any = None

    async def abort_with_status(self, status: Any) -> None:
        self.aborted = status
        raise grpc.aio.AbortError()

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    def code(self) -> Any:
        return None


class ProbeService:
    @handle_errors
    async def list_offsets(self, request: str, context: Any) -> str:
        if request == "bad":
            raise BrookError("NOT_LEADER", "not here")
        if request == "bug":
            raise KeyError("oops")
        return "ok"

    @handle_stream_errors
    async def subscribe(self, request: int, context: Any) -> AsyncIterator[int]:
        for index in range(request):
            yield index
        raise BrookError("OFFSET_OUT_OF_RANGE", "the end")


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_rpc_labels_name_the_grpc_method() -> None:
    assert rpc_labels("StorageService.produce") == ("StorageService", "Produce")
    assert rpc_labels("ReplicaService.offset_for_leader_epoch") == (
        "ReplicaService",
        "OffsetForLeaderEpoch",
    )
    assert rpc_labels("AdminServicer.CreateTopic") == ("AdminService", "CreateTopic")
    assert rpc_labels("GroupService.WatchGroup") == ("GroupService", "WatchGroup")


async def test_handle_errors_counts_calls_errors_by_reason_and_latency() -> None:
    labels = {"service": "ProbeService", "method": "ListOffsets"}
    service = ProbeService()
    before = sample("brook_rpc_requests_total", **labels)
    assert await service.list_offsets("good", FakeContext()) == "ok"
    with pytest.raises(grpc.aio.AbortError):
        await service.list_offsets("bad", FakeContext())
    with pytest.raises(grpc.aio.AbortError):
        await service.list_offsets("bug", FakeContext())
    assert sample("brook_rpc_requests_total", **labels) == before + 3
    assert sample("brook_rpc_errors_total", reason="NOT_LEADER", **labels) == 1
    assert sample("brook_rpc_errors_total", reason="INTERNAL", **labels) == 1
    assert sample("brook_rpc_duration_seconds_count", **labels) == before + 3


async def test_handle_stream_errors_counts_messages_and_open_streams() -> None:
    labels = {"service": "ProbeService", "method": "Subscribe"}
    context = FakeContext()
    stream = ProbeService().subscribe(3, context)
    assert await stream.__anext__() == 0
    assert sample("brook_rpc_streams_open", **labels) == 1
    with pytest.raises(grpc.aio.AbortError):
        async for _ in stream:
            pass
    assert sample("brook_rpc_streams_open", **labels) == 0
    assert sample("brook_rpc_stream_messages_total", **labels) == 3
    assert sample("brook_rpc_errors_total", reason="OFFSET_OUT_OF_RANGE", **labels) == 1


def test_the_partition_series_budget_drops_all_or_nothing() -> None:
    dropped = sample("brook_metrics_partition_series_dropped_total")
    budget = PartitionSeriesBudget(limit=10)
    assert budget.allows(10)
    assert sample("brook_metrics_partition_series") == 10
    assert not budget.allows(11)
    assert sample("brook_metrics_partition_series") == 0
    assert sample("brook_metrics_partition_series_dropped_total") == dropped + 11
    assert not PartitionSeriesBudget(limit=10, enabled=False).allows(1)
    assert not PartitionSeriesBudget(limit=0).allows(1)


async def test_samplers_run_on_the_loop_and_a_stalled_loop_gets_the_last_sample() -> None:
    loop = asyncio.get_running_loop()
    calls: list[int] = []
    release = asyncio.Event()

    async def sampler() -> list[Any]:
        calls.append(threading.get_ident())
        if len(calls) == 2:
            await release.wait()  # the second sample never finishes in time
        return [metrics.gauge("brook_node_replicas", len(calls))]

    collector = LoopCollector(loop, sampler, timeout_s=0.2)
    failures = sample("brook_metrics_sample_failures_total")
    first = await asyncio.to_thread(lambda: list(collector.collect()))
    assert calls == [threading.get_ident()]  # ran on the loop's thread
    assert first[0].samples[0].value == 1
    second = await asyncio.to_thread(lambda: list(collector.collect()))
    assert second[0].samples[0].value == 1  # the previous sample, served again
    assert sample("brook_metrics_sample_failures_total") == failures + 1
    release.set()


async def test_the_endpoint_serves_parseable_metrics_and_stops() -> None:
    endpoint = MetricsEndpoint("127.0.0.1:0", role="node")

    async def sampler() -> list[Any]:
        return [metrics.gauge("brook_node_partitions_led", 5)]

    endpoint.add_sampler(sampler)
    address = endpoint.start()
    try:
        samples = await asyncio.to_thread(scrape, address)
        assert value(samples, "brook_node_partitions_led") == 5
        assert value(samples, "brook_build_info", role="node") == 1
        assert value(samples, "process_cpu_seconds_total") is not None
    finally:
        await endpoint.stop()
    with pytest.raises(OSError):
        await asyncio.to_thread(scrape, address)
    assert MetricsEndpoint("", role="node").start() == ""  # off


class FakeProducer:
    client_id = "app"

    def metrics_buffer(self) -> tuple[str, int, int]:
        return "app", 1000, 4096


class FakeConsumer:
    def metrics_buffered(self) -> tuple[str, int]:
        return "app", 77


def test_client_metrics_count_batches_requests_and_read_buffers() -> None:
    client = ClientMetrics()
    producer, consumer = FakeProducer(), FakeConsumer()
    bound = client.producer(producer, "app")
    bound.batch_done("orders", 10, 2048, ok=True)
    bound.batch_done("orders", 5, 1024, ok=False)
    bound.retried(2)
    started = bound.produce.started()
    bound.produce.answered(started, "NOT_LEADER")
    reader = client.consumer(consumer, "app")
    reader.received("orders", 7)
    text = generate_latest(client.registry).decode()
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    app = (("client_id", "app"),)
    assert (
        found[("brook_client_records_sent_total", (("client_id", "app"), ("topic", "orders")))]
        == 10
    )
    assert (
        found[("brook_client_records_failed_total", (("client_id", "app"), ("topic", "orders")))]
        == 5
    )
    assert found[("brook_client_retries_total", app)] == 2
    assert found[("brook_client_buffer_used_bytes", app)] == 1000
    assert found[("brook_client_buffer_limit_bytes", app)] == 4096
    assert found[("brook_client_consumer_buffered_bytes", app)] == 77
    assert found[("brook_client_batch_records_count", app)] == 1
    assert (
        found[
            (
                "brook_client_request_errors_total",
                (("client_id", "app"), ("method", "Produce"), ("reason", "NOT_LEADER")),
            )
        ]
        == 1
    )
    assert (
        found[("brook_client_records_received_total", (("client_id", "app"), ("topic", "orders")))]
        == 7
    )
    del producer, consumer  # the registry holds them weakly: gone from the next scrape
    text = generate_latest(client.registry).decode()
    assert "brook_client_buffer_used_bytes{" not in text
