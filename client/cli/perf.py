"""`brook perf produce|consume`: throughput and latency tools modeled on Kafka's.

Output follows Kafka's `kafka-producer-perf-test` line for line: a window line about
every 5 s, then a final line

    N records sent, X records/sec (Y MB/sec), A ms avg latency, M ms max latency,
    P50 ms 50th, P95 ms 95th, P99 ms 99th, P999 ms 99.9th.

(on one line; MB = 2^20 bytes; latency from send to acknowledgement, in ms). The send
loop uses `Producer.append_nowait` (no future per record) and learns latencies from batch
listeners: a batch's records' create timestamps against its acknowledgement time, with
totals and maxima computed per batch in C (sum/min over the timestamp list) and
percentiles from a bounded sample. `perf consume` prints
`N records consumed, X records/sec (Y MB/sec)`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import string
import sys
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, TextIO

from brook.client import defaults
from brook.client.consumer import Consumer
from brook.client.producer import Producer, WouldBlock
from brook.client.records import BatchResult, TopicPartition

MB = 1024 * 1024
REPORT_INTERVAL_S = 5.0
# Latency samples kept for percentiles (Kafka keeps up to 500,000 too).
MAX_LATENCY_SAMPLES = 500_000
# The send loop yields to the event loop at least this often, so the sender task runs
# while the loop is appending (there is no second thread, unlike Kafka's producer).
YIELD_EVERY_RECORDS = 1024

_KEY = attrgetter("key")
_VALUE = attrgetter("value")


@dataclass
class _Window:
    start_s: float
    count: int = 0
    nbytes: int = 0
    latency_total_ms: int = 0
    latency_max_ms: int = 0


@dataclass
class ProduceStats:
    """Latency and throughput bookkeeping fed by batch listeners (Kafka's Stats)."""

    num_records: int
    start_s: float = field(default_factory=time.monotonic)
    count: int = 0
    nbytes: int = 0
    latency_total_ms: int = 0
    latency_max_ms: int = 0
    errors: int = 0
    first_error: Exception | None = None
    samples: array = field(default_factory=lambda: array("i"))  # type: ignore[type-arg]
    window: _Window = field(default_factory=lambda: _Window(time.monotonic()))

    def __post_init__(self) -> None:
        self.sampling = max(1, self.num_records // MAX_LATENCY_SAMPLES)

    def on_batch(self, result: BatchResult) -> None:
        if result.error is not None:
            self.errors += result.record_count
            if self.first_error is None:
                self.first_error = result.error
            return
        now_ms = time.time_ns() // 1_000_000
        timestamps = result.timestamps_ms
        count = len(timestamps)
        total = now_ms * count - sum(timestamps)
        worst = now_ms - min(timestamps)
        self.count += count
        self.nbytes += result.value_bytes
        self.latency_total_ms += total
        self.latency_max_ms = max(self.latency_max_ms, worst)
        window = self.window
        window.count += count
        window.nbytes += result.value_bytes
        window.latency_total_ms += total
        window.latency_max_ms = max(window.latency_max_ms, worst)
        # Sample records whose running index is a multiple of the sampling step.
        first = (-(self.count - count)) % self.sampling
        if first < count:
            self.samples.extend(now_ms - t for t in timestamps[first :: self.sampling])

    def window_line(self) -> str:
        window = self.window
        elapsed = max(time.monotonic() - window.start_s, 1e-9)
        avg = window.latency_total_ms / window.count if window.count else 0.0
        line = (
            f"{window.count} records sent, {window.count / elapsed:.1f} records/sec"
            f" ({window.nbytes / MB / elapsed:.2f} MB/sec), {avg:.1f} ms avg latency,"
            f" {float(window.latency_max_ms):.1f} ms max latency."
        )
        self.window = _Window(time.monotonic())
        return line

    def final_line(self, end_s: float | None = None) -> str:
        elapsed = max((end_s or time.monotonic()) - self.start_s, 1e-9)
        avg = self.latency_total_ms / self.count if self.count else 0.0
        p50, p95, p99, p999 = percentiles(self.samples, (0.5, 0.95, 0.99, 0.999))
        return (
            f"{self.count} records sent, {self.count / elapsed:f} records/sec"
            f" ({self.nbytes / MB / elapsed:.2f} MB/sec), {avg:.2f} ms avg latency,"
            f" {float(self.latency_max_ms):.2f} ms max latency, {p50} ms 50th, {p95} ms 95th,"
            f" {p99} ms 99th, {p999} ms 99.9th."
        )


def percentiles(samples: array, points: tuple[float, ...]) -> list[int]:  # type: ignore[type-arg]
    """Kafka's way: sort the samples and index at floor(p * n)."""
    ordered = sorted(samples)
    if not ordered:
        return [0 for _ in points]
    return [ordered[min(len(ordered) - 1, int(p * len(ordered)))] for p in points]


def make_payload(record_size: int, seed: int = 0) -> bytes:
    """One random payload of uppercase letters, reused for every record (as Kafka does)."""
    rng = random.Random(seed)
    return "".join(rng.choice(string.ascii_uppercase) for _ in range(record_size)).encode()


class _Progress:
    """Prints window lines; on a TTY also shows a rich progress bar."""

    def __init__(self, total: int, label: str, out: TextIO) -> None:
        self.out = out
        self._bar = None
        if out.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self._bar = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                transient=True,
            )
            self._task = self._bar.add_task(label, total=total)
            self._bar.start()

    def update(self, completed: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=completed)

    def line(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text, highlight=False)
        else:
            print(text, file=self.out, flush=True)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()


async def _report_every(interval_s: float, report: Callable[[], None]) -> None:
    while True:
        await asyncio.sleep(interval_s)  # a periodic report, not synchronization
        report()


async def perf_produce(
    bootstrap: str,
    topic: str,
    num_records: int,
    record_size: int,
    throughput: float,
    *,
    acks: str = "1",
    linger_ms: float = 5,
    batch_bytes: int = 1 << 20,
    compression: str | None = None,
    out: TextIO = sys.stdout,
    report_interval_s: float = REPORT_INTERVAL_S,
) -> int:
    """Runs the producer benchmark; returns the process exit code."""
    payload = make_payload(record_size)
    stats = ProduceStats(num_records)
    progress = _Progress(num_records, f"producing to {topic}", out)
    async with Producer(
        bootstrap, acks=acks, linger_ms=linger_ms, batch_bytes=batch_bytes, compression=compression
    ) as producer:
        producer.add_batch_listener(stats.on_batch)
        await producer.partitions_for(topic)

        def report() -> None:
            progress.line(stats.window_line())
            progress.update(stats.count + stats.errors)

        reporter = asyncio.get_running_loop().create_task(_report_every(report_interval_s, report))
        try:
            stats.start_s = time.monotonic()
            stats.window = _Window(stats.start_s)
            append = producer.append_nowait
            throttled = throughput > 0
            for index in range(num_records):
                try:
                    append(topic, payload)
                except WouldBlock:
                    await producer.wait_for_room(topic, len(payload))
                    await producer.append(topic, payload)
                if throttled:
                    # Kafka's ThroughputThrottler: sleep whenever ahead of the target rate.
                    ahead_s = (index + 1) / throughput - (time.monotonic() - stats.start_s)
                    if ahead_s > 0:
                        await asyncio.sleep(ahead_s)  # pacing to the requested rate
                        continue
                if index % YIELD_EVERY_RECORDS == 0:
                    await asyncio.sleep(0)
            await producer.flush()
            end_s = time.monotonic()
        finally:
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)
            progress.stop()
    print(stats.final_line(end_s), file=out, flush=True)
    if stats.errors:
        print(
            f"error: {stats.errors} records failed; first error: {stats.first_error}",
            file=sys.stderr,
        )
        return 1
    return 0


async def perf_consume(
    bootstrap: str,
    topic: str,
    num_records: int,
    *,
    timeout_ms: int = 10_000,
    out: TextIO = sys.stdout,
    report_interval_s: float = REPORT_INTERVAL_S,
) -> int:
    """Reads `num_records` from the beginning of every partition; returns the exit code."""
    progress = _Progress(num_records, f"consuming {topic}", out)
    count = 0
    nbytes = 0
    window_count = 0
    window_bytes = 0
    window_start = time.monotonic()
    async with Consumer(bootstrap, auto_offset_reset="earliest") as consumer:
        partitions = await consumer.partitions_for(topic)
        consumer.assign(TopicPartition(topic, p) for p in partitions)
        consumer.seek_to_beginning()
        start = time.monotonic()
        last_data = start
        next_report = start + report_interval_s
        while count < num_records:
            records = await consumer.poll(timeout_ms=min(timeout_ms, 1000), max_records=10_000)
            now = time.monotonic()
            if records:
                last_data = now
                # Key and value bytes, summed in C (a generator cost ~1 us per record).
                size = sum(map(len, map(_VALUE, records))) + sum(
                    map(len, filter(None, map(_KEY, records)))
                )
                count += len(records)
                nbytes += size
                window_count += len(records)
                window_bytes += size
            elif (now - last_data) * 1000 >= timeout_ms:
                print(
                    f"warning: no records for {timeout_ms} ms; stopping after {count}",
                    file=sys.stderr,
                )
                break
            if now >= next_report:
                elapsed = max(now - window_start, 1e-9)
                progress.line(
                    f"{window_count} records consumed, {window_count / elapsed:.1f} records/sec"
                    f" ({window_bytes / MB / elapsed:.2f} MB/sec)."
                )
                progress.update(count)
                window_count = window_bytes = 0
                window_start = now
                next_report = now + report_interval_s
        end = time.monotonic()
    progress.stop()
    elapsed = max(end - start, 1e-9)
    print(
        f"{count} records consumed, {count / elapsed:f} records/sec"
        f" ({nbytes / MB / elapsed:.2f} MB/sec)",
        file=out,
        flush=True,
    )
    return 0 if count >= num_records else 1


# -- the command -----------------------------------------------------------------------------


def register(commands: Any) -> None:
    """Adds `perf produce|consume` to the CLI's subcommands."""
    perf = commands.add_parser("perf", help="throughput and latency tests (Kafka's perf tools)")
    perf.set_defaults(handler=lambda args: cmd_perf(args, sys.stdout))
    perf_commands = perf.add_subparsers(dest="perf_command", metavar="ACTION")
    perf_commands.required = True
    perf_produce = perf_commands.add_parser("produce", help="kafka-producer-perf-test")
    perf_produce.add_argument("--topic", required=True)
    perf_produce.add_argument("--num-records", type=int, required=True)
    perf_produce.add_argument("--record-size", type=int, required=True)
    perf_produce.add_argument(
        "--throughput", type=float, required=True, help="records/s to aim at; -1 for no limit"
    )
    perf_produce.add_argument("--acks", choices=("0", "1", "all"), default="1")
    perf_produce.add_argument("--linger-ms", type=float, default=defaults.LINGER_MS)
    perf_produce.add_argument("--batch-bytes", type=int, default=defaults.BATCH_BYTES)
    perf_produce.add_argument("--compression", choices=("none", "zstd", "lz4", "gzip"))
    perf_consume = perf_commands.add_parser("consume", help="kafka-consumer-perf-test")
    perf_consume.add_argument("--topic", required=True)
    perf_consume.add_argument("--num-records", type=int, required=True)
    perf_consume.add_argument("--timeout-ms", type=int, default=10_000)


async def cmd_perf(args: argparse.Namespace, out: TextIO) -> int:
    if args.perf_command == "produce":
        if args.num_records <= 0 or args.record_size <= 0:
            raise ValueError("--num-records and --record-size must be positive")
        return await perf_produce(
            args.bootstrap,
            args.topic,
            args.num_records,
            args.record_size,
            args.throughput,
            acks=args.acks,
            linger_ms=args.linger_ms,
            batch_bytes=args.batch_bytes,
            compression=args.compression,
            out=out,
        )
    return await perf_consume(
        args.bootstrap, args.topic, args.num_records, timeout_ms=args.timeout_ms, out=out
    )
