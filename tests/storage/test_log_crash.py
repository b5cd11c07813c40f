"""Crash safety with a real process: a child appends with flush_interval_batches=1 and
prints each acknowledged (fsynced) batch; the test SIGKILLs it mid-stream and checks that
recovery keeps every acknowledged batch intact and nothing corrupt."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from brook.storage import HEADER_SIZE, LogConfig, PartitionLog
from tests.storage.helpers import read_all, scan_log_files

CONFIG = LogConfig(flush_interval_batches=1, flush_interval_ms=0, segment_bytes=64 * 1024)
ACKS_BEFORE_KILL = 150
CHILD_TIMEOUT_S = 60

# Payload and record count of the child's n-th batch are a pure function of n, so the test
# can check every batch found on disk, acknowledged or not.
CHILD = textwrap.dedent(
    """
    import hashlib, sys
    from pathlib import Path
    from brook.storage import LogConfig, PartitionLog

    def payload(number):
        size = 1 + (number * 7919) % 3000
        block = hashlib.sha256(number.to_bytes(8, "big")).digest()
        return (block * (size // 32 + 1))[:size]

    log = PartitionLog.open(Path(sys.argv[1]), LogConfig(
        flush_interval_batches=1, flush_interval_ms=0, segment_bytes=64 * 1024))
    number = int(sys.argv[2])
    while True:
        info = log.append(payload(number), record_count=1 + number % 3,
                          max_timestamp_ms=number, leader_epoch=number // 100)
        print(number, info.base_offset, info.last_offset, flush=True)
        number += 1
    """
)


def expected_payload(number: int) -> bytes:
    size = 1 + (number * 7919) % 3000
    block = hashlib.sha256(number.to_bytes(8, "big")).digest()
    return (block * (size // 32 + 1))[:size]


def run_and_kill(directory: Path, first_number: int) -> list[tuple[int, int, int]]:
    """Starts the child, reads ACKS_BEFORE_KILL acknowledgements, SIGKILLs it; returns
    the (number, base_offset, last_offset) acknowledgements read."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(directory), str(first_number)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acks: list[tuple[int, int, int]] = []
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    try:
        assert child.stdout is not None
        while len(acks) < ACKS_BEFORE_KILL:
            line = child.stdout.readline()
            if not line:
                pytest.fail(f"child exited early: {child.stderr.read() if child.stderr else ''}")
            number, base, last = (int(field) for field in line.split())
            acks.append((number, base, last))
            assert time.monotonic() < deadline, "child too slow"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    return acks


def check_log(directory: Path, acks: list[tuple[int, int, int]]) -> list[int]:
    """Reopens the log and checks it: every acknowledged batch is present and intact, every
    batch is valid, offsets are contiguous. Returns the child numbers of all batches."""
    log = PartitionLog.open(directory, CONFIG)
    try:
        disk = scan_log_files(directory)  # asserts CRCs, whole batches, contiguity
        batches = read_all(log)
        assert [b.header.base_offset for b in batches] == [b.base_offset for b in disk]
        numbers = [batch.header.max_timestamp_ms for batch in batches]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        for batch in batches:
            number = batch.header.max_timestamp_ms
            assert batch.payload == expected_payload(number)
            assert batch.header.record_count == 1 + number % 3
        by_base = {batch.header.base_offset: batch for batch in batches}
        for number, base, last in acks:
            assert base in by_base, f"acknowledged batch {number} at offset {base} lost"
            assert by_base[base].header.last_offset == last
            assert by_base[base].header.max_timestamp_ms == number
        assert log.log_end_offset >= acks[-1][2] + 1
        return numbers
    finally:
        log.close()


def test_sigkill_loses_no_acknowledged_batch(tmp_path: Path) -> None:
    """Two rounds of append-and-SIGKILL on the same log: after each, recovery keeps every
    acknowledged batch byte for byte, and the log holds only valid, contiguous batches
    (including any appended after the last acknowledgement the test read)."""
    directory = tmp_path / "crash-0"
    acks = run_and_kill(directory, first_number=0)
    numbers = check_log(directory, acks)
    more = run_and_kill(directory, first_number=numbers[-1] + 1)
    numbers = check_log(directory, acks + more)
    assert len(numbers) >= 2 * ACKS_BEFORE_KILL
    assert len(list(directory.glob("*.log"))) > 1, "the run should have rolled segments"


def test_torn_write_after_sigkill(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Take the killed child's log, tear its last batch (cut the file 5 bytes into the
    payload): exactly the batches before it survive and a WARNING names its offsets."""
    directory = tmp_path / "crash-0"
    acks = run_and_kill(directory, first_number=0)
    check_log(directory, acks)
    torn = tmp_path / "torn-0"
    shutil.copytree(directory, torn)
    (torn / ".clean-shutdown").unlink()
    (torn / "recovery-point-checkpoint").unlink()  # as if the last flush never happened
    disk = scan_log_files(torn)
    last = disk[-1]
    segment = torn / last.file
    os.truncate(segment, last.position + HEADER_SIZE + 5)
    caplog.set_level(logging.WARNING, logger="brook.storage")
    log = PartitionLog.open(torn, CONFIG, name="torn-0")
    try:
        assert [(b.header.base_offset, b.payload) for b in read_all(log)] == [
            (b.base_offset, b.payload) for b in disk[:-1]
        ]
        assert log.log_end_offset == last.base_offset
        (message,) = [
            r.getMessage()
            for r in caplog.records
            if r.name == "brook.storage" and r.levelno >= logging.WARNING
        ]
        assert message.startswith(
            f"torn-0: truncated corrupt tail of {last.file} at position {last.position}: "
            f"dropped offsets {last.base_offset}..{last.last_offset} ({HEADER_SIZE + 5} bytes)"
        )
    finally:
        log.close()
