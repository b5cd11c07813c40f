"""Replication under faults: no acknowledged record is lost, none is inconsistent.

Every test runs 3 storage nodes and a coordinator as real processes on loopback (short
leases, see tests/chaos/faults.py), a topic with RF 3 and min_insync_replicas 2, and the
chaos workload (acks=all producers of unique record ids, a live reader) while it injects
real signals. At the end the workload drains every partition and the history checker
must find nothing lost, inconsistent, reordered or vanished.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from brook.client.admin import Admin
from brook.client.producer import Producer
from brook.errors import BrookError
from brook.v1 import storage_pb2
from tests.chaos.faults import (
    LEASE_TTL_S,
    TOPIC_CONFIGS,
    ChaosCluster,
    start_chaos_cluster,
)
from tests.chaos.workload import (
    Stopwatch,
    Workload,
    WorkloadConfig,
    busiest_partitions,
    describe,
    drain_and_check,
    produce_direct,
    wait_for_leaders,
    wait_in_sync,
)
from tests.harness.cluster import LocalCluster
from tests.harness.wait import eventually

pytestmark = pytest.mark.integration

TOPIC = "chaos"
PARTITIONS = 3
# Bounds on waits (why): a failover is a lease TTL (2 s) plus an election and a watch
# round trip; a restart is a Python process start (~1-3 s on a loaded 2-core box) plus a
# catch-up fetch. Generous multiples, so a slow box fails only when something is stuck.
FAILOVER_TIMEOUT_S = 20.0
REJOIN_TIMEOUT_S = 30.0
PROGRESS_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 60.0
# Acks to see between faults: proof that production is running again.
PROGRESS_ACKS = 50


async def setup_topic(admin: Admin) -> None:
    await admin.create_topic(TOPIC, PARTITIONS, 3, TOPIC_CONFIGS)
    await wait_in_sync(admin, TOPIC, timeout_s=REJOIN_TIMEOUT_S)


async def start_workload(chaos: ChaosCluster) -> Workload:
    """The workload, running and acknowledged on every partition (closed if not)."""
    workload = Workload(chaos.bootstrap, WorkloadConfig(topic=TOPIC, partitions=PARTITIONS))
    try:
        await workload.start()
        await workload.wait_for_progress(
            PROGRESS_ACKS, PROGRESS_TIMEOUT_S, "at start", partitions=range(PARTITIONS)
        )
    except BaseException:
        await workload.close()
        raise
    return workload


async def finish(workload: Workload, admin: Admin, tmp_path: Path) -> None:
    await drain_and_check(workload, admin, DRAIN_TIMEOUT_S, tmp_path / "histories.jsonl")


async def test_smoke_workload_without_faults(
    local_cluster: Callable[..., LocalCluster], admins: Callable[[str], Admin], tmp_path: Path
) -> None:
    """With no faults, the workload's acknowledged records are exactly the final log:
    the workload, drain and checker agree with each other on a healthy cluster."""
    chaos = start_chaos_cluster(local_cluster)
    admin = admins(chaos.bootstrap)
    await setup_topic(admin)
    workload = await start_workload(chaos)
    try:
        await workload.wait_for_progress(200, PROGRESS_TIMEOUT_S)
        await finish(workload, admin, tmp_path)
        assert workload.history.failures == {}
        assert len(workload.history.final) >= workload.acked
    finally:
        await workload.close()


async def test_kill_leader_of_busiest_partition_five_times(
    local_cluster: Callable[..., LocalCluster], admins: Callable[[str], Admin], tmp_path: Path
) -> None:
    """kill -9 the leader of the busiest partition, five times in a row, each time after
    the previous victim restarted and rejoined the ISR of every partition, while acks=all
    production runs: the checker finds nothing lost or inconsistent."""
    chaos = start_chaos_cluster(local_cluster)
    admin = admins(chaos.bootstrap)
    await setup_topic(admin)
    workload = await start_workload(chaos)
    try:
        for round_index in range(5):
            busiest = busiest_partitions(workload.history.acks)[0]
            states = await describe(admin, TOPIC)
            victim = states[busiest[1]].leader_id
            epochs = {p: s.leader_epoch for p, s in states.items() if s.leader_id == victim}
            watch = Stopwatch()
            chaos.kill(chaos.node_name(victim))
            await wait_for_leaders(
                admin,
                TOPIC,
                timeout_s=FAILOVER_TIMEOUT_S,
                partitions=epochs,
                not_on=[victim],
                epoch_above=epochs,
            )
            failover_s = watch.elapsed_s()
            await workload.wait_for_progress(
                PROGRESS_ACKS, PROGRESS_TIMEOUT_S, f"after killing node {victim}", partitions=epochs
            )
            chaos.restart(chaos.node_name(victim))
            await wait_in_sync(admin, TOPIC, [victim], timeout_s=REJOIN_TIMEOUT_S)
            print(
                f"round {round_index}: killed node {victim} (leader of {busiest}),"
                f" new leaders in {failover_s:.1f}s, back in sync after"
                f" {watch.elapsed_s():.1f}s; {workload.describe_run()}"
            )
        await workload.wait_for_progress(PROGRESS_ACKS, PROGRESS_TIMEOUT_S, "at the end")
        await finish(workload, admin, tmp_path)
    finally:
        await workload.close()


FENCED_REASONS = ("NOT_LEADER", "FENCED_LEADER_EPOCH", "NOT_LEADER_OR_FOLLOWER")


async def test_paused_leader_is_fenced_and_truncates(
    local_cluster: Callable[..., LocalCluster], admins: Callable[[str], Admin], tmp_path: Path
) -> None:
    """SIGSTOP the leader of the busiest partition for longer than its lease (at least
    2 x TTL, and until a new leader is elected with a bumped epoch), then SIGCONT: a
    produce sent straight to the old leader (its old epoch, acks=all; and no epoch,
    acks=1) is refused with NOT_LEADER / FENCED_LEADER_EPOCH; once it is back in the ISR
    a preferred election makes it leader again, and the drain reads the final log from
    it: every acknowledged record is there at its offset (the checker), so whatever it
    had appended but not committed was truncated away."""
    chaos = start_chaos_cluster(local_cluster)
    admin = admins(chaos.bootstrap)
    await setup_topic(admin)
    workload = await start_workload(chaos)
    try:
        busiest = busiest_partitions(workload.history.acks)[0]
        states = await describe(admin, TOPIC)
        victim = states[busiest[1]].leader_id
        led = {p: s.leader_epoch for p, s in states.items() if s.leader_id == victim}
        name = chaos.node_name(victim)
        watch = Stopwatch()
        chaos.pause(name)
        try:
            await wait_for_leaders(
                admin,
                TOPIC,
                timeout_s=FAILOVER_TIMEOUT_S,
                partitions=led,
                not_on=[victim],
                epoch_above=led,
            )
            elected_s = watch.elapsed_s()
            await workload.wait_for_progress(
                PROGRESS_ACKS, PROGRESS_TIMEOUT_S, f"while node {victim} is stopped", partitions=led
            )
            # The fault itself: stay stopped for at least twice the lease TTL.
            await asyncio.sleep(max(0.0, 2 * LEASE_TTL_S - watch.elapsed_s()))
        finally:
            chaos.resume(name)
        print(
            f"node {victim} stopped for {watch.elapsed_s():.1f}s; new leaders of {sorted(led)}"
            f" after {elected_s:.1f}s"
        )
        address = chaos.node_address(victim)
        for partition, old_epoch in led.items():
            for epoch, acks in ((old_epoch, storage_pb2.ACKS_ALL), (-1, storage_pb2.ACKS_LEADER)):
                with pytest.raises(BrookError) as refused:
                    await produce_direct(
                        address, TOPIC, partition, [b"stale-leader"], epoch=epoch, acks=acks
                    )
                assert refused.value.reason in FENCED_REASONS, refused.value
        await wait_in_sync(admin, TOPIC, [victim], timeout_s=REJOIN_TIMEOUT_S)
        await workload.wait_for_progress(PROGRESS_ACKS, PROGRESS_TIMEOUT_S, "after SIGCONT")
        # Leadership back to the old leader (its preferred replica), so the final read
        # comes from its log.
        results = await admin.elect_leaders([(TOPIC, p) for p in led], "preferred")
        assert all(not r.HasField("error") or r.error.reason == 0 for r in results), results
        states = await wait_for_leaders(admin, TOPIC, timeout_s=FAILOVER_TIMEOUT_S)
        assert all(states[p].leader_id == victim for p in led), states
        # Whether the old leader had an unreplicated tail to drop depends on timing; say so.
        truncations = chaos.log_lines(name, "truncating")
        print(f"node {victim} truncations: {truncations or 'none (no divergent tail)'}")
        await finish(workload, admin, tmp_path)
    finally:
        await workload.close()


async def test_two_of_three_replicas_down_refuses_acks_all(
    local_cluster: Callable[..., LocalCluster], admins: Callable[[str], Admin], tmp_path: Path
) -> None:
    """kill -9 two of the three nodes: once the ISR is the survivor alone, an acks=all
    produce fails with NOT_ENOUGH_REPLICAS (never succeeds); after both restart and
    rejoin, production resumes and nothing acknowledged is lost."""
    chaos = start_chaos_cluster(local_cluster)
    admin = admins(chaos.bootstrap)
    await setup_topic(admin)
    workload = await start_workload(chaos)
    survivor, *victims = chaos.node_ids
    try:
        for victim in victims:
            chaos.kill(chaos.node_name(victim))

        async def isr_is_survivor() -> bool:
            states = await describe(admin, TOPIC)
            return all(
                s.leader_id == survivor and list(s.isr_ids) == [survivor] for s in states.values()
            )

        await eventually(
            isr_is_survivor, timeout_s=FAILOVER_TIMEOUT_S, what=f"ISR = [{survivor}] everywhere"
        )
        # Every answer the probe got before NOT_ENOUGH_REPLICAS (e.g. NOT_LEADER while the
        # survivor learns the new ISR); a success would be an ack below min ISR.
        answers: list[str] = []
        async with Producer(
            chaos.bootstrap, acks="all", retries=0, request_timeout_ms=3_000
        ) as probe:
            for partition in range(PARTITIONS):

                async def refused(partition: int = partition) -> BrookError | None:
                    """The NOT_ENOUGH_REPLICAS error, or None (not yet) for anything else."""
                    future = await probe.send(TOPIC, b"probe", partition=partition)
                    try:
                        metadata = await future
                    except BrookError as error:
                        answers.append(error.reason)
                        return error if error.reason == "NOT_ENOUGH_REPLICAS" else None
                    answers.append(f"acknowledged at {metadata.offset}")
                    return None

                refusal = await eventually(
                    refused,
                    timeout_s=FAILOVER_TIMEOUT_S,
                    what=f"NOT_ENOUGH_REPLICAS on partition {partition}",
                )
                assert refusal is not None and refusal.reason == "NOT_ENOUGH_REPLICAS"
        assert not [a for a in answers if a.startswith("acknowledged")], answers
        before = workload.acked
        for victim in victims:
            chaos.restart(chaos.node_name(victim))
        await wait_in_sync(admin, TOPIC, timeout_s=REJOIN_TIMEOUT_S)
        during = workload.acked - before
        await workload.wait_for_progress(
            PROGRESS_ACKS, PROGRESS_TIMEOUT_S, "after restarts", partitions=range(PARTITIONS)
        )
        print(f"acks while two nodes were down or restarting: {during}")
        await finish(workload, admin, tmp_path)
    finally:
        await workload.close()


async def test_coordinator_killed_during_leader_failover(
    local_cluster: Callable[..., LocalCluster], admins: Callable[[str], Admin], tmp_path: Path
) -> None:
    """Two coordinators; kill -9 the leader of the busiest partition and the active
    coordinator together: the standby takes the role, elects new leaders (live, epoch
    bumped) for the dead node's partitions, production resumes, and after both come back
    nothing acknowledged is lost."""
    chaos = start_chaos_cluster(local_cluster, coordinators=2)
    admin = admins(chaos.bootstrap)
    await setup_topic(admin)
    workload = await start_workload(chaos)
    try:
        active = await chaos.active_coordinator(admin)
        busiest = busiest_partitions(workload.history.acks)[0]
        states = await describe(admin, TOPIC)
        victim = states[busiest[1]].leader_id
        led = {p: s.leader_epoch for p, s in states.items() if s.leader_id == victim}
        watch = Stopwatch()
        chaos.kill(chaos.node_name(victim))
        chaos.kill(active)
        await wait_for_leaders(
            admin,
            TOPIC,
            timeout_s=FAILOVER_TIMEOUT_S,
            partitions=led,
            not_on=[victim],
            epoch_above=led,
        )
        failover_s = watch.elapsed_s()
        standby = await chaos.active_coordinator(admin)
        assert standby != active
        await workload.wait_for_progress(
            PROGRESS_ACKS, PROGRESS_TIMEOUT_S, "after the coordinator failover", partitions=led
        )
        print(
            f"killed node {victim} and {active}: {standby} elected new leaders of"
            f" {sorted(led)} in {failover_s:.1f}s; production resumed after"
            f" {watch.elapsed_s():.1f}s"
        )
        chaos.restart(active)
        chaos.restart(chaos.node_name(victim))
        await wait_in_sync(admin, TOPIC, timeout_s=REJOIN_TIMEOUT_S)
        await finish(workload, admin, tmp_path)
    finally:
        await workload.close()
