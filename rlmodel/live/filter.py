"""kube-scheduler's Filter phase for the constraints rlsched evaluates, on Kubernetes objects (JSON form).

Plugins, with upstream semantics (pkg/scheduler/framework/plugins):
* NodeName: `spec.nodeName`, when set, is the only feasible node.
* NodeUnschedulable: a node with `spec.unschedulable` only takes pods tolerating
  `node.kubernetes.io/unschedulable:NoSchedule`.
* TaintToleration: every NoSchedule or NoExecute taint of the node must be tolerated (PreferNoSchedule is a
  score, not a filter).
* NodeAffinity: `spec.nodeSelector` (every label equal) and the required node affinity
  (`nodeSelectorTerms`: any term; within a term, every `matchExpressions` requirement on labels and every
  `matchFields` requirement on `metadata.name`; operators In, NotIn, Exists, DoesNotExist, Gt, Lt).
* NodeResourcesFit: the pod's effective requests (`podspec.pod_requests`) fit next to what the node's
  pods request, and the node has room for one more pod (`allocatable.pods`).

What rlsched does not evaluate is refused, never silently ignored: `unsupported(pod)` names the field
(required inter-pod affinity or anti-affinity, topology spread constraints with DoNotSchedule). Preferred
affinities and ScheduleAnyway spread constraints are preferences (kube-scheduler scores them); rlsched's
score does not include them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from rlmodel.live.podspec import Obj, ObjectError, as_list, as_map, as_text, resources

EPS = 1e-9
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"


@dataclass(frozen=True)
class Taint:
    key: str
    value: str = ""
    effect: str = ""


@dataclass
class NodeInfo:
    """A node as the filter sees it: labels, taints, capacity (cores, GiB, pods) and what is bound to it."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[Taint] = field(default_factory=list)
    unschedulable: bool = False
    cpu_cores: float = 0.0
    memory_gib: float = 0.0
    max_pods: int = 110
    cpu_requested: float = 0.0
    memory_requested: float = 0.0
    pods: int = 0


def node_info(node: Obj, *, cpu_requested: float = 0.0, memory_requested: float = 0.0, pods: int = 0) -> NodeInfo:
    """NodeInfo of a Node object (capacity from `status.allocatable`)."""
    meta, spec, status = node.get("metadata") or {}, node.get("spec") or {}, node.get("status") or {}
    taints = [(str(t.get("key", "")), str(t.get("value") or ""), str(t.get("effect", "")))
              for t in spec.get("taints") or [] if isinstance(t, Mapping)]
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    return node_info_of(meta.get("name"), labels, taints, bool(spec.get("unschedulable")),
                        status.get("allocatable") or {}, cpu_requested=cpu_requested,
                        memory_requested=memory_requested, pods=pods)


def node_info_of(name: object, labels: dict[str, str], taints: Iterable[tuple[str, str, str]],
                 unschedulable: bool, allocatable: Obj, *, cpu_requested: float = 0.0, memory_requested: float = 0.0,
                 pods: int = 0) -> NodeInfo:
    """NodeInfo of a Node's parts: name, labels (kept, not copied), taints as (key, value, effect),
    `spec.unschedulable` and `status.allocatable` (a map of quantities)."""
    if not isinstance(name, str) or not name:
        raise ObjectError("Node.metadata.name: missing")
    cpu, mem = resources(allocatable, f"Node {name}: status.allocatable")
    try:
        max_pods = int(str(allocatable.get("pods", 110)))
    except ValueError:
        raise ObjectError(f"Node {name}: status.allocatable.pods: not a whole number") from None
    return NodeInfo(name, labels, [Taint(*t) for t in taints],
                    unschedulable, cpu, mem, max_pods, cpu_requested, memory_requested, pods)


def tolerates(tolerations: Iterable[Obj], taint: Taint) -> bool:
    """Whether some toleration matches the taint (upstream v1 Toleration.ToleratesTaint)."""
    for i, t in enumerate(tolerations):
        where = f"spec.tolerations[{i}]"
        t = as_map(t, where)
        effect = as_text(t.get("effect"), f"{where}.effect")
        if effect and effect != taint.effect:
            continue
        operator = as_text(t.get("operator"), f"{where}.operator") or "Equal"
        key = as_text(t.get("key"), f"{where}.key")
        if operator == "Exists":
            if not key or key == taint.key:
                return True
        elif operator == "Equal" and key == taint.key and as_text(t.get("value"), f"{where}.value") == taint.value:
            return True
    return False


def unsupported(pod: Obj) -> str | None:
    """The field of a constraint rlsched cannot evaluate, or None."""
    spec = as_map(as_map(pod, "pod").get("spec"), "spec")
    affinity = as_map(spec.get("affinity"), "spec.affinity")
    for kind in ("podAffinity", "podAntiAffinity"):
        if as_map(affinity.get(kind), f"spec.affinity.{kind}").get("requiredDuringSchedulingIgnoredDuringExecution"):
            return f"spec.affinity.{kind}.requiredDuringSchedulingIgnoredDuringExecution"
    for i, c in enumerate(as_list(spec.get("topologySpreadConstraints"), "spec.topologySpreadConstraints")):
        if as_map(c, f"spec.topologySpreadConstraints[{i}]").get("whenUnsatisfiable", "DoNotSchedule") \
                == "DoNotSchedule":
            return f"spec.topologySpreadConstraints[{i}]"
    return None


def _requirement(req: Obj, value: str | None, where: str) -> bool:
    """A NodeSelectorRequirement against the node's value (None: the label is absent)."""
    req = as_map(req, where)
    op = req.get("operator")
    values = [as_text(v, f"{where}.values") for v in as_list(req.get("values"), f"{where}.values")]
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt"):
        if len(values) != 1:
            raise ObjectError(f"{where}: {op} takes exactly one value")
        try:
            bound = int(values[0])
        except ValueError:
            raise ObjectError(f"{where}: {op} takes an integer, got {values[0][:20]!r}") from None
        try:
            have = int(value) if value is not None else None
        except ValueError:
            return False
        return have is not None and (have > bound if op == "Gt" else have < bound)
    raise ObjectError(f"{where}: unknown operator {str(op)[:20]!r}")


def _term_matches(term: Obj, node: NodeInfo, where: str) -> bool:
    term = as_map(term, where)
    exprs = as_list(term.get("matchExpressions"), f"{where}.matchExpressions")
    fields = as_list(term.get("matchFields"), f"{where}.matchFields")
    if not exprs and not fields:
        return False  # an empty term matches no node
    for i, req in enumerate(exprs):
        at = f"{where}.matchExpressions[{i}]"
        key = as_text(as_map(req, at).get("key"), f"{at}.key")
        if not _requirement(req, node.labels.get(key), at):
            return False
    for i, req in enumerate(fields):
        if as_map(req, f"{where}.matchFields[{i}]").get("key") != "metadata.name":
            raise ObjectError(f"{where}.matchFields[{i}].key: only metadata.name is supported")
        if not _requirement(req, node.name, f"{where}.matchFields[{i}]"):
            return False
    return True


class PodFilter:
    """The pod's side of the filter, read (and validated) once, then checked against any number of nodes."""

    def __init__(self, pod: Obj, request: tuple[float, float]):
        spec = as_map(as_map(pod, "pod").get("spec"), "spec")
        self.node_name = as_text(spec.get("nodeName"), "spec.nodeName")
        self.tolerations = as_list(spec.get("tolerations"), "spec.tolerations")
        selector = as_map(spec.get("nodeSelector"), "spec.nodeSelector")
        self.selector = {str(k): as_text(v, f"spec.nodeSelector.{k}") for k, v in selector.items()}
        affinity = as_map(spec.get("affinity"), "spec.affinity")
        node_affinity = as_map(affinity.get("nodeAffinity"), "spec.affinity.nodeAffinity")
        required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
        self.where = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
        self.terms = None if required is None else as_list(as_map(required, self.where).get("nodeSelectorTerms"),
                                                            self.where)
        self.cpu, self.mem = request

    @property
    def simple(self) -> bool:
        """No nodeName, nodeSelector or required node affinity: only resources, taints and cordons matter."""
        return not self.node_name and not self.selector and self.terms is None

    def mask(self, nodes: Sequence[NodeInfo], fit: np.ndarray, hard: np.ndarray) -> np.ndarray:
        """(N,) bool, the nodes that can take the pod: `reason(node) is None` for each, with the totals `fit` was
        computed from, evaluated only where it is needed. `fit`: NodeResourcesFit for every node (vectorized:
        `resources_fit`); `hard`: the nodes that are cordoned or carry a NoSchedule/NoExecute taint."""
        if self.simple:
            out = fit & ~hard
            check = np.flatnonzero(fit & hard)
        else:
            out = np.zeros(len(nodes), dtype=bool)
            check = np.flatnonzero(fit)
        for i in check:  # resources already fit there: only the constraints are left to check
            out[i] = self.constraint_reason(nodes[int(i)]) is None
        return out

    def resources_fit(self, cpu_requested: np.ndarray, memory_requested: np.ndarray, pods: np.ndarray,
                      cpu_cores: np.ndarray, memory_gib: np.ndarray, max_pods: np.ndarray) -> np.ndarray:
        """NodeResourcesFit for every node at once (the checks at the end of `reason`)."""
        return (pods + 1 <= max_pods) & (cpu_requested + self.cpu <= cpu_cores + EPS) & \
            (memory_requested + self.mem <= memory_gib + EPS)

    def reason(self, node: NodeInfo) -> str | None:
        """Why `node` cannot take the pod (kube-scheduler's reason, one line), or None when it can."""
        return self.constraint_reason(node) or self.resource_reason(node.cpu_requested, node.memory_requested,
                                                                    node.pods, node)

    def resource_reason(self, cpu_requested: float, memory_requested: float, pods: float, node: NodeInfo
                        ) -> str | None:
        """NodeResourcesFit's reason with these totals on `node` (its capacity), or None."""
        if pods + 1 > node.max_pods:
            return "Too many pods"
        if cpu_requested + self.cpu > node.cpu_cores + EPS:
            return "Insufficient cpu"
        if memory_requested + self.mem > node.memory_gib + EPS:
            return "Insufficient memory"
        return None

    def constraint_reason(self, node: NodeInfo) -> str | None:
        """Why `node` cannot take the pod whatever its resources (name, cordon, taints, selector, affinity)."""
        if self.node_name and self.node_name != node.name:
            return "node(s) didn't match the requested node name"
        if node.unschedulable and not tolerates(self.tolerations, Taint(UNSCHEDULABLE_TAINT, "", "NoSchedule")):
            return "node(s) were unschedulable"
        for taint in node.taints:
            if taint.effect in ("NoSchedule", "NoExecute") and not tolerates(self.tolerations, taint):
                return f"node(s) had untolerated taint {{{taint.key}: {taint.value}}}"
        if self.selector and any(node.labels.get(k) != v for k, v in self.selector.items()):
            return "node(s) didn't match Pod's node affinity/selector"
        if self.terms is not None and not any(_term_matches(t, node, f"{self.where}[{i}]")
                                              for i, t in enumerate(self.terms)):
            return "node(s) didn't match Pod's node affinity/selector"
        return None


def filter_node(pod: Obj, request: tuple[float, float], node: NodeInfo) -> str | None:
    """Why `node` cannot take `pod` (kube-scheduler's reason, one line), or None when it can.
    `request`: the pod's effective (cores, GiB), `podspec.pod_requests(pod)`."""
    return PodFilter(pod, request).reason(node)


def filter_nodes(pod: Obj, request: tuple[float, float], nodes: Sequence[NodeInfo]
                 ) -> tuple[list[int], dict[str, str]]:
    """(indices of the feasible nodes, {name: reason} for the others)."""
    check = PodFilter(pod, request).reason
    feasible, failed = [], {}
    for i, node in enumerate(nodes):
        reason = check(node)
        if reason is None:
            feasible.append(i)
        else:
            failed[node.name] = reason
    return feasible, failed


def describe(failed: Mapping[str, str], total: int) -> str:
    """kube-scheduler's FailedScheduling summary: "0/3 nodes are available: 2 Insufficient cpu, 1 ..."."""
    counts: dict[str, int] = {}
    for reason in failed.values():
        counts[reason] = counts.get(reason, 0) + 1
    parts = ", ".join(f"{n} {r}" for r, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"0/{total} nodes are available: {parts}." if parts else f"0/{total} nodes are available."


__all__ = ["NodeInfo", "PodFilter", "Taint", "describe", "filter_node", "filter_nodes", "node_info", "node_info_of",
           "tolerates", "unsupported"]
