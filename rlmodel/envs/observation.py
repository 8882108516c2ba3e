"""The observation: what every policy sees of a cluster and the pod awaiting a decision, in physical units.

One builder turns any `rlmodel.sim.backend.ClusterState` (the digital twin, the Minikube testbed, a live
cluster view) and the pod's signals (`PodSignals`: owner kind, QoS, priority, batch size and its workload's
history) into the `{"nodes": (N, 15), "pod": (16,)}` arrays of `PodPlacementEnv`, so a model sees the
same features wherever it runs. The columns are named by `NODE_FEATURES` and `POD_FEATURES`; readers
index them by name through `NODE_COL` and `POD_COL` (or `node_column(obs, name)`), never by number.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from rlmodel.sim.backend import ASLEEP, AWAKE, WAKING, ClusterState
from rlmodel.sim.podtrace import OWNER_KINDS, QOS_CLASSES

NODE_FEATURES: tuple[str, ...] = (
    "cpu_cores",             # allocatable CPU, cores
    "memory_gib",            # allocatable memory, GiB
    "cpu_requested_cores",   # sum of the requests of pods bound to the node, cores
    "memory_requested_gib",  # the same for memory, GiB
    "cpu_used_cores",        # actual CPU demand of the running pods, cores (may exceed cpu_cores)
    "watts",                 # power drawn now, W
    "watts_if_placed",       # power once this pod runs there at its request (after waking), W
    "idle_watts",            # power at 0 % CPU, W
    "peak_watts",            # power at 100 % CPU, W
    "asleep",                # 1 if the node sleeps (placing here wakes it), else 0
    "waking_s",              # time left until a waking node runs pods, s
    "pods",                  # pods bound to the node
    "fits",                  # 1 if the pod's requests fit (same as info["action_mask"])
    "idle_s",                # how long an awake node has been empty, s (0 when it has pods or sleeps)
    "sleep_after_s",         # idle time after which the node sleeps, s (0: never)
)
POD_FEATURES: tuple[str, ...] = (
    "cpu_request_cores",     # the pod's CPU request, cores
    "memory_request_gib",    # the pod's memory request, GiB
    "episode_progress",      # fraction of the episode's pods that arrived before this one
    *(f"owner_{k.lower()}" for k in OWNER_KINDS),  # one-hot: the pod's controller (rlmodel.sim.podtrace.OWNER_KINDS)
    *(f"qos_{q.lower()}" for q in QOS_CLASSES),    # one-hot: its QoS class
    "priority",              # its priority (PriorityClass value; may be negative)
    "replicas",              # pods created with it in one batch, itself included
    "workload_completed",    # pods of its workload that finished before now
    "workload_mean_run_s",   # their mean run time (start to finish), s; with none: the prior (`run_time_prior_s`)
)
NODE_COL = MappingProxyType({name: i for i, name in enumerate(NODE_FEATURES)})
"""Column of each node feature in `obs["nodes"]`."""
POD_COL = MappingProxyType({name: i for i, name in enumerate(POD_FEATURES)})
"""Index of each pod feature in `obs["pod"]`."""
IDLE_S_MAX = 3600.0  # idle_s is clipped here
PRIOR_RUN_S = 600.0  # the run-time prior when no pod has finished yet, s
_OWNER_COL = POD_COL[f"owner_{OWNER_KINDS[0].lower()}"]
_QOS_COL = POD_COL[f"qos_{QOS_CLASSES[0].lower()}"]
_STATIC = ("cpu_cores", "memory_gib", "idle_watts", "peak_watts", "sleep_after_s")

Obs = dict[str, np.ndarray]


def node_column(obs: Obs, name: str) -> np.ndarray:
    """(N,) the node feature `name` of an observation."""
    return obs["nodes"][:, NODE_COL[name]]


@dataclass(frozen=True)
class PodSignals:
    """What a scheduler can know about a pod besides its requests (all computable on a live cluster).

    Attributes:
        owner_kind: index into OWNER_KINDS.
        qos: index into QOS_CLASSES.
        priority: the pod's priority.
        replicas: pods created with it in one batch (itself included).
        workload_completed: pods of its workload that finished before now.
        workload_mean_run_s: their mean run time (start to finish), s; with none, the prior.
    """

    owner_kind: int = 0
    qos: int = 1
    priority: int = 0
    replicas: int = 1
    workload_completed: int = 0
    workload_mean_run_s: float = PRIOR_RUN_S


def run_time_prior_s(start_s: np.ndarray, finish_s: np.ndarray, now_s: float) -> float:
    """The run-time prior: the mean run time of every pod that finished by `now_s` (any workload), s;
    PRIOR_RUN_S when none has."""
    done = finish_s <= now_s  # NaN (not finished) compares False
    return float(np.mean(finish_s[done] - start_s[done])) if done.any() else PRIOR_RUN_S


def workload_history(workload: np.ndarray, start_s: np.ndarray, finish_s: np.ndarray, now_s: float,
                     of: int) -> tuple[int, float]:
    """(completed, mean run time s) of the pods of workload `of` that finished by `now_s` (`of` < 0: no workload,
    0 and the prior). Only pods whose finish time is known and not after now count: no pod's future is read."""
    done = finish_s <= now_s
    if of < 0:
        return 0, run_time_prior_s(start_s, finish_s, now_s)
    mine = done & (workload == of)
    count = int(mine.sum())
    if count == 0:
        return 0, run_time_prior_s(start_s, finish_s, now_s)
    return count, float(np.mean(finish_s[mine] - start_s[mine]))


class ObservationBuilder:
    """Builds observations of one cluster (fixed nodes): `build(cluster, pod, mask)`.

    The static columns (capacity, idle and peak watts, sleep_after_s) are computed once from the
    cluster given to the constructor; `build` fills the rest from the cluster's state at `now_s`.
    """

    def __init__(self, cluster: ClusterState):
        n = cluster.num_nodes
        self.num_nodes = n
        static = np.zeros((n, len(NODE_FEATURES)), dtype=np.float32)
        values: dict[str, np.ndarray | float] = {
            "cpu_cores": cluster.cores, "memory_gib": cluster.memory_gib, "idle_watts": cluster.idle_watts,
            "peak_watts": cluster.peak_watts, "sleep_after_s": cluster.sleep_after_s}
        for name in _STATIC:
            static[:, NODE_COL[name]] = values[name]
        self._static = static

    def build(self, cluster: ClusterState, pod: tuple[float, float, float] | None, mask: np.ndarray,
              signals: PodSignals | None = None) -> Obs:
        """The observation of `cluster` now for the pod `(cpu_request_cores, memory_request_gib,
        episode_progress)` (None after the last pod: zeros), with `mask` the nodes where it fits and `signals`
        what else is known of it (None: a bare Burstable pod of no workload, priority 0, the default prior)."""
        nodes = self._static.copy()
        pod_vec = np.zeros(len(POD_FEATURES), dtype=np.float32)
        cpu_req = 0.0
        if pod is not None:
            cpu_req = float(pod[0])
            pod_vec[POD_COL["cpu_request_cores"]] = cpu_req
            pod_vec[POD_COL["memory_request_gib"]] = pod[1]
            pod_vec[POD_COL["episode_progress"]] = pod[2]
            sig = signals if signals is not None else PodSignals()
            pod_vec[_OWNER_COL + sig.owner_kind] = 1.0
            pod_vec[_QOS_COL + sig.qos] = 1.0
            pod_vec[POD_COL["priority"]] = sig.priority
            pod_vec[POD_COL["replicas"]] = sig.replicas
            pod_vec[POD_COL["workload_completed"]] = sig.workload_completed
            pod_vec[POD_COL["workload_mean_run_s"]] = sig.workload_mean_run_s
        # one conversion of the per-node sequences (faster than one per column)
        requested, mem_requested, demand, watts, pods_on, state, empty_since, wake_done = np.array(
            (cluster.cpu_requested, cluster.mem_requested, cluster.demand, cluster.watts, cluster.pods_on,
             cluster.state, cluster.empty_since, cluster.wake_done), dtype=np.float64)
        awake = state == AWAKE
        now = cluster.now_s
        # a sleeping or waking node's pods are not running yet: estimate them by their requests
        after = np.where(awake, demand, requested) + cpu_req
        col = {
            "cpu_requested_cores": requested,
            "memory_requested_gib": mem_requested,
            "cpu_used_cores": demand,
            "watts": watts,
            "watts_if_placed": cluster.power_w(after),
            "asleep": state == ASLEEP,
            "pods": pods_on,
            "fits": mask,
            "idle_s": np.minimum(np.where(awake & (pods_on == 0), now - empty_since, 0.0), IDLE_S_MAX),
        }
        if cluster.wake_s > 0:
            col["waking_s"] = np.where(state == WAKING, wake_done - now, 0.0)
        for name, values in col.items():
            nodes[:, NODE_COL[name]] = values
        np.maximum(nodes, 0.0, out=nodes)  # float round-off (-1e-16 requested) must not leave the Box
        return {"nodes": nodes, "pod": pod_vec}
