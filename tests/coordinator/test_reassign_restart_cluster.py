"""A reassignment survives a restart of any node involved (issue 13): real etcd, a real
coordinator and storage-node processes on loopback, real SIGKILLs, in a secure cluster
(TLS + mTLS, ACLs on, the test's client a non-super-user with exactly its ACLs; the
coordinator reads progress from the nodes as itself). The throttle test
(test_reassign_throttle_cluster.py) covers the plaintext cluster.

Three nodes hold a topic; each partition's second replica moves to a 4th node under a
throttle slow enough that the move is still running when, in turn, the adding node and
then a partition's leader (a replica the move keeps) are SIGKILLed and started again on
their data. The throttle is then removed: every move completes, node 4 is in every ISR,
and every acknowledged record is read back once, in order.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from brook.client import Admin
from brook.transport import default_security, set_default_security
from tests.coordinator.test_reassign_throttle_cluster import (
    PARTITIONS,
    TOPIC,
    WAIT_S,
    SizeSampler,
    _at_least,
    _live,
    _no_moves,
    produce,
    read_all,
)
from tests.harness.cluster import ClientCredentials, LocalCluster
from tests.harness.secure import cluster_options, start_secured
from tests.harness.wait import eventually
from tests.node.cluster_helpers import FAST_NODE_ARGS

pytestmark = pytest.mark.integration

# ~12 MB to copy at 1 MB/s: the move runs for about 12 s, far longer than the restarts.
THROTTLE_BYTES_PER_S = 1_000_000


# The client's ACLs: the topic's data, and the cluster's description and moves.
CLIENT_ACLS = [("create", "topic", TOPIC), ("write", "topic", TOPIC), ("read", "topic", TOPIC),
               ("describe", "topic", TOPIC), ("describe", "cluster", ""),
               ("alter", "cluster", "")]  # fmt: skip


async def test_a_move_survives_restarts_of_the_adding_node_and_of_a_leader(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    previous = default_security()
    try:
        await _moves_survive_restarts(local_cluster)
    finally:
        set_default_security(previous)


async def _moves_survive_restarts(local_cluster: Callable[..., LocalCluster]) -> None:
    cluster = local_cluster(**cluster_options("secure"))
    cluster.add_coordinator("coordinator", args=["--lease-ttl-s", "2", "--no-auto-balance"])
    for node_id in (1, 2, 3):
        cluster.add_node(node_id, args=FAST_NODE_ARGS)
    creds = start_secured(cluster, CLIENT_ACLS)
    assert isinstance(creds, ClientCredentials)
    bootstrap = cluster.address("coordinator")
    async with Admin(bootstrap) as admin:
        await eventually(lambda: _live(admin, 3), timeout_s=WAIT_S, what="three nodes")
        await admin.create_topic(TOPIC, PARTITIONS, 2)
        sent = await produce(bootstrap)
        cluster.add_node(4, args=FAST_NODE_ARGS)
        cluster.start(["node-4"])
        await eventually(lambda: _live(admin, 4), timeout_s=WAIT_S, what="node 4 registered")
        topic = await admin.describe_topic(TOPIC)
        targets = {p.partition: [p.leader_id, 4] for p in topic.partitions}
        await admin.reassign_partitions(TOPIC, targets, throttle_bytes_per_s=THROTTLE_BYTES_PER_S)

        async def copying(size: int) -> None:
            address = cluster.address("node-4")
            sampler = SizeSampler(address, creds.channel(address))
            try:
                await eventually(lambda: _at_least(sampler, size), timeout_s=WAIT_S,
                                 what=f"node 4 holding {size} bytes")  # fmt: skip
            finally:
                await sampler.close()

        # The adding node dies mid-copy and comes back on its data.
        await copying(1_000_000)
        # Progress comes from the nodes' DescribeLogDirs, asked by the coordinator as
        # itself (cluster_action): every adding replica has its figures.
        moving = await admin.list_reassignments(TOPIC)
        assert all(p.HasField("remaining_bytes") for m in moving for p in m.progress), moving
        assert sum(len(m.progress) for m in moving) == PARTITIONS
        cluster.kill("node-4", signal.SIGKILL)
        assert await admin.list_reassignments(TOPIC), "the move ended before the kill"
        cluster.start(["node-4"])
        await copying(2_000_000)

        # A leader the move keeps dies mid-copy: the partition's other old replica leads,
        # node 4 follows it; the old leader comes back as a follower.
        leader = targets[0][0]
        cluster.kill(f"node-{leader}", signal.SIGKILL)
        assert await admin.list_reassignments(TOPIC), "the move ended before the kill"

        async def led_elsewhere() -> bool:
            partition = (await admin.describe_topic(TOPIC)).partitions[0]
            return partition.leader_id not in (-1, leader)

        await eventually(led_elsewhere, timeout_s=WAIT_S, what="partition 0 led elsewhere")
        cluster.start([f"node-{leader}"])
        await admin.alter_replication_throttle(0)  # 0: no cluster-wide throttle
        await eventually(lambda: _no_moves(admin), timeout_s=WAIT_S, what="every move done")

        async def settled() -> bool:
            described = await admin.describe_topic(TOPIC)
            return all(sorted(p.replica_ids) == sorted(targets[p.partition])
                       and sorted(p.isr_ids) == sorted(p.replica_ids)
                       for p in described.partitions)  # fmt: skip

        await eventually(settled, timeout_s=WAIT_S, what="the targets, fully in sync")
    await read_all(bootstrap, sent)
