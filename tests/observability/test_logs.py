"""Structured logs (services/common/logs.py): JSON lines with the context fields, text
lines as before, and a root logger someone else configured left alone."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from brook.services.common import logs


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    yield stream
    for handler in [h for h in root.handlers if getattr(h, "brook_handler", False)]:
        root.removeHandler(handler)
    root.setLevel(level)
    logs._process_fields.clear()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_process_extra_and_context_fields(output: io.StringIO) -> None:
    logs.configure("node-7", "INFO", "json", stream=output)
    log = logging.getLogger("brook.node.partition")
    log.info(
        "orders-3: leader at epoch %d",
        4,
        extra=logs.fields(topic="orders", partition=3, epoch=4, unknown="dropped"),
    )
    with logs.context(group="billing", member="m-1"):
        log.warning("rebalance")
        with logs.context(member=None, principal="user:alice"):
            log.info("nested")
    log.debug("not at INFO")
    first, second, third = lines(output)
    assert first["msg"] == "orders-3: leader at epoch 4"
    assert first["level"] == "INFO" and first["logger"] == "brook.node.partition"
    assert (first["process"], first["node"]) == ("node-7", 7)  # not LogRecord's pid
    assert (first["topic"], first["partition"], first["epoch"]) == ("orders", 3, 4)
    assert "unknown" not in first
    assert str(first["ts"]).endswith("Z")
    assert (second["group"], second["member"]) == ("billing", "m-1")
    assert (third["member"], third["principal"]) == ("m-1", "user:alice")
    assert "group" not in first


def test_an_exception_stays_on_one_line(output: io.StringIO) -> None:
    logs.configure("coordinator", "INFO", "json", stream=output)
    try:
        raise ValueError("boom\nwith a newline")
    except ValueError:
        logging.getLogger("brook.rpc").exception("internal error in X")
    text = output.getvalue()
    assert text.count("\n") == 1
    (line,) = lines(output)
    assert "ValueError: boom" in str(line["exc"]) and line["process"] == "coordinator"
    assert "node" not in line


def test_text_lines_keep_their_format(output: io.StringIO) -> None:
    logs.configure("groups", "INFO", "text", stream=output)
    logging.getLogger("brook.groups").info("group %s: rebalance", "g", extra={"group": "g"})
    line = output.getvalue().strip()
    assert line.endswith(" INFO [groups] brook.groups: group g: rebalance"), line


def test_a_second_configure_replaces_the_first_and_foreign_handlers_stay() -> None:
    root = logging.getLogger()
    foreign = logging.StreamHandler(io.StringIO())
    root.addHandler(foreign)
    try:
        assert logs.configure("node-1") is None  # someone else owns the output
        first = logs.configure("node-1", stream=io.StringIO())
        second = logs.configure("node-1", log_format="json", stream=io.StringIO())
        ours = [h for h in root.handlers if getattr(h, "brook_handler", False)]
        assert ours == [second] and first not in root.handlers and foreign in root.handlers
        with pytest.raises(ValueError):
            logs.configure("node-1", log_format="xml")
    finally:
        for handler in [h for h in root.handlers if getattr(h, "brook_handler", False)]:
            root.removeHandler(handler)
        root.removeHandler(foreign)
