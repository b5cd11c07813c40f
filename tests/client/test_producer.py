"""The Producer against a fake cluster: real gRPC on loopback, scripted failures."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from brook.client.producer import Producer, WouldBlock
from brook.client.records import BatchResult
from brook.errors import BrookError
from brook.partitioner import partition_for_key
from tests.client.fake_cluster import FakeCluster

WAIT_S = 10.0


async def test_send_acknowledges_with_offsets_and_keys_pick_murmur2_partitions(
    fake: FakeCluster,
) -> None:
    """Proves send() futures resolve to consecutive offsets per partition, keyed records
    land where murmur2 says, and one Produce carries several partitions' batches."""
    fake.create_topic("t", 4)
    async with Producer(fake.bootstrap, acks="all", linger_ms=10_000) as producer:
        futures = [
            await producer.send("t", f"v{i}".encode(), key=f"k{i % 32}".encode())
            for i in range(200)
        ]
        await asyncio.wait_for(producer.flush(), WAIT_S)  # every partition ready at once
        results = await asyncio.wait_for(asyncio.gather(*futures), WAIT_S)
    by_partition: dict[int, list[int]] = {}
    for index, metadata in enumerate(results):
        assert metadata.partition == partition_for_key(f"k{index % 32}".encode(), 4)
        by_partition.setdefault(metadata.partition, []).append(metadata.offset)
    for offsets in by_partition.values():
        assert offsets == list(range(len(offsets)))
    stored = {p: [r.value for r in fake.state.records("t", p)] for p in by_partition}
    for index, metadata in enumerate(results):
        assert stored[metadata.partition][metadata.offset] == f"v{index}".encode()
    assert any(len(request.partitions) > 1 for request in fake.state.produce_requests)


async def test_several_batches_of_one_partition_in_one_request_get_their_own_offsets(
    fake: FakeCluster,
) -> None:
    """Proves that when one Produce carries several batches of the same partition, each
    record's acknowledged offset is where it is stored: tiny batch_bytes closes a batch per
    record, and a long linger lets them all ride in one request."""
    fake.create_topic("t", 1)
    async with Producer(fake.bootstrap, linger_ms=10_000, batch_bytes=40) as producer:
        futures = [await producer.send("t", f"v{i:03d}".encode(), partition=0) for i in range(6)]
        await asyncio.wait_for(producer.flush(), WAIT_S)
        offsets = [(await asyncio.wait_for(f, WAIT_S)).offset for f in futures]
    stored = [r.value for r in fake.state.records("t", 0)]
    assert any(
        len(partition.batches) > 1
        for request in fake.state.produce_requests
        for partition in request.partitions
    ), "the test needs a request with several batches of one partition"
    for index, offset in enumerate(offsets):
        assert stored[offset] == f"v{index:03d}".encode()


async def test_node_not_yet_knowing_a_new_topic_is_retried(fake: FakeCluster) -> None:
    """Proves a node's TOPIC_NOT_FOUND / PARTITION_NOT_FOUND for a topic the metadata lists
    (the node's etcd watch lags a fresh CreateTopic) is retried, not failed: the records
    are stored once the node answers."""
    fake.create_topic("t", 1)
    fake.fail_produce("t", 0, "TOPIC_NOT_FOUND")
    fake.fail_produce("t", 0, "PARTITION_NOT_FOUND")
    async with Producer(fake.bootstrap, linger_ms=0) as producer:
        future = await producer.send("t", b"v", partition=0)
        metadata = await asyncio.wait_for(future, WAIT_S)
    assert metadata.offset == 0
    assert [r.value for r in fake.state.records("t", 0)] == [b"v"]


async def test_keyless_records_stick_to_a_partition_per_batch(fake: FakeCluster) -> None:
    """Proves keyless records without a partition fill one partition's batch at a time
    (sticky partitioning) rather than spreading one record per partition."""
    fake.create_topic("t", 6)
    async with Producer(fake.bootstrap, linger_ms=1000, batch_bytes=2000) as producer:
        await producer.partitions_for("t")
        for _ in range(100):
            producer.append_nowait("t", b"x" * 84)
        await asyncio.wait_for(producer.flush(), WAIT_S)
    sizes = [len(fake.state.records("t", p)) for p in range(6)]
    assert sum(sizes) == 100
    assert all(size % 20 == 0 for size in sizes)  # whole batches of 20 records each


async def test_not_leader_refreshes_metadata_and_retries_in_order(fake: FakeCluster) -> None:
    """Proves that after a leader move the old leader's NOT_LEADER makes the producer
    refresh metadata and resend to the new leader, with no record lost or reordered."""
    fake.create_topic("t", 1)
    async with Producer(fake.bootstrap, linger_ms=1, retry_backoff_ms=10) as producer:
        first = [await producer.send("t", b"%d" % i, partition=0) for i in range(50)]
        await asyncio.wait_for(asyncio.gather(*first), WAIT_S)
        fake.move_leader("t", 0, 1)
        second = [await producer.send("t", b"%d" % i, partition=0) for i in range(50, 100)]
        results = await asyncio.wait_for(asyncio.gather(*second), WAIT_S)
        assert producer.stats.retries >= 1
    assert [r.offset for r in results] == list(range(50, 100))
    assert [r.value for r in fake.state.records("t", 0)] == [b"%d" % i for i in range(100)]


async def test_retriable_errors_keep_partition_order_with_one_request_in_flight(
    fake: FakeCluster,
) -> None:
    """Proves scripted NOT_ENOUGH_REPLICAS and transport UNAVAILABLE failures are retried
    and per-partition order survives: with retries on, at most one request per partition
    is in flight, while two partitions still pipeline."""
    fake.create_topic("t", 2)
    fake.fail_produce("t", 0, "NOT_ENOUGH_REPLICAS", times=3)
    fake.fail_calls("Produce", grpc.StatusCode.UNAVAILABLE, times=2)
    in_flight: dict[int, int] = {0: 0, 1: 0}
    worst: dict[int, int] = {0: 0, 1: 0}
    async with Producer(
        fake.bootstrap, linger_ms=0, batch_bytes=200, retry_backoff_ms=5
    ) as producer:
        original = producer._send_request

        async def spy(node_id, drained):  # type: ignore[no-untyped-def]
            for queue, _batches in drained:
                in_flight[queue.partition] += 1
                worst[queue.partition] = max(worst[queue.partition], in_flight[queue.partition])
            try:
                await original(node_id, drained)
            finally:
                for queue, _batches in drained:
                    in_flight[queue.partition] -= 1

        producer._send_request = spy  # type: ignore[method-assign]
        futures = []
        for i in range(300):
            futures.append(await producer.send("t", b"%04d" % i, partition=i % 2))
        await asyncio.wait_for(asyncio.gather(*futures), WAIT_S)
        assert producer.stats.retries >= 3
    assert worst == {0: 1, 1: 1}
    for partition in (0, 1):
        values = [r.value for r in fake.state.records("t", partition)]
        assert values == [b"%04d" % i for i in range(partition, 300, 2)]


async def test_non_retriable_error_fails_the_futures_with_a_brook_error(fake: FakeCluster) -> None:
    """Proves a non-retriable partition error (BATCH_TOO_LARGE) fails the batch's futures
    at once with that BrookError and reaches batch listeners, other partitions unharmed."""
    fake.create_topic("t", 2)
    fake.fail_produce("t", 0, "BATCH_TOO_LARGE")
    results: list[BatchResult] = []
    async with Producer(fake.bootstrap, linger_ms=5) as producer:
        producer.add_batch_listener(results.append)
        bad = await producer.send("t", b"a", partition=0)
        good = await producer.send("t", b"b", partition=1)
        with pytest.raises(BrookError) as caught:
            await asyncio.wait_for(bad, WAIT_S)
        assert caught.value.reason == "BATCH_TOO_LARGE"
        assert (await asyncio.wait_for(good, WAIT_S)).offset == 0
    assert {(r.partition, r.error is None) for r in results} == {(0, False), (1, True)}


async def test_retries_stop_at_the_delivery_timeout(fake: FakeCluster) -> None:
    """Proves a partition that keeps failing retriably fails its records with
    REQUEST_TIMED_OUT once delivery_timeout_ms has passed (bounded retries)."""
    fake.create_topic("t", 1)
    fake.fail_produce("t", 0, "NOT_ENOUGH_REPLICAS", times=1000)
    async with Producer(
        fake.bootstrap, linger_ms=0, delivery_timeout_ms=300, retry_backoff_ms=20
    ) as producer:
        future = await producer.send("t", b"x")
        started = time.monotonic()
        with pytest.raises(BrookError) as caught:
            await asyncio.wait_for(future, WAIT_S)
        assert caught.value.reason == "REQUEST_TIMED_OUT"
        assert time.monotonic() - started < 3


async def test_send_blocks_when_buffer_memory_is_full_and_resumes(fake: FakeCluster) -> None:
    """Proves back-pressure: while the cluster holds requests, send() waits once
    buffer_memory is used up, append_nowait() raises WouldBlock, and both proceed when
    acknowledgements free memory."""
    fake.create_topic("t", 1)
    fake.state.produce_gate.clear()
    async with Producer(
        fake.bootstrap, linger_ms=0, batch_bytes=1024, buffer_memory=4096, max_block_ms=5000
    ) as producer:
        await producer.partitions_for("t")
        futures = []
        while True:
            try:
                futures.append(producer.send_nowait("t", b"x" * 100))
            except WouldBlock:
                break
        assert 20 <= len(futures) <= 40
        blocked = asyncio.create_task(producer.send("t", b"late"))
        await asyncio.sleep(0.2)  # give it every chance to (wrongly) get through
        assert not blocked.done()
        fake.state.produce_gate.set()
        late = await asyncio.wait_for(blocked, WAIT_S)
        metadata = await asyncio.wait_for(late, WAIT_S)
        assert metadata.offset == len(futures)
        await asyncio.wait_for(asyncio.gather(*futures), WAIT_S)


async def test_send_gives_up_after_max_block_ms(fake: FakeCluster) -> None:
    """Proves send() waits for buffer space only max_block_ms, then fails clearly."""
    fake.create_topic("t", 1)
    fake.state.produce_gate.clear()
    producer = Producer(
        fake.bootstrap, linger_ms=0, batch_bytes=512, buffer_memory=1024, max_block_ms=100
    )
    try:
        await producer.start()
        with pytest.raises(BrookError) as caught:
            for _ in range(100):
                await producer.send("t", b"x" * 100)
        assert caught.value.reason == "REQUEST_TIMED_OUT"
    finally:
        fake.state.produce_gate.set()
        await producer.close()


async def test_unknown_topic_and_partition_are_clear_errors(fake: FakeCluster) -> None:
    """Proves a missing topic fails send() with TOPIC_NOT_FOUND after a short bounded wait
    and an out-of-range partition with PARTITION_NOT_FOUND, without sending anything."""
    fake.create_topic("t", 2)
    async with Producer(fake.bootstrap) as producer:
        producer.metadata._min_interval_s = 0.01
        with pytest.raises(BrookError) as missing:
            await producer.send("nope", b"x")
        assert missing.value.reason == "TOPIC_NOT_FOUND"
        with pytest.raises(BrookError) as bad_partition:
            await producer.send("t", b"x", partition=5)
        assert bad_partition.value.reason == "PARTITION_NOT_FOUND"
        with pytest.raises(TypeError):
            await producer.send("t", "not bytes")  # type: ignore[arg-type]


async def test_acks_zero_reports_no_offsets_and_close_flushes(fake: FakeCluster) -> None:
    """Proves acks=0 futures resolve with offset -1, and close() delivers what is buffered
    before it returns (no record left behind)."""
    fake.create_topic("t", 1)
    producer = Producer(fake.bootstrap, acks="0", linger_ms=10_000)
    await producer.start()
    future = await producer.send("t", b"x")
    await producer.close()
    assert future.result().offset == -1
    assert [r.value for r in fake.state.records("t", 0)] == [b"x"]
    assert fake.state.produce_requests[0].acks == 1  # ACKS_NONE
    with pytest.raises(BrookError):
        await producer.send("t", b"after close")


async def test_compressed_batches_arrive_intact(fake: FakeCluster) -> None:
    """Proves zstd and lz4 producers send batches the leader's crc check accepts and that
    decode back to the records."""
    fake.create_topic("t", 1)
    for compression in ("zstd", "lz4"):
        async with Producer(fake.bootstrap, compression=compression) as producer:
            futures = [await producer.send("t", b"record %d" % i) for i in range(100)]
            await asyncio.wait_for(asyncio.gather(*futures), WAIT_S)
    values = [r.value for r in fake.state.records("t", 0)]
    assert values == [b"record %d" % i for i in range(100)] * 2
