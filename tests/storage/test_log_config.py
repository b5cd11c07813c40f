"""LogConfig validation and parsing from string maps."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from brook.storage import InvalidConfigError, LogConfig, PartitionLog

# field -> (a value just below the allowed range, a value just above it or None)
OUT_OF_RANGE = {
    "segment_bytes": (33, 1 << 31),
    "segment_ms": (0, None),
    "max_batch_bytes": (0, (1 << 31) - 33),
    "index_interval_bytes": (-1, 1 << 31),
    "segment_index_bytes": (11, 1 << 31),
    "retention_ms": (-2, None),
    "retention_bytes": (-2, None),
    "flush_interval_batches": (-1, None),
    "flush_interval_ms": (-1, None),
    "file_delete_delay_ms": (-1, None),
}


def test_defaults_are_valid() -> None:
    """The documented defaults pass validation and match the public contract."""
    config = LogConfig()
    config.validate()
    assert config.segment_bytes == 1 << 30
    assert config.max_batch_bytes == 8 << 20
    assert config.flush_interval_ms == 1000
    assert config.retention_bytes == -1


def test_every_field_has_bounds() -> None:
    """Every field of LogConfig is covered by this test's table, so none is unchecked."""
    assert {field.name for field in dataclasses.fields(LogConfig)} == set(OUT_OF_RANGE)


@pytest.mark.parametrize("field", sorted(OUT_OF_RANGE))
def test_out_of_range_values_name_the_field(field: str) -> None:
    """A value just outside the range raises InvalidConfigError naming the field and range."""
    low, high = OUT_OF_RANGE[field]
    for value in (low, high):
        if value is None:
            continue
        config = dataclasses.replace(LogConfig(), **{field: value})
        with pytest.raises(InvalidConfigError) as raised:
            config.validate()
        assert raised.value.field == field
        assert field in str(raised.value) and "allowed range" in str(raised.value)


def test_non_integers_are_rejected() -> None:
    """bool and float values are programmer errors even though bool is an int subclass."""
    for value in (True, 1.5):
        with pytest.raises(InvalidConfigError, match="segment_ms"):
            dataclasses.replace(LogConfig(), segment_ms=value).validate()


def test_from_mapping_parses_strings() -> None:
    """String values by field name become ints; missing fields keep their defaults."""
    config = LogConfig.from_mapping({"retention_ms": "1000", "segment_bytes": " 4096 "})
    assert config.retention_ms == 1000
    assert config.segment_bytes == 4096
    assert config.max_batch_bytes == LogConfig().max_batch_bytes


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"retention_msec": "1"}, "retention_msec", "unknown config key"),
        ({"retention_ms": "1h"}, "retention_ms", "not an integer"),
        ({"segment_bytes": "10"}, "segment_bytes", "allowed range"),
    ],
)
def test_from_mapping_rejects_bad_input(values: dict[str, str], field: str, message: str) -> None:
    """Unknown keys, non-integers and out-of-range values raise with the offending key."""
    with pytest.raises(InvalidConfigError, match=message) as raised:
        LogConfig.from_mapping(values)
    assert raised.value.field == field


def test_open_validates(tmp_path: Path) -> None:
    """PartitionLog.open refuses an invalid config before creating anything on disk."""
    with pytest.raises(InvalidConfigError, match="segment_ms"):
        PartitionLog.open(tmp_path / "t-0", LogConfig(segment_ms=0))
    assert not (tmp_path / "t-0").exists()
