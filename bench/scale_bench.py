"""Scale-out benchmark: how long a new 4th node takes to reach its share, and how exact
the reassignment replication throttle is.

What it measures, against a real etcd, a coordinator (automatic balancing on, its
defaults) and 3 storage nodes (real processes on free loopback ports, data in a temp
dir): a topic of 12 partitions, replication factor 2, is filled with DATA MB of
incompressible 8 KiB records (acks=all); then node 4 is started exactly as a
StatefulSet would start it (`--node-id 4`, nothing else) and the clock runs until

    time to share = node 4 started -> it holds 6 of the 24 replicas, nothing is moving

For each data size, two runs on fresh clusters: unthrottled, and with the replication
throttle at THROTTLE MB/s (set with AlterReplicationThrottle before node 4 starts). In the
throttled run node 4's own DescribeLogDirs sizes are sampled every 0.2 s; the throttle's
accuracy is the bytes node 4 gained over the intervals in which a move was in progress
at both ends, divided by those intervals' time, against the throttle.

Run: `.venv/bin/python bench/scale_bench.py [--sizes 32,128] [--throttle-mb 4] [--keep]`
(`make bench-scale`). One line per run, then a table:

    data 32 MB unthrottled: node 4 at its share in 4.1 s (16 MB copied)
    data 32 MB throttle 4.0 MB/s: node 4 at its share in 6.3 s; measured 3.96 MB/s (0.99x)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the process harness lives in tests/harness

from brook.client.admin import Admin  # noqa: E402
from brook.client.producer import Producer  # noqa: E402
from brook.v1 import storage_pb2, storage_pb2_grpc  # noqa: E402
from tests.harness.cluster import LocalCluster  # noqa: E402
from tests.harness.etcd import EtcdServer  # noqa: E402

MB = 1 << 20
TOPIC = "scale-bench"
PARTITIONS = 12
REPLICATION_FACTOR = 2
VALUE_BYTES = 8 * 1024
# Bounds (why): generous, so a slow box reports instead of hanging.
SHARE_TIMEOUT_S = 600.0
POLL_S = 0.2
NODE_ARGS = ["--lease-ttl-s", "2"]


@dataclass(frozen=True, slots=True)
class Result:
    data_mb: int
    throttle_bytes_per_s: int
    time_to_share_s: float
    copied_bytes: int
    measured_bytes_per_s: float | None


async def fill(bootstrap: str, data_mb: int) -> None:
    records = data_mb * MB // VALUE_BYTES
    async with Producer(bootstrap, acks="all", linger_ms=5, batch_bytes=256 * 1024) as producer:
        pending = []
        for index in range(records):
            pending.append(await producer.send(TOPIC, os.urandom(VALUE_BYTES),
                                               partition=index % PARTITIONS))  # fmt: skip
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)


async def node_size(stub: storage_pb2_grpc.StorageServiceStub) -> int | None:
    """Node 4's bytes of TOPIC; None when a replica's size could not be read this time
    (size_bytes -1: the log was busy changing its segments), so the sample is skipped."""
    response = await stub.DescribeLogDirs(storage_pb2.DescribeLogDirsRequest(topic=TOPIC),
                                          timeout=5.0)  # fmt: skip
    if any(r.size_bytes < 0 for r in response.replicas):
        return None
    return sum(r.size_bytes for r in response.replicas)


async def at_share(admin: Admin) -> bool:
    if await admin.list_reassignments():
        return False
    nodes = await admin.list_nodes()
    row = next((n for n in nodes if n.node_id == 4), None)
    share = PARTITIONS * REPLICATION_FACTOR // 4
    return row is not None and row.replica_count == share


SAMPLES: list[tuple[float, int, int]] = []  # (seconds since node 4 started, size, moving)


async def one_run(base: Path, data_mb: int, throttle_bytes_per_s: int) -> Result:
    etcd = EtcdServer(base / "etcd")
    etcd.start()
    cluster = LocalCluster(etcd.address, base / "cluster", "scalebench")
    try:
        cluster.add_coordinator("coordinator")
        for node_id in (1, 2, 3):
            cluster.add_node(node_id, args=NODE_ARGS)
        cluster.start()
        bootstrap = cluster.address("coordinator")
        async with Admin(bootstrap) as admin:
            await admin.create_topic(TOPIC, PARTITIONS, REPLICATION_FACTOR)
            await fill(bootstrap, data_mb)
            if throttle_bytes_per_s:
                await admin.alter_replication_throttle(throttle_bytes_per_s)
            cluster.add_node(4, args=NODE_ARGS)
            started = time.monotonic()
            cluster.start(["node-4"])
            channel = grpc.aio.insecure_channel(cluster.address("node-4"))
            stub = storage_pb2_grpc.StorageServiceStub(channel)
            gained, moving_s = 0, 0.0
            previous: tuple[float, int, bool] | None = None
            try:
                while True:
                    if time.monotonic() - started > SHARE_TIMEOUT_S:
                        raise TimeoutError(f"node 4 did not reach its share in {SHARE_TIMEOUT_S}s")
                    moves = await admin.list_reassignments()
                    now, size = time.monotonic(), await node_size(stub)
                    moving = any(4 in m.adding_replica_ids for m in moves)
                    if size is not None:
                        SAMPLES.append((now - started, size,
                                        sum(1 for m in moves if 4 in m.adding_replica_ids)))
                        if previous is not None and previous[2] and moving:
                            gained += size - previous[1]
                            moving_s += now - previous[0]
                        previous = (now, size, moving)
                    if not moves and await at_share(admin):
                        break
                    await asyncio.sleep(POLL_S)  # sampling at a fixed period, bounded above
                elapsed = time.monotonic() - started
                copied = (await node_size(stub)) or (previous[1] if previous else 0)
            finally:
                await channel.close()
        measured = gained / moving_s if throttle_bytes_per_s and moving_s > 1.0 else None
        return Result(data_mb, throttle_bytes_per_s, elapsed, copied, measured)
    except BaseException:
        print(cluster.dump_logs(), file=sys.stderr)
        raise
    finally:
        cluster.stop()
        etcd.stop()


def describe(result: Result) -> str:
    where = f"data {result.data_mb} MB " + (
        f"throttle {result.throttle_bytes_per_s / MB:.1f} MB/s" if result.throttle_bytes_per_s
        else "unthrottled")  # fmt: skip
    line = (f"{where}: node 4 at its share in {result.time_to_share_s:.1f} s"
            f" ({result.copied_bytes / MB:.0f} MB copied)")  # fmt: skip
    if result.measured_bytes_per_s is not None:
        ratio = result.measured_bytes_per_s / result.throttle_bytes_per_s
        line += f"; measured {result.measured_bytes_per_s / MB:.2f} MB/s ({ratio:.2f}x)"
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="32,128", help="data sizes in MB, comma-separated")
    parser.add_argument("--throttle-mb", type=float, default=4.0,
                        help="the throttled runs' rate, MB/s per node")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the data and logs dirs")
    parser.add_argument("--samples", action="store_true",
                        help="print node 4's size samples of throttled runs")  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    throttle = int(args.throttle_mb * MB)
    results = []
    for data_mb in sizes:
        for rate in (0, throttle):
            base = Path(tempfile.mkdtemp(prefix="brook-scale-bench-"))
            try:
                result = asyncio.run(one_run(base, data_mb, rate))
            finally:
                if args.keep:
                    print(f"logs and data kept in {base}")
                else:
                    shutil.rmtree(base, ignore_errors=True)
            print(describe(result), flush=True)
            if args.samples and rate:
                for at, size, moving in SAMPLES:
                    print(f"  {at:7.2f} s {size:>12} bytes, {moving} moves onto node 4")
            SAMPLES.clear()
            results.append(result)
    print()
    print("| data | throttle | time to share | copied to node 4 | measured rate | accuracy |")
    print("|---|---|---|---|---|---|")
    for r in results:
        rate = f"{r.throttle_bytes_per_s / MB:.1f} MB/s" if r.throttle_bytes_per_s else "none"
        measured = (f"{r.measured_bytes_per_s / MB:.2f} MB/s" if r.measured_bytes_per_s
                    else "-")  # fmt: skip
        accuracy = (f"{r.measured_bytes_per_s / r.throttle_bytes_per_s:.2f}x"
                    if r.measured_bytes_per_s else "-")  # fmt: skip
        print(f"| {r.data_mb} MB | {rate} | {r.time_to_share_s:.1f} s |"
              f" {r.copied_bytes / MB:.0f} MB | {measured} | {accuracy} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
