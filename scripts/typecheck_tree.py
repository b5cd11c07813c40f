"""Builds the link tree mypy reads Brook through: `.typecheck/brook/` mirrors the installed
namespace (`brook.storage` -> storage/, `brook.services` -> services/, ...) with symbolic
links, so the type checker resolves every `brook.*` import to the real module.

The mapping is read from setup.py (`PACKAGE_ROOTS`), the one place that defines it. Links
point at folders, so a new module appears in the tree without running this again; the
tree is build output (git-ignored). `make lint` runs this, then `mypy -p brook` with
MYPYPATH=.typecheck.
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / ".typecheck"


def package_roots() -> dict[str, str]:
    """PACKAGE_ROOTS from setup.py, read without running setup()."""
    module = ast.parse((ROOT / "setup.py").read_text())
    for node in module.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "PACKAGE_ROOTS" for target in node.targets
        ):
            value = ast.literal_eval(node.value)
            if isinstance(value, dict):
                return {str(key): str(folder) for key, folder in value.items()}
    raise SystemExit("setup.py has no PACKAGE_ROOTS mapping")


def link(target: Path, link_path: Path) -> None:
    if link_path.is_symlink() or link_path.is_file():
        link_path.unlink()
    link_path.parent.mkdir(parents=True, exist_ok=True)
    link_path.symlink_to(os.path.relpath(target, link_path.parent))


def build() -> Path:
    roots = package_roots()
    top = roots.get("brook")
    if top is None:
        raise SystemExit("PACKAGE_ROOTS has no 'brook' entry")
    tree_top = TREE / "brook"
    tree_top.mkdir(parents=True, exist_ok=True)
    # The top package's own folder is linked file by file (its subpackages brook.v1 and
    # brook.internal are generated there), the mapped subpackages folder by folder.
    for entry in sorted((ROOT / top).iterdir()):
        if entry.name == "__pycache__":
            continue
        link(entry, tree_top / entry.name)
    for package, folder in roots.items():
        if package == "brook":
            continue
        relative = package.split(".")[1:]
        link(ROOT / folder, tree_top.joinpath(*relative))
    return TREE


if __name__ == "__main__":
    print(f"type-check tree: {build().relative_to(ROOT)}", file=sys.stderr)
