"""`brook produce TOPIC`: stdin lines to records, exit 0 once every one is acknowledged."""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
from typing import Any, BinaryIO, TextIO

from brook.client import defaults
from brook.client.producer import Producer
from brook.client.records import BatchResult

# How many stdin bytes the produce reader hands over at a time.
STDIN_CHUNK_BYTES = 1 << 16
# Chunks of stdin waiting for the producer (bounded: back-pressure on the reader).
STDIN_QUEUE_CHUNKS = 64


def register(commands: Any) -> None:
    """Adds `produce` to the CLI's subcommands."""
    produce = commands.add_parser("produce", help="produce stdin lines, one record per line")
    produce.set_defaults(handler=lambda args: cmd_produce(args, sys.stdin.buffer, sys.stderr))
    produce.add_argument("topic")
    produce.add_argument("--acks", choices=("0", "1", "all"), default="all")
    produce.add_argument(
        "--key-separator", metavar="SEP", help="split each line at the first SEP into key, value"
    )
    produce.add_argument("--partition", type=int, help="write every record to this partition")
    produce.add_argument("--compression", choices=("none", "zstd", "lz4", "gzip"))
    produce.add_argument("--linger-ms", type=float, default=defaults.LINGER_MS)


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
