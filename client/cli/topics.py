"""`brook topic create|list|describe|delete` and `brook cluster describe|health`.

brook topic describe [NAME] [--under-replicated | --offline] [--output json]
brook cluster health [--output json]   exit 0 only when healthy (scripts, probes)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from brook.client.admin import Admin
from brook.client.cli.options import add_output, message_json, parse_config, print_json
from brook.errors import BrookError, Reason
from brook.v1 import admin_pb2, common_pb2

# `brook topic describe` without a name describes at most this many topics (pages of
# ListTopics), so that a filter over a large cluster stays bounded.
DESCRIBE_TOPICS_MAX = 10_000
# `brook cluster health` exits with this when the cluster is not healthy.
UNHEALTHY_EXIT = 1


def register(commands: Any) -> None:
    """Adds `topic` and `cluster` to the CLI's subcommands."""
    topic = commands.add_parser("topic", help="create, list, describe, delete topics")
    topic.set_defaults(handler=lambda args: cmd_topic(args, sys.stdout))
    topic_commands = topic.add_subparsers(dest="topic_command", metavar="ACTION")
    topic_commands.required = True
    create = topic_commands.add_parser("create", help="create a topic")
    create.add_argument("name")
    create.add_argument("--partitions", type=int, required=True)
    create.add_argument("--replication-factor", type=int, required=True)
    create.add_argument(
        "--config", action="append", default=[], metavar="KEY=VALUE", help="topic config override"
    )
    create.add_argument(
        "--no-wait", dest="wait_for_leaders", action="store_false",
        help="return once the topic is stored, before its leaders serve it",
    )  # fmt: skip
    create.add_argument(
        "--timeout-ms", type=int, default=0,
        help="how long to wait for the leaders (default 30000)",
    )  # fmt: skip
    add_output(topic_commands.add_parser("list", help="list topic names"))
    describe = topic_commands.add_parser(
        "describe", help="show a topic's (or every topic's) partitions and configs"
    )
    describe.add_argument("name", nargs="?", help="the topic; default: every topic")
    only = describe.add_mutually_exclusive_group()
    only.add_argument(
        "--under-replicated", action="store_true",
        help="only partitions whose ISR is smaller than their replica set",
    )  # fmt: skip
    only.add_argument(
        "--offline", action="store_true", help="only partitions without a live leader"
    )
    add_output(describe)
    delete = topic_commands.add_parser("delete", help="delete a topic and its data")
    delete.add_argument("name")

    cluster = commands.add_parser("cluster", help="cluster state")
    cluster.set_defaults(handler=lambda args: cmd_cluster(args, sys.stdout))
    cluster_commands = cluster.add_subparsers(dest="cluster_command", metavar="ACTION")
    cluster_commands.required = True
    add_output(
        cluster_commands.add_parser(
            "describe", help="nodes, services, under-replicated and offline partitions"
        )
    )
    add_output(
        cluster_commands.add_parser(
            "health",
            help="exit 0 only when both roles are active and no partition is offline or "
            "under-replicated",
        )
    )


def _format_ids(ids: Sequence[int]) -> str:
    return "[" + ",".join(str(i) for i in ids) + "]"


async def cmd_topic(args: argparse.Namespace, out: TextIO) -> int:
    async with Admin(args.bootstrap) as admin:
        if args.topic_command == "create":
            topic = await admin.create_topic(
                args.name,
                args.partitions,
                args.replication_factor,
                parse_config(args.config),
                wait_for_leaders=args.wait_for_leaders,
                timeout_ms=args.timeout_ms,
            )
            print(
                f"created topic {topic.name} with {topic.partition_count} partitions,"
                f" replication factor {topic.replication_factor}",
                file=out,
            )
        elif args.topic_command == "list":
            summaries = await admin.list_topics()
            if getattr(args, "output", "text") == "json":
                print_json({"topics": [message_json(s) for s in summaries]}, out)
            else:
                for summary in summaries:
                    print(summary.name, file=out)
        elif args.topic_command == "describe":
            await _describe_topics(admin, args, out)
        elif args.topic_command == "delete":
            await admin.delete_topic(args.name)
            print(f"deleted topic {args.name}", file=out)
    return 0


def partition_selected(state: common_pb2.PartitionState, args: argparse.Namespace) -> bool:
    """Whether --under-replicated / --offline keep this partition (both unset: all)."""
    if getattr(args, "under_replicated", False):
        return len(state.isr_ids) < len(state.replica_ids)
    if getattr(args, "offline", False):
        return state.leader_id < 0
    return True


async def _describe_topics(admin: Admin, args: argparse.Namespace, out: TextIO) -> None:
    filtered = getattr(args, "under_replicated", False) or getattr(args, "offline", False)
    if args.name:
        names = [args.name]
    else:  # every topic (bounded)
        names = [t.name for t in await admin.list_topics()][:DESCRIBE_TOPICS_MAX]
    described = []
    for name in names:
        try:
            topic = await admin.describe_topic(name)
        except BrookError as error:
            if args.name or error.reason != Reason.TOPIC_NOT_FOUND:
                raise
            continue  # deleted since the listing
        kept = [p for p in topic.partitions if partition_selected(p, args)]
        if filtered and not kept:
            continue
        described.append((topic, kept))
    if getattr(args, "output", "text") == "json":
        documents = []
        for topic, kept in described:
            document = message_json(topic)
            document["partitions"] = [message_json(p) for p in kept]
            documents.append(document)
        print_json({"topics": documents}, out)
        return
    for topic, kept in described:
        if filtered:  # Kafka's habit: only the matching partition lines
            _print_partitions(topic, kept, out)
        else:
            configs = ",".join(f"{k}={v}" for k, v in sorted(topic.configs.items()))
            print(
                f"Topic: {topic.name}\tTopicId: {topic.topic_id}\tPartitionCount:"
                f" {topic.partition_count}\tReplicationFactor: {topic.replication_factor}"
                f"\tConfigs: {configs}",
                file=out,
            )
            _print_partitions(topic, kept, out)


def _print_partitions(
    topic: admin_pb2.TopicDescription, partitions: Sequence[common_pb2.PartitionState], out: TextIO
) -> None:
    for state in partitions:
        print(
            f"\tTopic: {topic.name}\tPartition: {state.partition}\tLeader:"
            f" {state.leader_id if state.leader_id >= 0 else 'none'}\tLeaderEpoch:"
            f" {state.leader_epoch}\tReplicas: {_format_ids(state.replica_ids)}"
            f"\tIsr: {_format_ids(state.isr_ids)}"
            + (
                f"\tOffline: {_format_ids(state.offline_replica_ids)}"
                if state.offline_replica_ids
                else ""
            ),
            file=out,
        )


def cluster_health(cluster: admin_pb2.DescribeClusterResponse) -> dict[str, Any]:
    """`brook cluster health`'s verdict: healthy only when an active coordinator answered,
    a group manager is active, and no partition is offline or under-replicated."""
    problems = []
    if not cluster.coordinator.address:
        problems.append("no active coordinator")
    if not cluster.group_manager.address:
        problems.append("no active group manager")
    if cluster.offline_partitions:
        problems.append(f"{len(cluster.offline_partitions)} offline partitions")
    if cluster.under_replicated_partitions:
        problems.append(f"{len(cluster.under_replicated_partitions)} under-replicated partitions")
    return {
        "healthy": not problems,
        "problems": problems,
        "coordinator": cluster.coordinator.address,
        "group_manager": cluster.group_manager.address,
        "nodes": len(cluster.nodes),
        "topics": cluster.topic_count,
        "partitions": cluster.partition_count,
        "offline_partitions": [f"{p.topic}-{p.partition}" for p in cluster.offline_partitions],
        "under_replicated_partitions": [
            f"{p.topic}-{p.partition}" for p in cluster.under_replicated_partitions
        ],
    }


async def cmd_cluster(args: argparse.Namespace, out: TextIO) -> int:
    async with Admin(args.bootstrap) as admin:
        cluster = await admin.describe_cluster()
    as_json = getattr(args, "output", "text") == "json"
    if args.cluster_command == "health":
        verdict = cluster_health(cluster)
        if as_json:
            print_json(verdict, out)
        elif verdict["healthy"]:
            print(
                f"healthy: {verdict['nodes']} nodes, {verdict['partitions']} partitions",
                file=out,
            )
        else:
            print("unhealthy: " + "; ".join(verdict["problems"]), file=out)
            for key in ("offline_partitions", "under_replicated_partitions"):
                if verdict[key]:
                    print(f"\t{key}: {', '.join(verdict[key][:100])}", file=out)
        return 0 if verdict["healthy"] else UNHEALTHY_EXIT
    if as_json:
        print_json(message_json(cluster), out)
        return 0
    print(f"Cluster: {cluster.cluster_id}", file=out)
    print(
        f"Coordinator: {cluster.coordinator.address or 'none'}"
        f"\tGroupManager: {cluster.group_manager.address or 'none'}",
        file=out,
    )
    print(f"Topics: {cluster.topic_count}\tPartitions: {cluster.partition_count}", file=out)
    print(f"Nodes: {len(cluster.nodes)}", file=out)
    for node in sorted(cluster.nodes, key=lambda n: n.node.node_id):
        print(
            f"\tNode: {node.node.node_id}\tAddress: {node.node.address}"
            f"\tRack: {node.node.rack or '-'}\tReplicas: {node.replica_count}"
            f"\tLeaders: {node.leader_count}",
            file=out,
        )
    under = ", ".join(f"{p.topic}-{p.partition}" for p in cluster.under_replicated_partitions)
    offline = ", ".join(f"{p.topic}-{p.partition}" for p in cluster.offline_partitions)
    print(
        f"UnderReplicatedPartitions: {len(cluster.under_replicated_partitions)}"
        + (f"\t{under}" if under else ""),
        file=out,
    )
    print(
        f"OfflinePartitions: {len(cluster.offline_partitions)}"
        + (f"\t{offline}" if offline else ""),
        file=out,
    )
    return 0
