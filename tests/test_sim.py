"""The digital twin: hand-computed cases and invariants."""

from __future__ import annotations

import numpy as np
import pytest

from rlmodel.policies import BASELINES, make_policy
from rlmodel.sim import BUILTIN_NODE_TYPES, ClusterSim, PodTrace, load_scenario, sample_trace
from rlmodel.sim.cluster import ASLEEP, AWAKE


def trace(arrival, cpu, mem, usage, work) -> PodTrace:
    f = lambda xs: np.asarray(xs, dtype=np.float64)  # noqa: E731
    return PodTrace(f(arrival), f(cpu), f(mem), f(usage), f(work))


def test_builtin_specpower_curves_are_the_published_ones():
    assert BUILTIN_NODE_TYPES["ml110-g4"].watts == (86, 89.4, 92.6, 96, 99.5, 102, 106, 108, 112, 114, 117)
    assert BUILTIN_NODE_TYPES["ml110-g5"].watts == (93.7, 97, 101, 105, 110, 116, 121, 125, 129, 133, 135)
    assert BUILTIN_NODE_TYPES["x3550"].watts == (66, 107, 120, 131, 143, 156, 173, 191, 211, 229, 247)
    assert "spec.org" in BUILTIN_NODE_TYPES["x3550"].source


def test_power_curve_interpolates_linearly_and_clips():
    x3550 = BUILTIN_NODE_TYPES["x3550"]
    assert x3550.power_w(0.0) == 66
    assert x3550.power_w(0.05) == pytest.approx(86.5)
    assert x3550.power_w(0.95) == pytest.approx(238.0)
    assert x3550.power_w(1.7) == 247


def test_single_pod_energy_is_exact(one_node_scenario):
    sim = ClusterSim(one_node_scenario)
    sim.reset(trace([0.0], [0.5], [1.0], [0.5], [100.0]))
    sim.place(0, 0)
    end = sim.drain()
    assert end == pytest.approx(100.0)
    assert sim.energy_j == pytest.approx(150.0 * 100.0)  # 50 % of one core -> 150 W
    assert sim.overload_pod_s == 0.0
    assert sim.finish_s[0] == pytest.approx(100.0)


def test_processor_sharing_slows_pods_and_records_overload(one_node_scenario):
    sim = ClusterSim(one_node_scenario)
    # two pods each demanding a full core on a one-core node: each runs at half speed
    sim.reset(trace([0.0, 0.0], [0.5, 0.5], [1.0, 1.0], [1.0, 1.0], [100.0, 100.0]))
    sim.place(0, 0)
    sim.place(1, 0)
    end = sim.drain()
    assert end == pytest.approx(200.0)
    assert sim.overload_pod_s == pytest.approx(200.0)  # each pod ran 100 s longer
    assert sim.energy_j == pytest.approx(200.0 * 200.0)  # peak power for 200 s


def test_overload_ends_when_a_pod_leaves(one_node_scenario):
    sim = ClusterSim(one_node_scenario)
    # pod 0: 1 core for 50 s of work; pod 1: 1 core for 150 s of work
    sim.reset(trace([0.0, 0.0], [0.5, 0.5], [1.0, 1.0], [1.0, 1.0], [50.0, 150.0]))
    sim.place(0, 0)
    sim.place(1, 0)
    sim.drain()
    # both at rate 1/2 until t=100 (pod 0 done), then pod 1 alone needs 100 s more
    assert sim.finish_s[0] == pytest.approx(100.0)
    assert sim.finish_s[1] == pytest.approx(200.0)
    assert sim.overload_pod_s == pytest.approx(100.0)


def test_idle_node_sleeps_and_wakes_at_peak_power(sleepy_two_nodes):
    sim = ClusterSim(sleepy_two_nodes)
    sim.reset(trace([0.0, 100.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [30.0, 40.0]))
    sim.place(0, 0)  # node 1 idles from t=0 and sleeps at t=50
    sim.advance_to(100.0)
    assert sim.state[1] == ASLEEP
    assert sim.state[0] == ASLEEP  # node 0 emptied at 30, slept at 80
    sim.place(1, 1)  # wakes node 1: 20 s at peak, then the pod runs 40 s
    sim.drain()
    assert sim.finish_s[1] == pytest.approx(160.0)
    assert sim.wake_delay_pod_s == pytest.approx(20.0)
    assert sim.wakeups == 1
    expected = (
        30 * 100 + 50 * 50 + 20 * 5  # node 0: running 0-30 at 50 %, idle 30-80, asleep 80-100
        + 60 * 5                      # node 0 asleep 100-160
        + 50 * 50 + 50 * 5            # node 1: idle 0-50, asleep 50-100
        + 20 * 150 + 40 * 100         # node 1: waking 100-120 at peak, running 120-160 at 50 %
    )
    assert sim.energy_j == pytest.approx(expected)
    assert sim.state[1] == AWAKE


@pytest.mark.parametrize("scenario", ["hetero", "hetero-sleep", "homogeneous", "tiny"])
@pytest.mark.parametrize("policy", list(BASELINES))
def test_invariants_on_builtin_scenarios(scenario, policy):
    sc = load_scenario(scenario)
    sim = ClusterSim(sc)
    pol = make_policy(policy)
    from rlmodel.envs import PodPlacementEnv

    env = PodPlacementEnv(sc)
    obs, info = env.reset(seed=7)
    pol.reset(seed=7)
    sim = env.sim
    done = False
    while not done:
        mask = info["action_mask"]
        a = pol.predict(obs, mask)
        assert mask[a], "a baseline chose a node where the pod does not fit"
        obs, _, done, _, info = env.step(a)
        # no node ever holds more requests than its capacity
        assert np.all(np.asarray(sim.cpu_requested) <= sim.cores + 1e-6)
        assert np.all(np.asarray(sim.mem_requested) <= sim.memory_gib + 1e-6)
    placed = sim.node_of >= 0
    # every placed pod finished (sleep never loses a pod), no pod finished before arrival + work
    assert sim.pods_done == sim.pods_placed == placed.sum()
    assert np.all(sim.finish_s[placed] >= env.trace.arrival_s[placed] + env.trace.work_s[placed] - 1e-6)
    assert placed.sum() + sim.unschedulable == len(env.trace)
    # energy lies between the all-asleep/idle floor and the all-peak ceiling over the makespan
    floor = sc.sleep_watts * sc.num_nodes if sc.sleep_enabled else sim.idle_watts.sum()
    assert floor * sim.now_s - 1e-6 <= sim.energy_j <= sim.peak_watts.sum() * sim.now_s + 1e-6


def test_same_seed_same_trace_and_results():
    sc = load_scenario("hetero-sleep")
    a = sample_trace(sc.workload, np.random.default_rng(3))
    b = sample_trace(sc.workload, np.random.default_rng(3))
    c = sample_trace(sc.workload, np.random.default_rng(4))
    assert np.array_equal(a.arrival_s, b.arrival_s) and np.array_equal(a.usage_cores, b.usage_cores)
    assert not np.array_equal(a.arrival_s, c.arrival_s)
    from rlmodel.envs import PodPlacementEnv
    from rlmodel.evaluation.benchmark import run_episode

    r1 = run_episode(PodPlacementEnv(sc), make_policy("random"), seed=11)
    r2 = run_episode(PodPlacementEnv(sc), make_policy("random"), seed=11)
    assert r1 == r2


def test_sample_pods_draws_what_sample_trace_draws():
    """The pods still to come (look-ahead planners) and a whole trace: same distributions, same stored units."""
    from rlmodel.sim.workload import sample_pods

    wl = load_scenario("hetero-sleep").workload
    later = sample_pods(wl, np.random.default_rng(5), 4000, start_s=500.0)
    traces = [sample_trace(wl, np.random.default_rng(s)) for s in range(4000 // wl.pods_per_episode + 1)]
    fields = ("cpu_request_cores", "memory_request_gib", "usage_cores", "work_s")
    pods = np.column_stack([getattr(later, f) for f in fields])
    whole = np.column_stack([np.concatenate([getattr(t, f) for t in traces]) for f in fields])
    for col, bounds in enumerate([wl.cpu_request_cores, wl.memory_request_gib, None, wl.duration_s]):
        if bounds is not None:
            lo, hi = bounds
            assert lo - 1e-3 <= pods[:, col].min() and pods[:, col].max() <= hi + 1e-3
        # same distribution: means agree within a few standard errors
        se = np.hypot(pods[:, col].std() / np.sqrt(len(pods)), whole[:, col].std() / np.sqrt(len(whole)))
        assert abs(pods[:, col].mean() - whole[:, col].mean()) < 5 * se
    # requests stored as Kubernetes stores them: whole millicores and MiB
    assert np.allclose(pods[:, 0] * 1000, np.round(pods[:, 0] * 1000))
    assert np.allclose(pods[:, 1] * 1024, np.round(pods[:, 1] * 1024))
    ratio = pods[:, 2] / pods[:, 0]  # usage is the unrounded request times the usage factor
    assert wl.usage_of_request[0] - 0.01 <= ratio.min() and ratio.max() <= wl.usage_of_request[1] + 0.01
    # Poisson arrivals after start_s: every gap, the first included, is exponential with the spec's mean
    gaps = np.diff(later.arrival_s, prepend=500.0)
    assert gaps.min() > 0 and abs(gaps.mean() - wl.mean_interarrival_s) < 5 * wl.mean_interarrival_s / np.sqrt(4000)


def test_snapshot_restore_replays_identically():
    sc = load_scenario("tiny")
    sim = ClusterSim(sc)
    tr = sample_trace(sc.workload, np.random.default_rng(0))
    sim.reset(tr)
    sim.place(0, 2)
    snap = sim.snapshot()
    sim.advance_to(float(tr.arrival_s[1]))
    sim.place(1, 2)
    sim.drain()
    first = (sim.energy_j, sim.overload_pod_s, sim.finish_s.copy())
    sim.restore(snap)
    sim.advance_to(float(tr.arrival_s[1]))
    sim.place(1, 2)
    sim.drain()
    assert (sim.energy_j, sim.overload_pod_s) == first[:2]
    assert np.array_equal(sim.finish_s, first[2], equal_nan=True)


def test_vectorized_power_matches_the_curves():
    sc = load_scenario("hetero")
    sim = ClusterSim(sc)
    rng = np.random.default_rng(0)
    demand = rng.uniform(0, 14, size=sim.num_nodes)
    expected = [t.power_w(d / t.cpu_cores) for t, d in zip(sc.node_types, demand, strict=True)]
    assert np.allclose(sim.power_w(demand), expected)


def test_background_load_draws_power_shares_cores_and_keeps_the_node_awake():
    from rlmodel.sim.scenario import parse_scenario

    text = """
[cluster]
idle_sleep_after_s = 10
sleep_watts = 1
[[node_types]]
name = "x3550"
count = 1
background_cpu_cores = 6.0
[[node_types]]
name = "x3550"
count = 1
[workload]
pods_per_episode = 1
"""
    sc = parse_scenario(text, name="bg", source="test")
    sim = ClusterSim(sc)
    trace = PodTrace(arrival_s=np.array([0.0]), cpu_request_cores=np.array([1.0]), memory_request_gib=np.array([1.0]),
                     usage_cores=np.array([12.0]), work_s=np.array([100.0]))
    sim.reset(trace)
    curve = sc.node_types[0].watts
    assert sim.watts[0] == pytest.approx(curve[5])  # 6 of 12 cores busy: 50 %
    sim.place(0, 0)
    sim.advance_to(50.0)
    # 12 + 6 cores of demand on 12 cores: the pod runs at 12/18 speed, so its 100 s take 150 s
    sim.drain()
    assert sim.finish_s[0] == pytest.approx(150.0)
    # node 0 (background) never sleeps; node 1 (empty) sleeps after 10 s
    sim.advance_to(1000.0)
    assert sim.state[0] == 0 and sim.state[1] == 1
    assert sim.watts[0] == pytest.approx(curve[5])
    with pytest.raises(Exception, match="background_cpu_cores: more than the node's 12 cores"):
        parse_scenario(text.replace("6.0", "13.0"), name="bg", source="test")
