"""The operations table (issue 11): what every RPC of every Brook service needs.

One entry per RPC, keyed by its full gRPC name (`brook.v1.AdminService/DeleteTopic`). The
servicers call the `Authorizer` with their method's name and the names of the resources
the request touches; the table says which operations on which resources those are, so
the rules live here once and `tests/security/test_authz_table.py` fails when a served RPC
has no entry.

A `Need` is one requirement: any of its (operation, resource type) alternatives grants
it. An entry has:
- `call`: needs checked before the call does anything; one refused answers the whole
  call PERMISSION_DENIED and nothing changes;
- `topics`: the need on each topic a multi-topic request names. What a refused topic
  gets is the RPC's `topics_denied`: `partition_error` (its partitions answer
  PERMISSION_DENIED, the others are served, as Kafka does), `filter` (left out of a
  listing), or `fail` (the whole call is refused);
- `groups`: the need on each group a listing shows (the others are left out);
- `detail`: what shows member ids and epochs in a group description (without it they
  are blanked, so a describer cannot act as a member);
- `node_identity`: the caller must be `node:<replica_id>` and a replica of every
  partition named (super users do not bypass it: only nodes replicate);
- `public`: served to anyone (health, reflection);
- `audited`: a mutating admin operation, written to the audit log when allowed too.

Thread-safety: constants.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from brook.services.common.authz.model import Operation, ResourceType

_C, _T, _G = ResourceType.CLUSTER, ResourceType.TOPIC, ResourceType.GROUP


class TopicsDenied(StrEnum):
    """What a refused topic of a multi-topic request gets."""

    PARTITION_ERROR = "partition_error"
    FILTER = "filter"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Need:
    """One requirement: any of `alternatives` (operation, resource type) grants it."""

    alternatives: tuple[tuple[Operation, ResourceType], ...]

    def __str__(self) -> str:
        return " or ".join(f"{op.value} on {kind.value}" for op, kind in self.alternatives)


def need(*pairs: tuple[Operation, ResourceType]) -> Need:
    return Need(tuple(pairs))


@dataclass(frozen=True, slots=True)
class RpcRule:
    """What one RPC needs (see the module doc)."""

    call: tuple[Need, ...] = ()
    topics: Need | None = None
    topics_denied: TopicsDenied = TopicsDenied.PARTITION_ERROR
    groups: Need | None = None
    detail: Need | None = None
    node_identity: bool = False
    public: bool = False
    audited: bool = False
    note: str = ""


R, W, CR = Operation.READ, Operation.WRITE, Operation.CREATE
D, A = Operation.DELETE, Operation.ALTER
DESC, AC, DC = Operation.DESCRIBE, Operation.ALTER_CONFIGS, Operation.DESCRIBE_CONFIGS
CA = Operation.CLUSTER_ACTION

# Brook's own processes act for their callers (the record API forwards to leaders, the
# group manager looks up offsets for lag and resets): storage nodes hold cluster_action
# on the cluster (built in), so their data-path calls pass on it.
_FORWARDED = (CA, _C)

RPC_TABLE: dict[str, RpcRule] = {
    # -- storage nodes: the data path ------------------------------------------------------
    "brook.v1.StorageService/Produce": RpcRule(
        topics=need((W, _T), _FORWARDED),
        note="per partition: denied topics answer PERMISSION_DENIED, the rest is appended"),
    "brook.v1.StorageService/Fetch": RpcRule(
        topics=need((R, _T), _FORWARDED),
        note="per partition: denied topics answer PERMISSION_DENIED, the rest is read"),
    "brook.v1.StorageService/Subscribe": RpcRule(
        topics=need((R, _T), _FORWARDED),
        note="denied partitions end at once with PERMISSION_DENIED (first message);"
             " all denied: the call fails"),
    "brook.v1.StorageService/ListOffsets": RpcRule(
        topics=need((DESC, _T), _FORWARDED), note="per partition"),
    "brook.v1.StorageService/DescribeLogDirs": RpcRule(
        call=(need((DESC, _C), (CA, _C)),),
        note="sizes of every replica on the node; cluster_action too: the coordinator"
             " asks it for reassignment progress and the balancer's sizes"),
    "brook.v1.ReplicaService/ReplicaFetch": RpcRule(
        call=(need((CA, _C)),), node_identity=True,
        note="caller must be node:<replica_id> and a replica of each partition"),
    "brook.v1.ReplicaService/OffsetForLeaderEpoch": RpcRule(
        call=(need((CA, _C)),), node_identity=True,
        note="caller must be node:<replica_id> and a replica of each partition"),
    "brook.v1.RecordService/ProduceRecords": RpcRule(call=(need((W, _T)),)),
    "brook.v1.RecordService/ReadRecords": RpcRule(call=(need((R, _T)),)),
    # -- coordinator: metadata and admin ---------------------------------------------------
    "brook.v1.MetadataService/GetMetadata": RpcRule(
        topics=need((DESC, _T)), topics_denied=TopicsDenied.FILTER,
        note="lists only describable topics; a named one not describable answers"
             " PERMISSION_DENIED in its entry"),
    "brook.v1.AdminService/CreateTopic": RpcRule(
        call=(need((CR, _C), (CR, _T)),), audited=True),
    "brook.v1.AdminService/DeleteTopic": RpcRule(call=(need((D, _T)),), audited=True),
    "brook.v1.AdminService/ListTopics": RpcRule(
        topics=need((DESC, _T)), topics_denied=TopicsDenied.FILTER,
        note="lists only describable topics"),
    "brook.v1.AdminService/DescribeTopic": RpcRule(call=(need((DESC, _T)),)),
    "brook.v1.AdminService/DescribeCluster": RpcRule(call=(need((DESC, _C)),)),
    "brook.v1.AdminService/DescribeConfigs": RpcRule(call=(need((DC, _T)),)),
    "brook.v1.AdminService/AlterConfigs": RpcRule(call=(need((AC, _T)),), audited=True),
    "brook.v1.AdminService/CreatePartitions": RpcRule(call=(need((A, _T)),), audited=True),
    "brook.v1.AdminService/ReassignPartitions": RpcRule(call=(need((A, _C)),), audited=True),
    "brook.v1.AdminService/ListReassignments": RpcRule(call=(need((DESC, _C)),)),
    "brook.v1.AdminService/ElectLeaders": RpcRule(
        call=(need((A, _C)),), audited=True, note="preferred and unclean elections"),
    "brook.v1.AdminService/CreateAcls": RpcRule(call=(need((A, _C)),), audited=True),
    "brook.v1.AdminService/DescribeAcls": RpcRule(call=(need((DESC, _C)),)),
    "brook.v1.AdminService/DeleteAcls": RpcRule(call=(need((A, _C)),), audited=True),
    "brook.v1.AdminService/AlterClientQuotas": RpcRule(call=(need((AC, _C)),), audited=True),
    "brook.v1.AdminService/DescribeClientQuotas": RpcRule(call=(need((DC, _C)),)),
    "brook.v1.AdminService/ListNodes": RpcRule(call=(need((DESC, _C)),)),
    "brook.v1.AdminService/DecommissionNode": RpcRule(call=(need((A, _C)),), audited=True),
    "brook.v1.AdminService/RecommissionNode": RpcRule(call=(need((A, _C)),), audited=True),
    "brook.v1.AdminService/RebalancePartitions": RpcRule(
        call=(need((A, _C)),), audited=True, note="a dry run needs alter too: it plans"),
    "brook.v1.AdminService/DrainLeadership": RpcRule(
        call=(need((A, _C), (CA, _C)),), audited=True,
        note="alter on the cluster, or cluster_action as the storage node being drained"),
    "brook.v1.AdminService/AlterReplicationThrottle": RpcRule(
        call=(need((A, _C)),), audited=True, note="the reassignment replication throttle"),
    "brook.v1.AdminService/DescribeReplicationThrottle": RpcRule(call=(need((DESC, _C)),)),
    # -- group manager ---------------------------------------------------------------------
    "brook.v1.GroupService/Heartbeat": RpcRule(
        call=(need((R, _G)),), topics=need((R, _T)), topics_denied=TopicsDenied.FAIL,
        note="read on every subscribed topic name"),
    "brook.v1.GroupService/CommitOffsets": RpcRule(
        call=(need((R, _G)),), topics=need((R, _T)), note="per partition"),
    "brook.v1.GroupService/FetchOffsets": RpcRule(
        call=(need((DESC, _G)),), topics=need((DESC, _T)), topics_denied=TopicsDenied.FAIL,
        note="named topics must be describable; 'all' lists describable topics only"),
    "brook.v1.GroupService/ListGroups": RpcRule(
        groups=need((DESC, _G)), note="lists only describable groups"),
    "brook.v1.GroupService/DescribeGroup": RpcRule(
        call=(need((DESC, _G)),), detail=need((A, _G)),
        note="member ids and epochs need alter on the group"),
    "brook.v1.GroupService/WatchGroup": RpcRule(
        call=(need((DESC, _G)),), detail=need((A, _G)),
        note="member ids and epochs need alter on the group"),
    "brook.v1.GroupService/GetLagHistory": RpcRule(call=(need((DESC, _G)),)),
    "brook.v1.GroupService/DeleteGroup": RpcRule(call=(need((D, _G)),), audited=True),
    "brook.v1.GroupService/ResetOffsets": RpcRule(
        call=(need((A, _G)),), topics=need((R, _T)), topics_denied=TopicsDenied.FAIL,
        audited=True, note="read on every topic reset"),
    # -- served by every process -----------------------------------------------------------
    "grpc.health.v1.Health/Check": RpcRule(public=True),
    "grpc.health.v1.Health/Watch": RpcRule(public=True),
    "grpc.health.v1.Health/List": RpcRule(public=True),
    "grpc.reflection.v1.ServerReflection/ServerReflectionInfo": RpcRule(public=True),
    "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": RpcRule(public=True),
}


def rule_of(method: str) -> RpcRule:
    """The table's entry (KeyError for an RPC without one: a programming error)."""
    return RPC_TABLE[method]


def describe_rule(rule: RpcRule) -> str:
    """A one-line summary (docs and the coverage test's messages)."""
    if rule.public:
        return "none (public)"
    parts = [str(n) for n in rule.call]
    if rule.node_identity:
        parts.append("caller is node:<replica_id>, a replica of each partition")
    if rule.topics is not None:
        parts.append(f"each topic: {rule.topics} ({rule.topics_denied.value})")
    if rule.groups is not None:
        parts.append(f"each group listed: {rule.groups}")
    if rule.detail is not None:
        parts.append(f"member ids/epochs: {rule.detail}")
    return "; ".join(parts)
