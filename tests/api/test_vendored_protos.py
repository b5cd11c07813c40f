"""protos/google/rpc ships the google.rpc definitions a client needs beside protos/brook
(issue 10): they must define the same messages the runtime uses, field for field, and
Brook's protos must compile against them alone (no other include path but protoc's
well-known types)."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import descriptor_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"


def compile_all(tmp_path: Path) -> descriptor_pb2.FileDescriptorSet:
    """Every .proto under protos/ compiled with protos/ as the only project include path."""
    well_known = Path(protoc.__file__).parent / "_proto"
    out = tmp_path / "all.binpb"
    files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    code = protoc.main(
        ["protoc", f"-I{PROTOS}", f"-I{well_known}", f"--descriptor_set_out={out}", *files]
    )
    assert code == 0, "protos/ does not compile on its own"
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def fields(message: descriptor_pb2.DescriptorProto) -> list[tuple[str, int, int, int]]:
    return [(f.name, f.number, f.type, f.label) for f in message.field]


def test_shipped_google_rpc_matches_the_runtime(tmp_path: Path) -> None:
    shipped = {
        f"{file.package}.{message.name}": message
        for file in compile_all(tmp_path).file
        for message in file.message_type
    }
    for runtime in (error_details_pb2.ErrorInfo, status_pb2.Status):
        expected = descriptor_pb2.DescriptorProto()
        runtime.DESCRIPTOR.CopyToProto(expected)
        assert fields(shipped[runtime.DESCRIPTOR.full_name]) == fields(expected)
    assert code_pb2.Code.Value("FAILED_PRECONDITION") == 9  # code.proto is shipped too
    assert (PROTOS / "google" / "rpc" / "code.proto").exists()


def test_partition_error_carries_the_error_info_type(tmp_path: Path) -> None:
    """PartitionError.error_info is google.rpc.ErrorInfo: one vocabulary in both channels."""
    by_name = {
        f"{file.package}.{message.name}": message
        for file in compile_all(tmp_path).file
        for message in file.message_type
    }
    error_info = next(f for f in by_name["brook.v1.PartitionError"].field if f.name == "error_info")
    assert error_info.type_name == ".google.rpc.ErrorInfo"
