"""The etcd client of Brook's processes: aetcd, over TLS when configured (issue 11), with
etcd auth tokens that are renewed.

aetcd 1.0 dials etcd in plaintext only (`Client.connect` opens an insecure channel), and
with a user and password it authenticates once, at connect: its token then stops working
when etcd restarts (simple tokens live in etcd's memory) or after the token's TTL
(`--auth-token-ttl`, 5 min idle by default), and every call fails from then on.

`EtcdClient` is aetcd's client whose `connect` opens the channel itself: TLS (CA bundle,
optional client certificate for etcd's `--client-cert-auth`) when configured, and with
etcd auth a `TokenAuth` interceptor on the channel. That interceptor puts the current
token on every call (aetcd's own metadata, captured at connect, is replaced), and when
etcd answers that the token is not valid ("invalid auth token", "user name is empty",
"revision of auth store is old") it authenticates again (once per stale token, however
many calls saw it) and retries the call once. A streaming call (watch, lease keep-alive)
that ends so renews the token for the next one; its caller re-opens it as it does after
any etcd failure. `make_client` builds one.

tests/security/test_tls_etcd.py runs Brook against a real etcd started with
`--cert-file --key-file --trusted-ca-file --client-cert-auth`; it also catches an aetcd
upgrade that changes what `connect` sets up. tests/security/test_etcd_auth_renew.py
restarts an etcd with auth on under a running store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import aetcd
import aetcd.client
import grpc
from aetcd import rpc, watcher

from brook.services.common.tls import PLAINTEXT_ETCD, EtcdSecurity

log = logging.getLogger("brook.metadata.etcd")

_handle_errors = aetcd.client._handle_errors

AUTHENTICATE_METHOD = "/etcdserverpb.Auth/Authenticate"
# What etcd answers when a call's token is no longer (or not yet) valid: re-authenticating
# cures each (a wrong password or a missing permission is not among them).
TOKEN_ERRORS = ("invalid auth token", "user name is empty", "revision of auth store is old")
# Renewals at most this often (why: a misbehaving etcd that refuses every new token must
# not turn each call into two Authenticate round trips).
RENEW_INTERVAL_MIN_S = 0.2


def is_token_error(code: grpc.StatusCode | None, details: str | None) -> bool:
    """Whether etcd refused a call for its token (UNAUTHENTICATED or INVALID_ARGUMENT with
    one of TOKEN_ERRORS)."""
    if code not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INVALID_ARGUMENT):
        return False
    text = (details or "").lower()
    return any(marker in text for marker in TOKEN_ERRORS)


def _method(details: Any) -> str:
    method = details.method
    return method.decode() if isinstance(method, bytes) else str(method)


def _with_token(details: Any, token: str) -> Any:
    """`details` with its `token` metadata replaced by `token` (none while `token` is
    empty: etcd refuses an empty token where it accepts no token)."""
    pairs = [(k, v) for k, v in (details.metadata or ()) if k != "token"]
    if token:
        pairs.append(("token", token))
    return grpc.aio.ClientCallDetails(
        method=details.method,
        timeout=details.timeout,
        metadata=grpc.aio.Metadata(*pairs),
        credentials=details.credentials,
        wait_for_ready=details.wait_for_ready,
    )


class TokenAuth:
    """An etcd user's token on one channel, renewed when etcd stops accepting it."""

    def __init__(self, user: str, password: str, timeout_s: float | None) -> None:
        self.user = user
        self._password = password
        self._timeout_s = timeout_s
        self.token = ""
        self.renewals = 0
        self._stub: Any = None
        self._lock = asyncio.Lock()
        self._renewed_at = 0.0
        self._on_token: Callable[[str], None] = lambda token: None
        self._tasks: set[asyncio.Task[None]] = set()

    def bind(self, channel: grpc.aio.Channel, on_token: Callable[[str], None]) -> None:
        """The channel to authenticate on; `on_token(token)` after each authentication."""
        self._stub = rpc.AuthStub(channel)
        self._on_token = on_token

    async def authenticate(self) -> str:
        response = await self._stub.Authenticate(
            rpc.AuthenticateRequest(name=self.user, password=self._password),
            timeout=self._timeout_s,
        )
        self.token = str(response.token)
        self._renewed_at = asyncio.get_running_loop().time()
        self._on_token(self.token)
        return self.token

    async def renew(self, stale: str, why: str = "") -> None:
        """Authenticates again unless someone already replaced `stale` (or did so very
        recently); a failure is left to the retried call to report."""
        async with self._lock:
            if self.token != stale:
                return
            if asyncio.get_running_loop().time() - self._renewed_at < RENEW_INTERVAL_MIN_S:
                return
            try:
                await self.authenticate()
            except Exception as error:  # etcd still down: the caller's retry reports it
                log.warning("etcd re-authentication as %r failed: %s", self.user, error)
                return
            self.renewals += 1
            log.info("etcd auth token renewed for user %r (etcd refused the old one: %s)",
                     self.user, why)  # fmt: skip

    def in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Runs `work` as a task this object keeps a reference to until it ends."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class _TokenInterceptor(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamStreamClientInterceptor,
):
    """Puts the current token on each call; renews it and retries once (unary calls) when
    etcd refuses it."""

    def __init__(self, auth: TokenAuth) -> None:
        self.auth = auth

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        if _method(details) == AUTHENTICATE_METHOD:  # (bytes in grpc.aio)
            return await continuation(details, request)
        token = self.auth.token
        call = await continuation(_with_token(details, token), request)
        try:
            await call
        except grpc.aio.AioRpcError as error:
            if not is_token_error(error.code(), error.details()):
                return call
            await self.auth.renew(token, str(error.details()))
            if self.auth.token == token:
                return call  # not renewed: the call's own error stands
            return await continuation(_with_token(details, self.auth.token), request)
        return call

    def _watch_end(self, call: Any, token: str) -> None:
        async def check() -> None:
            try:
                code, details = await call.code(), await call.details()
            except Exception:  # cancelled calls and the like: nothing to learn
                return
            if is_token_error(code, details):
                await self.auth.renew(token, f"{details} (stream)")

        self.auth.in_background(check())

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        token = self.auth.token
        call = await continuation(_with_token(details, token), request)
        call.add_done_callback(lambda done: self._watch_end(done, token))
        return call

    async def intercept_stream_stream(
        self, continuation: Any, details: Any, request_iterator: Any
    ) -> Any:
        token = self.auth.token
        call = await continuation(_with_token(details, token), request_iterator)
        call.add_done_callback(lambda done: self._watch_end(done, token))
        return call


class EtcdClient(aetcd.Client):
    """aetcd.Client over TLS (`credentials`) or plaintext (None), with renewed etcd auth
    tokens when a user and password are set."""

    def __init__(
        self, credentials: Callable[[], grpc.ChannelCredentials] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._credentials = credentials
        self.token_auth: TokenAuth | None = None
        if self._username is not None and self._password is not None:
            self.token_auth = TokenAuth(self._username, self._password, self._timeout)

    def _set_token(self, token: str) -> None:
        # aetcd's own copies (the interceptor replaces them on the wire anyway).
        self.metadata = (("token", token),)
        current = self._watcher  # type: ignore[has-type]
        if current is not None:
            current._metadata = self.metadata

    @_handle_errors
    async def connect(self) -> None:
        """As aetcd's connect, with our channel (credentials read at each connect)."""
        if self._connected.is_set():
            return
        if self._is_connecting:  # type: ignore[has-type]
            await asyncio.wait_for(self._connected.wait(), self._connect_wait_timeout)
            return
        try:
            self._is_connecting = True
            target = f"{self._host}:{self._port}"
            options = list(self._options.items())
            auth = self.token_auth
            interceptors = [_TokenInterceptor(auth)] if auth is not None else None
            if self._credentials is not None:
                self.channel = grpc.aio.secure_channel(
                    target, self._credentials(), options=options, interceptors=interceptors
                )
            else:
                self.channel = grpc.aio.insecure_channel(
                    target, options=options, interceptors=interceptors
                )
            self.kvstub = rpc.KVStub(self.channel)
            self.clusterstub = rpc.ClusterStub(self.channel)
            self.leasestub = rpc.LeaseStub(self.channel)
            self.maintenancestub = rpc.MaintenanceStub(self.channel)
            self._watcher = watcher.Watcher(
                rpc.WatchStub(self.channel), timeout=self._timeout, metadata=None
            )
            if auth is not None:
                auth.bind(self.channel, self._set_token)
                self.auth_stub = auth._stub
                try:
                    await auth.authenticate()
                except BaseException:  # etcd down or refusing: the next connect starts over
                    await self.channel.close()
                    raise
            self._connected.set()
        finally:
            self._is_connecting = False


# The name earlier code used (a TLS client is an EtcdClient with credentials).
SecureClient = EtcdClient


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
    return EtcdClient(
        security.channel_credentials if security.tls else None,
        host=host, port=port, username=user, password=password,
        timeout=timeout, options=options,
    )  # fmt: skip
