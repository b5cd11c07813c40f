"""The type checker sees across Brook's packages.

`make lint` runs mypy over the `brook` namespace through the link tree built by
scripts/typecheck_tree.py. This proves the link tree works: a module that misuses a class
of another Brook package (a call with the wrong arguments, a wrong attribute) makes mypy
fail, naming the error, while the same module used correctly passes. Were `brook.*`
imports unresolved (the old `ignore_missing_imports` setting), both would pass.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CORRECT = """
from brook.errors import BrookError
from brook.storage.config import LogConfig

def reason_of(error: BrookError) -> str:
    return error.reason

config: LogConfig = LogConfig()
"""

# Each line is wrong only if mypy knows the real signatures of other Brook packages.
WRONG = """
from brook.errors import BrookError
from brook.services.node.partition import Partition

def reason_of(error: BrookError) -> int:
    return error.reason

Partition(1, 2, 3)
"""


def run_mypy(source: str, folder: Path) -> subprocess.CompletedProcess[str]:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "typecheck_tree.py")], check=True)
    module = folder / "probe_module.py"
    module.write_text(source)
    environment = dict(os.environ, MYPYPATH=str(ROOT / ".typecheck"))
    return subprocess.run(
        [
            sys.executable, "-m", "mypy",
            "--config-file", str(ROOT / "pyproject.toml"),
            "--cache-dir", str(folder / "mypy-cache"),
            str(module),
        ],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=240,
    )  # fmt: skip


def test_correct_cross_package_use_type_checks(tmp_path: Path) -> None:
    result = run_mypy(CORRECT, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cross_package_type_error_fails_the_type_check(tmp_path: Path) -> None:
    result = run_mypy(WRONG, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'Incompatible return value type (got "Reason", expected "int")' in result.stdout
    assert 'to "Partition"' in result.stdout, result.stdout
