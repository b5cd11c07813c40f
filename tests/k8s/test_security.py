"""The production overlay secures every Brook listener, and the dev overlay stays local.

Rendered as test_manifests.py does (the real command lines, parsed by each process's own
argparse parser), then checked against Brook's own security code: the TLS / mTLS flags
and the pod's per-pod certificate (cert-manager's csi-driver volume), the principal
mapping rule (parsed by services/common/principal.py and applied to certificates made
the way the csi-driver makes them: CN = the pod's name), the authorizer and its super
users, the probes on the plaintext health-only listener, and the metrics ports,
Services and Prometheus annotations. Also the files that are not part of the overlay:
the cert-manager prerequisites (k8s/cert-manager/), the admin CLI pod (k8s/clients/) and
the Prometheus scrape job (k8s/monitoring/).
"""

from __future__ import annotations

import datetime
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from brook.services.common.certs import CertAuthority
from brook.services.common.principal import (
    Principal,
    map_certificate,
    parse_mapping_rules,
)
from brook.services.common.tls import ProcessSecurity
from tests.k8s.render import K8S, KUBERNETES_VALIDATE, OVERLAYS, find, makefile_var
from tests.k8s.test_manifests import (
    PARSERS,
    Pod,
    brook_container,
    container_env,
    parsed,
    pod_for,
    pod_spec,
    port_of,
)

CSI_DRIVER = "csi.cert-manager.io"
ATTR = "csi.cert-manager.io/"
TLS_DIR = "/etc/brook/tls"
# The principals the coordinator and the group manager must be: super users (they call
# the nodes for leader probes, lag and offset resets).
ROLE_PRINCIPALS = {
    "coordinator": Principal("user", "brook-coordinator"),
    "groups": Principal("user", "brook-groups"),
}
METRICS_PATH = "/metrics"


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def csi_expand(text: str, pod: Pod) -> str:
    """The csi-driver's substitution in volumeAttributes (os.Expand over ${POD_NAME},
    ${POD_NAMESPACE}, ...; an unknown variable fails the mount)."""
    values = {"POD_NAME": pod.name, "POD_NAMESPACE": pod.namespace}

    def substitute(match: re.Match[str]) -> str:
        assert match.group(1) in values, f"the csi-driver does not know ${{{match.group(1)}}}"
        return values[match.group(1)]

    return re.sub(r"\$\{([A-Za-z_]+)\}", substitute, text)


def csi_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def certificate_volume(workload: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    """The csi-driver volume mounted where the container's TLS flags point."""
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[TLS_DIR].get("readOnly") is True
    volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
    volume = volumes[mounts[TLS_DIR]["name"]]
    assert "csi" in volume, "a per-pod certificate comes from the csi-driver"
    csi: dict[str, Any] = volume["csi"]
    return csi


@dataclass(frozen=True)
class PodCertificate:
    """What a pod's certificate says, as the principal mapping sees it."""

    subject: str
    common_name: str
    sans: list[str]
    cert: Path
    key: Path


def issue_like_the_csi_driver(
    ca: CertAuthority, attributes: dict[str, str], pod: Pod, directory: Path
) -> PodCertificate:
    """The certificate the csi-driver would write into `pod`: CN and DNS SANs from the
    volume attributes (subject: the CN alone), issued by the cluster CA."""
    common_name = csi_expand(attributes[ATTR + "common-name"], pod)
    dns_names = csi_list(csi_expand(attributes.get(ATTR + "dns-names", ""), pod))
    usages = csi_list(attributes[ATTR + "key-usages"])
    directory.mkdir(parents=True, exist_ok=True)
    issued = ca.issue(
        common_name,
        sans=dns_names,
        organization="",
        server="server auth" in usages,
        client="client auth" in usages,
    )
    cert, key = issued.write(directory, "tls")
    ca.write(directory, "ca")
    parsed_cert = x509.load_pem_x509_certificate(cert.read_bytes())
    (cn,) = parsed_cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return PodCertificate(
        subject=parsed_cert.subject.rfc4514_string(),
        common_name=str(cn.value),
        sans=[f"DNS:{name}" for name in dns_names],
        cert=cert,
        key=key,
    )


@pytest.fixture(scope="module")
def ca() -> CertAuthority:
    return CertAuthority.create("test brook-ca")


def production_pods(process: str) -> list[tuple[Pod, dict[str, Any], dict[str, Any]]]:
    """A few pods of the process's workload: ordinals 0, 1 and one past the replicas (a
    scale-up)."""
    workload, container = brook_container("production", process)
    indexes = sorted({0, 1, workload["spec"]["replicas"]})
    return [(pod_for(workload, i), workload, container) for i in indexes]


# -- TLS, mTLS and the certificates ------------------------------------------------------


@pytest.mark.parametrize("process", sorted(PARSERS))
def test_every_production_listener_is_tls_with_mtls_required(process: str, tmp_path: Path) -> None:
    workload, container = brook_container("production", process)
    _, args = parsed(container, pod_for(workload), tmp_path)
    assert (args.tls_cert, args.tls_key, args.tls_ca) == (
        f"{TLS_DIR}/tls.crt",
        f"{TLS_DIR}/tls.key",
        f"{TLS_DIR}/ca.crt",
    )
    assert args.tls_client_auth == "require"
    # No other way in: no bearer tokens configured, no plaintext HTTP.
    assert not args.token_file and not args.jwks_file
    assert args.http_tls is True
    assert args.authorizer == "acl"


@pytest.mark.parametrize("process", sorted(PARSERS))
def test_each_pod_gets_its_own_short_lived_certificate(process: str) -> None:
    workload, container = brook_container("production", process)
    csi = certificate_volume(workload, container)
    assert csi["driver"] == CSI_DRIVER
    assert csi["readOnly"] is True
    attributes = csi["volumeAttributes"]
    issuers = {
        doc["metadata"]["name"]: doc
        for doc in yaml_documents(K8S / "cert-manager" / "issuer.yaml")
        if doc["kind"] == "Issuer"
    }
    assert attributes[ATTR + "issuer-kind"] == "Issuer"
    assert "ca" in issuers[attributes[ATTR + "issuer-name"]]["spec"]
    # The pod's own name, substituted by the driver (Kubernetes leaves ${...} alone).
    assert attributes[ATTR + "common-name"] == "${POD_NAME}"
    usages = set(csi_list(attributes[ATTR + "key-usages"]))
    assert {"server auth", "client auth"} <= usages
    # Files the pods' group can read, under the names the flags use (the defaults).
    group = pod_spec(workload)["securityContext"]["runAsGroup"]
    assert attributes[ATTR + "fs-group"] == str(group)
    for key in ("certificate-file", "privatekey-file", "ca-file"):
        assert key not in {k.removeprefix(ATTR) for k in attributes}
    lifetime = _duration(attributes[ATTR + "duration"])
    assert lifetime <= datetime.timedelta(days=3)
    assert datetime.timedelta(0) < _duration(attributes[ATTR + "renew-before"]) < lifetime


def _duration(text: str) -> datetime.timedelta:
    match = re.fullmatch(r"(\d+)h", text)
    assert match, f"write durations in hours: {text!r}"
    return datetime.timedelta(hours=int(match.group(1)))


@pytest.mark.parametrize("process", sorted(PARSERS))
def test_certificate_names_what_the_pod_advertises(process: str, tmp_path: Path) -> None:
    """Clients and peers check the advertised host against the certificate's SANs; the
    coordinators' also names the bootstrap Service `brook`."""
    for pod, workload, container in production_pods(process):
        attributes = certificate_volume(workload, container)["volumeAttributes"]
        dns_names = csi_list(csi_expand(attributes[ATTR + "dns-names"], pod))
        _, args = parsed(container, pod, tmp_path)
        host = args.advertise.rsplit(":", 1)[0]
        assert host in dns_names, (process, host, dns_names)
        if process == "coordinator":
            bootstrap = find("production", "Service", "brook")["metadata"]["name"]
            assert {bootstrap, f"{bootstrap}.{pod.namespace}.svc"} <= set(dns_names)


def test_node_certificates_map_to_the_node_principal(ca: CertAuthority, tmp_path: Path) -> None:
    """Pod brook-node-<i> is node <i>, and its certificate (CN brook-node-<i>) maps to
    node:<i> through the configured rule: what lets it replicate as itself."""
    for pod, workload, container in production_pods("node"):
        _, args = parsed(container, pod, tmp_path)
        rules = parse_mapping_rules(args.principal_mapping)
        attributes = certificate_volume(workload, container)["volumeAttributes"]
        cert = issue_like_the_csi_driver(ca, attributes, pod, tmp_path / pod.name)
        assert cert.subject == f"CN={pod.name}"
        principal = map_certificate(rules, cert.subject, cert.sans, cert.common_name)
        assert principal == Principal("node", str(args.node_id))
        assert principal.node_id == pod.index
    # The sample of the README.
    workload, container = brook_container("production", "node")
    _, args = parsed(container, pod_for(workload), tmp_path)
    rules = parse_mapping_rules(args.principal_mapping)
    assert map_certificate(rules, "CN=brook-node-3", [], "brook-node-3") == Principal("node", "3")


def test_the_mapping_rule_is_the_same_everywhere_and_reserves_brook_names(
    tmp_path: Path,
) -> None:
    mappings = set()
    for process in PARSERS:
        workload, container = brook_container("production", process)
        _, args = parsed(container, pod_for(workload), tmp_path)
        mappings.add(args.principal_mapping)
    (mapping,) = mappings
    rules = parse_mapping_rules(mapping)

    def principal(subject: str) -> Principal | None:
        cn = subject.split(",", 1)[0].removeprefix("CN=")
        return map_certificate(rules, subject, ["DNS:x.example"], cn)

    assert principal("CN=brook-node-0") == Principal("node", "0")
    assert principal("CN=brook-node-12") == Principal("node", "12")
    assert principal("CN=alice") == Principal("user", "alice")
    assert principal("CN=alice,O=Acme") == Principal("user", "alice")
    assert principal("CN=prometheus") == Principal("user", "prometheus")
    # DEFAULT's node-<id> convention is off: a user certificate never becomes a node.
    assert principal("CN=node-5") == Principal("user", "node-5")
    # brook-* is for Brook's own pods: anything else under it is refused.
    assert principal("CN=brook-node-3,O=Acme") is None
    assert principal("CN=brook-admin") is None
    assert principal("CN=brook-node-x") is None
    assert principal("O=Acme") is None


@pytest.mark.parametrize("process", ["coordinator", "groups"])
def test_coordinator_and_group_manager_are_super_users(
    process: str, ca: CertAuthority, tmp_path: Path
) -> None:
    for pod, workload, container in production_pods(process):
        _, args = parsed(container, pod, tmp_path)
        attributes = certificate_volume(workload, container)["volumeAttributes"]
        cert = issue_like_the_csi_driver(ca, attributes, pod, tmp_path / pod.name)
        rules = parse_mapping_rules(args.principal_mapping)
        principal = map_certificate(rules, cert.subject, cert.sans, cert.common_name)
        assert principal == ROLE_PRINCIPALS[process]
        # Every process agrees (the nodes check these callers).
        for other in PARSERS:
            other_workload, other_container = brook_container("production", other)
            _, other_args = parsed(other_container, pod_for(other_workload), tmp_path)
            assert str(principal) in other_args.super_users, (process, other)


def test_the_processes_accept_their_flags_with_csi_certificates(
    ca: CertAuthority, tmp_path: Path
) -> None:
    """Brook's own security setup takes each production command line, with certificate
    files as the csi-driver writes them: TLS, client certificates required, the health
    listener, and the pod's certificate as the identity of its outgoing calls."""
    for process in PARSERS:
        pod, workload, container = production_pods(process)[0]
        _, args = parsed(container, pod, tmp_path)
        attributes = certificate_volume(workload, container)["volumeAttributes"]
        directory = tmp_path / "csi" / pod.name
        issue_like_the_csi_driver(ca, attributes, pod, directory)
        for flag in ("tls_cert", "tls_key", "tls_ca", "etcd_ca", "etcd_cert", "etcd_key"):
            value = getattr(args, flag)
            setattr(args, flag, value.replace(TLS_DIR, str(directory)))
        security = ProcessSecurity.from_args(args)
        assert security.server.tls and security.server.require_client_certificate
        assert security.server.health_address == args.health_listen
        assert security.peer.tls and security.peer.cert_file == args.tls_cert
        assert security.etcd.tls


# -- probes ------------------------------------------------------------------------------


@pytest.mark.parametrize("process", sorted(PARSERS))
def test_production_probes_hit_the_health_listener(process: str, tmp_path: Path) -> None:
    workload, container = brook_container("production", process)
    _, args = parsed(container, pod_for(workload), tmp_path)
    health = port_of(args.health_listen)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["health"] == health
    assert health not in {port_of(args.listen), port_of(args.metrics_listen)}
    probes = [k for k in ("startupProbe", "readinessProbe", "livenessProbe") if k in container]
    assert {"readinessProbe", "livenessProbe"} <= set(probes)
    for probe in probes:
        assert container[probe]["grpc"] == {"port": health}, (process, probe)


# -- metrics -----------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("process", sorted(PARSERS))
def test_metrics_are_exposed_and_annotated(overlay: str, process: str, tmp_path: Path) -> None:
    workload, container = brook_container(overlay, process)
    _, args = parsed(container, pod_for(workload), tmp_path)
    assert args.metrics_listen.startswith("0.0.0.0:")
    port = port_of(args.metrics_listen)
    assert {"name": "metrics", "containerPort": port} in container["ports"]
    annotations = workload["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == METRICS_PATH
    # https exactly where /metrics is TLS (production: --http-tls with the pod's pair).
    expected = "https" if overlay == "production" else "http"
    assert annotations["prometheus.io/scheme"] == expected
    assert bool(args.tls_cert) == (overlay == "production")
    # Reachable through the workload's headless Service too (endpoints discovery).
    service = find(overlay, "Service", workload["spec"]["serviceName"])
    assert {"name": "metrics", "port": port, "targetPort": "metrics"} in service["spec"]["ports"]


def test_dev_is_plaintext_and_says_so(tmp_path: Path) -> None:
    for process in PARSERS:
        workload, container = brook_container("dev", process)
        _, args = parsed(container, pod_for(workload), tmp_path)
        assert not args.tls_cert and args.authorizer == "none"
    text = (K8S / "overlays" / "dev" / "kustomization.yaml").read_text()
    assert "PLAINTEXT, for local use only" in text


def test_prometheus_job_dials_the_names_in_the_certificates(tmp_path: Path) -> None:
    """k8s/monitoring/prometheus-scrape.yaml rewrites each target's address to the pod's
    DNS name, which its certificate carries; and Prometheus' principal is a plain user."""
    jobs = yaml.safe_load((K8S / "monitoring" / "prometheus-scrape.yaml").read_text())
    (job,) = jobs
    assert job["scheme"] == "https" and set(job["tls_config"]) >= {"ca_file", "cert_file"}
    (address,) = [r for r in job["relabel_configs"] if r.get("target_label") == "__address__"]
    for process in PARSERS:
        pod, workload, container = production_pods(process)[0]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        _, args = parsed(container, pod, tmp_path)
        values = {
            "__meta_kubernetes_pod_name": pod.name,
            "__meta_kubernetes_pod_label_app": labels["app"],
            "__meta_kubernetes_namespace": pod.namespace,
            "__meta_kubernetes_pod_container_port_number": str(port_of(args.metrics_listen)),
        }
        joined = address["separator"].join(values[label] for label in address["source_labels"])
        match = re.fullmatch(address["regex"], joined)
        assert match
        target = match.expand(re.sub(r"\$(\d)", r"\\\1", address["replacement"]))
        attributes = certificate_volume(workload, container)["volumeAttributes"]
        host, port = target.rsplit(":", 1)
        assert host in csi_list(csi_expand(attributes[ATTR + "dns-names"], pod))
        assert int(port) == port_of(args.metrics_listen)
    (certificate,) = yaml_documents(K8S / "monitoring" / "prometheus-certificate.yaml")
    assert certificate["spec"]["issuerRef"]["name"] == "brook-ca"
    assert "client auth" in certificate["spec"]["usages"]
    rules = parse_mapping_rules(args.principal_mapping)
    cn = certificate["spec"]["commonName"]
    assert map_certificate(rules, f"CN={cn}", [], cn) == Principal("user", cn)


# -- the files next to the overlay -------------------------------------------------------


def test_cert_manager_prerequisites(tmp_path: Path) -> None:
    """k8s/cert-manager/: the Issuer the pods name, a CA behind it, and etcd's Secret."""
    kustomization = yaml.safe_load((K8S / "cert-manager" / "kustomization.yaml").read_text())
    documents = [d for name in kustomization["resources"] for d in yaml_documents(
        K8S / "cert-manager" / name)]  # fmt: skip
    by_kind: dict[str, dict[str, Any]] = {}
    for doc in documents:
        assert doc["apiVersion"] == "cert-manager.io/v1"
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    ca_secret = by_kind["Issuer"]["brook-ca"]["spec"]["ca"]["secretName"]
    (ca_cert,) = [
        c for c in by_kind["Certificate"].values() if c["spec"]["secretName"] == ca_secret
    ]
    assert ca_cert["spec"]["isCA"] is True
    etcd = find("production", "StatefulSet", "brook-etcd")
    (secret,) = [v["secret"]["secretName"] for v in pod_spec(etcd)["volumes"] if "secret" in v]
    (etcd_cert,) = [c for c in by_kind["Certificate"].values() if c["spec"]["secretName"] == secret]
    assert etcd_cert["spec"]["issuerRef"]["name"] == "brook-ca"
    assert {"server auth", "client auth"} <= set(etcd_cert["spec"]["usages"])
    namespace = kustomization["namespace"]
    assert namespace == etcd["metadata"]["namespace"]
    (container,) = pod_spec(etcd)["containers"]
    env = container_env(container, pod_for(etcd, 2))
    member_host = env["ETCD_ADVERTISE_CLIENT_URLS"].split("://", 1)[1].rsplit(":", 1)[0]
    names = etcd_cert["spec"]["dnsNames"]
    assert member_host.split(".", 1)[1] in {n.removeprefix("*.") for n in names if n[:2] == "*."}
    assert "brook-etcd-client" in names


def test_admin_cli_pod(tmp_path: Path) -> None:
    """k8s/clients/brook-admin.yaml: valid Kubernetes, locked down like the overlay's
    pods, a csi-driver certificate whose CN maps to a super user, and the CLI's TLS
    environment pointing at it."""
    path = K8S / "clients" / "brook-admin.yaml"
    result = subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "-k", makefile_var("K8S_VERSION"), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = (result.stdout + result.stderr).splitlines()
    assert result.returncode == 0 and all(line.startswith("INFO") for line in lines), lines
    (pod,) = yaml_documents(path)
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["BROOK_BOOTSTRAP"] == "brook:7070"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    csi = volumes[mounts[TLS_DIR]]["csi"]
    assert csi["driver"] == CSI_DRIVER
    attributes = csi["volumeAttributes"]
    assert {env["BROOK_TLS_CA"], env["BROOK_TLS_CERT"], env["BROOK_TLS_KEY"]} == {
        f"{TLS_DIR}/ca.crt", f"{TLS_DIR}/tls.crt", f"{TLS_DIR}/tls.key"}  # fmt: skip
    node, node_container = brook_container("production", "node")
    node_attributes = certificate_volume(node, node_container)["volumeAttributes"]
    assert attributes[ATTR + "issuer-name"] == node_attributes[ATTR + "issuer-name"]
    _, args = parsed(node_container, pod_for(node), tmp_path)
    rules = parse_mapping_rules(args.principal_mapping)
    cn = attributes[ATTR + "common-name"]
    principal = map_certificate(rules, f"CN={cn}", [], cn)
    assert principal is not None and str(principal) in args.super_users
    assert "client auth" in csi_list(attributes[ATTR + "key-usages"])
    production_image = {c["image"] for c in pod_spec(node)["containers"]}
    assert {container["image"]} == production_image
