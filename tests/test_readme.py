"""The README stays true: its commands and its Python example work as written.

The Python example is taken verbatim from README.md and run against a real local cluster
(etcd, a coordinator, a group manager and a storage node as processes), with only the
bootstrap address swapped for the test cluster's; the test checks what it printed.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from brook.client.admin import Admin
from tests.harness.cluster import LocalCluster
from tests.harness.wait import eventually

README = Path(__file__).resolve().parents[1] / "README.md"
WAIT_S = 60.0


def test_first_lines_give_the_run_and_test_commands() -> None:
    """The README opens with `make run` and `make test`, the two set-up commands."""
    head = README.read_text().splitlines()[:8]
    assert any(line.startswith("make run") for line in head)
    assert any(line.startswith("make test") for line in head)


def _python_example() -> str:
    match = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert match, "README.md has no python example"
    return match.group(1)


@pytest.mark.integration
def test_python_example_runs_against_a_cluster(
    local_cluster: Callable[..., LocalCluster], tmp_path: Path
) -> None:
    """Runs the README's Python example in a fresh interpreter against a real cluster and
    checks it produced, read back by offset, and consumed through a group."""
    cluster = local_cluster()
    cluster.add_coordinator()
    cluster.add_groups()
    cluster.add_node(1)
    cluster.start()
    bootstrap = cluster.address("coordinator")

    async def create_topic() -> None:
        async with Admin(bootstrap) as admin:

            async def node_alive() -> bool:
                return bool((await admin.describe_cluster()).nodes)

            await eventually(node_alive, timeout_s=WAIT_S, what="a live storage node")
            await admin.create_topic("orders", 3, 1)

    asyncio.run(create_topic())
    example = _python_example()
    assert '"127.0.0.1:7070"' in example
    script = tmp_path / "example.py"
    script.write_text(example.replace('"127.0.0.1:7070"', repr(bootstrap)))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=WAIT_S
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("stored at ")
    offset = lines[0].split()[-1]
    assert lines[1] == f"{offset} b'k1' b'hello'"
    assert lines[2] == "1 records for group billing"
