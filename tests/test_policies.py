"""Baselines: kube-scheduler formulas against hand-computed cases, and the shared protocol."""

from __future__ import annotations

import os

import numpy as np
import pytest

from rlmodel.envs import NODE_FEATURES, PodPlacementEnv
from rlmodel.policies import BASELINES, Policy, make_policy
from rlmodel.policies.heuristics import (
    balanced_allocation_score,
    least_requested_score,
    most_requested_score,
)

C = {n: i for i, n in enumerate(NODE_FEATURES)}


def obs_for(nodes: list[dict], pod_cpu: float, pod_mem: float) -> dict:
    arr = np.zeros((len(nodes), len(NODE_FEATURES)), dtype=np.float32)
    for i, node in enumerate(nodes):
        for k, v in node.items():
            arr[i, C[k]] = v
    return {"nodes": arr, "pod": np.array([pod_cpu, pod_mem, 0.0], dtype=np.float32)}


def test_least_and_most_requested_integer_formulas():
    # 4000m capacity, 1500m requested: (4000-1500)*100/4000 = 62.5 -> 62 ; most: 37
    assert least_requested_score(np.array([1500]), np.array([4000]))[0] == 62
    assert most_requested_score(np.array([1500]), np.array([4000]))[0] == 37
    # over capacity: least gives 0, most caps at 100
    assert least_requested_score(np.array([5000]), np.array([4000]))[0] == 0
    assert most_requested_score(np.array([5000]), np.array([4000]))[0] == 100


def test_balanced_allocation_formula():
    # cpu 3/4 = 0.75, mem 1/4 = 0.25: std = 0.25 -> (1 - 0.25) * 100 = 75
    assert balanced_allocation_score(np.array([3000]), np.array([4000]), np.array([1]), np.array([4]))[0] == 75


def test_least_allocated_hand_computed_node_choice():
    # node 0: 2 cores, 1 requested; node 1: 4 cores, 3 requested. Pod asks 0.5 core, 1 GiB on 8 GiB nodes.
    nodes = [
        {"cpu_cores": 2, "memory_gib": 8, "cpu_requested_cores": 1.0, "memory_requested_gib": 4},
        {"cpu_cores": 4, "memory_gib": 8, "cpu_requested_cores": 3.0, "memory_requested_gib": 0},
    ]
    obs = obs_for(nodes, 0.5, 1.0)
    mask = np.array([True, True])
    la = make_policy("least-allocated")
    # node 0: cpu (2000-1500)*100//2000 = 25, mem (8-5)*100//8 = 37 -> (25+37)//2 = 31
    # node 1: cpu (4000-3500)*100//4000 = 12, mem (8-1)*100//8 = 87 -> (12+87)//2 = 49
    assert list(la.scores(obs, mask)) == [31, 49]
    assert la.predict(obs, mask) == 1
    ma = make_policy("most-allocated")
    # node 0: 1500*100//2000 = 75, 5*100//8 = 62 -> 68 ; node 1: 87, 12 -> 49
    assert list(ma.scores(obs, mask)) == [68, 49]
    assert ma.predict(obs, mask) == 0
    ba = make_policy("balanced-allocation")
    # node 0: |0.75 - 0.625|/2 = 0.0625 -> 93 ; node 1: |0.875 - 0.125|/2 = 0.375 -> 62
    assert list(ba.scores(obs, mask)) == [93, 62]
    kd = make_policy("kube-default")
    assert list(kd.scores(obs, mask)) == [31 + 93, 49 + 62]


def test_round_robin_cycles_and_skips_infeasible():
    rr = make_policy("round-robin")
    rr.reset()
    obs = obs_for([{}, {}, {}], 0.1, 0.1)
    picks = [rr.predict(obs, m) for m in (
        np.array([True, True, True]), np.array([True, True, True]), np.array([True, False, False]),
        np.array([True, True, True]), np.array([False, False, True]),
    )]
    assert picks == [0, 1, 0, 1, 2]


def test_power_greedy_takes_lowest_marginal_watts():
    nodes = [
        {"watts": 100, "watts_if_placed": 130},
        {"watts": 200, "watts_if_placed": 210},
        {"watts": 8, "watts_if_placed": 90, "asleep": 1},
    ]
    pg = make_policy("power-greedy")
    assert pg.predict(obs_for(nodes, 1, 1), np.array([True, True, True])) == 1
    assert pg.predict(obs_for(nodes, 1, 1), np.array([True, False, True])) == 0


def test_ties_are_broken_reproducibly():
    obs = obs_for([{"cpu_cores": 2, "memory_gib": 2}] * 4, 0.5, 0.5)
    mask = np.ones(4, dtype=bool)
    la = make_policy("least-allocated")
    picks = []
    for _ in range(2):
        la.reset(seed=5)
        picks.append([la.predict(obs, mask) for _ in range(20)])
    assert picks[0] == picks[1] and len(set(picks[0])) > 1


@pytest.mark.parametrize("name", list(BASELINES))
def test_every_baseline_answers_the_protocol_and_respects_the_mask(name):
    policy = make_policy(name)
    assert isinstance(policy, Policy) and policy.name == name
    env = PodPlacementEnv("hetero")
    rng = np.random.default_rng(0)
    obs, info = env.reset(seed=1)
    policy.reset(seed=1)
    for _ in range(40):
        # random masks, including single feasible nodes
        mask = rng.random(env.num_nodes) < rng.uniform(0.1, 0.9)
        if not mask.any():
            mask[rng.integers(env.num_nodes)] = True
        assert mask[policy.predict(obs, mask)]


def test_unknown_policy():
    from rlmodel.errors import PolicyError

    with pytest.raises(PolicyError, match="unknown policy 'x'"):
        make_policy("x")


def test_efficient_first_prefers_awake_efficient_then_fuller_nodes():
    nodes = [
        {"cpu_cores": 2, "peak_watts": 117, "cpu_requested_cores": 1.5},  # 58.5 W/core
        {"cpu_cores": 12, "peak_watts": 247, "cpu_requested_cores": 1.0},  # 20.6 W/core
        {"cpu_cores": 12, "peak_watts": 247, "cpu_requested_cores": 6.0},  # same, fuller
        {"cpu_cores": 12, "peak_watts": 247, "asleep": 1},
    ]
    ef = make_policy("efficient-first")
    assert ef.predict(obs_for(nodes, 0.5, 0.5), np.array([True, True, True, True])) == 2
    assert ef.predict(obs_for(nodes, 0.5, 0.5), np.array([True, True, False, True])) == 1
    assert ef.predict(obs_for(nodes, 0.5, 0.5), np.array([True, False, False, True])) == 0
    assert ef.predict(obs_for(nodes, 0.5, 0.5), np.array([False, False, False, True])) == 3


def test_a_dqn_scoring_in_another_thread_uses_torchs_thread_count_there():
    """OpenMP keeps its thread count per thread: torch.set_num_threads(1) in the main thread left the live
    scheduler's loop thread with a team as large as the machine, whose idle member spun on the other core after
    every forward pass. Scoring applies torch's count in the scoring thread (read from libgomp itself)."""
    import ctypes
    import threading

    import torch

    from rlmodel.agents.dqn import DQNConfig
    from rlmodel.agents.features import NUM_FEATURES
    from rlmodel.agents.policy import DQNPolicy
    from rlmodel.agents.qnet import NodeScorer
    from rlmodel.envs import PodPlacementEnv
    from rlmodel.sim import load_scenario

    with open("/proc/self/maps") as fh:
        libs = sorted({line.split()[-1] for line in fh if "libgomp" in line})
    if not libs:
        pytest.skip("this torch build does not use GNU OpenMP")
    gomp = ctypes.CDLL(libs[0])
    env = PodPlacementEnv(load_scenario("hetero"))
    obs, info = env.reset(seed=0)
    cfg = DQNConfig()
    policy = DQNPolicy(NodeScorer(NUM_FEATURES, cfg.hidden, cfg.layers))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    seen = {}

    def score():
        seen["before"] = gomp.omp_get_max_threads()
        policy.scores(obs, info["action_mask"])
        seen["after"] = gomp.omp_get_max_threads()

    try:
        t = threading.Thread(target=score)
        t.start()
        t.join()
    finally:
        torch.set_num_threads(before)
    assert seen["after"] == 1
    if (os.cpu_count() or 1) > 1 and "OMP_NUM_THREADS" not in os.environ:
        assert seen["before"] > 1  # the thread did start with the machine's default: the check above can fail
