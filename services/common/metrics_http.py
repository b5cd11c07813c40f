"""The /metrics HTTP server of a process: prometheus_client's exposition, served by a
small threading HTTP server of ours so that it can speak TLS with a certificate that is
re-read on rotation and check who asks (http_security.py).

- TLS: each accepted connection is wrapped with the current SSLContext; the handshake
  runs in the connection's thread (not the accept loop), bounded by READ_TIMEOUT_S.
- Who asks: the request's bearer token or client certificate is authenticated and
  checked against METRICS_RULE on the process's event loop (where the authenticator and
  the ACL cache live), waiting at most CHECK_TIMEOUT_S (503 past it).
- Bounds: CONNECTIONS_MAX requests served at once (a further connection is closed), a
  request head of at most 64 KiB (http.server's limit), READ_TIMEOUT_S per socket read.

Thread-safety: the accept thread and one thread per connection; they only read the
registry (as prometheus_client's own server does) and hand checks to the loop.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from brook.errors import BrookError
from brook.services.common.http_security import (
    METRICS_RULE,
    HttpRefusal,
    HttpSecurity,
    refusal_of,
)

log = logging.getLogger("brook.metrics")

CONNECTIONS_MAX = 16
READ_TIMEOUT_S = 10.0
CHECK_TIMEOUT_S = 5.0


class _Handler(BaseHTTPRequestHandler):
    server: MetricsHttpServer
    timeout = READ_TIMEOUT_S  # StreamRequestHandler: the socket timeout, handshake included
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        refusal = self.server.refusal(self)
        if refusal is not None:
            self._send(refusal.status, refusal.message.encode() + b"\n", "text/plain",
                       refusal.headers)  # fmt: skip
            return
        encoder, content_type = choose_encoder(self.headers.get("Accept") or "")
        self._send(200, encoder(self.server.registry), content_type, {})

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return  # scrapes every few seconds would flood the log


class MetricsHttpServer(ThreadingHTTPServer):
    """Serves `registry` on every path (as prometheus_client does) over `security`."""

    daemon_threads = True

    def __init__(
        self, host: str, port: int, registry: CollectorRegistry, security: HttpSecurity,
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:  # fmt: skip
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.registry = registry
        self.security = security
        self.loop = loop
        self._slots = threading.BoundedSemaphore(CONNECTIONS_MAX)
        super().__init__((host, port), _Handler)

    # -- connections -------------------------------------------------------------------
    def get_request(self) -> tuple[Any, Any]:
        sock, address = self.socket.accept()
        if self.security.tls is not None:
            sock = self.security.tls.current().wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            )
        return sock, address

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # over the bound: the scraper retries
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A failed handshake or a client gone mid-request: not the server's fault.
        log.debug("metrics request from %s failed", client_address, exc_info=True)

    # -- who asks ----------------------------------------------------------------------
    def refusal(self, handler: _Handler) -> HttpRefusal | None:
        """None when the request may be served, else the answer refusing it."""
        if self.security.authenticator is None:
            return None
        peer_der = None
        if isinstance(handler.connection, ssl.SSLSocket):
            peer_der = handler.connection.getpeercert(binary_form=True)
        authorization = handler.headers.get("Authorization")
        peer = f"http:{handler.client_address[0]}:{handler.client_address[1]}"

        async def check() -> None:
            self.security.check(authorization, peer_der, peer, METRICS_RULE)

        try:
            if self.loop is None:
                self.security.check(authorization, peer_der, peer, METRICS_RULE)
            else:
                asyncio.run_coroutine_threadsafe(check(), self.loop).result(CHECK_TIMEOUT_S)
        except BrookError as error:
            return refusal_of(error)
        except (TimeoutError, RuntimeError):  # a stalled or stopped loop
            return HttpRefusal(503, "the process is busy; try again", {"Retry-After": "1"})
        return None


def serve_metrics(
    host: str, port: int, registry: CollectorRegistry, security: HttpSecurity,
    loop: asyncio.AbstractEventLoop | None,
) -> tuple[MetricsHttpServer, threading.Thread]:  # fmt: skip
    """Binds and serves in a daemon thread."""
    server = MetricsHttpServer(host, port, registry, security, loop)
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return server, thread
