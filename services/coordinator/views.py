"""Records -> API messages: how topics, partitions, nodes and configs read in responses.

Pure conversions shared by the Admin and Metadata services.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from brook.services.coordinator import balance
from brook.services.coordinator.balancer import Move
from brook.services.metadata import configs
from brook.services.metadata.model import (
    NO_LEADER,
    Endpoint,
    NodeInfo,
    PartitionRecord,
    TopicRecord,
)
from brook.v1 import admin_pb2, common_pb2


def endpoint(value: Endpoint | None) -> common_pb2.Endpoint | None:
    return common_pb2.Endpoint(id=value.id, address=value.address) if value else None


def node(value: NodeInfo) -> common_pb2.Node:
    return common_pb2.Node(node_id=value.node_id, address=value.address, rack=value.rack)


def partition_state(record: PartitionRecord, live: Collection[int]) -> common_pb2.PartitionState:
    leader_live = record.leader != NO_LEADER and record.leader in live
    return common_pb2.PartitionState(
        partition=record.partition,
        leader_id=record.leader if leader_live else NO_LEADER,
        leader_epoch=record.leader_epoch,
        replica_ids=list(record.replicas),
        isr_ids=list(record.isr),
        offline_replica_ids=[r for r in record.replicas if r not in live],
        adding_replica_ids=list(record.adding_replicas),
        removing_replica_ids=list(record.removing_replicas),
    )


def topic_description(
    topic: TopicRecord, partitions: Iterable[PartitionRecord], live: Collection[int]
) -> admin_pb2.TopicDescription:
    return admin_pb2.TopicDescription(
        name=topic.name,
        topic_id=topic.topic_id,
        partition_count=topic.partition_count,
        replication_factor=topic.replication_factor,
        configs=dict(topic.configs),
        partitions=[
            partition_state(p, live) for p in sorted(partitions, key=lambda p: p.partition)
        ],
    )


def topic_summary(topic: TopicRecord) -> admin_pb2.TopicSummary:
    return admin_pb2.TopicSummary(
        name=topic.name,
        topic_id=topic.topic_id,
        partition_count=topic.partition_count,
        replication_factor=topic.replication_factor,
    )


def config_entries(topic: TopicRecord) -> list[admin_pb2.ConfigEntry]:
    effective = configs.effective_configs(topic)
    return [
        admin_pb2.ConfigEntry(
            name=name,
            value=effective[name],
            source=admin_pb2.CONFIG_SOURCE_TOPIC
            if name in topic.configs
            else admin_pb2.CONFIG_SOURCE_DEFAULT,
            default_value=configs.default_for(name, topic.replication_factor),
            description=config.description,
        )
        for name, config in configs.TOPIC_CONFIGS.items()
    ]


def is_offline(record: PartitionRecord, live: Collection[int]) -> bool:
    return record.leader == NO_LEADER or record.leader not in live


def is_under_replicated(record: PartitionRecord, live: Collection[int]) -> bool:
    live_isr = [r for r in record.isr if r in live]
    return len(live_isr) < len(record.replicas)


def node_descriptions(
    nodes: Mapping[int, NodeInfo], partitions: Iterable[PartitionRecord]
) -> list[admin_pb2.NodeDescription]:
    replicas: dict[int, int] = {}
    leaders: dict[int, int] = {}
    for record in partitions:
        for replica in record.replicas:
            replicas[replica] = replicas.get(replica, 0) + 1
        leaders[record.leader] = leaders.get(record.leader, 0) + 1
    return [
        admin_pb2.NodeDescription(
            node=node(info),
            replica_count=replicas.get(node_id, 0),
            leader_count=leaders.get(node_id, 0),
        )
        for node_id, info in sorted(nodes.items())
    ]


_NODE_STATES = {
    balance.STATUS_ACTIVE: admin_pb2.NODE_STATE_ACTIVE,
    balance.STATUS_DECOMMISSIONING: admin_pb2.NODE_STATE_DECOMMISSIONING,
    balance.STATUS_DRAINED: admin_pb2.NODE_STATE_DRAINED,
    balance.STATUS_OFFLINE: admin_pb2.NODE_STATE_OFFLINE,
}


def node_status(status: balance.NodeStatus) -> admin_pb2.NodeStatus:
    return admin_pb2.NodeStatus(
        node_id=status.node_id,
        address=status.address,
        rack=status.rack,
        state=_NODE_STATES[status.status],
        live=status.live,
        replica_count=status.replicas,
        leader_count=status.leaders,
        size_bytes=status.size_bytes,
    )


def planned_move(move: Move, started: bool) -> admin_pb2.PlannedMove:
    return admin_pb2.PlannedMove(
        topic=move.key.topic,
        partition=move.key.partition,
        old_replica_ids=list(move.old_replicas),
        new_replica_ids=list(move.new_replicas),
        bytes_to_copy=move.bytes_to_copy,
        started=started,
    )
