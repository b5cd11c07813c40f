"""The replication throttle's budget (issue 13): Kafka's leader/follower
`replication.throttled.rate`, for reassignment traffic only.

A storage node keeps two `ThrottleBudget`s, one for what it receives as a follower
(fetcher.py: replicas of partitions this node is being added to) and one for what it
serves as a leader (replica_service.py: ReplicaFetch partitions asked by a node that is
being added). Replication of partitions that are not moving is never charged or held.

The budget is a debt-based token bucket: `available_bytes()` says how much a request may
ask for now; what was actually moved is `charge`d afterwards, and may exceed what was
available (a batch is never split), which leaves the bucket in debt. While in debt the
throttled partitions are held back until the refill pays it off (`delay_s()`), so the
long-run rate is exactly the configured one however large the batches are. The bucket
holds at most `burst_s` seconds of rate, so an idle period does not turn into a burst.

Rate 0 means unthrottled: everything is available and nothing is held.

Pure: time comes from an injected `Clock`; no I/O, no asyncio.

Thread-safety: one event loop (or one thread).
"""

from __future__ import annotations

from brook.clock import Clock

# What an unthrottled budget answers as available (larger than any fetch).
UNLIMITED_BYTES = 1 << 62
# Seconds of rate the bucket may hold (the largest burst after an idle period).
BURST_S_DEFAULT = 0.1
# The smallest burst, in bytes, so a tiny rate still lets a request ask for something.
BURST_BYTES_MIN = 4096


class ThrottleBudget:
    """A per-node byte budget refilled at `rate_bytes_per_s` (0: unthrottled)."""

    def __init__(
        self, clock: Clock, rate_bytes_per_s: int = 0, *, burst_s: float = BURST_S_DEFAULT
    ) -> None:
        if burst_s <= 0:
            raise ValueError("burst_s must be positive")
        self._clock = clock
        self._burst_s = burst_s
        self._rate = 0
        self._tokens = 0.0
        self._at = clock.monotonic_s()
        self.charged_bytes = 0  # every byte charged while throttled (for metrics)
        self.set_rate(rate_bytes_per_s)

    @property
    def rate_bytes_per_s(self) -> int:
        return self._rate

    @property
    def throttled(self) -> bool:
        return self._rate > 0

    def _burst(self) -> float:
        return max(self._rate * self._burst_s, float(BURST_BYTES_MIN))

    def _refill(self) -> None:
        now = self._clock.monotonic_s()
        elapsed = max(0.0, now - self._at)
        self._at = now
        if self._rate > 0:
            self._tokens = min(self._burst(), self._tokens + elapsed * self._rate)

    def set_rate(self, rate_bytes_per_s: int) -> None:
        """Changes the rate; takes effect at once. A debt is kept (it was spent at the
        old rate and is paid off at the new one); from unthrottled the bucket starts
        full."""
        if rate_bytes_per_s < 0:
            raise ValueError("rate_bytes_per_s must be >= 0")
        self._refill()
        was = self._rate
        self._rate = int(rate_bytes_per_s)
        if self._rate == 0:
            self._tokens = 0.0
        elif was == 0:
            self._tokens = self._burst()
        else:
            self._tokens = min(self._tokens, self._burst())

    def available_bytes(self) -> int:
        """Bytes a throttled request may ask for now (0 while in debt)."""
        if self._rate == 0:
            return UNLIMITED_BYTES
        self._refill()
        return max(0, int(self._tokens + 1e-6))  # 1e-6: float noise of the clock

    def in_debt(self) -> bool:
        """True while throttled partitions must be held back."""
        return self.available_bytes() <= 0

    def delay_s(self) -> float:
        """Seconds until something is available again (0 when something is now)."""
        if self._rate == 0:
            return 0.0
        self._refill()
        if self._tokens + 1e-6 >= 1.0:
            return 0.0
        return (1.0 - self._tokens) / self._rate

    def charge(self, size_bytes: int) -> None:
        """Records `size_bytes` moved by throttled partitions (may go into debt)."""
        if size_bytes <= 0 or self._rate == 0:
            return
        self._refill()
        self._tokens -= size_bytes
        self.charged_bytes += size_bytes


def effective_rate(cluster_bytes_per_s: int, node_bytes_per_s: int | None) -> int:
    """A node's rate: its own override when it has one, else the cluster-wide rate."""
    if node_bytes_per_s is not None and node_bytes_per_s > 0:
        return node_bytes_per_s
    return max(0, cluster_bytes_per_s)


class NodeThrottle:
    """A node's two budgets (`inbound` as an adding replica, `outbound` as a leader
    serving adding replicas), both at the node's effective rate, with the metrics the
    data path reports. `set_rate` is what the etcd watch calls (main.py)."""

    def __init__(self, clock: Clock, *, burst_s: float = BURST_S_DEFAULT) -> None:
        self.inbound = ThrottleBudget(clock, burst_s=burst_s)
        self.outbound = ThrottleBudget(clock, burst_s=burst_s)

    @property
    def rate_bytes_per_s(self) -> int:
        return self.inbound.rate_bytes_per_s

    def set_rate(self, rate_bytes_per_s: int) -> bool:
        """Sets both budgets' rate; True when it changed."""
        if rate_bytes_per_s == self.inbound.rate_bytes_per_s:
            return False
        self.inbound.set_rate(rate_bytes_per_s)
        self.outbound.set_rate(rate_bytes_per_s)
        return True
