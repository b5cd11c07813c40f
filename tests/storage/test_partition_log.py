"""PartitionLog behaviour: append, read limits, rolling, flushing, retention, truncation,
timestamps, epochs and lifecycle. Time is driven by a ManualClock."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from brook.storage import (
    HEADER_SIZE,
    AppendBatch,
    EpochEntry,
    InvalidOffsetError,
    LogClosedError,
    LogConfig,
    ManualClock,
    OffsetOutOfRangeError,
    PartitionLog,
    StorageError,
    faults,
)
from tests.storage.helpers import OpenLog, payload_for, read_all, scan_log_files

NO_FLUSH = LogConfig(flush_interval_ms=0)


def append_n(
    log: PartitionLog,
    count: int,
    size: int = 100,
    *,
    records: int = 1,
    epoch: int = 0,
    timestamp: int = 1000,
) -> None:
    for number in range(count):
        log.append(
            payload_for(log.log_end_offset, size),
            record_count=records,
            max_timestamp_ms=timestamp,
            leader_epoch=epoch,
        )
        del number


def test_append_assigns_contiguous_offsets(open_log: OpenLog, clock: ManualClock) -> None:
    """Leader appends get offsets from the log end; AppendInfo reports them, the batch's
    max timestamp and the clock's time; the payload reads back byte for byte."""
    log = open_log(NO_FLUSH)
    first = log.append(b"a" * 10, record_count=3, max_timestamp_ms=77, leader_epoch=0)
    clock.advance(5)
    second = log.append(b"b" * 20, record_count=2, max_timestamp_ms=78, leader_epoch=0)
    assert (first.base_offset, first.last_offset, first.max_timestamp_ms) == (0, 2, 77)
    assert first.log_append_time_ms == clock.now_ms() - 5
    assert (second.base_offset, second.last_offset) == (3, 4)
    assert log.log_end_offset == 5
    batches = read_all(log)
    assert [batch.payload for batch in batches] == [b"a" * 10, b"b" * 20]
    assert batches[1].header.base_offset == 3 and batches[1].header.record_count == 2
    assert log.size_bytes == 2 * HEADER_SIZE + 30


def test_append_batches_writes_once_per_segment(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """append_batches frames all batches and writes them with one pwritev per segment."""
    log = open_log(NO_FLUSH)
    calls: list[int] = []
    real_pwritev = os.pwritev

    def counting_pwritev(fd: int, buffers: list[bytes], position: int) -> int:
        calls.append(len(buffers))
        return real_pwritev(fd, buffers, position)

    # The engine's real I/O calls are the os functions bound once (storage.faults.REAL_IO).
    monkeypatch.setattr(faults._RealIO, "pwritev", staticmethod(counting_pwritev))
    infos = log.append_batches(
        [AppendBatch(payload_for(n, 50), 2, 10 + n) for n in range(10)], leader_epoch=1
    )
    assert calls == [20]
    assert [info.base_offset for info in infos] == list(range(0, 20, 2))
    assert [batch.header.max_timestamp_ms for batch in read_all(log)] == list(range(10, 20))


def test_follower_append_batches_checks_the_base_offset(open_log: OpenLog) -> None:
    """append_batches in follower mode starts at the given base offset, which must be the
    log end; a mismatch appends nothing."""
    log = open_log(NO_FLUSH)
    batches = [AppendBatch(b"a", 2, 1), AppendBatch(b"b", 3, 2)]
    with pytest.raises(InvalidOffsetError):
        log.append_batches(batches, leader_epoch=1, base_offset=1)
    assert log.log_end_offset == 0
    infos = log.append_batches(batches, leader_epoch=1, base_offset=0)
    assert [(info.base_offset, info.last_offset) for info in infos] == [(0, 1), (2, 4)]


def test_follower_append_uses_the_given_base_offset(open_log: OpenLog) -> None:
    """A follower copies the leader's batch at the leader's base offset (= log end)."""
    log = open_log(NO_FLUSH)
    log.truncate_fully_and_start_at(500)
    info = log.append(b"x", record_count=4, max_timestamp_ms=1, leader_epoch=2, base_offset=500)
    assert (info.base_offset, info.last_offset, log.log_end_offset) == (500, 503, 504)


def test_read_starts_with_the_batch_containing_the_offset(open_log: OpenLog) -> None:
    """Reading from an offset inside a batch returns that whole batch first."""
    log = open_log(NO_FLUSH)
    append_n(log, 5, records=10)
    result = log.read(23, 1 << 20)
    assert [batch.header.base_offset for batch in result.batches] == [20, 30, 40]
    assert result.next_offset == 50


def test_read_max_bytes_counts_stored_batches_and_returns_at_least_one(
    open_log: OpenLog,
) -> None:
    """max_bytes bounds header+payload bytes: a batch that exactly fits is included, one
    byte less excludes it, and a budget smaller than the first batch still returns it."""
    log = open_log(NO_FLUSH)
    append_n(log, 4, size=100)
    stored = HEADER_SIZE + 100
    assert len(log.read(0, 2 * stored).batches) == 2
    assert log.read(0, 2 * stored).bytes_read == 2 * stored
    assert len(log.read(0, 2 * stored - 1).batches) == 1
    tiny = log.read(1, 1)
    assert [batch.header.base_offset for batch in tiny.batches] == [1]
    assert tiny.next_offset == 2 and tiny.bytes_read == stored
    assert len(log.read(0, 0).batches) == 1


def test_read_max_offset_stops_before_a_batch_reaching_it(open_log: OpenLog) -> None:
    """max_offset is exclusive: a batch whose last offset >= max_offset is not returned,
    even as the first batch."""
    log = open_log(NO_FLUSH)
    append_n(log, 3, records=5)  # batches 0..4, 5..9, 10..14
    assert [b.header.base_offset for b in log.read(0, 1 << 20, max_offset=10).batches] == [0, 5]
    assert [b.header.base_offset for b in log.read(0, 1 << 20, max_offset=9).batches] == [0]
    empty = log.read(5, 1 << 20, max_offset=9)
    assert empty.batches == [] and empty.next_offset == 5 and empty.bytes_read == 0


def test_read_at_the_end_and_out_of_range(open_log: OpenLog) -> None:
    """start == log end gives an empty result; outside [start, end] raises with both bounds."""
    log = open_log(NO_FLUSH)
    append_n(log, 2)
    result = log.read(2, 1 << 20)
    assert result.batches == [] and result.next_offset == 2
    for offset in (-1, 3):
        with pytest.raises(OffsetOutOfRangeError) as raised:
            log.read(offset, 100)
        assert (raised.value.log_start_offset, raised.value.log_end_offset) == (0, 2)
        assert str(offset) in str(raised.value)


def test_read_spans_segments(open_log: OpenLog) -> None:
    """One read continues into the next segment while the byte budget allows."""
    log = open_log(LogConfig(flush_interval_ms=0, segment_bytes=3 * (HEADER_SIZE + 100)))
    append_n(log, 7)
    assert log.segment_base_offsets == [0, 3, 6]
    result = log.read(1, 1 << 20)
    assert [b.header.base_offset for b in result.batches] == list(range(1, 7))


def test_roll_by_size(open_log: OpenLog) -> None:
    """The active segment rolls before a batch that would take it past segment_bytes."""
    stored = HEADER_SIZE + 100
    log = open_log(LogConfig(flush_interval_ms=0, segment_bytes=2 * stored))
    append_n(log, 5)
    assert log.segment_base_offsets == [0, 2, 4]
    assert sorted(path.name for path in log.directory.glob("*.log")) == [
        "00000000000000000000.log",
        "00000000000000000002.log",
        "00000000000000000004.log",
    ]
    assert all(
        path.stat().st_size == 2 * stored
        for path in log.directory.glob("*.log")
        if not path.name.endswith("4.log")
    )


def test_oversized_batch_gets_a_segment_of_its_own(open_log: OpenLog) -> None:
    """A batch larger than segment_bytes is accepted (up to max_batch_bytes) in its own
    segment rather than rejected or split."""
    log = open_log(LogConfig(flush_interval_ms=0, segment_bytes=200, max_batch_bytes=1000))
    append_n(log, 1, size=50)
    append_n(log, 1, size=900)
    append_n(log, 1, size=50)
    assert log.segment_base_offsets == [0, 1, 2]
    assert [len(b.payload) for b in read_all(log)] == [50, 900, 50]


def test_roll_by_age(open_log: OpenLog, clock: ManualClock) -> None:
    """The active segment rolls once its first batch was appended more than segment_ms
    ago, by the injected clock (not by producer timestamps)."""
    log = open_log(LogConfig(flush_interval_ms=0, segment_ms=1000))
    append_n(log, 1, timestamp=0)
    clock.advance(1000)
    append_n(log, 1, timestamp=0)
    assert log.segment_base_offsets == [0]
    clock.advance(1)
    append_n(log, 1, timestamp=0)
    assert log.segment_base_offsets == [0, 2]
    clock.advance(5000)
    append_n(log, 1)
    assert log.segment_base_offsets == [0, 2, 3]


def test_roll_when_an_index_is_full(open_log: OpenLog) -> None:
    """With room for 2 time-index entries (24 bytes) and an entry per batch, the segment
    rolls before a batch that could need a third entry."""
    log = open_log(LogConfig(flush_interval_ms=0, segment_index_bytes=24, index_interval_bytes=0))
    for number in range(5):
        log.append(b"x", record_count=1, max_timestamp_ms=number, leader_epoch=0)
    assert log.segment_base_offsets == [0, 2, 4]


def test_explicit_roll(open_log: OpenLog) -> None:
    """roll() starts a segment at the log end; rolling an empty segment does nothing."""
    log = open_log(NO_FLUSH)
    log.roll()
    assert log.segment_base_offsets == [0]
    append_n(log, 3)
    log.roll()
    log.roll()
    assert log.segment_base_offsets == [0, 3]
    append_n(log, 1)
    assert [b.header.base_offset for b in read_all(log)] == [0, 1, 2, 3]


FsyncSpy = Callable[[], list[str]]


@pytest.fixture
def fsync_spy(monkeypatch: pytest.MonkeyPatch) -> FsyncSpy:
    """Records the file name of every fsync'd descriptor."""
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    monkeypatch.setattr(faults._RealIO, "fsync", staticmethod(spy))

    def take() -> list[str]:
        taken = list(synced)
        synced.clear()
        return taken

    return take


def test_flush_every_n_batches(open_log: OpenLog, fsync_spy: FsyncSpy) -> None:
    """flush_interval_batches=3 fsyncs the segment on every third append and moves the
    recovery point (and its checkpoint) to the log end."""
    log = open_log(LogConfig(flush_interval_ms=0, flush_interval_batches=3))
    fsync_spy()
    append_n(log, 2)
    assert "00000000000000000000.log" not in fsync_spy()
    assert log.recovery_point == 0
    append_n(log, 1)
    assert "00000000000000000000.log" in fsync_spy()
    assert log.recovery_point == 3
    assert (log.directory / "recovery-point-checkpoint").read_text() == "0\n1\n3\n"


def test_flush_every_append(open_log: OpenLog, fsync_spy: FsyncSpy) -> None:
    """flush_interval_batches=1 makes every append durable before it returns."""
    log = open_log(LogConfig(flush_interval_ms=0, flush_interval_batches=1))
    for number in range(3):
        fsync_spy()
        append_n(log, 1)
        assert "00000000000000000000.log" in fsync_spy()
        assert log.recovery_point == number + 1


def test_flush_by_time(open_log: OpenLog, clock: ManualClock, fsync_spy: FsyncSpy) -> None:
    """flush_interval_ms: an append or maybe_flush() fsyncs once the interval has passed
    since the last flush; before that nothing is fsynced."""
    log = open_log(LogConfig(flush_interval_ms=1000))
    append_n(log, 1)
    clock.advance(999)
    append_n(log, 1)
    assert not log.maybe_flush()
    assert log.recovery_point == 0 and "00000000000000000000.log" not in fsync_spy()
    clock.advance(1)
    assert log.maybe_flush()
    assert log.recovery_point == 2 and "00000000000000000000.log" in fsync_spy()
    append_n(log, 1)
    clock.advance(1000)
    append_n(log, 1)  # the append itself notices the interval has passed
    assert log.recovery_point == 4
    fsync_spy()
    clock.advance(5000)
    assert not log.maybe_flush(), "nothing unflushed: no fsync"
    assert fsync_spy() == []


def test_caller_flushes_defers_the_policy_to_maybe_flush(
    tmp_path: Path, clock: ManualClock, fsync_spy: FsyncSpy
) -> None:
    """caller_flushes: an append never fsyncs; flush_due() says when the batch or time
    policy wants one and maybe_flush() does it."""
    log = PartitionLog.open(
        tmp_path / "t-0",
        LogConfig(flush_interval_ms=1000, flush_interval_batches=2),
        clock=clock,
        caller_flushes=True,
    )
    try:
        append_n(log, 1)
        assert not log.flush_due()
        append_n(log, 1)
        assert "00000000000000000000.log" not in fsync_spy(), "the append did not fsync"
        assert log.flush_due() and log.recovery_point == 0
        assert log.maybe_flush()
        assert log.recovery_point == 2 and not log.flush_due()
        append_n(log, 1)
        clock.advance(1000)
        assert log.flush_due(), "the interval has passed with a batch unflushed"
        assert log.maybe_flush() and log.recovery_point == 3
    finally:
        log.close()


def test_flush_off(open_log: OpenLog, clock: ManualClock, fsync_spy: FsyncSpy) -> None:
    """With both intervals 0 only flush() and close() fsync."""
    log = open_log(NO_FLUSH)
    append_n(log, 5)
    clock.advance(10**6)
    append_n(log, 1)
    assert not log.maybe_flush()
    assert log.recovery_point == 0
    assert not [name for name in fsync_spy() if name.endswith(".log")]
    log.flush()
    assert log.recovery_point == 6 and "00000000000000000000.log" in fsync_spy()


def segmented_log(open_log: OpenLog, clock: ManualClock, **overrides: int) -> PartitionLog:
    """Three full segments of 3 batches plus an active one of 1, with the batches of
    segment k timestamped k * 1000 (one more each second)."""
    stored = HEADER_SIZE + 100
    config = LogConfig(
        flush_interval_ms=0, segment_bytes=3 * stored, file_delete_delay_ms=500, **overrides
    )
    log = open_log(config)
    base = clock.now_ms()
    for number in range(10):
        log.append(
            payload_for(number, 100),
            record_count=1,
            max_timestamp_ms=base + (number // 3) * 1000,
            leader_epoch=0,
        )
    assert log.segment_base_offsets == [0, 3, 6, 9]
    return log


def test_retention_by_time(open_log: OpenLog, clock: ManualClock) -> None:
    """Segments whose newest batch is older than retention_ms are deleted oldest first; the
    active segment never is; log_start_offset moves to the first kept segment."""
    log = segmented_log(open_log, clock, retention_ms=1500)
    assert log.apply_retention() == []
    clock.advance(2501)  # segment 0 (t=0) and 1 (t=1000) are now older than 1500 ms
    assert log.apply_retention() == [0, 3]
    assert log.log_start_offset == 6 and log.segment_base_offsets == [6, 9]
    clock.advance(100_000)
    assert log.apply_retention() == [6]
    assert log.segment_base_offsets == [9], "the active segment is kept"
    with pytest.raises(OffsetOutOfRangeError):
        log.read(8, 100)
    assert [b.header.base_offset for b in read_all(log)] == [9]


def test_retention_stops_at_the_first_young_segment(open_log: OpenLog, clock: ManualClock) -> None:
    """Time retention deletes a prefix only: an old segment behind a young one stays."""
    log = open_log(
        LogConfig(flush_interval_ms=0, segment_bytes=HEADER_SIZE + 10, retention_ms=1000)
    )
    now = clock.now_ms()
    for timestamp in (now - 5000, now, now - 5000, now):
        log.append(b"x" * 10, record_count=1, max_timestamp_ms=timestamp, leader_epoch=0)
    assert log.apply_retention() == [0]
    assert log.segment_base_offsets == [1, 2, 3]


def test_retention_by_size(open_log: OpenLog, clock: ManualClock) -> None:
    """Oldest non-active segments are deleted while the log is larger than retention_bytes."""
    stored = HEADER_SIZE + 100
    log = segmented_log(open_log, clock, retention_ms=-1, retention_bytes=5 * stored)
    assert log.size_bytes == 10 * stored
    assert log.apply_retention() == [0, 3]
    assert log.size_bytes == 4 * stored and log.log_start_offset == 6
    assert log.apply_retention() == []


def test_retention_disabled(open_log: OpenLog, clock: ManualClock) -> None:
    """retention_ms=-1 and retention_bytes=-1 keep everything forever."""
    log = segmented_log(open_log, clock, retention_ms=-1)
    clock.advance(10**12)
    assert log.apply_retention() == []


def test_deleted_files_are_removed_after_the_delay(open_log: OpenLog, clock: ManualClock) -> None:
    """Deleted segments' files are renamed to *.deleted at once and unlinked by
    delete_pending_files() only after file_delete_delay_ms."""
    log = segmented_log(open_log, clock, retention_ms=1500)
    clock.advance(2501)
    log.apply_retention()
    names = sorted(path.name for path in log.directory.glob("*.deleted"))
    assert names == sorted(
        f"{base:020d}{suffix}.deleted"
        for base in (0, 3)
        for suffix in (".log", ".index", ".timeindex")
    )
    clock.advance(499)
    assert log.delete_pending_files() == 0
    clock.advance(1)
    assert log.delete_pending_files() == 6
    assert not list(log.directory.glob("*.deleted"))


def test_truncate_inside_a_batch_drops_the_whole_batch(open_log: OpenLog) -> None:
    """truncate_to(o) keeps only batches whose last offset < o: a batch containing o goes
    entirely, the log end becomes that batch's base, and appends continue there."""
    log = open_log(LogConfig(flush_interval_ms=0, index_interval_bytes=0))
    append_n(log, 3, records=3)  # 0..2, 3..5, 6..8
    log.truncate_to(4)
    assert log.log_end_offset == 3
    assert [b.header.base_offset for b in read_all(log)] == [0]
    assert (log.directory / "00000000000000000000.index").stat().st_size == 8
    info = log.append(b"new", record_count=1, max_timestamp_ms=1, leader_epoch=0)
    assert info.base_offset == 3
    assert [b.payload for b in read_all(log)][-1] == b"new"
    log.truncate_to(100)
    assert log.log_end_offset == 4, "truncating at or past the end is a no-op"


def test_truncate_across_segments_and_epochs(open_log: OpenLog) -> None:
    """Truncation deletes later segments, cuts the epoch history at the new end, lowers
    the recovery point, and leaves valid files."""
    log = open_log(LogConfig(flush_interval_ms=0, segment_bytes=2 * (HEADER_SIZE + 100)))
    append_n(log, 3, epoch=0)
    append_n(log, 3, epoch=2)
    append_n(log, 2, epoch=5)
    log.flush()
    assert log.epoch_entries() == [EpochEntry(0, 0), EpochEntry(2, 3), EpochEntry(5, 6)]
    log.truncate_to(3)
    assert log.segment_base_offsets == [0, 2]
    assert log.log_end_offset == 3 and log.recovery_point == 3
    assert log.epoch_entries() == [EpochEntry(0, 0)]
    assert [b.base_offset for b in scan_log_files(log.directory)] == [0, 1, 2]
    append_n(log, 1, epoch=3)
    assert log.epoch_entries() == [EpochEntry(0, 0), EpochEntry(3, 3)]


def test_truncate_below_the_log_start_starts_over(open_log: OpenLog) -> None:
    """Truncating below log_start_offset leaves an empty log starting at that offset."""
    log = open_log(NO_FLUSH)
    append_n(log, 5)
    log.delete_records_before(3)
    log.truncate_to(2)
    assert (log.log_start_offset, log.log_end_offset) == (2, 2)
    assert log.segment_base_offsets == [2]


def test_truncate_fully_and_start_at(open_log: OpenLog) -> None:
    """All segments go; the log is empty at the given offset, epochs cleared, and that
    survives a reopen."""
    log = open_log(NO_FLUSH)
    append_n(log, 5, epoch=4)
    log.truncate_fully_and_start_at(1000)
    assert (log.log_start_offset, log.log_end_offset, log.epoch_entries()) == (1000, 1000, [])
    assert log.read(1000, 100).batches == []
    log.close()
    log = open_log(NO_FLUSH)
    assert (log.log_start_offset, log.log_end_offset) == (1000, 1000)
    assert log.append(b"x", record_count=1, max_timestamp_ms=1, leader_epoch=5).base_offset == 1000


def test_delete_records_before(open_log: OpenLog) -> None:
    """delete_records_before moves the log start (persisted across reopen), deletes
    segments wholly below it, keeps the partly covered one, and refuses offsets past the end."""
    log = open_log(LogConfig(flush_interval_ms=0, segment_bytes=2 * (HEADER_SIZE + 100)))
    append_n(log, 6, records=2)  # segments [0, 4, 8], batches every 2 offsets
    log.delete_records_before(5)
    assert log.log_start_offset == 5 and log.segment_base_offsets == [4, 8]
    assert [b.header.base_offset for b in log.read(5, 1 << 20).batches] == [4, 6, 8, 10]
    with pytest.raises(OffsetOutOfRangeError):
        log.read(4, 100)
    log.delete_records_before(2)
    assert log.log_start_offset == 5
    with pytest.raises(OffsetOutOfRangeError, match="ends at 12"):
        log.delete_records_before(13)
    log.close()
    assert open_log(NO_FLUSH).log_start_offset == 5


def test_offset_for_timestamp(open_log: OpenLog) -> None:
    """Returns the base offset of the first batch whose max timestamp >= the target, with
    out-of-order timestamps, across segments, and never below the log start."""
    log = open_log(
        LogConfig(flush_interval_ms=0, segment_bytes=3 * (HEADER_SIZE + 10), index_interval_bytes=0)
    )
    for timestamp in (100, 300, 200, 250, 400, 350, 500):
        log.append(b"x" * 10, record_count=2, max_timestamp_ms=timestamp, leader_epoch=0)
    # batches at offsets 0, 2, 4, 6, 8, 10, 12
    expectations = {0: 0, 100: 0, 101: 2, 300: 2, 301: 8, 400: 8, 450: 12, 500: 12, 501: None}
    for timestamp, expected in expectations.items():
        assert log.offset_for_timestamp(timestamp) == expected, timestamp
    log.delete_records_before(5)
    assert log.offset_for_timestamp(0) == 5
    assert log.offset_for_timestamp(301) == 8


def test_epochs_recorded_by_append(open_log: OpenLog) -> None:
    """A higher leader epoch on append starts a new epoch entry at that batch; the same
    epoch does not; end_offset_for_epoch follows."""
    log = open_log(NO_FLUSH)
    append_n(log, 2, epoch=1)
    append_n(log, 2, epoch=1)
    append_n(log, 3, epoch=4)
    assert log.latest_epoch == 4
    assert log.epoch_entries() == [EpochEntry(1, 0), EpochEntry(4, 4)]
    assert log.end_offset_for_epoch(1) == (1, 4)
    assert log.end_offset_for_epoch(3) == (1, 4)
    assert log.end_offset_for_epoch(4) == (4, 7)
    assert log.end_offset_for_epoch(0) == (-1, -1)
    log.assign_epoch_start(6, 7)
    assert log.end_offset_for_epoch(4) == (4, 7)
    assert log.end_offset_for_epoch(6) == (6, 7)
    log.close()
    # Epoch 6 has no batch yet, so (as in Kafka) it is not kept across a restart.
    assert open_log(NO_FLUSH).epoch_entries() == [EpochEntry(1, 0), EpochEntry(4, 4)]


def test_clean_close_and_reopen(open_log: OpenLog, caplog: pytest.LogCaptureFixture) -> None:
    """close() flushes and leaves a clean-shutdown marker; reopening trusts the segments
    (no index rebuild, no warning), removes the marker and serves identical data."""
    config = LogConfig(flush_interval_ms=0, segment_bytes=1000, index_interval_bytes=200)
    log = open_log(config)
    for number in range(40):
        log.append(
            payload_for(number, 10 + number * 7),
            record_count=1 + number % 3,
            max_timestamp_ms=number,
            leader_epoch=number // 10,
        )
    before = [(b.header, b.payload) for b in read_all(log)]
    log.close()
    assert (log.directory / ".clean-shutdown").exists()
    caplog.set_level(logging.INFO, logger="brook.storage")
    reopened = open_log(config)
    assert reopened.had_clean_shutdown
    assert not (reopened.directory / ".clean-shutdown").exists()
    assert not [r for r in caplog.records if "rebuild" in r.message or r.levelno >= logging.WARNING]
    assert [(b.header, b.payload) for b in read_all(reopened)] == before
    expected = next(h.base_offset for h, _ in before if h.max_timestamp_ms >= 25)
    assert reopened.offset_for_timestamp(25) == expected
    assert reopened.recovery_point == reopened.log_end_offset


def test_closed_log_refuses_calls(open_log: OpenLog) -> None:
    """After close() every operation raises LogClosedError; close() again is harmless."""
    log = open_log(NO_FLUSH)
    log.close()
    log.close()
    with pytest.raises(LogClosedError):
        log.append(b"x", record_count=1, max_timestamp_ms=1, leader_epoch=0)
    with pytest.raises(LogClosedError):
        log.read(0, 10)


def test_delete_removes_the_directory(open_log: OpenLog) -> None:
    """delete() closes the log and removes its directory entirely."""
    log = open_log(NO_FLUSH)
    append_n(log, 3)
    log.delete()
    assert not log.directory.exists()
    assert not list(log.directory.parent.iterdir())


def test_size_bytes_is_the_sum_of_segment_files(open_log: OpenLog) -> None:
    """size_bytes equals the bytes of all .log files on disk."""
    log = open_log(LogConfig(flush_interval_ms=0, segment_bytes=500))
    append_n(log, 17, size=60)
    assert log.size_bytes == sum(p.stat().st_size for p in log.directory.glob("*.log"))


def test_io_error_takes_the_log_offline(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A failed write (EIO: a broken disk) is re-raised, leaves no partial batch, and takes
    the log offline: later calls raise LogClosedError naming the cause; a reopen recovers."""
    log = open_log(NO_FLUSH)
    append_n(log, 2)
    real_pwritev = os.pwritev

    def broken_disk(fd: int, buffers: list[bytes], position: int) -> int:
        real_pwritev(fd, [bytes(buffers[0])[:10]], position)  # a torn start of a batch
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(faults._RealIO, "pwritev", staticmethod(broken_disk))
    with pytest.raises(OSError, match="Input/output"):
        append_n(log, 1)
    monkeypatch.setattr(faults._RealIO, "pwritev", staticmethod(real_pwritev))
    with pytest.raises(LogClosedError, match="Input/output"):
        log.read(0, 100)
    assert len(scan_log_files(log.directory)) == 2
    reopened = PartitionLog.open(log.directory, NO_FLUSH)
    assert reopened.log_end_offset == 2
    reopened.close()


def test_large_reads_of_small_and_large_batches(open_log: OpenLog) -> None:
    """A read budget larger than the engine's internal read buffer still returns every
    small batch whole (batches straddling a buffer boundary are re-read), and large
    payloads (read straight into their own buffer) come back intact."""
    log = open_log(NO_FLUSH)
    sizes = [1000] * 1500 + [200_000, 5, 300_000] + [777] * 300
    for number, size in enumerate(sizes):
        log.append(
            payload_for(number, size), record_count=1, max_timestamp_ms=number, leader_epoch=0
        )
    result = log.read(0, 64 << 20)
    assert [len(b.payload) for b in result.batches] == sizes
    assert all(b.payload == payload_for(n, sizes[n]) for n, b in enumerate(result.batches))
    assert result.bytes_read == sum(sizes) + HEADER_SIZE * len(sizes)
    assert [len(b.payload) for b in log.read(1499, 250_000).batches] == [1000, 200_000, 5]


def test_a_directory_is_opened_by_one_log_at_a_time(open_log: OpenLog) -> None:
    """A second open of a log directory is refused while the first is open (two writers
    would interleave batches), and allowed again once the first is closed."""
    log = open_log(NO_FLUSH)
    with pytest.raises(StorageError, match="already open"):
        PartitionLog.open(log.directory, NO_FLUSH)
    log.close()
    PartitionLog.open(log.directory, NO_FLUSH).close()
