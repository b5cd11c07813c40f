"""Brook clients, packaged by role, and the `brook` CLI.

    producer/   Producer (and its accumulator and partitioner)
    consumer/   Consumer (assigned partitions, no group)
    groups/     GroupConsumer and its group membership
    admin/      Admin (topics, cluster) and GroupAdmin (consumer groups)
    cli/        the `brook` client commands
    codec, records, metadata, retry, defaults, sync: shared by all of them

    from brook.client import Producer, Consumer, Admin
    async with Producer("127.0.0.1:7070") as producer:
        metadata = await (await producer.send("events", b"hello", key=b"user-1"))

The names below are imported on first use, so `import brook.client` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from brook.client.admin import Admin, GroupAdmin
    from brook.client.consumer import Consumer
    from brook.client.groups import GroupConsumer, RebalanceListener
    from brook.client.producer import Producer, WouldBlock
    from brook.client.records import BatchResult, ConsumerRecord, RecordMetadata, TopicPartition
    from brook.client.sync import SyncAdmin, SyncConsumer, SyncProducer

_EXPORTS = {
    "Admin": "brook.client.admin",
    "GroupAdmin": "brook.client.admin",
    "Consumer": "brook.client.consumer",
    "GroupConsumer": "brook.client.groups",
    "RebalanceListener": "brook.client.groups",
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
    "GroupAdmin",
    "GroupConsumer",
    "Producer",
    "RebalanceListener",
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
