"""Cost of the startup scan of segments that are not known clean (storage/log_loader.py).

Writes a log of `--mib` MiB in 64 MiB segments (1 MiB batches), closes it cleanly, then
times three opens: with every sealed segment known clean (stamped), with the stamps
removed (every sealed segment scanned: sequential read + CRC32C + index rebuild), and
again stamped. The data is in the page cache, so the scan figure is CPU cost; on a cold
cache it is bounded by the disk's sequential read rate instead.
Run: `.venv/bin/python bench/startup_scan_bench.py --mib 512`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from brook.storage import LogConfig, PartitionLog
from brook.storage.clean_segments import CLEAN_SEGMENTS_CHECKPOINT

CONFIG = LogConfig(segment_bytes=64 << 20, flush_interval_ms=0)


def timed_open(directory: Path) -> float:
    start = time.perf_counter()
    PartitionLog.open(directory, CONFIG).close()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=512)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        directory = Path(root) / "bench-0"
        log = PartitionLog.open(directory, CONFIG)
        payload = bytes(range(256)) * 4096  # 1 MiB
        for _ in range(args.mib):
            log.append(payload, record_count=1000, max_timestamp_ms=1, leader_epoch=0)
        log.close()
        gib = args.mib / 1024
        stamped = timed_open(directory)
        (directory / CLEAN_SEGMENTS_CHECKPOINT).unlink()
        scanned = timed_open(directory)
        again = timed_open(directory)
        print(f"{args.mib} MiB: open known clean {stamped * 1000:.1f} ms; full scan "
              f"{scanned:.2f} s ({scanned / gib:.2f} s per GiB); re-open {again * 1000:.1f} ms")


if __name__ == "__main__":
    main()
