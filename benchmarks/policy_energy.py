"""Energy of every baseline policy on the built-in scenarios (paired episodes, held-out seeds).

Prints, per scenario, mean energy with its 95 % confidence interval, the ratio to round-robin and the
gap to the oracle (exact optimum where the episodes are small, else the fluid lower bound).

    .venv/bin/python benchmarks/policy_energy.py [--episodes 20] [--seed 1000]
"""

from __future__ import annotations

import argparse
import time

from rlmodel.errors import RlschedError
from rlmodel.evaluation.benchmark import run_benchmark, summarize
from rlmodel.evaluation.report import format_table
from rlmodel.policies import BASELINES, make_policy
from rlmodel.sim import builtin_scenarios, load_scenario


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--scenarios", default=",".join(builtin_scenarios()))
    args = parser.parse_args()
    try:
        scenarios = [load_scenario(name) for name in args.scenarios.split(",")]
    except RlschedError as exc:
        parser.error(f"--scenarios: {exc}")
    for name, sc in zip(args.scenarios.split(","), scenarios, strict=True):
        start = time.perf_counter()
        df = run_benchmark(sc, [make_policy(p) for p in BASELINES], episodes=args.episodes, seed=args.seed)
        kinds = ",".join(sorted(set(df.loc[df.policy == "oracle", "oracle_kind"])))
        print(f"\n## {name}: {sc.num_nodes} nodes, {args.episodes} episodes, seeds {args.seed}.., "
              f"oracle {kinds}, {time.perf_counter() - start:.1f} s")
        print(format_table(summarize(df)))


if __name__ == "__main__":
    main()
