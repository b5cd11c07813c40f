"""gRPC server lifecycle shared by every Brook process.

`GrpcServer` builds a `grpc.aio` server with the standard health service and server
reflection (v1 and v1alpha, serving the protos' comments: `reflection.py`), binds the
configured address (port 0 picks a free port), and stops gracefully: health goes
NOT_SERVING first, then in-flight calls get `grace_s` to finish. `run_until_signal`
drives a process until SIGTERM/SIGINT.

Security (`tls.py`): given a `ServerSecurity` with a certificate, the server listens with
TLS only (certificate re-read on change, client certificates as configured) and installs
the `AuthInterceptor`, which authenticates every call but health before its handler
runs. Without one it listens in plaintext with no interceptor (no per-call cost).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from brook.clock import SYSTEM_CLOCK
from brook.services.common.loop_lag import LoopLagMonitor, register_diagnostics
from brook.services.common.reflection import enable_reflection
from brook.services.common.tls import PLAINTEXT_SERVER, ServerSecurity

log = logging.getLogger("brook.server")

# Bounds on what one connection may ask of a server.
DEFAULT_MAX_MESSAGE_BYTES = 64 << 20
DEFAULT_MAX_CONCURRENT_STREAMS = 256
# A loop lag at or above this is logged at once: a handler held the loop.
LOOP_LAG_WARN_MS_DEFAULT = 100.0


class GrpcServer:
    """One grpc.aio server with health and reflection; owns its start and stop."""

    def __init__(
        self,
        address: str,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_send_message_bytes: int | None = None,
        max_concurrent_rpcs: int | None = None,
        options: Iterable[tuple[str, Any]] = (),
        loop_lag_warn_ms: float = LOOP_LAG_WARN_MS_DEFAULT,
        security: ServerSecurity | None = None,
    ) -> None:
        self.security = security or PLAINTEXT_SERVER
        self.server = grpc.aio.server(
            interceptors=self.security.interceptors(),
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                # Responses may have their own bound (a fetch answer vs a produce request).
                ("grpc.max_send_message_length", max_send_message_bytes or max_message_bytes),
                ("grpc.max_concurrent_streams", DEFAULT_MAX_CONCURRENT_STREAMS),
                ("grpc.so_reuseport", 0),
                *options,
            ],
            maximum_concurrent_rpcs=max_concurrent_rpcs,
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self._service_names: list[str] = [health.SERVICE_NAME]
        self._requested_address = address
        self.port = 0
        # Every process measures its event loop's lag (no handler may hold it > 100 ms);
        # tests read it through the diagnostics method, metrics will export it.
        self.loop_lag = LoopLagMonitor(SYSTEM_CLOCK, warn_ms=loop_lag_warn_ms)
        register_diagnostics(self.server, self.loop_lag)
        # The plaintext health-only listener, when configured (ServerSecurity.health_address):
        # the same HealthServicer, so both listeners report the same status.
        self.health_server: grpc.aio.Server | None = None
        self.health_port = 0
        if self.security.health_address:
            self.health_server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self.health_server)

    def add_service(
        self, service_full_name: str, register: Callable[[grpc.aio.Server], None]
    ) -> None:
        """Registers a servicer (register(server)) and lists it for reflection and health."""
        register(self.server)
        self._service_names.append(service_full_name)

    @property
    def address(self) -> str:
        host = self._requested_address.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    async def start(self) -> None:
        self.loop_lag.start()
        enable_reflection(self._service_names, self.server)
        if self.security.tls:
            self.port = self.server.add_secure_port(
                self._requested_address, self.security.credentials()
            )
        else:
            self.port = self.server.add_insecure_port(self._requested_address)
        if self.port == 0:
            raise OSError(f"could not bind {self._requested_address}")
        if self.health_server is not None:
            self.health_port = self.health_server.add_insecure_port(self.security.health_address)
            if self.health_port == 0:
                raise OSError(f"could not bind --health-listen {self.security.health_address}")
            await self.health_server.start()
        await self.server.start()
        await self.set_serving(True)
        log.info(
            "serving %s on %s (%s)",
            ", ".join(self._service_names[1:]),
            self.address,
            "TLS" if self.security.tls else "plaintext",
        )

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ["", *self._service_names[2:]]:
            await self.health.set(name, status)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Reports NOT_SERVING, then lets in-flight calls finish for up to grace_s."""
        await self.set_serving(False)
        await self.server.stop(grace_s)
        if self.health_server is not None:
            await self.health_server.stop(0)
        await self.loop_lag.stop()


def unary_unary_handler(
    method: Callable[..., Any], request_type: type[Message], response_type: type[Message]
) -> grpc.RpcMethodHandler:
    """A generic unary handler with the (de)serializers of the given message types (which
    may differ from the public API's, e.g. the `*Wire` twins)."""
    return grpc.unary_unary_rpc_method_handler(
        method,
        request_deserializer=request_type.FromString,
        response_serializer=response_type.SerializeToString,
    )


def unary_stream_handler(
    method: Callable[..., Any], request_type: type[Message], response_type: type[Message]
) -> grpc.RpcMethodHandler:
    """Like `unary_unary_handler`, for a server-streaming method."""
    return grpc.unary_stream_rpc_method_handler(
        method,
        request_deserializer=request_type.FromString,
        response_serializer=response_type.SerializeToString,
    )


def add_generic_service(
    server: grpc.aio.Server, service_full_name: str, handlers: dict[str, grpc.RpcMethodHandler]
) -> None:
    """Registers `handlers` (method name -> handler) under the service's public name."""
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service_full_name, handlers),)
    )


async def run_until_signal(
    start: Callable[[], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
    *,
    stop_timeout_s: float = 10.0,
    done: asyncio.Event | None = None,
) -> None:
    """Starts a process, waits for SIGTERM/SIGINT (or `done`), then stops it within a bound."""
    loop = asyncio.get_running_loop()
    stop_requested = done or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    await start()
    try:
        await stop_requested.wait()
        log.info("stopping")
    finally:
        try:
            await asyncio.wait_for(stop(), timeout=stop_timeout_s)
        except TimeoutError:
            log.error("stop did not finish within %.1fs; exiting anyway", stop_timeout_s)


def configure_logging(process_name: str, level: str = "INFO", log_format: str = "text") -> None:
    """One log format for every process: text lines (time, level, process name, logger,
    message) or JSON lines with context fields (`--log-format`; services/common/logs.py)."""
    from brook.services.common import logs

    logs.configure(process_name, level, log_format)
