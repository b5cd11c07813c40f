"""Runs the pinned grpcurl that `make setup` installs (.tools/bin/grpcurl), as operators do."""

from __future__ import annotations

import json
import os
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


def grpcurl_result(
    address: str, method: str, request: dict[str, Any] | None = None
) -> tuple[int, str]:
    """Calls `method` and returns (exit code, stdout + stderr), for calls that may fail:
    grpcurl exits non-zero on a failed call and prints its status and details."""
    if not GRPCURL.exists():
        pytest.fail(f"{GRPCURL} is missing: run `make setup` (it installs the pinned grpcurl)")
    result = subprocess.run(
        [str(GRPCURL), "-plaintext", "-d", json.dumps(request or {}), address, method],
        capture_output=True, text=True, timeout=GRPCURL_TIMEOUT_S,
    )  # fmt: skip
    return result.returncode, result.stdout + result.stderr


def grpcurl_json(address: str, method: str, request: dict[str, Any] | None = None) -> Any:
    """Calls `method` with a JSON request and returns the parsed JSON answer."""
    return json.loads(grpcurl("-d", json.dumps(request or {}), address, method))


def grpcurl_env(**variables: str) -> dict[str, str]:
    """The environment for shell commands that call plain `grpcurl`, as an operator types
    it: the pinned grpcurl first on PATH, plus `variables` (e.g. the addresses a README
    command uses)."""
    if not GRPCURL.exists():
        pytest.fail(f"{GRPCURL} is missing: run `make setup` (it installs the pinned grpcurl)")
    path = f"{GRPCURL.parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path, **variables}


def json_documents(text: str) -> list[Any]:
    """The JSON values of grpcurl's output, in order: one per answer (a loop over several
    servers, or a server stream, prints several)."""
    decoder = json.JSONDecoder()
    values: list[Any] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            return values
        value, position = decoder.raw_decode(text, position)
        values.append(value)
