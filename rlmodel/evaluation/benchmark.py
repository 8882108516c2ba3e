"""Run policies on identical episodes (paired seeds) and summarise energy, overload and misses."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from rlmodel.envs.placement import PodPlacementEnv
from rlmodel.errors import PolicyError
from rlmodel.evaluation.oracle import oracle as run_oracle
from rlmodel.policies.base import Policy, ScoringPolicy
from rlmodel.sim.scenario import Scenario

EPISODE_COLUMNS = [
    "scenario", "policy", "episode", "seed", "energy_j", "overload_pod_s", "unschedulable", "mean_watts",
    "wake_delay_pod_s", "wakeups", "makespan_s", "return", "oracle_kind", "pods", "pods_placed", "cost_j",
    "energy_j_per_placed_pod", "imbalance_s",
]
SUMMARY_COLUMNS = [
    "scenario", "policy", "episodes", "energy_j_mean", "energy_j_ci95", "ratio_to_round_robin",
    "ratio_to_round_robin_ci95", "gap_to_oracle", "overload_pod_s_mean", "unschedulable_mean",
    "wake_delay_pod_s_mean", "mean_watts_mean", "cost_j_mean", "cost_j_ci95", "energy_j_per_placed_pod_mean",
    "reference", "cost_ratio_to_reference", "cost_ratio_to_reference_ci95", "cost_diff_to_reference_j",
    "cost_diff_to_reference_j_ci95", "rank", "imbalance_s_mean",
]
"""`rank` orders policies by `cost_j_mean`, the reward's cost (energy plus the overload and unplaced-pod
penalties), so leaving pods unplaced never ranks a policy better; the oracle (a bound) is not ranked.
`imbalance_s` is the integral of the standard deviation of node CPU utilization (charged at
`reward.imbalance_penalty_j`); the oracle's rows leave it empty and its cost omits it (still a lower bound)."""


@dataclass(frozen=True)
class EpisodeResult:
    """Totals of one episode of one policy (units in the names)."""

    energy_j: float
    overload_pod_s: float
    unschedulable: float
    mean_watts: float
    wake_delay_pod_s: float
    wakeups: float
    makespan_s: float
    ret: float
    actions: tuple[int, ...]
    imbalance_s: float = 0.0


def run_episode(env: PodPlacementEnv, policy: Policy, seed: int,
                on_decisions: Callable[[int], None] | None = None) -> EpisodeResult:
    """One episode of `policy` on the trace drawn from `seed`. `on_decisions(n)` is called every 1,000
    decisions and at the end with the decisions since its last call (progress on very large episodes)."""
    obs, info = env.reset(seed=seed)
    policy.reset(seed=seed)
    total = 0.0
    actions = []
    terminated = bool(not info["action_mask"].any())
    reported = 0
    while not terminated:
        action = policy.predict(obs, info["action_mask"])
        actions.append(action)
        obs, reward, terminated, _, info = env.step(action)
        total += reward
        if on_decisions is not None and len(actions) - reported >= 1000:
            on_decisions(len(actions) - reported)
            reported = len(actions)
    if on_decisions is not None and len(actions) > reported:
        on_decisions(len(actions) - reported)
    m = env.episode_metrics()
    return EpisodeResult(m["energy_j"], m["overload_pod_s"], m["unschedulable"], m["mean_watts"],
                         m["wake_delay_pod_s"], m["wakeups"], m["makespan_s"], total, tuple(actions),
                         m["imbalance_s"])


def mean_energy_overload(env: PodPlacementEnv, policy: Policy, seeds: Sequence[int]) -> tuple[float, float, float]:
    """Mean energy (J), overload (pod-s) and decisions of `policy` per episode over the episodes of `seeds`."""
    rs = [run_episode(env, policy, s) for s in seeds]
    return (float(np.mean([r.energy_j for r in rs])), float(np.mean([r.overload_pod_s for r in rs])),
            float(np.mean([len(r.actions) for r in rs])))


def agreement(env: PodPlacementEnv, policy: Policy, reference: ScoringPolicy, seeds: Sequence[int]) -> float:
    """Share of `policy`'s decisions on the episodes of `seeds` that `reference` scores as its best
    (a tie for the best counts as agreement): how often a learned policy makes a heuristic's choices."""
    same = total = 0
    for seed in seeds:
        obs, info = env.reset(seed=seed)
        policy.reset(seed=seed)
        done = not info["action_mask"].any()
        while not done:
            mask = info["action_mask"]
            action, scores = policy.predict(obs, mask), reference.scores(obs, mask)
            same += bool(scores[action] == scores[mask].max())
            total += 1
            obs, _, done, _, info = env.step(action)
    return same / max(total, 1)


def episode_seeds(seed: int, episodes: int) -> list[int]:
    """The seeds of a benchmark's episodes: `seed, seed+1, ...` (shared by every policy)."""
    return [seed + i for i in range(episodes)]


def run_benchmark(
    scenario: Scenario,
    policies: Sequence[Policy],
    *,
    episodes: int,
    seed: int,
    with_oracle: bool = True,
    on_episode: Callable[[str, int], None] | None = None,
    env: PodPlacementEnv | None = None,
    rows: list[dict] | None = None,
    on_decisions: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Every policy on the same episode seeds; one row per (policy, episode), columns EPISODE_COLUMNS.

    `rows`: a list the rows are appended to as episodes finish (what an interrupted run keeps).

    With `with_oracle`, an `oracle` row per episode holds the offline optimum or its lower bound
    (column `oracle_kind`). `env`: where episodes run (default: the twin of `scenario`; the testbed
    passes one with a `MinikubeCluster`, whose records are labelled with the policy's name).
    """
    env = env if env is not None else PodPlacementEnv(scenario)
    rows = rows if rows is not None else []
    seeds = episode_seeds(seed, episodes)
    cost = scenario.reward.cost_j

    def totals(pods: int, energy_j: float, overload_pod_s: float, unschedulable: float,
               imbalance_s: float) -> dict[str, float]:
        placed = pods - unschedulable
        return {"pods": pods, "pods_placed": placed, "imbalance_s": imbalance_s,
                "cost_j": cost(energy_j, overload_pod_s, unschedulable,
                               0.0 if math.isnan(imbalance_s) else imbalance_s),
                "energy_j_per_placed_pod": energy_j / placed if placed > 0 else math.nan}

    for policy in policies:
        env.sim.label_run(policy.name)  # labels the testbed's per-window records
        for ep, s in enumerate(seeds):
            r = run_episode(env, policy, s, on_decisions)
            rows.append({
                "scenario": scenario.name, "policy": policy.name, "episode": ep, "seed": s,
                "energy_j": r.energy_j, "overload_pod_s": r.overload_pod_s, "unschedulable": r.unschedulable,
                "mean_watts": r.mean_watts, "wake_delay_pod_s": r.wake_delay_pod_s, "wakeups": r.wakeups,
                "makespan_s": r.makespan_s, "return": r.ret, "oracle_kind": "",
                **totals(len(env.trace), r.energy_j, r.overload_pod_s, r.unschedulable, r.imbalance_s),
            })
            if on_episode:
                on_episode(policy.name, ep)
    if with_oracle:
        for ep, s in enumerate(seeds):
            env.reset(seed=s)
            o = run_oracle(scenario, env.trace)
            rows.append({
                "scenario": scenario.name, "policy": "oracle", "episode": ep, "seed": s,
                "energy_j": o.energy_j, "overload_pod_s": o.overload_pod_s, "unschedulable": o.unschedulable,
                "mean_watts": math.nan, "wake_delay_pod_s": math.nan, "wakeups": math.nan,
                "makespan_s": math.nan, "return": math.nan, "oracle_kind": o.kind,
                **totals(len(env.trace), o.energy_j, o.overload_pod_s, o.unschedulable, math.nan),
            })
            if on_episode:
                on_episode("oracle", ep)
    return pd.DataFrame(rows, columns=EPISODE_COLUMNS)


def ci95_halfwidth(values: np.ndarray) -> float:
    """Half-width of the 95 % confidence interval of the mean (Student t); NaN for fewer than 2 values."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return math.nan
    sem = values.std(ddof=1) / math.sqrt(values.size)
    return float(stats.t.ppf(0.975, values.size - 1) * sem)


def summarize(episodes: pd.DataFrame, reference: str | None = None) -> pd.DataFrame:
    """One row per policy (columns SUMMARY_COLUMNS), ranked by cost.

    `reference` (default: round-robin when present, else the first policy) is the policy every other is
    compared with, paired per episode: the ratio of mean costs with the 95 % CI of the per-episode cost
    ratios, and the mean per-episode cost difference (J) with its 95 % CI. `ratio_to_round_robin` (energy)
    is kept for the figures of earlier versions.
    """
    rows = []
    by_policy = {p: g.set_index("episode") for p, g in episodes.groupby("policy", sort=False)}
    if reference is None:
        reference = "round-robin" if "round-robin" in by_policy else next(iter(by_policy), "")
    if reference not in by_policy or reference == "oracle":
        raise PolicyError(f"--reference {reference}: not one of the benchmarked policies "
                          f"({', '.join(p for p in by_policy if p != 'oracle')})")
    ref = by_policy[reference]
    rr = by_policy.get("round-robin")
    oracle = by_policy.get("oracle")
    for policy, g in by_policy.items():
        energy = g["energy_j"].to_numpy()
        ratio = ratio_ci = gap = math.nan
        if rr is not None:
            paired = _ratio(g["energy_j"].to_numpy(), rr["energy_j"].reindex(g.index).to_numpy())
            ratio = float(_ratio(g["energy_j"].mean(), rr["energy_j"].reindex(g.index).mean()))
            ratio_ci = ci95_halfwidth(paired)
        if oracle is not None and policy != "oracle":
            gap = float(_ratio(g["energy_j"].mean(), oracle["energy_j"].reindex(g.index).mean())) - 1.0
        rows.append({
            "scenario": g["scenario"].iloc[0], "policy": policy, "episodes": len(g),
            "energy_j_mean": float(energy.mean()), "energy_j_ci95": ci95_halfwidth(energy),
            "ratio_to_round_robin": ratio, "ratio_to_round_robin_ci95": ratio_ci, "gap_to_oracle": gap,
            "overload_pod_s_mean": float(g["overload_pod_s"].mean()),
            "unschedulable_mean": float(g["unschedulable"].mean()),
            "wake_delay_pod_s_mean": float(g["wake_delay_pod_s"].mean()),
            "mean_watts_mean": float(g["mean_watts"].mean()),
            "imbalance_s_mean": float(g["imbalance_s"].mean()),
            **_cost_columns(g, ref, reference),
        })
    out = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    ranked = out[out.policy != "oracle"].sort_values("cost_j_mean", kind="stable")
    out.loc[ranked.index, "rank"] = range(1, len(ranked) + 1)
    order = list(ranked.index) + list(out.index[out.policy == "oracle"])
    return out.loc[order].reset_index(drop=True)


def _cost_columns(g: pd.DataFrame, ref: pd.DataFrame, reference: str) -> dict[str, object]:
    cost = g["cost_j"].to_numpy(dtype=np.float64)
    ref_cost = ref["cost_j"].reindex(g.index).to_numpy(dtype=np.float64)
    per_pod = g["energy_j_per_placed_pod"].to_numpy(dtype=np.float64)
    ratios = _ratio(cost, ref_cost)
    diff = cost - ref_cost
    return {
        "cost_j_mean": float(cost.mean()), "cost_j_ci95": ci95_halfwidth(cost),
        "energy_j_per_placed_pod_mean": float(np.nanmean(per_pod)) if np.isfinite(per_pod).any() else math.nan,
        "reference": reference,
        "cost_ratio_to_reference": float(_ratio(cost.mean(), ref_cost.mean())),
        "cost_ratio_to_reference_ci95": ci95_halfwidth(ratios),
        "cost_diff_to_reference_j": float(diff.mean()), "cost_diff_to_reference_j_ci95": ci95_halfwidth(diff),
        "rank": math.nan,
    }


def _ratio(a, b):
    """a / b elementwise, NaN where b is 0 (no ratio to a reference that cost nothing)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b != 0, a / np.where(b != 0, b, 1.0), np.nan)


def unplaced_warnings(summary: pd.DataFrame, penalty_j: float) -> list[str]:
    """A warning naming every policy that left pods unplaced: its energy covers fewer pods than the others'."""
    left = [f"{r.policy} {r.unschedulable_mean:.2f}" for r in summary.itertuples(index=False)
            if r.policy != "oracle" and r.unschedulable_mean > 0]
    if not left:
        return []
    return [f"warning: pods left unplaced per episode: {', '.join(left)}. Their energy covers fewer pods: the "
            f"ranking uses cost, which charges {penalty_j / 1000:g} kJ per pod left out (see also J/pod)."]
