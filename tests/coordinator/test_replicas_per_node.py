"""The coordinator refuses a layout that would put more replicas on a node than a node
is tested to carry (issue 9, defect 4: one 5,000-partition topic took a 3-node cluster
offline). Real etcd, a real coordinator with `--replicas-per-node-max 50`, two registered
(fake) nodes: topics up to the bound are created; CreateTopic and CreatePartitions past it
answer INVALID_ARGUMENT (INVALID_PARTITION_COUNT) naming the node and the cure, and
nothing is created or grown.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from brook.services.metadata import NodeInfo
from brook.v1 import admin_pb2, admin_pb2_grpc
from tests.harness.cluster import LocalCluster
from tests.harness.metadata import connected_store
from tests.harness.rpc import rpc_failure
from tests.harness.wait import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

PER_NODE_MAX = 50


async def test_layouts_past_the_per_node_bound_are_refused(
    etcd: str, cluster_name: str, local_cluster: Callable[..., LocalCluster]
) -> None:
    cluster = local_cluster()
    cluster.add_coordinator(args=["--replicas-per-node-max", str(PER_NODE_MAX),
                                  "--preferred-election-interval-s", "0"])  # fmt: skip
    async with connected_store(etcd, cluster_name) as store:
        leases = [await store.register_node(NodeInfo(node_id, f"127.0.0.1:{node_id}"), ttl_s=20)
                  for node_id in (1, 2)]  # fmt: skip
        try:
            cluster.start()
            async with grpc.aio.insecure_channel(cluster.address("coordinator")) as channel:
                admin = admin_pb2_grpc.AdminServiceStub(channel)

                async def create(name: str, partitions: int) -> admin_pb2.CreateTopicResponse:
                    request = admin_pb2.CreateTopicRequest(
                        name=name, partition_count=partitions, replication_factor=2
                    )
                    return await admin.CreateTopic(request, timeout=10)

                # 40 partitions x RF 2 on 2 nodes: 40 replicas per node, under the bound.
                await eventually(lambda: create("fits", 40), timeout_s=20, what="coordinator")
                failure = await rpc_failure(create("too-big", 11))
                assert failure.code == grpc.StatusCode.INVALID_ARGUMENT, failure
                assert failure.reason == "INVALID_PARTITION_COUNT", failure
                assert failure.metadata["max"] == str(PER_NODE_MAX)
                assert "add nodes" in failure.message

                grown = await rpc_failure(admin.CreatePartitions(
                    admin_pb2.CreatePartitionsRequest(topic="fits", partition_count=51),
                    timeout=10,
                ))  # fmt: skip
                assert grown.reason == "INVALID_PARTITION_COUNT", grown

                names = await admin.ListTopics(admin_pb2.ListTopicsRequest(), timeout=10)
                assert [summary.name for summary in names.topics] == ["fits"]
                described = await admin.DescribeTopic(
                    admin_pb2.DescribeTopicRequest(name="fits"), timeout=10
                )
                assert described.topic.partition_count == 40
                await create("still-fits", 10)  # exactly the bound: 50 per node
        finally:
            for lease in leases:
                await lease.revoke()
