"""The one read-decide-write loop over etcd: compare-and-swap on a key's mod revision.

Every decision Brook commits to etcd is made the same way: read the value with its mod
revision, let a pure `decide(value)` say what to write (or None: nothing to do), write it
only if the revision is unchanged, and on a lost race read again and decide again. The
number of attempts is bounded; running out raises `CasExhausted` (REQUEST_TIMED_OUT,
retriable), naming what kept changing.

    outcome = await compare_and_swap(
        read=lambda: store.get_partition(topic, index),
        decide=lambda record: election.decide_leadership(record, live),
        write=lambda new, revision: store.cas_partition(new, revision),
        what=f"partition {topic}-{index}",
    )

`read` returns (value, mod revision) or None when the key is absent (the loop then ends
with nothing read); `write` returns something truthy on success (a new revision, True)
and None/False when the revision moved. `decide` may raise a BrookError to refuse.

Thread-safety: one event loop; the loop holds no state between calls.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from brook.errors import BrookError, Reason

log = logging.getLogger("brook.metadata.cas")

V = TypeVar("V")  # what is read
D = TypeVar("D")  # what decide returns and write stores

# Attempts before reporting contention: a few rounds resolve any realistic race (a
# leader's ISR update against the coordinator's election, two admins altering configs).
CAS_ATTEMPTS_MAX = 5

Versioned = tuple[V, int]


class CasExhausted(BrookError):
    """Every attempt lost its race: the key kept changing (retriable)."""

    def __init__(self, what: str, attempts: int) -> None:
        super().__init__(
            Reason.REQUEST_TIMED_OUT,
            f"{what} kept changing; gave up after {attempts} compare-and-swap attempts",
            {"attempts": attempts},
        )


@dataclass(frozen=True)
class CasOutcome(Generic[V, D]):
    """How a compare-and-swap loop ended.

    current: the last value read (None when the key is absent);
    decision: what was written (None when decide said nothing changes, or nothing was read);
    revision: the mod revision `current` was read at (the write replaced exactly that).
    """

    current: V | None
    decision: D | None
    revision: int | None = None

    @property
    def written(self) -> bool:
        return self.decision is not None


async def compare_and_swap(
    *,
    read: Callable[[], Awaitable[Versioned[V] | None]],
    decide: Callable[[V], D | None],
    write: Callable[[D, int], Awaitable[object]],
    what: str,
    attempts_max: int = CAS_ATTEMPTS_MAX,
    first: Versioned[V] | None = None,
    before_attempt: Callable[[], None] | None = None,
) -> CasOutcome[V, D]:
    """Reads, decides and writes with CAS until the write wins or nothing is to be done.

    first: a (value, revision) already at hand (a watch-fed cache) for the first attempt;
    later attempts always read fresh. before_attempt: called before each attempt; it may
    raise to stop (a coordinator that lost its role).
    """
    seen = first
    for _ in range(attempts_max):
        if before_attempt is not None:
            before_attempt()
        if seen is None:
            seen = await read()
            if seen is None:
                return CasOutcome(None, None)
        value, revision = seen
        decision = decide(value)
        if decision is None:
            return CasOutcome(value, None, revision)
        if await write(decision, revision):
            return CasOutcome(value, decision, revision)
        seen = None  # lost the race: re-read and re-decide
    log.warning("%s: gave up after %d compare-and-swap attempts", what, attempts_max)
    raise CasExhausted(what, attempts_max)
