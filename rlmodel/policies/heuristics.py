"""Hand-written baselines: round-robin, random, kube-scheduler's scoring strategies, power-greedy.

The kube-scheduler scores follow the upstream plugins (pkg/scheduler/framework/plugins/noderesources)
with integer arithmetic on millicores and bytes, MaxNodeScore = 100, and the pod's own requests
added to the node's requested resources before scoring:

* LeastAllocated: per resource `(capacity - requested) * 100 // capacity` (0 when over capacity),
  combined as `sum(score * weight) // sum(weight)` with cpu and memory weight 1.
* MostAllocated: per resource `min(requested, capacity) * 100 // capacity`, combined likewise.
* BalancedAllocation: fractions `requested / capacity` capped at 1;
  `int((1 - |f_cpu - f_mem| / 2) * 100)`.
* kube-default: the default profile's two resource scores added (LeastAllocated + Balanced, weight 1 each).

Energy-aware ones: power-greedy (lowest marginal watts) and efficient-first (pack onto the nodes
with the lowest peak watts per core, awake ones first). Runtime-aware uses what efficient-first ignores: the
expected run time of the pod from its workload's history (observation `workload_mean_run_s`).
"""

from __future__ import annotations

import math

import numpy as np

from rlmodel.policies.base import COL, POD_COL, Obs, ScoringPolicy

MAX_NODE_SCORE = 100
_MIB = 1 << 20


def _requested_after(obs: Obs) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(cpu_req_m, cpu_cap_m, mem_req_bytes, mem_cap_bytes) per node with the pod's requests added."""
    nodes, pod = obs["nodes"], obs["pod"]
    cpu_cap = np.rint(nodes[:, COL["cpu_cores"]].astype(np.float64) * 1000).astype(np.int64)
    cpu_req = np.rint(nodes[:, COL["cpu_requested_cores"]].astype(np.float64) * 1000).astype(np.int64)
    cpu_req = cpu_req + int(round(float(pod[POD_COL["cpu_request_cores"]]) * 1000))
    mem_cap = np.rint(nodes[:, COL["memory_gib"]].astype(np.float64) * 1024).astype(np.int64) * _MIB
    mem_req = np.rint(nodes[:, COL["memory_requested_gib"]].astype(np.float64) * 1024).astype(np.int64) * _MIB
    mem_req = mem_req + int(round(float(pod[POD_COL["memory_request_gib"]]) * 1024)) * _MIB
    return cpu_req, cpu_cap, mem_req, mem_cap


def least_requested_score(requested: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """kube-scheduler leastRequestedScore, elementwise on int64 arrays."""
    safe = np.maximum(capacity, 1)
    score = ((capacity - requested) * MAX_NODE_SCORE) // safe
    return np.where((capacity == 0) | (requested > capacity), 0, score)


def most_requested_score(requested: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """kube-scheduler mostRequestedScore, elementwise on int64 arrays."""
    safe = np.maximum(capacity, 1)
    score = (np.minimum(requested, capacity) * MAX_NODE_SCORE) // safe
    return np.where(capacity == 0, 0, score)


def balanced_allocation_score(cpu_req, cpu_cap, mem_req, mem_cap) -> np.ndarray:
    """kube-scheduler balancedResourceScorer for cpu and memory."""
    f_cpu = np.minimum(cpu_req / np.maximum(cpu_cap, 1), 1.0)
    f_mem = np.minimum(mem_req / np.maximum(mem_cap, 1), 1.0)
    std = np.abs((f_cpu - f_mem) / 2)
    return ((1 - std) * MAX_NODE_SCORE).astype(np.int64)


class LeastAllocated(ScoringPolicy):
    """kube-scheduler NodeResourcesFit with the LeastAllocated strategy (its default): spreads pods."""

    name = "least-allocated"

    def scores(self, obs: Obs, action_mask: np.ndarray) -> np.ndarray:
        cpu_req, cpu_cap, mem_req, mem_cap = _requested_after(obs)
        return (least_requested_score(cpu_req, cpu_cap) + least_requested_score(mem_req, mem_cap)) // 2


class MostAllocated(ScoringPolicy):
    """kube-scheduler NodeResourcesFit with the MostAllocated strategy: bin-packs pods."""

    name = "most-allocated"

    def scores(self, obs: Obs, action_mask: np.ndarray) -> np.ndarray:
        cpu_req, cpu_cap, mem_req, mem_cap = _requested_after(obs)
        return (most_requested_score(cpu_req, cpu_cap) + most_requested_score(mem_req, mem_cap)) // 2


class BalancedAllocation(ScoringPolicy):
    """kube-scheduler NodeResourcesBalancedAllocation: keeps cpu and memory fractions equal."""

    name = "balanced-allocation"

    def scores(self, obs: Obs, action_mask: np.ndarray) -> np.ndarray:
        return balanced_allocation_score(*_requested_after(obs))


class KubeDefault(ScoringPolicy):
    """kube-scheduler's default profile for resources: LeastAllocated + BalancedAllocation, weight 1 each."""

    name = "kube-default"

    def scores(self, obs: Obs, action_mask: np.ndarray) -> np.ndarray:
        cpu_req, cpu_cap, mem_req, mem_cap = _requested_after(obs)
        least = (least_requested_score(cpu_req, cpu_cap) + least_requested_score(mem_req, mem_cap)) // 2
        return least + balanced_allocation_score(cpu_req, cpu_cap, mem_req, mem_cap)


class PowerGreedy(ScoringPolicy):
    """Lowest marginal power (in the spirit of PEAKS): the node whose watts rise least with this pod.

    Marginal W = `watts_if_placed - watts`; for a sleeping node that is the whole step from sleep to
    running, so awake nodes are preferred unless none fits.
    """

    name = "power-greedy"

    def scores(self, obs: Obs, action_mask: np.ndarray) -> np.ndarray:
        nodes = np.asarray(obs["nodes"], dtype=np.float64)  # read only: no copy when float64 already
        return -(nodes[:, COL["watts_if_placed"]] - nodes[:, COL["watts"]])


class EfficientFirst(ScoringPolicy):
    """Packs onto the most energy-efficient nodes: lowest peak watts per core first, awake before asleep,
    and among equals the fullest (by CPU requests). A strong hand-written consolidation heuristic for
    heterogeneous clusters; it knows nothing of the future.
    """

    name = "efficient-first"

    def scores(self, obs: Obs, action_mask: np.ndarray) -> np.ndarray:
        nodes = np.asarray(obs["nodes"], dtype=np.float64)  # read only: no copy when float64 already
        return efficient_first_scores(nodes[:, COL["asleep"]], nodes[:, COL["peak_watts"]],
                                      nodes[:, COL["cpu_cores"]], nodes[:, COL["cpu_requested_cores"]])


def efficient_first_scores(asleep: np.ndarray, peak_watts: np.ndarray, cpu_cores: np.ndarray,
                           cpu_requested_cores: np.ndarray) -> np.ndarray:
    """Efficient-first's (N,) scores from per-node arrays (also read straight from the twin by look-ahead planners)."""
    watts_per_core = np.round(peak_watts / cpu_cores, 3)
    # lexicographic: awake first, then efficiency, then fill (fill < 1 so it only breaks ties)
    return -1e6 * asleep - 10.0 * watts_per_core + cpu_requested_cores / cpu_cores


class RuntimeAware(ScoringPolicy):
    """Efficient-first with the pod's expected run time (its workload's mean run time so far, or the prior):

    * a long pod (expected run time >= `long_s`, see `expected_run_s`) goes where efficient-first puts it: the
      most efficient awake node, filled up; it holds that node for long, so it should be the node that runs
      cheapest when busy;
    * a short pod goes to an awake node that already has pods (it will stay awake anyway), the least
      efficient of those first, so that room on the efficient nodes is kept for long pods, and among equals
      the fullest; with no such node, to an awake empty node (it will sleep again soon after), and only then
      wakes one (efficient-first's order).

    `long_s` defaults to 600 s: ten minutes, five times the built-in scenarios' sleep delay.
    """

    name = "runtime-aware"

    def __init__(self, long_s: float = 600.0):
        super().__init__()
        self.long_s = long_s

    def expected_run_s(self, pod: np.ndarray) -> float:
        """The pod's expected run time, s: its workload's mean when pods of it have finished; before that,
        long (inf) for pods of services (Deployment, StatefulSet: they run until replaced) and the observation's
        prior (every finished pod's mean) for the rest."""
        if pod[POD_COL["workload_completed"]] > 0:
            return float(pod[POD_COL["workload_mean_run_s"]])
        if pod[POD_COL["owner_deployment"]] > 0 or pod[POD_COL["owner_statefulset"]] > 0:
            return math.inf
        return float(pod[POD_COL["workload_mean_run_s"]])

    def scores(self, obs: Obs, action_mask: np.ndarray) -> np.ndarray:
        nodes = np.asarray(obs["nodes"], dtype=np.float64)  # read only: no copy when float64 already
        asleep, peak, cores = nodes[:, COL["asleep"]], nodes[:, COL["peak_watts"]], nodes[:, COL["cpu_cores"]]
        requested = nodes[:, COL["cpu_requested_cores"]]
        if self.expected_run_s(obs["pod"]) >= self.long_s:
            return efficient_first_scores(asleep, peak, cores, requested)
        busy = (nodes[:, COL["pods"]] > 0) & (asleep == 0)
        watts_per_core = np.round(peak / cores, 3)
        fill = requested / cores
        # busy awake nodes (least efficient first), then awake empty ones, then sleeping ones (efficient first)
        return np.where(busy, 2e6 + 10.0 * watts_per_core + fill,
                        np.where(asleep == 0, 1e6 - 10.0 * watts_per_core + fill, -10.0 * watts_per_core + fill))


class RuntimeAwareHeadroom(RuntimeAware):
    """Runtime-aware, and no pod onto a node it would overload while another fits: a node is passed over when
    its CPU in use plus `1 + headroom` times the pod's CPU request exceeds its cores (for a node that is asleep
    or waking, whose pods have not started, its requests stand for its use). Pods use more CPU than they
    request (Burstable and BestEffort ones may), and an overloaded node slows every pod on it (overload,
    pod-s); packing rules fill nodes to their requests and so overload them. Among passed-over nodes the
    runtime-aware order still holds, so a pod is never left unplaced by the guard.

    `headroom` defaults to 0.1: the pod is assumed to use up to 1.1 x its request.
    """

    name = "runtime-aware-headroom"

    def __init__(self, long_s: float = 600.0, headroom: float = 0.1):
        super().__init__(long_s)
        self.headroom = headroom

    def scores(self, obs: Obs, action_mask: np.ndarray) -> np.ndarray:
        scores = super().scores(obs, action_mask)
        return self.guard(obs, scores) if self.guards(obs) else scores

    def guards(self, obs: Obs) -> bool:
        """Whether this pod gets the overload guard (here: every pod)."""
        return True

    @staticmethod
    def cpu_in_use_cores(obs: Obs) -> np.ndarray:
        """(N,) CPU in use, cores; for a node asleep or waking (its pods have not started) its requests."""
        nodes = np.asarray(obs["nodes"], dtype=np.float64)  # read only: no copy when float64 already
        not_running = (nodes[:, COL["asleep"]] > 0) | (nodes[:, COL["waking_s"]] > 0)
        return np.where(not_running, nodes[:, COL["cpu_requested_cores"]], nodes[:, COL["cpu_used_cores"]])

    def guard(self, obs: Obs, runtime_aware_scores: np.ndarray, in_use_cores: np.ndarray | None = None) -> np.ndarray:
        """Runtime-aware's (N,) scores with every node the pod would overload moved below all others
        (`in_use_cores`: `cpu_in_use_cores(obs)` when the caller has it already)."""
        pod_cores = (1.0 + self.headroom) * float(obs["pod"][POD_COL["cpu_request_cores"]])
        in_use = self.cpu_in_use_cores(obs) if in_use_cores is None else in_use_cores
        over = in_use + pod_cores > np.asarray(obs["nodes"][:, COL["cpu_cores"]], dtype=np.float64)
        # runtime-aware's scores lie within (-1e6 - 1e4, 3e6): 1e7 below puts every overloaded node after the rest
        return np.where(over, runtime_aware_scores - 1e7, runtime_aware_scores)


class RuntimeAwareShortHeadroom(RuntimeAwareHeadroom):
    """Runtime-aware-headroom's guard for short pods only: a long pod still goes where efficient-first puts it,
    filled up to its requests, and a short pod is not put on a node it would overload while another fits.

    Short pods are the ones runtime-aware piles onto busy nodes (the least efficient first, the fullest among
    equals), so they are where the overload comes from; guarding long pods too moves them off the efficient
    nodes and costs energy. Measured on `classes-sleep` in docs/results.md.
    """

    name = "runtime-aware-short-headroom"

    def guards(self, obs: Obs) -> bool:
        return self.expected_run_s(obs["pod"]) < self.long_s


class RoundRobin:
    """Cycles over the nodes in index order, skipping nodes where the pod does not fit."""

    name = "round-robin"

    def __init__(self) -> None:
        self._next = 0

    def reset(self, seed: int | None = None) -> None:
        self._next = 0

    def predict(self, obs: Obs, action_mask: np.ndarray) -> int:
        n = action_mask.shape[0]
        order = (np.arange(n) + self._next) % n
        feasible = order[action_mask[order]]
        choice = int(feasible[0]) if feasible.size else int(order[0])
        self._next = (choice + 1) % n
        return choice


class RandomPolicy:
    """Uniformly random among the feasible nodes."""

    name = "random"

    def __init__(self) -> None:
        self._rng = np.random.default_rng(0)

    def reset(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)

    def predict(self, obs: Obs, action_mask: np.ndarray) -> int:
        feasible = np.flatnonzero(action_mask)
        if feasible.size == 0:
            return 0
        return int(feasible[self._rng.integers(feasible.size)])
