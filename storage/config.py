"""Per-partition log configuration.

No file format: a `LogConfig` lives in memory; the topic's settings reach it as strings
through `LogConfig.from_mapping` (e.g. from etcd), and `validate` rejects anything out of
range before a log is opened with it.

Thread-safety: immutable (frozen dataclass); share it freely.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from .errors import InvalidConfigError
from .record_batch import HEADER_SIZE, INT32_MAX, MAX_PAYLOAD_BYTES

INT64_MAX: Final = (1 << 63) - 1
# An index file must hold at least one time-index entry (the larger of the two entry sizes).
_MIN_INDEX_BYTES: Final = 12

# field -> (lowest allowed, highest allowed, why the bounds are what they are)
_BOUNDS: Final[dict[str, tuple[int, int, str]]] = {
    "segment_bytes": (
        HEADER_SIZE + 1,
        INT32_MAX,
        "a segment must hold one batch header and byte; positions are int32",
    ),
    "segment_ms": (1, INT64_MAX, "milliseconds"),
    "max_batch_bytes": (1, MAX_PAYLOAD_BYTES, "a batch length is an int32 including the header"),
    "index_interval_bytes": (0, INT32_MAX, "0 indexes every batch"),
    "segment_index_bytes": (_MIN_INDEX_BYTES, INT32_MAX, "must hold one 12-byte time entry"),
    "retention_ms": (-1, INT64_MAX, "-1 keeps data forever"),
    "retention_bytes": (-1, INT64_MAX, "-1 means no size bound"),
    "flush_interval_batches": (0, INT64_MAX, "0 turns count-based flushing off"),
    "flush_interval_ms": (0, INT64_MAX, "0 turns time-based flushing off"),
    "file_delete_delay_ms": (0, INT64_MAX, "milliseconds"),
}


@dataclass(frozen=True)
class LogConfig:
    """Limits and policies of one partition log. Every size is in bytes, every time in ms."""

    # Roll the active segment when appending would make it larger than this.
    segment_bytes: int = 1 << 30
    # Roll when the active segment's first batch was appended longer ago than this.
    segment_ms: int = 7 * 24 * 3600 * 1000
    # Largest payload accepted by append.
    max_batch_bytes: int = 8 << 20
    # One sparse offset-index and time-index entry per this many appended bytes.
    index_interval_bytes: int = 4096
    # Largest size of one index file; the segment rolls when either index is full.
    segment_index_bytes: int = 10 << 20
    # Delete segments whose newest batch is older than this; -1 keeps them forever.
    retention_ms: int = 7 * 24 * 3600 * 1000
    # Delete the oldest segments while the log is larger than this; -1 is unbounded.
    retention_bytes: int = -1
    # fsync after this many appended batches; 1 = every append; 0 = off.
    flush_interval_batches: int = 0
    # fsync when this long has passed since the last fsync; 0 = off.
    flush_interval_ms: int = 1000
    # `.deleted` files are removed this long after the segment was deleted.
    file_delete_delay_ms: int = 60000

    def validate(self) -> None:
        """Raises InvalidConfigError naming the first field outside its allowed range."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            low, high, why = _BOUNDS[field.name]
            # bool is an int subclass; True as a byte count is always a mistake.
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidConfigError(
                    field.name, f"must be an integer, got {type(value).__name__} {value!r}"
                )
            if not low <= value <= high:
                raise InvalidConfigError(
                    field.name, f"{value} is outside the allowed range {low}..{high} ({why})"
                )

    @classmethod
    def from_mapping(cls, values: Mapping[str, str]) -> LogConfig:
        """Builds a validated config from string values keyed by field name.

        Fields not in `values` keep their defaults; an unknown key raises, because a typo in
        a topic config would otherwise be silently ignored.
        """
        known = {field.name for field in dataclasses.fields(cls)}
        parsed: dict[str, int] = {}
        for key, text in values.items():
            if key not in known:
                raise InvalidConfigError(
                    key, f"unknown config key; known keys are {', '.join(sorted(known))}"
                )
            try:
                parsed[key] = int(str(text).strip())
            except ValueError:
                raise InvalidConfigError(key, f"{text!r} is not an integer") from None
        config = cls(**parsed)
        config.validate()
        return config
