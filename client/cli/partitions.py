"""`brook partitions reassign|rebalance`, `brook node list|decommission|recommission` and
`brook leaders elect`: moving replicas in Kafka's habits (issue 13).

    brook partitions reassign --plan [--topic T ...]      the balancer's proposal, as a plan file
    brook partitions reassign --execute FILE [--throttle-bytes N]   start a plan file's moves
    brook partitions reassign --status [FILE] [--output json]       progress (and FILE's state)
    brook partitions reassign --cancel FILE               revert the running moves of FILE
    brook partitions rebalance [--execute] [--max-moves N] [--throttle-bytes N]
    brook partitions throttle [--bytes N] [--node ID] [--remove] [--output json]
    brook node list | decommission N | recommission N | drain-leadership N [--hold-s S]
    brook leaders elect --preferred|--unclean [--topic T [--partition P]]

A plan file is kafka-reassign-partitions' JSON:
{"version": 1, "partitions": [{"topic": "t", "partition": 0, "replicas": [1, 2]}]}.

The replication throttle (Kafka's --throttle) bounds the bytes per second each node
receives as a replica being added, and serves as a leader to such replicas; other
replication is never throttled. `--status FILE`, once every move of FILE is complete,
and `--cancel`, once no move is left, remove the cluster-wide throttle (as
kafka-reassign-partitions --verify and --cancel do) unless --preserve-throttle is given.
(`brook node --node-id N ...`, with no action, runs a storage node: `brook.services.cli`.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from brook.client.admin import Admin
from brook.client.cli.options import add_output, message_json, print_json
from brook.v1 import admin_pb2, errors_pb2

# The node actions the client answers (any other `brook node ...` runs a storage node).
NODE_ACTIONS = ("list", "decommission", "recommission", "drain-leadership")
# A plan file larger than this is refused before it is parsed.
PLAN_FILE_BYTES_MAX = 16 << 20
PLAN_VERSION = 1
# A first --status asks again after this long, so the coordinator can measure rates.
STATUS_RATE_SAMPLE_S = 1.0

_STATE_NAMES = {
    admin_pb2.NODE_STATE_ACTIVE: "active",
    admin_pb2.NODE_STATE_DECOMMISSIONING: "decommissioning",
    admin_pb2.NODE_STATE_DRAINED: "drained",
    admin_pb2.NODE_STATE_OFFLINE: "offline",
}


def register(commands: Any) -> None:
    """Adds `partitions`, `node` and `leaders` to the CLI's subcommands."""
    partitions = commands.add_parser("partitions", help="reassign and rebalance replicas")
    partitions.set_defaults(handler=lambda args: cmd_partitions(args, sys.stdout))
    actions = partitions.add_subparsers(dest="partitions_command", metavar="ACTION")
    actions.required = True
    reassign = actions.add_parser(
        "reassign", help="plan, execute, follow or cancel moves (kafka-reassign-partitions)"
    )
    mode = reassign.add_mutually_exclusive_group(required=True)
    mode.add_argument("--plan", action="store_true", help="print the balancer's proposal")
    mode.add_argument("--execute", metavar="FILE", help="start the moves of a plan file")
    mode.add_argument(
        "--status", nargs="?", const="", metavar="FILE", help="moves in progress (of FILE)"
    )
    mode.add_argument("--cancel", metavar="FILE", help="revert the running moves of FILE")
    reassign.add_argument(
        "--topic", action="append", default=[], help="with --plan: only these topics"
    )
    reassign.add_argument(
        "--throttle-bytes", type=int, metavar="N",
        help="with --execute: set the replication throttle to N bytes/s per node first",
    )  # fmt: skip
    reassign.add_argument(
        "--preserve-throttle", action="store_true",
        help="with --status FILE or --cancel: keep the throttle when no move is left",
    )  # fmt: skip
    add_output(reassign)
    rebalance = actions.add_parser(
        "rebalance", help="print the balancer's plan; --execute starts it"
    )
    rebalance.add_argument("--execute", action="store_true", help="start the planned moves")
    rebalance.add_argument(
        "--max-moves", type=int, default=0, help="at most this many moves (0: the whole plan)"
    )
    rebalance.add_argument(
        "--throttle-bytes", type=int, metavar="N",
        help="with --execute: set the replication throttle to N bytes/s per node first",
    )  # fmt: skip
    add_output(rebalance)
    throttle = actions.add_parser(
        "throttle", help="show, set or remove the reassignment replication throttle"
    )
    throttle.add_argument("--bytes", type=int, metavar="N", help="set the rate to N bytes/s")
    throttle.add_argument("--node", type=int, metavar="ID", help="only this node's own rate")
    throttle.add_argument(
        "--remove", action="store_true", help="remove the rate (the node's own, with --node)"
    )
    add_output(throttle)

    node = commands.add_parser(
        "node",
        help="storage nodes: list, decommission, recommission (with --node-id: run a node)",
    )
    node.set_defaults(handler=lambda args: cmd_node(args, sys.stdout))
    node_actions = node.add_subparsers(dest="node_command", metavar="ACTION")
    node_actions.required = True
    listing = node_actions.add_parser("list", help="nodes with state, replicas, leaders, bytes")
    add_output(listing)
    for name, help_text in (
        ("decommission", "move every replica off a node, so it can be removed"),
        ("recommission", "make a decommissioned node active again"),
    ):
        action = node_actions.add_parser(name, help=help_text)
        action.add_argument("node_id", type=int)
    drain = node_actions.add_parser(
        "drain-leadership",
        help="move a node's leaderships to in-sync replicas before stopping it (Kubernetes"
        " preStop; exit 1 when some partition has no other in-sync replica)",
    )
    drain.add_argument("node_id", type=int)
    drain.add_argument("--hold-s", type=float, default=60.0,
                       help="keep preferred elections off the node this long (1-600)")  # fmt: skip

    leaders = commands.add_parser("leaders", help="leader elections")
    leaders.set_defaults(handler=lambda args: cmd_leaders(args, sys.stdout))
    leader_actions = leaders.add_subparsers(dest="leaders_command", metavar="ACTION")
    leader_actions.required = True
    elect = leader_actions.add_parser("elect", help="run preferred or unclean elections")
    kind = elect.add_mutually_exclusive_group(required=True)
    kind.add_argument("--preferred", action="store_true", help="leadership to the first replica")
    kind.add_argument(
        "--unclean", action="store_true", help="any live replica leads offline partitions"
    )
    elect.add_argument("--topic", help="only this topic (default: every partition)")
    elect.add_argument("--partition", type=int, help="only this partition of --topic")


# -- plan files ----------------------------------------------------------------------------
def read_plan(path: str) -> dict[tuple[str, int], tuple[int, ...]]:
    """A plan file's target replicas by (topic, partition); ValueError when malformed."""
    file = Path(path)
    if file.stat().st_size > PLAN_FILE_BYTES_MAX:
        raise ValueError(f"{path}: larger than {PLAN_FILE_BYTES_MAX} bytes")
    try:
        document = json.loads(file.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON ({error})") from error
    if not isinstance(document, dict) or document.get("version") != PLAN_VERSION:
        raise ValueError(f'{path}: expected {{"version": {PLAN_VERSION}, "partitions": [...]}}')
    entries = document.get("partitions")
    if not isinstance(entries, list):
        raise ValueError(f'{path}: "partitions" must be a list')
    plan: dict[tuple[str, int], tuple[int, ...]] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: each partition must be an object")
        topic, partition, replicas = entry.get("topic"), entry.get("partition"), entry.get(
            "replicas", []
        )
        if not isinstance(topic, str) or not isinstance(partition, int) or partition < 0:
            raise ValueError(f"{path}: each partition needs a topic and a partition number")
        if not isinstance(replicas, list) or not all(isinstance(r, int) for r in replicas):
            raise ValueError(f"{path}: {topic}-{partition}: replicas must be node ids")
        if (topic, partition) in plan:
            raise ValueError(f"{path}: {topic}-{partition} is named twice")
        plan[(topic, partition)] = tuple(replicas)
    return plan


def plan_document(entries: Iterable[tuple[str, int, Sequence[int]]]) -> dict[str, Any]:
    return {
        "version": PLAN_VERSION,
        "partitions": [
            {"topic": t, "partition": p, "replicas": list(r)} for t, p, r in sorted(entries)
        ],
    }


def _by_topic(
    plan: Mapping[tuple[str, int], Sequence[int]],
) -> dict[str, dict[int, Sequence[int]]]:
    topics: dict[str, dict[int, Sequence[int]]] = defaultdict(dict)
    for (topic, partition), replicas in plan.items():
        topics[topic][partition] = replicas
    return dict(topics)


def _ids(ids: Iterable[int]) -> str:
    return "[" + ",".join(str(i) for i in ids) + "]"


def _status_line(status: admin_pb2.ReassignmentStatus) -> str:
    return (
        f"{status.topic}-{status.partition}: replicas {_ids(status.replica_ids)}"
        f" adding {_ids(status.adding_replica_ids)} removing {_ids(status.removing_replica_ids)}"
    )


def format_bytes(count: float) -> str:
    """1536 -> "1.5 KiB" (binary units, as `brook logs dirs`)."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


def format_seconds(seconds: float) -> str:
    """75 -> "1m15s"; 3700 -> "1h01m"."""
    total = round(seconds)
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    return f"{total // 3600}h{total % 3600 // 60:02d}m"


def _progress_line(progress: admin_pb2.ReplicaCopyProgress) -> str:
    """One adding replica: copied, remaining, rate and ETA ("?" where unknown)."""
    def known(field: str, show: Any) -> str:
        return show(getattr(progress, field)) if progress.HasField(field) else "?"  # type: ignore[arg-type]

    return (
        f"  node {progress.node_id}: copied {known('copied_bytes', format_bytes)}"
        f" ({known('copied_records', str)} records), remaining"
        f" {known('remaining_bytes', format_bytes)} ({known('remaining_records', str)} records),"
        f" rate {known('rate_bytes_per_second', lambda r: format_bytes(r) + '/s')},"
        f" ETA {known('estimated_remaining_seconds', format_seconds)}"
    )


def _throttle_line(throttle: admin_pb2.ReplicationThrottle) -> str:
    rate = throttle.cluster_bytes_per_second
    line = "replication throttle: " + (f"{format_bytes(rate)}/s ({rate} bytes/s) per node"
                                       if rate else "none")  # fmt: skip
    for node in throttle.nodes:
        line += f"; node {node.node_id}: {format_bytes(node.bytes_per_second)}/s"
    return line


def _rates_missing(moving: Sequence[admin_pb2.ReassignmentStatus]) -> bool:
    return any(p.HasField("copied_bytes") and not p.HasField("rate_bytes_per_second")
               and p.remaining_bytes > 0 for s in moving for p in s.progress)  # fmt: skip


async def _moves_with_rates(
    admin: Admin,
) -> tuple[list[admin_pb2.ReassignmentStatus], admin_pb2.ReplicationThrottle]:
    """The moves in progress; asked twice a second apart when the coordinator had no
    earlier sample to measure a rate from (a first --status)."""
    moving, throttle = await admin.list_reassignments_with_throttle()
    if _rates_missing(moving):
        await asyncio.sleep(STATUS_RATE_SAMPLE_S)
        moving, throttle = await admin.list_reassignments_with_throttle()
    return moving, throttle


# -- commands ------------------------------------------------------------------------------
async def cmd_partitions(args: argparse.Namespace, out: TextIO) -> int:
    async with Admin(args.bootstrap) as admin:
        if args.partitions_command == "rebalance":
            return await _rebalance(admin, args, out)
        if args.partitions_command == "throttle":
            return await _throttle(admin, args, out)
        return await _reassign(admin, args, out)


async def _throttle(admin: Admin, args: argparse.Namespace, out: TextIO) -> int:
    if args.remove and args.bytes is not None:
        raise ValueError("give --bytes N or --remove, not both")
    if args.bytes is not None and args.bytes <= 0:
        raise ValueError("--bytes must be positive (--remove removes the throttle)")
    if args.remove or args.bytes is not None:
        throttle = await admin.alter_replication_throttle(
            0 if args.remove else args.bytes, node_id=args.node
        )
    else:
        throttle = await admin.describe_replication_throttle()
    if getattr(args, "output", "text") == "json":
        print_json({"throttle": message_json(throttle)}, out)
        return 0
    print(_throttle_line(throttle), file=out)
    return 0


async def _rebalance(admin: Admin, args: argparse.Namespace, out: TextIO) -> int:
    if args.throttle_bytes is not None and not args.execute:
        raise ValueError("--throttle-bytes goes with --execute")
    response = await admin.rebalance_partitions(
        dry_run=not args.execute, max_moves=args.max_moves,
        throttle_bytes_per_s=args.throttle_bytes,
    )  # fmt: skip
    if getattr(args, "output", "text") == "json":
        print_json(message_json(response), out)
        return 0
    for move in response.moves:
        verb = "started" if move.started else ("planned" if not args.execute else "waiting")
        print(
            f"{move.topic}-{move.partition}: {_ids(move.old_replica_ids)} ->"
            f" {_ids(move.new_replica_ids)} ({move.bytes_to_copy} bytes) {verb}",
            file=out,
        )
    print(
        f"{len(response.moves)} moves, {response.bytes_to_copy} bytes to copy,"
        f" {response.started_count} started",
        file=out,
    )
    return 0


async def _reassign(admin: Admin, args: argparse.Namespace, out: TextIO) -> int:
    if args.plan:
        response = await admin.rebalance_partitions(dry_run=True)
        wanted = set(args.topic)
        moves = [m for m in response.moves if not wanted or m.topic in wanted]
        current = plan_document((m.topic, m.partition, m.old_replica_ids) for m in moves)
        proposed = plan_document((m.topic, m.partition, m.new_replica_ids) for m in moves)
        print("Current partition replica assignment", file=out)
        print(json.dumps(current), file=out)
        print("Proposed partition reassignment configuration", file=out)
        print(json.dumps(proposed), file=out)
        return 0
    if args.throttle_bytes is not None and not args.execute:
        raise ValueError("--throttle-bytes goes with --execute (or use `partitions throttle`)")
    if args.execute:
        throttle = args.throttle_bytes
        if throttle is not None and throttle < 0:
            raise ValueError("--throttle-bytes must be >= 0 (0 removes the throttle)")
        for topic, targets in _by_topic(read_plan(args.execute)).items():
            if any(not r for r in targets.values()):
                raise ValueError(f"{topic}: every partition of --execute needs replicas")
            for status in await admin.reassign_partitions(
                topic, targets, throttle_bytes_per_s=throttle
            ):
                print(f"started {_status_line(status)}", file=out)
            throttle = None  # set once, with the first topic's moves
        if args.throttle_bytes:
            print(f"replication throttle: {args.throttle_bytes} bytes/s per node", file=out)
        return 0
    if args.cancel:
        for topic, targets in _by_topic(read_plan(args.cancel)).items():
            running = {
                s.partition for s in await admin.list_reassignments() if s.topic == topic
            }
            cancel = {p: () for p in targets if p in running}
            if cancel:
                for status in await admin.reassign_partitions(topic, cancel):
                    print(f"cancelled {status.topic}-{status.partition}", file=out)
        # As kafka-reassign-partitions --cancel: no move left, no throttle left.
        moving, throttle = await admin.list_reassignments_with_throttle()
        if not moving and throttle.cluster_bytes_per_second and not args.preserve_throttle:
            await admin.alter_replication_throttle(0)
            print("Throttle was removed.", file=out)
        return 0
    moving, throttle = await _moves_with_rates(admin)
    as_json = getattr(args, "output", "text") == "json"
    if not args.status:
        if as_json:
            print_json({"reassignments": [message_json(s) for s in moving],
                        "throttle": message_json(throttle)}, out)  # fmt: skip
            return 0
        for status in moving:
            print(_status_line(status), file=out)
            for progress in status.progress:
                print(_progress_line(progress), file=out)
        if not moving:
            print("no reassignment in progress", file=out)
        print(_throttle_line(throttle), file=out)
        return 0
    by_key = {(s.topic, s.partition): s for s in moving}
    done = True
    states = []
    for (topic, partition), target in sorted(read_plan(args.status).items()):
        if (topic, partition) in by_key:
            state, done = "in progress", False
        else:
            described = await admin.describe_topic(topic)
            actual = next(
                (tuple(p.replica_ids) for p in described.partitions if p.partition == partition),
                (),
            )
            state = "complete" if actual == tuple(target) else f"not applied ({_ids(actual)})"
        states.append((topic, partition, state))
    removed = False
    if done and throttle.cluster_bytes_per_second and not args.preserve_throttle:
        throttle = await admin.alter_replication_throttle(0)
        removed = True
    if as_json:
        print_json({
            "partitions": [
                {"topic": t, "partition": p, "state": state,
                 **({"status": message_json(by_key[(t, p)])} if (t, p) in by_key else {})}
                for t, p, state in states
            ],
            "complete": done, "throttle_removed": removed, "throttle": message_json(throttle),
        }, out)  # fmt: skip
        return 0 if done else 3
    for topic, partition, state in states:
        print(f"Reassignment of partition {topic}-{partition} is {state}.", file=out)
        for progress in by_key[(topic, partition)].progress if (topic, partition) in by_key else ():
            print(_progress_line(progress), file=out)
    print("Throttle was removed." if removed else _throttle_line(throttle), file=out)
    return 0 if done else 3


async def cmd_node(args: argparse.Namespace, out: TextIO) -> int:
    async with Admin(args.bootstrap) as admin:
        if args.node_command == "list":
            nodes = await admin.list_nodes()
            if getattr(args, "output", "text") == "json":
                print_json({"nodes": [message_json(node) for node in nodes]}, out)
                return 0
            print("ID\tSTATE\tLIVE\tADDRESS\tRACK\tREPLICAS\tLEADERS\tBYTES", file=out)
            for node in nodes:
                print(_node_line(node), file=out)
            return 0
        if args.node_command == "drain-leadership":
            drained = await admin.drain_leadership(args.node_id, round(args.hold_s * 1000))
            print(f"node {args.node_id}: {drained.moved_count} leaderships moved,"
                  f" {drained.remaining_count} left", file=out)  # fmt: skip
            return 0 if drained.remaining_count == 0 else 1
        if args.node_command == "decommission":
            node = await admin.decommission_node(args.node_id)
        else:
            node = await admin.recommission_node(args.node_id)
        print(f"node {node.node_id}: {_STATE_NAMES.get(node.state, 'unknown')}", file=out)
        return 0


def _node_line(node: admin_pb2.NodeStatus) -> str:
    return "\t".join(
        str(v)
        for v in (
            node.node_id, _STATE_NAMES.get(node.state, "unknown"), "yes" if node.live else "no",
            node.address or "-", node.rack or "-", node.replica_count, node.leader_count,
            node.size_bytes,
        )
    )  # fmt: skip


async def cmd_leaders(args: argparse.Namespace, out: TextIO) -> int:
    if args.partition is not None and not args.topic:
        raise ValueError("--partition needs --topic")
    async with Admin(args.bootstrap) as admin:
        partitions: list[tuple[str, int]] | None = None
        if args.topic:
            if args.partition is not None:
                partitions = [(args.topic, args.partition)]
            else:
                described = await admin.describe_topic(args.topic)
                partitions = [(args.topic, p.partition) for p in described.partitions]
        results = await admin.elect_leaders(
            partitions, election_type="unclean" if args.unclean else "preferred"
        )
        for result in results:
            print(_election_line(result), file=out)
    return 0


def _election_line(result: admin_pb2.ElectionResult) -> str:
    where = f"{result.topic}-{result.partition}: leader {result.leader_id}"
    where += f" (epoch {result.leader_epoch})"
    if result.HasField("error") and result.error.reason:
        reason = errors_pb2.ErrorReason.Name(result.error.reason).removeprefix("ERROR_REASON_")
        return f"{where}, not elected: {reason}"
    return f"{where}, elected"
