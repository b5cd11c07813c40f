"""The node's registration lease, kept alive on its own thread and event loop.

Why (defect 4 and 5): the keep-alive used to be one more task on the node's event loop,
so any stretch of request or replication work (a storm of thousands of partitions
appearing, one huge request) delayed its refreshes past the lease's margin: the node
lost its registration, every partition it led failed over, and the failover added more
work to the survivors' loops (a lease-loss storm, 0 live nodes). Bounding each handler
(yields, request bounds) keeps the loop responsive on any one input, but not under a
sustained overload; the keep-alive must not share fate with request work at all.

So the lease lives on a dedicated thread with its own loop and its own etcd client
(`MetadataStore`), as Kafka's heartbeat thread does. The main loop sees it through this
class: `time_left_s()` (a read of the lease's deadline, safe from any thread), `lost` (an
asyncio.Event of the main loop, set from the keeper thread), and `register()` /
`revoke()` (coroutines run on the keeper loop). Fencing is unchanged: the main loop
stops leading when `lost` is set or `time_left_s()` is 0, and the lease can only be
kept alive while the process runs; a SIGSTOPped process stops the keeper thread too.

Thread-safety: the keeper loop owns the store and lease; other threads only read the
lease's deadline and hand coroutines over with run_coroutine_threadsafe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from brook.services.common.tls import EtcdSecurity
from brook.services.metadata.model import NodeInfo
from brook.services.metadata.store import Lease, MetadataStore

log = logging.getLogger("brook.node.lease")

T = TypeVar("T")

# Bound on stopping the keeper thread at shutdown.
STOP_TIMEOUT_S = 10.0


class LeaseKeeper:
    """A node registration lease on its own thread (see the module docs)."""

    def __init__(
        self, etcd: str, cluster_name: str, etcd_security: EtcdSecurity | None = None
    ) -> None:
        self._etcd = etcd
        self._cluster_name = cluster_name
        self._etcd_security = etcd_security
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="node-lease", daemon=True)
        self._store: MetadataStore | None = None
        self._lease: Lease | None = None
        self._main_loop: asyncio.AbstractEventLoop | None = None
        # Set on the main loop when the current lease is lost (replaced on register).
        self.lost = asyncio.Event()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    async def _on_keeper(self, work: Coroutine[Any, Any, T]) -> T:
        """Runs `work` on the keeper loop; awaitable from the main loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self._loop))

    async def start(self) -> None:
        """Starts the thread and connects its etcd client."""
        self._main_loop = asyncio.get_running_loop()
        self._thread.start()
        await self._on_keeper(self._connect())

    async def _connect(self) -> None:
        self._store = MetadataStore(
            self._etcd, cluster_name=self._cluster_name, security=self._etcd_security
        )
        await self._store.connect()

    async def register(self, node: NodeInfo, ttl_s: int) -> None:
        """Registers the node under a new lease (kept alive on the keeper loop)."""
        self.lost = asyncio.Event()
        await self._on_keeper(self._register(node, ttl_s, self.lost))

    async def _register(self, node: NodeInfo, ttl_s: int, lost: asyncio.Event) -> None:
        assert self._store is not None
        lease = await self._store.register_node(node, ttl_s=ttl_s)
        self._lease = lease
        main_loop = self._main_loop
        assert main_loop is not None

        async def forward_loss() -> None:
            await lease.lost.wait()
            main_loop.call_soon_threadsafe(lost.set)

        self._loop.create_task(forward_loss(), name="lease-lost-forward")

    async def _cancel_tasks(self) -> None:
        """Ends the keeper loop's other tasks (loss forwarders, keep-alives) cleanly."""
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def time_left_s(self) -> float:
        """How long the lease is surely still valid (0 when there is none or it is lost);
        reads two floats and a flag the keeper thread writes, safe from any thread."""
        lease = self._lease
        return lease.time_left_s() if lease is not None else 0.0

    async def revoke(self) -> None:
        """Releases the lease (its keys go at once)."""
        if self._lease is not None:
            await self._on_keeper(self._lease.revoke())

    async def stop(self) -> None:
        """Closes the etcd client and ends the thread."""
        if not self._thread.is_alive():
            return
        if self._store is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._on_keeper(self._store.close()), STOP_TIMEOUT_S)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._on_keeper(self._cancel_tasks()), STOP_TIMEOUT_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join,
                                                         STOP_TIMEOUT_S)
        if not self._thread.is_alive():
            self._loop.close()
