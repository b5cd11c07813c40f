"""The ACL part of AdminService (issue 11): CreateAcls, DescribeAcls, DeleteAcls.

Conversions between the API's messages (`admin_pb2.AclBinding`, `AclFilter`) and the
authorizer's values (`brook.services.common.authz.model`), and the three calls over the
etcd ACL store and this coordinator's watch-fed ACL cache. The servicer (`admin.py`)
checks the caller first (alter or describe on the cluster, per the operations table) and
serializes the writes with its admin lock; after a write the answer waits (bounded) until
this coordinator's own cache shows it, so a client reads its own writes.

Thread-safety: one event loop.
"""

from __future__ import annotations

import base64
import json
import logging

from brook.errors import BrookError, Reason
from brook.services.common.authz.model import (
    RESOURCE_NAME_CHARS_MAX,
    AclBinding,
    AclFilter,
    Operation,
    PatternType,
    Permission,
    ResourceType,
    check_principal,
)
from brook.services.common.bounds import check_chars, check_count
from brook.services.coordinator import validation
from brook.services.coordinator.limits import CACHE_CATCH_UP_S_MAX
from brook.services.metadata.acls import (
    ACL_FILTERS_PER_REQUEST_MAX,
    ACLS_PER_REQUEST_MAX,
    AclCache,
)
from brook.v1 import admin_pb2

log = logging.getLogger("brook.coordinator.acls")

# A DescribeAcls page token holds an etcd key (principal and resource name, encoded).
ACL_PAGE_TOKEN_CHARS_MAX = 8192

RESOURCE_TYPES = {
    admin_pb2.ACL_RESOURCE_TYPE_CLUSTER: ResourceType.CLUSTER,
    admin_pb2.ACL_RESOURCE_TYPE_TOPIC: ResourceType.TOPIC,
    admin_pb2.ACL_RESOURCE_TYPE_GROUP: ResourceType.GROUP,
}
PATTERN_TYPES = {
    admin_pb2.ACL_PATTERN_TYPE_LITERAL: PatternType.LITERAL,
    admin_pb2.ACL_PATTERN_TYPE_PREFIXED: PatternType.PREFIXED,
}
OPERATIONS = {
    admin_pb2.ACL_OPERATION_READ: Operation.READ,
    admin_pb2.ACL_OPERATION_WRITE: Operation.WRITE,
    admin_pb2.ACL_OPERATION_CREATE: Operation.CREATE,
    admin_pb2.ACL_OPERATION_DELETE: Operation.DELETE,
    admin_pb2.ACL_OPERATION_ALTER: Operation.ALTER,
    admin_pb2.ACL_OPERATION_DESCRIBE: Operation.DESCRIBE,
    admin_pb2.ACL_OPERATION_ALTER_CONFIGS: Operation.ALTER_CONFIGS,
    admin_pb2.ACL_OPERATION_DESCRIBE_CONFIGS: Operation.DESCRIBE_CONFIGS,
    admin_pb2.ACL_OPERATION_CLUSTER_ACTION: Operation.CLUSTER_ACTION,
    admin_pb2.ACL_OPERATION_ALL: Operation.ALL,
}
PERMISSIONS = {
    admin_pb2.ACL_PERMISSION_ALLOW: Permission.ALLOW,
    admin_pb2.ACL_PERMISSION_DENY: Permission.DENY,
}


def _reverse(table: dict[int, object]) -> dict[object, int]:
    return {value: key for key, value in table.items()}


_RESOURCE_NUMBERS = _reverse(RESOURCE_TYPES)  # type: ignore[arg-type]
_PATTERN_NUMBERS = _reverse(PATTERN_TYPES)  # type: ignore[arg-type]
_OPERATION_NUMBERS = _reverse(OPERATIONS)  # type: ignore[arg-type]
_PERMISSION_NUMBERS = _reverse(PERMISSIONS)  # type: ignore[arg-type]


def _invalid(message: str, field: str) -> BrookError:
    return BrookError(Reason.INVALID_REQUEST, message, {"field": field})


def binding_from_proto(message: admin_pb2.AclBinding, field: str = "acls") -> AclBinding:
    """A checked binding (unset pattern: literal; unset permission: allow)."""
    resource_type = RESOURCE_TYPES.get(message.resource_type)
    if resource_type is None:
        raise _invalid(f"{field}: resource_type must be cluster, topic or group",
                       f"{field}.resource_type")  # fmt: skip
    operation = OPERATIONS.get(message.operation)
    if operation is None:
        raise _invalid(f"{field}: operation is required", f"{field}.operation")
    if message.pattern_type == admin_pb2.ACL_PATTERN_TYPE_UNSPECIFIED:
        pattern = PatternType.LITERAL
    elif message.pattern_type in PATTERN_TYPES:
        pattern = PATTERN_TYPES[message.pattern_type]
    else:
        raise _invalid(f"{field}: pattern_type must be literal or prefixed",
                       f"{field}.pattern_type")  # fmt: skip
    if message.permission == admin_pb2.ACL_PERMISSION_UNSPECIFIED:
        permission = Permission.ALLOW
    elif message.permission in PERMISSIONS:
        permission = PERMISSIONS[message.permission]
    else:
        raise _invalid(f"{field}: unknown permission {message.permission}",
                       f"{field}.permission")  # fmt: skip
    return AclBinding.create(message.principal, resource_type, message.resource_name,
                             operation, permission, pattern)  # fmt: skip


def binding_to_proto(binding: AclBinding) -> admin_pb2.AclBinding:
    return admin_pb2.AclBinding(
        principal=binding.principal,
        resource_type=_RESOURCE_NUMBERS[binding.resource_type],  # type: ignore[arg-type]
        resource_name=binding.resource_name,
        pattern_type=_PATTERN_NUMBERS[binding.pattern_type],  # type: ignore[arg-type]
        operation=_OPERATION_NUMBERS[binding.operation],  # type: ignore[arg-type]
        permission=_PERMISSION_NUMBERS[binding.permission],  # type: ignore[arg-type]
    )


def filter_from_proto(message: admin_pb2.AclFilter, field: str = "filter") -> AclFilter:
    """The filter (unset fields match anything); INVALID_REQUEST for unknown values."""
    def known(value: int, table: dict[int, object], name: str) -> object | None:
        if value == 0:
            return None
        if value not in table:
            raise _invalid(f"{field}: unknown {name} {value}", f"{field}.{name}")
        return table[value]

    match = message.pattern_type == admin_pb2.ACL_PATTERN_TYPE_MATCH
    if message.principal:
        check_principal(message.principal, f"{field}.principal")
    check_chars(f"{field}.resource_name", message.resource_name, RESOURCE_NAME_CHARS_MAX)
    return AclFilter(
        principal=message.principal or None,
        resource_type=known(message.resource_type, RESOURCE_TYPES, "resource_type"),  # type: ignore[arg-type]
        resource_name=message.resource_name or None,
        pattern_type=None if match else known(message.pattern_type, PATTERN_TYPES,  # type: ignore[arg-type]
                                              "pattern_type"),
        operation=known(message.operation, OPERATIONS, "operation"),  # type: ignore[arg-type]
        permission=known(message.permission, PERMISSIONS, "permission"),  # type: ignore[arg-type]
        match=match,
    )  # fmt: skip


def _encode_token(after: bytes) -> str:
    payload = json.dumps({"v": 1, "after": after.decode()}).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def _decode_token(token: str) -> bytes:
    if not token:
        return b""
    if len(token) > ACL_PAGE_TOKEN_CHARS_MAX:
        raise BrookError(Reason.INVALID_PAGE_TOKEN, "page_token is not one this server issued")
    try:
        data = json.loads(base64.urlsafe_b64decode((token + "=" * (-len(token) % 4)).encode()))
        if not isinstance(data, dict) or data.get("v") != 1 or not isinstance(data["after"], str):
            raise ValueError("unknown token layout")
        return str(data["after"]).encode()
    except (ValueError, KeyError, TypeError):
        raise BrookError(Reason.INVALID_PAGE_TOKEN,
                         "page_token is not one this server issued") from None  # fmt: skip


class AclAdmin:
    """CreateAcls, DescribeAcls and DeleteAcls over the store and this process's cache."""

    def __init__(self, cache: AclCache) -> None:
        self.cache = cache
        self.store = cache.acl_store

    async def _catch_up(self, revision: int) -> None:
        if revision and not await self.cache.wait_for(lambda c: c.revision >= revision,
                                                      CACHE_CATCH_UP_S_MAX):  # fmt: skip
            log.warning("ACL cache did not show a committed write within %.1fs",
                        CACHE_CATCH_UP_S_MAX)  # fmt: skip

    async def create(self, request: admin_pb2.CreateAclsRequest) -> admin_pb2.CreateAclsResponse:
        check_count("acls", request.acls, ACLS_PER_REQUEST_MAX)
        if not request.acls:
            raise _invalid("acls is empty: give at least one ACL", "acls")
        bindings = [binding_from_proto(m, f"acls[{i}]") for i, m in enumerate(request.acls)]
        present = {self.store.key(b) for _, b in self.cache.items()}
        new = [b for b in dict.fromkeys(bindings) if self.store.key(b) not in present]
        if new:
            revision = await self.store.create(new, len(present))
            for binding in new:
                log.info("ACL created: %s", binding)
            await self._catch_up(revision)
        return admin_pb2.CreateAclsResponse(acls=[binding_to_proto(b) for b in bindings])

    def describe(self, request: admin_pb2.DescribeAclsRequest) -> admin_pb2.DescribeAclsResponse:
        size = validation.page_size(request.page_size)
        after = _decode_token(request.page_token)
        selected = filter_from_proto(request.filter) if request.HasField("filter") else AclFilter()
        page: list[tuple[bytes, AclBinding]] = []
        more = False
        for key, binding in self.cache.items():
            if key <= after or not selected.selects(binding):
                continue
            if len(page) == size:
                more = True
                break
            page.append((key, binding))
        return admin_pb2.DescribeAclsResponse(
            acls=[binding_to_proto(b) for _, b in page],
            next_page_token=_encode_token(page[-1][0]) if more else "",
        )

    async def delete(self, request: admin_pb2.DeleteAclsRequest) -> admin_pb2.DeleteAclsResponse:
        check_count("filters", request.filters, ACL_FILTERS_PER_REQUEST_MAX)
        if not request.filters:
            raise _invalid("filters is empty: give at least one filter", "filters")
        filters = [filter_from_proto(m, f"filters[{i}]") for i, m in enumerate(request.filters)]
        for index, selected in enumerate(filters):
            if selected.empty:
                raise _invalid(f"filters[{index}] sets no field; name what to delete",
                               f"filters[{index}]")  # fmt: skip
        # Fresh from etcd, not the cache: delete what is there now.
        _, stored = await self.store.read_all()
        keys = [key for key, binding in stored if any(f.selects(binding) for f in filters)]
        deleted, revision = await self.store.delete(keys) if keys else ([], 0)
        for binding in deleted:
            log.info("ACL deleted: %s", binding)
        if deleted:
            await self._catch_up(revision)
        return admin_pb2.DeleteAclsResponse(deleted=[binding_to_proto(b) for b in deleted])
