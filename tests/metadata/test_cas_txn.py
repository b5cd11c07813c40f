"""Unit tests of the shared etcd kernels: the compare-and-swap loop and the txn chunker."""

from __future__ import annotations

import pytest

from brook.errors import BrookError, Reason
from brook.services.metadata.cas import CasExhausted, compare_and_swap
from brook.services.metadata.txn import TXN_OPS_MAX, chunk_ops


class FakeKey:
    """A value with a mod revision; `writes_lost` writes lose their race first."""

    def __init__(self, value: int | None, writes_lost: int = 0) -> None:
        self.value = value
        self.revision = 1
        self.writes_lost = writes_lost
        self.reads = 0

    async def read(self) -> tuple[int, int] | None:
        self.reads += 1
        return None if self.value is None else (self.value, self.revision)

    async def write(self, new: int, expected_revision: int) -> bool:
        if self.writes_lost > 0:  # someone else wrote first
            self.writes_lost -= 1
            self.revision += 1
            assert self.value is not None
            self.value += 100
            return False
        if expected_revision != self.revision:
            return False
        self.value, self.revision = new, self.revision + 1
        return True


async def test_cas_rereads_and_redecides_after_a_lost_race() -> None:
    key = FakeKey(1, writes_lost=2)
    outcome = await compare_and_swap(
        read=key.read, decide=lambda v: v + 1, write=key.write, what="k"
    )
    assert outcome.written and outcome.decision == 202 and key.value == 202
    assert key.reads == 3


async def test_cas_nothing_to_do_and_absent() -> None:
    key = FakeKey(5)
    outcome = await compare_and_swap(
        read=key.read, decide=lambda v: None, write=key.write, what="k"
    )
    assert not outcome.written and outcome.current == 5 and key.value == 5
    absent = await compare_and_swap(
        read=FakeKey(None).read, decide=lambda v: v, write=key.write, what="k"
    )
    assert absent.current is None and absent.decision is None


async def test_cas_starts_from_a_cached_value_and_reports_exhaustion() -> None:
    key = FakeKey(1, writes_lost=10)
    with pytest.raises(CasExhausted) as raised:
        await compare_and_swap(
            read=key.read,
            decide=lambda v: v + 1,
            write=key.write,
            what="partition t-0",
            attempts_max=3,
            first=(1, 1),
        )
    assert raised.value.reason == Reason.REQUEST_TIMED_OUT and raised.value.retriable
    assert "partition t-0" in raised.value.message
    assert key.reads == 2  # the first attempt used the cached value


async def test_cas_guard_and_decide_may_refuse() -> None:
    key = FakeKey(1)

    def refuse(value: int) -> int:
        raise BrookError(Reason.INVALID_CONFIG, "no")

    with pytest.raises(BrookError):
        await compare_and_swap(read=key.read, decide=refuse, write=key.write, what="k")

    def not_acting() -> None:
        raise BrookError(Reason.NOT_COORDINATOR, "stepped down")

    with pytest.raises(BrookError) as raised:
        await compare_and_swap(
            read=key.read, decide=lambda v: v, write=key.write, what="k", before_attempt=not_acting
        )
    assert raised.value.reason == Reason.NOT_COORDINATOR


def test_chunk_ops_keeps_order_and_both_limits() -> None:
    ops = [(index, 10) for index in range(300)]
    chunks = chunk_ops(ops)
    assert [len(c) for c, _ in chunks] == [TXN_OPS_MAX, TXN_OPS_MAX, 300 - 2 * TXN_OPS_MAX]
    assert [op for c, _ in chunks for op in c] == list(range(300))
    by_bytes = chunk_ops([(i, 40) for i in range(5)], ops_max=10, bytes_max=100)
    assert [c for c, _ in by_bytes] == [[0, 1], [2, 3], [4]]
    assert chunk_ops([("big", 500)], bytes_max=100) == [(["big"], 500)]
