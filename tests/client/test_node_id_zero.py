"""Node id 0 is an ordinary node (k8s/: a storage node's id is its StatefulSet pod ordinal,
so `brook-node-0` is node 0, with certificate CN brook-node-0 / principal node:0): it
leads, replicates, is fenced and elected like any other, in plaintext and in a secure
cluster where replication checks the caller's node identity (0 is not "unset")."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import pytest

from brook.client import Admin, Consumer, Producer
from brook.client.records import TopicPartition
from tests.harness.cluster import LocalCluster
from tests.harness.secure import client_acls, cluster_options, start_secured
from tests.harness.wait import eventually

pytestmark = pytest.mark.integration

WAIT_S = 60.0
NODE_ARGS = ["--lease-ttl-s", "2", "--replica-fetch-wait-ms", "200", "--drain-timeout-s", "2"]
RECORDS = 200


async def test_node_zero_leads_replicates_and_fails_over(
    local_cluster: Callable[..., LocalCluster], security_mode: str
) -> None:
    cluster = local_cluster(**cluster_options(security_mode))
    cluster.add_coordinator()
    for node_id in (0, 1, 2):
        cluster.add_node(node_id, args=NODE_ARGS)
    start_secured(cluster, client_acls(topics=["zero"], describe_cluster=True))
    bootstrap = cluster.address("coordinator")
    async with Admin(bootstrap) as admin:

        async def three_nodes() -> bool:
            nodes = (await admin.describe_cluster()).nodes
            return sorted(n.node.node_id for n in nodes) == [0, 1, 2]

        await eventually(three_nodes, timeout_s=WAIT_S, what="nodes 0, 1 and 2 registered")
        await admin.create_topic("zero", partitions=3, replication_factor=3,
                                 configs={"min_insync_replicas": "2"},
                                 wait_for_leaders=True)  # fmt: skip
        topic = await admin.describe_topic("zero")
        assert any(p.leader_id == 0 for p in topic.partitions), topic  # node 0 leads one
        async with Producer(bootstrap, acks="all", linger_ms=1) as producer:
            futures = [await producer.send("zero", f"v{i}".encode(), partition=i % 3)
                       for i in range(RECORDS)]  # fmt: skip
            await asyncio.wait_for(producer.flush(), WAIT_S)
        for future in futures:
            future.result()

        async def in_sync() -> bool:
            described = await admin.describe_topic("zero")
            return all(sorted(p.isr_ids) == [0, 1, 2] for p in described.partitions)

        await eventually(in_sync, timeout_s=WAIT_S, what="node 0 in every ISR")
        cluster.kill("node-0", signal.SIGKILL)

        async def moved() -> bool:
            described = await admin.describe_topic("zero")
            return all(p.leader_id in (1, 2) for p in described.partitions)

        await eventually(moved, timeout_s=WAIT_S, what="node 0's leadership moved")
    values: list[bytes] = []
    async with Consumer(bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign(TopicPartition("zero", p) for p in range(3))
        async with asyncio.timeout(WAIT_S):
            while len(values) < RECORDS:
                values.extend(r.value or b"" for r in await consumer.poll(timeout_ms=1000))
    assert sorted(values) == sorted(f"v{i}".encode() for i in range(RECORDS))
