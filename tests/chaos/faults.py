"""The cluster fault tests run on, and the faults they inject (real processes, real signals).

`start_chaos_cluster` starts coordinators and storage nodes as real processes with short
leases (`FAST_*_ARGS`) so a failover takes seconds, not the production defaults' ten or
so. `ChaosCluster` maps node ids to process names and addresses and injects faults:
SIGKILL, SIGSTOP/SIGCONT (a hung process: its TCP connections stay open, its etcd lease
lapses) and restarts on the same address. With a private `EtcdServer` (the `etcd_server`
fixture) it also pauses, kills and restarts etcd itself (same data dir and ports), and it
restarts a process with extra environment (the storage fault-injection hook, see
tests/chaos/disk.py). `heal` undoes all of it.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from brook.client.admin import Admin
from tests.harness.cluster import LocalCluster
from tests.harness.etcd import EtcdServer

# Node flags for fast failover: the shortest lease etcd grants reliably (2 s), quick ISR
# checks and follower long-polls, and a short SIGTERM drain for restarts.
FAST_NODE_ARGS = [
    "--lease-ttl-s",
    "2",
    "--isr-check-interval-ms",
    "100",
    "--replica-fetch-wait-ms",
    "200",
    "--drain-timeout-s",
    "2",
]
# Coordinator flags: a 2 s role lease (standby takeover time); periodic preferred-leader
# elections off, so leadership moves only when a test says so (or a node dies).
FAST_COORDINATOR_ARGS = ["--lease-ttl-s", "2", "--preferred-election-interval-s", "0"]
# Group manager flags: a 2 s role lease, so a standby takes over within seconds.
FAST_GROUPS_ARGS = ["--lease-ttl-s", "2"]
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
    group_managers: list[str] = field(default_factory=list)
    # The cluster's own etcd when the test may fault it (None: the shared session etcd).
    etcd: EtcdServer | None = None
    stopped: set[str] = field(default_factory=set)
    # Processes running with fault-injection environment: heal restarts them without it.
    env_faulted: set[str] = field(default_factory=set)
    etcd_paused: bool = False
    # The storage fault hook's control file every node was started with (or None); see
    # tests/chaos/disk.py. heal empties it.
    faults_file: Path | None = None

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

    def restart_with_env(self, name: str, env: Mapping[str, str]) -> None:
        """Restarts `name` with `env` added to its environment (until the next heal).

        LocalCluster has one environment for all its processes, read at spawn time, so
        it is swapped for this one spawn and put back at once."""
        saved = self.cluster.env
        self.cluster.env = {**saved, **env}
        self.env_faulted.add(name)
        try:
            self.restart(name)
        finally:
            self.cluster.env = saved

    def data_dir(self, node_id: int) -> Path:
        """The node's --data-dir (as the harness declared it)."""
        args = self.cluster.processes[self.node_name(node_id)].args
        return Path(args[args.index("--data-dir") + 1])

    # -- etcd (only with a private EtcdServer) ---------------------------------------------
    def _own_etcd(self) -> EtcdServer:
        if self.etcd is None:
            raise RuntimeError("this chaos cluster runs on the shared etcd: no etcd faults")
        return self.etcd

    def pause_etcd(self) -> None:
        self._own_etcd().pause()
        self.etcd_paused = True

    def resume_etcd(self) -> None:
        self._own_etcd().resume()
        self.etcd_paused = False

    def kill_etcd(self) -> None:
        """SIGKILL etcd; its data dir and ports stay for `start_etcd`."""
        self._own_etcd().stop()
        self.etcd_paused = False

    def start_etcd(self) -> None:
        """Starts a killed etcd again on the same ports and data dir (waits for /health)."""
        self._own_etcd().restart()

    @property
    def etcd_running(self) -> bool:
        return self.etcd is None or (
            self.etcd.process is not None and self.etcd.process.poll() is None
        )

    def heal(self) -> None:
        """etcd up, every paused process resumed, every dead or fault-injected one
        restarted (plainly)."""
        if self.faults_file is not None and self.faults_file.exists():
            self.faults_file.write_text("")
        if self.etcd is not None:
            if self.etcd_paused:
                self.resume_etcd()
            if not self.etcd_running:
                self.start_etcd()
        for name in list(self.stopped):
            self.resume(name)
        for name in list(self.env_faulted):
            self.env_faulted.discard(name)
            self.restart(name)
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
        return self._named(self.coordinators, metadata.coordinator.address, "coordinator")

    async def active_group_manager(self, admin: Admin) -> str:
        """The name of the group manager process that holds the role now."""
        metadata = await admin.get_metadata()
        return self._named(self.group_managers, metadata.group_manager.address, "group manager")

    def _named(self, names: Sequence[str], address: str, what: str) -> str:
        for name in names:
            if self.cluster.address(name) == address:
                return name
        raise LookupError(f"no {what} of ours serves at {address!r}")


def start_chaos_cluster(
    local_cluster: Callable[..., LocalCluster],
    *,
    nodes: int = 3,
    coordinators: int = 1,
    node_args: Sequence[str] = FAST_NODE_ARGS,
    coordinator_args: Sequence[str] = FAST_COORDINATOR_ARGS,
    groups: int = 0,
    groups_args: Sequence[str] = FAST_GROUPS_ARGS,
    etcd: EtcdServer | None = None,
    faults_file: Path | None = None,
) -> ChaosCluster:
    """Starts `coordinators` coordinators, `groups` group managers and nodes 1..`nodes`
    (in parallel), ready; on `etcd` when given (so etcd faults stay in this test); with
    `faults_file` as every process's BROOK_FAULTS_FILE (the storage fault hook's control
    file, created empty: no fault until a test writes one)."""
    options: dict[str, object] = {}
    if etcd is not None:
        options["etcd"] = etcd.address
    if faults_file is not None:
        faults_file.parent.mkdir(parents=True, exist_ok=True)
        faults_file.write_text("")
        options["env"] = {"BROOK_FAULTS_FILE": str(faults_file)}
    cluster = local_cluster(**options)
    names = [f"coordinator-{index}" for index in range(coordinators)]
    for name in names:
        cluster.add_coordinator(name, args=list(coordinator_args))
    group_names = [f"groups-{index}" for index in range(groups)]
    for name in group_names:
        cluster.add_groups(name, args=list(groups_args))
    node_ids = list(range(1, nodes + 1))
    for node_id in node_ids:
        cluster.add_node(node_id, args=list(node_args))
    cluster.start()
    return ChaosCluster(cluster, node_ids, names, group_names, etcd, faults_file=faults_file)
