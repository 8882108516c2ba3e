"""The look-ahead planner: its branches replay the twin exactly, and it does not read the future."""

from __future__ import annotations

import numpy as np
import pytest

from rlmodel.envs import PodPlacementEnv
from rlmodel.errors import PolicyError
from rlmodel.evaluation.rollout import RolloutPlanner, efficient_first_node
from rlmodel.policies import make_policy
from rlmodel.sim import load_scenario
from rlmodel.sim.cluster import ClusterSim


def _play(env: PodPlacementEnv, decisions: int, seed: int):
    """Reset on `seed` and make `decisions` efficient-first decisions; returns (obs, info)."""
    obs, info = env.reset(seed=seed)
    for _ in range(decisions):
        pod = env.pod_index
        a = efficient_first_node(env.sim, env.sim._cpu_req_pod[pod], env.sim._mem_req_pod[pod])
        obs, _, done, _, info = env.step(a)
        assert not done
    return obs, info


def test_efficient_first_node_is_one_of_efficient_firsts_best():
    env = PodPlacementEnv("hetero-sleep")
    ef = make_policy("efficient-first")
    obs, info = env.reset(seed=4)
    done, checked = False, 0
    while not done:
        mask = info["action_mask"]
        scores = np.where(mask, ef.scores(obs, mask), -np.inf)
        pod = env.pod_index
        a = efficient_first_node(env.sim, env.sim._cpu_req_pod[pod], env.sim._mem_req_pod[pod])
        assert mask[a] and scores[a] == scores.max()
        checked += 1
        obs, _, done, _, info = env.step(a)
    assert checked >= 50


def test_a_branch_with_the_true_future_replays_the_episode_exactly():
    sc = load_scenario("hetero-sleep")
    env = PodPlacementEnv(sc)
    _play(env, 25, seed=7)
    real, pod = env.sim, env.pod_index
    remaining = {p: real._work[p] - done for p, done in real.progress()}  # the true run time left
    twin = ClusterSim(sc)
    twin.branch(real.snapshot(), usage_cores=list(real._usage), work_s=list(real._work),
                cpu_request_cores=list(real._cpu_req_pod), memory_request_gib=list(real._mem_req_pod),
                remaining_s=remaining)
    for sim in (twin, real):  # the rest of the episode, the same way in both
        for j in range(pod, len(real.trace)):
            sim.advance_to(float(real.trace.arrival_s[j]))
            a = efficient_first_node(sim, real._cpu_req_pod[j], real._mem_req_pod[j])
            sim.reject(j) if a < 0 else sim.place(j, a)
        sim.drain()
    assert real.pods_done == len(real.trace) - real.unschedulable
    assert twin.energy_j == pytest.approx(real.energy_j, rel=1e-9)
    assert twin.overload_pod_s == pytest.approx(real.overload_pod_s, rel=1e-9, abs=1e-9)
    assert np.allclose(twin.finish_s, real.finish_s, equal_nan=True)


def test_the_planner_does_not_read_the_future():
    """Changing what is still unknown (this pod's run time and usage, every later pod) changes nothing."""
    env = PodPlacementEnv("hetero-sleep")
    obs, info = _play(env, 30, seed=11)
    candidates = np.flatnonzero(info["action_mask"])
    assert candidates.size >= 2
    planner = RolloutPlanner(env, samples=4)
    planner.reset(seed=11)
    before = planner.sampled_costs(candidates)
    sim, pod = env.sim, env.pod_index
    for j in range(pod, len(sim.trace)):
        sim._work[j] = 1800.0 - 0.5 * sim._work[j]
        sim._usage[j] = 0.1
    planner.reset(seed=11)
    after = planner.sampled_costs(candidates)
    assert np.array_equal(before, after)
    # while what it does know (the requests of the pod to place) matters
    sim._cpu_req_pod[pod] = 0.25
    planner.reset(seed=11)
    assert not np.array_equal(before, planner.sampled_costs(candidates))


def test_the_planner_picks_feasible_nodes_and_never_overrules_without_evidence():
    env = PodPlacementEnv("tiny")
    strict = RolloutPlanner(env, samples=4, z=1e12)
    strict.reset(seed=0)
    obs, info = env.reset(seed=0)
    done = False
    while not done:
        pod = env.pod_index
        base = efficient_first_node(env.sim, env.sim._cpu_req_pod[pod], env.sim._mem_req_pod[pod])
        a = strict.predict(obs, info["action_mask"])
        assert info["action_mask"][a] and a == base
        obs, _, done, _, info = env.step(a)
    assert strict.deviations == 0


def test_bad_planner_settings_are_refused():
    with pytest.raises(PolicyError, match="samples"):
        RolloutPlanner(PodPlacementEnv("tiny"), samples=1)
