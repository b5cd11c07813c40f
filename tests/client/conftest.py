"""Fixtures for client tests: a fake cluster of real gRPC servers on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.client.fake_cluster import FakeCluster


@pytest.fixture
async def fake() -> AsyncIterator[FakeCluster]:
    """Two fake nodes (node 0 also serves metadata and admin), stopped at teardown."""
    cluster = await FakeCluster(nodes=2).start()
    try:
        yield cluster
    finally:
        await cluster.stop()
