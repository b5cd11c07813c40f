"""The Kubernetes manifests parse and start Brook processes with flags Brook accepts.

Each manifest is parsed as YAML; every Brook container's command line (after the shell
expansions a pod would do, with stand-in values) is fed to the argparse parser of the
process it starts, so a renamed or removed flag fails here instead of in a cluster.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from brook.services.coordinator.main import build_parser as coordinator_parser
from brook.services.groups.main import build_parser as groups_parser
from brook.services.node.main import build_parser as node_parser

K8S = Path(__file__).resolve().parents[2] / "k8s"
PARSERS: dict[str, argparse.ArgumentParser] = {
    "node": node_parser(),
    "coordinator": coordinator_parser(),
    "groups": groups_parser(),
}
# What the pod's shell and Kubernetes would substitute.
STAND_INS = {
    "$(( ${HOSTNAME##*-} + 1 ))": "1",
    "${HOSTNAME}": "brook-node-0",
    "${POD_NAMESPACE}": "default",
    '"${NODE_RACK}"': "rack-a",
    "$(POD_IP)": "10.0.0.1",
}


def _containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if not document or document.get("kind") not in {"StatefulSet", "Deployment"}:
                continue
            for container in document["spec"]["template"]["spec"]["containers"]:
                yield path.name, container


def _brook_argv(container: dict[str, Any]) -> list[str] | None:
    """The argv after `brook`, or None for a container that is not Brook (etcd)."""
    if container.get("image", "").startswith("brook"):
        if container.get("command") == ["/bin/sh", "-c"]:
            script = " ".join(container["args"])
            for placeholder, value in STAND_INS.items():
                script = script.replace(placeholder, value)
            words = shlex.split(script)
            assert words[:2] == ["exec", "brook"], script
            return words[2:]
        args = [str(a) for a in container["args"]]
        return [STAND_INS.get(a, a.replace("$(POD_IP)", "10.0.0.1")) for a in args]
    return None


def test_manifests_parse_and_cover_every_process() -> None:
    """All four manifests load, and each Brook process kind has a container."""
    kinds = {argv[0] for _, c in _containers() if (argv := _brook_argv(c)) is not None}
    assert kinds == set(PARSERS)


@pytest.mark.parametrize(
    "manifest,argv",
    [(name, argv) for name, c in _containers() if (argv := _brook_argv(c)) is not None],
)
def test_container_flags_are_accepted(manifest: str, argv: list[str]) -> None:
    """The process's own parser accepts the container's command line."""
    PARSERS[argv[0]].parse_args(argv[1:])
