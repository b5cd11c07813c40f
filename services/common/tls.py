"""Transport security of a Brook server process (issue 11): TLS listeners, certificate
rotation, call authentication, secured peer channels and the etcd connection settings.

`ProcessSecurity.from_args(args)` reads the security flags (`add_security_arguments`,
which `process.add_common_arguments` adds to every process) and `install()` makes it the
process's: the authenticator behind `principal_of`, and the security of every outgoing
channel to other Brook processes (`peer_channel`). Each main.py passes `.server` to its
GrpcServer and `.etcd` to its MetadataStore.

Listeners: with `--tls-cert/--tls-key` a process serves TLS only (no plaintext port);
without them it serves plaintext, for local development. The certificate and key are
files, re-read when they change (`ReloadingServerCertificate`, the certificate fetcher of
`grpc.dynamic_ssl_server_credentials`, asked on every new TLS handshake): replacing the
files (write both, or rename new ones over them) rotates the certificate without a
restart; a half-written or mismatched pair is refused and the previous one kept.
Established connections keep the certificate they were made with.

Client authentication (`--tls-client-auth`):
- `require` (default when `--tls-ca` is set): the TLS handshake demands a client
  certificate signed by `--tls-ca`; without one the connection fails (the client sees
  UNAVAILABLE, a TLS failure), for every service, health included. Storage nodes
  authenticate to each other this way (`node:<id>`).
- `request`: the handshake accepts clients without a certificate and every call but
  health must carry a valid bearer token, else UNAUTHENTICATED. (grpcio's server API can
  only require a client certificate or not ask for one, so certificates are not
  requested in this mode.) Needs `--token-file` or `--jwks-file`.
- `none`: no client certificate is asked for; a valid bearer token names the caller and
  a call without one is anonymous (TLS for privacy only); an invalid token is
  UNAUTHENTICATED.
Health (`grpc.health.v1.Health`) is exempt from call authentication (probes), but never
from TLS; server reflection is not exempt: grpcurl presents a certificate or a token.
"""

from __future__ import annotations

import argparse
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from brook.errors import BrookError
from brook.services.common import logs
from brook.services.common import principal as principals
from brook.services.common.http_security import PLAINTEXT_HTTP, HttpSecurity, ReloadingSslContext
from brook.services.common.principal import (
    DEFAULT_MAPPING,
    Authenticator,
    TransportAuthenticator,
    parse_mapping_rules,
)
from brook.services.common.tokens import bearer_tokens
from brook.transport import PLAINTEXT, ChannelSecurity, file_signature

log = logging.getLogger("brook.tls")

CLIENT_AUTH_MODES = ("none", "request", "require")
# Methods callers reach without authenticating (TLS still applies): health, for probes.
UNAUTHENTICATED_PREFIXES = ("/grpc.health.v1.Health/",)


def add_security_arguments(parser: argparse.ArgumentParser) -> None:
    """The security flags of every server process (README, "Security")."""
    group = parser.add_argument_group("security (README: Security)")
    add = group.add_argument
    # fmt: off
    add("--tls-cert", default="", help="serve TLS with this certificate (PEM; re-read on change)")
    add("--tls-key", default="", help="the private key of --tls-cert (PEM)")
    add("--tls-ca", default="",
        help="CA bundle (PEM) that verifies client certificates and the peers this process dials")
    add("--tls-client-auth", choices=CLIENT_AUTH_MODES, default=None,
        help="client certificates: require (default with --tls-ca), request (token auth, "
             "no certificate needed), none")
    add("--client-cert", default="",
        help="this process's certificate for calls to other processes (default --tls-cert)")
    add("--client-key", default="", help="the key of --client-cert (default --tls-key)")
    add("--principal-mapping", default=DEFAULT_MAPPING,
        help="client certificate -> principal rules: RULE:<regex>/<replacement>/[L|U], "
             "..., DEFAULT")
    add("--token-file", default="",
        help='static bearer tokens: JSON {"tokens": {"<token>": "user:NAME"}}')
    add("--jwks-file", default="", help="JWKS (JSON) whose keys verify JWT bearer tokens")
    add("--jwt-issuer", default="", help="required JWT iss claim")
    add("--jwt-audience", default="", help="required JWT aud claim")
    add("--health-listen", default="",
        help="HOST:PORT of a plaintext listener serving only grpc.health.v1, for probes that "
             "cannot speak TLS (Kubernetes' grpc probe); with --tls-cert only")
    add("--http-tls", action=argparse.BooleanOptionalAction, default=None,
        help="serve /metrics and the console over TLS with --tls-cert, authenticating and "
             "authorizing requests as calls are (default: on with --tls-cert); "
             "--no-http-tls keeps them plaintext and open (a local scrape sidecar)")
    add("--etcd-ca", default="", help="CA bundle that verifies etcd (turns on TLS to etcd)")
    add("--etcd-cert", default="", help="client certificate for etcd (PEM)")
    add("--etcd-key", default="", help="key of --etcd-cert")
    add("--etcd-user", default="", help="etcd user (etcd auth)")
    add("--etcd-password-file", default="", help="file holding the etcd user's password")
    # fmt: on


# -- server certificates -----------------------------------------------------------------


def _check_pair(cert_pem: bytes, key_pem: bytes) -> int:
    """The serial of the leaf; ValueError when the key does not belong to the certificate."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if cert.public_key().public_bytes(encoding, public) != key.public_key().public_bytes(
        encoding, public
    ):
        raise ValueError("the private key does not belong to the certificate")
    return cert.serial_number


class ReloadingServerCertificate:
    """The server's certificate configuration, re-read when its files change."""

    def __init__(self, cert_file: str, key_file: str, ca_file: str | None) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.ca_file = ca_file
        self._signature = self._files_signature()
        self.initial, self.serial = self._build()  # a bad pair fails the start
        self.reloads = 0

    def _files_signature(self) -> tuple[Any, ...]:
        return file_signature([self.cert_file, self.key_file, self.ca_file])

    def _build(self) -> tuple[Any, int]:
        cert_pem = Path(self.cert_file).read_bytes()
        key_pem = Path(self.key_file).read_bytes()
        serial = _check_pair(cert_pem, key_pem)
        root = Path(self.ca_file).read_bytes() if self.ca_file else None
        config = grpc.ssl_server_certificate_configuration(
            [(key_pem, cert_pem)], root_certificates=root
        )
        return config, serial

    def fetch(self) -> Any:
        """The certificate fetcher: a new configuration when the files changed, else None
        (keep the current one). Never raises: gRPC calls it on every handshake."""
        try:
            signature = self._files_signature()
            if signature == self._signature:
                return None
            self._signature = signature
            config, serial = self._build()
        except Exception as error:  # mid-rotation or a bad file: keep serving the old one
            log.warning("certificate files changed but cannot be used yet: %s", error)
            return None
        log.info("server certificate reloaded: serial %x -> %x", self.serial, serial)
        self.serial = serial
        self.reloads += 1
        return config


@dataclass
class ServerSecurity:
    """What a GrpcServer needs: TLS credentials (None: plaintext) and the authenticator
    its interceptor runs (None: no call authentication)."""

    certificate: ReloadingServerCertificate | None = None
    require_client_certificate: bool = False
    authenticator: Authenticator | None = None
    # A second, plaintext listener serving grpc.health.v1 only (--health-listen): for
    # probes that cannot speak TLS (Kubernetes' native grpc probe). Health says nothing
    # secret; every other service stays on the TLS listener.
    health_address: str = ""

    @property
    def tls(self) -> bool:
        return self.certificate is not None

    def credentials(self) -> grpc.ServerCredentials:
        assert self.certificate is not None
        return grpc.dynamic_ssl_server_credentials(
            self.certificate.initial,
            self.certificate.fetch,
            require_client_authentication=self.require_client_certificate,
        )

    def interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        return [] if self.authenticator is None else [AuthInterceptor(self.authenticator)]


PLAINTEXT_SERVER = ServerSecurity()


# -- call authentication ------------------------------------------------------------------


def _identity(data: bytes) -> bytes:
    return data


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates every call before its handler runs, and before its request is even
    deserialized: missing or invalid credentials end the call UNAUTHENTICATED with
    google.rpc.ErrorInfo (reason UNAUTHENTICATED). The principal is kept for the call, so
    `principal_of(context)` answers it without authenticating again."""

    def __init__(
        self,
        authenticator: Authenticator,
        exempt_prefixes: Sequence[str] = UNAUTHENTICATED_PREFIXES,
    ) -> None:
        self.authenticator = authenticator
        self.exempt_prefixes = tuple(exempt_prefixes)
        self._guarded: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        guarded = self._guarded.get(method)
        if guarded is not None:
            return guarded
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(self.exempt_prefixes):
            return handler
        guarded = _guard(handler, self.authenticator)
        self._guarded[method] = guarded
        return guarded


async def _authenticate(authenticator: Authenticator, context: grpc.aio.ServicerContext) -> None:
    try:
        principal = authenticator.authenticate(context)
    except BrookError as error:
        await context.abort_with_status(error.to_status())
        raise  # unreachable: abort raises
    principals.remember_principal(context, principal)
    logs.bind(principal=str(principal))  # every line the handler logs names the caller


async def _deserialize(
    deserializer: Callable[[bytes], Any] | None, raw: Any, context: grpc.aio.ServicerContext
) -> Any:
    if deserializer is None:
        return raw
    try:
        return deserializer(raw)
    except Exception:
        await context.abort(grpc.StatusCode.INTERNAL, "Exception deserializing request!")


async def _run_unary(behavior: Callable[..., Any], request: Any, context: Any) -> Any:
    result = behavior(request, context)
    if inspect.isawaitable(result):
        result = await result
    return result


async def _iterate(result: Any) -> AsyncIterator[Any]:
    if inspect.isawaitable(result):
        result = await result
    if result is None:
        return
    if hasattr(result, "__aiter__"):
        async for item in result:
            yield item
    else:
        for item in result:
            yield item


def _guard(handler: grpc.RpcMethodHandler, authenticator: Authenticator) -> grpc.RpcMethodHandler:
    """The same handler with authentication first (request bytes parsed after it)."""
    deserializer = handler.request_deserializer
    serializer = handler.response_serializer
    if not handler.request_streaming and not handler.response_streaming:
        inner = handler.unary_unary

        async def unary_unary(raw: Any, context: grpc.aio.ServicerContext) -> Any:
            await _authenticate(authenticator, context)
            request = await _deserialize(deserializer, raw, context)
            return await _run_unary(inner, request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary, request_deserializer=_identity, response_serializer=serializer
        )
    if not handler.request_streaming:
        inner = handler.unary_stream
        if inspect.isasyncgenfunction(inner) or inspect.isgeneratorfunction(inner):

            async def unary_stream_gen(raw: Any, context: grpc.aio.ServicerContext) -> Any:
                await _authenticate(authenticator, context)
                request = await _deserialize(deserializer, raw, context)
                async for item in _iterate(inner(request, context)):
                    yield item

            behavior: Callable[..., Any] = unary_stream_gen
        else:

            async def unary_stream_writer(raw: Any, context: grpc.aio.ServicerContext) -> Any:
                await _authenticate(authenticator, context)
                request = await _deserialize(deserializer, raw, context)
                result = inner(request, context)
                if inspect.isawaitable(result):
                    return await result
                async for item in _iterate(result):
                    await context.write(item)
                return None

            behavior = unary_stream_writer
        return grpc.unary_stream_rpc_method_handler(
            behavior, request_deserializer=_identity, response_serializer=serializer
        )
    # Client streaming: messages are parsed as the handler reads them, after this check.
    inner = handler.stream_unary if not handler.response_streaming else handler.stream_stream
    if handler.response_streaming and (
        inspect.isasyncgenfunction(inner) or inspect.isgeneratorfunction(inner)
    ):

        async def stream_gen(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            await _authenticate(authenticator, context)
            async for item in _iterate(inner(requests, context)):
                yield item

        streaming: Callable[..., Any] = stream_gen
    else:

        async def stream_call(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            await _authenticate(authenticator, context)
            return await _run_unary(inner, requests, context)

        streaming = stream_call
    factory = (
        grpc.stream_stream_rpc_method_handler
        if handler.response_streaming
        else grpc.stream_unary_rpc_method_handler
    )
    return factory(streaming, request_deserializer=deserializer, response_serializer=serializer)


# -- etcd ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EtcdSecurity:
    """How to reach etcd: TLS (CA, optional client pair) and/or etcd auth (user/password).
    With a client certificate and etcd's --client-cert-auth, etcd takes the user from the
    certificate's CN and no password is needed."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    user: str = ""
    password_file: str = ""

    @property
    def tls(self) -> bool:
        return bool(self.ca_file or self.cert_file)

    def password(self) -> str | None:
        if not self.user:
            return None
        if not self.password_file:
            raise BrookError("INVALID_CONFIG", "--etcd-user needs --etcd-password-file")
        return Path(self.password_file).read_text().strip()

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return ChannelSecurity(
            ca_file=self.ca_file or None,
            cert_file=self.cert_file or None,
            key_file=self.key_file or None,
            tls=True,
        ).credentials()


PLAINTEXT_ETCD = EtcdSecurity()


# -- the process's security ------------------------------------------------------------------


def _config_error(message: str) -> BrookError:
    return BrookError("INVALID_CONFIG", message)


@dataclass
class ProcessSecurity:
    server: ServerSecurity
    peer: ChannelSecurity
    etcd: EtcdSecurity
    # The HTTP listeners' (/metrics, console): http_security.py.
    http: HttpSecurity = PLAINTEXT_HTTP

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ProcessSecurity:
        """From the flags of `add_security_arguments`; INVALID_CONFIG names a bad mix."""
        get = lambda name: getattr(args, name, "") or ""  # noqa: E731
        cert, key, ca = get("tls_cert"), get("tls_key"), get("tls_ca")
        if bool(cert) != bool(key):
            raise _config_error("--tls-cert and --tls-key go together")
        mode = getattr(args, "tls_client_auth", None) or ("require" if ca else "none")
        token_file, jwks_file = get("token_file"), get("jwks_file")
        mapping = get("principal_mapping") or DEFAULT_MAPPING
        server = PLAINTEXT_SERVER
        if cert:
            if mode == "require" and not ca:
                raise _config_error("--tls-client-auth require needs --tls-ca")
            try:
                rules = parse_mapping_rules(mapping)
                tokens = bearer_tokens(
                    token_file, jwks_file, get("jwt_issuer"), get("jwt_audience")
                )
            except ValueError as error:
                raise _config_error(f"--principal-mapping: {error}") from None
            if mode == "request" and tokens is None:
                raise _config_error(
                    "--tls-client-auth request authenticates by bearer token: give "
                    "--token-file or --jwks-file"
                )
            try:
                certificate = ReloadingServerCertificate(cert, key, ca or None)
            except (OSError, ValueError) as error:
                raise _config_error(f"cannot use --tls-cert/--tls-key: {error}") from None
            server = ServerSecurity(
                certificate=certificate,
                health_address=get("health_listen") or "",
                require_client_certificate=mode == "require",
                authenticator=TransportAuthenticator(
                    rules=rules, tokens=tokens, require_authentication=mode != "none"
                ),
            )
        elif token_file or jwks_file or getattr(args, "tls_client_auth", None) or get(
            "health_listen"
        ):
            raise _config_error("tokens and client authentication need TLS (--tls-cert)")
        client_cert = get("client_cert") or cert
        client_key = get("client_key") or key
        if bool(client_cert) != bool(client_key):
            raise _config_error("--client-cert and --client-key go together")
        peer = PLAINTEXT
        if cert or ca or client_cert:
            peer = ChannelSecurity(
                ca_file=ca or None,
                cert_file=client_cert or None,
                key_file=client_key or None,
                tls=True,
            )
        etcd = EtcdSecurity(
            ca_file=get("etcd_ca"),
            cert_file=get("etcd_cert"),
            key_file=get("etcd_key"),
            user=get("etcd_user"),
            password_file=get("etcd_password_file"),
        )
        if bool(etcd.cert_file) != bool(etcd.key_file):
            raise _config_error("--etcd-cert and --etcd-key go together")
        return cls(server, peer, etcd, _http_security(args, server, mode))

    def install(self) -> ProcessSecurity:
        """Makes this the process's security: `principal_of` and `peer_channel` use it."""
        if self.server.authenticator is not None:
            principals.set_authenticator(self.server.authenticator)
        set_peer_security(self.peer)
        return self


def _http_security(
    args: argparse.Namespace, server: ServerSecurity, mode: str
) -> HttpSecurity:
    """TLS and authentication of the HTTP listeners: those of the gRPC listener, unless
    `--no-http-tls` (or no --tls-cert)."""
    wanted = getattr(args, "http_tls", None)
    certificate = server.certificate
    if certificate is None:
        if wanted:
            raise _config_error("--http-tls needs --tls-cert")
        return PLAINTEXT_HTTP
    if wanted is False:
        return PLAINTEXT_HTTP
    try:
        context = ReloadingSslContext(
            certificate.cert_file, certificate.key_file, certificate.ca_file or "", mode
        )
    except (OSError, ValueError) as error:
        raise _config_error(f"cannot serve HTTP over TLS: {error}") from None
    authenticator = server.authenticator
    assert authenticator is None or isinstance(authenticator, principals.TransportAuthenticator)
    return HttpSecurity(context, authenticator)


def process_security(args: argparse.Namespace) -> ProcessSecurity:
    """`ProcessSecurity.from_args(args).install()`: what each main.py calls once."""
    return ProcessSecurity.from_args(args).install()


# -- outgoing channels to other Brook processes ---------------------------------------------

_peer_security: ChannelSecurity = PLAINTEXT


def set_peer_security(security: ChannelSecurity) -> None:
    global _peer_security
    _peer_security = security


def peer_security() -> ChannelSecurity:
    """How this process dials other Brook processes (plaintext unless configured)."""
    return _peer_security


def peer_channel(address: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
    """A channel to another Brook process (a node, for replication, probes, offsets,
    forwarded records): TLS with this process's certificate when the cluster is secure."""
    return _peer_security.channel(address, options)
