"""Workload classes, distributions, the daily cycle, pod signals and their history, trace replay and import,
the runtime-aware rule and the imbalance penalty."""

from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from rlmodel.cli import main
from rlmodel.envs import POD_FEATURES, PodPlacementEnv
from rlmodel.envs.observation import NODE_COL, POD_COL, PRIOR_RUN_S, workload_history
from rlmodel.errors import ScenarioError
from rlmodel.policies import make_policy
from rlmodel.sim import load_scenario, parse_scenario, sample_trace
from rlmodel.sim.cluster import ClusterSim
from rlmodel.sim.openb import curve_for, read_openb_pods
from rlmodel.sim.podtrace import OWNER_KINDS, QOS_CLASSES, PodTrace, parse_trace_rows, read_trace, write_trace
from rlmodel.sim.workload import next_arrival

NODES = """
[[node_types]]
name = "x3550"
count = 2

[[node_types]]
name = "ml110-g4"
count = 2
"""


def scenario(workload: str, extra: str = "") -> object:
    return parse_scenario(NODES + extra + "\n[workload]\n" + workload, name="t", source="t.toml")


def trace_hash(t: PodTrace) -> str:
    arrays = (t.arrival_s, t.cpu_request_cores, t.memory_request_gib, t.usage_cores, t.work_s)
    data = b"".join(np.ascontiguousarray(a, dtype=np.float64).tobytes() for a in arrays)
    return hashlib.sha256(data).hexdigest()[:16]


@pytest.mark.parametrize(("name", "seed", "digest"), [
    ("hetero-sleep", 0, "602fbebb593e5c0e"), ("hetero", 7, "fc8446ababe70184"),
    ("homogeneous", 3, "1920762249750877"), ("tiny", 11, "c79e12fbc19feaa3")])
def test_old_scenarios_give_the_same_traces(name, seed, digest):
    """Hashes taken from the release before workload classes (commit a1f7ae7)."""
    t = sample_trace(load_scenario(name).workload, np.random.default_rng(seed))
    assert trace_hash(t) == digest
    full = t.with_signals()
    assert (full.owner_kind == OWNER_KINDS.index("Pod")).all() and (full.qos == QOS_CLASSES.index("Burstable")).all()
    assert (full.workload == -1).all() and (full.replicas == 1).all()


CLASSES = """
pods_per_episode = 20000
mean_interarrival_s = 10

[[workload.classes]]
name = "svc"
weight = 1
owner_kind = "Deployment"
cpu_limit_of_request = 1
memory_limit_of_request = 1
priority = 1000
replicas = {dist = "choice", values = [1, 3], weights = [3, 1]}
cpu_request_cores = {dist = "choice", values = [0.5, 1.0, 2.0], weights = [1, 2, 1]}
duration_s = {dist = "lognormal", median = 600, sigma = 0.5, max = 1e6}

[[workload.classes]]
name = "batch"
weight = 3
owner_kind = "Job"
workloads = 5
cpu_request_cores = [0.25, 1.0]
duration_s = [100, 200]

[[workload.classes]]
name = "be"
weight = 1
owner_kind = "Job"
qos = "BestEffort"
cpu_request_cores = 0.5
"""


def test_class_sampling_follows_weights_and_distributions():
    sc = scenario(CLASSES)
    t = sample_trace(sc.workload, np.random.default_rng(5))
    assert len(t) == 20000
    # batches: the first pod of each (arrival changes); classes told apart by owner and QoS
    first = np.r_[True, np.diff(t.arrival_s) > 0]
    svc = (t.owner_kind == OWNER_KINDS.index("Deployment"))
    be = t.qos == QOS_CLASSES.index("BestEffort")
    batch = ~svc & ~be
    observed = [int((first & svc).sum()), int((first & batch).sum()), int((first & be).sum())]
    expected = np.array([1, 3, 1]) / 5 * sum(observed)
    assert stats.chisquare(observed, expected).pvalue > 0.001
    # replicas of the service class: 1 or 3 with weights 3:1 (per batch)
    sizes = t.replicas[first & svc]
    assert set(sizes.tolist()) <= {1, 3}
    assert stats.chisquare([int((sizes == 1).sum()), int((sizes == 3).sum())],
                           np.array([0.75, 0.25]) * sizes.size).pvalue > 0.001
    # service CPU: choice 0.5/1/2 weights 1:2:1; run times lognormal(median 600, sigma 0.5)
    cpu = t.cpu_request_cores[svc]
    counts = [int((cpu == v).sum()) for v in (0.5, 1.0, 2.0)]
    assert sum(counts) == cpu.size
    assert stats.chisquare(counts, np.array([0.25, 0.5, 0.25]) * cpu.size).pvalue > 0.001
    assert stats.kstest(np.log(t.work_s[svc]), stats.norm(math.log(600), 0.5).cdf).pvalue > 0.001
    assert (t.qos[svc] == QOS_CLASSES.index("Guaranteed")).all() and (t.priority[svc] == 1000).all()
    # batch: uniform requests and run times; 5 workloads
    assert stats.kstest(t.work_s[batch], stats.uniform(100, 100).cdf).pvalue > 0.001
    assert set(np.unique(t.workload[batch]).tolist()) == set(range(1, 6))
    # BestEffort requests nothing; its usage comes from its size 0.5 times usage_of_request (default [0.3, 1.2])
    assert (t.cpu_request_cores[be] == 0).all() and (t.memory_request_gib[be] == 0).all()
    assert t.usage_cores[be].min() >= 0.15 - 1e-9 and t.usage_cores[be].max() <= 0.6 + 1e-9
    # batches arrive as Poisson with mean gap 10 s
    gaps = np.diff(np.unique(t.arrival_s))
    assert stats.kstest(gaps, stats.expon(scale=10).cdf).pvalue > 0.001


def test_duration_spread_makes_pods_of_one_workload_alike():
    sc = scenario("""
pods_per_episode = 4000
[[workload.classes]]
owner_kind = "Job"
workloads = 20
duration_s = {dist = "lognormal", median = 300, sigma = 1.0}
duration_spread = 0.1
""")
    t = sample_trace(sc.workload, np.random.default_rng(2))
    logs = np.log(t.work_s)
    within = np.mean([logs[t.workload == w].std() for w in np.unique(t.workload)])
    assert 0.07 < within < 0.13  # the spread, not the class's sigma of 1
    assert logs.std() > 0.5


def test_daily_cycle_thinning_gives_the_declared_peak_to_trough():
    from rlmodel.sim.scenario import ArrivalSpec

    rng = np.random.default_rng(0)
    arrivals = ArrivalSpec(period_s=1000.0, peak_to_trough=4.0)
    t, times = 0.0, []
    while t < 400_000:
        t = next_arrival(t, rng, 2.0, arrivals)
        times.append(t)
    phase = (np.asarray(times) % 1000.0) / 1000.0
    peak = np.sum((phase > 0.2) & (phase < 0.3))   # around sin = 1
    trough = np.sum((phase > 0.7) & (phase < 0.8))  # around sin = -1
    assert 3.3 < peak / trough < 4.5
    assert len(times) / 400_000 == pytest.approx(0.5, rel=0.03)  # the mean rate is 1 / mean gap


@pytest.mark.parametrize(("workload", "key"), [
    ('duration_s = {dist = "lognormal", median = 0, sigma = 1}', "workload.duration_s.median"),
    ('duration_s = {dist = "lognormal", median = 100}', "workload.duration_s.sigma"),
    ('duration_s = {dist = "lognormal", median = 100, sigma = 1, max = 50}', "workload.duration_s.max"),
    ('duration_s = {dist = "lognormal", median = 100, sigma = 1, mode = 5}', "workload.duration_s.mode"),
    ('duration_s = {dist = "choice", values = []}', "workload.duration_s.values"),
    ('duration_s = {dist = "choice", values = [1, -2]}', "workload.duration_s.values"),
    ('duration_s = {dist = "choice", values = [1, 2], weights = [1]}', "workload.duration_s.weights"),
    ('duration_s = {dist = "choice", values = [1, 2], weights = [0, 0]}', "workload.duration_s.weights"),
    ('duration_s = {dist = "choice", values = [1, 2], weights = [1, "a"]}', "workload.duration_s.weights"),
    ('duration_s = {dist = "zipf"}', "workload.duration_s.dist"),
    ('duration_s = "long"', "workload.duration_s"),
    ("[[workload.classes]]\nowner_kind = \"DaemonSets\"", "workload.classes[0].owner_kind"),
    ("[[workload.classes]]\nqos = \"Gold\"", "workload.classes[0].qos"),
    ("[[workload.classes]]\nqos = \"BestEffort\"\ncpu_limit_of_request = 2", "workload.classes[0].qos"),
    ("[[workload.classes]]\ncpu_limit_of_request = 0.5", "workload.classes[0].cpu_limit_of_request"),
    ("[[workload.classes]]\nreplicas = 0", "workload.classes[0].replicas"),
    ("[[workload.classes]]\npriority = 1.5", "workload.classes[0].priority"),
    ("[[workload.classes]]\nweight = 0", "workload.classes"),
    ("[[workload.classes]]\ncolour = 1", "workload.classes[0].colour"),
    ("[workload.arrivals]\npeak_to_trough = 0.5", "workload.arrivals.peak_to_trough"),
    ("[workload.arrivals]\nperiod_s = 0", "workload.arrivals.period_s"),
    ('time_scale = 2', "workload.time_scale"),
])
def test_distribution_and_class_errors_name_the_key(workload, key):
    with pytest.raises(ScenarioError) as err:
        scenario(workload)
    msg = str(err.value)
    assert msg.startswith(f"t.toml: {key}:") and "\n" not in msg


def test_derived_qos_and_implicit_class():
    sc = scenario("""
cpu_request_cores = {dist = "choice", values = [0.5, 1]}
[[workload.classes]]
name = "g"
cpu_limit_of_request = 1
memory_limit_of_request = 1
[[workload.classes]]
name = "b"
cpu_limit_of_request = 2
""")
    assert [c.qos for c in sc.workload.classes] == ["Guaranteed", "Burstable"]
    assert sc.workload.classes[1].cpu_request_cores.kind == "choice"  # inherited from [workload]
    implicit = scenario('duration_s = {dist = "lognormal", median = 300, sigma = 0.5}')
    assert [c.name for c in implicit.workload.classes] == ["default"]


dist_tables = st.one_of(
    st.lists(st.one_of(st.floats(allow_nan=True), st.integers(-5, 10**6), st.text(max_size=3)), max_size=3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.fixed_dictionaries({"dist": st.sampled_from(["lognormal", "choice", "uniform", "x"])},
                          optional={"median": st.floats(allow_nan=True), "sigma": st.floats(-1, 20),
                                    "max": st.floats(0, 1e9), "low": st.floats(-1, 10), "high": st.floats(-1, 1e4),
                                    "values": st.lists(st.floats(-1, 1e4), max_size=4),
                                    "weights": st.lists(st.floats(-1, 5), max_size=4)}))


def _toml(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, str):
        return '"' + "".join(c for c in value if c.isalnum()) + '"'
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value == math.inf else "-inf" if value == -math.inf
                                                else repr(value))
    return repr(value)


@settings(max_examples=200, deadline=None)
@given(dist_tables)
def test_distribution_parser_accepts_or_names_the_key(value):
    """Any value: a distribution whose draws stay in [low, high], or one line naming workload.duration_s."""
    try:
        sc = scenario(f"duration_s = {_toml(value)}")
    except ScenarioError as exc:
        assert str(exc).startswith("t.toml: workload.duration_s") and "\n" not in str(exc)
        return
    w = sc.workload
    dist = w.classes[0].duration_s if w.classes else None
    draws = dist.sample(np.random.default_rng(0), 200) if dist else np.random.default_rng(0).uniform(*w.duration_s, 200)
    assert np.isfinite(draws).all() and (draws >= 0).all()
    assert draws.max() <= w.duration_s[1] * (1 + 1e-12)


# ------------------------------------------------------------------------------------------ history
def _run(env: PodPlacementEnv, trace: PodTrace, steps: int, actions: list[int] | None = None):
    env.reset(seed=0)
    env.trace = trace
    env.sim.reset(trace)
    env._pod = 0
    env._accounted = 0.0
    env.invalid_actions = 0
    env._done = env._advance_to_next_decision()
    obs, info = env._observe(), env._info()
    taken = []
    for k in range(steps):
        a = actions[k] if actions else int(np.flatnonzero(info["action_mask"])[-1])
        taken.append(a)
        obs, _, done, _, info = env.step(a)
        assert not done
    return obs, taken


def test_history_features_never_read_a_run_time_that_has_not_ended():
    env = PodPlacementEnv("classes-sleep")
    trace = sample_trace(env.scenario.workload, np.random.default_rng(4)).with_signals()
    steps = 50
    obs, actions = _run(env, trace, steps)
    now = env.sim.now_s
    assert obs["pod"][POD_COL["workload_completed"]] >= 0
    assert np.isfinite(env.sim.finish_s).sum() > 5  # some pods finished: the history is not empty
    # every pod not finished by now gets another run time (longer: it still has not finished now)
    unfinished = ~(env.sim.finish_s <= now)
    changed = replace(trace, work_s=np.where(unfinished, trace.work_s * 1.7 + 13.0, trace.work_s))
    again, _ = _run(PodPlacementEnv("classes-sleep"), changed, steps, actions)
    assert np.array_equal(again["pod"], obs["pod"]) and np.array_equal(again["nodes"], obs["nodes"])
    # and the finished pods' run times do reach it: change those, the history changes
    finished = replace(trace, work_s=np.where(unfinished, trace.work_s, trace.work_s * 0.5))
    moved, _ = _run(PodPlacementEnv("classes-sleep"), finished, steps, actions)
    assert not np.array_equal(moved["pod"], obs["pod"]) or not np.array_equal(moved["nodes"], obs["nodes"])


def test_workload_history_by_hand():
    workload = np.array([0, 0, 1, 0, -1])
    start = np.array([0.0, 10.0, 5.0, 20.0, 0.0])
    finish = np.array([100.0, 50.0, np.nan, 300.0, 30.0])
    assert workload_history(workload, start, finish, 99.0, 0) == (1, 40.0)  # pod 1 only (50 - 10)
    assert workload_history(workload, start, finish, 100.0, 0) == (2, 70.0)  # (100 + 40) / 2
    assert workload_history(workload, start, finish, 400.0, 0) == (3, (100 + 40 + 280) / 3)
    # no pod of workload 1 finished: the prior is every finished pod's mean run time
    assert workload_history(workload, start, finish, 60.0, 1) == (0, (40 + 30) / 2)
    assert workload_history(workload, start, finish, 5.0, 1) == (0, PRIOR_RUN_S)
    assert workload_history(workload, start, finish, 60.0, -1) == (0, 35.0)


@pytest.mark.parametrize("name", ["classes", "classes-sleep"])
def test_check_env_on_the_class_scenarios(name):
    env = PodPlacementEnv(name)
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=1)
    for _ in range(60):
        assert env.observation_space.contains(obs)
        obs, _, done, _, info = env.step(int(np.flatnonzero(info["action_mask"])[0]))
        if done:
            break


# ------------------------------------------------------------------------------------------ the runtime-aware rule
def _obs(pod_run_s: float, completed: int, owner: str = "Job"):
    from rlmodel.envs.observation import NODE_FEATURES

    nodes = np.zeros((4, len(NODE_FEATURES)), dtype=np.float32)
    # 0: x3550 awake with pods; 1: g4 awake with pods; 2: g4 awake empty; 3: x3550 asleep
    nodes[:, NODE_COL["cpu_cores"]] = [12, 2, 2, 12]
    nodes[:, NODE_COL["peak_watts"]] = [247, 117, 117, 247]
    nodes[:, NODE_COL["pods"]] = [3, 1, 0, 0]
    nodes[:, NODE_COL["asleep"]] = [0, 0, 0, 1]
    nodes[:, NODE_COL["cpu_requested_cores"]] = [4, 1, 0, 0]
    pod = np.zeros(len(POD_FEATURES), dtype=np.float32)
    pod[POD_COL[f"owner_{owner.lower()}"]] = 1
    pod[POD_COL["workload_completed"]] = completed
    pod[POD_COL["workload_mean_run_s"]] = pod_run_s
    return {"nodes": nodes, "pod": pod}


def test_runtime_aware_rule_by_hand():
    rule = make_policy("runtime-aware")
    every = np.ones(4, dtype=bool)
    assert rule.predict(_obs(3000, 4), every) == 0  # long: the efficient x3550 (efficient-first's choice)
    assert rule.predict(_obs(120, 4), every) == 1  # short: the busy awake g4 (least efficient busy node)
    assert rule.predict(_obs(120, 4), np.array([1, 0, 1, 1], dtype=bool)) == 0  # the only busy one left
    assert rule.predict(_obs(120, 4), np.array([0, 0, 1, 1], dtype=bool)) == 2  # awake before waking one
    assert rule.predict(_obs(120, 0, "Deployment"), every) == 0  # a service with no history: long
    assert rule.predict(_obs(120, 0, "Job"), every) == 1  # a Job with no history: the prior (short here)
    assert make_policy("efficient-first").predict(_obs(120, 4), every) == 0


def test_runtime_aware_headroom_rule_by_hand():
    rule = make_policy("runtime-aware-headroom")
    every = np.ones(4, dtype=bool)

    def obs(run_s, request, used, requested3=0.0, waking3=0.0, requested0=4.0):
        o = _obs(run_s, 4)
        o["nodes"][0, NODE_COL["cpu_requested_cores"]] = requested0
        o["pod"][POD_COL["cpu_request_cores"]] = request
        o["nodes"][:, NODE_COL["cpu_used_cores"]] = used
        o["nodes"][3, NODE_COL["cpu_requested_cores"]] = requested3
        if waking3:
            o["nodes"][3, NODE_COL["asleep"]], o["nodes"][3, NODE_COL["waking_s"]] = 0, waking3
        return o

    # long pod of 1 core: the x3550 in use 10.5 of 12 takes 1.1 more -> runtime-aware's pick stands
    assert rule.predict(obs(3000, 1.0, [10.5, 1, 0, 0]), every) == 0
    # 2 cores: 10.5 + 2.2 > 12; both g4s (2 cores) would be overloaded too -> the sleeping x3550 is woken
    assert rule.predict(obs(3000, 2.0, [10.5, 1, 0, 0]), every) == 3
    assert make_policy("runtime-aware").predict(obs(3000, 2.0, [10.5, 1, 0, 0]), every) == 0
    # a waking node counts by its requests (its pods have not started, it uses 0): 11 + 2.2 > 12 -> every node
    # is overloaded, so runtime-aware's order decides (the fuller x3550, 0), and the guard never leaves a pod unplaced
    waking = obs(3000, 2.0, [10.5, 1, 0, 0], requested3=11, waking3=10, requested0=11.5)
    assert rule.predict(waking, every) == make_policy("runtime-aware").predict(waking, every) == 0
    waking["nodes"][3, NODE_COL["cpu_requested_cores"]] = 9  # 9 + 2.2 <= 12: the waking node
    assert rule.predict(waking, every) == 3
    # short pod of 0.5: the busy g4 (1 + 0.55 <= 2); once it uses 1.5, the busy x3550 instead
    assert rule.predict(obs(120, 0.5, [10.5, 1.0, 0, 0]), every) == 1
    assert rule.predict(obs(120, 0.5, [10.5, 1.5, 0, 0]), every) == 0
    # CPU in use, not requests: the busy g4 has 1 core requested but uses 1.8
    assert rule.predict(obs(120, 0.5, [4, 1.8, 0, 0]), every) == 0


def test_runtime_aware_short_headroom_guards_short_pods_only_by_hand():
    rule = make_policy("runtime-aware-short-headroom")
    every = np.ones(4, dtype=bool)

    def obs(run_s, request, used):
        o = _obs(run_s, 4)
        o["pod"][POD_COL["cpu_request_cores"]] = request
        o["nodes"][:, NODE_COL["cpu_used_cores"]] = used
        return o

    # long pod of 2 cores: the x3550 in use 10.5 of 12 would be overloaded (10.5 + 2.2 > 12); unlike
    # runtime-aware-headroom (which wakes node 3), the long pod still goes where efficient-first puts it
    assert rule.predict(obs(3000, 2.0, [10.5, 1, 0, 0]), every) == 0
    assert make_policy("runtime-aware-headroom").predict(obs(3000, 2.0, [10.5, 1, 0, 0]), every) == 3
    # short pod of 0.5: the busy g4 while it has room (1 + 0.55 <= 2), the busy x3550 once the g4 uses 1.5
    assert rule.predict(obs(120, 0.5, [10.5, 1.0, 0, 0]), every) == 1
    assert rule.predict(obs(120, 0.5, [10.5, 1.5, 0, 0]), every) == 0
    assert make_policy("runtime-aware").predict(obs(120, 0.5, [10.5, 1.5, 0, 0]), every) == 1
    # a sleeping node counts by its requests: the x3550 asleep with nothing requested takes it (woken) ...
    assert rule.predict(obs(120, 0.5, [12, 2, 2, 12]), every) == 3
    # ... and with every node overloaded, runtime-aware's order decides: the pod is never left unplaced
    full = obs(120, 0.5, [12, 2, 2, 12])
    full["nodes"][3, NODE_COL["cpu_requested_cores"]] = 12
    assert rule.predict(full, every) == make_policy("runtime-aware").predict(full, every) == 1


def test_a_rule_told_the_run_times_reads_each_pods_true_run_time_and_nothing_else():
    """ToldRunTimes replaces the expected run time by the arriving pod's true one: runtime-aware's scores change
    exactly at the decisions where the truth and the workload's mean fall on different sides of its 600 s."""
    from rlmodel.evaluation.told import ToldRunTimes

    env = PodPlacementEnv(load_scenario("classes-sleep"))
    rule = make_policy("runtime-aware")
    told = ToldRunTimes(rule, env)
    seen: list[np.ndarray] = []

    class Spy:
        name = "spy"

        def reset(self, seed=None):
            pass

        def predict(self, obs, mask):
            seen.append(obs["pod"].copy())
            return rule.predict(obs, mask)

    spying = ToldRunTimes(Spy(), env)
    obs, info = env.reset(seed=1000)
    differ = agree = 0
    while True:
        true_s = float(env.sim._work[env.pod_index])
        before = obs["pod"].copy()
        action = spying.predict(obs, info["action_mask"])
        assert np.array_equal(obs["pod"], before)  # the environment's observation is not touched
        changed = np.flatnonzero(seen[-1] != before)
        assert set(changed) <= {POD_COL["workload_completed"], POD_COL["workload_mean_run_s"]}
        assert seen[-1][POD_COL["workload_mean_run_s"]] == pytest.approx(true_s)
        same_side = (rule.expected_run_s(before) >= rule.long_s) == (true_s >= rule.long_s)
        plain = rule.scores(obs, info["action_mask"])
        with_truth = rule.scores({**obs, "pod": seen[-1]}, info["action_mask"])
        assert np.array_equal(plain, with_truth) == same_side
        differ, agree = differ + (not same_side), agree + same_side
        obs, _, done, _, info = env.step(action)
        if done:
            break
    assert differ > 0 and agree > 0  # both kinds of decision occur, so the checks above could fail
    assert told.name == "runtime-aware+told-run-times"


# ------------------------------------------------------------------------------------------ imbalance
def test_imbalance_is_the_integral_of_the_utilization_std():
    sc = parse_scenario(NODES.replace("count = 2", "count = 1") + """
[workload]
cpu_request_cores = [1, 1]
""", name="t", source="t.toml")
    sim = ClusterSim(sc)
    trace = PodTrace(arrival_s=np.array([0.0]), cpu_request_cores=np.array([1.0]), memory_request_gib=np.array([1.0]),
                     usage_cores=np.array([1.5]), work_s=np.array([100.0]))
    sim.reset(trace)
    sim.place(0, 1)  # the 2-core g4 at 75 %, the x3550 at 0 %
    sim.drain()
    assert sim.now_s == pytest.approx(100.0)
    assert sim.imbalance_s == pytest.approx(np.std([0.0, 0.75]) * 100.0)
    reward = replace(sc.reward, imbalance_penalty_j=1000.0)
    assert reward.cost_j(sim.energy_j, 0, 0, sim.imbalance_s) == pytest.approx(sim.energy_j + 1000 * 37.5)


def test_benchmark_reports_imbalance():
    from rlmodel.evaluation.benchmark import run_benchmark, summarize

    sc = load_scenario("classes-sleep")
    sc = replace(sc, reward=replace(sc.reward, imbalance_penalty_j=500.0))
    df = run_benchmark(sc, [make_policy("efficient-first")], episodes=2, seed=3, with_oracle=False)
    assert (df["imbalance_s"] > 0).all()
    expected = df["energy_j"] + 20 * df["overload_pod_s"] + 1e5 * df["unschedulable"] + 500 * df["imbalance_s"]
    assert np.allclose(df["cost_j"], expected)
    assert summarize(df)["imbalance_s_mean"].iloc[0] == pytest.approx(df["imbalance_s"].mean())


# ------------------------------------------------------------------------------------------ native trace CSV
def test_trace_csv_round_trip_and_replay(tmp_path):
    sc = load_scenario("classes-sleep")
    t = sample_trace(sc.workload, np.random.default_rng(8))
    path = tmp_path / "t.csv"
    write_trace(t, path)
    back = read_trace(path)
    for name in ("arrival_s", "cpu_request_cores", "memory_request_gib", "usage_cores", "work_s", "owner_kind", "qos",
                 "priority", "replicas"):
        assert np.allclose(getattr(back, name), getattr(t, name), rtol=1e-6), name
    # workloads keep their identity (renumbered in order of appearance)
    pairs = set(zip(back.workload.tolist(), t.workload.tolist(), strict=True))
    assert len(pairs) == len(set(t.workload.tolist()))
    (tmp_path / "replay.toml").write_text(
        NODES.replace("count = 2", "count = 3") + '[workload]\ntrace = "t.csv"\npods_per_episode = 30\n'
        "time_scale = 0.5\n")
    replay = load_scenario(tmp_path / "replay.toml")
    w1 = sample_trace(replay.workload, np.random.default_rng(1))
    w2 = sample_trace(replay.workload, np.random.default_rng(1))
    assert len(w1) == 30 and trace_hash(w1) == trace_hash(w2) and w1.arrival_s[0] == 0
    # a window: consecutive pods from the seed's offset, times halved
    start = int(np.flatnonzero(np.isclose(back.work_s, w1.work_s[0] * 2))[0])
    assert np.allclose(w1.work_s, back.work_s[start:start + 30] * 0.5)
    assert np.allclose(w1.arrival_s, (back.arrival_s[start:start + 30] - back.arrival_s[start]) * 0.5)
    env = PodPlacementEnv(replay)
    check_env(env, skip_render_check=True)


def test_trace_usage_left_empty_is_drawn(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(H + "\n0,1,1,60\n5,2,1,60\n")
    (tmp_path / "s.toml").write_text(NODES + '[workload]\ntrace = "t.csv"\npods_per_episode = 2\n'
                                     "usage_of_request = [0.5, 0.5]\n")
    t = sample_trace(load_scenario(tmp_path / "s.toml").workload, np.random.default_rng(0))
    assert list(t.usage_cores) == [0.5, 1.0]


H = "arrival_s,cpu_request_cores,memory_request_gib,duration_s"


@pytest.mark.parametrize(("text", "where"), [
    ("", "empty file"),
    ("arrival_s,cpu_request_cores,memory_request_gib\n", "line 1: missing column 'duration_s'"),
    (H + ",colour\n", "line 1: unknown column 'colour'"),
    (H + "\n", "no pods"),
    (H + "\n0,1,1,5\n0,x,1,5\n", "line 3, column cpu_request_cores"),
    (H + "\n5,1,1,5\n4,1,1,5\n", "line 3, column arrival_s"),
    (H + "\n0,1,1,0\n", "line 2, column duration_s"),
    (H + "\n0,1,nan,4\n", "line 2, column memory_request_gib"),
    (H + "\n0,1,1\n", "line 2: 3 fields"),
    (H + ",qos\n0,1,1,4,Gold\n", "line 2, column qos"),
    (H + ",owner_kind\n0,1,1,4,Pods\n", "line 2, column owner_kind"),
    (H + ",priority\n0,1,1,4,1.5\n", "line 2, column priority"),
])
def test_bad_trace_files_name_file_line_and_column(tmp_path, text, where):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ScenarioError) as err:
        read_trace(path)
    assert str(err.value).startswith(f"{path}: ") and where in str(err.value) and "\n" not in str(err.value)


cells = st.one_of(st.text(alphabet="0123456789.-eE naxJobDeploymentBurstable", max_size=8),
                  st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers(-10, 10**12).map(str))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(cells, min_size=4, max_size=9), max_size=6),
       st.permutations(["arrival_s", "cpu_request_cores", "memory_request_gib", "duration_s", "qos", "owner_kind",
                        "priority", "workload", "cpu_usage_cores"]))
def test_trace_parser_reads_or_names_line_and_column(rows, header):
    try:
        t = parse_trace_rows([header, *rows], "f.csv")
    except ScenarioError as exc:
        assert str(exc).startswith("f.csv: ") and "\n" not in str(exc)
        return
    assert len(t) >= 1 and (np.diff(t.arrival_s) >= 0).all() and (t.work_s > 0).all()
    assert np.isfinite(t.cpu_request_cores).all() and (t.cpu_request_cores >= 0).all()


# ------------------------------------------------------------------------------------------ OpenB import
OPENB_HEADER = ("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,"
                "scheduled_time\n")
OPENB = OPENB_HEADER + """openb-pod-0000,12000,16384,1,1000,V100M32,LS,Running,0,12537496,0
openb-pod-0001,6000,12288,0,0,,BE,Succeeded,100,400,110
openb-pod-0002,4000,8192,0,0,,LS,Running,200,,210
openb-pod-0003,2000,4096,0,0,,Burstable,Pending,300,900,
openb-pod-0004,1000,2048,0,0,,Guaranteed,Succeeded,50,5000,60
openb-pod-0005,6000,12288,0,0,,BE,Succeeded,100,700,120
openb-pod-0006,88000,65536,0,500,A10,Burstable,Succeeded,900,1900,905
"""
NODE_LIST = ("sn,cpu_milli,memory_mib,gpu,model\nn1,96000,786432,8,V100M32\nn2,96000,786432,8,V100M32\n"
             "n3,32000,131072,0,\n")


def test_openb_import_skips_unscheduled_unfinished_and_gpu_pods(tmp_path):
    (tmp_path / "pods.csv").write_text(OPENB)
    (tmp_path / "nodes.csv").write_text(NODE_LIST)
    out = tmp_path / "trace.csv"
    r = CliRunner().invoke(main, ["trace", "import", "--format", "alibaba-openb", str(tmp_path / "pods.csv"),
                                  "--node-list", str(tmp_path / "nodes.csv"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "3 pods of 7" in r.output and "never scheduled: 1" in r.output and "GPU pods" in r.output
    t = read_trace(out)
    # pod 4 (created 50) first, then the two BE pods created at 100 (one batch of one workload)
    assert list(t.arrival_s) == [0.0, 50.0, 50.0]
    assert list(t.work_s) == [4940.0, 290.0, 580.0]
    assert [QOS_CLASSES[q] for q in t.qos] == ["Guaranteed", "BestEffort", "BestEffort"]
    assert [OWNER_KINDS[k] for k in t.owner_kind] == ["Deployment", "Job", "Job"]
    assert list(t.priority) == [1000, 0, 0] and list(t.replicas) == [1, 2, 2]
    assert t.workload[1] == t.workload[2] != t.workload[0]
    assert np.isnan(t.usage_cores).all()
    sc = load_scenario(tmp_path / "trace.toml")
    assert [(g.node_type.cpu_cores, g.node_type.memory_gib, g.count) for g in sc.groups] == [(96, 768, 2), (32, 128, 1)]
    # the nearest curve by cores is the 16-core R620, scaled 6x and 2x
    r620 = np.array(load_scenario("hetero").groups[0].node_type.watts) * 0 + np.array(
        [54.1, 78.4, 88.5, 99.5, 115, 126, 143, 165, 196, 226, 243])
    assert np.allclose(sc.groups[0].node_type.watts, r620 * 6) and np.allclose(sc.groups[1].node_type.watts, r620 * 2)
    env = PodPlacementEnv(sc)
    check_env(env, skip_render_check=True)
    # --cpu-only keeps the GPU pods with their CPU and memory
    kept = read_openb_pods(tmp_path / "pods.csv", cpu_only=True)
    assert len(kept) == 5 and 88.0 in kept.cpu_request_cores and 12.0 in kept.cpu_request_cores


def test_openb_curve_rule():
    assert curve_for(2, 4).name.startswith("openb-2c") and curve_for(2, 4).watts[-1] == 117  # ml110-g4 (lower W/core)
    assert curve_for(4, 8).watts[0] == pytest.approx(41.6)  # x3250-x3470: a tie with the X3480, the first listed
    assert curve_for(12, 16).watts[-1] == pytest.approx(222)  # x3550-x5675: 18.5 W/core, below the x3550's 20.6


@pytest.mark.parametrize(("row", "where"), [
    ("p,abc,1,0,0,,LS,Running,0,10,0", "line 2, column cpu_milli"),
    ("p,1000,1,0,0,,Gold,Running,0,10,0", "line 2, column qos"),
    ("p,1000,1,0,0,,LS,Running,5,10,1", "line 2, column scheduled_time"),
    ("p,1000,-1,0,0,,LS,Running,0,10,0", "line 2, column memory_mib"),
    ("p,1000,1,0,0,,LS,Running,0,10", "line 2: 10 fields"),
])
def test_bad_openb_rows_name_file_line_and_column(tmp_path, row, where):
    path = tmp_path / "pods.csv"
    path.write_text(OPENB_HEADER + row + "\n")
    r = CliRunner().invoke(main, ["trace", "import", "--format", "alibaba-openb", str(path), "--out",
                                  str(tmp_path / "o.csv")])
    assert r.exit_code == 1 and "Traceback" not in r.output
    line = r.output.strip().splitlines()[-1]
    assert line.startswith(f"Error: {path}: ") and where in line
    assert not (tmp_path / "o.csv").exists()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(cells, min_size=11, max_size=11), max_size=5))
def test_openb_parser_reads_or_names_the_line(tmp_path, rows):
    path = tmp_path / "p.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(OPENB_HEADER.strip().split(","))
        w.writerows(rows)
    try:
        t = read_openb_pods(path)
    except ScenarioError as exc:
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)
        return
    assert (t.work_s > 0).all() and (np.diff(t.arrival_s) >= 0).all() and t.arrival_s[0] == 0


def test_trace_show(tmp_path):
    path = tmp_path / "t.csv"
    write_trace(sample_trace(load_scenario("classes").workload, np.random.default_rng(1)), path)
    r = CliRunner().invoke(main, ["trace", "show", str(path)])
    assert r.exit_code == 0 and "80 pods" in r.output and "Deployment" in r.output


def test_a_model_trained_on_classes_replays_an_imported_trace(tmp_path):
    """The path a user takes: train on classes-sleep, import an OpenB-format trace, benchmark the model on a
    window of it (other nodes, other pods) next to efficient-first. A small model trained from efficient-first's
    demonstrations must at least not do worse than it there (the real figure is benchmarks/classes_targets.py)."""
    import pandas as pd

    from tests.fakes import write_synthetic_openb

    runner = CliRunner()
    model = tmp_path / "m.pth"
    r = runner.invoke(main, ["train", "--model", str(model), "--scenario", "classes-sleep", "--steps", "600",
                             "--log-dir", str(tmp_path / "log"), "--set", "demo_episodes=6",
                             "--set", "pretrain_steps=300", "--set", "learning_starts=100", "--set", "hidden=32",
                             "--set", "validation_episodes=2", "--set", "checkpoint_every=300"])
    assert r.exit_code == 0, r.output
    write_synthetic_openb(tmp_path / "pods.csv", tmp_path / "nodes.csv", pods=300, seed=3)
    r = runner.invoke(main, ["trace", "import", "--format", "alibaba-openb", str(tmp_path / "pods.csv"),
                             "--node-list", str(tmp_path / "nodes.csv"), "--out", str(tmp_path / "t.csv"),
                             "--pods-per-episode", "60"])
    assert r.exit_code == 0, r.output
    scenario = tmp_path / "t.toml"
    scenario.write_text(scenario.read_text().replace("time_scale = 1.0", "time_scale = 0.0166667"))
    r = runner.invoke(main, ["benchmark", "--scenario", str(scenario), "--model", str(model), "--episodes", "4",
                             "--no-oracle", "-p", "efficient-first,dqn", "-o", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(tmp_path / "b" / "episodes.csv")
    energy = df.pivot_table(index="seed", columns="policy", values="energy_j")
    assert len(energy) == 4 and (df["pods"] == 60).all()
    assert energy["dqn"].mean() <= energy["efficient-first"].mean() * 1.01



def test_validation_at_scale_on_a_trace_is_refused_with_the_field(tmp_path):
    """A trace cannot be scaled: `--set validation_scale=4` on a trace scenario is one line naming the field and
    exit 1, before any folder is written (not an error from deep inside the scenario code)."""
    from tests.fakes import write_synthetic_openb

    write_synthetic_openb(tmp_path / "pods.csv", tmp_path / "nodes.csv", pods=200, seed=5)
    r = CliRunner().invoke(main, ["trace", "import", "--format", "alibaba-openb", str(tmp_path / "pods.csv"),
                                  "--node-list", str(tmp_path / "nodes.csv"), "--out", str(tmp_path / "t.csv"),
                                  "--pods-per-episode", "30"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["train", "--model", str(tmp_path / "m.pth"), "--scenario", str(tmp_path / "t.toml"),
                                  "--steps", "60", "--log-dir", str(tmp_path / "log"), "--set", "validation_scale=4"])
    assert r.exit_code == 1
    assert r.output.strip().splitlines()[-1] == ("Error: hyperparameter validation_scale = 4: scenario t replays a "
                                                 "trace, which cannot be scaled; use validation_scale = 1"), r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "log").exists() and not (tmp_path / "m.pth").exists()
