"""Runs the pinned grpcurl that `make setup` installs (.tools/bin/grpcurl), as operators do."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
GRPCURL = ROOT / ".tools" / "bin" / "grpcurl"
GRPCURL_TIMEOUT_S = 30


def grpcurl(*args: str) -> str:
    """grpcurl -plaintext ARGS; fails the test with grpcurl's output when it exits non-zero."""
    if not GRPCURL.exists():
        pytest.fail(f"{GRPCURL} is missing: run `make setup` (it installs the pinned grpcurl)")
    result = subprocess.run(
        [str(GRPCURL), "-plaintext", *args],
        capture_output=True, text=True, timeout=GRPCURL_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def grpcurl_json(address: str, method: str, request: dict[str, Any] | None = None) -> Any:
    """Calls `method` with a JSON request and returns the parsed JSON answer."""
    return json.loads(grpcurl("-d", json.dumps(request or {}), address, method))
