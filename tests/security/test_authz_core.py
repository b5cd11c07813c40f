"""The authorization decision without a network (issue 11): the pure `AclAuthorizer`
against a brute-force reading of the rules, the `Authorizer` shell's decision cache and
audit lines, the ACL values, and their etcd keys and JSON.

How: hypothesis draws ACL sets over a small alphabet (so prefixes, wildcards and names
collide often) and checks every decision against `reference`, written from the rules in
core.py's docstring, not from the index the code uses."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brook.errors import BrookError, Reason
from brook.services.common import principal as principals
from brook.services.common.authz import (
    CLUSTER,
    AclAuthorizer,
    AclBinding,
    AclFilter,
    Authorizer,
    Basis,
    Operation,
    PatternType,
    Permission,
    Resource,
    ResourceType,
    parse_super_users,
    produce_records_topic,
)
from brook.services.common.authz.model import IMPLIED_BY
from brook.services.common.principal import ANONYMOUS, Principal
from brook.services.metadata.acls import binding_from_json, binding_to_json
from brook.services.metadata.keys import KIND_ACL, Keys
from brook.v1 import record_service_pb2

ALICE = Principal("user", "alice")
BOB = Principal("user", "bob")
NODE_2 = Principal("node", "2")
PRINCIPALS = [ALICE, BOB, NODE_2, ANONYMOUS]
OPERATIONS = list(Operation)
CHECKED_OPERATIONS = [op for op in Operation if op is not Operation.ALL]


def acl(principal: str, op: str, kind: str, name: str, permission: str = "allow",
        pattern: str = "literal") -> AclBinding:  # fmt: skip
    return AclBinding.create(principal, kind, name, op, permission, pattern)


def topic(name: str) -> Resource:
    return Resource(ResourceType.TOPIC, name)


# -- the reference: the rules read literally ----------------------------------------------
def _principal_matches(binding: AclBinding, principal: Principal) -> bool:
    return binding.principal in ("*", str(principal), f"{principal.kind}:*")


def _resource_matches(binding: AclBinding, resource: Resource) -> bool:
    if binding.resource_type is not resource.type:
        return False
    if binding.pattern_type is PatternType.PREFIXED:
        return resource.name.startswith(binding.resource_name)
    return binding.resource_name in ("*", resource.name)


def reference(
    bindings: Iterable[AclBinding], super_users: set[str], principal: Principal,
    operation: Operation, resource: Resource,
) -> bool:  # fmt: skip
    if str(principal) in super_users:
        return True
    applying = [b for b in bindings if _principal_matches(b, principal)
                and _resource_matches(b, resource)]  # fmt: skip
    if any(b.permission is Permission.DENY and b.operation in (operation, Operation.ALL)
           for b in applying):  # fmt: skip
        return False
    implied = IMPLIED_BY.get(operation, frozenset())
    if any(b.permission is Permission.ALLOW
           and (b.operation in (operation, Operation.ALL) or b.operation in implied)
           for b in applying):  # fmt: skip
        return True
    return (principal.kind == "node" and operation is Operation.CLUSTER_ACTION
            and resource.type is ResourceType.CLUSTER)  # fmt: skip


NAMES = st.sampled_from(["o", "or", "orders", "ord", "payments", "p", "*"])


@st.composite
def bindings(draw: Any) -> AclBinding:
    kind = draw(st.sampled_from(list(ResourceType)))
    if kind is ResourceType.CLUSTER:
        name, pattern = CLUSTER.name, PatternType.LITERAL
    else:
        pattern = draw(st.sampled_from(list(PatternType)))
        name = draw(NAMES.filter(lambda n: n != "*" or pattern is PatternType.LITERAL))
    return AclBinding.create(
        draw(st.sampled_from(["*", "user:*", "node:*", "user:alice", "user:bob", "node:2",
                              "anonymous"])),
        kind, name, draw(st.sampled_from(OPERATIONS)), draw(st.sampled_from(list(Permission))),
        pattern,
    )


@st.composite
def resources(draw: Any) -> Resource:
    kind = draw(st.sampled_from(list(ResourceType)))
    if kind is ResourceType.CLUSTER:
        return CLUSTER
    return Resource(kind, draw(st.sampled_from(["orders", "ord", "o", "payments", "x", "*"])))


@settings(max_examples=400, deadline=None)
@given(
    acls=st.lists(bindings(), max_size=12),
    super_users=st.sets(st.sampled_from(["user:alice", "user:bob"]), max_size=1),
    principal=st.sampled_from(PRINCIPALS),
    operation=st.sampled_from(CHECKED_OPERATIONS),
    resource=resources(),
)
def test_decisions_follow_the_rules(
    acls: list[AclBinding], super_users: set[str], principal: Principal,
    operation: Operation, resource: Resource,
) -> None:  # fmt: skip
    """Every decision equals the rules read literally (super users, deny wins, allow with
    implied operations, the nodes' cluster_action, default deny), and names its basis."""
    decision = AclAuthorizer(acls, super_users).decide(principal, operation, resource)
    assert decision.allowed == reference(acls, super_users, principal, operation, resource)
    if decision.basis in (Basis.ACL_ALLOW, Basis.ACL_DENY):
        assert decision.rule is not None
        assert _principal_matches(decision.rule, principal)
        assert _resource_matches(decision.rule, resource)


@settings(max_examples=200, deadline=None)
@given(
    acls=st.lists(bindings(), max_size=10),
    principal=st.sampled_from([ALICE, BOB, NODE_2]),
    operation=st.sampled_from(CHECKED_OPERATIONS),
    resource=resources(),
)
def test_a_matching_deny_always_wins(
    acls: list[AclBinding], principal: Principal, operation: Operation, resource: Resource
) -> None:
    """Adding a deny that matches refuses the operation whatever else allows it, except for
    a super user."""
    deny = AclBinding.create(str(principal), resource.type, resource.name, operation,
                             Permission.DENY)  # fmt: skip
    every = [*acls, deny, AclBinding.create("*", resource.type, "*" if resource.type
             is not ResourceType.CLUSTER else CLUSTER.name, Operation.ALL)]  # fmt: skip
    decision = AclAuthorizer(every).decide(principal, operation, resource)
    assert not decision.allowed and decision.basis is Basis.ACL_DENY
    assert AclAuthorizer(every, {str(principal)}).decide(principal, operation, resource).allowed


def test_default_deny_and_super_users() -> None:
    """No ACL: nobody may do anything but super users (and nodes their cluster_action)."""
    core = AclAuthorizer([], parse_super_users("user:admin, user:ops"))
    for operation in CHECKED_OPERATIONS:
        for resource in (CLUSTER, topic("orders"), Resource(ResourceType.GROUP, "g")):
            assert not core.decide(ALICE, operation, resource).allowed
            assert not core.decide(ANONYMOUS, operation, resource).allowed
            assert core.decide(Principal("user", "admin"), operation, resource).allowed
            node = core.decide(NODE_2, operation, resource)
            assert node.allowed == (operation is Operation.CLUSTER_ACTION and resource == CLUSTER)
    with pytest.raises(ValueError):
        parse_super_users("admin")


def test_read_on_one_topic_is_only_that() -> None:
    """read on orders: read and describe orders; not write it, not read payments."""
    core = AclAuthorizer([acl("user:alice", "read", "topic", "orders")])
    assert core.decide(ALICE, Operation.READ, topic("orders")).allowed
    assert core.decide(ALICE, Operation.DESCRIBE, topic("orders")).allowed  # implied
    assert not core.decide(ALICE, Operation.WRITE, topic("orders")).allowed
    assert not core.decide(ALICE, Operation.READ, topic("payments")).allowed
    assert not core.decide(BOB, Operation.READ, topic("orders")).allowed
    assert not core.decide(ALICE, Operation.DESCRIBE_CONFIGS, topic("orders")).allowed


def test_implied_operations_are_allow_only() -> None:
    """A deny of read does not deny describe (Kafka); alter_configs implies
    describe_configs; `all` implies everything and a deny of `all` refuses everything."""
    core = AclAuthorizer([
        acl("user:alice", "describe", "topic", "orders"),
        acl("user:alice", "read", "topic", "orders", "deny"),
        acl("user:alice", "alter_configs", "topic", "cfg"),
        acl("user:alice", "all", "topic", "mine-", pattern="prefixed"),
        acl("user:alice", "all", "topic", "mine-secret", "deny"),
    ])  # fmt: skip
    assert core.decide(ALICE, Operation.DESCRIBE, topic("orders")).allowed
    assert not core.decide(ALICE, Operation.READ, topic("orders")).allowed
    assert core.decide(ALICE, Operation.DESCRIBE_CONFIGS, topic("cfg")).allowed
    assert not core.decide(ALICE, Operation.DESCRIBE, topic("cfg")).allowed
    assert core.decide(ALICE, Operation.DELETE, topic("mine-1")).allowed
    assert not core.decide(ALICE, Operation.DESCRIBE, topic("mine-secret")).allowed


def test_prefix_and_wildcards() -> None:
    """A prefixed ACL covers names starting with it; literal * covers every name of its
    type; principal wildcards cover anyone (*) or one kind (user:*)."""
    core = AclAuthorizer([
        acl("user:alice", "write", "topic", "etl-", pattern="prefixed"),
        acl("user:*", "describe", "topic", "*"),
        acl("*", "read", "group", "shared"),
        acl("node:*", "read", "topic", "replicated"),
    ])  # fmt: skip
    assert core.decide(ALICE, Operation.WRITE, topic("etl-2024")).allowed
    assert core.decide(ALICE, Operation.WRITE, topic("etl-")).allowed
    assert not core.decide(ALICE, Operation.WRITE, topic("etl")).allowed
    assert not core.decide(ALICE, Operation.WRITE, topic("xetl-1")).allowed
    assert core.decide(BOB, Operation.DESCRIBE, topic("anything")).allowed
    assert not core.decide(ANONYMOUS, Operation.DESCRIBE, topic("anything")).allowed
    assert not core.decide(NODE_2, Operation.DESCRIBE, topic("anything")).allowed
    assert core.decide(ANONYMOUS, Operation.READ, Resource(ResourceType.GROUP, "shared")).allowed
    assert core.decide(NODE_2, Operation.READ, topic("replicated")).allowed
    assert not core.decide(ALICE, Operation.READ, topic("replicated")).allowed


def test_bindings_are_checked() -> None:
    """Bad principals, names, operations and cluster names are INVALID_REQUEST."""
    for args in (("alice", "read", "topic", "t"), ("user:", "read", "topic", "t"),
                 ("node:x", "read", "topic", "t"), ("user:a", "fly", "topic", "t"),
                 ("user:a", "read", "planet", "t"), ("user:a", "read", "topic", ""),
                 ("user:a", "read", "topic", "x" * 256), ("user:a", "read", "cluster", "c"),
                 ("user:" + "a" * 300, "read", "topic", "t")):  # fmt: skip
        with pytest.raises(BrookError) as caught:
            acl(*args)
        assert caught.value.reason == Reason.INVALID_REQUEST, args
    with pytest.raises(BrookError):
        acl("user:a", "read", "topic", "*", pattern="prefixed")


def test_filters() -> None:
    """Exact fields select exactly; `match` selects what applies to a resource."""
    stored = [
        acl("user:alice", "read", "topic", "orders"),
        acl("user:bob", "write", "topic", "ord", pattern="prefixed"),
        acl("*", "describe", "topic", "*"),
        acl("user:alice", "read", "group", "orders"),
    ]
    exact = AclFilter(resource_type=ResourceType.TOPIC, resource_name="orders")
    assert [b for b in stored if exact.selects(b)] == [stored[0]]
    match = AclFilter(resource_type=ResourceType.TOPIC, resource_name="orders", match=True)
    assert [b for b in stored if match.selects(b)] == stored[:3]
    anywhere = AclFilter(resource_name="orders", match=True)
    assert [b for b in stored if anywhere.selects(b)] == stored
    by_principal = AclFilter(principal="user:alice", operation=Operation.READ)
    assert [b for b in stored if by_principal.selects(b)] == [stored[0], stored[3]]
    assert AclFilter().empty and not by_principal.empty


@dataclass
class FakeAcls:
    """An AclSource whose ACLs a test changes (version moves, as the etcd cache's does)."""

    acls: list[AclBinding] = field(default_factory=list)
    version: int = 0
    reads: int = 0

    def bindings(self) -> list[AclBinding]:
        self.reads += 1
        return list(self.acls)

    def set(self, acls: list[AclBinding]) -> None:
        self.acls = acls
        self.version += 1


def test_decisions_are_cached_until_the_acls_change() -> None:
    """The shell builds its index once per ACL version and caches decisions; a change
    (new version) takes effect on the next check."""
    source = FakeAcls()
    authz = Authorizer(source)
    assert not authz.may(ALICE, Operation.READ, topic("orders"))
    for _ in range(100):
        authz.may(ALICE, Operation.READ, topic("orders"))
    assert source.reads == 1
    source.set([acl("user:alice", "read", "topic", "orders")])
    assert authz.may(ALICE, Operation.READ, topic("orders"))
    assert source.reads == 2
    source.set([])
    assert not authz.may(ALICE, Operation.READ, topic("orders"))
    assert Authorizer().may(ALICE, Operation.DELETE, CLUSTER)  # no authorizer: allow


class FakeContext:
    """What the Authorizer reads of a grpc.aio.ServicerContext."""

    def peer(self) -> str:
        return "ipv4:127.0.0.1:5555"

    def invocation_metadata(self) -> tuple[()]:
        return ()


def test_refusals_raise_permission_denied_and_are_audited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """require() refuses with PERMISSION_DENIED naming principal, operation and resource,
    writes one JSON audit line per refusal, and audits allowed mutating admin calls."""
    source = FakeAcls([acl("anonymous", "delete", "topic", "scratch")])
    authz = Authorizer(source)
    context: Any = FakeContext()
    with caplog.at_level(logging.INFO, logger="brook.audit"):
        with pytest.raises(BrookError) as caught:
            authz.require(context, "brook.v1.AdminService/DeleteTopic", topic="orders")
        assert caught.value.reason == Reason.PERMISSION_DENIED
        assert caught.value.metadata == {"principal": "anonymous", "operation": "delete",
                                         "resource_type": "topic", "resource": "orders"}
        assert authz.require(context, "brook.v1.AdminService/DeleteTopic",
                             topic="scratch") == ANONYMOUS  # fmt: skip
        errors = authz.topic_errors(context, "brook.v1.StorageService/Produce", ANONYMOUS,
                                    ["a", "a", "b"])  # fmt: skip
    assert sorted(errors) == ["a", "b"]
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "brook.audit"]
    assert [(line["result"], line["resource"]) for line in lines] == [
        ("denied", "orders"), ("allowed", "scratch"), ("denied", "a"), ("denied", "b")]
    assert lines[0]["method"] == "brook.v1.AdminService/DeleteTopic"
    assert lines[0]["peer"] == "ipv4:127.0.0.1:5555" and lines[0]["basis"] == "no_acl"
    assert lines[1]["rule"].startswith("allow anonymous delete on topic:scratch")


def test_replication_needs_the_nodes_own_identity() -> None:
    """ReplicaFetch: node:2 may fetch as replica 2, not as 3; a super user may not at all."""
    authz = Authorizer(FakeAcls(), super_users={"user:admin"})
    context: Any = FakeContext()
    method = "brook.v1.ReplicaService/ReplicaFetch"
    try:
        principals.set_authenticator(_Fixed(NODE_2))
        assert authz.require_node(context, method, 2) == NODE_2
        with pytest.raises(BrookError, match="PERMISSION_DENIED"):
            authz.require_node(context, method, 3)
        principals.set_authenticator(_Fixed(Principal("user", "admin")))
        with pytest.raises(BrookError, match="PERMISSION_DENIED"):
            authz.require_node(context, method, 2)
        principals.set_authenticator(_Fixed(ALICE))
        with pytest.raises(BrookError, match="PERMISSION_DENIED"):
            authz.require_node(context, method, 2)
    finally:
        principals.set_authenticator(principals._Anonymous())


@dataclass
class _Fixed:
    principal: Principal

    def authenticate(self, context: Any) -> Principal:
        return self.principal


def test_acl_keys_and_values_round_trip() -> None:
    """An ACL's etcd key spells the whole binding (segments percent-encoded, so a / in a
    principal or group id cannot shift them) and its JSON value reads back equal."""
    keys = Keys("prod")
    binding = acl("user:CN=a/b,O=x", "read", "group", "team/a b", "deny", "prefixed")
    key = keys.acl(binding.resource_type.value, binding.pattern_type.value,
                   binding.resource_name, binding.principal, binding.operation.value,
                   binding.permission.value)  # fmt: skip
    assert key.startswith(b"/brook/prod/acls/group/prefixed/team%2Fa%20b/")
    parsed = keys.parse(key)
    assert parsed is not None and parsed.kind == KIND_ACL
    assert parsed.parts == ("group", "prefixed", "team/a b", "user:CN=a/b,O=x", "read", "deny")
    assert binding_from_json(binding_to_json(binding, 123)) == binding
    assert keys.acls_prefix == b"/brook/prod/acls/"


def test_produce_records_topic_is_the_one_protobuf_parses() -> None:
    """The record API's topic is read off the raw request as protobuf would (last one
    wins), so a second topic field cannot slip past the check."""
    first = record_service_pb2.ProduceRecordsRequest(
        topic="allowed", records=[record_service_pb2.PlainRecord(value=b"v")] * 5)
    second = record_service_pb2.ProduceRecordsRequest(topic="secret")
    data = first.SerializeToString() + second.SerializeToString()
    assert produce_records_topic(data) == "secret"
    assert record_service_pb2.ProduceRecordsRequest.FromString(data).topic == "secret"
    assert produce_records_topic(b"") == ""
    with pytest.raises(BrookError, match="INVALID_REQUEST"):
        produce_records_topic(record_service_pb2.ProduceRecordsRequest(
            topic="x" * 300).SerializeToString())  # fmt: skip
    with pytest.raises(BrookError, match="INVALID_REQUEST"):
        produce_records_topic(b"\x0a\x05ab")  # runs past the end
