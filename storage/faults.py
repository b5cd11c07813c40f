"""Storage fault injection: make real files fail the way real disks do (tests only).

Contract (read by every process that opens a log, i.e. the storage node):

    BROOK_FAULTS="<kind>:<path-prefix>[;<kind>:<path-prefix>...]"
    BROOK_FAULTS_FILE=<path>   a control file with the same syntax (one or more entries,
                               separated by ';' or newlines; '#' starts a comment),
                               re-read at most every 100 ms, so a test can switch a fault
                               on and off while the process runs. A missing or empty file
                               means no fault from it.

Kinds (each applies to files whose absolute path starts with the prefix; a relative
prefix is resolved against the process's working directory when parsed):

    enospc   every write (pwrite, pwritev, write) fails with ENOSPC, writing nothing
    eio      every read, write and fsync fails with EIO
    torn     the first write after the entry appears writes half its bytes, then fails
             with EIO; later writes fail with EIO while the entry is present
    bitflip  every read returns its data with one bit flipped (bit 0 of the middle byte)

Unknown kinds raise ValueError when parsed (in the environment: at the first open; in the
control file: logged and ignored, so a typo never crashes a node mid-test).

Zero cost when off: the engine asks `io_for(path)` once per file when it opens it (or
creates it) and calls what it gets back. With neither variable set that is `REAL_IO`,
whose methods *are* the `os` functions (no wrapper, no check per call); only with one of
them set is a `FaultyIO` returned, which consults the current plan on every call. A file
opened before the variables were set is never faulted.

Thread-safety: the plan is replaced atomically (one reference); reading the control file
is guarded by a lock, so executor threads and the event loop may share an injector.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

logger = logging.getLogger("brook.storage.faults")

FAULTS_ENV: Final = "BROOK_FAULTS"
FAULTS_FILE_ENV: Final = "BROOK_FAULTS_FILE"
KINDS: Final = frozenset({"enospc", "eio", "torn", "bitflip"})
# The control file is re-read at most this often: cheap, yet a test's switch takes effect
# within one produce round trip.
CONTROL_FILE_REFRESH_S: Final = 0.1

Buffer = bytes | bytearray | memoryview


class FileIO(Protocol):
    """The file operations the engine performs on an open file descriptor."""

    def pread(self, fd: int, length: int, position: int, /) -> bytes: ...

    def pwrite(self, fd: int, data: Buffer, position: int, /) -> int: ...

    def pwritev(self, fd: int, buffers: Sequence[Buffer], position: int, /) -> int: ...

    def write(self, fd: int, data: Buffer, /) -> int: ...

    def fsync(self, fd: int, /) -> None: ...

    def read_bytes(self, path: Path, /) -> bytes: ...


class _RealIO:
    """The operating system's calls, unwrapped (production)."""

    pread = staticmethod(os.pread)
    pwrite = staticmethod(os.pwrite)
    pwritev = staticmethod(os.pwritev)
    write = staticmethod(os.write)
    fsync = staticmethod(os.fsync)

    @staticmethod
    def read_bytes(path: Path) -> bytes:
        return path.read_bytes()


REAL_IO: Final[FileIO] = _RealIO()


@dataclass(frozen=True, slots=True)
class FaultEntry:
    kind: str
    prefix: str

    def matches(self, path: str) -> bool:
        return path.startswith(self.prefix)


def parse_faults(text: str) -> tuple[FaultEntry, ...]:
    """Entries of `kind:prefix` separated by ';' or newlines; raises ValueError."""
    entries: list[FaultEntry] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        for item in line.split(";"):
            item = item.strip()
            if not item:
                continue
            kind, separator, prefix = item.partition(":")
            kind = kind.strip().lower()
            if not separator or kind not in KINDS or not prefix.strip():
                raise ValueError(
                    f"bad fault entry {item!r}: expected <kind>:<path-prefix> with kind one "
                    f"of {', '.join(sorted(KINDS))}"
                )
            entries.append(FaultEntry(kind, os.path.abspath(prefix.strip())))
    return tuple(entries)


class FaultInjector:
    """The current fault plan: fixed entries plus those of a re-read control file."""

    def __init__(self, fixed: Sequence[FaultEntry], control_file: Path | None) -> None:
        self._fixed = tuple(fixed)
        self._control_file = control_file
        self._from_file: tuple[FaultEntry, ...] = ()
        self._read_at = float("-inf")
        self._lock = threading.Lock()
        # prefixes of `torn` entries whose one torn write has happened (per entry presence)
        self._torn_done: set[FaultEntry] = set()

    def entries(self) -> tuple[FaultEntry, ...]:
        if self._control_file is not None:
            now = time.monotonic()
            if now - self._read_at >= CONTROL_FILE_REFRESH_S:
                with self._lock:
                    if now - self._read_at >= CONTROL_FILE_REFRESH_S:
                        self._from_file = self._read_control_file()
                        self._read_at = now
        return self._fixed + self._from_file

    def _read_control_file(self) -> tuple[FaultEntry, ...]:
        assert self._control_file is not None
        try:
            text = self._control_file.read_text()
        except FileNotFoundError:
            text = ""
        try:
            entries = parse_faults(text)
        except ValueError as error:
            logger.error("%s: ignoring the fault control file: %s", self._control_file, error)
            entries = ()
        # A torn entry that went away re-arms: when it comes back it tears one write again.
        self._torn_done &= set(entries) | set(self._fixed)
        return entries

    def kinds_for(self, path: str) -> set[str]:
        return {entry.kind for entry in self.entries() if entry.matches(path)}

    def take_torn_write(self, path: str) -> bool:
        """True once per present `torn` entry matching `path`: this write is the torn one."""
        for entry in self.entries():
            if entry.kind == "torn" and entry.matches(path):
                with self._lock:
                    if entry not in self._torn_done:
                        self._torn_done.add(entry)
                        return True
        return False


def _fail(code: int, path: str) -> OSError:
    return OSError(code, f"{os.strerror(code)} (injected by {FAULTS_ENV})", path)


def _flip_one_bit(data: bytes) -> bytes:
    if not data:
        return data
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0x01
    return bytes(flipped)


class FaultyIO:
    """`FileIO` for one file that consults the injector's plan on every call."""

    def __init__(self, path: Path, injector: FaultInjector) -> None:
        self._path = str(path)
        self._injector = injector

    def _check_write(self, size: int) -> int | None:
        """Raises the injected write error; returns how many bytes a torn write keeps."""
        kinds = self._injector.kinds_for(self._path)
        if "eio" in kinds:
            raise _fail(errno.EIO, self._path)
        if "enospc" in kinds:
            raise _fail(errno.ENOSPC, self._path)
        if "torn" in kinds:
            if self._injector.take_torn_write(self._path):
                return size // 2
            raise _fail(errno.EIO, self._path)
        return None

    def _check_read(self) -> set[str]:
        kinds = self._injector.kinds_for(self._path)
        if "eio" in kinds:
            raise _fail(errno.EIO, self._path)
        return kinds

    def pread(self, fd: int, length: int, position: int, /) -> bytes:
        kinds = self._check_read()
        data = os.pread(fd, length, position)
        return _flip_one_bit(data) if "bitflip" in kinds else data

    def pwrite(self, fd: int, data: Buffer, position: int, /) -> int:
        keep = self._check_write(len(data))
        if keep is None:
            return os.pwrite(fd, data, position)
        os.pwrite(fd, memoryview(data)[:keep], position)
        raise _fail(errno.EIO, self._path)

    def pwritev(self, fd: int, buffers: Sequence[Buffer], position: int, /) -> int:
        keep = self._check_write(sum(len(buffer) for buffer in buffers))
        if keep is None:
            return os.pwritev(fd, buffers, position)
        joined = b"".join(bytes(buffer) for buffer in buffers)
        os.pwrite(fd, joined[:keep], position)
        raise _fail(errno.EIO, self._path)

    def write(self, fd: int, data: Buffer, /) -> int:
        keep = self._check_write(len(data))
        if keep is None:
            return os.write(fd, data)
        os.write(fd, memoryview(data)[:keep])
        raise _fail(errno.EIO, self._path)

    def fsync(self, fd: int, /) -> None:
        if "eio" in self._injector.kinds_for(self._path):
            raise _fail(errno.EIO, self._path)
        os.fsync(fd)

    def read_bytes(self, path: Path, /) -> bytes:
        kinds = self._check_read()
        data = path.read_bytes()
        return _flip_one_bit(data) if "bitflip" in kinds else data


_injector: FaultInjector | None = None
_configured_from: tuple[str | None, str | None] = (None, None)
_configure_lock = threading.Lock()


def injector() -> FaultInjector | None:
    """The injector for the current environment, None when injection is off."""
    global _injector, _configured_from
    wanted = (os.environ.get(FAULTS_ENV) or None, os.environ.get(FAULTS_FILE_ENV) or None)
    if wanted == _configured_from:
        return _injector
    with _configure_lock:
        fixed_text, control = wanted
        _injector = (
            None
            if fixed_text is None and control is None
            else FaultInjector(
                parse_faults(fixed_text or ""), Path(control) if control is not None else None
            )
        )
        _configured_from = wanted
        if _injector is not None:
            logger.warning(
                "storage fault injection is ON (%s=%r, %s=%r)",
                FAULTS_ENV, fixed_text, FAULTS_FILE_ENV, control,
            )
        return _injector


def io_for(path: Path) -> FileIO:
    """The I/O functions for a file being opened: the real ones unless injection is on."""
    active = injector()
    if active is None:
        return REAL_IO
    return FaultyIO(Path(os.path.abspath(path)), active)
