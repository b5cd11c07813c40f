"""GroupConsumer: a Consumer whose partitions come from a consumer group.

Composition: a plain `brook.client.consumer.Consumer` reads the partitions; a
`GroupMembership` heartbeats to the group manager and learns the assignment; this class
reconciles the two on the application's turn (inside `poll()`), so rebalance callbacks
run between polls and a revoked partition is never being processed while its new owner
starts on it.

    async with GroupConsumer("127.0.0.1:7070", "billing", topics=["orders"]) as consumer:
        while True:
            for record in await consumer.poll(timeout_ms=1000):
                handle(record)

Offsets: with `auto_commit` the positions of owned partitions are committed (async)
every `auto_commit_interval_ms` from poll(), synchronously before a partition is revoked,
and on close(). `commit()` commits now and waits; `commit_async()` does not wait. New
partitions start at the group's committed offset, or per `auto_offset_reset` when none
is committed ("none" makes poll() raise for such a partition until it is seeked).

Not thread-safe: one event loop (see brook.client.sync for blocking use).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from brook.client import defaults
from brook.client.consumer import Consumer
from brook.client.groups.membership import CommittedOffset, GroupMembership, call_listener
from brook.client.metadata import ChannelPool
from brook.client.records import ConsumerRecord, TopicPartition
from brook.clock import SYSTEM_CLOCK, Clock
from brook.errors import BrookError, Reason
from brook.transport import ChannelSecurity, client_security

log = logging.getLogger("brook.client.groups.group_consumer")


def _tp(value: Any) -> TopicPartition:
    topic, partition = value
    return TopicPartition(topic, int(partition))


class GroupConsumer:
    """Consumes the partitions a consumer group assigns to this member."""

    def __init__(
        self,
        bootstrap: str | Sequence[str],
        group_id: str,
        topics: Iterable[str] | None = None,
        pattern: str | None = None,
        instance_id: str | None = None,
        auto_commit: bool = True,
        auto_commit_interval_ms: int = defaults.AUTO_COMMIT_INTERVAL_MS,
        auto_offset_reset: str = "latest",
        assignor: str = "uniform",
        session_timeout_ms: int = defaults.SESSION_TIMEOUT_MS,
        listener: Any = None,
        *,
        rebalance_timeout_ms: int = defaults.REBALANCE_TIMEOUT_MS,
        client_id: str = "brook-group-consumer",
        rack_id: str = "",
        consumer: Consumer | None = None,
        clock: Clock = SYSTEM_CLOCK,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        token: str | None = None,
        security: ChannelSecurity | None = None,
        **consumer_options: Any,
    ) -> None:
        channel_security = client_security(
            tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key, token=token, security=security
        )
        if topics is not None and pattern is not None:
            raise ValueError("subscribe to topics or to a pattern, not both")
        self.group_id = group_id
        self.auto_commit = auto_commit
        self.auto_commit_interval_s = auto_commit_interval_ms / 1000
        self.auto_offset_reset = auto_offset_reset
        self.listener = listener
        self._clock = clock
        self._monotonic_s = clock.monotonic_s
        self._consumer = consumer or Consumer(
            bootstrap,
            client_id=client_id,
            auto_offset_reset=auto_offset_reset,
            clock=clock,
            security=channel_security,
            **consumer_options,
        )
        self._channels = ChannelPool(security=channel_security)
        self._membership = GroupMembership(
            group_id,
            self._consumer.metadata,
            self._channels,
            topics=topics or (),
            pattern=pattern or "",
            instance_id=instance_id or "",
            rack_id=rack_id,
            assignor=assignor,
            session_timeout_ms=session_timeout_ms,
            rebalance_timeout_ms=rebalance_timeout_ms,
            client_id=client_id,
            clock=clock,
        )
        # Next offset to hand out per partition, as far as this member knows: set by the
        # committed offset, seek() and every record poll() returns. Commits read it, so a
        # commit never waits for the consumer to resolve an offset reset.
        self._positions_known: dict[TopicPartition, int] = {}
        # Leader epoch of the last record handed out per partition (stored with commits).
        self._epochs: dict[TopicPartition, int] = {}
        self._committed_positions: dict[TopicPartition, int] = {}
        self._next_auto_commit_s = self._monotonic_s() + self.auto_commit_interval_s
        self._commit_tasks: set[asyncio.Task[None]] = set()
        self._started = False
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------
    async def __aenter__(self) -> GroupConsumer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Starts the consumer and the heartbeat (joining the group if subscribed)."""
        if self._started:
            return
        await self._consumer.start()
        self._membership.start()
        self._started = True

    async def close(self) -> None:
        """Commits positions (with auto_commit), revokes everything (callbacks run), leaves
        the group promptly, and closes connections."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._commit_tasks:
                await asyncio.gather(*self._commit_tasks, return_exceptions=True)
            if self._started:
                await self._membership.close(_Handler(self))
        finally:
            await self._consumer.close()
            await self._channels.close()

    # -- subscription --------------------------------------------------------------------
    def subscribe(self, topics: Iterable[str] | None = None, pattern: str | None = None) -> None:
        """Subscribes to topics, or to every topic whose whole name matches `pattern`
        (Python re syntax); replaces the previous subscription."""
        if (topics is None) == (pattern is None):
            raise ValueError("subscribe to topics or to a pattern (exactly one)")
        self._membership.subscribe(topics or (), pattern or "")

    def unsubscribe(self) -> None:
        """Stops asking for partitions; the next rebalance revokes what this member has."""
        self._membership.subscribe((), "")

    @property
    def member_id(self) -> str:
        return self._membership.member_id

    @property
    def member_epoch(self) -> int:
        return self._membership.member_epoch

    @property
    def group_epoch(self) -> int:
        return self._membership.group_epoch

    @property
    def heartbeats(self) -> int:
        """Successful heartbeats so far (for monitoring and tests)."""
        return self._membership.heartbeats

    @property
    def consumer(self) -> Consumer:
        """The inner plain Consumer (for lookups such as end_offsets)."""
        return self._consumer

    def assignment(self) -> set[TopicPartition]:
        """The partitions this member consumes now (reconciled)."""
        return set(self._membership.owned)

    # -- polling ---------------------------------------------------------------------------
    async def poll(
        self, timeout_ms: float = 1000, max_records: int | None = None
    ) -> list[ConsumerRecord]:
        """Records of this member's partitions, waiting up to timeout_ms. Rebalance
        callbacks run here, before records are handed out."""
        self._check_open()
        deadline = self._monotonic_s() + timeout_ms / 1000
        while True:
            await self._membership.reconcile(_Handler(self))
            self._maybe_auto_commit()
            remaining_ms = max(0.0, (deadline - self._monotonic_s()) * 1000)
            records = await self._poll_until_rebalance(
                min(remaining_ms, defaults.POLL_SLICE_MS), max_records
            )
            if records:
                owned = self._membership.owned
                records = [r for r in records if (r.topic, r.partition) in owned]
                for record in records:
                    tp = TopicPartition(record.topic, record.partition)
                    self._epochs[tp] = record.leader_epoch
                    self._positions_known[tp] = record.offset + 1
                if records:
                    return records
            if self._monotonic_s() >= deadline:
                await self._membership.reconcile(_Handler(self))
                return []

    async def _poll_until_rebalance(
        self, timeout_ms: float, max_records: int | None
    ) -> list[ConsumerRecord]:
        """The consumer's poll, cut short when the membership has work for reconcile()."""
        if self._membership.pending() or self._membership.fatal is not None:
            return []
        poll = asyncio.ensure_future(self._consumer.poll(timeout_ms, max_records))
        changed = asyncio.ensure_future(self._membership.changed.wait())
        try:
            await asyncio.wait([poll, changed], return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            poll.cancel()
            changed.cancel()
            raise
        changed.cancel()
        if not poll.done():
            # Waiting for data, nothing collected: safe to abandon for the rebalance.
            poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poll
            return []
        return poll.result()

    # -- positions -------------------------------------------------------------------------
    async def position(self, tp: Any) -> int:
        return await self._consumer.position(_tp(tp))

    def seek(self, tp: Any, offset: int) -> None:
        self._consumer.seek(_tp(tp), offset)
        self._positions_known[_tp(tp)] = offset

    def pause(self, *partitions: Any) -> None:
        self._consumer.pause(*(_tp(p) for p in partitions))

    def resume(self, *partitions: Any) -> None:
        self._consumer.resume(*(_tp(p) for p in partitions))

    def paused(self) -> set[TopicPartition]:
        return self._consumer.paused()

    # -- offsets ---------------------------------------------------------------------------
    async def committed(self, tp: Any) -> int | None:
        """The group's committed offset of `tp`, or None."""
        found = await self._membership.fetch_committed([_tp(tp)])
        value = found.get(_tp(tp))
        return value.offset if value is not None else None

    def _positions(
        self, partitions: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, CommittedOffset]:
        """Known positions of owned partitions (a partition whose start is still being
        resolved by auto_offset_reset has nothing to commit yet)."""
        result: dict[TopicPartition, CommittedOffset] = {}
        owned = self._membership.owned
        for tp in sorted(partitions if partitions is not None else owned):
            offset = self._positions_known.get(tp)
            if tp in owned and offset is not None:
                result[tp] = CommittedOffset(offset, self._epochs.get(tp, -1))
        return result

    async def commit(self, offsets: Mapping[Any, int] | None = None) -> None:
        """Commits `offsets` ({tp: next offset to read}), or the positions of every owned
        partition, and waits until the group manager has stored them."""
        self._check_open()
        if offsets is None:
            values = self._positions()
        else:
            values = {
                _tp(tp): CommittedOffset(offset, self._epochs.get(_tp(tp), -1))
                for tp, offset in offsets.items()
            }
        await self._commit(values)

    def commit_async(
        self,
        offsets: Mapping[Any, int] | None = None,
        callback: Callable[[BaseException | None], Any] | None = None,
    ) -> asyncio.Task[None]:
        """Commits without waiting; `callback(error or None)` runs when it is done."""

        async def run() -> None:
            error: BaseException | None = None
            try:
                await self.commit(offsets)
            except BrookError as failure:
                error = failure
                if callback is None:
                    log.warning("async commit for group %s failed: %s", self.group_id, failure)
            if callback is not None:
                callback(error)

        task = asyncio.get_running_loop().create_task(run())
        self._commit_tasks.add(task)
        task.add_done_callback(self._commit_tasks.discard)
        return task

    async def _commit(self, values: Mapping[TopicPartition, CommittedOffset]) -> None:
        values = {
            tp: v for tp, v in values.items() if self._committed_positions.get(tp) != v.offset
        }
        if not values:
            return
        await self._membership.commit(values)
        for tp, value in values.items():
            self._committed_positions[tp] = value.offset

    def _maybe_auto_commit(self) -> None:
        if not self.auto_commit or self._monotonic_s() < self._next_auto_commit_s:
            return
        self._next_auto_commit_s = self._monotonic_s() + self.auto_commit_interval_s
        if self._membership.owned and not self._commit_tasks:
            self.commit_async()

    def _forget(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._committed_positions.pop(tp, None)
            self._positions_known.pop(tp, None)
            self._epochs.pop(tp, None)

    def _check_open(self) -> None:
        if self._closed:
            raise BrookError(Reason.INVALID_REQUEST, "the group consumer is closed")
        if not self._started:
            raise BrookError(Reason.INVALID_REQUEST, "start the group consumer first (async with)")


class _Handler:
    """Applies assignment changes to the inner consumer and calls the user's listener."""

    def __init__(self, owner: GroupConsumer) -> None:
        self.owner = owner

    async def lose(self, partitions: set[TopicPartition]) -> None:
        owner = self.owner
        owner._consumer.assign(owner._consumer.assignment() - partitions)
        owner._forget(partitions)
        await call_listener(owner.listener, "on_partitions_lost", partitions)

    async def revoke(self, partitions: set[TopicPartition]) -> None:
        owner = self.owner
        if owner.auto_commit:
            try:
                await owner._commit(owner._positions(partitions))
            except BrookError as error:
                log.warning(
                    "commit before revoking %d partitions of group %s failed: %s",
                    len(partitions),
                    owner.group_id,
                    error,
                )
        await call_listener(owner.listener, "on_partitions_revoked", partitions)
        owner._consumer.assign(owner._consumer.assignment() - partitions)
        owner._forget(partitions)

    async def assign(self, partitions: set[TopicPartition]) -> None:
        owner = self.owner
        committed = await owner._membership.fetch_committed(partitions)
        owner._consumer.assign(owner._consumer.assignment() | partitions)
        for tp in partitions:
            value = committed.get(tp)
            if value is not None:
                owner._consumer.seek(tp, value.offset)
                owner._positions_known[tp] = value.offset
                owner._committed_positions[tp] = value.offset
        await call_listener(owner.listener, "on_partitions_assigned", partitions)
