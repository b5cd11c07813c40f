"""A real etcd for tests: one process on free loopback ports, data in a temp dir.

Fixtures:
- `etcd` (session): the shared server's "127.0.0.1:port". Tests share it safely by using
  a unique `cluster_name` each (every Brook key lives under /brook/<cluster>/).
- `etcd_server` (function): a private `EtcdServer` a test may pause (SIGSTOP), resume or
  restart without disturbing other tests.
- `cluster_name` (function): a unique cluster name.

etcd runs in its own process group and is killed (SIGKILL to the group) at teardown, even
when the test failed.

TLS variant: `EtcdServer(base_dir, tls=EtcdTls(ca, cert, key, client_cert, client_key))`
serves https on its client port (`--cert-file --key-file`, and with `client_cert_auth`
`--trusted-ca-file --client-cert-auth`); Brook dials it with `--etcd-ca/--etcd-cert/
--etcd-key` (tests/security/test_tls_etcd.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.ports import free_ports

ETCD_BINARY = os.environ.get("BROOK_ETCD", shutil.which("etcd") or "/usr/bin/etcd")
# How long etcd may take to answer /health after start (cold start on a loaded 2-core box).
ETCD_START_TIMEOUT_S = 20.0
# Attempts to start on fresh ports when a chosen port was taken meanwhile.
ETCD_START_ATTEMPTS = 3


@dataclass(frozen=True)
class EtcdTls:
    """TLS of a test etcd: its serving pair, the CA of its clients, and whether it
    demands client certificates (--client-cert-auth); `client_cert`/`client_key` are what
    the harness itself presents to /health."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    client_cert: Path | None = None
    client_key: Path | None = None
    client_cert_auth: bool = True

    def flags(self) -> list[str]:
        flags = ["--cert-file", str(self.cert_file), "--key-file", str(self.key_file)]
        if self.client_cert_auth:  # (etcd 3.4 asks every client for a certificate with a CA)
            flags += ["--trusted-ca-file", str(self.ca_file), "--client-cert-auth"]
        return flags

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if self.client_cert is not None and self.client_key is not None:
            context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context


class EtcdServer:
    """One etcd member on 127.0.0.1 with its own data dir and log file (TLS on its client
    port with `tls`: https URLs, Brook connects with --etcd-ca/--etcd-cert/--etcd-key)."""

    def __init__(self, base_dir: Path, name: str = "etcd", tls: EtcdTls | None = None) -> None:
        self.base_dir = Path(base_dir)
        self.name = name
        self.tls = tls
        self.data_dir = self.base_dir / f"{name}-data"
        self.log_path = self.base_dir / f"{name}.log"
        self.client_port = 0
        self.peer_port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, "etcd is not running"
        return self.process.pid

    def start(self) -> None:
        """Starts etcd (re-using the data dir, so a restart keeps data); waits for /health."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        last_error = ""
        for _ in range(ETCD_START_ATTEMPTS):
            self.client_port, self.peer_port = free_ports(2)
            if self._try_start():
                return
            last_error = self.log_tail()
            self._kill()
        raise RuntimeError(f"etcd did not start; log tail:\n{last_error}")

    def _try_start(self) -> bool:
        scheme = "https" if self.tls is not None else "http"
        client_url = f"{scheme}://127.0.0.1:{self.client_port}"
        peer_url = f"http://127.0.0.1:{self.peer_port}"
        command = [
            ETCD_BINARY,
            "--name",
            self.name,
            "--data-dir",
            str(self.data_dir),
            "--listen-client-urls",
            client_url,
            "--advertise-client-urls",
            client_url,
            "--listen-peer-urls",
            peer_url,
            "--initial-advertise-peer-urls",
            peer_url,
            "--initial-cluster",
            f"{self.name}={peer_url}",
            "--initial-cluster-state",
            "new",
            "--logger",
            "zap",
            "--log-level",
            "warn",
            *(self.tls.flags() if self.tls is not None else []),
        ]
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                command,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # own process group: teardown kills all of it
            )
        deadline = time.monotonic() + ETCD_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                context = self.tls.ssl_context() if self.tls is not None else None
                with urllib.request.urlopen(
                    f"{client_url}/health", timeout=1.0, context=context
                ) as reply:
                    if b'"true"' in reply.read():
                        return True
            except OSError:
                pass
            time.sleep(0.05)  # polling a condition (health) with a bounded deadline
        return False

    def pause(self) -> None:
        """SIGSTOP: etcd stays connected but answers nothing (a hung server)."""
        os.killpg(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.pid, signal.SIGCONT)

    def _kill(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGCONT)
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.process = None

    def stop(self) -> None:
        """Kills etcd (SIGKILL to its group; a paused etcd is continued first)."""
        self._kill()

    def restart(self) -> None:
        """Kill and start again on the same ports with the same data."""
        self._kill()
        if not self._try_start():
            raise RuntimeError(f"etcd did not restart; log tail:\n{self.log_tail()}")

    def terminate(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (a clean etcd shutdown; a paused etcd is continued first), then waits;
        SIGKILL to the group if it is still there after timeout_s."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGCONT)
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
        self._kill()

    def restart_gracefully(self) -> None:
        """SIGTERM, then start again on the same ports with the same data dir (what an
        operator's restart does); waits for /health."""
        self.terminate()
        if not self._try_start():
            raise RuntimeError(f"etcd did not restart; log tail:\n{self.log_tail()}")

    def etcdctl(self, *args: str, user: str | None = None) -> str:
        """Runs etcdctl (v3 API) against this etcd's client port (plaintext only; `user` is
        "name:password" with auth on); returns its stdout, raises on failure."""
        assert self.tls is None, "etcdctl helper: plaintext etcd only"
        command = [shutil.which("etcdctl") or "etcdctl", "--endpoints", f"http://{self.address}"]
        command += [*(["--user", user] if user else []), *args]
        done = subprocess.run(
            command, check=True, capture_output=True, timeout=20,
            env={"ETCDCTL_API": "3", "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )  # fmt: skip
        return done.stdout.decode(errors="replace")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A shared real etcd for the whole session; yields "127.0.0.1:port"."""
    server = EtcdServer(tmp_path_factory.mktemp("etcd"))
    server.start()
    try:
        yield server.address
    finally:
        server.stop()


@pytest.fixture
def etcd_server(tmp_path: Path) -> Iterator[EtcdServer]:
    """A private real etcd for one test (pause/resume/restart allowed)."""
    server = EtcdServer(tmp_path / "private-etcd")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cluster_name() -> str:
    """A cluster name no other test uses, so tests can share one etcd."""
    return f"t{uuid.uuid4().hex[:12]}"
