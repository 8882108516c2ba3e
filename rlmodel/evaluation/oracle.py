"""How far from the best possible: the offline optimum, or a proven lower bound on it.

Two oracles, both offline (they know the whole arrival sequence of the episode):

* `exact_optimum`: branch-and-bound over every placement of every pod, run in the simulator itself,
  minimising the same objective as the environment's return (energy plus its penalties). Exact,
  and feasible only for small episodes (the search visits at most `max_nodes_visited` states).

* `fluid_lower_bound`: a lower bound on the energy of *any* placement that runs every pod that fits
  on an empty node. Relaxations: a pod's CPU work (usage x duration, core-seconds) may be served by
  any node at any rate once it has arrived; a node with no load sleeps at once (at `sleep_watts` when
  the scenario lets nodes sleep, else at its idle watts) and wakes for free; memory is ignored. With
  F(s) the least power at which the cluster serves s cores (the greedy fill of every node's lower
  convex hull of its power curve, which is exact for this relaxation), any placement's energy is at
  least the integral of F over the "taut string" schedule: the slowest-growing convex cumulative-work
  curve below the cumulative released work, which minimises the integral of a convex F. The horizon
  T is free but at least the unslowed makespan; we take the minimum over T on a grid of 1 % steps
  from 1x to 3x that makespan. Overload is not bounded (0 is the trivial bound).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rlmodel.sim.cluster import ClusterSim
from rlmodel.sim.podtrace import PodTrace
from rlmodel.sim.scenario import Scenario


@dataclass(frozen=True)
class OracleResult:
    """Oracle value for one episode.

    Attributes:
        kind: "exact" (the offline optimum) or "lower-bound" (fluid relaxation).
        energy_j: energy of the optimum, or the lower bound on energy, J.
        overload_pod_s: overload of the optimum (0 for the bound), pod-s.
        unschedulable: pods left unplaced by the optimum (for the bound: pods that fit on no empty node).
        placement: node per pod for "exact" (-1: unschedulable), else None.
    """

    kind: str
    energy_j: float
    overload_pod_s: float
    unschedulable: int
    placement: tuple[int, ...] | None = None


def exact_optimum(scenario: Scenario, trace: PodTrace, *, max_nodes_visited: int = 200_000) -> OracleResult | None:
    """Offline optimum by depth-first branch-and-bound; None if the search would exceed its budget.

    Energy and overload only grow with time, so the cost reached at any partial placement is a
    lower bound on every completion of it; branches whose partial cost already reaches the best
    complete cost are cut. Symmetry: empty nodes of the same type in the same power state (awake with
    the same sleep timer, or asleep) are interchangeable, so only the first of them is tried; this is
    what makes 12-pod episodes on identical nodes (the `minikube` scenario) exact in well under a second.
    """
    sim = ClusterSim(scenario)
    sim.reset(trace)
    # what makes two nodes interchangeable while empty: capacity, curve and background load
    type_key = [(t.cpu_cores, t.memory_gib, t.watts, bg)
                for t, bg in zip(scenario.node_types, scenario.background_cpu_cores, strict=True)]
    reward = scenario.reward
    n_pods = len(trace)
    best_cost = np.inf
    best: tuple[int, ...] | None = None
    best_metrics = (0.0, 0.0, 0)
    visited = 0
    choice = [-1] * n_pods
    # Lower bound on the cost still to come (valid for every completion): every node draws at least its
    # floor (idle, or sleep watts when nodes sleep) until the episode's end, which is no earlier than the
    # last arrival or the end of any bound pod's remaining work (rates never exceed 1); and each core-second
    # of work still to do costs at least the flattest curve segment's W per core above that floor (or, for a
    # pod not placed yet, its unschedulable penalty if that is less).
    floor_w = float(sum(min(scenario.sleep_watts, t.watts[0]) if scenario.sleep_enabled else t.watts[0]
                        for t in scenario.node_types))
    min_slope = max(0.0, min(float(np.min(np.diff(t.watts))) / (t.cpu_cores / 10) for t in scenario.node_types))
    last_arrival = float(trace.arrival_s.max()) if n_pods else 0.0
    pod_work = (trace.usage_cores * trace.work_s).tolist()
    future_cost = np.minimum(min_slope * np.asarray(pod_work), reward.unschedulable_penalty_j)
    future_after = np.concatenate([np.cumsum(future_cost[::-1])[::-1], [0.0]])  # sum over pods >= i
    usage, work = trace.usage_cores.tolist(), trace.work_s.tolist()

    def remaining_lb(i: int) -> float:
        now = sim.now_s
        end, bound_work = last_arrival, 0.0
        for pod, done in sim.progress():
            left = max(work[pod] - done, 0.0)
            end = max(end, now + left)
            bound_work += usage[pod] * left
        return floor_w * max(end - now, 0.0) + min_slope * bound_work + float(future_after[i])

    def cost() -> float:
        return reward.cost_j(sim.energy_j, sim.overload_pod_s, sim.unschedulable, sim.imbalance_s)

    def visit(i: int) -> bool:
        nonlocal best_cost, best, best_metrics, visited
        visited += 1
        if visited > max_nodes_visited:
            return False
        # skip pods that fit nowhere, as the environment does
        while i < n_pods:
            sim.advance_to(float(trace.arrival_s[i]))
            mask = sim.fits(float(trace.cpu_request_cores[i]), float(trace.memory_request_gib[i]))
            if mask.any():
                break
            sim.reject(i)
            choice[i] = -1
            i += 1
        if cost() >= best_cost or (best_cost < np.inf and cost() + remaining_lb(i) >= best_cost):
            return True
        if i == n_pods:
            sim.drain()
            if cost() < best_cost:
                best_cost, best = cost(), tuple(choice)
                best_metrics = (sim.energy_j, sim.overload_pod_s, sim.unschedulable)
            return True
        snap = sim.snapshot()
        # try the cheapest-looking nodes first so good solutions come early and prune more
        order = np.argsort(sim.watts_if_added(float(trace.usage_cores[i])) - np.asarray(sim.watts), kind="stable")
        tried_empty: set[tuple] = set()
        for node in order:
            if not mask[node]:
                continue
            if sim.pods_on[node] == 0:
                key = (type_key[node], sim.state[node], sim._sleep_at[node], sim.wake_done[node])
                if key in tried_empty:
                    continue  # the same subtree as an empty twin already searched
                tried_empty.add(key)
            choice[i] = int(node)
            sim.place(i, int(node))
            if not visit(i + 1):
                return False
            sim.restore(snap)
        return True

    if not visit(0) or best is None:
        return None
    energy, overload, unsched = best_metrics
    return OracleResult("exact", energy, overload, unsched, best)


def _fits_an_empty_node(scenario: Scenario, trace: PodTrace) -> np.ndarray:
    """(pods,) True where the pod's requests fit on at least one empty node."""
    fits = np.zeros(len(trace), dtype=bool)
    for g in scenario.groups:
        t = g.node_type
        fits |= (trace.cpu_request_cores <= t.cpu_cores + 1e-9) & (trace.memory_request_gib <= t.memory_gib + 1e-9)
    return fits


def _cluster_power_curve(scenario: Scenario) -> tuple[float, np.ndarray, np.ndarray]:
    """F(s) of the relaxation as (F(0) in W, segment lengths in cores, segment slopes in W/core), slopes ascending."""
    lengths, slopes = [], []
    base = 0.0
    for node_type in scenario.node_types:
        cores = node_type.cpu_cores
        floor = scenario.sleep_watts if scenario.sleep_enabled else node_type.watts[0]
        floor = min(floor, node_type.watts[0])
        xs = [0.0] + [cores * k / 10 for k in range(1, 11)]
        ys = [floor] + list(node_type.watts[1:])
        hull = _lower_hull(np.array(xs), np.array(ys))
        base += hull[0][1]
        for (x0, y0), (x1, y1) in zip(hull[:-1], hull[1:], strict=True):
            lengths.append(x1 - x0)
            slopes.append((y1 - y0) / (x1 - x0))
    order = np.argsort(slopes, kind="stable")
    return base, np.asarray(lengths)[order], np.asarray(slopes)[order]


def _lower_hull(xs: np.ndarray, ys: np.ndarray) -> list[tuple[float, float]]:
    """Lower convex hull of points sorted by x (monotone chain)."""
    hull: list[tuple[float, float]] = []
    for x, y in zip(xs.tolist(), ys.tolist(), strict=True):
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1) <= 0:
                hull.pop()
            else:
                break
        hull.append((x, y))
    return hull


def _power_at(rate: np.ndarray, base: float, lengths: np.ndarray, slopes: np.ndarray) -> np.ndarray:
    """F(rate) for an array of served rates (cores); rates above capacity are capped."""
    cum_len = np.concatenate([[0.0], np.cumsum(lengths)])
    cum_w = np.concatenate([[0.0], np.cumsum(lengths * slopes)])
    r = np.clip(rate, 0.0, cum_len[-1])
    k = np.clip(np.searchsorted(cum_len, r, side="right") - 1, 0, len(lengths) - 1)
    return base + cum_w[k] + (r - cum_len[k]) * slopes[k]


def fluid_lower_bound(scenario: Scenario, trace: PodTrace) -> OracleResult:
    """Lower bound on the energy (J) of any placement that runs every pod fitting on an empty node."""
    max_fit = _fits_an_empty_node(scenario, trace)
    arrival = trace.arrival_s[max_fit]
    work = (trace.usage_cores * trace.work_s)[max_fit]  # core-seconds
    unsched = int((~max_fit).sum())
    if arrival.size == 0:
        return OracleResult("lower-bound", 0.0, 0.0, unsched)
    base, lengths, slopes = _cluster_power_curve(scenario)
    t_min = float(np.max(arrival + trace.work_s[max_fit]))
    # cumulative work released strictly before each distinct arrival time: S(a) <= R(a-)
    times = np.unique(arrival)
    cum = np.concatenate([[0.0], np.cumsum(work)])
    order = np.argsort(arrival, kind="stable")
    cum_sorted = np.concatenate([[0.0], np.cumsum(work[order])])
    released_before = cum_sorted[np.searchsorted(arrival[order], times, side="left")]
    total = float(cum[-1])
    best = np.inf
    for factor in np.arange(1.0, 3.0 + 1e-9, 0.01):
        horizon = t_min * factor
        xs = np.concatenate([[0.0], times[times > 0], [horizon]])
        ys = np.concatenate([[0.0], released_before[times > 0], [total]])
        hull = _lower_hull(xs, ys)
        hx = np.array([p[0] for p in hull])
        hy = np.array([p[1] for p in hull])
        dt = np.diff(hx)
        keep = dt > 0
        rates = np.diff(hy)[keep] / dt[keep]
        energy = float(np.sum(dt[keep] * _power_at(rates, base, lengths, slopes)))
        best = min(best, energy)
    return OracleResult("lower-bound", best, 0.0, unsched)


def cover_lower_bound(scenario: Scenario, trace: PodTrace, *, max_combinations: int = 500_000) -> float | None:
    """Lower bound (J) from the nodes that must stay awake to hold the pods' requests, plus dynamic power.

    A pod is bound from its arrival until it finishes, never sooner than arrival + work, so at any
    time t of its unslowed window its requests sit on a node that is not asleep. The nodes not
    asleep must therefore cover the requests present, R(t), in CPU and memory; each draws at least
    its idle watts (a waking node draws peak), each sleeping node `sleep_watts`. On top, an awake
    node serving x cores draws at least idle + m x, where m is the smallest first slope of any
    node's convex hull (W per core); all work W (core-seconds) is served once. So energy >=
    integral of cover(t) over [0, unslowed makespan] + m W. Returns None when enumerating the
    combinations of awake nodes per type would exceed `max_combinations`.
    """
    fits_empty = _fits_an_empty_node(scenario, trace)
    start = trace.arrival_s[fits_empty]
    end = start + trace.work_s[fits_empty]
    if start.size == 0:
        return 0.0
    groups = scenario.groups
    if math.prod(g.count + 1 for g in groups) > max_combinations:
        return None
    # every choice of how many nodes of each group stay awake
    grids = np.meshgrid(*[np.arange(g.count + 1) for g in groups], indexing="ij")
    awake = np.stack([x.ravel() for x in grids], axis=1).astype(np.float64)  # (K, G)
    cores = np.array([g.node_type.cpu_cores for g in groups])
    mem = np.array([g.node_type.memory_gib for g in groups])
    idle = np.array([g.node_type.watts[0] for g in groups])
    count = np.array([g.count for g in groups], dtype=np.float64)
    asleep_w = min(scenario.sleep_watts, float(idle.min())) if scenario.sleep_enabled else None
    if asleep_w is None:
        cost = np.where((awake == count).all(axis=1), awake @ idle, np.inf)  # always on: every node awake
    else:
        cost = awake @ idle + (count - awake).sum(axis=1) * asleep_w
    cap_cpu, cap_mem = awake @ cores, awake @ mem
    # requests present, piecewise constant between window starts and ends
    makespan = float(end.max())
    times = np.unique(np.concatenate([start, end]))
    mids = (times[:-1] + times[1:]) / 2
    present = (start[None, :] <= mids[:, None]) & (end[None, :] > mids[:, None])
    req_cpu = present @ trace.cpu_request_cores[fits_empty]
    req_mem = present @ trace.memory_request_gib[fits_empty]
    tau = scenario.idle_sleep_after_s
    if asleep_w is not None:
        # A node that held pods at t' cannot sleep before t' + tau (it must idle that long first), so the
        # nodes awake at t cover the requests of every moment of [t - tau, t]; before tau nobody sleeps.
        grid = np.unique(np.concatenate([times, times + tau, [tau]]))
        grid = grid[grid <= makespan]
        g_mid = (grid[:-1] + grid[1:]) / 2
        lo, hi = times[:-1], times[1:]
        overlaps = (lo[None, :] < g_mid[:, None]) & (hi[None, :] > g_mid[:, None] - tau)
        req_cpu = np.where(overlaps, req_cpu[None, :], 0.0).max(axis=1)
        req_mem = np.where(overlaps, req_mem[None, :], 0.0).max(axis=1)
        req_cpu = np.where(g_mid < tau, np.inf, req_cpu)  # every node still awake
        dts = np.diff(grid)
    else:
        dts = np.diff(times)
    ok = (cap_cpu[None, :] + 1e-9 >= req_cpu[:, None]) & (cap_mem[None, :] + 1e-9 >= req_mem[:, None])
    all_awake = float(idle @ count)
    cover = np.where(ok, cost[None, :], np.inf).min(axis=1)
    cover = np.where(np.isinf(cover), all_awake, cover)
    idle_energy = float(np.sum(cover * dts))
    # smallest first hull slope over node types, W per core
    slope = np.inf
    for t in scenario.node_types:
        xs = np.array([t.cpu_cores * k / 10 for k in range(11)])
        slope = min(slope, float(np.min((np.array(t.watts[1:]) - t.watts[0]) / xs[1:])))
    work = float(np.sum((trace.usage_cores * trace.work_s)[fits_empty]))
    return idle_energy + max(slope, 0.0) * work


EXACT_MAX_PODS = 10
"""Episodes with at most this many pods get the exact optimum (the search budget permitting): on `tiny` (8 pods)
it takes about 0.1 s; on 12 pods (`minikube`) the search took 3-9 s and mostly ran out of budget, so larger
episodes get the lower bound at once."""


def oracle(scenario: Scenario, trace: PodTrace, *, max_nodes_visited: int = 200_000) -> OracleResult:
    """The exact optimum for episodes of up to EXACT_MAX_PODS pods when the search fits its budget, else the
    best (largest) of the lower bounds."""
    if len(trace) <= EXACT_MAX_PODS:
        exact = exact_optimum(scenario, trace, max_nodes_visited=max_nodes_visited)
        if exact is not None:
            return exact
    fluid = fluid_lower_bound(scenario, trace)
    cover = cover_lower_bound(scenario, trace)
    if cover is not None and cover > fluid.energy_j:
        return OracleResult("lower-bound", cover, 0.0, fluid.unschedulable)
    return fluid
