"""Key layout and topic configs (pure)."""

from __future__ import annotations

import pytest

from brook.errors import BrookError
from brook.services.metadata import configs
from brook.services.metadata.keys import Keys, prefix_range_end
from brook.services.metadata.model import TopicRecord


def test_keys_match_the_design_layout_and_parse_back() -> None:
    """Every builder spells the documented key; parse() returns kind and decoded parts,
    including group ids with '/' (percent-encoded so segments cannot shift)."""
    keys = Keys("prod")
    assert keys.cluster_id == b"/brook/prod/cluster_id"
    assert keys.node(3) == b"/brook/prod/nodes/3"
    assert keys.role("coordinator") == b"/brook/prod/roles/coordinator"
    assert keys.topic("orders") == b"/brook/prod/topics/orders"
    assert keys.partition("orders", 7) == b"/brook/prod/partitions/orders/7"
    assert keys.group("g1") == b"/brook/prod/groups/g1"
    assert keys.offset("g/1", "orders", 2) == b"/brook/prod/offsets/g%2F1/orders/2"
    assert keys.parse(keys.offset("g/1", "orders", 2)).parts == ("g/1", "orders", "2")  # type: ignore[union-attr]
    assert keys.parse(keys.partition("orders", 7)).kind == "partition"  # type: ignore[union-attr]
    assert keys.parse(b"/brook/other/nodes/1") is None
    assert keys.parse(b"/brook/prod/unknown/x") is None
    assert keys.partitions_prefix("orders") == b"/brook/prod/partitions/orders/"
    assert prefix_range_end(b"/a/") == b"/a0"
    with pytest.raises(ValueError):
        keys.role("nope")
    with pytest.raises(ValueError):
        Keys("a/b")


def test_validate_configs_normalizes_and_names_the_bad_key() -> None:
    """Dotted names are normalized; bad keys and values raise INVALID_CONFIG naming the key;
    min_insync_replicas may not exceed the replication factor."""
    assert configs.validate_configs(
        {"retention.ms": " 1000 ", "unclean.leader.election.enable": "TRUE"}
    ) == {
        "retention_ms": "1000",
        "unclean_leader_election_enable": "true",
    }
    for bad, key in [
        ({"nope": "1"}, "nope"),
        ({"segment_bytes": "abc"}, "segment_bytes"),
        ({"retention_ms": "-2"}, "retention_ms"),
        ({"unclean_leader_election_enable": "maybe"}, "unclean_leader_election_enable"),
        ({"retention.ms": "1", "retention_ms": "2"}, "retention_ms"),
    ]:
        with pytest.raises(BrookError) as error:
            configs.validate_configs(bad)
        assert error.value.reason == "INVALID_CONFIG"
        assert error.value.metadata["config"] == key
    with pytest.raises(BrookError):
        configs.validate_configs({"min_insync_replicas": "3"}, replication_factor=2)


def test_effective_configs_and_log_config() -> None:
    """Defaults fill what a topic does not override; min_insync_replicas defaults by RF;
    log_config_for builds a valid brook.storage LogConfig."""
    topic = TopicRecord("t", "id", 1, 3, configs={"segment_bytes": "4096"})
    effective = configs.effective_configs(topic)
    assert effective["min_insync_replicas"] == "2"
    assert effective["segment_bytes"] == "4096"
    assert set(effective) == set(configs.TOPIC_CONFIGS)
    kwargs = configs.log_config_for(topic)
    assert kwargs["segment_bytes"] == 4096
    from brook.storage.config import LogConfig

    LogConfig(**kwargs).validate()
    assert configs.effective_configs(TopicRecord("t", "id", 1, 1))["min_insync_replicas"] == "1"
