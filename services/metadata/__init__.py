"""The etcd metadata layer: the one package that knows Brook's etcd key layout."""

from brook.services.metadata.model import (
    Endpoint,
    NodeInfo,
    PartitionRecord,
    TopicRecord,
)

__all__ = ["Endpoint", "NodeInfo", "PartitionRecord", "TopicRecord"]
