"""The metrics catalogue, the README's table, the Grafana dashboard and the Prometheus
alert rules agree: every metric is documented once, every name the dashboard and the
rules use exists, the names follow Prometheus' conventions, and promtool accepts the
rules (and their unit tests pass) and every dashboard query."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.observability.helpers import (
    ALERT_TESTS,
    ALERTS,
    DASHBOARD,
    PROMTOOL,
    all_catalogue,
    dashboard_expressions,
    names_in,
    readme_table,
)

PROMTOOL_TIMEOUT_S = 60


def promtool(*args: str, cwd: Path | None = None) -> str:
    if not PROMTOOL.exists():
        pytest.fail(f"{PROMTOOL} is missing: `make test` (or `make check-rules`) builds it")
    result = subprocess.run([str(PROMTOOL), *args], capture_output=True, text=True,
                            timeout=PROMTOOL_TIMEOUT_S, cwd=cwd)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def alert_rules() -> list[dict[str, object]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_the_readme_table_documents_every_metric_once() -> None:
    table = readme_table()
    catalogue = all_catalogue()
    assert sorted(table) == sorted(catalogue), (
        f"missing from the README: {sorted(set(catalogue) - set(table))};"
        f" not in the catalogue: {sorted(set(table) - set(catalogue))}"
    )
    for name, (kind, labels, process) in catalogue.items():
        assert table[name] == (kind, ", ".join(labels), process), name


def test_names_follow_prometheus_conventions() -> None:
    for name, (kind, labels, _) in all_catalogue().items():
        assert name.startswith("brook_"), name
        assert name == name.lower() and " " not in name, name
        if kind == "counter":
            assert name.endswith("_total"), name
        else:
            assert not name.endswith("_total"), name
        if "seconds" in name or "duration" in name or "latency" in name:
            assert name.endswith("_seconds"), name
        if "bytes" in name:
            assert name.endswith(
                ("_bytes", "_bytes_total", "_bytes_in_total", "_bytes_out_total")
            ), name
        assert len(set(labels)) == len(labels), name


def test_dashboard_and_alerts_use_only_documented_metrics() -> None:
    catalogue = set(all_catalogue())
    expressions = dashboard_expressions()
    assert len(expressions) >= 30
    used = set().union(*(names_in(expr) for expr in expressions))
    assert used <= catalogue, sorted(used - catalogue)
    rules = alert_rules()
    alert_names = {str(rule["alert"]) for rule in rules}
    assert {
        "BrookOfflinePartitions",
        "BrookUnderReplicatedPartitions",
        "BrookConsumerLagGrowing",
        "BrookNoActiveCoordinator",
        "BrookNoActiveGroupManager",
        "BrookDiskNearlyFull",
    } <= alert_names
    used = set().union(*(names_in(str(rule["expr"])) for rule in rules))
    assert used <= catalogue, sorted(used - catalogue)


def test_the_dashboard_is_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] == "Brook"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel.get("targets", []):
            assert target["refId"] and target["expr"], panel["title"]


def test_promtool_accepts_the_alert_rules_and_their_unit_tests_pass() -> None:
    assert "SUCCESS" in promtool("check", "rules", str(ALERTS))
    assert "SUCCESS" in promtool("test", "rules", ALERT_TESTS.name, cwd=ALERT_TESTS.parent)


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    """Each panel query, as a recording rule: promtool checks its PromQL."""
    rules = [
        {"record": f"brook:dashboard_query_{index}", "expr": expr}
        for index, expr in enumerate(dashboard_expressions())
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert "SUCCESS" in promtool("check", "rules", str(path))


def test_promtool_accepts_the_example_scrape_config() -> None:
    config = ALERTS.parent / "prometheus.yml"
    assert "SUCCESS" in promtool("check", "config", str(config))
