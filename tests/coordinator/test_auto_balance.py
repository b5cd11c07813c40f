"""Automatic balancing and decommissioning through the real thing (issue 13): real etcd,
real coordinator and storage-node processes, a steady acks=all producer.

- A 4th node started exactly as a StatefulSet would (`--node-id 4`, nothing else) gets
  its share of replicas and leaders with no command run; every acknowledged record is
  still there afterwards, no gap, no duplicate.
- `DecommissionNode 4` empties it (drained), and stopping it then leaves no partition
  under-replicated.
- The CLI (`brook node list`, `partitions rebalance|reassign`, `leaders elect`) on it.
- A coordinator SIGKILLed in the middle of a move (a standby takes over): the move
  completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from brook.client import Admin, Consumer, Producer
from brook.client.cli.main import build_parser
from brook.client.records import TopicPartition
from brook.v1 import admin_pb2
from tests.harness.cluster import LocalCluster
from tests.harness.wait import eventually
from tests.node.cluster_helpers import FAST_NODE_ARGS

pytestmark = pytest.mark.integration

TOPIC = "balanced"
PARTITIONS = 6
WAIT_S = 60.0
COORDINATOR_ARGS = ["--lease-ttl-s", "2", "--preferred-election-interval-s", "1"]


def start_cluster(
    local_cluster: Callable[..., LocalCluster], coordinators: int = 1
) -> LocalCluster:
    cluster = local_cluster()
    for index in range(coordinators):
        cluster.add_coordinator(f"coordinator-{index}", args=COORDINATOR_ARGS)
    for node_id in (1, 2, 3):
        cluster.add_node(node_id, args=FAST_NODE_ARGS)
    cluster.start()
    return cluster


class SteadyProducer:
    """acks=all records, one after another, until stopped; remembers what was acked."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.acked: dict[tuple[int, int], bytes] = {}
        self.failed = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async with Producer(self.bootstrap, acks="all", linger_ms=2) as producer:
            index = 0
            while not self._stop.is_set():
                batch = []
                for _ in range(50):
                    value = b"value-%08d" % index
                    batch.append((value, await producer.send(TOPIC, value, key=b"%d" % index)))
                    index += 1
                for value, future in batch:
                    try:
                        where = await asyncio.wait_for(future, WAIT_S)
                    except Exception:
                        self.failed += 1
                        continue
                    self.acked[(where.partition, where.offset)] = value
                await asyncio.sleep(0.01)  # a steady rate, not a flood

    async def stop(self) -> None:
        self._stop.set()
        assert self._task is not None
        await asyncio.wait_for(self._task, WAIT_S)


async def read_back(bootstrap: str, acked: dict[tuple[int, int], bytes]) -> None:
    """Every acknowledged record is there, and every partition reads 0..n-1 once."""
    ends: dict[int, int] = {}
    for partition, offset in acked:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    seen: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(PARTITIONS)}
    async with Consumer(bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign(TopicPartition(TOPIC, p) for p in range(PARTITIONS))
        async with asyncio.timeout(WAIT_S):
            while any(len(seen[p]) < end for p, end in ends.items()):
                for record in await consumer.poll(timeout_ms=500, max_records=10_000):
                    seen[record.partition].append((record.offset, record.value or b""))
    for partition, records in seen.items():
        offsets = [offset for offset, _ in records]
        assert offsets == list(range(len(offsets))), f"partition {partition}: gap or duplicate"
    for (partition, offset), value in acked.items():
        assert seen[partition][offset] == (offset, value), f"{partition}@{offset} lost"


def node_row(nodes: list[admin_pb2.NodeStatus], node_id: int) -> admin_pb2.NodeStatus:
    return next(n for n in nodes if n.node_id == node_id)


async def has_share(admin: Admin, node_id: int) -> bool:
    """The node holds its share (12 replicas over 4 nodes: 3), leads at least one
    partition, and nothing is moving."""
    if await admin.list_reassignments():
        return False
    nodes = await admin.list_nodes()
    row = node_row(nodes, node_id)
    counts = [n.replica_count for n in nodes if n.state == admin_pb2.NODE_STATE_ACTIVE]
    return row.replica_count == 3 and row.leader_count >= 1 and max(counts) - min(counts) <= 1


async def test_a_new_node_gets_its_share_and_a_decommissioned_one_leaves_cleanly(
    local_cluster: Callable[..., LocalCluster],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    cluster = start_cluster(local_cluster)
    bootstrap = cluster.address("coordinator-0")
    async with Admin(bootstrap) as admin:
        await eventually(
            lambda: _live_count(admin, 3), timeout_s=WAIT_S, what="three nodes registered"
        )
        await admin.create_topic(TOPIC, PARTITIONS, 2)
        producer = SteadyProducer(bootstrap)
        producer.start()
        await eventually(lambda: _acked(producer, 200), timeout_s=WAIT_S, what="records acked")

        # Scale out: start node 4 as a StatefulSet would; no command is run.
        cluster.add_node(4, args=FAST_NODE_ARGS)
        started = time.monotonic()
        cluster.start(["node-4"])
        await eventually(lambda: has_share(admin, 4), timeout_s=WAIT_S, what="node 4's share")
        with capsys.disabled():
            print(f"\nnode 4 reached its share in {time.monotonic() - started:.1f}s"
                  f" ({len(producer.acked)} records acked so far)")  # fmt: skip

        # Scale in: decommission node 4; it drains, then it may stop.
        status = await admin.decommission_node(4)
        assert status.state in (
            admin_pb2.NODE_STATE_DECOMMISSIONING, admin_pb2.NODE_STATE_DRAINED
        )  # fmt: skip

        async def drained() -> bool:
            row = node_row(await admin.list_nodes(), 4)
            return row.state == admin_pb2.NODE_STATE_DRAINED and not row.leader_count

        await eventually(drained, timeout_s=WAIT_S, what="node 4 drained")
        await eventually(
            lambda: _no_moves(admin), timeout_s=WAIT_S, what="every move finished"
        )
        cluster.kill("node-4", signal.SIGTERM)
        assert cluster.wait_exit("node-4") is not None
        await eventually(lambda: _live_count(admin, 3, exact=True), timeout_s=WAIT_S,
                         what="node 4 gone")  # fmt: skip
        described = await admin.describe_cluster()
        assert not described.under_replicated_partitions
        assert not described.offline_partitions
        await producer.stop()
        assert len(producer.acked) > 200
        await read_back(bootstrap, producer.acked)
        # The topic's replicas are back on nodes 1-3, two each per partition.
        topic = await admin.describe_topic(TOPIC)
        assert all(4 not in p.replica_ids and len(p.isr_ids) == 2 for p in topic.partitions)

    # The CLI, in Kafka's habits, on the same cluster.
    out = await brook(capsys, bootstrap, "node", "list")
    assert "4\tdrained\tno" in out and "1\tactive\tyes" in out
    listed = json.loads(await brook(capsys, bootstrap, "node", "list", "--output", "json"))
    states = {n["node_id"]: n["state"] for n in listed["nodes"]}
    assert states[4].endswith("DRAINED") and states[1].endswith("ACTIVE"), states
    out = await brook(capsys, bootstrap, "partitions", "rebalance")
    assert out.strip().endswith("0 started")
    planned = json.loads(await brook(capsys, bootstrap, "partitions", "rebalance", "--output",
                                     "json"))  # fmt: skip
    assert planned.get("started_count", 0) == 0 and "moves" not in planned  # balanced
    first = topic.partitions[0]
    spare = next(n for n in (1, 2, 3) if n not in first.replica_ids)
    target = [first.replica_ids[0], spare]
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": TOPIC, "partition": first.partition, "replicas": target}]}))  # fmt: skip
    out = await brook(capsys, bootstrap, "partitions", "reassign", "--execute", str(plan))
    assert out.startswith(f"started {TOPIC}-{first.partition}")

    async def complete() -> bool:
        args = build_parser().parse_args(["partitions", "reassign", "--status", str(plan)])
        args.bootstrap = bootstrap
        return await args.handler(args) == 0

    await eventually(complete, timeout_s=WAIT_S, what="the plan file's move")
    assert "is complete" in capsys.readouterr().out
    out = await brook(capsys, bootstrap, "leaders", "elect", "--preferred", "--topic", TOPIC)
    assert out.count(f"{TOPIC}-") == PARTITIONS
    async with Admin(bootstrap) as admin:
        final = await admin.describe_topic(TOPIC)
        assert list(final.partitions[first.partition].replica_ids) == target


async def brook(capsys: pytest.CaptureFixture[str], bootstrap: str, *argv: str) -> str:
    """Runs one client command in this loop; returns what it printed."""
    capsys.readouterr()
    args = build_parser().parse_args(list(argv))
    args.bootstrap = bootstrap
    assert await args.handler(args) == 0
    return capsys.readouterr().out


async def test_a_move_survives_a_coordinator_kill(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = start_cluster(local_cluster, coordinators=2)
    bootstrap = ",".join(cluster.address(f"coordinator-{i}") for i in range(2))
    async with Admin(bootstrap) as admin:
        await eventually(
            lambda: _live_count(admin, 3), timeout_s=WAIT_S, what="three nodes registered"
        )
        await admin.create_topic(TOPIC, PARTITIONS, 2)
        producer = SteadyProducer(bootstrap)
        producer.start()
        await eventually(lambda: _acked(producer, 100), timeout_s=WAIT_S, what="records acked")
        # Node 4 joins and is frozen at once: the moves onto it start and cannot finish.
        cluster.add_node(4, args=FAST_NODE_ARGS)
        cluster.start(["node-4"])
        cluster.kill("node-4", signal.SIGSTOP)
        moving = await eventually(admin.list_reassignments, timeout_s=WAIT_S, what="a move")
        assert any(4 in m.adding_replica_ids for m in moving)
        active = (await admin.describe_cluster()).coordinator.address
        name = next(f"coordinator-{i}" for i in range(2)
                    if cluster.address(f"coordinator-{i}") == active)  # fmt: skip
        cluster.kill(name, signal.SIGKILL)
        cluster.kill("node-4", signal.SIGCONT)
        await eventually(lambda: has_share(admin, 4), timeout_s=WAIT_S, what="node 4's share")
        assert (await admin.describe_cluster()).coordinator.address != active
        await producer.stop()
        await read_back(bootstrap, producer.acked)


async def _live_count(admin: Admin, count: int, *, exact: bool = False) -> bool:
    live = len((await admin.describe_cluster()).nodes)
    return live == count if exact else live >= count


async def _acked(producer: SteadyProducer, count: int) -> bool:
    return len(producer.acked) >= count


async def _no_moves(admin: Admin) -> bool:
    with contextlib.suppress(Exception):
        return not await admin.list_reassignments()
    return False
