"""RoleHolder: campaign for a role under a lease, act while it holds, campaign again.

The coordinator and the group manager hold their roles the same way:

    holder = RoleHolder(store, ROLE_GROUPS, endpoint, act=manager_term, ttl_s=6)
    task = asyncio.create_task(holder.run())      # forever, until cancelled
    ...
    await holder.stop()                           # shutdown: cancel, then revoke the lease

`run` loops over terms. Each term campaigns (`MetadataStore.campaign`), then runs
`act(lease)` until the first of: the lease is lost (`Lease.lost`: step down at once, the
work is cancelled), `act` returns (the work decided to step down, e.g. it was fenced),
or `act` raises. Then the lease is given up and the next term campaigns again.

Any failure of a term, whatever etcd answered (lease not found after a pause, connection
refused, timeouts, an unexpected client error) ends only that term: it is logged, and the
next campaign starts after a capped exponential back-off, reset once a term was won. Only
cancellation stops the loop. This is what keeps a role alive through an etcd outage or a
SIGSTOP longer than the lease TTL (issue 9, defect 3).

`act` is cancelled on step-down; it cleans up in its own `finally` (a manager deactivates
there). Thread-safety: one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from brook.services.metadata.model import Endpoint
from brook.services.metadata.store import Lease, MetadataStore

log = logging.getLogger("brook.metadata.role")

RoleWork = Callable[[Lease], Coroutine[Any, Any, None]]

# How long the work gets to clean up after it was cancelled on step-down; a stuck cleanup
# is abandoned (logged) rather than keeping the process out of the next campaign.
WORK_STOP_S_MAX = 5.0


@dataclass(frozen=True)
class CampaignBackoff:
    """Capped exponential back-off between failed terms (seconds)."""

    delay_s_min: float = 0.2
    delay_s_max: float = 5.0

    def next(self, delay_s: float) -> float:
        return min(max(delay_s * 2, self.delay_s_min), self.delay_s_max)


class LeaseLostOnArrival(Exception):
    """The campaign returned a lease that was already lost (the term is retried)."""


class RoleHolder:
    """Holds `role` for `me` whenever etcd lets it, running `act` while it does."""

    def __init__(
        self,
        store: MetadataStore,
        role: str,
        me: Endpoint,
        *,
        act: RoleWork,
        ttl_s: int,
        fence: bool = False,
        backoff: CampaignBackoff | None = None,
    ) -> None:
        self.store = store
        self.role = role
        self.me = me
        self.ttl_s = ttl_s
        self.fence = fence
        self.backoff = backoff or CampaignBackoff()
        self.lease: Lease | None = None
        self.terms_won = 0
        self._act = act
        self._task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        """Starts `run` as a background task (named after the role)."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"{self.role}-role")
        return self._task

    async def run(self) -> None:
        """Campaigns and acts, term after term, until cancelled."""
        delay_s = self.backoff.delay_s_min
        while True:
            won = False
            try:
                lease = await self._campaign()
                won = True
                await self._hold(lease)
                log.warning("stepped down from the %s role; campaigning again", self.role)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # any etcd failure ends the term, never the loop
                log.warning(
                    "%s role term failed (%s: %s); campaigning again in %.1fs",
                    self.role, type(error).__name__, error, delay_s,
                )  # fmt: skip
            finally:
                await self._give_up_lease()
            if won:
                delay_s = self.backoff.delay_s_min
                continue
            await asyncio.sleep(delay_s)  # back-off against a failing etcd, not a sync
            delay_s = self.backoff.next(delay_s)

    async def _campaign(self) -> Lease:
        lease = await self.store.campaign(self.role, self.me, self.ttl_s, fence=self.fence)
        self.lease = lease
        if lease.lost.is_set():
            # A grant answered late (etcd paused mid-campaign) can be past its local bound
            # before the role key is even written: never act on it.
            raise LeaseLostOnArrival(f"the {self.role} lease was lost before the term began")
        self.terms_won += 1
        log.info("holding the %s role (term %d)", self.role, self.terms_won)
        return lease

    async def _hold(self, lease: Lease) -> None:
        """Runs the work until it returns or the lease is lost; the work's failure raises."""
        work = asyncio.create_task(self._act(lease), name=f"{self.role}-work")
        lost = asyncio.create_task(lease.lost.wait(), name=f"{self.role}-lease-lost")
        try:
            await asyncio.wait([work, lost], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (work, lost):
                task.cancel()
            # The work's own cleanup runs now; asyncio.wait never swallows a cancellation
            # of this task (a shutdown), unlike awaiting the cancelled work directly.
            await asyncio.wait([work, lost], timeout=WORK_STOP_S_MAX)
            if not work.done():
                log.error("the %s role's work did not stop within %.1fs", self.role,
                          WORK_STOP_S_MAX)  # fmt: skip
        if work.done() and not work.cancelled() and work.exception() is not None:
            raise work.exception()  # type: ignore[misc]
        if lease.lost.is_set():
            log.warning("the %s role lease was lost; stepped down", self.role)

    async def _give_up_lease(self) -> None:
        """Stops acting on the lease (without revoking: it may already be gone)."""
        self.store.clear_fence()
        lease, self.lease = self.lease, None
        if lease is not None:
            with contextlib.suppress(Exception):
                await lease.close()

    async def stop(self) -> None:
        """Shutdown: ends the loop and releases the role now (revoking the lease, so a
        standby takes over without waiting for the TTL)."""
        lease = self.lease
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if lease is not None:
            await lease.revoke()
