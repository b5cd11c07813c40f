"""Option values every `brook` command shares: the bootstrap address, --config, times."""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from brook.client import defaults

# Written by `brook dev` / `make run`; names the local cluster's bootstrap address.
CLUSTER_FILE = Path("data") / "cluster.json"


def default_bootstrap(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> str:
    """--bootstrap's default: $BROOK_BOOTSTRAP, ./data/cluster.json, or 127.0.0.1:7070."""
    environ = os.environ if environ is None else environ
    if environ.get("BROOK_BOOTSTRAP"):
        return environ["BROOK_BOOTSTRAP"]
    path = (cwd or Path.cwd()) / CLUSTER_FILE
    try:
        value = json.loads(path.read_text()).get("bootstrap")
    except (OSError, ValueError, AttributeError):
        value = None
    if isinstance(value, str) and value:
        return value
    if isinstance(value, list) and value:
        return ",".join(str(v) for v in value)
    return defaults.BOOTSTRAP


def parse_config(values: Sequence[str]) -> dict[str, str]:
    """`--config k=v` values as a dict; a value without "=" is a ValueError."""
    configs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--config expects key=value, got {item!r}")
        configs[key.strip()] = value.strip()
    return configs


def parse_time_ms(text: str, flag: str = "--from-time") -> int:
    """Milliseconds since the epoch, or an ISO-8601 time (naive times are UTC); a bad value
    is a ValueError naming `flag`."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{flag} expects milliseconds or ISO-8601, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)
