"""Structured logs for every Brook process: one line per event, as text or as JSON.

    --log-format text   (default) `time LEVEL [process] logger: message`, as always
    --log-format json   one JSON object per line: ts, level, logger, msg, the process's
                        own fields (process, node) and whatever context the event has

The context fields are the ones operators filter on (`FIELDS`): process, node, topic,
partition, epoch, group, member, principal. A log site passes them with `extra=`
(`log.info("...", extra=fields(topic=t, partition=p, epoch=e))`), or a caller binds them
for everything logged inside a block with `context(group=g, member=m)` (a contextvar, so
it follows the asyncio task); `bind(...)` binds them for the rest of the task (the
authenticated principal of every call, bound before its handler runs). Unknown keys are
ignored in `fields`; None values are left out, so a site can pass what it has.

In JSON an exception's traceback is the `exc` field (escaped: still one line). Text lines
stay exactly as before (the fields are for machines; the messages already name what they
are about).

Thread-safety: formatters are stateless; the process fields are set once at start.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from typing import IO, Any

# The context fields a JSON line may carry, in the order they are written.
FIELDS = ("process", "node", "topic", "partition", "epoch", "group", "member", "principal")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s [{process}] %(name)s: %(message)s"

_context: contextvars.ContextVar[Mapping[str, object] | None] = contextvars.ContextVar(
    "brook_log_context", default=None
)
# Fields of the whole process (process name, node id), set by `configure`.
_process_fields: dict[str, object] = {}


def fields(**values: object) -> dict[str, object]:
    """The known context fields of `values` (None left out), for a log call's `extra=`
    (`process` is the process's own, from `configure`)."""
    return {
        key: value
        for key, value in values.items()
        if key in FIELDS and key != "process" and value is not None
    }


@contextlib.contextmanager
def context(**values: object) -> Iterator[None]:
    """Binds context fields for every line logged inside the block (this task only)."""
    token = _context.set({**(_context.get() or {}), **fields(**values)})
    try:
        yield
    finally:
        _context.reset(token)


def bind(**values: object) -> None:
    """Binds context fields for the rest of the current task (an RPC's handler runs in its
    own task, with its own copy of the context: the server's authentication binds the
    call's principal here, so every line the handler logs names who asked)."""
    _context.set({**(_context.get() or {}), **fields(**values)})


def current_context() -> dict[str, object]:
    """The process fields and the bound context, as a JSON line would carry them."""
    return {**_process_fields, **(_context.get() or {})}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (UTC, ms), level, logger, msg, context fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        bound = current_context()
        for key in FIELDS:
            # `process` is also LogRecord's own attribute (the pid): it comes from
            # `configure` only. The others come from `extra=`, else the bound context.
            value = None if key == "process" else getattr(record, key, None)
            if value is None:
                value = bound.get(key)
            if value is not None:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def process_fields(process_name: str) -> dict[str, object]:
    """`process`, and `node` for a storage node (`node-<id>`)."""
    found: dict[str, object] = {"process": process_name}
    prefix, _, rest = process_name.partition("-")
    if prefix == "node" and rest.isdigit():
        found["node"] = int(rest)
    return found


def _is_ours(handler: logging.Handler) -> bool:
    return bool(getattr(handler, "brook_handler", False))


def configure(
    process_name: str,
    level: str = "INFO",
    log_format: str = "text",
    *,
    stream: IO[str] | None = None,
) -> logging.Handler | None:
    """Sets the root logger up for a Brook process; returns the handler it installed.

    Like `logging.basicConfig`, it leaves a root logger that someone else already gave
    handlers (a test runner capturing logs) alone, unless `stream` is given; a second call
    replaces the handler of the first.
    """
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {log_format!r}")
    _process_fields.clear()
    _process_fields.update(process_fields(process_name))
    root = logging.getLogger()
    for handler in [h for h in root.handlers if _is_ours(h)]:
        root.removeHandler(handler)
        handler.close()
    if stream is None and root.handlers:
        return None
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.brook_handler = True  # type: ignore[attr-defined]
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT.format(process=process_name)))
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    return handler
