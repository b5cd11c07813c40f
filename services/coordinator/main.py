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
import logging
import uuid
from pathlib import Path

from brook.services.common.metrics import MetricsEndpoint, MetricsOptions
from brook.services.common.process import (
    add_common_arguments,
    advertised_address,
    run_main,
    write_ready_file,
)
from brook.services.common.server import GrpcServer
from brook.services.common.tls import process_security
from brook.services.coordinator import limits
from brook.services.coordinator.admin import AdminServicer
from brook.services.coordinator.balance_driver import BalanceDriver
from brook.services.coordinator.console import Console
from brook.services.coordinator.controller import Controller
from brook.services.coordinator.metadata_service import MetadataServicer
from brook.services.metadata.acls import AccessControl
from brook.services.metadata.cache import MetadataCache
from brook.services.metadata.keys import ROLE_COORDINATOR
from brook.services.metadata.model import Endpoint
from brook.services.metadata.quotas import QuotaCache
from brook.services.metadata.role import CampaignBackoff, RoleHolder
from brook.services.metadata.store import MetadataStore
from brook.v1 import admin_pb2_grpc, metadata_pb2_grpc

log = logging.getLogger("brook.coordinator")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brook coordinator",
        description="Brook coordinator: Admin and Metadata services, leader elections.",
    )
    add_common_arguments(parser, listen_default="127.0.0.1:7070")
    parser.add_argument(
        "--lease-ttl-s",
        type=int,
        default=limits.LEASE_TTL_S_DEFAULT,
        help="coordinator lease TTL (failover time)",
    )
    parser.add_argument(
        "--preferred-election-interval-s",
        type=float,
        default=limits.PREFERRED_ELECTION_INTERVAL_S_DEFAULT,
        help="seconds between preferred-leader elections; 0 turns them off",
    )
    parser.add_argument(
        "--replicas-per-node-max",
        type=int,
        default=limits.REPLICAS_PER_NODE_MAX_DEFAULT,
        help="partition replicas one storage node may carry; CreateTopic and CreatePartitions"
        " refuse a layout past it",
    )
    parser.add_argument(
        "--auto-balance",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="move replicas automatically when a node joins, a node is decommissioned, or"
        " the replica skew passes --balance-skew-threshold (default on)",
    )
    parser.add_argument(
        "--balance-max-moves-in-flight",
        type=_positive_int,
        default=limits.BALANCE_MAX_MOVES_IN_FLIGHT_DEFAULT,
        help="partition moves automatic balancing keeps running at once",
    )
    parser.add_argument(
        "--balance-skew-threshold",
        type=_positive_int,
        default=limits.BALANCE_SKEW_THRESHOLD_DEFAULT,
        help="replica-count difference between live active nodes that starts balancing",
    )
    parser.add_argument(
        "--console-listen",
        default="",
        metavar="HOST:PORT",
        help="serve the read-only web console here (port 0: a free one, written to the ready"
        " file as console_address); empty, the default: off. With --tls-cert it is HTTPS"
        " and shows each viewer what the viewer's own principal may see",
    )
    parser.add_argument(
        "--console-token-file",
        default="",
        metavar="PATH",
        help="a static bearer token the console requires (Authorization: Bearer TOKEN);"
        " only without TLS: a secure console authenticates viewers as gRPC callers",
    )
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"{value} is outside 1..10000")
    return value


class CoordinatorProcess:
    """Owns the store, cache, gRPC server, controller and the role campaign."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        # TLS, authentication, peer channels and etcd security (common/tls.py).
        self.security = process_security(args)
        self.store = MetadataStore(
            args.etcd, cluster_name=args.cluster_name, security=self.security.etcd
        )
        self.cache = MetadataCache(self.store)
        # Authorization (issue 11): the ACL cache also serves the ACL admin calls.
        self.access = AccessControl.from_args(args, self.store, cache_always=True)
        # Client quotas, for AlterClientQuotas/DescribeClientQuotas (nodes enforce them).
        self.quota_cache = QuotaCache(self.store)
        self.controller = Controller(
            self.store,
            self.cache,
            preferred_election_interval_s=args.preferred_election_interval_s,
        )
        # Automatic balancing and decommissioning (issue 13): runs while active.
        self.balancer = BalanceDriver(
            self.controller,
            enabled=args.auto_balance,
            max_moves_in_flight=args.balance_max_moves_in_flight,
            skew_threshold=args.balance_skew_threshold,
        )
        self.server = GrpcServer(args.listen, security=self.security.server)
        self.endpoint: Endpoint | None = None
        self.role: RoleHolder | None = None
        self.admin: AdminServicer | None = None
        # Prometheus /metrics (--metrics-listen; services/common/metrics.py).
        self.metrics = MetricsEndpoint(MetricsOptions.from_args(args).listen, role="coordinator",
                                       security=self.security.http)
        # The read-only web console (--console-listen; console.py), started after gRPC.
        self.console: Console | None = None
        self._console_token = (
            Path(args.console_token_file).read_text().strip() if args.console_token_file else ""
        )

    async def start(self) -> None:
        await self.store.connect()
        await self.cache.start()
        await self.access.start()
        await self.quota_cache.start()
        admin = self.admin = AdminServicer(
            self.store,
            self.cache,
            self.controller,
            replicas_per_node_max=self.args.replicas_per_node_max,
            authz=self.access.authorizer,
            acls=self.access.cache,
            quotas=self.quota_cache,
            balancer=self.balancer,
        )
        metadata = MetadataServicer(self.cache, authz=self.access.authorizer)
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
        self.role = RoleHolder(
            self.store,
            ROLE_COORDINATOR,
            self.endpoint,
            act=self.controller.run,
            ttl_s=self.args.lease_ttl_s,
            fence=True,
            backoff=CampaignBackoff(limits.CAMPAIGN_BACKOFF_S_MIN, limits.CAMPAIGN_BACKOFF_S_MAX),
        )
        self.role.start()
        self.metrics.add_sampler(self.controller.sample_metrics)
        metrics_address = self.metrics.start()
        console_address = ""
        if self.args.console_listen:
            self.console = Console(
                self.args.console_listen, lambda: address, token=self._console_token,
                security=self.security.http,
            )
            console_address = await self.console.start()
        if self.args.ready_file:
            write_ready_file(
                self.args.ready_file,
                address,
                metrics_address=metrics_address,
                console_address=console_address,
            )
        log.info("coordinator %s serving on %s", self.endpoint.id, address)

    async def stop(self) -> None:
        await self.server.set_serving(False)
        await self.metrics.stop()
        if self.console is not None:
            await self.console.stop()
        if self.role is not None:
            await self.role.stop()  # hand the role over now, not after the TTL
        await self.server.stop(limits.STOP_GRACE_S)
        await self.access.stop()
        await self.quota_cache.stop()
        await self.cache.stop()
        await self.store.close()


def main(argv: list[str] | None = None) -> int:
    return run_main("coordinator", build_parser, CoordinatorProcess, argv)


if __name__ == "__main__":
    raise SystemExit(main())
