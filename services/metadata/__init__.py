"""The etcd metadata layer: the one package that knows Brook's etcd key layout.

`MetadataStore` reads and writes etcd (CAS on mod revisions), `Lease` keeps a role or a
node registration alive, `MetadataCache` is a watch-fed snapshot, `keys` spells every
key, `configs` lists topic configs.
"""

from brook.services.metadata.cache import MetadataCache
from brook.services.metadata.keys import Keys
from brook.services.metadata.model import (
    NO_LEADER,
    Endpoint,
    NodeInfo,
    PartitionRecord,
    TopicRecord,
)
from brook.services.metadata.store import Lease, MetadataStore

__all__ = [
    "NO_LEADER",
    "Endpoint",
    "Keys",
    "Lease",
    "MetadataCache",
    "MetadataStore",
    "NodeInfo",
    "PartitionRecord",
    "TopicRecord",
]
