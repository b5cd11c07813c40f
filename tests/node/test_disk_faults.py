"""Disk faults and bad data through real node processes with real files (issue 9).

Defect 2: corruption inside an older segment must be found and re-fetched, never served
or led. Defect 9: a full disk must keep reads working and writes must resume once space
is freed, without a restart. Defect 10: poison batches must be refused whole, so every
consumer can read the partition past them. Faults are injected with the storage fault
layer (`BROOK_FAULTS_FILE`, brook/storage/faults.py), flipped bytes with plain file writes.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from crc32c import crc32c

from brook.client import Consumer
from brook.codec import compress
from brook.errors import from_partition_error
from brook.services.metadata.store import MetadataStore
from brook.storage.faults import FAULTS_FILE_ENV
from brook.v1 import records_pb2
from tests.harness.cluster import LocalCluster
from tests.harness.wait import eventually
from tests.node.cluster_helpers import FAST_NODE_ARGS, NodeClient, create_topic, move_leader
from tests.node.helpers import make_batch

pytestmark = pytest.mark.integration


def partition_dir(cluster: LocalCluster, node_id: int, topic: str) -> Path:
    return cluster.base_dir / f"node-{node_id}-data" / "logs" / f"{topic}-0"


async def produce_ok(node: NodeClient, topic: str, values: list[bytes]) -> None:
    for value in values:
        answer = await node.produce(topic, 0, [make_batch([value])])
        assert from_partition_error(answer.error) is None, answer.error


# -- defect 9: disk full -------------------------------------------------------------------


async def test_disk_full_keeps_reads_and_resumes_writes_without_restart(
    local_cluster: Callable[..., LocalCluster],
    store: MetadataStore,
    clients: Callable[[str], NodeClient],
    tmp_path: Path,
) -> None:
    """Defect 9: "Disk full leaves the partition offline, even for reads, until the node
    restarts." While writes under the data directory fail with ENOSPC, produce answers a
    retriable STORAGE_ERROR (ErrorInfo says disk_full) and appends nothing, fetches of
    the existing data keep working; once the fault is cleared, produce works again and
    the log has no gap and no partial batch, with the same process."""
    control = tmp_path / "faults"
    cluster = local_cluster(env={FAULTS_FILE_ENV: str(control)})
    cluster.add_node(1, args=FAST_NODE_ARGS)
    cluster.start()
    await create_topic(store, "full", [(1, (1,))])
    node = clients(cluster.address("node-1"))
    await eventually(lambda: node.leads("full", 0), timeout_s=10, what="node 1 leads")
    await produce_ok(node, "full", [b"a", b"b"])
    pid = cluster.pid("node-1")

    control.write_text(f"enospc:{cluster.base_dir / 'node-1-data' / 'logs'}\n")
    acknowledged = [b"a", b"b"]

    async def refused() -> object:
        # The node re-reads the control file every 100 ms: produces before that succeed.
        value = f"try-{len(acknowledged)}".encode()
        answer = await node.produce("full", 0, [make_batch([value])])
        error = from_partition_error(answer.error)
        if error is None:
            acknowledged.append(value)
        return error

    error = await eventually(refused, timeout_s=5, what="produce refused for a full disk")
    assert error.reason == "STORAGE_ERROR" and error.retriable, error
    assert error.metadata.get("cause") == "disk_full", error.metadata
    for _ in range(3):  # still full: refused every time, and nothing partial is left
        assert await refused() is not None
    assert await node.read_all("full", 0) == acknowledged
    assert (await node.list_offset("full", 0)).offset == len(acknowledged)

    control.write_text("")
    await eventually(lambda: _produced(node, "full", b"c"), timeout_s=5, what="produce again")
    assert await node.read_all("full", 0) == [*acknowledged, b"c"]
    assert cluster.pid("node-1") == pid  # no restart


async def _produced(node: NodeClient, topic: str, value: bytes) -> bool:
    answer = await node.produce(topic, 0, [make_batch([value])])
    return from_partition_error(answer.error) is None


# -- defect 10: poison batches -------------------------------------------------------------


def poison(
    records: bytes,
    *,
    record_count: int,
    compression: int = 1,
    uncompressed_bytes: int | None = None,
) -> records_pb2.RecordBatch:
    """A batch with a valid crc32c over whatever `records` is."""
    return records_pb2.RecordBatch(
        record_count=record_count,
        first_timestamp_ms=1,
        max_timestamp_ms=1,
        compression=compression,  # type: ignore[arg-type]  # unknown values on purpose
        crc32c=crc32c(records),
        records=records,
        uncompressed_bytes=len(records) if uncompressed_bytes is None else uncompressed_bytes,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
    )


def poison_batches() -> dict[str, records_pb2.RecordBatch]:
    two = make_batch([b"x", b"y"]).records
    return {
        "7 said, 2 inside": poison(two, record_count=7),
        "record_count 2^31-1": poison(two, record_count=(1 << 31) - 1),
        "unknown codec 9": poison(two, record_count=2, compression=9),
        "zstd flag over plain bytes": poison(
            two, record_count=2, compression=records_pb2.COMPRESSION_CODEC_ZSTD
        ),
        "plain flag over zstd bytes": poison(
            compress(two, records_pb2.COMPRESSION_CODEC_ZSTD),
            record_count=2,
            uncompressed_bytes=len(two),
        ),
        "not a Records message": poison(b"\x0a\xff\xff\xff\x0fgarbage", record_count=1),
    }


async def test_poison_batches_are_refused_and_consumers_read_past_them(
    local_cluster: Callable[..., LocalCluster],
    store: MetadataStore,
    clients: Callable[[str], NodeClient],
) -> None:
    """Defect 10: "Poison batches: the leader appends batches that the official consumer
    rejects, blocking the partition for every consumer forever." Each poison batch (sent
    alone, and after a good batch in the same request) is CORRUPT_BATCH with a message
    naming the problem, nothing of the request is appended, and a Brook Consumer reads
    every good record."""
    cluster = local_cluster()
    cluster.add_coordinator(args=["--lease-ttl-s", "2"])
    cluster.add_node(1, args=FAST_NODE_ARGS)
    cluster.start()
    await create_topic(store, "poison", [(1, (1,))])
    node = clients(cluster.address("node-1"))
    await eventually(lambda: node.leads("poison", 0), timeout_s=10, what="node 1 leads")
    good: list[bytes] = []
    for number, (problem, batch) in enumerate(poison_batches().items()):
        value = f"good-{number}".encode()
        await produce_ok(node, "poison", [value])
        good.append(value)
        for batches in ([batch], [make_batch([b"never"]), batch]):
            answer = await node.produce("poison", 0, batches)
            error = from_partition_error(answer.error)
            assert error is not None and error.reason == "CORRUPT_BATCH", (problem, answer)
            assert "nothing was appended" in error.message, (problem, error.message)
        assert (await node.list_offset("poison", 0)).offset == len(good), problem
    await produce_ok(node, "poison", [b"last"])
    good.append(b"last")

    async with Consumer(
        cluster.address("coordinator"), auto_offset_reset="earliest", fetch_max_wait_ms=200
    ) as consumer:
        consumer.assign([("poison", 0)])
        seen: list[bytes] = []

        async def read_everything() -> bool:
            seen.extend(record.value for record in await consumer.poll(timeout_ms=500))
            return len(seen) >= len(good)

        await eventually(read_everything, timeout_s=15, what="consumer reads the good data")
    assert seen == good


def test_poison_messages_name_the_problem() -> None:
    """Defect 10 (unit): each poison batch's CORRUPT_BATCH message says what is wrong."""
    from brook.errors import BrookError
    from brook.services.node.batches import validate_batch

    expected = {
        "7 said, 2 inside": "record_count is 7 but the records hold 2",
        "record_count 2^31-1": "more than the limit",
        "unknown codec 9": "unknown compression codec 9",
        "zstd flag over plain bytes": "do not decompress as zstd",
        "plain flag over zstd bytes": "not a Records message",
        "not a Records message": "not a Records message",
    }
    for problem, batch in poison_batches().items():
        with pytest.raises(BrookError) as caught:
            validate_batch(batch.SerializeToString(), 1 << 20)
        assert caught.value.reason == "CORRUPT_BATCH"
        assert expected[problem] in caught.value.message, (problem, caught.value.message)
    for codec in (2, 3, 4):  # every codec the client writes is accepted
        records = make_batch([b"x", b"y", b"z"]).records
        data = compress(records, codec)
        batch = poison(data, record_count=3, compression=codec, uncompressed_bytes=len(records))
        assert validate_batch(batch.SerializeToString(), 1 << 20).record_count == 3


# -- defect 2: corruption inside an older segment ------------------------------------------


def flip_middle_bytes(path: Path, count: int = 16) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for position in range(middle, middle + count):
        data[position] ^= 0xFF
    path.write_bytes(bytes(data))


def older_segment(directory: Path) -> Path:
    segments = sorted(directory.glob("*.log"))
    assert len(segments) >= 3, segments
    return segments[1]  # neither the first nor the active one


async def in_isr(store: MetadataStore, topic: str, node_id: int, wanted: bool) -> bool:
    found = await store.get_partition(topic, 0)
    assert found is not None
    return (node_id in found[0].isr) == wanted


CORRUPTION_TOPIC_CONFIGS = {
    "segment_bytes": "2048",
    "min_insync_replicas": "2",
    "replica_lag_max_ms": "1000",
}


async def test_corrupt_older_segment_is_dropped_on_restart_and_refetched(
    local_cluster: Callable[..., LocalCluster],
    store: MetadataStore,
    clients: Callable[[str], NodeClient],
) -> None:
    """Defect 2: "Corruption inside an older segment is not detected." A follower is
    stopped (SIGTERM, a clean shutdown), bytes in the middle of one of its older
    segments are flipped, and it is restarted: startup recovery scans that segment (no
    longer known clean), truncates the log at the first corrupt batch, logs the offsets
    it dropped, and re-fetches them from the leader. Made leader, it serves every
    acknowledged record."""
    cluster = local_cluster()
    for node_id in (1, 2, 3):
        cluster.add_node(node_id, args=FAST_NODE_ARGS)
    cluster.start()
    await create_topic(store, "flips", [(1, (1, 2, 3))], configs=CORRUPTION_TOPIC_CONFIGS)
    leader = clients(cluster.address("node-1"))
    await eventually(lambda: leader.leads("flips", 0), timeout_s=10, what="node 1 leads")
    values = [f"record-{n:03d}-".encode() * 8 for n in range(60)]
    await produce_ok(leader, "flips", values)  # acks=all: every follower has them

    cluster.kill("node-3", signal.SIGTERM)
    assert cluster.wait_exit("node-3") is not None
    await eventually(
        lambda: in_isr(store, "flips", 3, False), timeout_s=10, what="node 3 out of the ISR"
    )
    damaged = older_segment(partition_dir(cluster, 3, "flips"))
    flip_middle_bytes(damaged)
    cluster.restart("node-3")
    await eventually(
        lambda: in_isr(store, "flips", 3, True), timeout_s=15, what="node 3 back in the ISR"
    )

    log_text = cluster.processes["node-3"].log_path.read_text()
    assert f"truncated corrupt tail of {damaged.name}" in log_text, log_text[-3000:]
    assert "dropped offsets" in log_text

    await move_leader(store, "flips", 0, 3)
    new_leader = clients(cluster.address("node-3"))
    await eventually(lambda: new_leader.leads("flips", 0), timeout_s=10, what="node 3 leads")
    assert await new_leader.read_all("flips", 0) == values


async def test_corrupt_batch_found_on_read_hands_leadership_over(
    local_cluster: Callable[..., LocalCluster],
    store: MetadataStore,
    clients: Callable[[str], NodeClient],
) -> None:
    """Defect 2 (run time): "then answers STORAGE_ERROR for offsets 0-57 forever, while two
    healthy replicas exist." Bytes of an older segment of the running leader are flipped
    under it; the first read of them fails its CRC check, and the leader hands leadership
    to a healthy in-sync replica, truncates its own log there and re-fetches it: every
    acknowledged record stays readable from the cluster."""
    cluster = local_cluster()
    for node_id in (1, 2, 3):
        cluster.add_node(node_id, args=FAST_NODE_ARGS)
    cluster.start()
    await create_topic(store, "rot", [(1, (1, 2, 3))], configs=CORRUPTION_TOPIC_CONFIGS)
    leader = clients(cluster.address("node-1"))
    await eventually(lambda: leader.leads("rot", 0), timeout_s=10, what="node 1 leads")
    values = [f"record-{n:03d}-".encode() * 8 for n in range(60)]
    await produce_ok(leader, "rot", values)

    flip_middle_bytes(older_segment(partition_dir(cluster, 1, "rot")))
    fetched = await leader.fetch("rot", 0, 0, max_bytes=1 << 20)
    assert from_partition_error(fetched.error) is not None  # the damage is found, not served

    async def new_leader_serves_everything() -> bool:
        found = await store.get_partition("rot", 0)
        assert found is not None and found[0].leader != 1
        node = clients(cluster.address(f"node-{found[0].leader}"))
        return await node.read_all("rot", 0) == values

    await eventually(new_leader_serves_everything, timeout_s=15, what="a healthy leader")
    log_text = cluster.processes["node-1"].log_path.read_text()
    assert "handed leadership to node" in log_text, log_text[-3000:]
    assert "failed their CRC check on read" in log_text
    await eventually(
        lambda: in_isr(store, "rot", 1, True),
        timeout_s=15,
        what="node 1 re-fetched and back in the ISR",
    )
