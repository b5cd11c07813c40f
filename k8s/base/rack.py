"""Writes the zone of the Kubernetes node a brook-node pod runs on to a file: its --rack.

The init container `rack` of the brook-node StatefulSet runs this (k8s/base/node.yaml).
The downward API cannot read a Node's labels, so it reads the pod's Node from the API
server with the pod's ServiceAccount token (RBAC: `get nodes`, nothing else) and writes
the value of the label topology.kubernetes.io/zone, then a newline, to RACK_FILE.

Environment: NODE_NAME (spec.nodeName, required), RACK_FILE (default /run/brook/rack),
RACK_LABEL (default topology.kubernetes.io/zone), RACK_REQUIRED ("true": a Node without
the label is an error; otherwise the rack is empty, as on a one-zone dev cluster).
Exit status 1 when the Node cannot be read after a few tries: the kubelet retries the
init container with back-off, and the node does not start without its rack.

Only the standard library: it runs in the Brook image with its own interpreter.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ZONE_LABEL = "topology.kubernetes.io/zone"
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
ATTEMPTS = 5
TIMEOUT_S = 10.0

Fetch = Callable[[str], Mapping[str, Any]]


def rack_of(node: Mapping[str, Any], label: str = ZONE_LABEL) -> str:
    """The node's value of `label`, or "" when it has none."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    return str(labels.get(label, ""))


def api_base(env: Mapping[str, str]) -> str:
    """The API server's address as the kubelet tells every pod (IPv6 hosts bracketed)."""
    host = env.get("KUBERNETES_SERVICE_HOST", "kubernetes.default.svc")
    port = env.get("KUBERNETES_SERVICE_PORT", "443")
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{port}"


def api_fetch(env: Mapping[str, str], account_dir: Path = SERVICE_ACCOUNT_DIR) -> Fetch:
    """GET <api>/api/v1/nodes/<name> with the ServiceAccount token, checked by its CA."""
    base = api_base(env)
    context = ssl.create_default_context(cafile=str(account_dir / "ca.crt"))

    def fetch(node_name: str) -> Mapping[str, Any]:
        # The token is re-read on every try: the kubelet rotates the projected file.
        token = (account_dir / "token").read_text().strip()
        request = urllib.request.Request(
            f"{base}/api/v1/nodes/{urllib.parse.quote(node_name, safe='')}",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=TIMEOUT_S, context=context) as response:
            document: Mapping[str, Any] = json.load(response)
        return document

    return fetch


def main(
    env: Mapping[str, str] = os.environ,
    fetch: Fetch | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    node_name = env.get("NODE_NAME", "")
    if not node_name:
        print("rack: NODE_NAME is not set (downward API spec.nodeName)", file=sys.stderr)
        return 1
    label = env.get("RACK_LABEL", ZONE_LABEL)
    required = env.get("RACK_REQUIRED", "false").lower() == "true"
    target = Path(env.get("RACK_FILE", "/run/brook/rack"))
    fetch = fetch or api_fetch(env)
    node: Mapping[str, Any] | None = None
    for attempt in range(1, ATTEMPTS + 1):
        try:
            node = fetch(node_name)
            break
        except Exception as error:  # any API or network failure: retry, then give up
            print(
                f"rack: reading node {node_name} failed ({attempt}/{ATTEMPTS}): {error}",
                file=sys.stderr,
            )
            if attempt < ATTEMPTS:
                sleep(min(2.0**attempt, 10.0))
    if node is None:
        return 1
    rack = rack_of(node, label)
    if not rack:
        if required:
            print(f"rack: node {node_name} has no {label} label", file=sys.stderr)
            return 1
        print(f"rack: node {node_name} has no {label} label; the rack is empty", file=sys.stderr)
    target.write_text(rack + "\n")
    print(f"rack: node {node_name} -> rack {rack!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
