"""Recovery of a partition directory when its log is opened (Kafka's LogLoader).

Files it reads (all in the partition directory; formats in the modules named):

    <base>.log / .index / .timeindex   segments (`log_segment`)
    recovery-point-checkpoint          offset below which every batch was fsynced
                                       (`checkpoint_file`, one entry)
    log-start-offset-checkpoint        first offset still exposed to readers (one entry)
    leader-epoch-checkpoint            epoch history (`leader_epoch_cache`)
    .clean-shutdown                    empty marker written by close() after a full flush
    clean-segments-checkpoint          sealed segments known clean (`clean_segments`)

What it does, in order:
  1. Removes leftovers of interrupted work: `*.deleted` and `*.tmp` files, and index files
     whose `.log` is gone.
  2. Sealed segments known clean (`clean_segments`: verified or written and fsynced by
     this engine, and unchanged since) and the active segment after a clean shutdown are
     trusted: their index files are loaded and sanity-checked and the batches after the
     last offset-index entry are walked (headers only) to find the segment's end; any
     failure there sends the segment to full recovery instead (logged at INFO).
  3. Every other segment is recovered: each batch is checked (magic, length within the
     file, contiguous offsets, CRC) and both indexes are rebuilt. At the first invalid
     batch the segment is truncated and all later segments are deleted, with one WARNING
     naming the file, the position and the dropped offsets (a replica then re-fetches
     them from the leader). This includes a sealed segment that is not known clean, even
     after a clean shutdown, so damage to an old segment is found before the replica
     serves or leads anything. Cost: one sequential read plus CRC32C of such segments
     (bench/startup_scan_bench.py); the node opens logs on its I/O executor.
  3b. The sealed segments are stamped known clean (`clean-segments-checkpoint`).
  4. The epoch history is cut to the recovered log end and extended from the epochs of the
     recovered batches; it is rebuilt from all batch headers if its file is unreadable.
  5. Recovered data is fsynced, the recovery point is moved to the log end and the
     clean-shutdown marker is removed, so a crash from here on is recovered from the end.

Thread-safety: runs once, before the PartitionLog exists; no sharing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .checkpoint_file import TMP_SUFFIX, CheckpointFormatError, OffsetCheckpoint
from .clean_segments import CleanSegments
from .config import LogConfig
from .file_utils import fsync_directory, remove_if_exists
from .leader_epoch_cache import LeaderEpochFileCache
from .log_segment import (
    DELETED_SUFFIX,
    LOG_SUFFIX,
    LogSegment,
    RecoveryResult,
    parse_segment_base,
)
from .log_segments import LogSegments
from .offset_index import OFFSET_INDEX_SUFFIX
from .record_batch import MAX_PAYLOAD_BYTES
from .time_index import TIME_INDEX_SUFFIX

logger = logging.getLogger("brook.storage")

CLEAN_SHUTDOWN_FILE: Final = ".clean-shutdown"
# Held (flock) by the PartitionLog that has the directory open; not part of the log.
LOCK_FILE: Final = ".lock"
RECOVERY_POINT_CHECKPOINT: Final = "recovery-point-checkpoint"
LOG_START_OFFSET_CHECKPOINT: Final = "log-start-offset-checkpoint"
# Recovery accepts any length a batch header can legally hold rather than the configured
# max_batch_bytes: lowering that setting must never turn stored batches into "corruption".
# The file-size bound and the CRC are what detect a damaged length field.
RECOVERY_MAX_PAYLOAD_BYTES: Final = MAX_PAYLOAD_BYTES


@dataclass
class LoadedLog:
    segments: LogSegments
    log_start_offset: int
    recovery_point: int
    epoch_cache: LeaderEpochFileCache
    had_clean_shutdown: bool
    clean_segments: CleanSegments


class LogLoader:
    def __init__(self, directory: Path, config: LogConfig, *, name: str, now_ms: int) -> None:
        self.directory = directory
        self.config = config
        self.name = name
        self.now_ms = now_ms

    def load(self) -> LoadedLog:
        directory = self.directory
        directory.mkdir(parents=True, exist_ok=True)
        self._remove_leftovers()
        marker = directory / CLEAN_SHUTDOWN_FILE
        had_clean_shutdown = marker.exists()
        recovery_checkpoint = OffsetCheckpoint(directory / RECOVERY_POINT_CHECKPOINT)
        start_checkpoint = OffsetCheckpoint(directory / LOG_START_OFFSET_CHECKPOINT)
        # A missing or unreadable recovery point means "trust nothing": recover every segment.
        recovery_point = self._read_checkpoint(recovery_checkpoint) or 0
        checkpointed_start = self._read_checkpoint(start_checkpoint)

        bases = sorted(
            base
            for path in directory.iterdir()
            if (base := parse_segment_base(path.name)) is not None
        )
        segments = LogSegments()
        recovered: list[LogSegment] = []
        transitions: list[tuple[int, int]] = []
        clean = CleanSegments(directory)
        ignored = clean.load()
        if ignored is not None:
            logger.warning("%s: scanning every segment: %s", self.name, ignored)
        for number, base in enumerate(bases):
            if len(segments) and base != segments.active.next_offset:
                self._drop_segments(
                    bases[number:],
                    f"segment {base} does not start where the previous one ends "
                    f"({segments.active.next_offset})",
                )
                break
            segment = self._open_segment(base)
            sealed = number + 1 < len(bases)
            # A sealed segment is trusted only when known clean (stamped and unchanged since,
            # see clean_segments), whatever the shutdown was: damage to an old segment must
            # be found here, not by a reader. The active one as before: after a clean
            # shutdown, or (never, being past the recovery point) otherwise.
            trusted = clean.is_clean(base, segment.log_path) if sealed else had_clean_shutdown
            if sealed and not trusted:
                logger.info(
                    "%s: verifying %s (%d bytes): not known clean",
                    self.name, segment.log_path.name, segment.size_bytes,
                )
            result: RecoveryResult | None = None
            if trusted:
                problem = segment.load_indexes_and_check_tail(RECOVERY_MAX_PAYLOAD_BYTES)
                if problem is not None:
                    logger.info(
                        "%s: rebuilding index files of %s: %s",
                        self.name,
                        segment.log_path.name,
                        problem,
                    )
                    result = segment.recover(RECOVERY_MAX_PAYLOAD_BYTES)
            else:
                result = segment.recover(RECOVERY_MAX_PAYLOAD_BYTES)
            if not segment.is_empty:
                # The original append time is not stored; age-based rolling counts from now.
                segment.first_append_ms = self.now_ms
            segments.add(segment)
            if result is not None:
                recovered.append(segment)
                transitions.extend(result.epoch_transitions)
                if result.problem is not None:
                    later = bases[number + 1 :]
                    self._warn_truncated(segment, result, later)
                    self._delete_segment_files(later)
                    break

        if not len(segments):
            segments.add(self._create_segment(checkpointed_start or 0))
        log_end_offset = segments.active.next_offset
        log_start_offset = max(checkpointed_start or 0, segments.first.base_offset)
        if log_start_offset > log_end_offset:
            # Recovery cut the log below its start offset: nothing readable is left. Start
            # empty at the old start offset so offsets are never handed out twice.
            logger.warning(
                "%s: log end %d is below the log start offset %d after recovery; "
                "starting an empty log at %d",
                self.name,
                log_end_offset,
                log_start_offset,
                log_start_offset,
            )
            for segment in segments:
                segments.remove(segment.base_offset).delete_files()
            recovered = []
            segments.add(self._create_segment(log_start_offset))
            log_end_offset = log_start_offset

        epoch_cache = self._load_epoch_cache(
            segments, transitions, log_start_offset, log_end_offset
        )
        for segment in segments:
            if segment is not segments.active:
                segment.on_become_inactive()
        for segment in recovered:
            segment.flush()
        fsync_directory(directory)
        # Every sealed segment left was verified or trusted just now: stamp the new ones.
        sealed_bases = {segment.base_offset for segment in segments} - {
            segments.active.base_offset
        }
        clean.keep_only(sealed_bases)
        for segment in segments:
            if segment.base_offset in sealed_bases:
                clean.mark_clean(segment.base_offset, segment.log_path)
        clean.persist_if_changed()
        if recovery_point != log_end_offset:
            recovery_checkpoint.write(log_end_offset)
        # A new, empty log needs no start checkpoint: a missing one reads as the first
        # segment's base, 0 here (two fsyncs saved per new log: a 10,000-partition topic).
        if checkpointed_start != log_start_offset and not (
            checkpointed_start is None and log_start_offset == 0
        ):
            start_checkpoint.write(log_start_offset)
        if had_clean_shutdown:
            # From here on a crash must be recovered from the recovery point, not trusted.
            remove_if_exists(marker)
            fsync_directory(directory)
        return LoadedLog(
            segments=segments,
            log_start_offset=log_start_offset,
            recovery_point=log_end_offset,
            epoch_cache=epoch_cache,
            had_clean_shutdown=had_clean_shutdown,
            clean_segments=clean,
        )

    # -- steps ------------------------------------------------------------------------------

    def _remove_leftovers(self) -> None:
        names = {path.name for path in self.directory.iterdir()}
        removed = 0
        for name in names:
            path = self.directory / name
            orphan_index = False
            for suffix in (OFFSET_INDEX_SUFFIX, TIME_INDEX_SUFFIX):
                if name.endswith(suffix) and name[: -len(suffix)] + LOG_SUFFIX not in names:
                    orphan_index = True
            if name.endswith((DELETED_SUFFIX, TMP_SUFFIX)) or orphan_index:
                if path.is_file():
                    path.unlink()
                    removed += 1
        if removed:
            logger.info("%s: removed %d leftover files", self.name, removed)

    def _read_checkpoint(self, checkpoint: OffsetCheckpoint) -> int | None:
        try:
            return checkpoint.read()
        except CheckpointFormatError as error:
            logger.warning("%s: ignoring unreadable checkpoint: %s", self.name, error)
            return None

    def _open_segment(self, base: int) -> LogSegment:
        return LogSegment.open_existing(
            self.directory,
            base,
            index_interval_bytes=self.config.index_interval_bytes,
            segment_index_bytes=self.config.segment_index_bytes,
        )

    def _create_segment(self, base: int) -> LogSegment:
        return LogSegment.create(
            self.directory,
            base,
            index_interval_bytes=self.config.index_interval_bytes,
            segment_index_bytes=self.config.segment_index_bytes,
        )

    def _warn_truncated(
        self, segment: LogSegment, result: RecoveryResult, later: list[int]
    ) -> None:
        first_dropped = result.next_offset
        dropped_bytes = result.dropped_bytes
        last_dropped = result.dropped_last_offset
        if later:
            # Offsets only grow, so the last later segment bounds what was lost.
            last_segment = self._open_segment(later[-1])
            try:
                dropped_bytes += sum(
                    (self.directory / _log_name(base)).stat().st_size for base in later
                )
                if last_segment.is_empty:
                    last_dropped = last_segment.base_offset - 1
                else:
                    last_dropped = last_segment.walk_extent(
                        0, last_segment.base_offset, RECOVERY_MAX_PAYLOAD_BYTES
                    )
            finally:
                last_segment.close()
        if last_dropped is not None and last_dropped >= first_dropped:
            offsets = f"{first_dropped}..{last_dropped}"
        else:
            offsets = f"from offset {first_dropped} on"
        logger.warning(
            "%s: truncated corrupt tail of %s at position %d: dropped offsets %s (%d bytes); "
            "cause: %s",
            self.name,
            segment.log_path.name,
            result.valid_bytes,
            offsets,
            dropped_bytes,
            result.problem,
        )

    def _drop_segments(self, bases: list[int], reason: str) -> None:
        dropped_bytes = sum((self.directory / _log_name(base)).stat().st_size for base in bases)
        logger.warning(
            "%s: dropped segments %s..%s (%d bytes): %s",
            self.name,
            _log_name(bases[0]),
            _log_name(bases[-1]),
            dropped_bytes,
            reason,
        )
        self._delete_segment_files(bases)

    def _delete_segment_files(self, bases: list[int]) -> None:
        for base in bases:
            stem = _log_name(base)[: -len(LOG_SUFFIX)]
            for suffix in (LOG_SUFFIX, OFFSET_INDEX_SUFFIX, TIME_INDEX_SUFFIX):
                remove_if_exists(self.directory / (stem + suffix))

    def _load_epoch_cache(
        self,
        segments: LogSegments,
        transitions: list[tuple[int, int]],
        log_start_offset: int,
        log_end_offset: int,
    ) -> LeaderEpochFileCache:
        """The checkpointed history, cut to the log end (Kafka semantics: an epoch with no
        batch on disk is forgotten, even one assigned exactly at the log end; the leader
        re-assigns it when it takes over again), plus any epoch change seen in a recovered
        batch that the checkpoint missed. Rebuilt from every batch header if unreadable."""
        cache, trustworthy = LeaderEpochFileCache.load(self.directory)
        before = cache.entries()
        if not trustworthy and log_end_offset > segments.first.base_offset:
            logger.info(
                "%s: %s missing or unreadable; rebuilding the epoch history from batch headers",
                self.name,
                cache.path.name,
            )
            transitions = [
                transition
                for segment in segments
                for transition in segment.epoch_transitions(RECOVERY_MAX_PAYLOAD_BYTES)
            ]
        else:
            # Batches below the log start are not part of the log any more; the epoch in
            # force at the log start is already in the checkpoint.
            transitions = [(epoch, base) for epoch, base in transitions if base >= log_start_offset]
        cache.truncate_from_end(log_end_offset, persist=False)
        for epoch, start_offset in transitions:
            latest = cache.latest_epoch
            if start_offset < log_end_offset and (latest is None or epoch > latest):
                cache.assign(epoch, start_offset, persist=False)
        cache.truncate_from_start(log_start_offset, persist=False)
        # A missing checkpoint of an empty history stays missing (it reads back empty).
        missing_and_empty = not cache.entries() and not cache.path.exists()
        if (not trustworthy and not missing_and_empty) or cache.entries() != before:
            cache.persist()
        return cache


def _log_name(base: int) -> str:
    return f"{base:020d}{LOG_SUFFIX}"
