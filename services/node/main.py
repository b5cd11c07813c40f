"""`brook node`: the storage node process.

    brook node --node-id N --listen HOST:PORT --data-dir DIR --etcd HOST:PORT
               [--rack R] [--advertise HOST:PORT] [--ready-file F]
               [--cluster-name NAME] [--log-level LEVEL] [limit flags, see --help]

Start: connect to etcd, load the metadata cache, open the logs of the partitions etcd
places here (deleting logs of topics that are gone), serve StorageService, ReplicaService
and RecordService (plain records, forwarded to leaders), register the node under a lease,
then write the ready file. Until the node is registered, and whenever its lease is lost,
it leads nothing (every partition it leads answers NOT_LEADER and no acks=all produce
completes); after a lost lease it registers again and re-reads its partitions from etcd
before leading again.

SIGTERM/SIGINT: health NOT_SERVING, long-polls and streams end, in-flight calls drain
(bounded), logs are flushed and closed, the lease is revoked (so the coordinator moves
leadership at once), exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from brook.clock import SYSTEM_CLOCK
from brook.errors import BrookError
from brook.services.common.metrics import MetricsEndpoint, MetricsOptions, family
from brook.services.common.process import (
    add_common_arguments,
    advertised_address,
    write_ready_file,
)
from brook.services.common.server import GrpcServer, configure_logging, run_until_signal
from brook.services.common.tls import process_security
from brook.services.metadata.acls import AccessControl
from brook.services.metadata.cache import MetadataCache
from brook.services.metadata.model import NodeInfo
from brook.services.metadata.quotas import QuotaControl
from brook.services.metadata.replication_throttle import ThrottleCache
from brook.services.metadata.store import MetadataStore
from brook.services.node import record_service, replica_service, storage_service
from brook.services.node.config import NodeLimits, add_limit_arguments, limits_from_args
from brook.services.node.data_path import Closing, DataPath
from brook.services.node.fetcher import FetcherManager
from brook.services.node.lease_keeper import LeaseKeeper
from brook.services.node.node_metrics import NodeSampler
from brook.services.node.record_service import PeerChannels, RecordRouter, RecordService
from brook.services.node.replica_manager import ReplicaManager
from brook.services.node.replica_service import ReplicaService
from brook.services.node.replication_throttle import NodeThrottle
from brook.services.node.storage_service import StorageService

log = logging.getLogger("brook.node")

# Bound on loading the first metadata snapshot and opening the local logs at start.
STARTUP_RECONCILE_TIMEOUT_S = 120.0
# Room above the largest fetch response for message framing.
RESPONSE_OVERHEAD_BYTES = 1 << 20


# Niceness of the I/O threads above the event loop's: under CPU contention (a storm of
# log opens on a shared 2-core box) the kernel runs the loop first, so the lease
# keep-alive and request handling do not wait behind disk work (defect 4).
IO_THREAD_NICENESS = 10


def lower_thread_priority() -> None:
    """Executor thread initializer: this thread alone gets a higher niceness (Linux
    threads are scheduled as tasks, each with its own)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), IO_THREAD_NICENESS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="brook node", description="Run a Brook storage node.")
    parser.add_argument("--node-id", type=int, required=True, help="stable id of this node")
    parser.add_argument("--data-dir", type=Path, required=True, help="where the logs live")
    parser.add_argument("--rack", default="", help="failure domain, for replica placement")
    add_common_arguments(parser, listen_default="127.0.0.1:0")
    add_limit_arguments(parser)
    return parser


class StorageNode:
    """One storage node: owns its store, cache, replicas, fetchers, server and lease."""

    def __init__(self, args: argparse.Namespace, limits: NodeLimits) -> None:
        self.args = args
        self.limits = limits
        self.node_id: int = args.node_id
        self.process_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # TLS, authentication, peer channels and etcd security (common/tls.py).
        self.security = process_security(args)
        self.store = MetadataStore(args.etcd, cluster_name=args.cluster_name,
                                   security=self.security.etcd)
        self.cache = MetadataCache(self.store)
        self.access = AccessControl.from_args(args, self.store)  # authorization (issue 11)
        # Client quotas, fed by an etcd watch (services/metadata/quotas.py).
        self.quota_control = QuotaControl(self.store)
        # The reassignment replication throttle, fed by an etcd watch (issue 13).
        self.throttle = NodeThrottle(SYSTEM_CLOCK)
        self.throttle_cache = ThrottleCache(self.store)
        self.throttle_cache.add_listener(self._throttle_changed)
        # The registration lease, kept alive on its own thread (lease_keeper.py).
        self.lease = LeaseKeeper(args.etcd, args.cluster_name, self.security.etcd)
        # True until registered, and from a lost lease until registered again.
        self.fenced = True
        self.closing = Closing()
        self.io_executor = ThreadPoolExecutor(limits.io_threads, thread_name_prefix="node-io",
                                              initializer=lower_thread_priority)
        self.manager = ReplicaManager(
            self.node_id, args.data_dir, limits,
            store=self.store, cache=self.cache, clock=SYSTEM_CLOCK,
            leadership_valid=self.leadership_valid, executor=self.io_executor,
        )
        self.fetchers = FetcherManager(self.manager, limits, self.node_id, SYSTEM_CLOCK,
                                       throttle=self.throttle.inbound)
        self.data_path = DataPath(self.manager, limits, SYSTEM_CLOCK, self.closing)
        self.manager.on_roles_changed = self.fetchers.update
        self.server = GrpcServer(
            args.listen,
            max_message_bytes=limits.request_max_bytes,
            max_send_message_bytes=limits.fetch_max_bytes + RESPONSE_OVERHEAD_BYTES,
            max_concurrent_rpcs=limits.concurrent_rpcs_max,
            loop_lag_warn_ms=limits.loop_lag_warn_ms,
            security=self.security.server,
        )
        self.storage_service = StorageService(self.data_path, limits,
                                              authz=self.access.authorizer,
                                              quotas=self.quota_control.quotas,
                                              replicas=lambda: self.manager.replicas,
                                              data_dir=str(args.data_dir),
                                              node_id=self.node_id)
        self.replica_service = ReplicaService(self.data_path, limits,
                                              authz=self.access.authorizer,
                                              throttle=self.throttle.outbound)
        self.server.add_service(storage_service.SERVICE_NAME, self.storage_service.register)
        self.server.add_service(replica_service.SERVICE_NAME, self.replica_service.register)
        # The record API: plain records from any node, forwarded to leaders over gRPC. Its
        # CPU work (parsing, encoding, decoding records) runs on niced threads, as disk I/O
        # does: under CPU contention the kernel runs the event loop first.
        peer_receive_bytes = limits.fetch_max_bytes + RESPONSE_OVERHEAD_BYTES
        self.record_executor = ThreadPoolExecutor(
            limits.record_threads, thread_name_prefix="node-records",
            initializer=lower_thread_priority,
        )
        self.record_router = RecordRouter(
            self.cache, limits, SYSTEM_CLOCK, self.closing,
            PeerChannels(limits.record_peer_channels_max, peer_receive_bytes,
                         limits.request_max_bytes,
                         lambda: [node.address for node in self.cache.nodes.values()]),
            receive_limit_bytes=peer_receive_bytes,
            executor=self.record_executor,
        )
        self.record_service = RecordService(self.record_router, limits,
                                            self.quota_control.quotas)
        self.server.add_service(record_service.SERVICE_NAME, self.record_service.register)
        self.address = ""
        self._lease_task: asyncio.Task[None] | None = None
        self._stopping = False
        # Prometheus /metrics (--metrics-listen; services/common/metrics.py).
        self.metrics_options = MetricsOptions.from_args(args)
        self.metrics = MetricsEndpoint(self.metrics_options.listen, role="node",
                                       security=self.security.http)

    def _throttle_changed(self) -> None:
        rate = self.throttle_cache.rate_for(self.node_id)
        gauge = family("brook_node_replication_throttle_rate_bytes")
        gauge.labels("in").set(rate)
        gauge.labels("out").set(rate)
        if self.throttle.set_rate(rate):
            log.info("replication throttle: %s", f"{rate} bytes/s" if rate else "off")
            self.fetchers.throttle_changed()

    def leadership_valid(self) -> bool:
        """True while this node may act as a leader: registered, lease surely valid."""
        return not self.fenced and self.lease.time_left_s() > 0

    def node_info(self) -> NodeInfo:
        return NodeInfo(self.node_id, self.address, self.args.rack, self.process_id)

    async def start(self) -> None:
        await self.store.connect()
        await self.cache.start()
        await self.access.start()
        await self.quota_control.start()
        await self.throttle_cache.start()
        self.manager.start()
        self.data_path.start()
        await asyncio.wait_for(self.manager.reconciled.wait(), STARTUP_RECONCILE_TIMEOUT_S)
        # Before registering (an unregistered node is never elected): a wiped data
        # directory must not stay in the ISRs its old logs were in.
        await self.manager.leave_isrs_if_fresh_storage()
        await self.server.start()
        self.address = advertised_address(self.server.address, self.args.advertise)
        await self.lease.start()
        await self.lease.register(self.node_info(), self.limits.lease_ttl_s)
        self.fenced = False
        self.manager.leadership_restored()
        self._lease_task = asyncio.get_running_loop().create_task(
            self._watch_lease(), name="lease-watch"
        )
        log.info("node %d serving on %s (advertised %s), data in %s", self.node_id,
                 self.server.address, self.address, self.args.data_dir)
        self.metrics.add_sampler(NodeSampler(
            self.manager, self.data_path, self.args.data_dir, self.metrics_options.budget(),
            SYSTEM_CLOCK, self.leadership_valid,
        ).sample)
        metrics_address = self.metrics.start()
        if self.args.ready_file:
            write_ready_file(self.args.ready_file, self.address, metrics_address=metrics_address)

    async def _watch_lease(self) -> None:
        """On a lost lease: stop leading at once, then register again (bounded back-off)."""
        while not self._stopping:
            await self.lease.lost.wait()
            if self._stopping:
                return
            self.fenced = True
            self.manager.fence_all()
            log.error("node lease lost: no longer acting as leader; registering again")
            delay_s = 0.1
            while not self._stopping:
                try:
                    await self.lease.register(self.node_info(), self.limits.lease_ttl_s)
                    # The cache may lag etcd: read what we lead straight from etcd first.
                    await self.manager.refresh_from_etcd()
                    self.fenced = False
                    self.manager.leadership_restored()
                    log.info("node %d registered again", self.node_id)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    log.warning("registering again failed: %s; retrying in %.1fs", error,
                                delay_s)
                    await asyncio.sleep(delay_s)
                    delay_s = min(delay_s * 2, 2.0)

    async def stop(self) -> None:
        self._stopping = True
        self.closing.set()
        if self._lease_task is not None:
            self._lease_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lease_task
        await self.metrics.stop()
        await self.fetchers.close()
        await self.server.stop(self.limits.drain_timeout_s)
        await self.record_router.close()
        await self.data_path.close()  # queued acks=none appends land first
        self.fenced = True
        await self.manager.close()
        with contextlib.suppress(Exception):
            await self.lease.revoke()
        await self.lease.stop()
        await self.access.stop()
        await self.quota_control.stop()
        await self.throttle_cache.stop()
        await self.cache.stop()
        await self.store.close()
        self.io_executor.shutdown(wait=True)
        self.record_executor.shutdown(wait=True)
        log.info("node %d stopped", self.node_id)


async def run(args: argparse.Namespace, limits: NodeLimits) -> int:
    node = StorageNode(args, limits)
    try:
        await run_until_signal(node.start, node.stop,
                               stop_timeout_s=limits.drain_timeout_s + 10.0)
    except (BrookError, OSError, TimeoutError) as error:
        log.error("node %d could not start: %s", args.node_id, error)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(node.stop(), limits.drain_timeout_s + 10.0)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    limits = limits_from_args(args)
    configure_logging(f"node-{args.node_id}", args.log_level, args.log_format)
    return asyncio.run(run(args, limits))


if __name__ == "__main__":
    sys.exit(main())
