"""Every bound of the coordinator process, in one place.

Naming rule (all Brook limits modules): what is bounded first, then the unit, then the
qualifier: `topic_name_chars_max`, `cache_catch_up_s_max`, `lease_ttl_s_default`.
Values a flag can change are `*_DEFAULT` here and the flag keeps its historical name
(`--lease-ttl-s`, `--preferred-election-interval-s`: k8s/ and tests use them).

Request bounds are checked before any work is done (ARCHITECTURE: "every request field
that can grow has a bound"); error messages quote at most `bounds.ECHO_CHARS_MAX`
characters of an input (`services/common/bounds.py`), so an oversized field never comes
back in a trailer.
"""

from __future__ import annotations

from brook.services.metadata import model

# -- role and process ------------------------------------------------------------------
# Role lease TTL: how long a standby waits after the active coordinator vanished.
LEASE_TTL_S_DEFAULT = 6
# Back-off between failed campaign terms while etcd is unreachable.
CAMPAIGN_BACKOFF_S_MIN = 0.2
CAMPAIGN_BACKOFF_S_MAX = 5.0
# In-flight calls get this long to finish on shutdown.
STOP_GRACE_S = 3.0

# -- controller --------------------------------------------------------------------------
PREFERRED_ELECTION_INTERVAL_S_DEFAULT = 10.0
# Partitions committed concurrently (etcd round trips overlap; etcd stays unflooded).
PARTITION_COMMITS_CONCURRENT_MAX = 32
# A full reconcile pass runs at least this often even without node changes (repairs
# anything a failed pass left behind).
RECONCILE_INTERVAL_S = 10.0
# Back-off after a reconcile pass failed on etcd trouble.
RECONCILE_RETRY_S = 0.5
# Least time between two scans for finished reassignments (each reads every partition).
REASSIGN_SCAN_INTERVAL_S_MIN = 0.2

# -- admin writes ------------------------------------------------------------------------
# How long a write waits for this process's cache to show it (read-your-writes).
CACHE_CATCH_UP_S_MAX = 5.0

# -- request bounds ----------------------------------------------------------------------
TOPIC_NAME_CHARS_MAX = model.TOPIC_NAME_CHARS_MAX
PARTITION_COUNT_MAX = 10_000
# CreateTopic with wait_for_leaders: how long to wait for leaders to serve by default,
# and the most a caller may ask for (a 10,000-partition topic on a loaded box takes
# seconds; minutes means something is wrong).
CREATE_TOPIC_WAIT_MS_DEFAULT = 30_000
# Partition replicas one storage node may carry (all topics): the most a node is tested to
# hold with every node registered and every partition online (services/node/README.md,
# tests/node/test_many_partitions.py). CreateTopic and CreatePartitions refuse a layout
# that would pass it, instead of letting one large topic take the cluster down (issue 9,
# defect 4). `--replicas-per-node-max` changes it.
REPLICAS_PER_NODE_MAX_DEFAULT = 3_000
CREATE_TOPIC_WAIT_MS_MAX = 300_000
PAGE_SIZE_DEFAULT = 100
PAGE_SIZE_MAX = 1000
# A page token is base64 of a small JSON naming a topic: a topic name plus framing.
PAGE_TOKEN_CHARS_MAX = 4 * TOPIC_NAME_CHARS_MAX
# Topics are created with this many partitions when the request leaves the count at 0...
PARTITION_COUNT_DEFAULT = 1
# ...and at most this replication factor when it leaves the factor at 0.
REPLICATION_FACTOR_DEFAULT_MAX = 3
# Replicas of one partition (node ids in one replica list).
REPLICATION_FACTOR_MAX = 64
# Partitions one ElectLeaders request may name (none named means all partitions).
ELECT_PARTITIONS_MAX = 100_000
# Topics one GetMetadata request may name (each costs a lookup and a response entry).
METADATA_TOPICS_PER_REQUEST_MAX = 10_000
# ...and their names together: each name comes back up to three times in the answer
# (name, error message, error metadata), which must stay under gRPC's 4 MiB default.
METADATA_TOPIC_NAMES_CHARS_MAX = 1 << 20
# Config entries one CreateTopic/AlterConfigs request may set or delete.
CONFIG_ENTRIES_PER_REQUEST_MAX = 100
CONFIG_NAME_CHARS_MAX = 128
CONFIG_VALUE_CHARS_MAX = 1024
# Automatic balancing (issue 13, balance_driver.py): moves one pass may keep in flight
# (`--balance-max-moves-in-flight`), the replica-count skew between live active nodes that
# starts balancing (`--balance-skew-threshold`; a node that joins empty starts it too), and
# how often the driver looks at least.
BALANCE_MAX_MOVES_IN_FLIGHT_DEFAULT = 4
BALANCE_SKEW_THRESHOLD_DEFAULT = 2
BALANCE_INTERVAL_S = 5.0
# The most moves one RebalancePartitions call may start or list.
REBALANCE_MOVES_MAX = 100_000
# Node ids an Admin request may name (Kafka's broker ids are int32 too).
NODE_ID_MAX = 2**31 - 1
