"""The storage fault-injection layer and what the engine does with each fault (issue 9).

Real files, real engine; faults come from the documented environment contract
(BROOK_FAULTS / BROOK_FAULTS_FILE), flipped bytes from plain file writes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from brook.storage import (
    AppendBatch,
    CorruptBatchError,
    DiskFullError,
    LogClosedError,
    LogConfig,
    PartitionLog,
    faults,
)
from brook.storage.clean_segments import CLEAN_SEGMENTS_CHECKPOINT
from tests.storage.helpers import OpenLog, payload_for, read_all, scan_log_files

SMALL_SEGMENTS = LogConfig(segment_bytes=1024, flush_interval_ms=0, index_interval_bytes=0)


@pytest.fixture
def control(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fault control file, named by BROOK_FAULTS_FILE for every log opened after this."""
    path = tmp_path / "faults"
    monkeypatch.setenv(faults.FAULTS_FILE_ENV, str(path))
    monkeypatch.delenv(faults.FAULTS_ENV, raising=False)
    monkeypatch.setattr(faults, "CONTROL_FILE_REFRESH_S", 0.0)  # re-read on every call
    return path


def append_values(log: PartitionLog, count: int, size: int = 100) -> None:
    for number in range(count):
        log.append(
            payload_for(number, size), record_count=1, max_timestamp_ms=number, leader_epoch=0
        )


def test_parse_faults_contract() -> None:
    """`kind:prefix` entries separated by ';' or lines; '#' comments; bad kinds refused."""
    entries = faults.parse_faults("enospc:/data/a; eio:/data/b\n# note\ntorn:/x  # why\n")
    assert [(e.kind, e.prefix) for e in entries] == [
        ("enospc", "/data/a"),
        ("eio", "/data/b"),
        ("torn", "/x"),
    ]
    with pytest.raises(ValueError, match="bad fault entry"):
        faults.parse_faults("full:/data")
    with pytest.raises(ValueError, match="bad fault entry"):
        faults.parse_faults("eio")


def test_injection_is_off_and_free_without_the_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Off in production: without the variables a file gets the os functions themselves."""
    monkeypatch.delenv(faults.FAULTS_ENV, raising=False)
    monkeypatch.delenv(faults.FAULTS_FILE_ENV, raising=False)
    io = faults.io_for(tmp_path / "x.log")
    assert io is faults.REAL_IO
    assert faults.REAL_IO.pread is faults.os.pread  # type: ignore[attr-defined]


def test_disk_full_append_is_all_or_nothing_and_the_log_stays_online(
    open_log: OpenLog, control: Path, tmp_path: Path
) -> None:
    """Defect 9 (engine): an append that hits ENOSPC, even after it rolled and wrote a
    segment, leaves the log exactly as before and online; reads work meanwhile and the
    same append succeeds once the fault is cleared."""
    log = open_log(SMALL_SEGMENTS)
    append_values(log, 3)
    before = scan_log_files(log.directory)
    segments_before = log.segment_base_offsets
    # Space runs out in the segment that the append's roll creates (offset 10 on).
    control.write_text(f"enospc:{log.directory / '00000000000000000010'}")
    batches = [AppendBatch(payload_for(n, 300), 1, n) for n in range(10)]
    with pytest.raises(DiskFullError, match="disk full"):
        log.append_batches(batches, leader_epoch=0)
    assert scan_log_files(log.directory) == before
    assert log.log_end_offset == 3 and log.segment_base_offsets == segments_before
    assert [b.payload for b in read_all(log)] == [payload_for(n, 100) for n in range(3)]
    control.write_text("")
    log.append_batches(batches, leader_epoch=0)
    assert log.log_end_offset == 13
    assert [b.header.base_offset for b in read_all(log)] == list(range(13))


def test_torn_write_takes_the_log_offline_and_recovery_cuts_it(
    open_log: OpenLog, control: Path
) -> None:
    """`torn`: the write stops halfway and fails with EIO (a broken disk): the log goes
    offline (Kafka's behaviour), and reopening finds only whole batches."""
    log = open_log(SMALL_SEGMENTS)
    append_values(log, 2)
    control.write_text(f"torn:{log.directory}")
    with pytest.raises(OSError, match="Input/output"):
        append_values(log, 1)
    with pytest.raises(LogClosedError, match="offline"):
        log.read(0, 1000)
    control.write_text("")
    reopened = PartitionLog.open(log.directory, SMALL_SEGMENTS)
    try:
        assert reopened.log_end_offset == 2
    finally:
        reopened.close()


def test_eio_and_bitflip_reads(open_log: OpenLog, control: Path) -> None:
    """`bitflip`: a read returns one flipped bit, which the CRC check catches and the log
    remembers as the first corrupt offset; `eio`: reads fail and take the log offline."""
    log = open_log(SMALL_SEGMENTS)
    append_values(log, 4)
    control.write_text(f"bitflip:{log.directory}")
    with pytest.raises(CorruptBatchError) as caught:
        log.read(2, 1000)
    assert caught.value.offset == 2 and log.corrupt_from == 2
    control.write_text(f"eio:{log.directory}")
    with pytest.raises(OSError, match="Input/output"):
        log.read(0, 1000)
    with pytest.raises(LogClosedError):
        log.read(0, 1000)


def flip_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_flipped_older_segment_is_found_on_open_even_after_a_clean_shutdown(
    open_log: OpenLog, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Defect 2 (engine): sealed segments are trusted on open only while known clean
    (stamped and unchanged); one changed after a clean close is scanned, the log is
    truncated at its first corrupt batch, and the offsets dropped are logged."""
    log = open_log(SMALL_SEGMENTS)
    append_values(log, 40)
    bases = log.segment_base_offsets
    assert len(bases) >= 4
    log.close()
    assert (log.directory / CLEAN_SEGMENTS_CHECKPOINT).exists()
    damaged = sorted(log.directory.glob("*.log"))[1]
    flip_middle(damaged)
    with caplog.at_level(logging.WARNING, logger="brook.storage"):
        reopened = open_log(SMALL_SEGMENTS)
    corrupt = next(b for b in bases if b > bases[1])  # the damage is inside segment 1
    assert bases[1] <= reopened.log_end_offset < corrupt
    assert reopened.segment_base_offsets[-1] == bases[1]
    assert f"truncated corrupt tail of {damaged.name}" in caplog.text
    assert f"dropped offsets {reopened.log_end_offset}..39" in caplog.text
    assert [b.header.base_offset for b in read_all(reopened)] == list(
        range(reopened.log_end_offset)
    )


def test_untouched_segments_are_not_rescanned(
    open_log: OpenLog, caplog: pytest.LogCaptureFixture
) -> None:
    """Known-clean segments cost no scan on the next open; never-verified ones (a log from
    before the stamps existed) are scanned once, then stamped."""
    log = open_log(SMALL_SEGMENTS)
    append_values(log, 40)
    log.close()
    with caplog.at_level(logging.INFO, logger="brook.storage"):
        open_log(SMALL_SEGMENTS, name="t-0").close()
    assert "not known clean" not in caplog.text
    (log.directory / CLEAN_SEGMENTS_CHECKPOINT).unlink()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="brook.storage"):
        open_log(SMALL_SEGMENTS, name="t-0").close()
    assert caplog.text.count("not known clean") == len(log.segment_base_offsets) - 1
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="brook.storage"):
        open_log(SMALL_SEGMENTS, name="t-0").close()
    assert "not known clean" not in caplog.text
