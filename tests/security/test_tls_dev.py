"""`brook dev --secure` end to end: a throwaway CA, TLS + mTLS on every listener and on
etcd, and the README's CLI commands unchanged, their credentials read from cluster.json."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest

from brook.services.common.certs import CertAuthority
from brook.v1 import admin_pb2, admin_pb2_grpc
from tests.coordinator.test_dev import pick_base_port

pytestmark = pytest.mark.integration

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
CLI_TIMEOUT_S = 60.0


def brook(cwd: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROOK_")}
    return subprocess.run(
        [sys.executable, "-m", "brook.services.cli", *args],
        cwd=cwd, input=stdin, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, env=env,
    )  # fmt: skip


def test_dev_secure_cluster_works_with_the_cli(tmp_path: Path) -> None:
    base = pick_base_port()
    data = tmp_path / "data"  # the CLI reads ./data/cluster.json from its working folder
    log_path = tmp_path / "dev.log"
    with open(log_path, "ab") as log:
        dev = subprocess.Popen(
            [sys.executable, "-m", "brook.services.dev", "--secure", "--nodes", "1",
             "--data-dir", str(data), "--base-port", str(base)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    description: dict[str, object] = {}
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        cluster_file = data / "cluster.json"
        while not cluster_file.exists():
            assert dev.poll() is None, log_path.read_text()[-4000:]
            assert time.monotonic() < deadline, log_path.read_text()[-4000:]
            time.sleep(0.1)  # polling for the file with a bounded deadline
        description = json.loads(cluster_file.read_text())
        tls = description["tls"]
        assert isinstance(tls, dict) and tls["principal"] == "user:admin"
        assert all(Path(tls[k]).exists() for k in ("ca", "cert", "key"))

        created = brook(tmp_path, "topic", "create", "sec", "--partitions", "1",
                        "--replication-factor", "1")  # fmt: skip
        assert created.returncode == 0, created.stderr
        produced = brook(tmp_path, "produce", "sec", stdin="one\ntwo\nthree\n")
        assert produced.returncode == 0, produced.stderr
        consumed = brook(tmp_path, "consume", "sec", "--from-beginning", "--max-records", "3",
                         "--timeout-ms", "20000")  # fmt: skip
        assert consumed.stdout.split() == ["one", "two", "three"], consumed.stderr
        grouped = brook(tmp_path, "consume", "sec", "--group", "g1", "--from-beginning",
                        "--max-records", "3", "--timeout-ms", "30000")  # fmt: skip
        assert grouped.stdout.split() == ["one", "two", "three"], grouped.stderr
        described = brook(tmp_path, "group", "describe", "g1")
        assert described.returncode == 0, described.stderr

        # Elsewhere (no cluster.json, no $BROOK_TLS_*), the CLI dials plaintext: refused.
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        refused = brook(elsewhere, "--bootstrap", f"127.0.0.1:{base}", "topic", "list")
        assert refused.returncode != 0
        # With the flags, from anywhere.
        flagged = brook(elsewhere, "--bootstrap", f"127.0.0.1:{base}", "--tls-ca", tls["ca"],
                        "--tls-cert", tls["cert"], "--tls-key", tls["key"],
                        "topic", "list")  # fmt: skip
        assert flagged.stdout.split() == ["sec"], flagged.stderr

        # ACLs are on, default deny: a certificate from the same CA for user:bob, who was
        # granted nothing, is authenticated but may do nothing.
        authority = CertAuthority.load(data / "tls" / "ca.crt", data / "tls" / "ca.key")
        bob_cert, bob_key = authority.issue("bob", server=False).write(tmp_path, "bob")
        as_bob = brook(elsewhere, "--bootstrap", f"127.0.0.1:{base}", "--tls-ca", tls["ca"],
                       "--tls-cert", str(bob_cert), "--tls-key", str(bob_key),
                       "topic", "create", "bobs", "--partitions", "1",
                       "--replication-factor", "1")  # fmt: skip
        assert as_bob.returncode != 0 and "PERMISSION_DENIED" in as_bob.stderr, as_bob.stderr

        # The HTTP listeners speak HTTPS with the admin certificate (cluster.json's URLs).
        services = description["services"]
        assert isinstance(services, list)
        urls = [s["metrics_url"] for s in services if "metrics_url" in s]
        urls += [s["console_url"] for s in services if "console_url" in s]
        assert urls and all(u.startswith("https://") for u in urls), urls
        context = ssl.create_default_context(cafile=tls["ca"])
        context.load_cert_chain(tls["cert"], tls["key"])
        for url in urls:
            with urllib.request.urlopen(url, context=context, timeout=10) as answer:
                assert answer.status == 200, url
        bare = ssl.create_default_context(cafile=tls["ca"])  # no client certificate
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(urls[0], context=bare, timeout=10).read()

        # Plaintext gRPC to the coordinator fails at the TLS layer.
        with grpc.insecure_channel(f"127.0.0.1:{base}") as channel:
            stub = admin_pb2_grpc.AdminServiceStub(channel)
            with pytest.raises(grpc.RpcError) as failure:
                stub.DescribeCluster(admin_pb2.DescribeClusterRequest(), timeout=5)
            assert failure.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        dev.send_signal(signal.SIGTERM)  # brook dev stops what it started
        try:
            dev.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
        services = description.get("services", [])
        for pid in [dev.pid, *(int(s["pid"]) for s in services if isinstance(s, dict))]:  # type: ignore[union-attr]
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        dev.wait(timeout=10)
        print(log_path.read_text(errors="replace")[-6000:])
