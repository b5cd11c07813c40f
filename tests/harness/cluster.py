"""LocalCluster: real Brook processes on loopback for integration tests.

Each process is `python -m <service module> --listen 127.0.0.1:0 --etcd ... --ready-file F`
in its own process group (so a kill reaches its children too), with stdout and stderr in
`<base_dir>/<name>.log`. Start waits for the ready file (bounded) instead of sleeping;
a process that exits first fails the start with its log tail.

Which processes run is up to the test: add a coordinator, group manager or nodes before
`start()`, so the harness works before every service exists.

    cluster = LocalCluster(etcd, tmp_path, cluster_name)
    cluster.add_coordinator()
    cluster.add_node(1)
    cluster.start()
    cluster.address("coordinator")
    cluster.kill("node-1", signal.SIGKILL)
    cluster.restart("node-1")
    cluster.stop()

The `local_cluster` fixture builds clusters and always stops them; it prints every
process's log tail at teardown (pytest shows it only when the test failed).

Secure mode (`LocalCluster(..., secure=True)`, or `local_cluster(secure=True)`): a CA made
for the test in `<base_dir>/tls`, a certificate per process (CN node-<id> for nodes, the
process name otherwise) and `--tls-cert/--tls-key/--tls-ca` (mTLS required) on every
process; `cluster.client_security("user:alice")` issues a client certificate and returns
`ClientCredentials` (`.kwargs` for brook.client, `.channel(address)` for raw stubs);
`cluster.rotate(name)` replaces a process's certificate files. Plaintext is the default.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from brook.services.common.certs import CertAuthority, IssuedCert
from brook.transport import ChannelSecurity

COORDINATOR_MODULE = "brook.services.coordinator.main"
GROUPS_MODULE = "brook.services.groups.main"
NODE_MODULE = "brook.services.node.main"

# Bounds: a Python service imports grpc and connects to etcd in ~1-2 s on an idle box; a
# loaded 2-core CI box needs more.
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 40


@dataclass
class ManagedProcess:
    """One service process: how to start it and what it reported when ready."""

    name: str
    module: str
    args: list[str]
    log_path: Path
    ready_file: Path
    listen: str = "127.0.0.1:0"
    # The CN of its certificate in a secure cluster (node-<id> for nodes: node:<id>).
    common_name: str = ""
    process: subprocess.Popen[bytes] | None = None
    address: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not running"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class LocalCluster:
    """A set of Brook processes sharing one etcd and cluster name."""

    def __init__(
        self,
        etcd: str,
        base_dir: Path,
        cluster_name: str,
        *,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
        log_level: str = "INFO",
        secure: bool = False,
        security_args: Sequence[str] = (),
        etcd_args: Sequence[str] = (),
    ) -> None:
        self.etcd = etcd
        self.base_dir = Path(base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.cluster_name = cluster_name
        self.python = python
        self.log_level = log_level
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.processes: dict[str, ManagedProcess] = {}
        # Secure mode: a CA of the test's own and a certificate per process (tls/), TLS +
        # mTLS flags on every process; `security_args` are added to each (token files...).
        self.secure = secure
        self.security_args = list(security_args)
        self.etcd_args = list(etcd_args)  # e.g. --etcd-ca/--etcd-cert/--etcd-key
        self.tls_dir = self.base_dir / "tls"
        self.ca: CertAuthority | None = None
        self.ca_file: Path | None = None
        if secure:
            self.ca = CertAuthority.create(f"test CA {cluster_name}")
            self.ca_file, _ = self.ca.write(self.tls_dir, "ca")

    # -- declaring processes -----------------------------------------------------------
    def add(self, name: str, module: str, args: Sequence[str] = ()) -> ManagedProcess:
        """Declares a process; common flags (listen, etcd, cluster, ready file) are added."""
        if name in self.processes:
            raise ValueError(f"process {name!r} already declared")
        managed = ManagedProcess(
            name=name,
            module=module,
            args=list(args),
            log_path=self.base_dir / f"{name}.log",
            ready_file=self.base_dir / f"{name}.ready.json",
            common_name=name,
        )
        self.processes[name] = managed
        return managed

    def add_coordinator(
        self, name: str = "coordinator", args: Sequence[str] = ()
    ) -> ManagedProcess:
        return self.add(name, COORDINATOR_MODULE, args)

    def add_groups(self, name: str = "groups", args: Sequence[str] = ()) -> ManagedProcess:
        return self.add(name, GROUPS_MODULE, args)

    def add_node(
        self, node_id: int, *, rack: str = "", name: str | None = None, args: Sequence[str] = ()
    ) -> ManagedProcess:
        data_dir = self.base_dir / f"node-{node_id}-data"
        extra = ["--node-id", str(node_id), "--data-dir", str(data_dir)]
        if rack:
            extra += ["--rack", rack]
        managed = self.add(name or f"node-{node_id}", NODE_MODULE, [*extra, *args])
        managed.common_name = f"node-{node_id}"
        return managed

    # -- security (secure=True) ----------------------------------------------------------
    def cert_paths(self, name: str) -> tuple[Path, Path]:
        """The certificate and key files of process `name` (issued on first use)."""
        cert, key = self.tls_dir / f"{name}.crt", self.tls_dir / f"{name}.key"
        if not cert.exists():
            self.issue(name, self.processes[name].common_name)
        return cert, key

    def issue(self, file_name: str, common_name: str, **kwargs: Any) -> IssuedCert:
        """Issues a certificate from the cluster's CA into tls/<file_name>.crt/.key
        (replacing what is there: a rotation when the process runs)."""
        assert self.ca is not None, "not a secure cluster"
        issued = self.ca.issue(common_name, **kwargs)
        issued.write(self.tls_dir, file_name)
        return issued

    def rotate(self, name: str) -> int:
        """Replaces process `name`'s certificate and key files with a new pair (new serial,
        same CN); returns the new serial. The process re-reads them on new handshakes."""
        return self.issue(name, self.processes[name].common_name).serial

    def client_security(self, principal: str = "user:alice") -> ClientCredentials:
        """Credentials of a client whose certificate maps to `principal` (DEFAULT rule:
        user:NAME -> CN=NAME, node:ID -> CN=node-ID), from the cluster's CA."""
        assert self.ca_file is not None, "not a secure cluster"
        kind, _, name = principal.partition(":")
        common_name = f"node-{name}" if kind == "node" else name
        file_name = f"client-{kind}-{name}"
        self.issue(file_name, common_name, server=False)
        return ClientCredentials(
            str(self.ca_file),
            str(self.tls_dir / f"{file_name}.crt"),
            str(self.tls_dir / f"{file_name}.key"),
        )

    def _security_flags(self, managed: ManagedProcess) -> list[str]:
        flags = [*self.etcd_args]
        if self.secure:
            cert, key = self.cert_paths(managed.name)
            flags += ["--tls-cert", str(cert), "--tls-key", str(key),
                      "--tls-ca", str(self.ca_file)]  # fmt: skip
            flags += self.security_args
        return flags

    # -- running -----------------------------------------------------------------------
    def _command(self, managed: ManagedProcess) -> list[str]:
        return [
            self.python,
            "-m",
            managed.module,
            "--listen",
            managed.listen,
            "--etcd",
            self.etcd,
            "--cluster-name",
            self.cluster_name,
            "--ready-file",
            str(managed.ready_file),
            "--log-level",
            self.log_level,
            *self._security_flags(managed),
            *managed.args,
        ]

    def _spawn(self, managed: ManagedProcess) -> None:
        managed.ready_file.unlink(missing_ok=True)
        managed.address = ""
        with open(managed.log_path, "ab") as log_file:
            log_file.write(f"--- start {' '.join(self._command(managed))}\n".encode())
            log_file.flush()
            managed.process = subprocess.Popen(
                self._command(managed),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.base_dir,
                start_new_session=True,  # own process group
            )

    def _wait_ready(self, managed: ManagedProcess, deadline: float) -> None:
        assert managed.process is not None
        while True:
            if managed.ready_file.exists():
                try:
                    info = json.loads(managed.ready_file.read_text())
                except (OSError, ValueError):
                    info = None  # written atomically, but be lenient with a torn read
                if info:
                    managed.info = info
                    managed.address = str(info["address"])
                    return
            code = managed.process.poll()
            if code is not None:
                raise RuntimeError(
                    f"{managed.name} exited with {code} before it was ready; log tail:\n"
                    f"{self.log_tail(managed.name)}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{managed.name} not ready within the bound; log tail:\n"
                    f"{self.log_tail(managed.name)}"
                )
            time.sleep(0.05)  # polling the ready file with a bounded deadline

    def start(self, names: Sequence[str] | None = None, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Starts the named (default: all declared, not running) processes; waits until ready.

        All are spawned first and then awaited, so they start in parallel.
        """
        chosen = [self.processes[n] for n in (names or self.processes)]
        to_start = [m for m in chosen if not m.running]
        for managed in to_start:
            self._spawn(managed)
        deadline = time.monotonic() + timeout_s
        for managed in to_start:
            self._wait_ready(managed, deadline)

    def address(self, name: str) -> str:
        return self.processes[name].address

    def pid(self, name: str) -> int:
        return self.processes[name].pid

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Sends `sig` to the process group of `name` (SIGKILL, SIGTERM, SIGSTOP...)."""
        managed = self.processes[name]
        if managed.process is None:
            return
        try:
            os.killpg(managed.process.pid, sig)
        except ProcessLookupError:
            pass
        if sig == signal.SIGKILL:
            self.wait_exit(name, STOP_TIMEOUT_S)

    def wait_exit(self, name: str, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """The exit code of `name`, waiting up to timeout_s; None if still running."""
        managed = self.processes[name]
        if managed.process is None:
            return None
        try:
            return managed.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def _stop_one(self, managed: ManagedProcess, timeout_s: float) -> int | None:
        """SIGTERM, then SIGKILL to the group after timeout_s; returns the exit code."""
        process = managed.process
        if process is None:
            return None
        code = process.poll()
        if code is None:
            try:
                os.killpg(process.pid, signal.SIGCONT)  # a stopped process cannot handle TERM
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                code = process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                code = None
        # Kill whatever is left of the group (children of a process that exited).
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if code is None:
            try:
                code = process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                code = None
        return code

    def restart(
        self, name: str, *, keep_address: bool = True, timeout_s: float = READY_TIMEOUT_S
    ) -> None:
        """Stops `name` if running (SIGTERM then SIGKILL) and starts it again.

        keep_address: listen on the same port as before, so peers that cached it reconnect.
        """
        managed = self.processes[name]
        if managed.running:
            self._stop_one(managed, STOP_TIMEOUT_S)
        if keep_address and managed.address:
            managed.listen = managed.address
        self.start([name], timeout_s)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> dict[str, int | None]:
        """Stops every process (SIGTERM, then SIGKILL after timeout_s); exit codes by name."""
        codes: dict[str, int | None] = {}
        running = [m for m in self.processes.values() if m.process is not None]
        for managed in running:
            if managed.process is not None and managed.process.poll() is None:
                try:
                    os.killpg(managed.process.pid, signal.SIGCONT)
                    os.killpg(managed.process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for managed in running:
            codes[managed.name] = self._stop_one(managed, timeout_s)
        return codes

    # -- logs --------------------------------------------------------------------------
    def log_tail(self, name: str, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.processes[name].log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def dump_logs(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(
            f"===== {name} ({m.log_path}) =====\n{self.log_tail(name, lines)}"
            for name, m in self.processes.items()
        )


@dataclass(frozen=True)
class ClientCredentials:
    """What a test client of a secure cluster needs: `kwargs` for brook.client classes
    (Producer(bootstrap, **creds.kwargs)), `security` (a ChannelSecurity) and `channel`
    (a grpc.aio channel factory for raw stubs)."""

    tls_ca: str | None
    tls_cert: str | None = None
    tls_key: str | None = None
    token: str | None = None

    @property
    def kwargs(self) -> dict[str, str | None]:
        return {"tls_ca": self.tls_ca, "tls_cert": self.tls_cert, "tls_key": self.tls_key,
                "token": self.token}  # fmt: skip

    @property
    def env(self) -> dict[str, str]:
        """The same credentials for a `brook` CLI (or tests.groups.consumer_proc) process."""
        named = {"BROOK_TLS_CA": self.tls_ca, "BROOK_TLS_CERT": self.tls_cert,
                 "BROOK_TLS_KEY": self.tls_key, "BROOK_TOKEN": self.token}  # fmt: skip
        return {k: v for k, v in named.items() if v}

    @property
    def security(self) -> ChannelSecurity:
        return ChannelSecurity(
            ca_file=self.tls_ca, cert_file=self.tls_cert, key_file=self.tls_key,
            token=self.token,
        )  # fmt: skip

    def with_token(self, token: str | None) -> ClientCredentials:
        return ClientCredentials(self.tls_ca, self.tls_cert, self.tls_key, token)

    def channel(self, address: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
        return self.security.channel(address, options)


@pytest.fixture
def local_cluster(
    etcd: str, tmp_path: Path, cluster_name: str
) -> Iterator[Callable[..., LocalCluster]]:
    """A factory of LocalClusters on the shared etcd; every cluster is stopped at teardown
    and its log tails printed (shown by pytest when the test failed)."""
    made: list[LocalCluster] = []

    def make(**kwargs: Any) -> LocalCluster:
        base = tmp_path / f"cluster-{len(made)}"
        cluster = LocalCluster(
            kwargs.pop("etcd", etcd), base, kwargs.pop("cluster_name", cluster_name), **kwargs
        )
        made.append(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in made:
            cluster.stop()
            print(cluster.dump_logs())
