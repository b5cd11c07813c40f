"""A controlled shutdown (issue 13, the Kubernetes preStop): `brook node drain-leadership N`
moves node N's leaderships to other in-sync replicas before it is stopped, so stopping it
takes no partition offline and acks=all producers see no leader loss. In a secure cluster
(TLS + mTLS, ACLs on): a storage node may drain itself with its own certificate, not
another node; preferred-leader elections (every second here) leave the drained node alone
while its hold lasts."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable

import pytest

from brook.client import Admin, Producer
from brook.client.cli.main import build_parser
from brook.errors import BrookError
from brook.transport import default_security, set_default_security
from tests.harness.cluster import LocalCluster
from tests.harness.secure import ADMIN
from tests.harness.wait import eventually
from tests.node.cluster_helpers import FAST_NODE_ARGS

pytestmark = pytest.mark.integration

WAIT_S = 60.0
TOPIC = "drained"
PARTITIONS = 6
# ACLs on; the coordinator is a super user, as `brook dev --secure` makes it (it probes
# the nodes for leaders as itself).
SECURE_ARGS = ["--authorizer", "acl", "--super-users", f"{ADMIN},user:coordinator"]
# How long the test watches preferred elections (1 s apart) leave the drained node alone.
WATCH_S = 3.0


async def leaders(admin: Admin) -> dict[int, int]:
    return {p.partition: p.leader_id for p in (await admin.describe_topic(TOPIC)).partitions}


async def test_drain_leadership_before_a_stop_keeps_every_partition_led(
    local_cluster: Callable[..., LocalCluster], capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = local_cluster(secure=True, security_args=SECURE_ARGS)
    cluster.add_coordinator(args=["--lease-ttl-s", "2", "--preferred-election-interval-s", "1"])
    for node_id in (1, 2, 3):
        cluster.add_node(node_id, args=FAST_NODE_ARGS)
    cluster.start()
    admin_creds = cluster.client_security("user:admin")
    bootstrap = cluster.address("coordinator")
    previous = default_security()
    try:
        async with Admin(bootstrap, **admin_creds.kwargs) as admin:

            async def three() -> bool:
                return len((await admin.describe_cluster()).nodes) == 3

            await eventually(three, timeout_s=WAIT_S, what="three nodes")
            await admin.create_topic(TOPIC, PARTITIONS, 3, {"min_insync_replicas": "2"},
                                     wait_for_leaders=True)  # fmt: skip

            async def node_1_leads() -> bool:
                return 1 in (await leaders(admin)).values()

            await eventually(node_1_leads, timeout_s=WAIT_S, what="node 1 leading")
            before = {p.partition: p.leader_epoch
                      for p in (await admin.describe_topic(TOPIC)).partitions}  # fmt: skip
            led_by_1 = [p for p, leader in (await leaders(admin)).items() if leader == 1]

            # Another node's certificate may not drain node 1.
            async with Admin(bootstrap, **cluster.client_security("node:2").kwargs) as other:
                with pytest.raises(BrookError) as refused:
                    await other.drain_leadership(1)
                assert refused.value.reason == "PERMISSION_DENIED"
            assert sorted(p for p, n in (await leaders(admin)).items() if n == 1) == led_by_1

            # Node 1 drains itself, through the CLI as the preStop hook runs it.
            set_default_security(cluster.client_security("node:1").security)
            args = build_parser().parse_args(
                ["--bootstrap", bootstrap, "node", "drain-leadership", "1", "--hold-s", "30"]
            )
            capsys.readouterr()
            assert await args.handler(args) == 0
            assert f"node 1: {len(led_by_1)} leaderships moved, 0 left" in capsys.readouterr().out
            # The coordinator's view (DescribeTopic) follows its own writes by watch.
            async def drained() -> bool:
                return 1 not in (await leaders(admin)).values()

            await eventually(drained, timeout_s=10, what="the coordinator's view drained")
            now = await admin.describe_topic(TOPIC)
            assert all(p.leader_epoch == before[p.partition] + 1
                       for p in now.partitions if p.partition in led_by_1)  # fmt: skip

            # Preferred elections run every second: none gives node 1 its leadership back
            # while the hold lasts (a window watched, not a synchronization).
            deadline = time.monotonic() + WATCH_S
            while time.monotonic() < deadline:
                assert 1 not in (await leaders(admin)).values()
                await asyncio.sleep(0.2)

            # Stopping node 1 now takes nothing offline: acks=all goes on with 2 of 3.
            cluster.kill("node-1", signal.SIGTERM)
            assert cluster.wait_exit("node-1") == 0
            assert all(leader in (2, 3) for leader in (await leaders(admin)).values())
            async with Producer(bootstrap, acks="all", linger_ms=1,
                                **admin_creds.kwargs) as producer:  # fmt: skip
                sent = [await producer.send(TOPIC, b"after", partition=p)
                        for p in range(PARTITIONS)]  # fmt: skip
                await asyncio.wait_for(producer.flush(), WAIT_S)
            for future in sent:
                future.result()
    finally:
        set_default_security(previous)
