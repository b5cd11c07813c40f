"""Small POSIX helpers shared by the modules that touch the disk.

No file format of its own. Thread-safety: the functions keep no state; callers own the
file descriptors they pass in.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from .errors import StorageError
from .faults import REAL_IO, FileIO

# Linux rejects writev with more than IOV_MAX buffers; 1024 is its value on every platform
# we run on, and asking sysconf keeps us honest elsewhere.
IOV_MAX: Final = min(os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024, 1024)

Buffer = bytes | bytearray | memoryview
# A directory being removed is first renamed to end with this, in one atomic step.
DELETING_SUFFIX: Final = ".deleting"


def fsync_directory(directory: Path) -> None:
    """Makes file creations, renames and deletions in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pwrite_fully(
    fd: int, buffers: Sequence[Buffer], position: int, io: FileIO = REAL_IO
) -> int:
    """Writes every buffer, in order, starting at `position`; returns the bytes written.

    One pwritev per IOV_MAX buffers; a short write (signal, >2 GiB request) resumes where
    it stopped. Explicit positions mean no shared file offset: readers using pread are
    never disturbed. `io` is the file's `faults.io_for` (the real calls in production).
    """
    total = 0
    start = 0
    while start < len(buffers):
        chunk = list(buffers[start : start + IOV_MAX])
        start += IOV_MAX
        expected = sum(len(buffer) for buffer in chunk)
        written = io.pwritev(fd, chunk, position + total)
        while written < expected:
            # Drop the fully written buffers and the written prefix of the next one.
            expected -= written
            total += written
            while chunk and written >= len(chunk[0]):
                written -= len(chunk[0])
                chunk.pop(0)
            if written:
                chunk[0] = memoryview(chunk[0])[written:]
            written = io.pwritev(fd, chunk, position + total)
        total += written
    return total


def remove_if_exists(path: Path) -> bool:
    """Unlinks `path`; returns False if it was already gone."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


# Longest file name (bytes) Linux file systems accept (NAME_MAX).
NAME_BYTES_MAX: Final = 255


def deleting_name(name: str) -> str:
    """`<name>.deleting`, or, when that would not fit NAME_BYTES_MAX (a 249-character
    topic's partition directory), a prefix of `name` plus a hash of all of it (as Kafka
    truncates its delete directory names): the name only has to be unique and removable."""
    doomed = name + DELETING_SUFFIX
    if len(doomed.encode()) <= NAME_BYTES_MAX:
        return doomed
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    keep = NAME_BYTES_MAX - len(DELETING_SUFFIX) - len(digest) - 1
    return f"{name.encode()[:keep].decode(errors='ignore')}.{digest}{DELETING_SUFFIX}"


def remove_directory(directory: Path) -> None:
    """Removes a directory tree so that a crash halfway never leaves a partial copy under
    the original name: rename to `<name>.deleting` (atomic), then delete the files."""
    doomed = directory.with_name(deleting_name(directory.name))
    if doomed.exists():
        shutil.rmtree(doomed)
    os.replace(directory, doomed)
    fsync_directory(directory.parent)
    shutil.rmtree(doomed)


def lock_directory(directory: Path, lock_name: str) -> int:
    """Takes an exclusive, non-blocking flock on `directory/lock_name`; returns its fd.

    Two PartitionLogs appending to one directory (two processes, or a second open in one
    process) would interleave batches and corrupt the log, so the second one is refused.
    The kernel drops the lock when the holder exits, even on SIGKILL."""
    fd = os.open(directory / lock_name, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StorageError(
            f"{directory} is already open by another PartitionLog (in this or another "
            "process); close that one first"
        ) from None
    return fd
