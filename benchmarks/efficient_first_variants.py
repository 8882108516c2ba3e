"""Is there room above efficient-first for an online policy? Variants of it, paired on held-out seeds.

Each variant keeps efficient-first's order (awake first, then lowest peak watts per core) and changes
what decides among equals: best fit on CPU and memory; nodes with pods before empty ones; the x3550
class first, then busy nodes; headroom (an awake node stays above a large node filled past 85 % of
its cores by requests, the look-ahead planner's most frequent overrule); or the node whose running
pods are youngest and so have the longest expected remaining run time (run times are uniform, so a
pod of age a has (1800 - max(a, 120)) / 2 s left on average; this one reads pod ages from the twin,
which the observation does not show).
Prints each variant's mean energy over efficient-first's.

    .venv/bin/python benchmarks/efficient_first_variants.py [--episodes 20] [--seed 1000]
"""

from __future__ import annotations

import argparse

import numpy as np

from rlmodel.envs import PodPlacementEnv
from rlmodel.errors import RlschedError
from rlmodel.evaluation.benchmark import run_episode
from rlmodel.policies import make_policy
from rlmodel.policies.base import COL, POD_COL, ScoringPolicy
from rlmodel.sim import load_scenario


def _columns(obs):
    n = obs["nodes"].astype(np.float64)
    watts_per_core = np.round(n[:, COL["peak_watts"]] / n[:, COL["cpu_cores"]], 3)
    fill = n[:, COL["cpu_requested_cores"]] / n[:, COL["cpu_cores"]]
    return n, watts_per_core, fill


class BestFit(ScoringPolicy):
    name = "best-fit (cpu+memory)"

    def scores(self, obs, action_mask):
        n, wpc, _ = _columns(obs)
        fill = (n[:, COL["cpu_requested_cores"]] / n[:, COL["cpu_cores"]]
                + n[:, COL["memory_requested_gib"]] / n[:, COL["memory_gib"]]) / 2
        return -1e6 * n[:, COL["asleep"]] - 10 * wpc + fill / 2


class BusyFirst(ScoringPolicy):
    name = "busy nodes first"

    def scores(self, obs, action_mask):
        n, wpc, fill = _columns(obs)
        return -1e6 * n[:, COL["asleep"]] + 1e4 * (n[:, COL["pods"]] > 0) - 10 * wpc + fill


class BigThenBusy(ScoringPolicy):
    name = "x3550 class, then busy"

    def scores(self, obs, action_mask):
        n, wpc, fill = _columns(obs)
        return -1e6 * n[:, COL["asleep"]] + 1e5 * (wpc < 30) + 1e4 * (n[:, COL["pods"]] > 0) - 10 * wpc + fill


class Headroom(ScoringPolicy):
    """Awake first; among awake nodes, large nodes (more than 4 cores) are passed over when the pod would
    fill them past `fill` of their cores by requests; then lowest peak watts per core."""

    def __init__(self, fill: float):
        super().__init__()
        self.fill, self.name = fill, f"headroom ({fill:.0%} of a large node)"

    def scores(self, obs, action_mask):
        n, wpc, fill = _columns(obs)
        pod_cpu = float(obs["pod"][POD_COL["cpu_request_cores"]])
        after = (n[:, COL["cpu_requested_cores"]] + pod_cpu) / n[:, COL["cpu_cores"]]
        too_full = (after > self.fill) & (n[:, COL["cpu_cores"]] > 4)
        return -1e6 * n[:, COL["asleep"]] - 1e5 * too_full - 10 * wpc + fill


class YoungestPods(ScoringPolicy):
    """Among equals, the node expected to stay busy longest (reads pod ages from the twin)."""

    def __init__(self, env: PodPlacementEnv, weight: float):
        super().__init__()
        self.env, self.weight, self.name = env, weight, f"youngest pods (weight {weight})"

    def scores(self, obs, action_mask):
        n, wpc, fill = _columns(obs)
        sim = self.env.sim
        lo, hi = 120.0, 1800.0
        remaining = np.zeros(len(n))
        for pod in np.flatnonzero((sim.node_of >= 0) & np.isnan(sim.finish_s)):
            age = max(sim.now_s - float(sim.trace.arrival_s[pod]), lo)
            node = sim.node_of[pod]
            remaining[node] = max(remaining[node], max(hi - age, 0.0) / 2)
        return -1e6 * n[:, COL["asleep"]] - 10 * wpc + self.weight * remaining / hi + (1 - self.weight) * fill


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--scenarios", default="hetero-sleep,hetero")
    args = parser.parse_args()
    seeds = range(args.seed, args.seed + args.episodes)
    try:
        scenarios = [load_scenario(name) for name in args.scenarios.split(",")]
    except RlschedError as exc:
        parser.error(f"--scenarios: {exc}")
    for base in scenarios:
        for sc in (base, base.scaled(4)):
            env = PodPlacementEnv(sc)
            policies = [make_policy("efficient-first"), BestFit(), BusyFirst(), BigThenBusy(),
                        Headroom(0.85), YoungestPods(env, 0.5), YoungestPods(env, 0.9)]
            energy = {p.name: np.mean([run_episode(env, p, s).energy_j for s in seeds]) for p in policies}
            ref = energy["efficient-first"]
            print(f"{sc.name}: " + ", ".join(f"{k} {v / ref:.4f}" for k, v in energy.items() if k != "efficient-first"))


if __name__ == "__main__":
    main()
