"""Call authentication on a real TLS listener (in-process server, loopback): client
certificates, static bearer tokens and JWTs checked against a JWKS, and what is refused.

Refusals come in two kinds, and each test says which:
- TLS failures (the handshake fails; the client sees UNAVAILABLE with no ErrorInfo):
  plaintext to a TLS port, no client certificate where one is required, a certificate
  from another CA;
- UNAUTHENTICATED with google.rpc.ErrorInfo reason UNAUTHENTICATED (the call reached the
  server, its handler never ran): a missing, unknown, expired, wrong-audience or
  wrong-key token, a certificate no mapping rule maps.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from grpc_health.v1 import health_pb2, health_pb2_grpc

from brook.errors import Reason, from_rpc_error
from brook.services.common.certs import CertAuthority
from brook.transport import ChannelSecurity
from tests.security.conftest import WhoamiServer

ISSUER = "https://issuer.test"
AUDIENCE = "brook"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def write_jwks(path: Path, keys: dict[str, rsa.RSAPrivateKey]) -> Path:
    jwks = []
    for kid, key in keys.items():
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        jwks.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
    path.write_text(json.dumps({"keys": jwks}))
    return path


def make_jwt(key: rsa.RSAPrivateKey, kid: str = "k1", **overrides: Any) -> str:
    now = int(time.time())
    claims = {"sub": "carol", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300}
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


@pytest.fixture
def signing_key() -> rsa.RSAPrivateKey:
    return rsa_key()


@pytest.fixture
def server_files(
    tmp_path: Path, ca: CertAuthority, signing_key: rsa.RSAPrivateKey
) -> dict[str, str]:
    tls = tmp_path / "tls"
    cert, key = ca.issue("server").write(tls, "server")
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"tokens": {"s3cret-bob": "user:bob", "s3cret-n7": "node:7"}}))
    jwks = write_jwks(tmp_path / "jwks.json", {"k1": signing_key})
    return {"cert": str(cert), "key": str(key), "ca": str(tls / "ca.crt"),
            "tokens": str(tokens), "jwks": str(jwks)}  # fmt: skip


def client(files: dict[str, str], **kwargs: Any) -> ChannelSecurity:
    return ChannelSecurity(ca_file=files["ca"], **kwargs)


async def refused_with(server: WhoamiServer, security: ChannelSecurity) -> grpc.aio.AioRpcError:
    async with security.channel(server.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await server.who(channel)
    return failure.value


def assert_unauthenticated(error: grpc.aio.AioRpcError, words: str) -> None:
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED, error
    brook_error = from_rpc_error(error)  # reads the google.rpc.ErrorInfo of the status
    assert brook_error.reason is Reason.UNAUTHENTICATED, brook_error
    assert words in brook_error.message, brook_error.message


async def test_tokens_and_jwts_name_the_principal_or_are_refused(
    whoami_servers: Any,
    server_files: dict[str, str],
    signing_key: rsa.RSAPrivateKey,
) -> None:
    """`--tls-client-auth request`: no client certificate needed, every call but health
    needs a bearer token: a static one or a JWT (iss, aud, exp checked)."""
    files = server_files
    server = await whoami_servers([
        "--tls-cert", files["cert"], "--tls-key", files["key"], "--tls-ca", files["ca"],
        "--tls-client-auth", "request", "--token-file", files["tokens"],
        "--jwks-file", files["jwks"], "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE,
    ])  # fmt: skip

    async def who(token: str) -> str:
        async with client(files, token=token).channel(server.address) as channel:
            return await server.who(channel)

    assert await who("s3cret-bob") == "user:bob"
    assert await who("s3cret-n7") == "node:7"
    assert await who(make_jwt(signing_key)) == "user:carol"

    assert_unauthenticated(await refused_with(server, client(files)), "no client certificate")
    assert_unauthenticated(
        await refused_with(server, client(files, token="s3cret-bobX")), "unknown bearer token"
    )
    expired = make_jwt(signing_key, iat=int(time.time()) - 600, exp=int(time.time()) - 120)
    assert_unauthenticated(await refused_with(server, client(files, token=expired)), "expired")
    other_audience = make_jwt(signing_key, aud="someone-else")
    assert_unauthenticated(
        await refused_with(server, client(files, token=other_audience)), "audience"
    )
    other_issuer = make_jwt(signing_key, iss="https://elsewhere.test")
    assert_unauthenticated(await refused_with(server, client(files, token=other_issuer)), "issuer")
    wrong_key = make_jwt(rsa_key())  # same kid, another key
    assert_unauthenticated(await refused_with(server, client(files, token=wrong_key)), "signature")
    unknown_kid = make_jwt(signing_key, kid="k2")
    assert_unauthenticated(
        await refused_with(server, client(files, token=unknown_kid)), "not in the JWKS"
    )
    not_yet = make_jwt(signing_key, nbf=int(time.time()) + 600)
    assert_unauthenticated(await refused_with(server, client(files, token=not_yet)), "not valid")
    no_expiry = make_jwt(signing_key, exp=None)
    assert_unauthenticated(await refused_with(server, client(files, token=no_expiry)), "exp")

    # Health answers without credentials (probes), over TLS all the same.
    async with client(files).channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_token_and_jwks_files_are_reloaded(
    whoami_servers: Any,
    server_files: dict[str, str],
    signing_key: rsa.RSAPrivateKey,
    tmp_path: Path,
) -> None:
    """A new token file and a new JWKS key take effect without a restart."""
    from tests.harness.wait import eventually

    files = server_files
    server = await whoami_servers([
        "--tls-cert", files["cert"], "--tls-key", files["key"], "--tls-ca", files["ca"],
        "--tls-client-auth", "request", "--token-file", files["tokens"],
        "--jwks-file", files["jwks"],
    ])  # fmt: skip
    new_key = rsa_key()
    tokens_file, jwks_file = Path(files["tokens"]), Path(files["jwks"])
    tokens_file.write_text(json.dumps({"tokens": {"fresh": "user:dave"}}))  # noqa: ASYNC240
    write_jwks(jwks_file, {"k1": signing_key, "k2": new_key})

    async def who(token: str) -> str:
        async with client(files, token=token).channel(server.address) as channel:
            return await server.who(channel)

    assert await eventually(lambda: who("fresh"), timeout_s=10) == "user:dave"
    assert await who(make_jwt(new_key, kid="k2")) == "user:carol"
    assert_unauthenticated(
        await refused_with(server, client(files, token="s3cret-bob")), "unknown bearer token"
    )


async def test_mtls_principals_and_tls_refusals(
    whoami_servers: Any, server_files: dict[str, str], ca: CertAuthority, tmp_path: Path
) -> None:
    """`--tls-client-auth require` (the default with --tls-ca): the certificate's CN maps
    through DEFAULT; a token, when sent as well, names the principal instead. No
    certificate, another CA's certificate and plaintext fail the TLS handshake."""
    files = server_files
    server = await whoami_servers([
        "--tls-cert", files["cert"], "--tls-key", files["key"], "--tls-ca", files["ca"],
        "--token-file", files["tokens"],
    ])  # fmt: skip
    tls = tmp_path / "tls"
    alice_cert, alice_key = ca.issue("alice", server=False).write(tls, "alice")
    node_cert, node_key = ca.issue("node-3").write(tls, "node-3")
    alice = client(files, cert_file=str(alice_cert), key_file=str(alice_key))
    async with alice.channel(server.address) as channel:
        assert await server.who(channel) == "user:alice"
    node = client(files, cert_file=str(node_cert), key_file=str(node_key))
    async with node.channel(server.address) as channel:
        assert await server.who(channel) == "node:3"
    with_token = client(
        files, cert_file=str(alice_cert), key_file=str(alice_key), token="s3cret-bob"
    )
    async with with_token.channel(server.address) as channel:
        assert await server.who(channel) == "user:bob"
    bad_token = client(files, cert_file=str(alice_cert), key_file=str(alice_key), token="nope")
    assert_unauthenticated(await refused_with(server, bad_token), "unknown bearer token")

    # TLS failures: the call never reaches Brook, so there is no ErrorInfo.
    other_ca = CertAuthority.create("another CA")
    mallory_cert, mallory_key = other_ca.issue("alice").write(tls, "mallory")
    for security in (
        client(files),  # no client certificate
        client(files, cert_file=str(mallory_cert), key_file=str(mallory_key)),
        ChannelSecurity.plaintext(),
    ):
        error = await refused_with(server, security)
        assert error.code() is grpc.StatusCode.UNAVAILABLE, (security, error)
        assert from_rpc_error(error).reason is Reason.TRANSPORT


async def test_certificate_no_rule_maps_is_unauthenticated(
    whoami_servers: Any, server_files: dict[str, str], ca: CertAuthority, tmp_path: Path
) -> None:
    """Custom mapping rules: OU=eng certificates map to lower-cased users, SPIFFE nodes to
    node:<id>; a valid certificate no rule maps is UNAUTHENTICATED (no DEFAULT)."""
    files = server_files
    rules = (
        r"RULE:^CN=([^,]+),O=Eng$/$1/L, "
        r"RULE:^URI:spiffe:\/\/brook\/node\/([0-9]+)$/node:$1/"
    )
    server = await whoami_servers([
        "--tls-cert", files["cert"], "--tls-key", files["key"], "--tls-ca", files["ca"],
        "--principal-mapping", rules,
    ])  # fmt: skip
    tls = tmp_path / "tls"

    async def who_with(issued_name: str, **issue: Any) -> str | grpc.aio.AioRpcError:
        cert, key = ca.issue(**issue).write(tls, issued_name)
        security = client(files, cert_file=str(cert), key_file=str(key))
        async with security.channel(server.address) as channel:
            try:
                return await server.who(channel)
            except grpc.aio.AioRpcError as error:
                return error

    assert await who_with("eve", common_name="Eve", organization="Eng", server=False) == "user:eve"
    spiffe = await who_with(
        "n9", common_name="whatever", extra_sans=["spiffe://brook/node/9"], server=False
    )
    assert spiffe == "node:9"
    refused = await who_with("alice", common_name="alice", server=False)
    assert isinstance(refused, grpc.aio.AioRpcError)
    assert_unauthenticated(refused, "no principal mapping rule matched")
