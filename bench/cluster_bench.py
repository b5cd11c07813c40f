"""Cluster benchmark (`make bench-cluster`): `brook perf` against a local `brook dev` cluster.

Starts a 3-node cluster with `brook dev` in a temporary folder on free ports, creates one
topic per case (replication factor 3), runs `brook perf produce` for 1 and 6 partitions x
100 B and 1 KiB records with acks=1, then acks=all, and `brook perf consume` on the
6-partition topics, printing each Kafka-format result line with a label. The cluster is
stopped (SIGTERM to its process group, SIGKILL after a bound) however the run ends.

    python bench/cluster_bench.py [--nodes 3] [--scale 1.0] [--keep-data]

`--scale` multiplies the record counts (0.1 for a quick smoke run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BROOK = [sys.executable, "-m", "brook.services.cli"]
# Bounds: a cold cluster (etcd + coordinator + nodes) starts in a few seconds; a loaded
# 2-core box needs more. Each perf run is bounded too, so a wedged cluster cannot hang CI.
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
RUN_TIMEOUT_S = 600.0

# (label, partitions, record size, records, acks)
CASES = [
    ("1 partition, 100 B, acks=1", 1, 100, 1_000_000, "1"),
    ("6 partitions, 100 B, acks=1", 6, 100, 1_000_000, "1"),
    ("1 partition, 1 KiB, acks=1", 1, 1024, 200_000, "1"),
    ("6 partitions, 1 KiB, acks=1", 6, 1024, 200_000, "1"),
    ("6 partitions, 100 B, acks=all", 6, 100, 1_000_000, "all"),
    ("6 partitions, 1 KiB, acks=all", 6, 1024, 200_000, "all"),
]


def ports_free(base: int, nodes: int) -> bool:
    wanted = [base, base + 1, base + 100, base + 101] + [base + 10 + i for i in range(1, nodes + 1)]
    for port in wanted:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_base_port(nodes: int) -> int:
    """A base port whose whole `brook dev` port block is free right now."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            base = int(sock.getsockname()[1])
        if base + 200 < 65535 and ports_free(base, nodes):
            return base
    raise RuntimeError("no free block of ports for brook dev")


def run(args: list[str], timeout_s: float = RUN_TIMEOUT_S) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args[3:])} failed ({done.returncode}): {done.stderr.strip()}"
        )
    return done.stdout


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply record counts")
    parser.add_argument("--keep-data", action="store_true")
    options = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="brook-bench-"))
    data = work / "data"
    base = free_base_port(options.nodes)
    log_path = work / "dev.log"
    print(f"# starting brook dev: {options.nodes} nodes, base port {base}, data in {data}")
    with open(log_path, "wb") as log:
        dev = subprocess.Popen(
            [
                *BROOK,
                "dev",
                "--nodes",
                str(options.nodes),
                "--data-dir",
                str(data),
                "--base-port",
                str(base),
                "--no-groups",
                "--log-level",
                "WARNING",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: one signal stops everything
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        cluster_file = data / "cluster.json"
        while not cluster_file.exists():
            if dev.poll() is not None:
                raise RuntimeError(f"brook dev exited: {log_path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster not ready in {START_TIMEOUT_S}s; see {log_path}")
            time.sleep(0.2)  # polling the ready file within a deadline
        bootstrap = json.loads(cluster_file.read_text())["bootstrap"]
        brook = [*BROOK, "--bootstrap", bootstrap]
        replication = min(3, options.nodes)
        print(f"# bootstrap {bootstrap}, replication factor {replication}")
        results: list[tuple[str, str]] = []
        for index, (label, partitions, size, records, acks) in enumerate(CASES):
            topic = f"bench-{index}"
            count = max(1000, int(records * options.scale))
            run(
                [
                    *brook,
                    "topic",
                    "create",
                    topic,
                    "--partitions",
                    str(partitions),
                    "--replication-factor",
                    str(replication),
                ]
            )
            out = run(
                [
                    *brook,
                    "perf",
                    "produce",
                    "--topic",
                    topic,
                    "--num-records",
                    str(count),
                    "--record-size",
                    str(size),
                    "--throughput",
                    "-1",
                    "--acks",
                    acks,
                ]
            )
            results.append((f"produce {label}", last_line(out)))
            print(f"[produce {label}] {last_line(out)}", flush=True)
            if partitions > 1:
                out = run(
                    [*brook, "perf", "consume", "--topic", topic, "--num-records", str(count)]
                )
                results.append((f"consume {label}", last_line(out)))
                print(f"[consume {label}] {last_line(out)}", flush=True)
        print("# summary")
        for label, line in results:
            print(f"[{label}] {line}")
        return 0
    finally:
        try:
            os.killpg(dev.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            dev.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(dev.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        dev.wait()
        if not options.keep_data:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
