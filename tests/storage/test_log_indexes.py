"""The sparse offset index and time index: lookups, truncation, persistence, sanity checks."""

from __future__ import annotations

import struct
from pathlib import Path

from brook.storage.offset_index import OffsetIndex
from brook.storage.time_index import TimeIndex


def make_offset_index(
    tmp_path: Path, entries: list[tuple[int, int]], base: int = 100
) -> OffsetIndex:
    index = OffsetIndex(tmp_path / "x.index", base, max_index_bytes=1024)
    index.create_empty()
    for offset, position in entries:
        index.append(offset, position)
    return index


def test_offset_lookup_returns_the_entry_at_or_before(tmp_path: Path) -> None:
    """lookup(o) gives the last entry whose offset <= o, or the segment start before the
    first entry, so a scan from there reaches the batch holding o."""
    index = make_offset_index(tmp_path, [(110, 500), (120, 1000), (135, 1800)])
    assert index.lookup(100) == (100, 0)
    assert index.lookup(109) == (100, 0)
    assert index.lookup(110) == (110, 500)
    assert index.lookup(119) == (110, 500)
    assert index.lookup(135) == (135, 1800)
    assert index.lookup(10_000) == (135, 1800)


def test_offset_index_file_format_and_reload(tmp_path: Path) -> None:
    """Entries are written lazily as (relative offset int32, position int32) big-endian and
    load back identically."""
    index = make_offset_index(tmp_path, [(110, 500), (120, 1000)])
    assert index.path.read_bytes() == b"", "entries are only written on flush"
    index.flush()
    assert index.path.read_bytes() == struct.pack(">iiii", 10, 500, 20, 1000)
    reloaded = OffsetIndex(index.path, 100, max_index_bytes=1024)
    assert reloaded.load(segment_bytes=2000) is None
    assert reloaded.lookup(125) == (120, 1000)
    assert len(reloaded) == 2


def test_offset_index_truncate_drops_entries_at_or_after(tmp_path: Path) -> None:
    """truncate_to(o) removes entries for batches starting at or after o, in the file too."""
    index = make_offset_index(tmp_path, [(110, 500), (120, 1000), (135, 1800)])
    index.flush()
    index.truncate_to(120)
    assert index.last_entry() == (110, 500)
    assert index.path.stat().st_size == 8
    index.append(115, 700)
    index.flush()
    assert index.path.read_bytes() == struct.pack(">iiii", 10, 500, 15, 700)


def test_offset_index_sanity_check_rejects_bad_files(tmp_path: Path) -> None:
    """A torn file, decreasing entries, or a position past the segment end are reported,
    which makes the loader rebuild the index from the segment."""
    path = tmp_path / "x.index"
    cases = {
        "missing": None,
        "torn": struct.pack(">ii", 1, 10) + b"\x00\x00",
        "decreasing": struct.pack(">iiii", 5, 100, 4, 200),
        "beyond end": struct.pack(">ii", 5, 5000),
    }
    for label, data in cases.items():
        if data is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(data)
        index = OffsetIndex(path, 0, max_index_bytes=1024)
        assert index.load(segment_bytes=1000) is not None, label
        assert len(index) == 0


def test_offset_index_full(tmp_path: Path) -> None:
    """An index of max_index_bytes holds max_index_bytes // 8 entries, then is full."""
    index = OffsetIndex(tmp_path / "x.index", 0, max_index_bytes=20)
    assert index.max_entries == 2
    index.append(1, 10)
    assert not index.is_full
    index.append(2, 20)
    assert index.is_full


def test_time_index_only_grows(tmp_path: Path) -> None:
    """maybe_append adds an entry only for a timestamp larger than the last one."""
    index = TimeIndex(tmp_path / "x.timeindex", 100, max_index_bytes=1024)
    assert index.maybe_append(1000, 100)
    assert not index.maybe_append(1000, 105)
    assert not index.maybe_append(900, 106)
    assert index.maybe_append(1500, 110)
    assert index.last_entry() == (1500, 110)


def test_time_index_lookup(tmp_path: Path) -> None:
    """lookup(t) gives the offset of the last entry with timestamp <= t (where a search for
    the first batch with timestamp >= t may start), else the segment base."""
    index = TimeIndex(tmp_path / "x.timeindex", 100, max_index_bytes=1024)
    index.maybe_append(1000, 105)
    index.maybe_append(2000, 120)
    assert index.lookup(999) == 100
    assert index.lookup(1000) == 105
    assert index.lookup(1999) == 105
    assert index.lookup(2000) == 120
    assert index.lookup(99999) == 120


def test_time_index_format_truncate_and_sanity(tmp_path: Path) -> None:
    """Entries are (timestamp int64, relative offset int32); truncation drops entries at
    or after an offset; a file with non-increasing timestamps fails the sanity check."""
    index = TimeIndex(tmp_path / "x.timeindex", 100, max_index_bytes=1024)
    index.create_empty()
    index.maybe_append(1000, 105)
    index.maybe_append(2000, 120)
    index.flush()
    assert index.path.read_bytes() == struct.pack(">qiqi", 1000, 5, 2000, 20)
    index.truncate_to(120)
    assert index.last_entry() == (1000, 105)
    assert index.path.stat().st_size == 12
    index.path.write_bytes(struct.pack(">qiqi", 2000, 5, 1000, 20))
    assert TimeIndex(index.path, 100, max_index_bytes=1024).load() is not None
    assert TimeIndex(index.path, 100, max_index_bytes=12).max_entries == 1
