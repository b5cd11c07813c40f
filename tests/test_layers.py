"""Brook's layers import only downward (docs/design.md, "Layers and imports").

Reads every module's imports (as text, with ast; nothing is imported) and checks each
against the table of what its layer may import. A new arrow that breaks the layering —
the log engine importing gRPC, the client importing a server, one process importing
another — fails here with the module and the import named.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Layer of a `brook.*` module, by prefix (longest prefix wins).
LAYERS = {
    "brook.v1": "api",
    "brook.internal": "api",
    "brook": "kernel",
    "brook.storage": "storage",
    "brook.services.common": "common",
    "brook.services.metadata": "metadata",
    "brook.services.node": "node",
    "brook.services.coordinator": "coordinator",
    "brook.services.groups": "groups",
    "brook.services.dev": "launcher",
    "brook.services.cli": "launcher",
    "brook.client": "client",
}

# What each layer may import, besides itself.
ALLOWED = {
    "kernel": {"api"},
    "storage": {"kernel"},
    "common": {"kernel", "api"},
    "metadata": {"kernel", "api", "storage", "common"},
    "node": {"kernel", "api", "storage", "common", "metadata"},
    "coordinator": {"kernel", "api", "common", "metadata"},
    "groups": {"kernel", "api", "common", "metadata"},
    "client": {"kernel", "api"},
    "launcher": {"kernel", "api", "common", "metadata", "node", "coordinator", "groups", "client"},
}

# Third-party packages a layer must not use: the engine does no networking or etcd.
FORBIDDEN_THIRD_PARTY = {
    "storage": {"grpc", "aetcd"},
    "kernel": {"aetcd"},
    "client": {"aetcd"},
}

FOLDERS = {"brook": "brook", "storage": "brook.storage", "services": "brook.services",
           "client": "brook.client"}  # fmt: skip


def layer_of(module: str) -> str | None:
    best = None
    for prefix in LAYERS:
        if (module == prefix or module.startswith(prefix + ".")) and (
            best is None or len(prefix) > len(best)
        ):
            best = prefix
    return LAYERS[best] if best else None


def modules() -> list[tuple[str, Path]]:
    found = []
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT / folder)
            if folder == "brook" and relative.parts[0] in ("v1", "internal"):
                continue  # generated
            parts = [part for part in relative.with_suffix("").parts if part != "__init__"]
            found.append((".".join([package, *parts]), path))
    return found


def imports_of(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            # `from brook import v1` names a module through the package.
            names += [f"{node.module}.{alias.name}" for alias in node.names
                      if node.module == "brook"]  # fmt: skip
    return names


def test_every_import_goes_down_the_layers() -> None:
    broken = []
    checked = 0
    for module, path in modules():
        source_layer = layer_of(module)
        assert source_layer is not None, module
        for imported in imports_of(path):
            checked += 1
            top = imported.split(".")[0]
            if top in FORBIDDEN_THIRD_PARTY.get(source_layer, set()):
                broken.append(f"{module} ({source_layer}) imports {imported}")
            if top != "brook" or imported == "brook":
                continue
            target_layer = layer_of(imported)
            if target_layer in (None, source_layer):
                continue
            if target_layer not in ALLOWED[source_layer]:
                broken.append(f"{module} ({source_layer}) imports {imported} ({target_layer})")
    assert checked > 200
    assert not broken, "\n".join(broken)


def test_the_table_knows_every_module() -> None:
    for module, _ in modules():
        assert layer_of(module) in ALLOWED, module
