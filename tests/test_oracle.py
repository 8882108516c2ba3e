"""The oracle: the exact optimum beats every policy; the lower bound never exceeds the optimum."""

from __future__ import annotations

import numpy as np
import pytest

from rlmodel.envs import PodPlacementEnv
from rlmodel.evaluation.benchmark import run_episode
from rlmodel.evaluation.oracle import cover_lower_bound, exact_optimum, fluid_lower_bound, oracle
from rlmodel.policies import BASELINES, make_policy
from rlmodel.sim import load_scenario


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_optimum_is_no_worse_than_any_baseline_and_above_the_bound(seed):
    sc = load_scenario("tiny")
    env = PodPlacementEnv(sc)
    env.reset(seed=seed)
    exact = exact_optimum(sc, env.trace)
    assert exact is not None and exact.kind == "exact"
    penalty = sc.reward.overload_penalty_j_per_pod_s
    best_cost = exact.energy_j + penalty * exact.overload_pod_s
    for name in BASELINES:
        r = run_episode(env, make_policy(name), seed)
        assert best_cost <= r.energy_j + penalty * r.overload_pod_s + 1e-6
    # replaying the optimal placement reproduces its cost
    actions = [n for n in exact.placement if n >= 0]
    replay = _Replay(actions)
    r = run_episode(env, replay, seed)
    assert r.energy_j == pytest.approx(exact.energy_j)
    fluid = fluid_lower_bound(sc, env.trace)
    cover = cover_lower_bound(sc, env.trace)
    assert 0 < fluid.energy_j <= exact.energy_j + 1e-6
    assert 0 < cover <= exact.energy_j + 1e-6


@pytest.mark.parametrize("seed", range(8))
def test_bounds_below_exact_optimum_on_many_tiny_episodes(seed):
    sc = load_scenario("tiny")
    env = PodPlacementEnv(sc)
    env.reset(seed=100 + seed)
    exact = exact_optimum(sc, env.trace)
    assert exact is not None
    if exact.unschedulable == 0:
        assert fluid_lower_bound(sc, env.trace).energy_j <= exact.energy_j + 1e-6
        assert cover_lower_bound(sc, env.trace) <= exact.energy_j + 1e-6


class _Replay:
    name = "replay"

    def __init__(self, actions):
        self.actions = list(actions)

    def reset(self, seed=None):
        self._i = 0

    def predict(self, obs, action_mask):
        a = self.actions[self._i]
        self._i += 1
        return a


@pytest.mark.parametrize("scenario", ["hetero", "hetero-sleep", "homogeneous"])
def test_lower_bound_holds_against_baselines(scenario):
    sc = load_scenario(scenario)
    env = PodPlacementEnv(sc)
    for seed in range(3):
        env.reset(seed=seed)
        bound = oracle(sc, env.trace)
        assert bound.kind == "lower-bound"
        for name in BASELINES:
            r = run_episode(env, make_policy(name), seed)
            if r.unschedulable == 0:  # the bound assumes every pod runs
                assert bound.energy_j <= r.energy_j


@pytest.mark.parametrize("seed", [0, 3])
def test_hindsight_search_brackets_the_optimum_from_above(seed):
    """exact optimum <= hindsight schedule <= its base policy, and the schedule it reports is real."""
    from rlmodel.evaluation.hindsight import hindsight_search

    sc = load_scenario("tiny")
    env = PodPlacementEnv(sc)
    env.reset(seed=seed)
    exact = exact_optimum(sc, env.trace)
    assert exact is not None
    optimum_kj = sc.reward.cost_j(exact.energy_j, exact.overload_pod_s, exact.unschedulable) / sc.reward.energy_scale_j
    h = hindsight_search(sc, seed, make_policy("round-robin"), replays=200)
    assert optimum_kj - 1e-9 <= h.cost_kj <= h.base_cost_kj
    assert h.cost_kj < h.base_cost_kj  # round-robin leaves room on tiny (it is 85 % above the optimum)
    replay = run_episode(env, _Replay(list(h.actions)), seed)
    assert -replay.ret == pytest.approx(h.cost_kj) and replay.energy_j == pytest.approx(h.energy_j)


@pytest.mark.parametrize("seed", range(6))
def test_the_pruned_search_finds_the_brute_force_optimum(seed):
    """Symmetry breaking and the remaining-cost bound never cut the optimum: compare with every placement."""
    import itertools

    from rlmodel.sim.cluster import ClusterSim
    from rlmodel.sim.workload import PodTrace

    sc = load_scenario("tiny")
    env = PodPlacementEnv(sc)
    env.reset(seed=200 + seed)
    full = env.trace
    k = 6  # 3 nodes ^ 6 pods = 729 placements
    trace = PodTrace(*(getattr(full, f.name)[:k] for f in __import__("dataclasses").fields(PodTrace)))
    best = np.inf
    sim = ClusterSim(sc)
    for placement in itertools.product(range(sc.num_nodes), repeat=k):
        sim.reset(trace)
        for i, node in enumerate(placement):
            sim.advance_to(float(trace.arrival_s[i]))
            if sim.fits(float(trace.cpu_request_cores[i]), float(trace.memory_request_gib[i]))[node]:
                sim.place(i, node)
            elif sim.fits(float(trace.cpu_request_cores[i]), float(trace.memory_request_gib[i])).any():
                break  # an infeasible choice where a feasible one exists: not a schedule
            else:
                sim.reject(i)
        else:
            sim.drain()
            best = min(best, sc.reward.cost_j(sim.energy_j, sim.overload_pod_s, sim.unschedulable))
    exact = exact_optimum(sc, trace)
    assert exact is not None
    assert sc.reward.cost_j(exact.energy_j, exact.overload_pod_s, exact.unschedulable) == pytest.approx(best,
                                                                                                        rel=1e-12)
