"""Issue 16's targets: a DQN trained on `classes-sleep` against the baselines, the runtime-aware rule, the same
model on 4x the nodes, and replayed on an imported OpenB trace window it never saw.

1. Train on `classes-sleep` (default budget; `--set KEY=VALUE` changes a hyperparameter, e.g.
   `--set demonstrator=runtime-aware`), or `--model FILE` to evaluate a trained one.
2. Held-out seeds on `classes-sleep`: every baseline and the DQN (energy vs efficient-first, vs runtime-aware,
   overload vs round-robin). `--hindsight N`: the local search knowing the future (N replays an episode, from
   efficient-first's schedule) brackets what any scheduler could reach; `--lookahead K`: the online look-ahead
   planner told only the distributions (K sampled futures a decision) brackets what an online one could.
3. `classes-sleep` x4 (40 nodes, 4x the pods at 4x the rate): the same model vs the best baseline.
4. Trace replay: `--openb POD_LIST --node-list NODE_LIST` (Alibaba cluster-trace-gpu-v2023), or a synthetic
   file in that format (`tests.fakes.write_synthetic_openb`), imported with `rlsched trace import`'s code and
   replayed on its node groups with classes-sleep's idle sleep, 80-pod windows, times / 60 (hours become
   minutes, as in the classes scenarios): the DQN vs efficient-first.

    .venv/bin/python benchmarks/classes_targets.py [--model M] [--seed 1] [--episodes 20] [--eval-seed 1000]
        [--set demonstrator=runtime-aware] [--hindsight 1000] [--lookahead 16] [--out results/classes-targets]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rlmodel.agents.dqn import DQNConfig, apply_overrides, train  # noqa: E402
from rlmodel.agents.policy import DQNPolicy  # noqa: E402
from rlmodel.evaluation.benchmark import ci95_halfwidth, episode_seeds, run_benchmark, run_episode, summarize  # noqa: E402
from rlmodel.evaluation.hindsight import hindsight_search  # noqa: E402
from rlmodel.evaluation.report import format_table, write_csv_atomic  # noqa: E402
from rlmodel.policies import BASELINES, make_policy  # noqa: E402
from rlmodel.sim import load_scenario  # noqa: E402


def evaluate(scenario, policy, episodes: int, seed: int, out: Path, tag: str):
    df = run_benchmark(scenario, [make_policy(p) for p in BASELINES] + [policy], episodes=episodes, seed=seed,
                       with_oracle=False)
    summary = summarize(df, reference="efficient-first")
    write_csv_atomic(df, out / f"{tag}-episodes.csv")
    write_csv_atomic(summary, out / f"{tag}-summary.csv")
    print(format_table(summary))
    s = summary.set_index("policy")
    paired = df.pivot_table(index="seed", columns="policy", values="energy_j")
    for ref in ("efficient-first", "runtime-aware", "runtime-aware-headroom", "runtime-aware-short-headroom"):
        ratio = (paired["dqn"] / paired[ref]).to_numpy()
        diff = (paired["dqn"] - paired[ref]).to_numpy() / 1e3
        print(f"  dqn / {ref:<16} energy {s.loc['dqn'].energy_j_mean / s.loc[ref].energy_j_mean:.4f} "
              f"(paired ratio {ratio.mean():.4f} ± {ci95_halfwidth(ratio):.4f}; {diff.mean():+.1f} ± "
              f"{ci95_halfwidth(diff):.1f} kJ)")
    best = s.drop(index=["dqn"])["cost_j_mean"].idxmin()
    print(f"  dqn / best baseline by cost ({best}) {s.loc['dqn'].cost_j_mean / s.loc[best].cost_j_mean:.4f}")
    print("  overload pod-s: " + ", ".join(f"{p} {s.loc[p].overload_pod_s_mean:.2f}" for p in
                                         ("dqn", "round-robin", "efficient-first", "runtime-aware",
                                          "runtime-aware-headroom", "runtime-aware-short-headroom")))
    return summary


def brackets(scenario, episodes: int, seed: int, hindsight: int, lookahead: int) -> None:
    from rlmodel.envs import PodPlacementEnv
    from rlmodel.evaluation.rollout import RolloutPlanner

    env = PodPlacementEnv(scenario)
    ef = np.array([run_episode(env, make_policy("efficient-first"), s).energy_j for s in episode_seeds(seed, episodes)])
    if hindsight:
        found = np.array([hindsight_search(scenario, s, make_policy("efficient-first"), replays=hindsight).energy_j
                          for s in episode_seeds(seed, episodes)])
        print(f"  hindsight ({hindsight} replays, knows the future): {np.mean(found / ef):.4f} x efficient-first")
    if lookahead:
        planner = RolloutPlanner(env, samples=lookahead)
        got = np.array([run_episode(env, planner, s).energy_j for s in episode_seeds(seed, episodes)])
        print(f"  online look-ahead ({lookahead} sampled futures, knows the distributions): "
              f"{np.mean(got / ef):.4f} x efficient-first")


def trace_scenario(out: Path, openb: Path | None, node_list: Path | None) -> Path:
    """A scenario replaying an imported OpenB window on its node groups, with classes-sleep's idle sleep."""
    from rlmodel.sim.openb import import_openb

    if openb is None:
        from tests.fakes import write_synthetic_openb

        openb, node_list = out / "synthetic-openb-pods.csv", out / "synthetic-openb-nodes.csv"
        write_synthetic_openb(openb, node_list, pods=600, seed=16)
    assert node_list is not None
    trace, scenario = out / "openb-trace.csv", out / "openb.toml"
    report = import_openb(openb, trace, node_list=node_list, scenario_out=scenario, pods_per_episode=80)
    print(f"imported {report.pods_kept} of {report.pods_read} pods ({dict(report.skipped)}) from {openb}")
    text = scenario.read_text().replace("time_scale = 1.0", "time_scale = 0.016666666666666666")
    sleep = "[cluster]\nidle_sleep_after_s = 120\nsleep_watts = 8.0\nwake_s = 30.0\n\n"
    scenario.write_text(text.replace("\n[[node_types]]", "\n" + sleep + "[[node_types]]", 1))
    return scenario


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="evaluate this model instead of training one")
    parser.add_argument("--seed", type=int, default=1, help="training seed")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="a training hyperparameter (repeatable)")
    parser.add_argument("--episodes", type=int, default=20, help="held-out evaluation episodes")
    parser.add_argument("--eval-seed", type=int, default=1000, help="first held-out episode seed")
    parser.add_argument("--hindsight", type=int, default=0, help="replays per episode of the hindsight search")
    parser.add_argument("--lookahead", type=int, default=0, help="sampled futures per decision of the look-ahead")
    parser.add_argument("--openb", type=Path, default=None, help="an OpenB pod list (default: a synthetic one)")
    parser.add_argument("--node-list", type=Path, default=None, help="its node list")
    parser.add_argument("--out", type=Path, default=Path("results/classes-targets"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    sc = load_scenario("classes-sleep")
    model = args.model
    if model is None:
        cfg = apply_overrides(DQNConfig(seed=args.seed), args.sets)
        model = args.out / f"classes-sleep-seed{args.seed}.pth"
        start = time.perf_counter()
        train(cfg, sc, model)
        print(f"## trained {cfg.total_steps} steps on classes-sleep in {time.perf_counter() - start:.0f} s "
              f"(seed {args.seed}, {', '.join(args.sets) or 'default hyperparameters'})")
    policy = DQNPolicy.load(model)
    print(f"\n## classes-sleep, held-out seeds {args.eval_seed}..{args.eval_seed + args.episodes - 1}")
    evaluate(sc, policy, args.episodes, args.eval_seed, args.out, "classes-sleep")
    if args.hindsight or args.lookahead:
        brackets(sc, min(args.episodes, 10), args.eval_seed, args.hindsight, args.lookahead)
    big = sc.scaled(4)
    print(f"\n## {big.name}: the same model on {big.num_nodes} nodes")
    evaluate(big, policy, args.episodes, args.eval_seed, args.out, big.name)
    replay = load_scenario(trace_scenario(args.out, args.openb, args.node_list))
    print(f"\n## {replay.name}: the same model on a trace window it never saw ({replay.num_nodes} nodes)")
    evaluate(replay, policy, args.episodes, args.eval_seed, args.out, "openb")


if __name__ == "__main__":
    main()
