"""`brook dev` serves /metrics from every Brook process and lists where in cluster.json."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import pytest

from tests.coordinator.test_dev import DevRun, pick_base_port
from tests.observability.helpers import scrape, value

pytestmark = pytest.mark.integration


def fetch_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return str(answer.read().decode())


async def test_cluster_json_lists_every_process_metrics_address(tmp_path: Path) -> None:
    run = DevRun(tmp_path / "data", pick_base_port(), tmp_path / "dev.log")
    try:
        description = await asyncio.to_thread(run.wait_description)
        services = description["services"]
        assert isinstance(services, list)
        brook = [s for s in services if s["role"] != "etcd"]
        assert {s["role"] for s in brook} == {"coordinator", "groups", "node"}
        for service in brook:
            samples = await asyncio.to_thread(scrape, service["metrics_address"])
            assert value(samples, "brook_build_info", role=service["role"]) == 1, service
        # The coordinator's web console is on too, listed beside it.
        (coordinator,) = [s for s in brook if s["role"] == "coordinator"]
        page = await asyncio.to_thread(fetch_text, f"http://{coordinator['console_address']}/")
        assert "Brook console" in page and 'id="node-count"' in page
        assert run.terminate() == 0
    finally:
        run.cleanup()
