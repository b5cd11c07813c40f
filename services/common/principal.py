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

import contextvars
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from brook.errors import BrookError, Reason


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


# -- authentication (issue 11): principal mapping rules and the transport authenticator --
#
# A client certificate's principal comes from an ordered list of rules, as Kafka's
# `ssl.principal.mapping.rules` (written `--principal-mapping`, rules separated by commas,
# spaces or newlines):
#
#     RULE:<regex>/<replacement>/[L|U]
#     DEFAULT
#
# Each RULE is tried, in order, against the subject DN as RFC 4514 writes it
# ("CN=alice,O=Brook": the most specific attribute first) and then against each subject
# alternative name written as "DNS:<name>", "URI:<uri>", "email:<address>" or "IP:<ip>".
# The regex must match the whole string; the replacement may use $1..$9 (groups) and
# "\/" for a slash; L or U lower- or upper-cases the result. A result "node:<id>" or
# "user:<name>" is that principal; a result without a type is "user:<result>". The first
# rule that matches decides. DEFAULT takes the certificate's CN: "node-<id>" (digits)
# maps to node:<id> (the storage nodes' convention: a node's certificate has CN node-<id>),
# any other CN to user:<CN>. With no rule matching (no DEFAULT at the end, or no CN), the
# call is UNAUTHENTICATED. The default rule list is "DEFAULT".

DEFAULT_MAPPING = "DEFAULT"
NODE_CN_PREFIX = "node-"
# Certificate identities whose principal is cached (the mapping is pure).
MAPPED_CACHE_MAX = 4096


@dataclass(frozen=True, slots=True)
class MappingRule:
    """One rule: `pattern` None is DEFAULT."""

    pattern: re.Pattern[str] | None
    replacement: str = ""
    case: str = ""  # "", "L" or "U"

    def apply(self, subject: str, sans: Sequence[str], common_name: str) -> Principal | None:
        if self.pattern is None:
            return default_principal(common_name)
        for candidate in (subject, *sans):
            match = self.pattern.fullmatch(candidate)
            if match is None:
                continue
            result = _expand(match, self.replacement)
            if self.case == "L":
                result = result.lower()
            elif self.case == "U":
                result = result.upper()
            if result:
                return _principal_from_result(result)
        return None


def default_principal(common_name: str) -> Principal | None:
    """The DEFAULT rule: CN node-<digits> -> node:<digits>; other CNs -> user:<CN>."""
    if not common_name:
        return None
    suffix = common_name.removeprefix(NODE_CN_PREFIX)
    if suffix != common_name and suffix.isdigit() and suffix.isascii():
        return Principal("node", str(int(suffix)))
    return Principal("user", common_name)


def _principal_from_result(result: str) -> Principal:
    kind, sep, name = result.partition(":")
    if sep and kind in ("user", "node") and name:
        if kind == "node" and not (name.isdigit() and name.isascii()):
            raise ValueError(f"mapping produced {result!r}: a node principal is node:<id>")
        return Principal(kind, str(int(name)) if kind == "node" else name)
    return Principal("user", result)


_GROUP_REFERENCE = re.compile(r"\$(\d)|\\(.)")


def _expand(match: re.Match[str], replacement: str) -> str:
    def substitute(ref: re.Match[str]) -> str:
        if ref.group(1) is not None:
            index = int(ref.group(1))
            if index > (match.re.groups or 0):
                raise ValueError(f"replacement {replacement!r} names group {index}")
            return match.group(index) or ""
        return ref.group(2)

    return _GROUP_REFERENCE.sub(substitute, replacement)


def _read_until_slash(text: str, start: int) -> tuple[str, int]:
    """Text up to the next unescaped "/" (escapes kept, except "\\/" -> "/" is left for the
    caller), and the index after that slash; ValueError when there is none."""
    out = []
    index = start
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            out.append(text[index : index + 2])
            index += 2
            continue
        if char == "/":
            return "".join(out), index + 1
        out.append(char)
        index += 1
    raise ValueError(f"mapping rule at {start}: missing '/'")


def parse_mapping_rules(text: str) -> tuple[MappingRule, ...]:
    """Parses `--principal-mapping` (see above); ValueError names what is wrong."""
    rules: list[MappingRule] = []
    index = 0
    separators = " \t\r\n,"
    while True:
        while index < len(text) and text[index] in separators:
            index += 1
        if index >= len(text):
            break
        if text.startswith("DEFAULT", index):
            rules.append(MappingRule(None))
            index += len("DEFAULT")
        elif text.startswith("RULE:", index):
            pattern, index = _read_until_slash(text, index + len("RULE:"))
            replacement, index = _read_until_slash(text, index)
            case = ""
            if index < len(text) and text[index] in "LU":
                case = text[index]
                index += 1
            try:
                compiled = re.compile(pattern.replace("\\/", "/"))
            except re.error as error:
                raise ValueError(f"mapping rule regex {pattern!r}: {error}") from None
            rules.append(MappingRule(compiled, replacement, case))
        else:
            raise ValueError(
                f"principal mapping at {index}: expected RULE:<regex>/<replacement>/[L|U] or "
                f"DEFAULT, got {text[index : index + 20]!r}"
            )
        if index < len(text) and text[index] not in separators:
            raise ValueError(f"principal mapping at {index}: unexpected {text[index]!r}")
    if not rules:
        raise ValueError("principal mapping names no rule (use DEFAULT)")
    return tuple(rules)


def map_certificate(
    rules: Sequence[MappingRule], subject: str, sans: Sequence[str] = (), common_name: str = ""
) -> Principal | None:
    """The principal of a certificate (subject DN, typed SANs, CN), or None: no rule
    matched."""
    for rule in rules:
        principal = rule.apply(subject, sans, common_name)
        if principal is not None:
            return principal
    return None


class TokenVerifier(Protocol):
    """Checks a bearer token; raises BrookError UNAUTHENTICATED when it is not valid."""

    def verify(self, token: str) -> Principal: ...


def unauthenticated(message: str) -> BrookError:
    return BrookError(Reason.UNAUTHENTICATED, message)


_SAN_PREFIXES = (
    ("peer_dns", "DNS:"),
    ("peer_uri", "URI:"),
    ("peer_email", "email:"),
    ("peer_ip", "IP:"),
)
# The call's (context, principal) once the server interceptor authenticated it, so the
# authorizer's `principal_of` does not authenticate twice. Each RPC runs in its own task
# with its own copy of the context variables.
_CALL_PRINCIPAL: contextvars.ContextVar[tuple[object, Principal] | None] = contextvars.ContextVar(
    "brook_call_principal", default=None
)


def remember_principal(context: object, principal: Principal) -> None:
    """Called by the server interceptor after authenticating the call."""
    _CALL_PRINCIPAL.set((context, principal))


class TransportAuthenticator:
    """The Authenticator of a TLS server: a bearer token (when the call has one) names the
    principal, else the client certificate through the mapping rules, else the call is
    anonymous where `require_authentication` is off, and UNAUTHENTICATED where it is on.
    A token on a server that accepts none, an invalid token and a certificate no rule maps
    are UNAUTHENTICATED."""

    def __init__(
        self,
        *,
        rules: Sequence[MappingRule] = (MappingRule(None),),
        tokens: TokenVerifier | None = None,
        require_authentication: bool = True,
    ) -> None:
        self.rules = tuple(rules)
        self.tokens = tokens
        self.require_authentication = require_authentication
        self._mapped: dict[tuple[bytes, ...], Principal | None] = {}

    def authenticate(self, context: grpc.aio.ServicerContext) -> Principal:
        cached = _CALL_PRINCIPAL.get()
        if cached is not None and cached[0] is context:
            return cached[1]
        token = bearer_token(context.invocation_metadata() or ())
        if token is not None:
            if self.tokens is None:
                raise unauthenticated("this server accepts no bearer tokens")
            return self.tokens.verify(token)
        auth = context.auth_context()
        subjects = auth.get("x509_subject")
        if subjects:
            principal = self._map(auth)
            if principal is None:
                raise unauthenticated(
                    f"no principal mapping rule matched the client certificate "
                    f"{subjects[0].decode(errors='replace')!r}"
                )
            return principal
        if self.require_authentication:
            raise unauthenticated("the call has no client certificate and no bearer token")
        return ANONYMOUS

    def authenticate_http(
        self, authorization: str | None, peer_certificate_der: bytes | None
    ) -> Principal:
        """The same decision for an HTTP request (/metrics, the console): its
        Authorization header, else the client certificate TLS verified, else anonymous
        or UNAUTHENTICATED as for a call."""
        if authorization is not None:
            token = bearer_token((("authorization", authorization),))
            if token is not None:
                if self.tokens is None:
                    raise unauthenticated("this server accepts no bearer tokens")
                return self.tokens.verify(token)
        if peer_certificate_der:
            principal = self._map(certificate_auth_context(peer_certificate_der))
            if principal is None:
                raise unauthenticated("no principal mapping rule matched the client certificate")
            return principal
        if self.require_authentication:
            raise unauthenticated("the request has no client certificate and no bearer token")
        return ANONYMOUS

    def _map(self, auth: Mapping[str, Sequence[bytes]]) -> Principal | None:
        subject = auth.get("x509_subject", [b""])[0]
        common_name = (auth.get("x509_common_name") or [b""])[0]
        key: list[bytes] = [subject, common_name]
        sans: list[str] = []
        for prop, prefix in _SAN_PREFIXES:
            for value in auth.get(prop, ()):
                key.append(prefix.encode() + value)
                sans.append(prefix + value.decode(errors="replace"))
        cache_key = tuple(key)
        if cache_key in self._mapped:
            return self._mapped[cache_key]
        try:
            principal = map_certificate(
                self.rules, subject.decode(errors="replace"), sans,
                common_name.decode(errors="replace"),
            )  # fmt: skip
        except ValueError:  # a rule produced an unusable principal
            principal = None
        if len(self._mapped) >= MAPPED_CACHE_MAX:
            self._mapped.clear()
        self._mapped[cache_key] = principal
        return principal


def certificate_auth_context(der: bytes) -> dict[str, list[bytes]]:
    """A certificate's identity in the shape of gRPC's auth context (x509_subject as RFC
    4514 writes it, x509_common_name, peer_dns/uri/email/ip), so HTTP listeners map it
    with the same rules as calls."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_der_x509_certificate(der)
    auth: dict[str, list[bytes]] = {"x509_subject": [cert.subject.rfc4514_string().encode()]}
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if names:
        auth["x509_common_name"] = [str(names[0].value).encode()]
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return auth
    for prop, kind in (("peer_dns", x509.DNSName), ("peer_uri", x509.UniformResourceIdentifier),
                       ("peer_email", x509.RFC822Name), ("peer_ip", x509.IPAddress)):  # fmt: skip
        values = [str(v).encode() for v in sans.get_values_for_type(kind)]  # type: ignore[attr-defined]
        if values:
            auth[prop] = values
    return auth


def bearer_token(metadata: Iterable[tuple[str, Any]]) -> str | None:
    """The token of an `authorization: Bearer <token>` header, None without one; a
    malformed header is UNAUTHENTICATED."""
    for key, value in metadata:
        if key != "authorization":
            continue
        text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
        scheme, _, token = text.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthenticated("the authorization header is not 'Bearer <token>'")
        return token.strip()
    return None
