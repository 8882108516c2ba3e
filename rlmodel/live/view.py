"""A cluster as the live scheduler sees it: nodes and pods (Kubernetes objects, JSON form) turned into a
`rlmodel.sim.backend.ClusterState`, so that `ObservationBuilder` gives a model the same observation, in the
same units, as in the twin it was trained in.

* capacity = `status.allocatable`; requested = the effective requests of the node's non-terminated pods;
* CPU in use: the node's measured CPU (`set_cpu_used`, fed from Prometheus by `rlmodel.live.usage`) when
  reading at most `usage_max_age_s` old exists, else estimated from the requests;
* watts = the node's curve at that CPU; the curve comes from the node label `rlsched.io/node-type` (a built-in
  type or a type of the scenario given), else the first `node_types` pattern (regex on the node name) that
  matches, else the default type, with a warning: a node without a curve is never scored as free power;
* a node is asleep when it carries one of `asleep_taints` (default: cluster-autoscaler's
  `ToBeDeletedByClusterAutoscaler`) or a label in `asleep_labels`;
* idle time: since the node's last pod left, as this view saw it (from its first sighting otherwise);
* a pod's signals (owner kind, QoS, priority, batch size, its workload's run-time history): `signals(pod)`,
  from the pods this view has seen finish (`rlmodel.live.signals`), as the twin's observation has them.
Time is Unix time, s.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from rlmodel.envs.observation import PodSignals
from rlmodel.errors import RlschedError
from rlmodel.live.filter import NodeInfo, node_info
from rlmodel.live.podspec import Obj, ObjectError, is_terminated, pod_requests
from rlmodel.live.signals import History, owner_of, pod_signals, run_time_s, timestamp_s
from rlmodel.sim.backend import ASLEEP, AWAKE, fits_mask
from rlmodel.sim.power import BUILTIN_NODE_TYPES, CURVE_POINTS, NodeType, PowerCurves

log = logging.getLogger("rlsched.live")
NODE_TYPE_LABEL = "rlsched.io/node-type"
DEFAULT_ASLEEP_TAINTS = ("ToBeDeletedByClusterAutoscaler",)  # cluster-autoscaler marks a node it will remove


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


@dataclass
class NodeStatics:
    """What stays fixed between node updates, per node in name order: cached by the view."""

    infos: list[NodeInfo]
    names: list[str]
    types: list[NodeType]
    asleep: np.ndarray
    cores: np.ndarray
    memory_gib: np.ndarray
    max_pods: np.ndarray
    hard: np.ndarray
    """(N,) bool: cordoned or with a NoSchedule/NoExecute taint (the filter's Python checks run only there)"""
    curves: PowerCurves
    idle_watts: np.ndarray
    peak_watts: np.ndarray
    position: dict[str, int]
    # kept current by the view as pods come and go (the NodeInfo totals, as arrays)
    cpu_requested: np.ndarray
    memory_requested: np.ndarray
    pods: np.ndarray
    empty_since: np.ndarray

    @classmethod
    def build(cls, infos: Sequence[NodeInfo], types: Sequence[NodeType], asleep: Sequence[bool],
              empty_since: Sequence[float] | np.ndarray) -> NodeStatics:
        """The arrays of `infos` (with their current totals), their curves, whether each is asleep, and since
        when each has been empty (Unix s; NaN: not known)."""
        infos = list(infos)
        n = len(infos)
        curves = PowerCurves(np.array([t.watts for t in types], dtype=np.float64).reshape(n, CURVE_POINTS))
        return cls(
            infos=infos, names=[i.name for i in infos], types=list(types),
            asleep=np.array(asleep, dtype=bool).reshape(n),
            cores=np.array([i.cpu_cores for i in infos], dtype=np.float64),
            memory_gib=np.array([i.memory_gib for i in infos], dtype=np.float64),
            max_pods=np.array([i.max_pods for i in infos], dtype=np.float64),
            hard=np.array([i.unschedulable or any(t.effect in ("NoSchedule", "NoExecute") for t in i.taints)
                           for i in infos], dtype=bool).reshape(n),
            curves=curves, idle_watts=curves.curves[:, 0].copy(), peak_watts=curves.curves[:, -1].copy(),
            position={i.name: k for k, i in enumerate(infos)},
            cpu_requested=np.array([i.cpu_requested for i in infos], dtype=np.float64),
            memory_requested=np.array([i.memory_requested for i in infos], dtype=np.float64),
            pods=np.array([i.pods for i in infos], dtype=np.float64),
            empty_since=np.array(empty_since, dtype=np.float64).reshape(n))

    def take(self, index: np.ndarray) -> NodeStatics:
        """The nodes at `index` (positions, in that order). The arrays are copies; the `NodeInfo` objects are
        shared (read them under the same lock as the view)."""
        index = np.asarray(index, dtype=np.int64)
        infos = [self.infos[k] for k in index.tolist()]
        curves = PowerCurves(self.curves.curves[index])
        return NodeStatics(
            infos=infos, names=[i.name for i in infos], types=[self.types[k] for k in index.tolist()],
            asleep=self.asleep[index], cores=self.cores[index], memory_gib=self.memory_gib[index],
            max_pods=self.max_pods[index], hard=self.hard[index], curves=curves,
            idle_watts=self.idle_watts[index], peak_watts=self.peak_watts[index],
            position={i.name: k for k, i in enumerate(infos)}, cpu_requested=self.cpu_requested[index],
            memory_requested=self.memory_requested[index], pods=self.pods[index],
            empty_since=self.empty_since[index])


def _same_node(a: NodeInfo, b: NodeInfo) -> bool:
    """Whether two readings of one node agree on everything but the totals of its pods (which the view keeps)."""
    return (a.labels == b.labels and a.taints == b.taints and a.unschedulable == b.unschedulable
            and a.cpu_cores == b.cpu_cores and a.memory_gib == b.memory_gib and a.max_pods == b.max_pods)


def is_asleep(info: NodeInfo, taints: Iterable[str], labels: Iterable[str] = ()) -> bool:
    """A node counts as asleep when it carries one of `taints` (keys) or one of `labels` (keys)."""
    return any(t.key in taints for t in info.taints) or any(k in info.labels for k in labels)


class LiveState:
    """A `ClusterState` of live nodes (fixed order: by name) at `now_s`, built by `ClusterView.state()`.
    `demand` is the measured CPU in use (cores) where `cpu_used` has a value, else the requests."""

    wake_s = 0.0  # waking is not modelled live: a sleeping node shows as asleep

    def __init__(self, nodes: Sequence[NodeInfo], types: Sequence[NodeType], asleep: Sequence[bool],
                 empty_since: Sequence[float], now_s: float, sleep_after_s: float = 0.0, *,
                 cpu_used: Sequence[float | None] | None = None):
        self.infos = list(nodes)
        self.names = [n.name for n in nodes]
        self.num_nodes = len(nodes)
        self.node_types = list(types)
        self.cores = np.array([n.cpu_cores for n in nodes], dtype=np.float64)
        self.memory_gib = np.array([n.memory_gib for n in nodes], dtype=np.float64)
        curves = PowerCurves(np.array([t.watts for t in types], dtype=np.float64).reshape(len(nodes), -1)) \
            if len(nodes) else None
        self._power = curves
        self.curves = curves.curves if curves is not None else np.zeros((0, 11))
        self.idle_watts = self.curves[:, 0].copy()
        self.peak_watts = self.curves[:, -1].copy()
        self.sleep_after_s = sleep_after_s
        self.now_s = now_s
        # arrays (sequences, as ClusterState asks): the observation stacks them without a conversion per node
        self.cpu_requested = np.array([n.cpu_requested for n in nodes], dtype=np.float64)
        self.mem_requested = np.array([n.memory_requested for n in nodes], dtype=np.float64)
        used = cpu_used if cpu_used is not None else [None] * len(nodes)
        self.demand = np.array([r if u is None else u for r, u in zip(self.cpu_requested.tolist(), used, strict=True)],
                               dtype=np.float64)
        self.pods_on = np.array([n.pods for n in nodes], dtype=np.int64)
        self.state = np.array([ASLEEP if a else AWAKE for a in asleep], dtype=np.int64)
        self.empty_since = np.array(empty_since, dtype=np.float64)
        self.wake_done = np.full(len(nodes), math.inf)
        self.watts = self.power_w(self.demand) if len(nodes) else np.zeros(0)

    @classmethod
    def of_arrays(cls, statics: NodeStatics, cpu_requested: np.ndarray, mem_requested: np.ndarray, pods: np.ndarray,
                  demand: np.ndarray, empty_since: np.ndarray, now_s: float, sleep_after_s: float) -> LiveState:
        """The same state as the constructor's, from the view's cached per-node arrays (no per-node Python)."""
        self = cls.__new__(cls)
        self.infos, self.names, self.num_nodes = statics.infos, statics.names, len(statics.names)
        self.node_types, self.cores, self.memory_gib = statics.types, statics.cores, statics.memory_gib
        self._power, self.curves = statics.curves, statics.curves.curves
        self.idle_watts, self.peak_watts = statics.idle_watts, statics.peak_watts
        self.sleep_after_s, self.now_s = sleep_after_s, now_s
        self.cpu_requested, self.mem_requested = cpu_requested.copy(), mem_requested.copy()
        self.demand, self.pods_on = demand, pods.astype(np.int64)
        self.state = np.where(statics.asleep, ASLEEP, AWAKE)
        self.empty_since = empty_since
        self.wake_done = np.full(self.num_nodes, math.inf)
        self.watts = self.power_w(demand)
        return self

    def fits(self, cpu_request: float, memory_request: float) -> np.ndarray:
        return fits_mask(self, cpu_request, memory_request)

    def power_w(self, demand_cores: np.ndarray) -> np.ndarray:
        assert self._power is not None
        return self._power.at_utilization(np.asarray(demand_cores, dtype=np.float64) / np.maximum(self.cores, 1e-9))


class ClusterView:
    """The nodes and pods of a cluster (kept up to date by whoever feeds it: the informers), and the
    `LiveState` and filter inputs derived from them. Not thread-safe: feed and read from one thread or lock.

    Kept incrementally, so that a decision costs O(nodes) and not a re-parse of every object: each node's
    `NodeInfo` (parsed once per node update) carries the current totals of its pods' requests, recomputed
    (exactly, with `math.fsum`) from the pods on that node whenever one of them changes. The `NodeInfo`
    objects `node_infos()` returns are the view's own and change with it: copy them to keep a snapshot."""

    def __init__(self, resolver: CurveResolver | None = None, *, asleep_taints: Iterable[str] = DEFAULT_ASLEEP_TAINTS,
                 asleep_labels: Iterable[str] = (), sleep_after_s: float = 0.0,
                 usage_max_age_s: float = 120.0):
        self.resolver = resolver or CurveResolver()
        self.asleep_taints, self.asleep_labels = set(asleep_taints), set(asleep_labels)
        self.sleep_after_s = sleep_after_s
        self.usage_max_age_s = usage_max_age_s
        self.nodes: dict[str, Obj] = {}
        self.pods: dict[tuple[str, str], Obj] = {}  # (namespace, name) -> pod
        self.assumed: dict[tuple[str, str], str] = {}  # pods assumed on a node before their bind returns
        self._empty_since: dict[str, float] = {}
        self._requests: dict[tuple[str, str], tuple[float, float]] = {}  # parsed once per pod update
        self._infos: dict[str, NodeInfo] = {}  # per readable node, with its current totals
        self._static: dict[str, tuple[NodeType, bool]] = {}  # per readable node: curve, asleep
        self._on: dict[str, set[tuple[str, str]]] = {}  # node name -> non-terminated pods counted on it
        self._counted: dict[tuple[str, str], str] = {}  # pod -> the node it is counted on
        self._statics: NodeStatics | None = None  # (None: recompute)
        self._cpu_used: dict[str, tuple[float, float]] = {}  # node -> (cores in use, when read)
        self.history = History()  # run times of the pods seen finished, by workload
        self._batches: dict[tuple, set[tuple[str, str]]] = {}  # (workload, creation second) -> pods
        self._batch_of: dict[tuple[str, str], tuple] = {}

    # ------------------------------------------------------------------ feeding
    def upsert_node(self, node: Obj, now_s: float) -> None:
        name = node["metadata"]["name"]
        self.nodes[name] = node
        self._empty_since.setdefault(name, now_s)
        try:
            info = node_info(node)
        except ObjectError as exc:  # a node rlsched cannot read is never a candidate
            log.warning("node %s: %s; not considered", name, exc)
            self._infos.pop(name, None)
            self._static.pop(name, None)
        else:
            static = (self.resolver.resolve(info.name, info.labels)[0],
                      is_asleep(info, self.asleep_taints, self.asleep_labels))
            old = self._infos.get(name)
            if old is not None and self._static.get(name) == static and _same_node(old, info):
                # a status heartbeat (kubelets update their Node every 10 s or so) or a watch's replay of an object
                # already listed: nothing a decision reads has changed, so the per-node arrays stay (rebuilding
                # them is O(nodes) in Python, and at 1,000 nodes heartbeats arrive many times a second)
                return
            self._infos[name] = info
            self._static[name] = static
            self._total(name)
        self._statics = None

    def delete_node(self, name: str) -> None:
        self.nodes.pop(name, None)
        self._empty_since.pop(name, None)
        self._infos.pop(name, None)
        self._static.pop(name, None)
        self._cpu_used.pop(name, None)
        self._statics = None

    def upsert_pod(self, pod: Obj, now_s: float) -> None:
        key = (pod["metadata"].get("namespace", ""), pod["metadata"]["name"])
        self.pods[key] = pod
        try:
            self._requests[key] = pod_requests(pod)
        except ObjectError as exc:  # a pod the API accepted but rlsched cannot read: counted as requesting nothing
            log.warning("pod %s/%s: %s", key[0], key[1], exc)
            self._requests[key] = (0.0, 0.0)
        if (pod.get("spec") or {}).get("nodeName"):
            self.assumed.pop(key, None)  # the bind is visible: no longer an assumption
        workload = owner_of(pod)[1]
        if key not in self._batch_of and workload is not None:
            created = timestamp_s((pod.get("metadata") or {}).get("creationTimestamp"))
            batch = (workload, math.floor(created) if created is not None else None)
            self._batches.setdefault(batch, set()).add(key)
            self._batch_of[key] = batch
        if is_terminated(pod):
            run = run_time_s(pod)
            if run is not None:
                self.history.record(key, workload, run)
        self._recount(key, now_s)

    def delete_pod(self, namespace: str, name: str, now_s: float) -> None:
        key = (namespace, name)
        pod = self.pods.get(key)
        if pod is not None:  # a pod deleted after it started has finished (a Deployment's pods end this way)
            ended = timestamp_s((pod.get("metadata") or {}).get("deletionTimestamp"))
            run = run_time_s(pod, ended if ended is not None else now_s)
            if run is not None:
                self.history.record(key, owner_of(pod)[1], run)
        batch = self._batch_of.pop(key, None)
        if batch is not None:
            self._batches.get(batch, set()).discard(key)
            if not self._batches.get(batch):
                self._batches.pop(batch, None)
        self.pods.pop(key, None)
        self.assumed.pop(key, None)
        self._requests.pop(key, None)
        self._recount(key, now_s)

    def assume(self, namespace: str, name: str, node: str) -> None:
        """kube-scheduler's assume: the pod counts on `node` at once, before the bind returns."""
        self.assumed[(namespace, name)] = node
        self._recount((namespace, name), None)

    def forget(self, namespace: str, name: str) -> None:
        """Undo `assume` (the bind failed)."""
        self.assumed.pop((namespace, name), None)
        self._recount((namespace, name), None)

    def set_cpu_used(self, cores_by_node: Mapping[str, float], now_s: float) -> None:
        """Measured CPU in use (cores) per node, read at `now_s`; a node's reading counts for
        `usage_max_age_s`, after which its requests stand in again."""
        for name, cores in cores_by_node.items():
            if math.isfinite(cores) and cores >= 0:
                self._cpu_used[name] = (float(cores), now_s)

    def _node_of(self, key: tuple[str, str]) -> str | None:
        if key in self.assumed:
            return self.assumed[key]
        pod = self.pods.get(key)
        return ((pod or {}).get("spec") or {}).get("nodeName") or None

    def _recount(self, key: tuple[str, str], now_s: float | None) -> None:
        """Move the pod's contribution to where it counts now (its node, if not terminated) and refresh the
        totals of the nodes involved; a node left with no pod is empty from `now_s`."""
        before = self._counted.pop(key, None)
        pod = self.pods.get(key)
        after = self._node_of(key) if pod is not None and not is_terminated(pod) else None
        if before is not None:
            self._on.get(before, set()).discard(key)
        if after is not None:
            self._on.setdefault(after, set()).add(key)
            self._counted[key] = after
        for node in {before, after} - {None}:
            assert node is not None
            self._total(node)
            if now_s is not None and node == before and node in self.nodes and not self._on.get(node):
                self._empty_since[node] = now_s
                if self._statics is not None and node in self._statics.position:
                    self._statics.empty_since[self._statics.position[node]] = now_s

    def _total(self, node: str) -> None:
        info = self._infos.get(node)
        if info is None:
            return
        keys = self._on.get(node, ())
        info.cpu_requested = math.fsum(self._requests.get(k, (0.0, 0.0))[0] for k in keys)
        info.memory_requested = math.fsum(self._requests.get(k, (0.0, 0.0))[1] for k in keys)
        info.pods = len(keys)
        st = self._statics
        if st is not None and node in st.position:
            k = st.position[node]
            st.cpu_requested[k], st.memory_requested[k], st.pods[k] = \
                info.cpu_requested, info.memory_requested, info.pods

    # ------------------------------------------------------------------ reading
    def signals(self, pod: Obj) -> PodSignals:
        """The pod's owner kind, QoS, priority, batch size and its workload's history, as the twin has them."""
        meta = pod.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", "")) if isinstance(meta, Mapping) else ("", "")
        batch = self._batch_of.get(key)
        return pod_signals(pod, self.history, len(self._batches.get(batch, ())) if batch is not None else 1)

    def node_infos(self) -> list[NodeInfo]:
        """Every readable node (sorted by name) with what its non-terminated (or assumed) pods request.
        The same list object until a node changes."""
        return self.statics().infos

    def statics(self) -> NodeStatics:
        """The per-node arrays that change only when a node does (recomputed then)."""
        if self._statics is None:
            names = sorted(self._infos)
            self._statics = NodeStatics.build(
                [self._infos[n] for n in names], [self._static[n][0] for n in names],
                [self._static[n][1] for n in names], [self._empty_since.get(n, math.nan) for n in names])
        return self._statics

    def state(self, now_s: float, infos: Sequence[NodeInfo] | None = None, *,
              statics: NodeStatics | None = None) -> LiveState:
        """The cluster at `now_s`: every node (`infos` None or `node_infos()`), or the nodes `infos`, or the nodes
        of `statics` (from `subset`: the fast path for a subset)."""
        if statics is not None:
            return self._fast_state(now_s, statics)
        if infos is None or (self._statics is not None and infos is self._statics.infos):
            return self._fast_state(now_s)
        return self._state_of(now_s, infos)

    def subset(self, names: Sequence[str]) -> NodeStatics:
        """`statics()` of the nodes `names`, in that order (KeyError for a name that is not a readable node)."""
        st = self.statics()
        return st.take(np.fromiter((st.position[n] for n in names), dtype=np.int64, count=len(names)))

    def _fast_state(self, now_s: float, st: NodeStatics | None = None) -> LiveState:
        """The state of every node, or of the nodes of `st` (from `subset`)."""
        st = self.statics() if st is None else st
        empty = np.where(np.isnan(st.empty_since), now_s, st.empty_since)
        return LiveState.of_arrays(st, st.cpu_requested, st.memory_requested, st.pods, self.demand(st, now_s),
                                   empty, now_s, self.sleep_after_s)

    def demand(self, st: NodeStatics, now_s: float) -> np.ndarray:
        """(N,) CPU in use, cores, of the nodes of `st`: the measured value where a reading at most
        `usage_max_age_s` old exists, else what is requested (`st.cpu_requested`)."""
        demand = st.cpu_requested.copy()
        for name, (cores, read_at) in self._cpu_used.items():
            k = st.position.get(name)
            if k is not None and now_s - read_at <= self.usage_max_age_s:
                demand[k] = cores
        return demand

    def _state_of(self, now_s: float, infos: Sequence[NodeInfo]) -> LiveState:
        """The slow path, node by node (a subset of the nodes); the same values as `_fast_state`."""
        types, asleep, used = [], [], []
        for info in infos:
            node_type, sleeping = self._static.get(info.name) or (self.resolver.resolve(info.name, info.labels)[0],
                                                                 False)
            types.append(node_type)
            asleep.append(sleeping)
            reading = self._cpu_used.get(info.name)
            used.append(reading[0] if reading is not None and now_s - reading[1] <= self.usage_max_age_s else None)
        empty = [self._empty_since.get(i.name, now_s) for i in infos]
        return LiveState(infos, types, asleep, empty, now_s, self.sleep_after_s, cpu_used=used)
