"""Gymnasium environments. Importing this package registers `rlmodel/PodPlacement-v1`."""

import gymnasium as gym

from rlmodel.envs.placement import NODE_FEATURES, POD_FEATURES, PodPlacementEnv

ENV_ID = "rlmodel/PodPlacement-v1"

if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="rlmodel.envs.placement:PodPlacementEnv")

__all__ = ["ENV_ID", "NODE_FEATURES", "POD_FEATURES", "PodPlacementEnv"]
