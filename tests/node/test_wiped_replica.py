"""Defect 1, "an empty replica is put back in the ISR and then wipes everyone": real
processes (a coordinator and three nodes, RF 3, min_insync_replicas 2, acks=all), a
follower's data directory wiped (while it runs, or between a kill and a restart), then
the leader killed: the election must not pick the wiped replica, and no acknowledged
record may be lost.

replica_lag_max_ms is long (30 s) on purpose: the wiped replica must leave the ISR
because its log lost data or went offline, not because it lagged.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable

import pytest

from brook.client.admin import Admin
from brook.services.metadata.store import MetadataStore
from tests.chaos.faults import ChaosCluster, start_chaos_cluster
from tests.chaos.workload import describe, produce_direct, wait_for_leaders, wait_in_sync
from tests.harness.cluster import LocalCluster
from tests.harness.wait import eventually
from tests.node.cluster_helpers import NodeClient

pytestmark = pytest.mark.integration

TOPIC = "wiped"
CONFIGS = {"min_insync_replicas": "2", "replica_lag_max_ms": "30000"}
RECORDS = 350
CHUNK = 50


async def produce_acked(chaos: ChaosCluster, admin: Admin, prefix: str) -> list[bytes]:
    """RECORDS records through the current leader, acks=all, each chunk acknowledged."""
    leader = (await describe(admin, TOPIC))[0].leader_id
    address = chaos.node_address(leader)
    acked: list[bytes] = []
    for start in range(0, RECORDS, CHUNK):
        chunk = [f"{prefix}{i}".encode() for i in range(start, start + CHUNK)]

        async def send(chunk: list[bytes] = chunk) -> bool:
            await produce_direct(address, TOPIC, 0, chunk)
            return True

        await eventually(send, timeout_s=15, what="an acks=all produce")
        acked.extend(chunk)
    return acked


async def isr(admin: Admin) -> tuple[int, ...]:
    return tuple((await describe(admin, TOPIC))[0].isr_ids)


async def kill_leader_and_read(
    chaos: ChaosCluster, admin: Admin, victim: int, *, victim_may_lead: bool
) -> list[bytes]:
    """Kills the leader; returns what the newly elected one serves (asserting it is not
    the wiped victim unless it may have caught up and rejoined meanwhile)."""
    leader = (await describe(admin, TOPIC))[0].leader_id
    chaos.kill(chaos.node_name(leader))
    states = await wait_for_leaders(admin, TOPIC, timeout_s=20, not_on=[leader])
    new_leader = states[0].leader_id
    assert victim_may_lead or new_leader != victim, f"the wiped node {victim} was elected"
    client = NodeClient(chaos.node_address(new_leader))
    try:
        return await eventually(
            lambda: client.read_all(TOPIC, 0), timeout_s=15, what="the new leader to serve the log"
        )
    finally:
        await client.close()


def assert_all_acked_kept(got: list[bytes], acked: list[bytes]) -> None:
    kept = set(got)
    missing = [value for value in acked if value not in kept]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged records lost"


async def start(
    local_cluster: Callable[..., LocalCluster], admins: Callable[[str], Admin]
) -> tuple[ChaosCluster, Admin, int, int]:
    """The cluster and topic, RECORDS acknowledged; (chaos, admin, leader, a follower)."""
    chaos = start_chaos_cluster(local_cluster)
    admin = admins(chaos.bootstrap)
    await admin.create_topic(TOPIC, 1, 3, CONFIGS)
    state = (await wait_in_sync(admin, TOPIC, timeout_s=20))[0]
    follower = next(r for r in state.replica_ids if r != state.leader_id)
    return chaos, admin, state.leader_id, follower


async def test_follower_restarted_on_a_wiped_disk_is_never_elected(
    local_cluster: Callable[..., LocalCluster],
    admins: Callable[[str], Admin],
    store: MetadataStore,
) -> None:
    """Defect 1 (restart variant): a follower killed, wiped and restarted while etcd
    still lists it in the ISR (as when it restarts within its lease TTL) leaves the ISR
    before it registers; the leader is then killed and the other follower, not the empty
    one, is elected with every acknowledged record (nobody truncates them away)."""
    chaos, admin, _, victim = await start(local_cluster, admins)
    acked = await produce_acked(chaos, admin, "a")
    chaos.kill(chaos.node_name(victim))
    shutil.rmtree(chaos.cluster.base_dir / f"node-{victim}-data")

    async def registration_gone() -> bool:
        return all(node.node_id != victim for node in await store.list_nodes())

    # Make "etcd still lists it" deterministic: once the coordinator has seen the node
    # die (and dropped it), write the ISR back as a restart within the lease finds it.
    await eventually(registration_gone, timeout_s=15, what="the old registration to expire")
    await put_back_in_isr(store, victim)
    chaos.restart(chaos.node_name(victim))
    assert victim not in await isr(admin), "the wiped node registered while in the ISR"
    # It may rejoin (after isr_rejoin_min_ms) once it has fetched the whole log: then,
    # and only then, it may be elected.
    got = await kill_leader_and_read(chaos, admin, victim, victim_may_lead=True)
    assert_all_acked_kept(got, acked)
    truncations = [
        line
        for name in ("node-1", "node-2", "node-3")
        for line in chaos.log_lines(name, "truncating")
    ]
    assert not any(" to 0:" in line for line in truncations), truncations


async def put_back_in_isr(store: MetadataStore, node_id: int) -> None:
    async def put() -> bool:
        found = await store.get_partition(TOPIC, 0)
        assert found is not None
        record, revision = found
        if node_id in record.isr:
            return True
        new = record.evolve(isr=tuple(sorted({*record.isr, node_id})))
        return await store.cas_partition(new, revision) is not None

    await eventually(put, timeout_s=10, what="the ISR written back")


async def test_follower_wiped_while_running_leaves_isr_and_is_never_elected(
    local_cluster: Callable[..., LocalCluster], admins: Callable[[str], Admin]
) -> None:
    """Defect 1 (running variant): `rm -rf` of a running follower's data directory takes
    its log offline at its next disk write; it then stops fetching (its log end is only
    memory) and leaves the ISR, without flipping back in; the leader is killed and every
    acknowledged record survives on the new leader."""
    chaos, admin, _, victim = await start(local_cluster, admins)
    acked = await produce_acked(chaos, admin, "a")
    shutil.rmtree(chaos.cluster.base_dir / f"node-{victim}-data")
    acked += await produce_acked(chaos, admin, "b")

    async def victim_out() -> bool:
        return victim not in await isr(admin)

    await eventually(victim_out, timeout_s=15, what=f"node {victim} to leave the ISR")
    assert chaos.log_lines(chaos.node_name(victim), "left the ISR"), "not the node's own doing"
    acked += await produce_acked(chaos, admin, "c")
    assert victim not in await isr(admin), "the offline replica was added back"
    got = await kill_leader_and_read(chaos, admin, victim, victim_may_lead=False)
    assert_all_acked_kept(got, acked)
