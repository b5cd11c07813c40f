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
from brook.services.common.metrics import MetricsEndpoint, MetricsOptions
from brook.services.common.process import (
    add_common_arguments,
    advertised_address,
    run_main,
    write_ready_file,
)
from brook.services.common.server import GrpcServer
from brook.services.common.tls import process_security
from brook.services.groups import lag_monitor, limits
from brook.services.groups.lag_monitor import LagMonitor
from brook.services.groups.manager import GroupManager
from brook.services.groups.service import GroupService, describable_topics
from brook.services.groups.state import GroupConfig
from brook.services.metadata.acls import AccessControl
from brook.services.metadata.cache import MetadataCache
from brook.services.metadata.keys import ROLE_GROUPS
from brook.services.metadata.model import Endpoint
from brook.services.metadata.quotas import QuotaControl
from brook.services.metadata.role import CampaignBackoff, RoleHolder
from brook.services.metadata.store import Lease, MetadataStore
from brook.v1 import groups_pb2_grpc

log = logging.getLogger("brook.groups")


def build_parser() -> argparse.ArgumentParser:
    defaults = GroupConfig()
    parser = argparse.ArgumentParser(
        prog="brook groups",
        description="Brook group manager: consumer-group membership, assignment, offsets.",
    )
    add_common_arguments(parser, listen_default="127.0.0.1:7080")
    parser.add_argument(
        "--lease-ttl-s",
        type=int,
        default=limits.LEASE_TTL_S_DEFAULT,
        help="groups role lease TTL (failover time)",
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
        default=limits.COMMIT_FLUSH_INTERVAL_MS_DEFAULT,
        help="how long offset commits linger to share one etcd transaction",
    )
    parser.add_argument(
        "--lag-sample-interval-ms",
        type=int,
        default=int(lag_monitor.INTERVAL_S_DEFAULT * 1000),
        help="how often consumer lag (records and seconds) is sampled for metrics",
    )
    parser.add_argument(
        "--lag-sample-partitions-max",
        type=int,
        default=lag_monitor.PARTITIONS_MAX_DEFAULT,
        help="group partitions one lag round measures (the rest in later rounds)",
    )
    parser.add_argument(
        "--lag-history-partitions-max",
        type=int,
        default=lag_monitor.HISTORY_PARTITIONS_MAX_DEFAULT,
        help="group partitions whose one-hour lag history is kept",
    )
    return parser


class GroupsProcess:
    """Owns the store, cache, gRPC server, group manager and the role campaign."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        # TLS, authentication, peer channels and etcd security (common/tls.py).
        self.security = process_security(args)
        self.store = MetadataStore(
            args.etcd, cluster_name=args.cluster_name, security=self.security.etcd
        )
        self.cache = MetadataCache(self.store)
        self.access = AccessControl.from_args(args, self.store)  # authorization (issue 11)
        # Client quotas, fed by an etcd watch: streams_max bounds WatchGroup streams.
        self.quota_control = QuotaControl(self.store)
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
            # Regex subscriptions match only topics the member's principal may describe.
            topic_visible=describable_topics(self.access.authorizer),
        )
        if self.access.cache is not None:
            self.access.cache.add_listener(self.manager.on_acls_changed)
        self.server = GrpcServer(args.listen, security=self.security.server)
        self.endpoint: Endpoint | None = None
        self.role: RoleHolder | None = None
        # Prometheus /metrics (--metrics-listen) and the consumer lag it exports.
        metrics_options = MetricsOptions.from_args(args)
        self.metrics = MetricsEndpoint(metrics_options.listen, role="groups",
                                       security=self.security.http)
        self.lag = LagMonitor(
            self.manager,
            interval_s=args.lag_sample_interval_ms / 1000,
            partitions_max=args.lag_sample_partitions_max,
            history_partitions_max=args.lag_history_partitions_max,
            budget=metrics_options.budget(),
        )

    async def start(self) -> None:
        await self.store.connect()
        await self.cache.start()
        await self.access.start()
        await self.quota_control.start()
        service = GroupService(
            self.manager, authz=self.access.authorizer, lag_monitor=self.lag,
            quotas=self.quota_control.quotas,
        )
        self.server.add_service(
            "brook.v1.GroupService",
            lambda s: groups_pb2_grpc.add_GroupServiceServicer_to_server(service, s),
        )
        await self.server.start()
        address = advertised_address(self.server.address, self.args.advertise)
        self.endpoint = Endpoint(id=f"groups-{uuid.uuid4().hex[:12]}", address=address)
        self.role = RoleHolder(
            self.store,
            ROLE_GROUPS,
            self.endpoint,
            act=self._act,
            ttl_s=self.args.lease_ttl_s,
            backoff=CampaignBackoff(limits.CAMPAIGN_BACKOFF_S_MIN, limits.CAMPAIGN_BACKOFF_S_MAX),
        )
        self.role.start()
        self.lag.start()
        self.metrics.add_sampler(self.lag.sample_metrics)
        metrics_address = self.metrics.start()
        if self.args.ready_file:
            write_ready_file(self.args.ready_file, address, metrics_address=metrics_address)
        log.info("group manager %s serving on %s", self.endpoint.id, address)

    async def _act(self, lease: Lease) -> None:
        """One term as the active manager: load from etcd and act until etcd refuses a
        write as no longer ours (fenced). The RoleHolder cancels this when the lease is
        lost; either way the manager stops acting at once (in `finally`)."""
        assert self.endpoint is not None
        try:
            role_key = self.store.keys.role(ROLE_GROUPS)
            current = await asyncio.wait_for(
                self.store.client.get(role_key), self.store.request_timeout_s
            )
            if current is None or Endpoint.from_json(current.value).id != self.endpoint.id:
                raise BrookError("NOT_COORDINATOR", "lost the groups role right after winning")
            await self.manager.activate(role_key, int(current.create_revision))
            await self.manager.fenced.wait()
            log.warning("fenced: etcd refused a write as no longer ours; stepping down")
        finally:
            await self.manager.deactivate(flush=False)

    async def stop(self) -> None:
        await self.server.set_serving(False)
        await self.metrics.stop()
        await self.lag.stop()
        # Flush pending writes while the role is still ours, then hand the role over now
        # (revoke), not after the TTL.
        with contextlib.suppress(Exception):
            await self.manager.deactivate(flush=True)
        if self.role is not None:
            await self.role.stop()
        await self.server.stop(limits.STOP_GRACE_S)
        await self.manager.close()
        await self.quota_control.stop()
        await self.access.stop()
        await self.cache.stop()
        await self.store.close()


def main(argv: list[str] | None = None) -> int:
    return run_main("groups", build_parser, GroupsProcess, argv, label="group manager")


if __name__ == "__main__":
    raise SystemExit(main())
