"""The reassignment replication throttle in etcd (issue 13): the store the coordinator
writes, the cache every storage node reads its rate from.

One key per scope (`Keys.replication_throttle`):

    /brook/<cluster>/replication_throttle/cluster     {"bytes_per_second": 1048576}
    /brook/<cluster>/replication_throttle/<node_id>   {"bytes_per_second": 524288}

The cluster-wide rate applies to every node without an override of its own; no key
means unthrottled. A node's rate bounds both what it receives as an adding replica and
what it serves, as a leader, to adding replicas. `ThrottleCache` is a `PrefixCache`, so
the node's data path never calls etcd and a change reaches every node within a watch
round trip. Writes are fenced on the coordinator role, as quota writes are.

Thread-safety: one event loop.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

import aetcd.rpc

from brook.clock import SYSTEM_CLOCK, Clock
from brook.errors import BrookError, Reason
from brook.services.metadata.prefix_cache import PrefixCache, read_prefix
from brook.services.metadata.store import MetadataStore

SCOPE_CLUSTER = "cluster"
# The largest rate accepted (1 TiB/s: larger is a typo, not a throttle).
THROTTLE_BYTES_PER_S_MAX = 1 << 40
# Node ids with their own rate (each node keeps them all in memory).
THROTTLE_NODE_ENTRIES_MAX = 10_000


def rate_from_json(data: bytes) -> int:
    value = json.loads(data)
    if not isinstance(value, dict):
        raise ValueError("a replication throttle record is a JSON object")
    rate = value["bytes_per_second"]
    if not isinstance(rate, int) or isinstance(rate, bool) or rate < 0:
        raise ValueError("bytes_per_second must be a non-negative integer")
    return rate


def rate_to_json(rate_bytes_per_s: int) -> bytes:
    return json.dumps({"bytes_per_second": int(rate_bytes_per_s)}).encode()


def check_rate(field: str, rate_bytes_per_s: int) -> int:
    if not 0 <= rate_bytes_per_s <= THROTTLE_BYTES_PER_S_MAX:
        raise BrookError(
            Reason.INVALID_REQUEST,
            f"{field} must be 0 (no throttle) to {THROTTLE_BYTES_PER_S_MAX};"
            f" got {rate_bytes_per_s}",
            {"field": field},
        )
    return int(rate_bytes_per_s)


@dataclass(frozen=True, slots=True)
class ThrottleRates:
    """Every rate: the cluster-wide one (0: unthrottled) and the nodes' own."""

    cluster_bytes_per_s: int = 0
    nodes: Mapping[int, int] = field(default_factory=dict)

    def rate_for(self, node_id: int) -> int:
        own = self.nodes.get(node_id)
        return own if own is not None else self.cluster_bytes_per_s


def _rates(prefix: bytes, values: Mapping[bytes, int]) -> ThrottleRates:
    cluster, nodes = 0, {}
    for key, rate in values.items():
        scope = unquote(key.decode()[len(prefix):])
        if scope == SCOPE_CLUSTER:
            cluster = rate
        elif scope.isdigit() and rate > 0:
            nodes[int(scope)] = rate
    return ThrottleRates(cluster, dict(sorted(nodes.items())))


async def read_rates(store: MetadataStore) -> ThrottleRates:
    """The rates as etcd has them now (the coordinator's admin calls; not a data path)."""
    prefix = store.keys.replication_throttle_prefix
    _, found = await read_prefix(store, prefix, rate_from_json, "replication throttle")
    return _rates(prefix, dict(found))


async def write_rate(store: MetadataStore, node_id: int | None, rate_bytes_per_s: int) -> int:
    """Stores the cluster-wide rate (node_id None) or a node's own; rate 0 deletes the key
    (no throttle, or the node follows the cluster's rate again). Fenced on the coordinator
    role. Answers the etcd revision."""
    scope = SCOPE_CLUSTER if node_id is None else str(int(node_id))
    key = store.keys.replication_throttle(scope)
    rate = check_rate("rate_bytes_per_second", rate_bytes_per_s)
    if rate == 0:
        op = aetcd.rpc.RequestOp(request_delete_range=aetcd.rpc.DeleteRangeRequest(key=key))
    else:
        if node_id is not None:
            current = await read_rates(store)
            if node_id not in current.nodes and len(current.nodes) >= THROTTLE_NODE_ENTRIES_MAX:
                raise BrookError(
                    Reason.INVALID_REQUEST,
                    f"at most {THROTTLE_NODE_ENTRIES_MAX} nodes may have their own throttle",
                    {"limit": THROTTLE_NODE_ENTRIES_MAX},
                )
        op = aetcd.rpc.RequestOp(
            request_put=aetcd.rpc.PutRequest(key=key, value=rate_to_json(rate))
        )
    # Fenced on the coordinator role (the store's write path; same package).
    response = await store._write_txn([], [op])
    return int(response.header.revision)


class ThrottleCache(PrefixCache[int]):
    """The throttle's rates, fed by an etcd watch."""

    def __init__(self, store: MetadataStore, *, clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(store, store.keys.replication_throttle_prefix, rate_from_json,
                         "replication throttle", clock=clock)  # fmt: skip

    def rates(self) -> ThrottleRates:
        return _rates(self.prefix, self.values)

    def rate_for(self, node_id: int) -> int:
        """The rate that applies to `node_id` (its own, else the cluster's)."""
        return self.rates().rate_for(node_id)
