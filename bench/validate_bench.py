"""Cost of checking one produce batch on the leader (services/node/batches.py).

Measures, per MiB of batch, `scan_batch` + crc32c (the check before poison-batch
validation) and the whole `validate_batch` (adds the codec check, decompression and the
Records parse that counts the records), for record sizes 100 B, 1 KiB and 10 KiB and
codecs none, zstd, lz4, gzip. Run: `.venv/bin/python bench/validate_bench.py`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from crc32c import crc32c

from brook.codec import compress
from brook.services.node.batches import scan_batch, validate_batch
from brook.v1 import records_pb2

BATCH_BYTES = 1 << 20
ROUNDS = 30
CODECS = {"none": records_pb2.COMPRESSION_CODEC_NONE, "zstd": records_pb2.COMPRESSION_CODEC_ZSTD,
          "lz4": records_pb2.COMPRESSION_CODEC_LZ4, "gzip": records_pb2.COMPRESSION_CODEC_GZIP}


def batch(record_bytes: int, codec: int) -> bytes:
    count = BATCH_BYTES // (record_bytes + 16)
    value = bytes(range(256)) * (record_bytes // 256 + 1)
    records = records_pb2.Records(records=[
        records_pb2.Record(offset_delta=n, timestamp_ms=1_700_000_000_000 + n,
                           value=value[n % 256 : n % 256 + record_bytes])
        for n in range(count)
    ]).SerializeToString()
    data = compress(records, codec)
    return records_pb2.RecordBatch(
        record_count=count, max_timestamp_ms=1_700_000_000_000 + count, compression=codec,
        crc32c=crc32c(data), records=data, uncompressed_bytes=len(records),
    ).SerializeToString()


def ms_per_mib(action: Callable[[], object], uncompressed: int) -> float:
    action()
    samples = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000 * (1 << 20) / uncompressed


def header_and_crc(raw: bytes) -> None:
    header = scan_batch(raw)
    crc32c(memoryview(raw)[header.records_start : header.records_end])


def main() -> None:
    print(f"{'record':>7} {'codec':>5} {'scan+crc':>9} {'validate':>9}  ms per MiB of records")
    for record_bytes in (100, 1024, 10240):
        for name, codec in CODECS.items():
            raw = batch(record_bytes, codec)
            uncompressed = scan_batch(raw).uncompressed_bytes
            before = ms_per_mib(lambda raw=raw: header_and_crc(raw), uncompressed)
            after = ms_per_mib(lambda raw=raw: validate_batch(raw, 64 << 20), uncompressed)
            print(f"{record_bytes:>7} {name:>5} {before:>9.3f} {after:>9.3f}")


if __name__ == "__main__":
    main()
