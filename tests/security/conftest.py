"""Fixtures of the security tests: an in-process TLS server that answers who the caller is."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf import wrappers_pb2

from brook.services.common import principal as principals
from brook.services.common.certs import CertAuthority
from brook.services.common.server import GrpcServer, add_generic_service, unary_unary_handler
from brook.services.common.tls import ProcessSecurity, add_security_arguments

WHOAMI = "/brook.test.Whoami/Who"


@dataclass
class WhoamiServer:
    """A GrpcServer whose brook.test.Whoami/Who answers str(principal_of(context))."""

    server: GrpcServer
    security: ProcessSecurity

    @property
    def address(self) -> str:
        return self.server.address

    async def who(self, channel: grpc.aio.Channel) -> str:
        call = channel.unary_unary(
            WHOAMI,
            request_serializer=wrappers_pb2.StringValue.SerializeToString,
            response_deserializer=wrappers_pb2.StringValue.FromString,
        )
        response = await call(wrappers_pb2.StringValue(value="?"), timeout=5)
        return str(response.value)


def security_from_flags(flags: list[str]) -> ProcessSecurity:
    parser = argparse.ArgumentParser()
    add_security_arguments(parser)
    return ProcessSecurity.from_args(parser.parse_args(flags))


@pytest.fixture
def ca(tmp_path: Path) -> CertAuthority:
    authority = CertAuthority.create("security test CA")
    authority.write(tmp_path / "tls", "ca")
    return authority


@pytest.fixture
async def whoami_servers() -> AsyncIterator[Callable[[list[str]], Awaitable[WhoamiServer]]]:
    """Starts in-process servers with the given security flags; stops them at teardown and
    puts the process's anonymous authenticator back."""
    started: list[WhoamiServer] = []

    async def who(request: wrappers_pb2.StringValue, context: grpc.aio.ServicerContext) -> object:
        return wrappers_pb2.StringValue(value=str(principals.principal_of(context)))

    async def start(flags: list[str]) -> WhoamiServer:
        security = security_from_flags(flags).install()
        server = GrpcServer("127.0.0.1:0", security=security.server)
        server.add_service(
            "brook.test.Whoami",
            lambda s: add_generic_service(
                s,
                "brook.test.Whoami",
                {
                    "Who": unary_unary_handler(
                        who, wrappers_pb2.StringValue, wrappers_pb2.StringValue
                    )
                },
            ),
        )
        await server.start()
        started.append(WhoamiServer(server, security))
        return started[-1]

    try:
        yield start
    finally:
        for item in started:
            await item.server.stop(0)
        principals.set_authenticator(principals._Anonymous())
