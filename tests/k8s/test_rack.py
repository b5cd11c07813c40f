"""k8s/base/rack.py, the init container that turns a pod's Kubernetes node zone into the
storage node's --rack: label lookup, retries, the required mode, the file it writes."""

from __future__ import annotations

import http.server
import importlib.util
import json
import ssl
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from brook.services.common.certs import CertAuthority

SCRIPT = Path(__file__).resolve().parents[2] / "k8s" / "base" / "rack.py"


@pytest.fixture(scope="module")
def rack() -> ModuleType:
    spec = importlib.util.spec_from_file_location("brook_k8s_rack", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def node(labels: dict[str, str] | None) -> dict[str, Any]:
    return {"kind": "Node", "metadata": {"name": "worker-1", "labels": labels}}


def test_rack_is_the_zone_label(rack: ModuleType) -> None:
    assert rack.rack_of(node({"topology.kubernetes.io/zone": "eu-west-1b"})) == "eu-west-1b"
    assert rack.rack_of(node({"other": "x"})) == ""
    assert rack.rack_of(node(None)) == ""
    assert rack.rack_of({}) == ""
    assert rack.rack_of(node({"example.com/rack": "r7"}), "example.com/rack") == "r7"


def test_api_address_comes_from_the_pod_environment(rack: ModuleType) -> None:
    assert (
        rack.api_base({"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"})
        == "https://10.96.0.1:443"
    )
    assert (
        rack.api_base({"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"})
        == "https://[fd00::1]:6443"
    )


def run(
    rack: ModuleType, tmp_path: Path, env: dict[str, str], answers: list[Any]
) -> tuple[int, list[str], list[float]]:
    asked: list[str] = []
    slept: list[float] = []

    def fetch(name: str) -> Mapping[str, Any]:
        asked.append(name)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    full_env = {"NODE_NAME": "worker-1", "RACK_FILE": str(tmp_path / "rack"), **env}
    return rack.main(full_env, fetch, slept.append), asked, slept


def test_writes_the_zone_after_retrying(rack: ModuleType, tmp_path: Path) -> None:
    zone = node({"topology.kubernetes.io/zone": "zone-c"})
    code, asked, slept = run(rack, tmp_path, {}, [OSError("refused"), zone])
    assert code == 0 and asked == ["worker-1", "worker-1"] and len(slept) == 1
    assert (tmp_path / "rack").read_text() == "zone-c\n"


def test_gives_up_after_a_few_tries(rack: ModuleType, tmp_path: Path) -> None:
    code, asked, slept = run(rack, tmp_path, {}, [OSError("down")] * rack.ATTEMPTS)
    assert code == 1 and len(asked) == rack.ATTEMPTS and len(slept) == rack.ATTEMPTS - 1
    assert not (tmp_path / "rack").exists()


def test_a_node_without_a_zone(rack: ModuleType, tmp_path: Path) -> None:
    code, _, _ = run(rack, tmp_path, {}, [node({})])
    assert code == 0 and (tmp_path / "rack").read_text() == "\n"  # dev: no rack
    (tmp_path / "rack").unlink()
    code, _, _ = run(rack, tmp_path, {"RACK_REQUIRED": "true"}, [node({})])
    assert code == 1 and not (tmp_path / "rack").exists()  # production: the pod fails


def test_needs_the_node_name(rack: ModuleType, tmp_path: Path) -> None:
    code, asked, _ = run(rack, tmp_path, {"NODE_NAME": ""}, [])
    assert code == 1 and asked == []


def test_reads_the_node_from_the_api_server_over_tls(rack: ModuleType, tmp_path: Path) -> None:
    """The real fetch: HTTPS to KUBERNETES_SERVICE_HOST:PORT, verified with the
    ServiceAccount's ca.crt, the token as a bearer, GET /api/v1/nodes/<name>."""
    ca = CertAuthority.create("test cluster CA")
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "ca.crt").write_bytes(ca.cert_pem)
    (account / "token").write_text("the-token\n")
    cert, key = ca.issue("kubernetes").write(tmp_path, "apiserver")
    requests: list[tuple[str, str | None]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append((self.path, self.headers.get("Authorization")))
            body = json.dumps(node({"topology.kubernetes.io/zone": "zone-z"})).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(server.server_address[1]),
        }
        fetch = rack.api_fetch(env, account)
        assert rack.rack_of(fetch("worker 1")) == "zone-z"
    finally:
        server.shutdown()
        server.server_close()
    assert requests == [("/api/v1/nodes/worker%201", "Bearer the-token")]
