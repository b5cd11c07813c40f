"""Builds the example clients (examples/go, examples/node, examples/java) from a clean tree.

Each builder returns the command that runs its program (argv prefix) and skips all work
when a stamp (.tools/examples/<lang>.stamp) holds the hash of every input (the protos, the
example's sources and lock files, this file, the toolchain's version) and the outputs
exist. A file lock per language serializes concurrent builds (pytest-xdist workers).

- go: `go install tool` (protoc-gen-go, protoc-gen-go-grpc at the versions go.mod pins)
  into .tools/examples/bin; protoc (bundled in grpcio-tools) generates protos/brook/v1
  into examples/go/gen/ (git-ignored; google/rpc, which errors.proto imports, is found under
  -Iprotos and maps to google.golang.org/genproto/googleapis/rpc by its go_package);
  `go build` writes .tools/examples/bin/brook-example-go; `go test` runs the unit tests
  (and go vet).
- node: `npm ci` installs exactly package-lock.json into examples/node/node_modules
  (git-ignored); `node --test` runs the unit tests. The protos are loaded at run time.
- java: `mvn package` generates code from ../../protos into target/ (protobuf-maven-plugin
  with os-maven-plugin), compiles, runs the unit tests, and shades target/brook-example.jar.

A first build downloads dependencies (Go module proxy, npm registry, Maven Central); later
builds use the local caches (~/go/pkg/mod, ~/.npm, ~/.m2) or nothing at all.

Run alone: `.venv/bin/python -m tests.interop.build [go|node|java ...]` prints each
program's command and how long its build took.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PROTO_ROOT = ROOT / "protos"
PUBLIC_PROTOS_DIR = PROTO_ROOT / "brook" / "v1"
GOOGLE_RPC_PROTOS_DIR = PROTO_ROOT / "google" / "rpc"
TOOLS_DIR = ROOT / ".tools" / "examples"
BIN_DIR = TOOLS_DIR / "bin"

GO_DIR = EXAMPLES / "go"
GO_GENERATED_DIR = GO_DIR / "gen"
GO_BINARY = BIN_DIR / "brook-example-go"
NODE_DIR = EXAMPLES / "node"
JAVA_DIR = EXAMPLES / "java"
JAVA_JAR = JAVA_DIR / "target" / "brook-example.jar"

# Bounds. A first build downloads modules/packages/artifacts and compiles on 2 shared
# cores (measured: Go ~1.5 min, npm ~10 s, Maven ~40 s); later builds take seconds.
STEP_TIMEOUT_S = 600.0
PROTOC_TIMEOUT_S = 60.0
VERSION_TIMEOUT_S = 60.0
# How long a second builder waits for the first one's lock.
LOCK_TIMEOUT_S = 3 * STEP_TIMEOUT_S
LOCK_POLL_S = 0.2
OUTPUT_TAIL_CHARS = 4000

# The toolchain each language needs on PATH (the test skips a language without it).
TOOLCHAINS = {"go": "go", "node": "node", "java": "mvn"}


class BuildError(RuntimeError):
    """A build step failed or timed out; the message carries its output tail."""


def run(
    command: list[str], *, cwd: Path, timeout_s: float, env: dict[str, str] | None = None
) -> str:
    """Runs one step; raises BuildError with the output tail on failure or timeout."""
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            env=env if env is not None else dict(os.environ),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise BuildError(f"{' '.join(command)} timed out after {timeout_s:.0f}s") from error
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-OUTPUT_TAIL_CHARS:]
        raise BuildError(f"{' '.join(command)} exited {done.returncode}:\n{output}")
    return done.stdout + done.stderr


def public_protos() -> list[Path]:
    """Brook's public protos: what each example generates code from."""
    return sorted(PUBLIC_PROTOS_DIR.glob("*.proto"))


def shipped_protos() -> list[Path]:
    """Every proto a client generates from or imports: brook/v1 and the google/rpc
    definitions shipped beside it (errors.proto imports error_details.proto; Node loads
    status.proto to read failed calls' details)."""
    return [*public_protos(), *sorted(GOOGLE_RPC_PROTOS_DIR.glob("*.proto"))]


def digest_of(toolchain: str, files: Iterable[Path]) -> str:
    """A hash of everything a program depends on; a change in any input rebuilds it."""
    digest = hashlib.sha256()
    digest.update(f"{toolchain}\n".encode())
    for path in sorted({Path(__file__).resolve(), *files, *shipped_protos()}):
        digest.update(f"{path.relative_to(ROOT)}\n".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def sources(folder: Path, *patterns: str) -> list[Path]:
    return [path for pattern in patterns for path in folder.glob(pattern) if path.is_file()]


class _BuildLock:
    """An exclusive flock on .tools/examples/<name>.lock, acquired within LOCK_TIMEOUT_S."""

    def __init__(self, name: str) -> None:
        self.path = TOOLS_DIR / f"{name}.lock"

    def __enter__(self) -> _BuildLock:
        TOOLS_DIR.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w")  # held until __exit__
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self._file.close()
                    raise BuildError(
                        f"{self.path} still held after {LOCK_TIMEOUT_S:.0f}s"
                    ) from None
                time.sleep(LOCK_POLL_S)  # polling the lock with a bounded deadline

    def __exit__(self, *exc_info: object) -> None:
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()


def _stamped(
    name: str,
    digest: Callable[[], str],
    outputs_present: Callable[[], bool],
    steps: Callable[[], None],
) -> None:
    """Runs `steps` unless the stamp matches the inputs' digest and the outputs exist."""
    stamp = TOOLS_DIR / f"{name}.stamp"
    with _BuildLock(name):
        wanted = digest()
        if outputs_present() and stamp.is_file() and stamp.read_text().strip() == wanted:
            return
        stamp.unlink(missing_ok=True)
        steps()
        stamp.write_text(wanted + "\n")


def _require(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise BuildError(f"{tool} is not on PATH")
    return found


# -- Go ------------------------------------------------------------------------------------
def go_environment() -> dict[str, str]:
    """The environment of every go command: pinned, reproducible, never rewriting go.mod.

    GOTOOLCHAIN=local: use the installed Go, never download another toolchain.
    GOWORK=off: a go.work in a parent folder must not change what we build.
    -mod=readonly: go.mod/go.sum are inputs; a build never edits them.
    -buildvcs=false: no git stamping (works without git, and in a dirty tree).
    """
    return {
        **os.environ,
        "GOBIN": str(BIN_DIR),
        "GOTOOLCHAIN": "local",
        "GOWORK": "off",
        "GOFLAGS": "-mod=readonly -buildvcs=false",
    }


def _go_generate(env: dict[str, str]) -> None:
    """protoc with the Go plugins: one Go package, brookv1, under gen/brook/v1/.

    paths=source_relative puts brook/v1/x.proto at gen/brook/v1/x.pb.go whatever the
    protos' go_package says; every file is in the same Go package, so go_package's import
    path is never used for an import.
    """
    if GO_GENERATED_DIR.exists():
        shutil.rmtree(GO_GENERATED_DIR)
    GO_GENERATED_DIR.mkdir(parents=True)
    run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"--plugin=protoc-gen-go={BIN_DIR / 'protoc-gen-go'}",
            f"--plugin=protoc-gen-go-grpc={BIN_DIR / 'protoc-gen-go-grpc'}",
            f"--go_out={GO_GENERATED_DIR}",
            "--go_opt=paths=source_relative",
            f"--go-grpc_out={GO_GENERATED_DIR}",
            "--go-grpc_opt=paths=source_relative",
            *(str(p.relative_to(PROTO_ROOT)) for p in public_protos()),
        ],
        cwd=ROOT,
        timeout_s=PROTOC_TIMEOUT_S,
        env=env,
    )


def build_go() -> list[str]:
    """Builds (or reuses) the Go example; returns its command. Raises BuildError."""
    go = _require("go")
    env = go_environment()

    def digest() -> str:
        go_version = run([go, "env", "GOVERSION"], cwd=GO_DIR, timeout_s=VERSION_TIMEOUT_S, env=env)
        toolchain = f"go={go_version.strip()} grpcio-tools={version('grpcio-tools')}"
        return digest_of(toolchain, sources(GO_DIR, "go.mod", "go.sum", "*.go"))

    def outputs_present() -> bool:
        generated = list((GO_GENERATED_DIR / "brook" / "v1").glob("*.pb.go"))
        return GO_BINARY.is_file() and len(generated) >= len(public_protos())

    def steps() -> None:
        BIN_DIR.mkdir(parents=True, exist_ok=True)
        run([go, "install", "tool"], cwd=GO_DIR, timeout_s=STEP_TIMEOUT_S, env=env)
        _go_generate(env)
        run([go, "build", "-o", str(GO_BINARY), "."], cwd=GO_DIR, timeout_s=STEP_TIMEOUT_S, env=env)
        run([go, "test", "."], cwd=GO_DIR, timeout_s=STEP_TIMEOUT_S, env=env)

    _stamped("go", digest, outputs_present, steps)
    return [str(GO_BINARY)]


# -- Node ----------------------------------------------------------------------------------
def build_node() -> list[str]:
    """Installs (or reuses) the Node example's locked dependencies; returns its command."""
    node = _require("node")
    npm = _require("npm")

    def digest() -> str:
        node_version = run([node, "--version"], cwd=NODE_DIR, timeout_s=VERSION_TIMEOUT_S)
        return digest_of(
            f"node={node_version.strip()}",
            sources(NODE_DIR, "package.json", "package-lock.json", "*.js", "test/*.js"),
        )

    def outputs_present() -> bool:
        return (NODE_DIR / "node_modules" / ".package-lock.json").is_file()

    def steps() -> None:
        run(
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=NODE_DIR,
            timeout_s=STEP_TIMEOUT_S,
        )
        run([node, "--test"], cwd=NODE_DIR, timeout_s=STEP_TIMEOUT_S)

    _stamped("node", digest, outputs_present, steps)
    return [node, str(NODE_DIR / "main.js")]


# -- Java ----------------------------------------------------------------------------------
def build_java() -> list[str]:
    """Builds (or reuses) the Java example's shaded jar; returns its command."""
    mvn = _require("mvn")
    java = _require("java")

    def digest() -> str:
        java_version = run([java, "-version"], cwd=JAVA_DIR, timeout_s=VERSION_TIMEOUT_S)
        return digest_of(
            f"java={java_version.strip()}", sources(JAVA_DIR, "pom.xml", "src/**/*.java")
        )

    def steps() -> None:
        run([mvn, "-B", "-q", "package"], cwd=JAVA_DIR, timeout_s=STEP_TIMEOUT_S)

    _stamped("java", digest, JAVA_JAR.is_file, steps)
    return [java, "-jar", str(JAVA_JAR)]


BUILDERS: dict[str, Callable[[], list[str]]] = {
    "go": build_go,
    "node": build_node,
    "java": build_java,
}


def main(argv: list[str]) -> int:
    failed = 0
    for name in argv or list(BUILDERS):
        started = time.monotonic()
        try:
            command = BUILDERS[name]()
        except BuildError as error:
            print(f"{name}: build failed: {error}", file=sys.stderr)
            failed += 1
            continue
        print(f"{name}: {' '.join(command)}  ({time.monotonic() - started:.1f}s)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
