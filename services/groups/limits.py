"""Every bound of the group manager process, in one place.

Naming rule (all Brook limits modules): what is bounded first, then the unit, then the
qualifier: `session_timeout_ms_max`, `client_id_chars_max`, `lease_ttl_s_default`.
Values a flag can change are `*_DEFAULT` here; the flags keep their historical names
(`--lease-ttl-s`, `--heartbeat-interval-ms`, `--session-timeout-ms`,
`--rebalance-timeout-ms`, `--commit-flush-interval-ms`: k8s/, bench/ and tests use them).

Request bounds are checked in the servicer before any work is done, so a refused request
changes nothing (issue 9, defects 11 and 12).
"""

from __future__ import annotations

from brook.services.metadata import model

# -- role and process ------------------------------------------------------------------
# Role lease TTL: how long a standby waits after the active manager vanished.
LEASE_TTL_S_DEFAULT = 6
# Back-off between failed campaign terms while etcd is unreachable.
CAMPAIGN_BACKOFF_S_MIN = 0.2
CAMPAIGN_BACKOFF_S_MAX = 5.0
# In-flight calls get this long to finish on shutdown.
STOP_GRACE_S = 3.0
# How long offset commits linger to share one etcd transaction.
COMMIT_FLUSH_INTERVAL_MS_DEFAULT = 5
# The expiry timer wakes at least this often, and never sooner than the minimum.
TICK_INTERVAL_MS_MAX = 250
TICK_INTERVAL_MS_MIN = 10

# -- membership (GroupConfig defaults) -----------------------------------------------------
HEARTBEAT_INTERVAL_MS_DEFAULT = 1000
# While a member waits for partitions that others still own, it heartbeats faster so a
# handoff completes soon after the previous owner lets go.
RECONCILING_HEARTBEAT_INTERVAL_MS_DEFAULT = 200
SESSION_TIMEOUT_MS_DEFAULT = 10_000
SESSION_TIMEOUT_MS_MIN = 300
SESSION_TIMEOUT_MS_MAX = 300_000
REBALANCE_TIMEOUT_MS_DEFAULT = 30_000
REBALANCE_TIMEOUT_MS_MIN = 100
REBALANCE_TIMEOUT_MS_MAX = 600_000
# What one group and one process hold in memory.
MEMBERS_PER_GROUP_MAX = 1000
GROUPS_MAX = 100_000
SUBSCRIBED_TOPICS_MAX = 10_000
# A subscription regex is compiled by RE2 (linear time); its length still bounds the
# compile cost and the memory of the compiled program.
REGEX_CHARS_MAX = 1000
# RE2's memory budget for one compiled subscription pattern.
REGEX_PROGRAM_BYTES_MAX = 1 << 20

# -- request fields ------------------------------------------------------------------------
GROUP_ID_CHARS_MAX = 249
TOPIC_NAME_CHARS_MAX = model.TOPIC_NAME_CHARS_MAX  # the rule of topic creation
MEMBER_ID_CHARS_MAX = 255
INSTANCE_ID_CHARS_MAX = 249
CLIENT_ID_CHARS_MAX = 255
CLIENT_HOST_CHARS_MAX = 255
RACK_ID_CHARS_MAX = 255
ASSIGNOR_NAME_CHARS_MAX = 64
PAGE_TOKEN_CHARS_MAX = 4 * GROUP_ID_CHARS_MAX
OFFSET_METADATA_BYTES_MAX = 4096
# Committed offsets are -1 (none) to 2^62: far beyond any real log, and far from int64's
# end, so offset arithmetic (lag, shift_by) never overflows in other languages' clients.
COMMITTED_OFFSET_MIN = -1
COMMITTED_OFFSET_MAX = 1 << 62
# Partitions one request may name (commits, owned partitions, fetches, resets).
OFFSETS_PER_COMMIT_MAX = 100_000
OWNED_PARTITIONS_MAX = 100_000
PARTITIONS_PER_REQUEST_MAX = 100_000
# Distinct topics one request's partition lists may name.
TOPICS_PER_REQUEST_MAX = 10_000
# ListGroups: page sizes, and how many state filters (there are five states).
LIST_PAGE_SIZE_DEFAULT = 100
LIST_PAGE_SIZE_MAX = 1000
LIST_STATES_MAX = 16
# WatchGroup: how often lag is recomputed, and how close together changes are coalesced
# into one update (a rebalance touches a group many times in a few milliseconds).
WATCH_LAG_INTERVAL_MS_DEFAULT = 5000
WATCH_LAG_INTERVAL_MS_MIN = 500
WATCH_COALESCE_MS = 100
