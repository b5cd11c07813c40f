"""The HTTP listeners of a secure cluster (issue 11, "TLS on every listener"): /metrics of
every process and the coordinator's console speak HTTPS with the process's certificate
(re-read on rotation), authenticate like gRPC (client certificate or bearer token) and
answer each principal only what its ACLs grant. Real processes, real TLS, stdlib clients."""

from __future__ import annotations

import asyncio
import functools
import http.client
import json
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from brook.client import Admin
from brook.client.admin import acl_binding
from tests.harness.cluster import ClientCredentials, LocalCluster
from tests.harness.secure import ADMIN, AUTHZ_ARGS, grant
from tests.harness.wait import eventually
from tests.node.cluster_helpers import FAST_NODE_ARGS

pytestmark = pytest.mark.integration

HTTP_ARGS = ["--metrics-listen", "127.0.0.1:0"]
CONSOLE_ARGS = ["--console-listen", "127.0.0.1:0"]
TIMEOUT_S = 10.0
# The console reads with the coordinator's own credentials (then filters per viewer): its
# principal is a super user, as `brook dev --secure` makes it.
SECURE_ARGS = ["--authorizer", "acl", "--super-users", f"{ADMIN},user:coordinator"]


class Answer:
    def __init__(self, status: int, body: str, server_serial: int) -> None:
        self.status, self.body, self.server_serial = status, body, server_serial


def _context(ca: str, creds: ClientCredentials | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca)
    if creds is not None and creds.tls_cert and creds.tls_key:
        context.load_cert_chain(creds.tls_cert, creds.tls_key)
    return context


def https_get(
    address: str, path: str, ca: str, creds: ClientCredentials | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:  # fmt: skip
    host, _, port = address.rpartition(":")
    connection = http.client.HTTPSConnection(
        host, int(port), context=_context(ca, creds), timeout=TIMEOUT_S
    )
    try:
        connection.connect()
        der = connection.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
        serial = x509.load_der_x509_certificate(der).serial_number
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return Answer(response.status, response.read().decode(errors="replace"), serial)
    finally:
        connection.close()


def http_get(address: str, path: str) -> int:
    host, _, port = address.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT_S)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


def refused(call: Callable[[], object]) -> bool:
    """True when the server would not talk: a TLS alert or a closed connection."""
    try:
        call()
    except (ssl.SSLError, ConnectionError, http.client.HTTPException, OSError):
        return True
    return False


@pytest.fixture
def secure_cluster(local_cluster: Callable[..., LocalCluster]) -> LocalCluster:
    cluster = local_cluster(secure=True, security_args=SECURE_ARGS)
    cluster.add_coordinator(args=[*HTTP_ARGS, *CONSOLE_ARGS])
    cluster.add_node(1, args=[*FAST_NODE_ARGS, *HTTP_ARGS])
    cluster.start(["coordinator"])
    return cluster


def info(cluster: LocalCluster, name: str, key: str) -> str:
    return str(cluster.processes[name].info[key])


async def test_metrics_need_tls_a_known_principal_and_describe_on_the_cluster(
    secure_cluster: LocalCluster,
) -> None:
    cluster = secure_cluster
    alice = await grant(cluster, [("describe", "cluster", "")], "user:alice")
    bob = cluster.client_security("user:bob")  # CA-signed, no ACL
    cluster.start(["node-1"])
    ca = str(cluster.ca_file)
    for name in ("coordinator", "node-1"):
        address = info(cluster, name, "metrics_address")
        assert refused(functools.partial(http_get, address, "/metrics")), "plaintext answered"
        assert refused(functools.partial(https_get, address, "/metrics", ca)), "no cert answered"
        denied = await asyncio.to_thread(https_get, address, "/metrics", ca, bob)
        assert denied.status == 403, denied.body
        assert "describe" in denied.body and "user:bob" in denied.body
        allowed = await asyncio.to_thread(https_get, address, "/metrics", ca, alice)
        assert allowed.status == 200, allowed.body
        names = {f.name for f in text_string_to_metric_families(allowed.body)}
        assert "brook_build_info" in names


async def test_metrics_accept_a_bearer_token_and_refuse_a_bad_one(
    local_cluster: Callable[..., LocalCluster], tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"tokens": {"s3cret-scraper": "user:prometheus",
                                             "s3cret-admin": ADMIN}}))
    cluster = local_cluster(
        secure=True,
        security_args=[*AUTHZ_ARGS, "--token-file", str(tokens), "--tls-client-auth", "request"],
    )
    cluster.add_coordinator(args=HTTP_ARGS)
    cluster.start(["coordinator"])
    admin_creds = ClientCredentials(str(cluster.ca_file), token="s3cret-admin")
    async with Admin(cluster.address("coordinator"), **admin_creds.kwargs) as admin:
        await admin.create_acls([acl_binding("user:prometheus", "describe", "cluster")])
    ca, address = str(cluster.ca_file), info(cluster, "coordinator", "metrics_address")
    good = {"Authorization": "Bearer s3cret-scraper"}
    answer = await asyncio.to_thread(https_get, address, "/metrics", ca, None, good)
    assert answer.status == 200
    bad = await asyncio.to_thread(
        https_get, address, "/metrics", ca, None, {"Authorization": "Bearer wrong"}
    )
    assert bad.status == 401, bad.body
    none = await asyncio.to_thread(https_get, address, "/metrics", ca)
    assert none.status == 401


async def test_console_shows_each_viewer_what_its_acls_grant(secure_cluster: LocalCluster) -> None:
    cluster = secure_cluster
    alice = await grant(
        cluster,
        [("describe", "cluster", ""), ("describe", "topic", "team-a"), ("read", "topic", "team-a")],
        "user:alice",
    )
    bob = cluster.client_security("user:bob")
    cluster.start(["node-1"])
    admin_creds = cluster.client_security(ADMIN)
    async with Admin(cluster.address("coordinator"), **admin_creds.kwargs) as admin:
        await eventually(lambda: _nodes(admin), timeout_s=30, what="node 1 registered")
        await admin.create_topic("team-a", partitions=1, replication_factor=1)
        await admin.create_topic("team-b", partitions=1, replication_factor=1)
    ca, console = str(cluster.ca_file), info(cluster, "coordinator", "console_address")

    def get(path: str, creds: ClientCredentials | None) -> Answer:
        return https_get(console, path, ca, creds)

    assert refused(lambda: http_get(console, "/")), "plaintext console answered"
    assert refused(lambda: get("/", None)), "console answered without a certificate"
    assert (await asyncio.to_thread(get, "/", bob)).status == 403
    home = await asyncio.to_thread(get, "/", alice)
    assert home.status == 200, home.body
    topics = await asyncio.to_thread(get, "/topics", alice)
    assert topics.status == 200 and "team-a" in topics.body and "team-b" not in topics.body
    assert (await asyncio.to_thread(get, "/topic?name=team-b", alice)).status == 403
    assert (await asyncio.to_thread(get, "/records?topic=team-b&partition=0", alice)).status == 403
    records = await asyncio.to_thread(get, "/records?topic=team-a&partition=0", alice)
    assert records.status == 200, records.body


async def _nodes(admin: Admin) -> bool:
    return len((await admin.describe_cluster()).nodes) >= 1


async def test_rotated_certificate_serves_the_next_http_connection(
    secure_cluster: LocalCluster,
) -> None:
    cluster = secure_cluster
    alice = await grant(cluster, [("describe", "cluster", "")], "user:alice")
    ca = str(cluster.ca_file)
    metrics, console = (info(cluster, "coordinator", k) for k in ("metrics_address",
                                                                   "console_address"))
    before = await asyncio.to_thread(https_get, metrics, "/metrics", ca, alice)
    new_serial = cluster.rotate("coordinator")
    assert new_serial != before.server_serial
    after = await asyncio.to_thread(https_get, metrics, "/metrics", ca, alice)
    assert (after.status, after.server_serial) == (200, new_serial)
    page = await asyncio.to_thread(https_get, console, "/", ca, alice)
    assert (page.status, page.server_serial) == (200, new_serial)
    # The gRPC listener was rotated by the same files: the cluster keeps serving.
    async with Admin(cluster.address("coordinator"), **alice.kwargs) as admin:
        await admin.describe_cluster()


async def test_acl_granted_later_opens_metrics_without_a_restart(
    secure_cluster: LocalCluster,
) -> None:
    cluster = secure_cluster
    await grant(cluster, [], "user:carol")
    carol = cluster.client_security("user:carol")
    ca, address = str(cluster.ca_file), info(cluster, "coordinator", "metrics_address")
    assert (await asyncio.to_thread(https_get, address, "/metrics", ca, carol)).status == 403
    admin_creds = cluster.client_security(ADMIN)
    async with Admin(cluster.address("coordinator"), **admin_creds.kwargs) as admin:
        await admin.create_acls([acl_binding("user:carol", "describe", "cluster")])

    async def opened() -> bool:
        answer = await asyncio.to_thread(https_get, address, "/metrics", ca, carol)
        return answer.status == 200

    await eventually(opened, timeout_s=30, what="carol's new ACL applied to /metrics")


async def test_json_log_lines_of_a_call_name_its_principal(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """Issue 12's log fields: the authenticated principal is bound for the whole call, so
    the handler's own lines (here "created topic") carry it, not only the audit log."""
    cluster = local_cluster(secure=True, security_args=SECURE_ARGS)
    cluster.add_coordinator(args=["--log-format", "json"])
    cluster.add_node(1, args=FAST_NODE_ARGS)
    cluster.start(["coordinator"])
    alice = await grant(cluster, [("create", "cluster", "")], "user:alice")
    cluster.start(["node-1"])
    async with Admin(cluster.address("coordinator"), **alice.kwargs) as admin:
        await admin.create_topic("logged", partitions=1, replication_factor=1)
    log_path = cluster.processes["coordinator"].log_path

    def lines() -> list[dict[str, object]]:
        found = []
        for line in log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                found.append(json.loads(line))
        return found

    async def logged() -> bool:
        return any(
            line.get("principal") == "user:alice" and "logged" in str(line.get("msg"))
            and line.get("logger") != "brook.audit"
            for line in lines()
        )  # fmt: skip

    await eventually(logged, timeout_s=10, what="a handler line naming user:alice")
