"""The Kubernetes manifests build offline and keep the promises ops rely on."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUBECTL = shutil.which("kubectl")


def build(overlay: str) -> list[dict]:
    if KUBECTL is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    rendered = subprocess.run([KUBECTL, "kustomize", str(K8S / overlay)], check=True, capture_output=True, text=True)
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


@pytest.mark.parametrize("overlay", ["base", "overlays/production"])
def test_every_workload_has_probes_limits_and_a_locked_down_security_context(overlay):
    workloads = [d for d in build(overlay) if d["kind"] in ("Deployment", "StatefulSet")]
    assert {w["metadata"]["name"] for w in workloads} == {"intake", "router", "directory", "notify", "nats"}
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            assert container["readinessProbe"] and container["livenessProbe"]
            assert container["resources"]["limits"] and container["resources"]["requests"]
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_secrets_are_referenced_never_committed():
    documents = build("overlays/production")
    assert not [d for d in documents if d["kind"] == "Secret"]
    services = [d for d in documents if d["kind"] == "Deployment"]
    for deployment in services:
        refs = deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]
        assert {"secretRef": {"name": f"pathways-{deployment['metadata']['name']}"}} in refs


def test_nats_is_a_three_node_jetstream_cluster_and_ingress_is_denied_by_default():
    documents = build("overlays/production")
    nats = next(d for d in documents if d["kind"] == "StatefulSet")
    assert nats["spec"]["replicas"] == 3
    config = next(d for d in documents if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "nats-config")
    assert "jetstream" in config["data"]["nats.conf"]
    deny = next(d for d in documents if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "default-deny")
    assert deny["spec"]["podSelector"] == {} and deny["spec"]["policyTypes"] == ["Ingress"]
