"""etcd user/password auth across an etcd restart: a real etcd with auth enabled, a
MetadataStore (and a watch-fed PrefixCache, as ACLs and quotas are kept) authenticated as a
user. etcd is restarted (SIGTERM, then started again on the same data dir and port), which
invalidates every token it handed out; the same store, without a restart of its own,
re-authenticates and works again: reads, writes, a new lease, and the watch cache follows
new changes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from brook.services.common.tls import EtcdSecurity
from brook.services.metadata.etcd_client import EtcdClient, is_token_error
from brook.services.metadata.prefix_cache import PrefixCache
from brook.services.metadata.store import MetadataStore, _op_put
from tests.harness.etcd import EtcdServer
from tests.harness.wait import eventually

pytestmark = pytest.mark.integration

# Bound on the store working again after etcd answers /health (its channel reconnects
# with back-off; a renewal is one Authenticate round trip).
RECOVER_S = 20.0


@pytest.fixture
def auth_etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    """A private plaintext etcd with auth on: root (root), brook (role root)."""
    server = EtcdServer(tmp_path / "auth-etcd")
    server.start()
    try:
        server.etcdctl("user", "add", "root:rootpw", "--interactive=false")
        server.etcdctl("user", "add", "brook:brookpw", "--interactive=false")
        server.etcdctl("user", "grant-role", "brook", "root")
        server.etcdctl("auth", "enable")
        yield server
    finally:
        server.stop()


def security(tmp_path: Path) -> EtcdSecurity:
    password_file = tmp_path / "etcd-password"
    password_file.write_text("brookpw\n")
    return EtcdSecurity(user="brook", password_file=str(password_file))


def test_token_errors_are_recognised() -> None:
    import grpc

    assert is_token_error(grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token")
    assert is_token_error(grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: user name is empty")
    assert is_token_error(grpc.StatusCode.INVALID_ARGUMENT,
                          "etcdserver: revision of auth store is old")  # fmt: skip
    # A wrong password or a missing permission is not cured by a new token.
    assert not is_token_error(grpc.StatusCode.INVALID_ARGUMENT,
                              "etcdserver: authentication failed, invalid user ID or password")
    assert not is_token_error(grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied")
    assert not is_token_error(grpc.StatusCode.UNAVAILABLE, "invalid auth token")


async def test_the_store_re_authenticates_after_an_etcd_restart(
    auth_etcd: EtcdServer, tmp_path: Path, cluster_name: str
) -> None:
    store = MetadataStore(
        auth_etcd.address, cluster_name=cluster_name, request_timeout_s=2.0,
        security=security(tmp_path),
    )  # fmt: skip
    prefix = store.keys.quotas_prefix  # any prefix: the cache is what ACLs and quotas use
    cache: PrefixCache[bytes] = PrefixCache(store, prefix, bytes, "test")
    try:
        await store.connect(timeout_s=10)
        cluster_id = await store.cluster_id()
        await cache.start()
        await _put(store, prefix + b"before", b"1")
        assert await cache.wait_for(lambda c: prefix + b"before" in c.values, 10)
        client = store.client
        assert isinstance(client, EtcdClient) and client.token_auth is not None
        first_token = client.token_auth.token
        assert first_token

        auth_etcd.restart_gracefully()  # every token etcd handed out is gone now

        # The same store, not restarted: reads (the cluster id), writes, leases.
        assert await eventually(store.cluster_id, timeout_s=RECOVER_S,
                                what="the store answering after the restart") == cluster_id
        assert client.token_auth.renewals >= 1
        assert client.token_auth.token != first_token
        await _put(store, prefix + b"after", b"2")
        lease = await store.grant_lease(5)
        await lease.revoke()
        # The watch cache reloaded and follows new changes.
        assert await cache.wait_for(lambda c: prefix + b"after" in c.values, RECOVER_S)
        await _put(store, prefix + b"later", b"3")
        assert await cache.wait_for(lambda c: c.values.get(prefix + b"later") == b"3", 10)
    finally:
        await cache.stop()
        await store.close()


async def test_a_lease_stays_alive_across_the_restart(
    auth_etcd: EtcdServer, tmp_path: Path, cluster_name: str
) -> None:
    """A store that only keeps a lease alive (as a node's lease keeper does): etcd keeps
    leases across a restart, and the keep-alive stream (which etcd 3.4 serves without
    checking the token; the client renews one a stream is refused for) goes on, so the
    lease is never lost; the next unary call renews the token."""
    store = MetadataStore(
        auth_etcd.address, cluster_name=cluster_name, request_timeout_s=2.0,
        security=security(tmp_path),
    )  # fmt: skip
    try:
        await store.connect(timeout_s=10)
        cluster_id = await store.cluster_id()
        lease = await store.grant_lease(20)
        auth_etcd.restart_gracefully()
        restarted_at = time.monotonic()

        async def refreshed() -> bool:
            return lease._valid_until > restarted_at + 1

        await eventually(refreshed, timeout_s=RECOVER_S, what="the lease refreshed after it")
        assert not lease.lost.is_set()
        assert await eventually(store.cluster_id, timeout_s=RECOVER_S,
                                what="a unary call after it") == cluster_id
        client = store.client
        assert isinstance(client, EtcdClient) and client.token_auth is not None
        assert client.token_auth.renewals >= 1
        await lease.revoke()
    finally:
        await store.close()


async def _put(store: MetadataStore, key: bytes, value: bytes) -> Any:
    return await store.txn([], [_op_put(key, value)])
