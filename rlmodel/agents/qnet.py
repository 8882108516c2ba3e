"""The Q-network: every node bids. One MLP with shared weights scores each node from its features."""

from __future__ import annotations

import torch
from torch import nn


class NodeScorer(nn.Module):
    """Q(s, node) = MLP(features of node, pod and cluster context), the same weights for every node.

    Input (..., N, F) gives Q-values (..., N): the network is indifferent to N, so a model trained on
    10 nodes scores 40 or 5,000.
    """

    def __init__(self, num_features: int, hidden: int = 128, layers: int = 2):
        super().__init__()
        dims = [num_features] + [hidden] * layers
        mods: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            mods += [nn.Linear(a, b), nn.ReLU()]
        mods.append(nn.Linear(dims[-1], 1))
        self.mlp = nn.Sequential(*mods)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features).squeeze(-1)


def masked_argmax(q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Index of the best feasible node along the last axis (infeasible nodes never win)."""
    return torch.where(mask, q, torch.finfo(q.dtype).min).argmax(dim=-1)
