"""History checker for fault tests: what the workload saw against what the log holds.

A fault test runs producers of unique, checkable records (`record_id` strings) while it
injects faults, then drains the partitions and hands three histories to `check`:

- `acknowledged`: every record the cluster acknowledged, with the offset it was given;
- `observed`: records live consumers read during the run (offset -> record id);
- `final`: a full read of every partition after the faults stopped.

The report lists the five kinds of failure the replication issue names, plus a second
order check on the final log itself (`log_order_violations`: a producer's acknowledged
records must appear in the log, first copy each, in the order it sent them, whatever
offsets the acknowledgements named). The checker is a pure function so it is unit-tested
on hand-made histories, including broken ones.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise

PartitionKey = tuple[str, int]


@dataclass(frozen=True)
class Ack:
    """One acknowledged record: where the leader said it went, and its producer sequence."""

    record_id: str
    partition: PartitionKey
    offset: int
    producer: str
    sequence: int
    # When the acknowledgement arrived (time.monotonic of the test process), so a campaign
    # can tell which fault window a lost record was acknowledged in; 0 when unknown.
    acked_at: float = 0.0


@dataclass(frozen=True)
class Read:
    """One record read at an offset."""

    partition: PartitionKey
    offset: int
    record_id: str


@dataclass
class Report:
    """Everything the checker found; `ok` when nothing that must not happen happened."""

    acknowledged: int = 0
    read: int = 0
    lost: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    inconsistent: list[tuple[PartitionKey, int, str, str]] = field(default_factory=list)
    order_violations: list[tuple[PartitionKey, str, int, int]] = field(default_factory=list)
    # (partition, producer, earlier sequence, later sequence) whose first copies in the
    # final log are the other way round.
    log_order_violations: list[tuple[PartitionKey, str, int, int]] = field(default_factory=list)
    vanished_reads: list[Read] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Lost, inconsistent, reordered and vanished records are failures; duplicates are
        reported but allowed (a retried, non-idempotent send may store a record twice)."""
        return not (
            self.lost
            or self.inconsistent
            or self.order_violations
            or self.log_order_violations
            or self.vanished_reads
        )

    @property
    def out_of_order(self) -> int:
        """Order violations of both kinds (acknowledged offsets, and the log's order)."""
        return len(self.order_violations) + len(self.log_order_violations)

    def summary(self) -> str:
        return (
            f"acknowledged={self.acknowledged} read={self.read} lost={len(self.lost)} "
            f"duplicates={len(self.duplicates)} inconsistent={len(self.inconsistent)} "
            f"order_violations={len(self.order_violations)} "
            f"log_order_violations={len(self.log_order_violations)} "
            f"vanished_reads={len(self.vanished_reads)}"
        )


def check(acknowledged: Iterable[Ack], observed: Iterable[Read], final: Iterable[Read]) -> Report:
    """Compares the histories; see the module docstring for what each list means."""
    acks = list(acknowledged)
    final_reads = list(final)
    report = Report(acknowledged=len(acks), read=len(final_reads))

    at_offset: dict[tuple[PartitionKey, int], str] = {}
    offsets_of: dict[str, list[tuple[PartitionKey, int]]] = defaultdict(list)
    for read in final_reads:
        key = (read.partition, read.offset)
        previous = at_offset.get(key)
        if previous is not None and previous != read.record_id:
            report.inconsistent.append((read.partition, read.offset, previous, read.record_id))
        at_offset[key] = read.record_id
        offsets_of[read.record_id].append(key)

    report.duplicates = sorted(rid for rid, places in offsets_of.items() if len(set(places)) > 1)

    for ack in acks:
        stored = at_offset.get((ack.partition, ack.offset))
        if ack.record_id not in offsets_of:
            report.lost.append(ack.record_id)
        elif stored is not None and stored != ack.record_id:
            # The leader acknowledged this offset for another record: the log forked.
            report.inconsistent.append((ack.partition, ack.offset, ack.record_id, stored))

    # Per producer and partition, acknowledged sequences must sit at increasing offsets.
    by_stream: dict[tuple[str, PartitionKey], list[Ack]] = defaultdict(list)
    for ack in acks:
        by_stream[(ack.producer, ack.partition)].append(ack)
    for (producer, partition), stream in by_stream.items():
        stream.sort(key=lambda a: a.sequence)
        for earlier, later in pairwise(stream):
            if later.offset <= earlier.offset:
                report.order_violations.append(
                    (partition, producer, earlier.sequence, later.sequence)
                )

    # The same streams in the final log: the first copy of each acknowledged record (a
    # retry may add later copies, which do not reorder anything already stored).
    first_offset: dict[str, int] = {}
    for read in final_reads:
        offset = first_offset.get(read.record_id)
        if offset is None or read.offset < offset:
            first_offset[read.record_id] = read.offset
    for (producer, partition), stream in by_stream.items():
        placed = [
            (a.sequence, first_offset[a.record_id]) for a in stream if a.record_id in first_offset
        ]
        for (sent_first, first_at), (sent_next, next_at) in pairwise(placed):
            if next_at <= first_at:
                report.log_order_violations.append((partition, producer, sent_first, sent_next))

    for read in observed:
        if at_offset.get((read.partition, read.offset)) != read.record_id:
            report.vanished_reads.append(read)
    return report
