"""Failover benchmark: how long acks=all production stops when a partition leader dies.

What it measures, against a real etcd, a coordinator and 3 storage nodes (real processes
on free loopback ports, data in a temp dir, every server setting at its DEFAULT, so the
node and coordinator lease TTLs are the production ones):

    failover time = leader SIGKILLed -> first acks=all produce acknowledged afterwards

A topic with 1 partition, RF 3, min_insync_replicas 2. Each round: the partition's
leader is killed with SIGKILL; a `brook.client.Producer` (default settings: acks=all,
bounded retries with back-off) sends one record right after the kill and the clock stops
when it is acknowledged, which can only be by the new leader (the old one is dead and the
record was sent after it died). Alongside, DescribeTopic is polled to report when the
coordinator named the new leader ("election"), which separates the server's part from
the client's retry back-off (up to 0.5 s by default). The victim is then restarted and the
round ends once it is back in the ISR, so every round starts from a healthy cluster.
The failover figure includes the node lease expiring in etcd (TTL), the coordinator's
election, the new leader learning it from its etcd watch and the client's metadata
refresh and retry back-off.

Run: `.venv/bin/python bench/failover_bench.py [--rounds 5] [--keep]`. The last line is
machine-readable:

    election (kill -> coordinator names a new leader): median E s (min ..., n=5)
    failover: median X s (min A s, max B s, n=5)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the process harness lives in tests/harness

from brook.client.admin import Admin  # noqa: E402
from brook.client.producer import Producer  # noqa: E402
from tests.harness.cluster import LocalCluster  # noqa: E402
from tests.harness.etcd import EtcdServer  # noqa: E402

TOPIC = "failover-bench"
NODES = (1, 2, 3)
# Bounds (why): with default leases (2 s) a failover takes a few seconds; a restarted
# node catches up within seconds more. Generous, so a slow box reports instead of hanging.
FAILOVER_TIMEOUT_S = 60.0
REJOIN_TIMEOUT_S = 90.0
POLL_S = 0.05


async def partition_state(admin: Admin) -> tuple[int, list[int], list[int]]:
    """(leader, isr, offline replicas) of the topic's partition 0."""
    state = (await admin.describe_topic(TOPIC)).partitions[0]
    return state.leader_id, list(state.isr_ids), list(state.offline_replica_ids)


async def wait_healthy(admin: Admin, timeout_s: float) -> int:
    """Waits until every node is in the ISR and the leader is live; returns the leader."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            leader, isr, offline = await partition_state(admin)
            if leader >= 0 and sorted(isr) == list(NODES) and not offline:
                return leader
        except Exception as error:  # the coordinator may be busy: poll again, bounded
            logging.debug("describe failed: %s", error)
        if time.monotonic() > deadline:
            raise TimeoutError(f"the partition did not get its full ISR within {timeout_s}s")
        await asyncio.sleep(POLL_S)  # polling a condition with a bounded deadline


async def watch_election(admin: Admin, victim: int, started: float) -> float:
    """Seconds from `started` until the coordinator names a leader other than `victim`
    (what etcd says; the client still has to learn it and retry)."""
    deadline = started + FAILOVER_TIMEOUT_S
    while True:
        try:
            leader, _isr, _offline = await partition_state(admin)
            if leader >= 0 and leader != victim:
                return time.monotonic() - started
        except Exception as error:  # the coordinator may be busy: poll again, bounded
            logging.debug("describe failed: %s", error)
        if time.monotonic() > deadline:
            raise TimeoutError(f"no new leader within {FAILOVER_TIMEOUT_S}s")
        await asyncio.sleep(POLL_S)  # polling a condition with a bounded deadline


async def one_round(
    cluster: LocalCluster, admin: Admin, producer: Producer, index: int
) -> tuple[float, float]:
    """(failover seconds, election seconds) of one leader kill."""
    victim = await wait_healthy(admin, REJOIN_TIMEOUT_S)
    # Warm: the producer knows the current leader and has a connection to it.
    await asyncio.wait_for(await producer.send(TOPIC, b"warm", partition=0), FAILOVER_TIMEOUT_S)
    started = time.monotonic()
    cluster.kill(f"node-{victim}", signal.SIGKILL)
    killed_s = time.monotonic() - started
    election = asyncio.ensure_future(watch_election(admin, victim, started))
    try:
        metadata = await asyncio.wait_for(
            await producer.send(TOPIC, f"after-kill-{index}".encode(), partition=0),
            FAILOVER_TIMEOUT_S,
        )
        failover_s = time.monotonic() - started
        election_s = await asyncio.wait_for(election, FAILOVER_TIMEOUT_S)
    finally:
        election.cancel()
    leader, _isr, _offline = await partition_state(admin)
    print(
        f"round {index + 1}: killed leader node {victim} (kill took {killed_s * 1000:.0f} ms);"
        f" new leader node {leader} named after {election_s:.2f} s; first acks=all ack"
        f" after {failover_s:.2f} s at offset {metadata.offset}",
        flush=True,
    )
    if leader == victim:
        raise RuntimeError(f"node {victim} still leads after it was killed")
    cluster.restart(f"node-{victim}")
    await wait_healthy(admin, REJOIN_TIMEOUT_S)
    return failover_s, election_s


async def run(args: argparse.Namespace, base: Path) -> list[tuple[float, float]]:
    etcd = EtcdServer(base / "etcd")
    etcd.start()
    cluster = LocalCluster(etcd.address, base / "cluster", "failoverbench")
    try:
        cluster.add_coordinator("coordinator")
        for node_id in NODES:
            cluster.add_node(node_id)  # default flags: the production lease TTL and limits
        cluster.start()
        bootstrap = cluster.address("coordinator")
        async with Admin(bootstrap) as admin:
            await admin.create_topic(TOPIC, 1, len(NODES), {"min_insync_replicas": "2"})
            async with Producer(bootstrap, acks="all") as producer:
                return [
                    await one_round(cluster, admin, producer, index)
                    for index in range(args.rounds)
                ]
    except BaseException:
        print(cluster.dump_logs(), file=sys.stderr)
        raise
    finally:
        cluster.stop()
        etcd.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="leader kills to time")
    parser.add_argument("--keep", action="store_true", help="keep the data and logs dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    base = Path(tempfile.mkdtemp(prefix="brook-failover-bench-"))
    try:
        rounds = asyncio.run(run(args, base))
    finally:
        if args.keep:
            print(f"logs and data kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    times = [failover for failover, _ in rounds]
    elections = [election for _, election in rounds]
    print(
        f"election (kill -> coordinator names a new leader): median"
        f" {statistics.median(elections):.2f} s (min {min(elections):.2f} s,"
        f" max {max(elections):.2f} s, n={len(elections)})"
    )
    print(
        f"failover: median {statistics.median(times):.2f} s (min {min(times):.2f} s,"
        f" max {max(times):.2f} s, n={len(times)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
