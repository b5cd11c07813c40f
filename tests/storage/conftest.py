"""Fixtures for the storage tests: a manual clock and a log opener that cleans up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from brook.storage import LogConfig, ManualClock, PartitionLog
from tests.storage.helpers import OpenLog


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_700_000_000_000)


@pytest.fixture
def open_log(tmp_path: Path, clock: ManualClock) -> Iterator[OpenLog]:
    """Opens logs under tmp_path with the manual clock; closes whatever is still open."""
    opened: list[PartitionLog] = []

    def opener(
        config: LogConfig | None = None, *, directory: Path | None = None, name: str = "t-0"
    ) -> PartitionLog:
        log = PartitionLog.open(
            directory or tmp_path / name, config or LogConfig(), clock=clock, name=name
        )
        opened.append(log)
        return log

    yield opener
    for log in opened:
        if not log.closed:
            log.close()
