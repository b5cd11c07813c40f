"""A long randomized fault campaign: `make chaos` (or `pytest tests/chaos --chaos-duration S`
or `--chaos-faults N`).

Skipped unless --chaos-duration or --chaos-faults is given. A seeded random sequence of
faults (the kinds in `KINDS`, restricted with --chaos-kinds; each kind once first, in a
seeded order, then weighted random draws) hits a cluster of 3 storage
nodes, 2 coordinators and 2 group managers on a private etcd (real processes, real
signals, loopback only) while the chaos workload produces with acks=all and reads live:

- processes: kill -9, SIGSTOP past the lease, SIGTERM restarts of nodes; kill -9 and
  SIGSTOP of the active coordinator; kill -9 of the active group manager;
- etcd: SIGSTOP for 0.5-3 lease TTLs; kill -9 and restart on the same data dir and ports;
- disks: an older segment of a stopped node corrupted in the middle; a stopped node's
  data dir wiped; a full disk through the storage fault hook (tests/chaos/disk.py; skipped
  with a note while the hook does not exist);
- hostile clients (tests/chaos/adversary.py): a forged follower ReplicaFetch (sometimes
  with the leader killed while it runs), Fetch of thousands of nonexistent partitions,
  poison Produce batches, megabyte strings in Admin/Metadata/Group calls.

After each fault the campaign heals (everything running, etcd up) and waits, bounded,
for a healthy cluster: every partition of both topics online with its full ISR, every
workload partition producing again, the side topic taking an acks=all write on each
partition, the group manager answering (and, after a group-manager fault, a group member
committing offsets that never go back). It then reads the tail of every partition and
compares it with the acknowledgements (a cheap per-fault loss check). A cluster that does
not heal is recorded, restarted whole once, and the campaign goes on; a second failure
ends the fault loop. At the end the workload drains, the history checker compares the
histories, and the REPORT (tests/chaos/report.py) is printed and written as JSON (to
--chaos-report FILE, or `chaos-report.json` in the test's tmp dir). The test fails when
anything acknowledged was lost, inconsistent or reordered, a read vanished, the cluster
did not heal, or a hostile request was served. Replay a run with --chaos-seed N.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from brook.client.admin import Admin, GroupAdmin
from brook.client.consumer import Consumer
from brook.client.groups import GroupConsumer
from brook.client.producer import Producer
from brook.client.records import TopicPartition
from brook.errors import BrookError
from tests.chaos import adversary, disk
from tests.chaos.checker import Report
from tests.chaos.faults import LEASE_TTL_S, TOPIC_CONFIGS, ChaosCluster, start_chaos_cluster
from tests.chaos.options import REPORT_KEY, campaign_enabled, campaign_seed, chaos_option
from tests.chaos.report import CampaignLog, Step, build_report, render, write
from tests.chaos.workload import (
    Stopwatch,
    Workload,
    WorkloadConfig,
    wait_for_leaders,
    wait_in_sync,
)
from tests.harness.cluster import LocalCluster
from tests.harness.etcd import EtcdServer
from tests.harness.wait import eventually

pytestmark = [pytest.mark.integration, pytest.mark.chaos_campaign]

TOPIC = "campaign"
PARTITIONS = 6
WORKERS = 6
# A second topic for the hostile produces: a poison batch the cluster wrongly accepts
# must not make the checker's final read of the workload's topic impossible.
SIDE_TOPIC = "campaign-side"
SIDE_PARTITIONS = 3
# Small segments, so every partition has several and a corrupt_segment fault always finds
# an older (non-active) one; data kept forever, so the checker sees every record.
CAMPAIGN_TOPIC_CONFIGS = {**TOPIC_CONFIGS, "segment_bytes": str(16 * 1024), "retention_ms": "-1"}
GROUP_ID = "chaos-probe"
# Bounds (why): healing waits cover a restart on a loaded box plus catch-up; a stuck
# cluster is recorded with its seed instead of hanging the campaign.
HEAL_TIMEOUT_S = 60.0
PROGRESS_TIMEOUT_S = 60.0
PROGRESS_ACKS = 20
PROBE_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 180.0
# The tail check reads this many offsets below each partition's highest acknowledgement.
TAIL_OFFSETS = 200
# The histories stay bounded: each worker sends at most this many records per ~60 000
# it is paced for (the slack keeps workers alive when the campaign runs long)...
RECORDS_PER_WORKER = 60_000
RECORDS_SLACK = 3
# ...and at most this many per second.
MAX_RATE_PER_WORKER = 100.0
# With --chaos-faults, the campaign's length is estimated at this much per fault (to
# pace the workload; a slower run only means fewer records per second than planned).
ESTIMATED_FAULT_S = 25.0


class FaultSkipped(Exception):
    """The fault cannot run in this cluster (yet); the reason goes into the report."""


@dataclass
class Campaign:
    """The cluster, the clients and the random source one campaign shares."""

    chaos: ChaosCluster
    admin: Admin
    workload: Workload
    rng: random.Random
    probe_producer: Producer
    tail_reader: Consumer
    group_admin: GroupAdmin
    group: GroupConsumer
    anomalies: list[str] = field(default_factory=list)
    # The group's committed offsets as last seen: they must never go back.
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    # acks indexed for the tail check, and how many of the history are indexed.
    acked_at: dict[int, dict[int, str]] = field(default_factory=dict)
    indexed: int = 0

    def node(self) -> str:
        return self.chaos.node_name(self.rng.choice(self.chaos.node_ids))

    def node_id(self) -> int:
        return self.rng.choice(self.chaos.node_ids)

    def pause_s(self) -> float:
        return self.rng.uniform(0.5, 3.0) * LEASE_TTL_S

    async def hold(self, seconds: float) -> None:
        """How long a fault lasts: a bounded pause of the fault itself, not a sync."""
        await asyncio.sleep(seconds)

    async def restart(self, name: str) -> None:
        """LocalCluster restarts block while they wait for the ready file: in a thread,
        so the workload keeps producing meanwhile."""
        await asyncio.to_thread(self.chaos.restart, name)

    # -- health ------------------------------------------------------------------------
    async def heal(self, group_fault: bool) -> dict[str, int]:
        """Everything running, every replica in sync, every partition producing, the
        group manager answering; returns the tail check's findings."""
        await asyncio.to_thread(self.chaos.heal)
        for topic in (TOPIC, SIDE_TOPIC):
            await wait_in_sync(self.admin, topic, timeout_s=HEAL_TIMEOUT_S)
        await self.workload.wait_for_progress(
            PROGRESS_ACKS, PROGRESS_TIMEOUT_S, "after healing", partitions=range(PARTITIONS)
        )
        await self.probe_side_topic()
        await eventually(
            self.group_manager_answers, timeout_s=PROBE_TIMEOUT_S, what="group manager answering"
        )
        if group_fault:
            await self.probe_group()
        return await self.tail_check()

    async def probe_side_topic(self) -> None:
        for partition in range(SIDE_PARTITIONS):

            async def produced(partition: int = partition) -> bool:
                future = await self.probe_producer.send(SIDE_TOPIC, b"probe", partition=partition)
                await future
                return True

            await eventually(
                produced,
                timeout_s=PROBE_TIMEOUT_S,
                what=f"an acks=all write to {SIDE_TOPIC}-{partition}",
            )

    async def group_manager_answers(self) -> bool:
        await self.group_admin.list_groups()
        return True

    async def probe_group(self) -> None:
        """The probe member gets records, commits, and reads back offsets that did not
        go back since the last probe."""

        async def committed_now() -> bool:
            records = await self.group.poll(timeout_ms=500)
            if not records and not self.committed:
                return False
            await self.group.commit()
            return True

        await eventually(committed_now, timeout_s=PROBE_TIMEOUT_S, what="a group commit")
        for partition in range(SIDE_PARTITIONS):
            tp = TopicPartition(SIDE_TOPIC, partition)
            value = await self.group.committed(tp)
            if value is None:
                continue
            before = self.committed.get(tp, -1)
            if value < before:
                self.anomalies.append(f"committed offset of {tp} went back {before} -> {value}")
            self.committed[tp] = max(before, value)

    def _index_acks(self) -> None:
        acks = self.workload.history.acks
        for ack in acks[self.indexed :]:
            self.acked_at.setdefault(ack.partition[1], {})[ack.offset] = ack.record_id
        self.indexed = len(acks)

    async def tail_check(self) -> dict[str, int]:
        """Reads each partition's last TAIL_OFFSETS acknowledged offsets: an offset that
        holds another record is inconsistent, one that cannot be read is lost."""
        self._index_acks()
        ranges: dict[TopicPartition, tuple[int, int]] = {}
        for partition, offsets in self.acked_at.items():
            high = max(offsets)
            ranges[TopicPartition(TOPIC, partition)] = (max(0, high - TAIL_OFFSETS), high)
        found: dict[int, dict[int, str]] = {tp.partition: {} for tp in ranges}
        consumer = self.tail_reader
        consumer.assign(ranges)
        for tp, (low, _) in ranges.items():
            consumer.seek(tp, low)
        pending = set(ranges)
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        while pending and time.monotonic() < deadline:
            with contextlib.suppress(BrookError):
                for record in await consumer.poll(timeout_ms=300):
                    found[record.partition][record.offset] = record.value.decode()
            for tp in list(pending):
                with contextlib.suppress(BrookError):
                    if await consumer.position(tp) > ranges[tp][1]:
                        pending.discard(tp)
        lost = inconsistent = 0
        for tp, (low, high) in ranges.items():
            acked = self.acked_at[tp.partition]
            for offset in range(low, high + 1):
                rid = acked.get(offset)
                if rid is None:
                    continue
                stored = found[tp.partition].get(offset)
                if stored is None:
                    lost += 1
                elif stored != rid:
                    inconsistent += 1
        return {"lost": lost, "inconsistent": inconsistent}

    async def hard_heal(self) -> None:
        """The cluster did not heal by itself: etcd up, then every process restarted."""
        await asyncio.to_thread(self.chaos.heal)
        for name in list(self.chaos.cluster.processes):
            await self.restart(name)


# -- process faults ----------------------------------------------------------------------


async def kill_node(c: Campaign) -> str:
    name = c.node()
    c.chaos.kill(name)
    await c.hold(c.rng.uniform(0, 2 * LEASE_TTL_S))
    return f"kill -9 {name}"


async def kill_leader(c: Campaign) -> str:
    states = await wait_for_leaders(c.admin, TOPIC, timeout_s=HEAL_TIMEOUT_S)
    partition = c.rng.randrange(PARTITIONS)
    victim = states[partition].leader_id
    led = {p: s.leader_epoch for p, s in states.items() if s.leader_id == victim}
    c.chaos.kill(c.chaos.node_name(victim))
    watch = Stopwatch()
    await wait_for_leaders(
        c.admin, TOPIC, timeout_s=HEAL_TIMEOUT_S, partitions=led, not_on=[victim], epoch_above=led
    )
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
    await c.restart(name)  # SIGTERM, then start on the same address
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


async def kill_group_manager(c: Campaign) -> str:
    name = await c.chaos.active_group_manager(c.admin)
    c.chaos.kill(name)
    await c.hold(c.rng.uniform(0, 2 * LEASE_TTL_S))
    return f"kill -9 active {name}"


async def preferred_election(c: Campaign) -> str:
    results = await c.admin.elect_leaders([(TOPIC, p) for p in range(PARTITIONS)])
    moved = sum(1 for r in results if r.error.reason == 0)
    return f"preferred election ({moved} moved)"


# -- etcd faults -------------------------------------------------------------------------


async def pause_etcd(c: Campaign) -> str:
    seconds = c.pause_s()
    c.chaos.pause_etcd()
    await c.hold(seconds)
    c.chaos.resume_etcd()
    return f"SIGSTOP etcd for {seconds:.1f}s"


async def kill_etcd(c: Campaign) -> str:
    seconds = c.rng.uniform(0, 2 * LEASE_TTL_S)
    c.chaos.kill_etcd()
    await c.hold(seconds)
    await asyncio.to_thread(c.chaos.start_etcd)  # same data dir and ports
    return f"kill -9 etcd, restarted after {seconds:.1f}s"


# -- disk faults -------------------------------------------------------------------------


async def corrupt_segment(c: Campaign) -> str:
    node_id = c.node_id()
    name = c.chaos.node_name(node_id)
    c.chaos.kill(name)
    done = disk.corrupt_older_segment(c.chaos.data_dir(node_id), TOPIC, c.rng)
    await c.restart(name)
    if done is None:
        raise FaultSkipped("no partition had an older segment yet")
    return f"{name}: {done}, restarted"


async def wipe_data_dir(c: Campaign) -> str:
    node_id = c.node_id()
    name = c.chaos.node_name(node_id)
    c.chaos.kill(name)
    done = disk.wipe(c.chaos.data_dir(node_id))
    await c.restart(name)
    return f"kill -9 {name}, {done}, restarted"


async def disk_full(c: Campaign) -> str:
    supported = disk.hook_support()
    live = disk.FAULTS_FILE_ENV in supported and c.chaos.faults_file is not None
    if not live and disk.FAULTS_ENV not in supported:
        raise FaultSkipped(
            f"storage fault hook not supported yet: nothing in storage/ or services/node/"
            f" reads {disk.FAULTS_ENV} or {disk.FAULTS_FILE_ENV} (contract:"
            f" {disk.FAULTS_ENV}=enospc:<path-prefix>, see tests/chaos/disk.py)"
        )
    node_id = c.node_id()
    name = c.chaos.node_name(node_id)
    logs = c.chaos.data_dir(node_id) / "logs"
    prefix = c.rng.choice([logs, logs / f"{TOPIC}-{c.rng.randrange(PARTITIONS)}"])
    seconds = c.pause_s()
    before = _enospc_lines(c, name)
    if live:
        # The running node's disk fills (every write under prefix fails) and frees again
        # at heal, which empties the control file.
        assert c.chaos.faults_file is not None
        disk.set_control(c.chaos.faults_file, [f"enospc:{prefix}"])
        how = "live (control file)"
    else:
        try:
            await asyncio.to_thread(c.chaos.restart_with_env, name, disk.enospc_env(prefix))
            how = "restarted"
        except (RuntimeError, TimeoutError) as error:
            # Refusing to start on a full disk is allowed; the heal restarts it plainly.
            how = f"did not start ({str(error).splitlines()[0][:120]})"
    await c.hold(seconds)
    seen = _enospc_lines(c, name) > before
    return (
        f"{name} ENOSPC under {prefix.relative_to(logs.parent)} for {seconds:.1f}s, {how}"
        f" ({'ENOSPC in its log' if seen else 'no ENOSPC logged'})"
    )


def _enospc_lines(c: Campaign, name: str) -> int:
    return len(c.chaos.log_lines(name, "No space left") + c.chaos.log_lines(name, "ENOSPC"))


# -- hostile clients ---------------------------------------------------------------------


async def forged_replica_fetch(c: Campaign) -> str:
    states = await wait_for_leaders(c.admin, TOPIC, timeout_s=HEAL_TIMEOUT_S)
    partition = c.rng.randrange(PARTITIONS)
    state = states[partition]
    leader = state.leader_id
    follower = c.rng.choice([r for r in state.replica_ids if r != leader])
    ahead = c.rng.random() < 0.5
    kill = c.rng.random() < 0.5
    seconds = c.pause_s()
    forger = asyncio.create_task(
        adversary.forged_replica_fetch(
            c.chaos.node_address(leader),
            TOPIC,
            partition,
            follower,
            state.leader_epoch,
            seconds,
            ahead=ahead,
        )
    )
    try:
        if kill:
            # Kill the leader while it believes the forged positions: what it
            # acknowledged on their strength must survive on the real replicas.
            await c.hold(seconds * 0.8)
            c.chaos.kill(c.chaos.node_name(leader))
        outcome = await forger
    finally:
        forger.cancel()
    c.anomalies.extend(outcome.anomalies)
    return outcome.note + (f"; leader node-{leader} killed while forging" if kill else "")


async def fetch_nonexistent(c: Campaign) -> str:
    node_id = c.node_id()
    outcome = await adversary.fetch_nonexistent(c.chaos.node_address(node_id), TOPIC)
    c.anomalies.extend(outcome.anomalies)
    return f"node-{node_id}: {outcome.note}"


async def poison_produce(c: Campaign) -> str:
    states = await wait_for_leaders(c.admin, SIDE_TOPIC, timeout_s=HEAL_TIMEOUT_S)
    partition = c.rng.randrange(SIDE_PARTITIONS)
    state = states[partition]
    outcome = await adversary.poison_produce(
        c.chaos.node_address(state.leader_id), SIDE_TOPIC, partition, state.leader_epoch
    )
    c.anomalies.extend(outcome.anomalies)
    return outcome.note


async def huge_strings(c: Campaign) -> str:
    metadata = await c.admin.get_metadata()

    async def cleanup(topic: str) -> None:
        with contextlib.suppress(BrookError):
            await c.admin.delete_topic(topic)

    outcome = await adversary.huge_strings(
        metadata.coordinator.address, metadata.group_manager.address or None, cleanup
    )
    c.anomalies.extend(outcome.anomalies)
    return outcome.note


Fault = Callable[[Campaign], Awaitable[str]]


@dataclass(frozen=True)
class Kind:
    fault: Fault
    weight: int
    # Kinds whose heal also checks a group member's commits.
    group: bool = False


# The campaign's fault kinds by name (the names --chaos-kinds and the report use), with
# their weights: node crashes dominate, as they do in production.
KINDS: dict[str, Kind] = {
    "kill_node": Kind(kill_node, 4),
    "kill_leader": Kind(kill_leader, 4),
    "pause_node": Kind(pause_node, 3),
    "restart_node": Kind(restart_node, 2),
    "kill_two_nodes": Kind(kill_two_nodes, 1),
    "kill_coordinator": Kind(kill_coordinator, 2),
    "pause_coordinator": Kind(pause_coordinator, 1),
    "kill_node_and_coordinator": Kind(kill_node_and_coordinator, 2),
    "kill_group_manager": Kind(kill_group_manager, 2, group=True),
    "preferred_election": Kind(preferred_election, 1),
    "pause_etcd": Kind(pause_etcd, 2, group=True),
    "kill_etcd": Kind(kill_etcd, 2, group=True),
    "corrupt_segment": Kind(corrupt_segment, 2),
    "wipe_data_dir": Kind(wipe_data_dir, 2),
    "disk_full": Kind(disk_full, 1),
    "forged_replica_fetch": Kind(forged_replica_fetch, 1),
    "fetch_nonexistent": Kind(fetch_nonexistent, 1),
    "poison_produce": Kind(poison_produce, 1),
    "huge_strings": Kind(huge_strings, 1),
}


def chosen_kinds(config: pytest.Config) -> dict[str, Kind]:
    names = chaos_option(config, "chaos_kinds")
    if not names:
        return KINDS
    wanted = [n.strip() for n in str(names).split(",") if n.strip()]
    unknown = [n for n in wanted if n not in KINDS]
    if unknown:
        raise pytest.UsageError(f"unknown --chaos-kinds {unknown}; known: {sorted(KINDS)}")
    return {n: KINDS[n] for n in wanted}


async def test_randomized_fault_campaign(
    request: pytest.FixtureRequest,
    local_cluster: Callable[..., LocalCluster],
    etcd_server: EtcdServer,
    admins: Callable[[str], Admin],
    tmp_path: Path,
) -> None:
    """Seeded random faults of every kind, each healed before the next, under acks=all
    production: at the end the checker finds nothing lost, inconsistent, reordered or
    vanished, every fault healed, and no hostile request was served."""
    config = request.config
    if not campaign_enabled(config):
        pytest.skip(
            "the campaign runs only with --chaos-duration SECONDS or --chaos-faults N (make chaos)"
        )
    kinds = chosen_kinds(config)
    fault_count: int | None = chaos_option(config, "chaos_faults")
    duration_s = float(chaos_option(config, "chaos_duration") or 0)
    estimated_s = fault_count * ESTIMATED_FAULT_S if fault_count is not None else duration_s
    seed = campaign_seed(config)
    mode = f"{fault_count} faults" if fault_count is not None else f"{duration_s:g}s"
    print(f"chaos campaign: seed {seed}, {mode}, kinds {sorted(kinds)}")
    report_path = Path(chaos_option(config, "chaos_report") or tmp_path / "chaos-report.json")
    rng = random.Random(seed)
    log = CampaignLog(seed, "faults" if fault_count is not None else "duration")

    chaos = start_chaos_cluster(
        local_cluster,
        coordinators=2,
        groups=2,
        etcd=etcd_server,
        faults_file=tmp_path / "storage-faults.ctl",
    )
    admin = admins(chaos.bootstrap)
    await admin.create_topic(TOPIC, PARTITIONS, 3, CAMPAIGN_TOPIC_CONFIGS)
    await admin.create_topic(SIDE_TOPIC, SIDE_PARTITIONS, 3, CAMPAIGN_TOPIC_CONFIGS)
    for topic in (TOPIC, SIDE_TOPIC):
        await wait_in_sync(admin, topic, timeout_s=HEAL_TIMEOUT_S)
    rate = min(MAX_RATE_PER_WORKER, RECORDS_PER_WORKER / max(1.0, estimated_s))
    workload = Workload(
        chaos.bootstrap,
        WorkloadConfig(
            topic=TOPIC,
            partitions=PARTITIONS,
            workers=WORKERS,
            max_records_per_worker=RECORDS_PER_WORKER * RECORDS_SLACK,
            max_rate_per_worker=rate,
            max_duration_s=RECORDS_SLACK * estimated_s + HEAL_TIMEOUT_S + PROGRESS_TIMEOUT_S,
        ),
    )
    names, weights = zip(*((n, k.weight) for n, k in kinds.items()), strict=True)
    coverage = rng.sample(names, len(names))
    check: Report | None = None
    final_read_error: str | None = None
    started = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        probe_producer = await stack.enter_async_context(
            Producer(
                chaos.bootstrap,
                acks="all",
                retries=5,
                request_timeout_ms=3_000,
                delivery_timeout_ms=10_000,
                client_id="chaos-probe",
            )
        )
        tail_reader = await stack.enter_async_context(Consumer(chaos.bootstrap))
        group_admin = await stack.enter_async_context(GroupAdmin(chaos.bootstrap))
        group = GroupConsumer(
            chaos.bootstrap,
            GROUP_ID,
            topics=[SIDE_TOPIC],
            auto_commit=False,
            auto_offset_reset="earliest",
        )
        await stack.enter_async_context(group)
        stack.push_async_callback(workload.close)
        campaign = Campaign(
            chaos, admin, workload, rng, probe_producer, tail_reader, group_admin, group
        )
        await workload.start()
        await workload.wait_for_progress(
            PROGRESS_ACKS, PROGRESS_TIMEOUT_S, "at start", partitions=range(PARTITIONS)
        )
        await campaign.probe_side_topic()
        await campaign.probe_group()
        started = time.monotonic()
        failed_heals = 0
        while (
            len(log.steps) < fault_count
            if fault_count is not None
            else time.monotonic() - started < duration_s
        ):
            # Every chosen kind once first (in a seeded order), then weighted draws: even a
            # short campaign exercises each kind.
            index = len(log.steps)
            name = coverage[index] if index < len(coverage) else rng.choices(names, weights)[0]
            kind = kinds[name]
            step = Step(
                len(log.steps) + 1, name, round(time.monotonic() - started, 1), time.monotonic()
            )
            log.steps.append(step)
            campaign.anomalies = []
            watch = Stopwatch()
            try:
                step.what = await kind.fault(campaign)
            except FaultSkipped as skipped:
                step.skipped = str(skipped)
            except Exception as error:  # the fault's own waits: the cluster is not well
                step.what = f"fault failed: {error!r}"[:500]
            try:
                step.tail = await campaign.heal(kind.group)
                step.healed_in_s = round(watch.elapsed_s(), 1)
            except Exception as error:
                step.unhealthy = f"{type(error).__name__}: {error}"[:1000]
                print(f"seed {seed}, step {step.step} ({name}): UNHEALTHY: {step.unhealthy}")
                failed_heals += 1
                try:
                    await campaign.hard_heal()
                    step.tail = await campaign.heal(kind.group)
                except Exception as again:
                    print(f"seed {seed}: still unhealthy after restarting everything: {again}")
                    break
            step.anomalies = list(campaign.anomalies)
            print(
                f"[{step.at_s:7.1f}s] step {step.step} {name}: {step.skipped or step.what};"
                f" healed in {step.healed_in_s}s; tail {step.tail};"
                f" anomalies {step.anomalies or 'none'}; {workload.describe_run()}"
            )
        log.ended = time.monotonic()
        incomplete: dict[str, str] = {}
        try:
            await workload.drain(admin, DRAIN_TIMEOUT_S, incomplete)
            check = workload.check()
        except Exception as error:
            final_read_error = f"{type(error).__name__}: {error}"[:2000]
        if incomplete:
            # Its records count as lost (the checker says so); this says why.
            final_read_error = f"partitions not readable to their end: {incomplete}"
        if check is not None and not check.ok:
            workload.dump(tmp_path / "histories.jsonl")
            print(f"histories written to {tmp_path / 'histories.jsonl'}")

    result = build_report(
        log,
        check,
        workload.history.acks,
        workload.history.sent,
        workload.history.failures,
        time.monotonic() - started,
        final_read_error,
    )
    write(result, report_path)
    text = f"{render(result)}\nreport written to {report_path}"
    config.stash[REPORT_KEY] = text
    print(text)
    for reason, example in workload.history.failure_examples.items():
        print(f"failed sends, e.g. {reason}: {example}")
    assert result["ok"], (
        f"seed {seed}: chaos campaign failed (replay with --chaos-seed {seed});"
        f" see the REPORT above and {report_path}"
    )
