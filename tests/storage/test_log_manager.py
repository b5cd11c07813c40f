"""LogManager: partition directories named <topic>-<partition>, idempotent opens,
discovery from disk, deletion, and the *_all maintenance calls."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from brook.storage import LogConfig, LogManager, ManualClock

CONFIG = LogConfig(
    flush_interval_ms=0, segment_bytes=200, retention_ms=1000, file_delete_delay_ms=0
)


def test_open_log_is_idempotent_and_named(tmp_path: Path, clock: ManualClock) -> None:
    """open_log creates <root>/<topic>-<partition> once and returns the same log after."""
    manager = LogManager(tmp_path, clock=clock)
    log = manager.open_log("orders", 3, CONFIG)
    assert manager.open_log("orders", 3, CONFIG) is log
    assert manager.get("orders", 3) is log
    assert manager.get("orders", 4) is None
    assert log.directory == tmp_path / "orders-3"
    assert log.name == "orders-3"
    manager.close_all()


def test_existing_partitions_parse_dashed_topics(tmp_path: Path, clock: ManualClock) -> None:
    """Directory names are split at the last '-', so topics may contain dashes; other
    entries (files, unparsable names, directories being deleted) are ignored."""
    for name in (
        "my-topic-0",
        "my-topic-12",
        "orders-1",
        "orders-x",
        "orders-2.deleting",
        "lost+found",
    ):
        (tmp_path / name).mkdir()
    (tmp_path / "stray-3").write_text("not a directory")
    manager = LogManager(tmp_path, clock=clock)
    assert manager.existing_partitions() == [("my-topic", 0), ("my-topic", 12), ("orders", 1)]
    assert not (tmp_path / "orders-2.deleting").exists(), "half-deleted partitions are removed"


def test_invalid_names_are_rejected(tmp_path: Path) -> None:
    """A topic that would escape the data directory or a negative partition is refused."""
    manager = LogManager(tmp_path)
    for topic, partition in (("", 0), ("a/b", 0), ("..", 0), ("t", -1)):
        with pytest.raises(ValueError):
            manager.open_log(topic, partition, CONFIG)


def test_delete_log_removes_the_directory(tmp_path: Path, clock: ManualClock) -> None:
    """delete_log closes an open log and removes its directory; it also removes a
    partition directory that is on disk but not open; deleting twice is harmless."""
    manager = LogManager(tmp_path, clock=clock)
    log = manager.open_log("orders", 0, CONFIG)
    log.append(b"x", record_count=1, max_timestamp_ms=1, leader_epoch=0)
    manager.delete_log("orders", 0)
    assert log.closed and not (tmp_path / "orders-0").exists()
    (tmp_path / "orders-1").mkdir()
    manager.delete_log("orders", 1)
    manager.delete_log("orders", 1)
    assert list(tmp_path.iterdir()) == []


def test_maintenance_across_logs(tmp_path: Path, clock: ManualClock) -> None:
    """flush_all, apply_retention_all and close_all act on every open log; a reopened
    manager finds the data."""
    manager = LogManager(tmp_path, clock=clock)
    logs = [manager.open_log("t", partition, CONFIG) for partition in range(3)]
    for log in logs:
        for _ in range(5):
            log.append(b"x" * 80, record_count=1, max_timestamp_ms=clock.now_ms(), leader_epoch=0)
    assert not any(log.flush_due() for log in logs), "time-based flushing is off"
    manager.flush_all()
    assert all(log.recovery_point == 5 for log in logs)
    clock.advance(5000)
    deleted = manager.apply_retention_all()
    assert deleted == {("t", p): [0, 1, 2, 3] for p in range(3)}
    assert not list(tmp_path.glob("*/*.deleted")), "delay 0: files removed at once"
    manager.close_all()
    assert all(log.closed for log in logs)
    again = LogManager(tmp_path, clock=clock)
    assert again.existing_partitions() == [("t", 0), ("t", 1), ("t", 2)]
    assert again.open_log("t", 1, CONFIG).log_start_offset == 4
    again.close_all()


def test_one_failing_log_does_not_stop_the_others(
    tmp_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """close_all logs an ERROR for a log that fails and still closes the rest."""
    manager = LogManager(tmp_path, clock=clock)
    bad = manager.open_log("t", 0, CONFIG)
    good = manager.open_log("t", 1, CONFIG)

    def broken_close() -> None:
        raise OSError("disk gone")

    bad.close = broken_close  # type: ignore[method-assign]
    caplog.set_level(logging.ERROR, logger="brook.storage")
    manager.close_all()
    assert good.closed
    assert any("disk gone" in r.getMessage() for r in caplog.records)
