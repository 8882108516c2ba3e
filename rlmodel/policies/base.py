"""One protocol for every placement policy, learned or hand-written.

A policy sees exactly what the environment shows (the observation and the action mask) and
answers with a node index, so one evaluator measures them all.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from rlmodel.envs.observation import NODE_COL, POD_COL, Obs

COL = NODE_COL  # column of each node feature in obs["nodes"], by name
__all__ = ["COL", "NODE_COL", "POD_COL", "Obs", "Policy", "ScoringPolicy", "predict_with_scores"]


@runtime_checkable
class Policy(Protocol):
    """`reset` at the start of every episode, then `predict` once per arriving pod."""

    name: str

    def reset(self, seed: int | None = None) -> None:
        """Forget per-episode state; seed any randomness (tie-breaks, random choices)."""

    def predict(self, obs: Obs, action_mask: np.ndarray) -> int:
        """The index of the node to bind the pod to; must be a True entry of `action_mask`."""


class ScoringPolicy:
    """A policy that scores every node (higher is better) and picks the best feasible one.

    Ties are broken uniformly at random, as kube-scheduler's `selectHost` does, from a generator
    seeded by `reset(seed)`, so results are reproducible.
    """

    name = "scoring"

    def __init__(self) -> None:
        self._rng = np.random.default_rng(0)

    def reset(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)

    def scores(self, obs: Obs, action_mask: np.ndarray) -> np.ndarray:
        """(N,) float scores, higher is better; only entries where `action_mask` is True matter."""
        raise NotImplementedError

    def predict(self, obs: Obs, action_mask: np.ndarray) -> int:
        return self.choose(self.scores(obs, action_mask), action_mask)

    def choose(self, scores: np.ndarray, action_mask: np.ndarray) -> int:
        """The node `predict` picks given the `scores` it computed (callers that also report the scores use
        `scores` then `choose`, and score once)."""
        scores = np.asarray(scores, dtype=np.float64)
        masked = np.where(action_mask, scores, -np.inf)
        best = np.flatnonzero(masked == masked.max())
        if best.size == 1:
            return int(best[0])
        return int(best[self._rng.integers(best.size)])


def predict_with_scores(policy: Policy, obs: Obs, action_mask: np.ndarray) -> tuple[int, np.ndarray | None]:
    """`policy.predict(obs, action_mask)`, and the scores it chose from when the policy scores nodes (a `scores`
    and a `choose` method: the scores are computed once); None for policies that do not score."""
    score_fn, choose = getattr(policy, "scores", None), getattr(policy, "choose", None)
    if score_fn is None or choose is None:
        return int(policy.predict(obs, action_mask)), None
    scores = np.asarray(score_fn(obs, action_mask), dtype=np.float64)
    return int(choose(scores, action_mask)), scores
