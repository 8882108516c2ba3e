"""The trained DQN as a placement policy: every node bids its Q-value, the best feasible bid wins."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from rlmodel.agents.features import node_features
from rlmodel.agents.model_file import load_model
from rlmodel.agents.qnet import NodeScorer

_THREAD = threading.local()


def torch_threads_here() -> None:
    """Give the calling thread torch's intra-op thread count (`torch.set_num_threads`), once per thread.

    OpenMP keeps its thread count per thread: `torch.set_num_threads(1)` in the main thread leaves a scheduler's
    loop thread (or a service's request thread) with the default, a team as large as the machine. Its idle
    member then spins on another core after every forward pass: measured here at 100 nodes, about 1 ms of a second
    core per decision, the core the API server and the binder needed (the live scheduler's DQN at 100 nodes: a
    median 0.48 of kmock's ceiling before, 0.77 after; docs/scheduler.md). Setting the count again from the thread
    itself applies it there."""
    if not getattr(_THREAD, "done", False):
        torch.set_num_threads(torch.get_num_threads())
        _THREAD.done = True


class DQNPolicy:
    """Greedy policy of a Q-network, behind the same `predict()` protocol as the baselines."""

    name = "dqn"

    def __init__(self, network: NodeScorer, device: str = "cpu"):
        self.network = network.eval()
        self.device = device

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> DQNPolicy:
        """A policy from a model file (raises ModelError when it is missing or incompatible)."""
        return cls(load_model(path, device=device).network, device=device)

    def reset(self, seed: int | None = None) -> None:
        """Greedy and stateless: nothing to reset."""

    def scores(self, obs: dict[str, np.ndarray], action_mask: np.ndarray) -> np.ndarray:
        """(N,) Q-values, the nodes' bids (higher is better)."""
        torch_threads_here()
        with torch.inference_mode():
            feats = torch.from_numpy(node_features(obs))
            if self.device != "cpu":
                feats = feats.to(self.device)
            return self.network(feats).cpu().numpy()

    def predict(self, obs: dict[str, np.ndarray], action_mask: np.ndarray) -> int:
        return self.choose(self.scores(obs, action_mask), action_mask)

    def choose(self, scores: np.ndarray, action_mask: np.ndarray) -> int:
        """The best feasible bid (the first of equal ones): `predict` given the scores it computed."""
        return int(np.argmax(np.where(action_mask, scores, -np.inf)))
