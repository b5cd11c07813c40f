"""k8s/Dockerfile's structure (no Docker here to build it): a builder stage that generates
the protos and installs Brook into a virtualenv, a runtime stage on the same base with
only that virtualenv, a non-root numeric user matching the pods' runAsUser, no secrets,
no build tools, and a build context that leaves local artefacts out."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from tests.k8s.render import K8S, OVERLAYS, documents

DOCKERFILE = K8S / "Dockerfile"
DOCKERIGNORE = K8S / "Dockerfile.dockerignore"
SECRET_WORDS = re.compile(r"(secret|passw|token|private|api[_-]?key|credential)", re.I)
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "grpcio-tools", "git")


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [rest for key, rest in self.instructions if key == keyword]


def stages() -> tuple[dict[str, str], list[Stage]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    global_args: dict[str, str] = {}
    result: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            result.append(Stage(words[0], name))
        elif not result and keyword == "ARG":
            key, _, value = rest.partition("=")
            global_args[key] = value
        else:
            result[-1].instructions.append((keyword, rest.strip()))
    return global_args, result


def test_multi_stage_on_one_python_base() -> None:
    global_args, (builder, runtime) = stages()
    assert builder.name == "builder"
    assert builder.base == runtime.base == "${PYTHON_IMAGE}"
    assert global_args["PYTHON_IMAGE"].startswith("python:3.11-slim")


def test_builder_generates_the_protos_and_installs_brook() -> None:
    _, (builder, _) = stages()
    run = " && ".join(builder.args("RUN"))
    assert "scripts/genproto.py" in run
    assert re.search(r"/opt/brook/bin/pip install \.", run)
    copied = {shlex.split(c)[0] for c in builder.args("COPY")}
    assert {"protos", "scripts", "brook", "storage", "services", "client"} <= copied


def test_runtime_gets_only_the_virtualenv() -> None:
    _, (_, runtime) = stages()
    assert runtime.args("COPY") == ["--from=builder /opt/brook /opt/brook"]
    assert not runtime.args("ADD")
    for command in runtime.args("RUN"):
        assert "install" not in command or "pip" not in command, command
        assert not [tool for tool in BUILD_TOOLS if re.search(rf"\b{re.escape(tool)}\b", command)]
    assert runtime.args("ENTRYPOINT") == ['["brook"]']


def test_runs_as_the_pods_non_root_user() -> None:
    _, (_, runtime) = stages()
    (user,) = runtime.args("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit() and int(gid) > 0
    # The user the image declares is the one the pods run as (and own their volumes as).
    for overlay in OVERLAYS:
        for doc in documents(overlay):
            if (
                doc["kind"] in {"StatefulSet", "Deployment"}
                and doc["metadata"]["name"] != "brook-etcd"
            ):
                context = doc["spec"]["template"]["spec"]["securityContext"]
                assert (context["runAsUser"], context["runAsGroup"]) == (int(uid), int(gid))


def test_no_secrets_baked_in() -> None:
    _, all_stages = stages()
    for stage in all_stages:
        for keyword in ("ENV", "ARG", "LABEL"):
            for rest in stage.args(keyword):
                assert not SECRET_WORDS.search(rest), rest
        for rest in stage.args("COPY"):
            assert not re.search(r"\.(pem|key|crt)\b|\.env\b|id_rsa", rest), rest


def test_build_context_leaves_local_artefacts_out() -> None:
    ignored = set(DOCKERIGNORE.read_text().split())
    assert {
        ".git",
        ".venv",
        ".tools",
        "brook/v1",
        "brook/internal",
        "data",
        "*.egg-info",
    } <= ignored
