"""Train the DQN with the default budget and check it against the baselines and the oracle.

For each of `hetero-sleep` and `hetero`: train from scratch (default hyperparameters, the given seed),
then evaluate greedily on held-out episode seeds next to every baseline and the oracle; for
`hetero-sleep` also evaluate the same model on the scenario scaled to 4x the nodes. Prints the
figures the project's targets are stated in, and the training wall time. With `--hindsight N`, also
brackets the optimum from above on the 10-node scenarios: a local search of N replays per episode,
knowing the future, starting from efficient-first's schedule (`rlmodel.evaluation.hindsight`).

    .venv/bin/python benchmarks/dqn_targets.py [--seed 1] [--set KEY=VALUE] [--episodes 20] [--hindsight 1000]
        [--out results/dqn-targets]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from rlmodel.agents.dqn import DQNConfig, apply_overrides, train
from rlmodel.agents.policy import DQNPolicy
from rlmodel.envs import PodPlacementEnv
from rlmodel.errors import RlschedError
from rlmodel.evaluation.benchmark import agreement, ci95_halfwidth, episode_seeds, run_benchmark, summarize
from rlmodel.evaluation.hindsight import hindsight_search
from rlmodel.evaluation.report import format_table, write_csv_atomic
from rlmodel.policies import BASELINES, make_policy
from rlmodel.sim import load_scenario


def evaluate(scenario, policy, episodes: int, seed: int, out: Path, tag: str, hindsight: int = 0):
    policies = [make_policy(p) for p in BASELINES] + [policy]
    df = run_benchmark(scenario, policies, episodes=episodes, seed=seed)
    summary = summarize(df)
    write_csv_atomic(df, out / f"{tag}-episodes.csv")
    write_csv_atomic(summary, out / f"{tag}-summary.csv")
    print(format_table(summary))
    s = summary.set_index("policy")
    baselines = s.drop(index=["dqn", "oracle"])
    best = baselines["energy_j_mean"].idxmin()
    dqn = s.loc["dqn"]
    print(f"  dqn / round-robin      {dqn.ratio_to_round_robin:.3f} (paired CI ± {dqn.ratio_to_round_robin_ci95:.3f})")
    paired = df.pivot_table(index="seed", columns="policy", values="energy_j")
    diff_kj = (paired["dqn"] - paired[best]).to_numpy() / 1e3
    print(f"  dqn / best baseline    {dqn.energy_j_mean / s.loc[best].energy_j_mean:.3f} (best: {best}; paired "
          f"difference {diff_kj.mean():+.2f} ± {ci95_halfwidth(diff_kj):.2f} kJ, 95 % CI)")
    print(f"  dqn / oracle           {dqn.energy_j_mean / s.loc['oracle'].energy_j_mean:.3f} "
          f"(oracle: {','.join(sorted(set(df[df.policy == 'oracle'].oracle_kind)))})")
    rr_overload = s.loc["round-robin"].overload_pod_s_mean
    print(f"  overload dqn {dqn.overload_pod_s_mean:.1f} pod-s, round-robin {rr_overload:.1f}")
    same = agreement(PodPlacementEnv(scenario), policy, make_policy("efficient-first"), episode_seeds(seed, episodes))
    print(f"  dqn agrees with efficient-first on {same:.1%} of decisions")
    if hindsight:
        found = [hindsight_search(scenario, ep_seed, make_policy("efficient-first"), replays=hindsight)
                 for ep_seed in episode_seeds(seed, episodes)]
        energy = sum(h.energy_j for h in found) / len(found)
        print(f"  hindsight schedule     {energy / 1e3:.1f} kJ ({hindsight} replays per episode): "
              f"efficient-first / it {s.loc['efficient-first'].energy_j_mean / energy:.3f}, "
              f"dqn / it {dqn.energy_j_mean / energy:.3f}")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1, help="training seed")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="a training hyperparameter (repeatable), e.g. validation_scale=4")
    parser.add_argument("--episodes", type=int, default=20, help="held-out evaluation episodes")
    parser.add_argument("--eval-seed", type=int, default=1000, help="first held-out episode seed")
    parser.add_argument("--scenarios", default="hetero-sleep,hetero")
    parser.add_argument("--hindsight", type=int, default=0, help="replays per episode of the hindsight search")
    parser.add_argument("--out", type=Path, default=Path("results/dqn-targets"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    try:
        scenarios = [load_scenario(name) for name in args.scenarios.split(",")]
    except RlschedError as exc:
        parser.error(f"--scenarios: {exc}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name, sc in zip(args.scenarios.split(","), scenarios, strict=True):
        cfg = apply_overrides(DQNConfig(seed=args.seed), args.sets)
        model = args.out / f"{name}-seed{args.seed}.pth"
        start = time.perf_counter()
        train(cfg, sc, model)
        wall = time.perf_counter() - start
        print(f"\n## {name}: trained {cfg.total_steps} steps in {wall:.0f} s (seed {args.seed}"
              f"{', ' + ', '.join(args.sets) if args.sets else ''}); "
              f"held-out seeds {args.eval_seed}..{args.eval_seed + args.episodes - 1}")
        policy = DQNPolicy.load(model)
        evaluate(sc, policy, args.episodes, args.eval_seed, args.out, name, args.hindsight)
        if name == "hetero-sleep":
            big = sc.scaled(4)
            print(f"\n## {big.name}: the same model on {big.num_nodes} nodes")
            evaluate(big, policy, args.episodes, args.eval_seed, args.out, big.name)


if __name__ == "__main__":
    main()
