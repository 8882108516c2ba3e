"""The Kubernetes manifests parse into the official client's models, with no unknown fields, least privilege,
and resource requests and limits; the Prometheus config passes promtool."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from kubernetes.client import ApiClient

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = sorted((ROOT / "minikube" / "manifests").glob("*.yaml"))
MODELS = {("v1", "Namespace"): "V1Namespace", ("apps/v1", "DaemonSet"): "V1DaemonSet",
          ("v1", "Service"): "V1Service", ("v1", "Pod"): "V1Pod", ("apps/v1", "Deployment"): "V1Deployment",
          ("v1", "ServiceAccount"): "V1ServiceAccount", ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
          ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding"}


def _docs():
    for path in MANIFESTS:
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc:
                yield pytest.param(doc, id=f"{path.name}#{i}")


def _strip_nones(x):
    if isinstance(x, dict):
        return {k: _strip_nones(v) for k, v in x.items() if v is not None}
    if isinstance(x, list):
        return [_strip_nones(v) for v in x]
    return x


def _normalize(x):
    """Quantities and ints as the client serializes them."""
    return json.loads(json.dumps(x, default=str))


@pytest.mark.parametrize("doc", list(_docs()))
def test_manifest_is_a_valid_kubernetes_object(doc):
    key = (doc["apiVersion"], doc["kind"])
    assert key in MODELS, f"unexpected kind {key}"
    client = ApiClient()
    obj = client.deserialize(json.dumps(doc), MODELS[key], "application/json")
    back = _strip_nones(client.sanitize_for_serialization(obj))
    # a field the model does not know is dropped on the way through: the round trip must be lossless
    assert _normalize(back) == _normalize(doc)


@pytest.mark.parametrize("doc", [d for d in _docs() if d.values[0]["kind"] in ("DaemonSet", "Pod", "Deployment")])
def test_workloads_are_least_privilege_with_resources(doc):
    spec = doc["spec"]["template"]["spec"] if "template" in doc["spec"] else doc["spec"]
    assert spec.get("automountServiceAccountToken") is False
    for c in spec["containers"]:
        assert c["resources"]["requests"] and c["resources"]["limits"], c["name"]
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["runAsNonRoot"] is True
        assert sc.get("privileged", False) is False and sc["capabilities"]["drop"] == ["ALL"]
    for v in spec.get("volumes", []):
        if "hostPath" in v:
            mounts = [m for c in spec["containers"] for m in c.get("volumeMounts", []) if m["name"] == v["name"]]
            assert all(m.get("readOnly") for m in mounts), f"hostPath {v['name']} must be mounted read-only"


def test_prometheus_config_passes_promtool():
    r = subprocess.run(["promtool", "check", "config", str(ROOT / "minikube" / "prometheus.example.yml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_round_trip_catches_a_misspelt_field():
    doc = yaml.safe_load((ROOT / "minikube" / "manifests" / "20-resource-blocker.yaml").read_text())
    doc["spec"]["template"]["spec"]["containers"][0]["resource"] = doc["spec"]["template"]["spec"]["containers"][0].pop(
        "resources")
    client = ApiClient()
    back = _strip_nones(client.sanitize_for_serialization(client.deserialize(json.dumps(doc), "V1DaemonSet",
                                                                               "application/json")))
    assert _normalize(back) != _normalize(doc)
