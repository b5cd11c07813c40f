"""The `brook` CLI: argument parsing, defaults, output formats, and commands against a
fake cluster (the command coroutines run on the test's loop)."""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from brook.client.cli import consume, options, produce, topics
from brook.client.cli.main import build_parser
from brook.client.records import ConsumerRecord
from brook.services import cli as services_cli
from brook.services.cli import SERVER_COMMANDS
from tests.client.fake_cluster import FakeCluster


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def test_parser_accepts_the_documented_commands() -> None:
    """Proves the documented command lines parse to the expected options."""
    args = _args(
        "--bootstrap",
        "h:1",
        "topic",
        "create",
        "t",
        "--partitions",
        "3",
        "--replication-factor",
        "2",
        "--config",
        "retention.ms=5",
        "--config",
        "a=b",
    )
    assert (args.bootstrap, args.name, args.partitions, args.replication_factor) == (
        "h:1",
        "t",
        3,
        2,
    )
    assert options.parse_config(args.config) == {"retention.ms": "5", "a": "b"}
    args = _args("consume", "t", "--offset", "5", "--partition", "1", "--format", "json")
    assert (args.offset, args.partition, args.format) == (5, 1, "json")
    args = _args(
        "perf",
        "produce",
        "--topic",
        "t",
        "--num-records",
        "10",
        "--record-size",
        "100",
        "--throughput",
        "-1",
        "--compression",
        "zstd",
    )
    assert (args.num_records, args.record_size, args.throughput) == (10, 100, -1)
    with pytest.raises(SystemExit):
        _args("consume", "t", "--from-beginning", "--offset", "3")
    with pytest.raises(SystemExit):
        _args("produce", "t", "--acks", "2")


def test_bad_values_are_clear_errors() -> None:
    """Proves malformed --config and --from-time values fail with a readable message."""
    with pytest.raises(ValueError, match="key=value"):
        options.parse_config(["novalue"])
    with pytest.raises(ValueError, match="ISO-8601"):
        options.parse_time_ms("yesterday")
    assert options.parse_time_ms("1700000000000") == 1_700_000_000_000
    assert options.parse_time_ms("2023-11-14T22:13:20Z") == 1_700_000_000_000
    assert options.parse_time_ms("2023-11-14T22:13:20") == 1_700_000_000_000


def test_default_bootstrap_order(tmp_path: Path) -> None:
    """Proves --bootstrap falls back to $BROOK_BOOTSTRAP, then ./data/cluster.json, then
    127.0.0.1:7070."""
    assert options.default_bootstrap({}, tmp_path) == "127.0.0.1:7070"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cluster.json").write_text(json.dumps({"bootstrap": "10.0.0.1:9"}))
    assert options.default_bootstrap({}, tmp_path) == "10.0.0.1:9"
    assert options.default_bootstrap({"BROOK_BOOTSTRAP": "e:1"}, tmp_path) == "e:1"
    (tmp_path / "data" / "cluster.json").write_text("{not json")
    assert options.default_bootstrap({}, tmp_path) == "127.0.0.1:7070"


def test_record_formats() -> None:
    """Proves value, key-value (null key shown as null) and json (base64 for non-UTF-8)
    output lines."""
    record = ConsumerRecord("t", 1, 7, 99, None, b"hello", [("h", b"v")], 0)
    assert consume.format_record(record, "value") == b"hello"
    assert consume.format_record(record, "key-value") == b"null\thello"
    assert json.loads(consume.format_record(record, "json")) == {
        "topic": "t",
        "partition": 1,
        "offset": 7,
        "timestamp_ms": 99,
        "key": None,
        "value": "hello",
        "headers": [["h", "v"]],
    }
    binary = record._replace(key=b"k", value=b"\xff\x00")
    assert consume.format_record(binary, "key-value") == b"k\t\xff\x00"
    assert json.loads(consume.format_record(binary, "json"))["value_base64"] == "/wA="


def test_version_and_errors_in_a_subprocess() -> None:
    """Proves `brook --version` works and an unreachable cluster is one clear error line
    with a non-zero exit, no traceback."""
    script = "import sys; from brook.services.cli import main; sys.exit(main())"
    run = [sys.executable, "-c", script]
    version = subprocess.run([*run, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("brook ")
    failed = subprocess.run(
        [*run, "--bootstrap", "127.0.0.1:1", "topic", "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failed.returncode != 0
    assert failed.stderr.startswith("error: ") and "Traceback" not in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1


async def test_topic_and_cluster_commands(fake: FakeCluster) -> None:
    """Proves topic create/list/describe/delete and cluster describe print what they did."""
    out = io.StringIO()
    base = ["--bootstrap", fake.bootstrap]
    await topics.cmd_topic(
        _args(
            *base,
            "topic",
            "create",
            "t",
            "--partitions",
            "2",
            "--replication-factor",
            "1",
            "--config",
            "retention_ms=9",
        ),
        out,
    )
    await topics.cmd_topic(_args(*base, "topic", "list"), out)
    await topics.cmd_topic(_args(*base, "topic", "describe", "t"), out)
    await topics.cmd_cluster(_args(*base, "cluster", "describe"), out)
    await topics.cmd_topic(_args(*base, "topic", "delete", "t"), out)
    text = out.getvalue()
    assert "created topic t with 2 partitions" in text
    assert "\nt\n" in text
    assert "Partition: 1\tLeader: 1" in text and "Configs: retention_ms=9" in text
    assert "Nodes: 2" in text and "UnderReplicatedPartitions: 1\tt-0" in text
    assert "OfflinePartitions: 0" in text
    assert text.endswith("deleted topic t\n")


async def test_produce_then_consume_lines(fake: FakeCluster) -> None:
    """Proves `produce` sends one record per stdin line (keys split at the separator) and
    exits 0 when all are acknowledged, and `consume --from-beginning --max-records` prints
    them back in each format; a line without the separator fails non-zero."""
    fake.create_topic("t", 1)
    base = ["--bootstrap", fake.bootstrap]
    stdin = io.BytesIO(b"k1:a\nk2:b\r\nk3:c")
    err = io.StringIO()
    args = _args(*base, "produce", "t", "--key-separator", ":")
    code = await produce.cmd_produce(args, stdin, err)
    assert code == 0, err.getvalue()
    out = io.BytesIO()
    args = _args(
        *base, "consume", "t", "--from-beginning", "--max-records", "3", "--format", "key-value"
    )
    assert await consume.cmd_consume(args, out, err) == 0
    assert out.getvalue() == b"k1\ta\nk2\tb\nk3\tc\n"
    out = io.BytesIO()
    args = _args(*base, "consume", "t", "--offset", "2", "--partition", "0", "--timeout-ms", "300")
    assert await consume.cmd_consume(args, out, err) == 0
    assert out.getvalue() == b"c\n"
    bad = await produce.cmd_produce(
        _args(*base, "produce", "t", "--key-separator", ":"), io.BytesIO(b"nosep\n"), err
    )
    assert bad == 1 and "no key separator" in err.getvalue()


def test_help_lists_client_and_server_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """Proves `brook --help` (the console script, brook.services.cli) lists every client
    command and the server commands beside them."""
    with pytest.raises(SystemExit) as exited:
        services_cli.main(["--help"])
    assert exited.value.code == 0
    listed = capsys.readouterr().out
    for command in ("topic", "produce", "consume", "cluster", "group", "perf", *SERVER_COMMANDS):
        assert re.search(rf"^\s+{command}\s", listed, re.M), (command, listed)


def test_server_commands_go_to_the_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proves `brook node ...` hands the rest of its command line to the node's main and
    exits with its status, while a client command never reaches a server."""
    calls: list[tuple[str, list[str]]] = []

    def runner(name: str) -> Callable[[list[str]], int]:
        def run(argv: list[str]) -> int:
            calls.append((name, argv))
            return 3

        return run

    for name, (help_text, _) in list(SERVER_COMMANDS.items()):
        monkeypatch.setitem(SERVER_COMMANDS, name, (help_text, runner(name)))
    assert services_cli.main(["node", "--node-id", "1", "--listen", "h:0"]) == 3
    assert services_cli.main(["dev", "--nodes", "1"]) == 3
    assert calls == [("node", ["--node-id", "1", "--listen", "h:0"]), ("dev", ["--nodes", "1"])]
    with pytest.raises(SystemExit):
        services_cli.main(["produce"])  # the client's parser: TOPIC is missing
    assert len(calls) == 2


@pytest.mark.parametrize("command", sorted(SERVER_COMMANDS))
def test_server_help_is_the_servers_own(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Proves each server command reaches the real service module (its parser answers)."""
    with pytest.raises(SystemExit) as exited:
        services_cli.main([command, "--help"])
    assert exited.value.code == 0
    assert f"brook {command}" in capsys.readouterr().out
