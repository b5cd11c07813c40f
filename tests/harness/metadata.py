"""A connected MetadataStore for tests that read or write etcd directly."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from brook.services.metadata import MetadataStore


@contextlib.asynccontextmanager
async def connected_store(
    etcd: str, cluster_name: str, *, request_timeout_s: float = 5.0
) -> AsyncIterator[MetadataStore]:
    """A MetadataStore on the test's etcd and cluster name, closed however the test ends."""
    store = MetadataStore(etcd, cluster_name=cluster_name, request_timeout_s=request_timeout_s)
    await store.connect()
    try:
        yield store
    finally:
        await store.close()
