"""Builds the Go interop client (tests/interop/go) on any machine with Go, from a clean tree.

Steps, each a subprocess with a bound:
1. `go install tool` with GOBIN=.tools/go/bin: protoc-gen-go and protoc-gen-go-grpc at the
   versions pinned by go.mod/go.sum (the `tool` directive), fetched through the Go module
   proxy the first time and from the module cache (~/go/pkg/mod) afterwards;
2. protoc (the one bundled in grpcio-tools, already a dev dependency) generates
   protos/brook/v1 into tests/interop/go/gen/ (git-ignored: generated code is never
   committed);
3. `go build` writes .tools/go/bin/brook-interop (Go's build cache makes rebuilds cheap);
4. `go test` runs the program's unit tests (batch encoding, error rendering; go vet too).

A stamp (.tools/go/brook-interop.stamp) holds a hash of every input (the protos, go.mod,
go.sum, main.go, this file, the Go and grpcio-tools versions); when it matches and the
outputs exist nothing runs. A file lock serializes concurrent builds (pytest-xdist workers).

Run alone: `.venv/bin/python -m tests.interop.gobuild` prints the binary's path.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GO_MODULE_DIR = ROOT / "tests" / "interop" / "go"
GENERATED_DIR = GO_MODULE_DIR / "gen"
PROTO_ROOT = ROOT / "protos"
PUBLIC_PROTOS_DIR = PROTO_ROOT / "brook" / "v1"
TOOLS_DIR = ROOT / ".tools" / "go"
BIN_DIR = TOOLS_DIR / "bin"
BINARY = BIN_DIR / "brook-interop"
STAMP = TOOLS_DIR / "brook-interop.stamp"
LOCK = TOOLS_DIR / "brook-interop.lock"

# Bounds. A first build downloads ~40 MB of modules and compiles grpc on 2 shared cores
# (measured ~1-2 min); later builds hit the module and build caches and take seconds.
GO_STEP_TIMEOUT_S = 600.0
PROTOC_TIMEOUT_S = 60.0
GO_VERSION_TIMEOUT_S = 30.0
# How long a second builder waits for the first one's lock.
LOCK_TIMEOUT_S = 2 * GO_STEP_TIMEOUT_S + PROTOC_TIMEOUT_S
LOCK_POLL_S = 0.2
OUTPUT_TAIL_CHARS = 4000


class BuildError(RuntimeError):
    """A build step failed or timed out; the message carries its output tail."""


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


def run(command: list[str], *, cwd: Path, timeout_s: float, env: dict[str, str]) -> str:
    """Runs one step; raises BuildError with the output tail on failure or timeout."""
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            env=env,
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
    return done.stdout


def public_protos() -> list[Path]:
    return sorted(PUBLIC_PROTOS_DIR.glob("*.proto"))


def inputs_digest(go: str) -> str:
    """A hash of everything the binary depends on; a change in any input rebuilds."""
    digest = hashlib.sha256()
    go_version = run(
        [go, "env", "GOVERSION"],
        cwd=GO_MODULE_DIR,
        timeout_s=GO_VERSION_TIMEOUT_S,
        env=go_environment(),
    )
    digest.update(f"go={go_version.strip()} grpcio-tools={version('grpcio-tools')}\n".encode())
    files = [
        Path(__file__).resolve(),
        GO_MODULE_DIR / "go.mod",
        GO_MODULE_DIR / "go.sum",
        GO_MODULE_DIR / "main.go",
        GO_MODULE_DIR / "main_test.go",
        *public_protos(),
    ]
    for path in files:
        digest.update(f"{path.relative_to(ROOT)}\n".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def outputs_present() -> bool:
    generated = list((GENERATED_DIR / "brook" / "v1").glob("*.pb.go"))
    return BINARY.is_file() and len(generated) >= len(public_protos())


def generate(env: dict[str, str]) -> None:
    """protoc with the Go plugins: one Go package, brookv1, under gen/brook/v1/.

    paths=source_relative puts brook/v1/x.proto at gen/brook/v1/x.pb.go whatever the
    protos' go_package says; every file is in the same Go package, so go_package's import
    path is never used for an import.
    """
    if GENERATED_DIR.exists():
        shutil.rmtree(GENERATED_DIR)
    GENERATED_DIR.mkdir(parents=True)
    run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"--plugin=protoc-gen-go={BIN_DIR / 'protoc-gen-go'}",
            f"--plugin=protoc-gen-go-grpc={BIN_DIR / 'protoc-gen-go-grpc'}",
            f"--go_out={GENERATED_DIR}",
            "--go_opt=paths=source_relative",
            f"--go-grpc_out={GENERATED_DIR}",
            "--go-grpc_opt=paths=source_relative",
            *(str(p.relative_to(PROTO_ROOT)) for p in public_protos()),
        ],
        cwd=ROOT,
        timeout_s=PROTOC_TIMEOUT_S,
        env=env,
    )


class _BuildLock:
    """An exclusive flock on LOCK, acquired within LOCK_TIMEOUT_S."""

    def __enter__(self) -> _BuildLock:
        TOOLS_DIR.mkdir(parents=True, exist_ok=True)
        self._file = open(LOCK, "w")  # held until __exit__
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self._file.close()
                    raise BuildError(f"{LOCK} still held after {LOCK_TIMEOUT_S:.0f}s") from None
                time.sleep(LOCK_POLL_S)  # polling the lock with a bounded deadline

    def __exit__(self, *exc_info: object) -> None:
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()


def build(go: str | None = None) -> Path:
    """Builds (or reuses) the interop binary; returns its path. Raises BuildError."""
    go = go or shutil.which("go")
    if go is None:
        raise BuildError("go is not on PATH")
    env = go_environment()
    with _BuildLock():
        digest = inputs_digest(go)
        if outputs_present() and STAMP.is_file() and STAMP.read_text().strip() == digest:
            return BINARY
        STAMP.unlink(missing_ok=True)
        BIN_DIR.mkdir(parents=True, exist_ok=True)
        run([go, "install", "tool"], cwd=GO_MODULE_DIR, timeout_s=GO_STEP_TIMEOUT_S, env=env)
        generate(env)
        run(
            [go, "build", "-o", str(BINARY), "."],
            cwd=GO_MODULE_DIR,
            timeout_s=GO_STEP_TIMEOUT_S,
            env=env,
        )
        run([go, "test", "."], cwd=GO_MODULE_DIR, timeout_s=GO_STEP_TIMEOUT_S, env=env)
        STAMP.write_text(digest + "\n")
    return BINARY


def main() -> int:
    started = time.monotonic()
    try:
        binary = build()
    except BuildError as error:
        print(f"build failed: {error}", file=sys.stderr)
        return 1
    print(binary)
    print(f"took {time.monotonic() - started:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
