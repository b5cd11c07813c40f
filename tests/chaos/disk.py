"""Disk faults on a stopped node's data dir: a corrupt older segment, a wiped dir, and the
contract of the disk-full hook.

The layout these rely on is the node's documented one (docs/design.md): partition logs in
`<data-dir>/logs/<topic>-<partition>/`, segment files `<20-digit base offset>.log`, the
newest one active. The functions only touch files; stopping and restarting the node is
the campaign's job (a running node would keep its segments in its page cache and maps).

Disk full: the storage layer's fault-injection hook (owned by storage/faults.py, not
here) is the contract this relies on:

    BROOK_FAULTS="enospc:<path-prefix>[;...]"   read by a node at start
    BROOK_FAULTS_FILE=<path>                    a control file with the same syntax,
                                                re-read while the node runs

    enospc: every write to a file whose path starts with <path-prefix> fails with
    OSError(errno.ENOSPC), writing nothing, while the entry is present.

The campaign starts every node with BROOK_FAULTS_FILE pointing at one control file of
the cluster (empty: no fault), so a disk_full fault writes an entry naming one node's
logs (or one partition's) and heal empties the file again: the disk fills and frees
under a running node, without a restart. Where only BROOK_FAULTS exists, the fault
restarts the node with it set instead. `hook_support` says which of the two any Brook
code reads; while neither is, the campaign's disk_full fault is skipped with a note
saying so (reported as skipped, not as a passed fault).
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

FAULTS_ENV = "BROOK_FAULTS"
FAULTS_FILE_ENV = "BROOK_FAULTS_FILE"
# The packages that could implement the hook: the log engine and the node that owns it.
_HOOK_SOURCES = ("storage", "services/node")
_REPO = Path(__file__).resolve().parents[2]
# How many bytes a corrupt_segment fault flips, and how far from either end of the file
# (so the damage is in the middle of a batch run, not a torn tail recovery trims anyway).
FLIPPED_BYTES = 4
MIDDLE_MARGIN = 0.25


def partition_dirs(data_dir: Path, topic: str) -> list[Path]:
    """The node's log directories of `topic` (`<topic>-<partition>`), sorted."""
    logs = data_dir / "logs"
    if not logs.is_dir():
        return []
    return sorted(d for d in logs.iterdir() if d.is_dir() and d.name.rsplit("-", 1)[0] == topic)


def older_segments(partition_dir: Path) -> list[Path]:
    """The segment files of one partition except the newest (active) one."""
    segments = sorted(
        p for p in partition_dir.glob("*.log") if p.stem.isdigit() and len(p.stem) == 20
    )
    return segments[:-1]


def corrupt_older_segment(data_dir: Path, topic: str, rng: random.Random) -> str | None:
    """Flips FLIPPED_BYTES bytes in the middle of a non-active segment of one of the
    node's partitions of `topic`; returns what it did, or None when no partition has an
    older segment yet."""
    candidates = [(d, s) for d in partition_dirs(data_dir, topic) for s in older_segments(d)]
    candidates = [(d, s) for d, s in candidates if s.stat().st_size >= 64]
    if not candidates:
        return None
    partition_dir, segment = rng.choice(candidates)
    data = bytearray(segment.read_bytes())
    low = int(len(data) * MIDDLE_MARGIN)
    high = max(low + 1, int(len(data) * (1 - MIDDLE_MARGIN)))
    start = rng.randrange(low, high - FLIPPED_BYTES) if high - low > FLIPPED_BYTES else low
    for index in range(start, min(start + FLIPPED_BYTES, len(data))):
        data[index] ^= 0xFF
    segment.write_bytes(bytes(data))
    return (
        f"flipped {FLIPPED_BYTES} bytes at {start} of {len(data)} in"
        f" {partition_dir.name}/{segment.name}"
    )


def wipe(data_dir: Path) -> str:
    """Deletes the node's whole data dir (a replaced disk): logs, topic ids, everything."""
    existed = data_dir.exists()
    shutil.rmtree(data_dir, ignore_errors=True)
    return f"wiped {data_dir.name}" if existed else f"{data_dir.name} did not exist"


def hook_support() -> set[str]:
    """Which hook variables (FAULTS_ENV, FAULTS_FILE_ENV) Brook's storage or node code
    reads (see the module doc). A static look: a node started with an unknown variable
    set cannot tell us it ignored it."""
    found: set[str] = set()
    for folder in _HOOK_SOURCES:
        for path in (_REPO / folder).rglob("*.py"):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            if FAULTS_FILE_ENV in text:
                found.add(FAULTS_FILE_ENV)
            if FAULTS_ENV in text.replace(FAULTS_FILE_ENV, ""):
                found.add(FAULTS_ENV)
    return found


def set_control(control_file: Path, entries: list[str]) -> None:
    """Replaces the control file's entries (atomically: the node re-reads it any time)."""
    tmp = control_file.with_suffix(".tmp")
    tmp.write_text(";".join(entries) + "\n" if entries else "")
    tmp.replace(control_file)


def enospc_env(prefix: Path) -> dict[str, str]:
    """The environment that makes writes under `prefix` fail with ENOSPC."""
    return {FAULTS_ENV: f"enospc:{prefix}"}
