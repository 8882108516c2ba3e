"""How much of the room below efficient-first can an online scheduler reach? Look-ahead versus hindsight.

Runs efficient-first and the Monte Carlo look-ahead planner (`rlmodel.evaluation.rollout`: it knows the
workload's distributions but not the future) on the same held-out episodes, and with `--hindsight N` the
hindsight search (knows every run time in advance; N replays per episode), which bounds the offline
optimum from above. Prints per episode and the mean energy of each over efficient-first's, with the
paired 95 % confidence interval of the difference. Episodes run in `--jobs` processes.

`--information run-times` or `clairvoyant` runs the same planner knowing more than a scheduler can (the
true run times of the arriving and bound pods; the whole future): the same algorithm with more
information, to tell how much of the gap to hindsight is missing information.

    .venv/bin/python benchmarks/online_lookahead.py [--scenario hetero-sleep] [--episodes 20] [--seed 1000]
        [--samples 64] [--z 2] [--information online] [--hindsight 1000] [--jobs 2]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from rlmodel.envs import PodPlacementEnv
from rlmodel.errors import RlschedError
from rlmodel.evaluation.benchmark import ci95_halfwidth, episode_seeds, run_episode
from rlmodel.evaluation.hindsight import hindsight_search
from rlmodel.evaluation.rollout import INFORMATION, RolloutPlanner
from rlmodel.policies import make_policy
from rlmodel.sim import load_scenario


def one_episode(args: tuple[str, int, int, float, str, int]) -> tuple[int, float, float, int, float, float]:
    """(seed, efficient-first kJ, look-ahead kJ, look-ahead deviations, hindsight kJ or nan, look-ahead s)."""
    scenario_name, seed, samples, z, information, hindsight = args
    scenario = load_scenario(scenario_name)
    env = PodPlacementEnv(scenario)
    ef = run_episode(env, make_policy("efficient-first"), seed)
    planner = RolloutPlanner(env, samples=samples, z=z, information=information)
    t0 = time.perf_counter()
    la = run_episode(env, planner, seed)
    took = time.perf_counter() - t0
    hs = (hindsight_search(scenario, seed, make_policy("efficient-first"), replays=hindsight).energy_j
          if hindsight else float("nan"))
    return seed, ef.energy_j / 1e3, la.energy_j / 1e3, planner.deviations, hs / 1e3, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="hetero-sleep")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1000, help="first held-out episode seed")
    parser.add_argument("--samples", type=int, default=64, help="sampled futures per decision")
    parser.add_argument("--z", type=float, default=2.0, help="standard errors needed to overrule efficient-first")
    parser.add_argument("--information", default="online", choices=INFORMATION,
                        help="what the planner knows of the future (only online is a real scheduler)")
    parser.add_argument("--hindsight", type=int, default=0, help="hindsight replays per episode (0: skip)")
    parser.add_argument("--jobs", type=int, default=2)
    a = parser.parse_args()
    try:
        load_scenario(a.scenario)  # the workers load it again; a wrong name stops here, in one line
    except RlschedError as exc:
        parser.error(f"--scenario: {exc}")
    work = [(a.scenario, s, a.samples, a.z, a.information, a.hindsight) for s in episode_seeds(a.seed, a.episodes)]
    print(f"{a.scenario}: {a.episodes} episodes from seed {a.seed}, {a.samples} futures per decision, z = {a.z:g}, "
          f"information {a.information}")
    print("seed   efficient-first kJ   look-ahead kJ (ratio, overrules)   hindsight kJ (ratio)   look-ahead s")
    rows = []
    with ProcessPoolExecutor(max_workers=a.jobs) as pool:
        for seed, ef, la, dev, hs, took in pool.map(one_episode, work):
            rows.append((ef, la, hs))
            print(f"{seed:5d}  {ef:10.1f}           {la:10.1f} ({la / ef:.3f}, {dev:2d})"
                  f"            {hs:10.1f} ({hs / ef:.3f})   {took:6.1f}", flush=True)
    ef_, la_, hs_ = (np.array(c) for c in zip(*rows, strict=True))
    print(f"look-ahead / efficient-first: {la_.mean() / ef_.mean():.4f} "
          f"(difference {la_.mean() - ef_.mean():+.1f} kJ ± {ci95_halfwidth(la_ - ef_):.1f}, paired 95 % CI; "
          f"better in {(la_ < ef_ - 1e-6).sum()} of {len(rows)}, worse in {(la_ > ef_ + 1e-6).sum()})")
    if a.hindsight:
        print(f"hindsight / efficient-first:  {hs_.mean() / ef_.mean():.4f} "
              f"(difference {hs_.mean() - ef_.mean():+.1f} kJ ± {ci95_halfwidth(hs_ - ef_):.1f})")
        print(f"look-ahead / hindsight:       {la_.mean() / hs_.mean():.4f}")


if __name__ == "__main__":
    main()
