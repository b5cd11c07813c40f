"""Leader-epoch history semantics (Kafka's LeaderEpochFileCache) and its checkpoint file."""

from __future__ import annotations

from pathlib import Path

import pytest

from brook.storage import EpochEntry
from brook.storage.leader_epoch_cache import LeaderEpochFileCache


def cache_with(tmp_path: Path, *entries: tuple[int, int]) -> LeaderEpochFileCache:
    cache = LeaderEpochFileCache(tmp_path)
    for epoch, start in entries:
        cache.assign(epoch, start)
    return cache


def test_assign_appends_new_epochs_and_ignores_repeats(tmp_path: Path) -> None:
    """A higher epoch adds an entry; re-assigning the latest epoch at a later offset does
    nothing (the epoch already covers it)."""
    cache = cache_with(tmp_path, (1, 0), (3, 10))
    assert not cache.assign(3, 15)
    assert cache.entries() == [EpochEntry(1, 0), EpochEntry(3, 10)]
    assert cache.latest_epoch == 3


def test_assign_replaces_conflicting_entries(tmp_path: Path) -> None:
    """Kafka semantics: entries with an epoch or start offset >= the new one are removed
    before the new one is added, keeping both columns strictly increasing."""
    cache = cache_with(tmp_path, (1, 0), (3, 10), (5, 20))
    cache.assign(4, 15)
    assert cache.entries() == [EpochEntry(1, 0), EpochEntry(3, 10), EpochEntry(4, 15)]
    cache.assign(4, 12)
    assert cache.entries() == [EpochEntry(1, 0), EpochEntry(3, 10), EpochEntry(4, 12)]
    cache.assign(6, 5)
    assert cache.entries() == [EpochEntry(1, 0), EpochEntry(6, 5)]
    with pytest.raises(ValueError):
        cache.assign(-1, 0)


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        (0, (-1, -1)),  # below the earliest known epoch: nothing is known
        (-1, (-1, -1)),  # the undefined epoch
        (1, (1, 10)),  # ends where epoch 3 starts
        (2, (1, 10)),  # unknown epoch between known ones: the one before it
        (3, (3, 20)),
        (4, (3, 20)),
        (5, (5, 42)),  # latest: ends at the log end
        (9, (5, 42)),  # newer than any known: still the latest
    ],
)
def test_end_offset_for_epoch(tmp_path: Path, requested: int, expected: tuple[int, int]) -> None:
    """end_offset_for returns (largest epoch <= requested, start of the next epoch or the
    log end), and (-1, -1) below the earliest epoch."""
    cache = cache_with(tmp_path, (1, 0), (3, 10), (5, 20))
    assert cache.end_offset_for(requested, log_end_offset=42) == expected


def test_end_offset_for_empty_history(tmp_path: Path) -> None:
    """With no history every epoch is unknown."""
    assert LeaderEpochFileCache(tmp_path).end_offset_for(3, 100) == (-1, -1)


def test_truncate_from_end(tmp_path: Path) -> None:
    """Truncating the log to X removes epochs starting at or after X."""
    cache = cache_with(tmp_path, (1, 0), (3, 10), (5, 20))
    cache.truncate_from_end(20)
    assert cache.entries() == [EpochEntry(1, 0), EpochEntry(3, 10)]
    cache.truncate_from_end(11)
    assert cache.entries() == [EpochEntry(1, 0), EpochEntry(3, 10)]


def test_truncate_from_start_keeps_the_covering_epoch(tmp_path: Path) -> None:
    """Moving the log start to X forgets epochs that ended before X and moves the start of
    the epoch in force at X up to X."""
    cache = cache_with(tmp_path, (1, 0), (3, 10), (5, 20))
    cache.truncate_from_start(15)
    assert cache.entries() == [EpochEntry(3, 15), EpochEntry(5, 20)]
    cache.truncate_from_start(20)
    assert cache.entries() == [EpochEntry(5, 20)]
    cache.truncate_from_start(5)
    assert cache.entries() == [EpochEntry(5, 20)]


def test_checkpoint_file_format_and_reload(tmp_path: Path) -> None:
    """The checkpoint is versioned text: version, count, then '<epoch> <start>' lines; it
    is replaced atomically (no .tmp left) and reloads to the same history."""
    cache_with(tmp_path, (1, 0), (3, 10))
    path = tmp_path / "leader-epoch-checkpoint"
    assert path.read_text() == "0\n2\n1 0\n3 10\n"
    assert not list(tmp_path.glob("*.tmp"))
    loaded, trustworthy = LeaderEpochFileCache.load(tmp_path)
    assert trustworthy
    assert loaded.entries() == [EpochEntry(1, 0), EpochEntry(3, 10)]


@pytest.mark.parametrize("text", ["", "0\n3\n1 0\n", "1\n0\n", "0\n2\n3 0\n1 10\n", "garbage"])
def test_unreadable_checkpoint_is_reported(tmp_path: Path, text: str) -> None:
    """A truncated, unversioned, unordered or garbled file is reported as untrustworthy
    (the log loader then rebuilds the history from batch headers)."""
    (tmp_path / "leader-epoch-checkpoint").write_text(text)
    loaded, trustworthy = LeaderEpochFileCache.load(tmp_path)
    assert not trustworthy
    assert loaded.entries() == []
