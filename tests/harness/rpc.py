"""What a failed gRPC call carried: status code, ErrorInfo, and how big its trailer was.

Tests of request bounds assert all three: the code (INVALID_ARGUMENT), that the status has
a `google.rpc.ErrorInfo` (a client can act on the reason), and that the trailer stayed
small (an oversized input was not echoed back).
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from brook.errors import ERROR_DOMAIN


@dataclass(frozen=True)
class RpcFailure:
    """A failed call as the client saw it."""

    code: grpc.StatusCode
    message: str
    reason: str | None  # ErrorInfo.reason (domain brook.v1), None when absent
    metadata: dict[str, str] = field(default_factory=dict)
    trailer_bytes: int = 0


def _error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo | None:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if info.domain == ERROR_DOMAIN:
                return info
    return None


def _trailer_bytes(error: grpc.aio.AioRpcError) -> int:
    trailer = error.trailing_metadata() or ()
    size = sum(len(key) + len(value) for key, value in trailer)
    return size + len(error.details() or "")


async def rpc_failure(call: Awaitable[Any]) -> RpcFailure:
    """Awaits a call that must fail and describes the failure (AssertionError if it
    succeeded)."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        info = _error_info(error)
        return RpcFailure(
            code=error.code(),
            message=error.details() or "",
            reason=info.reason if info is not None else None,
            metadata=dict(info.metadata) if info is not None else {},
            trailer_bytes=_trailer_bytes(error),
        )
    raise AssertionError("the call succeeded; it was expected to fail")


# Every Brook server answers this unlisted diagnostics method (services/common/loop_lag.py).
LOOP_LAG_METHOD = "/brook.internal.v1.Diagnostics/LoopLag"
# The rule every server keeps: no handler holds the event loop longer than this.
LOOP_LAG_MS_MAX = 100.0


async def loop_lag_ms(channel: grpc.aio.Channel) -> float:
    """The server's largest event-loop lag since the previous call, in ms."""
    import json

    call = channel.unary_unary(
        LOOP_LAG_METHOD, request_serializer=bytes, response_deserializer=bytes
    )
    return float(json.loads(await call(b"", timeout=10))["max_ms_since_last_call"])
