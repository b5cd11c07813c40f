"""The Consumer (no groups) against a fake cluster: real gRPC, fake brains."""

from __future__ import annotations

import asyncio

import pytest

from brook.client.consumer import Consumer
from brook.client.producer import Producer
from brook.client.records import ConsumerRecord, TopicPartition
from brook.errors import BrookError
from tests.client.fake_cluster import FakeCluster
from tests.harness.wait import eventually

WAIT_S = 10.0


async def _produce(fake: FakeCluster, topic: str, count: int, partitions: int) -> None:
    async with Producer(fake.bootstrap, linger_ms=1, batch_bytes=512) as producer:
        futures = [
            await producer.send(topic, b"%d" % i, key=b"k%d" % i, partition=i % partitions)
            for i in range(count)
        ]
        await asyncio.wait_for(asyncio.gather(*futures), WAIT_S)


async def _poll_until(consumer: Consumer, count: int) -> list[ConsumerRecord]:
    records: list[ConsumerRecord] = []
    async with asyncio.timeout(WAIT_S):
        while len(records) < count:
            records.extend(await consumer.poll(timeout_ms=500))
    return records


async def test_poll_returns_every_record_in_partition_order(fake: FakeCluster) -> None:
    """Proves an assigned consumer reads all partitions from the beginning with offsets in
    order per partition, honours max_records, and tracks positions and high watermarks."""
    fake.create_topic("t", 3)
    await _produce(fake, "t", 300, 3)
    async with Consumer(fake.bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([("t", 0), ("t", 1), ("t", 2)])
        first = await consumer.poll(timeout_ms=5000, max_records=7)
        assert 0 < len(first) <= 7
        records = first + await _poll_until(consumer, 300 - len(first))
        assert len(records) == 300
        for partition in range(3):
            offsets = [r.offset for r in records if r.partition == partition]
            assert offsets == list(range(100))
            assert await consumer.position(("t", partition)) == 100
            assert consumer.highwater(("t", partition)) == 100
        assert {r.key for r in records} == {b"k%d" % i for i in range(300)}


async def test_seek_variants_and_default_latest(fake: FakeCluster) -> None:
    """Proves seek, seek_to_beginning, seek_to_end, seek_to_timestamp and the default
    'latest' start position each make the next poll start where they say."""
    fake.create_topic("t", 1)
    async with Producer(fake.bootstrap, linger_ms=1, batch_bytes=512) as producer:
        futures = [await producer.send("t", b"%d" % i, timestamp_ms=1000 + i) for i in range(50)]
        await asyncio.wait_for(asyncio.gather(*futures), WAIT_S)
    tp = TopicPartition("t", 0)
    async with Consumer(fake.bootstrap) as consumer:
        consumer.assign([tp])
        assert await consumer.position(tp) == 50  # latest by default
        consumer.seek(tp, 42)
        assert [r.offset for r in await _poll_until(consumer, 8)][:8] == list(range(42, 50))
        consumer.seek_to_beginning(tp)
        assert (await _poll_until(consumer, 1))[0].offset == 0
        consumer.seek_to_end()
        assert await consumer.position(tp) == 50
        assert await consumer.poll(timeout_ms=100) == []
        # Timestamps are looked up per batch: the first batch holding a record at or
        # after the time.
        batches = fake.state.partition("t", 0).batches
        assert len(batches) >= 2
        when = batches[0][3] + 1  # just after the first batch
        expected = batches[1][0]
        offsets = await consumer.seek_to_timestamp({tp: when})
        assert offsets == {tp: expected}
        record = (await _poll_until(consumer, 1))[0]
        assert (record.offset, record.timestamp_ms) == (expected, 1000 + expected)
        assert await consumer.offsets_for_times({tp: 5000}) == {tp: 50}
        assert await consumer.beginning_offsets([tp]) == {tp: 0}
        assert await consumer.end_offsets([tp]) == {tp: 50}


async def test_seek_while_a_fetch_is_in_flight_is_exact(fake: FakeCluster) -> None:
    """Proves that records fetched for an old position are dropped after a seek: the first
    record polled after seek(tp, n) is offset n even though a long poll was out."""
    fake.create_topic("t", 1)
    await _produce(fake, "t", 20, 1)
    tp = TopicPartition("t", 0)
    async with Consumer(fake.bootstrap, fetch_max_wait_ms=200) as consumer:
        consumer.assign([tp])
        consumer.seek(tp, 0)
        await asyncio.sleep(0)
        consumer.seek(tp, 15)
        records = await _poll_until(consumer, 5)
        assert [r.offset for r in records] == [15, 16, 17, 18, 19]


async def test_pause_and_resume(fake: FakeCluster) -> None:
    """Proves a paused partition returns nothing (its buffered records are kept) and
    resuming hands them out again, while other partitions keep flowing."""
    fake.create_topic("t", 2)
    await _produce(fake, "t", 20, 2)
    async with Consumer(fake.bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([("t", 0), ("t", 1)])
        consumer.pause(("t", 0))
        assert consumer.paused() == {TopicPartition("t", 0)}
        records = await _poll_until(consumer, 10)
        assert {r.partition for r in records} == {1}
        assert await consumer.poll(timeout_ms=200) == []
        consumer.resume(("t", 0))
        records = await _poll_until(consumer, 10)
        assert [r.offset for r in records] == list(range(10))
        assert {r.partition for r in records} == {0}


async def test_new_records_arrive_through_long_poll(fake: FakeCluster) -> None:
    """Proves a consumer at the end of the log receives records produced later."""
    fake.create_topic("t", 1)
    async with Consumer(fake.bootstrap, fetch_max_wait_ms=300) as consumer:
        consumer.assign([("t", 0)])
        assert await consumer.position(("t", 0)) == 0
        waiting = asyncio.create_task(_poll_until(consumer, 5))
        await _produce(fake, "t", 5, 1)
        records = await waiting
        assert [r.value for r in records] == [b"0", b"1", b"2", b"3", b"4"]


async def test_leader_move_refreshes_metadata_and_continues(fake: FakeCluster) -> None:
    """Proves that after a leader move the consumer's NOT_LEADER answers lead to a metadata
    refresh and reading continues from the new leader without gaps."""
    fake.create_topic("t", 1)
    await _produce(fake, "t", 10, 1)
    async with Consumer(
        fake.bootstrap, auto_offset_reset="earliest", retry_backoff_ms=10
    ) as consumer:
        consumer.assign([("t", 0)])
        first = await _poll_until(consumer, 10)
        fake.move_leader("t", 0, 1)
        await _produce(fake, "t", 10, 1)
        second = await _poll_until(consumer, 10)
        assert [r.offset for r in first + second] == list(range(20))
        assert {r.leader_epoch for r in second} == {1}


async def test_offset_out_of_range_resets_or_raises_per_policy(fake: FakeCluster) -> None:
    """Proves OFFSET_OUT_OF_RANGE resets to the log start with 'earliest' and with 'none'
    raises a clear BrookError from poll() until the partition is seeked."""
    fake.create_topic("t", 1)
    await _produce(fake, "t", 10, 1)
    async with Consumer(fake.bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([("t", 0)])
        consumer.seek(("t", 0), 1000)
        records = await _poll_until(consumer, 10)
        assert records[0].offset == 0
    async with Consumer(fake.bootstrap, auto_offset_reset="none") as consumer:
        consumer.assign([("t", 0)])
        with pytest.raises(BrookError, match="auto_offset_reset is 'none'"):
            await consumer.poll(timeout_ms=2000)
        consumer.seek(("t", 0), 1000)
        with pytest.raises(BrookError) as caught:
            async with asyncio.timeout(WAIT_S):
                while True:
                    await consumer.poll(timeout_ms=500)
        assert caught.value.reason == "OFFSET_OUT_OF_RANGE"
        consumer.seek(("t", 0), 5)
        assert (await _poll_until(consumer, 1))[0].offset == 5


async def test_async_iteration_and_reassignment(fake: FakeCluster) -> None:
    """Proves `async for` yields records, and assign() replaces the assignment while a
    partition that stays keeps its position."""
    fake.create_topic("t", 2)
    await _produce(fake, "t", 10, 2)
    async with Consumer(fake.bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([("t", 0)])
        seen = []
        async with asyncio.timeout(WAIT_S):
            async for record in consumer:
                seen.append(record.offset)
                if len(seen) == 3:
                    break
        assert seen == [0, 1, 2]
        consumer.assign([("t", 0), ("t", 1)])
        assert await consumer.position(("t", 0)) == 3
        assert consumer.assignment() == {TopicPartition("t", 0), TopicPartition("t", 1)}
        with pytest.raises(BrookError):
            consumer.seek(("t", 9), 0)


async def test_fetches_run_ahead_of_poll_up_to_the_prefetch_bound(fake: FakeCluster) -> None:
    """Proves the consumer pipelines: the next Fetch goes out as soon as an answer is
    buffered, before the user polls, and none goes out once prefetched bytes pass
    prefetch_max_bytes; by counting the fake's fetch requests (one batch per fetch) with
    no poll at all, then polling everything in order."""
    fake.create_topic("t", 1)
    await _produce(fake, "t", 200, 1)  # about 10 stored batches of ~512 bytes
    batch_count = len(fake.state.partition("t", 0).batches)
    assert batch_count > 3

    async def fetched_everything() -> bool:
        return {r.partitions[0].fetch_offset for r in fake.state.fetch_requests} >= {0, 200}

    async with Consumer(
        fake.bootstrap,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=1,  # the server still answers one whole batch
        prefetch_max_bytes=1 << 20,
    ) as consumer:
        consumer.assign([("t", 0)])
        await eventually(fetched_everything, timeout_s=WAIT_S, interval_s=0.01)
        offsets = [r.partitions[0].fetch_offset for r in fake.state.fetch_requests]
        assert offsets[: batch_count + 1] == sorted(set(offsets))[: batch_count + 1]
        records = await _poll_until(consumer, 200)
        assert [r.offset for r in records] == list(range(200))
    fake.state.fetch_requests.clear()
    async with Consumer(
        fake.bootstrap,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=1,
        prefetch_max_bytes=1,
    ) as bounded:
        bounded.assign([("t", 0)])

        async def first_answer_buffered() -> bool:
            return bounded._buffered_bytes > 0 and not bounded._fetches

        await eventually(first_answer_buffered, timeout_s=WAIT_S, interval_s=0.01)
        for _ in range(10):
            await asyncio.sleep(0)  # let the woken fetcher decide (it must not fetch)
        assert not bounded._fetches
        assert len(fake.state.fetch_requests) == 1
