"""End-to-end: the Python client and the `brook` CLI against a real local cluster
(real etcd, a coordinator and three storage nodes as processes, gRPC on loopback).

Each test runs twice (`security_mode`): plaintext, and secure (TLS + mTLS everywhere,
`--authorizer acl`, nodes replicating with their node certificates, the clients as
`user:alice` holding only the ACLs the test needs; tests/harness/secure.py)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Sequence

import pytest

from brook.client import Admin, Consumer, Producer
from brook.client.records import ConsumerRecord, TopicPartition
from brook.partitioner import partition_for_key
from tests.harness.cluster import ClientCredentials, LocalCluster
from tests.harness.secure import Acl, client_acls, cluster_options, start_secured

pytestmark = pytest.mark.integration

# The services are other parts of the tree; without them there is nothing to test against.
pytest.importorskip("brook.services.coordinator.main", reason="coordinator not available")
pytest.importorskip("brook.services.node.main", reason="storage node not available")

RECORDS = 100_000
PARTITIONS = 6
WAIT_S = 60.0
NODE_ARGS = ["--lease-ttl-s", "2", "--replica-fetch-wait-ms", "200", "--drain-timeout-s", "2"]


def start_cluster(
    local_cluster: Callable[..., LocalCluster], mode: str, acls: Sequence[Acl], nodes: int = 3
) -> tuple[LocalCluster, ClientCredentials | None]:
    """The started cluster and, when secure, the credentials of the test's client (also
    the default of brook.client objects built without options)."""
    cluster = local_cluster(**cluster_options(mode))
    cluster.add_coordinator()
    for node_id in range(1, nodes + 1):
        cluster.add_node(node_id, args=NODE_ARGS)
    return cluster, start_secured(cluster, acls)


async def wait_for_nodes(bootstrap: str, count: int) -> None:
    """Nodes register under leases; topic creation needs them all alive (bounded wait)."""
    async with Admin(bootstrap) as admin:
        async with asyncio.timeout(WAIT_S):
            while True:
                if len((await admin.describe_cluster()).nodes) >= count:
                    return
                await asyncio.sleep(0.1)  # polling a condition with a deadline


async def read_all(bootstrap: str, topic: str, expected: int) -> list[ConsumerRecord]:
    records: list[ConsumerRecord] = []
    async with Consumer(bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign(TopicPartition(topic, p) for p in range(PARTITIONS))
        async with asyncio.timeout(WAIT_S):
            while len(records) < expected:
                records.extend(await consumer.poll(timeout_ms=1000, max_records=10_000))
        assert await consumer.poll(timeout_ms=300) == []
    return records


async def test_produce_consume_restart_consume(
    local_cluster: Callable[..., LocalCluster], security_mode: str
) -> None:
    """Proves 100,000 keyed records (acks=all, RF 3) are all consumed once, in offset order
    per partition, each on the partition murmur2 picks for its key; and that after the whole
    cluster is stopped and started again, a new consumer reads exactly the same records."""
    cluster, _ = start_cluster(
        local_cluster, security_mode, client_acls(topics=["e2e"], describe_cluster=True)
    )
    bootstrap = cluster.address("coordinator")
    await wait_for_nodes(bootstrap, 3)
    async with Admin(bootstrap) as admin:
        await admin.create_topic("e2e", PARTITIONS, 3)
    sent: list[tuple[bytes, bytes]] = [
        (b"key-%d" % (i % 5000), b"value-%d" % i) for i in range(RECORDS)
    ]
    async with Producer(bootstrap, acks="all", linger_ms=5) as producer:
        futures = [await producer.send("e2e", value, key=key) for key, value in sent]
        await asyncio.wait_for(producer.flush(), WAIT_S)
    metadata = [future.result() for future in futures]

    first = await read_all(bootstrap, "e2e", RECORDS)
    assert len(first) == RECORDS
    by_partition: dict[int, list[ConsumerRecord]] = {}
    for record in first:
        by_partition.setdefault(record.partition, []).append(record)
    for partition, records in by_partition.items():
        assert [r.offset for r in records] == list(range(len(records)))
        assert all(partition_for_key(r.key or b"", PARTITIONS) == partition for r in records)
    # Each partition holds its keys' records in the order they were sent.
    for (key, value), where in zip(sent, metadata, strict=True):
        assert where.partition == partition_for_key(key, PARTITIONS)
        record = by_partition[where.partition][where.offset]
        assert (record.key, record.value) == (key, value)

    cluster.stop()
    for managed in cluster.processes.values():
        managed.listen = managed.address or managed.listen  # come back on the same ports
    cluster.start()
    await wait_for_nodes(cluster.address("coordinator"), 3)
    second = await read_all(cluster.address("coordinator"), "e2e", RECORDS)
    by_position = lambda r: (r.partition, r.offset)  # noqa: E731
    assert [(r.partition, r.offset, r.key, r.value) for r in sorted(second, key=by_position)] == [
        (r.partition, r.offset, r.key, r.value) for r in sorted(first, key=by_position)
    ]


def test_cli_produce_then_consume(
    local_cluster: Callable[..., LocalCluster], security_mode: str
) -> None:
    """Proves `brook topic create`, `brook produce` (stdin lines, exit 0 once all are
    acknowledged) and `brook consume --from-beginning --max-records` work as processes.
    (Secure: the CLI's credentials come from $BROOK_TLS_*; the client may write
    no-such-topic, so producing to it fails for not existing, not for an ACL.)"""
    cluster, creds = start_cluster(
        local_cluster,
        security_mode,
        client_acls(topics=["lines", "no-such-topic"], describe_cluster=True),
        nodes=1,
    )
    env = {**os.environ, **(creds.env if creds else {})}
    brook = [
        sys.executable,
        "-m",
        "brook.client.cli",
        "--bootstrap",
        cluster.address("coordinator"),
    ]
    asyncio.run(wait_for_nodes(cluster.address("coordinator"), 1))
    created = subprocess.run(
        [*brook, "topic", "create", "lines", "--partitions", "1", "--replication-factor", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert created.returncode == 0, created.stderr
    lines = [f"line {i}" for i in range(100)]
    produced = subprocess.run(
        [*brook, "produce", "lines", "--acks", "all"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert produced.returncode == 0, produced.stderr
    consumed = subprocess.run(
        [
            *brook,
            "consume",
            "lines",
            "--from-beginning",
            "--max-records",
            "100",
            "--timeout-ms",
            "20000",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.splitlines() == lines
    missing = subprocess.run(
        [*brook, "produce", "no-such-topic"],
        input="x\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert missing.returncode != 0 and "TOPIC_NOT_FOUND" in missing.stderr
