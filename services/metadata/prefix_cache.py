"""A process's copy of every key under one etcd prefix, fed by a watch: what ACLs and
quotas are read from on request paths, so no etcd call ever sits there.

It reads all keys at one etcd revision R, then watches the prefix from R+1, so no change
is missed or applied twice; when the watch breaks it reloads (capped back-off) and keeps
serving the last snapshot meanwhile. `version` moves on every applied change or reload
(what derived caches compare), and `wait_for` lets a writer wait until its own write is
visible. Values are decoded once, by the `decode` the owner passes; an unreadable value
is logged and skipped.

Thread-safety: one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import aetcd.rpc

from brook.clock import SYSTEM_CLOCK, Clock
from brook.errors import BrookError
from brook.services.metadata.keys import prefix_range_end
from brook.services.metadata.store import MetadataStore

log = logging.getLogger("brook.metadata.prefix_cache")

V = TypeVar("V")
# What a decoder may raise on a value it cannot read.
UNREADABLE = (ValueError, KeyError, TypeError, BrookError)
# Back-off bounds between reload attempts while etcd is unreachable.
RELOAD_BACKOFF_MIN_S = 0.1
RELOAD_BACKOFF_MAX_S = 2.0


async def read_prefix(
    store: MetadataStore, prefix: bytes, decode: Callable[[bytes], V], what: str
) -> tuple[int, list[tuple[bytes, V]]]:
    """(revision, every readable (key, value) under `prefix`) at one etcd revision."""
    ranged = aetcd.rpc.RequestOp(
        request_range=aetcd.rpc.RangeRequest(key=prefix, range_end=prefix_range_end(prefix))
    )
    response = await store.txn([], [ranged])
    found = []
    for kv in response.responses[0].response_range.kvs:
        try:
            found.append((bytes(kv.key), decode(bytes(kv.value))))
        except UNREADABLE as error:
            log.error("skipping unreadable %s key %r: %s", what, bytes(kv.key), error)
    return int(response.header.revision), found


class PrefixCache(Generic[V]):
    """Every key under `prefix`, decoded, kept current by an etcd watch."""

    def __init__(
        self,
        store: MetadataStore,
        prefix: bytes,
        decode: Callable[[bytes], V],
        what: str,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.store = store
        self.prefix = prefix
        self._decode = decode
        self._what = what  # for logs: "ACL", "quota"
        self._clock = clock
        self.revision = 0
        self.version = 0
        self.values: dict[bytes, V] = {}
        self.loaded = asyncio.Event()
        self._changed = asyncio.Event()
        self._watch: Any = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._listeners: list[Callable[[], None]] = []

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Calls `callback()` after every applied change or reload (on the loop)."""
        self._listeners.append(callback)

    def __len__(self) -> int:
        return len(self.values)

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

    # -- internals ---------------------------------------------------------------------
    def _bump(self) -> None:
        self.version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        for callback in self._listeners:
            callback()

    async def _cancel_watch(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(watch.cancel(), 1.0)

    async def _load(self) -> None:
        revision, found = await read_prefix(self.store, self.prefix, self._decode, self._what)
        await self._cancel_watch()
        self._watch = await self.store.client.watch(
            self.prefix, range_end=prefix_range_end(self.prefix), start_revision=revision + 1
        )
        # Swapped in once the watch exists: the view and its changes start together.
        self.values = dict(found)
        self.revision = revision
        self.loaded.set()
        self._bump()

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
                    log.info("%s keys reloaded at revision %d (%d keys)", self._what,
                             self.revision, len(self.values))  # fmt: skip
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    log.warning("%s reload failed: %s", self._what, error)
                    await asyncio.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, RELOAD_BACKOFF_MAX_S)

    def _apply(self, event: Any) -> None:
        kv = event.kv
        key = bytes(kv.key)
        self.revision = max(self.revision, kv.mod_revision)
        if event.kind == "DELETE":
            if self.values.pop(key, None) is not None:
                self._bump()
            return
        try:
            value = self._decode(bytes(kv.value))
        except UNREADABLE as error:
            log.error("skipping unreadable %s key %r: %s", self._what, key, error)
            return
        if self.values.get(key) != value:
            self.values[key] = value
            self._bump()
