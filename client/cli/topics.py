"""`brook topic create|list|describe|delete` and `brook cluster describe`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from brook.client.admin import Admin
from brook.client.cli.options import parse_config


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
    topic_commands.add_parser("list", help="list topic names")
    describe = topic_commands.add_parser("describe", help="show a topic's partitions and configs")
    describe.add_argument("name")
    delete = topic_commands.add_parser("delete", help="delete a topic and its data")
    delete.add_argument("name")

    cluster = commands.add_parser("cluster", help="cluster state")
    cluster.set_defaults(handler=lambda args: cmd_cluster(args, sys.stdout))
    cluster_commands = cluster.add_subparsers(dest="cluster_command", metavar="ACTION")
    cluster_commands.required = True
    cluster_commands.add_parser(
        "describe", help="nodes, services, under-replicated and offline partitions"
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
            for summary in await admin.list_topics():
                print(summary.name, file=out)
        elif args.topic_command == "describe":
            topic = await admin.describe_topic(args.name)
            configs = ",".join(f"{k}={v}" for k, v in sorted(topic.configs.items()))
            print(
                f"Topic: {topic.name}\tTopicId: {topic.topic_id}\tPartitionCount:"
                f" {topic.partition_count}\tReplicationFactor: {topic.replication_factor}"
                f"\tConfigs: {configs}",
                file=out,
            )
            for state in topic.partitions:
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
        elif args.topic_command == "delete":
            await admin.delete_topic(args.name)
            print(f"deleted topic {args.name}", file=out)
    return 0


async def cmd_cluster(args: argparse.Namespace, out: TextIO) -> int:
    async with Admin(args.bootstrap) as admin:
        cluster = await admin.describe_cluster()
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
