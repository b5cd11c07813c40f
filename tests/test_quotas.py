"""Quotas per principal, pure core (services/common/quotas.py): a principal over its rate
waits before its next request (back-pressure, in order), others are untouched, waits are
bounded by the request's budget (then THROTTLED with a retry hint), streams are capped."""

from __future__ import annotations

import pytest

from brook.clock import ManualClock
from brook.errors import BrookError
from brook.services.common.principal import Principal
from brook.services.common.quotas import QuotaConfig, Quotas

ALICE = Principal("user", "alice")
BOB = Principal("user", "bob")


def make(
    configs: dict[str, QuotaConfig], default: QuotaConfig | None = None
) -> tuple[Quotas, ManualClock, list[float]]:
    clock = ManualClock(0)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(round(seconds * 1000))

    quotas = Quotas(clock, sleep)
    quotas.set_configs(configs, default or QuotaConfig())
    return quotas, clock, slept


async def test_a_flooding_producer_is_held_near_its_rate() -> None:
    """1 MB/s: 20 requests of 500 kB go through in 8.5 s of waiting (the first second's
    burst is free, the last request is charged after it), never faster than the rate."""
    quotas, clock, _ = make({"user:alice": QuotaConfig(produce_bytes_per_s=1_000_000)})
    start = clock.monotonic_s()
    for _ in range(20):
        await quotas.admit(ALICE, budget_s=30)
        quotas.charge(ALICE, "produce_bytes_per_s", 500_000)
    elapsed_s = clock.monotonic_s() - start
    assert 8.4 <= elapsed_s <= 8.6, elapsed_s
    # What a token bucket allows: a second's burst, the rate since, and the one request
    # admitted last (charged after it is served).
    assert 20 * 500_000 <= 1_000_000 * (1 + elapsed_s) + 500_000


async def test_other_principals_are_not_slowed() -> None:
    quotas, _, slept = make({"user:alice": QuotaConfig(produce_bytes_per_s=1000)})
    quotas.charge(ALICE, "produce_bytes_per_s", 10_000)
    assert await quotas.admit(BOB, budget_s=1) == 0.0
    assert slept == []


async def test_a_wait_beyond_the_budget_is_throttled_with_a_hint() -> None:
    quotas, _, _ = make({"user:alice": QuotaConfig(fetch_bytes_per_s=1000)})
    quotas.charge(ALICE, "fetch_bytes_per_s", 6000)  # 5 s of debt after the burst
    with pytest.raises(BrookError) as caught:
        await quotas.admit(ALICE, budget_s=2)
    assert caught.value.reason == "THROTTLED" and caught.value.retriable
    assert 4900 <= int(caught.value.metadata["retry_after_ms"]) <= 5000
    assert await quotas.admit(ALICE, budget_s=10) == pytest.approx(5.0, abs=0.01)


async def test_request_rate_and_the_cluster_default() -> None:
    quotas, clock, _ = make({}, default=QuotaConfig(requests_per_s=10))
    start = clock.monotonic_s()
    for _ in range(30):
        await quotas.admit(BOB, budget_s=30)
    assert 1.8 <= clock.monotonic_s() - start <= 2.1  # 10 free (burst), then 10 per second


def test_streams_are_capped_and_released() -> None:
    quotas, _, _ = make({"user:alice": QuotaConfig(streams_max=2)})
    with quotas.stream(ALICE), quotas.stream(ALICE):
        with pytest.raises(BrookError) as caught, quotas.stream(ALICE):
            pass
        assert caught.value.reason == "THROTTLED"
    with quotas.stream(ALICE), quotas.stream(ALICE):
        pass  # released on exit


def test_configs_are_checked() -> None:
    assert (
        QuotaConfig.from_mapping({"produce_bytes_per_s": "1048576"}).produce_bytes_per_s == 1048576
    )
    for bad in (
        {"produce_bytes_per_s": 0},
        {"produce_bytes_per_s": "x"},
        {"nope": 1},
        {"requests_per_s": float("inf")},
    ):
        with pytest.raises(BrookError) as caught:
            QuotaConfig.from_mapping(bad)
        assert caught.value.reason == "INVALID_CONFIG"
    config = QuotaConfig(fetch_bytes_per_s=5.0, streams_max=3)
    assert QuotaConfig.from_mapping(config.to_mapping()) == config


async def test_new_connections_are_held_to_their_rate_known_ones_are_free() -> None:
    """connections_per_s 2: calls on connections already seen cost nothing; 11 new client
    addresses (one TCP connection each) take about 4 s of waiting after the 1 s burst."""
    quotas, clock, slept = make({"user:alice": QuotaConfig(connections_per_s=2)})
    for _ in range(50):
        await quotas.admit(ALICE, budget_s=30, requests=1, peer=lambda: "ipv4:10.0.0.1:4000")
    assert slept == []
    start = clock.monotonic_s()
    for port in range(5000, 5011):
        await quotas.admit(ALICE, budget_s=30, peer=lambda p=port: f"ipv4:10.0.0.1:{p}")  # type: ignore[misc]
    waited_s = clock.monotonic_s() - start
    assert 3.4 <= waited_s <= 4.6, waited_s
    # Bob has no connection quota: his new connections never wait.
    for port in range(6000, 6100):
        assert await quotas.admit(BOB, budget_s=1, peer=lambda p=port: f"ipv4:10.0.0.2:{p}") == 0  # type: ignore[misc]


def test_connection_quota_is_checked_like_the_rates() -> None:
    assert QuotaConfig.from_mapping({"connections_per_s": "5"}).connections_per_s == 5.0
    with pytest.raises(BrookError):
        QuotaConfig.from_mapping({"connections_per_s": 0})


async def test_a_change_to_another_principal_keeps_this_ones_debt() -> None:
    quotas, _, _ = make({"user:alice": QuotaConfig(produce_bytes_per_s=1000),
                         "user:bob": QuotaConfig(produce_bytes_per_s=1000)})  # fmt: skip
    quotas.charge(ALICE, "produce_bytes_per_s", 6000)
    quotas.charge(BOB, "produce_bytes_per_s", 6000)
    quotas.set_configs({"user:alice": QuotaConfig(produce_bytes_per_s=1000),
                        "user:bob": QuotaConfig(produce_bytes_per_s=2000)}, QuotaConfig())
    with pytest.raises(BrookError):  # alice's 5 s of debt stands
        await quotas.admit(ALICE, budget_s=2)
    assert await quotas.admit(BOB, budget_s=2) == 0.0  # bob's rate changed: restarts full


async def test_the_connections_remembered_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client cycling through client ports cannot grow the process's memory: at most
    PEERS_KNOWN_MAX addresses are kept, the least recently seen forgotten first (and a
    forgotten one counts as new again)."""
    from brook.services.common import quotas as quotas_module

    monkeypatch.setattr(quotas_module, "PEERS_KNOWN_MAX", 3)
    quotas, _, _ = make({"user:alice": QuotaConfig(connections_per_s=1000)})
    for port in range(100):
        await quotas.admit(ALICE, budget_s=30, peer=lambda p=port: f"ipv4:10.0.0.1:{p}")  # type: ignore[misc]
    assert len(quotas._peers) == 3
    assert list(quotas._peers) == [f"ipv4:10.0.0.1:{p}" for p in (97, 98, 99)]
    assert quotas._new_peer("ipv4:10.0.0.1:0") and not quotas._new_peer("ipv4:10.0.0.1:99")
