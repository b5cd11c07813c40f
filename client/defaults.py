"""Every client-side bound and default, in one place, with the reason beside it.

Producer, Consumer, Admin and the CLI take these as keyword defaults; nothing in the
client is unbounded (queues, buffers, retries, waits).
"""

from __future__ import annotations

# -- transport ------------------------------------------------------------------------
# The servers accept messages up to 64 MiB (services.common.server); a client never needs
# to send or receive more than that in one message.
MAX_MESSAGE_BYTES = 64 << 20
# HTTP/2 keepalive: find a dead connection within about two minutes even with no call in
# flight. Servers reject pings more often than every few minutes without data, so keep it
# long; every call also carries its own deadline, which is what really bounds a wait.
KEEPALIVE_TIME_MS = 120_000
KEEPALIVE_TIMEOUT_MS = 20_000
# Default deadline of one RPC (Produce waits for replication within this).
REQUEST_TIMEOUT_MS = 30_000
# The address the CLI and scripts use when nothing else names one.
DEFAULT_BOOTSTRAP = "127.0.0.1:7070"

# -- metadata -------------------------------------------------------------------------
# Smallest gap between two refreshes that were asked for by errors: a burst of NOT_LEADER
# answers costs one GetMetadata, not one per partition.
METADATA_MIN_REFRESH_INTERVAL_MS = 50
# Back-off between failed refreshes doubles from the minimum up to this.
METADATA_REFRESH_BACKOFF_MAX_MS = 2_000
# A refresh tries every known address, at most this many rounds, before giving up.
METADATA_MAX_ROUNDS = 4
# A topic just created may not be in the coordinator's watch-fed cache yet: wait this long
# for it to appear before answering TOPIC_NOT_FOUND.
TOPIC_WAIT_MS = 3_000

# -- producer -------------------------------------------------------------------------
LINGER_MS = 5
BATCH_BYTES = 1 << 20
BUFFER_MEMORY_BYTES = 64 << 20
MAX_IN_FLIGHT_PER_NODE = 5
# One Produce RPC carries many batches, but never more than this many bytes (well under
# the server's message limit, so a request is never rejected for its size). Measured on
# the 2-core dev box, 1 KiB records to one partition, acks=1: 4 MiB requests cost the
# node about half the CPU per byte of 8-16 MiB ones (1.25 s against 2.3 s per 300 MB)
# and nearly doubled throughput; 2 MiB was no better than 4.
MAX_REQUEST_BYTES = 4 << 20
# Retries of a batch are bounded twice: by count and by the delivery timeout, which
# counts from the moment the record was appended (Kafka's delivery.timeout.ms).
RETRIES = 20
DELIVERY_TIMEOUT_MS = 120_000
RETRY_BACKOFF_MS = 100
# Capped low so a producer notices a new leader soon after a failover (about 2-3 s).
RETRY_BACKOFF_MAX_MS = 500
# How long send() may wait for buffer space or for topic metadata (Kafka's max.block.ms).
MAX_BLOCK_MS = 60_000
# Estimated protobuf framing per record (tags, varints, timestamp); only used to account
# for buffer memory and to cut batches, so it needs to be close, not exact.
RECORD_OVERHEAD_BYTES = 16

# -- consumer -------------------------------------------------------------------------
FETCH_MAX_WAIT_MS = 500
FETCH_MIN_BYTES = 1
FETCH_MAX_BYTES = 16 << 20
# Kafka's default too; the server returns at least one batch even when it is larger.
# 4 MiB saved node CPU on one-partition reads but cost as much client system time (larger
# buffers, more page faults) with no throughput change, measured; so 1 MiB stays.
MAX_PARTITION_FETCH_BYTES = 1 << 20
# Fetched but not yet polled bytes; no new Fetch is sent while the buffer holds more.
PREFETCH_MAX_BYTES = 32 << 20
MAX_POLL_RECORDS = 500
# Largest batch a consumer agrees to decompress, whatever its header claims.
MAX_UNCOMPRESSED_BATCH_BYTES = 256 << 20

# -- admin ----------------------------------------------------------------------------
# NOT_COORDINATOR redirects and coordinator fail-overs followed by one admin call.
ADMIN_MAX_ATTEMPTS = 6
ADMIN_RETRY_BACKOFF_MS = 200
LIST_TOPICS_PAGE_SIZE = 1000
# A listing stops after this many pages (a million topics), whatever the server says.
LIST_TOPICS_MAX_PAGES = 1000
