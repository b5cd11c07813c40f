"""The group manager process: `brook groups --listen HOST:PORT --etcd HOST:PORT ...`.

Every process serves GroupService and campaigns for the "groups" role. The winner loads
groups, target assignments and committed offsets from etcd and acts; standbys answer
NOT_COORDINATOR. When the lease is lost (or etcd refuses a write because the role key is
no longer ours) the process stops acting at once, then campaigns again. SIGTERM: health
NOT_SERVING, flush pending writes, release the role (revoke the lease so a standby takes
over without waiting for the TTL), drain calls, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from brook.services.groups.manager import GroupManager
from brook.services.groups.service import GroupService
from brook.services.groups.state import GroupConfig
from brook.services.metadata.cache import MetadataCache
from brook.services.metadata.keys import ROLE_GROUPS
from brook.services.metadata.model import Endpoint
from brook.services.metadata.store import Lease, MetadataStore
from brook.v1 import groups_pb2_grpc

log = logging.getLogger("brook.groups")

# Back-off bounds between campaign attempts while etcd is unreachable.
CAMPAIGN_RETRY_MIN_S = 0.2
CAMPAIGN_RETRY_MAX_S = 5.0
# In-flight calls get this long to finish on shutdown.
STOP_GRACE_S = 3.0


def build_parser() -> argparse.ArgumentParser:
    defaults = GroupConfig()
    parser = argparse.ArgumentParser(
        prog="brook groups",
        description="Brook group manager: consumer-group membership, assignment, offsets.",
    )
    add_common_arguments(parser, listen_default="127.0.0.1:7080")
    parser.add_argument(
        "--lease-ttl-s", type=int, default=6, help="groups role lease TTL (failover time)"
    )
    parser.add_argument(
        "--heartbeat-interval-ms",
        type=int,
        default=defaults.heartbeat_interval_ms,
        help="how often members heartbeat",
    )
    parser.add_argument(
        "--session-timeout-ms",
        type=int,
        default=defaults.session_timeout_ms_default,
        help="default session timeout for members that do not ask for one",
    )
    parser.add_argument(
        "--rebalance-timeout-ms",
        type=int,
        default=defaults.rebalance_timeout_ms_default,
        help="default time a member gets to revoke partitions",
    )
    parser.add_argument(
        "--commit-flush-interval-ms",
        type=int,
        default=5,
        help="how long offset commits linger to share one etcd transaction",
    )
    return parser


class GroupsProcess:
    """Owns the store, cache, gRPC server, group manager and the role campaign."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.store = MetadataStore(args.etcd, cluster_name=args.cluster_name)
        self.cache = MetadataCache(self.store)
        defaults = GroupConfig()
        config = GroupConfig(
            heartbeat_interval_ms=args.heartbeat_interval_ms,
            reconciling_heartbeat_interval_ms=min(
                defaults.reconciling_heartbeat_interval_ms, args.heartbeat_interval_ms
            ),
            session_timeout_ms_default=args.session_timeout_ms,
            rebalance_timeout_ms_default=args.rebalance_timeout_ms,
        )
        self.manager = GroupManager(
            self.store,
            self.cache,
            config=config,
            flush_interval_ms=args.commit_flush_interval_ms,
        )
        self.server = GrpcServer(args.listen)
        self.endpoint: Endpoint | None = None
        self._role_task: asyncio.Task[None] | None = None
        self._lease: Lease | None = None

    async def start(self) -> None:
        await self.store.connect()
        await self.cache.start()
        service = GroupService(self.manager)
        self.server.add_service(
            "brook.v1.GroupService",
            lambda s: groups_pb2_grpc.add_GroupServiceServicer_to_server(service, s),
        )
        await self.server.start()
        address = advertised_address(self.server.address, self.args.advertise)
        self.endpoint = Endpoint(id=f"groups-{uuid.uuid4().hex[:12]}", address=address)
        self._role_task = asyncio.create_task(self._hold_role(), name="groups-role")
        if self.args.ready_file:
            write_ready_file(self.args.ready_file, address)
        log.info("group manager %s serving on %s", self.endpoint.id, address)

    async def _hold_role(self) -> None:
        assert self.endpoint is not None
        backoff_s = CAMPAIGN_RETRY_MIN_S
        while True:
            try:
                self._lease = await self.store.campaign(
                    ROLE_GROUPS, self.endpoint, self.args.lease_ttl_s
                )
                role_key = self.store.keys.role(ROLE_GROUPS)
                current = await self.store.client.get(role_key)
                if current is None or Endpoint.from_json(current.value).id != self.endpoint.id:
                    raise BrookError("NOT_COORDINATOR", "lost the groups role right after winning")
                await self.manager.activate(role_key, int(current.create_revision))
            except BrookError as error:
                log.warning("could not take the groups role (%s); retrying", error)
                await self._release(flush=False)
                await asyncio.sleep(backoff_s)  # back-off between attempts against etcd
                backoff_s = min(backoff_s * 2, CAMPAIGN_RETRY_MAX_S)
                continue
            backoff_s = CAMPAIGN_RETRY_MIN_S
            lease = self._lease
            assert lease is not None
            lost = asyncio.ensure_future(lease.lost.wait())
            fenced = asyncio.ensure_future(self.manager.fenced.wait())
            try:
                await asyncio.wait([lost, fenced], return_when=asyncio.FIRST_COMPLETED)
            finally:
                lost.cancel()
                fenced.cancel()
            log.warning("lost the groups role (lease lost or fenced); stepping down")
            await self._release(flush=False)

    async def _release(self, *, flush: bool) -> None:
        await self.manager.deactivate(flush=flush)
        lease, self._lease = self._lease, None
        if lease is not None:
            if flush:
                await lease.revoke()  # hand the role over now, not after the TTL
            else:
                await lease.close()

    async def stop(self) -> None:
        await self.server.set_serving(False)
        await cancel_and_wait(self._role_task)
        with contextlib.suppress(Exception):
            await self._release(flush=True)
        await self.server.stop(STOP_GRACE_S)
        await self.manager.close()
        await self.cache.stop()
        await self.store.close()


def main(argv: list[str] | None = None) -> int:
    return run_main("groups", build_parser, GroupsProcess, argv, label="group manager")


if __name__ == "__main__":
    raise SystemExit(main())
