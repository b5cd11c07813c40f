"""One partition replica on this node as a state machine: role, leader epoch, high
watermark, ISR, divergence. No I/O.

This is the pure core of the storage node (the etcd/raft "Step/Ready" shape): the driver
(`replica.py`, `data_path.py`, `fetcher.py`) feeds it events (a partition record, a
follower's fetch position, "the batches were appended") and carries out what it decides
(where to stamp, what range to read, where to truncate). It never touches the log's bytes,
never waits and owns no futures: what its waiters must learn (the HW moved, the role
changed, the ISR shrank below the minimum) it queues as a `Ready` that the driver takes
after each step. It reads the numbers it needs (log start/end, the leader-epoch history)
through the narrow `LogPosition` protocol, time from an injected `brook.clock.Clock`, and
leadership validity (the node's etcd lease) from an injected callable, so every rule is
unit-tested with plain values.

Rules (Kafka's, adapted):
- Epochs. A request carries the leader epoch its sender believes in. Older than ours ->
  FENCED_LEADER_EPOCH; newer -> UNKNOWN_LEADER_EPOCH (we have not heard yet); -1 skips.
- Leader. Appends are stamped with offsets from the log end and our epoch. The high
  watermark (HW) is the smallest log end offset over the ISR; it only moves forward, and
  only while leadership is valid, so a leader whose lease lapsed (SIGSTOP, partition)
  never advances it from stale follower fetches and never completes an acks=all waiter.
- ISR. The committed ISR is what etcd holds. A change is proposed here, committed by the
  driver with a compare-and-swap, and only then relied on: acks=all checks the committed
  ISR's size; the HW is computed over committed + pending, so neither a pending shrink
  nor a pending expansion lets the HW run ahead of a replica that is or may become a
  member. A follower leaves when it has not caught up to the leader's log end for
  `replica_lag_max_ms` (one never heard from at this epoch only once records wait for
  the ISR), and at once when it fetches below the HW (it lost committed records: a
  wiped disk). It rejoins only on
  the strength of what this leader saw, never a single claim: a fetch in the current
  epoch at or past the leader's log end (or past what the leader had at the follower's
  previous fetch), at or past the HW and the start of the epoch, and no sooner than
  `isr_rejoin_min_ms` after it left (hysteresis: a follower on the edge cannot flip
  membership at the ISR check rate).
- Follower. Appends leader batches verbatim at their offsets; its HW follows the
  leader's (capped by its own log end). On becoming follower it must truncate where its
  log diverges from the leader's (KIP-101/279) before fetching; `truncation_target`
  decides where, from leader-epoch end offsets.

Thread-safety: one event loop; every method is synchronous and returns at once.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from brook.clock import Clock
from brook.errors import BrookError
from brook.services.metadata.model import NO_LEADER, PartitionRecord
from brook.services.node.acks import Acks
from brook.structs import TopicPartition

log = logging.getLogger("brook.node.partition")

UNDEFINED_EPOCH = -1
UNDEFINED_OFFSET = -1


class Role(enum.Enum):
    NONE = "none"
    LEADER = "leader"
    FOLLOWER = "follower"


class LogPosition(Protocol):
    """The numbers a replica decides from (in memory in the engine: no disk reads)."""

    @property
    def log_start_offset(self) -> int: ...

    @property
    def log_end_offset(self) -> int: ...

    def latest_epoch(self) -> int | None: ...

    def epoch_entries(self) -> list[tuple[int, int]]:
        """(epoch, start offset) of each leader epoch in the log, oldest first."""

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """(largest known epoch <= epoch, where it ends), or (-1, -1)."""


class HasOffsets(Protocol):
    """Header fields of a replicated batch (batches.BatchInfo)."""

    @property
    def base_offset(self) -> int: ...

    @property
    def next_offset(self) -> int: ...


@dataclass(frozen=True, slots=True)
class PartitionSettings:
    """The topic configs a replica acts on (from TopicRecord.configs)."""

    min_insync_replicas: int = 1
    replica_lag_max_ms: int = 10_000
    max_batch_bytes: int = 8 << 20
    # A follower that left the ISR is not added back sooner than this (node-wide limit).
    isr_rejoin_min_ms: int = 0


@dataclass(slots=True)
class FollowerState:
    """The leader's view of one follower, reset at every leader epoch."""

    # The follower's log end offset (its last fetch offset); -1 before its first fetch.
    log_end_offset: int = -1
    last_fetch_ms: int = 0
    # The leader's log end offset when it served the follower's previous fetch.
    last_fetch_leader_end_offset: int = -1
    # When the follower was last known to have everything the leader had.
    last_caught_up_ms: int = 0
    # True once a fetch of this epoch showed it caught up (the seeded last_caught_up_ms
    # of an ISR member at a new epoch is a grace period, not evidence).
    caught_up_this_epoch: bool = False
    # When it last left the ISR (at this epoch); -1: not since the epoch began.
    left_isr_ms: int = -1


@dataclass(frozen=True, slots=True)
class IsrProposal:
    """An ISR change the leader wants committed (CAS on the record at `base_revision`)."""

    isr: tuple[int, ...]
    leader_epoch: int
    base_record: PartitionRecord
    base_revision: int
    added: tuple[int, ...]
    removed: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class AppendGrant:
    """Leave to append as leader: stamp from `base_offset` with `leader_epoch`. Valid
    while the caller holds the partition's lock and the generation has not moved."""

    base_offset: int
    leader_epoch: int
    generation: int


@dataclass(frozen=True, slots=True)
class Diverging:
    """Where the leader's history says a follower's log stops agreeing (KIP-320)."""

    epoch: int
    end_offset: int


@dataclass(frozen=True, slots=True)
class ReplicaReadPlan:
    """The leader's answer to one follower fetch: what to read (nothing when diverging)."""

    fetch_offset: int
    high_watermark: int
    log_start_offset: int
    log_end_offset: int
    diverging: Diverging | None = None

    @property
    def reads(self) -> bool:
        return self.diverging is None and self.fetch_offset < self.log_end_offset


@dataclass(frozen=True, slots=True)
class CommittedReadPlan:
    """A consumer read: from `fetch_offset` below the HW (nothing when at it)."""

    fetch_offset: int
    high_watermark: int
    log_start_offset: int

    @property
    def reads(self) -> bool:
        return self.fetch_offset < self.high_watermark


@dataclass(slots=True)
class Ready:
    """What waiters must learn after a step (the driver takes it with `take_ready`)."""

    # The role or generation changed: acks=all waiters fail with this; long-polls wake.
    role_reset: BrookError | None = None
    # The committed ISR is below min_insync_replicas: acks=all waiters fail with this.
    isr_below_min: BrookError | None = None
    # The HW moved forward to this (fetch long-polls and acks=all waiters advance).
    high_watermark: int | None = None

    def __bool__(self) -> bool:
        return not (self.role_reset is None and self.isr_below_min is None
                    and self.high_watermark is None)


class Change(enum.Enum):
    """What applying a partition record did (the driver reacts to it)."""

    NOTHING = "nothing"
    BECAME_LEADER = "became_leader"
    BECAME_FOLLOWER = "became_follower"
    ISR_UPDATED = "isr_updated"
    STOPPED = "stopped"


ROLE_CHANGES = (Change.BECAME_LEADER, Change.BECAME_FOLLOWER, Change.STOPPED)


def truncation_target(leader_epoch: int, leader_end_offset: int, log: LogPosition) -> int:
    """Where a follower truncates, given where the leader says `leader_epoch` ends.

    `leader_epoch`/`leader_end_offset` come from OffsetForLeaderEpoch (the largest epoch
    at or below the follower's latest that the leader knows) or from a ReplicaFetch
    `diverging_epoch`. KIP-279: the follower finds its own end for that epoch; when both
    know the epoch the logs agree up to the smaller end; when the follower's floor epoch
    differs, it truncates to its own end of that floor epoch (the leader never had the
    follower's later epochs there) and asks again; when the follower knows no epoch that
    old, everything from its first epoch on is unknown to the leader. Returns an offset
    <= the follower's log end.
    """
    leo = log.log_end_offset
    if leader_epoch == UNDEFINED_EPOCH:
        return min(leader_end_offset, leo) if leader_end_offset >= 0 else leo
    own_epoch, own_end = log.end_offset_for_epoch(leader_epoch)
    if own_epoch == UNDEFINED_EPOCH:
        entries = log.epoch_entries()
        first_start = entries[0][1] if entries else leo
        return min(leader_end_offset, first_start, leo)
    if own_epoch != leader_epoch:
        return min(own_end, leo)
    return min(own_end, leader_end_offset, leo)


class Partition:
    """State of one replica of one partition on this node."""

    def __init__(
        self,
        key: TopicPartition,
        node_id: int,
        log_position: LogPosition,
        *,
        clock: Clock,
        settings: PartitionSettings | None = None,
        leadership_valid: Callable[[], bool] = lambda: True,
        address_of: Callable[[int], str] = lambda node_id: "",
    ) -> None:
        self.key = key
        self.node_id = node_id
        self.log = log_position
        self.settings = settings or PartitionSettings()
        self._clock = clock
        self._leadership_valid = leadership_valid
        self._address_of = address_of
        self.role = Role.NONE
        self.leader_id = NO_LEADER
        self.leader_epoch = UNDEFINED_EPOCH
        self.replicas: tuple[int, ...] = ()
        self.isr: tuple[int, ...] = ()
        self.pending_isr: tuple[int, ...] | None = None
        self.record: PartitionRecord | None = None
        self.record_revision = 0
        self.high_watermark = log_position.log_start_offset
        # Our log end offset when we became leader at this epoch: a follower is only
        # consistent with this epoch once it has fetched past it.
        self.leader_epoch_start_offset = UNDEFINED_OFFSET
        self.followers: dict[int, FollowerState] = {}
        # Follower side: True until the log was truncated to where it agrees with the
        # current leader (set on every new epoch).
        self.needs_truncation = False
        # Bumped on every role/epoch change, so long-running callers notice one.
        self.generation = 0
        self._ready = Ready()

    # -- identity and errors -----------------------------------------------------------
    def __repr__(self) -> str:
        return (
            f"Partition({self.name} {self.role.value} epoch={self.leader_epoch}"
            f" hw={self.high_watermark} leo={self.log.log_end_offset} isr={self.isr})"
        )

    @property
    def topic(self) -> str:
        return self.key.topic

    @property
    def partition(self) -> int:
        return self.key.partition

    @property
    def name(self) -> str:
        return str(self.key)

    def log_fields(self) -> dict[str, object]:
        """Context of this partition's log lines (services/common/logs.py FIELDS)."""
        return {"topic": self.topic, "partition": self.partition, "epoch": self.leader_epoch}

    def _meta(self, **extra: object) -> dict[str, object]:
        return {"topic": self.topic, "partition": self.partition, **extra}

    def take_ready(self) -> Ready:
        """What happened since the last call, for the driver to tell the waiters."""
        ready, self._ready = self._ready, Ready()
        return ready

    def not_leader_error(self) -> BrookError:
        """NOT_LEADER naming the leader this node knows (-1 when none or when fenced)."""
        leader = self.leader_id
        if leader == self.node_id:
            leader = NO_LEADER  # we are the recorded leader but our lease lapsed
        address = self._address_of(leader) if leader != NO_LEADER else ""
        where = f"node {leader} at {address}" if leader != NO_LEADER else "no leader known here"
        return BrookError(
            "NOT_LEADER",
            f"node {self.node_id} does not lead {self.name} (epoch {self.leader_epoch});"
            f" {where}; refresh metadata and retry",
            self._meta(
                leader_id=leader, leader_address=address, leader_epoch=self.leader_epoch
            ),
        )

    def check_epoch(self, requested_epoch: int) -> None:
        """FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH when the caller's epoch is not ours."""
        if requested_epoch == UNDEFINED_EPOCH:
            return
        if requested_epoch < self.leader_epoch:
            raise BrookError(
                "FENCED_LEADER_EPOCH",
                f"leader epoch {requested_epoch} of {self.name} is older than this replica's"
                f" {self.leader_epoch}; refresh metadata",
                self._meta(leader_epoch=self.leader_epoch, requested_epoch=requested_epoch),
            )
        if requested_epoch > self.leader_epoch:
            raise BrookError(
                "UNKNOWN_LEADER_EPOCH",
                f"leader epoch {requested_epoch} of {self.name} is newer than this replica"
                f" knows ({self.leader_epoch}); retry shortly",
                self._meta(leader_epoch=self.leader_epoch, requested_epoch=requested_epoch),
            )

    @property
    def is_leader(self) -> bool:
        """Leading and allowed to act on it (the node's lease is surely valid)."""
        return self.role is Role.LEADER and self._leadership_valid()

    def require_leader(self, requested_epoch: int) -> None:
        self.check_epoch(requested_epoch)
        if not self.is_leader:
            raise self.not_leader_error()

    def _now_ms(self) -> int:
        return int(self._clock.monotonic_s() * 1000)

    # -- metadata ----------------------------------------------------------------------
    def apply_record(self, record: PartitionRecord, revision: int) -> Change:
        """Applies the partition's etcd record (from the cache or a CAS we made).

        Records are applied in etcd revision order; an older one is ignored.
        """
        if revision <= self.record_revision:
            return Change.NOTHING
        self.record = record
        self.record_revision = revision
        members = set(record.replicas) | set(record.adding_replicas)
        if self.node_id not in members:
            if self.role is Role.NONE:
                return Change.NOTHING
            self._stop()
            return Change.STOPPED
        self.replicas = tuple(sorted(members))
        new_epoch = record.leader_epoch > self.leader_epoch
        # A leader change always comes with a new epoch; a changed leader at the same
        # epoch (e.g. leader -1 for an offline partition) is still obeyed, defensively.
        if new_epoch or self.role is Role.NONE or (
            record.leader != self.leader_id and record.leader_epoch == self.leader_epoch
        ):
            if record.leader == self.node_id:
                self._become_leader(record)
                return Change.BECAME_LEADER
            self._become_follower(record)
            return Change.BECAME_FOLLOWER
        if record.leader_epoch < self.leader_epoch:
            log.warning("%s: ignoring record with older epoch %d", self.name, record.leader_epoch)
            return Change.NOTHING
        return self._update_isr(record)

    def _update_isr(self, record: PartitionRecord) -> Change:
        """Same epoch: the ISR (or the replica set) changed."""
        previous_isr = self.isr
        self.isr = tuple(record.isr)
        if self.role is Role.LEADER:
            now = self._now_ms()
            for replica in self.replicas:
                if replica != self.node_id and replica not in self.followers:
                    self.followers[replica] = FollowerState(last_caught_up_ms=now)
            for replica in set(previous_isr) - set(self.isr):
                if replica in self.followers:
                    self.followers[replica].left_isr_ms = now
            if len(self.isr) < self.settings.min_insync_replicas:
                self._ready.isr_below_min = self._isr_too_small_after_append()
            self._maybe_advance_hw()
        return Change.ISR_UPDATED if previous_isr != self.isr else Change.NOTHING

    def _become_leader(self, record: PartitionRecord) -> None:
        now = self._now_ms()
        self._reset_role()
        self.role = Role.LEADER
        self.leader_id = self.node_id
        self.leader_epoch = record.leader_epoch
        self.isr = tuple(record.isr)
        self.pending_isr = None
        self.needs_truncation = False
        self.leader_epoch_start_offset = self.log.log_end_offset
        # In-sync followers start "caught up now": the new leader gives them a full lag
        # period to fetch before dropping them.
        self.followers = {
            replica: FollowerState(last_caught_up_ms=now if replica in self.isr else 0)
            for replica in self.replicas
            if replica != self.node_id
        }
        self.high_watermark = min(
            max(self.high_watermark, self.log.log_start_offset), self.log.log_end_offset
        )
        log.info("%s: leader at epoch %d, isr %s, leo %d, hw %d", self.name, self.leader_epoch,
                 self.isr, self.log.log_end_offset, self.high_watermark, extra=self.log_fields())
        self._maybe_advance_hw()

    def _become_follower(self, record: PartitionRecord) -> None:
        self.role = Role.FOLLOWER
        self.leader_id = record.leader
        self.leader_epoch = record.leader_epoch
        self.isr = tuple(record.isr)
        self.pending_isr = None
        self.followers = {}
        self.leader_epoch_start_offset = UNDEFINED_OFFSET
        self.needs_truncation = record.leader != NO_LEADER
        self._reset_role()  # after the fields: the NOT_LEADER error names the new leader
        log.info("%s: follower of %d at epoch %d, leo %d, hw %d", self.name, self.leader_id,
                 self.leader_epoch, self.log.log_end_offset, self.high_watermark,
                 extra=self.log_fields())

    def _stop(self) -> None:
        self.role = Role.NONE
        self.leader_id = NO_LEADER
        self.followers = {}
        self.pending_isr = None
        self.needs_truncation = False
        self._reset_role()

    def _reset_role(self) -> None:
        self.generation += 1
        self._ready.role_reset = self.not_leader_error()

    def fence(self) -> None:
        """The node's lease is lost: stop acting as leader at once.

        The role stays (etcd still names us until the coordinator moves it), but
        `is_leader` is False from now on, so every produce and fetch is refused and no
        waiter completes; waiting acks=all produces fail with NOT_LEADER.
        """
        self._reset_role()

    def leadership_restored(self) -> None:
        """The node is registered (again): a leader may now move its HW (e.g. a restarted
        single-replica leader whose whole log is in its one-member ISR)."""
        self._maybe_advance_hw()

    def close(self) -> None:
        """The replica is going away (shutdown or deletion): every waiter must end."""
        self._stop()

    # -- leader: produce ---------------------------------------------------------------
    def grant_leader_append(self, requested_epoch: int, acks: Acks) -> AppendGrant:
        """Everything that must hold before any batch of a request is appended, and where
        the batches go. The caller holds the partition's lock until `leader_appended`."""
        self.require_leader(requested_epoch)
        if acks is Acks.ALL and len(self.isr) < self.settings.min_insync_replicas:
            raise BrookError(
                "NOT_ENOUGH_REPLICAS",
                f"{self.name} has {len(self.isr)} in-sync replicas {list(self.isr)}, fewer"
                f" than min_insync_replicas {self.settings.min_insync_replicas}; nothing"
                " was appended",
                self._meta(isr=",".join(map(str, self.isr)),
                           min_insync_replicas=self.settings.min_insync_replicas),
            )
        return AppendGrant(self.log.log_end_offset, self.leader_epoch, self.generation)

    def leader_appended(self, grant: AppendGrant) -> None:
        """The driver appended what `grant` allowed: move the HW.

        If leadership changed while the append ran, the batches stay in the log
        unacknowledged (the next leader's log decides whether they survive) and the
        producer gets NOT_LEADER.
        """
        if grant.generation != self.generation or not self.is_leader:
            raise self.not_leader_error()
        self._maybe_advance_hw()

    def check_commit(self, last_offset: int, generation: int) -> bool:
        """Whether an acks=all append up to `last_offset` in `generation` is committed
        (False: keep waiting); raises when it never will be as far as this replica knows.

        After any role change in between, the offset may hold other data, so the wait
        fails with NOT_LEADER; NOT_ENOUGH_REPLICAS_AFTER_APPEND when the committed ISR
        shrank below the minimum.
        """
        if not self.is_leader or generation != self.generation:
            raise self.not_leader_error()
        if len(self.isr) < self.settings.min_insync_replicas:
            raise self._isr_too_small_after_append()
        return self.high_watermark > last_offset

    def commit_timed_out(self, last_offset: int, timeout_s: float) -> BrookError:
        return BrookError(
            "REQUEST_TIMED_OUT",
            f"{self.name}: offset {last_offset} was appended on the leader but not"
            f" replicated to the ISR {list(self.isr)} within {timeout_s:.3f}s",
            self._meta(last_offset=last_offset),
        )

    def _isr_too_small_after_append(self) -> BrookError:
        return BrookError(
            "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
            f"{self.name}: the ISR {list(self.isr)} shrank below min_insync_replicas"
            f" {self.settings.min_insync_replicas} before the batches were replicated;"
            " they may or may not survive",
            self._meta(isr=",".join(map(str, self.isr))),
        )

    # -- leader: HW and ISR ------------------------------------------------------------
    def _maybe_advance_hw(self) -> None:
        if not self.is_leader:
            return
        members = set(self.isr) | set(self.pending_isr or ())
        candidate = self.log.log_end_offset
        for replica in members:
            if replica == self.node_id:
                continue
            state = self.followers.get(replica)
            if state is None or state.log_end_offset < 0:
                return  # a member we have not heard from at this epoch holds the HW back
            candidate = min(candidate, state.log_end_offset)
        if candidate > self.high_watermark:
            self.high_watermark = candidate
            self._ready.high_watermark = candidate

    def isr_change_wanted(self) -> IsrProposal | None:
        """The ISR change this leader wants now, if any (none while one is in flight)."""
        if not self.is_leader or self.pending_isr is not None or self.record is None:
            return None
        now = self._now_ms()
        current = set(self.isr)
        removed = {
            replica
            for replica in current
            if replica != self.node_id
            and self._out_of_sync(self.followers.get(replica, FollowerState()), now)
        }
        added = {
            replica
            for replica, state in self.followers.items()
            if replica not in current and replica in self.replicas
            and self._may_join(state, now)
        }
        if not removed and not added:
            return None
        new_isr = tuple(sorted((current - removed) | added))
        return IsrProposal(new_isr, self.leader_epoch, self.record, self.record_revision,
                           tuple(sorted(added)), tuple(sorted(removed)))

    def _out_of_sync(self, state: FollowerState, now: int) -> bool:
        """An ISR member that must leave: fetching below the HW (its log lost committed
        records, e.g. a wiped disk), or not caught up for replica_lag_max_ms, except
        one never heard from at this epoch while nothing waits for the ISR.

        Why that exception: a member never lacks a committed record (the HW cannot pass
        it), so keeping it costs nothing but the wait of acks=all, and there is none
        while the log end is the HW. Removing such members was a write storm: 10,000 new
        partitions whose followers were still opening their logs were all shrunk and
        grown again, thousands of etcd writes that stalled every lease. One that fetched
        and went silent leaves as before (its node is gone or stuck)."""
        if 0 <= state.log_end_offset < self.high_watermark:
            return True
        if now - state.last_caught_up_ms <= self.settings.replica_lag_max_ms:
            return False
        never_fetched = state.log_end_offset < 0
        return not never_fetched or self.log.log_end_offset > self.high_watermark

    def _may_join(self, state: FollowerState, now: int) -> bool:
        """Kafka's rule, on this leader's own observations in this epoch: a fetch that
        reached the log end (recently), at or past the HW and the epoch start; and the
        rejoin delay since it last left has passed."""
        if not state.caught_up_this_epoch:
            return False
        if now - state.last_caught_up_ms > self.settings.replica_lag_max_ms:
            return False
        if state.log_end_offset < max(self.high_watermark, self.leader_epoch_start_offset):
            return False
        left = state.left_isr_ms
        return left < 0 or now - left >= self.settings.isr_rejoin_min_ms

    def begin_isr_change(self, proposal: IsrProposal) -> None:
        """The driver is committing `proposal`; the HW now counts its members too."""
        self.pending_isr = proposal.isr

    def finish_isr_change(self, proposal: IsrProposal) -> None:
        """The CAS returned (either way); the new record, if any, comes via apply_record."""
        if proposal.leader_epoch == self.leader_epoch and self.pending_isr == proposal.isr:
            self.pending_isr = None
            self._maybe_advance_hw()

    # -- leader: serving followers -----------------------------------------------------
    def follower_fetch(
        self,
        replica_id: int,
        fetch_offset: int,
        current_leader_epoch: int,
        last_fetched_epoch: int,
    ) -> ReplicaReadPlan:
        """A follower fetch: checks it, records the follower's position (HW, ISR) and says
        what to read, or where the follower diverges (KIP-320)."""
        self.require_leader(current_leader_epoch)
        if replica_id not in self.replicas or replica_id == self.node_id:
            raise BrookError(
                "NOT_LEADER_OR_FOLLOWER",
                f"node {replica_id} is not a follower of {self.name} (replicas"
                f" {list(self.replicas)}); refresh metadata",
                self._meta(replica_id=replica_id),
            )
        log_start = self.log.log_start_offset
        leo = self.log.log_end_offset
        diverging = self._divergence(fetch_offset, last_fetched_epoch)
        if diverging is not None:
            return ReplicaReadPlan(fetch_offset, self.high_watermark, log_start, leo, diverging)
        if fetch_offset < log_start or fetch_offset > leo:
            raise self._out_of_range(fetch_offset)
        hw = self.high_watermark  # as of before this fetch, as a follower always saw it
        self._record_follower_fetch(replica_id, fetch_offset)
        return ReplicaReadPlan(fetch_offset, hw, log_start, leo)

    def _divergence(self, fetch_offset: int, last_fetched_epoch: int) -> Diverging | None:
        if last_fetched_epoch < 0:
            return None  # an empty follower log agrees with anything
        epoch, end = self.log.end_offset_for_epoch(last_fetched_epoch)
        if epoch == UNDEFINED_EPOCH:
            # Every epoch we hold is newer than the follower's: what it has from our log
            # start on came from leaders we never followed.
            log_start = self.log.log_start_offset
            return None if fetch_offset <= log_start else Diverging(UNDEFINED_EPOCH, log_start)
        if epoch != last_fetched_epoch or end < fetch_offset:
            return Diverging(epoch, end)
        return None

    def _out_of_range(self, offset: int) -> BrookError:
        return BrookError(
            "OFFSET_OUT_OF_RANGE",
            f"offset {offset} of {self.name} is outside [{self.log.log_start_offset},"
            f" {self.log.log_end_offset}]",
            self._meta(
                offset=offset,
                log_start_offset=self.log.log_start_offset,
                log_end_offset=self.log.log_end_offset,
                high_watermark=self.high_watermark,
            ),
        )

    def _record_follower_fetch(self, replica_id: int, fetch_offset: int) -> None:
        now = self._now_ms()
        state = self.followers.setdefault(replica_id, FollowerState())
        leo = self.log.log_end_offset
        # Caught up now if it has everything; or as of its previous fetch if it has
        # everything we had then (Kafka's rule: a follower that keeps up with a busy
        # leader is never exactly at the log end when it fetches).
        if fetch_offset < state.log_end_offset:
            # Its log went back (truncated, or wiped): earlier catch-ups vouch for nothing.
            state.caught_up_this_epoch = False
        if fetch_offset >= leo:
            state.last_caught_up_ms = now
            state.caught_up_this_epoch = True
        elif fetch_offset >= state.last_fetch_leader_end_offset >= 0:
            state.last_caught_up_ms = max(state.last_caught_up_ms, state.last_fetch_ms)
            state.caught_up_this_epoch = True
        state.last_fetch_leader_end_offset = leo
        state.last_fetch_ms = now
        state.log_end_offset = fetch_offset
        self._maybe_advance_hw()

    def end_offset_for_epoch(
        self, requested_epoch: int, current_leader_epoch: int
    ) -> tuple[int, int]:
        """OffsetForLeaderEpoch on the leader: where `requested_epoch` ends here."""
        self.require_leader(current_leader_epoch)
        return self.log.end_offset_for_epoch(requested_epoch)

    # -- leader: serving consumers -----------------------------------------------------
    def committed_read(self, fetch_offset: int, requested_epoch: int) -> CommittedReadPlan:
        """A consumer read from fetch_offset: only committed batches (below the HW)."""
        self.require_leader(requested_epoch)
        if fetch_offset < self.log.log_start_offset or fetch_offset > self.log.log_end_offset:
            raise self._out_of_range(fetch_offset)
        return CommittedReadPlan(fetch_offset, self.high_watermark, self.log.log_start_offset)

    def fetch_wait_floor(self, fetch_offset: int) -> int:
        """The HW a consumer long-poll at fetch_offset is measured against (a non-leader
        resolves at once: the caller re-reads and gets the error)."""
        return self.high_watermark if self.is_leader else fetch_offset + 1

    def list_offset(self, query: str, requested_epoch: int) -> int | None:
        """The offset for "earliest" or "latest" (the HW); None for "timestamp" (the
        driver looks the time up and calls `timestamp_offset`)."""
        self.require_leader(requested_epoch)
        if query == "earliest":
            return self.log.log_start_offset
        if query == "latest":
            return self.high_watermark
        return None

    def timestamp_offset(self, found: tuple[int, int] | None) -> tuple[int, int]:
        """(offset, timestamp_ms) of a timestamp query, given what the log found: only a
        committed batch counts; otherwise the HW."""
        if found is None or found[0] >= self.high_watermark:
            return self.high_watermark, -1
        return found

    # -- follower ----------------------------------------------------------------------
    def fetch_position(self) -> tuple[int, int]:
        """(fetch_offset, last_fetched_epoch) for the next ReplicaFetch."""
        latest = self.log.latest_epoch()
        return self.log.log_end_offset, latest if latest is not None else UNDEFINED_EPOCH

    def follower_batches_to_append(self, batches: Sequence[HasOffsets]) -> list[int]:
        """Indexes of the leader's batches to append, in order: not those that end at or
        below our log end (a re-sent response); none when we no longer follow.

        Raises CORRUPT_BATCH on a gap, which the fetcher answers by re-truncating.
        """
        if self.role is not Role.FOLLOWER:
            return []
        expected = self.log.log_end_offset
        wanted: list[int] = []
        for index, batch in enumerate(batches):
            if batch.next_offset <= expected:
                continue
            if batch.base_offset != expected:
                raise BrookError(
                    "CORRUPT_BATCH",
                    f"{self.name}: leader batch at {batch.base_offset} does not continue our"
                    f" log end {expected}",
                    self._meta(base_offset=batch.base_offset, log_end_offset=expected),
                )
            wanted.append(index)
            expected = batch.next_offset
        return wanted

    def update_follower_high_watermark(self, leader_high_watermark: int) -> None:
        """A follower's HW is the leader's, capped by what it has; it never goes back."""
        if self.role is not Role.FOLLOWER:
            return
        candidate = min(leader_high_watermark, self.log.log_end_offset)
        if candidate > self.high_watermark:
            self.high_watermark = candidate

    def after_truncation(self) -> None:
        """The log was truncated (by the driver): the HW cannot exceed what is left."""
        self.high_watermark = max(min(self.high_watermark, self.log.log_end_offset),
                                  self.log.log_start_offset)
        # A truncation that finished just after we became leader moved our epoch's start.
        self.leader_epoch_start_offset = min(self.leader_epoch_start_offset,
                                             self.log.log_end_offset)

    def truncation_done(self, generation: int) -> None:
        if generation == self.generation:
            self.needs_truncation = False
