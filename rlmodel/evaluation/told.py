"""How much does a rule lose by estimating run times? The same rule told each pod's true run time.

`runtime-aware` and its variants decide from a pod's *expected* run time: its workload's mean run time so far
(`workload_mean_run_s`, with `workload_completed` finished pods behind it), or a prior. `ToldRunTimes` wraps
such a rule and, at each decision, replaces those two signals with the arriving pod's true run time in the twin
(its work at full speed, `duration_s` as drawn) and one completed pod, so the rule reads the truth as a
perfectly estimated workload mean. Everything else the rule sees is unchanged.

Like the hindsight search and the look-ahead planner, this is an evaluation tool that reads the twin's hidden
state, not a scheduler to deploy: the gap between a rule and the same rule told the run times bounds what any
better run-time estimate (a learned one included) can buy that rule.
"""

from __future__ import annotations

import numpy as np

from rlmodel.envs.observation import POD_COL
from rlmodel.envs.placement import PodPlacementEnv
from rlmodel.errors import PolicyError
from rlmodel.policies.base import Obs, Policy
from rlmodel.sim.cluster import ClusterSim


class ToldRunTimes:
    """`base` deciding with the arriving pod's true run time as its expected run time (the `Policy` protocol)."""

    def __init__(self, base: Policy, env: PodPlacementEnv):
        if not isinstance(env.sim, ClusterSim):
            raise PolicyError("telling run times needs the simulated cluster (--backend sim)")
        self.base, self.env = base, env
        self.name = f"{base.name}+told-run-times"

    def reset(self, seed: int | None = None) -> None:
        self.base.reset(seed)

    def true_run_s(self) -> float:
        """The arriving pod's run time at full speed, s (what it will take unless its node is overloaded)."""
        sim = self.env.sim
        assert isinstance(sim, ClusterSim)
        return float(sim._work[self.env.pod_index])

    def predict(self, obs: Obs, action_mask: np.ndarray) -> int:
        pod = np.array(obs["pod"], dtype=np.float64, copy=True)  # the environment's observation stays as it was
        pod[POD_COL["workload_completed"]] = 1.0
        pod[POD_COL["workload_mean_run_s"]] = self.true_run_s()
        return self.base.predict({**obs, "pod": pod}, action_mask)
