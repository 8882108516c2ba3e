"""A cluster as the live scheduler sees it: nodes and pods (Kubernetes objects, JSON form) turned into a
`rlmodel.sim.backend.ClusterState`, so that `ObservationBuilder` gives a model the same observation, in the
same units, as in the twin it was trained in.

* capacity = `status.allocatable`; requested = the effective requests of the node's non-terminated pods;
* CPU in use: estimated from the requests (no Prometheus reading yet: `CPU_SOURCE` says so);
* watts = the node's curve at that CPU; the curve comes from the node label `rlsched.io/node-type` (a built-in
  type or a type of the scenario given), else the first `node_types` pattern (regex on the node name) that
  matches, else the default type, with a warning: a node without a curve is never scored as free power;
* a node is asleep when it carries one of `asleep_taints` (default: cluster-autoscaler's
  `ToBeDeletedByClusterAutoscaler`) or a label in `asleep_labels`;
* idle time: since the node's last pod left, as this view saw it (from its first sighting otherwise).
Time is Unix time, s.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from rlmodel.errors import RlschedError
from rlmodel.live.filter import NodeInfo, node_info
from rlmodel.live.podspec import Obj, ObjectError, is_terminated, pod_requests
from rlmodel.sim.backend import ASLEEP, AWAKE, fits_mask
from rlmodel.sim.power import BUILTIN_NODE_TYPES, NodeType, PowerCurves

log = logging.getLogger("rlsched.live")
NODE_TYPE_LABEL = "rlsched.io/node-type"
CPU_SOURCE = "requests"  # what `demand` is estimated from


class ViewError(RlschedError):
    """The view's configuration is invalid (an unknown node type, a bad pattern)."""


@dataclass
class CurveResolver:
    """Which power curve a node gets: its label, then `patterns` (regex on the name, in order), then `default`."""

    types: Mapping[str, NodeType] = field(default_factory=lambda: dict(BUILTIN_NODE_TYPES))
    patterns: Sequence[tuple[str, str]] = ()
    default: str = "x3550"

    def __post_init__(self) -> None:
        for pattern, name in self.patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ViewError(f"scheduler.node_types: {pattern!r}: invalid regular expression: {exc}") from None
            if name not in self.types:
                raise ViewError(f"scheduler.node_types: {pattern!r} = {name!r}: unknown node type "
                                f"(known: {', '.join(sorted(self.types))})")
        if self.default not in self.types:
            raise ViewError(f"scheduler.default_node_type: {self.default!r}: unknown node type")
        self._warned: set[str] = set()

    def resolve(self, name: str, labels: Mapping[str, str]) -> tuple[NodeType, str]:
        """(node type, how it was found: "label", "pattern" or "default")."""
        label = labels.get(NODE_TYPE_LABEL)
        if label is not None and label in self.types:
            return self.types[label], "label"
        for pattern, type_name in self.patterns:
            if re.search(pattern, name):
                return self.types[type_name], "pattern"
        if name not in self._warned:
            self._warned.add(name)
            why = f"label {NODE_TYPE_LABEL}={label!r} names no known type" if label is not None else \
                f"no {NODE_TYPE_LABEL} label and no node_types pattern matches"
            log.warning("node %s: %s; scored with the default curve %s", name, why, self.default)
        return self.types[self.default], "default"


class LiveState:
    """A `ClusterState` of live nodes (fixed order: by name) at `now_s`, built by `ClusterView.state()`."""

    wake_s = 0.0  # waking is not modelled live: a sleeping node shows as asleep

    def __init__(self, nodes: Sequence[NodeInfo], types: Sequence[NodeType], asleep: Sequence[bool],
                 empty_since: Sequence[float], now_s: float, sleep_after_s: float = 0.0):
        self.infos = list(nodes)
        self.names = [n.name for n in nodes]
        self.num_nodes = len(nodes)
        self.node_types = list(types)
        self.cores = np.array([n.cpu_cores for n in nodes], dtype=np.float64)
        self.memory_gib = np.array([n.memory_gib for n in nodes], dtype=np.float64)
        self.curves = np.array([t.watts for t in types], dtype=np.float64).reshape(len(nodes), -1)
        self.idle_watts = self.curves[:, 0].copy() if len(nodes) else np.zeros(0)
        self.peak_watts = self.curves[:, -1].copy() if len(nodes) else np.zeros(0)
        self._power = PowerCurves(self.curves) if len(nodes) else None
        self.sleep_after_s = sleep_after_s
        self.now_s = now_s
        self.cpu_requested = [n.cpu_requested for n in nodes]
        self.mem_requested = [n.memory_requested for n in nodes]
        self.demand = list(self.cpu_requested)  # CPU_SOURCE: estimated from requests
        self.pods_on = [n.pods for n in nodes]
        self.state = [ASLEEP if a else AWAKE for a in asleep]
        self.empty_since = list(empty_since)
        self.wake_done = [math.inf] * len(nodes)
        self.watts = self.power_w(np.asarray(self.demand)).tolist() if len(nodes) else []

    def fits(self, cpu_request: float, memory_request: float) -> np.ndarray:
        return fits_mask(self, cpu_request, memory_request)

    def power_w(self, demand_cores: np.ndarray) -> np.ndarray:
        assert self._power is not None
        return self._power.at_utilization(np.asarray(demand_cores, dtype=np.float64) / np.maximum(self.cores, 1e-9))


class ClusterView:
    """The nodes and pods of a cluster (kept up to date by whoever feeds it: the informers), and the
    `LiveState` and filter inputs derived from them. Not thread-safe: feed and read from one thread or lock."""

    def __init__(self, resolver: CurveResolver | None = None, *, asleep_taints: Iterable[str] = (
                 "ToBeDeletedByClusterAutoscaler",), asleep_labels: Iterable[str] = (), sleep_after_s: float = 0.0):
        self.resolver = resolver or CurveResolver()
        self.asleep_taints, self.asleep_labels = set(asleep_taints), set(asleep_labels)
        self.sleep_after_s = sleep_after_s
        self.nodes: dict[str, Obj] = {}
        self.pods: dict[tuple[str, str], Obj] = {}  # (namespace, name) -> pod
        self.assumed: dict[tuple[str, str], str] = {}  # pods assumed on a node before their bind returns
        self._empty_since: dict[str, float] = {}
        self._requests: dict[tuple[str, str], tuple[float, float]] = {}  # parsed once per pod update

    # ------------------------------------------------------------------ feeding
    def upsert_node(self, node: Obj, now_s: float) -> None:
        name = node["metadata"]["name"]
        self.nodes[name] = node
        self._empty_since.setdefault(name, now_s)

    def delete_node(self, name: str) -> None:
        self.nodes.pop(name, None)
        self._empty_since.pop(name, None)

    def upsert_pod(self, pod: Obj, now_s: float) -> None:
        key = (pod["metadata"].get("namespace", ""), pod["metadata"]["name"])
        before = self._node_of(key)
        self.pods[key] = pod
        try:
            self._requests[key] = pod_requests(pod)
        except ObjectError as exc:  # a pod the API accepted but rlsched cannot read: counted as requesting nothing
            log.warning("pod %s/%s: %s", key[0], key[1], exc)
            self._requests[key] = (0.0, 0.0)
        if (pod.get("spec") or {}).get("nodeName"):
            self.assumed.pop(key, None)  # the bind is visible: no longer an assumption
        self._note_empty(before, now_s)

    def delete_pod(self, namespace: str, name: str, now_s: float) -> None:
        key = (namespace, name)
        before = self._node_of(key)
        self.pods.pop(key, None)
        self.assumed.pop(key, None)
        self._requests.pop(key, None)
        self._note_empty(before, now_s)

    def assume(self, namespace: str, name: str, node: str) -> None:
        """kube-scheduler's assume: the pod counts on `node` at once, before the bind returns."""
        self.assumed[(namespace, name)] = node

    def forget(self, namespace: str, name: str) -> None:
        """Undo `assume` (the bind failed)."""
        self.assumed.pop((namespace, name), None)

    def _node_of(self, key: tuple[str, str]) -> str | None:
        if key in self.assumed:
            return self.assumed[key]
        pod = self.pods.get(key)
        return ((pod or {}).get("spec") or {}).get("nodeName") or None

    def _note_empty(self, node: str | None, now_s: float) -> None:
        if node and node in self.nodes and not self._bound(node):
            self._empty_since[node] = now_s

    def _bound(self, node: str) -> list[Obj]:
        return [p for key, p in self.pods.items() if self._node_of(key) == node and not is_terminated(p)]

    # ------------------------------------------------------------------ reading
    def node_infos(self) -> list[NodeInfo]:
        """Every node (sorted by name) with what its non-terminated (or assumed) pods request."""
        per_node: dict[str, list[float]] = {n: [0.0, 0.0, 0.0] for n in self.nodes}
        for key, pod in self.pods.items():
            node = self._node_of(key)
            if node in per_node and not is_terminated(pod):
                cpu, mem = self._requests.get(key, (0.0, 0.0))
                acc = per_node[node]
                acc[0] += cpu
                acc[1] += mem
                acc[2] += 1
        return [node_info(self.nodes[n], cpu_requested=per_node[n][0], memory_requested=per_node[n][1],
                          pods=int(per_node[n][2])) for n in sorted(self.nodes)]

    def state(self, now_s: float, infos: Sequence[NodeInfo] | None = None) -> LiveState:
        infos = self.node_infos() if infos is None else infos
        types, asleep = [], []
        for info in infos:
            types.append(self.resolver.resolve(info.name, info.labels)[0])
            asleep.append(any(t.key in self.asleep_taints for t in info.taints)
                          or any(k in self.asleep_labels for k in info.labels))
        empty = [self._empty_since.get(i.name, now_s) for i in infos]
        return LiveState(infos, types, asleep, empty, now_s, self.sleep_after_s)
