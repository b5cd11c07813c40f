"""ACL values (issue 11): who (principal) may or may not do what (operation) to which
resources (a resource type and a name pattern). Pure values, no I/O.

An ACL binding, written as Kafka writes one:

    principal      `user:alice`, `node:3`, `anonymous`, or a wildcard: `*` (anyone),
                   `user:*` (any user), `node:*` (any storage node)
    resource       `cluster` (one resource, named CLUSTER_RESOURCE_NAME), `topic` or `group`
    pattern        `literal` (the name itself; the literal name `*` means every resource
                   of the type) or `prefixed` (every name starting with it)
    operation      read, write, create, delete, alter, describe, alter_configs,
                   describe_configs, cluster_action, or `all` (every operation)
    permission     allow or deny

A filter (`AclFilter`) selects bindings for DescribeAcls and DeleteAcls: each field set
must equal the binding's, except the `match` pattern type, which selects every binding
that applies to the named resource (literal ones naming it or `*`, prefixed ones whose
prefix it starts with).

Thread-safety: immutable values.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from brook.errors import BrookError, Reason
from brook.services.common.principal import Principal


class ResourceType(StrEnum):
    """What an ACL protects."""

    CLUSTER = "cluster"
    TOPIC = "topic"
    GROUP = "group"


class PatternType(StrEnum):
    """How an ACL's resource name selects resources."""

    LITERAL = "literal"
    PREFIXED = "prefixed"


class Operation(StrEnum):
    """What a principal does to a resource (Kafka's operations)."""

    READ = "read"
    WRITE = "write"
    CREATE = "create"
    DELETE = "delete"
    ALTER = "alter"
    DESCRIBE = "describe"
    ALTER_CONFIGS = "alter_configs"
    DESCRIBE_CONFIGS = "describe_configs"
    CLUSTER_ACTION = "cluster_action"
    ALL = "all"


class Permission(StrEnum):
    """Whether a matching ACL grants or refuses the operation (deny wins)."""

    ALLOW = "allow"
    DENY = "deny"


# The one cluster resource's name (Kafka names it "kafka-cluster").
CLUSTER_RESOURCE_NAME = "brook-cluster"
# A literal resource name that matches every resource of its type.
WILDCARD_RESOURCE = "*"
# Principal wildcards: anyone, any user, any storage node.
WILDCARD_PRINCIPAL = "*"
PRINCIPAL_TYPE_WILDCARDS = ("user:*", "node:*")

# Bounds on what an ACL may hold (why: every process keeps every ACL in memory and etcd
# keys carry these strings). Topic names and group ids are at most 249 characters.
PRINCIPAL_CHARS_MAX = 256
RESOURCE_NAME_CHARS_MAX = 255

# An allowed operation implies others (Kafka's rule; allow ACLs only: a deny of `read`
# does not deny `describe`).
IMPLIED_BY: dict[Operation, frozenset[Operation]] = {
    Operation.DESCRIBE: frozenset(
        {Operation.READ, Operation.WRITE, Operation.DELETE, Operation.ALTER}
    ),
    Operation.DESCRIBE_CONFIGS: frozenset({Operation.ALTER_CONFIGS}),
}


@dataclass(frozen=True, slots=True)
class Resource:
    """One concrete resource a call acts on (never a pattern)."""

    type: ResourceType
    name: str

    def __str__(self) -> str:
        return f"{self.type.value}:{self.name}"


CLUSTER = Resource(ResourceType.CLUSTER, CLUSTER_RESOURCE_NAME)


def topic(name: str) -> Resource:
    return Resource(ResourceType.TOPIC, name)


def group(group_id: str) -> Resource:
    return Resource(ResourceType.GROUP, group_id)


def _invalid(message: str, field: str) -> BrookError:
    return BrookError(Reason.INVALID_REQUEST, message, {"field": field})


def check_principal(text: str, field: str = "principal") -> str:
    """`text` if it names a principal or a principal wildcard; INVALID_REQUEST otherwise."""
    if len(text) > PRINCIPAL_CHARS_MAX:
        raise _invalid(f"{field} is longer than {PRINCIPAL_CHARS_MAX} characters", field)
    if text == WILDCARD_PRINCIPAL or text in PRINCIPAL_TYPE_WILDCARDS:
        return text
    try:
        parsed = Principal.parse(text)
    except ValueError as error:
        raise _invalid(f"{field}: {error} (or * for anyone)", field) from None
    if parsed.kind == "node" and parsed.node_id is None:
        raise _invalid(f"{field} {text!r}: a node principal is node:<integer id>", field)
    return str(parsed)


@dataclass(frozen=True, slots=True)
class AclBinding:
    """One ACL: `permission` for `principal` to do `operation` on the resources that
    `resource_type`, `pattern_type` and `resource_name` select."""

    principal: str
    resource_type: ResourceType
    resource_name: str
    pattern_type: PatternType
    operation: Operation
    permission: Permission

    @classmethod
    def create(
        cls,
        principal: str,
        resource_type: ResourceType | str,
        resource_name: str,
        operation: Operation | str,
        permission: Permission | str = Permission.ALLOW,
        pattern_type: PatternType | str = PatternType.LITERAL,
    ) -> AclBinding:
        """A checked binding (INVALID_REQUEST naming the bad field otherwise)."""
        principal = check_principal(principal)
        try:
            resource_type = ResourceType(resource_type)
            pattern_type = PatternType(pattern_type)
            operation = Operation(operation)
            permission = Permission(permission)
        except ValueError as error:
            raise _invalid(f"invalid ACL: {error}", "acl") from None
        if not resource_name:
            raise _invalid("resource_name is empty", "resource_name")
        if len(resource_name) > RESOURCE_NAME_CHARS_MAX:
            raise _invalid(
                f"resource_name is longer than {RESOURCE_NAME_CHARS_MAX} characters",
                "resource_name",
            )
        if resource_type is ResourceType.CLUSTER and (
            resource_name != CLUSTER_RESOURCE_NAME or pattern_type is not PatternType.LITERAL
        ):
            raise _invalid(
                f"the cluster resource is the literal name {CLUSTER_RESOURCE_NAME!r}",
                "resource_name",
            )
        if pattern_type is PatternType.PREFIXED and resource_name == WILDCARD_RESOURCE:
            raise _invalid("a prefixed ACL cannot use the name '*': use literal '*'",
                           "resource_name")  # fmt: skip
        return cls(principal, resource_type, resource_name, pattern_type, operation, permission)

    def matches_principal(self, principal: Principal) -> bool:
        if self.principal == WILDCARD_PRINCIPAL:
            return True
        if self.principal in PRINCIPAL_TYPE_WILDCARDS:
            return self.principal == f"{principal.kind}:*"
        return self.principal == str(principal)

    def matches_resource(self, resource: Resource) -> bool:
        if self.resource_type is not resource.type:
            return False
        if self.pattern_type is PatternType.PREFIXED:
            return resource.name.startswith(self.resource_name)
        return self.resource_name in (resource.name, WILDCARD_RESOURCE)

    def grants(self, operation: Operation) -> bool:
        """Whether this binding, as an allow, covers `operation` (implied ones too)."""
        return self.operation in (operation, Operation.ALL) or self.operation in IMPLIED_BY.get(
            operation, frozenset()
        )

    def refuses(self, operation: Operation) -> bool:
        """Whether this binding, as a deny, covers `operation` (exactly, or `all`)."""
        return self.operation in (operation, Operation.ALL)

    def __str__(self) -> str:
        return (
            f"{self.permission.value} {self.principal} {self.operation.value} on"
            f" {self.resource_type.value}:{self.resource_name}"
            + (" (prefixed)" if self.pattern_type is PatternType.PREFIXED else "")
        )


@dataclass(frozen=True, slots=True)
class AclFilter:
    """Selects bindings: every field set (not None) must equal the binding's; with
    `match=True` the resource fields select the bindings that apply to that resource."""

    principal: str | None = None
    resource_type: ResourceType | None = None
    resource_name: str | None = None
    pattern_type: PatternType | None = None
    operation: Operation | None = None
    permission: Permission | None = None
    match: bool = False

    @property
    def empty(self) -> bool:
        return all(
            value is None
            for value in (self.principal, self.resource_type, self.resource_name,
                          self.pattern_type, self.operation, self.permission)
        )  # fmt: skip

    def selects(self, binding: AclBinding) -> bool:
        if self.principal is not None and binding.principal != self.principal:
            return False
        if self.resource_type is not None and binding.resource_type is not self.resource_type:
            return False
        if self.operation is not None and binding.operation is not self.operation:
            return False
        if self.permission is not None and binding.permission is not self.permission:
            return False
        if self.match:
            if self.resource_name is None:
                return True
            kind = self.resource_type or binding.resource_type
            return binding.matches_resource(Resource(kind, self.resource_name))
        if self.pattern_type is not None and binding.pattern_type is not self.pattern_type:
            return False
        return self.resource_name is None or binding.resource_name == self.resource_name
