"""The operator's commands of the `brook` CLI through a real cluster (etcd, coordinator,
group manager, three nodes on loopback): `cluster health` (its exit code follows a
SIGKILLed node and its return), `topic describe --under-replicated|--offline`,
`group lag [--watch]` in records and seconds, `config describe|alter`, and `--output json`
on the read commands, its numbers checked against the Admin and Group APIs."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from brook.client import Admin, Producer
from brook.client.admin import GroupAdmin
from brook.client.cli import configs, groups, logs, topics
from brook.client.cli.main import build_parser
from brook.v1 import groups_pb2
from tests.harness.cluster import LocalCluster
from tests.harness.wait import eventually

pytestmark = pytest.mark.integration

WAIT_S = 30.0
NODE_ARGS = ["--lease-ttl-s", "2", "--replica-fetch-wait-ms", "200", "--drain-timeout-s", "2",
             "--isr-check-interval-ms", "100", "--isr-rejoin-min-ms", "1"]  # fmt: skip
GROUPS_ARGS = ["--lag-sample-interval-ms", "200"]
TOPIC = "ops"
PARTITIONS = 2
RECORDS = 40  # per partition
GROUP = "billing"
COMMITTED = 10
AGE_S = 90.0  # how old the record at the committed offset is


def _args(bootstrap: str, *argv: str) -> argparse.Namespace:
    args = build_parser().parse_args(["--bootstrap", bootstrap, *argv])
    return args


async def run_json(handler: Callable[..., Any], bootstrap: str, *argv: str) -> Any:
    out = io.StringIO()
    code = await handler(_args(bootstrap, *argv, "--output", "json"), out)
    assert code == 0, out.getvalue()
    return json.loads(out.getvalue())


async def health(bootstrap: str) -> tuple[int, dict[str, Any]]:
    out = io.StringIO()
    code = await topics.cmd_cluster(_args(bootstrap, "cluster", "health", "--output", "json"), out)
    return code, json.loads(out.getvalue())


def start_cluster(local_cluster: Callable[..., LocalCluster]) -> LocalCluster:
    cluster = local_cluster()
    cluster.add_coordinator(args=["--preferred-election-interval-s", "0"])
    cluster.add_groups(args=GROUPS_ARGS)
    for node_id in (1, 2, 3):
        cluster.add_node(node_id, args=NODE_ARGS)
    cluster.start()
    return cluster


async def test_operator_commands_against_a_real_cluster(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = start_cluster(local_cluster)
    bootstrap = cluster.address("coordinator")
    async with Admin(bootstrap) as admin:

        async def three_nodes() -> bool:
            return len((await admin.describe_cluster()).nodes) == 3

        await eventually(three_nodes, timeout_s=WAIT_S, what="three live nodes")
        await admin.create_topic(
            TOPIC, PARTITIONS, 3, {"replica_lag_max_ms": "1000"}, wait_for_leaders=True
        )
        now_ms = int(time.time() * 1000)
        async with Producer(bootstrap, acks="all", linger_ms=5) as producer:
            for partition in range(PARTITIONS):
                for offset in range(RECORDS):
                    stamp = now_ms - int(AGE_S * 1000) if offset <= COMMITTED else now_ms
                    await producer.send(
                        TOPIC, b"v%d" % offset, partition=partition, timestamp_ms=stamp
                    )
            await asyncio.wait_for(producer.flush(), WAIT_S)
        async with GroupAdmin(bootstrap) as group_admin:
            await group_admin.call(
                "CommitOffsets",
                groups_pb2.CommitOffsetsRequest(
                    group_id=GROUP,
                    member_epoch=-1,
                    offsets=[
                        groups_pb2.OffsetCommit(topic=TOPIC, partition=p, offset=COMMITTED)
                        for p in range(PARTITIONS)
                    ],
                ),
            )

            # -- cluster health: 0 on a healthy cluster (text and json agree) -----------
            async def healthy() -> bool:
                code, verdict = await health(bootstrap)
                return code == 0 and verdict["healthy"]

            await eventually(healthy, timeout_s=WAIT_S, what="a healthy cluster")
            out = io.StringIO()
            assert await topics.cmd_cluster(_args(bootstrap, "cluster", "health"), out) == 0
            assert out.getvalue().startswith("healthy: 3 nodes, 2 partitions")

            # -- topic list / describe / cluster describe as JSON match the Admin API --
            listed = await run_json(topics.cmd_topic, bootstrap, "topic", "list")
            assert [t["name"] for t in listed["topics"]] == [TOPIC]
            described = await run_json(topics.cmd_topic, bootstrap, "topic", "describe", TOPIC)
            topic = await admin.describe_topic(TOPIC)
            (document,) = described["topics"]
            assert document["partition_count"] == PARTITIONS
            assert [
                (p["partition"] if "partition" in p else 0, p["leader_id"], p["isr_ids"])
                for p in document["partitions"]
            ] == [(p.partition, p.leader_id, list(p.isr_ids)) for p in topic.partitions]
            whole = await run_json(topics.cmd_cluster, bootstrap, "cluster", "describe")
            assert len(whole["nodes"]) == 3 and whole["topic_count"] == 1
            # -- logs dirs: every node, every replica, sizes on disk, leaders as described
            dirs = await run_json(logs.cmd_logs, bootstrap, "logs", "dirs")
            assert sorted(n["node_id"] for n in dirs["nodes"]) == [1, 2, 3]
            leaders = {p.partition: p.leader_id for p in topic.partitions}
            for node in dirs["nodes"]:
                replicas = node["replicas"]
                assert [(r["topic"], r.get("partition", 0)) for r in replicas] == [
                    (TOPIC, p) for p in range(PARTITIONS)
                ]
                for replica in replicas:
                    assert int(replica["size_bytes"]) > 0 and replica["segments"] >= 1
                    assert replica.get("is_leader", False) == (
                        leaders[replica.get("partition", 0)] == node["node_id"]
                    )
                assert int(node["size_bytes"]) == sum(int(r["size_bytes"]) for r in replicas)
                assert int(node["free_bytes"]) > 0 and node["replica_count"] == PARTITIONS
            one = await run_json(
                logs.cmd_logs, bootstrap, "logs", "dirs", "--node", "2", "--max-partitions", "1"
            )
            (node_two,) = one["nodes"]
            assert node_two["truncated"] and len(node_two["replicas"]) == 1
            text = io.StringIO()
            assert await logs.cmd_logs(_args(bootstrap, "logs", "dirs"), text) == 0
            assert text.getvalue().count("Node: ") == 3 and "SIZE-BYTES" in text.getvalue()
            none = await run_json(
                topics.cmd_topic, bootstrap, "topic", "describe", "--under-replicated"
            )
            assert none == {"topics": []}

            # -- group lag: records equal DescribeGroup's; seconds from the lag samples --
            async def lag_with_seconds() -> dict[str, Any] | None:
                document = await run_json(groups.cmd_lag, bootstrap, "group", "lag", GROUP)
                seconds = [p["lag_seconds"] for p in document["partitions"]]
                return document if all(s is not None for s in seconds) else None

            lag = await eventually(lag_with_seconds, timeout_s=WAIT_S, what="time lag sampled")
            described_group = await group_admin.describe(GROUP)
            assert {(p["topic"], p["partition"]): p["lag"] for p in lag["partitions"]} == {
                (o.topic, o.partition): o.lag for o in described_group.offsets
            }
            assert lag["total_lag"] == PARTITIONS * (RECORDS - COMMITTED)
            for partition in lag["partitions"]:
                assert AGE_S - 5 <= partition["lag_seconds"] <= AGE_S + 60, partition
            out = io.StringIO()
            await groups.cmd_lag(_args(bootstrap, "group", "lag", GROUP), out)
            assert "LAG-SECONDS" in out.getvalue() and f"TotalLag: {lag['total_lag']}" in (
                out.getvalue()
            )
            watched = io.StringIO()
            await groups.cmd_lag(
                _args(
                    bootstrap,
                    "group",
                    "lag",
                    GROUP,
                    "--watch",
                    "--lag-interval-ms",
                    "500",
                    "--max-updates",
                    "2",
                    "--output",
                    "json",
                ),
                watched,
            )
            updates = [json.loads(line) for line in watched.getvalue().splitlines()]
            assert len(updates) == 2 and all(u["total_lag"] == lag["total_lag"] for u in updates)
            group_json = await run_json(groups.cmd_describe, bootstrap, "group", "describe", GROUP)
            assert group_json["group_id"] == GROUP and len(group_json["offsets"]) == PARTITIONS
            listed_groups = await run_json(groups.cmd_list, bootstrap, "group", "list")
            assert [g["group_id"] for g in listed_groups["groups"]] == [GROUP]

        # -- config alter / describe --------------------------------------------------
        out = io.StringIO()
        alter = _args(bootstrap, "config", "alter", "--topic", TOPIC,
                      "--add-config", "retention.ms=3600000")  # fmt: skip
        assert await configs.cmd_config(alter, out) == 0
        assert "altered configs of topic ops" in out.getvalue()
        entries = (
            await run_json(configs.cmd_config, bootstrap, "config", "describe", "--topic", TOPIC)
        )["configs"]
        retention = next(e for e in entries if e["name"] == "retention_ms")
        assert (retention["value"], retention["source"]) == ("3600000", "CONFIG_SOURCE_TOPIC")
        assert {c.name: c.value for c in await admin.describe_configs(TOPIC)}[
            "retention_ms"
        ] == "3600000"
        revert = _args(bootstrap, "config", "alter", "--topic", TOPIC,
                       "--delete-config", "retention_ms")  # fmt: skip
        assert await configs.cmd_config(revert, io.StringIO()) == 0
        entries = (
            await run_json(configs.cmd_config, bootstrap, "config", "describe", "--topic", TOPIC)
        )["configs"]
        retention = next(e for e in entries if e["name"] == "retention_ms")
        assert retention["source"] == "CONFIG_SOURCE_DEFAULT"

        # -- a node down: health exits non-zero and names the partitions; back: 0 ------
        cluster.kill("node-3", signal.SIGKILL)

        async def unhealthy() -> dict[str, Any] | None:
            code, verdict = await health(bootstrap)
            return verdict if code != 0 else None

        verdict = await eventually(unhealthy, timeout_s=WAIT_S, what="health failing")
        assert not verdict["healthy"]
        assert verdict["under_replicated_partitions"] or verdict["offline_partitions"]

        async def urps() -> dict[str, Any] | None:
            found = await run_json(
                topics.cmd_topic, bootstrap, "topic", "describe", "--under-replicated"
            )
            shrunk = found["topics"] and len(found["topics"][0]["partitions"]) == PARTITIONS
            return found if shrunk else None  # every partition had a replica on node 3

        found = await eventually(urps, timeout_s=WAIT_S, what="under-replicated partitions")
        for partition in found["topics"][0]["partitions"]:
            assert 3 not in partition["isr_ids"]
        text = io.StringIO()
        await topics.cmd_topic(_args(bootstrap, "topic", "describe", "--under-replicated"), text)
        assert text.getvalue().count("\tTopic: ops\tPartition:") == len(
            found["topics"][0]["partitions"]
        )
        offline = await run_json(topics.cmd_topic, bootstrap, "topic", "describe", "--offline")
        assert offline == {"topics": []}  # two replicas of three still lead

        # The exit status through the console script, as a probe sees it.
        probe = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "brook.services.cli", "--bootstrap", bootstrap],
            *["cluster", "health"],
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(probe.communicate(), 60)
        assert probe.returncode == 1, (stdout, stderr)
        assert stdout.decode().startswith("unhealthy: "), (stdout, stderr)

        cluster.restart("node-3")
        await eventually(healthy, timeout_s=WAIT_S * 2, what="healthy again after the rejoin")
