"""`brook dev`: a whole Brook cluster on this machine, one command, data in one folder.

    brook dev [--nodes N] [--data-dir D] [--base-port P] [--groups/--no-groups] [--secure]

Ports (all on 127.0.0.1, P = --base-port, default 7070):
    P          coordinator (the bootstrap address for clients and the CLI)
    P+1        group manager (when brook.services.groups is installed; --no-groups skips it)
    P+10+i     storage node i (node ids 1..N)
    P+100      etcd client port;  P+101 etcd peer port
    /metrics   each Brook process serves Prometheus metrics on a free port (listed in
               cluster.json as metrics_address); --metrics-base-port M puts them at M
               (coordinator), M+1 (group manager), M+10+i (node i); --no-metrics: none

Data: D/etcd (etcd's data), D/node-<i> (node i's partitions), D/run (ready files). A
restart with the same data dir keeps everything: etcd restarts on its data, nodes on
theirs. Once every process is ready, D/cluster.json lists them:

    {"bootstrap": "127.0.0.1:P", "etcd": "127.0.0.1:P+100",
     "services": [{"name", "role", "address", "pid", "metrics_address", "metrics_url"},
                  ...]}
    (the coordinator's entry has "console_address" and "console_url" too: its web console,
    --console-port; with --secure both URLs are https and want the admin certificate)

Every child runs in its own process group with its output prefixed on the console
(`[node-1] ...`). Ctrl-C or SIGTERM stops the Brook processes (SIGTERM, SIGKILL after
STOP_TIMEOUT_S), then etcd last. A child that dies on its own is reported and the rest keep
running. `--etcd HOST:PORT` uses an etcd that is already running instead of starting one.

`--secure`: a throwaway CA in D/tls (made once, kept across restarts; leaf certificates are
issued afresh at each start) and a certificate per process: `node-<i>` (principal
node:<i>), `coordinator`, `groups`, `etcd`, and `admin` for the CLI (user:admin). ACLs
are on (`--authorizer acl`, default deny) with user:admin, user:coordinator and
user:groups as super users; audit lines go to D/<process>.audit.log. Every Brook
listener serves TLS only and requires client certificates (mTLS); etcd serves https
with client-certificate auth on its client port (its peer port stays plaintext, bound to
127.0.0.1), and each Brook process dials it with its own certificate. cluster.json then
also says where the CA and the admin pair are:

    "tls": {"ca": "D/tls/ca.crt", "cert": "D/tls/admin.crt", "key": "D/tls/admin.key",
            "principal": "user:admin"}

and the CLI (run from the folder above D, or with $BROOK_TLS_*) uses them, so every CLI
command works unchanged against a secure dev cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import ssl
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brook.services.common.certs import CertAuthority

# Bounds (why): a cold Python service start (imports, etcd connect) takes 1-3 s; a loaded
# laptop needs more. etcd itself is ready in about a second.
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
# Lines longer than this are cut when echoed (a child must not be able to flood memory).
LINE_CHARS_MAX = 8192

COORDINATOR_MODULE = "brook.services.coordinator.main"
GROUPS_MODULE = "brook.services.groups.main"
NODE_MODULE = "brook.services.node.main"


def _say(message: str) -> None:
    print(f"[dev] {message}", flush=True)


def module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


@dataclass
class Child:
    """One child process of the dev cluster."""

    name: str
    role: str
    command: list[str]
    address: str
    ready_file: Path | None = None  # None: readiness is checked another way (etcd)
    process: asyncio.subprocess.Process | None = None
    pump: asyncio.Task[None] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brook dev", description="Run a local Brook cluster (etcd included)."
    )
    parser.add_argument("--nodes", type=int, default=3, help="storage nodes (default 3)")
    parser.add_argument("--data-dir", default="./data", help="data folder (default ./data)")
    parser.add_argument("--base-port", type=int, default=7070, help="coordinator port")
    parser.add_argument(
        "--groups",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start the group manager (default on)",
    )
    parser.add_argument("--etcd", default="", help="use this running etcd instead of starting one")
    parser.add_argument("--cluster-name", default="brook")
    parser.add_argument(
        "--secure",
        action="store_true",
        help="TLS + mTLS everywhere (etcd too), with a throwaway CA in DATA/tls",
    )
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="the processes' log lines: text, or JSON objects")
    parser.add_argument(
        "--metrics", action=argparse.BooleanOptionalAction, default=True,
        help="serve Prometheus /metrics from every Brook process (default on)",
    )
    parser.add_argument(
        "--metrics-base-port", type=int, default=0,
        help="metrics ports at M, M+1, M+10+i (as the gRPC ports); 0: free ports",
    )
    parser.add_argument(
        "--console-port", type=int, default=0,
        help="the coordinator's web console on 127.0.0.1:PORT (0: a free port, listed in"
        " cluster.json as console_address; -1: off)",
    )  # fmt: skip
    parser.add_argument(
        "--ready-timeout-s", type=float, default=READY_TIMEOUT_S, help="wait this long for startup"
    )
    return parser


class DevCluster:
    """Starts, watches and stops the children."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.data_dir = Path(args.data_dir).resolve()
        self.run_dir = self.data_dir / "run"
        self.base_port: int = args.base_port
        self.etcd_address = args.etcd or f"127.0.0.1:{self.base_port + 100}"
        self.etcd: Child | None = None
        self.services: list[Child] = []
        self.stopping = False
        self.secure: bool = getattr(args, "secure", False)
        self.tls_dir = self.data_dir / "tls"
        self._ca: CertAuthority | None = None

    # -- security (--secure) -----------------------------------------------------------
    def _authority(self) -> CertAuthority:
        """The dev CA: loaded from D/tls when a previous run made it, else made now."""
        if self._ca is None:
            cert, key = self.tls_dir / "ca.crt", self.tls_dir / "ca.key"
            if cert.exists() and key.exists():
                self._ca = CertAuthority.load(cert, key)
            else:
                self._ca = CertAuthority.create(f"Brook dev CA ({self.args.cluster_name})")
                self._ca.write(self.tls_dir, "ca")
        return self._ca

    def _pair(self, name: str, *, server: bool = True) -> tuple[Path, Path]:
        """A fresh certificate for CN `name` in D/tls/<name>.crt/.key."""
        return self._authority().issue(name, server=server).write(self.tls_dir, name)

    def _security_flags(self, name: str) -> list[str]:
        if not self.secure:
            return []
        cert, key = self._pair(name)
        ca = str(self.tls_dir / "ca.crt")
        flags = ["--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", ca]
        if self.etcd is not None:  # our etcd speaks TLS: dial it with the same pair
            flags += ["--etcd-ca", ca, "--etcd-cert", str(cert), "--etcd-key", str(key)]
        # ACLs on, default deny: the CLI's certificate (user:admin) may do everything, and
        # so may the coordinator and group manager, which call nodes on the cluster's
        # behalf (leader probes, lag, resets); storage nodes hold cluster_action already.
        flags += ["--authorizer", "acl", "--audit-log", str(self.data_dir / f"{name}.audit.log"),
                  "--super-users", "user:admin,user:coordinator,user:groups"]
        return flags

    def _client_tls(self) -> dict[str, str]:
        cert, key = self._pair("admin", server=False)
        return {"ca": str(self.tls_dir / "ca.crt"), "cert": str(cert), "key": str(key),
                "principal": "user:admin"}  # fmt: skip

    # -- planning ----------------------------------------------------------------------
    def plan(self) -> None:
        if not self.args.etcd:
            binary = shutil.which("etcd")
            if binary is None:
                raise SystemExit(
                    "brook dev: etcd is not on PATH; install it (e.g. apt-get install etcd-server)"
                    " or pass --etcd HOST:PORT"
                )
            scheme = "https" if self.secure else "http"
            client_url = f"{scheme}://{self.etcd_address}"
            peer_url = f"http://127.0.0.1:{self.base_port + 101}"
            self.etcd = Child(
                name="etcd",
                role="etcd",
                address=self.etcd_address,
                command=[
                    binary,
                    "--name", "brook-dev",
                    "--data-dir", str(self.data_dir / "etcd"),
                    "--listen-client-urls", client_url,
                    "--advertise-client-urls", client_url,
                    "--listen-peer-urls", peer_url,
                    "--initial-advertise-peer-urls", peer_url,
                    "--initial-cluster", f"brook-dev={peer_url}",
                    "--logger", "zap",
                    "--log-level", "warn",
                    *self._etcd_tls_flags(),
                ],
            )  # fmt: skip
        common = [
            "--etcd", self.etcd_address,
            "--cluster-name", self.args.cluster_name,
            "--log-level", self.args.log_level,
            "--log-format", getattr(self.args, "log_format", "text"),
        ]  # fmt: skip
        self.services.append(
            self._service("coordinator", "coordinator", COORDINATOR_MODULE, self.base_port,
                          [*common, *self._console_flags()])
        )
        if self.args.groups:
            if module_available(GROUPS_MODULE):
                self.services.append(
                    self._service("groups", "groups", GROUPS_MODULE, self.base_port + 1, common)
                )
            else:
                _say("group manager not installed; starting without it")
        if self.args.nodes > 0 and not module_available(NODE_MODULE):
            _say("storage node module not installed; starting without nodes")
            return
        for node_id in range(1, self.args.nodes + 1):
            node_dir = self.data_dir / f"node-{node_id}"
            self.services.append(
                self._service(
                    f"node-{node_id}",
                    "node",
                    NODE_MODULE,
                    self.base_port + 10 + node_id,
                    [*common, "--node-id", str(node_id), "--data-dir", str(node_dir)],
                )
            )

    def _etcd_tls_flags(self) -> list[str]:
        if not self.secure:
            return []
        cert, key = self._pair("etcd")
        ca = str(self.tls_dir / "ca.crt")
        return ["--cert-file", str(cert), "--key-file", str(key),
                "--trusted-ca-file", ca, "--client-cert-auth"]  # fmt: skip

    def _console_flags(self) -> list[str]:
        """--console-listen for the coordinator: --console-port, 0 a free port, -1 off."""
        port = getattr(self.args, "console_port", 0)
        return [] if port < 0 else ["--console-listen", f"127.0.0.1:{port}"]

    def _metrics_flags(self, port: int) -> list[str]:
        """--metrics-listen for the process whose gRPC port is `port` (same offset)."""
        if not getattr(self.args, "metrics", True):
            return []
        base = getattr(self.args, "metrics_base_port", 0)
        metrics_port = base + (port - self.base_port) if base > 0 else 0
        return ["--metrics-listen", f"127.0.0.1:{metrics_port}"]

    def _service(self, name: str, role: str, module: str, port: int, extra: list[str]) -> Child:
        address = f"127.0.0.1:{port}"
        extra = [*extra, *self._security_flags(name), *self._metrics_flags(port)]
        ready_file = self.run_dir / f"{name}.ready.json"
        return Child(
            name=name,
            role=role,
            address=address,
            ready_file=ready_file,
            command=[
                sys.executable, "-m", module,
                "--listen", address,
                "--ready-file", str(ready_file),
                *extra,
            ],
        )  # fmt: skip

    # -- running -----------------------------------------------------------------------
    async def _spawn(self, child: Child) -> None:
        if child.ready_file is not None:
            child.ready_file.unlink(missing_ok=True)
        child.process = await asyncio.create_subprocess_exec(
            *child.command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # own process group: our signals reach its children
            limit=LINE_CHARS_MAX * 2,
        )
        child.pump = asyncio.create_task(self._pump(child), name=f"pump-{child.name}")

    async def _pump(self, child: Child) -> None:
        """Echoes the child's output with its name in front, then reports its exit."""
        assert child.process is not None and child.process.stdout is not None
        prefix = f"[{child.name}] "
        while True:
            try:
                line = await child.process.stdout.readline()
            except (ValueError, asyncio.LimitOverrunError):
                # A line longer than the buffer: drop what is buffered and go on.
                await child.process.stdout.read(LINE_CHARS_MAX)
                continue
            if not line:
                break
            text = line.decode(errors="replace").rstrip("\n")[:LINE_CHARS_MAX]
            sys.stdout.write(prefix + text + "\n")
            sys.stdout.flush()
        code = await child.process.wait()
        if not self.stopping:
            _say(f"{child.name} exited with code {code}")

    async def _wait_etcd(self, deadline: float) -> None:
        host, _, port = self.etcd_address.rpartition(":")
        while True:
            if self.etcd is not None and not self.etcd.running:
                raise RuntimeError("etcd exited during startup (is the port in use?)")
            with contextlib.suppress(OSError):
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, int(port), ssl=self._etcd_ssl()), 1.0
                )
                try:
                    writer.write(f"GET /health HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
                    await writer.drain()
                    reply = await asyncio.wait_for(reader.read(4096), 2.0)
                finally:
                    writer.close()
                if b'"true"' in reply:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"etcd at {self.etcd_address} not healthy in time")
            await asyncio.sleep(0.1)  # polling /health with a bounded deadline

    def _etcd_ssl(self) -> ssl.SSLContext | None:
        """How `brook dev` itself asks our etcd for /health (TLS with the admin pair)."""
        if not self.secure or self.etcd is None:
            return None
        context = ssl.create_default_context(cafile=str(self.tls_dir / "ca.crt"))
        context.load_cert_chain(str(self.tls_dir / "etcd.crt"), str(self.tls_dir / "etcd.key"))
        return context

    async def _wait_ready(self, child: Child, deadline: float) -> None:
        assert child.ready_file is not None
        while True:
            if child.ready_file.exists():
                with contextlib.suppress(OSError, ValueError):
                    child.info = json.loads(child.ready_file.read_text())
                    child.address = str(child.info.get("address", child.address))
                    return
            if not child.running:
                raise RuntimeError(f"{child.name} exited before it was ready")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{child.name} not ready within {self.args.ready_timeout_s}s")
            await asyncio.sleep(0.05)  # polling the ready file with a bounded deadline

    async def start(self) -> None:
        self.plan()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.args.ready_timeout_s
        if self.etcd is not None:
            _say(f"starting etcd on {self.etcd_address} (data in {self.data_dir / 'etcd'})")
            await self._spawn(self.etcd)
        await self._wait_etcd(deadline)
        for child in self.services:
            await self._spawn(child)
        await asyncio.gather(*(self._wait_ready(c, deadline) for c in self.services))
        self._write_cluster_file()
        _say(
            f"cluster ready: bootstrap 127.0.0.1:{self.base_port}, {len(self.services)} "
            f"processes; description in {self.data_dir / 'cluster.json'}; Ctrl-C stops it"
        )

    def _write_cluster_file(self) -> None:
        # A secure cluster's HTTP listeners speak HTTPS and want the admin certificate.
        scheme = "https" if self.secure else "http"
        description = {
            "bootstrap": next(c.address for c in self.services if c.role == "coordinator"),
            "etcd": self.etcd_address,
            "cluster_name": self.args.cluster_name,
            **({"tls": self._client_tls()} if self.secure else {}),
            "services": [
                {"name": c.name, "role": c.role, "address": c.address, "pid": c.pid,
                 **({"metrics_address": c.info["metrics_address"],
                     "metrics_url": f"{scheme}://{c.info['metrics_address']}/metrics"}
                    if c.info.get("metrics_address") else {}),
                 **({"console_address": c.info["console_address"],
                     "console_url": f"{scheme}://{c.info['console_address']}/"}
                    if c.info.get("console_address") else {})}
                for c in ([self.etcd] if self.etcd else []) + self.services
            ],
        }
        target = self.data_dir / "cluster.json"
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(description, indent=2))
        os.replace(tmp, target)

    # -- stopping ----------------------------------------------------------------------
    async def _stop_child(self, child: Child) -> None:
        process = child.process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                _say(f"{child.name} did not stop within {STOP_TIMEOUT_S}s; killing it")
        # Whatever is left in its group (or the child itself after the bound) is killed.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        if child.pump is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(child.pump, 2.0)

    async def stop(self) -> None:
        self.stopping = True
        _say("stopping")
        await asyncio.gather(*(self._stop_child(c) for c in reversed(self.services)))
        if self.etcd is not None:
            await self._stop_child(self.etcd)  # last: the others release leases through it
        (self.data_dir / "cluster.json").unlink(missing_ok=True)
        _say("stopped")


async def run(args: argparse.Namespace) -> int:
    cluster = DevCluster(args)
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    code = 0
    try:
        starting = asyncio.create_task(cluster.start())
        stop_wait = asyncio.create_task(stop_requested.wait())
        await asyncio.wait([starting, stop_wait], return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()  # raises when startup failed
            await stop_wait
        else:
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await starting
            stop_wait.cancel()
    except (RuntimeError, OSError) as error:
        _say(f"failed: {error}")
        code = 1
    finally:
        await cluster.stop()
    return code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.nodes < 0:
        raise SystemExit("brook dev: --nodes must be >= 0")
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
