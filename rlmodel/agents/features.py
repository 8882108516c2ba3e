"""What the Q-network sees: scale-free features per node, computed from the environment's observation.

Each node is described by its own state, the arriving pod and a little cluster context, in units
chosen so that one network serves clusters of any size (fractions, hundreds of watts, minutes).
The names and order below are the model file's feature schema: a model is refused when its
schema differs from this one.
"""

from __future__ import annotations

import numpy as np

from rlmodel.envs.observation import NODE_COL, POD_COL, Obs
from rlmodel.policies.heuristics import EfficientFirst, RuntimeAware, RuntimeAwareHeadroom
from rlmodel.sim.podtrace import OWNER_KINDS, QOS_CLASSES

FEATURE_SCHEMA_VERSION = 7
FEATURES: tuple[str, ...] = (
    "cpu_cores_x12",            # node cores / 12
    "memory_gib_x16",           # node memory / 16 GiB
    "cpu_requested_frac",       # requested / cores, before this pod
    "memory_requested_frac",    # requested / memory, before this pod
    "cpu_used_frac",            # actual demand / cores (above 1: overloaded)
    "cpu_requested_frac_after",  # with this pod's request added
    "memory_requested_frac_after",
    "watts_x100",               # power now, hundreds of W
    "marginal_watts_x100",      # watts_if_placed - watts, hundreds of W
    "idle_watts_x100",
    "peak_watts_x100",
    "watts_per_core_x10",       # peak watts / cores / 10: the node's efficiency at full load
    "asleep",
    "waking_min",               # minutes until a waking node runs pods
    "pods_x10",
    "empty",                    # 1 if no pod is bound to the node
    "pod_cpu_frac",             # pod request / node cores
    "pod_cpu_cores",
    "pod_memory_gib",
    "episode_progress",
    "cluster_cpu_requested_frac",  # context: requested / capacity over the whole cluster
    "cluster_cpu_used_frac",
    "cluster_awake_frac",          # fraction of nodes awake
    "cluster_watts_per_node_x100",
    "idle_min",                    # minutes an awake node has been empty
    "sleep_in_min",                # minutes until an empty node sleeps (0 when it never sleeps or has pods)
    "sleeps",                      # 1 when the node can sleep at all
    "fill_gap_same_type",          # this node's requested fraction minus the fullest feasible awake node's
                                   # of the same type (0: the fullest; relational, for bin packing)
    "efficient_first_pick",        # 1 on the nodes the efficient-first heuristic would choose (its best
                                   # score; a prior the network can follow or overrule)
    *(f"owner_{k.lower()}" for k in OWNER_KINDS),  # the pod's controller, one-hot
    *(f"qos_{q.lower()}" for q in QOS_CLASSES),    # its QoS class, one-hot
    "priority_log10",              # sign(p) log10(1 + |p|) / 10
    "replicas_log2",               # log2(replicas) / 4
    "workload_completed_log",      # log(1 + completed pods of its workload) / 5
    "expected_run_log_min",        # log(1 + its workload's mean run time in minutes) / 5 (the prior without one)
    "expected_run_vs_sleep",       # expected run time / the node's sleep_after_s, capped at 10 (0: never sleeps)
    "runtime_aware_pick",          # 1 on the nodes the runtime-aware rule would choose (a prior, as above)
    "cpu_in_use_frac_after",       # (CPU in use + this pod's request) / cores; a node asleep or waking counts its
                                   # requests as in use (its pods have not started); above 1: placing overloads it
    "headroom_pick",               # 1 on the nodes the runtime-aware-headroom rule would choose (a prior, as above)
)
NUM_FEATURES = len(FEATURES)
_EFFICIENT_FIRST = EfficientFirst()
_RUNTIME_AWARE = RuntimeAware()
_HEADROOM = RuntimeAwareHeadroom()


def feature_columns(obs: Obs) -> dict[str, np.ndarray | float]:
    """Every feature of `FEATURES` by name: an (N,) array or a scalar shared by all nodes.

    Adding a feature: one entry here, its name in `FEATURES`, and `FEATURE_SCHEMA_VERSION` + 1.
    """
    nodes = obs["nodes"].astype(np.float32, copy=False)
    pod = obs["pod"].astype(np.float32, copy=False)

    def node(name: str) -> np.ndarray:
        return nodes[:, NODE_COL[name]]

    pod_cpu, pod_mem = pod[POD_COL["cpu_request_cores"]], pod[POD_COL["memory_request_gib"]]
    n = nodes.shape[0]
    cores = np.maximum(node("cpu_cores"), 1e-6)
    mem = np.maximum(node("memory_gib"), 1e-6)
    cpu_req, mem_req, used = node("cpu_requested_cores"), node("memory_requested_gib"), node("cpu_used_cores")
    watts, asleep, pods = node("watts"), node("asleep"), node("pods")
    idle, sleep_after = node("idle_s"), node("sleep_after_s")
    peak, idle_w = node("peak_watts"), node("idle_watts")
    total_cores = float(cores.sum())
    empty_awake = (pods == 0) & (asleep == 0)
    cpu_requested_frac = cpu_req / cores
    col: dict[str, np.ndarray | float] = {
        "cpu_cores_x12": cores / 12.0,
        "memory_gib_x16": mem / 16.0,
        "cpu_requested_frac": cpu_requested_frac,
        "memory_requested_frac": mem_req / mem,
        "cpu_used_frac": used / cores,
        "cpu_requested_frac_after": (cpu_req + pod_cpu) / cores,
        "memory_requested_frac_after": (mem_req + pod_mem) / mem,
        "watts_x100": watts / 100.0,
        "marginal_watts_x100": (node("watts_if_placed") - watts) / 100.0,
        "idle_watts_x100": idle_w / 100.0,
        "peak_watts_x100": peak / 100.0,
        "watts_per_core_x10": peak / cores / 10.0,
        "asleep": asleep,
        "waking_min": node("waking_s") / 60.0,
        "pods_x10": pods / 10.0,
        "empty": pods == 0,
        "pod_cpu_frac": pod_cpu / cores,
        "pod_cpu_cores": pod_cpu,
        "pod_memory_gib": pod_mem,
        "episode_progress": pod[POD_COL["episode_progress"]],
        "cluster_cpu_requested_frac": float(cpu_req.sum()) / total_cores,
        "cluster_cpu_used_frac": float(used.sum()) / total_cores,
        "cluster_awake_frac": 1.0 - float(asleep.mean()),
        "cluster_watts_per_node_x100": float(watts.mean()) / 100.0,
        "idle_min": idle / 60.0,
        "sleep_in_min": np.where(empty_awake & (sleep_after > 0), np.maximum(sleep_after - idle, 0.0), 0.0) / 60.0,
        "sleeps": sleep_after > 0,
    }
    # relational: among feasible awake nodes of the same type (same cores and curve), how far from the fullest
    fits = node("fits") > 0
    order, starts, sizes = _type_groups(cores, peak, idle_w)
    candidates = np.where(fits & (asleep == 0), cpu_requested_frac, -np.inf)
    fullest = np.empty(n, dtype=np.float64)
    fullest[order] = np.repeat(np.maximum.reduceat(candidates[order], starts), sizes)
    gap = cpu_requested_frac - fullest
    col["fill_gap_same_type"] = np.where(np.isfinite(gap), gap, -1.0)
    # every node the heuristic might pick (it breaks ties at random), so that the feature is a function of the state
    obs64 = {"nodes": obs["nodes"].astype(np.float64), "pod": obs["pod"]}  # one conversion for the rules below
    ef_scores = np.where(fits, _EFFICIENT_FIRST.scores(obs64, fits), -np.inf)
    col["efficient_first_pick"] = fits & (ef_scores == ef_scores.max())
    ra = _RUNTIME_AWARE.scores(obs64, fits)
    ra_scores = np.where(fits, ra, -np.inf)
    col["runtime_aware_pick"] = fits & (ra_scores == ra_scores.max())
    in_use = _HEADROOM.cpu_in_use_cores(obs64)
    col["cpu_in_use_frac_after"] = (in_use + pod_cpu) / cores
    hr_scores = np.where(fits, _HEADROOM.guard(obs64, ra, in_use), -np.inf)
    col["headroom_pick"] = fits & (hr_scores == hr_scores.max())
    for name in (*(f"owner_{k.lower()}" for k in OWNER_KINDS), *(f"qos_{q.lower()}" for q in QOS_CLASSES)):
        col[name] = float(pod[POD_COL[name]])
    p = float(pod[POD_COL["priority"]])
    col["priority_log10"] = float(np.sign(p) * np.log10(1.0 + abs(p)) / 10.0)
    col["replicas_log2"] = float(np.log2(max(float(pod[POD_COL["replicas"]]), 1.0)) / 4.0)
    col["workload_completed_log"] = float(np.log1p(float(pod[POD_COL["workload_completed"]])) / 5.0)
    run_s = float(pod[POD_COL["workload_mean_run_s"]])
    col["expected_run_log_min"] = float(np.log1p(run_s / 60.0) / 5.0)
    col["expected_run_vs_sleep"] = np.where(sleep_after > 0, np.minimum(run_s / np.maximum(sleep_after, 1e-6), 10.0),
                                            0.0)
    return col


_GROUPS: tuple[bytes, np.ndarray, np.ndarray, np.ndarray] | None = None  # the last node set's type groups


def _type_groups(cores: np.ndarray, peak: np.ndarray, idle_w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The nodes grouped by type (same cores, peak and idle watts): (order sorting them by type, where each group
    starts in that order, each group's size). Fixed while the nodes are: the last answer is kept."""
    global _GROUPS
    # one float key per node type: 1-D sorting is far cheaper than row-wise unique
    key = cores.astype(np.float64) * 1e8 + peak.astype(np.float64) * 1e3 + idle_w
    raw = key.tobytes()
    cached = _GROUPS  # one read: another thread may replace it meanwhile
    if cached is not None and cached[0] == raw:
        return cached[1], cached[2], cached[3]
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    sizes = np.diff(np.r_[starts, key.size])
    _GROUPS = (raw, order, starts, sizes)
    return order, starts, sizes


def node_features(obs: Obs) -> np.ndarray:
    """(N, NUM_FEATURES) float32 features for every node of one observation, columns in `FEATURES` order."""
    col = feature_columns(obs)
    # filled feature by feature as contiguous rows, then one transposing copy: cheaper than strided columns
    out = np.empty((NUM_FEATURES, obs["nodes"].shape[0]), dtype=np.float32)
    for i, name in enumerate(FEATURES):
        out[i] = col[name]
    return np.ascontiguousarray(out.T)
