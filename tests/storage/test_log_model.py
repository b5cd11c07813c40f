"""Model-based test: random sequences of appends, reads, truncations, rolls, retention,
delete_records_before, timestamp and epoch queries, and clean or crash reopens run against
both a PartitionLog and a plain in-memory model; every answer must match.

The model knows nothing about segments, so after retention (whose effect depends on
segment boundaries) it adopts the log's new start offset after checking that it is a
legal one. fsync is stubbed out: durability is the crash test's job, and this test is
about logical behaviour."""

from __future__ import annotations

import bisect
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from brook.storage import (
    HEADER_SIZE,
    AppendBatch,
    EpochEntry,
    LogConfig,
    ManualClock,
    OffsetOutOfRangeError,
    PartitionLog,
)
from tests.storage.helpers import payload_for, scan_log_files

# Tiny limits so short runs roll by size, age and full indexes, and retention bites.
CONFIG = LogConfig(
    segment_bytes=600,
    segment_ms=3000,
    max_batch_bytes=1000,
    index_interval_bytes=64,
    segment_index_bytes=96,
    retention_ms=10_000,
    retention_bytes=3000,
    flush_interval_batches=0,
    flush_interval_ms=0,
    file_delete_delay_ms=1000,
)
# Another shape: an index entry for every batch, indexes full after 3 entries, larger
# segments, time retention only.
CONFIG_DENSE_INDEX = LogConfig(
    segment_bytes=2000,
    segment_ms=4000,
    max_batch_bytes=1000,
    index_interval_bytes=0,
    segment_index_bytes=36,
    retention_ms=2000,
    retention_bytes=-1,
    flush_interval_batches=0,
    flush_interval_ms=0,
    file_delete_delay_ms=0,
)
SIZES = st.one_of(st.integers(1, 120), st.integers(500, 1000))


@dataclass
class ModelBatch:
    base: int
    count: int
    timestamp: int
    epoch: int
    payload: bytes

    @property
    def last(self) -> int:
        return self.base + self.count - 1


@dataclass
class Model:
    """What the log should answer, from first principles."""

    batches: list[ModelBatch] = field(default_factory=list)
    log_start: int = 0
    log_end: int = 0
    epochs: list[tuple[int, int]] = field(default_factory=list)

    @property
    def latest_epoch(self) -> int | None:
        return self.epochs[-1][0] if self.epochs else None

    def append(self, payload: bytes, count: int, timestamp: int, epoch: int) -> int:
        if self.latest_epoch is None or epoch > self.latest_epoch:
            self.assign_epoch(epoch, self.log_end)
        base = self.log_end
        self.batches.append(ModelBatch(base, count, timestamp, epoch, payload))
        self.log_end += count
        return base

    def assign_epoch(self, epoch: int, start: int) -> None:
        if self.epochs and self.epochs[-1][0] == epoch and self.epochs[-1][1] <= start:
            return
        while self.epochs and (self.epochs[-1][0] >= epoch or self.epochs[-1][1] >= start):
            self.epochs.pop()
        self.epochs.append((epoch, start))

    def epochs_from_end(self, end: int) -> None:
        while self.epochs and self.epochs[-1][1] >= end:
            self.epochs.pop()

    def epochs_from_start(self, start: int) -> None:
        covered = [entry for entry in self.epochs if entry[1] <= start]
        if covered:
            rest = [entry for entry in self.epochs if entry[1] > start]
            self.epochs = [(covered[-1][0], start), *rest]

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        if not self.epochs or epoch < self.epochs[0][0]:
            return -1, -1
        floor = max(i for i, entry in enumerate(self.epochs) if entry[0] <= epoch)
        if floor == len(self.epochs) - 1:
            return self.epochs[floor][0], self.log_end
        return self.epochs[floor][0], self.epochs[floor + 1][1]

    def read(self, start: int, max_bytes: int, max_offset: int | None) -> list[ModelBatch]:
        if not self.log_start <= start <= self.log_end:
            raise OffsetOutOfRangeError(
                "model", offset=start, log_start_offset=self.log_start, log_end_offset=self.log_end
            )
        out: list[ModelBatch] = []
        total = 0
        for batch in self.batches:
            if batch.last < start:
                continue
            if max_offset is not None and batch.last >= max_offset:
                break
            size = HEADER_SIZE + len(batch.payload)
            if total + size > max_bytes and out:
                break
            out.append(batch)
            total += size
        return out

    def offset_for_timestamp(self, timestamp: int) -> int | None:
        for batch in self.batches:
            if batch.last >= self.log_start and batch.timestamp >= timestamp:
                return max(batch.base, self.log_start)
        return None

    def truncate_to(self, offset: int) -> None:
        if offset >= self.log_end:
            return
        if offset < self.log_start:
            self.truncate_fully(offset)
            return
        cut = next(i for i, batch in enumerate(self.batches) if batch.last >= offset)
        self.log_end = self.batches[cut].base
        del self.batches[cut:]
        self.epochs_from_end(self.log_end)
        self.log_start = min(self.log_start, self.log_end)

    def truncate_fully(self, offset: int) -> None:
        self.batches = []
        self.log_start = self.log_end = offset
        self.epochs = []

    def advance_start(self, offset: int) -> None:
        if offset > self.log_start:
            self.log_start = offset
            self.epochs_from_start(offset)

    def boundaries(self) -> list[int]:
        return [batch.base for batch in self.batches] + [self.log_end]


class LogMachine(RuleBasedStateMachine):
    config = CONFIG

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="brook-model-"))
        self.directory = self.root / "m-0"
        self.clock = ManualClock()
        self.log = PartitionLog.open(self.directory, self.config, clock=self.clock)
        self.model = Model()
        self.payloads = 0
        self.images = 0

    def teardown(self) -> None:
        if not self.log.closed:
            self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def _payload(self, size: int) -> bytes:
        self.payloads += 1
        return payload_for(self.payloads, size)

    def _epoch(self, bump: int) -> int:
        return (self.model.latest_epoch or 0) + bump

    @rule(
        size=SIZES,
        count=st.integers(1, 4),
        jitter=st.integers(-3000, 3000),
        bump=st.sampled_from([0, 0, 0, 1]),
        follower=st.booleans(),
    )
    def append(self, size: int, count: int, jitter: int, bump: int, follower: bool) -> None:
        epoch = self._epoch(bump)
        timestamp = max(-1, self.clock.now_ms() + jitter)
        payload = self._payload(size)
        info = self.log.append(
            payload,
            record_count=count,
            max_timestamp_ms=timestamp,
            leader_epoch=epoch,
            base_offset=self.model.log_end if follower else None,
        )
        base = self.model.append(payload, count, timestamp, epoch)
        assert (info.base_offset, info.last_offset) == (base, base + count - 1)

    @rule(sizes=st.lists(SIZES, min_size=1, max_size=6), bump=st.sampled_from([0, 1]))
    def append_batches(self, sizes: list[int], bump: int) -> None:
        epoch = self._epoch(bump)
        batches = [
            AppendBatch(self._payload(size), 1 + size % 3, self.clock.now_ms() - size)
            for size in sizes
        ]
        infos = self.log.append_batches(batches, leader_epoch=epoch)
        bases = [self.model.append(payload, count, ts, epoch) for payload, count, ts in batches]
        assert [info.base_offset for info in infos] == bases

    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        model = self.model
        start = data.draw(st.integers(model.log_start - 2, model.log_end + 1), label="start")
        max_bytes = data.draw(st.sampled_from([0, 60, 200, 1000, 5000, 1 << 20]))
        max_offset = data.draw(st.none() | st.integers(model.log_start, model.log_end + 2))
        try:
            expected = model.read(start, max_bytes, max_offset)
        except OffsetOutOfRangeError:
            with pytest.raises(OffsetOutOfRangeError):
                self.log.read(start, max_bytes, max_offset=max_offset)
            return
        result = self.log.read(start, max_bytes, max_offset=max_offset)
        assert [
            (
                b.header.base_offset,
                b.header.record_count,
                b.header.max_timestamp_ms,
                b.header.leader_epoch,
                b.payload,
            )
            for b in result.batches
        ] == [(b.base, b.count, b.timestamp, b.epoch, b.payload) for b in expected]
        assert result.next_offset == (expected[-1].last + 1 if expected else start)
        assert result.bytes_read == sum(HEADER_SIZE + len(b.payload) for b in expected)

    @rule(data=st.data())
    def truncate_to(self, data: st.DataObject) -> None:
        model = self.model
        offset = data.draw(st.integers(max(0, model.log_start - 3), model.log_end + 2))
        self.log.truncate_to(offset)
        model.truncate_to(offset)

    @rule(offset_delta=st.integers(-5, 20))
    def truncate_fully_and_start_at(self, offset_delta: int) -> None:
        offset = max(0, self.model.log_end + offset_delta)
        self.log.truncate_fully_and_start_at(offset)
        self.model.truncate_fully(offset)

    @rule()
    def roll(self) -> None:
        self.log.roll()

    @rule(milliseconds=st.integers(0, 6000))
    def advance_clock(self, milliseconds: int) -> None:
        self.clock.advance(milliseconds)

    @rule()
    def apply_retention(self) -> None:
        before = self.log.segment_base_offsets
        deleted = self.log.apply_retention()
        new_start = self.log.log_start_offset
        assert deleted == before[: len(deleted)], "retention deletes the oldest segments"
        assert self.log.segment_base_offsets == before[len(deleted) :]
        if deleted:
            assert new_start == before[len(deleted)]
        assert self.model.log_start <= new_start <= self.model.log_end
        assert new_start in self.model.boundaries() or new_start == self.model.log_start
        bound = self.config.retention_bytes
        assert bound < 0 or self.log.size_bytes <= bound or len(self.log.segment_base_offsets) == 1
        self.model.advance_start(new_start)
        self.log.delete_pending_files()

    @rule(data=st.data())
    def delete_records_before(self, data: st.DataObject) -> None:
        model = self.model
        offset = data.draw(st.integers(model.log_start - 1, model.log_end + 1))
        if offset > model.log_end:
            with pytest.raises(OffsetOutOfRangeError):
                self.log.delete_records_before(offset)
            return
        self.log.delete_records_before(offset)
        model.advance_start(offset)

    @rule(jitter=st.integers(-8000, 8000))
    def offset_for_timestamp(self, jitter: int) -> None:
        timestamp = self.clock.now_ms() + jitter
        assert self.log.offset_for_timestamp(timestamp) == self.model.offset_for_timestamp(
            timestamp
        )

    @rule(epoch=st.integers(-1, 8))
    def end_offset_for_epoch(self, epoch: int) -> None:
        assert self.log.end_offset_for_epoch(epoch) == self.model.end_offset_for_epoch(epoch)

    @rule()
    def close_and_reopen(self) -> None:
        self.log.close()
        self.log = PartitionLog.open(self.directory, self.config, clock=self.clock)
        assert self.log.had_clean_shutdown
        self.model.epochs_from_end(self.model.log_end)

    @rule()
    def crash_and_reopen(self) -> None:
        """Copy the directory while the log is open (a process crash: the page cache
        survives), then recover the copy: nothing may be lost or changed."""
        self.images += 1
        image = self.root / f"m-{self.images}"
        shutil.copytree(self.directory, image)
        self.log.close()
        self.directory = image
        self.log = PartitionLog.open(image, self.config, clock=self.clock)
        assert not self.log.had_clean_shutdown
        self.model.epochs_from_end(self.model.log_end)
        scan_log_files(image)

    @invariant()
    def same_state(self) -> None:
        log, model = self.log, self.model
        assert (log.log_start_offset, log.log_end_offset) == (model.log_start, model.log_end)
        assert log.latest_epoch == model.latest_epoch
        assert log.epoch_entries() == [EpochEntry(e, s) for e, s in model.epochs]
        assert log.recovery_point <= log.log_end_offset
        assert log.size_bytes == sum(p.stat().st_size for p in self.directory.glob("*.log"))
        bases = log.segment_base_offsets
        assert bases == sorted(bases) and bisect.bisect_right(bases, log.log_start_offset) >= 1


class DenseIndexLogMachine(LogMachine):
    config = CONFIG_DENSE_INDEX


@pytest.mark.parametrize("machine", [LogMachine, DenseIndexLogMachine])
def test_log_matches_model(monkeypatch: pytest.MonkeyPatch, machine: type[LogMachine]) -> None:
    """Runs the state machine for a bounded number of examples and steps (~10 s each)."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=40,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
