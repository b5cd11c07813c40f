"""The `brook` command line: topics, produce, consume, cluster, perf, and the servers.

    brook [--bootstrap HOST:PORT] topic create NAME --partitions N --replication-factor R
    brook topic list | describe NAME | delete NAME
    brook produce TOPIC [--acks 0|1|all] [--key-separator SEP] [--partition P]
    brook consume TOPIC [--from-beginning | --offset N --partition P | --from-time T]
                        [--group G] [--max-records N] [--timeout-ms T] [--format F]
    brook cluster describe
    brook perf produce|consume ...
    brook node|coordinator|groups|dev ...      (the server processes)
    brook group ...                            (consumer groups, when installed)

The bootstrap address comes from --bootstrap, else $BROOK_BOOTSTRAP, else the
"bootstrap" of ./data/cluster.json (written by `brook dev`), else 127.0.0.1:7070.
Expected failures print one line, `error: REASON: message`, and exit non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import importlib
import json
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from brook.client import defaults
from brook.errors import BrookError

# Server subcommands: `brook NAME ...` runs `<module>.main(rest)`.
SERVER_COMMANDS = {
    "node": "brook.services.node.main",
    "coordinator": "brook.services.coordinator.main",
    "groups": "brook.services.groups.main",
    "dev": "brook.services.dev",
}
CLUSTER_FILE = Path("data") / "cluster.json"
# How many stdin bytes the produce reader hands over at a time.
STDIN_CHUNK_BYTES = 1 << 16
# Chunks of stdin waiting for the producer (bounded: back-pressure on the reader).
STDIN_QUEUE_CHUNKS = 64
FORMATS = ("value", "key-value", "json")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("brook")
    except Exception:  # not installed as a distribution (running from a checkout)
        return "0+unknown"


def default_bootstrap(environ: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """--bootstrap's default: $BROOK_BOOTSTRAP, ./data/cluster.json, or 127.0.0.1:7070."""
    environ = dict(os.environ) if environ is None else environ
    if environ.get("BROOK_BOOTSTRAP"):
        return environ["BROOK_BOOTSTRAP"]
    path = (cwd or Path.cwd()) / CLUSTER_FILE
    try:
        value = json.loads(path.read_text()).get("bootstrap")
    except (OSError, ValueError, AttributeError):
        value = None
    if isinstance(value, str) and value:
        return value
    if isinstance(value, list) and value:
        return ",".join(str(v) for v in value)
    return defaults.DEFAULT_BOOTSTRAP


def parse_config(values: Sequence[str]) -> dict[str, str]:
    configs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--config expects key=value, got {item!r}")
        configs[key.strip()] = value.strip()
    return configs


def parse_time_ms(text: str, flag: str = "--from-time") -> int:
    """Milliseconds since the epoch, or an ISO-8601 time (naive times are UTC); a bad value
    is a ValueError naming `flag`."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{flag} expects milliseconds or ISO-8601, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


# -- the parser -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brook", description="Brook: a distributed commit log. Client and server commands."
    )
    parser.add_argument("--version", action="version", version=f"brook {_version()}")
    parser.add_argument(
        "--bootstrap",
        metavar="HOST:PORT[,HOST:PORT]",
        help="coordinator address(es); default $BROOK_BOOTSTRAP, ./data/cluster.json, "
        f"or {defaults.DEFAULT_BOOTSTRAP}",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    topic = commands.add_parser("topic", help="create, list, describe, delete topics")
    topic_commands = topic.add_subparsers(dest="topic_command", metavar="ACTION")
    topic_commands.required = True
    create = topic_commands.add_parser("create", help="create a topic")
    create.add_argument("name")
    create.add_argument("--partitions", type=int, required=True)
    create.add_argument("--replication-factor", type=int, required=True)
    create.add_argument(
        "--config", action="append", default=[], metavar="KEY=VALUE", help="topic config override"
    )
    topic_commands.add_parser("list", help="list topic names")
    describe = topic_commands.add_parser("describe", help="show a topic's partitions and configs")
    describe.add_argument("name")
    delete = topic_commands.add_parser("delete", help="delete a topic and its data")
    delete.add_argument("name")

    produce = commands.add_parser("produce", help="produce stdin lines, one record per line")
    produce.add_argument("topic")
    produce.add_argument("--acks", choices=("0", "1", "all"), default="all")
    produce.add_argument(
        "--key-separator", metavar="SEP", help="split each line at the first SEP into key, value"
    )
    produce.add_argument("--partition", type=int, help="write every record to this partition")
    produce.add_argument("--compression", choices=("none", "zstd", "lz4", "gzip"))
    produce.add_argument("--linger-ms", type=float, default=defaults.LINGER_MS)

    consume = commands.add_parser("consume", help="print records, one per line")
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

    cluster = commands.add_parser("cluster", help="cluster state")
    cluster_commands = cluster.add_subparsers(dest="cluster_command", metavar="ACTION")
    cluster_commands.required = True
    cluster_commands.add_parser(
        "describe", help="nodes, services, under-replicated and offline partitions"
    )

    perf = commands.add_parser("perf", help="throughput and latency tests (Kafka's perf tools)")
    perf_commands = perf.add_subparsers(dest="perf_command", metavar="ACTION")
    perf_commands.required = True
    perf_produce = perf_commands.add_parser("produce", help="kafka-producer-perf-test")
    perf_produce.add_argument("--topic", required=True)
    perf_produce.add_argument("--num-records", type=int, required=True)
    perf_produce.add_argument("--record-size", type=int, required=True)
    perf_produce.add_argument(
        "--throughput", type=float, required=True, help="records/s to aim at; -1 for no limit"
    )
    perf_produce.add_argument("--acks", choices=("0", "1", "all"), default="1")
    perf_produce.add_argument("--linger-ms", type=float, default=defaults.LINGER_MS)
    perf_produce.add_argument("--batch-bytes", type=int, default=defaults.BATCH_BYTES)
    perf_produce.add_argument("--compression", choices=("none", "zstd", "lz4", "gzip"))
    perf_consume = perf_commands.add_parser("consume", help="kafka-consumer-perf-test")
    perf_consume.add_argument("--topic", required=True)
    perf_consume.add_argument("--num-records", type=int, required=True)
    perf_consume.add_argument("--timeout-ms", type=int, default=10_000)

    try:
        cli_groups = importlib.import_module("brook.client.cli_groups")
    except ImportError:
        cli_groups = None
    if cli_groups is not None and hasattr(cli_groups, "register"):
        cli_groups.register(commands)
    return parser


# -- commands ---------------------------------------------------------------------------------


def _format_ids(ids: Sequence[int]) -> str:
    return "[" + ",".join(str(i) for i in ids) + "]"


async def cmd_topic(args: argparse.Namespace, out: TextIO) -> int:
    from brook.client.admin import Admin

    async with Admin(args.bootstrap) as admin:
        if args.topic_command == "create":
            topic = await admin.create_topic(
                args.name, args.partitions, args.replication_factor, parse_config(args.config)
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
    from brook.client.admin import Admin

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


def _stdin_reader(
    source: BinaryIO, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes | None]
) -> None:
    """Reads stdin in a thread (a blocking read must not stall the sender) into the queue.

    Stops quietly when the command has already ended (its loop closed), e.g. after an error.
    """

    def hand_over(chunk: bytes | None) -> bool:
        if loop.is_closed():
            return False
        try:
            asyncio.run_coroutine_threadsafe(queue.put(chunk), loop).result()
        except RuntimeError:  # the loop closed between the check and the call
            return False
        return True

    try:
        while True:
            read1 = getattr(source, "read1", None)
            chunk = read1(STDIN_CHUNK_BYTES) if read1 else source.read(STDIN_CHUNK_BYTES)
            if not chunk or not hand_over(chunk):
                break
    finally:
        hand_over(None)


async def cmd_produce(args: argparse.Namespace, stdin: BinaryIO, err: TextIO) -> int:
    from brook.client.producer import Producer
    from brook.client.records import BatchResult

    separator = args.key_separator.encode() if args.key_separator else None
    acked = 0
    failed = 0
    first_error: Exception | None = None

    def on_batch(result: BatchResult) -> None:
        nonlocal acked, failed, first_error
        if result.error is None:
            acked += result.record_count
        else:
            failed += result.record_count
            first_error = first_error or result.error

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(STDIN_QUEUE_CHUNKS)
    sent = 0
    async with Producer(
        args.bootstrap, acks=args.acks, linger_ms=args.linger_ms, compression=args.compression
    ) as producer:
        producer.add_batch_listener(on_batch)
        await producer.partitions_for(args.topic)
        reader = threading.Thread(
            target=_stdin_reader, args=(stdin, loop, queue), name="brook-stdin", daemon=True
        )
        reader.start()
        rest = b""
        line_number = 0
        while True:
            chunk = await queue.get()
            if chunk is None:
                lines = [rest] if rest else []
            else:
                data = rest + chunk
                lines = data.split(b"\n")
                rest = lines.pop()
            for line in lines:
                line_number += 1
                if line.endswith(b"\r"):
                    line = line[:-1]
                key = None
                if separator is not None:
                    key, found, value = line.partition(separator)
                    if not found:
                        await producer.flush()
                        print(
                            f"error: line {line_number} has no key separator"
                            f" {args.key_separator!r}; {acked} records were acknowledged",
                            file=err,
                        )
                        return 1
                else:
                    value = line
                await producer.append(args.topic, value, key=key, partition=args.partition)
                sent += 1
            if chunk is None:
                break
        await producer.flush()
    if failed or acked != sent:
        print(
            f"error: {failed or sent - acked} of {sent} records were not acknowledged: "
            f"{first_error}",
            file=err,
        )
        return 1
    return 0


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
    from brook.client.consumer import Consumer
    from brook.client.records import TopicPartition

    reset = "earliest" if args.from_beginning else "latest"
    async with Consumer(args.bootstrap, auto_offset_reset=reset) as consumer:
        partitions = await consumer.partitions_for(args.topic)
        if args.partition is not None:
            if args.partition not in partitions:
                raise BrookError(
                    "PARTITION_NOT_FOUND",
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
    try:
        module = importlib.import_module("brook.client.group_consumer")
    except ImportError as error:
        raise BrookError(
            "INVALID_REQUEST", f"--group is not available in this build ({error})"
        ) from None
    group_consumer = module.GroupConsumer(
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


async def cmd_perf(args: argparse.Namespace, out: TextIO) -> int:
    from brook.client import perf

    if args.perf_command == "produce":
        if args.num_records <= 0 or args.record_size <= 0:
            raise ValueError("--num-records and --record-size must be positive")
        return await perf.perf_produce(
            args.bootstrap,
            args.topic,
            args.num_records,
            args.record_size,
            args.throughput,
            acks=args.acks,
            linger_ms=args.linger_ms,
            batch_bytes=args.batch_bytes,
            compression=args.compression,
            out=out,
        )
    return await perf.perf_consume(
        args.bootstrap, args.topic, args.num_records, timeout_ms=args.timeout_ms, out=out
    )


async def _run(args: argparse.Namespace) -> int:
    if args.command == "topic":
        return await cmd_topic(args, sys.stdout)
    if args.command == "cluster":
        return await cmd_cluster(args, sys.stdout)
    if args.command == "produce":
        return await cmd_produce(args, sys.stdin.buffer, sys.stderr)
    if args.command == "consume":
        return await cmd_consume(args, sys.stdout.buffer, sys.stderr)
    if args.command == "perf":
        return await cmd_perf(args, sys.stdout)
    handler = getattr(args, "handler", None)  # subcommands registered by cli_groups
    if handler is not None:
        result = handler(args)
        if asyncio.iscoroutine(result):
            result = await result
        return int(result or 0)
    raise ValueError(f"unknown command {args.command!r}")


def _dispatch_server(name: str, rest: list[str]) -> int:
    try:
        module = importlib.import_module(SERVER_COMMANDS[name])
    except ImportError as error:
        print(f"error: `brook {name}` is not available: {error}", file=sys.stderr)
        return 2
    return int(module.main(rest) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """The `brook` console script."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] in SERVER_COMMANDS:
        return _dispatch_server(arguments[0], arguments[1:])
    parser = build_parser()
    args = parser.parse_args(arguments)
    if not args.bootstrap:
        args.bootstrap = default_bootstrap()
    try:
        return asyncio.run(_run(args))
    except BrookError as error:
        print(f"error: {error.reason}: {error.message}", file=sys.stderr)
        return 1
    except (ValueError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`brook consume ... | head`): not an error of ours.
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0


if __name__ == "__main__":
    sys.exit(main())
