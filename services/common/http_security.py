"""Security of the HTTP listeners: every process's `/metrics` and the coordinator's
console (issue 11: "TLS on every listener", "nothing anonymous in production").

A process served with `--tls-cert` serves its HTTP listeners over TLS too, with the same
certificate (re-read when its files change, as the gRPC listener's), and authenticates
each request as it authenticates calls (`TransportAuthenticator.authenticate_http`): a
`Authorization: Bearer <token>` header, else the client certificate (mapped by the
`--principal-mapping` rules), else UNAUTHENTICATED (401) unless `--tls-client-auth none`.
With the authorizer on, each request is then checked against the ACLs (403 when denied):
`/metrics` needs describe on the cluster (DescribeCluster's rule); the console checks
each page with the rule of the RPC whose data it shows. `--no-http-tls` keeps the HTTP
listeners plaintext and unauthenticated in a TLS process (a scrape sidecar on
localhost); without `--tls-cert` they are plaintext, as in local development.

Prometheus scrapes such an endpoint with `scheme: https` and a `tls_config` holding the
cluster CA and a client certificate (or `authorization` with a token) of a principal
granted describe on the cluster.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass

from brook.errors import BrookError, Reason
from brook.services.common.authz.enforce import installed
from brook.services.common.principal import ANONYMOUS, Principal, TransportAuthenticator
from brook.transport import file_signature

log = logging.getLogger("brook.http_security")

# The RPC whose rule guards /metrics: what it shows is the cluster's own state.
METRICS_RULE = "brook.v1.AdminService/DescribeCluster"
# A TLS handshake on an HTTP listener must finish within this (slow or idle clients).
HANDSHAKE_TIMEOUT_S = 10.0


class ReloadingSslContext:
    """A server SSLContext for the HTTP listeners, rebuilt when its files change: each
    connection takes `current()`, so a rotated certificate serves the next handshake."""

    def __init__(self, cert_file: str, key_file: str, ca_file: str, client_auth: str) -> None:
        self.cert_file, self.key_file, self.ca_file = cert_file, key_file, ca_file
        self.client_auth = client_auth
        self._signature = self._files_signature()
        self._context = self._build()  # a bad pair fails the start
        self.reloads = 0

    def _files_signature(self) -> tuple[object, ...]:
        return file_signature([self.cert_file, self.key_file, self.ca_file])

    def _build(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        if self.ca_file and self.client_auth != "none":
            context.load_verify_locations(self.ca_file)
            context.verify_mode = (
                ssl.CERT_REQUIRED if self.client_auth == "require" else ssl.CERT_OPTIONAL
            )
        return context

    def current(self) -> ssl.SSLContext:
        """The context for a new connection (rebuilt first when the files changed; a file
        caught mid-rotation keeps the old one until the next connection)."""
        signature = self._files_signature()
        if signature != self._signature:
            try:
                context = self._build()
            except (OSError, ssl.SSLError, ValueError) as error:
                log.warning("HTTP certificate files changed but cannot be used yet: %s", error)
            else:
                self._signature, self._context = signature, context
                self.reloads += 1
                log.info("HTTP listener certificate reloaded from %s", self.cert_file)
        return self._context


@dataclass(frozen=True)
class HttpRefusal:
    """An HTTP answer to a request that may not be served."""

    status: int
    message: str
    headers: dict[str, str]


def refusal_of(error: BrookError) -> HttpRefusal:
    if error.reason == Reason.UNAUTHENTICATED:
        return HttpRefusal(401, error.message, {"WWW-Authenticate": 'Bearer realm="brook"'})
    return HttpRefusal(403, error.message, {})


@dataclass(frozen=True)
class HttpSecurity:
    """What an HTTP listener does about security: TLS (None: plaintext) and who may ask
    (None: anyone, as anonymous)."""

    tls: ReloadingSslContext | None = None
    authenticator: TransportAuthenticator | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    def authenticate(self, authorization: str | None, peer_der: bytes | None) -> Principal:
        """The requester (BrookError UNAUTHENTICATED when credentials are required)."""
        if self.authenticator is None:
            return ANONYMOUS
        return self.authenticator.authenticate_http(authorization, peer_der)

    def check(
        self, authorization: str | None, peer_der: bytes | None, peer: str, method: str,
        *, topic: str | None = None, group: str | None = None,
    ) -> Principal:  # fmt: skip
        """Authenticates, then checks `method`'s rule for the requester with the process's
        authorizer (allows all when it is off); raises BrookError, audited as calls are."""
        principal = self.authenticate(authorization, peer_der)
        installed().require_as(principal, peer, method, topic=topic, group=group)
        return principal


PLAINTEXT_HTTP = HttpSecurity()
