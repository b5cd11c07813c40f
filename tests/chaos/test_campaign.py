"""A long randomized fault campaign: `make chaos` (or `pytest tests/chaos --chaos-duration S`).

Skipped unless --chaos-duration is given. For that long, a seeded random sequence of
faults hits a cluster of 3 storage nodes and 2 coordinators (real processes, real
signals) while the chaos workload produces with acks=all and reads live: kill -9 of a
node, of two nodes, of the active coordinator, of a node and the coordinator together;
SIGSTOP/SIGCONT of a node or of the active coordinator for 0.5-3 lease TTLs; SIGTERM
restarts; preferred-leader elections. After each fault the campaign heals what it broke
and waits (bounded) until every replica is back in the ISR and every partition makes
progress again, so each fault starts from a healthy cluster. At the end the workload
drains and the history checker must find nothing lost, inconsistent, reordered or
vanished. The seed is printed in the session header (and on failure); replay a run with
--chaos-seed N.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from brook.client.admin import Admin
from tests.chaos.faults import LEASE_TTL_S, TOPIC_CONFIGS, ChaosCluster, start_chaos_cluster
from tests.chaos.options import campaign_seed, chaos_option
from tests.chaos.workload import (
    Stopwatch,
    Workload,
    WorkloadConfig,
    drain_and_check,
    wait_for_leaders,
    wait_in_sync,
)
from tests.harness.cluster import LocalCluster
from tests.harness.wait import eventually

pytestmark = [pytest.mark.integration, pytest.mark.chaos_campaign]

TOPIC = "campaign"
PARTITIONS = 6
WORKERS = 6
# Bounds (why): healing waits cover a restart on a loaded box plus catch-up; a stuck
# cluster fails the campaign with its seed instead of hanging it.
HEAL_TIMEOUT_S = 60.0
PROGRESS_TIMEOUT_S = 60.0
PROGRESS_ACKS = 20
# The histories stay bounded: each worker sends at most this many records in total...
MAX_RECORDS_PER_WORKER = 60_000
# ...and at most this many per second.
MAX_RATE_PER_WORKER = 100.0


@dataclass
class Campaign:
    """The cluster, the clients and the random source one campaign shares."""

    chaos: ChaosCluster
    admin: Admin
    workload: Workload
    rng: random.Random

    def node(self) -> str:
        return self.chaos.node_name(self.rng.choice(self.chaos.node_ids))

    def pause_s(self) -> float:
        return self.rng.uniform(0.5, 3.0) * LEASE_TTL_S

    async def hold(self, seconds: float) -> None:
        """How long a fault lasts: a bounded pause of the fault itself, not a sync."""
        await asyncio.sleep(seconds)

    async def heal(self) -> None:
        """Everything running again, every replica in sync, every partition producing."""
        self.chaos.heal()
        await wait_in_sync(self.admin, TOPIC, timeout_s=HEAL_TIMEOUT_S)
        await self.workload.wait_for_progress(
            PROGRESS_ACKS, PROGRESS_TIMEOUT_S, "after healing", partitions=range(PARTITIONS)
        )


async def kill_node(c: Campaign) -> str:
    name = c.node()
    c.chaos.kill(name)
    await c.hold(c.rng.uniform(0, 2 * LEASE_TTL_S))
    return f"kill -9 {name}"


async def kill_leader_and_wait_failover(c: Campaign) -> str:
    states = await wait_for_leaders(c.admin, TOPIC, timeout_s=HEAL_TIMEOUT_S)
    partition = c.rng.randrange(PARTITIONS)
    victim = states[partition].leader_id
    led = {p: s.leader_epoch for p, s in states.items() if s.leader_id == victim}
    c.chaos.kill(c.chaos.node_name(victim))
    watch = Stopwatch()
    await wait_for_leaders(c.admin, TOPIC, timeout_s=HEAL_TIMEOUT_S, partitions=led,
                           not_on=[victim], epoch_above=led)
    return f"kill -9 node-{victim} (leader of {partition}); failover {watch.elapsed_s():.1f}s"


async def kill_two_nodes(c: Campaign) -> str:
    names = c.rng.sample([c.chaos.node_name(n) for n in c.chaos.node_ids], 2)
    for name in names:
        c.chaos.kill(name)
    await c.hold(c.rng.uniform(0, 2 * LEASE_TTL_S))
    return f"kill -9 {' and '.join(names)}"


async def pause_node(c: Campaign) -> str:
    name = c.node()
    seconds = c.pause_s()
    c.chaos.pause(name)
    await c.hold(seconds)
    c.chaos.resume(name)
    return f"SIGSTOP {name} for {seconds:.1f}s"


async def restart_node(c: Campaign) -> str:
    name = c.node()
    c.chaos.restart(name)  # SIGTERM, then start on the same address
    return f"SIGTERM + restart {name}"


async def kill_coordinator(c: Campaign) -> str:
    name = await c.chaos.active_coordinator(c.admin)
    c.chaos.kill(name)
    await c.hold(c.rng.uniform(0, 2 * LEASE_TTL_S))
    return f"kill -9 active {name}"


async def pause_coordinator(c: Campaign) -> str:
    name = await c.chaos.active_coordinator(c.admin)
    seconds = c.pause_s()
    c.chaos.pause(name)
    await c.hold(seconds)
    c.chaos.resume(name)
    return f"SIGSTOP active {name} for {seconds:.1f}s"


async def kill_node_and_coordinator(c: Campaign) -> str:
    coordinator = await c.chaos.active_coordinator(c.admin)
    node = c.node()
    c.chaos.kill(node)
    c.chaos.kill(coordinator)
    await c.hold(c.rng.uniform(0, 2 * LEASE_TTL_S))
    return f"kill -9 {node} and active {coordinator}"


async def preferred_election(c: Campaign) -> str:
    results = await c.admin.elect_leaders([(TOPIC, p) for p in range(PARTITIONS)])
    moved = sum(1 for r in results if r.error.reason == 0)
    return f"preferred election ({moved} moved)"


Fault = Callable[[Campaign], Awaitable[str]]
# (fault, weight): node crashes dominate, as they do in production.
FAULTS: list[tuple[Fault, int]] = [
    (kill_node, 4),
    (kill_leader_and_wait_failover, 4),
    (pause_node, 3),
    (restart_node, 2),
    (kill_two_nodes, 1),
    (kill_coordinator, 2),
    (pause_coordinator, 1),
    (kill_node_and_coordinator, 2),
    (preferred_election, 1),
]


async def test_randomized_fault_campaign(
    request: pytest.FixtureRequest,
    local_cluster: Callable[..., LocalCluster],
    admins: Callable[[str], Admin],
    tmp_path: Path,
) -> None:
    """For --chaos-duration seconds, seeded random faults (kills, stops, restarts of nodes
    and coordinators), each healed before the next, under acks=all production: at the
    end the checker finds nothing lost, inconsistent, reordered or vanished."""
    duration_s = chaos_option(request.config, "chaos_duration")
    if duration_s is None:
        pytest.skip("the campaign runs only with --chaos-duration SECONDS (make chaos)")
    seed = campaign_seed(request.config)
    print(f"chaos campaign: seed {seed}, duration {duration_s:g}s")
    rng = random.Random(seed)
    chaos = start_chaos_cluster(local_cluster, coordinators=2)
    admin = admins(chaos.bootstrap)
    await admin.create_topic(TOPIC, PARTITIONS, 3, TOPIC_CONFIGS)
    await wait_in_sync(admin, TOPIC, timeout_s=HEAL_TIMEOUT_S)
    rate = min(MAX_RATE_PER_WORKER, MAX_RECORDS_PER_WORKER / max(1.0, duration_s))
    workload = Workload(chaos.bootstrap, WorkloadConfig(
        topic=TOPIC, partitions=PARTITIONS, workers=WORKERS,
        max_records_per_worker=MAX_RECORDS_PER_WORKER, max_rate_per_worker=rate,
        max_duration_s=duration_s + HEAL_TIMEOUT_S + PROGRESS_TIMEOUT_S,
    ))
    campaign = Campaign(chaos, admin, workload, rng)
    faults, weights = zip(*FAULTS, strict=True)
    steps = 0
    try:
        await workload.start()
        started = time.monotonic()
        await workload.wait_for_progress(PROGRESS_ACKS, PROGRESS_TIMEOUT_S, "at start",
                                         partitions=range(PARTITIONS))
        while time.monotonic() - started < duration_s:
            fault = rng.choices(faults, weights)[0]
            watch = Stopwatch()
            try:
                what = await fault(campaign)
                await campaign.heal()
            except Exception as error:
                raise AssertionError(
                    f"seed {seed}, step {steps} ({fault.__name__}): {error}") from error
            steps += 1
            print(f"[{time.monotonic() - started:7.1f}s] step {steps}: {what}; healed in"
                  f" {watch.elapsed_s():.1f}s; {workload.describe_run()}")
        await eventually(lambda: _all_running(chaos), timeout_s=1, what="all running")
        report = await drain_and_check(workload, admin, HEAL_TIMEOUT_S * 2,
                                       tmp_path / "histories.jsonl")
        print(f"chaos campaign seed {seed}: {steps} faults in {duration_s:g}s;"
              f" {report.summary()}")
    finally:
        await workload.close()


async def _all_running(chaos: ChaosCluster) -> bool:
    return all(chaos.running(name) for name in chaos.cluster.processes)
