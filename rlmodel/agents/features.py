"""What the Q-network sees: scale-free features per node, computed from the environment's observation.

Each node is described by its own state, the arriving pod and a little cluster context, in units
chosen so that one network serves clusters of any size (fractions, hundreds of watts, minutes).
The names and order below are the model file's feature schema: a model is refused when its
schema differs from this one.
"""

from __future__ import annotations

import numpy as np

from rlmodel.envs.placement import NODE_FEATURES
from rlmodel.policies.heuristics import EfficientFirst

FEATURE_SCHEMA_VERSION = 4
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
)
NUM_FEATURES = len(FEATURES)
_C = {name: i for i, name in enumerate(NODE_FEATURES)}
_EFFICIENT_FIRST = EfficientFirst()


def node_features(obs: dict[str, np.ndarray]) -> np.ndarray:
    """(N, NUM_FEATURES) float32 features for every node of one observation."""
    nodes = obs["nodes"].astype(np.float32, copy=False)
    pod = obs["pod"].astype(np.float32, copy=False)
    n = nodes.shape[0]
    cores = np.maximum(nodes[:, _C["cpu_cores"]], 1e-6)
    mem = np.maximum(nodes[:, _C["memory_gib"]], 1e-6)
    cpu_req = nodes[:, _C["cpu_requested_cores"]]
    mem_req = nodes[:, _C["memory_requested_gib"]]
    used = nodes[:, _C["cpu_used_cores"]]
    watts = nodes[:, _C["watts"]]
    asleep = nodes[:, _C["asleep"]]
    pods = nodes[:, _C["pods"]]
    out = np.empty((n, NUM_FEATURES), dtype=np.float32)
    out[:, 0] = cores / 12.0
    out[:, 1] = mem / 16.0
    out[:, 2] = cpu_req / cores
    out[:, 3] = mem_req / mem
    out[:, 4] = used / cores
    out[:, 5] = (cpu_req + pod[0]) / cores
    out[:, 6] = (mem_req + pod[1]) / mem
    out[:, 7] = watts / 100.0
    out[:, 8] = (nodes[:, _C["watts_if_placed"]] - watts) / 100.0
    out[:, 9] = nodes[:, _C["idle_watts"]] / 100.0
    out[:, 10] = nodes[:, _C["peak_watts"]] / 100.0
    out[:, 11] = nodes[:, _C["peak_watts"]] / cores / 10.0
    out[:, 12] = asleep
    out[:, 13] = nodes[:, _C["waking_s"]] / 60.0
    out[:, 14] = pods / 10.0
    out[:, 15] = pods == 0
    out[:, 16] = pod[0] / cores
    out[:, 17] = pod[0]
    out[:, 18] = pod[1]
    out[:, 19] = pod[2]
    total_cores = float(cores.sum())
    out[:, 20] = float(cpu_req.sum()) / total_cores
    out[:, 21] = float(used.sum()) / total_cores
    out[:, 22] = 1.0 - float(asleep.mean())
    out[:, 23] = float(watts.mean()) / 100.0
    idle = nodes[:, _C["idle_s"]]
    sleep_after = nodes[:, _C["sleep_after_s"]]
    empty_awake = (pods == 0) & (asleep == 0)
    out[:, 24] = idle / 60.0
    out[:, 25] = np.where(empty_awake & (sleep_after > 0), np.maximum(sleep_after - idle, 0.0), 0.0) / 60.0
    out[:, 26] = sleep_after > 0
    # relational: among feasible awake nodes of the same type (same cores and curve), how far from the fullest
    fits = nodes[:, _C["fits"]] > 0
    frac = out[:, 2]
    # one float key per node type (cores, peak and idle watts): 1-D unique is far cheaper than row-wise unique
    key = (cores.astype(np.float64) * 1e8 + nodes[:, _C["peak_watts"]].astype(np.float64) * 1e3
           + nodes[:, _C["idle_watts"]])
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    candidates = np.where(fits & (asleep == 0), frac, -np.inf)
    fullest_sorted = np.repeat(np.maximum.reduceat(candidates[order], starts), np.diff(np.r_[starts, n]))
    fullest = np.empty(n, dtype=np.float64)
    fullest[order] = fullest_sorted
    gap = frac - fullest
    out[:, 27] = np.where(np.isfinite(gap), gap, -1.0)
    # every node the heuristic might pick (it breaks ties at random), so that the feature is a function of the state
    ef_scores = np.where(fits, _EFFICIENT_FIRST.scores(obs, fits), -np.inf)
    out[:, 28] = fits & (ef_scores == ef_scores.max())
    return out
