"""The producer's pure core: batching by size and linger, draining, buffer memory."""

from __future__ import annotations

import asyncio

import pytest

from brook.client.producer.accumulator import BufferPool, RecordAccumulator


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _accumulator(clock: FakeClock, **kwargs: int) -> RecordAccumulator:
    options = {
        "batch_bytes": 1000,
        "linger_ms": 5,
        "max_request_bytes": 10_000,
        "delivery_timeout_ms": 60_000,
        "max_in_flight_per_partition": 1,
        "reserve_chunk_bytes": 200,
        **kwargs,
    }
    return RecordAccumulator(clock=clock, **options)


def _leader(_topic: str, partition: int) -> int:
    return partition % 2


def test_batch_closes_on_size_and_is_ready_at_once() -> None:
    """Proves a batch closes when the next record would pass batch_bytes, and a closed
    batch is ready without waiting for linger, while the open one waits its linger."""
    clock = FakeClock()
    acc = _accumulator(clock)
    pool = BufferPool(1 << 20)
    queue = acc.queue("t", 0)
    for _ in range(10):
        assert acc.append(queue, b"x" * 90, None, None, 1, 100, None, pool) is not None
    assert len(queue.batches) == 1 and queue.batches[0].closed  # exactly 1000 bytes: full
    acc.append(queue, b"x" * 90, None, None, 1, 100, None, pool)
    assert len(queue.batches) == 2 and not queue.batches[1].closed
    ready, next_s, unknown = acc.ready(clock.now, _leader)
    assert ready == {0: [queue]} and not unknown
    drained = acc.drain(ready[0], clock.now, 1)
    assert [len(b) for _q, b in drained] == [1]  # the lingering open batch stays
    assert drained[0][1][0].record_count == 10
    queue.in_flight = 0
    ready, next_s, _ = acc.ready(clock.now, _leader)
    assert ready == {} and next_s == pytest.approx(clock.now + 0.005)
    clock.now += 0.005
    ready, _, _ = acc.ready(clock.now, _leader)
    assert ready == {0: [queue]}


def test_one_request_carries_many_batches_and_partitions_up_to_the_request_bound() -> None:
    """Proves drain takes every ready batch of every partition the node leads into one
    request, stopping at max_request_bytes (but always taking at least one batch)."""
    clock = FakeClock()
    acc = _accumulator(clock, max_request_bytes=2_600)
    pool = BufferPool(1 << 20)
    queues = [acc.queue("t", 0), acc.queue("t", 2)]
    for queue in queues:
        for _ in range(20):
            acc.append(queue, b"y" * 90, None, None, 1, 100, None, pool)
    clock.now += 1
    ready, _, _ = acc.ready(clock.now, _leader)
    assert ready == {0: queues}
    drained = acc.drain(ready[0], clock.now, 1)
    assert [(q.partition, len(b)) for q, b in drained] == [(0, 2)]
    assert all(q.in_flight == 1 for q, _ in drained)
    # Muted (one in flight per partition): partition 0 is not ready again; 2 still is.
    ready, _, _ = acc.ready(clock.now, _leader)
    assert ready == {0: [queues[1]]}
    big = _accumulator(clock, max_request_bytes=100)
    queue = big.queue("u", 0)
    big.append(queue, b"z" * 500, None, None, 1, 516, None, pool)
    clock.now += 1
    assert [len(b) for _q, b in big.drain([queue], clock.now, 1)] == [1]


def test_requeued_batches_go_first_after_backoff_and_expire_at_the_deadline() -> None:
    """Proves a retried batch returns to the head of its queue, waits its back-off, and a
    queued batch past delivery_timeout_ms is reported expired."""
    clock = FakeClock()
    acc = _accumulator(clock, delivery_timeout_ms=1_000)
    pool = BufferPool(1 << 20)
    queue = acc.queue("t", 1)
    acc.append(queue, b"a", None, None, 1, 17, None, pool)
    clock.now += 0.01
    ((q, batches),) = acc.drain([queue], clock.now, 1)
    acc.append(queue, b"b", None, None, 1, 17, None, pool)
    q.in_flight = 0
    acc.requeue(queue, batches, clock.now + 0.2)
    assert [b.values for b in queue.batches] == [[b"a"], [b"b"]]
    ready, next_s, _ = acc.ready(clock.now, _leader)
    assert ready == {} and next_s == pytest.approx(clock.now + 0.2)
    clock.now += 0.2
    assert acc.ready(clock.now, _leader)[0] == {1: [queue]}
    clock.now += 1.0
    expired = acc.expired(clock.now)
    assert [b.values for _q, b in expired] == [[b"a"], [b"b"]]


def test_memory_is_reserved_in_chunks_and_append_fails_when_the_pool_is_full() -> None:
    """Proves appends draw buffer memory in chunks (most appends touch no pool) and that an
    append that needs memory the pool lacks changes nothing and returns None."""
    clock = FakeClock()
    acc = _accumulator(clock)
    pool = BufferPool(450)
    queue = acc.queue("t", 0)
    assert acc.append(queue, b"x" * 84, None, None, 1, 100, None, pool)
    assert pool.used_bytes == 200  # one chunk for two records
    assert acc.append(queue, b"x" * 84, None, None, 1, 100, None, pool)
    assert pool.used_bytes == 200
    for _ in range(2):
        assert acc.append(queue, b"x" * 84, None, None, 1, 100, None, pool)
    assert pool.used_bytes == 400
    assert acc.append(queue, b"x" * 84, None, None, 1, 100, None, pool) is None
    assert queue.batches[0].record_count == 4
    # A caller that was granted memory (after waiting) always succeeds.
    assert acc.append(queue, b"x" * 84, None, None, 1, 100, None, pool, granted_bytes=100)


async def test_buffer_pool_waiters_are_served_first_in_first_out_and_time_out() -> None:
    """Proves reserve() blocks while the pool is full, resumes in FIFO order as memory is
    released, and gives up with TimeoutError after its bound, releasing nothing it lacks."""
    pool = BufferPool(100)
    assert pool.try_reserve(100)
    order: list[str] = []

    async def want(name: str, size: int) -> None:
        await pool.reserve(size, 5)
        order.append(name)

    first = asyncio.create_task(want("first", 60))
    second = asyncio.create_task(want("second", 30))
    await asyncio.sleep(0)
    assert not pool.try_reserve(1)  # waiters queued: no barging
    pool.release(50)
    await asyncio.sleep(0)
    assert order == []  # 60 does not fit yet, and 30 must not overtake it
    pool.release(50)
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert order == ["first", "second"] and pool.used_bytes == 90
    with pytest.raises(TimeoutError):
        await pool.reserve(50, 0.05)
    assert pool.used_bytes == 90 and not pool.waiters


def test_closed_batches_are_encoded_ahead_while_the_partition_waits() -> None:
    """Proves encode_closed encodes exactly the closed, not yet encoded batches (never the
    open one), once, and that drain then sends those same encoded bytes; by filling a
    partition whose request is in flight, as the sender sees it while it waits."""
    clock = FakeClock()
    acc = _accumulator(clock)
    pool = BufferPool(1 << 20)
    queue = acc.queue("t", 0)
    queue.in_flight = 1
    for _ in range(25):
        acc.append(queue, b"x" * 90, None, None, 1, 100, None, pool)
    assert [b.closed for b in queue.batches] == [True, True, False]
    assert acc.encode_closed(1) == 2
    assert [b.encoded is not None for b in queue.batches] == [True, True, False]
    assert acc.encode_closed(1) == 0
    encoded = [b.encoded for b in queue.batches][:2]
    queue.in_flight = 0
    ready, _, _ = acc.ready(clock.now, _leader)
    drained = acc.drain(ready[0], clock.now, 1)
    assert [b.encoded for b in drained[0][1]] == encoded
    assert [b.encode(1).record_count for b in drained[0][1]] == [10, 10]
