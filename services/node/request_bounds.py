"""Bounds on what one request may ask of a storage node, checked before any per-partition
work (defect 5: one Fetch naming 400,000 partitions held the event loop for 4 s, the
node lost its lease and every partition it led failed over).

Three layers, cheapest first:
- bytes: requests without payloads (Fetch, Subscribe, ListOffsets, ReplicaFetch,
  OffsetForLeaderEpoch) are refused by size before protobuf parses them
  (`bounded_parser`): parsing is the one step that runs before the handler, and a 64 MiB
  request of one-character partition entries takes ~0.5 s to parse;
- counts: every repeated field against its limit (`check_count`, from
  `brook.services.common.bounds`): the hand parser of Produce stops counting at the limit
  (`wire.parse_produce_request`);
- duplicates: one partition twice in one request is refused whole (`check_unique`),
  before anything is appended or read.
Each refusal is INVALID_ARGUMENT with ErrorInfo reason INVALID_REQUEST naming the field
and the limit.

Thread-safety: pure functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from brook.errors import BrookError, Reason
from brook.services.common.bounds import check_count, check_unique
from brook.structs import TopicPartition

# A protobuf request entry (FetchPartition, ReplicaFetchPartition, ...).
Message = Any

M = TypeVar("M")
# Builds a request's partition keys (called only once the count is within its bound).
KeysOf = Callable[[], Iterable[TopicPartition]]

__all__ = ["KeysOf", "OversizedRequest", "admit", "bounded_parser", "check_count", "check_unique"]


@dataclass(frozen=True, slots=True)
class OversizedRequest(Generic[M]):
    """What `bounded_parser` hands the handler instead of a message that was too big to
    parse: the handler refuses it with a status that carries ErrorInfo (a deserializer
    can only fail with a bare INTERNAL)."""

    method: str
    size_bytes: int
    limit_bytes: int


def bounded_parser(
    parse: Callable[[bytes], M], limit_bytes: int, method: str
) -> Callable[[bytes], M | OversizedRequest[M]]:
    """A request deserializer that refuses to parse more than `limit_bytes`."""

    def parse_bounded(data: bytes) -> M | OversizedRequest[M]:
        if len(data) > limit_bytes:
            return OversizedRequest(method, len(data), limit_bytes)
        return parse(data)

    return parse_bounded


def admit(request: M | OversizedRequest[M]) -> M:
    """The parsed request, or INVALID_REQUEST when it was too large to parse."""
    if isinstance(request, OversizedRequest):
        raise BrookError(
            Reason.INVALID_REQUEST,
            f"a {request.method} request is {request.size_bytes} bytes; the limit is"
            f" {request.limit_bytes} (--request-metadata-max-bytes)",
            {"field": "request", "size_bytes": request.size_bytes,
             "limit": request.limit_bytes},
        )
    return request


def requested_epoch(wanted: Message) -> int:
    """The leader epoch a Produce/Fetch/ListOffsets partition entry asks for: its
    `current_leader_epoch` when set, else -1 ("no check"). Explicit presence is what keeps
    an unset field from meaning epoch 0, a real epoch (issue 10, trap 1)."""
    return int(wanted.current_leader_epoch) if wanted.HasField("current_leader_epoch") else -1


def require_epochs(field: str, entries: Iterable[Message], *names: str) -> None:
    """Refuses a replication request whose entries leave any of `names` unset: nodes
    always send them, and guessing would skip a fencing check."""
    for index, entry in enumerate(entries):
        for name in names:
            if not entry.HasField(name):
                raise BrookError(
                    Reason.INVALID_REQUEST,
                    f"{field}[{index}].{name} is required (a replica never skips the check)",
                    {"field": f"{field}.{name}", "index": index},
                )
