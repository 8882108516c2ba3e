"""The Kubernetes API, through the official client: nodes, manifests (create or update), test app pods.

Every call has a timeout (`kubernetes.request_timeout_s`) and is retried (`kubernetes.retries`
attempts, short backoff) on connection errors and 5xx; anything else raises `TestbedError` with one
line naming the object. Label selectors are sent and also applied client-side, so a server that
ignores them (kmock) gives the same answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from rlmodel.assets import asset_path
from rlmodel.errors import TestbedError
from rlmodel.live.podspec import ObjectError, binding, create_binding, quantity
from rlmodel.testbed.config import TestbedConfig

T = TypeVar("T")
MANIFEST_DIR = asset_path("manifests")  # package data (minikube/manifests in the source tree)
PART_OF = {"app.kubernetes.io/part-of": "rlsched"}
TESTAPP_LABELS = {"app.kubernetes.io/name": "testapp"}
MANIFEST_AGENTS_NAMESPACE = "rlsched-system"  # the node agents' namespace as the manifests name it
SCHEDULER_NAME = "rlsched"


@dataclass(frozen=True)
class NodeInfo:
    """A node as the harness sees it: name, the address the host reaches it at, allocatable resources."""

    name: str
    address: str
    cpu_cores: float
    memory_gib: float
    labels: tuple[tuple[str, str], ...] = ()
    """the node's labels, as (key, value) pairs"""
    addresses: tuple[str, ...] = ()
    """every address in status.addresses (InternalIP, ExternalIP, Hostname)"""


def cpu_cores(value: str | int | float) -> float:
    """A Kubernetes CPU quantity ("2", "1500m") in cores."""
    return _quantity(value, "CPU")


def memory_gib(value: str | int | float) -> float:
    """A Kubernetes memory quantity ("4Gi", "3927800Ki", "2G", "1073741824") in GiB."""
    return _quantity(value, "memory") / 2**30


def _quantity(value: str | int | float, what: str) -> float:
    try:
        return quantity(value, what)
    except ObjectError:
        raise TestbedError(f"invalid {what} quantity {str(value)[:50]!r}") from None


def load_manifests(folder: Path = MANIFEST_DIR) -> list[dict[str, Any]]:
    """The manifests' objects in file order (YAML documents; empty documents skipped)."""
    import yaml

    docs = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
                if doc:
                    docs.append(doc)
        except yaml.YAMLError as exc:
            raise TestbedError(f"{path}: invalid YAML: {str(exc).splitlines()[0]}") from None
    return docs


def testapp_template(docs: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The test app pod template (the manifests' Pod `testapp-template`), which is never applied as is."""
    for doc in docs:
        if doc.get("kind") == "Pod" and doc["metadata"]["name"] == "testapp-template":
            return doc
    raise TestbedError(f"{MANIFEST_DIR}: no Pod named testapp-template")


def with_registry(doc: dict[str, Any], registry: str) -> dict[str, Any]:
    """A copy of the manifest whose rlsched/* images are pulled from `registry` (pull policy IfNotPresent);
    the manifest itself when `registry` is ""."""
    import copy

    if not registry:
        return doc
    doc = copy.deepcopy(doc)
    spec = doc.get("spec") or {}
    pod_spec = (spec.get("template") or {}).get("spec") if doc.get("kind") != "Pod" else spec
    for c in (pod_spec or {}).get("containers", []) + (pod_spec or {}).get("initContainers", []):
        if str(c.get("image", "")).startswith("rlsched/"):
            c["image"] = f"{registry.rstrip('/')}/{c['image']}"
            c["imagePullPolicy"] = "IfNotPresent"
    return doc


def _is_template(doc: dict[str, Any]) -> bool:
    return doc.get("kind") == "Pod" and doc["metadata"]["name"].endswith("-template")


class Kube:
    """A thin, bounded wrapper over the client for what the harness needs."""

    def __init__(self, cfg: TestbedConfig, *, context: str | None = ""):
        """`context`: the kubeconfig context; "" = the configured one (`kubernetes.context`, else the Minikube
        profile), None = the kubeconfig's current context."""
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        self.cfg = cfg
        self.namespace = cfg.kubernetes.namespace
        self.agents_namespace = cfg.kubernetes.agents_namespace
        self.timeout = cfg.kubernetes.request_timeout_s
        self.retries = cfg.kubernetes.retries
        import yaml

        where = cfg.kubernetes.kubeconfig or "~/.kube/config"
        ctx = cfg.context if context == "" else context
        try:
            api = config.new_client_from_config(config_file=cfg.kubernetes.kubeconfig or None, context=ctx)
        except (ConfigException, OSError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            shown = repr(ctx) if ctx else "(current)"
            raise TestbedError(f"kubeconfig {where}, context {shown}: {first} "
                               "(run `rlsched cluster up` first, or set kubernetes.kubeconfig/context)") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" line {mark.line + 1}:" if mark is not None else ""
            raise TestbedError(f"kubeconfig {where}:{line} not valid YAML "
                               f"({getattr(exc, 'problem', None) or type(exc).__name__})") from None
        except (TypeError, AttributeError, KeyError, ValueError) as exc:  # YAML that is not a kubeconfig
            raise TestbedError(f"kubeconfig {where}: not a kubeconfig ({type(exc).__name__}: "
                               f"{str(exc)[:120]})") from None
        # typed as Any: the generated models mark every field Optional, and the harness checks what it reads
        self.api: Any = api
        self.core: Any = client.CoreV1Api(api)
        self.apps: Any = client.AppsV1Api(api)
        self.rbac: Any = client.RbacAuthorizationV1Api(api)

    # ------------------------------------------------------------------ bounded calls
    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """fn(*args, **kwargs) with the timeout; retried on connection errors and 5xx."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        kwargs.setdefault("_request_timeout", self.timeout)
        last = ""
        for attempt in range(self.retries):
            try:
                return fn(*args, **kwargs)
            except ApiException as exc:
                if exc.status is not None and exc.status < 500:
                    raise
                last = f"HTTP {exc.status} {exc.reason}"
            except (HTTPError, OSError) as exc:
                last = type(exc).__name__ + (f": {exc}" if str(exc) else "")
            if attempt + 1 < self.retries:
                time.sleep(min(0.25 * 2**attempt, 2.0))
        raise TestbedError(f"Kubernetes API at {self.api.configuration.host}: {what} failed after "
                           f"{self.retries} attempts ({last[:200]})")

    # ------------------------------------------------------------------ nodes
    def nodes(self, selector: str = "") -> list[NodeInfo]:
        """Ready-or-not nodes sorted by name, with their InternalIP and allocatable resources; only those matching
        the label selector `selector` ("" = all; sent to the server and applied here too)."""
        from rlmodel.testbed.selector import parse_selector

        sel = parse_selector(selector)
        kwargs = {"label_selector": str(sel)} if sel.requirements else {}
        items = self.call("list nodes", self.core.list_node, **kwargs).items
        out = []
        for n in items:
            labels = dict(n.metadata.labels or {})
            if not sel.matches(labels):
                continue
            addresses = {a.type: a.address for a in (n.status.addresses or [])} if n.status else {}
            address = addresses.get("InternalIP") or addresses.get("ExternalIP") or addresses.get("Hostname")
            alloc = (n.status.allocatable or {}) if n.status else {}
            if not address:
                raise TestbedError(f"node {n.metadata.name}: no InternalIP in status.addresses")
            out.append(NodeInfo(n.metadata.name, address, cpu_cores(alloc.get("cpu", "0")),
                                memory_gib(alloc.get("memory", "0")), tuple(sorted(labels.items())),
                                tuple(a.address for a in (n.status.addresses or []) if a.address)))
        return sorted(out, key=lambda n: n.name)

    # ------------------------------------------------------------------ manifests
    # kind -> (API group attribute, the client's snake_case name, namespaced): the client's methods are
    # {verb}_namespaced_{name} or, cluster-scoped, {verb}_{name}
    _KINDS = {"Namespace": ("core", "namespace", False), "Service": ("core", "service", True),
              "ServiceAccount": ("core", "service_account", True), "DaemonSet": ("apps", "daemon_set", True),
              "Deployment": ("apps", "deployment", True), "Role": ("rbac", "role", True),
              "RoleBinding": ("rbac", "role_binding", True)}

    def _op(self, verb: str, doc: dict[str, Any]) -> tuple[Any, tuple[str, ...]]:
        """The client method that does `verb` (create, patch, delete, read) to the doc's kind, and its
        namespace argument."""
        kind = doc["kind"]
        if kind not in self._KINDS:
            raise TestbedError(f"manifest {doc['metadata'].get('name')}: kind {kind} is not supported by the harness")
        group, name, namespaced = self._KINDS[kind]
        fn = getattr(getattr(self, group), f"{verb}_namespaced_{name}" if namespaced else f"{verb}_{name}")
        return fn, (doc["metadata"].get("namespace") or self.namespace,) if namespaced else ()

    def namespace_of(self, manifest_namespace: str) -> str:
        """The configured namespace for one named in the manifests (`rlsched` or `rlsched-system`)."""
        return self.agents_namespace if manifest_namespace == MANIFEST_AGENTS_NAMESPACE else self.namespace

    def _with_namespace(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The manifest's object in the configured namespaces (the manifests name `rlsched` for the test app
        and `rlsched-system` for the node agents)."""
        meta = doc["metadata"]
        if doc["kind"] == "Namespace":
            return {**doc, "metadata": {**meta, "name": self.namespace_of(meta["name"])}}
        return {**doc, "metadata": {**meta, "namespace": self.namespace_of(meta.get("namespace", ""))}}

    def apply(self, docs: Iterable[dict[str, Any]]) -> list[tuple[str, str, str]]:
        """Create each object, or update it when it exists (idempotent). Returns (kind, name, action)."""
        from kubernetes.client.exceptions import ApiException

        done = []
        for doc in docs:
            if _is_template(doc):
                continue
            doc = self._with_namespace(doc)
            (create, ns_args), (patch, _) = self._op("create", doc), self._op("patch", doc)
            name, kind = doc["metadata"]["name"], doc["kind"]
            try:
                self.call(f"create {kind} {name}", create, *ns_args, doc)
                done.append((kind, name, "created"))
            except ApiException as exc:
                if exc.status != 409:
                    raise TestbedError(f"create {kind} {name}: HTTP {exc.status} {exc.reason}") from None
                try:
                    self.call(f"update {kind} {name}", patch, name, *ns_args, doc)
                except ApiException as exc2:
                    raise TestbedError(f"update {kind} {name}: HTTP {exc2.status} {exc2.reason}") from None
                done.append((kind, name, "updated"))
        return done

    def delete(self, docs: Iterable[dict[str, Any]]) -> list[tuple[str, str, str]]:
        """Delete each object (missing ones are fine), in reverse order. Returns (kind, name, action)."""
        from kubernetes.client.exceptions import ApiException

        done = []
        for doc in reversed(list(docs)):
            if _is_template(doc):
                continue
            doc = self._with_namespace(doc)
            delete, ns_args = self._op("delete", doc)
            name, kind = doc["metadata"]["name"], doc["kind"]
            try:
                self.call(f"delete {kind} {name}", delete, name, *ns_args)
                done.append((kind, name, "deleted"))
            except ApiException as exc:
                if exc.status != 404:
                    raise TestbedError(f"delete {kind} {name}: HTTP {exc.status} {exc.reason}") from None
                done.append((kind, name, "absent"))
        return done

    def exists(self, doc: dict[str, Any]) -> bool:
        """Whether the manifest's object exists in the cluster."""
        from kubernetes.client.exceptions import ApiException

        doc = self._with_namespace(doc)
        kind, name = doc["kind"], doc["metadata"]["name"]
        read, ns_args = self._op("read", doc)
        try:
            self.call(f"read {kind} {name}", read, name, *ns_args)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise TestbedError(f"read {kind} {name}: HTTP {exc.status} {exc.reason}") from None

    # ------------------------------------------------------------------ test app pods
    def testapp_pods(self) -> list[Any]:
        """The test app pods in the namespace (label filter applied client-side too)."""
        selector = ",".join(f"{k}={v}" for k, v in TESTAPP_LABELS.items())
        pods = self.call("list pods", self.core.list_namespaced_pod, self.namespace, label_selector=selector).items
        return [p for p in pods if all((p.metadata.labels or {}).get(k) == v for k, v in TESTAPP_LABELS.items())]

    def create_pod(self, body: dict[str, Any]) -> None:
        from kubernetes.client.exceptions import ApiException

        name = body["metadata"]["name"]
        try:
            self.call(f"create pod {name}", self.core.create_namespaced_pod, self.namespace, body)
        except ApiException as exc:
            raise TestbedError(f"create pod {name}: HTTP {exc.status} {exc.reason}") from None

    def bind(self, pod: str, node: str) -> None:
        """Bind `pod` to `node` (what a scheduler does): POST pods/{pod}/binding."""
        from kubernetes.client.exceptions import ApiException

        try:
            self.call(f"bind pod {pod} to {node}", create_binding, self.core, pod, self.namespace,
                      binding(pod, self.namespace, node))
        except ApiException as exc:
            raise TestbedError(f"bind pod {pod} to node {node}: HTTP {exc.status} {exc.reason}") from None

    def wait_ready(self, pod: str, timeout_s: float, poll_s: float = 0.5) -> None:
        """Return when `pod` is Ready; TestbedError when it fails or the time is up."""
        deadline = time.monotonic() + timeout_s
        phase = "unknown"
        while True:
            p = self.call(f"read pod {pod}", self.core.read_namespaced_pod, pod, self.namespace)
            status = p.status
            phase = (status.phase if status else None) or "Pending"
            if phase in ("Failed", "Succeeded"):
                raise TestbedError(f"pod {pod} on node {p.spec.node_name}: {phase} before it became Ready")
            if any(c.type == "Ready" and c.status == "True" for c in (status.conditions or [])) if status else False:
                return
            if time.monotonic() >= deadline:
                raise TestbedError(f"pod {pod} on node {p.spec.node_name} not Ready after {timeout_s:g} s "
                                   f"(phase {phase}); see `kubectl -n {self.namespace} describe pod {pod}`")
            time.sleep(poll_s)

    def delete_pod(self, pod: str) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self.call(f"delete pod {pod}", self.core.delete_namespaced_pod, pod, self.namespace,
                      grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                raise TestbedError(f"delete pod {pod}: HTTP {exc.status} {exc.reason}") from None

    def delete_testapp_pods(self, timeout_s: float = 60.0) -> int:
        """Delete every test app pod and wait until they are gone. Returns how many there were."""
        pods = self.testapp_pods()
        for p in pods:
            self.delete_pod(p.metadata.name)
        deadline = time.monotonic() + timeout_s
        while self.testapp_pods():
            if time.monotonic() >= deadline:
                raise TestbedError(f"test app pods still present {timeout_s:g} s after deletion")
            time.sleep(0.25)
        return len(pods)
