"""TLS cost benchmark (`make bench-tls`): the same produce and consume workload against a
plaintext and a secure (`brook dev --secure`: TLS + mTLS everywhere, etcd too) cluster.

For each mode in turn (plaintext first, then TLS; `--rounds N` alternates them N times to
average out a noisy shared box): start `brook dev` in a temporary folder on free ports,
create one topic per case, run `brook perf produce` then `brook perf consume`, stop the
cluster. The CLI finds the cluster (and, in TLS mode, the CA and the admin certificate)
through the cluster.json `brook dev` writes, so the commands are identical in both modes.
Prints records/s and MB/s per case and mode, and TLS relative to plaintext.

    python bench/tls_bench.py [--nodes 3] [--scale 1.0] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# The launcher command and the bounds of a cluster's start, stop and perf run are the
# cluster bench's: both benches drive `brook dev` and `brook perf` the same way.
from cluster_bench import BROOK, RUN_TIMEOUT_S, START_TIMEOUT_S, STOP_TIMEOUT_S, free_base_port

# (label, partitions, record size, records, acks)
CASES = [
    ("6 partitions, 100 B, acks=1", 6, 100, 500_000, "1"),
    ("6 partitions, 1 KiB, acks=1", 6, 1024, 200_000, "1"),
    ("6 partitions, 1 KiB, acks=all", 6, 1024, 200_000, "all"),
]
RATE = re.compile(r"([\d.]+) records/sec \(([\d.]+) MB/sec\)")


def run(args: list[str], cwd: Path) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=cwd)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[3:])} failed ({done.returncode}): {done.stderr}")
    return done.stdout


def rate(text: str) -> tuple[float, float]:
    lines = [line for line in text.splitlines() if RATE.search(line)]
    if not lines:
        raise RuntimeError(f"no rate in perf output: {text[-500:]}")
    match = RATE.search(lines[-1])
    assert match is not None
    return float(match.group(1)), float(match.group(2))


def one_mode(secure: bool, nodes: int, scale: float, tag: str) -> dict[str, tuple[float, float]]:
    work = Path(tempfile.mkdtemp(prefix=f"brook-tls-bench-{tag}-"))
    data = work / "data"
    base = free_base_port(nodes)
    log_path = work / "dev.log"
    command = [*BROOK, "dev", "--nodes", str(nodes), "--data-dir", str(data),
               "--base-port", str(base), "--no-groups", "--log-level", "WARNING"]  # fmt: skip
    if secure:
        command.append("--secure")
    with open(log_path, "wb") as log:
        dev = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    results: dict[str, tuple[float, float]] = {}
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        cluster_file = data / "cluster.json"
        while not cluster_file.exists():
            if dev.poll() is not None:
                raise RuntimeError(f"brook dev exited: {log_path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster not ready in {START_TIMEOUT_S}s; see {log_path}")
            time.sleep(0.2)  # polling the ready file within a deadline
        description = json.loads(cluster_file.read_text())
        assert ("tls" in description) == secure
        replication = str(min(3, nodes))
        for index, (label, partitions, size, records, acks) in enumerate(CASES):
            topic = f"bench-{index}"
            count = str(max(1000, int(records * scale)))
            run([*BROOK, "topic", "create", topic, "--partitions", str(partitions),
                 "--replication-factor", replication], work)  # fmt: skip
            produce = [
                *BROOK,
                "perf",
                "produce",
                "--topic",
                topic,
                "--num-records",
                count,
                "--record-size",
                str(size),
                "--throughput",
                "-1",
                "--acks",
                acks,
            ]
            out = run(produce, work)
            results[f"produce {label}"] = rate(out)
            out = run([*BROOK, "perf", "consume", "--topic", topic, "--num-records", count], work)
            results[f"consume {label}"] = rate(out)
            for kind in ("produce", "consume"):
                records_s, mb_s = results[f"{kind} {label}"]
                print(f"  [{tag}] {kind} {label}: {records_s:,.0f} records/s, {mb_s:.2f} MB/s",
                      flush=True)  # fmt: skip
        return results
    finally:
        for sig, wait_s in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(dev.pid, sig)
            except ProcessLookupError:
                pass
            try:
                dev.wait(wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply record counts")
    parser.add_argument("--rounds", type=int, default=1, help="plaintext/TLS alternations")
    options = parser.parse_args(argv)
    totals: dict[str, dict[str, list[tuple[float, float]]]] = {"plaintext": {}, "tls": {}}
    for round_index in range(options.rounds):
        for mode in ("plaintext", "tls"):
            tag = f"{mode} #{round_index + 1}"
            print(f"# {tag}: brook dev{' --secure' if mode == 'tls' else ''}, "
                  f"{options.nodes} nodes", flush=True)  # fmt: skip
            for case, value in one_mode(mode == "tls", options.nodes, options.scale, tag).items():
                totals[mode].setdefault(case, []).append(value)
    print("# summary (mean over rounds): plaintext | TLS + mTLS | TLS/plaintext")
    for case, values in totals["plaintext"].items():
        plain = [sum(v[i] for v in values) / len(values) for i in (0, 1)]
        tls_values = totals["tls"][case]
        tls = [sum(v[i] for v in tls_values) / len(tls_values) for i in (0, 1)]
        ratio = tls[0] / plain[0] if plain[0] else float("nan")
        print(f"[{case}] {plain[0]:,.0f} rec/s {plain[1]:.2f} MB/s | "
              f"{tls[0]:,.0f} rec/s {tls[1]:.2f} MB/s | {ratio:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
