"""The etcd client of Brook's processes: aetcd, over TLS when configured (issue 11).

aetcd 1.0 dials etcd in plaintext only (`Client.connect` opens an insecure channel).
`SecureClient` is the same client whose `connect` opens a TLS channel instead (CA bundle,
optional client certificate for etcd's `--client-cert-auth`); everything else, etcd
auth with user/password included, is aetcd's own. `make_client` picks one.

tests/metadata/test_etcd_tls.py runs Brook against a real etcd started with
`--cert-file --key-file --trusted-ca-file --client-cert-auth`; it also catches an aetcd
upgrade that changes what `connect` sets up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aetcd
import aetcd.client
import grpc
from aetcd import rpc, watcher

from brook.services.common.tls import PLAINTEXT_ETCD, EtcdSecurity

_handle_errors = aetcd.client._handle_errors


class SecureClient(aetcd.Client):
    """aetcd.Client over TLS."""

    def __init__(self, credentials: Callable[[], grpc.ChannelCredentials], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._credentials = credentials

    @_handle_errors
    async def connect(self) -> None:
        """As aetcd's connect, with a TLS channel (credentials read at each connect)."""
        if self._connected.is_set():
            return
        if self._is_connecting:  # type: ignore[has-type]
            await asyncio.wait_for(self._connected.wait(), self._connect_wait_timeout)
            return
        try:
            self._is_connecting = True
            target = f"{self._host}:{self._port}"
            self.channel = rpc.secure_channel(
                target, self._credentials(), options=self._options.items()
            )
            if self._username is not None and self._password is not None:
                self.auth_stub = rpc.AuthStub(self.channel)
                response = await self.auth_stub.Authenticate(
                    rpc.AuthenticateRequest(name=self._username, password=self._password),
                    timeout=self._timeout,
                )
                self.metadata = (("token", response.token),)
            self.kvstub = rpc.KVStub(self.channel)
            self.clusterstub = rpc.ClusterStub(self.channel)
            self.leasestub = rpc.LeaseStub(self.channel)
            self.maintenancestub = rpc.MaintenanceStub(self.channel)
            self._watcher = watcher.Watcher(
                rpc.WatchStub(self.channel), timeout=self._timeout, metadata=self.metadata
            )
            self._connected.set()
        finally:
            self._is_connecting = False


def make_client(
    host: str,
    port: int,
    *,
    security: EtcdSecurity = PLAINTEXT_ETCD,
    timeout: float,
    options: dict[str, Any],
) -> aetcd.Client:
    """An aetcd client for etcd at host:port with `security` (TLS, etcd user)."""
    password = security.password()
    user = security.user or None
    if security.tls:
        return SecureClient(
            security.channel_credentials,
            host=host, port=port, username=user, password=password,
            timeout=timeout, options=options,
        )  # fmt: skip
    return aetcd.Client(
        host=host, port=port, username=user, password=password, timeout=timeout, options=options
    )
