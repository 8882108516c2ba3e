"""What do the run-time rules lose by estimating run times? Each rule next to itself told the true run times.

`runtime-aware`, `runtime-aware-headroom` and `runtime-aware-short-headroom` decide from each pod's expected run
time (its workload's mean so far, or a prior). `rlmodel.evaluation.told.ToldRunTimes` gives them the arriving
pod's true run time instead (read from the twin: an evaluation tool, not a scheduler). If the rule told the truth
does no better, a better run-time estimate (a learned one included) cannot help that rule: what limits it is its
structure. Paired episodes on each seed set; energy as a multiple of efficient-first's (mean over mean), then the
mean overload in pod-s a episode; round-robin's overload is printed as the service-level reference.

    .venv/bin/python benchmarks/told_run_times.py [--scenario classes-sleep] [--episodes 20] [--seeds 1000,1,2000]
"""

from __future__ import annotations

import argparse

from rlmodel.envs import PodPlacementEnv
from rlmodel.errors import RlschedError
from rlmodel.evaluation.benchmark import mean_energy_overload
from rlmodel.evaluation.told import ToldRunTimes
from rlmodel.policies import make_policy
from rlmodel.sim import load_scenario

RULES = ("runtime-aware", "runtime-aware-headroom", "runtime-aware-short-headroom")


def measure(env: PodPlacementEnv, policy, seeds: range) -> tuple[float, float]:
    """Mean energy (J) and mean overload (pod-s) of `policy` over the episodes of `seeds`."""
    return mean_energy_overload(env, policy, seeds)[:2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="classes-sleep")
    parser.add_argument("--episodes", type=int, default=20, help="episodes per seed set")
    parser.add_argument("--seeds", default="1000,1,2000", help="first seed of each set, comma-separated")
    args = parser.parse_args()
    try:
        firsts = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds: expected whole numbers separated by commas, got {args.seeds!r}")
    if args.episodes < 1:
        parser.error(f"--episodes: must be >= 1, got {args.episodes}")
    try:
        env = PodPlacementEnv(load_scenario(args.scenario))
    except RlschedError as exc:
        parser.error(f"--scenario: {exc}")
    print(f"{args.scenario}: energy x efficient-first, overload pod-s (mean of {args.episodes} paired episodes)")
    for first in firsts:
        seeds = range(first, first + args.episodes)
        ef, _ = measure(env, make_policy("efficient-first"), seeds)
        _, rr_overload = measure(env, make_policy("round-robin"), seeds)
        cells = []
        for name in RULES:
            plain = measure(env, make_policy(name), seeds)
            told = measure(env, ToldRunTimes(make_policy(name), env), seeds)
            cells.append(f"{name} {plain[0] / ef:.3f}, {plain[1]:.1f} | told {told[0] / ef:.3f}, {told[1]:.1f}")
        print(f"seeds {first}-{first + args.episodes - 1} (round-robin's overload {rr_overload:.1f}):\n  "
              + "\n  ".join(cells))


if __name__ == "__main__":
    main()
