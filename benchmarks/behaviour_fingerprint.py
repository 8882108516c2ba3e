"""Fingerprints of behaviour: hashes of observations, DQN features, Q-scores, actions, rewards and episode
totals along 3 episodes of every baseline and a DQN model on each built-in scenario.

Run it before and after a refactor (same model file): identical output means bit-identical behaviour.

    .venv/bin/python benchmarks/behaviour_fingerprint.py --model Dale.pth > after.json
"""

from __future__ import annotations

import argparse
import hashlib
import json

import numpy as np
import torch

from rlmodel.agents.features import node_features
from rlmodel.agents.policy import DQNPolicy
from rlmodel.envs import PodPlacementEnv
from rlmodel.policies import BASELINES, make_policy

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", required=True, help="a DQN model file")
args = parser.parse_args()
torch.set_num_threads(1)
out = {}
dqn = DQNPolicy.load(args.model)
for sc in ["tiny", "hetero", "hetero-sleep", "homogeneous", "minikube"]:
    env = PodPlacementEnv(sc)
    for pname in list(BASELINES) + ["dqn"]:
        pol = dqn if pname == "dqn" else make_policy(pname)
        h = hashlib.sha256()
        for seed in range(3):
            obs, info = env.reset(seed=seed)
            pol.reset(seed=seed)
            done = not info["action_mask"].any()
            while not done:
                h.update(obs["nodes"].tobytes())
                h.update(obs["pod"].tobytes())
                h.update(node_features(obs).tobytes())
                if pname == "dqn":
                    h.update(dqn.scores(obs, info["action_mask"]).tobytes())
                a = pol.predict(obs, info["action_mask"])
                h.update(str(a).encode())
                obs, r, done, _, info = env.step(a)
                h.update(np.float64(r).tobytes())
            h.update(json.dumps(env.episode_metrics(), sort_keys=True).encode())
        out[f"{sc}/{pname}"] = h.hexdigest()[:16]
print(json.dumps(out, indent=1))
