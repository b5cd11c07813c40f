"""Bearer tokens (issue 11): a static token file and JWTs checked against a JWKS file.

A call carries `authorization: Bearer <token>` (gRPC call credentials;
`brook.transport.ChannelSecurity(token=...)`). `BearerTokens.verify` returns its
principal or raises BrookError UNAUTHENTICATED:

- `--token-file F`: JSON `{"tokens": {"<token>": "user:alice", ...}}`. The token is
  compared with every entry in constant time (`hmac.compare_digest`, no early exit), so
  timing tells nothing about which token is close. Values are principals (`user:NAME`
  or `node:ID`).
- `--jwks-file F` (+ `--jwt-issuer`, `--jwt-audience`): a JWT (three dot-separated
  parts) is checked with PyJWT against the key of its `kid` (or the only key) in the
  JWKS: signature (asymmetric algorithms only: RS*/PS*/ES*/EdDSA, never `none` or HMAC),
  `exp` required, `nbf` and `iat` honoured, `iss` and `aud` checked when configured,
  with `JWT_LEEWAY_S` of clock skew. The principal is `user:<sub>`.

Both files are re-read when they change (checked at most every `RELOAD_CHECK_S`; a file
that fails to parse keeps the previous contents and is logged), so tokens and keys rotate
without a restart.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

import jwt

from brook.errors import BrookError
from brook.services.common.principal import Principal, unauthenticated
from brook.transport import file_signature

log = logging.getLogger("brook.tokens")

RELOAD_CHECK_S = 1.0
JWT_LEEWAY_S = 30.0
# Bounds on what a caller can make us parse.
TOKEN_CHARS_MAX = 8192
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)

T = TypeVar("T")


class _ReloadingFile(Generic[T]):
    """A parsed file, re-parsed when its signature changes (at most every RELOAD_CHECK_S)."""

    def __init__(self, path: str, parse: Callable[[bytes], T]) -> None:
        self.path = path
        self._parse = parse
        self._lock = threading.Lock()
        self._signature = file_signature([path])
        self._value = parse(Path(path).read_bytes())  # a bad file fails the start
        self._checked_s = time.monotonic()

    def get(self) -> T:
        now = time.monotonic()
        if now - self._checked_s < RELOAD_CHECK_S:
            return self._value
        with self._lock:
            self._checked_s = now
            signature = file_signature([self.path])
            if signature != self._signature:
                self._signature = signature
                try:
                    self._value = self._parse(Path(self.path).read_bytes())
                    log.info("reloaded %s", self.path)
                except (OSError, ValueError) as error:
                    log.error("%s changed but cannot be used (%s); keeping the previous one",
                              self.path, error)  # fmt: skip
            return self._value


def parse_token_file(data: bytes) -> list[tuple[bytes, Principal]]:
    document = json.loads(data)
    tokens = document.get("tokens") if isinstance(document, dict) else None
    if not isinstance(tokens, dict):
        raise ValueError('token file: expected {"tokens": {"<token>": "user:NAME", ...}}')
    entries = []
    for token, principal in tokens.items():
        if not isinstance(token, str) or not token or not isinstance(principal, str):
            raise ValueError("token file: every token maps to a principal string")
        entries.append((token.encode(), Principal.parse(principal)))
    return entries


def parse_jwks(data: bytes) -> jwt.PyJWKSet:
    try:
        keys = jwt.PyJWKSet.from_json(data.decode())
    except (jwt.PyJWKSetError, jwt.InvalidKeyError, UnicodeDecodeError) as error:
        raise ValueError(f"JWKS: {error}") from None
    return keys


class StaticTokens:
    def __init__(self, path: str) -> None:
        self._file = _ReloadingFile(path, parse_token_file)

    def lookup(self, token: str) -> Principal | None:
        presented = token.encode()
        found: Principal | None = None
        for known, principal in self._file.get():
            # No early exit: every entry is compared, whatever matched.
            if hmac.compare_digest(presented, known):
                found = principal
        return found


class JwtVerifier:
    def __init__(
        self,
        jwks_path: str,
        *,
        issuer: str | None = None,
        audience: str | None = None,
        leeway_s: float = JWT_LEEWAY_S,
    ) -> None:
        self._keys = _ReloadingFile(jwks_path, parse_jwks)
        self.issuer = issuer or None
        self.audience = audience or None
        self.leeway_s = leeway_s

    def _key_for(self, token: str) -> tuple[Any, str]:
        header = jwt.get_unverified_header(token)
        keys = self._keys.get()
        kid = header.get("kid")
        candidates = [k for k in keys.keys if kid is None or k.key_id == kid]
        if kid is None and len(candidates) != 1:
            raise unauthenticated("the JWT names no key id (kid) and the JWKS has several keys")
        if not candidates:
            raise unauthenticated(f"the JWT's key id {kid!r} is not in the JWKS")
        key = candidates[0]
        algorithm = header.get("alg", "")
        if algorithm not in ASYMMETRIC_ALGORITHMS:
            raise unauthenticated(f"JWT algorithm {algorithm!r} is not accepted")
        if key.algorithm_name and key.algorithm_name != algorithm:
            raise unauthenticated(f"JWT algorithm {algorithm!r} does not fit key {kid!r}")
        return key.key, algorithm

    def verify(self, token: str) -> Principal:
        try:
            key, algorithm = self._key_for(token)
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": self.audience is not None,
                    "verify_iss": self.issuer is not None,
                },
            )
        except jwt.ExpiredSignatureError:
            raise unauthenticated("the JWT has expired") from None
        except jwt.ImmatureSignatureError:
            raise unauthenticated("the JWT is not valid yet (nbf/iat)") from None
        except jwt.InvalidAudienceError:
            raise unauthenticated("the JWT is not for this audience") from None
        except jwt.InvalidIssuerError:
            raise unauthenticated("the JWT is from another issuer") from None
        except jwt.InvalidSignatureError:
            raise unauthenticated("the JWT's signature does not verify") from None
        except jwt.PyJWTError as error:
            raise unauthenticated(f"invalid JWT: {error}") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise unauthenticated("the JWT has no subject")
        return Principal("user", subject)


class BearerTokens:
    """The server's TokenVerifier: static tokens first, then JWTs."""

    def __init__(self, static: StaticTokens | None, jwts: JwtVerifier | None) -> None:
        if static is None and jwts is None:
            raise ValueError("no token source")
        self.static = static
        self.jwts = jwts

    def verify(self, token: str) -> Principal:
        if len(token) > TOKEN_CHARS_MAX:
            raise unauthenticated(f"bearer token over {TOKEN_CHARS_MAX} characters")
        if self.static is not None:
            principal = self.static.lookup(token)
            if principal is not None:
                return principal
        if self.jwts is not None and token.count(".") == 2:
            return self.jwts.verify(token)
        raise unauthenticated("unknown bearer token")


def bearer_tokens(
    token_file: str | None,
    jwks_file: str | None,
    issuer: str | None = None,
    audience: str | None = None,
) -> BearerTokens | None:
    """The verifier for the configured files, or None when neither is given."""
    if not token_file and not jwks_file:
        return None
    try:
        static = StaticTokens(token_file) if token_file else None
        jwts = JwtVerifier(jwks_file, issuer=issuer, audience=audience) if jwks_file else None
    except (OSError, ValueError) as error:
        raise BrookError("INVALID_CONFIG", f"cannot load token settings: {error}") from None
    return BearerTokens(static, jwts)
