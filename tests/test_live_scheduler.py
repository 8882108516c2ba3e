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


def wait_for(predicate, timeout_s=60.0, every_s=0.2):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(every_s)


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
    # events and annotations are written off the scheduling path: wait for the recorder
    wait_for(lambda: scheduler.records_pending == 0 and len([e for e in events(api) if e["reason"] == "Scheduled"])
             == len(ours))
    state = pods(api)
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
        wait_for(lambda: s.records_pending == 0 and DECISION_ANNOTATION in (
            pods(api)["p"]["metadata"].get("annotations") or {}))
        warn = [e for e in events(api) if e["reason"] == "ScoringFailed"]
        assert warn and "model exploded" in warn[0]["message"] and warn[0]["type"] == "Warning"
        decision = json.loads(pods(api)["p"]["metadata"]["annotations"][DECISION_ANNOTATION])
        assert decision["policy"] == "efficient-first"
    finally:
        s.stop()


@pytest.mark.parametrize("binder", ["thread", "process"])
def test_rlsched_scheduler_run_serves_health_binds_and_stops_on_sigterm(api, tmp_path, binder):
    import os
    import signal
    import socket
    import subprocess
    import sys
    from pathlib import Path

    import requests

    kubeconfig = tmp_path / "kubeconfig"
    api.write_kubeconfig(kubeconfig, "kmock")
    make_node(api, "n", cpu="4", memory="8Gi")  # no label: its curve comes from [scheduler.node_types]
    make_node(api, "m", cpu="4", memory="8Gi", taints=[{"key": "drain-me", "effect": "NoSchedule"}])
    make_pod(api, "p", scheduler="green")
    make_pod(api, "q")  # schedulerName rlsched: not ours under the configured name
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "rlsched.toml"
    config.write_text(f'''[scheduler]
name = "green"
listen = "127.0.0.1:{port}"
default_node_type = "ml110-g4"
asleep_taints = "drain-me"
binder = "{binder}"
[scheduler.node_types]
"^n$" = "ml110-g5"
''')
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLSCHED_")}
    proc = subprocess.Popen([str(Path(sys.executable).with_name("rlsched")), "scheduler", "run", "--policy",
                             "power-greedy", "--kubeconfig", str(kubeconfig), "--config", str(config)],
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
        assert not pods(api)["q"]["spec"].get("nodeName")
        children = [int(c) for c in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        binders = [c for c in children if b"rlmodel.live.binder" in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert len(binders) == (binder == "process")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert all(not Path(f"/proc/{c}/cmdline").exists() or b"rlmodel.live.binder" not in
                   Path(f"/proc/{c}/cmdline").read_bytes() for c in binders)  # the binder ended with it
        assert proc.returncode == 0 and "stopped" in err and "Traceback" not in err, err
        assert "rlsched scheduler green" in err
        # n's curve came from the mapping; m has none and gets the configured default, with a warning
        assert "node m: no rlsched.io/node-type label" in err and "default curve ml110-g4" in err
        assert "node n:" not in err
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


def test_the_api_server_restarting_mid_run_reconnects_relists_and_binds_nothing_twice():
    first = KubeApi()
    counts: dict[str, int] = {}
    make_node(first, "n", cpu="16", memory="32Gi")
    for i in range(3):
        make_pod(first, f"before-{i}")
    s = Scheduler(CountingBinds(first.core, counts), make_policy("efficient-first"),
                  SchedulerConfig(watch_timeout_s=3, request_timeout_s=3))
    s.start()
    second = None
    try:
        wait_for(lambda: all(pods(first)[f"before-{i}"]["spec"].get("nodeName") for i in range(3)))
        bound = {name: p["spec"]["nodeName"] for name, p in pods(first).items()}
        first.stop()  # the API server goes away ...
        time.sleep(2.0)
        second = KubeApi(port=first.port)  # ... and comes back (on the same address, its state restored)
        make_node(second, "n", cpu="16", memory="32Gi")
        for name, node in bound.items():
            make_pod(second, name, nodeName=node)
        for i in range(3):
            make_pod(second, f"after-{i}")
        wait_for(lambda: all(pods(second)[f"after-{i}"]["spec"].get("nodeName") for i in range(3)), 90)
        time.sleep(1.0)
        assert counts == {**{f"before-{i}": 1 for i in range(3)}, **{f"after-{i}": 1 for i in range(3)}}
    finally:
        s.stop()
        if second is not None:
            second.stop()


def test_a_hundred_nodes_and_two_hundred_pods(api, scheduler):
    """KWOK-style: nodes are objects only. Mixed sizes, labels and taints; pods with selectors, affinity and
    tolerations, some for another scheduler. Every pod of ours that fits somewhere is bound where it fits."""
    import random

    rnd = random.Random(4)
    types = [("x3550", "12", "12Gi"), ("ml110-g5", "2", "4Gi"), ("ml110-g4", "2", "4Gi")]
    for i in range(100):
        t, cpu, mem = types[i % 3]
        taints = [{"key": "dedicated", "value": "batch", "effect": "NoSchedule"}] if i % 5 == 0 else []
        make_node(api, f"node-{i:03d}", cpu=cpu, memory=mem, taints=taints,
                  labels={"rlsched.io/node-type": t, "zone": "abc"[i % 3], "rank": str(i)})
    ours = []
    for i in range(200):
        spec = {}
        kind = i % 10
        if kind == 0:
            spec["nodeSelector"] = {"zone": "b"}
        elif kind == 1:
            spec["tolerations"] = [{"key": "dedicated", "operator": "Equal", "value": "batch"}]
        elif kind == 2:
            spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "rank", "operator": "Gt", "values": ["50"]}]}]}}}
        scheduler_name = "default-scheduler" if kind == 9 else "rlsched"
        make_pod(api, f"p{i:03d}", cpu=f"{rnd.choice([100, 250, 500, 1000])}m",
                 memory=f"{rnd.choice([128, 256, 512])}Mi", scheduler=scheduler_name, **spec)
        if scheduler_name == "rlsched":
            ours.append(f"p{i:03d}")
    scheduler.start()
    # poll gently: kmock runs in this process, and every list of 200 pods competes with the scheduler for it
    wait_for(lambda: scheduler.metrics.attempts.labels("scheduled")._value.get() >= len(ours), 300, every_s=1.0)
    wait_for(lambda: all(pods(api)[n]["spec"].get("nodeName") for n in ours), 60, every_s=1.0)
    state = pods(api)
    nodes = {n["metadata"]["name"]: n for n in json.loads(api.core.list_node(_preload_content=False).data)["items"]}
    assert all(not p["spec"].get("nodeName") for n, p in state.items() if n not in ours)
    for name, node in nodes.items():
        bound = [p for p in state.values() if p["spec"].get("nodeName") == name]
        info = node_info(node)
        assert sum(pod_requests(p)[0] for p in bound) <= info.cpu_cores + 1e-9
        assert sum(pod_requests(p)[1] for p in bound) <= info.memory_gib + 1e-9
        for p in bound:  # taints, node selector and required affinity (resources checked above)
            assert filter_node(p, (0.0, 0.0), info) is None, (p["metadata"]["name"], name)
    wait_for(lambda: scheduler.records_pending == 0, 300, every_s=1.0)
    assert len([e for e in events(api) if e["reason"] == "Scheduled"]) == len(ours)


def test_a_pod_seen_before_any_node_waits_and_binds_when_one_joins(api, scheduler):
    """An empty cluster view (the pod's event came before any node's) is 0/0 nodes, not an error."""
    make_pod(api, "early")
    scheduler.start()
    wait_for(lambda: any(e["reason"] == "FailedScheduling" and e["involvedObject"]["name"] == "early"
                         for e in events(api)))
    failed = [e["message"] for e in events(api) if e["involvedObject"]["name"] == "early"]
    assert failed[0].startswith("0/0 nodes are available")
    make_node(api, "late")
    wait_for(lambda: pods(api)["early"]["spec"].get("nodeName") == "late")


def test_binds_reuse_connections_and_stop_does_not_wait_for_a_watch(api):
    """Each Binding reply is read to the end, so its connection goes back to the pool (a new connection per pod
    would be a TLS handshake per pod on a real API server); stop() returns without waiting for the informers'
    watches to time out (SIGTERM must release the lease within the grace period)."""
    import threading

    make_node(api, "n1", cpu="16", memory="32Gi", labels={"rlsched.io/node-type": "x3550"})
    s = Scheduler(api.core, make_policy("efficient-first"), SchedulerConfig(watch_timeout_s=600))
    s.start()
    try:
        for i in range(40):
            make_pod(api, f"p{i}", cpu="100m")
        wait_for(lambda: all(p["spec"].get("nodeName") for p in pods(api).values()) and len(pods(api)) == 40)
        wait_for(lambda: s.records_pending == 0)
    finally:
        stopper = threading.Thread(target=s.stop)
        stopper.start()
        stopper.join(60)  # the watches would block for 600 s
        assert not stopper.is_alive(), "stop() waited for a watch"
    pool = api.core.api_client.rest_client.pool_manager.connection_from_url(api.url)
    # the test's own calls, two watches, lists, 40 binds and 40 events share the pool: far fewer than the binds
    assert pool.num_connections < 10, pool.num_connections


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "[::1]:0"])
def test_the_health_endpoints_listen_where_asked_ipv6_included_and_refuse_a_port_in_use(listen):
    """`serve_health` binds as `rlsched serve` does (`listen_socket`): IPv4 or IPv6, port 0 picks a free port."""
    import re
    import socket
    from types import SimpleNamespace

    import requests

    from rlmodel.errors import RlschedError
    from rlmodel.live.scheduler import SchedulerMetrics
    from rlmodel.live.service import serve_health, url_of

    if listen.startswith("["):
        try:  # whether this machine has an IPv6 loopback at all, asked of the socket module itself
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
                probe.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback here")
    sched = SimpleNamespace(ready=True, synced={"nodes": True, "pods": True}, policy=SimpleNamespace(name="p"),
                            cpu_source="requests", metrics=SchedulerMetrics())
    server = serve_health(listen, sched)
    try:
        url = url_of(server.socket)
        assert not url.endswith(":0")
        answer = requests.get(url + "/readyz", timeout=10)
        assert answer.status_code == 200 and answer.text.startswith("ready: nodes synced, pods synced, policy p")
        taken = url.rsplit("/", 1)[1]
        with pytest.raises(RlschedError, match=re.escape(f"--listen {taken}: cannot listen: Address already in use")):
            serve_health(taken, sched)
    finally:
        server.shutdown()
        server.server_close()


class _Stream:
    """A watch response as the client returns it unread: the events as JSON lines, then (`hold`) open until the
    test ends, as an idle watch is. An exception in `lines` is raised there: the connection dropping."""

    def __init__(self, lines=(), hold=None):
        self.lines, self.hold, self.status, self.closed = list(lines), hold, 200, False

    def stream(self, amt=None, decode_content=False):
        for line in self.lines:
            if isinstance(line, BaseException):
                raise line
            yield (json.dumps(line) + "\n").encode()
        if self.hold is not None:
            self.hold.wait(30)

    def close(self):
        self.closed = True

    def release_conn(self):
        pass


class _ScriptedApi:
    """list_node and list_pod_for_all_namespaces answering from a script: each call takes the next answer for its
    kind (a list's items and resourceVersion, or a watch's events); every call is recorded with its arguments."""

    def __init__(self, nodes_script, hold):
        import threading

        self.calls, self.hold, self.scripts = [], hold, {"nodes": list(nodes_script), "pods": []}
        self.lock = threading.Lock()

    def _answer(self, kind, kwargs):
        with self.lock:
            self.calls.append((kind, "watch" if kwargs.get("watch") else "list", kwargs.get("resource_version"),
                               kwargs.get("allow_watch_bookmarks"), kwargs.get("timeout_seconds")))
            step = self.scripts[kind].pop(0) if self.scripts[kind] else None
        if not kwargs.get("watch"):
            items, rv = step if step is not None else ([], "1")
            return type("Listed", (), {"data": json.dumps({"metadata": {"resourceVersion": rv}, "items": items})})()
        assert step is None or step[0] == "watch", (kind, step)
        return _Stream(step[1] if step else [], hold=self.hold if step is None else None)

    def list_node(self, **kwargs):
        return self._answer("nodes", kwargs)

    def list_pod_for_all_namespaces(self, **kwargs):
        return self._answer("pods", kwargs)


def test_the_informer_watches_on_from_the_last_resource_version_and_lists_again_only_on_410():
    """As client-go's reflector: a watch the API server ends, or whose connection drops, is made again from the
    resourceVersion of the last event or bookmark (nothing re-listed); 410 Gone or an error lists again."""
    import threading

    from urllib3.exceptions import ProtocolError

    def node(name, rv):
        return {"metadata": {"name": name, "resourceVersion": rv},
                "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}

    hold = threading.Event()
    api = _ScriptedApi([
        ([node("n1", "10")], "10"),
        ("watch", [{"type": "MODIFIED", "object": node("n1", "11")},
                   {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}}]),  # then the server ends it
        ("watch", [{"type": "ADDED", "object": node("n2", "16")}, ProtocolError("connection dropped")]),
        ("watch", [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired",
                                                "message": "too old resource version: 16 (25)"}}]),
        ([node("n1", "11"), node("n2", "16"), node("n3", "28")], "30"),
        ("watch", [{"type": "ERROR", "object": {"kind": "Status", "code": 500, "reason": "InternalError"}}]),
        ([node("n1", "11"), node("n3", "28")], "40"),  # n2 deleted while no watch was open: the list removes it
    ], hold)
    s = Scheduler(api, make_policy("least-allocated"), SchedulerConfig(watch_timeout_s=20))
    s.start_informers()
    try:
        wait_for(lambda: sum(1 for c in api.calls if c[0] == "nodes") >= 8, timeout_s=30)
        nodes = [c[1:3] for c in api.calls if c[0] == "nodes"]
        assert nodes[:8] == [("list", None), ("watch", "10"), ("watch", "15"), ("watch", "16"), ("list", None),
                             ("watch", "30"), ("list", None), ("watch", "40")]
        assert all(c[3] is True and c[4] == 20 for c in api.calls if c[1] == "watch")  # bookmarks, server timeout
        wait_for(lambda: s.synced["nodes"] and set(s.view.nodes) == {"n1", "n3"}, timeout_s=10)
        assert s.view.nodes["n1"]["metadata"]["resourceVersion"] == "11"
    finally:
        s._stop.set()
        hold.set()
