"""Consumer-group benchmark: rebalance time and offset-commit throughput of the group manager.

What it measures, against a real etcd and a real group manager process (both started
here, on free loopback ports, data in a temp dir):

  1. rebalance on join: a group of N simulated members (raw Heartbeat calls that obey the
     protocol: they drop what the answer no longer lists and report it on the next
     heartbeat, sent at once) is stable on N * --partitions-per-member partitions; one
     more member joins; the time until DescribeGroup reports STABLE again with the
     newcomer owning its share. Repeated --repeats times (the newcomer leaves in between),
     median and max reported, for each N in --members.
  2. commit throughput: --committers concurrent tasks commit offsets (4 partitions per
     commit, each task its own partitions) to --groups groups for --commit-seconds, as
     fast as the answers come back. Reported: acknowledged commits/s, latency p50/p99, and
     the etcd write transactions/s behind them (the etcd revision grows by one per write
     transaction, and only the group manager writes meanwhile). Run once with the
     manager's default commit linger (5 ms) and once with 0 (flush as soon as the flusher
     is free; commits still coalesce while a flush is in flight).
  3. the GroupStore alone, in this process (no gRPC): --store-committers tasks commit 4
     offsets each in a loop; its coalescing ceiling on this etcd.

Run: `.venv/bin/python bench/groups_bench.py` (add --help for the knobs). The last lines
are machine-readable:

    groups rebalance join N=10: median X ms, max Y ms
    groups store only (M committers, no gRPC): C commits/s, W etcd txns/s (K commits per txn)
    groups commits linger=5ms: C commits/s, W etcd txns/s (K commits per txn), p50 A ms, p99 B ms
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import grpc

from brook.services.metadata import MetadataStore, PartitionRecord, TopicRecord
from brook.services.metadata.group_store import GroupStore
from brook.v1 import common_pb2, groups_pb2, groups_pb2_grpc

REPO = Path(__file__).resolve().parents[1]
ETCD = os.environ.get("BROOK_ETCD", shutil.which("etcd") or "/usr/bin/etcd")
START_TIMEOUT_S = 30.0
STABLE_TIMEOUT_S = 60.0
POLL_S = 0.01
CLUSTER = "bench"


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def start_etcd(base: Path) -> tuple[subprocess.Popen[bytes], str]:
    client_port, peer_port = free_ports(2)
    client = f"http://127.0.0.1:{client_port}"
    peer = f"http://127.0.0.1:{peer_port}"
    process = subprocess.Popen(
        [
            ETCD,
            "--name",
            "bench",
            "--data-dir",
            str(base / "etcd"),
            "--listen-client-urls",
            client,
            "--advertise-client-urls",
            client,
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
            "--initial-cluster",
            f"bench={peer}",
            "--log-level",
            "warn",
            "--logger",
            "zap",
        ],
        stdout=open(base / "etcd.log", "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{client}/health", timeout=1) as reply:
                if b"true" in reply.read():
                    return process, f"127.0.0.1:{client_port}"
        time.sleep(0.05)  # polling etcd's health with a bounded deadline
    stop(process)
    raise RuntimeError("etcd did not start")


def start_manager(base: Path, etcd: str, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    ready = base / f"groups-{uuid.uuid4().hex[:6]}.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "brook.services.groups.main",
            "--listen",
            "127.0.0.1:0",
            "--etcd",
            etcd,
            "--cluster-name",
            CLUSTER,
            "--ready-file",
            str(ready),
            "--log-level",
            "WARNING",
            *extra,
        ],
        stdout=open(base / "groups.log", "ab"),
        stderr=subprocess.STDOUT,
        cwd=REPO,
        start_new_session=True,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready.exists():
            return process, json.loads(ready.read_text())["address"]
        if process.poll() is not None:
            raise RuntimeError(f"group manager exited; see {base / 'groups.log'}")
        time.sleep(0.05)  # polling the ready file with a bounded deadline
    stop(process)
    raise RuntimeError("group manager did not start")


def stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


async def create_topic(store: MetadataStore, name: str, partitions: int) -> None:
    record = TopicRecord(name, uuid.uuid4().hex, partitions, 1)
    await store.create_topic(
        record, [PartitionRecord(name, p, record.topic_id, (1,)) for p in range(partitions)]
    )


async def etcd_revision(store: MetadataStore) -> int:
    response = await store.txn([], [])
    return int(response.header.revision)


# -- rebalance ------------------------------------------------------------------------------
class SimMember:
    """A member driven by raw heartbeats that follows the protocol promptly."""

    def __init__(self, stub: Any, group: str, topic: str) -> None:
        self.stub = stub
        self.group = group
        self.topic = topic
        self.member_id = ""
        self.epoch = 0
        self.owned: set[tuple[str, int]] = set()
        self.task: asyncio.Task[None] | None = None

    async def heartbeat(self) -> Any:
        by_topic: dict[str, list[int]] = {}
        for topic, partition in sorted(self.owned):
            by_topic.setdefault(topic, []).append(partition)
        response = await self.stub.Heartbeat(
            groups_pb2.HeartbeatRequest(
                group_id=self.group,
                member_id=self.member_id,
                member_epoch=self.epoch,
                subscribed_topic_names=[self.topic],
                session_timeout_ms=30_000,
                owned_partitions=[
                    common_pb2.TopicPartitions(topic=t, partitions=ps) for t, ps in by_topic.items()
                ],
            ),
            timeout=10,
        )
        self.member_id, self.epoch = response.member_id, response.member_epoch
        return response

    async def run(self) -> None:
        while True:
            response = await self.heartbeat()
            assignment = {(tp.topic, p) for tp in response.assignment for p in tp.partitions}
            revoked = bool(self.owned - assignment)
            self.owned = assignment
            if not revoked:  # after a revocation the member reports at once
                await asyncio.sleep(response.heartbeat_interval_ms / 1000)

    def start(self) -> None:
        self.task = asyncio.ensure_future(self.run())

    async def leave(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await self.task
        with contextlib.suppress(grpc.aio.AioRpcError):
            await self.stub.Heartbeat(
                groups_pb2.HeartbeatRequest(
                    group_id=self.group, member_id=self.member_id, member_epoch=-1
                ),
                timeout=10,
            )
        self.member_id, self.epoch, self.owned = "", 0, set()


async def wait_stable(
    stub: Any,
    group: str,
    members: int,
    partitions: int,
    share: int | None = None,
    newcomer: SimMember | None = None,
) -> None:
    """Until the group is STABLE with `members` members owning all `partitions` (and the
    newcomer, if any, at least `share` of them)."""
    deadline = time.monotonic() + STABLE_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            described = (
                await stub.DescribeGroup(
                    groups_pb2.DescribeGroupRequest(group_id=group), timeout=10
                )
            ).group
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:  # not created by a join yet
                raise
            await asyncio.sleep(POLL_S)
            continue
        owned = sum(len(tp.partitions) for m in described.members for tp in m.assignment)
        if (
            described.state == groups_pb2.GROUP_STATE_STABLE
            and len(described.members) == members
            and owned == partitions
        ):
            if newcomer is None or share is None or len(newcomer.owned) >= share:
                return
        await asyncio.sleep(POLL_S)  # polling the group state with a bounded deadline
    raise TimeoutError(f"group {group} not stable with {members} members")


async def bench_join(
    stub: Any, store: MetadataStore, members: int, per_member: int, repeats: int
) -> list[float]:
    topic = f"join-{members}"
    partitions = members * per_member
    await create_topic(store, topic, partitions)
    group = f"join-{members}"
    crowd = [SimMember(stub, group, topic) for _ in range(members)]
    for member in crowd:
        member.start()
    times: list[float] = []
    try:
        await wait_stable(stub, group, members, partitions)
        newcomer = SimMember(stub, group, topic)
        for _ in range(repeats):
            started = time.monotonic()
            newcomer.start()
            await wait_stable(
                stub, group, members + 1, partitions, partitions // (members + 1), newcomer
            )
            times.append(time.monotonic() - started)
            await newcomer.leave()
            await wait_stable(stub, group, members, partitions)
    finally:
        for member in crowd:
            await member.leave()
    return times


# -- commits ----------------------------------------------------------------------------------
async def bench_commits(
    stub: Any, store: MetadataStore, topic: str, committers: int, groups: int, seconds: float
) -> dict[str, float]:
    latencies: list[float] = []
    stop_at = time.monotonic() + seconds

    async def committer(index: int) -> None:
        group = f"commits-{index % groups}"
        base = (index // groups) * 4
        offset = 0
        while time.monotonic() < stop_at:
            offset += 1
            started = time.monotonic()
            await stub.CommitOffsets(
                groups_pb2.CommitOffsetsRequest(
                    group_id=group,
                    member_epoch=-1,
                    offsets=[
                        groups_pb2.OffsetCommit(topic=topic, partition=base + p, offset=offset)
                        for p in range(4)
                    ],
                ),
                timeout=10,
            )
            latencies.append(time.monotonic() - started)

    before = await etcd_revision(store)
    started = time.monotonic()
    await asyncio.gather(*(committer(i) for i in range(committers)))
    elapsed = time.monotonic() - started
    txns = await etcd_revision(store) - before
    latencies.sort()
    return {
        "commits_per_s": len(latencies) / elapsed,
        "offsets_per_s": 4 * len(latencies) / elapsed,
        "etcd_txns_per_s": txns / elapsed,
        "commits_per_txn": len(latencies) / max(1, txns),
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
    }


async def wait_ready(stub: Any, topic: str) -> None:
    """Until the manager is active and knows `topic` (a commit to it succeeds)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            response = await stub.CommitOffsets(
                groups_pb2.CommitOffsetsRequest(
                    group_id="ready-probe",
                    member_epoch=-1,
                    offsets=[groups_pb2.OffsetCommit(topic=topic, partition=0, offset=0)],
                ),
                timeout=10,
            )
            if not response.results[0].HasField("error"):
                return
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE:  # standby: not active yet
                raise
        if time.monotonic() > deadline:
            raise TimeoutError("the group manager never became ready")
        await asyncio.sleep(0.05)  # polling a condition with a bounded deadline


async def bench_store(
    store: MetadataStore, committers: int, groups: int, seconds: float
) -> dict[str, float]:
    """The GroupStore alone (no gRPC, in this process): its coalescing ceiling."""
    group_store = GroupStore(store, flush_interval_ms=5)
    await group_store.start()
    stop_at = time.monotonic() + seconds
    done = 0

    async def committer(index: int) -> None:
        nonlocal done
        group = f"store-{index % groups}"
        offset = 0
        while time.monotonic() < stop_at:
            offset += 1
            value = json.dumps({"offset": offset}).encode()
            await group_store.commit_offsets(
                group, {("store", (index // groups) * 4 + p): value for p in range(4)}
            )
            done += 1

    try:
        started = time.monotonic()
        await asyncio.gather(*(committer(i) for i in range(committers)))
        elapsed = time.monotonic() - started
    finally:
        await group_store.stop()
    return {
        "commits_per_s": done / elapsed,
        "etcd_txns_per_s": group_store.stats.txns / elapsed,
        "commits_per_txn": done / max(1, group_store.stats.txns),
        "flushes_per_s": group_store.stats.flushes / elapsed,
    }


async def run(args: argparse.Namespace, base: Path, etcd: str) -> dict[str, Any]:
    store = MetadataStore(etcd, cluster_name=CLUSTER)
    await store.connect()
    results: dict[str, Any] = {}
    manager, address = start_manager(
        base, etcd, "--heartbeat-interval-ms", str(args.heartbeat_interval_ms)
    )
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = groups_pb2_grpc.GroupServiceStub(channel)
            for members in args.members:
                times = await bench_join(
                    stub, store, members, args.partitions_per_member, args.repeats
                )
                results[f"join_{members}"] = times
                print(
                    f"groups rebalance join N={members}: median "
                    f"{1000 * statistics.median(times):.0f} ms, max {1000 * max(times):.0f} ms",
                    flush=True,
                )
            topic = "commits"
            await create_topic(store, topic, 4 * args.committers)
            await wait_ready(stub, topic)
            results["commits_linger_5ms"] = await bench_commits(
                stub, store, topic, args.committers, args.groups, args.commit_seconds
            )
    finally:
        stop(manager)
    manager, address = start_manager(base, etcd, "--commit-flush-interval-ms", "0")
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = groups_pb2_grpc.GroupServiceStub(channel)
            await wait_ready(stub, "commits")
            results["commits_linger_0ms"] = await bench_commits(
                stub, store, "commits", args.committers, args.groups, args.commit_seconds
            )
    finally:
        stop(manager)
        await store.close()
    store = MetadataStore(etcd, cluster_name=CLUSTER)
    await store.connect()
    try:
        results["store_only"] = await bench_store(
            store, args.store_committers, args.groups, args.commit_seconds
        )
    finally:
        await store.close()
    r = results["store_only"]
    print(
        f"groups store only ({args.store_committers} committers, no gRPC):"
        f" {r['commits_per_s']:.0f} commits/s, {r['etcd_txns_per_s']:.0f} etcd txns/s"
        f" ({r['commits_per_txn']:.1f} commits per txn)",
        flush=True,
    )
    for name, linger in (("commits_linger_5ms", 5), ("commits_linger_0ms", 0)):
        r = results[name]
        print(
            f"groups commits linger={linger}ms: {r['commits_per_s']:.0f} commits/s,"
            f" {r['etcd_txns_per_s']:.0f} etcd txns/s ({r['commits_per_txn']:.1f} commits per"
            f" txn), p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms",
            flush=True,
        )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--members",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[10, 100],
        help="group sizes to join, e.g. 10,100",
    )
    parser.add_argument("--partitions-per-member", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--heartbeat-interval-ms", type=int, default=1000)
    parser.add_argument("--committers", type=int, default=64)
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--store-committers", type=int, default=1000)
    parser.add_argument("--commit-seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, help="also write the results here as JSON")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="brook-groups-bench-"))
    etcd_process, etcd = start_etcd(base)
    try:
        results = asyncio.run(run(args, base, etcd))
    finally:
        stop(etcd_process)
        shutil.rmtree(base, ignore_errors=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
