"""The Q-network: every node bids. One MLP with shared weights scores each node from its features."""

from __future__ import annotations

import torch
from torch import nn


class NodeScorer(nn.Module):
    """Q(s, node) = MLP(features of node, pod and cluster context), the same weights for every node.

    Input (..., N, F) gives Q-values (..., N): the network is indifferent to N, so a model trained on
    10 nodes scores 40 or 5,000.

    With `attention`, each node's bid also sees the others: the MLP's `layers` hidden layers embed every node
    (e_i), an attention pooling over all nodes (weights softmax_j(w . e_j), one learned query, O(N)) gives a
    summary s = sum_j a_j V e_j, and a head scores each node from [e_i, s].
    """

    def __init__(self, num_features: int, hidden: int = 128, layers: int = 2, attention: bool = False):
        super().__init__()
        if attention and layers < 1:
            raise ValueError("attention needs at least one hidden layer")
        self.attention = attention
        dims = [num_features] + [hidden] * layers
        mods: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            mods += [nn.Linear(a, b), nn.ReLU()]
        if attention:
            self.encoder = nn.Sequential(*mods)
            self.pool_score = nn.Linear(hidden, 1)
            self.pool_value = nn.Linear(hidden, hidden)
            self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        else:
            mods.append(nn.Linear(dims[-1], 1))
            self.mlp = nn.Sequential(*mods)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if not self.attention:
            return self.mlp(features).squeeze(-1)
        e = self.encoder(features)  # (..., N, h)
        weights = torch.softmax(self.pool_score(e), dim=-2)  # (..., N, 1) over the nodes
        summary = (weights * self.pool_value(e)).sum(dim=-2, keepdim=True).expand_as(e)
        return self.head(torch.cat([e, summary], dim=-1)).squeeze(-1)


def masked_argmax(q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Index of the best feasible node along the last axis (infeasible nodes never win)."""
    return torch.where(mask, q, torch.finfo(q.dtype).min).argmax(dim=-1)
