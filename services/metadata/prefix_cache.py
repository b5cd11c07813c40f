"""A process's copy of every key under one etcd prefix, fed by a watch: what ACLs and
quotas are read from on request paths, so no etcd call ever sits there.

It reads all keys at one etcd revision R, then watches the prefix from R+1, so no change
is missed or applied twice; when the watch breaks it reloads (capped back-off) and keeps
serving the last snapshot meanwhile (that life is `WatchedView`'s). `version` moves on
every applied change or reload (what derived caches compare), and `wait_for` lets a
writer wait until its own write is visible. Values are decoded once, by the `decode` the
owner passes; an unreadable value is logged and skipped.

Thread-safety: one event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import aetcd.rpc

from brook.clock import SYSTEM_CLOCK, Clock
from brook.errors import BrookError
from brook.services.metadata.keys import prefix_range_end
from brook.services.metadata.store import MetadataStore
from brook.services.metadata.watched import WatchedView

log = logging.getLogger("brook.metadata.prefix_cache")

V = TypeVar("V")
# What a decoder may raise on a value it cannot read.
UNREADABLE = (ValueError, KeyError, TypeError, BrookError)


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


class PrefixCache(WatchedView, Generic[V]):
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
        super().__init__(store, what, clock)  # what: for logs, "ACL", "quota"
        self.prefix = prefix
        self._decode = decode
        self.version = 0
        self.values: dict[bytes, V] = {}
        self._listeners: list[Callable[[], None]] = []

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Calls `callback()` after every applied change or reload (on the loop)."""
        self._listeners.append(callback)

    def __len__(self) -> int:
        return len(self.values)

    # -- internals ---------------------------------------------------------------------
    def _bump(self) -> None:
        self.version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        for callback in self._listeners:
            callback()

    def _reloaded(self) -> str:
        return f"at revision {self.revision} ({len(self.values)} keys)"

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
