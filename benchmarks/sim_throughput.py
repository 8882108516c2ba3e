"""Simulator throughput: environment steps per second at 10, 100 and 1,000 nodes (one process).

Each step is one pod placement (first feasible node, so the policy costs next to nothing): the
observation for every node is built, the pod is bound, and the event core runs to the next arrival.
The node counts come from the built-in `hetero` scenario scaled 1x, 10x and 100x (same load per node).

    .venv/bin/python benchmarks/sim_throughput.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rlmodel.envs import PodPlacementEnv
from rlmodel.sim import load_scenario


def measure(env: PodPlacementEnv, seconds: float) -> tuple[float, int]:
    steps, episode = 0, 0
    obs, info = env.reset(seed=episode)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(200):
            action = int(np.argmax(info["action_mask"]))
            obs, _, done, _, info = env.step(action)
            steps += 1
            if done:
                episode += 1
                obs, info = env.reset(seed=episode)
    return steps / (time.perf_counter() - start), episode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per size (s)")
    args = parser.parse_args()
    base = load_scenario("hetero")
    print(f"{'nodes':>6} {'steps/s':>10} {'episodes':>9}")
    for factor in (1, 10, 100):
        env = PodPlacementEnv(base.scaled(factor) if factor > 1 else base)
        rate, episodes = measure(env, args.seconds)
        print(f"{env.num_nodes:>6} {rate:>10,.0f} {episodes:>9}")


if __name__ == "__main__":
    main()
