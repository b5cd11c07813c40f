"""Client quotas per principal (issue 11), Kafka's model: produce and fetch bytes per
second, requests per second, new connections per second, and open streams (Subscribe,
WatchGroup, ...).

Throttling is back-pressure, not an error storm. Each principal has one bucket per rate;
a request is admitted once its principal's debt is paid (`admit` waits), then charged what
it cost (`charge`). A principal over its rate therefore waits before each request, in
order, while every other principal is untouched: its requests never queue behind the
flood. The wait is bounded by the request's own deadline budget: a principal so far in
debt that the wait would exceed it is answered THROTTLED (RESOURCE_EXHAUSTED, retriable)
with `retry_after_ms`, the delay hint; a throttled answer carries the same hint in the
`brook-throttle-ms` trailing metadata.

Connections (Kafka's `connection_creation_rate`, KIP-612): gRPC hides connection events
from a Python server, so a connection is counted when a call first arrives from a client
address (`context.peer()`, host and port: one TCP connection) this process has not seen
among its last PEERS_KNOWN_MAX; a principal opening connections faster than its
`connections_per_s` then waits before its calls like any principal in debt.

The rates are configured per principal, with a cluster default (`QuotaConfig`, stored in
etcd by the metadata layer); unset means unlimited.

Thread-safety: one event loop. Time is injected (`brook.clock.Clock`).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final

import grpc

from brook.clock import SYSTEM_CLOCK, Clock
from brook.errors import BrookError, Reason
from brook.services.common.principal import Principal

# The debt a principal may build up before it waits: one second at its rate (a burst).
BURST_S: Final = 1.0
# Never wait longer than this for one request, whatever the debt (bounded waits).
WAIT_MAX_S: Final = 30.0
THROTTLE_METADATA_KEY: Final = "brook-throttle-ms"
# Of a call's deadline, what a throttled request keeps to be served and answered.
ANSWER_MARGIN_S: Final = 1.0
# Principals whose buckets are kept (bounded memory); the least recently used go first.
BUCKETS_MAX: Final = 10_000

# Client addresses (connections) remembered, least recently used first out.
PEERS_KNOWN_MAX: Final = 65_536

RATES: Final = ("produce_bytes_per_s", "fetch_bytes_per_s", "requests_per_s",
                "connections_per_s")  # fmt: skip


@dataclass(frozen=True, slots=True)
class QuotaConfig:
    """A principal's quotas; None is unlimited."""

    produce_bytes_per_s: float | None = None
    fetch_bytes_per_s: float | None = None
    requests_per_s: float | None = None
    streams_max: int | None = None
    connections_per_s: float | None = None

    def rate(self, name: str) -> float | None:
        value: float | None = getattr(self, name)
        return value

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> QuotaConfig:
        """From stored/requested values, checked: positive numbers, known keys."""
        known = (*RATES, "streams_max")
        unknown = set(values) - set(known)
        if unknown:
            raise BrookError(
                Reason.INVALID_CONFIG,
                f"unknown quota {sorted(unknown)[0]!r}; known: {', '.join(known)}",
            )
        checked: dict[str, float | int | None] = {}
        for name, value in values.items():
            if value is None:
                checked[name] = None
                continue
            try:
                number = float(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise BrookError(Reason.INVALID_CONFIG, f"quota {name} must be a number") from None
            if not math.isfinite(number) or number <= 0:
                raise BrookError(Reason.INVALID_CONFIG, f"quota {name} must be > 0, got {value}")
            checked[name] = int(number) if name == "streams_max" else number
        return cls(**checked)  # type: ignore[arg-type]

    def to_mapping(self) -> dict[str, float | int]:
        return {
            name: value
            for name in (*RATES, "streams_max")
            if (value := getattr(self, name)) is not None
        }


UNLIMITED = QuotaConfig()


class Bucket:
    """One rate of one principal: a token bucket holding up to BURST_S of its rate,
    which may go into debt (a request larger than the bucket is still served)."""

    def __init__(self, rate: float, now_s: float) -> None:
        self.rate = rate
        self.tokens = rate * BURST_S
        self.updated_s = now_s

    def refill(self, now_s: float) -> None:
        elapsed = max(0.0, now_s - self.updated_s)
        self.tokens = min(self.rate * BURST_S, self.tokens + elapsed * self.rate)
        self.updated_s = now_s

    def wait_s(self, now_s: float) -> float:
        """How long until the debt is paid (0 when there is none)."""
        self.refill(now_s)
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def charge(self, amount: float, now_s: float) -> None:
        self.refill(now_s)
        self.tokens -= amount


@dataclass
class _PrincipalState:
    buckets: dict[str, Bucket] = field(default_factory=dict)
    # Serializes admission: one waiter at a time pays the debt, so a flood cannot all wake
    # together when it is paid.
    admission: asyncio.Lock = field(default_factory=asyncio.Lock)
    streams: int = 0


class Quotas:
    """The quota state of one process: configs (from the metadata cache) and buckets."""

    def __init__(
        self,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep  # injected with the clock: tests advance a ManualClock
        self._configs: dict[str, QuotaConfig] = {}
        self._default = UNLIMITED
        self._states: dict[str, _PrincipalState] = {}
        self._peers: dict[str, None] = {}  # insertion order: least recently seen first

    # -- configuration (fed by the metadata layer's watch) ----------------------------
    def set_configs(self, configs: Mapping[str, QuotaConfig], default: QuotaConfig) -> None:
        """Replaces every quota; the buckets of principals whose quotas changed restart
        full, the others keep their debt (a reload after an etcd hiccup forgives none)."""
        before = {key: self._configs.get(key, self._default) for key in self._states}
        self._configs = dict(configs)
        self._default = default
        for key, state in self._states.items():
            if self._configs.get(key, self._default) != before[key]:
                state.buckets.clear()

    def config_for(self, principal: Principal) -> QuotaConfig:
        return self._configs.get(str(principal), self._default)

    # -- enforcement ---------------------------------------------------------------------
    async def admit(
        self, principal: Principal, budget_s: float, requests: int = 1,
        peer: Callable[[], str] | None = None,
    ) -> float:  # fmt: skip
        """Waits until `principal` owes nothing on any rate and charges `requests` (a
        stream's later messages charge none) and, when `peer` (the call's client address)
        is a connection not seen before, one connection;
        answers the seconds waited (the throttle time to report). Raises THROTTLED with
        retry_after_ms when the wait would exceed `budget_s` (or WAIT_MAX_S)."""
        config = self.config_for(principal)
        if config == UNLIMITED:
            return 0.0
        state = self._state(principal)
        waited = 0.0
        async with state.admission:
            while (wait := self._wait_s(config, state)) > 0:
                if waited + wait > min(budget_s, WAIT_MAX_S):
                    raise _throttled(principal, wait)
                await self._clock_sleep(wait)
                waited += wait
            if config.requests_per_s is not None and requests:
                self._bucket(state, "requests_per_s", config.requests_per_s).charge(
                    requests, self._clock.monotonic_s()
                )
            if config.connections_per_s is not None and peer is not None and self._new_peer(
                peer()
            ):
                self._bucket(state, "connections_per_s", config.connections_per_s).charge(
                    1, self._clock.monotonic_s()
                )
        return waited

    def _new_peer(self, address: str) -> bool:
        """True the first time `address` is seen (of the last PEERS_KNOWN_MAX)."""
        if not address:
            return False
        known = address in self._peers
        if known:
            del self._peers[address]  # move to most recently seen
        elif len(self._peers) >= PEERS_KNOWN_MAX:
            del self._peers[next(iter(self._peers))]
        self._peers[address] = None
        return not known

    def charge(self, principal: Principal, rate_name: str, amount: int) -> None:
        """Records `amount` bytes of produce or fetch against the principal's rate: the
        next request waits until it is paid."""
        rate = self.config_for(principal).rate(rate_name)
        if rate is None or amount <= 0:
            return
        state = self._state(principal)
        self._bucket(state, rate_name, rate).charge(amount, self._clock.monotonic_s())

    @contextmanager
    def stream(self, principal: Principal) -> Iterator[None]:
        """Holds one of the principal's streams_max open streams for the block."""
        limit = self.config_for(principal).streams_max
        state = self._state(principal)
        if limit is not None and state.streams >= limit:
            raise BrookError(
                Reason.THROTTLED,
                f"{principal} already has {state.streams} open streams, its quota"
                f" (streams_max {limit}); close one first",
                {
                    "principal": str(principal),
                    "quota": "streams_max",
                    "limit": limit,
                    "retry_after_ms": 1000,
                },
            )
        state.streams += 1
        try:
            yield
        finally:
            state.streams -= 1

    # -- internals -----------------------------------------------------------------------
    def _wait_s(self, config: QuotaConfig, state: _PrincipalState) -> float:
        now = self._clock.monotonic_s()
        waits = [
            self._bucket(state, name, rate).wait_s(now)
            for name in RATES
            if (rate := config.rate(name)) is not None
        ]
        return max(waits, default=0.0)

    def _bucket(self, state: _PrincipalState, name: str, rate: float) -> Bucket:
        bucket = state.buckets.get(name)
        if bucket is None or bucket.rate != rate:
            bucket = state.buckets[name] = Bucket(rate, self._clock.monotonic_s())
        return bucket

    def _state(self, principal: Principal) -> _PrincipalState:
        key = str(principal)
        state = self._states.pop(key, None)
        if state is None:
            state = _PrincipalState()
            if len(self._states) >= BUCKETS_MAX:
                self._evict_idle()
        self._states[key] = state  # most recently used last
        return state

    def _evict_idle(self) -> None:
        for key in list(self._states)[: max(1, len(self._states) // 10)]:
            state = self._states[key]
            if not state.streams and not state.admission.locked():
                del self._states[key]

    async def _clock_sleep(self, seconds: float) -> None:
        await self._sleep(seconds)


def _throttled(principal: Principal, wait_s: float) -> BrookError:
    retry_after_ms = max(1, math.ceil(wait_s * 1000))
    return BrookError(
        Reason.THROTTLED,
        f"{principal} is over its quota; send again in {retry_after_ms} ms",
        {"principal": str(principal), "retry_after_ms": retry_after_ms},
    )


async def throttle(
    quotas: Quotas, context: grpc.aio.ServicerContext, principal: Principal, requests: int = 1
) -> None:
    """`quotas.admit` within the call's deadline (less a margin to answer in), reporting
    the wait in the `brook-throttle-ms` trailing metadata: the delay hint."""
    if quotas.config_for(principal) == UNLIMITED:
        return  # the common case: no quota, no deadline to read
    remaining = context.time_remaining()
    budget_s = WAIT_MAX_S if remaining is None else max(0.0, remaining - ANSWER_MARGIN_S)
    waited_s = await quotas.admit(principal, budget_s, requests, peer=context.peer)
    if waited_s > 0:
        context.set_trailing_metadata(((THROTTLE_METADATA_KEY, str(round(waited_s * 1000))),))
