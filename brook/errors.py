"""Brook's one error taxonomy, shared by servers and clients.

Every failure has a reason (the `brook.v1.ErrorReason` names, without the prefix), a
canonical gRPC status code, and two retry hints that clients act on:

- `retriable`: the same request may succeed later (back off, retry within bounds);
- `refresh_metadata`: leaders or epochs moved; refresh metadata before retrying.

Servers raise `BrookError`; the servicer shell turns it into a gRPC status carrying a
`google.rpc.ErrorInfo` (domain `brook.v1`) or, inside multi-partition responses, into a
`brook.v1.PartitionError`. Clients turn either back into a `BrookError` with
`from_rpc_error` / `from_partition_error`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from brook.v1 import errors_pb2

ERROR_DOMAIN = "brook.v1"


@dataclass(frozen=True)
class ReasonInfo:
    """How one reason maps onto gRPC and what a client should do about it."""

    code: grpc.StatusCode
    retriable: bool
    refresh_metadata: bool


_C = grpc.StatusCode

# The single table: reason -> (status code, retriable, refresh_metadata).
REASONS: dict[str, ReasonInfo] = {
    "TOPIC_NOT_FOUND": ReasonInfo(_C.NOT_FOUND, False, True),
    "PARTITION_NOT_FOUND": ReasonInfo(_C.NOT_FOUND, False, True),
    "NOT_LEADER": ReasonInfo(_C.FAILED_PRECONDITION, True, True),
    "LEADER_NOT_AVAILABLE": ReasonInfo(_C.UNAVAILABLE, True, True),
    "FENCED_LEADER_EPOCH": ReasonInfo(_C.FAILED_PRECONDITION, True, True),
    "UNKNOWN_LEADER_EPOCH": ReasonInfo(_C.UNAVAILABLE, True, False),
    "NOT_ENOUGH_REPLICAS": ReasonInfo(_C.UNAVAILABLE, True, False),
    "NOT_ENOUGH_REPLICAS_AFTER_APPEND": ReasonInfo(_C.UNAVAILABLE, True, False),
    "OFFSET_OUT_OF_RANGE": ReasonInfo(_C.OUT_OF_RANGE, False, False),
    "CORRUPT_BATCH": ReasonInfo(_C.INVALID_ARGUMENT, False, False),
    "BATCH_TOO_LARGE": ReasonInfo(_C.INVALID_ARGUMENT, False, False),
    "INVALID_TOPIC_NAME": ReasonInfo(_C.INVALID_ARGUMENT, False, False),
    "INVALID_PARTITION_COUNT": ReasonInfo(_C.INVALID_ARGUMENT, False, False),
    "INVALID_REPLICATION_FACTOR": ReasonInfo(_C.INVALID_ARGUMENT, False, False),
    "INVALID_CONFIG": ReasonInfo(_C.INVALID_ARGUMENT, False, False),
    "TOPIC_ALREADY_EXISTS": ReasonInfo(_C.ALREADY_EXISTS, False, False),
    "INVALID_REQUEST": ReasonInfo(_C.INVALID_ARGUMENT, False, False),
    "REQUEST_TIMED_OUT": ReasonInfo(_C.DEADLINE_EXCEEDED, True, False),
    "NOT_COORDINATOR": ReasonInfo(_C.UNAVAILABLE, True, True),
    "COORDINATOR_NOT_AVAILABLE": ReasonInfo(_C.UNAVAILABLE, True, True),
    "GROUP_NOT_FOUND": ReasonInfo(_C.NOT_FOUND, False, False),
    "UNKNOWN_MEMBER_ID": ReasonInfo(_C.NOT_FOUND, False, False),
    "FENCED_MEMBER_EPOCH": ReasonInfo(_C.FAILED_PRECONDITION, False, False),
    "GROUP_NOT_EMPTY": ReasonInfo(_C.FAILED_PRECONDITION, False, False),
    "INVALID_REGEX": ReasonInfo(_C.INVALID_ARGUMENT, False, False),
    "OFFSET_METADATA_TOO_LARGE": ReasonInfo(_C.INVALID_ARGUMENT, False, False),
    "UNRELEASED_INSTANCE_ID": ReasonInfo(_C.FAILED_PRECONDITION, False, False),
    "REASSIGNMENT_IN_PROGRESS": ReasonInfo(_C.FAILED_PRECONDITION, True, False),
    "NO_REASSIGNMENT_IN_PROGRESS": ReasonInfo(_C.FAILED_PRECONDITION, False, False),
    "NODE_NOT_FOUND": ReasonInfo(_C.NOT_FOUND, False, True),
    "ELECTION_NOT_NEEDED": ReasonInfo(_C.FAILED_PRECONDITION, False, False),
    "ELIGIBLE_LEADERS_NOT_AVAILABLE": ReasonInfo(_C.UNAVAILABLE, True, True),
    "TOO_MANY_REQUESTS": ReasonInfo(_C.RESOURCE_EXHAUSTED, True, False),
    "STORAGE_ERROR": ReasonInfo(_C.UNAVAILABLE, True, True),
    "NOT_LEADER_OR_FOLLOWER": ReasonInfo(_C.FAILED_PRECONDITION, True, True),
    "GROUP_ACTIVE": ReasonInfo(_C.FAILED_PRECONDITION, False, False),
    "INVALID_PAGE_TOKEN": ReasonInfo(_C.INVALID_ARGUMENT, False, False),
    "INTERNAL": ReasonInfo(_C.INTERNAL, False, False),
}

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
        self, reason: str, message: str, metadata: Mapping[str, Any] | None = None
    ) -> None:
        if reason not in REASONS and reason not in {"UNAVAILABLE", "TRANSPORT"}:
            reason = "INTERNAL"
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata: dict[str, str] = {k: str(v) for k, v in (metadata or {}).items()}
        info = REASONS.get(reason)
        self.code: grpc.StatusCode = info.code if info else _C.UNAVAILABLE
        self.retriable: bool = info.retriable if info else True
        self.refresh_metadata: bool = info.refresh_metadata if info else True

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"

    def __repr__(self) -> str:
        return f"BrookError({self.reason!r}, {self.message!r}, {self.metadata!r})"

    def to_status(self) -> Any:
        """A `grpc.Status` carrying ErrorInfo, for `context.abort_with_status`."""
        from google.protobuf import any_pb2
        from google.rpc import code_pb2, error_details_pb2, status_pb2
        from grpc_status import rpc_status

        info = error_details_pb2.ErrorInfo(
            reason=self.reason,
            domain=ERROR_DOMAIN,
            metadata={
                **self.metadata,
                "retriable": "true" if self.retriable else "false",
                "refresh_metadata": "true" if self.refresh_metadata else "false",
            },
        )
        detail = any_pb2.Any()
        detail.Pack(info)
        code_value = getattr(code_pb2, self.code.name)
        status = status_pb2.Status(code=code_value, message=self.message, details=[detail])
        return rpc_status.to_status(status)

    def to_partition_error(self) -> errors_pb2.PartitionError:
        """The same failure as a `brook.v1.PartitionError` inside a multi-partition response."""
        from brook.v1 import errors_pb2

        return errors_pb2.PartitionError(
            code=self.code.value[0],
            reason=errors_pb2.ErrorReason.Value(f"ERROR_REASON_{self.reason}")
            if self.reason in REASONS
            else errors_pb2.ERROR_REASON_INTERNAL,
            message=self.message,
            metadata=self.metadata,
            retriable=self.retriable,
            refresh_metadata=self.refresh_metadata,
        )


def from_partition_error(error: errors_pb2.PartitionError) -> BrookError | None:
    """The BrookError a PartitionError describes, or None when it is unset (no error)."""
    from brook.v1 import errors_pb2

    if error.reason == errors_pb2.ERROR_REASON_UNSPECIFIED:
        return None
    name = errors_pb2.ErrorReason.Name(error.reason).removeprefix("ERROR_REASON_")
    return BrookError(name, error.message, dict(error.metadata))


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
                    metadata.pop("retriable", None)
                    metadata.pop("refresh_metadata", None)
                    return BrookError(info.reason, status.message, metadata)
    code = error.code() if hasattr(error, "code") else _C.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    err = BrookError("TRANSPORT", f"{code.name}: {details}")
    err.code = code
    err.retriable = code in _RETRIABLE_TRANSPORT_CODES
    err.refresh_metadata = err.retriable
    return err


def is_retriable(error: BaseException) -> bool:
    """True for errors a client may retry (with back-off, within its bounds)."""
    return isinstance(error, BrookError) and error.retriable
