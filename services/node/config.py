"""Every limit of the storage node, in one place, each with its flag and the reason for it.

`NodeLimits` is built from the command line (`add_limit_arguments` / `limits_from_args`);
the defaults suit a small cluster on one machine and are meant to be raised in production.
Names say what is bounded first, then the qualifier, then the unit (`fetch_max_bytes`,
`long_poll_max_ms`, `subscribe_streams_max`), as in the topic configs
(`replica_lag_max_ms`). The flag of each field is its name with dashes; the flags of the
names before that rule (`--max-fetch-bytes`, ...) keep working as aliases.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

MIB = 1 << 20


@dataclass(frozen=True)
class NodeLimits:
    """Bounds on what clients and peers may ask of one storage node."""

    # Largest gRPC message the node accepts (a produce request with all its batches).
    request_max_bytes: int = 64 * MIB
    # Calls (all kinds, long-polls and streams included) the node serves at once; gRPC
    # answers RESOURCE_EXHAUSTED beyond it.
    concurrent_rpcs_max: int = 4096
    # Largest Fetch/ReplicaFetch response (a client's max_bytes is capped to this); at
    # least one batch is still returned when one is larger, so keep it >= max_batch_bytes.
    fetch_max_bytes: int = 16 * MIB
    # Fetch max_bytes / partition_max_bytes used when a request leaves them 0.
    fetch_default_bytes: int = 4 * MIB
    fetch_partition_default_bytes: int = 1 * MIB
    # Cap on a Fetch long-poll (max_wait_ms), so a call never pins a handler for long.
    long_poll_max_ms: int = 30_000
    # Produce acks=all timeout when a request leaves timeout_ms 0, and its cap.
    produce_timeout_default_ms: int = 30_000
    produce_timeout_max_ms: int = 120_000
    # Produce requests one client connection may have in flight at once.
    produce_inflight_per_connection_max: int = 64
    # acks=none appends answered and not yet written (node-wide); a producer waits for
    # room beyond it.
    acks_none_queue_max: int = 256
    # acks=all produces that may wait for replication on one partition at once.
    produce_waiters_per_partition_max: int = 512
    # Consumer long-polls / subscribe streams that may wait on one partition at once.
    fetch_waiters_per_partition_max: int = 1024
    # Follower long-polls that may wait on one partition at once (one per follower).
    replica_waiters_per_partition_max: int = 64
    # Bytes of one Subscribe message = the per-stream buffer (one message is prepared
    # only once the previous one was taken by gRPC flow control; at most one batch more
    # when a single batch is larger). Small, since an idle reader holds it (defect 8).
    subscribe_buffer_bytes: int = 1 * MIB
    # Subscribe streams open at once on this node, and per client connection (peer), so
    # one client cannot take every slot.
    subscribe_streams_max: int = 256
    subscribe_streams_per_peer_max: int = 32
    # Partitions named in one Produce / Fetch / Subscribe / ListOffsets / ReplicaFetch /
    # OffsetForLeaderEpoch request, checked before any per-partition work: the handler
    # does work per partition on the event loop (10,000 stay well under 100 ms).
    request_partitions_max: int = 10_000
    # Batches in one Produce request, over all partitions (each is checked on the loop).
    produce_batches_max: int = 10_000
    # Bytes of a request without payloads (all but Produce), refused before parsing:
    # parsing runs on the loop before any check (4 MiB: ~35 ms; 10,000 partitions of
    # 249-character topic names fit).
    request_metadata_max_bytes: int = 4 * MIB
    # A batch's max_timestamp_ms may be at most this far past the node's clock (Kafka's
    # message.timestamp.after.max.ms).
    produce_timestamp_future_max_ms: int = 3_600_000
    # Follower fetcher: response bound, per-partition share, long-poll wait.
    replica_fetch_max_bytes: int = 16 * MIB
    replica_fetch_partition_max_bytes: int = 8 * MIB
    replica_fetch_wait_ms: int = 500
    # Back-off of a follower fetcher after an error, doubling up to the max.
    replica_backoff_min_ms: int = 50
    replica_backoff_max_ms: int = 1000
    # How often leaders check followers' lag for ISR shrinks.
    isr_check_interval_ms: int = 200
    # A follower that left a partition's ISR is not added back sooner than this
    # (hysteresis: one on the edge cannot flip membership every check).
    isr_rejoin_min_ms: int = 1000
    # How often the time-based flush policy and retention run.
    flush_check_interval_ms: int = 100
    retention_check_interval_ms: int = 30_000
    # Event-loop lag (how late a timer fires) above this is logged as a stall.
    loop_lag_warn_ms: int = 100
    # Threads doing disk I/O off the event loop (appends, truncations, fsync, retention).
    io_threads: int = 8
    # Executor calls opening new logs at once (batches of 32): opening is fsync-bound, and
    # a storm of opens (a 10,000-partition topic) must leave threads and CPU for the rest.
    log_open_concurrency: int = 2
    # Appends of at most this many bytes run on the loop: cheaper than a thread hop.
    append_inline_max_bytes: int = 64 * 1024
    # Node registration lease TTL (seconds): how long a dead node goes unnoticed, so it
    # bounds failover time (kill -9 -> new leader in about TTL + 0.5 s of etcd's expiry
    # sweep). The lease is refreshed every TTL/3; a node that misses refreshes for TTL -
    # 0.5 s stops leading on its own. And how long SIGTERM may drain calls.
    lease_ttl_s: int = 2
    drain_timeout_s: float = 5.0
    # RecordService (plain records, record_service.py): headers of one record and of one
    # ProduceRecords request (each is a parsed message: 100,000 cost ~0.2 s of CPU, run on
    # the executor), a header name's characters, client_id's characters.
    record_headers_per_record_max: int = 100
    record_headers_per_request_max: int = 100_000
    record_header_key_chars_max: int = 1024
    record_client_id_chars_max: int = 255
    # Peer nodes the record API keeps a channel to (least recently used closed beyond).
    record_peer_channels_max: int = 256
    # Record encoding/decoding work above this many bytes runs on the record threads
    # (niced, like io_threads), of which there are record_threads.
    record_inline_bytes_max: int = 256 * 1024
    record_threads: int = 2
    # Back-off between the record API's retries to a moving leader (doubling to the max).
    record_retry_backoff_min_ms: int = 25
    record_retry_backoff_max_ms: int = 500


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# Field names before the naming rule -> today's: their flags stay valid.
LEGACY_NAMES: dict[str, str] = {
    "max_request_bytes": "request_max_bytes",
    "max_concurrent_rpcs": "concurrent_rpcs_max",
    "max_fetch_bytes": "fetch_max_bytes",
    "default_fetch_bytes": "fetch_default_bytes",
    "default_partition_fetch_bytes": "fetch_partition_default_bytes",
    "max_wait_ms": "long_poll_max_ms",
    "default_produce_timeout_ms": "produce_timeout_default_ms",
    "max_produce_timeout_ms": "produce_timeout_max_ms",
    "max_inflight_produce_per_connection": "produce_inflight_per_connection_max",
    "max_inflight_produce_per_partition": "produce_waiters_per_partition_max",
    "max_fetch_waiters_per_partition": "fetch_waiters_per_partition_max",
    "max_replica_waiters_per_partition": "replica_waiters_per_partition_max",
    "max_subscribe_streams": "subscribe_streams_max",
}
_LEGACY_BY_NAME = {new: old for old, new in LEGACY_NAMES.items()}


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per NodeLimits field (e.g. --fetch-max-bytes), defaulting to the field."""
    group = parser.add_argument_group("limits")
    for field in dataclasses.fields(NodeLimits):
        default = field.default
        legacy = _LEGACY_BY_NAME.get(field.name)
        group.add_argument(
            _flag(field.name),
            *([_flag(legacy)] if legacy else []),
            dest=f"limit_{field.name}",
            type=type(default),
            default=default,
            metavar="N",
            help=f"(default {default})",
        )


def limits_from_args(args: argparse.Namespace) -> NodeLimits:
    values = {
        field.name: getattr(args, f"limit_{field.name}") for field in dataclasses.fields(NodeLimits)
    }
    limits = NodeLimits(**values)
    for name, value in values.items():
        if value <= 0 and name not in ("drain_timeout_s",):
            raise SystemExit(f"--{name.replace('_', '-')} must be positive, got {value}")
    return limits
