"""The operations table covers every RPC (issue 11): each method of every service Brook
defines (the brook.v1 descriptors) and serves beside them (health, reflection) has an
entry, and the table names no RPC that does not exist. (`test_authz_cluster.py` checks
the same against what the running processes actually serve, through reflection.)"""

from __future__ import annotations

from brook.services.common.authz import RPC_TABLE
from brook.services.common.authz.table import describe_rule
from brook.v1 import admin_pb2, groups_pb2, metadata_pb2, record_service_pb2, storage_pb2

SERVED_BESIDES = {
    "grpc.health.v1.Health/Check",
    "grpc.health.v1.Health/Watch",
    "grpc.health.v1.Health/List",
    "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
}


def defined_rpcs() -> set[str]:
    found = set()
    for module in (admin_pb2, groups_pb2, metadata_pb2, record_service_pb2, storage_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            found |= {f"{service.full_name}/{method.name}" for method in service.methods}
    return found


def test_every_rpc_has_an_entry_and_no_entry_is_stale() -> None:
    defined = defined_rpcs() | SERVED_BESIDES
    missing = sorted(defined - set(RPC_TABLE))
    assert not missing, f"RPCs without an entry in authz/table.py: {missing}"
    stale = sorted(set(RPC_TABLE) - defined)
    assert not stale, f"table entries for RPCs that do not exist: {stale}"


def test_every_non_public_rpc_needs_something() -> None:
    """No entry is accidentally open: each needs a call-level permission, a per-topic or
    per-group one, or is explicitly public (health, reflection)."""
    for method, rule in RPC_TABLE.items():
        assert rule.public or rule.call or rule.topics or rule.groups, method
        assert describe_rule(rule), method
    assert {m for m, r in RPC_TABLE.items() if r.public} == SERVED_BESIDES
