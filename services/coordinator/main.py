"""The coordinator process: `brook coordinator --listen HOST:PORT --etcd HOST:PORT ...`.

Every coordinator process serves MetadataService from its cache and campaigns for the
"coordinator" role. The winner (active) serves AdminService and runs the controller
(leader elections on node loss, preferred-leader elections); standbys answer Admin calls
with NOT_COORDINATOR naming the active one. Losing the lease stops the controller at
once; the process then campaigns again. SIGTERM: health NOT_SERVING, release the role
(revoke the lease, so a standby takes over without waiting for the TTL), drain calls,
exit 0.

Coordinators only read and write etcd; they never call storage nodes.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import uuid

from brook.errors import BrookError
from brook.services.common.process import (
    add_common_arguments,
    advertised_address,
    cancel_and_wait,
    run_main,
    write_ready_file,
)
from brook.services.common.server import GrpcServer
from brook.services.coordinator.admin import AdminServicer
from brook.services.coordinator.controller import Controller
from brook.services.coordinator.metadata_service import MetadataServicer
from brook.services.metadata.cache import MetadataCache
from brook.services.metadata.keys import ROLE_COORDINATOR
from brook.services.metadata.model import Endpoint
from brook.services.metadata.store import Lease, MetadataStore
from brook.v1 import admin_pb2_grpc, metadata_pb2_grpc

log = logging.getLogger("brook.coordinator")

# Back-off bounds between campaign attempts while etcd is unreachable.
CAMPAIGN_RETRY_MIN_S = 0.2
CAMPAIGN_RETRY_MAX_S = 5.0
# In-flight calls get this long to finish on shutdown.
STOP_GRACE_S = 3.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brook coordinator",
        description="Brook coordinator: Admin and Metadata services, leader elections.",
    )
    add_common_arguments(parser, listen_default="127.0.0.1:7070")
    parser.add_argument(
        "--lease-ttl-s", type=int, default=6, help="coordinator lease TTL (failover time)"
    )
    parser.add_argument(
        "--preferred-election-interval-s",
        type=float,
        default=10.0,
        help="seconds between preferred-leader elections; 0 turns them off",
    )
    return parser


class CoordinatorProcess:
    """Owns the store, cache, gRPC server, controller and the role campaign."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.store = MetadataStore(args.etcd, cluster_name=args.cluster_name)
        self.cache = MetadataCache(self.store)
        self.controller = Controller(
            self.store,
            self.cache,
            preferred_election_interval_s=args.preferred_election_interval_s,
        )
        self.server = GrpcServer(args.listen)
        self.endpoint: Endpoint | None = None
        self._role_task: asyncio.Task[None] | None = None
        self._lease: Lease | None = None
        self.admin: AdminServicer | None = None

    async def start(self) -> None:
        await self.store.connect()
        await self.cache.start()
        admin = self.admin = AdminServicer(self.store, self.cache, self.controller)
        metadata = MetadataServicer(self.cache)
        self.server.add_service(
            "brook.v1.AdminService",
            lambda s: admin_pb2_grpc.add_AdminServiceServicer_to_server(admin, s),
        )
        self.server.add_service(
            "brook.v1.MetadataService",
            lambda s: metadata_pb2_grpc.add_MetadataServiceServicer_to_server(metadata, s),
        )
        await self.server.start()
        address = advertised_address(self.server.address, self.args.advertise)
        self.endpoint = Endpoint(id=f"coordinator-{uuid.uuid4().hex[:12]}", address=address)
        admin.endpoint_id = self.endpoint.id
        self._role_task = asyncio.create_task(self._hold_role(), name="coordinator-role")
        if self.args.ready_file:
            write_ready_file(self.args.ready_file, address)
        log.info("coordinator %s serving on %s", self.endpoint.id, address)

    async def _hold_role(self) -> None:
        assert self.endpoint is not None
        backoff_s = CAMPAIGN_RETRY_MIN_S
        while True:
            try:
                self._lease = await self.store.campaign(
                    ROLE_COORDINATOR, self.endpoint, self.args.lease_ttl_s, fence=True
                )
            except BrookError as error:
                log.warning("campaign failed (%s); retrying in %.1fs", error, backoff_s)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, CAMPAIGN_RETRY_MAX_S)
                continue
            backoff_s = CAMPAIGN_RETRY_MIN_S
            log.info("active coordinator")
            await self.controller.run(self._lease)
            lease, self._lease = self._lease, None
            await lease.close()

    async def stop(self) -> None:
        await self.server.set_serving(False)
        await cancel_and_wait(self._role_task)
        if self._lease is not None:
            await self._lease.revoke()  # hand the role over now, not after the TTL
            self._lease = None
        await self.server.stop(STOP_GRACE_S)
        await self.cache.stop()
        await self.store.close()


def main(argv: list[str] | None = None) -> int:
    return run_main("coordinator", build_parser, CoordinatorProcess, argv)


if __name__ == "__main__":
    raise SystemExit(main())
