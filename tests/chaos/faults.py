"""The cluster fault tests run on, and the faults they inject (real processes, real signals).

`start_chaos_cluster` starts coordinators and storage nodes as real processes with short
leases (`FAST_*_ARGS`) so a failover takes seconds, not the production defaults' ten or
so. `ChaosCluster` maps node ids to process names and addresses and injects faults:
SIGKILL, SIGSTOP/SIGCONT (a hung process: its TCP connections stay open, its etcd lease
lapses) and restarts on the same address.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from brook.client.admin import Admin
from tests.harness.cluster import LocalCluster

# Node flags for fast failover: the shortest lease etcd grants reliably (2 s), quick ISR
# checks and follower long-polls, and a short SIGTERM drain for restarts.
FAST_NODE_ARGS = [
    "--lease-ttl-s", "2",
    "--isr-check-interval-ms", "100",
    "--replica-fetch-wait-ms", "200",
    "--drain-timeout-s", "2",
]
# Coordinator flags: a 2 s role lease (standby takeover time); periodic preferred-leader
# elections off, so leadership moves only when a test says so (or a node dies).
FAST_COORDINATOR_ARGS = ["--lease-ttl-s", "2", "--preferred-election-interval-s", "0"]
# Topic configs of every fault test: acks=all needs 2 in-sync replicas; a follower that
# stopped fetching leaves the ISR after 2 s.
TOPIC_CONFIGS = {"min_insync_replicas": "2", "replica_lag_max_ms": "2000"}
LEASE_TTL_S = 2.0


@dataclass
class ChaosCluster:
    """A LocalCluster of coordinators and nodes, addressed by node id."""

    cluster: LocalCluster
    node_ids: list[int]
    coordinators: list[str]
    stopped: set[str] = field(default_factory=set)

    @property
    def bootstrap(self) -> str:
        """Every coordinator's address: clients fall over to a standby by themselves."""
        return ",".join(self.cluster.address(name) for name in self.coordinators)

    @staticmethod
    def node_name(node_id: int) -> str:
        return f"node-{node_id}"

    def node_address(self, node_id: int) -> str:
        return self.cluster.address(self.node_name(node_id))

    def running(self, name: str) -> bool:
        return self.cluster.processes[name].running

    def kill(self, name: str) -> None:
        """SIGKILL (kill -9) to the process group; returns once the process is gone."""
        self.stopped.discard(name)
        self.cluster.kill(name, signal.SIGKILL)

    def pause(self, name: str) -> None:
        """SIGSTOP: the process hangs with its connections open."""
        self.cluster.kill(name, signal.SIGSTOP)
        self.stopped.add(name)

    def resume(self, name: str) -> None:
        self.cluster.kill(name, signal.SIGCONT)
        self.stopped.discard(name)

    def restart(self, name: str) -> None:
        """Starts `name` again on its old address (a killed process) and waits until ready."""
        self.stopped.discard(name)
        self.cluster.restart(name, keep_address=True)

    def heal(self) -> None:
        """Resumes every paused process and restarts every dead one."""
        for name in list(self.stopped):
            self.resume(name)
        for name in self.cluster.processes:
            if not self.running(name):
                self.restart(name)

    def log_lines(self, name: str, needle: str) -> list[str]:
        """Lines of `name`'s log (all its runs) that contain `needle`."""
        path = self.cluster.processes[name].log_path
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if needle in line]

    async def active_coordinator(self, admin: Admin) -> str:
        """The name of the coordinator process that holds the role now."""
        metadata = await admin.get_metadata()
        address = metadata.coordinator.address
        for name in self.coordinators:
            if self.cluster.address(name) == address:
                return name
        raise LookupError(f"no coordinator of ours serves at {address!r}")


def start_chaos_cluster(
    local_cluster: Callable[..., LocalCluster],
    *,
    nodes: int = 3,
    coordinators: int = 1,
    node_args: Sequence[str] = FAST_NODE_ARGS,
    coordinator_args: Sequence[str] = FAST_COORDINATOR_ARGS,
) -> ChaosCluster:
    """Starts `coordinators` coordinators and nodes 1..`nodes` (in parallel), ready."""
    cluster = local_cluster()
    names = [f"coordinator-{index}" for index in range(coordinators)]
    for name in names:
        cluster.add_coordinator(name, args=list(coordinator_args))
    node_ids = list(range(1, nodes + 1))
    for node_id in node_ids:
        cluster.add_node(node_id, args=list(node_args))
    cluster.start()
    return ChaosCluster(cluster, node_ids, names)
