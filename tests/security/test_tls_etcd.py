"""Brook against an etcd that speaks TLS only (a real etcd-server started with --cert-file
--key-file --trusted-ca-file --client-cert-auth): MetadataStore and a coordinator process
connect with a client certificate; without one, or in plaintext, they cannot; etcd auth
with a user and password file works over TLS."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from brook.client import Admin
from brook.errors import BrookError
from brook.services.common.certs import CertAuthority
from brook.services.common.tls import EtcdSecurity
from brook.services.metadata.store import MetadataStore
from tests.harness.cluster import LocalCluster
from tests.harness.etcd import EtcdServer, EtcdTls
from tests.harness.wait import eventually
from tests.node.cluster_helpers import FAST_NODE_ARGS

pytestmark = pytest.mark.integration


@pytest.fixture
def etcd_pki(tmp_path: Path) -> dict[str, Path]:
    ca = CertAuthority.create("etcd test CA")
    tls = tmp_path / "etcd-tls"
    ca_file, _ = ca.write(tls, "ca")
    server_cert, server_key = ca.issue("etcd").write(tls, "etcd")
    # etcd's --client-cert-auth takes the etcd user from the CN (with auth enabled).
    client_cert, client_key = ca.issue("root", server=False).write(tls, "brook")
    return {"ca": ca_file, "cert": server_cert, "key": server_key,
            "client_cert": client_cert, "client_key": client_key}  # fmt: skip


def start_etcd(tmp_path: Path, pki: dict[str, Path], client_cert_auth: bool) -> EtcdServer:
    tls = EtcdTls(
        pki["ca"], pki["cert"], pki["key"], pki["client_cert"], pki["client_key"],
        client_cert_auth=client_cert_auth,
    )  # fmt: skip
    server = EtcdServer(tmp_path / "tls-etcd", tls=tls)
    server.start()
    return server


@pytest.fixture
def tls_etcd(tmp_path: Path, etcd_pki: dict[str, Path]) -> Iterator[EtcdServer]:
    server = start_etcd(tmp_path, etcd_pki, client_cert_auth=True)
    try:
        yield server
    finally:
        server.stop()


async def connects(address: str, security: EtcdSecurity | None, cluster_name: str) -> str:
    store = MetadataStore(
        address, cluster_name=cluster_name, request_timeout_s=1.0, security=security
    )
    try:
        await store.connect(timeout_s=1.5)
        return await store.cluster_id()
    finally:
        await store.close()


async def test_metadata_store_needs_tls_and_a_client_certificate(
    tls_etcd: EtcdServer, etcd_pki: dict[str, Path], cluster_name: str
) -> None:
    secure = EtcdSecurity(
        ca_file=str(etcd_pki["ca"]),
        cert_file=str(etcd_pki["client_cert"]),
        key_file=str(etcd_pki["client_key"]),
    )
    assert await connects(tls_etcd.address, secure, cluster_name)
    for refused in (None, EtcdSecurity(ca_file=str(etcd_pki["ca"]))):
        with pytest.raises(BrookError, match=r"COORDINATOR_NOT_AVAILABLE|connect"):
            await connects(tls_etcd.address, refused, cluster_name)


async def test_coordinator_process_over_etcd_tls(
    tls_etcd: EtcdServer,
    etcd_pki: dict[str, Path],
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """A secure cluster (TLS + mTLS on the Brook side) whose etcd is TLS + client
    certificates too: the coordinator and a node (whose lease keeper has its own etcd
    client) start, the node registers, a topic is created and led."""
    cluster = local_cluster(
        etcd=tls_etcd.address,
        secure=True,
        etcd_args=["--etcd-ca", str(etcd_pki["ca"]), "--etcd-cert",
                   str(etcd_pki["client_cert"]), "--etcd-key", str(etcd_pki["client_key"])],
    )  # fmt: skip
    cluster.add_coordinator()
    cluster.add_node(1, args=FAST_NODE_ARGS)
    cluster.start()
    creds = cluster.client_security("user:admin")
    async with Admin(cluster.address("coordinator"), **creds.kwargs) as admin:

        async def registered() -> bool:
            return len((await admin.describe_cluster()).nodes) == 1

        await eventually(registered, timeout_s=30, what="node 1 registered through TLS etcd")
        await admin.create_topic("t", 1, 1, wait_for_leaders=True, timeout_ms=20_000)


def etcdctl(server: EtcdServer, pki: dict[str, Path], *args: str) -> None:
    subprocess.run(
        ["etcdctl", "--endpoints", f"https://{server.address}", "--cacert", str(pki["ca"]),
         "--cert", str(pki["client_cert"]), "--key", str(pki["client_key"]), *args],
        check=True, capture_output=True, timeout=20,
        env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin:/usr/local/bin"},
    )  # fmt: skip


async def test_etcd_user_and_password_over_tls(
    tmp_path: Path, etcd_pki: dict[str, Path], cluster_name: str
) -> None:
    """etcd auth on (TLS, no client-certificate auth): --etcd-user with
    --etcd-password-file connects; the same TLS without the user is refused."""
    server = start_etcd(tmp_path, etcd_pki, client_cert_auth=False)
    try:
        etcdctl(server, etcd_pki, "user", "add", "root:rootpw", "--interactive=false")
        etcdctl(server, etcd_pki, "user", "add", "brook:brookpw", "--interactive=false")
        etcdctl(server, etcd_pki, "user", "grant-role", "brook", "root")
        etcdctl(server, etcd_pki, "auth", "enable")
        password_file = tmp_path / "etcd-password"
        password_file.write_text("brookpw\n")
        with_user = EtcdSecurity(
            ca_file=str(etcd_pki["ca"]), user="brook", password_file=str(password_file)
        )
        assert await connects(server.address, with_user, cluster_name)
        without_user = EtcdSecurity(ca_file=str(etcd_pki["ca"]))
        with pytest.raises(Exception, match=r"(?i)permission|auth|token|user"):
            await connects(server.address, without_user, cluster_name)
    finally:
        server.stop()
