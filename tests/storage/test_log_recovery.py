"""Recovery on open: corrupt and torn tails are found by checksum and cut at exactly the
right batch, with a WARNING naming the dropped offsets; broken index and checkpoint files
are rebuilt; leftovers are removed.

A "crash image" is a copy of a log directory taken while the log is open: everything
written is in it (as after a process crash), there is no clean-shutdown marker, and the
recovery point is wherever the last flush left it."""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path

import pytest

from brook.storage import EpochEntry, LogConfig, PartitionLog
from tests.storage.helpers import DiskBatch, OpenLog, payload_for, read_all, scan_log_files

HEADER_SIZE = 33
CRC_POSITION = 29
NO_FLUSH = LogConfig(flush_interval_ms=0, index_interval_bytes=256)


def fill(log: PartitionLog, count: int, seed: int, *, epochs: int = 1) -> None:
    rng = random.Random(seed)
    for number in range(count):
        log.append(
            payload_for(number, rng.randint(1, 400)),
            record_count=rng.randint(1, 4),
            max_timestamp_ms=1000 + number,
            leader_epoch=number * epochs // count,
        )


def crash_image(log: PartitionLog, destination: Path) -> Path:
    shutil.copytree(log.directory, destination)
    return destination


def flip_byte(path: Path, position: int, mask: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= mask
    path.write_bytes(bytes(data))


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "brook.storage"
    ]


@pytest.mark.parametrize("seed", range(10))
def test_flipped_byte_truncates_from_the_damaged_batch(
    open_log: OpenLog, tmp_path: Path, caplog: pytest.LogCaptureFixture, seed: int
) -> None:
    """Flip one byte at a seeded random position of an unflushed segment: after reopening,
    exactly the batches before the damaged one survive (payloads intact), the file ends
    where the damaged batch began, and one WARNING names the file, position and offsets."""
    log = open_log(NO_FLUSH)
    fill(log, 50, seed)
    original = scan_log_files(log.directory)
    image = crash_image(log, tmp_path / "image")
    segment = image / "00000000000000000000.log"
    rng = random.Random(1000 + seed)
    position = rng.randrange(segment.stat().st_size)
    flip_byte(segment, position, rng.randint(1, 255))

    damaged = next(
        i
        for i, b in enumerate(original)
        if b.position <= position < b.position + HEADER_SIZE + len(b.payload)
    )
    caplog.set_level(logging.INFO, logger="brook.storage")
    recovered = PartitionLog.open(image, NO_FLUSH, name="orders-3")
    try:
        survivors = read_all(recovered)
        assert [(b.header.base_offset, b.payload) for b in survivors] == [
            (b.base_offset, b.payload) for b in original[:damaged]
        ]
        first_dropped = original[damaged].base_offset
        assert recovered.log_end_offset == first_dropped
        assert segment.stat().st_size == original[damaged].position
        scan_log_files(image)
        (message,) = warnings(caplog)
        prefix = (
            f"orders-3: truncated corrupt tail of 00000000000000000000.log at position "
            f"{original[damaged].position}: dropped offsets "
        )
        assert message.startswith(prefix), message
        in_payload_or_crc = position - original[damaged].position >= CRC_POSITION
        exact = f"{first_dropped}..{original[-1].last_offset} "
        if in_payload_or_crc:
            assert message.startswith(prefix + exact), message
        else:
            assert message.startswith(
                (prefix + exact, prefix + f"from offset {first_dropped} on")
            ), message
        # The log goes on from the cut.
        info = recovered.append(b"after", record_count=1, max_timestamp_ms=1, leader_epoch=0)
        assert info.base_offset == first_dropped
    finally:
        recovered.close()


@pytest.mark.parametrize("field_offset", [0, 7, 8, 11, 12, 13, 16, 17, 24, 25, 28, 29, 32])
def test_flipped_header_field_is_detected(
    open_log: OpenLog, tmp_path: Path, caplog: pytest.LogCaptureFixture, field_offset: int
) -> None:
    """Every header field (first and last byte of each) is covered: flipping it in batch
    20 of 30 keeps exactly batches 0..19."""
    log = open_log(NO_FLUSH)
    fill(log, 30, seed=7)
    original = scan_log_files(log.directory)
    image = crash_image(log, tmp_path / "image")
    flip_byte(image / "00000000000000000000.log", original[20].position + field_offset, 0x40)
    recovered = PartitionLog.open(image, NO_FLUSH)
    try:
        assert [b.header.base_offset for b in read_all(recovered)] == [
            b.base_offset for b in original[:20]
        ]
        assert len(warnings(caplog)) == 1
    finally:
        recovered.close()


def test_corruption_in_a_middle_segment_drops_later_segments(
    open_log: OpenLog, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Damage in segment 2 of 4 cuts that segment and deletes segments 3 and 4; the
    warning reports the last dropped offset, known from the last segment's headers."""
    config = LogConfig(flush_interval_ms=0, segment_bytes=3000)
    log = open_log(config)
    fill(log, 60, seed=3)
    original = scan_log_files(log.directory)
    files = sorted(path.name for path in log.directory.glob("*.log"))
    assert len(files) >= 4
    image = crash_image(log, tmp_path / "image")
    victim = next(b for b in original if b.file == files[1] and b.position > 0)
    flip_byte(image / victim.file, victim.position + HEADER_SIZE, 0x01)
    recovered = PartitionLog.open(image, config)
    try:
        assert recovered.log_end_offset == victim.base_offset
        assert sorted(path.name for path in image.glob("*.log")) == files[:2]
        survivors = [b for b in original if b.base_offset < victim.base_offset]
        assert [b.payload for b in read_all(recovered)] == [b.payload for b in survivors]
        (message,) = warnings(caplog)
        assert f"dropped offsets {victim.base_offset}..{original[-1].last_offset} (" in message
        dropped = sum(HEADER_SIZE + len(b.payload) for b in original if b not in survivors)
        assert f"({dropped} bytes)" in message
    finally:
        recovered.close()


def torn_image(log: PartitionLog, tmp_path: Path, cut: int) -> tuple[Path, list[DiskBatch]]:
    original = scan_log_files(log.directory)
    image = crash_image(log, tmp_path / f"image-{cut}")
    segment = image / "00000000000000000000.log"
    with segment.open("r+b") as file:
        file.truncate(cut)
    return image, original


@pytest.mark.parametrize(
    ("where", "delta", "message"),
    [
        ("inside the last header", 10, "dropped offsets from offset {first} on (10 bytes)"),
        ("inside the last payload", HEADER_SIZE + 3, "dropped offsets {first}..{last} (36 bytes)"),
        ("one byte short", -1, "dropped offsets {first}..{last} ("),
    ],
)
def test_torn_write_keeps_every_whole_batch(
    open_log: OpenLog,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    where: str,
    delta: int,
    message: str,
) -> None:
    """A write torn mid-batch (file cut inside the header, inside the payload, or one byte
    short of the end) loses exactly the torn batch and reports which offsets it held."""
    log = open_log(NO_FLUSH)
    fill(log, 20, seed=11)
    last = scan_log_files(log.directory)[-1]
    cut = (
        last.position + delta if delta > 0 else last.position + HEADER_SIZE + len(last.payload) - 1
    )
    image, original = torn_image(log, tmp_path, cut)
    recovered = PartitionLog.open(image, NO_FLUSH)
    try:
        assert [b.payload for b in read_all(recovered)] == [b.payload for b in original[:-1]]
        assert recovered.log_end_offset == last.base_offset
        (warning,) = warnings(caplog)
        assert message.format(first=last.base_offset, last=last.last_offset) in warning, where
    finally:
        recovered.close()


def test_torn_write_at_a_batch_boundary_loses_nothing(
    open_log: OpenLog, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file that ends exactly between batches is intact: no warning, nothing dropped."""
    log = open_log(NO_FLUSH)
    fill(log, 20, seed=12)
    image, original = torn_image(log, tmp_path, scan_log_files(log.directory)[-1].position)
    recovered = PartitionLog.open(image, NO_FLUSH)
    try:
        assert len(read_all(recovered)) == len(original) - 1
        assert warnings(caplog) == []
    finally:
        recovered.close()


def test_zero_filled_tail_is_cut(
    open_log: OpenLog, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A tail of zero bytes (a file extended but not written before a power cut) is not a
    batch: it is cut, and every real batch survives."""
    log = open_log(NO_FLUSH)
    fill(log, 10, seed=5)
    image = crash_image(log, tmp_path / "image")
    with (image / "00000000000000000000.log").open("ab") as file:
        file.write(bytes(4096))
    recovered = PartitionLog.open(image, NO_FLUSH)
    try:
        assert len(read_all(recovered)) == 10
        (warning,) = warnings(caplog)
        assert f"from offset {recovered.log_end_offset} on (4096 bytes)" in warning
    finally:
        recovered.close()


def test_recovery_cuts_the_epoch_history(open_log: OpenLog, tmp_path: Path) -> None:
    """Epochs that started in the dropped tail are removed from the history."""
    log = open_log(NO_FLUSH)
    fill(log, 40, seed=9, epochs=4)
    original = scan_log_files(log.directory)
    entries = log.epoch_entries()
    assert [entry.epoch for entry in entries] == [0, 1, 2, 3]
    image = crash_image(log, tmp_path / "image")
    victim = next(b for b in original if b.leader_epoch == 2)
    flip_byte(image / "00000000000000000000.log", victim.position + HEADER_SIZE, 0x01)
    recovered = PartitionLog.open(image, NO_FLUSH)
    try:
        assert recovered.epoch_entries() == entries[:2]
        assert recovered.end_offset_for_epoch(1) == (1, victim.base_offset)
    finally:
        recovered.close()


@pytest.mark.parametrize("damage", ["delete", "garbage", "torn"])
def test_broken_index_files_are_rebuilt(
    open_log: OpenLog, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    """After a clean shutdown, a missing, garbled or torn .index or .timeindex is rebuilt
    from its segment (logged at INFO) and lookups by offset and time work again."""
    config = LogConfig(flush_interval_ms=0, index_interval_bytes=100, segment_bytes=5000)
    log = open_log(config)
    fill(log, 80, seed=4)
    log.close()
    originals = {p.name: p.read_bytes() for p in log.directory.glob("*index")}
    for path in log.directory.glob("*index"):
        if damage == "delete":
            path.unlink()
        elif damage == "garbage":
            path.write_bytes(bytes(range(24, 0, -1)) * 2)
        else:
            path.write_bytes(path.read_bytes()[:-3])
    caplog.set_level(logging.INFO, logger="brook.storage")
    reopened = open_log(config)
    assert any("rebuilding index files" in r.getMessage() for r in caplog.records)
    assert [b.header.base_offset for b in read_all(reopened)] == [
        b.base_offset for b in scan_log_files(reopened.directory)
    ]
    assert reopened.offset_for_timestamp(1050) == scan_log_files(reopened.directory)[50].base_offset
    reopened.close()
    assert {p.name: p.read_bytes() for p in reopened.directory.glob("*index")} == originals


def test_unreadable_epoch_checkpoint_is_rebuilt_from_batches(
    open_log: OpenLog, caplog: pytest.LogCaptureFixture
) -> None:
    """A garbled leader-epoch-checkpoint is rebuilt from the epochs in the batch headers."""
    log = open_log(NO_FLUSH)
    fill(log, 30, seed=2, epochs=3)
    entries = log.epoch_entries()
    log.close()
    (log.directory / "leader-epoch-checkpoint").write_text("0\n7\n1 2\n")
    caplog.set_level(logging.INFO, logger="brook.storage")
    reopened = open_log(NO_FLUSH)
    assert reopened.epoch_entries() == entries
    assert any("rebuilding the epoch history" in r.getMessage() for r in caplog.records)


def test_missing_recovery_point_validates_everything(open_log: OpenLog, tmp_path: Path) -> None:
    """Without a recovery-point checkpoint every segment is validated from the start; a
    sound log loses nothing."""
    config = LogConfig(flush_interval_ms=0, segment_bytes=2000)
    log = open_log(config)
    fill(log, 40, seed=6)
    log.flush()
    image = crash_image(log, tmp_path / "image")
    (image / "recovery-point-checkpoint").unlink()
    recovered = PartitionLog.open(image, config)
    try:
        assert [b.payload for b in read_all(recovered)] == [b.payload for b in read_all(log)]
        assert (image / "recovery-point-checkpoint").read_text() == (
            f"0\n1\n{recovered.log_end_offset}\n"
        )
    finally:
        recovered.close()


def test_leftovers_are_removed(open_log: OpenLog) -> None:
    """Files of interrupted work (*.deleted, *.tmp, index files without a .log) go on open."""
    log = open_log(NO_FLUSH)
    fill(log, 3, seed=1)
    log.close()
    for name in (
        "00000000000000000007.log.deleted",
        "recovery-point-checkpoint.tmp",
        "00000000000000000099.index",
        "00000000000000000099.timeindex",
    ):
        (log.directory / name).write_bytes(b"junk")
    reopened = open_log(NO_FLUSH)
    names = {path.name for path in reopened.directory.iterdir()}
    assert not {
        n
        for n in names
        if n.endswith((".deleted", ".tmp")) or n.startswith("000000000000000000099")
    }
    assert len(read_all(reopened)) == 3


def test_log_start_beyond_the_recovered_end_starts_empty(open_log: OpenLog, tmp_path: Path) -> None:
    """If recovery cuts the log below its persisted start offset, the log restarts empty
    at that start offset, so no offset is ever handed out twice."""
    log = open_log(NO_FLUSH)
    fill(log, 20, seed=8)
    original = scan_log_files(log.directory)
    log.delete_records_before(original[15].base_offset)
    image = crash_image(log, tmp_path / "image")
    flip_byte(image / "00000000000000000000.log", original[10].position + HEADER_SIZE, 1)
    recovered = PartitionLog.open(image, NO_FLUSH)
    try:
        start = original[15].base_offset
        assert (recovered.log_start_offset, recovered.log_end_offset) == (start, start)
        assert (
            recovered.append(b"x", record_count=1, max_timestamp_ms=1, leader_epoch=0).base_offset
            == start
        )
    finally:
        recovered.close()


def test_epoch_history_reloads(open_log: OpenLog) -> None:
    """The epoch history survives a restart; an epoch with no batch on disk (assigned at
    the log end, nothing appended yet) is forgotten, as in Kafka."""
    log = open_log(NO_FLUSH)
    fill(log, 5, seed=1)
    end = log.log_end_offset
    log.assign_epoch_start(3, end)
    log.append(b"x", record_count=1, max_timestamp_ms=1, leader_epoch=3)
    log.assign_epoch_start(4, end + 1)
    log.close()
    assert open_log(NO_FLUSH).epoch_entries() == [EpochEntry(0, 0), EpochEntry(3, end)]
