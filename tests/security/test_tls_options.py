"""Security options without servers: how the CLI finds its credentials, what the client
and the server flags accept, and what they refuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from brook.client.cli.options import default_security
from brook.errors import BrookError
from brook.services.common.certs import CertAuthority
from brook.transport import ChannelSecurity, client_security
from tests.security.conftest import security_from_flags


def test_cli_takes_tls_from_cluster_json_for_that_cluster_only(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    tls = {"ca": "/d/ca.crt", "cert": "/d/admin.crt", "key": "/d/admin.key"}
    (tmp_path / "data" / "cluster.json").write_text(
        json.dumps({"bootstrap": "127.0.0.1:7070", "tls": tls})
    )
    found = default_security({}, tmp_path, bootstrap="127.0.0.1:7070")
    assert (found["tls_ca"], found["tls_cert"], found["tls_key"]) == (
        "/d/ca.crt", "/d/admin.crt", "/d/admin.key",
    )  # fmt: skip
    assert default_security({}, tmp_path)["tls_ca"] == "/d/ca.crt"
    assert default_security({}, tmp_path, bootstrap="10.1.1.1:7070")["tls_ca"] == ""
    env = {"BROOK_TLS_CA": "/e/ca.crt", "BROOK_TOKEN": "t0k"}
    from_env = default_security(env, tmp_path, bootstrap="127.0.0.1:7070")
    assert (from_env["tls_ca"], from_env["tls_cert"], from_env["token"]) == (
        "/e/ca.crt", "", "t0k",
    )  # fmt: skip


def test_channel_security_rules() -> None:
    assert not client_security().tls
    assert ChannelSecurity(token="abc").tls  # a token never goes out in plaintext
    with pytest.raises(ValueError, match="needs its key"):
        ChannelSecurity(ca_file="ca.crt", cert_file="a.crt")
    with pytest.raises(ValueError, match="tls=True"):
        ChannelSecurity(ca_file="ca.crt", tls=False)
    with pytest.raises(ValueError, match="either"):
        client_security(tls_ca="ca.crt", security=ChannelSecurity(ca_file="x"))


def test_channel_security_rereads_rotated_files(tmp_path: Path) -> None:
    ca = CertAuthority.create("rotation CA")
    ca_file, _ = ca.write(tmp_path, "ca")
    cert, key = ca.issue("alice", server=False).write(tmp_path, "alice")
    security = ChannelSecurity(ca_file=str(ca_file), cert_file=str(cert), key_file=str(key))
    first = security.generation
    assert security.generation == first  # unchanged files, same credentials
    ca.issue("alice", server=False).write(tmp_path, "alice")
    security._checked_s = -1e18  # skip the check interval (RELOAD_CHECK_S)
    assert security.generation == first + 1


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--tls-cert", "a.crt"], "go together"),
        (["--tls-cert", "a.crt", "--tls-key", "a.key", "--tls-client-auth", "require"],
         "needs --tls-ca"),
        (["--token-file", "t.json"], "need TLS"),
        (["--tls-client-auth", "none"], "need TLS"),
        (["--client-cert", "c.crt"], "go together"),
        (["--etcd-cert", "e.crt"], "go together"),
    ],
)  # fmt: skip
def test_server_flag_mistakes_are_config_errors(flags: list[str], words: str) -> None:
    with pytest.raises(BrookError, match=words) as failure:
        security_from_flags(flags)
    assert failure.value.reason == "INVALID_CONFIG"


def test_server_flags_check_files_and_modes(tmp_path: Path) -> None:
    ca = CertAuthority.create("flags CA")
    ca_file, _ = ca.write(tmp_path, "ca")
    cert, key = ca.issue("node-1").write(tmp_path, "node-1")
    other_cert, _ = ca.issue("node-2").write(tmp_path, "node-2")
    base = ["--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(ca_file)]
    secure = security_from_flags(base)
    assert secure.server.tls and secure.server.require_client_certificate
    assert secure.peer.tls and secure.peer.cert_file == str(cert)  # dials as itself
    with pytest.raises(BrookError, match="does not belong"):
        security_from_flags(["--tls-cert", str(other_cert), "--tls-key", str(key)])
    with pytest.raises(BrookError, match="bearer token"):
        security_from_flags([*base, "--tls-client-auth", "request"])
    with pytest.raises(BrookError, match="principal-mapping"):
        security_from_flags([*base, "--principal-mapping", "RULE:nope"])
    plain = security_from_flags([])
    assert not plain.server.tls and not plain.peer.tls and not plain.etcd.tls
