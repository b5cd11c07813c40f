"""WatchedView: the life of a watch-fed view of etcd keys, shared by the MetadataCache
(the cluster map) and every PrefixCache (ACLs, quotas, replication throttles).

A view loads a snapshot at one revision R and watches from R+1 (`_load`, the subclass's),
applies each event (`_apply`), and when the watch ends or fails (etcd restarted,
connection lost, revision compacted) reloads and watches again, retrying with capped
back-off until `stop`; meanwhile it keeps serving its last snapshot. `wait_for` waits on
`_changed`, which the subclass replaces and sets after each change it applied.

Thread-safety: one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from brook.clock import Clock
from brook.services.metadata.store import MetadataStore

log = logging.getLogger("brook.metadata.watch")

# Back-off bounds between reload attempts while etcd is unreachable.
RELOAD_BACKOFF_MIN_S = 0.1
RELOAD_BACKOFF_MAX_S = 2.0


class WatchedView:
    """Start, stop, reload-on-failure and `wait_for` of a watch-fed view; subclasses
    give `_load` (snapshot, then the watch from the next revision) and `_apply`."""

    def __init__(self, store: MetadataStore, what: str, clock: Clock) -> None:
        self.store = store
        self._what = what  # for logs and the task name: "metadata", "ACL", "quota"
        self._clock = clock
        self.revision = 0
        # Set once the first snapshot is loaded; cleared never (a reload keeps serving the
        # last snapshot until the new one replaces it).
        self.loaded = asyncio.Event()
        self._changed = asyncio.Event()
        self._watch: Any = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # -- what a subclass gives ---------------------------------------------------------
    async def _load(self) -> None:
        raise NotImplementedError

    def _apply(self, event: Any) -> None:
        raise NotImplementedError

    def _reloaded(self) -> str:
        """What a reload's log line says after "<what> reloaded"."""
        return f"at revision {self.revision}"

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Loads the first snapshot and follows changes (raises if etcd is down)."""
        await self._load()
        self._task = asyncio.get_running_loop().create_task(
            self._follow(), name=f"{self._what}-cache"
        )

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._cancel_watch()

    async def wait_for(self, predicate: Callable[[Any], bool], timeout_s: float) -> bool:
        """Waits until predicate(self) is true; False when timeout_s passes first."""
        deadline = self._clock.monotonic_s() + timeout_s
        while True:
            if predicate(self):
                return True
            left = deadline - self._clock.monotonic_s()
            if left <= 0:
                return False
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), left)

    # -- following ---------------------------------------------------------------------
    async def _cancel_watch(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(watch.cancel(), 1.0)

    async def _follow(self) -> None:
        backoff_s = RELOAD_BACKOFF_MIN_S
        while not self._stopping:
            try:
                watch = self._watch
                if watch is not None:
                    async for event in watch:
                        self._apply(event)
                        backoff_s = RELOAD_BACKOFF_MIN_S
                if self._stopping:
                    return
                log.warning("%s watch ended; reloading", self._what)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("%s watch failed (%s); reloading", self._what, error)
            while not self._stopping:
                try:
                    await self._load()
                    log.info("%s reloaded %s", self._what, self._reloaded())
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    log.warning("%s reload failed: %s", self._what, error)
                    await asyncio.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, RELOAD_BACKOFF_MAX_S)
