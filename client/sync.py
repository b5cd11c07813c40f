"""Blocking facades for scripts: SyncProducer, SyncConsumer, SyncAdmin.

Each facade owns an event loop running in a background daemon thread and the asyncio
client living on it; every method submits a coroutine to that loop and waits for its
result (`asyncio.run_coroutine_threadsafe`). Methods are safe to call from any thread;
calls are serialized by the loop. `close()` (or the `with` block) closes the client and
stops the thread.

    with SyncProducer("127.0.0.1:7070") as producer:
        producer.send("events", b"hello").result()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from brook.client.admin import Admin
from brook.client.consumer import Consumer, TopicPartitionLike
from brook.client.producer import Producer
from brook.client.records import ConsumerRecord, Header, RecordMetadata, TopicPartition
from brook.v1 import admin_pb2

T = TypeVar("T")

# How long close() waits for the loop thread to finish after the client closed.
_THREAD_JOIN_TIMEOUT_S = 10.0


class _LoopThread:
    """An event loop in a daemon thread; run() executes a coroutine there and waits."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        self.loop.close()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        return self.submit(coro).result(timeout_s)

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(_THREAD_JOIN_TIMEOUT_S)


class SyncProducer:
    """A blocking Producer: send() returns a concurrent.futures.Future[RecordMetadata]."""

    def __init__(self, bootstrap: str | Sequence[str], **options: Any) -> None:
        self._thread = _LoopThread("brook-sync-producer")

        async def make() -> Producer:
            producer = Producer(bootstrap, **options)
            await producer.start()
            return producer

        try:
            self._producer = self._thread.run(make())
        except BaseException:
            self._thread.stop()
            raise
        self._closed = False

    def __enter__(self) -> SyncProducer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Sequence[Header] | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> concurrent.futures.Future[RecordMetadata]:
        """Buffers a record (blocking while the buffer is full); the future completes on ack."""
        result: concurrent.futures.Future[RecordMetadata] = concurrent.futures.Future()

        async def go() -> None:
            future = await self._producer.send(topic, value, key, headers, partition, timestamp_ms)

            def done(f: asyncio.Future[RecordMetadata]) -> None:
                if f.cancelled():
                    result.cancel()
                elif f.exception() is not None:
                    result.set_exception(f.exception())  # type: ignore[arg-type]
                else:
                    result.set_result(f.result())

            future.add_done_callback(done)

        self._thread.run(go())
        return result

    def flush(self, timeout_s: float | None = None) -> None:
        self._thread.run(self._producer.flush(timeout_s))

    def partitions_for(self, topic: str) -> list[int]:
        return self._thread.run(self._producer.partitions_for(topic))

    def close(self, timeout_s: float | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._thread.run(self._producer.close(timeout_s))
        finally:
            self._thread.stop()


class SyncConsumer:
    """A blocking Consumer (no groups): assign, seek, poll, iterate."""

    def __init__(self, bootstrap: str | Sequence[str], **options: Any) -> None:
        self._thread = _LoopThread("brook-sync-consumer")

        async def make() -> Consumer:
            consumer = Consumer(bootstrap, **options)
            await consumer.start()
            return consumer

        try:
            self._consumer = self._thread.run(make())
        except BaseException:
            self._thread.stop()
            raise
        self._closed = False

    def __enter__(self) -> SyncConsumer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, function: Any, *args: Any) -> Any:
        async def go() -> Any:
            return function(*args)

        return self._thread.run(go())

    def assign(self, partitions: Iterable[TopicPartitionLike]) -> None:
        self._call(self._consumer.assign, list(partitions))

    def assignment(self) -> set[TopicPartition]:
        result: set[TopicPartition] = self._call(self._consumer.assignment)
        return result

    def seek(self, tp: TopicPartitionLike, offset: int) -> None:
        self._call(self._consumer.seek, tp, offset)

    def seek_to_beginning(self, *partitions: TopicPartitionLike) -> None:
        self._call(self._consumer.seek_to_beginning, *partitions)

    def seek_to_end(self, *partitions: TopicPartitionLike) -> None:
        self._call(self._consumer.seek_to_end, *partitions)

    def seek_to_timestamp(
        self, timestamps_ms: Mapping[TopicPartitionLike, int]
    ) -> dict[TopicPartition, int]:
        return self._thread.run(self._consumer.seek_to_timestamp(timestamps_ms))

    def position(self, tp: TopicPartitionLike) -> int:
        return self._thread.run(self._consumer.position(tp))

    def pause(self, *partitions: TopicPartitionLike) -> None:
        self._call(self._consumer.pause, *partitions)

    def resume(self, *partitions: TopicPartitionLike) -> None:
        self._call(self._consumer.resume, *partitions)

    def partitions_for(self, topic: str) -> list[int]:
        return self._thread.run(self._consumer.partitions_for(topic))

    def end_offsets(self, partitions: Iterable[TopicPartitionLike]) -> dict[TopicPartition, int]:
        return self._thread.run(self._consumer.end_offsets(list(partitions)))

    def poll(
        self, timeout_ms: float = 1000, max_records: int | None = None
    ) -> list[ConsumerRecord]:
        return self._thread.run(self._consumer.poll(timeout_ms, max_records))

    def __iter__(self) -> Iterator[ConsumerRecord]:
        while True:
            yield from self.poll()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._thread.run(self._consumer.close())
        finally:
            self._thread.stop()


class SyncAdmin:
    """A blocking Admin; every method mirrors brook.client.admin.Admin."""

    def __init__(self, bootstrap: str | Sequence[str], **options: Any) -> None:
        self._thread = _LoopThread("brook-sync-admin")

        async def make() -> Admin:
            return Admin(bootstrap, **options)

        self._admin = self._thread.run(make())
        self._closed = False

    def __enter__(self) -> SyncAdmin:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def create_topic(
        self,
        name: str,
        partitions: int,
        replication_factor: int,
        configs: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> admin_pb2.TopicDescription:
        return self._thread.run(
            self._admin.create_topic(name, partitions, replication_factor, configs, **kwargs)
        )

    def delete_topic(self, name: str) -> str:
        return self._thread.run(self._admin.delete_topic(name))

    def list_topics(self) -> list[admin_pb2.TopicSummary]:
        return self._thread.run(self._admin.list_topics())

    def describe_topic(self, name: str) -> admin_pb2.TopicDescription:
        return self._thread.run(self._admin.describe_topic(name))

    def describe_cluster(self) -> admin_pb2.DescribeClusterResponse:
        return self._thread.run(self._admin.describe_cluster())

    def describe_configs(self, topic: str) -> list[admin_pb2.ConfigEntry]:
        return self._thread.run(self._admin.describe_configs(topic))

    def alter_configs(
        self,
        topic: str,
        set_configs: Mapping[str, str] | None = None,
        delete: Iterable[str] = (),
        **kwargs: Any,
    ) -> list[admin_pb2.ConfigEntry]:
        return self._thread.run(self._admin.alter_configs(topic, set_configs, delete, **kwargs))

    def create_partitions(
        self, topic: str, partition_count: int, **kwargs: Any
    ) -> admin_pb2.TopicDescription:
        return self._thread.run(self._admin.create_partitions(topic, partition_count, **kwargs))

    def elect_leaders(
        self, partitions: Iterable[tuple[str, int]] | None = None, election_type: str = "preferred"
    ) -> list[admin_pb2.ElectionResult]:
        return self._thread.run(self._admin.elect_leaders(partitions, election_type))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._thread.run(self._admin.close())
        finally:
            self._thread.stop()
