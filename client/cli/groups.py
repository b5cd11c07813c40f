"""`brook group ...`: list, describe (and watch), reset offsets of, and delete consumer groups.

    brook group list [--state STATE]
    brook group describe G [--watch [--lag-interval-ms N]]
    brook group reset-offsets G (--topic T[:P,P...] ... | --all-topics)
        (--to-earliest | --to-latest | --to-datetime ISO | --to-offset N | --shift-by N)
        [--dry-run | --execute]
    brook group delete G
    brook group lag G [--watch [--lag-interval-ms N]]   records and seconds behind
    (list, describe and lag take --output json)

`register(subparsers)` adds the `group` command to the CLI. Calls go through
`brook.client.admin.GroupAdmin` (the active group manager, bounded retries).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TextIO, TypeVar

from brook.client.admin import GROUP_STATES, GroupAdmin, group_state_name
from brook.client.cli.options import add_output, message_json, parse_time_ms, print_json
from brook.v1 import common_pb2, groups_pb2

T = TypeVar("T")


# -- output ----------------------------------------------------------------------------
def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO) -> None:
    """Left-aligned columns separated by two spaces; "-" for empty cells."""
    cells = [[str(c) if c not in ("", None) else "-" for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    for line in [list(headers), *cells]:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip(), file=out)


def _partitions_text(items: Sequence[common_pb2.TopicPartitions]) -> str:
    if not items:
        return "-"
    return " ".join(f"{i.topic}:{','.join(str(p) for p in sorted(i.partitions))}" for i in items)


def print_description(group: groups_pb2.GroupDescription, out: TextIO) -> None:
    print(
        f"Group: {group.group_id}  State: {group_state_name(group.state)}  GroupEpoch: "
        f"{group.group_epoch}  AssignmentEpoch: {group.assignment_epoch}  Assignor: "
        f"{group.assignor or '-'}  Members: {len(group.members)}",
        file=out,
    )
    hosts = {m.member_id: (m.client_host, m.client_id) for m in group.members}
    print(file=out)
    table(
        [
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "MEMBER-ID",
            "HOST",
            "CLIENT-ID",
        ],
        [
            [
                o.topic,
                o.partition,
                o.committed_offset if o.committed_offset >= 0 else "-",
                o.log_end_offset if o.log_end_offset >= 0 else "-",
                o.lag if o.lag >= 0 else "-",
                o.member_id,
                hosts.get(o.member_id, ("", ""))[0],
                hosts.get(o.member_id, ("", ""))[1],
            ]
            for o in group.offsets
        ],
        out,
    )
    if group.members:
        print(file=out)
        table(
            ["MEMBER-ID", "INSTANCE-ID", "HOST", "CLIENT-ID", "EPOCH", "ASSIGNED", "TARGET"],
            [
                [
                    m.member_id,
                    m.instance_id,
                    m.client_host,
                    m.client_id,
                    m.member_epoch,
                    _partitions_text(m.assignment),
                    _partitions_text(m.target_assignment),
                ]
                for m in group.members
            ],
            out,
        )


# -- argument parsing --------------------------------------------------------------------
def parse_datetime_ms(text: str) -> int:
    """Milliseconds since the epoch from ISO-8601 (naive times are UTC) or digits."""
    return parse_time_ms(text, flag="--to-datetime")


def parse_topic_spec(spec: str) -> common_pb2.TopicPartitions:
    """ "orders" (every partition) or "orders:0,2,5"."""
    topic, sep, rest = spec.partition(":")
    if not topic:
        raise ValueError(f"--topic expects TOPIC or TOPIC:P,P..., got {spec!r}")
    partitions: list[int] = []
    if sep:
        try:
            partitions = [int(p) for p in rest.split(",") if p.strip()]
        except ValueError:
            raise ValueError(f"--topic expects TOPIC:P,P... with numbers, got {spec!r}") from None
    return common_pb2.TopicPartitions(topic=topic, partitions=partitions)


def register(subparsers: Any) -> None:
    """Adds `brook group ...` to the CLI's subparsers."""
    group = subparsers.add_parser("group", help="list, describe, reset offsets, delete groups")
    actions = group.add_subparsers(dest="group_command", metavar="ACTION")
    actions.required = True

    listing = actions.add_parser("list", help="list consumer groups")
    listing.add_argument("--state", choices=sorted(GROUP_STATES), action="append", default=[])
    add_output(listing)
    listing.set_defaults(handler=cmd_list)

    describe = actions.add_parser("describe", help="members, assignment, offsets and lag")
    describe.add_argument("group")
    describe.add_argument("--watch", action="store_true", help="print again on every change")
    describe.add_argument(
        "--lag-interval-ms", type=int, default=5000, help="with --watch: refresh lag this often"
    )
    describe.add_argument("--max-updates", type=int, help=argparse.SUPPRESS)
    add_output(describe)
    describe.set_defaults(handler=cmd_describe)

    lag = actions.add_parser(
        "lag", help="records and seconds each partition's committed offset is behind"
    )
    lag.add_argument("group")
    lag.add_argument("--watch", action="store_true", help="print again as the lag moves")
    lag.add_argument(
        "--lag-interval-ms", type=int, default=5000, help="with --watch: refresh this often"
    )
    lag.add_argument("--max-updates", type=int, help=argparse.SUPPRESS)
    add_output(lag)
    lag.set_defaults(handler=cmd_lag)

    reset = actions.add_parser(
        "reset-offsets", help="move an inactive group's committed offsets (dry run by default)"
    )
    reset.add_argument("group")
    which = reset.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--topic",
        action="append",
        metavar="TOPIC[:P,P]",
        help="topic (all partitions) or topic:partitions; repeatable",
    )
    which.add_argument(
        "--all-topics", action="store_true", help="every topic the group has offsets for"
    )
    target = reset.add_mutually_exclusive_group(required=True)
    target.add_argument("--to-earliest", action="store_true")
    target.add_argument("--to-latest", action="store_true")
    target.add_argument("--to-datetime", metavar="ISO", help="first offset at or after this time")
    target.add_argument("--to-offset", type=int, metavar="N")
    target.add_argument("--shift-by", type=int, metavar="N", help="move by N (may be negative)")
    mode = reset.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="show the changes only (default)")
    mode.add_argument("--execute", action="store_true", help="store the new offsets")
    reset.set_defaults(handler=cmd_reset_offsets)

    delete = actions.add_parser("delete", help="delete an empty group and its offsets")
    delete.add_argument("group")
    delete.set_defaults(handler=cmd_delete)


# -- commands ----------------------------------------------------------------------------
async def _with_admin(args: argparse.Namespace, run: Callable[[GroupAdmin], Awaitable[T]]) -> T:
    async with GroupAdmin(args.bootstrap) as admin:
        return await run(admin)


async def cmd_list(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    states = [GROUP_STATES[s] for s in args.state]
    groups = await _with_admin(args, lambda admin: admin.list_groups(states))
    if getattr(args, "output", "text") == "json":
        print_json({"groups": [message_json(g) for g in groups]}, out)
        return 0
    table(
        ["GROUP", "STATE", "MEMBERS", "ASSIGNOR"],
        [[g.group_id, group_state_name(g.state), g.member_count, g.assignor] for g in groups],
        out,
    )
    return 0


async def _show_group(
    args: argparse.Namespace,
    out: TextIO,
    document: Callable[[groups_pb2.GroupDescription], Any],
    printer: Callable[[groups_pb2.GroupDescription, TextIO], None],
) -> int:
    """One answer, or with --watch one per update: text via `printer`, or with
    --output json the `document` of each (one per line when watching)."""
    as_json = getattr(args, "output", "text") == "json"

    async def run(admin: GroupAdmin) -> int:
        if not args.watch:
            group = await admin.describe(args.group)
            if as_json:
                print_json(document(group), out)
            else:
                printer(group, out)
            return 0
        updates = 0
        async for group in admin.watch(args.group, args.lag_interval_ms):
            if as_json:  # one document per line per update
                print(json.dumps(document(group), sort_keys=True), file=out)
            else:
                if updates:
                    print(file=out)
                stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")
                print(f"--- {stamp}", file=out)
                printer(group, out)
            out.flush()
            updates += 1
            if args.max_updates is not None and updates >= args.max_updates:
                break
        return 0

    return await _with_admin(args, run)


async def cmd_describe(args: argparse.Namespace, out: TextIO | None = None) -> int:
    return await _show_group(args, out or sys.stdout, message_json, print_description)


def lag_document(group: groups_pb2.GroupDescription) -> dict[str, Any]:
    """A group's lag for `brook group lag --output json`: per partition and in total;
    unknown values are null (lag_seconds: no lag sample has measured it yet)."""
    partitions = []
    for o in group.offsets:
        partitions.append(
            {
                "topic": o.topic,
                "partition": o.partition,
                "committed_offset": o.committed_offset if o.committed_offset >= 0 else None,
                "log_end_offset": o.log_end_offset if o.log_end_offset >= 0 else None,
                "lag": o.lag if o.lag >= 0 else None,
                "lag_seconds": o.lag_ms / 1000 if o.HasField("lag_ms") else None,
                "member_id": o.member_id or None,
            }
        )
    known = [int(o.lag) for o in group.offsets if o.lag >= 0]
    seconds = [o.lag_ms / 1000 for o in group.offsets if o.HasField("lag_ms")]
    return {
        "group_id": group.group_id,
        "state": group_state_name(group.state),
        "total_lag": sum(known) if known else None,
        "max_lag_seconds": max(seconds) if seconds else None,
        "partitions": partitions,
    }


def print_lag(group: groups_pb2.GroupDescription, out: TextIO) -> None:
    document = lag_document(group)
    total = document["total_lag"]
    worst = document["max_lag_seconds"]
    print(
        f"Group: {group.group_id}  State: {document['state']}  TotalLag: "
        f"{total if total is not None else '-'}  MaxLagSeconds: "
        f"{f'{worst:.1f}' if worst is not None else '-'}",
        file=out,
    )
    table(
        ["TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "LAG-SECONDS"],
        [
            [
                p["topic"],
                p["partition"],
                p["committed_offset"],
                p["log_end_offset"],
                p["lag"],
                f"{p['lag_seconds']:.1f}" if p["lag_seconds"] is not None else None,
            ]
            for p in document["partitions"]
        ],
        out,
    )


async def cmd_lag(args: argparse.Namespace, out: TextIO | None = None) -> int:
    return await _show_group(args, out or sys.stdout, lag_document, print_lag)


async def cmd_reset_offsets(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    request = groups_pb2.ResetOffsetsRequest(
        group_id=args.group,
        partitions=[parse_topic_spec(s) for s in (args.topic or [])],
        dry_run=not args.execute,
    )
    if args.to_earliest:
        request.to_earliest = True
    elif args.to_latest:
        request.to_latest = True
    elif args.to_datetime is not None:
        request.to_timestamp_ms = parse_datetime_ms(args.to_datetime)
    elif args.to_offset is not None:
        request.to_offset = args.to_offset
    else:
        request.shift_by = args.shift_by
    response = await _with_admin(args, lambda admin: admin.reset_offsets(request))
    table(
        ["TOPIC", "PARTITION", "PREVIOUS-OFFSET", "NEW-OFFSET"],
        [
            [
                c.topic,
                c.partition,
                c.previous_offset if c.previous_offset >= 0 else "-",
                c.new_offset,
            ]
            for c in response.changes
        ],
        out,
    )
    if not args.execute:
        print("(dry run: nothing stored; add --execute to apply)", file=out)
    return 0


async def cmd_delete(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    await _with_admin(args, lambda admin: admin.delete(args.group))
    print(f"deleted group {args.group}", file=out)
    return 0
