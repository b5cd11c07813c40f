"""The error taxonomy in brook.errors matches the ErrorReason enum of the API.

Proves that every reason a client can receive has a status code and retry hints, that
a BrookError survives the round trip through a gRPC status (ErrorInfo) and through a
PartitionError, and that unknown transport failures get sensible retry hints.
"""

from __future__ import annotations

import grpc
import pytest

from brook.errors import REASONS, BrookError, from_partition_error, from_rpc_error
from brook.v1 import errors_pb2


def test_every_enum_reason_is_in_the_table_and_back() -> None:
    """Enum names (minus prefix) and table keys are the same set."""
    names = {
        name.removeprefix("ERROR_REASON_")
        for name in errors_pb2.ErrorReason.keys()
        if name != "ERROR_REASON_UNSPECIFIED"
    }
    assert names == set(REASONS)


def test_partition_error_round_trip() -> None:
    """to_partition_error then from_partition_error keeps reason, message, metadata, hints."""
    error = BrookError("NOT_LEADER", "t-0 is led by node 2", {"leader_id": 2})
    back = from_partition_error(error.to_partition_error())
    assert back is not None
    assert (back.reason, back.message, back.metadata) == (
        "NOT_LEADER",
        "t-0 is led by node 2",
        {"leader_id": "2"},
    )
    assert back.retriable and back.refresh_metadata
    assert from_partition_error(errors_pb2.PartitionError()) is None


class _FakeCall(grpc.RpcError):
    """Mimics the failed-call object grpc hands to clients."""

    def __init__(self, status: grpc.Status) -> None:
        self._status = status

    def code(self) -> grpc.StatusCode:
        return self._status.code

    def details(self) -> str:
        return self._status.details

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return tuple(self._status.trailing_metadata)


@pytest.mark.parametrize("reason", sorted(REASONS))
def test_status_round_trip(reason: str) -> None:
    """A BrookError turned into a status comes back with the same reason and code."""
    status = BrookError(reason, "something to act on", {"topic": "t"}).to_status()
    assert status.code == REASONS[reason].code
    back = from_rpc_error(_FakeCall(status))
    assert back.reason == reason
    assert back.metadata == {"topic": "t"}
    assert back.retriable == REASONS[reason].retriable


def test_plain_transport_failure_is_retriable_when_unavailable() -> None:
    """A status with no ErrorInfo maps to TRANSPORT, retriable only for transient codes."""

    class Plain(grpc.RpcError):
        def __init__(self, code: grpc.StatusCode) -> None:
            self._code = code

        def code(self) -> grpc.StatusCode:
            return self._code

        def details(self) -> str:
            return "connection refused"

        def trailing_metadata(self) -> tuple[()]:
            return ()

    assert from_rpc_error(Plain(grpc.StatusCode.UNAVAILABLE)).retriable
    assert not from_rpc_error(Plain(grpc.StatusCode.PERMISSION_DENIED)).retriable


def test_reason_enum_matches_errors_proto() -> None:
    """brook.errors.Reason is errors.proto's ErrorReason (minus prefix) plus the client's own."""
    from brook.errors import CLIENT_ONLY_REASONS, Reason

    proto_names = {
        name.removeprefix("ERROR_REASON_")
        for name in errors_pb2.ErrorReason.keys()
        if name != "ERROR_REASON_UNSPECIFIED"
    }
    assert {reason.value for reason in Reason} - {r.value for r in CLIENT_ONLY_REASONS} == (
        proto_names
    )
    assert not {r.value for r in CLIENT_ONLY_REASONS} & proto_names


def test_an_unknown_reason_is_a_loud_error_not_internal() -> None:
    with pytest.raises(ValueError, match="NOT_A_REASON"):
        BrookError("NOT_A_REASON", "typo in the caller")


def test_every_reason_literal_in_the_source_is_known() -> None:
    """Scans Brook's code for BrookError("X", ...) and checks every literal X is a Reason."""
    import ast
    from pathlib import Path

    from brook.errors import Reason

    root = Path(__file__).resolve().parents[2]
    unknown: list[str] = []
    checked = 0
    for folder in ("brook", "storage", "services", "client"):
        for path in (root / folder).rglob("*.py"):
            if "brook/v1" in path.as_posix() or "brook/internal" in path.as_posix():
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id == "BrookError"
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)
                ):
                    checked += 1
                    if node.args[0].value not in Reason.__members__:
                        unknown.append(
                            f"{path.relative_to(root)}:{node.lineno} {node.args[0].value}"
                        )
    assert checked > 50
    assert not unknown, unknown


def test_a_reason_unknown_to_the_client_keeps_the_servers_retry_hints() -> None:
    error = from_partition_error(
        errors_pb2.PartitionError(
            code=14, reason=999, message="new server", retriable=True, refresh_metadata=True
        )
    )
    assert error is not None
    assert error.reason == "INTERNAL" and error.retriable and error.refresh_metadata
    assert "unknown to this client" in error.message
