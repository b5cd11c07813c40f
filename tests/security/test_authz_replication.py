"""The forged-follower attack of issue 11, replayed against real processes.

The issue: with both followers of a partition SIGSTOPped, ReplicaFetch calls forged "from"
them put them back in the ISR within 0.2 s; 20 of 20 acks=all records were then
acknowledged with one copy, and lost when the leader was killed.

Here, in a secure cluster with `--authorizer acl`: both followers are stopped and drop out
of the ISR; then for two seconds ReplicaFetch calls claiming to be them come from a client
(user:mallory), from a super user (user:admin: super users do not replicate) and from a
real but different node (node:<the other follower> claiming this one's id). Every call is
PERMISSION_DENIED, the ISR stays the leader alone, the high watermark does not move, and
20 acks=all produces are all refused with NOT_ENOUGH_REPLICAS (min_insync_replicas 2):
nothing is acknowledged with one copy. Once the followers resume, their own (node
certificate) fetches bring them back and acks=all works again.

Without an authorizer, a replica_id that is not a replica of the partition never touches
the ISR or the high watermark (NOT_LEADER_OR_FOLLOWER)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from brook.client.admin import Admin
from brook.errors import Reason, from_partition_error, from_rpc_error
from brook.v1 import storage_pb2, storage_pb2_grpc
from tests.harness.cluster import ClientCredentials, LocalCluster
from tests.harness.wait import eventually
from tests.node.cluster_helpers import FAST_NODE_ARGS
from tests.security.authz_helpers import (
    ADMIN,
    audit_lines,
    grant_services,
    raw_produce,
    secure_cluster,
)

pytestmark = pytest.mark.integration

WAIT_S = 20.0
TOPIC = "acked"
FORGE_FOR_S = 2.0


async def isr_of(admin: Admin, topic: str = TOPIC) -> tuple[int, list[int], int]:
    """(leader, ISR, leader epoch) of partition 0."""
    state = (await admin.describe_topic(topic)).partitions[0]
    return state.leader_id, sorted(state.isr_ids), state.leader_epoch


async def high_watermark(creds: ClientCredentials, address: str) -> int:
    async with creds.channel(address) as channel:
        stub = storage_pb2_grpc.StorageServiceStub(channel)
        response = await stub.ListOffsets(storage_pb2.ListOffsetsRequest(partitions=[
            storage_pb2.ListOffsetsPartition(topic=TOPIC, partition=0,
                                             query=storage_pb2.OFFSET_QUERY_LATEST)]),
            timeout=5)  # fmt: skip
        return int(response.partitions[0].offset)


async def forged_fetch(
    creds: ClientCredentials, address: str, replica_id: int, offset: int, epoch: int
) -> grpc.StatusCode | Reason | None:
    """One ReplicaFetch claiming to be `replica_id`, fully caught up: the call's failure
    (status reason), a partition's error reason, or None when it was served."""
    async with creds.channel(address) as channel:
        stub = storage_pb2_grpc.ReplicaServiceStub(channel)
        request = storage_pb2.ReplicaFetchRequest(replica_id=replica_id, max_wait_ms=0,
            partitions=[storage_pb2.ReplicaFetchPartition(
                topic=TOPIC, partition=0, fetch_offset=offset, current_leader_epoch=epoch,
                last_fetched_epoch=epoch)])  # fmt: skip
        try:
            response = await stub.ReplicaFetch(request, timeout=5)
        except grpc.aio.AioRpcError as error:
            return from_rpc_error(error).reason
        partition_error = from_partition_error(response.partitions[0].error)
        return None if partition_error is None else partition_error.reason


async def test_forged_follower_fetches_change_nothing(etcd: str, tmp_path: Path) -> None:
    cluster = secure_cluster(etcd, tmp_path, nodes=3, groups=False)
    stopped: list[str] = []
    try:
        admin_creds = cluster.client_security(ADMIN)
        async with Admin(cluster.address("coordinator"), **admin_creds.kwargs) as admin:
            await grant_services(admin)
            await eventually(lambda: _nodes(admin, 3), timeout_s=WAIT_S, what="3 nodes")
            await admin.create_topic(TOPIC, 1, 3, {"min_insync_replicas": "2",
                                                   "replica_lag_max_ms": "1000"},
                                     wait_for_leaders=True)  # fmt: skip
            leader, isr, epoch = await isr_of(admin)
            assert isr == [1, 2, 3]
            address = cluster.address(f"node-{leader}")
            assert await raw_produce(admin_creds, address, [TOPIC]) == {TOPIC: None}
            followers = [n for n in (1, 2, 3) if n != leader]

            for node in followers:
                cluster.kill(f"node-{node}", signal.SIGSTOP)
                stopped.append(f"node-{node}")

            async def shrunk() -> bool:
                return (await isr_of(admin))[1] == [leader]

            await eventually(shrunk, timeout_s=WAIT_S, what="the ISR down to the leader")
            hw = await high_watermark(admin_creds, address)

            forgers = {
                "user:mallory": cluster.client_security("user:mallory"),
                ADMIN: admin_creds,
                f"node:{followers[1]}": cluster.client_security(f"node:{followers[1]}"),
            }
            outcomes: set[object] = set()
            deadline = time.monotonic() + FORGE_FOR_S
            calls = 0
            while time.monotonic() < deadline:
                for creds in forgers.values():
                    outcomes.add(await forged_fetch(creds, address, followers[0], hw, epoch))
                    outcomes.add(await forged_fetch(forgers["user:mallory"], address,
                                                    followers[1], hw, epoch))
                    calls += 2
            assert outcomes == {Reason.PERMISSION_DENIED}, outcomes
            assert calls >= 6
            assert (await isr_of(admin))[1] == [leader]

            acknowledged = 0
            for index in range(20):
                answer = await raw_produce(admin_creds, address, [TOPIC], b"r%d" % index)
                assert answer == {TOPIC: Reason.NOT_ENOUGH_REPLICAS}, answer
                acknowledged += answer[TOPIC] is None
            assert acknowledged == 0
            assert await high_watermark(admin_creds, address) == hw
            assert (await isr_of(admin))[1] == [leader]

            lines = [x for x in audit_lines(cluster, f"node-{leader}")
                     if x["method"] == "brook.v1.ReplicaService/ReplicaFetch"]  # fmt: skip
            bases = {(x["principal"], x["basis"]) for x in lines}
            assert ("user:mallory", "no_acl") in bases
            assert (ADMIN, "not_the_node") in bases
            assert (f"node:{followers[1]}", "not_the_node") in bases
            assert all(x["result"] == "denied" for x in lines)

            # The real followers, with their own certificates, come back.
            for name in stopped:
                cluster.kill(name, signal.SIGCONT)
            stopped.clear()

            async def rejoined() -> bool:
                return (await isr_of(admin))[1] == [1, 2, 3]

            await eventually(rejoined, timeout_s=WAIT_S, what="the followers back in the ISR")
            assert await raw_produce(admin_creds, address, [TOPIC]) == {TOPIC: None}
    finally:
        for name in stopped:
            cluster.kill(name, signal.SIGCONT)
        cluster.stop()
        print(cluster.dump_logs())


async def _nodes(admin: Admin, count: int) -> bool:
    return len((await admin.describe_cluster()).nodes) >= count


async def test_without_authorizer_a_non_replica_cannot_touch_the_isr(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """No authorizer (no authentication either): a ReplicaFetch naming a node that is not
    a replica of the partition is NOT_LEADER_OR_FOLLOWER and changes neither the ISR nor
    the high watermark."""
    cluster = local_cluster()
    cluster.add_coordinator()
    for node_id in (1, 2, 3):
        cluster.add_node(node_id, args=FAST_NODE_ARGS)
    cluster.start()
    plain = ClientCredentials(None)
    async with Admin(cluster.address("coordinator")) as admin:
        await eventually(lambda: _nodes(admin, 3), timeout_s=WAIT_S, what="3 nodes")
        await admin.create_topic(TOPIC, 1, 2, replica_assignments={0: [1, 2]},
                                 wait_for_leaders=True)  # fmt: skip
        leader, isr, epoch = await isr_of(admin)
        address = cluster.address(f"node-{leader}")
        assert await raw_produce(plain, address, [TOPIC]) == {TOPIC: None}
        hw = await high_watermark(plain, address)
        for _ in range(20):
            assert await forged_fetch(plain, address, 3, hw + 5, epoch) in (
                Reason.NOT_LEADER_OR_FOLLOWER,)
        await asyncio.sleep(0.2)  # the leader's ISR check runs every 100 ms
        assert await isr_of(admin) == (leader, isr, epoch)
        assert await high_watermark(plain, address) == hw
