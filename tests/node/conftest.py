"""Fixtures of the storage-node integration tests: a store on the test's etcd, and node
clients that are always closed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from brook.services.metadata.store import MetadataStore
from tests.harness.metadata import connected_store
from tests.node.cluster_helpers import NodeClient


@pytest.fixture
async def store(etcd: str, cluster_name: str) -> AsyncIterator[MetadataStore]:
    async with connected_store(etcd, cluster_name) as connected:
        yield connected


@pytest.fixture
async def clients() -> AsyncIterator[Callable[[str], NodeClient]]:
    """A factory of NodeClients, all closed at teardown."""
    made: list[NodeClient] = []

    def make(address: str) -> NodeClient:
        client = NodeClient(address)
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in made:
            await client.close()
