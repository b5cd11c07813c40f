"""Who is calling: the authenticated principal of a gRPC call (issue 11).

A principal is a type and a name, written `type:name` as Kafka writes `User:alice`:
`user:alice` (a client certificate's mapped subject, a static token's user, a JWT's
subject), `node:3` (a storage node's own certificate), or `anonymous` (no security
configured: local development only).

`principal_of(context)` is the one way servers learn the caller; the transport layer
(TLS, mTLS principal mapping, bearer tokens) fills it in, the authorizer reads it.

Thread-safety: immutable values; `Authenticator` implementations are read-only after
start (certificate reloads swap whole objects).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import grpc


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. `kind` is "user", "node" or "anonymous"."""

    kind: str
    name: str

    def __str__(self) -> str:
        return self.kind if self.kind == "anonymous" else f"{self.kind}:{self.name}"

    @property
    def node_id(self) -> int | None:
        """The node id of a `node:<id>` principal, else None."""
        if self.kind != "node":
            return None
        try:
            return int(self.name)
        except ValueError:
            return None

    @classmethod
    def parse(cls, text: str) -> Principal:
        """`user:alice` / `node:3` / `anonymous` (as ACLs and super-user lists write them)."""
        if text == "anonymous":
            return ANONYMOUS
        kind, sep, name = text.partition(":")
        if not sep or not name or kind not in ("user", "node"):
            raise ValueError(f"bad principal {text!r}: expected user:NAME, node:ID or anonymous")
        return cls(kind, name)


ANONYMOUS = Principal("anonymous", "")


class Authenticator(Protocol):
    """Maps a call's transport identity (client certificate, bearer token) to a Principal,
    raising BrookError UNAUTHENTICATED when credentials are required and missing/invalid."""

    def authenticate(self, context: grpc.aio.ServicerContext) -> Principal: ...


class _Anonymous:
    def authenticate(self, context: grpc.aio.ServicerContext) -> Principal:
        return ANONYMOUS


# The process's authenticator; security setup replaces it at start (set_authenticator).
_authenticator: Authenticator = _Anonymous()


def set_authenticator(authenticator: Authenticator) -> None:
    global _authenticator
    _authenticator = authenticator


def principal_of(context: grpc.aio.ServicerContext) -> Principal:
    """The principal of the call (UNAUTHENTICATED BrookError when it has none and the
    process requires one)."""
    return _authenticator.authenticate(context)
