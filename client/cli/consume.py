"""`brook consume TOPIC`: records to stdout, one line each, in a chosen format."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, BinaryIO, TextIO

from brook.client.cli.options import parse_time_ms
from brook.client.consumer import Consumer
from brook.client.groups import GroupConsumer
from brook.client.records import TopicPartition
from brook.errors import BrookError, Reason

FORMATS = ("value", "key-value", "json")


def register(commands: Any) -> None:
    """Adds `consume` to the CLI's subcommands."""
    consume = commands.add_parser("consume", help="print records, one per line")
    consume.set_defaults(handler=lambda args: cmd_consume(args, sys.stdout.buffer, sys.stderr))
    consume.add_argument("topic")
    start = consume.add_mutually_exclusive_group()
    start.add_argument("--from-beginning", action="store_true", help="start at the log start")
    start.add_argument("--offset", type=int, help="start at this offset (needs --partition)")
    start.add_argument(
        "--from-time", metavar="T", help="start at time T (ms since epoch or ISO-8601)"
    )
    consume.add_argument("--partition", type=int, help="read only this partition")
    consume.add_argument("--group", metavar="G", help="consume as a member of group G")
    consume.add_argument("--max-records", type=int, help="stop after this many records")
    consume.add_argument(
        "--timeout-ms", type=int, help="stop when nothing arrives for this long (default: never)"
    )
    consume.add_argument("--format", choices=FORMATS, default="value")


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def format_record(record: Any, fmt: str) -> bytes:
    """One output line (without newline) for a ConsumerRecord in the given format."""
    if fmt == "value":
        return bytes(record.value)
    if fmt == "key-value":
        key = b"null" if record.key is None else bytes(record.key)
        return key + b"\t" + bytes(record.value)
    entry: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp_ms": record.timestamp_ms,
    }
    for name in ("key", "value"):
        data = getattr(record, name)
        if data is None:
            entry[name] = None
            continue
        try:
            entry[name] = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            entry[name + "_base64"] = base64.b64encode(bytes(data)).decode()
    entry["headers"] = [[k, _text(v)] for k, v in record.headers]
    return json.dumps(entry, ensure_ascii=False).encode()


async def cmd_consume(args: argparse.Namespace, stdout: BinaryIO, err: TextIO) -> int:
    if args.offset is not None and args.partition is None:
        raise ValueError("--offset needs --partition")
    if args.max_records is not None and args.max_records <= 0:
        return 0
    if args.group:
        return await _consume_group(args, stdout)
    reset = "earliest" if args.from_beginning else "latest"
    async with Consumer(args.bootstrap, auto_offset_reset=reset) as consumer:
        partitions = await consumer.partitions_for(args.topic)
        if args.partition is not None:
            if args.partition not in partitions:
                raise BrookError(
                    Reason.PARTITION_NOT_FOUND,
                    f"topic {args.topic!r} has no partition {args.partition}",
                )
            partitions = [args.partition]
        tps = [TopicPartition(args.topic, p) for p in partitions]
        consumer.assign(tps)
        if args.offset is not None:
            consumer.seek(tps[0], args.offset)
        elif args.from_time is not None:
            when = parse_time_ms(args.from_time)
            await consumer.seek_to_timestamp({tp: when for tp in tps})
        elif args.from_beginning:
            consumer.seek_to_beginning(*tps)
        else:
            consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)  # resolve the start now: "latest" means now
        return await _print_records(consumer.poll, args, stdout)


async def _consume_group(args: argparse.Namespace, stdout: BinaryIO) -> int:
    group_consumer = GroupConsumer(
        args.bootstrap,
        group_id=args.group,
        topics=[args.topic],
        auto_offset_reset="earliest" if args.from_beginning else "latest",
    )
    async with group_consumer:
        return await _print_records(group_consumer.poll, args, stdout)


async def _print_records(
    poll: Callable[..., Awaitable[list[Any]]], args: argparse.Namespace, stdout: BinaryIO
) -> int:
    """Prints records until max_records, or until nothing arrived for timeout_ms."""
    loop = asyncio.get_running_loop()
    printed = 0
    last_data = loop.time()
    limit = args.max_records
    while limit is None or printed < limit:
        wait_ms = 1000.0
        if args.timeout_ms is not None:
            wait_ms = max(0.0, args.timeout_ms - (loop.time() - last_data) * 1000)
            if wait_ms <= 0:
                break
        batch = await poll(timeout_ms=wait_ms, max_records=(limit - printed) if limit else None)
        if not batch:
            continue
        last_data = loop.time()
        lines = [format_record(record, args.format) for record in batch]
        stdout.write(b"\n".join(lines) + b"\n")
        stdout.flush()
        printed += len(batch)
    return 0
