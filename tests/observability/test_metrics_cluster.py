"""Metrics of a real cluster (etcd, coordinator, group manager, three nodes, processes on
loopback): every process serves /metrics that prometheus_client's parser reads, every
metric of the README's table is there, and the numbers move with the traffic: records
produced and consumed, RPCs, partitions led, and consumer lag in records and seconds
agreeing with DescribeGroup."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from brook.client import Admin, Consumer, Producer
from brook.client.admin import GroupAdmin
from brook.client.metrics import ClientMetrics
from brook.client.records import TopicPartition
from brook.v1 import groups_pb2
from tests.harness.cluster import LocalCluster
from tests.harness.wait import eventually
from tests.observability.helpers import (
    ALERTS,
    Sample,
    all_catalogue,
    dashboard_expressions,
    metric_names,
    names_in,
    scrape,
    value,
)

pytestmark = pytest.mark.integration

WAIT_S = 30.0
METRICS = ["--metrics-listen", "127.0.0.1:0"]
NODE_ARGS = [*METRICS, "--lease-ttl-s", "2", "--replica-fetch-wait-ms", "200",
             "--drain-timeout-s", "2", "--isr-check-interval-ms", "100"]  # fmt: skip
GROUPS_ARGS = [*METRICS, "--lag-sample-interval-ms", "200"]
TOPIC = "observed"
PARTITIONS = 2
RECORDS = 300  # per partition
GROUP = "audit"
COMMITTED = 100  # the group's committed offset on each partition
AGE_S = 120.0  # how old the record at the committed offset is


def start_cluster(local_cluster: Callable[..., LocalCluster]) -> LocalCluster:
    cluster = local_cluster()
    cluster.add_coordinator(args=METRICS)
    cluster.add_groups(args=GROUPS_ARGS)
    for node_id in (1, 2, 3):
        cluster.add_node(node_id, args=NODE_ARGS)
    cluster.start()
    return cluster


def metrics_address(cluster: LocalCluster, name: str) -> str:
    return str(cluster.processes[name].info["metrics_address"])


def scrape_all(cluster: LocalCluster, names: list[str]) -> dict[str, list[Sample]]:
    return {name: scrape(metrics_address(cluster, name)) for name in names}


def families_of(address_text: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(address_text)}


async def test_every_process_exports_the_table_and_the_numbers_move(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = start_cluster(local_cluster)
    nodes = ["node-1", "node-2", "node-3"]
    bootstrap = cluster.address("coordinator")
    async with Admin(bootstrap) as admin:

        async def three_nodes() -> bool:
            return len((await admin.describe_cluster()).nodes) == 3

        await eventually(three_nodes, timeout_s=WAIT_S, what="three live nodes")
        await admin.create_topic(TOPIC, PARTITIONS, 3, wait_for_leaders=True)

    # Records with known timestamps: the one at COMMITTED is AGE_S old.
    now_ms = int(time.time() * 1000)
    client_metrics = ClientMetrics()
    async with Producer(
        bootstrap, acks="all", linger_ms=5, metrics=client_metrics, client_id="observer"
    ) as producer:
        for partition in range(PARTITIONS):
            for offset in range(RECORDS):
                stamp = now_ms - int(AGE_S * 1000) if offset <= COMMITTED else now_ms
                await producer.send(TOPIC, b"v%d" % offset, partition=partition, timestamp_ms=stamp)
        await asyncio.wait_for(producer.flush(), WAIT_S)
    consumed = 0
    async with Consumer(
        bootstrap, auto_offset_reset="earliest", metrics=client_metrics, client_id="observer"
    ) as consumer:
        consumer.assign(TopicPartition(TOPIC, p) for p in range(PARTITIONS))
        async with asyncio.timeout(WAIT_S):
            while consumed < PARTITIONS * RECORDS:
                consumed += len(await consumer.poll(timeout_ms=500, max_records=10_000))
    async with GroupAdmin(bootstrap) as groups:
        await groups.call(
            "CommitOffsets",
            groups_pb2.CommitOffsetsRequest(
                group_id=GROUP,
                member_epoch=-1,
                offsets=[
                    groups_pb2.OffsetCommit(topic=TOPIC, partition=p, offset=COMMITTED)
                    for p in range(PARTITIONS)
                ],
            ),
        )
        described = await groups.describe(GROUP)
    described_lag = {(o.topic, o.partition): o.lag for o in described.offsets}
    assert described_lag == {(TOPIC, p): RECORDS - COMMITTED for p in range(PARTITIONS)}

    # -- storage nodes: bytes and records in and out, leadership, log state ---------------
    async def node_counters() -> dict[str, list[Sample]] | None:
        scraped = scrape_all(cluster, nodes)
        samples = [s for found in scraped.values() for s in found]
        produced = value(samples, "brook_node_produce_records_total", topic=TOPIC)
        fetched = value(samples, "brook_node_fetch_records_total", topic=TOPIC)
        replicated = value(samples, "brook_node_replication_bytes_in_total", topic=TOPIC)
        total = PARTITIONS * RECORDS
        ok = (
            produced == total and fetched is not None and fetched >= total and (replicated or 0) > 0
        )
        return scraped if ok else None

    scraped = await eventually(node_counters, timeout_s=WAIT_S, what="node counters")
    samples = [s for found in scraped.values() for s in found]
    assert value(samples, "brook_node_partitions_led") == PARTITIONS
    assert value(samples, "brook_node_replicas") == PARTITIONS * 3
    assert value(samples, "brook_node_registered") == 3
    assert (value(samples, "brook_node_produce_bytes_total", topic=TOPIC) or 0) > 0
    for partition in range(PARTITIONS):
        labels = {"topic": TOPIC, "partition": str(partition)}
        ends = [
            s.value
            for s in samples
            if s.name == "brook_partition_log_end_offset" and s.labels == labels
        ]
        assert ends == [RECORDS] * 3, ends  # every replica has every record
        assert value(samples, "brook_partition_is_leader", **labels) == 1
        assert value(samples, "brook_partition_in_sync_replicas", **labels) == 3
    assert value(samples, "brook_node_under_replicated_partitions") == 0
    produces = value(
        samples, "brook_rpc_requests_total", service="StorageService", method="Produce"
    )
    assert (produces or 0) >= 1
    assert (
        value(samples, "brook_rpc_duration_seconds_count", service="StorageService", method="Fetch")
        or 0
    ) >= 1
    assert (value(samples, "brook_node_disk_total_bytes") or 0) > 0
    assert (value(samples, "brook_node_log_size_bytes") or 0) > 0

    # -- group manager: lag in records = DescribeGroup's, lag in seconds = record age ------
    async def lag_sampled() -> list[Sample] | None:
        found = scrape(metrics_address(cluster, "groups"))
        points = [s for s in found if s.name == "brook_group_lag_seconds"
                  and s.labels.get("group") == GROUP]  # fmt: skip
        return found if len(points) == PARTITIONS else None

    group_samples = await eventually(lag_sampled, timeout_s=WAIT_S, what="lag sampled")
    elapsed_s = time.time() - now_ms / 1000
    for partition in range(PARTITIONS):
        labels = {"group": GROUP, "topic": TOPIC, "partition": str(partition)}
        assert (
            value(group_samples, "brook_group_lag_records", **labels)
            == described_lag[(TOPIC, partition)]
        )
        seconds = value(group_samples, "brook_group_lag_seconds", **labels)
        assert seconds is not None and AGE_S <= seconds <= AGE_S + elapsed_s + 5, seconds
    assert value(group_samples, "brook_group_total_lag_records", group=GROUP) == sum(
        described_lag.values()
    )
    assert value(group_samples, "brook_role_active", role="groups") == 1
    assert (value(group_samples, "brook_group_manager_offset_commits_total") or 0) >= PARTITIONS
    commits = value(
        group_samples, "brook_rpc_requests_total", service="GroupService", method="CommitOffsets"
    )
    assert (commits or 0) >= 1  # more when the first attempt met a manager not yet active
    assert value(group_samples, "brook_group_manager_groups", state="empty") == 1

    # -- coordinator ---------------------------------------------------------------------
    coordinator = scrape(metrics_address(cluster, "coordinator"))
    assert value(coordinator, "brook_role_active", role="coordinator") == 1
    assert value(coordinator, "brook_cluster_partitions") == PARTITIONS
    assert value(coordinator, "brook_cluster_nodes") == 3
    assert value(coordinator, "brook_cluster_offline_partitions") == 0
    creates = value(
        coordinator, "brook_rpc_requests_total", service="AdminService", method="CreateTopic"
    )
    assert (creates or 0) >= 1
    assert (value(coordinator, "brook_etcd_request_duration_seconds_count") or 0) > 0

    # -- the client's registry -------------------------------------------------------------
    client_text = generate_latest(client_metrics.registry).decode()
    client = [
        Sample(s.name, dict(s.labels), s.value)
        for f in text_string_to_metric_families(client_text)
        for s in f.samples
    ]
    assert (
        value(client, "brook_client_records_sent_total", client_id="observer", topic=TOPIC)
        == PARTITIONS * RECORDS
    )
    assert (
        value(client, "brook_client_records_received_total", client_id="observer", topic=TOPIC)
        == PARTITIONS * RECORDS
    )
    assert (
        value(client, "brook_client_request_duration_seconds_count", method="Produce") or 0
    ) >= 1

    # -- every metric of the table is exported by the processes the table names -----------
    texts = {
        name: _text(metrics_address(cluster, name)) for name in ["coordinator", "groups", *nodes]
    }
    present = {
        "coordinator": _present(texts["coordinator"]),
        "groups": _present(texts["groups"]),
        "node": set.union(*(_present(texts[name]) for name in nodes)),
        "client": _present(client_text),
    }
    present["all"] = present["coordinator"] & present["groups"] & present["node"]
    # The names the dashboard and the alert rules use are served by a live cluster.
    live = set().union(*present.values())
    used = set().union(*(names_in(expr) for expr in dashboard_expressions()))
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            used |= names_in(rule["expr"])
    assert used <= live, sorted(used - live)
    missing = []
    for name, (_, _, processes) in all_catalogue().items():
        for process in (p.strip() for p in processes.split(",")):
            if name not in present[process]:
                missing.append(f"{name} ({process})")
    assert not missing, missing


def _text(address: str) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as reply:
        return str(reply.read().decode())


def _present(text: str) -> set[str]:
    """Names a scrape declares (HELP/TYPE, with or without series) or has samples of."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        names |= metric_names([Sample(s.name, {}, s.value) for s in family.samples])
    return names
