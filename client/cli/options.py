"""Option values every `brook` command shares: the bootstrap address, TLS and token
settings, --config, times."""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from google.protobuf import json_format
from google.protobuf.message import Message

from brook.client import defaults
from brook.transport import ENV_TLS_CA, ENV_TLS_CERT, ENV_TLS_KEY, ENV_TOKEN

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


def _cluster_file(cwd: Path | None) -> dict[str, object]:
    try:
        document = json.loads(((cwd or Path.cwd()) / CLUSTER_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def default_security(
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    *,
    bootstrap: str = "",
) -> dict[str, str]:
    """--tls-ca/--tls-cert/--tls-key/--token defaults: $BROOK_TLS_CA, $BROOK_TLS_CERT,
    $BROOK_TLS_KEY, $BROOK_TOKEN, else the "tls" of ./data/cluster.json (`brook dev
    --secure` writes {"ca", "cert", "key"} there) when `bootstrap` is that file's cluster
    (or empty). Keys: tls_ca, tls_cert, tls_key, token (empty when unset)."""
    environ = os.environ if environ is None else environ
    values = {
        "tls_ca": environ.get(ENV_TLS_CA, ""),
        "tls_cert": environ.get(ENV_TLS_CERT, ""),
        "tls_key": environ.get(ENV_TLS_KEY, ""),
        "token": environ.get(ENV_TOKEN, ""),
    }
    if any(values.values()):
        return values
    document = _cluster_file(cwd)
    described = document.get("bootstrap")
    if isinstance(described, list):
        described = ",".join(str(v) for v in described)
    if bootstrap and bootstrap != described:
        return values  # another cluster than the one cluster.json describes
    tls = document.get("tls")
    if isinstance(tls, dict):
        for key, field in (("tls_ca", "ca"), ("tls_cert", "cert"), ("tls_key", "key")):
            value = tls.get(field)
            if isinstance(value, str):
                values[key] = value
    return values


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


# -- --output json (every read command) ---------------------------------------------------
OUTPUT_FORMATS = ("text", "json")


def add_output(parser: Any) -> None:
    """Adds `--output text|json` to a read command's parser (json: one document on stdout,
    for scripts)."""
    parser.add_argument(
        "--output", "-o", choices=OUTPUT_FORMATS, default="text",
        help="text (default) or json (one document, for scripts)",
    )  # fmt: skip


def message_json(message: Message) -> dict[str, Any]:
    """A protobuf message as the Admin API's JSON (proto3's JSON mapping, as grpcurl shows
    it: field names as in the .proto, enums by name, int64 values as strings, unset
    fields left out)."""
    return dict(json_format.MessageToDict(message, preserving_proto_field_name=True))


def print_json(document: Any, out: TextIO) -> None:
    """One JSON document and a newline."""
    print(json.dumps(document, indent=2, sort_keys=True), file=out)
