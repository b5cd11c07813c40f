"""Client-side transport security shared by the client library and the servers (issue 11).

`ChannelSecurity` says how a process dials Brook: plaintext (local development), or TLS
verifying the server against a CA bundle, optionally presenting a client certificate
(mTLS) and/or a bearer token (`authorization: Bearer <token>` call credentials). Its
`channel(address, options)` opens a `grpc.aio` channel accordingly; the client's
ChannelPool, the CLI and every server-to-server channel (replication, probes, offset
look-ups) open theirs through it.

Rotation: the CA, certificate and key files are re-read when they change (size, mtime or
inode; checked at most every `RELOAD_CHECK_S`). A channel keeps the credentials it was
opened with, so `generation` goes up on every change and long-lived channel owners (the
ChannelPool, the follower fetcher) open new channels when it moved; established
connections are never cut by a rotation.

Server certificates are checked against the dialed host name or IP, so a server's
certificate must carry the host part of its advertised address as a SAN (`brook dev
--secure` and tests/harness give every process `localhost`, `127.0.0.1` and `::1`).

Thread-safety: a ChannelSecurity may be shared by the threads of one process; the reload
swaps whole values.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

# How often the files behind the credentials are checked for a change (a stat each).
RELOAD_CHECK_S = 1.0

# Environment variables the CLI and scripts read (flags and cluster.json win over them).
ENV_TLS_CA = "BROOK_TLS_CA"
ENV_TLS_CERT = "BROOK_TLS_CERT"
ENV_TLS_KEY = "BROOK_TLS_KEY"
ENV_TOKEN = "BROOK_TOKEN"


def file_signature(paths: Iterable[str | None]) -> tuple[Any, ...]:
    """What identifies the current contents of `paths` cheaply: (inode, size, mtime_ns) of
    each, None for a missing one. A rename of a new file over the old one changes it."""
    signature: list[Any] = []
    for path in paths:
        if not path:
            signature.append(None)
            continue
        try:
            stat = os.stat(path)
        except OSError:
            signature.append(None)
            continue
        signature.append((stat.st_ino, stat.st_size, stat.st_mtime_ns))
    return tuple(signature)


def read_optional(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


@dataclass(frozen=True)
class _Loaded:
    signature: tuple[Any, ...]
    credentials: grpc.ChannelCredentials
    generation: int


class ChannelSecurity:
    """How to dial Brook: plaintext, or TLS (CA, optional client pair, optional token).

    `tls` is on when a CA file, a client certificate or a token is given (a token never
    travels in plaintext); with `tls` and no CA file, the system's root certificates
    verify the server.
    """

    def __init__(
        self,
        *,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        token: str | None = None,
        tls: bool | None = None,
    ) -> None:
        if bool(cert_file) != bool(key_file):
            raise ValueError("a client certificate needs its key (tls_cert and tls_key)")
        if token is not None and not token.strip():
            raise ValueError("the bearer token is empty")
        self.ca_file = ca_file or None
        self.cert_file = cert_file or None
        self.key_file = key_file or None
        self.token = token.strip() if token else None
        wants_tls = bool(self.ca_file or self.cert_file or self.token)
        if tls is False and wants_tls:
            raise ValueError("TLS settings (CA, client certificate, token) need tls=True")
        self.tls = wants_tls if tls is None else tls
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None
        self._checked_s = -1e18

    @classmethod
    def plaintext(cls) -> ChannelSecurity:
        return cls()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ChannelSecurity:
        """From $BROOK_TLS_CA, $BROOK_TLS_CERT, $BROOK_TLS_KEY and $BROOK_TOKEN."""
        env = os.environ if environ is None else environ
        return cls(
            ca_file=env.get(ENV_TLS_CA) or None,
            cert_file=env.get(ENV_TLS_CERT) or None,
            key_file=env.get(ENV_TLS_KEY) or None,
            token=env.get(ENV_TOKEN) or None,
        )

    def __repr__(self) -> str:
        if not self.tls:
            return "ChannelSecurity(plaintext)"
        return (
            f"ChannelSecurity(ca={self.ca_file!r}, cert={self.cert_file!r}, "
            f"token={'yes' if self.token else 'no'})"
        )

    # -- credentials -------------------------------------------------------------------
    def _files(self) -> tuple[str | None, ...]:
        return (self.ca_file, self.cert_file, self.key_file)

    def _load(self, signature: tuple[Any, ...], generation: int) -> _Loaded:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=read_optional(self.ca_file),
            private_key=read_optional(self.key_file),
            certificate_chain=read_optional(self.cert_file),
        )
        if self.token:
            credentials = grpc.composite_channel_credentials(
                credentials, grpc.access_token_call_credentials(self.token)
            )
        return _Loaded(signature, credentials, generation)

    def _current(self) -> _Loaded:
        now = time.monotonic()
        with self._lock:
            loaded = self._loaded
            if loaded is not None and now - self._checked_s < RELOAD_CHECK_S:
                return loaded
            self._checked_s = now
            signature = file_signature(self._files())
            if loaded is None or signature != loaded.signature:
                try:
                    loaded = self._load(signature, (loaded.generation + 1) if loaded else 1)
                except OSError:
                    if loaded is None:
                        raise
                    # Mid-rotation (a file briefly missing): keep what worked, retry later.
                    return loaded
                self._loaded = loaded
            return loaded

    @property
    def generation(self) -> int:
        """Goes up whenever the credential files changed (0 for plaintext)."""
        return self._current().generation if self.tls else 0

    def credentials(self) -> grpc.ChannelCredentials:
        """The channel credentials from the files as they are now (TLS only)."""
        if not self.tls:
            raise ValueError("plaintext security has no channel credentials")
        return self._current().credentials

    def channel(self, address: str, options: Iterable[tuple[str, Any]] = ()) -> grpc.aio.Channel:
        """A grpc.aio channel to `address`: TLS with these credentials, or plaintext."""
        if not self.tls:
            return grpc.aio.insecure_channel(address, options=list(options))
        return grpc.aio.secure_channel(address, self.credentials(), options=list(options))

    def sync_channel(self, address: str, options: Iterable[tuple[str, Any]] = ()) -> grpc.Channel:
        """Like `channel`, for blocking (non-asyncio) callers."""
        if not self.tls:
            return grpc.insecure_channel(address, options=list(options))
        return grpc.secure_channel(address, self.credentials(), options=list(options))


PLAINTEXT = ChannelSecurity()

# What clients built without security options use: plaintext, unless a program (the
# `brook` CLI, from its flags, cluster.json or $BROOK_TLS_*) sets another.
_default_security: ChannelSecurity = PLAINTEXT


def set_default_security(security: ChannelSecurity) -> None:
    """Makes `security` the default of clients built without tls_*/token/security options."""
    global _default_security
    _default_security = security


def default_security() -> ChannelSecurity:
    return _default_security


def client_security(
    *,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    token: str | None = None,
    security: ChannelSecurity | None = None,
) -> ChannelSecurity:
    """The client classes' keyword options as one ChannelSecurity: `security`, else one
    built from tls_ca/tls_cert/tls_key/token, else the default (`set_default_security`;
    plaintext unless set). Giving `security` and the others is a ValueError."""
    if security is not None:
        if tls_ca or tls_cert or tls_key or token:
            raise ValueError("pass either security= or tls_ca/tls_cert/tls_key/token")
        return security
    if not (tls_ca or tls_cert or tls_key or token):
        return _default_security
    return ChannelSecurity(ca_file=tls_ca, cert_file=tls_cert, key_file=tls_key, token=token)
