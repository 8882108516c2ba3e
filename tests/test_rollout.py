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
    with pytest.raises(PolicyError, match="information"):
        RolloutPlanner(PodPlacementEnv("tiny"), information="psychic")


def _costs_after_changing(information: str, change) -> tuple[np.ndarray, np.ndarray]:
    """The planner's sampled costs at decision 30 of seed 11, before and after `change(sim, pod)`."""
    env = PodPlacementEnv("hetero-sleep")
    _, info = _play(env, 30, seed=11)
    candidates = np.flatnonzero(info["action_mask"])
    planner = RolloutPlanner(env, samples=4, information=information)
    planner.reset(seed=11)
    before = planner.sampled_costs(candidates)
    change(env.sim, env.pod_index)
    planner.reset(seed=11)
    return before, planner.sampled_costs(candidates)


def _slower_bound_pods(sim, pod):
    """Every running pod needs 600 s more work than drawn: the same work done so far, more left."""
    for node, running in enumerate(sim._running):
        for _, p in running:
            sim._work[p] += 600.0
        sim._running[node] = [(finish + 600.0, p) for finish, p in running]


def _later_pods_longer(sim, pod):
    for j in range(pod + 1, len(sim.trace)):
        sim._work[j] = 1800.0


def test_information_levels_read_what_they_claim_and_nothing_more():
    # declared run times: the bound pods' true run times count, later pods stay unknown
    before, after = _costs_after_changing("run-times", _slower_bound_pods)
    assert not np.array_equal(before, after)
    before, after = _costs_after_changing("run-times", _later_pods_longer)
    assert np.array_equal(before, after)
    # clairvoyant: later pods count too, and there is one future, the real one
    before, after = _costs_after_changing("clairvoyant", _later_pods_longer)
    assert before.shape[0] == 1 and not np.array_equal(before, after)
    # online: neither (work done is read back from the twin's clocks: equal up to rounding)
    for change in (_slower_bound_pods, _later_pods_longer):
        before, after = _costs_after_changing("online", change)
        assert np.allclose(before, after, rtol=1e-9, atol=0)


def test_the_clairvoyant_planner_costs_are_the_real_episodes_costs():
    """With the whole future known, the planner's cost of efficient-first's node is what the episode then costs."""
    env = PodPlacementEnv("hetero-sleep")
    _, info = _play(env, 20, seed=5)
    pod = env.pod_index
    base = efficient_first_node(env.sim, env.sim._cpu_req_pod[pod], env.sim._mem_req_pod[pod])
    planner = RolloutPlanner(env, information="clairvoyant")
    predicted = planner.sampled_costs(np.array([base]))[0, 0]
    done = False
    while not done:  # efficient-first to the end, in the real environment
        sim, pod = env.sim, env.pod_index
        _, _, done, _, info = env.step(efficient_first_node(sim, sim._cpu_req_pod[pod], sim._mem_req_pod[pod]))
    m = env.episode_metrics()
    actual = env.scenario.reward.cost_j(m["energy_j"], m["overload_pod_s"], m["unschedulable"])
    assert predicted == pytest.approx(actual, rel=1e-9)


# ------------------------------------------------------------------------------------------ action values
def _replay_cost(scenario: str, seed: int, prefix: list[int], action: int, rule: str, horizon_s: float = np.inf,
                 rule_seed: int = 0):
    """The outcomes of an episode replayed from scratch: `prefix`, then `action`, then `rule` (reset with
    `rule_seed`) for `horizon_s`."""
    env = PodPlacementEnv(scenario)
    base = make_policy(rule)
    obs, info = env.reset(seed=seed)
    for a in prefix:
        obs, _, _, _, info = env.step(a)
    base.reset(rule_seed)
    end_s = env.sim.now_s + horizon_s
    obs, _, done, _, info = env.step(action)
    while not done and env.sim.now_s < end_s:
        obs, _, done, _, info = env.step(base.predict(obs, info["action_mask"]))
    sim = env.sim
    return {"cost_j": env.scenario.reward.cost_j(sim.energy_j, sim.overload_pod_s, sim.unschedulable, sim.imbalance_s),
            "energy_j": sim.energy_j, "overload_pod_s": sim.overload_pod_s, "unschedulable": sim.unschedulable}


@pytest.mark.parametrize("horizon_s", [np.inf, 300.0])
def test_action_outcomes_are_those_of_replaying_each_node_then_the_rule(horizon_s):
    """Each node's cost, energy, overload and unschedulable pods equal an independent replay of the same episode
    with that node chosen, then the rule; the environment is left at the decision, and the episode goes on from it
    as it would have."""
    from rlmodel.evaluation.action_values import OUTCOMES, action_outcomes

    rule = "runtime-aware-short-headroom"
    env = PodPlacementEnv("classes-sleep")
    base, continuation = make_policy(rule), make_policy(rule)
    obs, info = env.reset(seed=7)
    prefix = []
    for _ in range(12):
        prefix.append(base.predict(obs, info["action_mask"]))
        obs, _, _, _, info = env.step(prefix[-1])
    before_obs, before_info, now = {k: v.copy() for k, v in obs.items()}, dict(info), env.sim.now_s
    out = action_outcomes(env, obs, info, continuation, horizon_s, seed=3)
    costs = out["cost_j"]
    feasible = np.flatnonzero(info["action_mask"])
    assert feasible.size >= 3
    assert np.isnan(costs[~info["action_mask"]]).all() and np.isfinite(costs[feasible]).all()
    for a in feasible:
        replayed = _replay_cost("classes-sleep", 7, prefix, int(a), rule, horizon_s, rule_seed=3)
        for name in OUTCOMES:
            assert out[name][a] == pytest.approx(replayed[name], rel=1e-9, abs=1e-9), name
    assert len(set(np.round(costs[feasible], 3))) > 1  # the nodes differ, so the check above could fail
    # the environment is back at the decision: the same observation, and the episode goes on as before
    assert env.sim.now_s == now and env.pod_index == len(prefix)
    again, again_info = env.restore(env.snapshot())
    for k in before_obs:
        assert np.array_equal(again[k], before_obs[k])
    assert np.array_equal(again_info["action_mask"], before_info["action_mask"])
    a = base.predict(obs, info["action_mask"])
    done = False
    while not done:
        obs, _, done, _, info = env.step(a)
        if not done:
            a = base.predict(obs, info["action_mask"])
    sim = env.sim
    assert env.scenario.reward.cost_j(sim.energy_j, sim.overload_pod_s, sim.unschedulable, sim.imbalance_s) == \
        pytest.approx(_replay_cost("classes-sleep", 7, prefix, prefix_choice(prefix, rule), rule)["cost_j"], rel=1e-9)


def prefix_choice(prefix: list[int], rule: str) -> int:
    """The rule's choice at the decision after `prefix` on seed 7 of classes-sleep."""
    env = PodPlacementEnv("classes-sleep")
    obs, info = env.reset(seed=7)
    for a in prefix:
        obs, _, _, _, info = env.step(a)
    return make_policy(rule).predict(obs, info["action_mask"])


def test_trying_the_nodes_leaves_the_episode_as_it_would_have_gone():
    """Episodes whose every decision is probed (every node tried, the continuations reset with their own seed) make
    the same decisions and end with the same energy as the same episodes unprobed, and probing twice gives the same
    outcomes: nothing of the tries leaks into the episode (the twin's state, the deciding policy's tie-breaks)."""
    from rlmodel.evaluation.action_values import action_outcomes

    rule = "runtime-aware-short-headroom"
    env = PodPlacementEnv("classes-sleep")
    probed_decisions = 0
    for seed in (10001, 10005):  # episodes whose decisions have ties between nodes that differ
        runs = []
        for probe in (False, True):
            base, continuation = make_policy(rule), make_policy(rule)
            obs, info = env.reset(seed=seed)
            base.reset(seed)
            done, actions = False, []
            while not done:
                if probe and info["action_mask"].sum() > 1:
                    first = action_outcomes(env, obs, info, continuation, seed=seed + env.pod_index)
                    second = action_outcomes(env, obs, info, continuation, seed=seed + env.pod_index)
                    assert all(np.array_equal(first[k], second[k], equal_nan=True) for k in first)
                    probed_decisions += 1
                actions.append(base.predict(obs, info["action_mask"]))
                obs, _, done, _, info = env.step(actions[-1])
            runs.append((actions, env.sim.energy_j, env.sim.overload_pod_s))
        assert runs[0] == runs[1]
    assert probed_decisions > 100


def test_snapshots_need_the_twin():
    class NotTheTwin:  # any backend but the twin (the Minikube testbed, a live cluster)
        num_nodes = 2

    env = PodPlacementEnv("tiny")
    env.sim = NotTheTwin()  # type: ignore[assignment]
    with pytest.raises(PolicyError, match="simulated cluster"):
        env.snapshot()
    with pytest.raises(PolicyError, match="simulated cluster"):
        env.restore(())
