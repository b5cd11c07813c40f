"""Authorization (issue 11): ACL values (`model`), the pure decision (`core`), the
operations table (`table`), the audit log (`audit`) and the servicers' `Authorizer`
(`enforce`). The ACLs themselves live in etcd (`brook.services.metadata.acls`)."""

from brook.services.common.authz.core import AclAuthorizer, Basis, Decision, parse_super_users
from brook.services.common.authz.enforce import (
    ALLOW_ALL,
    AUTHORIZERS,
    AclSource,
    Authorizer,
    check_call,
    check_produce_records,
    install,
    installed,
    permission_denied,
)
from brook.services.common.authz.model import (
    CLUSTER,
    CLUSTER_RESOURCE_NAME,
    AclBinding,
    AclFilter,
    Operation,
    PatternType,
    Permission,
    Resource,
    ResourceType,
)
from brook.services.common.authz.table import RPC_TABLE, RpcRule, TopicsDenied
from brook.services.common.authz.wire_fields import produce_records_topic

__all__ = [
    "ALLOW_ALL",
    "AUTHORIZERS",
    "CLUSTER",
    "CLUSTER_RESOURCE_NAME",
    "RPC_TABLE",
    "AclAuthorizer",
    "AclBinding",
    "AclFilter",
    "AclSource",
    "Authorizer",
    "Basis",
    "Decision",
    "Operation",
    "PatternType",
    "Permission",
    "Resource",
    "ResourceType",
    "RpcRule",
    "TopicsDenied",
    "check_call",
    "check_produce_records",
    "install",
    "installed",
    "parse_super_users",
    "permission_denied",
    "produce_records_topic",
]
