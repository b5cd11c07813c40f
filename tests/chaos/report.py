"""The campaign's REPORT: what faults ran, what each one broke, what the checker found.

`CampaignLog` collects one `Step` per fault as the campaign runs (kind, what was done,
when, anomalies the fault's own checks saw, whether the cluster healed, the tail check's
findings); `build_report` joins it with the history checker's `Report` into one JSON
document, and `render` prints it for people. The JSON keys:

    seed, mode ("duration" | "faults"), elapsed_s, ok
    faults_by_kind          {kind: count of faults run}
    skipped_by_kind         {kind: [why]}           (e.g. disk_full without the hook)
    records                 {sent, acknowledged, read_final, lost, inconsistent,
                             out_of_order, duplicates, vanished_reads}
    lost_by_kind            {kind: lost records acknowledged while that kind's fault and
                             heal ran} ("before the first fault" / "after the last heal")
    tail_by_kind            {kind: {lost, inconsistent}} from the tail check after heal
    anomalies_by_kind       {kind: [anomaly]}       (wrong answers to hostile requests)
    unhealthy               [{step, kind, error}]   (the cluster did not heal in bounds)
    final_read_error        why the final read failed, or null
    failed_sends            {reason: count}         (allowed; not acknowledged)
    examples                {lost, inconsistent, out_of_order: first few}
    steps                   [{step, kind, what, at_s, healed_in_s, anomalies, tail,
                              unhealthy, skipped}]

A lost record is attributed to the fault window it was acknowledged in: the fault that
lost it is that one or a later one, so `tail_by_kind` (checked right after each heal) is
the sharper attribution for tail losses, and the two together point at the culprit.
"""

from __future__ import annotations

import bisect
import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.chaos.checker import Ack, Report


@dataclass
class Step:
    """One fault of the campaign and what followed it."""

    step: int
    kind: str
    at_s: float  # seconds since the campaign started
    started: float  # time.monotonic() when the fault began (for attribution)
    what: str = ""
    healed_in_s: float | None = None
    anomalies: list[str] = field(default_factory=list)
    tail: dict[str, int] = field(default_factory=dict)
    unhealthy: str | None = None
    skipped: str | None = None


@dataclass
class CampaignLog:
    seed: int
    mode: str
    steps: list[Step] = field(default_factory=list)
    ended: float | None = None  # time.monotonic() when the last heal finished

    def kind_at(self, when: float) -> str:
        """The kind of the fault whose window (its start to the next fault's) holds
        `when`."""
        starts = [s.started for s in self.steps]
        index = bisect.bisect_right(starts, when) - 1
        if index < 0:
            return "before the first fault"
        if self.ended is not None and when > self.ended and index == len(self.steps) - 1:
            return "after the last heal"
        return self.steps[index].kind


def build_report(
    log: CampaignLog,
    check: Report | None,
    acks: list[Ack],
    sent: int,
    failed_sends: Counter[str],
    elapsed_s: float,
    final_read_error: str | None,
) -> dict[str, Any]:
    ran = [s for s in log.steps if s.skipped is None]
    skipped: dict[str, list[str]] = defaultdict(list)
    for s in log.steps:
        if s.skipped is not None and s.skipped not in skipped[s.kind]:
            skipped[s.kind].append(s.skipped)
    tail: dict[str, Counter[str]] = defaultdict(Counter)
    anomalies: dict[str, list[str]] = defaultdict(list)
    for s in ran:
        tail[s.kind].update({k: v for k, v in s.tail.items() if v})
        anomalies[s.kind].extend(f"step {s.step}: {a}" for a in s.anomalies)
    records: dict[str, int | None] = {"sent": sent, "acknowledged": len(acks)}
    lost_by_kind: Counter[str] = Counter()
    examples: dict[str, list[Any]] = {}
    if check is not None:
        by_id = {a.record_id: a for a in acks}
        for rid in check.lost:
            ack = by_id.get(rid)
            lost_by_kind[log.kind_at(ack.acked_at) if ack else "unknown"] += 1
        records.update(
            read_final=check.read,
            lost=len(check.lost),
            inconsistent=len(check.inconsistent),
            out_of_order=check.out_of_order,
            duplicates=len(check.duplicates),
            vanished_reads=len(check.vanished_reads),
        )
        examples = {
            "lost": check.lost[:10],
            "inconsistent": check.inconsistent[:10],
            "out_of_order": (check.order_violations + check.log_order_violations)[:10],
        }
    else:
        records.update(
            read_final=None,
            lost=None,
            inconsistent=None,
            out_of_order=None,
            duplicates=None,
            vanished_reads=None,
        )
    unhealthy = [
        {"step": s.step, "kind": s.kind, "error": s.unhealthy} for s in log.steps if s.unhealthy
    ]
    ok = (
        check is not None
        and check.ok
        and not unhealthy
        and final_read_error is None
        and not any(anomalies.values())
    )
    return {
        "seed": log.seed,
        "mode": log.mode,
        "elapsed_s": round(elapsed_s, 1),
        "ok": ok,
        "faults_by_kind": dict(sorted(Counter(s.kind for s in ran).items())),
        "skipped_by_kind": dict(skipped),
        "records": records,
        "lost_by_kind": dict(lost_by_kind),
        "tail_by_kind": {k: dict(v) for k, v in tail.items() if v},
        "anomalies_by_kind": {k: v for k, v in anomalies.items() if v},
        "unhealthy": unhealthy,
        "final_read_error": final_read_error,
        "failed_sends": dict(failed_sends),
        "examples": examples,
        "steps": [{k: v for k, v in asdict(s).items() if k != "started"} for s in log.steps],
    }


def write(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")


def render(report: dict[str, Any]) -> str:
    """The REPORT as text: counts first, then what went wrong and where."""
    records = report["records"]
    lines = [
        f"===== CHAOS REPORT (seed {report['seed']}, {report['mode']},"
        f" {report['elapsed_s']}s) : {'OK' if report['ok'] else 'FAILED'} =====",
        "faults by kind: " + ", ".join(f"{k}={v}" for k, v in report["faults_by_kind"].items()),
        f"total faults: {sum(report['faults_by_kind'].values())}",
        "records: " + ", ".join(f"{k}={v}" for k, v in records.items()),
    ]
    for kind, why in report["skipped_by_kind"].items():
        lines.append(f"skipped {kind}: {'; '.join(why)}")
    if report["lost_by_kind"]:
        lines.append(
            "lost records by the fault window they were acknowledged in: "
            + ", ".join(f"{k}={v}" for k, v in report["lost_by_kind"].items())
        )
    for kind, found in report["tail_by_kind"].items():
        lines.append(f"tail check after {kind}: {found}")
    for kind, found in report["anomalies_by_kind"].items():
        lines.append(f"anomalies of {kind}: {found[:5]}")
    for entry in report["unhealthy"]:
        lines.append(
            f"UNHEALTHY after step {entry['step']} ({entry['kind']}): {str(entry['error'])[:300]}"
        )
    if report["final_read_error"]:
        lines.append(f"final read failed: {report['final_read_error'][:300]}")
    for what, items in report["examples"].items():
        if items:
            lines.append(f"e.g. {what}: {items[:5]}")
    return "\n".join(lines)
