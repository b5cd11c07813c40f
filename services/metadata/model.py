"""Plain records stored in etcd (as JSON) and cached by every process.

These are values, not live objects: a decision is a new record written with a
compare-and-swap on the old one's etcd mod revision.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

NO_LEADER = -1
# The longest topic name any process accepts (Kafka's rule too): the coordinator refuses
# longer names at creation, the group manager and the nodes bound requests by it, and a
# node's directory names must fit every name up to it.
TOPIC_NAME_CHARS_MAX = 249


@dataclass(frozen=True)
class NodeInfo:
    """A live storage node, registered under its lease."""

    node_id: int
    address: str
    rack: str = ""
    process_id: str = ""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> NodeInfo:
        return cls(**_known(cls, json.loads(data)))


# Operator-set node states (issue 13). A node with no state record is active.
NODE_STATE_ACTIVE = "active"
NODE_STATE_DECOMMISSIONING = "decommissioning"
NODE_STATES = (NODE_STATE_ACTIVE, NODE_STATE_DECOMMISSIONING)


@dataclass(frozen=True)
class NodeStateRecord:
    """An operator's decision about a node, kept whether or not the node is live: a
    decommissioning node takes no new replicas and is emptied by the balancer."""

    node_id: int
    state: str = NODE_STATE_ACTIVE
    changed_ms: int = 0

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> NodeStateRecord:
        return cls(**_known(cls, json.loads(data)))


@dataclass(frozen=True)
class Endpoint:
    """A coordinator or group-manager process (id unique per process start)."""

    id: str
    address: str

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Endpoint:
        return cls(**_known(cls, json.loads(data)))


@dataclass(frozen=True)
class TopicRecord:
    """A topic: its id, shape and config overrides (string values by config name)."""

    name: str
    topic_id: str
    partition_count: int
    replication_factor: int
    configs: dict[str, str] = field(default_factory=dict)
    created_ms: int = 0

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> TopicRecord:
        return cls(**_known(cls, json.loads(data)))


@dataclass(frozen=True)
class PartitionRecord:
    """One partition's placement and leadership, the unit of compare-and-swap.

    `replicas[0]` is the preferred leader. `leader_epoch` is bumped on every leader
    change; `partition_epoch` on every change of any field (ISR changes included), so
    a leader can guard its ISR update on both.
    """

    topic: str
    partition: int
    topic_id: str
    replicas: tuple[int, ...]
    leader: int = NO_LEADER
    leader_epoch: int = 0
    isr: tuple[int, ...] = ()
    partition_epoch: int = 0
    adding_replicas: tuple[int, ...] = ()
    removing_replicas: tuple[int, ...] = ()

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> PartitionRecord:
        values = _known(cls, json.loads(data))
        for key in ("replicas", "isr", "adding_replicas", "removing_replicas"):
            values[key] = tuple(values.get(key, ()))
        return cls(**values)

    def evolve(self, **changes: Any) -> PartitionRecord:
        """A copy with `changes` and partition_epoch + 1 (every write bumps it)."""
        return replace(self, partition_epoch=self.partition_epoch + 1, **changes)


def _known(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """Drops keys a newer writer added, so an older reader still loads the record."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in values.items() if k in names}
