"""Server reflection that serves Brook's proto comments, under both reflection services.

grpcio-reflection answers from the process's descriptor pool, and the pool the generated
`*_pb2` modules fill carries no source info: `grpcurl describe` would show fields with
none of the comments that are the API's documentation. `scripts/genproto.py` therefore
also writes `brook/v1/descriptor_set.binpb` (protoc --include_source_info), and this
module serves Brook's files from it, comments included; every other file (health,
reflection, well-known types) comes from the default pool as before.

Both reflection services are registered: `grpc.reflection.v1alpha.ServerReflection`
(grpcio-reflection's servicer) and `grpc.reflection.v1.ServerReflection`, the stable name
newer tools ask for first. The v1 messages are the v1alpha messages under another
package, byte for byte, so one servicer answers both; a v1 file descriptor, derived from
the v1alpha one by renaming its package, lets tools describe the v1 service too.

Thread-safety: built once at server start; read-only afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from grpc_reflection.v1alpha import _async as reflection_aio
from grpc_reflection.v1alpha import reflection_pb2

log = logging.getLogger(__name__)

V1ALPHA_SERVICE_NAME = "grpc.reflection.v1alpha.ServerReflection"
V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
_V1ALPHA_PACKAGE = "grpc.reflection.v1alpha"
_V1_PACKAGE = "grpc.reflection.v1"
_V1_FILE_NAME = "grpc/reflection/v1/reflection.proto"


def descriptor_set_path() -> Path:
    """Where genproto writes the descriptor set with source info (beside brook.v1)."""
    from brook import v1

    return Path(v1.__file__).resolve().parent / "descriptor_set.binpb"


def load_documented_files(
    path: Path | None = None,
) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    """File name -> FileDescriptorProto with comments: Brook's files and what they import."""
    set_path = path or descriptor_set_path()
    try:
        descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(set_path.read_bytes())
    except (OSError, ValueError) as error:
        log.warning("reflection serves no comments: cannot read %s (%s)", set_path, error)
        return {}
    return {file.name: file for file in descriptor_set.file}


def v1_reflection_file() -> descriptor_pb2.FileDescriptorProto:
    """grpc/reflection/v1/reflection.proto, derived from the v1alpha file (same messages)."""
    file = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(file)
    file.name = _V1_FILE_NAME
    file.package = _V1_PACKAGE
    file.options.Clear()
    old_prefix, new_prefix = f".{_V1ALPHA_PACKAGE}.", f".{_V1_PACKAGE}."
    for message in file.message_type:
        for field in message.field:
            if field.type_name.startswith(old_prefix):
                field.type_name = new_prefix + field.type_name[len(old_prefix) :]
    for service in file.service:
        for method in service.method:
            method.input_type = new_prefix + method.input_type[len(old_prefix) :]
            method.output_type = new_prefix + method.output_type[len(old_prefix) :]
    return file


class _ServedFile:
    """What the reflection servicer needs of a file: its name, its dependencies, its proto."""

    def __init__(
        self,
        name: str,
        proto: descriptor_pb2.FileDescriptorProto,
        dependencies: list[_ServedFile],
    ) -> None:
        self.name = name
        self._proto = proto
        self.dependencies = dependencies

    def CopyToProto(self, proto: descriptor_pb2.FileDescriptorProto) -> None:
        proto.CopyFrom(self._proto)


class DocumentedPool:
    """A descriptor pool facade: the descriptor set's files with comments, the rest (health,
    reflection) from `base`.

    Implements the lookups grpcio-reflection makes (FindFileByName,
    FindFileContainingSymbol, FindMessageTypeByName, FindExtensionByNumber,
    FindAllExtensions).
    """

    def __init__(
        self,
        documented: dict[str, descriptor_pb2.FileDescriptorProto],
        extra_files: Iterable[descriptor_pb2.FileDescriptorProto] = (),
        base: descriptor_pool.DescriptorPool | None = None,
    ) -> None:
        self._base = base or descriptor_pool.Default()
        # Files served as written (with comments); a process need not have imported them.
        self._files = {**documented, **{file.name: file for file in extra_files}}
        self._symbols: dict[str, str] = {}
        for file in self._files.values():
            for symbol in _symbols_of(file):
                self._symbols[symbol] = file.name
        self._served: dict[str, _ServedFile] = {}

    def FindFileByName(self, name: str) -> _ServedFile:
        if name in self._files:
            return self._serve_proto(name)
        return self._serve_descriptor(self._base.FindFileByName(name))

    def FindFileContainingSymbol(self, symbol: str) -> _ServedFile:
        owner = self._symbols.get(symbol)
        if owner is None and "." in symbol:  # a field or enum value: look up its parent
            owner = self._symbols.get(symbol.rsplit(".", 1)[0])
        if owner is not None:
            return self._serve_proto(owner)
        return self._serve_descriptor(self._base.FindFileContainingSymbol(symbol))

    def FindMessageTypeByName(self, name: str) -> Any:
        return self._base.FindMessageTypeByName(name)

    def FindExtensionByNumber(self, message: Any, number: int) -> Any:
        return self._base.FindExtensionByNumber(message, number)

    def FindAllExtensions(self, message: Any) -> Any:
        return self._base.FindAllExtensions(message)

    def _serve_descriptor(self, descriptor: FileDescriptor) -> _ServedFile:
        served = self._served.get(descriptor.name)
        if served is None:
            proto = descriptor_pb2.FileDescriptorProto()
            descriptor.CopyToProto(proto)
            dependencies = [self.FindFileByName(dependency.name) for dependency in
                            descriptor.dependencies]  # fmt: skip
            served = _ServedFile(descriptor.name, proto, dependencies)
            self._served[descriptor.name] = served
        return served

    def _serve_proto(self, name: str) -> _ServedFile:
        served = self._served.get(name)
        if served is None:
            proto = self._files[name]
            dependencies = [self.FindFileByName(dependency) for dependency in proto.dependency]
            served = _ServedFile(name, proto, dependencies)
            self._served[name] = served
        return served


def _symbols_of(file: descriptor_pb2.FileDescriptorProto) -> list[str]:
    """Fully qualified names of a file's messages (nested too), enums, services, methods."""
    prefix = f"{file.package}." if file.package else ""
    symbols = [prefix + enum.name for enum in file.enum_type]
    for message in file.message_type:
        symbols += _message_symbols(prefix + message.name, message)
    for service in file.service:
        symbols.append(prefix + service.name)
        symbols += [f"{prefix}{service.name}.{method.name}" for method in service.method]
    return symbols


def _message_symbols(name: str, message: descriptor_pb2.DescriptorProto) -> list[str]:
    symbols = [name, *(f"{name}.{enum.name}" for enum in message.enum_type)]
    for nested in message.nested_type:
        symbols += _message_symbols(f"{name}.{nested.name}", nested)
    return symbols


def enable_reflection(service_names: Iterable[str], server: grpc.aio.Server) -> list[str]:
    """Registers both reflection services on `server`; returns the names they list."""
    names = sorted({*service_names, V1ALPHA_SERVICE_NAME, V1_SERVICE_NAME})
    pool = DocumentedPool(load_documented_files(), extra_files=[v1_reflection_file()])
    servicer = reflection_aio.ReflectionServicer(names, pool=pool)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(service, {"ServerReflectionInfo": handler})
            for service in (V1ALPHA_SERVICE_NAME, V1_SERVICE_NAME)
        ]
    )
    return names
