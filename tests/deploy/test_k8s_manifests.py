"""The Kubernetes overlays build offline, validate against the Kubernetes schemas, pass checkov, and keep
the promises ops rely on: hardened pods, secrets only by reference, NATS highly available with streams
at three replicas, and network paths that are exactly the architecture's."""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from services.launcher import nats_server_binary
from tests.deploy.k8s_tools import OVERLAYS, assert_checkov_clean, rendered
from tests.tls import make_tls_files

SERVICES = {"intake": 8001, "router": 8002, "directory": 8003, "notify": 8004}
KUBERNETES_VERSION = "1.30.0"


@cache
def objects(overlay: str) -> tuple[dict[str, Any], ...]:
    """The rendered objects, parsed once per run (tests only read them)."""
    return tuple(doc for doc in yaml.safe_load_all(rendered(overlay)) if doc)


def named(overlay: str, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects(overlay) if o["kind"] == kind}


def workloads(overlay: str) -> list[dict[str, Any]]:
    return [o for o in objects(overlay) if o["kind"] in ("Deployment", "StatefulSet", "Job")]


def all_containers(pod: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from pod.get("initContainers", [])
    yield from pod["containers"]


def config(overlay: str) -> dict[str, str]:
    maps = [o for o in objects(overlay) if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("pathways-config")]
    assert len(maps) == 1
    return maps[0]["data"]


def nats_conf(overlay: str) -> str:
    maps = [o for o in objects(overlay) if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("nats-config")]
    return maps[0]["data"]["nats.conf"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_kubernetes_schemas(overlay: str) -> None:
    for obj in objects(overlay):
        # strict: a misspelt field is an error, not silently dropped by the API server.
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_checkov_passes_and_every_skip_is_named_and_justified(
    overlay: str, checkov_report: dict[str, dict[str, list[dict[str, Any]]]]
) -> None:
    assert_checkov_clean(checkov_report[overlay])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_locked_down_probed_and_limited(overlay: str) -> None:
    assert {w["metadata"]["name"] for w in workloads(overlay)} >= {*SERVICES, "nats"}
    for workload in workloads(overlay):
        pod = workload["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in all_containers(pod):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"] is True
            assert context["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["limits"] and container["resources"]["requests"]
        for container in pod["containers"]:
            assert container["readinessProbe"] and container["livenessProbe"], workload["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_mounted_files_by_reference_never_committed_or_in_the_environment(overlay: str) -> None:
    assert not [o for o in objects(overlay) if o["kind"] == "Secret"]
    assert config(overlay)["PATHWAYS_SECRETS_DIR"] == "/var/run/secrets/pathways"
    for workload in workloads(overlay):
        pod = workload["spec"]["template"]["spec"]
        for container in all_containers(pod):
            assert not [e for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]
            assert not [e for e in container.get("envFrom", []) if "secretRef" in e]
    for name, deployment in named(overlay, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert {"name": "secrets", "secret": {"secretName": f"pathways-{name}", "defaultMode": 0o440}} in pod["volumes"]
        for container in all_containers(pod):
            assert {"name": "secrets", "mountPath": "/var/run/secrets/pathways", "readOnly": True} in container[
                "volumeMounts"]


def test_production_images_are_pinned_by_digest_and_always_pulled() -> None:
    for workload in workloads("production"):
        for container in all_containers(workload["spec"]["template"]["spec"]):
            assert re.fullmatch(r"[\w./:-]+@sha256:[0-9a-f]{64}", container["image"]), container["image"]
            assert container["imagePullPolicy"] == "Always"


def test_production_nats_is_a_three_node_cluster_with_tls_users_and_streams_at_three_replicas() -> None:
    nats = named("production", "StatefulSet")["nats"]
    assert nats["spec"]["replicas"] == 3
    assert nats["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    conf = nats_conf("production")
    assert all(f"nats://nats-{i}.nats-headless:6222" in conf for i in range(3))
    assert conf.count("tls {") == 2 and "verify: true" in conf  # clients and routes; routes mutually
    assert 'include "../auth/auth.conf"' in conf
    volumes = {v["name"]: v for v in nats["spec"]["template"]["spec"]["volumes"]}
    assert volumes["auth"]["secret"]["secretName"] == "nats-auth"
    assert volumes["tls"]["secret"]["secretName"] == "nats-tls"
    assert config("production")["NATS_STREAM_REPLICAS"] == "3"
    assert config("production")["NATS_CA_FILE"] == "/var/run/secrets/nats-ca/ca.crt"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nats_accepts_the_overlay_s_configuration(overlay: str, tmp_path: Path) -> None:
    """The rendered nats.conf, with its mounts laid out under a temporary directory, is one nats-server
    accepts: syntax, the included users file, the TLS files it names."""
    nats = tmp_path / "etc" / "nats"  # the pod's mounts, under tmp_path
    make_tls_files(nats / "tls")
    (nats / "auth").mkdir()
    (nats / "auth" / "auth.conf").write_text('authorization { users: [ {user: intake, password: "x"} ] }\n')
    conf = nats_conf(overlay)
    for mount in ("/etc/nats/", "/data/", "/var/run/nats/"):
        conf = conf.replace(mount, f"{tmp_path}{mount}")
    (nats / "config").mkdir()
    (nats / "config" / "nats.conf").write_text(conf)
    result = subprocess.run([nats_server_binary(), "-c", str(nats / "config" / "nats.conf"), "-t"],
                            capture_output=True, text=True, env={**os.environ, "POD_NAME": "nats-0"})
    assert result.returncode == 0 and "is valid" in result.stdout + result.stderr, result.stderr


def test_dev_runs_one_nats_node_and_its_own_postgresql() -> None:
    assert named("dev", "StatefulSet")["nats"]["spec"]["replicas"] == 1
    assert "cluster {" not in nats_conf("dev") and "jetstream {" in nats_conf("dev")
    assert config("dev")["NATS_STREAM_REPLICAS"] == "1"
    assert "postgres" in named("dev", "StatefulSet") and "postgres" in named("dev", "Service")


def test_production_scales_survives_disruption_spreads_and_migrates_first() -> None:
    deployments = named("production", "Deployment")
    assert set(named("production", "HorizontalPodAutoscaler")) == set(SERVICES)
    for name, hpa in named("production", "HorizontalPodAutoscaler").items():
        assert hpa["spec"]["scaleTargetRef"]["name"] == name and hpa["spec"]["minReplicas"] >= 2
        assert "replicas" not in deployments[name]["spec"]  # the autoscaler owns the count
    budgets = named("production", "PodDisruptionBudget")
    assert set(budgets) == {*SERVICES, "nats"}
    assert budgets["nats"]["spec"]["maxUnavailable"] == 1
    for workload in workloads("production"):
        keys = {c["topologyKey"] for c in workload["spec"]["template"]["spec"]["topologySpreadConstraints"]}
        assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    for name, deployment in deployments.items():
        init = deployment["spec"]["template"]["spec"]["initContainers"]
        assert [c["args"] for c in init] == [["pathways", "db", "upgrade", "--service", name]]


NOT_PUBLIC = ("/internal", "/metrics", "/docs", "/redoc", "/openapi", "/healthz", "/readyz")


def _ingress_backend(paths: list[dict[str, Any]], path: str) -> str | None:
    """The Service an Ingress sends ``path`` to: an Exact match, else the longest matching Prefix
    (element-wise: /ops matches /ops/x, not /ops-users), as the Ingress specification says."""
    exact = [p for p in paths if p["pathType"] == "Exact" and p["path"] == path]
    prefixes = [p for p in paths if p["pathType"] == "Prefix"
                and (path == p["path"] or path.startswith(p["path"].rstrip("/") + "/"))]
    best = exact or sorted(prefixes, key=lambda p: len(p["path"]), reverse=True)
    return best[0]["backend"]["service"]["name"] if best else None


def _route_paths(app: Any) -> set[str]:
    """Every path the app serves, API or not (FastAPI keeps included routers as branches of their own)."""
    paths = set()
    for route in app.routes:
        if hasattr(route, "effective_route_contexts"):
            paths |= {context.path for context in route.effective_route_contexts()}
        else:
            paths.add(route.path)
    return paths


def test_the_ingress_routes_every_public_route_to_its_service_and_nothing_internal() -> None:
    from services.directory.app import create_app as directory
    from services.intake.app import create_app as intake
    from services.intake.settings import IntakeSettings
    from services.notify.app import create_app as notify
    from services.router.app import create_app as router

    (ingress,) = named("production", "Ingress").values()
    paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    apps = {"intake": lambda: intake(IntakeSettings(encryption_keys="k1:" + "A" * 43 + "=", active_key_id="k1")),
            "router": router, "directory": directory, "notify": notify}
    for service, create_app in apps.items():
        app = create_app()
        routes = set(app.openapi()["paths"])  # every API endpoint is in the OpenAPI document
        # Web pages and their assets are not API operations: they are in the app's routes only.
        routes |= {path for path in _route_paths(app) if not path.startswith(NOT_PUBLIC)}
        for route in routes:
            expected = None if route.startswith(NOT_PUBLIC) else service
            assert _ingress_backend(paths, route) == expected, f"{service} {route}"


# ---- network paths ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Peer:
    """A pod (labels, its namespace's labels) or an address outside the cluster."""

    labels: dict[str, str] = field(default_factory=dict)
    namespace: dict[str, str] | None = None  # None: Pathways' own namespace
    ip: str | None = None


HOME = {"kubernetes.io/metadata.name": "pathways"}
INGRESS_CONTROLLER = Peer({"app": "ingress-nginx"}, {"pathways.nhs/ingress": "true"})
PROMETHEUS = Peer({"app": "prometheus"}, {"pathways.nhs/monitoring": "true"})
KUBE_DNS = Peer({"k8s-app": "kube-dns"}, {"kubernetes.io/metadata.name": "kube-system"})
INTERNET = Peer(ip="203.0.113.7")
PRIVATE_NETWORK = Peer(ip="10.20.30.40")
OTHER_NAMESPACE = Peer({"app.kubernetes.io/name": "router", "app.kubernetes.io/component": "service"},
                       {"kubernetes.io/metadata.name": "elsewhere"})


def pod(name: str) -> Peer:
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "pathways"}
    if name in SERVICES:
        labels["app.kubernetes.io/component"] = "service"
    return Peer(labels)


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if not {"In": present and labels[key] in values, "NotIn": not present or labels[key] not in values,
                "Exists": present, "DoesNotExist": not present}[operator]:
            return False
    return True


def _peer_matches(rule_peer: dict[str, Any], peer: Peer) -> bool:
    if "ipBlock" in rule_peer:
        if peer.ip is None:
            return False
        address = ipaddress.ip_address(peer.ip)
        block = rule_peer["ipBlock"]
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(e) for e in block.get("except", []))
    if peer.ip is not None:
        return False
    if "namespaceSelector" in rule_peer:
        if not _selects(rule_peer["namespaceSelector"], peer.namespace or HOME):
            return False
    elif peer.namespace is not None:
        return False
    return _selects(rule_peer.get("podSelector", {}), peer.labels)


def _port_matches(rule: dict[str, Any], port: int) -> bool:
    return "ports" not in rule or any(p["port"] == port for p in rule["ports"])


def _direction_allows(policies: list[dict[str, Any]], kind: str, subject: Peer, other: Peer, port: int) -> bool:
    key, peers_key = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
    selecting = [p for p in policies if kind in p["spec"]["policyTypes"]
                 and _selects(p["spec"]["podSelector"], subject.labels)]
    return any(
        _port_matches(rule, port) and any(_peer_matches(peer, other) for peer in rule.get(peers_key, []))
        for policy in selecting for rule in policy["spec"].get(key, [])
    )


def reachable(overlay: str, source: Peer, target: Peer, port: int) -> bool:
    """Whether the overlay's NetworkPolicies let ``source`` open a connection to ``target:port``."""
    policies = list(named(overlay, "NetworkPolicy").values())
    inside = lambda peer: peer.ip is None and peer.namespace is None  # noqa: E731
    egress_ok = not inside(source) or _direction_allows(policies, "Egress", source, target, port)
    ingress_ok = not inside(target) or _direction_allows(policies, "Ingress", target, source, port)
    return egress_ok and ingress_ok


ARCHITECTURE = [
    # (from, to, port): every path the system needs
    *[(pod(s), pod("nats"), 4222) for s in SERVICES],
    *[(pod(s), KUBE_DNS, 53) for s in SERVICES],
    (pod("nats"), pod("nats"), 6222),
    (pod("router"), pod("directory"), 8003),
    (pod("notify"), pod("directory"), 8003),
    (pod("notify"), pod("intake"), 8001),
    (pod("intake"), pod("directory"), 8003),  # ops keys and EHR clients are checked there
    (pod("notify"), INTERNET, 443),  # webhooks to providers
    (pod("intake"), INTERNET, 443),  # FHIR Subscription notifications to EHRs
    *[(INGRESS_CONTROLLER, pod(s), port) for s, port in SERVICES.items()],
    *[(PROMETHEUS, pod(s), port) for s, port in SERVICES.items()],
    (PROMETHEUS, pod("nats"), 8222),
]
FORBIDDEN = [
    (pod("router"), pod("intake"), 8001),  # only notify reads the handoff
    (pod("directory"), pod("intake"), 8001),
    (pod("directory"), pod("router"), 8002),
    (pod("nats"), pod("intake"), 8001),
    (INGRESS_CONTROLLER, pod("nats"), 4222),  # the bus is never public
    (OTHER_NAMESPACE, pod("nats"), 4222),
    (OTHER_NAMESPACE, pod("directory"), 8003),
    (pod("router"), INTERNET, 443),
    (pod("directory"), INTERNET, 443),
    (pod("nats"), INTERNET, 443),
    (pod("notify"), PRIVATE_NETWORK, 443),  # a registered webhook URL cannot reach inside
    (pod("notify"), INTERNET, 80),
    (pod("router"), pod("nats"), 6222),  # clients never speak the route protocol
]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_allow_the_architecture_s_paths_and_nothing_else(overlay: str) -> None:
    deny = named(overlay, "NetworkPolicy")["default-deny"]["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress", "Egress"]
    blocked = [(s, t, p) for s, t, p in ARCHITECTURE if not reachable(overlay, s, t, p)]
    assert blocked == []
    opened = [(s, t, p) for s, t, p in FORBIDDEN if reachable(overlay, s, t, p)]
    assert opened == []


def test_the_database_is_reachable_from_the_services_only() -> None:
    dev_db = pod("postgres")
    assert all(reachable("dev", pod(s), dev_db, 5432) for s in SERVICES)
    assert not reachable("dev", pod("nats"), dev_db, 5432)
    assert not reachable("dev", INGRESS_CONTROLLER, dev_db, 5432)
    operator_db = Peer({"cnpg.io/cluster": "pathways"}, {"pathways.nhs/database": "true"})
    assert all(reachable("production", pod(s), operator_db, 5432) for s in SERVICES)
    assert not reachable("production", pod("nats"), operator_db, 5432)
