"""Reassignment as a long-running operation through the real thing (issue 13): real etcd,
a real coordinator and storage-node processes on loopback.

Three nodes hold a topic with a few MB of data; a 4th node joins (auto-balance off) and
replicas move onto it under a replication throttle. The rate into node 4, measured from
its own DescribeLogDirs sizes over time, stays within 20% of the throttle; raising the
throttle mid-move raises the rate; ListReassignments reports decreasing remaining bytes
and an ETA; the move completes and every record is still there. The CLI's throttle and
status commands run on the same cluster.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from brook.client import Admin, Consumer, Producer
from brook.client.cli.main import build_parser
from brook.client.records import TopicPartition
from brook.v1 import admin_pb2, storage_pb2, storage_pb2_grpc
from tests.harness.cluster import LocalCluster
from tests.harness.wait import eventually
from tests.node.cluster_helpers import FAST_NODE_ARGS

pytestmark = [pytest.mark.integration, pytest.mark.timing]

TOPIC = "moving"
PARTITIONS = 3
VALUE_BYTES = 8 * 1024
RECORDS_PER_PARTITION = 500  # ~4.1 MB per partition, ~12 MB in all
WAIT_S = 90.0
MB = 1_000_000
SLOW_BYTES_PER_S = 1 * MB
FAST_BYTES_PER_S = 2 * MB
# Rates are measured over windows this long (several refills of the budget).
MEASURE_S = 2.5


class SizeSampler:
    """Samples the size of node 4's replicas of TOPIC (its DescribeLogDirs) over time."""

    def __init__(self, address: str, channel: grpc.aio.Channel | None = None) -> None:
        self.channel = channel if channel is not None else grpc.aio.insecure_channel(address)
        self.stub = storage_pb2_grpc.StorageServiceStub(self.channel)

    async def size(self) -> int:
        """A size every replica answered (a log busy changing its segments answers -1:
        asked again, bounded)."""
        for _ in range(50):
            response = await self.stub.DescribeLogDirs(
                storage_pb2.DescribeLogDirsRequest(topic=TOPIC), timeout=5.0
            )
            if all(r.size_bytes >= 0 for r in response.replicas):
                return sum(r.size_bytes for r in response.replicas)
        raise AssertionError("node 4 kept answering unreadable replica sizes")

    async def rate(self, seconds: float) -> tuple[float, int]:
        """(bytes/s over about `seconds`, the size at the end), from samples every 0.1 s:
        the slope between the first and last samples (a measure, not a synchronization)."""
        start_t, start = time.monotonic(), await self.size()
        end_t, end = start_t, start
        while end_t - start_t < seconds:
            await asyncio.sleep(0.1)
            end_t, end = time.monotonic(), await self.size()
        return (end - start) / (end_t - start_t), end

    async def close(self) -> None:
        await self.channel.close()


async def produce(bootstrap: str) -> dict[int, list[bytes]]:
    """RECORDS_PER_PARTITION incompressible values in each partition, acks=all, small
    batches (so the throttle's accounting is fine-grained)."""
    sent: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    async with Producer(bootstrap, acks="all", linger_ms=5, batch_bytes=64 * 1024) as producer:
        futures = []
        for _ in range(RECORDS_PER_PARTITION):
            for partition in range(PARTITIONS):
                value = os.urandom(VALUE_BYTES)
                sent[partition].append(value)
                futures.append(await producer.send(TOPIC, value, partition=partition))
        for future in futures:
            await asyncio.wait_for(future, WAIT_S)
    return sent


async def read_all(bootstrap: str, sent: dict[int, list[bytes]]) -> None:
    seen: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    async with Consumer(bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign(TopicPartition(TOPIC, p) for p in range(PARTITIONS))
        async with asyncio.timeout(WAIT_S):
            while any(len(seen[p]) < len(sent[p]) for p in range(PARTITIONS)):
                for record in await consumer.poll(timeout_ms=500, max_records=10_000):
                    seen[record.partition].append(record.value or b"")
    assert seen == sent, "a record was lost, duplicated or reordered"


async def brook_cli(capsys: pytest.CaptureFixture[str], bootstrap: str, *argv: str) -> str:
    capsys.readouterr()
    args = build_parser().parse_args(list(argv))
    args.bootstrap = bootstrap
    assert await args.handler(args) in (0, 3)
    return capsys.readouterr().out


async def test_a_throttled_move_runs_at_the_throttle_and_reports_progress(
    local_cluster: Callable[..., LocalCluster],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    cluster = local_cluster()
    cluster.add_coordinator("coordinator", args=["--lease-ttl-s", "2", "--no-auto-balance"])
    for node_id in (1, 2, 3):
        cluster.add_node(node_id, args=FAST_NODE_ARGS)
    cluster.start()
    bootstrap = cluster.address("coordinator")
    async with Admin(bootstrap) as admin:
        await eventually(lambda: _live(admin, 3), timeout_s=WAIT_S, what="three nodes")
        await admin.create_topic(TOPIC, PARTITIONS, 2)
        sent = await produce(bootstrap)
        node4 = cluster.add_node(4, args=[*FAST_NODE_ARGS, "--metrics-listen", "127.0.0.1:0"])
        cluster.start(["node-4"])
        metrics_address = str(node4.info["metrics_address"])
        await eventually(lambda: _live(admin, 4), timeout_s=WAIT_S, what="node 4 registered")

        # Every partition: keep its leader, replace the other replica by node 4.
        topic = await admin.describe_topic(TOPIC)
        targets = {p.partition: [p.leader_id, 4] for p in topic.partitions}
        started = await admin.reassign_partitions(
            TOPIC, targets, throttle_bytes_per_s=SLOW_BYTES_PER_S
        )
        assert {s.partition for s in started} == set(targets)
        assert all(list(s.adding_replica_ids) == [4] for s in started)
        throttle = await admin.describe_replication_throttle()
        assert throttle.cluster_bytes_per_second == SLOW_BYTES_PER_S

        sampler = SizeSampler(cluster.address("node-4"))
        try:
            await eventually(lambda: _at_least(sampler, 200_000), timeout_s=WAIT_S,
                             what="node 4 copying")  # fmt: skip
            slow, size_slow = await sampler.rate(MEASURE_S)
            first = await _progress(admin)
            await eventually(lambda: _progress_moved(admin, first), timeout_s=WAIT_S,
                             what="progress with a rate")  # fmt: skip
            second = await _progress(admin)

            # Raise the throttle mid-move: the rate follows within about a second.
            altered = await admin.alter_replication_throttle(FAST_BYTES_PER_S)
            assert altered.cluster_bytes_per_second == FAST_BYTES_PER_S
            await eventually(lambda: _gauge_is(metrics_address, FAST_BYTES_PER_S),
                             timeout_s=5.0, what="node 4 throttled at the new rate")  # fmt: skip
            fast, size_fast = await sampler.rate(MEASURE_S)
            with capsys.disabled():
                print(f"\nthrottle {SLOW_BYTES_PER_S} B/s: measured {slow:.0f} B/s;"
                      f" throttle {FAST_BYTES_PER_S} B/s: measured {fast:.0f} B/s"
                      f" (node 4 had {size_fast} bytes)")  # fmt: skip
            total = sum(len(v) for values in sent.values() for v in values)
            assert size_fast < total, "the move ended before the fast rate was measured"
            assert slow == pytest.approx(SLOW_BYTES_PER_S, rel=0.2)
            assert fast == pytest.approx(FAST_BYTES_PER_S, rel=0.2)
            assert size_slow < size_fast
        finally:
            await sampler.close()

        # Progress: remaining bytes go down, with a rate and an estimate.
        for node_progress_first, node_progress_second in zip(first, second, strict=True):
            assert node_progress_second.remaining_bytes <= node_progress_first.remaining_bytes
        assert sum(p.remaining_bytes for p in second) < sum(p.remaining_bytes for p in first)
        assert any(p.HasField("estimated_remaining_seconds") for p in second)
        assert all(p.HasField("rate_bytes_per_second") for p in second
                   if p.remaining_bytes)  # fmt: skip

        # Paged: one partition a page, every move once, in order.
        paged, _ = await admin.list_reassignments_with_throttle(TOPIC, page_size=1)
        assert [s.partition for s in paged] == list(range(PARTITIONS))

        # The CLI while it runs: status with progress (text and JSON), the throttle.
        out = await brook_cli(capsys, bootstrap, "partitions", "reassign", "--status")
        assert f"{TOPIC}-0" in out and "node 4: copied" in out and "throttle" in out
        listed = json.loads(await brook_cli(
            capsys, bootstrap, "partitions", "reassign", "--status", "--output", "json"))
        assert listed["throttle"]["cluster_bytes_per_second"] == str(FAST_BYTES_PER_S)
        out = await brook_cli(capsys, bootstrap, "partitions", "throttle", "--bytes",
                              str(4 * MB), "--node", "4")  # fmt: skip
        assert "node 4: 3.8 MiB/s" in out
        shown = json.loads(await brook_cli(
            capsys, bootstrap, "partitions", "throttle", "--output", "json"))
        assert shown["throttle"]["nodes"] == [{"node_id": 4, "bytes_per_second": str(4 * MB)}]

        await eventually(lambda: _no_moves(admin), timeout_s=WAIT_S, what="the moves done")
        throttled_in = _metric(await _scrape(metrics_address),
                               'brook_node_replication_throttled_bytes_total{direction="in"}')
        assert throttled_in >= 0.9 * sum(len(v) for values in sent.values() for v in values)
        topic = await admin.describe_topic(TOPIC)
        assert all(4 in p.replica_ids and sorted(p.isr_ids) == sorted(p.replica_ids)
                   for p in topic.partitions)  # fmt: skip
        # --status of the plan file, once complete, removes the cluster-wide throttle
        # (kafka-reassign-partitions --verify); node 4's own rate stays.
        plan = tmp_path / "plan.json"
        plan.write_text(json.dumps({"version": 1, "partitions": [
            {"topic": TOPIC, "partition": p, "replicas": r} for p, r in targets.items()]}))
        out = await brook_cli(capsys, bootstrap, "partitions", "reassign", "--status", str(plan))
        assert out.count("is complete.") == PARTITIONS and "Throttle was removed." in out
        out = await brook_cli(capsys, bootstrap, "partitions", "throttle")
        assert "replication throttle: none" in out and "node 4" in out
        out = await brook_cli(capsys, bootstrap, "partitions", "throttle", "--remove",
                              "--node", "4")  # fmt: skip
        assert out.strip() == "replication throttle: none"

        # A move started with --throttle-bytes so low it cannot finish, then cancelled:
        # --cancel puts the replicas back and removes the throttle.
        first = (await admin.describe_topic(TOPIC)).partitions[0]
        spare = next(n for n in (1, 2, 3) if n not in first.replica_ids)
        slow_plan = tmp_path / "slow.json"
        slow_plan.write_text(json.dumps({"version": 1, "partitions": [
            {"topic": TOPIC, "partition": 0, "replicas": [first.leader_id, spare]}]}))
        out = await brook_cli(capsys, bootstrap, "partitions", "reassign", "--execute",
                              str(slow_plan), "--throttle-bytes", "10000")  # fmt: skip
        assert out.startswith(f"started {TOPIC}-0") and "10000 bytes/s" in out
        out = await brook_cli(capsys, bootstrap, "partitions", "reassign", "--cancel",
                              str(slow_plan))  # fmt: skip
        assert f"cancelled {TOPIC}-0" in out and "Throttle was removed." in out
        assert not await admin.list_reassignments()
        assert (await admin.describe_replication_throttle()).cluster_bytes_per_second == 0
        await read_all(bootstrap, sent)


async def _scrape(address: str) -> str:
    def get() -> str:
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=5.0) as response:
            return str(response.read().decode())

    return await asyncio.to_thread(get)


def _metric(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{series} not in /metrics")


async def _gauge_is(address: str, rate: int) -> bool:
    series = 'brook_node_replication_throttle_rate_bytes{direction="in"}'
    return _metric(await _scrape(address), series) == rate


async def _live(admin: Admin, count: int) -> bool:
    nodes = await admin.list_nodes()
    return sum(1 for n in nodes if n.live) >= count


async def _at_least(sampler: SizeSampler, size: int) -> bool:
    return await sampler.size() >= size


async def _no_moves(admin: Admin) -> bool:
    return not await admin.list_reassignments()


async def _progress(admin: Admin) -> list[admin_pb2.ReplicaCopyProgress]:
    moving = await admin.list_reassignments(TOPIC)
    found = [p for status in sorted(moving, key=lambda s: s.partition) for p in status.progress]
    assert len(found) == PARTITIONS and all(p.HasField("remaining_bytes") for p in found)
    return found


async def _progress_moved(admin: Admin, first: list[admin_pb2.ReplicaCopyProgress]) -> bool:
    """Progress has moved on from `first` and a rate is known."""
    now = await _progress(admin)
    return (sum(p.remaining_bytes for p in now) < sum(p.remaining_bytes for p in first)
            and any(p.HasField("estimated_remaining_seconds") for p in now))  # fmt: skip


async def test_the_leader_side_throttle_holds_a_move_from_one_source(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """Only the source node (a partition's leader) is throttled, by its own per-node rate:
    node 4, the adding replica, has no rate of its own, so what holds the copy to the rate
    is the leader's outbound budget."""
    cluster = local_cluster()
    cluster.add_coordinator("coordinator", args=["--lease-ttl-s", "2", "--no-auto-balance"])
    for node_id in (1, 2, 3):
        cluster.add_node(node_id, args=FAST_NODE_ARGS)
    cluster.start()
    bootstrap = cluster.address("coordinator")
    async with Admin(bootstrap) as admin:
        await eventually(lambda: _live(admin, 3), timeout_s=WAIT_S, what="three nodes")
        await admin.create_topic(TOPIC, PARTITIONS, 2)
        sent = await produce(bootstrap)
        cluster.add_node(4, args=FAST_NODE_ARGS)
        cluster.start(["node-4"])
        await eventually(lambda: _live(admin, 4), timeout_s=WAIT_S, what="node 4 registered")
        partition = (await admin.describe_topic(TOPIC)).partitions[0]
        leader = partition.leader_id
        throttle = await admin.alter_replication_throttle(SLOW_BYTES_PER_S, node_id=leader)
        assert throttle.cluster_bytes_per_second == 0
        await admin.reassign_partitions(TOPIC, {0: [leader, 4]})
        sampler = SizeSampler(cluster.address("node-4"))
        try:
            await eventually(lambda: _at_least(sampler, 200_000), timeout_s=WAIT_S,
                             what="node 4 copying")  # fmt: skip
            rate, size = await sampler.rate(MEASURE_S)
        finally:
            await sampler.close()
        assert size < len(b"".join(sent[0])), "the move ended before the rate was measured"
        assert rate == pytest.approx(SLOW_BYTES_PER_S, rel=0.2), rate
        await admin.alter_replication_throttle(0, node_id=leader)
        await eventually(lambda: _no_moves(admin), timeout_s=WAIT_S, what="the move done")
    await read_all(bootstrap, sent)
