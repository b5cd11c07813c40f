"""A GroupConsumer in its own process, for integration tests that kill consumers.

    python -m tests.groups.consumer_proc --bootstrap HOST:PORT --group G --topic T \
        [--instance-id I] [--session-timeout-ms N] [--auto-offset-reset earliest]

Prints one JSON line per event on stdout (flushed): {"event": "joined" | "assigned" |
"revoked" | "lost" | "records" | "heartbeats" | "closed", "partitions": [[topic, p], ...],
"member_id": ..., "epoch": ..., "t": time.monotonic()}. CLOCK_MONOTONIC is system-wide
on Linux, so the test can order events of several processes. A "revoked" line is printed
inside on_partitions_revoked, i.e. before the member reports the revocation, so it always
precedes the "assigned" line of the partition's next owner.

SIGTERM closes the consumer (commit, revoke, leave) and exits 0; SIGKILL is a crash.
In a secure cluster the credentials come from $BROOK_TLS_CA/$BROOK_TLS_CERT/$BROOK_TLS_KEY.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from typing import Any

from brook.client.groups import GroupConsumer
from brook.client.records import TopicPartition
from brook.transport import ChannelSecurity


def emit(event: str, consumer: GroupConsumer | None, **fields: Any) -> None:
    line = {
        "event": event,
        "t": time.monotonic(),
        "member_id": consumer.member_id if consumer else "",
        "epoch": consumer.member_epoch if consumer else 0,
        **fields,
    }
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


class Listener:
    def __init__(self) -> None:
        self.consumer: GroupConsumer | None = None

    def _partitions(self, partitions: set[TopicPartition]) -> list[list[Any]]:
        return [[tp.topic, tp.partition] for tp in sorted(partitions)]

    def on_partitions_assigned(self, partitions: set[TopicPartition]) -> None:
        emit("assigned", self.consumer, partitions=self._partitions(partitions))

    def on_partitions_revoked(self, partitions: set[TopicPartition]) -> None:
        emit("revoked", self.consumer, partitions=self._partitions(partitions))

    def on_partitions_lost(self, partitions: set[TopicPartition]) -> None:
        emit("lost", self.consumer, partitions=self._partitions(partitions))


async def run(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    listener = Listener()
    consumer = GroupConsumer(
        args.bootstrap,
        args.group,
        topics=args.topic,
        instance_id=args.instance_id or None,
        auto_offset_reset=args.auto_offset_reset,
        auto_commit_interval_ms=args.auto_commit_interval_ms,
        session_timeout_ms=args.session_timeout_ms,
        listener=listener,
        security=ChannelSecurity(
            ca_file=os.environ.get("BROOK_TLS_CA"),
            cert_file=os.environ.get("BROOK_TLS_CERT"),
            key_file=os.environ.get("BROOK_TLS_KEY"),
        ),
    )
    listener.consumer = consumer
    await consumer.start()
    emit("started", consumer)
    joined = False
    heartbeats = 0
    while not stop.is_set():
        records = await consumer.poll(timeout_ms=200)
        if consumer.member_id and not joined:
            joined = True
            emit("joined", consumer)
        if consumer.heartbeats != heartbeats:
            heartbeats = consumer.heartbeats
            emit("heartbeats", consumer, count=heartbeats)
        if records:
            counts: dict[str, int] = {}
            for record in records:
                key = f"{record.topic}:{record.partition}"
                counts[key] = max(counts.get(key, 0), record.offset)
            emit("records", consumer, last_offsets=counts, count=len(records))
    await consumer.close()
    emit("closed", consumer)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--topic", action="append", required=True)
    parser.add_argument("--instance-id", default="")
    parser.add_argument("--session-timeout-ms", type=int, default=3000)
    parser.add_argument("--auto-offset-reset", default="earliest")
    parser.add_argument("--auto-commit-interval-ms", type=int, default=500)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
