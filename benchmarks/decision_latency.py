"""DQN decision latency: one pod, every node scored (features + network + masked arg-max).

Measures `DQNPolicy.predict` on observations of the `hetero` scenario scaled to about 100 and 5,000
nodes, one thread, after a warm-up. Uses the model given, or an untrained network of the default
shape (latency does not depend on the weights).

    .venv/bin/python benchmarks/decision_latency.py [--model Dale.pth] [--repeats 2000]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from rlmodel.agents.dqn import DQNConfig
from rlmodel.agents.features import NUM_FEATURES
from rlmodel.agents.policy import DQNPolicy
from rlmodel.agents.qnet import NodeScorer
from rlmodel.envs import PodPlacementEnv
from rlmodel.errors import RlschedError
from rlmodel.sim import load_scenario


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.model:
        try:
            policy = DQNPolicy.load(args.model)
        except RlschedError as exc:
            # results/dqn-targets/*.pth, named in docs/results.md, is written by benchmarks/dqn_targets.py
            sys.exit(f"decision_latency: {exc}; results/dqn-targets/<scenario>-seed1.pth is written by "
                     "benchmarks/dqn_targets.py")
    else:
        cfg = DQNConfig()
        policy = DQNPolicy(NodeScorer(NUM_FEATURES, cfg.hidden, cfg.layers))
    base = load_scenario("hetero")
    print(f"{'nodes':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for factor in (10, 500):
        env = PodPlacementEnv(base.scaled(factor))
        obs, info = env.reset(seed=0)
        # advance a little so that nodes are not all empty
        for _ in range(min(200, factor * 20)):
            obs, _, done, _, info = env.step(int(np.argmax(info["action_mask"])))
        mask = info["action_mask"]
        times = []
        for i in range(args.repeats + 50):
            start = time.perf_counter()
            policy.predict(obs, mask)
            if i >= 50:
                times.append(time.perf_counter() - start)
        ms = np.array(times) * 1000
        print(f"{env.num_nodes:>6} {np.percentile(ms, 50):>8.3f} {np.percentile(ms, 95):>8.3f} "
              f"{np.percentile(ms, 99):>8.3f}")


if __name__ == "__main__":
    main()
