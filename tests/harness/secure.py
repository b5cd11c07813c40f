"""Secure variants of integration tests (issue 11): the same test against a plaintext
cluster and against a secure one, TLS + mTLS on every listener, `--authorizer acl`
(default deny), nodes replicating with their node certificates, and the test's clients
authenticated by a certificate as a principal holding exactly the ACLs the test needs
(not a super user, so authorization is exercised).

    async def test_x(local_cluster, security_mode: str) -> None:   # runs twice
        cluster = local_cluster(**cluster_options(security_mode))
        cluster.add_coordinator(); cluster.add_node(1)
        start_secured(cluster, [("write", "topic", "t"), ("describe", "cluster", "")])

`start_secured` starts the coordinator first; in a secure cluster it then creates, as the
super user `user:admin` through the Admin API, `cluster_action` on the cluster for the
coordinator and group manager (they call the nodes) and the client's ACLs, before it
starts the other processes (which load every ACL before they serve). It makes the
client's credentials the process default (`brook.transport.set_default_security`, what
the CLI's --tls-* flags do), so every brook.client object the test builds without
options is that principal; the `security_mode` fixture puts the previous default back.
Subprocesses get the same credentials from `ClientCredentials.env` ($BROOK_TLS_*).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from brook.client.admin import Admin, acl_binding
from brook.transport import default_security, set_default_security
from tests.harness.cluster import (
    COORDINATOR_MODULE,
    GROUPS_MODULE,
    ClientCredentials,
    LocalCluster,
)

SECURITY_MODES = ("plaintext", "secure")
ADMIN = "user:admin"
AUTHZ_ARGS = ["--authorizer", "acl", "--super-users", ADMIN]
# The principal a secure variant's clients authenticate as.
CLIENT = "user:alice"

# (operation, resource type, resource name): one allow ACL of the test's client.
Acl = tuple[str, str, str]


def client_acls(
    *, topics: Sequence[str] = (), groups: Sequence[str] = (), describe_cluster: bool = False
) -> list[Acl]:
    """A producing and consuming client's ACLs: create, write and read on `topics`, read
    on `groups` (heartbeat, commit, describe), describe on the cluster (DescribeCluster)."""
    acls: list[Acl] = [("describe", "cluster", "")] if describe_cluster else []
    acls += [(op, "topic", topic) for topic in topics for op in ("create", "write", "read")]
    return acls + [("read", "group", group) for group in groups]


def cluster_options(mode: str) -> dict[str, Any]:
    """LocalCluster keyword arguments of a security mode ("plaintext" or "secure")."""
    if mode == "plaintext":
        return {}
    assert mode == "secure", mode
    return {"secure": True, "security_args": AUTHZ_ARGS}


def service_principals(cluster: LocalCluster) -> list[str]:
    """The principals of the cluster's coordinators and group managers (certificate CN =
    process name: user:coordinator, user:groups-a, ...)."""
    return sorted({f"user:{m.common_name}" for m in cluster.processes.values()
                   if m.module in (COORDINATOR_MODULE, GROUPS_MODULE)})  # fmt: skip


async def grant(
    cluster: LocalCluster, acls: Sequence[Acl], principal: str = CLIENT
) -> ClientCredentials:
    """As the super user: cluster_action on the cluster for the coordinator and group
    manager processes (they call the nodes: leader probes, lag and offset lookups), `acls`
    for `principal`; returns the principal's credentials (the coordinator must run)."""
    admin_creds = cluster.client_security(ADMIN)
    bindings = [acl_binding(p, "cluster_action", "cluster") for p in service_principals(cluster)]
    bindings += [acl_binding(principal, op, kind, name) for op, kind, name in acls]
    async with Admin(cluster.address("coordinator"), **admin_creds.kwargs) as admin:
        # The coordinator answers once its own ACL cache holds them.
        await admin.create_acls(bindings)
    return cluster.client_security(principal)


def start_secured(
    cluster: LocalCluster, acls: Sequence[Acl], principal: str = CLIENT, *,
    coordinator: str = "coordinator", as_default: bool = True,
) -> ClientCredentials | None:  # fmt: skip
    """Starts every declared process; in a secure cluster grants `acls` to `principal`
    between the coordinator and the rest and (as_default) makes its credentials the
    client default. Returns them (None in plaintext). Blocks, as `cluster.start` does."""
    if not cluster.secure:
        cluster.start()
        return None
    cluster.start([coordinator])
    # In a thread with its own loop: callable from sync code and from a running loop.
    with ThreadPoolExecutor(1) as pool:
        creds = pool.submit(asyncio.run, grant(cluster, acls, principal)).result()
    cluster.start()
    if as_default:
        set_default_security(creds.security)
    return creds


@pytest.fixture(params=SECURITY_MODES)
def security_mode(request: pytest.FixtureRequest) -> Iterator[str]:
    """ "plaintext" and "secure"; puts the process's default client security back after."""
    previous = default_security()
    try:
        yield str(request.param)
    finally:
        set_default_security(previous)
