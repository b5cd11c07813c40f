"""Peer benchmark: Apache Kafka on this machine, measured with Kafka's own perf tools,
next to Brook measured with `brook perf` (which prints Kafka's final-line format).

Kafka: formats a KRaft storage folder for one combined broker+controller on free loopback
ports in a temporary folder, starts `kafka.Kafka` (-Xmx1G, the JVM flags of
`kafka-server-start.sh`), waits (bounded) until the broker logs that it started, creates
one topic per case with `TopicCommand` (replication factor 1), and runs
`org.apache.kafka.tools.ProducerPerformance` then `ConsumerPerformance` on it (the classes
behind `kafka-producer-perf-test.sh` / `kafka-consumer-perf-test.sh`). The broker is
stopped (SIGTERM to its process group, SIGKILL after a bound) and the folder removed
however the run ends.

Brook (`--with-brook`, after Kafka is stopped; never both at once on a 2-core box): starts
`brook dev --nodes 1` on free ports in a temporary folder and runs the same matrix with
`brook topic create` (RF 1), `brook perf produce` and `brook perf consume`, then prints a
side-by-side table.

Matrix: 1 and 6 partitions x 100 B and 1 KiB records, acks=1, 1,000,000 records of 100 B
and 300,000 of 1 KiB (times --scale).

Producer settings given to Kafka, chosen to match Brook's client defaults
(client/defaults.py) so that both batch the same way:
    linger.ms=5            Brook LINGER_MS (also Kafka 4's own default)
    batch.size=1048576     Brook BATCH_BYTES (Kafka's default is 16384)
    buffer.memory=67108864 Brook BUFFER_MEMORY_BYTES (Kafka's default is 32 MiB)
    max.request.size=16777216  Brook MAX_REQUEST_BYTES (Kafka's default is 1 MiB)
Everything else is Kafka's default (max.in.flight.requests.per.connection=5 as in Brook,
compression none as in Brook; idempotence is off because acks=1). `--kafka-stock-producer`
drops the four overrides to measure Kafka exactly as shipped. Broker and consumer use
Kafka's defaults (no fsync per write: Kafka leaves flushing to the OS page cache, whereas
Brook's storage fsyncs every second by default).

    mvn -q -f bench/kafka/pom.xml dependency:copy-dependencies   # once: jars into lib/
    .venv/bin/python bench/kafka/run_kafka_bench.py [--with-brook] [--scale 1.0]

Standard library only (plus `java` on PATH or in JAVA_HOME).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_LIB = HERE / "lib"

# Bounds. A cold JVM broker starts in ~5-15 s; a loaded 2-core box needs more. Each tool
# run is bounded too, so a wedged broker or cluster cannot hang the benchmark.
KAFKA_START_TIMEOUT_S = 180.0
BROOK_START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
TOOL_TIMEOUT_S = 120.0
RUN_TIMEOUT_S = 1200.0
POLL_INTERVAL_S = 0.2

# (partitions, record size, records at --scale 1); acks is 1 for every case.
CASES: list[tuple[int, int, int]] = [
    (1, 100, 1_000_000),
    (6, 100, 1_000_000),
    (1, 1024, 300_000),
    (6, 1024, 300_000),
]
ACKS = "1"

# Producer overrides that make Kafka batch like Brook's client (see the module docstring).
BROOK_LIKE_PRODUCER = {
    "linger.ms": "5",
    "batch.size": str(1 << 20),
    "buffer.memory": str(64 << 20),
    "max.request.size": str(16 << 20),
}

# What `kafka-server-start.sh` and `kafka-run-class.sh` pass to the JVM.
KAFKA_JVM_PERF = [
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:MaxInlineLevel=15",
    "-Djava.awt.headless=true",
]
BROKER_HEAP = ["-Xmx1G", "-Xms1G"]
# kafka-producer-perf-test.sh / kafka-consumer-perf-test.sh set -Xmx512M; the other
# tools run with kafka-run-class.sh's -Xmx256M.
PERF_TOOL_HEAP = ["-Xmx512M"]
TOOL_HEAP = ["-Xmx256M"]

PRODUCE_RE = re.compile(
    r"(?P<count>\d+) records sent, (?P<rps>[\d.]+) records/sec \((?P<mbps>[\d.]+) MB/sec\),"
    r" (?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency,"
    r" (?P<p50>\d+) ms 50th, (?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th,"
    r" (?P<p999>\d+) ms 99\.9th"
)
BROOK_CONSUME_RE = re.compile(
    r"(?P<count>\d+) records consumed, (?P<rps>[\d.]+) records/sec \((?P<mbps>[\d.]+) MB/sec\)"
)
READY_MARKER = "Kafka Server started"


class BenchError(RuntimeError):
    """A step of the benchmark failed; the message says which and shows its output."""


@dataclass
class Result:
    system: str  # "kafka" | "brook"
    action: str  # "produce" | "consume"
    partitions: int
    size: int
    line: str
    records_per_s: float | None = None
    mb_per_s: float | None = None
    p99_ms: int | None = None
    extra: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def label(self) -> str:
        return f"{self.system} {self.action} p={self.partitions} size={self.size} acks={ACKS}"


# -- helpers ---------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port free right now (the OS picks it; tiny race until the user binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def run(args: list[str], timeout_s: float, what: str) -> str:
    """Runs a command to completion (bounded) and returns its stdout, or raises BenchError."""
    try:
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{what}: no result in {timeout_s:.0f}s") from exc
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip())[-2000:]
        raise BenchError(f"{what} failed (exit {done.returncode}): {tail}")
    return done.stdout


def stop_group(proc: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM to the process group, SIGKILL if it is still there after `timeout_s`."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        print(f"# pid {proc.pid} ignored SIGTERM for {timeout_s:.0f}s: SIGKILL", flush=True)
    try:
        # Also reaps children that outlived the group leader.
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def wait_until(
    ready: Callable[[], bool],
    proc: subprocess.Popen[bytes],
    timeout_s: float,
    what: str,
    log_path: Path,
) -> None:
    """Polls `ready` until true; fails early if `proc` exits, or after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if proc.poll() is not None:
            raise BenchError(f"{what} exited ({proc.returncode}): {tail_of(log_path)}")
        if time.monotonic() > deadline:
            raise BenchError(f"{what} not ready in {timeout_s:.0f}s: {tail_of(log_path)}")
        time.sleep(POLL_INTERVAL_S)  # polling a condition within a deadline


def tail_of(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


@contextmanager
def temp_dir(prefix: str, keep: bool) -> Iterator[Path]:
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield work
    finally:
        if keep:
            print(f"# kept {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)


def record_count(records: int, scale: float) -> int:
    return max(1000, int(records * scale))


def parse_produce(result: Result) -> None:
    match = PRODUCE_RE.search(result.line)
    if match is None:
        result.error = result.error or "unparsed output"
        return
    result.records_per_s = float(match["rps"])
    result.mb_per_s = float(match["mbps"])
    result.p99_ms = int(match["p99"])


# -- Kafka -----------------------------------------------------------------------------


def find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise BenchError("java not found: install a JDK 17+ or set JAVA_HOME")
    return found


def kafka_cluster_id() -> str:
    """A Kafka Uuid string: 16 random bytes, URL-safe base64 without padding. Kafka's own
    generator skips ids starting with '-' (they read as options on a command line)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def write_kafka_config(work: Path, broker_port: int, controller_port: int) -> Path:
    """One combined broker+controller (KRaft) with a static one-voter quorum."""
    config = work / "server.properties"
    config.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{broker_port},"
                f"CONTROLLER://127.0.0.1:{controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{broker_port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                f"log.dirs={work / 'data'}",
                # A single broker: internal topics must fit on it.
                "offsets.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                # The consumer perf tool joins a fresh group per run; no reason to wait 3 s.
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=false",
                "",
            ]
        )
    )
    return config


def write_log4j(work: Path) -> tuple[Path, Path]:
    """log4j2 configs: the broker logs INFO to a file (as shipped); tools WARN to stderr."""
    broker = work / "log4j2-broker.properties"
    broker.write_text(
        "\n".join(
            [
                "status = warn",
                "appender.file.type = File",
                "appender.file.name = FILE",
                f"appender.file.fileName = {work / 'server.log'}",
                "appender.file.layout.type = PatternLayout",
                "appender.file.layout.pattern = [%d] %p %m (%c)%n",
                "rootLogger.level = INFO",
                "rootLogger.appenderRef.file.ref = FILE",
                "",
            ]
        )
    )
    tools = work / "log4j2-tools.properties"
    tools.write_text(
        "\n".join(
            [
                "status = warn",
                "appender.err.type = Console",
                "appender.err.name = STDERR",
                "appender.err.target = SYSTEM_ERR",
                "appender.err.layout.type = PatternLayout",
                "appender.err.layout.pattern = [%d] %p %m (%c)%n",
                "rootLogger.level = WARN",
                "rootLogger.appenderRef.err.ref = STDERR",
                "",
            ]
        )
    )
    return broker, tools


class KafkaRunner:
    """Runs the matrix against one local Kafka broker; `results` collects every line."""

    def __init__(self, lib: Path, scale: float, stock_producer: bool, keep: bool) -> None:
        self.lib = lib
        self.scale = scale
        self.stock_producer = stock_producer
        self.keep = keep
        self.java = find_java()
        self.classpath = str(lib / "*")
        self.results: list[Result] = []

    def java_cmd(self, heap: list[str], log4j: Path, main: str, *args: str) -> list[str]:
        return [
            self.java,
            *heap,
            *KAFKA_JVM_PERF,
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            self.classpath,
            main,
            *args,
        ]

    def run_all(self) -> list[Result]:
        with temp_dir("kafka-bench-", self.keep) as work:
            broker_port, controller_port = free_port(), free_port()
            while controller_port == broker_port:
                controller_port = free_port()
            config = write_kafka_config(work, broker_port, controller_port)
            broker_log4j, tools_log4j = write_log4j(work)
            bootstrap = f"127.0.0.1:{broker_port}"
            run(
                self.java_cmd(
                    TOOL_HEAP,
                    tools_log4j,
                    "kafka.tools.StorageTool",
                    "format",
                    "--config",
                    str(config),
                    "--cluster-id",
                    kafka_cluster_id(),
                ),
                TOOL_TIMEOUT_S,
                "kafka-storage format",
            )
            out_path = work / "kafka.out"
            print(f"# starting Kafka broker on {bootstrap} (controller {controller_port})")
            with open(out_path, "wb") as out:
                broker = subprocess.Popen(
                    self.java_cmd(
                        BROKER_HEAP,
                        broker_log4j,
                        "kafka.Kafka",
                        str(config),
                    ),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=work,
                    start_new_session=True,  # its own group: one signal stops it all
                )
            try:
                server_log = work / "server.log"
                start = time.monotonic()
                wait_until(
                    lambda: READY_MARKER in tail_of(server_log, 1 << 20),
                    broker,
                    KAFKA_START_TIMEOUT_S,
                    "Kafka broker",
                    server_log,
                )
                print(f"# Kafka broker ready in {time.monotonic() - start:.1f}s", flush=True)
                for index, (partitions, size, records) in enumerate(CASES):
                    self.run_case(
                        bootstrap, tools_log4j, f"kafka-bench-{index}", partitions, size, records
                    )
                    if broker.poll() is not None:
                        raise BenchError(f"Kafka broker died: {tail_of(server_log)}")
            finally:
                stop_group(broker)
        return self.results

    def run_case(
        self, bootstrap: str, log4j: Path, topic: str, partitions: int, size: int, records: int
    ) -> None:
        count = record_count(records, self.scale)
        run(
            self.java_cmd(
                TOOL_HEAP,
                log4j,
                "org.apache.kafka.tools.TopicCommand",
                "--bootstrap-server",
                bootstrap,
                "--create",
                "--topic",
                topic,
                "--partitions",
                str(partitions),
                "--replication-factor",
                "1",
            ),
            TOOL_TIMEOUT_S,
            f"kafka-topics --create {topic}",
        )
        props = {"acks": ACKS}
        if not self.stock_producer:
            props.update(BROOK_LIKE_PRODUCER)
        produce = Result("kafka", "produce", partitions, size, "")
        try:
            out = run(
                self.java_cmd(
                    PERF_TOOL_HEAP,
                    log4j,
                    "org.apache.kafka.tools.ProducerPerformance",
                    "--bootstrap-server",
                    bootstrap,
                    "--topic",
                    topic,
                    "--num-records",
                    str(count),
                    "--record-size",
                    str(size),
                    "--throughput",
                    "-1",
                    "--command-property",
                    *(f"{key}={value}" for key, value in props.items()),
                ),
                RUN_TIMEOUT_S,
                f"kafka-producer-perf-test {topic}",
            )
            produce.line = last_line(out)
            parse_produce(produce)
        except BenchError as exc:
            produce.error = str(exc)
        self.report(produce)
        if produce.error is not None:
            return
        consume = Result("kafka", "consume", partitions, size, "")
        try:
            out = run(
                self.java_cmd(
                    PERF_TOOL_HEAP,
                    log4j,
                    "org.apache.kafka.tools.ConsumerPerformance",
                    "--bootstrap-server",
                    bootstrap,
                    "--topic",
                    topic,
                    "--num-records",
                    str(count),
                    "--timeout",
                    "60000",
                ),
                RUN_TIMEOUT_S,
                f"kafka-consumer-perf-test {topic}",
            )
            parse_kafka_consume(consume, out)
        except BenchError as exc:
            consume.error = str(exc)
        self.report(consume)

    def report(self, result: Result) -> None:
        self.results.append(result)
        print_result(result)


def parse_kafka_consume(result: Result, out: str) -> None:
    """ConsumerPerformance prints a CSV header and one CSV line:
    start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec,
    rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec.
    MB.sec/nMsg.sec span the whole run, group join included; the fetch.* figures leave
    the join out, which is what `brook perf consume` measures (it assigns partitions)."""
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    header_index = next((i for i, line in enumerate(lines) if "nMsg.sec" in line), None)
    if header_index is None or header_index + 1 >= len(lines):
        result.line = last_line(out)
        result.error = "unparsed output"
        return
    names = [name.strip() for name in lines[header_index].split(",")]
    values = [value.strip() for value in lines[header_index + 1].split(",")]
    result.line = lines[header_index + 1]
    row = dict(zip(names, values, strict=False))
    try:
        for name in (
            "data.consumed.in.nMsg",
            "MB.sec",
            "nMsg.sec",
            "rebalance.time.ms",
            "fetch.MB.sec",
            "fetch.nMsg.sec",
        ):
            result.extra[name] = float(row[name])
    except (KeyError, ValueError):
        result.error = "unparsed output"
        return
    result.records_per_s = result.extra["fetch.nMsg.sec"]
    result.mb_per_s = result.extra["fetch.MB.sec"]


# -- Brook -----------------------------------------------------------------------------


def brook_ports_free(base: int) -> bool:
    """`brook dev --nodes 1` binds base, base+1, base+100, base+101 and base+11."""
    for port in (base, base + 1, base + 100, base + 101, base + 11):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def brook_base_port() -> int:
    for _ in range(200):
        base = free_port()
        if base + 200 < 65535 and brook_ports_free(base):
            return base
    raise BenchError("no free block of ports for brook dev")


class BrookRunner:
    """Runs the matrix against `brook dev --nodes 1`."""

    def __init__(self, python: str, scale: float, keep: bool) -> None:
        self.brook = [python, "-m", "brook.services.cli"]
        self.scale = scale
        self.keep = keep
        self.results: list[Result] = []

    def run_all(self) -> list[Result]:
        with temp_dir("brook-peer-bench-", self.keep) as work:
            data = work / "data"
            base = brook_base_port()
            log_path = work / "dev.log"
            print(f"# starting brook dev: 1 node, base port {base}, data in {data}", flush=True)
            with open(log_path, "wb") as log:
                dev = subprocess.Popen(
                    [
                        *self.brook,
                        "dev",
                        "--nodes",
                        "1",
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
                    cwd=REPO,
                    start_new_session=True,  # its own group: one signal stops everything
                )
            try:
                cluster_file = data / "cluster.json"
                start = time.monotonic()
                wait_until(cluster_file.exists, dev, BROOK_START_TIMEOUT_S, "brook dev", log_path)
                bootstrap = json.loads(cluster_file.read_text())["bootstrap"]
                print(
                    f"# brook dev ready in {time.monotonic() - start:.1f}s, bootstrap {bootstrap}",
                    flush=True,
                )
                for index, (partitions, size, records) in enumerate(CASES):
                    self.run_case(bootstrap, f"brook-bench-{index}", partitions, size, records)
                    if dev.poll() is not None:
                        raise BenchError(f"brook dev died: {tail_of(log_path)}")
            finally:
                stop_group(dev)
        return self.results

    def run_case(
        self, bootstrap: str, topic: str, partitions: int, size: int, records: int
    ) -> None:
        count = record_count(records, self.scale)
        brook = [*self.brook, "--bootstrap", bootstrap]
        run(
            [
                *brook,
                "topic",
                "create",
                topic,
                "--partitions",
                str(partitions),
                "--replication-factor",
                "1",
            ],
            TOOL_TIMEOUT_S,
            f"brook topic create {topic}",
        )
        produce = Result("brook", "produce", partitions, size, "")
        try:
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
                    ACKS,
                ],
                RUN_TIMEOUT_S,
                f"brook perf produce {topic}",
            )
            produce.line = last_line(out)
            parse_produce(produce)
        except BenchError as exc:
            produce.error = str(exc)
        self.report(produce)
        if produce.error is not None:
            return
        consume = Result("brook", "consume", partitions, size, "")
        try:
            out = run(
                [*brook, "perf", "consume", "--topic", topic, "--num-records", str(count)],
                RUN_TIMEOUT_S,
                f"brook perf consume {topic}",
            )
            consume.line = last_line(out)
            match = BROOK_CONSUME_RE.search(consume.line)
            if match is None:
                consume.error = "unparsed output"
            else:
                consume.records_per_s = float(match["rps"])
                consume.mb_per_s = float(match["mbps"])
        except BenchError as exc:
            consume.error = str(exc)
        self.report(consume)

    def report(self, result: Result) -> None:
        self.results.append(result)
        print_result(result)


# -- output ----------------------------------------------------------------------------


def print_result(result: Result) -> None:
    if result.error is not None and not result.line:
        print(f"{result.label}: FAILED {result.error}", flush=True)
    else:
        suffix = f"  [{result.error}]" if result.error else ""
        print(f"{result.label}: {result.line}{suffix}", flush=True)


def fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(results: list[Result]) -> None:
    """Side by side: one row per case, Kafka's and Brook's figures and their ratio."""
    by_key = {(r.system, r.action, r.partitions, r.size): r for r in results}
    systems = sorted({r.system for r in results}, key=lambda s: s != "kafka")
    header = f"{'case':<30}"
    for system in systems:
        header += f" | {system + ' rec/s':>13} {'MB/s':>8} {'p99 ms':>7}"
    if len(systems) == 2:
        header += f" | {'brook/kafka':>11}"
    print(header)
    print("-" * len(header))
    for action in ("produce", "consume"):
        for partitions, size, _ in CASES:
            row = f"{action + f' p={partitions} size={size}':<30}"
            rates: list[float | None] = []
            for system in systems:
                result = by_key.get((system, action, partitions, size))
                rps = result.records_per_s if result else None
                mbps = result.mb_per_s if result else None
                p99 = result.p99_ms if result else None
                rates.append(rps)
                row += f" | {fmt(rps, ',.0f'):>13} {fmt(mbps, '.2f'):>8} {fmt(p99, 'd'):>7}"
            if len(systems) == 2:
                kafka_rps, brook_rps = rates
                ratio = brook_rps / kafka_rps if kafka_rps and brook_rps is not None else None
                row += f" | {fmt(ratio, '.2f'):>11}"
            print(row)
    if "kafka" in systems:
        print(
            "# consume: Kafka figures are ConsumerPerformance's fetch.* columns (group join left"
            " out, as brook perf consume assigns partitions); p99 is produce latency only."
        )


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM to this script unwinds like Ctrl-C, so every finally (stop, rmtree) runs.
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply record counts")
    parser.add_argument("--with-brook", action="store_true", help="then run Brook's matrix")
    parser.add_argument("--skip-kafka", action="store_true", help="Brook only (with --with-brook)")
    parser.add_argument("--lib", type=Path, default=DEFAULT_LIB, help="Kafka jars folder")
    parser.add_argument(
        "--kafka-stock-producer",
        action="store_true",
        help="Kafka's producer defaults (batch.size 16 KiB ...) instead of Brook-like ones",
    )
    parser.add_argument(
        "--brook-python",
        default=str(REPO / ".venv" / "bin" / "python")
        if (REPO / ".venv" / "bin" / "python").exists()
        else sys.executable,
        help="python with brook installed (default: the repo's .venv)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    parser.add_argument("--keep-data", action="store_true", help="keep the temp folders")
    options = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)

    if not options.skip_kafka and not any(options.lib.glob("kafka_2.13-*.jar")):
        print(
            f"no Kafka jars in {options.lib}; fetch them with:\n"
            f"  mvn -q -f {HERE / 'pom.xml'} dependency:copy-dependencies",
            file=sys.stderr,
        )
        return 2
    print(f"# load average before: {load_average()} ({os.cpu_count()} cpus)", flush=True)
    results: list[Result] = []
    try:
        if not options.skip_kafka:
            kafka = KafkaRunner(
                options.lib, options.scale, options.kafka_stock_producer, options.keep_data
            )
            try:
                kafka.run_all()
            finally:
                results.extend(kafka.results)
            print(f"# load average after Kafka: {load_average()}", flush=True)
        if options.with_brook:
            brook = BrookRunner(options.brook_python, options.scale, options.keep_data)
            try:
                brook.run_all()
            finally:
                results.extend(brook.results)
            print(f"# load average after Brook: {load_average()}", flush=True)
    except BenchError as exc:
        print(f"# benchmark failed: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt as exc:
        print(f"# interrupted ({exc or 'Ctrl-C'}); everything started was stopped", flush=True)
        return 130
    finally:
        if results:
            print("# summary")
            for result in results:
                print_result(result)
            print_table(results)
            if options.json:
                options.json.write_text(
                    json.dumps([{**vars(r), "label": r.label} for r in results], indent=2)
                )
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
