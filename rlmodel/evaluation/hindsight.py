"""An upper bound on the offline optimum: the best schedule a local search finds knowing the future.

The oracle (`rlmodel.evaluation.oracle`) gives the exact optimum only for small episodes and a lower
bound otherwise. This module brackets the optimum from above on any episode: starting from a
policy's own placements on the episode's trace, it changes one decision at a time to another
feasible node, replays the episode in the twin (later decisions keep their node while it stays
feasible, otherwise the base policy decides), and keeps the change when the episode's cost (energy
plus the penalties, the environment's objective) falls. The result is a real schedule, so the
optimum is no worse; how much better than the base policy it is shows how much room the policy left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlmodel.envs.placement import PodPlacementEnv
from rlmodel.evaluation.benchmark import run_episode
from rlmodel.policies.base import Obs, Policy
from rlmodel.sim.scenario import Scenario


@dataclass(frozen=True)
class HindsightResult:
    """The best schedule found for one episode.

    Attributes:
        cost_kj: its cost (energy plus penalties), kJ: minus the environment's return.
        energy_j: its energy, J.
        base_cost_kj: the base policy's cost on the same episode, kJ.
        actions: node per decision of the best schedule.
        replays: episodes replayed by the search.
    """

    cost_kj: float
    energy_j: float
    base_cost_kj: float
    actions: tuple[int, ...]
    replays: int


class _Scripted:
    """Plays `script` (a node per decision) while the node is feasible; otherwise asks `base`."""

    name = "scripted"

    def __init__(self, script: list[int], base: Policy):
        self.script, self.base = script, base
        self.masks: list[np.ndarray] = []
        self.actions: list[int] = []

    def reset(self, seed: int | None = None) -> None:
        self.base.reset(seed)
        self.masks, self.actions = [], []

    def predict(self, obs: Obs, action_mask: np.ndarray) -> int:
        k = len(self.actions)
        if k < len(self.script) and action_mask[self.script[k]]:
            a = self.script[k]
        else:
            a = self.base.predict(obs, action_mask)
        self.masks.append(action_mask.copy())
        self.actions.append(a)
        return a


def hindsight_search(scenario: Scenario, seed: int, base: Policy, *, replays: int = 300,
                     rng_seed: int = 0) -> HindsightResult:
    """First-improvement local search over single-decision changes of `base`'s schedule on episode `seed`.

    `replays` bounds the work (each replay is one whole episode in the twin). Deterministic for a given
    `rng_seed`.
    """
    rng = np.random.default_rng(rng_seed)
    env = PodPlacementEnv(scenario)
    current = _Scripted([], base)
    r = run_episode(env, current, seed)
    best_cost, best_energy = -r.ret, r.energy_j
    base_cost = best_cost
    best, masks = list(current.actions), list(current.masks)
    for _ in range(replays):
        if not best:
            break
        k = int(rng.integers(len(best)))
        others = np.flatnonzero(masks[k])
        others = others[others != best[k]]
        if others.size == 0:
            continue
        script = best.copy()
        script[k] = int(rng.choice(others))
        trial = _Scripted(script, base)
        r = run_episode(env, trial, seed)
        if -r.ret < best_cost - 1e-9:
            best_cost, best_energy = -r.ret, r.energy_j
            best, masks = list(trial.actions), list(trial.masks)
    return HindsightResult(best_cost, best_energy, base_cost, tuple(best), replays)
