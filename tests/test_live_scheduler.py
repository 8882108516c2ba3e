"""`rlmodel.live.scheduler` against kmock as the API server: pods bound with kube-scheduler's filter semantics,
other schedulers' pods untouched, events and annotations written, unschedulable pods retried when a node
joins, unsupported constraints refused, bind conflicts and deleted pods handled without a loop."""

from __future__ import annotations

import json
import time

import pytest

from rlmodel.live.filter import filter_node, node_info
from rlmodel.live.podspec import pod_requests
from rlmodel.live.scheduler import DECISION_ANNOTATION, Scheduler, SchedulerConfig
from rlmodel.policies import make_policy
from tests.testbed import KubeApi


@pytest.fixture
def api():
    k = KubeApi()
    yield k
    k.stop()


def make_node(api, name, cpu="4", memory="8Gi", labels=None, taints=None):
    api.core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}},
                          "spec": {"taints": taints or []},
                          "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}}})


def make_pod(api, name, cpu="500m", memory="256Mi", scheduler="rlsched", **spec):
    api.core.create_namespaced_pod("default", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
        "spec": {"schedulerName": scheduler, "containers": [{"name": "c", "image": "x", "resources": {
            "requests": {"cpu": cpu, "memory": memory}}}], **spec}, "status": {"phase": "Pending"}})


def pods(api):
    return {p["metadata"]["name"]: p for p in json.loads(api.core.list_namespaced_pod(
        "default", _preload_content=False).data)["items"]}


def events(api):
    return json.loads(api.core.list_namespaced_event("default", _preload_content=False).data)["items"]


def wait_for(predicate, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.fixture
def scheduler(api):
    s = Scheduler(api.core, make_policy("efficient-first"),
                  SchedulerConfig(backoff_initial_s=0.2, backoff_max_s=1.0, watch_timeout_s=5))
    yield s
    s.stop()


def test_every_pod_of_ours_is_bound_where_it_fits_and_others_are_untouched(api, scheduler):
    make_node(api, "big", cpu="12", memory="12Gi", labels={"rlsched.io/node-type": "x3550", "zone": "a"})
    make_node(api, "small", cpu="2", memory="4Gi", labels={"rlsched.io/node-type": "ml110-g5", "zone": "b"})
    make_node(api, "gpu", cpu="8", memory="16Gi", labels={"rlsched.io/node-type": "x3550"},
              taints=[{"key": "gpu", "value": "yes", "effect": "NoSchedule"}])
    for i in range(18):
        make_pod(api, f"ours-{i}", cpu=f"{300 + 100 * (i % 5)}m", memory=f"{256 * (1 + i % 3)}Mi")
    make_pod(api, "zone-b", nodeSelector={"zone": "b"})
    make_pod(api, "tolerant", cpu="6", tolerations=[{"key": "gpu", "operator": "Exists"}])
    for i in range(4):
        make_pod(api, f"theirs-{i}", scheduler="default-scheduler")
    scheduler.start()
    ours = [f"ours-{i}" for i in range(18)] + ["zone-b", "tolerant"]
    wait_for(lambda: all(pods(api)[n]["spec"].get("nodeName") for n in ours))
    state = pods(api)
    assert all(not state[f"theirs-{i}"]["spec"].get("nodeName") for i in range(4))  # not ours
    assert state["zone-b"]["spec"]["nodeName"] == "small"
    nodes = {n["metadata"]["name"]: n for n in json.loads(api.core.list_node(_preload_content=False).data)["items"]}
    # independent check: per node, the requests of the pods bound there fit its allocatable; taints respected
    for name, node in nodes.items():
        bound = [p for p in state.values() if p["spec"].get("nodeName") == name]
        cpu = sum(pod_requests(p)[0] for p in bound)
        mem = sum(pod_requests(p)[1] for p in bound)
        info = node_info(node)
        assert cpu <= info.cpu_cores + 1e-9 and mem <= info.memory_gib + 1e-9, name
        for p in bound:
            assert filter_node(p, (0.0, 0.0), node_info(node)) is None or name != "gpu" or \
                p["metadata"]["name"] == "tolerant"
    assert all(p["spec"]["nodeName"] != "gpu" for n, p in state.items() if n != "tolerant" and n in ours)
    decision = json.loads(state["ours-0"]["metadata"]["annotations"][DECISION_ANNOTATION])
    assert decision["policy"] == "efficient-first" and decision["node"] == state["ours-0"]["spec"]["nodeName"]
    scheduled = [e for e in events(api) if e["reason"] == "Scheduled"]
    assert len(scheduled) == len(ours)
    assert all(e["source"]["component"] == "rlsched" and e["type"] == "Normal" for e in scheduled)
    assert scheduler.metrics.attempts.labels("scheduled")._value.get() == len(ours)


def test_unsupported_and_unschedulable_pods_wait_and_are_retried_when_a_node_joins(api, scheduler):
    make_node(api, "small", cpu="2", memory="4Gi")
    make_pod(api, "spread", topologySpreadConstraints=[{"maxSkew": 1, "topologyKey": "zone",
                                                        "whenUnsatisfiable": "DoNotSchedule"}])
    make_pod(api, "huge", cpu="6")
    scheduler.start()
    wait_for(lambda: {e["involvedObject"]["name"] for e in events(api) if e["reason"] == "FailedScheduling"}
             >= {"spread", "huge"})
    failed = {e["involvedObject"]["name"]: e["message"] for e in events(api) if e["reason"] == "FailedScheduling"}
    assert "spec.topologySpreadConstraints[0]" in failed["spread"]
    assert failed["huge"] == "0/1 nodes are available: 1 Insufficient cpu."
    assert not pods(api)["huge"]["spec"].get("nodeName")
    make_node(api, "big", cpu="12", memory="12Gi")  # a node joins: the waiting pod is retried and bound
    wait_for(lambda: pods(api)["huge"]["spec"].get("nodeName") == "big")
    time.sleep(1.5)
    assert not pods(api)["spread"]["spec"].get("nodeName")  # never placed while ignoring its constraint


class Conflicting:
    """The API client, but another actor gets there first: at the moment of our Binding, another scheduler binds
    the pod (409 for us) or someone deletes it (404 for us)."""

    def __init__(self, core, status):
        self._core, self.status, self.binds = core, status, 0

    def create_namespaced_pod_binding(self, name, namespace, body, **kwargs):
        from kubernetes.client.exceptions import ApiException

        self.binds += 1
        if self.status == 409:
            self._core.create_namespaced_pod_binding(name, namespace, {**body, "target": {
                "apiVersion": "v1", "kind": "Node", "name": "other"}}, _preload_content=False)
        else:
            self._core.delete_namespaced_pod(name, namespace)
        raise ApiException(status=self.status, reason="Conflict" if self.status == 409 else "Not Found")

    def __getattr__(self, name):
        return getattr(self._core, name)


@pytest.mark.parametrize("status,result", [(409, "conflict"), (404, "gone")])
def test_a_bind_conflict_or_a_deleted_pod_ends_the_attempt_without_a_loop(api, status, result):
    make_node(api, "n", cpu="4", memory="8Gi")
    make_pod(api, "p")
    core = Conflicting(api.core, status)
    # short watches: the informers list again several times while we wait, and must not bring the pod back
    s = Scheduler(core, make_policy("efficient-first"), SchedulerConfig(backoff_initial_s=0.1, watch_timeout_s=1))
    s.start()
    try:
        wait_for(lambda: s.metrics.attempts.labels(result)._value.get() >= 1)
        time.sleep(3.0)
        assert core.binds == 1  # not retried: someone else owns the pod, or it is gone
        assert ("default", "p") not in s.view.assumed  # the assumption was forgotten
    finally:
        s.stop()


class Broken:
    name = "broken"

    def reset(self, seed=None):
        pass

    def predict(self, obs, mask):
        raise RuntimeError("model exploded")


def test_a_failing_policy_falls_back_with_an_event_and_a_metric(api):
    make_node(api, "n", cpu="4", memory="8Gi")
    make_pod(api, "p")
    s = Scheduler(api.core, Broken(), SchedulerConfig(watch_timeout_s=5))
    s.start()
    try:
        wait_for(lambda: pods(api)["p"]["spec"].get("nodeName") == "n")
        assert s.metrics.fallbacks._value.get() == 1
        warn = [e for e in events(api) if e["reason"] == "ScoringFailed"]
        assert warn and "model exploded" in warn[0]["message"] and warn[0]["type"] == "Warning"
        decision = json.loads(pods(api)["p"]["metadata"]["annotations"][DECISION_ANNOTATION])
        assert decision["policy"] == "efficient-first"
    finally:
        s.stop()


def test_rlsched_scheduler_run_serves_health_binds_and_stops_on_sigterm(api, tmp_path):
    import os
    import signal
    import socket
    import subprocess
    import sys
    from pathlib import Path

    import requests

    kubeconfig = tmp_path / "kubeconfig"
    api.write_kubeconfig(kubeconfig, "kmock")
    make_node(api, "n", cpu="4", memory="8Gi", labels={"rlsched.io/node-type": "x3550"})
    make_pod(api, "p")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLSCHED_")}
    proc = subprocess.Popen([str(Path(sys.executable).with_name("rlsched")), "scheduler", "run", "--policy",
                             "power-greedy", "--kubeconfig", str(kubeconfig), "--listen", f"127.0.0.1:{port}"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        def ready():
            try:
                return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(ready, 60)
        assert "CPU in use from requests" in requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).text
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).text == "ok\n"
        wait_for(lambda: pods(api)["p"]["spec"].get("nodeName") == "n")
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        assert 'rlsched_scheduler_attempts_total{result="scheduled"} 1.0' in metrics
        assert "rlsched_scheduler_e2e_duration_seconds_bucket" in metrics
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "stopped" in err and "Traceback" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_new_model_file_is_picked_up_and_a_corrupt_one_refused(api, tmp_path):
    from rlmodel.agents.dqn import DQNConfig, train
    from rlmodel.agents.policy import DQNPolicy
    from rlmodel.live.service import ModelReloader
    from rlmodel.sim import load_scenario

    path = tmp_path / "m.pth"
    small = dict(total_steps=200, learning_starts=50, buffer_size=500, batch_size=16, hidden=16, demo_episodes=2,
                 pretrain_steps=20, checkpoint_every=200, validation_episodes=0)
    train(DQNConfig(seed=1, **small), load_scenario("tiny"), path)
    s = Scheduler(api.core, DQNPolicy.load(path), SchedulerConfig())
    first = s.policy
    reloader = ModelReloader(path, s, DQNPolicy.load, poll_s=0.1)
    reloader.start()
    try:
        train(DQNConfig(seed=2, **small), load_scenario("tiny"), tmp_path / "m2.pth")
        (tmp_path / "m2.pth").replace(path)  # a new model arrives atomically
        wait_for(lambda: reloader.reloads == 1, 10)
        assert s.policy is not first
        serving = s.policy
        path.write_bytes(b"not a model")  # a corrupt file: refused, the previous model keeps serving
        wait_for(lambda: reloader.refused == 1, 10)
        assert s.policy is serving
    finally:
        reloader.stop()


class CountingBinds:
    """The API client, counting Bindings per pod across replicas."""

    def __init__(self, core, counts):
        self._core, self.counts = core, counts

    def create_namespaced_pod_binding(self, name, namespace, body, **kwargs):
        self.counts[name] = self.counts.get(name, 0) + 1
        return self._core.create_namespaced_pod_binding(name, namespace, body, **kwargs)

    def __getattr__(self, name):
        return getattr(self._core, name)


def test_two_replicas_with_leader_election_bind_every_pod_exactly_once(api):
    from rlmodel.live.leader import LeaderElector

    make_node(api, "n", cpu="16", memory="32Gi")
    counts: dict[str, int] = {}

    def replica():
        elector = LeaderElector(api.coordination, "default", lease_duration_s=3, renew_every_s=0.3)
        return Scheduler(CountingBinds(api.core, counts), make_policy("efficient-first"),
                         SchedulerConfig(watch_timeout_s=5), leader=elector), elector

    a, ea = replica()
    a.start()
    wait_for(lambda: ea.is_leader, 20)
    b, eb = replica()
    b.start()
    try:
        for i in range(8):
            make_pod(api, f"first-{i}")
        wait_for(lambda: all(pods(api)[f"first-{i}"]["spec"].get("nodeName") for i in range(8)))
        assert not eb.is_leader
        a.stop()  # the leader leaves and releases the lease: the other replica takes over
        wait_for(lambda: eb.is_leader, 20)
        for i in range(8):
            make_pod(api, f"second-{i}")
        wait_for(lambda: all(pods(api)[f"second-{i}"]["spec"].get("nodeName") for i in range(8)))
        time.sleep(1.0)
        assert counts == {name: 1 for name in counts} and len(counts) == 16  # every pod bound exactly once
        lease = api.coordination.read_namespaced_lease("rlsched-scheduler", "default")
        assert lease.spec.holder_identity == eb.identity and lease.spec.lease_transitions >= 1
    finally:
        a.stop()
        b.stop()
