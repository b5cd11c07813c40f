"""Helpers of the authorization tests: a secure cluster (mTLS, tests/harness secure mode)
with `--authorizer acl`, principals as client certificates, and audit-log reading.
(ADMIN and AUTHZ_ARGS are tests/harness/secure.py's, shared with the secure variants of
the end-to-end, fault and group tests.)"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from brook.client.admin import Admin, acl_binding
from brook.errors import BrookError, Reason, from_partition_error, partitioned
from brook.v1 import storage_pb2, storage_pb2_grpc
from tests.harness.cluster import ClientCredentials, LocalCluster
from tests.harness.secure import ADMIN as ADMIN  # re-exported: the tests import it here
from tests.harness.secure import AUTHZ_ARGS
from tests.node.cluster_helpers import FAST_NODE_ARGS
from tests.node.helpers import make_batch

# Brook's own service identities in the harness (certificate CN = process name): they
# call the nodes (leader probes, lag and reset lookups) and get cluster_action for it.
SERVICE_PRINCIPALS = ("user:coordinator", "user:groups")
# Bound on an ACL change reaching every process (etcd watch).
ACL_PROPAGATION_S = 5.0


def secure_cluster(
    etcd: str, base_dir: Path, *, nodes: int, groups: bool = True,
    node_args: list[str] | None = None,
) -> LocalCluster:  # fmt: skip
    """A started secure cluster: coordinator, optional group manager, `nodes` nodes, each
    with the ACL authorizer (super user user:admin) and its own audit log file."""
    cluster = LocalCluster(etcd, base_dir, f"t{uuid.uuid4().hex[:12]}", secure=True,
                           security_args=AUTHZ_ARGS)  # fmt: skip

    def audit_args(name: str) -> list[str]:
        return ["--audit-log", str(base_dir / f"{name}.audit.jsonl")]

    cluster.add_coordinator(args=audit_args("coordinator"))
    if groups:
        cluster.add_groups(args=[*audit_args("groups"), "--heartbeat-interval-ms", "200"])
    for node_id in range(1, nodes + 1):
        cluster.add_node(node_id, args=[*FAST_NODE_ARGS, *(node_args or []),
                                        *audit_args(f"node-{node_id}")])  # fmt: skip
    cluster.start()
    return cluster


def audit_lines(cluster: LocalCluster, name: str) -> list[dict[str, Any]]:
    path = cluster.base_dir / f"{name}.audit.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def creds(cluster: LocalCluster, principal: str) -> ClientCredentials:
    return cluster.client_security(principal)


async def grant_services(admin: Admin) -> None:
    """Brook's coordinator and group manager may make their inter-process calls."""
    await admin.create_acls(
        [acl_binding(p, "cluster_action", "cluster") for p in SERVICE_PRINCIPALS]
    )


@contextmanager
def refused(reason: str = "PERMISSION_DENIED") -> Iterator[list[BrookError]]:
    """Asserts the block raises a BrookError with `reason`; yields it (in a list)."""
    caught: list[BrookError] = []
    try:
        yield caught
    except BrookError as error:
        assert error.reason == reason, error
        caught.append(error)
        return
    raise AssertionError(f"expected {reason}")


async def raw_produce(
    creds: ClientCredentials, address: str, topics: list[str], value: bytes = b"raw"
) -> dict[str, Reason | None]:
    """One StorageService.Produce (acks=all) to `address` naming partition 0 of each
    topic; each topic's error reason (None: appended)."""
    async with creds.channel(address) as channel:
        stub = storage_pb2_grpc.StorageServiceStub(channel)
        request = storage_pb2.ProduceRequest(acks=storage_pb2.ACKS_ALL, timeout_ms=5000,
                                             partitions=[storage_pb2.ProducePartition(
                                                 topic=t, partition=0,
                                                 batches=[make_batch([value])])
                                                 for t in topics])  # fmt: skip
        response = await partitioned(stub.Produce(request, timeout=10),
                                     storage_pb2.ProduceResponse)
    found: dict[str, Reason | None] = {}
    for answer in response.partitions:
        error = from_partition_error(answer.error)
        found[answer.topic] = None if error is None else error.reason
    return found
