"""The blocking facades (brook.client.sync) and the perf tools' accounting and output."""

from __future__ import annotations

import io
import re
from array import array
from collections.abc import Iterator

import pytest

from brook.client.cli import perf
from brook.client.records import BatchResult
from brook.client.sync import SyncAdmin, SyncConsumer, SyncProducer, _LoopThread
from brook.errors import BrookError
from tests.client.fake_cluster import FakeCluster


@pytest.fixture
def threaded_fake() -> Iterator[tuple[FakeCluster, _LoopThread]]:
    """A fake cluster on its own loop thread, so blocking clients can call it."""
    thread = _LoopThread("fake-cluster")

    async def start() -> FakeCluster:
        return await FakeCluster(nodes=1).start()

    cluster = thread.run(start(), 30)
    try:
        yield cluster, thread
    finally:
        thread.run(cluster.stop(), 30)
        thread.stop()


def test_sync_clients_produce_and_consume(threaded_fake: tuple[FakeCluster, _LoopThread]) -> None:
    """Proves SyncAdmin creates a topic, SyncProducer's futures resolve, and SyncConsumer
    reads the records back, all from plain blocking code."""
    fake, _thread = threaded_fake
    with SyncAdmin(fake.bootstrap) as admin:
        admin.create_topic("t", 2, 1)
        assert [t.name for t in admin.list_topics()] == ["t"]
    with SyncProducer(fake.bootstrap, linger_ms=1) as producer:
        futures = [producer.send("t", b"v%d" % i, partition=i % 2) for i in range(10)]
        producer.flush(10)
        assert sorted(f.result(10).offset for f in futures) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
        with pytest.raises(BrookError):
            producer.send("t", b"x", partition=9)
    with SyncConsumer(fake.bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([("t", 0), ("t", 1)])
        records = []
        for _ in range(50):
            records += consumer.poll(200)
            if len(records) == 10:
                break
        assert sorted(r.value for r in records) == sorted(b"v%d" % i for i in range(10))
        assert consumer.position(("t", 1)) == 5


def test_produce_stats_lines_follow_kafka_format() -> None:
    """Proves the final line has Kafka's exact shape and the latency arithmetic (totals
    via sum/min per batch, sampled percentiles) is right."""
    stats = perf.ProduceStats(num_records=4)
    stats.start_s -= 2.0
    now_ms = perf.time.time_ns() // 1_000_000
    stats.on_batch(
        BatchResult(
            "t",
            0,
            0,
            4,
            [now_ms - 10, now_ms - 20, now_ms - 30, now_ms - 40],
            4 * 1024 * 1024,
            None,
        )
    )
    line = stats.final_line()
    pattern = (
        r"^4 records sent, \d+\.\d{6} records/sec \(\d+\.\d{2} MB/sec\), \d+\.\d{2} ms avg "
        r"latency, \d+\.\d{2} ms max latency, \d+ ms 50th, \d+ ms 95th, \d+ ms 99th, "
        r"\d+ ms 99\.9th\.$"
    )
    assert re.match(pattern, line), line
    assert 25 <= stats.latency_total_ms / stats.count < 27
    assert 40 <= stats.latency_max_ms < 42
    assert perf.percentiles(array("i", [5, 1, 3, 2, 4]), (0.5, 0.999)) == [3, 5]
    assert re.match(
        r"^4 records sent, .* ms avg latency, .* ms max latency\.$", stats.window_line()
    )


async def test_perf_produce_and_consume_end_to_end(fake: FakeCluster) -> None:
    """Proves `perf produce` sends N records (throttled) and prints the Kafka line, and
    `perf consume` reads them back and prints its line, both exiting 0."""
    fake.create_topic("t", 2)
    out = io.StringIO()
    code = await perf.perf_produce(
        fake.bootstrap, "t", 2000, 50, 20_000, out=out, report_interval_s=0.05
    )
    assert code == 0
    lines = out.getvalue().splitlines()
    assert lines[-1].startswith("2000 records sent, ")
    assert sum(len(fake.state.records("t", p)) for p in range(2)) == 2000
    out = io.StringIO()
    assert await perf.perf_consume(fake.bootstrap, "t", 2000, out=out) == 0
    assert re.match(
        r"^2000 records consumed, \d+\.\d+ records/sec \(\d+\.\d{2} MB/sec\)$",
        out.getvalue().splitlines()[-1],
    )
