"""Can a learner find what beats a rule? The signal one decision leaves, next to the gain sought.

On `classes-sleep` the DQN ties the rule it learns from (runtime-aware-short-headroom, RA-SH, by default), and the
issue's target asks for 0.97 x efficient-first's energy, a few tenths of a per cent below the rule. To learn to
beat a rule, a learner must tell from experience which of the rule's decisions another node would improve. This
script measures how much a decision's consequences can be told apart:

1. Labels. On training episodes (seeds from `--train-seed`, never a benchmark's), the rule decides (a random
   feasible node with probability `--epsilon`, so that other states are visited too) and at every decision with
   more than one feasible node, every node is tried in the episode's real future
   (`rlmodel.evaluation.action_values.action_outcomes`: the pod placed there, then the rule to the end): the cost
   of each node minus the cost of the rule's own choice, dQ, in kJ of the scenario's reward (energy plus the
   penalties). These are the targets a DQN estimates; one sample each.
2. The spread of dQ against the gain sought: the held-out seed set's (rule - 0.97 x EF) energy a decision.
3. A fit: the DQN's node scorer (the same network and features) regressed on the labels (each node's value minus
   the rule's choice's, Huber loss), and R^2 on held-out labels: the share of dQ's variance the observation
   explains. Then the one-step improved policy (the rule's choice unless the fitted values put another node
   more than `--margins` kJ lower) on the seed sets of docs/results.md, energy x efficient-first and overload
   (pod-s), next to the rule's.

    .venv/bin/python benchmarks/decision_signal.py [--scenario classes-sleep] [--rule runtime-aware-short-headroom]
        [--episodes 300] [--horizon-s inf] [--overload-weight W] [--margins 0,1,2] [--jobs 2]
"""

from __future__ import annotations

import argparse
import math
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

from rlmodel.agents.features import NUM_FEATURES, node_features
from rlmodel.agents.qnet import NodeScorer
from rlmodel.envs import PodPlacementEnv
from rlmodel.errors import RlschedError
from rlmodel.evaluation.action_values import action_outcomes
from rlmodel.evaluation.benchmark import mean_energy_overload
from rlmodel.policies import BASELINES, make_policy
from rlmodel.sim import load_scenario
from rlmodel.sim.scenario import Scenario

EVAL_SETS = (1000, 1, 2000)  # docs/results.md's seed sets for classes-sleep; 20 episodes each


def scenario_of(name: str, overload_weight: float | None) -> Scenario:
    scenario = load_scenario(name)
    return scenario if overload_weight is None else scenario.with_overload_weight(overload_weight)


def labels(args: tuple[str, float | None, str, list[int], float, float]) -> tuple[list, list, list, list, list]:
    """Features (N, F), dQ (N,) kJ (NaN: infeasible), mask and the rule's choice at each labelled decision, and the
    energy part of dQ (N,) kJ."""
    name, weight, rule, seeds, epsilon, horizon_s = args
    env = PodPlacementEnv(scenario_of(name, weight))
    base, continuation = make_policy(rule), make_policy(rule)  # the episode's decisions; the tried futures'
    feats, dq, masks, chosen, energy = [], [], [], [], []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        obs, info = env.reset(seed=seed)
        base.reset(seed)
        done = not info["action_mask"].any()
        while not done:
            mask = info["action_mask"]
            b = base.predict(obs, mask)
            feasible = np.flatnonzero(mask)
            if feasible.size > 1:
                out = action_outcomes(env, obs, info, continuation, horizon_s, seed=seed * 1000 + env.pod_index)
                feats.append(node_features(obs))
                dq.append((out["cost_j"] - out["cost_j"][b]) / 1e3)
                energy.append((out["energy_j"] - out["energy_j"][b]) / 1e3)
                masks.append(mask.copy())
                chosen.append(b)
            a = b if rng.random() >= epsilon else int(rng.choice(feasible))
            obs, _, done, _, info = env.step(a)
    return feats, dq, masks, chosen, energy


class OneStepImproved:
    """The rule's choice unless the fitted action values put another node more than `margin_kj` lower."""

    def __init__(self, rule: str, net: NodeScorer, margin_kj: float):
        self.base, self.net, self.margin_kj = make_policy(rule), net, margin_kj
        self.name = f"{rule}+fitted-dQ(margin {margin_kj:g} kJ)"
        self.deviations = 0

    def reset(self, seed: int | None = None) -> None:
        self.base.reset(seed)

    def predict(self, obs, action_mask: np.ndarray) -> int:
        b = self.base.predict(obs, action_mask)
        with torch.inference_mode():
            value = self.net(torch.from_numpy(node_features(obs))).numpy().astype(np.float64)
        dq = np.where(action_mask, value - value[b], np.inf)
        a = int(np.argmin(dq))
        if dq[a] < -self.margin_kj:
            self.deviations += 1
            return a
        return b


def fit(feats: torch.Tensor, dq: torch.Tensor, masks: torch.Tensor, chosen: torch.Tensor, train: np.ndarray,
        epochs: int) -> NodeScorer:
    """The node scorer fitted to dQ: value(node) - value(rule's choice) ~ dQ(node), Huber loss over feasible nodes."""
    torch.manual_seed(0)
    net = NodeScorer(NUM_FEATURES, 64, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    for _ in range(epochs):
        perm = torch.from_numpy(rng.permutation(train))
        for k in range(0, perm.numel(), 256):
            idx = perm[k:k + 256]
            opt.zero_grad()
            err = residuals(net, feats, dq, masks, chosen, idx)
            loss = torch.nn.functional.huber_loss(err, torch.zeros_like(err), delta=5.0)
            loss.backward()
            opt.step()
    return net.eval()


def residuals(net: NodeScorer, feats, dq, masks, chosen, idx: torch.Tensor) -> torch.Tensor:
    """Fitted minus labelled dQ (kJ) on the feasible nodes of the decisions `idx`, flattened."""
    value = net(feats[idx])
    fitted = value - value.gather(1, chosen[idx][:, None])
    return (fitted - dq[idx])[masks[idx]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="classes-sleep")
    parser.add_argument("--rule", default="runtime-aware-short-headroom", help="the rule to improve on")
    parser.add_argument("--episodes", type=int, default=300, help="training episodes labelled")
    parser.add_argument("--train-seed", type=int, default=10_000, help="first training seed")
    parser.add_argument("--epsilon", type=float, default=0.2, help="share of random decisions while labelling")
    parser.add_argument("--horizon-s", type=float, default=math.inf, help="count each continuation's cost for this "
                        "many seconds (default: to the end of the episode)")
    parser.add_argument("--overload-weight", type=float, default=None, help="J per pod-s of overload in the cost "
                        "(default: the scenario's reward)")
    parser.add_argument("--margins", default="0,1,2", help="kJ, comma-separated")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--eval-episodes", type=int, default=20, help="episodes per evaluation seed set")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    if args.rule not in BASELINES:
        parser.error(f"--rule: unknown policy {args.rule!r} (one of: {', '.join(BASELINES)})")
    if args.episodes < 2 or args.jobs < 1 or args.epochs < 1 or args.eval_episodes < 1:
        parser.error("--episodes must be >= 2; --jobs, --epochs and --eval-episodes >= 1")
    if not 0.0 <= args.epsilon <= 1.0:
        parser.error(f"--epsilon: must be within [0, 1], got {args.epsilon}")
    if not args.horizon_s > 0:
        parser.error(f"--horizon-s: must be > 0, got {args.horizon_s}")
    try:
        margins = [float(m) for m in args.margins.split(",")]
    except ValueError:
        parser.error(f"--margins: expected numbers separated by commas, got {args.margins!r}")
    try:
        scenario_of(args.scenario, args.overload_weight)
    except RlschedError as exc:
        parser.error(f"--scenario: {exc}")
    torch.set_num_threads(1)

    t0 = time.perf_counter()
    seeds = list(range(args.train_seed, args.train_seed + args.episodes))
    chunks = [seeds[k::args.jobs] for k in range(args.jobs)]
    with ProcessPoolExecutor(args.jobs) as pool:
        parts = list(pool.map(labels, [(args.scenario, args.overload_weight, args.rule, c, args.epsilon,
                                        args.horizon_s) for c in chunks]))
    feats = torch.tensor(np.stack([f for p in parts for f in p[0]]), dtype=torch.float32)
    dq_np = np.stack([d for p in parts for d in p[1]])
    masks = torch.tensor(np.stack([m for p in parts for m in p[2]]))
    chosen = torch.tensor([c for p in parts for c in p[3]])
    energy_np = np.stack([e for p in parts for e in p[4]])
    dq = torch.tensor(np.nan_to_num(dq_np), dtype=torch.float32)
    labelled_s = time.perf_counter() - t0

    is_other = masks.numpy() & (np.arange(dq_np.shape[1])[None, :] != chosen.numpy()[:, None])
    others, energy_others = dq_np[is_other], energy_np[is_other]
    best = np.nanmin(dq_np, axis=1)
    env = PodPlacementEnv(scenario_of(args.scenario, args.overload_weight))
    sets = {first: range(first, first + args.eval_episodes) for first in EVAL_SETS}
    # per seed set: efficient-first's energy, round-robin's overload, the rule's (energy, overload, decisions)
    ef = {k: mean_energy_overload(env, make_policy("efficient-first"), s)[0] for k, s in sets.items()}
    rr_overload = {k: mean_energy_overload(env, make_policy("round-robin"), s)[1] for k, s in sets.items()}
    rule = {k: mean_energy_overload(env, make_policy(args.rule), s) for k, s in sets.items()}
    held = sets[EVAL_SETS[0]]
    ef_j, (rule_j, _, decisions) = ef[held.start], rule[held.start]
    sought = (rule_j - 0.97 * ef_j) / 1e3 / decisions
    print(f"{args.scenario}, rule {args.rule}: {len(chosen)} decisions labelled over {args.episodes} episodes "
          f"({labelled_s:.0f} s, {args.jobs} jobs), {others.size} other feasible nodes tried")
    print(f"  dQ of the other nodes, kJ: mean {others.mean():.1f}, mean |dQ| {np.abs(others).mean():.1f}, "
          f"std {others.std():.1f}; decisions where some node was cheaper by > 1 kJ in its future: "
          f"{(best < -1.0).mean():.0%}")
    print(f"  its energy part alone, kJ: mean {energy_others.mean():.1f}, "
          f"mean |dQ| {np.abs(energy_others).mean():.1f}, median |dQ| {np.median(np.abs(energy_others)):.1f}, "
          f"std {energy_others.std():.1f}")
    print(f"  the gain sought: the rule at {rule_j / ef_j:.3f} x EF on seeds {held.start}-{held.stop - 1}; "
          f"0.97 x EF is {sought:+.2f} kJ a decision from it")

    n = len(chosen)
    order = np.random.default_rng(1).permutation(n)
    train, valid = order[: int(0.85 * n)], order[int(0.85 * n):]
    net = fit(feats, dq, masks, chosen, train, args.epochs)
    with torch.inference_mode():
        for label, part in (("training", train), ("held-out", valid)):
            idx = torch.from_numpy(part)
            err = residuals(net, feats, dq, masks, chosen, idx).numpy()
            target = dq[idx][masks[idx]].numpy()
            r2 = 1.0 - float(np.mean(err ** 2)) / float(np.var(target))
            print(f"  fit on {label} labels: RMSE {np.sqrt(np.mean(err ** 2)):.1f} kJ, R^2 {r2:.3f}")

    for first, seeds_set in sets.items():
        cells = [f"{args.rule} {rule[first][0] / ef[first]:.3f}, {rule[first][1]:.1f}"]
        for m in margins:
            policy = OneStepImproved(args.rule, net, m)
            e, o, _ = mean_energy_overload(env, policy, seeds_set)
            cells.append(f"fitted, margin {m:g} kJ: {e / ef[first]:.3f}, {o:.1f} ({policy.deviations} deviations)")
        print(f"seeds {first}-{first + args.eval_episodes - 1} (energy x EF, overload pod-s; round-robin's overload "
              f"{rr_overload[first]:.1f}):\n  " + "\n  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
