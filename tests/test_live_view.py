"""The live cluster view gives a model the observation the twin gives it for the same cluster state."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rlmodel.agents.features import node_features
from rlmodel.envs import PodPlacementEnv
from rlmodel.envs.observation import ObservationBuilder
from rlmodel.live.filter import filter_nodes, node_info
from rlmodel.live.podspec import pod_requests
from rlmodel.live.view import ClusterView, CurveResolver, ViewError
from rlmodel.policies import make_policy
from rlmodel.sim.scenario import parse_scenario

# requests are what pods use (the live view estimates CPU in use from requests), nodes always on
SCENARIO = """
[[node_types]]
name = "x3550"
count = 2
[[node_types]]
name = "ml110-g4"
count = 2
[[node_types]]
name = "ml110-g5"
count = 2
[workload]
pods_per_episode = 40
mean_interarrival_s = 15
usage_of_request = [1.0, 1.0]
"""


CLASSES = SCENARIO.replace("""pods_per_episode = 40
mean_interarrival_s = 15""", """pods_per_episode = 60
mean_interarrival_s = 25""") + """
[[workload.classes]]
name = "svc"
owner_kind = "Deployment"
cpu_limit_of_request = 1
memory_limit_of_request = 1
priority = 1000
replicas = {dist = "choice", values = [1, 2]}
workloads = 2
duration_s = {dist = "lognormal", median = 900, sigma = 0.3}
duration_spread = 0.1
[[workload.classes]]
name = "job"
owner_kind = "Job"
weight = 2
replicas = {dist = "choice", values = [1, 3]}
workloads = 3
duration_s = {dist = "lognormal", median = 120, sigma = 0.8}
duration_spread = 0.1
[[workload.classes]]
name = "cron"
owner_kind = "CronJob"
priority = -5
workloads = 1
duration_s = [30, 60]
"""
T0 = 1_800_000_000.0  # Unix time of the twin's t = 0


def rfc3339(t: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(T0 + t, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def node_object(name: str, type_name: str, cores: float, gib: float) -> dict:
    return {"metadata": {"name": name, "labels": {"rlsched.io/node-type": type_name}}, "spec": {},
            "status": {"allocatable": {"cpu": f"{round(cores * 1000)}m", "memory": f"{round(gib * 1024)}Mi",
                                       "pods": "110"}}}


def pod_object(i: int, cpu: float, gib: float, node: str | None = None, trace=None) -> dict:
    pod = {"metadata": {"name": f"p{i}", "namespace": "default"},
           "spec": {"schedulerName": "rlsched", "nodeName": node, "containers": [{"name": "c", "resources": {
               "requests": {"cpu": f"{round(cpu * 1000)}m", "memory": f"{round(gib * 1024)}Mi"}}}]},
           "status": {"phase": "Running" if node else "Pending"}}
    if trace is not None:  # what a controller would have set: owner, QoS, priority, creation time
        from rlmodel.sim.podtrace import OWNER_KINDS, QOS_CLASSES

        kind, w = OWNER_KINDS[int(trace.owner_kind[i])], int(trace.workload[i])
        owner = {"Deployment": ("ReplicaSet", f"w{w}-5d8f7c9b4"), "Job": ("Job", f"w{w}"),
                 "CronJob": ("Job", f"w{w}-29384721")}.get(kind)
        if owner is not None:
            pod["metadata"]["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "controller": True}]
            pod["metadata"]["labels"] = {"pod-template-hash": "5d8f7c9b4"}
        pod["metadata"]["creationTimestamp"] = rfc3339(float(trace.arrival_s[i]))
        pod["status"]["qosClass"] = QOS_CLASSES[int(trace.qos[i])]
        pod["spec"]["priority"] = int(trace.priority[i])
    return pod


@pytest.mark.parametrize(("policy_name", "scenario_text"), [
    ("efficient-first", SCENARIO), ("power-greedy", SCENARIO), ("least-allocated", SCENARIO),
    ("efficient-first", CLASSES), ("runtime-aware", CLASSES)])
def test_the_live_observation_equals_the_twins_at_every_decision(policy_name, scenario_text):
    """Nodes, pod, signals and history: the view fed the twin's pods as Kubernetes objects (owner references,
    QoS, priority, creation, start and finish times) builds the twin's observation at every decision."""
    sc = parse_scenario(scenario_text, name="live", source="live.toml")
    env = PodPlacementEnv(sc)
    policy = make_policy(policy_name)
    obs, info = env.reset(seed=7)
    policy.reset(seed=7)
    sim, trace = env.sim, env.trace
    view = ClusterView()
    names = [f"n{k:03d}" for k in range(sim.num_nodes)]  # sorted like the twin's node order
    for name, t in zip(names, sc.node_types, strict=True):
        view.upsert_node(node_object(name, t.name, t.cpu_cores, t.memory_gib), now_s=0.0)
    decisions = 0
    done = False
    seen: set[int] = set()
    history_used = 0
    while not done:
        i = env.pod_index
        now = sim.now_s
        # what finished in the twin since the last decision: Succeeded (finishedAt), then deleted, at its finish time
        for pod in sorted(range(i), key=lambda p: (np.nan_to_num(sim.finish_s[p], nan=np.inf), p)):  # in time order
            finished = sim.finish_s[pod]
            if sim.node_of[pod] >= 0 and not np.isnan(finished) and ("default", f"p{pod}") in view.pods:
                done_pod = pod_object(pod, float(trace.cpu_request_cores[pod]), float(trace.memory_request_gib[pod]),
                                      names[sim.node_of[pod]], trace)
                done_pod["status"].update(phase="Succeeded", startTime=rfc3339(float(sim.start_s[pod])),
                                          containerStatuses=[{"name": "c", "state": {"terminated": {
                                              "finishedAt": rfc3339(float(finished))}}}])
                view.upsert_pod(done_pod, now_s=float(finished))
                view.delete_pod("default", f"p{pod}", now_s=float(finished))
        # the pods created so far and not placed yet are pending (a batch is created at once)
        for pod in range(i, len(trace)):
            if trace.arrival_s[pod] > now:
                break
            if pod not in seen:
                seen.add(pod)
                view.upsert_pod(pod_object(pod, float(trace.cpu_request_cores[pod]),
                                           float(trace.memory_request_gib[pod]), trace=trace), now_s=now)
        pending = pod_object(i, float(trace.cpu_request_cores[i]), float(trace.memory_request_gib[i]), trace=trace)
        infos = view.node_infos()
        feasible, _ = filter_nodes(pending, pod_requests(pending), infos)
        mask = np.zeros(len(infos), dtype=bool)
        mask[feasible] = True
        assert np.array_equal(mask, info["action_mask"])  # the live filter = the twin's NodeResourcesFit
        twin_signals, live_signals = env.pod_signals(i), view.signals(pending)
        assert dataclasses.replace(live_signals, workload_mean_run_s=0) == \
            dataclasses.replace(twin_signals, workload_mean_run_s=0)
        assert live_signals.workload_mean_run_s == pytest.approx(twin_signals.workload_mean_run_s, abs=1e-5)
        history_used += twin_signals.workload_completed > 0
        state = view.state(now, infos)
        live = ObservationBuilder(state).build(state, (float(trace.cpu_request_cores[i]),
                                                       float(trace.memory_request_gib[i]), i / len(trace)), mask,
                                               live_signals)
        # equal but for one twin detail: a twin pod's usage is the factor (1.0 here) times its request before
        # the request was rounded to millicores, the live view counts the stored requests: < 0.5 millicore a pod
        np.testing.assert_allclose(live["nodes"], obs["nodes"], rtol=5e-4, atol=1e-3)
        np.testing.assert_allclose(live["pod"], obs["pod"], rtol=1e-6)
        np.testing.assert_allclose(node_features(live), node_features(obs), rtol=5e-4, atol=1e-3)
        action = policy.predict(obs, info["action_mask"])
        # the policy scores the live observation as the twin's: its choice is among the live best (ties are
        # broken at random by the policy, so compare the scores, not one draw)
        twin_scores = np.where(mask, policy.scores(obs, mask), -np.inf)
        live_scores = np.where(mask, policy.scores(live, mask), -np.inf)
        np.testing.assert_allclose(live_scores, twin_scores, rtol=1e-3, atol=1e-2)
        assert live_scores[action] >= live_scores.max() - 1e-2
        obs, _, done, _, info = env.step(action)
        if sim.node_of[i] >= 0:
            bound = pod_object(i, float(trace.cpu_request_cores[i]), float(trace.memory_request_gib[i]), names[action],
                               trace)
            bound["status"]["startTime"] = rfc3339(float(sim.start_s[i]))
            view.upsert_pod(bound, now_s=now)
        decisions += 1
    assert decisions > 30
    if scenario_text is CLASSES:
        assert history_used > 10  # the workload history was there to compare


def test_nodes_without_a_known_type_get_the_default_curve_and_a_warning(caplog):
    resolver = CurveResolver(patterns=[("^gpu-", "ml110-g5")], default="x3550")
    view = ClusterView(resolver)
    view.upsert_node(node_object("gpu-1", "unknown-type", 2, 4), 0.0)
    n = node_object("plain", "x", 12, 12)
    del n["metadata"]["labels"]["rlsched.io/node-type"]
    view.upsert_node(n, 0.0)
    state = view.state(10.0)
    assert [t.name for t in state.node_types] == ["ml110-g5", "x3550"]
    assert "plain" in caplog.text and "default curve x3550" in caplog.text
    with pytest.raises(ViewError, match="unknown node type"):
        CurveResolver(patterns=[(".*", "nope")])


def test_an_autoscaler_taint_marks_a_node_asleep_and_assume_counts_at_once():
    view = ClusterView()
    node = node_object("a", "x3550", 12, 12)
    node["spec"]["taints"] = [{"key": "ToBeDeletedByClusterAutoscaler", "effect": "NoSchedule"}]
    view.upsert_node(node, 0.0)
    view.upsert_node(node_object("b", "x3550", 12, 12), 0.0)
    assert list(view.state(1.0).state) == [1, 0]
    view.upsert_pod(pod_object(1, 2.0, 1.0), 1.0)
    view.assume("default", "p1", "b")
    assert view.node_infos()[1].cpu_requested == pytest.approx(2.0)
    view.forget("default", "p1")
    assert view.node_infos()[1].cpu_requested == 0.0
    assert node_info(node).taints[0].key == "ToBeDeletedByClusterAutoscaler"


def test_the_cached_arrays_give_the_same_state_as_the_node_by_node_path():
    view = ClusterView(asleep_labels=["sleeping"])
    for k, t in enumerate(["x3550", "ml110-g4", "ml110-g5", "x3550"]):
        n = node_object(f"n{k}", t, 4 + k, 8)
        if k == 2:
            n["metadata"]["labels"]["sleeping"] = "yes"
        view.upsert_node(n, now_s=float(k))
    for i in range(7):
        view.upsert_pod(pod_object(i, 0.25 * (i + 1), 0.5, node=f"n{i % 3}"), now_s=10.0 + i)
    view.delete_pod("default", "p5", now_s=30.0)  # n2 keeps p2; n1 keeps p1 and p4
    view.upsert_pod(pod_object(9, 1.0, 1.0), now_s=31.0)
    view.assume("default", "p9", "n3")
    view.set_cpu_used({"n0": 1.5, "n3": 0.2}, now_s=32.0)
    fast = view.state(40.0)
    slow = view._state_of(40.0, list(view.node_infos()))
    for name in ("names", "cpu_requested", "mem_requested", "demand", "pods_on", "state", "empty_since", "watts"):
        assert list(getattr(fast, name)) == pytest.approx(list(getattr(slow, name))), name
    assert fast.demand[0] == 1.5 and fast.demand[1] == pytest.approx(0.5 + 1.25)  # measured, else requests
    assert view.state(40.0 + view.usage_max_age_s + 1).demand[0] == pytest.approx(0.25 + 1.0 + 1.75)  # stale
    for name in ("cores", "memory_gib", "idle_watts", "peak_watts", "curves"):
        assert np.array_equal(getattr(fast, name), getattr(slow, name)), name
    # a subset in any order (the extender's node names): the arrays of those nodes, as the slow path gives them
    names = ["n3", "n0", "n2"]
    part = view.state(40.0, statics=view.subset(names))
    slow = view._state_of(40.0, [view.node_infos()[view.statics().position[n]] for n in names])
    for name in ("names", "cpu_requested", "mem_requested", "demand", "pods_on", "state", "empty_since", "watts"):
        assert list(getattr(part, name)) == pytest.approx(list(getattr(slow, name))), name
    for name in ("cores", "memory_gib", "idle_watts", "peak_watts", "curves"):
        assert np.array_equal(getattr(part, name), getattr(slow, name)), name
    with pytest.raises(KeyError):
        view.subset(["n0", "nope"])


def test_a_heartbeat_keeps_the_node_arrays_and_a_real_change_rebuilds_them():
    """Kubelets rewrite their Node every few seconds (conditions, heartbeat times), and a watch without a
    resourceVersion replays every object as ADDED: neither changes what a decision reads, so the per-node arrays
    (O(nodes) to rebuild) stay; a change to capacity, labels, taints or cordon rebuilds them."""
    view = ClusterView()
    for k in range(3):
        view.upsert_node(node_object(f"n{k}", "x3550", 12, 12), 0.0)
    view.upsert_pod(pod_object(1, 2.0, 1.0, node="n1"), 1.0)
    st = view.statics()
    before = view.state(5.0)
    beat = node_object("n1", "x3550", 12, 12)
    beat["status"]["conditions"] = [{"type": "Ready", "status": "True", "lastHeartbeatTime": rfc3339(4.0)}]
    view.upsert_node(beat, 4.0)
    assert view.statics() is st and view.nodes["n1"] is beat  # the newest object is kept, the arrays too
    after = view.state(5.0)
    for name in ("cpu_requested", "mem_requested", "pods_on", "state", "watts", "cores"):
        assert np.array_equal(getattr(after, name), getattr(before, name)), name
    view.upsert_pod(pod_object(2, 1.0, 1.0, node="n1"), 6.0)  # the totals still follow the kept node's pods
    assert view.state(7.0).cpu_requested[1] == pytest.approx(3.0)
    bigger = node_object("n1", "x3550", 16, 12)
    tainted = node_object("n2", "x3550", 12, 12)
    tainted["spec"]["taints"] = [{"key": "ToBeDeletedByClusterAutoscaler", "effect": "NoSchedule"}]
    relabelled = node_object("n0", "ml110-g4", 12, 12)
    cordoned = node_object("n0", "ml110-g4", 12, 12)
    cordoned["spec"]["unschedulable"] = True
    fewer_pods = node_object("n0", "ml110-g4", 12, 12)
    fewer_pods["spec"]["unschedulable"] = True
    fewer_pods["status"]["allocatable"]["pods"] = "20"
    for changed in (bigger, tainted, relabelled, cordoned, fewer_pods):
        st = view.statics()
        view.upsert_node(changed, 8.0)
        assert view.statics() is not st, changed["metadata"]["name"]
    state = view.state(9.0)
    assert state.cores[1] == 16.0 and state.cpu_requested[1] == pytest.approx(3.0)
    assert list(state.state) == [0, 0, 1]  # n2 asleep by its taint
    assert view.statics().types[0].name == "ml110-g4" and bool(view.statics().hard[0])
    assert view.statics().max_pods[0] == 20


def test_pod_signals_from_kubernetes_objects():
    from rlmodel.live.signals import owner_of, qos_of, run_time_s
    from rlmodel.sim.podtrace import OWNER_KINDS, QOS_CLASSES

    def pod(refs=None, labels=None, containers=None, status=None):
        return {"metadata": {"name": "p", "namespace": "ns", "ownerReferences": refs or [], "labels": labels or {}},
                "spec": {"containers": containers or [{"name": "c"}]}, "status": status or {}}

    rs = [{"kind": "ReplicaSet", "name": "web-5d8f7c9b4", "controller": True}]
    assert owner_of(pod(rs, {"pod-template-hash": "5d8f7c9b4"})) == (OWNER_KINDS.index("Deployment"),
                                                                      ("ns", "Deployment", "web"))
    assert owner_of(pod([{"kind": "Job", "name": "backup-29384721", "controller": True}]))[1] == \
        ("ns", "CronJob", "backup")
    assert owner_of(pod([{"kind": "Job", "name": "train-7", "controller": True}]))[1] == ("ns", "Job", "train-7")
    assert owner_of(pod([{"kind": "DaemonSet", "name": "x", "controller": True}]))[0] == OWNER_KINDS.index("Other")
    assert owner_of(pod()) == (OWNER_KINDS.index("Pod"), None)
    assert qos_of(pod()) == QOS_CLASSES.index("BestEffort")
    both = {"cpu": "1", "memory": "1Gi"}
    guaranteed = QOS_CLASSES.index("Guaranteed")
    assert qos_of(pod(containers=[{"resources": {"requests": both, "limits": both}}])) == guaranteed
    assert qos_of(pod(containers=[{"resources": {"limits": both}}])) == QOS_CLASSES.index("Guaranteed")
    assert qos_of(pod(containers=[{"resources": {"requests": both}}])) == QOS_CLASSES.index("Burstable")
    assert qos_of(pod(status={"qosClass": "BestEffort"}, containers=[{"resources": {"requests": both}}])) == 0
    done = pod(status={"startTime": "2026-01-01T00:00:00Z", "containerStatuses": [
        {"state": {"terminated": {"finishedAt": "2026-01-01T00:01:30Z"}}},
        {"state": {"terminated": {"finishedAt": "2026-01-01T00:02:00Z"}}}]})
    assert run_time_s(done) == 120.0
    assert run_time_s(pod(status={"startTime": "2026-01-01T00:00:00Z"}), ended_s=1767225610.0) == 10.0
    assert run_time_s(pod()) is None


def test_view_history_counts_deleted_and_succeeded_pods_once():
    view = ClusterView()
    ref = [{"kind": "Job", "name": "etl", "controller": True}]

    def job_pod(name, start, end=None):
        p = {"metadata": {"name": name, "namespace": "d", "ownerReferences": ref,
                          "creationTimestamp": "2026-01-01T00:00:00Z"},
             "spec": {"containers": [{"name": "c"}]},
             "status": {"phase": "Running", "startTime": start}}
        if end:
            p["status"].update(phase="Succeeded", containerStatuses=[{"state": {"terminated": {"finishedAt": end}}}])
        return p

    view.upsert_pod(job_pod("a", "2026-01-01T00:00:00Z"), 0.0)
    view.upsert_pod(job_pod("b", "2026-01-01T00:00:00Z"), 0.0)
    assert view.signals(job_pod("b", "2026-01-01T00:00:00Z")).replicas == 2
    view.upsert_pod(job_pod("a", "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"), 60.0)
    view.upsert_pod(job_pod("a", "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"), 61.0)  # a replayed event
    view.delete_pod("d", "a", 62.0)
    s = view.signals(job_pod("c", "2026-01-01T00:00:00Z"))
    assert (s.workload_completed, s.workload_mean_run_s) == (1, 60.0)
    view.delete_pod("d", "b", 1767225780.0)  # deleted while running: ran from its start to the deletion
    s = view.signals(job_pod("c", "2026-01-01T00:00:00Z"))
    assert (s.workload_completed, s.workload_mean_run_s) == (2, (60.0 + 180.0) / 2)
