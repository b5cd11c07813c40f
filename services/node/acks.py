"""`Acks`: when the leader acknowledges a produce, as the node's core understands it.

The wire enum (`brook.v1.Acks`) has an UNSPECIFIED zero that means ALL; the core never
sees it: `Acks.from_wire` maps it once, at the edge.

Thread-safety: immutable.
"""

from __future__ import annotations

import enum

from brook.errors import BrookError
from brook.v1 import storage_pb2


class Acks(enum.Enum):
    # Answer once validated, before the append; append failures are only logged.
    NONE = storage_pb2.ACKS_NONE
    # Answer once the batches are in the leader's log.
    LEADER = storage_pb2.ACKS_LEADER
    # Answer once the ISR has them and the ISR has at least min_insync_replicas members.
    ALL = storage_pb2.ACKS_ALL

    @classmethod
    def from_wire(cls, value: int) -> Acks:
        """The core's Acks for a request's `acks` field (UNSPECIFIED -> ALL)."""
        if value == storage_pb2.ACKS_UNSPECIFIED:
            return cls.ALL
        try:
            return cls(value)
        except ValueError:
            raise BrookError("INVALID_REQUEST", f"unknown acks value {value}") from None
