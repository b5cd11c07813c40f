"""ACL values for the admin client (issue 11): building and printing the API's
`AclBinding` and `AclFilter` messages from the names the CLI and Kafka use.

    acl_binding("user:alice", "read", "topic", "orders")
    acl_binding("user:etl", "write", "topic", "etl-", pattern_type="prefixed")
    acl_binding("user:*", "all", "group", "*", permission="deny")
    acl_filter(resource_type="topic", resource_name="orders", pattern_type="match")

Names: resource types cluster, topic, group (the cluster resource is named
CLUSTER_RESOURCE_NAME); pattern types literal, prefixed (and match, in filters);
operations read, write, create, delete, alter, describe, alter_configs,
describe_configs, cluster_action, all; permissions allow, deny. A bad name is a ValueError.
"""

from __future__ import annotations

from brook.v1 import admin_pb2

CLUSTER_RESOURCE_NAME = "brook-cluster"

RESOURCE_TYPES = ("cluster", "topic", "group")
PATTERN_TYPES = ("literal", "prefixed")
FILTER_PATTERN_TYPES = ("literal", "prefixed", "match")
OPERATIONS = ("read", "write", "create", "delete", "alter", "describe", "alter_configs",
              "describe_configs", "cluster_action", "all")  # fmt: skip
PERMISSIONS = ("allow", "deny")


def _pick(name: str, allowed: tuple[str, ...], what: str) -> str:
    text = name.strip().lower().replace("-", "_")
    if text not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}, got {name!r}")
    return text.upper()


def _resource_type(name: str) -> admin_pb2.AclResourceType.ValueType:
    return admin_pb2.AclResourceType.Value(
        "ACL_RESOURCE_TYPE_" + _pick(name, RESOURCE_TYPES, "resource type"))


def _pattern_type(name: str, allowed: tuple[str, ...]) -> admin_pb2.AclPatternType.ValueType:
    return admin_pb2.AclPatternType.Value(
        "ACL_PATTERN_TYPE_" + _pick(name, allowed, "pattern type"))


def _operation(name: str) -> admin_pb2.AclOperation.ValueType:
    return admin_pb2.AclOperation.Value("ACL_OPERATION_" + _pick(name, OPERATIONS, "operation"))


def _permission(name: str) -> admin_pb2.AclPermission.ValueType:
    return admin_pb2.AclPermission.Value(
        "ACL_PERMISSION_" + _pick(name, PERMISSIONS, "permission"))


def acl_binding(
    principal: str, operation: str, resource_type: str, resource_name: str = "", *,
    pattern_type: str = "literal", permission: str = "allow",
) -> admin_pb2.AclBinding:  # fmt: skip
    """One ACL; the cluster's resource name is filled in."""
    kind = _resource_type(resource_type)
    if kind == admin_pb2.ACL_RESOURCE_TYPE_CLUSTER:
        resource_name = resource_name or CLUSTER_RESOURCE_NAME
    return admin_pb2.AclBinding(
        principal=principal,
        resource_type=kind,
        resource_name=resource_name,
        pattern_type=_pattern_type(pattern_type, PATTERN_TYPES),
        operation=_operation(operation),
        permission=_permission(permission),
    )


def acl_filter(
    *, principal: str = "", operation: str = "", resource_type: str = "",
    resource_name: str = "", pattern_type: str = "", permission: str = "",
) -> admin_pb2.AclFilter:  # fmt: skip
    """A filter: every argument given must match (empty: anything)."""
    result = admin_pb2.AclFilter(principal=principal, resource_name=resource_name)
    if resource_type:
        result.resource_type = _resource_type(resource_type)
        if result.resource_type == admin_pb2.ACL_RESOURCE_TYPE_CLUSTER and not resource_name:
            result.resource_name = CLUSTER_RESOURCE_NAME
    if pattern_type:
        result.pattern_type = _pattern_type(pattern_type, FILTER_PATTERN_TYPES)
    if operation:
        result.operation = _operation(operation)
    if permission:
        result.permission = _permission(permission)
    return result


def _lower(enum_name: str, prefix: str) -> str:
    return enum_name.removeprefix(prefix).lower()


def acl_fields(binding: admin_pb2.AclBinding) -> dict[str, str]:
    """The binding's fields as names (for printing and comparing)."""
    return {
        "principal": binding.principal,
        "permission": _lower(admin_pb2.AclPermission.Name(binding.permission),
                             "ACL_PERMISSION_"),
        "operation": _lower(admin_pb2.AclOperation.Name(binding.operation), "ACL_OPERATION_"),
        "resource_type": _lower(admin_pb2.AclResourceType.Name(binding.resource_type),
                                "ACL_RESOURCE_TYPE_"),
        "resource_name": binding.resource_name,
        "pattern_type": _lower(admin_pb2.AclPatternType.Name(binding.pattern_type),
                               "ACL_PATTERN_TYPE_"),
    }  # fmt: skip


def format_acl(binding: admin_pb2.AclBinding) -> str:
    """One line, in the style of Kafka's kafka-acls: principal, permission, operation,
    resource and pattern."""
    f = acl_fields(binding)
    return (
        f"(principal={f['principal']}, permission={f['permission']},"
        f" operation={f['operation']}, resource={f['resource_type']}:{f['resource_name']},"
        f" pattern={f['pattern_type']})"
    )
