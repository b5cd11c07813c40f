"""Brook clients: Producer, Consumer, Admin, their blocking facades, and the `brook` CLI.

    from brook.client import Producer, Consumer, Admin
    async with Producer("127.0.0.1:7070") as producer:
        metadata = await (await producer.send("events", b"hello", key=b"user-1"))

Imports are lazy so that `brook --version` and server subcommands stay quick to start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from brook.client.admin import Admin
    from brook.client.consumer import Consumer
    from brook.client.producer import Producer, WouldBlock
    from brook.client.records import BatchResult, ConsumerRecord, RecordMetadata, TopicPartition
    from brook.client.sync import SyncAdmin, SyncConsumer, SyncProducer

_EXPORTS = {
    "Admin": "brook.client.admin",
    "Consumer": "brook.client.consumer",
    "Producer": "brook.client.producer",
    "WouldBlock": "brook.client.producer",
    "BatchResult": "brook.client.records",
    "ConsumerRecord": "brook.client.records",
    "RecordMetadata": "brook.client.records",
    "TopicPartition": "brook.client.records",
    "SyncAdmin": "brook.client.sync",
    "SyncConsumer": "brook.client.sync",
    "SyncProducer": "brook.client.sync",
}

__all__ = [
    "Admin",
    "BatchResult",
    "Consumer",
    "ConsumerRecord",
    "Producer",
    "RecordMetadata",
    "SyncAdmin",
    "SyncConsumer",
    "SyncProducer",
    "TopicPartition",
    "WouldBlock",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'brook.client' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
