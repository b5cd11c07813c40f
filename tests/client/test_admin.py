"""The Admin client against a fake coordinator (and a fake standby)."""

from __future__ import annotations

import pytest

from brook.client.admin import Admin
from brook.errors import BrookError
from tests.client.fake_cluster import FakeCluster


async def test_topic_calls_round_trip(fake: FakeCluster) -> None:
    """Proves create/describe/list (across pages)/configs/partitions/elect/delete reach the
    AdminService and return its answers."""
    async with Admin(fake.bootstrap) as admin:
        created = await admin.create_topic("a", 2, 1, {"retention_ms": "1000"})
        assert (created.name, created.partition_count) == ("a", 2)
        for name in ("b", "c", "d"):
            await admin.create_topic(name, 1, 1)
        names = [t.name for t in await admin.list_topics(page_size=2)]
        assert names == ["a", "b", "c", "d"]
        assert len([c for c in fake.state.admin_calls if c == "ListTopics"]) == 2
        assert (await admin.describe_topic("a")).configs["retention_ms"] == "1000"
        configs = await admin.describe_configs("a")
        assert configs[0].name == "retention_ms"
        await admin.alter_configs("a", {"retention_ms": "5"}, delete=[])
        assert fake.state.topics["a"].configs["retention_ms"] == "5"
        assert (await admin.create_partitions("a", 4)).partition_count == 4
        results = await admin.elect_leaders([("a", 0)])
        assert results[0].error.reason != 0
        cluster = await admin.describe_cluster()
        assert len(cluster.nodes) == 2
        assert await admin.delete_topic("a")
        with pytest.raises(BrookError) as caught:
            await admin.describe_topic("a")
        assert caught.value.reason == "TOPIC_NOT_FOUND"
        with pytest.raises(BrookError) as exists:
            await admin.create_topic("b", 1, 1)
        assert exists.value.reason == "TOPIC_ALREADY_EXISTS"


async def test_standby_redirects_to_the_active_coordinator(fake: FakeCluster) -> None:
    """Proves a call sent to a standby coordinator follows NOT_COORDINATOR's
    coordinator_address to the active one, and later calls go there directly."""
    standby = await fake.start_standby()
    async with Admin(standby) as admin:
        await admin.create_topic("t", 1, 1)
        await admin.describe_topic("t")
    assert fake.state.admin_calls == ["CreateTopic", "CreateTopic", "DescribeTopic"]
    assert "t" in fake.state.topics


async def test_unreachable_bootstrap_falls_over_then_gives_up(fake: FakeCluster) -> None:
    """Proves a dead first bootstrap address is skipped for a live one, and that with only
    dead addresses the call fails after its bounded attempts with a transport error."""
    async with Admin(f"127.0.0.1:1,{fake.bootstrap}", retry_backoff_ms=1) as admin:
        assert await admin.list_topics() == []
    async with Admin("127.0.0.1:1", retry_backoff_ms=1, max_attempts=2) as admin:
        with pytest.raises(BrookError) as caught:
            await admin.list_topics()
        assert caught.value.retriable
