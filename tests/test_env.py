"""The Gymnasium environment: spec conformance, masking, reward accounting."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from rlmodel.envs import ENV_ID, NODE_FEATURES, PodPlacementEnv
from rlmodel.envs.observation import NODE_COL, POD_COL, node_column
from rlmodel.sim import load_scenario


@pytest.mark.parametrize("scenario", ["hetero-sleep", "tiny"])
def test_check_env(scenario):
    check_env(PodPlacementEnv(scenario), skip_render_check=True)


def test_registered_with_gymnasium():
    env = gym.make(ENV_ID, scenario="tiny")
    obs, info = env.reset(seed=0)
    assert obs["nodes"].shape == (3, len(NODE_FEATURES))
    env.close()


def test_return_is_minus_energy_plus_penalty_and_mask_is_fits():
    env = PodPlacementEnv("hetero-sleep")
    obs, info = env.reset(seed=3)
    total, done = 0.0, False
    rng = np.random.default_rng(0)
    while not done:
        mask = info["action_mask"]
        assert np.array_equal(mask, node_column(obs, "fits") > 0)
        # the mask is exactly where requests fit
        free_cpu = node_column(obs, "cpu_cores") - node_column(obs, "cpu_requested_cores")
        free_mem = node_column(obs, "memory_gib") - node_column(obs, "memory_requested_gib")
        pod = obs["pod"]
        fits = (free_cpu + 1e-4 >= pod[POD_COL["cpu_request_cores"]]) & \
            (free_mem + 1e-4 >= pod[POD_COL["memory_request_gib"]])
        assert np.array_equal(mask, fits)
        obs, r, done, trunc, info = env.step(int(rng.choice(np.flatnonzero(mask))))
        assert not trunc
        total += r
    sc = env.scenario
    expected = -(info["energy_j"] + sc.reward.overload_penalty_j_per_pod_s * info["overload_pod_s"]
                 + sc.reward.unschedulable_penalty_j * info["unschedulable"])
    assert total == pytest.approx(expected / sc.reward.energy_scale_j)
    assert info["invalid_actions"] == 0


def test_invalid_action_rejects_the_pod():
    env = PodPlacementEnv(load_scenario("tiny"))
    obs, info = env.reset(seed=0)
    # fill up: an out-of-range action is rejected, not an exception
    obs, r, done, _, info2 = env.step(99)
    assert env.invalid_actions == 1 and env.sim.unschedulable >= 1
    assert env.sim.node_of[0] == -1
    # and the dropped pod is charged: no policy saves energy by leaving pods unplaced
    assert r <= -env.scenario.reward.unschedulable_penalty_j / env.scenario.reward.energy_scale_j


def test_a_dropped_pod_costs_more_than_running_it():
    """The same episode with its first pod rejected has a lower return than with it placed."""
    returns = []
    for first in ("place", "drop"):
        env = PodPlacementEnv("hetero-sleep")
        obs, info = env.reset(seed=5)
        total, done, k = 0.0, False, 0
        while not done:
            a = int(np.flatnonzero(info["action_mask"])[0])
            obs, r, done, _, info = env.step(99 if (k == 0 and first == "drop") else a)
            total, k = total + r, k + 1
        returns.append(total)
    assert returns[1] < returns[0]


def test_step_after_end_raises():
    env = PodPlacementEnv("tiny")
    obs, info = env.reset(seed=0)
    done = False
    while not done:
        obs, r, done, _, info = env.step(int(np.flatnonzero(info["action_mask"])[0]))
    with pytest.raises(RuntimeError):
        env.step(0)


def test_same_network_shape_for_any_node_count():
    small, big = PodPlacementEnv("hetero"), PodPlacementEnv(load_scenario("hetero").scaled(4))
    assert small.observation_space["nodes"].shape[1] == big.observation_space["nodes"].shape[1]
    assert big.observation_space["nodes"].shape[0] == 4 * small.observation_space["nodes"].shape[0]


def test_idle_time_counts_only_for_empty_awake_nodes():
    env = PodPlacementEnv("hetero-sleep")
    obs, info = env.reset(seed=0)
    col = NODE_COL["idle_s"]
    assert (obs["nodes"][:, col] == 0).all()  # t = 0
    obs, _, _, _, info = env.step(int(np.flatnonzero(info["action_mask"])[0]))
    t = info["time_s"]
    nodes = obs["nodes"]
    empty_awake = (nodes[:, NODE_COL["pods"]] == 0) & (nodes[:, NODE_COL["asleep"]] == 0)
    assert np.allclose(nodes[empty_awake, col], min(t, 3600), rtol=1e-5)
    assert (nodes[~empty_awake, col] == 0).all()
    assert (nodes[:, NODE_COL["sleep_after_s"]] == 120).all()
