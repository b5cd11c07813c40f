"""Every Brook RPC is wrapped by handle_errors / handle_stream_errors, the one place
that counts, times and classifies calls (brook_rpc_*): the generated servicers' methods
and the generic handlers of the storage node's services alike."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from brook.services.coordinator.admin import AdminServicer
from brook.services.coordinator.metadata_service import MetadataServicer
from brook.services.groups.service import GroupService
from brook.services.node.config import NodeLimits
from brook.services.node.record_service import RecordService
from brook.services.node.replica_service import ReplicaService
from brook.services.node.storage_service import StorageService
from brook.v1 import admin_pb2_grpc, groups_pb2_grpc, metadata_pb2_grpc


def rpc_names(base: type) -> list[str]:
    return [name for name, value in vars(base).items()
            if callable(value) and not name.startswith("_")]  # fmt: skip


@pytest.mark.parametrize(("servicer", "base"), [
    (AdminServicer, admin_pb2_grpc.AdminServiceServicer),
    (MetadataServicer, metadata_pb2_grpc.MetadataServiceServicer),
    (GroupService, groups_pb2_grpc.GroupServiceServicer),
])  # fmt: skip
def test_generated_servicers_wrap_every_method(servicer: type, base: type) -> None:
    names = rpc_names(base)
    assert names
    for name in names:
        method = getattr(servicer, name)
        assert method is not getattr(base, name), f"{servicer.__name__}.{name} not served"
        assert hasattr(method, "__wrapped__"), f"{servicer.__name__}.{name} is not wrapped"


@pytest.mark.parametrize("service", [StorageService, ReplicaService, RecordService])
def test_generic_handlers_call_wrapped_methods(
    service: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    registered: dict[str, Any] = {}
    real = grpc.method_handlers_generic_handler

    def capture(name: str, handlers: dict[str, Any]) -> Any:
        registered.update(handlers)
        return real(name, handlers)

    monkeypatch.setattr(grpc, "method_handlers_generic_handler", capture)
    instance = object.__new__(service)
    instance.limits = NodeLimits()

    class Server:
        def add_generic_rpc_handlers(self, handlers: Any) -> None:
            pass

    instance.register(Server())
    assert registered
    for name, handler in registered.items():
        behaviour = handler.unary_unary or handler.unary_stream
        assert hasattr(behaviour, "__wrapped__"), f"{service.__name__} {name} is not wrapped"
