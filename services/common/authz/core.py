"""The authorization decision (issue 11), pure: given the ACLs and the super users, may
this principal do this operation on this resource? No I/O, no clock, no gRPC.

The rules, in order (Kafka's):
1. a super user may do everything;
2. a deny ACL that matches the principal, the resource and the operation (exactly, or
   `all`) refuses it: deny wins over any allow;
3. an allow ACL that matches the principal, the resource and the operation, or an
   operation that implies it (`describe` by read/write/delete/alter, `describe_configs`
   by alter_configs) or `all`, grants it;
4. otherwise it is refused (default deny).

One built-in grant: a storage node (`node:<id>`) holds `cluster_action` on the cluster,
the right Brook's own inter-node calls need (replication checks the node's identity on
top: see the operations table). Only the transport layer makes `node:` principals, from
node certificates.

`AclAuthorizer` is an immutable snapshot built once per ACL change: literal bindings are
indexed by (type, name), prefixed ones by (type, prefix), so a decision looks up at most
`len(name) + 2` keys whatever the number of ACLs.

Thread-safety: immutable after construction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from brook.services.common.authz.model import (
    WILDCARD_RESOURCE,
    AclBinding,
    Operation,
    PatternType,
    Permission,
    Resource,
    ResourceType,
)
from brook.services.common.principal import Principal


class Basis(StrEnum):
    """Why a decision came out as it did (audit lines name it)."""

    SUPER_USER = "super_user"
    ACL_ALLOW = "acl_allow"
    ACL_DENY = "acl_deny"
    NO_ACL = "no_acl"
    NODE = "node"
    AUTHORIZER_OFF = "authorizer_off"


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer, with the binding that decided it (None for super users, no ACL, ...)."""

    allowed: bool
    basis: Basis
    rule: AclBinding | None = None


ALLOWED_OFF = Decision(True, Basis.AUTHORIZER_OFF)
_SUPER = Decision(True, Basis.SUPER_USER)
_NODE = Decision(True, Basis.NODE)
_NO_ACL = Decision(False, Basis.NO_ACL)


def parse_super_users(text: str) -> frozenset[str]:
    """`user:admin,user:ops` -> the principals' canonical strings (ValueError if bad)."""
    found = set()
    for item in text.split(","):
        item = item.strip()
        if item:
            found.add(str(Principal.parse(item)))
    return frozenset(found)


class AclAuthorizer:
    """Decisions over one snapshot of the ACLs."""

    def __init__(self, bindings: Iterable[AclBinding], super_users: Iterable[str] = ()) -> None:
        self.super_users = frozenset(super_users)
        self._literal: dict[tuple[ResourceType, str], list[AclBinding]] = {}
        self._prefixed: dict[tuple[ResourceType, str], list[AclBinding]] = {}
        self._prefix_lengths: dict[ResourceType, set[int]] = {}
        count = 0
        for binding in bindings:
            count += 1
            key = (binding.resource_type, binding.resource_name)
            if binding.pattern_type is PatternType.PREFIXED:
                self._prefixed.setdefault(key, []).append(binding)
                self._prefix_lengths.setdefault(binding.resource_type, set()).add(
                    len(binding.resource_name)
                )
            else:
                self._literal.setdefault(key, []).append(binding)
        self.binding_count = count

    def _candidates(self, resource: Resource) -> Iterable[AclBinding]:
        """Every binding whose resource pattern matches `resource`."""
        kind, name = resource.type, resource.name
        yield from self._literal.get((kind, name), ())
        if name != WILDCARD_RESOURCE:
            yield from self._literal.get((kind, WILDCARD_RESOURCE), ())
        for length in self._prefix_lengths.get(kind, ()):
            if length <= len(name):
                yield from self._prefixed.get((kind, name[:length]), ())

    def decide(self, principal: Principal, operation: Operation, resource: Resource) -> Decision:
        if str(principal) in self.super_users:
            return _SUPER
        allow: AclBinding | None = None
        for binding in self._candidates(resource):
            if not binding.matches_principal(principal):
                continue
            if binding.permission is Permission.DENY:
                if binding.refuses(operation):
                    return Decision(False, Basis.ACL_DENY, binding)
            elif allow is None and binding.grants(operation):
                allow = binding
        if allow is not None:
            return Decision(True, Basis.ACL_ALLOW, allow)
        if (
            principal.kind == "node"
            and operation is Operation.CLUSTER_ACTION
            and resource.type is ResourceType.CLUSTER
        ):
            return _NODE
        return _NO_ACL
