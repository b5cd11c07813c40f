"""`brook logs dirs`: the data directories of the storage nodes, in the habits of Kafka's
kafka-log-dirs: each node's filesystem size and free space, and the size on disk of
every partition replica.

    brook logs dirs [--node ID ...] [--topic T] [--max-partitions N] [--output json]

The live nodes come from DescribeCluster; each is asked with StorageService/
DescribeLogDirs (at most LOG_DIRS_CONCURRENCY at once, each call bounded by
--timeout-ms). A node that does not answer is listed with its error and the command
exits 1. Each node describes at most --max-partitions replicas (sorted by topic and
partition; `truncated` says it left some out; its total size counts them all).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, TextIO

import grpc

from brook.client.admin import Admin
from brook.client.cli.groups import table
from brook.client.cli.options import add_output, message_json, print_json
from brook.errors import from_rpc_error
from brook.transport import default_security
from brook.v1 import storage_pb2, storage_pb2_grpc

LOG_DIRS_CONCURRENCY = 8
TIMEOUT_MS_DEFAULT = 10_000


def register(commands: Any) -> None:
    """Adds `logs` to the CLI's subcommands."""
    logs = commands.add_parser("logs", help="log directories of the storage nodes")
    logs.set_defaults(handler=lambda args: cmd_logs(args, sys.stdout))
    actions = logs.add_subparsers(dest="logs_command", metavar="ACTION")
    actions.required = True
    dirs = actions.add_parser("dirs", help="disk space and replica sizes per node")
    dirs.add_argument("--node", type=int, action="append", default=[], help="only these nodes")
    dirs.add_argument("--topic", default="", help="only this topic's replicas")
    dirs.add_argument(
        "--max-partitions", type=int, default=0,
        help="replicas described per node (default: the node's limit, 10,000)",
    )  # fmt: skip
    dirs.add_argument("--timeout-ms", type=int, default=TIMEOUT_MS_DEFAULT)
    add_output(dirs)


async def describe_node(
    address: str, request: storage_pb2.DescribeLogDirsRequest, timeout_s: float
) -> storage_pb2.DescribeLogDirsResponse:
    async with default_security().channel(address) as channel:
        stub = storage_pb2_grpc.StorageServiceStub(channel)
        try:
            response: storage_pb2.DescribeLogDirsResponse = await stub.DescribeLogDirs(
                request, timeout=timeout_s
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        return response


def _size(value: int) -> str:
    if value < 0:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024  # type: ignore[assignment]
    return str(value)


async def cmd_logs(args: argparse.Namespace, out: TextIO) -> int:
    if args.max_partitions < 0:
        raise ValueError("--max-partitions must not be negative")
    async with Admin(args.bootstrap) as admin:
        cluster = await admin.describe_cluster()
    nodes = sorted(
        (n.node for n in cluster.nodes if not args.node or n.node.node_id in args.node),
        key=lambda n: n.node_id,
    )
    request = storage_pb2.DescribeLogDirsRequest(
        topic=args.topic, max_partitions=args.max_partitions
    )
    slots = asyncio.Semaphore(LOG_DIRS_CONCURRENCY)

    async def ask(address: str) -> storage_pb2.DescribeLogDirsResponse | Exception:
        async with slots:
            try:
                return await describe_node(address, request, args.timeout_ms / 1000)
            except Exception as error:  # reported per node
                return error

    answers = await asyncio.gather(*(ask(n.address) for n in nodes))
    failed = False
    documents: list[dict[str, Any]] = []
    for node, answer in zip(nodes, answers, strict=True):
        if isinstance(answer, Exception):
            failed = True
            documents.append({"node_id": node.node_id, "address": node.address,
                              "error": str(answer)})  # fmt: skip
            continue
        document = message_json(answer)
        document["address"] = node.address
        document["node_id"] = node.node_id
        documents.append(document)
    if getattr(args, "output", "text") == "json":
        print_json({"nodes": documents}, out)
        return 1 if failed else 0
    for node, answer in zip(nodes, answers, strict=True):
        if isinstance(answer, Exception):
            print(f"Node: {node.node_id}\tAddress: {node.address}\tError: {answer}", file=out)
            continue
        print(
            f"Node: {node.node_id}\tAddress: {node.address}\tDir: {answer.data_dir}"
            f"\tSize: {_size(answer.size_bytes)}\tFree: {_size(answer.free_bytes)}"
            f"\tTotal: {_size(answer.total_bytes)}\tReplicas: {answer.replica_count}"
            + ("\t(truncated)" if answer.truncated else ""),
            file=out,
        )
        table(
            ["TOPIC", "PARTITION", "SIZE-BYTES", "SEGMENTS", "LOG-START", "LOG-END", "ROLE"],
            [
                [
                    r.topic,
                    r.partition,
                    r.size_bytes if r.size_bytes >= 0 else None,
                    r.segments if r.segments >= 0 else None,
                    r.log_start_offset,
                    r.log_end_offset,
                    "offline" if r.offline else ("leader" if r.is_leader else "follower"),
                ]
                for r in answer.replicas
            ],
            out,
        )
    return 1 if failed else 0
