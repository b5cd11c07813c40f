"""Renders the k8s/ overlays as `make k8s-validate` does, for the tests in this folder.

The pins (kustomize's version, the Kubernetes version validated against) are read from
the Makefile, so the tests and the target cannot drift apart. The kustomize binary is the
one `make setup` installs into .tools/bin.
"""

from __future__ import annotations

import functools
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = sorted(path.name for path in (K8S / "overlays").iterdir() if path.is_dir())
KUSTOMIZE = ROOT / ".tools" / "bin" / "kustomize"
KUBERNETES_VALIDATE = ROOT / ".venv" / "bin" / "kubernetes-validate"


def makefile_var(name: str) -> str:
    """The value of `NAME := value` in the Makefile."""
    match = re.search(rf"^{name}\s*:=\s*(\S+)\s*$", (ROOT / "Makefile").read_text(), re.M)
    assert match, f"{name} is not set in the Makefile"
    return match.group(1)


def kustomize() -> Path:
    if not KUSTOMIZE.exists():
        pytest.fail(f"{KUSTOMIZE} is missing: run `make setup` (it installs the pinned kustomize)")
    return KUSTOMIZE


@functools.cache
def rendered(overlay: str) -> str:
    """`kustomize build k8s/overlays/<overlay>`."""
    result = subprocess.run(
        [str(kustomize()), "build", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kustomize build {overlay} failed:\n{result.stderr}"
    return result.stdout


@functools.cache
def _parsed(overlay: str) -> tuple[dict[str, Any], ...]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return tuple(doc for doc in yaml.load_all(rendered(overlay), Loader=loader) if doc)


def documents(overlay: str) -> list[dict[str, Any]]:
    """The rendered resources (parsed once; the tests only read them)."""
    return list(_parsed(overlay))


def find(overlay: str, kind: str, name: str) -> dict[str, Any]:
    for doc in documents(overlay):
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"{overlay}: no {kind} {name}")
