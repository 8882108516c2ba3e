"""The Kubernetes manifests parse into the official client's models, with no unknown fields, least privilege,
and resource requests and limits; the Prometheus config passes promtool."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes.client import ApiClient

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = sorted((ROOT / "minikube" / "manifests").glob("*.yaml"))
MODELS = {("v1", "Namespace"): "V1Namespace", ("apps/v1", "DaemonSet"): "V1DaemonSet",
          ("v1", "Service"): "V1Service", ("v1", "Pod"): "V1Pod", ("apps/v1", "Deployment"): "V1Deployment",
          ("v1", "ServiceAccount"): "V1ServiceAccount", ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
          ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
          ("rbac.authorization.k8s.io/v1", "ClusterRole"): "V1ClusterRole",
          ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "V1ClusterRoleBinding"}


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


# ---------------------------------------------------------------- Pod Security Standards (kubernetes.io/docs/
# concepts/security/pod-security-standards/), the rules of the levels our namespaces use, as admission checks them
BASELINE_CAPS = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
                 "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}


def pss_violations(spec: dict, level: str) -> list[str]:
    """What a pod spec does that the Pod Security level forbids (empty: admitted)."""
    if level == "privileged":
        return []
    out = []
    containers = spec.get("containers", []) + spec.get("initContainers", [])
    pod_sc = spec.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            out.append(key)
    out += [f"hostPath volume {v['name']}" for v in spec.get("volumes", []) if "hostPath" in v]
    for c in containers:
        sc = c.get("securityContext", {})
        if sc.get("privileged"):
            out.append(f"{c['name']}: privileged")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            out.append(f"{c['name']}: hostPort")
        extra = set(sc.get("capabilities", {}).get("add", [])) - BASELINE_CAPS
        if extra:
            out.append(f"{c['name']}: capabilities {sorted(extra)}")
        for s in (sc, pod_sc):
            if s.get("seccompProfile", {}).get("type") == "Unconfined":
                out.append(f"{c['name']}: seccomp Unconfined")
    if level == "baseline":
        return out
    out += [f"volume {v['name']}" for v in spec.get("volumes", [])
            if not set(v) - {"name"} <= RESTRICTED_VOLUMES]
    for c in containers:
        sc = c.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{c['name']}: allowPrivilegeEscalation")
        if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
            out.append(f"{c['name']}: runAsNonRoot")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            out.append(f"{c['name']}: runAsUser 0")
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{c['name']}: seccompProfile")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []) or set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            out.append(f"{c['name']}: capabilities")
    return out


def _all_docs():
    return [d.values[0] for d in _docs()]


def test_every_workload_passes_its_namespaces_pod_security_level():
    docs = _all_docs()
    levels = {d["metadata"]["name"]: d["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
              for d in docs if d["kind"] == "Namespace"}
    assert levels == {"rlsched-system": "privileged", "rlsched": "restricted"}
    workloads = [d for d in docs if d["kind"] in ("DaemonSet", "Pod", "Deployment")]
    assert workloads
    for d in workloads:
        spec = d["spec"]["template"]["spec"] if "template" in d["spec"] else d["spec"]
        level = levels[d["metadata"]["namespace"]]
        assert pss_violations(spec, level) == [], (d["metadata"]["name"], level)
    # the node agents need privileged: under baseline (the old label) they would be rejected
    agents = [d for d in workloads if d["metadata"]["namespace"] == "rlsched-system"]
    assert {d["metadata"]["name"] for d in agents} == {"node-exporter", "resource-blocker"}
    for d in agents:
        assert pss_violations(d["spec"]["template"]["spec"], "baseline"), d["metadata"]["name"]


def test_the_checker_catches_what_restricted_forbids():
    ok = {"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}, "containers": [{"name": "c",
          "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True,
                              "capabilities": {"drop": ["ALL"]}}}], "volumes": [{"name": "t", "emptyDir": {}}]}
    assert pss_violations(ok, "restricted") == []
    no_seccomp = json.loads(json.dumps(ok))
    del no_seccomp["securityContext"]
    assert pss_violations(no_seccomp, "restricted") == ["c: seccompProfile"]
    host = json.loads(json.dumps(ok))
    host["volumes"].append({"name": "h", "hostPath": {"path": "/"}})
    assert "hostPath volume h" in pss_violations(host, "baseline")


def test_base_images_are_pinned_by_digest():
    for dockerfile in (ROOT / "containers" / "resource_blocker" / "Dockerfile", ROOT / "testapp" / "Dockerfile",
                       ROOT / "jmeter" / "Dockerfile", ROOT / "containers" / "scheduler" / "Dockerfile"):
        froms = [ln.split()[1] for ln in dockerfile.read_text().splitlines() if ln.startswith("FROM ")]
        assert froms and all("@sha256:" in f and len(f.split("@sha256:")[1]) == 64 for f in froms), dockerfile


SCHEDULER = ROOT / "minikube" / "scheduler" / "scheduler.yaml"


def _scheduler_docs():
    return [d for d in yaml.safe_load_all(SCHEDULER.read_text()) if d]


@pytest.mark.parametrize("doc", _scheduler_docs(), ids=lambda d: d["kind"])
def test_scheduler_manifests_are_valid_kubernetes_objects(doc):
    test_manifest_is_a_valid_kubernetes_object(doc)


def test_the_scheduler_has_exactly_the_rights_it_needs():
    docs = {d["kind"]: d for d in _scheduler_docs()}
    rules = {(g, r): set(rule["verbs"]) for rule in docs["ClusterRole"]["rules"]
             for g in rule["apiGroups"] for r in rule["resources"]}
    assert rules == {("", "pods"): {"get", "list", "watch"}, ("", "pods/binding"): {"create"},
                     ("", "nodes"): {"get", "list", "watch"}, ("", "events"): {"create"}}
    lease = docs["Role"]
    assert lease["metadata"]["namespace"] == "rlsched-system"
    assert [(r["apiGroups"], r["resources"], sorted(r["verbs"])) for r in lease["rules"]] == \
        [(["coordination.k8s.io"], ["leases"], ["create", "get", "update"])]
    spec = docs["Deployment"]["spec"]["template"]["spec"]
    assert pss_violations(spec, "restricted") == []  # it needs nothing from the host
    for c in spec["containers"]:
        assert c["resources"]["requests"] and c["resources"]["limits"]
    from click.testing import CliRunner

    from rlmodel.cli import main

    r = CliRunner().invoke(main, ["scheduler", "manifests"])
    assert r.exit_code == 0 and r.output == SCHEDULER.read_text()


SERVE = ROOT / "minikube" / "scheduler" / "serve.yaml"
EXTENDER_CONFIG = ROOT / "minikube" / "scheduler" / "extender-config.yaml"


@pytest.mark.parametrize("doc", [d for d in yaml.safe_load_all(SERVE.read_text()) if d], ids=lambda d: d["kind"])
def test_serve_manifests_are_valid_kubernetes_objects(doc):
    test_manifest_is_a_valid_kubernetes_object(doc)


def test_serve_only_reads_and_its_pod_passes_restricted():
    docs = {d["kind"]: d for d in yaml.safe_load_all(SERVE.read_text()) if d}
    rules = {(g, r): set(rule["verbs"]) for rule in docs["ClusterRole"]["rules"]
             for g in rule["apiGroups"] for r in rule["resources"]}
    assert rules == {("", "pods"): {"get", "list", "watch"}, ("", "nodes"): {"get", "list", "watch"}}
    spec = docs["Deployment"]["spec"]["template"]["spec"]
    assert pss_violations(spec, "restricted") == []
    assert spec["containers"][0]["args"][0] == "serve"
    assert docs["Service"]["spec"]["type"] == "ClusterIP"
    # the Deployment's command line is one the CLI accepts
    from click.testing import CliRunner

    from rlmodel.cli import main

    out = CliRunner().invoke(main, [*spec["containers"][0]["args"], "--help"])
    assert out.exit_code == 0, out.output


# k8s.io/kube-scheduler/config/v1 Extender (json tags), and the extender stanza's required verbs
EXTENDER_FIELDS = {"urlPrefix", "filterVerb", "preemptVerb", "prioritizeVerb", "weight", "bindVerb", "enableHTTPS",
                   "tlsConfig", "httpTimeout", "nodeCacheCapable", "managedResources", "ignorable"}


def test_the_extender_configuration_uses_kube_schedulers_fields_and_our_verbs():
    cfg = yaml.safe_load(EXTENDER_CONFIG.read_text())
    assert cfg["apiVersion"] == "kubescheduler.config.k8s.io/v1" and cfg["kind"] == "KubeSchedulerConfiguration"
    (ext,) = cfg["extenders"]
    assert set(ext) <= EXTENDER_FIELDS
    assert (ext["filterVerb"], ext["prioritizeVerb"]) == ("filter", "prioritize")  # rlsched serve's paths
    assert ext["ignorable"] is True and ext["nodeCacheCapable"] is False and 1 <= ext["weight"] <= 100
    serve = {d["kind"]: d for d in yaml.safe_load_all(SERVE.read_text()) if d}
    svc = serve["Service"]
    assert ext["urlPrefix"] == (f"http://{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc:"
                                f"{svc['spec']['ports'][0]['port']}")


def test_the_scheduler_image_context_holds_the_package_and_its_dependencies(tmp_path):
    from rlmodel.testbed.cluster import SCHEDULER_IMAGE, scheduler_image_context

    ctx = scheduler_image_context(tmp_path / "ctx")
    assert not [p for p in ctx.rglob("*") if p.is_symlink()]  # Docker cannot follow links out of a context
    assert (ctx / "rlmodel" / "assets" / "scheduler" / "scheduler.yaml").is_file()
    requirements = (ctx / "requirements.txt").read_text().splitlines()
    names = {r.split("<")[0].split(">")[0].split(";")[0] for r in requirements}
    assert {"numpy", "kubernetes", "prometheus-client", "prometheus-api-client"} <= names
    assert not names & {"pytest", "hypothesis", "kmock", "ruff", "flask"}  # no test, dev or service extras
    dockerfile = (ctx / "Dockerfile").read_text()
    assert "COPY rlmodel" in dockerfile and "-r /opt/rlsched/requirements.txt" in dockerfile
    deployment = next(d for d in _scheduler_docs() if d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == SCHEDULER_IMAGE
    # the image's entry point runs from the context alone (its dependencies from this venv)
    out = subprocess.run([sys.executable, "-m", "rlmodel.console", "scheduler", "manifests"], cwd=tmp_path,
                         env={"PYTHONPATH": str(ctx), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "kind: Deployment" in out.stdout, out.stderr[-500:]


def test_cluster_up_builds_the_scheduler_image_with_the_others(monkeypatch):
    import docker

    from rlmodel.testbed import cluster
    from rlmodel.testbed.config import TestbedConfig

    built, loaded = [], []

    class Images:
        def build(self, path, dockerfile, tag, rm):
            assert (Path(path) / dockerfile).is_file()
            built.append((tag, sorted(p.name for p in Path(path).iterdir())))

    class Client:
        images = Images()

        def ping(self):
            return True

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(cluster, "_unreachable", lambda host: "")
    monkeypatch.setattr(docker, "from_env", lambda: Client())
    monkeypatch.setattr(cluster, "minikube", lambda cfg, *args, **kw: loaded.append(args[-1]))
    cluster.build_and_load_images(TestbedConfig(), say=lambda line: None)
    tags = [t for t, _ in built]
    assert tags == [*cluster.IMAGES, cluster.SCHEDULER_IMAGE] and loaded == tags
    assert dict(built)[cluster.SCHEDULER_IMAGE] == ["Dockerfile", "requirements.txt", "rlmodel"]
