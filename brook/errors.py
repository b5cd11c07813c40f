"""Brook's one error taxonomy, shared by servers and clients.

Every failure has a reason (the `brook.v1.ErrorReason` names, without the prefix), a
canonical gRPC status code, and two retry hints that clients act on:

- `retriable`: the same request may succeed later (back off, retry within bounds);
- `refresh_metadata`: leaders or epochs moved; refresh metadata before retrying.

Servers raise `BrookError`; the servicer shell turns it into a gRPC status carrying a
`google.rpc.ErrorInfo` (domain `brook.v1`) or, inside multi-partition responses, into a
`brook.v1.PartitionError` whose `error_info` is the same ErrorInfo. A multi-partition call
whose every partition failed fails as a whole (`every_partition_failed`), with the full
response in its status details. Clients turn either back into a `BrookError` with
`from_rpc_error` / `from_partition_error`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from brook.v1 import errors_pb2

ERROR_DOMAIN = "brook.v1"

# A protobuf message class, for `BrookError.response_as`.
M = TypeVar("M", bound="Message")


@dataclass(frozen=True)
class ReasonInfo:
    """How one reason maps onto gRPC and what a client should do about it."""

    code: grpc.StatusCode
    retriable: bool
    refresh_metadata: bool


class Reason(StrEnum):
    """Every failure reason: the `brook.v1.ErrorReason` names without their prefix.

    `tests/api/test_errors.py` checks this list against errors.proto, and the table below
    must cover every member (checked at import), so a reason cannot be added on one side
    only. Two members are the client's own and never sent by a server: TRANSPORT (the
    call failed below Brook: connection refused, deadline, a status without ErrorInfo)
    and UNAVAILABLE (the client itself is closed or has no address to try).
    """

    TOPIC_NOT_FOUND = "TOPIC_NOT_FOUND"
    PARTITION_NOT_FOUND = "PARTITION_NOT_FOUND"
    NOT_LEADER = "NOT_LEADER"
    LEADER_NOT_AVAILABLE = "LEADER_NOT_AVAILABLE"
    FENCED_LEADER_EPOCH = "FENCED_LEADER_EPOCH"
    UNKNOWN_LEADER_EPOCH = "UNKNOWN_LEADER_EPOCH"
    NOT_ENOUGH_REPLICAS = "NOT_ENOUGH_REPLICAS"
    NOT_ENOUGH_REPLICAS_AFTER_APPEND = "NOT_ENOUGH_REPLICAS_AFTER_APPEND"
    OFFSET_OUT_OF_RANGE = "OFFSET_OUT_OF_RANGE"
    CORRUPT_BATCH = "CORRUPT_BATCH"
    BATCH_TOO_LARGE = "BATCH_TOO_LARGE"
    INVALID_TOPIC_NAME = "INVALID_TOPIC_NAME"
    INVALID_PARTITION_COUNT = "INVALID_PARTITION_COUNT"
    INVALID_REPLICATION_FACTOR = "INVALID_REPLICATION_FACTOR"
    INVALID_CONFIG = "INVALID_CONFIG"
    TOPIC_ALREADY_EXISTS = "TOPIC_ALREADY_EXISTS"
    INVALID_REQUEST = "INVALID_REQUEST"
    REQUEST_TIMED_OUT = "REQUEST_TIMED_OUT"
    NOT_COORDINATOR = "NOT_COORDINATOR"
    COORDINATOR_NOT_AVAILABLE = "COORDINATOR_NOT_AVAILABLE"
    GROUP_NOT_FOUND = "GROUP_NOT_FOUND"
    UNKNOWN_MEMBER_ID = "UNKNOWN_MEMBER_ID"
    FENCED_MEMBER_EPOCH = "FENCED_MEMBER_EPOCH"
    GROUP_NOT_EMPTY = "GROUP_NOT_EMPTY"
    INVALID_REGEX = "INVALID_REGEX"
    OFFSET_METADATA_TOO_LARGE = "OFFSET_METADATA_TOO_LARGE"
    UNRELEASED_INSTANCE_ID = "UNRELEASED_INSTANCE_ID"
    REASSIGNMENT_IN_PROGRESS = "REASSIGNMENT_IN_PROGRESS"
    NO_REASSIGNMENT_IN_PROGRESS = "NO_REASSIGNMENT_IN_PROGRESS"
    NODE_NOT_FOUND = "NODE_NOT_FOUND"
    ELECTION_NOT_NEEDED = "ELECTION_NOT_NEEDED"
    ELIGIBLE_LEADERS_NOT_AVAILABLE = "ELIGIBLE_LEADERS_NOT_AVAILABLE"
    TOO_MANY_REQUESTS = "TOO_MANY_REQUESTS"
    STORAGE_ERROR = "STORAGE_ERROR"
    NOT_LEADER_OR_FOLLOWER = "NOT_LEADER_OR_FOLLOWER"
    GROUP_ACTIVE = "GROUP_ACTIVE"
    INVALID_PAGE_TOKEN = "INVALID_PAGE_TOKEN"
    INTERNAL = "INTERNAL"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    THROTTLED = "THROTTLED"
    TRANSPORT = "TRANSPORT"
    UNAVAILABLE = "UNAVAILABLE"


# Reasons only a client produces (see Reason); they have no ErrorReason enum value.
CLIENT_ONLY_REASONS: frozenset[Reason] = frozenset({Reason.TRANSPORT, Reason.UNAVAILABLE})

_C = grpc.StatusCode

# The single table: reason -> (status code, retriable, refresh_metadata).
REASONS: dict[Reason, ReasonInfo] = {
    Reason.TOPIC_NOT_FOUND: ReasonInfo(_C.NOT_FOUND, False, True),
    Reason.PARTITION_NOT_FOUND: ReasonInfo(_C.NOT_FOUND, False, True),
    Reason.NOT_LEADER: ReasonInfo(_C.FAILED_PRECONDITION, True, True),
    Reason.LEADER_NOT_AVAILABLE: ReasonInfo(_C.UNAVAILABLE, True, True),
    Reason.FENCED_LEADER_EPOCH: ReasonInfo(_C.FAILED_PRECONDITION, True, True),
    Reason.UNKNOWN_LEADER_EPOCH: ReasonInfo(_C.UNAVAILABLE, True, False),
    Reason.NOT_ENOUGH_REPLICAS: ReasonInfo(_C.UNAVAILABLE, True, False),
    Reason.NOT_ENOUGH_REPLICAS_AFTER_APPEND: ReasonInfo(_C.UNAVAILABLE, True, False),
    Reason.OFFSET_OUT_OF_RANGE: ReasonInfo(_C.OUT_OF_RANGE, False, False),
    Reason.CORRUPT_BATCH: ReasonInfo(_C.INVALID_ARGUMENT, False, False),
    Reason.BATCH_TOO_LARGE: ReasonInfo(_C.INVALID_ARGUMENT, False, False),
    Reason.INVALID_TOPIC_NAME: ReasonInfo(_C.INVALID_ARGUMENT, False, False),
    Reason.INVALID_PARTITION_COUNT: ReasonInfo(_C.INVALID_ARGUMENT, False, False),
    Reason.INVALID_REPLICATION_FACTOR: ReasonInfo(_C.INVALID_ARGUMENT, False, False),
    Reason.INVALID_CONFIG: ReasonInfo(_C.INVALID_ARGUMENT, False, False),
    Reason.TOPIC_ALREADY_EXISTS: ReasonInfo(_C.ALREADY_EXISTS, False, False),
    Reason.INVALID_REQUEST: ReasonInfo(_C.INVALID_ARGUMENT, False, False),
    Reason.REQUEST_TIMED_OUT: ReasonInfo(_C.DEADLINE_EXCEEDED, True, False),
    Reason.NOT_COORDINATOR: ReasonInfo(_C.UNAVAILABLE, True, True),
    Reason.COORDINATOR_NOT_AVAILABLE: ReasonInfo(_C.UNAVAILABLE, True, True),
    Reason.GROUP_NOT_FOUND: ReasonInfo(_C.NOT_FOUND, False, False),
    Reason.UNKNOWN_MEMBER_ID: ReasonInfo(_C.NOT_FOUND, False, False),
    Reason.FENCED_MEMBER_EPOCH: ReasonInfo(_C.FAILED_PRECONDITION, False, False),
    Reason.GROUP_NOT_EMPTY: ReasonInfo(_C.FAILED_PRECONDITION, False, False),
    Reason.INVALID_REGEX: ReasonInfo(_C.INVALID_ARGUMENT, False, False),
    Reason.OFFSET_METADATA_TOO_LARGE: ReasonInfo(_C.INVALID_ARGUMENT, False, False),
    Reason.UNRELEASED_INSTANCE_ID: ReasonInfo(_C.FAILED_PRECONDITION, False, False),
    Reason.REASSIGNMENT_IN_PROGRESS: ReasonInfo(_C.FAILED_PRECONDITION, True, False),
    Reason.NO_REASSIGNMENT_IN_PROGRESS: ReasonInfo(_C.FAILED_PRECONDITION, False, False),
    Reason.NODE_NOT_FOUND: ReasonInfo(_C.NOT_FOUND, False, True),
    Reason.ELECTION_NOT_NEEDED: ReasonInfo(_C.FAILED_PRECONDITION, False, False),
    Reason.ELIGIBLE_LEADERS_NOT_AVAILABLE: ReasonInfo(_C.UNAVAILABLE, True, True),
    Reason.TOO_MANY_REQUESTS: ReasonInfo(_C.RESOURCE_EXHAUSTED, True, False),
    Reason.STORAGE_ERROR: ReasonInfo(_C.UNAVAILABLE, True, True),
    Reason.NOT_LEADER_OR_FOLLOWER: ReasonInfo(_C.FAILED_PRECONDITION, True, True),
    Reason.GROUP_ACTIVE: ReasonInfo(_C.FAILED_PRECONDITION, False, False),
    Reason.INVALID_PAGE_TOKEN: ReasonInfo(_C.INVALID_ARGUMENT, False, False),
    Reason.UNAUTHENTICATED: ReasonInfo(_C.UNAUTHENTICATED, False, False),
    Reason.PERMISSION_DENIED: ReasonInfo(_C.PERMISSION_DENIED, False, False),
    Reason.THROTTLED: ReasonInfo(_C.RESOURCE_EXHAUSTED, True, False),
    Reason.INTERNAL: ReasonInfo(_C.INTERNAL, False, False),
}

_missing = set(Reason) - CLIENT_ONLY_REASONS - set(REASONS)
if _missing:  # a programming error: fail at import, not with a silent INTERNAL later
    raise RuntimeError(f"brook.errors: reasons without a table entry: {sorted(_missing)}")

# Transport-level failures with no ErrorInfo: which of them a client may retry.
_RETRIABLE_TRANSPORT_CODES = {
    _C.UNAVAILABLE,
    _C.DEADLINE_EXCEEDED,
    _C.RESOURCE_EXHAUSTED,
    _C.ABORTED,
}


class BrookError(Exception):
    """A failure with a reason from the taxonomy, a message and string metadata."""

    def __init__(
        self, reason: Reason | str, message: str, metadata: Mapping[str, Any] | None = None
    ) -> None:
        # An unknown reason is a bug in the caller: ValueError names it, instead of a
        # silent INTERNAL that would hide the bug and lose the retry hints.
        try:
            known = Reason(reason)
        except ValueError:
            raise ValueError(f"unknown Brook error reason {reason!r}") from None
        super().__init__(message)
        self.reason: Reason = known
        self.message = message
        self.metadata: dict[str, str] = {k: str(v) for k, v in (metadata or {}).items()}
        info = REASONS.get(known)
        self.code: grpc.StatusCode = info.code if info else _C.UNAVAILABLE
        self.retriable: bool = info.retriable if info else True
        self.refresh_metadata: bool = info.refresh_metadata if info else True
        # The whole response of a multi-partition call whose every partition failed: sent
        # in the status details beside the ErrorInfo (see `every_partition_failed`), and
        # read back from them by `from_rpc_error` (`response_as`).
        self.response: Any = None
        self._response_details: list[Any] = []

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"

    def __repr__(self) -> str:
        return f"BrookError({self.reason!r}, {self.message!r}, {self.metadata!r})"

    def to_error_info(self) -> Any:
        """The failure as a `google.rpc.ErrorInfo`: what a status carries in its details and
        a PartitionError in `error_info`, so both channels speak one vocabulary."""
        from google.rpc import error_details_pb2

        return error_details_pb2.ErrorInfo(
            reason=self.reason.value,
            domain=ERROR_DOMAIN,
            metadata={
                **self.metadata,
                "retriable": "true" if self.retriable else "false",
                "refresh_metadata": "true" if self.refresh_metadata else "false",
            },
        )

    def to_status(self) -> Any:
        """A `grpc.Status` carrying ErrorInfo (and `response`, when set), for
        `context.abort_with_status`."""
        from google.protobuf import any_pb2
        from google.rpc import code_pb2, status_pb2
        from grpc_status import rpc_status

        details = []
        for message in (self.to_error_info(), self.response):
            if message is not None:
                detail = any_pb2.Any()
                detail.Pack(message)
                details.append(detail)
        code_value = getattr(code_pb2, self.code.name)
        status = status_pb2.Status(code=code_value, message=self.message, details=details)
        return rpc_status.to_status(status)

    def response_as(self, message_class: type[M]) -> M | None:
        """The response of type `message_class` a failed call carried in its status details
        (every partition failed; see `every_partition_failed`), or None."""
        for detail in self._response_details:
            if detail.Is(message_class.DESCRIPTOR):
                message = message_class()
                detail.Unpack(message)
                return message
        return None

    def to_partition_error(self) -> errors_pb2.PartitionError:
        """The same failure as a `brook.v1.PartitionError` inside a multi-partition response."""
        from brook.v1 import errors_pb2

        return errors_pb2.PartitionError(
            code=self.code.value[0],
            reason=errors_pb2.ErrorReason.Value(f"ERROR_REASON_{self.reason.value}")
            if self.reason in REASONS
            else errors_pb2.ERROR_REASON_INTERNAL,
            message=self.message,
            metadata=self.metadata,
            retriable=self.retriable,
            refresh_metadata=self.refresh_metadata,
            error_info=self.to_error_info(),
        )


# The response a failed call carries in its status details is bounded: the status travels
# in a trailer, and stock gRPC clients refuse trailers over 8 KiB (base64 makes 3 KiB about
# 4 KiB). Larger all-failed responses (hundreds of partitions) are answered OK as ever.
FAILED_CALL_RESPONSE_BYTES_MAX = 3 * 1024
FAILED_CALL_PARTITIONS_MAX = 32


def every_partition_failed(response: Any, partitions: Sequence[Any]) -> BrookError | None:
    """The error a multi-partition call answers when each of its `partitions` results has
    its `error` set: the first failure, carrying `response` (every partition's outcome) for
    the status details. None when some partition succeeded, when there are none, or when
    the response is too large for a status trailer (then it is answered as it is).

    A request whose every partition failed is then recognisable from its status alone (a
    rejected single-partition produce is a failed call; grpcurl exits non-zero), and no
    per-partition detail is lost.
    """
    if not partitions or len(partitions) > FAILED_CALL_PARTITIONS_MAX:
        return None
    if not all(p.HasField("error") and p.error.reason for p in partitions):
        return None
    if response.ByteSize() > FAILED_CALL_RESPONSE_BYTES_MAX:
        return None
    first = from_partition_error(partitions[0].error)
    assert first is not None  # reason is set
    first.response = response
    return first


def from_partition_error(error: errors_pb2.PartitionError) -> BrookError | None:
    """The BrookError a PartitionError describes, or None when it is unset (no error)."""
    from brook.v1 import errors_pb2

    if error.reason == errors_pb2.ERROR_REASON_UNSPECIFIED and not error.error_info.reason:
        return None
    if error.error_info.reason:  # the ErrorInfo vocabulary, as in a failed call's status
        metadata = dict(error.error_info.metadata)
        retriable = metadata.pop("retriable", "false") == "true"
        refresh = metadata.pop("refresh_metadata", "false") == "true"
        return _remote_error(error.error_info.reason, error.message, metadata, retriable, refresh)
    try:
        name = errors_pb2.ErrorReason.Name(error.reason).removeprefix("ERROR_REASON_")
    except ValueError:  # an enum value newer than this client
        name = f"#{error.reason}"
    return _remote_error(
        name, error.message, dict(error.metadata), error.retriable, error.refresh_metadata
    )


def _remote_error(
    name: str, message: str, metadata: dict[str, str], retriable: bool, refresh: bool
) -> BrookError:
    """A server's error; a reason this client does not know keeps the server's retry hints."""
    if name in Reason.__members__ and Reason(name) not in CLIENT_ONLY_REASONS:
        return BrookError(name, message, metadata)
    error = BrookError(
        Reason.INTERNAL, f"{message} (reason {name!r} is unknown to this client)", metadata
    )
    error.retriable = retriable
    error.refresh_metadata = refresh
    return error


def from_rpc_error(error: grpc.RpcError) -> BrookError:
    """Reads the ErrorInfo of a failed call; transport failures become UNAVAILABLE/TRANSPORT."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = None
    try:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
    except Exception:  # a malformed trailer is a transport problem, not ours to crash on
        status = None
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                if info.domain == ERROR_DOMAIN:
                    metadata = dict(info.metadata)
                    retriable = metadata.pop("retriable", "false") == "true"
                    refresh = metadata.pop("refresh_metadata", "false") == "true"
                    remote = _remote_error(
                        info.reason, status.message, metadata, retriable, refresh
                    )
                    remote._response_details = [
                        d
                        for d in status.details
                        if not d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)
                    ]
                    return remote
    code = error.code() if hasattr(error, "code") else _C.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    err = BrookError(Reason.TRANSPORT, f"{code.name}: {details}")
    err.code = code
    err.retriable = code in _RETRIABLE_TRANSPORT_CODES
    err.refresh_metadata = err.retriable
    return err


def is_retriable(error: BaseException) -> bool:
    """True for errors a client may retry (with back-off, within its bounds)."""
    return isinstance(error, BrookError) and error.retriable


async def partitioned(call: Awaitable[M], response_type: type[M]) -> M:
    """Awaits a multi-partition call (Produce, Fetch, ListOffsets) and answers its response,
    also when every partition failed: the server then fails the call and carries the
    response in the status details, which this reads back, so callers handle per-partition
    errors in one place. Any other failure raises as it came."""
    try:
        return await call
    except grpc.RpcError as error:
        response = from_rpc_error(error).response_as(response_type)
        if response is None:
            raise
        return response
