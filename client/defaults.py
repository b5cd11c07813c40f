"""Every client-side bound and default, in one place, with the reason beside it.

Producer, Consumer, Admin, GroupConsumer, GroupAdmin and the CLI take these as keyword
defaults; nothing in the client is unbounded (queues, buffers, retries, waits). Names end
with their unit, then their qualifier: `RETRY_BACKOFF_MS_MAX` is the most a retry back-off
may be, in milliseconds.
"""

from __future__ import annotations

# -- transport ------------------------------------------------------------------------
# The servers accept messages up to 64 MiB (services.common.server); a client never needs
# to send or receive more than that in one message.
MESSAGE_BYTES_MAX = 64 << 20
# HTTP/2 keepalive: find a dead connection within about two minutes even with no call in
# flight. Servers reject pings more often than every few minutes without data, so keep it
# long; every call also carries its own deadline, which is what really bounds a wait.
KEEPALIVE_TIME_MS = 120_000
KEEPALIVE_TIMEOUT_MS = 20_000
# Default deadline of one RPC (Produce waits for replication within this).
REQUEST_TIMEOUT_MS = 30_000
# The address the CLI and scripts use when nothing else names one.
BOOTSTRAP = "127.0.0.1:7070"
# After a credential rotation, the old channels get this long to finish their calls.
RETIRED_CHANNEL_GRACE_S = 30.0

# -- metadata -------------------------------------------------------------------------
# Smallest gap between two refreshes that were asked for by errors: a burst of NOT_LEADER
# answers costs one GetMetadata, not one per partition.
METADATA_REFRESH_INTERVAL_MS_MIN = 50
# Back-off between failed refreshes doubles from the minimum up to this.
METADATA_REFRESH_BACKOFF_MS_MAX = 2_000
# A refresh tries every known address, at most this many rounds, before giving up.
METADATA_ROUNDS_MAX = 4
# Cached metadata older than this is refreshed before use.
METADATA_AGE_MS_MAX = 300_000
# A topic just created may not be in the coordinator's watch-fed cache yet: wait this long
# for it to appear before answering TOPIC_NOT_FOUND.
TOPIC_WAIT_MS = 3_000

# -- producer -------------------------------------------------------------------------
LINGER_MS = 5
BATCH_BYTES = 1 << 20
BUFFER_MEMORY_BYTES = 64 << 20
IN_FLIGHT_PER_NODE_MAX = 5
# One Produce RPC carries many batches, but never more than this many bytes (well under
# the server's message limit, so a request is never rejected for its size). Measured on
# the 2-core dev box, 1 KiB records to one partition, acks=1: 4 MiB requests cost the
# node about half the CPU per byte of 8-16 MiB ones (1.25 s against 2.3 s per 300 MB)
# and nearly doubled throughput; 2 MiB was no better than 4.
REQUEST_BYTES_MAX = 4 << 20
# Retries of a batch are bounded twice: by count and by the delivery timeout, which
# counts from the moment the record was appended (Kafka's delivery.timeout.ms).
RETRIES = 20
DELIVERY_TIMEOUT_MS = 120_000
RETRY_BACKOFF_MS = 100
# Capped low so a producer notices a new leader soon after a failover (about 2-3 s).
RETRY_BACKOFF_MS_MAX = 500
# How long send() may wait for buffer space or for topic metadata (Kafka's max.block.ms).
BLOCK_MS_MAX = 60_000
# Estimated protobuf framing per record (tags, varints, timestamp); only used to account
# for buffer memory and to cut batches, so it needs to be close, not exact.
RECORD_OVERHEAD_BYTES = 16

# -- consumer -------------------------------------------------------------------------
FETCH_WAIT_MS_MAX = 500
FETCH_BYTES_MIN = 1
FETCH_BYTES_MAX = 16 << 20
# Kafka's default too; the server returns at least one batch even when it is larger.
# 4 MiB saved node CPU on one-partition reads but cost as much client system time (larger
# buffers, more page faults) with no throughput change, measured; so 1 MiB stays.
PARTITION_FETCH_BYTES_MAX = 1 << 20
# Fetched but not yet polled bytes; no new Fetch is sent while the buffer holds more.
PREFETCH_BYTES_MAX = 32 << 20
POLL_RECORDS_MAX = 500
# ListOffsets: attempts (each after a metadata refresh) before an error reaches the caller.
LIST_OFFSETS_ATTEMPTS_MAX = 5

# -- admin (coordinator calls) --------------------------------------------------------
# NOT_COORDINATOR redirects and coordinator fail-overs followed by one admin call.
ADMIN_ATTEMPTS_MAX = 6
# Back-off doubles from this up to the cap: the five back-offs of a call add up to about
# 4 s, longer than a coordinator fail-over (its role lease is 2-6 s, mostly expired
# by the time a client sees the failure).
ADMIN_RETRY_BACKOFF_MS = 200
ADMIN_RETRY_BACKOFF_MS_MAX = 1_600
# One admin call, retries included, gives up after this long.
ADMIN_DEADLINE_MS = 120_000
LIST_TOPICS_PAGE_SIZE = 1000
# A listing stops after this many pages (a million topics), whatever the server says.
LIST_TOPICS_PAGES_MAX = 1000

# -- consumer groups (group manager calls) --------------------------------------------
SESSION_TIMEOUT_MS = 10_000
# How long a member may take to revoke (the time between two polls, in practice).
REBALANCE_TIMEOUT_MS = 60_000
# Used until the server says how often to heartbeat.
HEARTBEAT_INTERVAL_MS = 1_000
# Back-off between failed heartbeats or commits doubles from this up to the cap.
GROUP_RETRY_BACKOFF_MS = 100
GROUP_RETRY_BACKOFF_MS_MAX = 1_000
# Deadline of one Heartbeat / CommitOffsets / FetchOffsets call.
GROUP_REQUEST_TIMEOUT_MS = 5_000
# A commit (or offset fetch) is retried (retriable errors, e.g. a manager fail-over) at
# most this many times, and for at most this long.
COMMIT_ATTEMPTS_MAX = 10
COMMIT_DEADLINE_MS = 60_000
# A static member keeps retrying UNRELEASED_INSTANCE_ID for this many session timeouts.
UNRELEASED_INSTANCE_RETRY_SESSIONS = 3
# The leave heartbeat on close gets this long.
LEAVE_TIMEOUT_MS = 2_000
AUTO_COMMIT_INTERVAL_MS = 5_000
# Longest single wait inside GroupConsumer.poll(): a rebalance that arrives meanwhile cuts
# it short anyway, this only bounds how stale the auto-commit timer can get.
POLL_SLICE_MS = 1_000
# GroupAdmin (the `brook group` commands): redirects and manager fail-overs one call
# follows, its back-off (doubling up to the cap), and the deadline of one call.
GROUP_ADMIN_ATTEMPTS_MAX = 6
GROUP_ADMIN_RETRY_BACKOFF_MS = 300
GROUP_ADMIN_RETRY_BACKOFF_MS_MAX = 2_000
GROUP_ADMIN_REQUEST_TIMEOUT_MS = 10_000
GROUP_ADMIN_DEADLINE_MS = 120_000
LIST_GROUPS_PAGE_SIZE = 1000
# A listing stops after this many pages, whatever the server says.
LIST_GROUPS_PAGES_MAX = 1000
