"""Brook's etcd key layout: the only module that spells key strings.

Layout (every key of a cluster lives under one prefix, so clusters share an etcd):

    /brook/<cluster>/cluster_id                          cluster id (create-if-absent)
    /brook/<cluster>/nodes/<node_id>                     NodeInfo JSON, under the node's lease
    /brook/<cluster>/node_states/<node_id>               NodeStateRecord JSON (decommission)
    /brook/<cluster>/roles/<role>                        Endpoint JSON, under the holder's lease
    /brook/<cluster>/topics/<name>                       TopicRecord JSON
    /brook/<cluster>/partitions/<name>/<partition>       PartitionRecord JSON
    /brook/<cluster>/groups/<group_id>                   group record JSON
    /brook/<cluster>/offsets/<group_id>/<topic>/<p>      committed offset JSON
    /brook/<cluster>/quotas/<principal>                  QuotaConfig JSON ("<default>": the default)
    /brook/<cluster>/replication_throttle/<scope>        {"bytes_per_second": N} (cluster, node id)
    /brook/<cluster>/acls/<type>/<pattern>/<name>/<principal>/<operation>/<permission>
                                                         AclBinding JSON (one key per ACL)

An ACL's key spells the whole binding (resource type, pattern type, resource name,
principal, operation, permission), so creating one twice is idempotent and
`etcdctl get --prefix /brook/<cluster>/acls/topic/` reads as a list of ACLs.

Path segments that come from users (topic names, group ids, principals, ACL resource
names) are percent-encoded, so a
`/` inside a group id cannot shift the segments of an offsets key. Topic names are
restricted to [a-zA-Z0-9._-], which percent-encoding leaves unchanged, so topic keys stay
readable in `etcdctl get --prefix`. Prefixes end with `/` so "orders" never matches
"orders-eu".
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote

ROOT = "/brook"

ROLE_COORDINATOR = "coordinator"
ROLE_GROUPS = "groups"
ROLES = (ROLE_COORDINATOR, ROLE_GROUPS)

# Kinds of key, as `ParsedKey.kind` reports them.
KIND_CLUSTER_ID = "cluster_id"
KIND_NODE = "node"
KIND_NODE_STATE = "node_state"
KIND_ROLE = "role"
KIND_TOPIC = "topic"
KIND_PARTITION = "partition"
KIND_GROUP = "group"
KIND_OFFSET = "offset"
KIND_ACL = "acl"
KIND_QUOTA = "quota"
KIND_REPLICATION_THROTTLE = "replication_throttle"


def _enc(segment: str) -> str:
    return quote(segment, safe="")


def prefix_range_end(prefix: bytes) -> bytes:
    """The etcd range end that covers exactly the keys starting with `prefix`."""
    data = bytearray(prefix)
    for index in reversed(range(len(data))):
        if data[index] < 0xFF:
            data[index] += 1
            return bytes(data[: index + 1])
    return b"\0"  # every byte was 0xff: the range runs to the end of the keyspace


@dataclass(frozen=True)
class ParsedKey:
    """A key taken apart: its kind and its decoded path segments after the kind."""

    kind: str
    parts: tuple[str, ...]


class Keys:
    """Key builders and the parser for one cluster (`cluster_name`)."""

    def __init__(self, cluster_name: str = "brook") -> None:
        if not cluster_name or "/" in cluster_name:
            raise ValueError(f"invalid cluster name {cluster_name!r}: empty or contains '/'")
        self.cluster_name = cluster_name
        self._root = f"{ROOT}/{cluster_name}/"

    # -- the whole cluster -------------------------------------------------------------
    @property
    def prefix(self) -> bytes:
        """Every key of this cluster starts with this."""
        return self._root.encode()

    @property
    def cluster_id(self) -> bytes:
        return f"{self._root}cluster_id".encode()

    # -- nodes and roles ---------------------------------------------------------------
    @property
    def nodes_prefix(self) -> bytes:
        return f"{self._root}nodes/".encode()

    def node(self, node_id: int) -> bytes:
        return f"{self._root}nodes/{int(node_id)}".encode()

    @property
    def node_states_prefix(self) -> bytes:
        """Operator-set node states (issue 13): absent means active."""
        return f"{self._root}node_states/".encode()

    def node_state(self, node_id: int) -> bytes:
        return f"{self._root}node_states/{int(node_id)}".encode()

    @property
    def roles_prefix(self) -> bytes:
        return f"{self._root}roles/".encode()

    def role(self, role: str) -> bytes:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; known roles: {', '.join(ROLES)}")
        return f"{self._root}roles/{role}".encode()

    # -- topics and partitions ---------------------------------------------------------
    @property
    def topics_prefix(self) -> bytes:
        return f"{self._root}topics/".encode()

    def topic(self, name: str) -> bytes:
        return f"{self._root}topics/{_enc(name)}".encode()

    @property
    def all_partitions_prefix(self) -> bytes:
        return f"{self._root}partitions/".encode()

    def partitions_prefix(self, topic: str) -> bytes:
        return f"{self._root}partitions/{_enc(topic)}/".encode()

    def partition(self, topic: str, partition: int) -> bytes:
        return f"{self._root}partitions/{_enc(topic)}/{int(partition)}".encode()

    # -- consumer groups and offsets (used by the group manager) ----------------------
    @property
    def groups_prefix(self) -> bytes:
        return f"{self._root}groups/".encode()

    def group(self, group_id: str) -> bytes:
        return f"{self._root}groups/{_enc(group_id)}".encode()

    @property
    def all_offsets_prefix(self) -> bytes:
        return f"{self._root}offsets/".encode()

    def offsets_prefix(self, group_id: str, topic: str | None = None) -> bytes:
        """All committed offsets of a group, or of one topic within the group."""
        if topic is None:
            return f"{self._root}offsets/{_enc(group_id)}/".encode()
        return f"{self._root}offsets/{_enc(group_id)}/{_enc(topic)}/".encode()

    def offset(self, group_id: str, topic: str, partition: int) -> bytes:
        return f"{self._root}offsets/{_enc(group_id)}/{_enc(topic)}/{int(partition)}".encode()

    # -- access control lists (issue 11) ----------------------------------------------
    @property
    def acls_prefix(self) -> bytes:
        return f"{self._root}acls/".encode()

    def acl(
        self, resource_type: str, pattern_type: str, resource_name: str, principal: str,
        operation: str, permission: str,
    ) -> bytes:  # fmt: skip
        """The key of one ACL binding (every field of it, in this order)."""
        segments = (resource_type, pattern_type, resource_name, principal, operation,
                    permission)  # fmt: skip
        return f"{self._root}acls/{'/'.join(_enc(s) for s in segments)}".encode()

    # -- client quotas (issue 11) -------------------------------------------------------
    @property
    def quotas_prefix(self) -> bytes:
        return f"{self._root}quotas/".encode()

    def quota(self, principal: str) -> bytes:
        """The key of one principal's quotas (`QUOTA_DEFAULT` for the cluster default)."""
        return f"{self._root}quotas/{_enc(principal)}".encode()

    # -- the reassignment replication throttle (issue 13) --------------------------------
    @property
    def replication_throttle_prefix(self) -> bytes:
        return f"{self._root}replication_throttle/".encode()

    def replication_throttle(self, scope: str) -> bytes:
        """The key of one throttle rate: scope "cluster", or a node id's digits."""
        return f"{self._root}replication_throttle/{_enc(scope)}".encode()

    # -- parsing -----------------------------------------------------------------------
    def parse(self, key: bytes) -> ParsedKey | None:
        """What a key of this cluster names, or None for keys this layout does not know.

        Numbers stay strings in `parts` (node id, partition); callers convert.
        """
        text = key.decode(errors="replace")
        if not text.startswith(self._root):
            return None
        rest = text[len(self._root) :]
        if rest == "cluster_id":
            return ParsedKey(KIND_CLUSTER_ID, ())
        head, _, tail = rest.partition("/")
        segments = tuple(unquote(s) for s in tail.split("/")) if tail else ()
        expected = {
            "nodes": (KIND_NODE, 1),
            "node_states": (KIND_NODE_STATE, 1),
            "roles": (KIND_ROLE, 1),
            "topics": (KIND_TOPIC, 1),
            "partitions": (KIND_PARTITION, 2),
            "groups": (KIND_GROUP, 1),
            "offsets": (KIND_OFFSET, 3),
            "acls": (KIND_ACL, 6),
            "quotas": (KIND_QUOTA, 1),
            "replication_throttle": (KIND_REPLICATION_THROTTLE, 1),
        }.get(head)
        if expected is None or len(segments) != expected[1] or not all(segments):
            return None
        return ParsedKey(expected[0], segments)
