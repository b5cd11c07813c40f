"""Replication health in the metrics of a real cluster: SIGKILL a follower and the
leader's and the coordinator's under-replicated counts go up (and the ISR shrink is
counted); restart it and they go back to 0 once it has caught up (an ISR expansion is
counted). The processes log JSON lines (--log-format json), checked line by line: the
leader and follower changes, ISR changes and elections carry their topic, partition and
epoch."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from typing import Any

import pytest

from brook.client import Admin, Producer
from tests.harness.cluster import LocalCluster
from tests.harness.wait import eventually
from tests.observability.helpers import scrape, value

pytestmark = pytest.mark.integration

WAIT_S = 30.0
COMMON = ["--metrics-listen", "127.0.0.1:0", "--log-format", "json"]
NODE_ARGS = [*COMMON, "--lease-ttl-s", "2", "--replica-fetch-wait-ms", "200",
             "--drain-timeout-s", "2", "--isr-check-interval-ms", "100",
             "--isr-rejoin-min-ms", "1"]  # fmt: skip
TOPIC = "replicated"


def metrics_of(cluster: LocalCluster, name: str) -> str:
    return str(cluster.processes[name].info["metrics_address"])


def json_lines(cluster: LocalCluster, name: str) -> list[dict[str, Any]]:
    """Every JSON line of a process's log (the harness adds `--- start` lines of its own)."""
    lines = []
    for line in cluster.processes[name].log_path.read_text().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))  # every such line must parse
    return lines


async def test_follower_kill_under_replicated_and_back(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = local_cluster()
    cluster.add_coordinator(args=[*COMMON, "--preferred-election-interval-s", "0"])
    for node_id in (1, 2, 3):
        cluster.add_node(node_id, args=NODE_ARGS)
    cluster.start()
    bootstrap = cluster.address("coordinator")
    async with Admin(bootstrap) as admin:

        async def three_nodes() -> bool:
            return len((await admin.describe_cluster()).nodes) == 3

        await eventually(three_nodes, timeout_s=WAIT_S, what="three live nodes")
        await admin.create_topic(TOPIC, 1, 3, {"replica_lag_max_ms": "1000"}, wait_for_leaders=True)
        topic = await admin.describe_topic(TOPIC)
    leader = topic.partitions[0].leader_id
    follower = next(r for r in topic.partitions[0].replica_ids if r != leader)
    async with Producer(bootstrap, acks="all") as producer:
        await (await producer.send(TOPIC, b"before"))

    async def leader_sees(count: int) -> bool:
        samples = scrape(metrics_of(cluster, f"node-{leader}"))
        return (
            value(samples, "brook_node_under_replicated_partitions") == count
            and value(samples, "brook_partition_under_replicated", topic=TOPIC, partition="0")
            == count
        )

    async def coordinator_sees(count: int) -> bool:
        samples = scrape(metrics_of(cluster, "coordinator"))
        return value(samples, "brook_cluster_under_replicated_partitions") == count

    await eventually(lambda: leader_sees(0), timeout_s=WAIT_S, what="no URP at first")
    before = scrape(metrics_of(cluster, f"node-{leader}"))
    shrinks = value(before, "brook_node_isr_shrinks_total") or 0
    expands = value(before, "brook_node_isr_expands_total") or 0

    cluster.kill(f"node-{follower}", signal.SIGKILL)
    await eventually(lambda: leader_sees(1), timeout_s=WAIT_S, what="URP on the leader")
    await eventually(lambda: coordinator_sees(1), timeout_s=WAIT_S, what="URP on coordinator")
    async with Producer(bootstrap, acks="all") as producer:
        await (await producer.send(TOPIC, b"while-down"))  # min ISR 2 of the 2 left

    cluster.restart(f"node-{follower}")
    await eventually(lambda: leader_sees(0), timeout_s=WAIT_S, what="URP back to 0")
    await eventually(lambda: coordinator_sees(0), timeout_s=WAIT_S, what="coordinator at 0")
    after = scrape(metrics_of(cluster, f"node-{leader}"))
    assert (value(after, "brook_node_isr_expands_total") or 0) > expands
    # The coordinator shrinks the ISR of a dead node's partitions; the leader may too.
    coordinator = scrape(metrics_of(cluster, "coordinator"))
    assert (
        value(coordinator, "brook_coordinator_partition_writes_total", cause="node_change") or 0
    ) >= 1 or (value(after, "brook_node_isr_shrinks_total") or 0) > shrinks
    caught_up = [s for s in after if s.name == "brook_partition_follower_lag_records"
                 and s.labels.get("follower") == str(follower)]  # fmt: skip
    assert [s.value for s in caught_up] == [0.0]

    # -- JSON logs: one object per line, with the fields operators filter on ---------------
    for name in ["coordinator", "node-1", "node-2", "node-3"]:
        lines = json_lines(cluster, name)
        assert lines, name
        for line in lines:
            assert {"ts", "level", "logger", "msg", "process"} <= set(line), line
            assert line["process"] == name
            if name.startswith("node-"):
                assert line["node"] == int(name.split("-")[1])
    leader_lines = [line for line in json_lines(cluster, f"node-{leader}")
                    if "leader at epoch" in line["msg"]]  # fmt: skip
    assert leader_lines and all(
        line["topic"] == TOPIC and line["partition"] == 0 and isinstance(line["epoch"], int)
        for line in leader_lines
    ), leader_lines
    follower_lines = [line for line in json_lines(cluster, f"node-{follower}")
                      if "follower of" in line["msg"]]  # fmt: skip
    assert follower_lines and all(line["topic"] == TOPIC for line in follower_lines)
    isr_lines = [line for line in json_lines(cluster, f"node-{leader}")
                 if "ISR" in line["msg"] and line.get("topic") == TOPIC]  # fmt: skip
    assert isr_lines, "the leader logged its ISR changes with the partition's fields"
