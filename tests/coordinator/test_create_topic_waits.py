"""CreateTopic with wait_for_leaders returns only once the leaders serve the new topic.

Issue 10, trap 4: "CreateTopic returns before the topic takes writes: the first produce
gets NOT_LEADER naming the answering node itself". With `wait_for_leaders`, a client that
sends one Produce straight after the answer (raw gRPC, no retries, as a Node or Go user
would) gets every partition acknowledged on the first try; a leader that cannot serve
(a SIGSTOPped node) makes the call end with the retriable REQUEST_TIMED_OUT after
`timeout_ms`; an out-of-range `timeout_ms` is INVALID_ARGUMENT and creates nothing.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import grpc
import pytest

from brook.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    metadata_pb2,
    metadata_pb2_grpc,
    storage_pb2,
    storage_pb2_grpc,
)
from tests.harness.cluster import LocalCluster
from tests.harness.rpc import rpc_failure
from tests.node.cluster_helpers import FAST_NODE_ARGS
from tests.node.helpers import make_batch

pytestmark = pytest.mark.integration

PARTITIONS = 12


def start_cluster(local_cluster: Callable[..., LocalCluster], nodes: int) -> LocalCluster:
    cluster = local_cluster()
    cluster.add_coordinator()
    for node_id in range(1, nodes + 1):
        cluster.add_node(node_id, args=FAST_NODE_ARGS)
    cluster.start()
    return cluster


async def test_a_produce_right_after_create_with_wait_finds_every_leader(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = start_cluster(local_cluster, nodes=2)
    async with grpc.aio.insecure_channel(cluster.address("coordinator")) as channel:
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        await admin.CreateTopic(
            admin_pb2.CreateTopicRequest(
                name="waited", partition_count=PARTITIONS, replication_factor=2,
                wait_for_leaders=True, timeout_ms=30_000,
            ),
            timeout=60,
        )  # fmt: skip
        metadata = await metadata_pb2_grpc.MetadataServiceStub(channel).GetMetadata(
            metadata_pb2.GetMetadataRequest(topics=["waited"]), timeout=10
        )
    nodes = {node.node_id: node.address for node in metadata.nodes}
    (topic,) = metadata.topics
    assert len(topic.partitions) == PARTITIONS
    for state in topic.partitions:
        async with grpc.aio.insecure_channel(nodes[state.leader_id]) as channel:
            response = await storage_pb2_grpc.StorageServiceStub(channel).Produce(
                storage_pb2.ProduceRequest(
                    acks=storage_pb2.ACKS_ALL,
                    timeout_ms=10_000,
                    partitions=[
                        storage_pb2.ProducePartition(
                            topic="waited",
                            partition=state.partition,
                            current_leader_epoch=state.leader_epoch,
                            batches=[make_batch([b"first try"])],
                        )
                    ],
                ),
                timeout=20,
            )
        (answer,) = response.partitions
        assert answer.error.reason == 0, (state.partition, answer.error)


async def test_a_leader_that_cannot_serve_times_the_wait_out(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = start_cluster(local_cluster, nodes=2)
    cluster.kill("node-2", signal.SIGSTOP)  # registered (its lease lives on), not serving
    try:
        async with grpc.aio.insecure_channel(cluster.address("coordinator")) as channel:
            admin = admin_pb2_grpc.AdminServiceStub(channel)
            failure = await rpc_failure(
                admin.CreateTopic(
                    admin_pb2.CreateTopicRequest(
                        name="stalled",
                        replica_assignments=[
                            admin_pb2.ReplicaAssignment(partition=0, replica_ids=[2])
                        ],
                        wait_for_leaders=True,
                        timeout_ms=800,
                    ),
                    timeout=30,
                )
            )
            assert failure.code == grpc.StatusCode.DEADLINE_EXCEEDED, failure
            assert failure.reason == "REQUEST_TIMED_OUT", failure
            assert failure.metadata.get("retriable") == "true"
            assert "was created" in failure.message

            bad = await rpc_failure(
                admin.CreateTopic(
                    admin_pb2.CreateTopicRequest(
                        name="bad-timeout", partition_count=1, replication_factor=1,
                        wait_for_leaders=True, timeout_ms=-5,
                    ),
                    timeout=10,
                )
            )  # fmt: skip
            assert bad.code == grpc.StatusCode.INVALID_ARGUMENT and bad.reason == "INVALID_REQUEST"
            names = await admin.ListTopics(admin_pb2.ListTopicsRequest(), timeout=10)
            assert "bad-timeout" not in [summary.name for summary in names.topics]
    finally:
        cluster.kill("node-2", signal.SIGCONT)
