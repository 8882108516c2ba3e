"""Placement policies behind one `predict()` protocol, and a registry by name."""

from __future__ import annotations

from collections.abc import Callable

from rlmodel.errors import PolicyError
from rlmodel.policies.base import Policy, ScoringPolicy
from rlmodel.policies.heuristics import (
    BalancedAllocation,
    EfficientFirst,
    KubeDefault,
    LeastAllocated,
    MostAllocated,
    PowerGreedy,
    RandomPolicy,
    RoundRobin,
    RuntimeAware,
    RuntimeAwareHeadroom,
    RuntimeAwareShortHeadroom,
)

BASELINES: dict[str, Callable[[], Policy]] = {
    "round-robin": RoundRobin,
    "random": RandomPolicy,
    "least-allocated": LeastAllocated,
    "most-allocated": MostAllocated,
    "balanced-allocation": BalancedAllocation,
    "kube-default": KubeDefault,
    "power-greedy": PowerGreedy,
    "efficient-first": EfficientFirst,
    "runtime-aware": RuntimeAware,
    "runtime-aware-headroom": RuntimeAwareHeadroom,
    "runtime-aware-short-headroom": RuntimeAwareShortHeadroom,
}


def make_policy(name: str) -> Policy:
    """A fresh baseline policy by name. Raises PolicyError for an unknown name."""
    try:
        return BASELINES[name]()
    except KeyError:
        raise PolicyError(f"unknown policy '{name}' (known: {', '.join(BASELINES)})") from None


__all__ = ["BASELINES", "Policy", "ScoringPolicy", "make_policy"]
