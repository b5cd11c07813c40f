"""A Go program built from protos/brook/v1 alone (protoc-gen-go, protoc-gen-go-grpc, no Brook
library) produces to and consumes from a real cluster, and agrees with the Python client.

The program is tests/interop/go/main.go, built by tests/interop/gobuild.py (generated code
goes to a git-ignored folder; a stamp skips the build when nothing changed). The cluster is
real: etcd, a coordinator and one storage node as processes on loopback.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from brook.client import Admin, Consumer, Producer
from brook.client.records import ConsumerRecord, TopicPartition
from tests.harness.cluster import LocalCluster
from tests.harness.wait import eventually
from tests.interop import gobuild

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("go") is None,
        reason="go is not on PATH, so the Go interop client cannot be built (install Go >= 1.25)",
    ),
]

TOPIC = "interop"
GO_RECORDS = 5
PYTHON_RECORDS_PER_CODEC = 3
# Bounds: node liveness and topic metadata on a loaded 2-core box; one Go run.
WAIT_S = 30.0
GO_RUN_TIMEOUT_S = 60.0
GO_RUN_DEADLINE = "30s"  # the Go program's own bound (-timeout), inside GO_RUN_TIMEOUT_S
# A first build on a fresh machine downloads modules and compiles grpc (about 90 s
# measured on 2 busy cores; gobuild bounds each step at 600 s), so this test may take
# longer than the suite's default timeout; later runs reuse the build and take seconds.
TEST_TIMEOUT_S = 1500
NODE_ARGS = ["--lease-ttl-s", "2", "--drain-timeout-s", "2"]
RECORD_LINE = re.compile(r"^(\d+) (\S+) (\S+)$")


@pytest.fixture(scope="module")
def interop_binary() -> Path:
    """The Go program, built (or reused) once per module; a build failure fails the test."""
    return gobuild.build()


async def run_go(binary: Path, bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs the Go program in a thread (the event loop stays free) with a hard timeout."""
    command = [str(binary), "-bootstrap", bootstrap, "-topic", TOPIC, "-timeout", GO_RUN_DEADLINE]
    return await asyncio.to_thread(
        subprocess.run,
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=GO_RUN_TIMEOUT_S,
        check=False,
    )


def parse_records(stdout: str) -> list[tuple[int, bytes, bytes]]:
    """The `OFFSET KEY VALUE` lines of the Go program's output."""
    found = []
    for line in stdout.splitlines():
        match = RECORD_LINE.match(line)
        if match and not line.startswith("produced "):
            found.append((int(match[1]), match[2].encode(), match[3].encode()))
    return found


async def start_cluster(local_cluster: Callable[..., LocalCluster]) -> str:
    """Coordinator + node 1, node live, topic created; returns the bootstrap address."""
    cluster = local_cluster()
    cluster.add_coordinator()
    cluster.add_node(1, args=NODE_ARGS)
    cluster.start()
    bootstrap = cluster.address("coordinator")
    async with Admin(bootstrap) as admin:

        async def node_live() -> bool:
            described = await admin.describe_cluster()
            return any(n.node.node_id == 1 for n in described.nodes)

        await eventually(node_live, timeout_s=WAIT_S, what="node 1 live")
        await admin.create_topic(TOPIC, partitions=1, replication_factor=1)
    return bootstrap


async def consume(bootstrap: str, expected: int) -> list[ConsumerRecord]:
    """The first `expected` records of partition 0, read with the Python Consumer."""
    records: list[ConsumerRecord] = []
    async with Consumer(bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([TopicPartition(TOPIC, 0)])
        async with asyncio.timeout(WAIT_S):
            while len(records) < expected:
                records.extend(await consumer.poll(timeout_ms=1000))
    return records


@pytest.mark.timeout(TEST_TIMEOUT_S)
async def test_go_client_and_python_client_read_each_other(
    local_cluster: Callable[..., LocalCluster], interop_binary: Path
) -> None:
    """Proves the proto contract is enough for a non-Python client, in both directions.

    1. The Go program produces 5 records in one batch (CRC-32C, acks=all), fetches them back
       at consecutive offsets from its base offset, and sees a batch with a wrong CRC refused
       with the per-partition error CORRUPT_BATCH.
    2. The Python Consumer reads exactly those records (offsets, keys, values, timestamps),
       and the Python Producer's next record lands right after them (the corrupt batch
       appended nothing).
    3. The Go program decodes records the Python Producer wrote, uncompressed and gzip.
    4. Asked to read beyond the log end, the Go program exits 1 and names the reason.
    """
    bootstrap = await start_cluster(local_cluster)

    produced = await run_go(interop_binary, bootstrap, "-count", str(GO_RECORDS))
    assert produced.returncode == 0, f"stdout:\n{produced.stdout}\nstderr:\n{produced.stderr}"
    lines = produced.stdout.splitlines()
    assert lines[0] == f"produced {GO_RECORDS} records at base offset 0"
    go_written = [(i, b"go-key-%d" % i, b"go-value-%d" % i) for i in range(GO_RECORDS)]
    assert parse_records(produced.stdout) == go_written
    assert lines[-1] == "corrupt batch refused: CORRUPT_BATCH"

    python_read = await consume(bootstrap, GO_RECORDS)
    assert [(r.offset, r.key, r.value) for r in python_read] == go_written
    # The Go program stamps record i with (its start time + i) ms.
    first_timestamp = python_read[0].timestamp_ms
    assert [r.timestamp_ms - first_timestamp for r in python_read] == list(range(GO_RECORDS))

    python_written: list[tuple[int, bytes, bytes]] = []
    for compression in (None, "gzip"):  # one batch each: Go must decode both codecs
        async with Producer(bootstrap, acks="all", compression=compression) as producer:
            numbers = range(len(python_written), len(python_written) + PYTHON_RECORDS_PER_CODEC)
            sent = [(b"py-key-%d" % n, b"py-value-%d" % n) for n in numbers]
            futures = [await producer.send(TOPIC, value, key=key) for key, value in sent]
            await producer.flush(timeout_s=WAIT_S)
        python_written += [
            (future.result().offset, key, value)
            for future, (key, value) in zip(futures, sent, strict=True)
        ]
    expected_offsets = list(range(GO_RECORDS, GO_RECORDS + 2 * PYTHON_RECORDS_PER_CODEC))
    assert [offset for offset, _, _ in python_written] == expected_offsets

    read_back = await run_go(
        interop_binary,
        bootstrap,
        "-read-only",
        "-from",
        str(GO_RECORDS),
        "-count",
        str(len(python_written)),
    )
    assert read_back.returncode == 0, f"stdout:\n{read_back.stdout}\nstderr:\n{read_back.stderr}"
    assert parse_records(read_back.stdout) == python_written

    beyond = await run_go(interop_binary, bootstrap, "-read-only", "-from", "1000", "-count", "1")
    assert beyond.returncode == 1, beyond.stdout
    assert "reason=OFFSET_OUT_OF_RANGE" in beyond.stderr, beyond.stderr
