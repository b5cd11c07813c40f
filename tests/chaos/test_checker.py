"""The fault-test history checker finds each kind of failure and passes a clean history.

Each test builds a small history by hand, broken in exactly one way (or not at all), and
asserts that the report names that failure and nothing else.
"""

from __future__ import annotations

from tests.chaos.checker import Ack, Read, check

P0 = ("t", 0)


def _acks(n: int) -> list[Ack]:
    return [Ack(f"r{i}", P0, i, "w1", i) for i in range(n)]


def _reads(ids: list[str]) -> list[Read]:
    return [Read(P0, offset, rid) for offset, rid in enumerate(ids)]


def test_clean_history_is_ok() -> None:
    """Everything acknowledged is read once at its offset, in order: ok."""
    report = check(_acks(3), _reads(["r0", "r1"]), _reads(["r0", "r1", "r2"]))
    assert report.ok, report.summary()
    assert report.acknowledged == 3 and report.read == 3


def test_lost_record_is_reported() -> None:
    """An acknowledged record missing from the final read is lost."""
    report = check(_acks(3), [], _reads(["r0", "r1"]))
    assert report.lost == ["r2"]
    assert not report.ok


def test_duplicate_is_reported_but_allowed() -> None:
    """A record stored at two offsets is a duplicate, which does not fail the run."""
    acks = [Ack("r0", P0, 0, "w1", 0), Ack("r1", P0, 2, "w1", 1)]
    report = check(acks, [], _reads(["r0", "r0", "r1"]))
    assert report.duplicates == ["r0"]
    assert report.ok


def test_acknowledged_offset_holding_another_record_is_inconsistent() -> None:
    """The leader acked r1 at offset 1, but offset 1 holds r9 (a fork): inconsistent."""
    acks = [Ack("r0", P0, 0, "w1", 0), Ack("r1", P0, 1, "w1", 1)]
    report = check(acks, [], _reads(["r0", "r9", "r1"]))
    assert report.inconsistent and not report.ok


def test_order_violation_is_reported() -> None:
    """A later sequence at a lower offset than an earlier one breaks per-partition order."""
    acks = [Ack("r0", P0, 1, "w1", 0), Ack("r1", P0, 0, "w1", 1)]
    report = check(acks, [], _reads(["r1", "r0"]))
    assert report.order_violations == [(P0, "w1", 0, 1)]
    assert not report.ok


def test_read_that_vanished_is_reported() -> None:
    """A consumer read r5 at offset 1 during the run, but the final log has r1 there."""
    report = check(_acks(2), [Read(P0, 1, "r5")], _reads(["r0", "r1"]))
    assert report.vanished_reads == [Read(P0, 1, "r5")]
    assert not report.ok


def test_log_order_violation_is_reported() -> None:
    """r0 was sent (and acknowledged) before r1, but the final log holds r1 first: both
    order checks see it."""
    acks = [Ack("r0", P0, 2, "w1", 0), Ack("r1", P0, 1, "w1", 1)]
    report = check(acks, [], _reads(["r9", "r1", "r0"]))
    assert report.order_violations  # acked offsets decrease
    assert report.log_order_violations == [(P0, "w1", 0, 1)]
    assert report.out_of_order == 2 and not report.ok


def test_retried_copy_does_not_count_as_out_of_order() -> None:
    """r0 stored twice (a retry), r1 after its first copy: in order, one duplicate."""
    acks = [Ack("r0", P0, 0, "w1", 0), Ack("r1", P0, 2, "w1", 1)]
    report = check(acks, [], _reads(["r0", "r0", "r1"]))
    assert report.log_order_violations == [] and report.duplicates == ["r0"]
    assert report.ok
