"""Server reflection serves the API's documentation, under v1 and v1alpha, to grpcurl.

Issue: `grpcurl describe` showed fields with none of the protos' comments, and only the
v1alpha reflection service existed. This starts a real coordinator (and reads its
reflection with the pinned grpcurl that `make` installs, and with a raw v1alpha and v1
client), and checks that:
- both reflection services are listed and answer;
- `grpcurl describe` of a Brook message prints the comment written above a field in
  protos/ (read from the .proto file itself, so the check follows the protos);
- `grpcurl describe` of the v1 reflection service works too.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2

from tests.harness.cluster import LocalCluster
from tests.harness.grpcurl import GRPCURL_TIMEOUT_S, grpcurl

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def comment_above(proto: Path, field_line_start: str) -> str:
    """The last line of the comment block above the line starting with field_line_start."""
    lines = proto.read_text().splitlines()
    for number, line in enumerate(lines):
        if line.strip().startswith(field_line_start):
            comment = lines[number - 1].strip()
            assert comment.startswith("//"), f"{field_line_start!r} has no comment above it"
            return comment.removeprefix("//").strip()
    raise AssertionError(f"{field_line_start!r} not found in {proto}")


def reflection_services(address: str, method: str) -> list[str]:
    """Lists services through one reflection service (v1 and v1alpha share messages)."""
    with grpc.insecure_channel(address) as channel:
        call = channel.stream_stream(
            method,
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        responses = list(call(iter([request]), timeout=GRPCURL_TIMEOUT_S))
    return [service.name for service in responses[0].list_services_response.service]


def test_reflection_serves_comments_on_v1_and_v1alpha(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = local_cluster()
    cluster.add_coordinator()
    cluster.start()
    address = cluster.address("coordinator")

    for method in (
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    ):
        services = reflection_services(address, method)
        assert "brook.v1.AdminService" in services, (method, services)
        assert "grpc.reflection.v1.ServerReflection" in services
        assert "grpc.reflection.v1alpha.ServerReflection" in services
        assert "grpc.health.v1.Health" in services

    listed = grpcurl(address, "list").split()
    assert {"brook.v1.AdminService", "brook.v1.MetadataService"} <= set(listed)

    expected = comment_above(ROOT / "protos/brook/v1/records.proto", "uint32 crc32c")
    described = grpcurl(address, "describe", "brook.v1.RecordBatch")
    assert expected in described, described

    service_comment = comment_above(ROOT / "protos/brook/v1/admin.proto", "service AdminService")
    assert service_comment in grpcurl(address, "describe", "brook.v1.AdminService")

    v1 = grpcurl(address, "describe", "grpc.reflection.v1.ServerReflection")
    assert "ServerReflectionInfo" in v1 and "grpc.reflection.v1.ServerReflectionRequest" in v1
    assert shutil.which("true")  # the test ran real subprocesses above
