"""`make k8s-validate`, as a test: every overlay renders with the pinned kustomize and is
valid, strictly (unknown fields are errors), for the pinned Kubernetes version, offline
(kubernetes-validate bundles the schemas). A kind without a schema only gets a warning
from kubernetes-validate; here it fails too."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.k8s.render import (
    KUBERNETES_VALIDATE,
    OVERLAYS,
    documents,
    kustomize,
    makefile_var,
    rendered,
)


def test_overlays_exist() -> None:
    assert {"dev", "production"} <= set(OVERLAYS)


def test_kustomize_is_the_pinned_version() -> None:
    result = subprocess.run(
        [str(kustomize()), "version"], capture_output=True, text=True, timeout=30, check=True
    )
    pinned = makefile_var("KUSTOMIZE_VERSION")
    assert result.stdout.strip() == pinned, (
        f"{result.stdout.strip()} installed, {pinned} pinned: rm .tools/bin/kustomize; make setup"
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_is_valid_kubernetes(overlay: str, tmp_path: Path) -> None:
    manifest = tmp_path / f"{overlay}.yaml"
    manifest.write_text(rendered(overlay))
    version = makefile_var("K8S_VERSION")
    result = subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "-k", version, str(manifest)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = (result.stdout + result.stderr).splitlines()
    problems = [line for line in lines if not line.startswith("INFO")]
    assert result.returncode == 0 and not problems, "\n".join(problems)
    # One INFO line (passed) per resource: nothing skipped.
    assert sum(line.startswith("INFO") for line in lines) == len(documents(overlay))
