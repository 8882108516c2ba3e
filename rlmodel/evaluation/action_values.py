"""What does one decision change? A base policy's action values, measured in the episode's own future.

At a decision of an episode in the digital twin, `action_outcomes` tries every feasible node: the pod placed there,
then `base` to the end of the episode (or for `horizon_s` seconds), on the episode's real trace; the cost of each
(`RewardSpec.cost_j`: energy plus the penalties, J) is one Monte Carlo sample of the base policy's action value
Q_base(s, a) (as a cost). Every node is tried in the same future (common random numbers), so the differences
between nodes are the decision's own consequences in that future.

These are the targets a learner estimates from experience when it tries to improve on a rule: a DQN whose
demonstrator is `base`, or a regression on these very samples (one step of policy improvement, as in approximate
policy iteration). How large the differences are next to the gain sought tells whether a learner can find it:
`benchmarks/decision_signal.py` reports it on `classes-sleep`.

An evaluation tool that reads the twin's future, not a scheduler: the costs use pods that have not arrived yet.
"""

from __future__ import annotations

import math

import numpy as np

from rlmodel.envs.placement import PodPlacementEnv
from rlmodel.policies.base import Obs, Policy

OUTCOMES = ("cost_j", "energy_j", "overload_pod_s", "unschedulable")


def action_outcomes(env: PodPlacementEnv, obs: Obs, info: dict, base: Policy, horizon_s: float = math.inf,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """What placing the awaiting pod on each node and following `base` afterwards comes to: (N,) arrays of the
    cost (`cost_j`, the scenario's `RewardSpec.cost_j`), the energy (J), the overload (pod-s) and the pods left
    unschedulable, from the start of the episode (NaN where the pod does not fit). Nodes whose observation rows are
    identical (same type and state) are tried once: their futures are the same. With a finite `horizon_s`, each
    continuation stops at its first decision `horizon_s` seconds or more after this one (the trace's arrivals are
    the same in every continuation), and the outcomes are counted to then.

    The environment is left at this decision, as it was. `base` plays the continuations and is reset with `seed`
    before each (its tie-breaks then draw the same numbers whichever node was tried: common random numbers), so
    pass an instance that is not also making the episode's own decisions.
    """
    mask = info["action_mask"]
    snap = env.snapshot()
    rows = np.asarray(obs["nodes"])
    out = {name: np.full(env.num_nodes, np.nan) for name in OUTCOMES}
    tried: dict[bytes, int] = {}
    reward = env.scenario.reward
    end_s = env.sim.now_s + horizon_s
    for a in np.flatnonzero(mask).tolist():
        key = rows[a].tobytes()
        if key in tried:
            for values in out.values():
                values[a] = values[tried[key]]
            continue
        tried[key] = a
        env.restore(snap)
        base.reset(seed)
        o, _, done, _, i = env.step(a)
        while not done and env.sim.now_s < end_s:
            o, _, done, _, i = env.step(base.predict(o, i["action_mask"]))
        sim = env.sim
        out["cost_j"][a] = reward.cost_j(sim.energy_j, sim.overload_pod_s, sim.unschedulable, sim.imbalance_s)
        out["energy_j"][a], out["overload_pod_s"][a], out["unschedulable"][a] = (
            sim.energy_j, sim.overload_pod_s, sim.unschedulable)
    env.restore(snap)
    return out
