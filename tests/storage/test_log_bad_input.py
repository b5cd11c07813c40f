"""Bad input is rejected with a specific, actionable exception and leaves the log exactly
as it was (same log end, same epochs, same files and sizes)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from brook.storage import (
    BatchTooLargeError,
    InvalidBatchError,
    InvalidEpochError,
    InvalidOffsetError,
    LogConfig,
    OffsetOutOfRangeError,
    PartitionLog,
    StorageError,
)
from tests.storage.helpers import OpenLog, directory_snapshot

Call = Callable[[PartitionLog], object]


def _append(
    payload: bytes,
    *,
    record_count: int = 1,
    epoch: int = 2,
    timestamp: int = 5,
    base_offset: int | None = None,
) -> Call:
    return lambda log: log.append(
        payload,
        record_count=record_count,
        max_timestamp_ms=timestamp,
        leader_epoch=epoch,
        base_offset=base_offset,
    )


CASES: dict[str, tuple[Call, type[StorageError], list[str]]] = {
    "oversized batch": (
        _append(b"x" * 101),
        BatchTooLargeError,
        ["101 bytes", "max_batch_bytes=100", "split"],
    ),
    "empty payload": (_append(b""), InvalidBatchError, ["empty payload"]),
    "record_count 0": (_append(b"x", record_count=0), InvalidBatchError, ["record_count 0"]),
    "negative epoch": (_append(b"x", epoch=-1), InvalidBatchError, ["leader epoch -1"]),
    "bad timestamp": (_append(b"x", timestamp=-2), InvalidBatchError, ["-1 for no timestamp"]),
    "follower base offset ahead": (
        _append(b"x", base_offset=7),
        InvalidOffsetError,
        ["base offset 7", "log ends at 3", "fetch from offset 3"],
    ),
    "follower base offset behind": (
        _append(b"x", base_offset=2),
        InvalidOffsetError,
        ["base offset 2", "truncate"],
    ),
    "lower epoch": (
        _append(b"x", epoch=1),
        InvalidEpochError,
        ["epoch 1", "latest epoch 2", "fenced"],
    ),
    "read past the end": (
        lambda log: log.read(4, 100),
        OffsetOutOfRangeError,
        ["offset 4", "0..3"],
    ),
    "read before the start": (
        lambda log: log.read(-1, 100),
        OffsetOutOfRangeError,
        ["offset -1", "0..3"],
    ),
    "one bad batch in append_batches": (
        lambda log: log.append_batches([(b"ok", 1, 1), (b"", 1, 1)], leader_epoch=3),
        InvalidBatchError,
        ["batch 1", "empty payload"],
    ),
    "one oversized batch in append_batches": (
        lambda log: log.append_batches([(b"ok", 1, 1), (b"x" * 500, 1, 1)], leader_epoch=3),
        BatchTooLargeError,
        ["batch 1", "500 bytes"],
    ),
    "delete records past the end": (
        lambda log: log.delete_records_before(9),
        OffsetOutOfRangeError,
        ["ends at 3"],
    ),
    "epoch start past the end": (
        lambda log: log.assign_epoch_start(5, 9),
        InvalidOffsetError,
        ["log end"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_rejected_without_side_effects(open_log: OpenLog, case: str) -> None:
    """Each bad call raises its specific exception (also a ValueError, as input errors are)
    with a message naming the problem and the fix, and nothing on disk or in memory moves."""
    call, error_type, phrases = CASES[case]
    log = open_log(LogConfig(max_batch_bytes=100, flush_interval_ms=0))
    for epoch in (0, 1, 2):
        log.append(b"abc", record_count=1, max_timestamp_ms=1, leader_epoch=epoch)
    log.flush()
    before = (
        directory_snapshot(log.directory),
        log.log_end_offset,
        log.epoch_entries(),
        log.log_start_offset,
    )
    with pytest.raises(error_type) as raised:
        call(log)
    assert isinstance(raised.value, ValueError)
    for phrase in phrases:
        assert phrase in str(raised.value), (phrase, str(raised.value))
    after = (
        directory_snapshot(log.directory),
        log.log_end_offset,
        log.epoch_entries(),
        log.log_start_offset,
    )
    assert after == before
    # The log still works.
    assert log.append(b"more", record_count=1, max_timestamp_ms=1, leader_epoch=2).base_offset == 3
