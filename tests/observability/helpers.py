"""Shared by the observability tests: scraping /metrics, the catalogue, the README table,
and the metric names the dashboard and alert rules use."""

from __future__ import annotations

import json
import re
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from brook.client.metrics import CLIENT_CATALOGUE
from brook.services.common.metrics import CATALOGUE

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DASHBOARD = ROOT / "ops" / "grafana" / "brook.json"
ALERTS = ROOT / "ops" / "prometheus" / "brook-alerts.yml"
ALERT_TESTS = ROOT / "ops" / "prometheus" / "brook-alerts.test.yml"
PROMTOOL = ROOT / ".tools" / "bin" / "promtool"
SCRAPE_TIMEOUT_S = 10.0
# Suffixes of the samples of a histogram or counter family.
_SAMPLE_SUFFIXES = ("_bucket", "_count", "_sum", "_created")
_NAME = re.compile(r"\bbrook_[a-z0-9_]+")


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def scrape(address: str) -> list[Sample]:
    """Every sample at http://address/metrics, parsed with prometheus_client's parser."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=SCRAPE_TIMEOUT_S) as reply:
        text = reply.read().decode()
    return [
        Sample(sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    """The sum of the samples named `name` whose labels include `labels` (None: none)."""
    found = [s.value for s in samples if s.name == name
             and all(s.labels.get(k) == v for k, v in labels.items())]  # fmt: skip
    return sum(found) if found else None


def metric_names(samples: list[Sample]) -> set[str]:
    """The catalogue-style names present (histogram samples count for their family)."""
    names = set()
    for sample in samples:
        names.add(sample.name)
        for suffix in _SAMPLE_SUFFIXES:
            if sample.name.endswith(suffix):
                names.add(sample.name[: -len(suffix)])
    return names


def all_catalogue() -> dict[str, tuple[str, tuple[str, ...], str]]:
    """Server and client metrics: name -> (type, labels, process)."""
    names = {name: (spec.kind, spec.labels, spec.process) for name, spec in CATALOGUE.items()}
    for name, (kind, labels, _) in CLIENT_CATALOGUE.items():
        names[name] = (kind, labels, "client")
    return names


def readme_table() -> dict[str, tuple[str, str, str]]:
    """The README's metrics table (in "Operating"): name -> (type, labels, process)."""
    text = README.read_text()
    operating = text.split("\n## Operating\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in operating.splitlines():
        match = re.match(r"\|\s*`(brook_[a-z0-9_]+)`\s*\|([^|]*)\|([^|]*)\|([^|]*)\|", line)
        if match:
            name, kind, labels, process = (part.strip() for part in match.groups())
            rows[name] = (kind, labels.replace("`", ""), process)
    return rows


def names_in(text: str) -> set[str]:
    """brook_* metric names used in a PromQL text (sample suffixes folded to families)."""
    names = set()
    catalogue = all_catalogue()
    for name in _NAME.findall(text):
        if name not in catalogue:
            for suffix in _SAMPLE_SUFFIXES:
                if name.endswith(suffix) and name[: -len(suffix)] in catalogue:
                    name = name[: -len(suffix)]
        names.add(name)
    return names


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expressions.append(target["expr"])
    return expressions
