"""Storage engine benchmark: append and read throughput of one PartitionLog versus the raw
sequential write rate of the same disk.

What it measures, in one run:
  1. raw write: plain os.write() calls of --batch-bytes to a plain file, fsync once a second
     and at the end (the same cadence as the log's default flush_interval_ms=1000);
  2. storage append: the same bytes as --batch-bytes batches (payloads made of
     --record-bytes records) through PartitionLog.append_batches with the default LogConfig
     (time-based flush once a second), then a final flush() inside the timing, like the
     raw run's final fsync;
  3. storage read: everything read back with PartitionLog.read(max_bytes=...) for each of
     --read-max-bytes; the data is in the page cache, so this measures the engine's CPU cost.

Both write measurements include their final fsync. MB means 2**20 bytes, as in Kafka's perf
tools. The last two lines are machine-readable and always:

    storage append: X MB/s (R% of raw write Y MB/s)
    storage read: Z MB/s

Run with `make bench-storage` or `.venv/bin/python bench/storage_bench.py --help`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from brook.storage import LogConfig, PartitionLog

MB = 1 << 20  # MB = 2**20 bytes, matching Kafka's producer/consumer perf tools.
# Distinct payloads cycled through, so the batches are not all byte-identical.
PAYLOAD_VARIANTS = 8
PROGRESS_INTERVAL_S = 2.0


def parse_size(text: str) -> int:
    """Parses 1073741824, 1GiB, 512MiB, 4KiB (binary units) or 1e9."""
    units = {"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "k": 1 << 10, "m": 1 << 20,
             "g": 1 << 30}
    lowered = text.strip().lower()
    for suffix, factor in sorted(units.items(), key=lambda item: -len(item[0])):
        if lowered.endswith(suffix):
            return int(float(lowered[: -len(suffix)]) * factor)
    return int(float(lowered))


def make_payloads(batch_bytes: int, record_bytes: int) -> list[bytes]:
    """Batches of whole records of random bytes, generated once."""
    records_per_batch = max(1, batch_bytes // record_bytes)
    return [os.urandom(records_per_batch * record_bytes) for _ in range(PAYLOAD_VARIANTS)]


def raw_write(path: Path, total_bytes: int, payloads: list[bytes]) -> float:
    """Seconds to write `total_bytes` with os.write, fsync once a second and at the end."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        written = 0
        number = 0
        started = last_fsync = time.perf_counter()
        while written < total_bytes:
            payload = payloads[number % len(payloads)]
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            written += len(payload)
            number += 1
            now = time.perf_counter()
            if now - last_fsync >= 1.0:
                os.fsync(fd)
                last_fsync = now
        os.fsync(fd)
        return time.perf_counter() - started
    finally:
        os.close(fd)


def run_raw_write(workdir: Path, total_bytes: int, payloads: list[bytes]) -> float:
    """One raw write run; returns MB/s."""
    path = workdir / "raw.bin"
    seconds = raw_write(path, total_bytes, payloads)
    os.unlink(path)
    rate = total_bytes / MB / seconds
    print(f"  raw write: {rate:.0f} MB/s ({seconds:.2f} s)", flush=True)
    return rate


def storage_append(
    log: PartitionLog, total_bytes: int, payloads: list[bytes], record_bytes: int,
    batches_per_append: int,
) -> float:
    """Seconds to append `total_bytes` of payload, including the final flush."""
    records = max(1, len(payloads[0]) // record_bytes)
    appended = 0
    number = 0
    started = last_report = time.perf_counter()
    while appended < total_bytes:
        group = []
        for _ in range(batches_per_append):
            if appended >= total_bytes:
                break
            payload = payloads[number % len(payloads)]
            group.append((payload, records, time.time_ns() // 1_000_000))
            appended += len(payload)
            number += 1
        log.append_batches(group, leader_epoch=0)
        now = time.perf_counter()
        if now - last_report >= PROGRESS_INTERVAL_S:
            print(f"  appended {appended / MB:.0f} MB", flush=True)
            last_report = now
    log.flush()
    return time.perf_counter() - started


def storage_read(log: PartitionLog, max_bytes: int) -> tuple[float, int]:
    """(seconds, payload bytes) to read the whole log with reads of `max_bytes`."""
    offset = log.log_start_offset
    payload_bytes = 0
    started = time.perf_counter()
    while offset < log.log_end_offset:
        result = log.read(offset, max_bytes)
        for batch in result.batches:
            payload_bytes += len(batch.payload)
        offset = result.next_offset
    return time.perf_counter() - started, payload_bytes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dir", type=Path, default=None,
        help="where to write (default: a temporary directory under the current directory, "
        "so the disk measured is the one the data would live on; not /dev/shm)",
    )
    parser.add_argument("--total-bytes", type=parse_size, default=1 << 30)
    parser.add_argument("--batch-bytes", type=parse_size, default=1 << 20)
    parser.add_argument("--record-bytes", type=parse_size, default=1 << 10)
    parser.add_argument(
        "--batches-per-append", type=int, default=4,
        help="batches per append_batches call (a produce request carries several)",
    )
    parser.add_argument(
        "--read-max-bytes", type=parse_size, nargs="+", default=[1 << 20, 8 << 20],
        help="max_bytes of each read pass; the last line reports the smallest",
    )
    parser.add_argument("--keep", action="store_true", help="do not delete the data afterwards")
    args = parser.parse_args(argv)

    base = args.dir if args.dir is not None else Path.cwd()
    base.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=".storage-bench-", dir=base))
    total = args.total_bytes
    print(
        f"storage bench in {workdir}: {total / MB:.0f} MB as {args.batch_bytes // 1024} KiB "
        f"batches of {args.record_bytes} B records, {args.batches_per_append} per append",
        flush=True,
    )
    try:
        payloads = make_payloads(args.batch_bytes, args.record_bytes)

        raw_rates = [run_raw_write(workdir, total, payloads)]

        log = PartitionLog.open(workdir / "bench-0", LogConfig(), name="bench-0")
        try:
            append_seconds = storage_append(
                log, total, payloads, args.record_bytes, args.batches_per_append
            )
            append_rate = total / MB / append_seconds
            print(f"  storage append: {append_rate:.0f} MB/s ({append_seconds:.2f} s)", flush=True)
            read_rates = {}
            for max_bytes in sorted(args.read_max_bytes):
                seconds, payload_bytes = storage_read(log, max_bytes)
                if payload_bytes < total:
                    print(f"read returned {payload_bytes} of {total} bytes", file=sys.stderr)
                    return 1
                read_rates[max_bytes] = payload_bytes / MB / seconds
                print(
                    f"  storage read max_bytes={max_bytes // 1024} KiB: "
                    f"{read_rates[max_bytes]:.0f} MB/s ({seconds:.2f} s)",
                    flush=True,
                )
        finally:
            log.close()
        # Disk speed drifts by tens of percent between runs (write-back of the previous
        # run, the device's own caches), so the raw rate is the mean of one run on each
        # side of the storage run.
        raw_rates.append(run_raw_write(workdir, total, payloads))
        raw_rate = sum(raw_rates) / len(raw_rates)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    print(f"storage append: {append_rate:.0f} MB/s ({100 * append_rate / raw_rate:.0f}% of raw "
          f"write {raw_rate:.0f} MB/s)")
    print(f"storage read: {min(read_rates.values()):.0f} MB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
