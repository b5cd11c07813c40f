"""Topic configs: the one list of keys, their defaults, units and validation.

A topic stores only its overrides (`TopicRecord.configs`, string values); the effective
value of a key is the override or the default. Kafka-style dotted names are accepted on
input and normalized (`retention.ms` -> `retention_ms`). Log-engine settings are handed to
the storage engine through `log_config_for`, which returns `LogConfig` keyword arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from brook.errors import BrookError

if TYPE_CHECKING:
    from brook.services.metadata.model import TopicRecord

INT64_MAX = (1 << 63) - 1
INT32_MAX = (1 << 31) - 1
DAY_MS = 24 * 3600 * 1000

# Keys a value may not be longer than (a config is a number or a bool; anything longer is
# a mistake, and unbounded strings would end up in every process's cache).
MAX_CONFIG_VALUE_CHARS = 64


def _int_range(low: int, high: int) -> Callable[[str], str | None]:
    """A validator accepting integers in [low, high]; returns an error text or None."""

    def check(value: str) -> str | None:
        try:
            number = int(value.strip())
        except ValueError:
            return f"{value!r} is not an integer"
        if not low <= number <= high:
            return f"{number} is outside the allowed range {low}..{high}"
        return None

    return check


def _boolean(value: str) -> str | None:
    if value.strip().lower() in ("true", "false"):
        return None
    return f"{value!r} is not a boolean (true or false)"


@dataclass(frozen=True)
class TopicConfig:
    """One config key: its default (as a string), what it means, and its validator."""

    name: str
    default: str
    description: str
    validator: Callable[[str], str | None]
    # True when the key is a `brook.storage.LogConfig` field handed to the log engine.
    log_config: bool = False


_CONFIG_LIST = [
    TopicConfig(
        "retention_ms",
        str(7 * DAY_MS),
        "Delete segments whose newest record is older than this many milliseconds; -1 keeps"
        " data forever.",
        _int_range(-1, INT64_MAX),
        log_config=True,
    ),
    TopicConfig(
        "retention_bytes",
        "-1",
        "Delete the oldest segments while a partition's log is larger than this many bytes;"
        " -1 is unbounded.",
        _int_range(-1, INT64_MAX),
        log_config=True,
    ),
    TopicConfig(
        "segment_bytes",
        str(1 << 30),
        "Roll to a new segment file when the active one would exceed this many bytes.",
        _int_range(1024, INT32_MAX),
        log_config=True,
    ),
    TopicConfig(
        "segment_ms",
        str(7 * DAY_MS),
        "Roll to a new segment file when the active one is older than this many milliseconds.",
        _int_range(1, INT64_MAX),
        log_config=True,
    ),
    TopicConfig(
        "max_batch_bytes",
        str(8 << 20),
        "Largest record batch a producer may send to this topic, in bytes.",
        _int_range(1, INT32_MAX),
        log_config=True,
    ),
    TopicConfig(
        "flush_interval_ms",
        "1000",
        "fsync a partition's log when this many milliseconds passed since the last fsync;"
        " 0 turns time-based fsync off.",
        _int_range(0, INT64_MAX),
        log_config=True,
    ),
    TopicConfig(
        "flush_interval_batches",
        "0",
        "fsync a partition's log after this many appended batches; 1 fsyncs every append;"
        " 0 turns count-based fsync off.",
        _int_range(0, INT64_MAX),
        log_config=True,
    ),
    TopicConfig(
        "min_insync_replicas",
        "",  # depends on the replication factor: see default_for
        "Fewest in-sync replicas an acks=all produce needs; default 2 when the replication"
        " factor is 3 or more, else 1.",
        _int_range(1, 1000),
    ),
    TopicConfig(
        "unclean_leader_election_enable",
        "false",
        "Elect an out-of-sync replica when no in-sync replica is alive (may lose"
        " acknowledged records).",
        _boolean,
    ),
    TopicConfig(
        "replica_lag_max_ms",
        "10000",
        "Drop a follower from the ISR when it has not caught up for this many milliseconds.",
        _int_range(1, INT64_MAX),
    ),
]

TOPIC_CONFIGS: dict[str, TopicConfig] = {config.name: config for config in _CONFIG_LIST}


def normalize_name(name: str) -> str:
    """Accepts Kafka-style names: `retention.ms` -> `retention_ms`, any case."""
    return name.strip().lower().replace(".", "_").replace("-", "_")


def default_for(name: str, replication_factor: int) -> str:
    """The built-in default of `name` for a topic with this replication factor."""
    if name == "min_insync_replicas":
        return "2" if replication_factor >= 3 else "1"
    return TOPIC_CONFIGS[name].default


def _invalid(key: str, why: str) -> BrookError:
    return BrookError("INVALID_CONFIG", f"config {key!r}: {why}", {"config": key})


def validate_configs(
    configs: Mapping[str, str], *, replication_factor: int | None = None
) -> dict[str, str]:
    """Normalized, validated overrides; raises BrookError INVALID_CONFIG naming the key.

    With `replication_factor`, also checks min_insync_replicas <= replication_factor, so a
    topic cannot be created that no acks=all produce could ever satisfy.
    """
    result: dict[str, str] = {}
    for raw_key, raw_value in configs.items():
        key = normalize_name(raw_key)
        config = TOPIC_CONFIGS.get(key)
        if config is None:
            raise _invalid(raw_key, f"unknown config; known configs: {', '.join(TOPIC_CONFIGS)}")
        if key in result:
            raise _invalid(raw_key, "given twice (under different spellings)")
        value = str(raw_value).strip()
        if len(value) > MAX_CONFIG_VALUE_CHARS:
            raise _invalid(key, f"value longer than {MAX_CONFIG_VALUE_CHARS} characters")
        problem = config.validator(value)
        if problem is not None:
            raise _invalid(key, problem)
        if config.validator is _boolean:
            value = value.lower()
        else:
            value = str(int(value))
        result[key] = value
    if replication_factor is not None and "min_insync_replicas" in result:
        if int(result["min_insync_replicas"]) > replication_factor:
            raise _invalid(
                "min_insync_replicas",
                f"{result['min_insync_replicas']} is more than the replication factor"
                f" {replication_factor}",
            )
    _check_with_log_engine(result)
    return result


def _check_with_log_engine(overrides: Mapping[str, str]) -> None:
    """Lets the log engine reject values it cannot run with, before they reach etcd.

    Imported lazily: the metadata layer must not need the storage engine to load.
    """
    try:
        from brook.storage.config import LogConfig
        from brook.storage.errors import InvalidConfigError
    except ImportError:  # storage engine not installed in this process: our bounds suffice
        return
    log_values = {k: v for k, v in overrides.items() if TOPIC_CONFIGS[k].log_config}
    try:
        LogConfig.from_mapping(log_values)
    except InvalidConfigError as error:
        key = getattr(error, "field", None) or next(iter(log_values), "config")
        raise _invalid(str(key), str(error)) from None
    except (TypeError, ValueError) as error:
        raise _invalid(next(iter(log_values), "config"), str(error)) from None


def effective_configs(topic: TopicRecord) -> dict[str, str]:
    """Every known key with its effective value for `topic` (override or default)."""
    return {
        name: topic.configs.get(name, default_for(name, topic.replication_factor))
        for name in TOPIC_CONFIGS
    }


def config_int(topic: TopicRecord, name: str) -> int:
    """An integer config's effective value."""
    return int(effective_configs(topic)[name])


def config_bool(topic: TopicRecord, name: str) -> bool:
    """A boolean config's effective value."""
    return effective_configs(topic)[name] == "true"


def log_config_for(topic: TopicRecord) -> dict[str, Any]:
    """Keyword arguments for `brook.storage.LogConfig(**kwargs)` from a topic's configs.

    Only the log-engine keys; values are ints. Fields LogConfig has that topics do not
    set (index sizes, delete delay) keep LogConfig's defaults.
    """
    effective = effective_configs(topic)
    return {
        name: int(effective[name]) for name, config in TOPIC_CONFIGS.items() if config.log_config
    }
