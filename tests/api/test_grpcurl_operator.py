"""The README's "Operating with grpcurl" section works as written, command by command.

The promise: an operator runs a Brook cluster with grpcurl alone. This starts a real
cluster (etcd, a coordinator, a group manager and three storage nodes with ids 1 to 3, as
`brook dev` starts them), takes every ```sh block of the section in order, and runs each one
verbatim with `bash -e -o pipefail -c BLOCK`, with the cluster's real addresses in the
environment as COORD, GM and NODE (the variables the section's first block defines), and
the pinned grpcurl first on PATH. A block that exits non-zero fails the test with the
command and its stderr. Each block carries a `# check: NAME` comment; CHECKS below has one
function per name that reads the block's JSON answer and asserts what the line above the
block promises. The expectations come from the README's own requests (partition count,
records, committed offset, target replicas), so README and test cannot drift apart.

One block is awaited instead of run once: `reassign-done` ("repeat until it answers {}")
is re-run, within a bound, until the move is over.

While brook.v1.RecordService is not served by the nodes yet (another change registers it in
services/node/main.py), its two blocks (`produce`, `read`) are not run: the same records
are produced with the Python producer so the later blocks see the same log, and once every
other block passed, the test is skipped with a reason naming the missing service.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from brook.client.producer import Producer
from brook.services.dev import build_parser as dev_parser
from tests.harness.cluster import LocalCluster
from tests.harness.grpcurl import grpcurl_env, grpcurl_json, json_documents
from tests.harness.wait import eventually
from tests.node.cluster_helpers import FAST_NODE_ARGS

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SECTION = "## Operating with grpcurl"
RECORD_SERVICE = "brook.v1.RecordService"
RECORD_BLOCKS = ("produce", "read")  # the blocks that need RecordService
AWAITED = ("reassign-done",)  # blocks re-run until their check passes
NODE_IDS = (1, 2, 3)
# Bounds: one grpcurl call answers in well under a second; CreateTopic waits for leaders
# (at most its own 30 s). A reassignment of a few records finishes in about a second.
COMMAND_TIMEOUT_S = 40.0
WAIT_S = 30.0
HEALTH_SERVICES = {
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
}


@dataclass(frozen=True)
class Block:
    """One ```sh block of the section."""

    says: str  # the line above the block: what it does
    check: str  # the name in its `# check: NAME` comment
    code: str  # the shell text, run as written

    def request(self) -> Any:
        """The JSON request after `-d '...'` (grpcurl reads it as is: newlines included)."""
        match = re.search(r"-d '(.*?)'", self.code, re.S)
        assert match, f"block {self.check!r} has no -d '...' request"
        return json.loads(match.group(1))


def section_blocks(text: str) -> list[Block]:
    """The section's ```sh blocks in order, each with the line above it and its check."""
    start = text.index(f"\n{SECTION}\n")
    end = text.find("\n## ", start + 1)
    lines = text[start : end if end >= 0 else len(text)].splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        if not lines[index].startswith("```"):
            index += 1
            continue
        assert lines[index] == "```sh", f"a non-sh code block in the section: {lines[index]}"
        # One line of text, alone in its paragraph, says what the block does.
        says = lines[index - 2].strip()
        assert lines[index - 1] == "" and says and lines[index - 3] == "", (
            f"the block at {lines[index + 1]!r} needs one line above it saying what it does"
        )
        closing = lines.index("```", index + 1)
        code = "\n".join(lines[index + 1 : closing]) + "\n"
        marker = re.search(r"^# check: (\S+)$", code, re.M)
        assert marker, f"the block under {says!r} has no `# check: NAME` comment"
        blocks.append(Block(says, marker.group(1), code))
        index = closing + 1
    return blocks


@dataclass
class Run:
    """What the checks know: the addresses, the blocks by check name, earlier answers."""

    env: dict[str, str]
    blocks: dict[str, Block]
    answers: dict[str, Any] = field(default_factory=dict)
    record_service: bool = False

    def request(self, check: str) -> Any:
        return self.blocks[check].request()


def run_block(block: Block, env: dict[str, str]) -> str:
    """Runs the block as written; a non-zero exit fails the test with command and stderr."""
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", block.code],
        capture_output=True, text=True, env=env, timeout=COMMAND_TIMEOUT_S, cwd=ROOT,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.fail(
            f"README block {block.check!r} ({block.says}) exited {done.returncode}:\n"
            f"{block.code}stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
    return done.stdout


def one_answer(output: str) -> Any:
    documents = json_documents(output)
    assert len(documents) == 1, f"expected one JSON answer, got {len(documents)}"
    return documents[0]


def partition_entry(entries: list[dict[str, Any]], topic: str, partition: int) -> dict[str, Any]:
    """The entry for topic-partition; `partition` must be present even when it is 0."""
    found = [e for e in entries if e.get("topic") == topic and e["partition"] == partition]
    assert len(found) == 1, f"{topic}-{partition}: {len(found)} entries in {entries}"
    return found[0]


def proto_comment(proto: Path, declaration: str) -> list[str]:
    """The comment lines above the line starting with `declaration`, without `//`."""
    lines = proto.read_text().splitlines()
    number = next(i for i, line in enumerate(lines) if line.startswith(declaration))
    comment: list[str] = []
    while lines[number - 1 - len(comment)].startswith("//"):
        comment.insert(0, lines[number - 1 - len(comment)].removeprefix("//").strip())
    return [line for line in comment if line]


# -- the checks, by `# check:` name, in README order ------------------------------------


def check_addresses(run: Run, output: str) -> None:
    """The section sets exactly the variables the test gives it, to `brook dev`'s default
    ports: coordinator at the base port, group manager at +1, node 1 at +11."""
    assigned = dict(re.findall(r"^(\w+)=(\S+)", run.blocks["addresses"].code, re.M))
    base = dev_parser().parse_args([]).base_port
    assert assigned == {
        "COORD": f"127.0.0.1:{base}",
        "GM": f"127.0.0.1:{base + 1}",
        "NODE": f"127.0.0.1:{base + 10 + 1}",
    }, assigned
    assert set(assigned) <= set(run.env)


def _listed(output: str, expected: set[str]) -> set[str]:
    services = set(output.split())
    assert expected | HEALTH_SERVICES <= services, services
    return services


def check_list_coordinator(run: Run, output: str) -> None:
    """The coordinator lists Admin and Metadata, health and both reflection services."""
    _listed(output, {"brook.v1.AdminService", "brook.v1.MetadataService"})


def check_list_groups(run: Run, output: str) -> None:
    """The group manager lists GroupService, health and both reflection services."""
    _listed(output, {"brook.v1.GroupService"})


def check_list_node(run: Run, output: str) -> None:
    """A node lists Storage and Replica services, health and reflection; whether it lists
    RecordService decides whether the record blocks run."""
    services = _listed(output, {"brook.v1.StorageService", "brook.v1.ReplicaService"})
    run.record_service = RECORD_SERVICE in services


def check_describe(run: Run, output: str) -> None:
    """The description carries StorageService's comment from storage.proto and its rpcs."""
    for line in proto_comment(ROOT / "protos/brook/v1/storage.proto", "service StorageService"):
        assert line in output, f"comment line {line!r} missing from:\n{output}"
    assert "rpc Produce (" in output and "rpc Fetch (" in output, output


def check_health(run: Run, output: str) -> None:
    """One answer per process (coordinator, group manager, node), each SERVING."""
    answers = json_documents(output)
    assert answers == [{"status": "SERVING"}] * 3, answers


def check_create_topic(run: Run, output: str) -> None:
    """The topic has the partitions and replicas asked; each has a leader among its
    in-sync replicas; partition 0 and leader epoch 0 show in the JSON."""
    asked = run.request("create-topic")
    topic = one_answer(output)["topic"]
    assert topic["name"] == asked["name"]
    assert topic["partitionCount"] == asked["partition_count"]
    assert topic["replicationFactor"] == asked["replication_factor"]
    partitions = topic["partitions"]
    assert [p["partition"] for p in partitions] == list(range(asked["partition_count"]))
    for partition in partitions:
        assert len(partition["replicaIds"]) == asked["replication_factor"], partition
        assert partition["leaderId"] in partition["isrIds"], partition
        assert set(partition["isrIds"]) <= set(partition["replicaIds"]), partition
    assert partitions[0]["leaderEpoch"] == 0, partitions[0]
    run.answers["create-topic"] = topic


def check_describe_topic(run: Run, output: str) -> None:
    """DescribeTopic shows the partitions as created (leaders, replicas, ISR)."""
    topic = one_answer(output)["topic"]
    created = run.answers["create-topic"]
    assert topic["topicId"] == created["topicId"]
    assert topic["partitions"] == created["partitions"], topic["partitions"]


def _configs_set(run: Run, entries: list[dict[str, Any]]) -> None:
    by_name = {entry["name"]: entry for entry in entries}
    for name, value in run.request("alter-configs")["set"].items():
        assert by_name[name]["value"] == value, by_name[name]
        assert by_name[name]["source"] == "CONFIG_SOURCE_TOPIC", by_name[name]
    defaults = [e for e in entries if e["source"] == "CONFIG_SOURCE_DEFAULT"]
    assert defaults and all(e["value"] == e["defaultValue"] for e in defaults), defaults


def check_alter_configs(run: Run, output: str) -> None:
    """AlterConfigs answers the new value, set on the topic; the others stay defaults."""
    _configs_set(run, one_answer(output)["configs"])


def check_describe_configs(run: Run, output: str) -> None:
    """DescribeConfigs shows the changed value (source TOPIC) and described defaults."""
    entries = one_answer(output)["configs"]
    _configs_set(run, entries)
    assert all(entry["description"] for entry in entries), entries


def _rfc3339_ms(timestamp: str) -> int:
    return round(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000)


def check_produce(run: Run, output: str) -> None:
    """Every record landed in the partition asked, at offsets 0, 1, 2 of the new topic
    (64-bit offsets as JSON strings, "0" and partition 0 shown), with its timestamp in ms
    and as RFC 3339."""
    asked = run.request("produce")
    results = one_answer(output)["results"]
    assert len(results) == len(asked["records"]), results
    for index, result in enumerate(results):
        assert "error" not in result, result
        assert result["partition"] == asked["partition"], result
        assert result["offset"] == str(index), result
        assert abs(_rfc3339_ms(result["timestamp"]) - int(result["timestampMs"])) <= 1, result


def check_read(run: Run, output: str) -> None:
    """The records read back are the ones produced: same offsets, keys and values as text;
    nextOffset and the high watermark are right after the last one."""
    produced = run.request("produce")["records"]
    answer = one_answer(output)
    records = answer["records"]
    assert [r["offset"] for r in records] == [str(i) for i in range(len(produced))], records
    assert [r.get("keyText") for r in records] == [p["key_text"] for p in produced], records
    assert [r["valueText"] for r in records] == [p["value_text"] for p in produced], records
    assert all(r["partition"] == run.request("read")["partition"] for r in records), records
    assert answer["nextOffset"] == answer["highWatermark"] == str(len(produced)), answer


def check_commit(run: Run, output: str) -> None:
    """Each committed partition answers without an error."""
    asked = run.request("commit")["offsets"]
    results = one_answer(output)["results"]
    assert [(r["topic"], r["partition"]) for r in results] == [
        (o["topic"], o["partition"]) for o in asked
    ], results
    assert not any("error" in r for r in results), results


def check_list_groups_state(run: Run, output: str) -> None:
    """The group that committed is listed, EMPTY (it has no members)."""
    groups = one_answer(output)["groups"]
    group_id = run.request("commit")["group_id"]
    mine = [g for g in groups if g["groupId"] == group_id]
    assert len(mine) == 1 and mine[0]["state"] == "GROUP_STATE_EMPTY", groups


def check_lag(run: Run, output: str) -> None:
    """Lag of the committed partition = records produced - committed offset; the log end
    offset is the number of records produced."""
    commit = run.request("commit")
    offset = commit["offsets"][0]
    produced = len(run.request("produce")["records"])
    group = one_answer(output)["group"]
    assert group["groupId"] == commit["group_id"] and group["state"] == "GROUP_STATE_EMPTY"
    lag = partition_entry(group["offsets"], offset["topic"], offset["partition"])
    assert lag["committedOffset"] == str(offset["offset"]), lag
    assert lag["logEndOffset"] == str(produced), lag
    assert lag["lag"] == str(produced - offset["offset"]), lag


def check_reset(run: Run, output: str) -> None:
    """Every partition of the topic moved to its log start (0): the committed one from its
    committed offset, the others from none (-1)."""
    offset = run.request("commit")["offsets"][0]
    partition_count = run.request("create-topic")["partition_count"]
    changes = one_answer(output)["changes"]
    assert sorted(c["partition"] for c in changes) == list(range(partition_count)), changes
    for change in changes:
        before = offset["offset"] if change["partition"] == offset["partition"] else -1
        assert change["topic"] == offset["topic"], change
        assert change["previousOffset"] == str(before), change
        assert change["newOffset"] == "0", change


def check_fetch_offsets(run: Run, output: str) -> None:
    """The stored offsets are the reset ones: 0 on every partition."""
    offset = run.request("commit")["offsets"][0]
    offsets = one_answer(output)["offsets"]
    assert partition_entry(offsets, offset["topic"], offset["partition"])["offset"] == "0"
    assert {o["offset"] for o in offsets} == {"0"}, offsets


def _target(run: Run) -> tuple[str, int, list[int]]:
    asked = run.request("reassign")
    move = asked["reassignments"][0]
    return asked["topic"], move["partition"], move["replica_ids"]


def check_reassign(run: Run, output: str) -> None:
    """The move started: the partition's replicas include the target ones (target and old
    during the move)."""
    topic, partition, target = _target(run)
    moving = one_answer(output).get("reassignments", [])
    if moving:  # a move with nothing to copy is done at once and lists nothing
        assert set(target) <= set(partition_entry(moving, topic, partition)["replicaIds"])


def check_reassign_done(run: Run, output: str) -> None:
    """(Awaited) the partition is no longer listed as moving."""
    topic, partition, _ = _target(run)
    moving = one_answer(output).get("reassignments", [])
    assert not [m for m in moving if (m["topic"], m["partition"]) == (topic, partition)], moving


def check_moved(run: Run, output: str) -> None:
    """The partition's replicas are the target, in order; its ISR and leader are among
    them; nothing is being added or removed."""
    topic, partition, target = _target(run)
    described = one_answer(output)["topic"]
    assert described["name"] == topic, described
    state = described["partitions"][partition]
    assert state["partition"] == partition, state
    assert state["replicaIds"] == target, state
    assert state["isrIds"] and set(state["isrIds"]) <= set(target), state
    assert state["leaderId"] in target, state
    assert "addingReplicaIds" not in state and "removingReplicaIds" not in state, state
    run.answers["moved"] = state


def check_elect(run: Run, output: str) -> None:
    """The preferred replica (the target's first) leads after the election: elected now,
    with a higher epoch, when another replica led; ELECTION_NOT_NEEDED when it led."""
    topic, partition, target = _target(run)
    before = run.answers["moved"]
    result = partition_entry(one_answer(output)["results"], topic, partition)
    assert result["leaderId"] == target[0], result
    if before["leaderId"] != target[0]:
        assert "error" not in result, result
        assert result["leaderEpoch"] > before["leaderEpoch"], (before, result)
    else:
        assert result["error"]["errorInfo"]["reason"] == "ELECTION_NOT_NEEDED", result


def check_cluster(run: Run, output: str) -> None:
    """DescribeCluster names the coordinator and group manager at the addresses used, the
    three nodes with NODE among them, no offline partition, one topic, and replica and
    leader counts that add up to the topic's partitions."""
    asked = run.request("create-topic")
    cluster = one_answer(output)
    assert cluster["coordinator"]["address"] == run.env["COORD"], cluster
    assert cluster["groupManager"]["address"] == run.env["GM"], cluster
    nodes = cluster["nodes"]
    assert sorted(n["node"]["nodeId"] for n in nodes) == list(NODE_IDS), nodes
    assert run.env["NODE"] in {n["node"]["address"] for n in nodes}, nodes
    assert not cluster.get("offlinePartitions"), cluster
    assert cluster["topicCount"] == 1, cluster
    assert cluster["partitionCount"] == asked["partition_count"], cluster
    leaders = sum(n.get("leaderCount", 0) for n in nodes)  # a 0 count is left out of JSON
    replicas = sum(n.get("replicaCount", 0) for n in nodes)
    assert leaders == asked["partition_count"], nodes
    assert replicas == asked["partition_count"] * asked["replication_factor"], nodes


CHECKS: dict[str, Callable[[Run, str], None]] = {
    "addresses": check_addresses,
    "list-coordinator": check_list_coordinator,
    "list-groups": check_list_groups,
    "list-node": check_list_node,
    "describe": check_describe,
    "health": check_health,
    "create-topic": check_create_topic,
    "describe-topic": check_describe_topic,
    "alter-configs": check_alter_configs,
    "describe-configs": check_describe_configs,
    "produce": check_produce,
    "read": check_read,
    "commit": check_commit,
    "list-groups-state": check_list_groups_state,
    "lag": check_lag,
    "reset": check_reset,
    "fetch-offsets": check_fetch_offsets,
    "reassign": check_reassign,
    "reassign-done": check_reassign_done,
    "moved": check_moved,
    "elect": check_elect,
    "cluster": check_cluster,
}


def test_section_blocks_each_have_a_check() -> None:
    """Every block of the section has one line above it and a `# check:` name with a check
    here, each check is used once, in this file's order (the README's)."""
    blocks = section_blocks(README.read_text())
    assert [block.check for block in blocks] == list(CHECKS)


def seed_records(bootstrap: str, block: Block) -> None:
    """Stand-in for the produce block while RecordService is missing: the same records,
    to the same partition, through the Python producer (acks=all)."""
    asked = block.request()

    async def produce() -> None:
        async with Producer(bootstrap, acks="all") as producer:
            for record in asked["records"]:
                sent = await producer.send(
                    asked["topic"],
                    record["value_text"].encode(),
                    key=record["key_text"].encode(),
                    partition=asked["partition"],
                )
                await sent

    asyncio.run(produce())


def start_cluster(local_cluster: Callable[..., LocalCluster]) -> LocalCluster:
    cluster = local_cluster()
    # No periodic preferred elections: the README's ElectLeaders is the one that elects.
    cluster.add_coordinator(args=["--preferred-election-interval-s", "0"])
    cluster.add_groups()
    for node_id in NODE_IDS:
        cluster.add_node(node_id, args=FAST_NODE_ARGS)
    cluster.start()

    async def all_registered() -> bool:
        answer = await asyncio.to_thread(
            grpcurl_json, cluster.address("coordinator"), "brook.v1.AdminService/DescribeCluster"
        )
        return len(answer.get("nodes", [])) == len(NODE_IDS) and "groupManager" in answer

    asyncio.run(eventually(all_registered, timeout_s=WAIT_S, what="nodes and group manager"))
    return cluster


@pytest.mark.integration
def test_operating_with_grpcurl_section_runs_as_written(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    blocks = section_blocks(README.read_text())
    assert [block.check for block in blocks] == list(CHECKS), "see the test above"
    cluster = start_cluster(local_cluster)
    env = grpcurl_env(
        COORD=cluster.address("coordinator"),
        GM=cluster.address("groups"),
        NODE=cluster.address("node-1"),
    )
    run = Run(env=env, blocks={block.check: block for block in blocks})
    not_run: list[str] = []

    for block in blocks:
        check = CHECKS[block.check]
        if block.check in RECORD_BLOCKS and not run.record_service:
            not_run.append(block.check)
            if block.check == "produce":
                seed_records(cluster.address("coordinator"), block)
            continue
        if block.check in AWAITED:

            async def settled(block: Block = block, check: Callable[..., None] = check) -> bool:
                check(run, await asyncio.to_thread(run_block, block, env))
                return True

            asyncio.run(eventually(settled, timeout_s=WAIT_S, interval_s=0.2, what=block.says))
            continue
        output = run_block(block, env)
        try:
            check(run, output)
        except (AssertionError, KeyError, ValueError) as error:
            pytest.fail(
                f"README block {block.check!r} ({block.says}): {type(error).__name__}: "
                f"{error}\n{block.code}output:\n{output}"
            )

    if not_run:
        pytest.skip(
            f"{RECORD_SERVICE} is not served by the storage node (not registered in "
            f"services/node/main.py yet): README blocks {not_run} were not run (their records "
            "were produced with the Python producer); every other block ran and passed"
        )
