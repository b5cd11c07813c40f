"""All partition logs in one data directory (Kafka's LogManager).

Directory layout:

    <root>/
        orders-0/              one PartitionLog per "<topic>-<partition>" directory
        orders-1/
        my-topic-3/            topic names may contain '-': the partition is after the last
        orders-2.deleting/     a partition being deleted; removed again on the next start

Deleting a partition first renames its directory to `<name>.deleting` (one atomic step),
so a crash halfway through removing the files never leaves a half-deleted partition
that looks real.

Thread-safety: the map of open logs is guarded by a lock, so open_log / get /
delete_log may be called from any thread. Each PartitionLog it returns is still driven
by one thread at a time (see `partition_log`). The *_all methods call into every log and
so must not overlap with other calls on those logs.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .clock import Clock, SystemClock
from .config import LogConfig
from .errors import StorageError
from .file_utils import DELETING_SUFFIX, remove_directory
from .partition_log import PartitionLog

logger = logging.getLogger("brook.storage")

R = TypeVar("R")


def partition_directory_name(topic: str, partition: int) -> str:
    if not topic or "/" in topic or "\0" in topic or topic in (".", ".."):
        raise ValueError(f"invalid topic name {topic!r}: must be non-empty, without '/' or NUL")
    if topic.endswith(DELETING_SUFFIX):
        raise ValueError(f"invalid topic name {topic!r}: must not end with {DELETING_SUFFIX!r}")
    if partition < 0:
        raise ValueError(f"invalid partition {partition}: must be >= 0")
    return f"{topic}-{partition}"


def parse_partition_directory_name(name: str) -> tuple[str, int] | None:
    """(topic, partition) of a partition directory name, None if it is not one."""
    if name.endswith(DELETING_SUFFIX):
        return None
    topic, separator, number = name.rpartition("-")
    if not separator or not topic or not number.isdigit():
        return None
    return topic, int(number)


class LogManager:
    def __init__(
        self, root: Path, *, clock: Clock | None = None, caller_flushes: bool = False
    ) -> None:
        """`caller_flushes` opens every log with it (see `PartitionLog.open`)."""
        self.root = Path(root)
        self._caller_flushes = caller_flushes
        self.root.mkdir(parents=True, exist_ok=True)
        self._clock = clock or SystemClock()
        self._logs: dict[tuple[str, int], PartitionLog] = {}
        self._lock = threading.Lock()
        for path in self.root.iterdir():
            if path.is_dir() and path.name.endswith(DELETING_SUFFIX):
                logger.info("removing partially deleted partition directory %s", path)
                shutil.rmtree(path, ignore_errors=True)

    def open_log(self, topic: str, partition: int, config: LogConfig) -> PartitionLog:
        """Opens (creating if needed) a partition's log; returns the open one if it exists."""
        key = (topic, partition)
        name = partition_directory_name(topic, partition)
        with self._lock:
            log = self._logs.get(key)
            if log is not None and not log.closed:
                return log
            log = PartitionLog.open(
                self.root / name,
                config,
                clock=self._clock,
                name=name,
                caller_flushes=self._caller_flushes,
            )
            self._logs[key] = log
            return log

    def get(self, topic: str, partition: int) -> PartitionLog | None:
        with self._lock:
            return self._logs.get((topic, partition))

    def existing_partitions(self) -> list[tuple[str, int]]:
        """(topic, partition) of every partition directory on disk, open or not."""
        found = []
        for path in self.root.iterdir():
            parsed = parse_partition_directory_name(path.name)
            if parsed is not None and path.is_dir():
                found.append(parsed)
        return sorted(found)

    def delete_log(self, topic: str, partition: int) -> None:
        """Closes the partition's log (if open) and removes its directory."""
        name = partition_directory_name(topic, partition)
        with self._lock:
            log = self._logs.pop((topic, partition), None)
        if log is not None and not log.closed:
            log.delete()
            return
        directory = self.root / name
        if directory.exists():
            remove_directory(directory)

    def _open_logs(self) -> list[PartitionLog]:
        with self._lock:
            return [log for log in self._logs.values() if not log.closed]

    def flush_all(self) -> None:
        for log in self._open_logs():
            self._guarded(log, log.flush)

    def apply_retention_all(self) -> dict[tuple[str, int], list[int]]:
        """Runs retention and removes due `.deleted` files in every log; returns the
        deleted segment base offsets per partition (only partitions that deleted some)."""
        deleted: dict[tuple[str, int], list[int]] = {}
        with self._lock:
            items = [(key, log) for key, log in self._logs.items() if not log.closed]
        for key, log in items:
            bases = self._guarded(log, log.apply_retention)
            self._guarded(log, log.delete_pending_files)
            if bases:
                deleted[key] = bases
        return deleted

    def close_all(self) -> None:
        with self._lock:
            logs = list(self._logs.values())
            self._logs.clear()
        for log in logs:
            self._guarded(log, log.close)

    @staticmethod
    def _guarded(log: PartitionLog, action: Callable[[], R]) -> R | None:
        """Runs one log's action; a failing log is reported and skipped, so one bad partition
        (or disk) does not stop the others from being flushed, retained or closed."""
        try:
            return action()
        except (StorageError, OSError) as error:
            logger.error(
                "%s: %s failed: %s", log.name, getattr(action, "__name__", "action"), error
            )
            return None
