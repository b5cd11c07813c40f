"""brook.storage: the on-disk log engine (Kafka's storage layer, in Python).

A `LogManager` owns a data directory of partition directories; each is a `PartitionLog`:
segments of framed batches with sparse offset and time indexes, a leader-epoch history,
checkpoints and a recovery pass on open. One module per noun:

    record_batch        the on-disk batch header and its CRC32C
    offset_index        sparse offset -> position index      (index_file: shared file mechanics)
    time_index          sparse timestamp -> offset index
    log_segment         one .log file plus its indexes
    log_segments        the ordered segments of a log
    leader_epoch_cache  the epoch history and its checkpoint
    checkpoint_file     atomically replaced offset files
    log_loader          recovery on open
    partition_log       the public log API
    log_manager         all logs of a data directory
    config, clock, errors, results, file_utils

This package does not import gRPC, etcd or any other Brook package: it is only a
library for the storage node. Thread-safety is stated per module; in short, each
PartitionLog is driven by one thread at a time.
"""

from . import faults
from .clock import Clock, ManualClock, SystemClock
from .config import LogConfig
from .errors import (
    BatchTooLargeError,
    CorruptBatchError,
    DiskFullError,
    InvalidBatchError,
    InvalidConfigError,
    InvalidEpochError,
    InvalidOffsetError,
    LogClosedError,
    OffsetOutOfRangeError,
    StorageError,
)
from .leader_epoch_cache import EpochEntry
from .log_manager import LogManager
from .partition_log import PartitionLog
from .record_batch import HEADER_SIZE, AppendBatch, BatchHeader, StoredBatch
from .results import AppendInfo, ReadResult

__all__ = [
    "HEADER_SIZE",
    "AppendBatch",
    "AppendInfo",
    "BatchHeader",
    "BatchTooLargeError",
    "Clock",
    "CorruptBatchError",
    "DiskFullError",
    "EpochEntry",
    "InvalidBatchError",
    "InvalidConfigError",
    "InvalidEpochError",
    "InvalidOffsetError",
    "LogClosedError",
    "LogConfig",
    "LogManager",
    "ManualClock",
    "OffsetOutOfRangeError",
    "PartitionLog",
    "ReadResult",
    "StorageError",
    "StoredBatch",
    "SystemClock",
    "faults",
]
