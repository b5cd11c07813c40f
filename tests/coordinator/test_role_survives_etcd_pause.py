"""Integration: the coordinator and the group manager hold their roles again after etcd
was paused (SIGSTOP) for longer than their lease TTL, without being restarted.

Real processes: a private etcd (the test pauses it), one coordinator and one group
manager with 2 s role leases.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from brook.services.metadata import NodeInfo
from brook.v1 import admin_pb2, admin_pb2_grpc, groups_pb2, groups_pb2_grpc
from tests.harness.cluster import LocalCluster
from tests.harness.etcd import EtcdServer
from tests.harness.metadata import connected_store
from tests.harness.wait import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

LEASE_TTL_S = 2
# The fault: etcd stays stopped this long, three TTLs, so etcd itself expires the leases
# (and the processes' campaigns run into the pause), not only the holders' local bound.
PAUSE_S = 3 * LEASE_TTL_S
# Bounds: the leases lapse within TTL + a keep-alive timeout; after SIGCONT a new term
# needs a campaign back-off (at most 5 s) plus a grant and a load.
LEASE_LOST_WAIT_S = 20.0
ROLES_BACK_WAIT_S = 30.0


def lease_lost_lines(log_path: Path) -> list[str]:
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return [line for line in text.splitlines() if "lease" in line and "lost" in line]


async def test_roles_come_back_after_etcd_pause_longer_than_the_lease(
    etcd_server: EtcdServer, local_cluster: Callable[..., LocalCluster]
) -> None:
    """Issue 9, defect 3: a 10 s etcd pause left the coordinator and group manager dead
    until restarted (after SIGCONT the campaign failed with 'lease not found' and the role
    task ended: no role keys, Admin answered COORDINATOR_NOT_AVAILABLE). Every role loop
    must survive any etcd error and campaign again."""
    cluster = local_cluster(etcd=etcd_server.address, cluster_name=f"p{uuid.uuid4().hex[:10]}")
    ttl = ["--lease-ttl-s", str(LEASE_TTL_S)]
    cluster.add_coordinator(args=[*ttl, "--preferred-election-interval-s", "0"])
    cluster.add_groups(args=ttl)
    cluster.start()
    pids = {name: cluster.pid(name) for name in cluster.processes}
    async with connected_store(
        etcd_server.address, cluster.cluster_name, request_timeout_s=2.0
    ) as store:

        async def both_roles_held() -> bool:
            coordinator = await store.get_role_holder("coordinator")
            groups = await store.get_role_holder("groups")
            return coordinator is not None and groups is not None

        await eventually(both_roles_held, timeout_s=ROLES_BACK_WAIT_S, what="roles held")

        paused_at = time.monotonic()
        etcd_server.pause()
        try:

            async def both_leases_lost() -> bool:
                return all(lease_lost_lines(m.log_path) for m in cluster.processes.values())

            await eventually(
                both_leases_lost, timeout_s=LEASE_LOST_WAIT_S, interval_s=0.2, what="leases lost"
            )
            # The rest of the fault's length (a duration, not a synchronization).
            await asyncio.sleep(max(0.0, PAUSE_S - (time.monotonic() - paused_at)))
        finally:
            etcd_server.resume()

        await eventually(both_roles_held, timeout_s=ROLES_BACK_WAIT_S, what="roles held again")
        # CreateTopic needs a live node to place the replica on (its address is never
        # dialled: the coordinator only writes etcd).
        node_lease = await store.register_node(NodeInfo(1, "127.0.0.1:1"), ttl_s=10)
        try:
            async with (
                grpc.aio.insecure_channel(cluster.address("coordinator")) as admin_channel,
                grpc.aio.insecure_channel(cluster.address("groups")) as groups_channel,
            ):
                admin = admin_pb2_grpc.AdminServiceStub(admin_channel)
                group = groups_pb2_grpc.GroupServiceStub(groups_channel)

                async def topic_created() -> bool:
                    request = admin_pb2.CreateTopicRequest(name="after-pause", partition_count=1)
                    try:
                        await admin.CreateTopic(request, timeout=5)
                    except grpc.aio.AioRpcError as error:
                        if error.code() != grpc.StatusCode.ALREADY_EXISTS:
                            raise
                    return True

                async def heartbeat_answered() -> bool:
                    request = groups_pb2.HeartbeatRequest(
                        group_id="g-after-pause", subscribed_topic_names=["after-pause"]
                    )
                    response = await group.Heartbeat(request, timeout=5)
                    return bool(response.member_id)

                await eventually(topic_created, timeout_s=ROLES_BACK_WAIT_S, what="CreateTopic")
                await eventually(heartbeat_answered, timeout_s=ROLES_BACK_WAIT_S, what="Heartbeat")
        finally:
            await node_lease.revoke()
    # The same processes did it: nothing was restarted.
    assert {name: cluster.pid(name) for name in cluster.processes} == pids
    assert all(cluster.processes[name].running for name in pids)
