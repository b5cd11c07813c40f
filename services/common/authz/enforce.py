"""The authorizer the servicers call (issue 11): the shell around the pure decision.

Each servicer method starts with one call that names its RPC; the operations table
(`table.py`) says what that RPC needs, and the request supplies the resource names:

    principal = self.authz.require(context, "brook.v1.AdminService/DeleteTopic",
                                   topic=request.name)

`require` learns the caller (`principal_of`), checks the RPC's call-level needs and
raises PERMISSION_DENIED (ErrorInfo metadata: principal, operation, resource_type,
resource) before anything is done; the per-topic helpers then answer denied topics of a
multi-topic request (`topic_errors`), refuse the call for one (`require_topics`), or leave
them out of a listing (`visible_topics`, `visible_groups`). Every refusal is written to
the audit log, and so is every allowed mutating admin operation.

The ACLs come from an `AclSource` (in the servers: the etcd watch-fed
`brook.services.metadata.acls.AclCache`), so no etcd call sits on any request path. A
decision is cached per (principal, operation, resource) until the ACLs change (the
source's `version` moves): the cache is then dropped and the index rebuilt on the next
check. Without an authorizer (`--authorizer none`, local development) every check
allows, as before issue 11; mutating admin operations are still audited.

Thread-safety: one event loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeAlias

import grpc

from brook.errors import BrookError, Reason
from brook.services.common.authz.audit import audit
from brook.services.common.authz.core import ALLOWED_OFF, AclAuthorizer, Decision
from brook.services.common.authz.model import (
    CLUSTER,
    AclBinding,
    Operation,
    Resource,
    ResourceType,
)
from brook.services.common.authz.table import Need, rule_of
from brook.services.common.authz.wire_fields import produce_records_topic
from brook.services.common.principal import Principal, principal_of

# Decisions kept between ACL changes; the cache is dropped whole when full (why: bounded
# memory whatever the number of principals and topics; a refill costs a few dict looks).
DECISIONS_CACHED_MAX = 65_536

AUTHORIZERS = ("none", "acl")


class AclSource(Protocol):
    """Where the authorizer reads the ACLs: `version` moves whenever they change."""

    @property
    def version(self) -> int: ...

    def bindings(self) -> Iterable[AclBinding]: ...


# Where a checked request came from: a gRPC call's context, or (for the HTTP listeners:
# /metrics and the console) the peer address already as text.
Origin: TypeAlias = "grpc.aio.ServicerContext | str"


def _peer(context: Origin) -> str:
    if isinstance(context, str):
        return context
    try:
        return str(context.peer() or "")
    except Exception:
        return ""


def _resource(kind: ResourceType, topic: str | None, group: str | None) -> Resource:
    if kind is ResourceType.CLUSTER:
        return CLUSTER
    name = topic if kind is ResourceType.TOPIC else group
    if name is None:
        raise ValueError(f"the operations table needs a {kind.value} name here")
    return Resource(kind, name)


def permission_denied(principal: Principal, operation: Operation, resource: Resource,
                      why: str = "") -> BrookError:  # fmt: skip
    """The PERMISSION_DENIED error every refusal raises (or puts in a partition)."""
    flag = f"--{resource.type.value}" + (
        "" if resource.type is ResourceType.CLUSTER else f" {resource.name}"
    )
    hint = why or (
        f"an admin can grant it: brook acl add --allow-principal {principal}"
        f" --operation {operation.value} {flag}"
    )
    return BrookError(
        Reason.PERMISSION_DENIED,
        f"{principal} may not {operation.value} {resource.type.value} {resource.name!r}; {hint}",
        {
            "principal": str(principal),
            "operation": operation.value,
            "resource_type": resource.type.value,
            "resource": resource.name,
        },
    )


class Authorizer:
    """Checks calls against the operations table and the ACLs (see the module doc)."""

    def __init__(
        self, acls: AclSource | None = None, *, super_users: Iterable[str] = ()
    ) -> None:
        # No source: no authorizer (everything allowed).
        self.enabled = acls is not None
        self._acls = acls
        self.super_users = frozenset(super_users)
        self._core: AclAuthorizer | None = None
        self._version = -1
        self._decisions: dict[tuple[Principal, Operation, Resource], Decision] = {}

    # -- decisions ---------------------------------------------------------------------
    def _snapshot(self) -> AclAuthorizer:
        acls = self._acls
        assert acls is not None
        version = acls.version
        if self._core is None or version != self._version:
            self._core = AclAuthorizer(acls.bindings(), self.super_users)
            self._version = version
            self._decisions = {}
        return self._core

    def decide(self, principal: Principal, operation: Operation, resource: Resource) -> Decision:
        if not self.enabled:
            return ALLOWED_OFF
        core = self._snapshot()
        key = (principal, operation, resource)
        decision = self._decisions.get(key)
        if decision is None:
            if len(self._decisions) >= DECISIONS_CACHED_MAX:
                self._decisions = {}
            decision = self._decisions[key] = core.decide(principal, operation, resource)
        return decision

    def may(self, principal: Principal, operation: Operation, resource: Resource) -> bool:
        return self.decide(principal, operation, resource).allowed

    def _meets(
        self, principal: Principal, need: Need, topic: str | None, group: str | None
    ) -> tuple[Decision, Operation, Resource]:
        """The first alternative that allows; else the first alternative's refusal."""
        refusal: tuple[Decision, Operation, Resource] | None = None
        for operation, kind in need.alternatives:
            resource = _resource(kind, topic, group)
            decision = self.decide(principal, operation, resource)
            if decision.allowed:
                return decision, operation, resource
            if refusal is None:
                refusal = (decision, operation, resource)
        assert refusal is not None, "a need has at least one alternative"
        return refusal

    # -- audit -------------------------------------------------------------------------
    def _audit(
        self, context: Origin, method: str, principal: Principal,
        operation: Operation, resource: Resource, allowed: bool, basis: str,
        rule: AclBinding | None = None,
    ) -> None:  # fmt: skip
        audit(
            principal=str(principal), operation=operation.value,
            resource_type=resource.type.value, resource=resource.name, allowed=allowed,
            basis=basis, method=method, peer=_peer(context), rule=str(rule) if rule else "",
        )  # fmt: skip

    def deny(
        self, context: grpc.aio.ServicerContext, method: str, principal: Principal,
        operation: Operation, resource: Resource, basis: str, why: str = "",
    ) -> BrookError:  # fmt: skip
        """A refusal decided by the caller (replication identity): audited, returned."""
        self._audit(context, method, principal, operation, resource, False, basis)
        return permission_denied(principal, operation, resource, why)

    # -- the calls the servicers make --------------------------------------------------
    def require(
        self, context: grpc.aio.ServicerContext, method: str, *, topic: str | None = None,
        group: str | None = None,
    ) -> Principal:  # fmt: skip
        """The caller, once the RPC's call-level needs are met (PERMISSION_DENIED, audited,
        otherwise). Allowed mutating admin operations are audited too."""
        return self.require_as(principal_of(context), context, method, topic=topic,
                               group=group)  # fmt: skip

    def require_as(
        self, principal: Principal, origin: Origin, method: str, *,
        topic: str | None = None, group: str | None = None,
    ) -> Principal:  # fmt: skip
        """`require` for a principal authenticated elsewhere (the HTTP listeners check
        their pages with the rule of the RPC each page shows)."""
        rule = rule_of(method)
        if not self.enabled and not rule.audited:
            return principal
        audited: tuple[Decision, Operation, Resource] | None = None
        for need in rule.call:
            decision, operation, resource = self._meets(principal, need, topic, group)
            if not decision.allowed:
                self._audit(origin, method, principal, operation, resource, False,
                            decision.basis, decision.rule)  # fmt: skip
                raise permission_denied(principal, operation, resource)
            audited = audited or (decision, operation, resource)
        if rule.audited and audited is not None:
            decision, operation, resource = audited
            self._audit(origin, method, principal, operation, resource, True, decision.basis,
                        decision.rule)  # fmt: skip
        return principal

    def require_node(
        self, context: grpc.aio.ServicerContext, method: str, replica_id: int
    ) -> Principal:
        """For replication: the caller must be `node:<replica_id>` (super users too)."""
        principal = self.require(context, method)
        if self.enabled and principal.node_id != replica_id:
            raise self.deny(
                context, method, principal, Operation.CLUSTER_ACTION, CLUSTER, "not_the_node",
                f"replication calls must come from the node they name (replica_id"
                f" {replica_id}, i.e. node:{replica_id})",
            )
        return principal

    def topic_errors(
        self, context: Origin, method: str, principal: Principal,
        topics: Iterable[str],
    ) -> dict[str, BrookError]:  # fmt: skip
        """PERMISSION_DENIED by topic, for the topics (of `topics`) the caller may not
        touch as the RPC's per-topic need says; each refused topic is audited once."""
        if not self.enabled:
            return {}
        need = rule_of(method).topics
        assert need is not None, f"{method} has no per-topic need"
        errors: dict[str, BrookError] = {}
        seen: set[str] = set()
        for name in topics:
            if name in seen:
                continue
            seen.add(name)
            decision, operation, resource = self._meets(principal, need, name, None)
            if not decision.allowed:
                self._audit(context, method, principal, operation, resource, False,
                            decision.basis, decision.rule)  # fmt: skip
                errors[name] = permission_denied(principal, operation, resource)
        return errors

    def require_topics(
        self, context: grpc.aio.ServicerContext, method: str, principal: Principal,
        topics: Iterable[str],
    ) -> None:  # fmt: skip
        """Refuses the whole call for the first topic the caller may not touch."""
        errors = self.topic_errors(context, method, principal, topics)
        if errors:
            raise next(iter(errors.values()))

    def visible_topics(self, method: str, principal: Principal, names: Iterable[str]) -> list[str]:
        """The names the caller may see in a listing, in order (the rest left out)."""
        if not self.enabled:
            return list(names)
        need = rule_of(method).topics
        assert need is not None, f"{method} has no per-topic need"
        return [n for n in names if self._meets(principal, need, n, None)[0].allowed]

    def visible_groups(self, method: str, principal: Principal, group_id: str) -> bool:
        """Whether a listing shows this group to the caller."""
        if not self.enabled:
            return True
        need = rule_of(method).groups
        assert need is not None, f"{method} has no per-group need"
        return self._meets(principal, need, None, group_id)[0].allowed

    def shows_detail(self, method: str, principal: Principal, group_id: str) -> bool:
        """Whether a group description may show member ids and epochs to the caller."""
        if not self.enabled:
            return True
        need = rule_of(method).detail
        assert need is not None, f"{method} has no detail need"
        return self._meets(principal, need, None, group_id)[0].allowed


# The authorizer of a process without `--authorizer acl`.
ALLOW_ALL = Authorizer()

# The process's authorizer, for code that is not handed one (`check_call`); set by the
# process at start (`install`), as the transport sets the authenticator.
_installed: Authorizer = ALLOW_ALL


def install(authorizer: Authorizer) -> None:
    global _installed
    _installed = authorizer


def installed() -> Authorizer:
    return _installed


def check_call(
    context: grpc.aio.ServicerContext, method: str, *, topic: str | None = None,
    group: str | None = None,
) -> Principal:  # fmt: skip
    """`installed().require(...)`: the one-line check of a servicer that has no
    Authorizer of its own (the record API)."""
    return _installed.require(context, method, topic=topic, group=group)


def check_produce_records(context: grpc.aio.ServicerContext, data: bytes) -> Principal:
    """The record API's ProduceRecords check on its raw request: write on the topic it
    names (read off the bytes only when an authorizer is on: the scan costs ~1 us per
    record)."""
    authorizer = _installed
    topic = produce_records_topic(data) if authorizer.enabled else None
    return authorizer.require(context, "brook.v1.RecordService/ProduceRecords", topic=topic)
