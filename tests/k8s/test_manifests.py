"""The rendered Kubernetes overlays start Brook the way Brook needs, safely.

Each overlay is rendered (`kustomize build`, render.py). Every Brook container's command
line is worked out as a pod would: Kubernetes' `$(VAR)` expansion with stand-in values
for the downward API, then, for the storage node, its real shell snippet run by /bin/sh
with a stand-in `brook` that records its argv. That argv is fed to the argparse parser
of the process it starts, so a renamed or removed flag fails here instead of in a
cluster, and the invariants below are checked against the flags the process really gets:
ports, probes, node id / advertise / rack, volumes, grace periods, PDBs, security
contexts, resources and, in production, the spread over zones.
"""

from __future__ import annotations

import argparse
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from brook.services.coordinator.main import build_parser as coordinator_parser
from brook.services.groups.main import build_parser as groups_parser
from brook.services.node.main import build_parser as node_parser
from tests.k8s.render import OVERLAYS, documents, find

PARSERS: dict[str, argparse.ArgumentParser] = {
    "node": node_parser(),
    "coordinator": coordinator_parser(),
    "groups": groups_parser(),
}
# Workload of each Brook process, and its kind.
WORKLOADS = {
    "node": ("StatefulSet", "brook-node"),
    "coordinator": ("StatefulSet", "brook-coordinator"),
    "groups": ("StatefulSet", "brook-groups"),
}
ETCD = ("StatefulSet", "brook-etcd")
ZONE = "topology.kubernetes.io/zone"
RACK_FILE = "/run/brook/rack"
# The node bounds its SIGTERM shutdown by --drain-timeout-s + this (services/node/main.py);
# the coordinator and group manager by this (run_until_signal's default).
NODE_STOP_MARGIN_S = 10.0
ROLE_STOP_S = 10.0
# Flags that name files: each must lie on a volume mounted into the container.
FILE_FLAGS = (
    "tls_cert",
    "tls_key",
    "tls_ca",
    "client_cert",
    "client_key",
    "etcd_ca",
    "etcd_cert",
    "etcd_key",
    "token_file",
    "jwks_file",
    "etcd_password_file",
)


def workloads(overlay: str) -> list[dict[str, Any]]:
    return [d for d in documents(overlay) if d["kind"] in {"StatefulSet", "Deployment"}]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def all_containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def is_brook(container: dict[str, Any]) -> bool:
    return bool(container.get("command")) and (
        container["command"][0] == "brook" or container["command"][:2] == ["/bin/sh", "-c"]
    )


# -- what a pod would run ----------------------------------------------------------------


def k8s_expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' expansion of command, args and env values: $(VAR) for a variable
    defined before it, $$ for a literal $, anything else left as written."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("$(", i) and (close := text.find(")", i + 2)) != -1:
            name = text[i + 2 : close]
            out.append(env[name] if name in env else text[i : close + 1])
            i = close + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class Pod:
    """Stand-ins for what the downward API tells one pod."""

    name: str
    namespace: str
    index: int | None = None
    ip: str = "10.0.0.1"
    node_name: str = "worker-1"

    def field(self, path: str) -> str:
        values = {
            "metadata.name": self.name,
            "metadata.namespace": self.namespace,
            "status.podIP": self.ip,
            "spec.nodeName": self.node_name,
        }
        if self.index is not None:
            values["metadata.labels['apps.kubernetes.io/pod-index']"] = str(self.index)
        return values[path]


def container_env(container: dict[str, Any], pod: Pod) -> dict[str, str]:
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = k8s_expand(str(entry["value"]), env)
        else:
            env[entry["name"]] = pod.field(entry["valueFrom"]["fieldRef"]["fieldPath"])
    return env


def brook_argv(
    container: dict[str, Any], pod: Pod, tmp_path: Path, rack: str = "zone-a"
) -> list[str]:
    """The argv after `brook` that this container runs in `pod`."""
    env = container_env(container, pod)
    command = [k8s_expand(str(part), env) for part in container["command"]]
    args = [k8s_expand(str(arg), env) for arg in container.get("args", [])]
    if command == ["brook"]:
        return args
    assert command[:2] == ["/bin/sh", "-c"] and len(command) == 4, command
    script = command[2]
    assert RACK_FILE in script
    # The rack file the init container wrote, and a `brook` that records its argv.
    rack_file = tmp_path / "rack"
    rack_file.write_text(rack + "\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "brook"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do printf \'%s\\0\' "$a"; done > "$ARGV_OUT"\n')
    fake.chmod(0o755)
    out = tmp_path / "argv"
    result = subprocess.run(
        ["/bin/sh", "-c", script.replace(RACK_FILE, str(rack_file)), command[3], *args],
        env={
            **env,
            "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "ARGV_OUT": str(out),
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return out.read_text().split("\0")[:-1]


def parsed(container: dict[str, Any], pod: Pod, tmp_path: Path) -> tuple[str, argparse.Namespace]:
    argv = brook_argv(container, pod, tmp_path)
    return argv[0], PARSERS[argv[0]].parse_args(argv[1:])


def pod_for(workload: dict[str, Any], index: int = 0) -> Pod:
    name = workload["metadata"]["name"]
    namespace = workload["metadata"].get("namespace", "default")
    if workload["kind"] == "StatefulSet":
        return Pod(f"{name}-{index}", namespace, index)
    return Pod(f"{name}-6d9f7c-x2x4z", namespace)


def brook_container(overlay: str, process: str) -> tuple[dict[str, Any], dict[str, Any]]:
    workload = find(overlay, *WORKLOADS[process])
    containers = [c for c in pod_spec(workload)["containers"] if is_brook(c)]
    assert len(containers) == 1
    return workload, containers[0]


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# -- the tests ---------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_runs_every_brook_process_once(overlay: str, tmp_path: Path) -> None:
    kinds = []
    for workload in workloads(overlay):
        for container in pod_spec(workload)["containers"]:
            if is_brook(container):
                kind, _ = parsed(container, pod_for(workload), tmp_path)
                assert WORKLOADS[kind] == (workload["kind"], workload["metadata"]["name"])
                kinds.append(kind)
    assert sorted(kinds) == sorted(PARSERS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_variable_reference_resolves(overlay: str, tmp_path: Path) -> None:
    """Kubernetes expands $(VAR) only from variables defined above it, and a patch can
    reorder env (a strategic merge moves the entries it changes to the front): an
    unexpanded reference would reach the process as written."""
    for workload in workloads(overlay):
        for container in all_containers(workload):
            for name, value in container_env(container, pod_for(workload)).items():
                assert "$(" not in value, (workload["metadata"]["name"], name, value)
            if is_brook(container):
                argv = brook_argv(container, pod_for(workload), tmp_path)
                assert not [a for a in argv if "$(" in a or "${" in a], argv


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_namespace_is_created(overlay: str) -> None:
    namespaces = {d["metadata"]["name"] for d in documents(overlay) if d["kind"] == "Namespace"}
    used = {d["metadata"]["namespace"] for d in documents(overlay) if "namespace" in d["metadata"]}
    assert len(used) == 1 and used <= namespaces


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_node_identity_comes_from_the_ordinal(overlay: str, tmp_path: Path) -> None:
    """Pod brook-node-<i> is node <i> (its ordinal: the production certificates' CN
    brook-node-<i> maps to node:<i>, test_security.py), advertises its stable name through
    the headless Service on the port it listens on, and passes the zone file as --rack."""
    workload, container = brook_container(overlay, "node")
    service = workload["spec"]["serviceName"]
    namespace = workload["metadata"]["namespace"]
    for index in (0, 2):
        pod = pod_for(workload, index)
        args = PARSERS["node"].parse_args(brook_argv(container, pod, tmp_path, "zone-b")[1:])
        assert args.node_id == index
        assert (
            args.advertise == f"brook-node-{index}.{service}.{namespace}.svc:{port_of(args.listen)}"
        )
        assert args.rack == "zone-b"
    # No pod-index label (Kubernetes < 1.28): the pod fails rather than every node being 1.
    env = {k: v for k, v in container_env(container, pod_for(workload)).items() if k != "POD_INDEX"}
    result = subprocess.run(
        ["/bin/sh", "-c", k8s_expand(container["command"][2], env), "x"],
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0 and "pod-index" in result.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rack_init_container_reads_the_zone(overlay: str) -> None:
    """The init container alone holds an API token; RBAC lets it get nodes, nothing else,
    bound to the node pods' ServiceAccount in this namespace; it writes the file the node
    reads, on a volume both mount."""
    workload, container = brook_container(overlay, "node")
    spec = pod_spec(workload)
    namespace = workload["metadata"]["namespace"]
    (init,) = spec["initContainers"]
    assert init["command"][:1] == ["python"]
    init_env = {e["name"]: e for e in init["env"]}
    assert init_env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert init_env["RACK_FILE"]["value"] == RACK_FILE
    token_mount = "/var/run/secrets/kubernetes.io/serviceaccount"
    token_volumes = {m["name"] for m in init["volumeMounts"] if m["mountPath"] == token_mount}
    assert token_volumes and not token_volumes & {m["name"] for m in container["volumeMounts"]}
    assert spec["automountServiceAccountToken"] is False
    rack_dir = os.path.dirname(RACK_FILE)
    assert {m["name"] for m in init["volumeMounts"] if m["mountPath"] == rack_dir} == {
        m["name"] for m in container["volumeMounts"] if m["mountPath"] == rack_dir
    }
    script_volume = next(v for v in spec["volumes"] if v["name"] == "rack-script")
    config_map = find(overlay, "ConfigMap", script_volume["configMap"]["name"])
    assert (
        config_map["data"]["rack.py"]
        == (Path(__file__).parents[2] / "k8s/base/rack.py").read_text()
    )
    account = spec["serviceAccountName"]
    (binding,) = [d for d in documents(overlay) if d["kind"] == "ClusterRoleBinding"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": namespace}
    ]
    role = find(overlay, "ClusterRole", binding["roleRef"]["name"])
    assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nodes_have_volumes_and_a_headless_service(overlay: str, tmp_path: Path) -> None:
    workload, container = brook_container(overlay, "node")
    _, args = parsed(container, pod_for(workload), tmp_path)
    (claim,) = workload["spec"]["volumeClaimTemplates"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts[str(args.data_dir)] == claim["metadata"]["name"]
    assert workload["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Retain"
    service = find(overlay, "Service", workload["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    pod_labels = workload["spec"]["template"]["metadata"]["labels"]
    assert selects(service["spec"]["selector"], pod_labels)
    assert port_of(args.listen) in {p["port"] for p in service["spec"]["ports"]}
    assert workload["spec"]["replicas"] >= 3


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_coordinator_and_group_manager_run_two_replicas(overlay: str, tmp_path: Path) -> None:
    """Two replicas each, started together, replaced one at a time; StatefulSets (without
    volumes) so that each pod advertises a stable DNS name its certificate can carry."""
    for process in ("coordinator", "groups"):
        workload, container = brook_container(overlay, process)
        spec = workload["spec"]
        assert spec["replicas"] == 2
        assert spec["podManagementPolicy"] == "Parallel"
        assert spec["updateStrategy"]["type"] == "RollingUpdate"
        assert "volumeClaimTemplates" not in spec
        service = find(overlay, "Service", spec["serviceName"])
        assert service["spec"]["clusterIP"] == "None"
        assert selects(service["spec"]["selector"], spec["template"]["metadata"]["labels"])
        namespace = workload["metadata"]["namespace"]
        for index in (0, 1):
            _, args = parsed(container, pod_for(workload, index), tmp_path)
            name = f"{workload['metadata']['name']}-{index}"
            assert args.advertise == (
                f"{name}.{spec['serviceName']}.{namespace}.svc:{port_of(args.listen)}"
            )
            assert port_of(args.listen) in {p["port"] for p in service["spec"]["ports"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_are_grpc_on_a_plaintext_port(overlay: str, tmp_path: Path) -> None:
    """The kubelet's grpc probe speaks plaintext only: on the --listen port where that is
    plaintext (dev), else on the plaintext health-only --health-listen port (production)."""
    for process in PARSERS:
        workload, container = brook_container(overlay, process)
        _, args = parsed(container, pod_for(workload), tmp_path)
        assert args.listen.startswith("0.0.0.0:")
        assert port_of(args.listen) in {p["containerPort"] for p in container["ports"]}
        if args.tls_cert:
            assert args.health_listen.startswith("0.0.0.0:"), process
            port = port_of(args.health_listen)
            assert port != port_of(args.listen)
            assert {"name": "health", "containerPort": port} in container["ports"]
        else:
            assert not args.health_listen
            port = port_of(args.listen)
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == port, (process, probe)
        assert container.get("startupProbe", {"grpc": {"port": port}})["grpc"]["port"] == port


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_brook_dials_etcd_through_its_client_service(overlay: str, tmp_path: Path) -> None:
    etcd = find(overlay, *ETCD)
    etcd_labels = etcd["spec"]["template"]["metadata"]["labels"]
    for process in PARSERS:
        workload, container = brook_container(overlay, process)
        _, args = parsed(container, pod_for(workload), tmp_path)
        host, port = args.etcd.rsplit(":", 1)
        service = find(overlay, "Service", host)
        assert service["spec"].get("clusterIP") != "None"
        assert selects(service["spec"]["selector"], etcd_labels)
        assert int(port) in {p["port"] for p in service["spec"]["ports"]}
    bootstrap = find(overlay, "Service", "brook")
    coordinator, container = brook_container(overlay, "coordinator")
    assert selects(
        bootstrap["spec"]["selector"], coordinator["spec"]["template"]["metadata"]["labels"]
    )
    _, args = parsed(container, pod_for(coordinator), tmp_path)
    assert [p["port"] for p in bootstrap["spec"]["ports"]] == [port_of(args.listen)]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_etcd_members_match_the_initial_cluster(overlay: str) -> None:
    etcd = find(overlay, *ETCD)
    replicas = etcd["spec"]["replicas"]
    (container,) = pod_spec(etcd)["containers"]
    env = container_env(container, pod_for(etcd, 0))
    members = dict(entry.split("=", 1) for entry in env["ETCD_INITIAL_CLUSTER"].split(","))
    assert sorted(members) == [f"brook-etcd-{i}" for i in range(replicas)]
    assert members[env["ETCD_NAME"]] == env["ETCD_INITIAL_ADVERTISE_PEER_URLS"]
    headless = find(overlay, "Service", etcd["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert replicas == (1 if overlay == "dev" else 3)
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == "metrics"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_locked_down(overlay: str) -> None:
    for workload in workloads(overlay):
        name = workload["metadata"]["name"]
        spec = pod_spec(workload)
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["runAsUser"] > 0 and pod["runAsGroup"] > 0, name
        assert pod["fsGroup"] > 0, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        for container in all_containers(workload):
            context = container["securityContext"]
            where = f"{name}/{container['name']}"
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert context.get("privileged") is not True, where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_resources_and_probes(overlay: str) -> None:
    for workload in workloads(overlay):
        spec = pod_spec(workload)
        for container in all_containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), where
            assert "memory" in resources["limits"], where
        for container in spec["containers"]:
            assert "readinessProbe" in container and "livenessProbe" in container


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_brook_writes_only_to_its_volumes(overlay: str, tmp_path: Path) -> None:
    """Read-only root filesystem: /tmp is an emptyDir, node data on its volume, and every
    file a flag names (certificates, tokens) is on a mounted volume."""
    for process in PARSERS:
        workload, container = brook_container(overlay, process)
        volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], process
        _, args = parsed(container, pod_for(workload), tmp_path)
        for flag in FILE_FLAGS:
            path = getattr(args, flag, "")
            if path:
                assert any(path.startswith(f"{mount}/") for mount in mounts), (process, flag)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grace_period_covers_the_drain(overlay: str, tmp_path: Path) -> None:
    for process in PARSERS:
        workload, container = brook_container(overlay, process)
        _, args = parsed(container, pod_for(workload), tmp_path)
        pre_stop = container.get("lifecycle", {}).get("preStop", {})
        sleep_s = pre_stop.get("sleep", {}).get("seconds", 0)
        stop_s = (
            args.limit_drain_timeout_s + NODE_STOP_MARGIN_S if process == "node" else ROLE_STOP_S
        )
        grace = pod_spec(workload)["terminationGracePeriodSeconds"]
        assert grace > sleep_s + stop_s, (process, grace, sleep_s, stop_s)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_has_a_disruption_budget(overlay: str) -> None:
    budgets = [d for d in documents(overlay) if d["kind"] == "PodDisruptionBudget"]
    for workload in workloads(overlay):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        (budget,) = [b for b in budgets if selects(b["spec"]["selector"]["matchLabels"], labels)]
        replicas = workload["spec"]["replicas"]
        if "maxUnavailable" in budget["spec"]:
            allowed = budget["spec"]["maxUnavailable"]
        else:
            allowed = replicas - budget["spec"]["minAvailable"]
        assert allowed == 1, workload["metadata"]["name"]
        if replicas >= 3:  # a majority (etcd's quorum, the ISR's min) stays up
            assert replicas - allowed > replicas // 2


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_image_for_every_brook_container(overlay: str) -> None:
    images = {
        c["image"]
        for w in workloads(overlay)
        for c in all_containers(w)
        if w["metadata"]["name"] != ETCD[1]
    }
    assert len(images) == 1
    if overlay == "production":
        assert images != {"brook:dev"}


def test_production_spreads_over_three_zones(tmp_path: Path) -> None:
    for workload in workloads("production"):
        name = workload["metadata"]["name"]
        spec = pod_spec(workload)
        labels = workload["spec"]["template"]["metadata"]["labels"]
        (zone,) = [c for c in spec["topologySpreadConstraints"] if c["topologyKey"] == ZONE]
        assert zone["maxSkew"] == 1 and selects(zone["labelSelector"]["matchLabels"], labels)
        if name in {ETCD[1], WORKLOADS["node"][1]}:  # the data: etcd members and nodes
            assert zone["whenUnsatisfiable"] == "DoNotSchedule", name
            assert zone["minDomains"] == 3, name
            (claim,) = workload["spec"]["volumeClaimTemplates"]
            assert claim["spec"]["storageClassName"], name
    etcd = find("production", *ETCD)
    (anti,) = pod_spec(etcd)["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert anti["topologyKey"] == "kubernetes.io/hostname"
    node, _ = brook_container("production", "node")
    (init,) = pod_spec(node)["initContainers"]
    assert {"name": "RACK_REQUIRED", "value": "true"} in init["env"]


def test_production_mounts_certificates_and_uses_etcd_tls(tmp_path: Path) -> None:
    """Each Brook pod's own certificate (csi-driver volume; test_security.py checks it)
    also authenticates it to etcd."""
    for process in PARSERS:
        workload, container = brook_container("production", process)
        volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert volumes[mounts["/etc/brook/tls"]]["csi"]["driver"] == "csi.cert-manager.io"
        _, args = parsed(container, pod_for(workload), tmp_path)
        assert (args.etcd_ca, args.etcd_cert, args.etcd_key) == (
            args.tls_ca,
            args.tls_cert,
            args.tls_key,
        )
        assert args.etcd_ca.startswith("/etc/brook/tls/")
    etcd = find("production", *ETCD)
    (container,) = pod_spec(etcd)["containers"]
    env = container_env(container, pod_for(etcd, 1))
    assert env["ETCD_CLIENT_CERT_AUTH"] == env["ETCD_PEER_CLIENT_CERT_AUTH"] == "true"
    assert env["ETCD_ADVERTISE_CLIENT_URLS"].startswith("https://")
    assert all(
        url.split("=", 1)[1].startswith("https://")
        for url in env["ETCD_INITIAL_CLUSTER"].split(",")
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pre_stop_drains_the_nodes_own_leadership(overlay: str, tmp_path: Path) -> None:
    """The node's preStop hook runs `brook node drain-leadership <ordinal>` against the
    coordinators' Service, bounded by `timeout`, as node:<ordinal> when the pod's
    certificate is mounted, and never fails the stop; the hook fits in the grace period
    with the SIGTERM drain."""
    from brook.client.cli.main import build_parser as client_parser

    workload, container = brook_container(overlay, "node")
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:2] == ["/bin/sh", "-c"] and len(command) == 3
    assert pod_spec(workload)["terminationGracePeriodSeconds"] >= 10 + 15
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()
    (tls_dir / "tls.crt").write_text("certificate")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "brook"
    fake.write_text('#!/bin/sh\nenv | grep ^BROOK_ > "$OUT.env"\n'
                    'for a in "$@"; do printf \'%s\\0\' "$a"; done > "$OUT"\nexit 1\n')  # fmt: skip
    fake.chmod(0o755)
    pod = pod_for(workload, 3)
    out = tmp_path / "argv"
    for mounted in (True, False):
        script = command[2].replace("/etc/brook/tls", str(tls_dir if mounted else tmp_path / "x"))
        result = subprocess.run(
            ["/bin/sh", "-c", script],
            env={**container_env(container, pod), "OUT": str(out),
                 "PATH": f"{bin_dir}:/usr/bin:/bin"},
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr  # a failed drain never blocks the stop
        argv = out.read_text().split("\0")[:-1]
        assert argv == ["node", "drain-leadership", "3"]
        parsed_args = client_parser().parse_args(argv)
        assert parsed_args.node_id == 3
        env = dict(line.split("=", 1) for line in Path(f"{out}.env").read_text().split())
        namespace = workload["metadata"]["namespace"]
        assert env["BROOK_BOOTSTRAP"] == f"brook.{namespace}.svc:7070"
        assert ("BROOK_TLS_CERT" in env) == mounted
        if mounted:
            assert env["BROOK_TLS_CERT"] == f"{tls_dir}/tls.crt"
