"""`rlsched serve` under a real uvicorn: /schedule with the bidding scheduler's body, the kube-scheduler extender
verbs in kube-scheduler's wire format (both node-cache modes) agreeing with the live scheduler, bounded input
(400 naming the field, never a 500), fallback and hot reload, the Swagger UI in a real headless Chromium."""

from __future__ import annotations

import copy
import json
import re
import shutil
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
import schemathesis
import urllib3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlmodel.live.api import ServeLimits, ServeState, create_app, extender_scores
from rlmodel.live.filter import filter_nodes, node_info
from rlmodel.live.podspec import ObjectError, pod_requests, resources
from rlmodel.live.scheduler import Scheduler, SchedulerConfig
from rlmodel.live.view import ClusterView
from rlmodel.live.wire import ClientError, NodeCache, decode_args
from rlmodel.policies import make_policy
from rlmodel.sim.power import BUILTIN_NODE_TYPES

FIXTURES = Path(__file__).with_name("fixtures")
JSON = {"Content-Type": "application/json"}
# The bidding scheduler's README example, verbatim.
BIDDING_EXAMPLE = """{
  "cpu_request": 4.0,
  "memory_request": 8.0,
  "node_states": [
    {"node_id": "node-0", "cpu_available": 110.0, "memory_available": 20.0},
    {"node_id": "node-1", "cpu_available": 50.0, "memory_available": 10.0}
  ]
}"""


class Server:
    """uvicorn serving the app on a free loopback port, in a thread."""

    def __init__(self, state: ServeState):
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.state = state
        self.app = create_app(state)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)

    def post(self, path: str, body, **kw) -> requests.Response:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return requests.post(self.url + path, data=data, headers={"Content-Type": "application/json"}, timeout=30,
                             **kw)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def state(policy="efficient-first", **kw) -> ServeState:
    return ServeState(policy=make_policy(policy), fallback=make_policy("least-allocated"), **kw)


@pytest.fixture
def server():
    s = Server(state())
    yield s
    s.stop()


def kube_node(name: str, cpu: str, memory: str, labels=None, taints=None, requested=None) -> dict:
    """A v1.Node as kube-scheduler serializes it (from the fixture, renamed and resized)."""
    node = json.loads((FIXTURES / "v1-node.json").read_text())
    node["metadata"]["name"] = name
    node["metadata"]["labels"]["kubernetes.io/hostname"] = name
    node["metadata"]["labels"].update(labels or {})
    node["status"]["allocatable"].update({"cpu": cpu, "memory": memory})
    node["status"]["capacity"].update({"cpu": cpu, "memory": memory})
    node["spec"]["taints"] = taints or []
    if requested:
        node["metadata"]["annotations"].update(requested)
    return node


def kube_pod(cpu: str = "500m", memory: str = "512Mi", **spec) -> dict:
    pod = json.loads((FIXTURES / "v1-pod.json").read_text())
    pod["spec"]["containers"][0]["resources"]["requests"] = {"cpu": cpu, "memory": memory}
    pod["spec"].update(spec)
    return pod


def cluster():
    return [
        kube_node("big", "32", "128Gi", labels={"rlsched.io/node-type": "x3550"}),
        kube_node("mid", "8", "16Gi", labels={"rlsched.io/node-type": "ml110-g5", "zone": "b"}),
        kube_node("small", "4", "8Gi", labels={"rlsched.io/node-type": "ml110-g4", "zone": "a"}),
        kube_node("tainted", "16", "32Gi", labels={"rlsched.io/node-type": "x3550"},
                  taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
        kube_node("full", "4", "8Gi", labels={"rlsched.io/node-type": "ml110-g4"},
                  requested={"rlsched.io/cpu-requested": "3800m", "rlsched.io/memory-requested": "1Gi"}),
    ]


# ------------------------------------------------------------------------------------------ /schedule
def test_the_bidding_schedulers_example_body_verbatim(server):
    r = server.post("/schedule", BIDDING_EXAMPLE)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["scheduled_node"] in ("node-0", "node-1") and set(body["bids"]) == {"node-0", "node-1"}
    assert body["policy"] == "efficient-first" and any("default curve" in w for w in body["warnings"])
    nothing = json.loads(BIDDING_EXAMPLE)
    nothing["cpu_request"] = 500.0
    r = server.post("/schedule", nothing)
    assert r.status_code == 200 and r.json()["scheduled_node"] is None and "0/2 nodes" in r.json()["reason"]


def test_the_richer_body_uses_curves_and_state(server):
    flat = [50.0] * 11
    steep = [10.0 + 30.0 * k for k in range(11)]
    body = {"cpu_request": 1.0, "memory_request": 1.0, "node_states": [
        {"node_id": "a", "cpu_available": 6, "memory_available": 10, "cpu_capacity": 8, "memory_capacity": 16,
         "cpu_used": 2.0, "watts": steep},
        {"node_id": "b", "cpu_available": 6, "memory_available": 10, "cpu_capacity": 8, "memory_capacity": 16,
         "cpu_used": 2.0, "watts": flat},
        {"node_id": "c", "cpu_available": 8, "memory_available": 16, "cpu_capacity": 8, "memory_capacity": 16,
         "node_type": "x3550", "asleep": True}]}
    r = server.post("/schedule", body)
    assert r.status_code == 200, r.text
    # efficient-first: the cheapest extra watts for the pod among awake nodes; b's curve is flat
    assert r.json()["scheduled_node"] == "b" and r.json()["warnings"] == []
    bad = copy.deepcopy(body)
    bad["node_states"][0]["cpu_available"] = 9
    assert "node_states[0].cpu_available" in server.post("/schedule", bad).json()["detail"]
    bad = copy.deepcopy(body)
    bad["node_states"][1]["node_type"], bad["node_states"][1]["watts"] = "nope", None
    assert "node_states[1].node_type: unknown type" in server.post("/schedule", bad).json()["detail"]


# ------------------------------------------------------------------------------------------ extender
def extender_args(nodes, pod, cache_capable: bool) -> dict:
    if cache_capable:
        return {"Pod": pod, "Nodes": None, "NodeNames": [n["metadata"]["name"] for n in nodes]}
    return {"Pod": pod, "Nodes": {"items": nodes}, "NodeNames": None}


def live_choice(nodes, pod, policy) -> str:
    """What `rlsched scheduler` binds for this pod on this cluster (one decision, bind recorded)."""
    bound = {}

    class Core:
        def create_namespaced_pod_binding(self, name, namespace, body, **kw):
            bound["node"] = body["target"]["name"]
            return urllib3.HTTPResponse(body=b"{}", status=201, preload_content=False)  # as the client returns it

        def create_namespaced_event(self, *a, **k):
            pass

    sched = Scheduler(Core(), policy, SchedulerConfig(scheduler_name="default-scheduler"))
    with sched.lock:
        for n in nodes:
            sched.view.upsert_node(n, 0.0)
        p = copy.deepcopy(pod)
        p["spec"].pop("nodeName", None)
        sched.view.upsert_pod(p, 0.0)
    key = (p["metadata"]["namespace"], p["metadata"]["name"])
    assert sched.schedule_one(key) == bound["node"]
    return bound["node"]


@pytest.mark.parametrize("cache_capable", [False, True])
def test_filter_and_prioritize_agree_with_the_live_scheduler(cache_capable):
    nodes = cluster()
    view = None
    if cache_capable:  # names only: the service's cluster view knows the nodes and what is bound
        view = ClusterView()
        for n in nodes:
            view.upsert_node(n, 0.0)
        hog = kube_pod(cpu="3800m", memory="1Gi")
        hog["metadata"]["name"], hog["spec"]["nodeName"] = "hog", "full"
        view.upsert_pod(hog, 0.0)
        for n in nodes:  # the annotations are not what counts in this mode
            n["metadata"]["annotations"].pop("rlsched.io/cpu-requested", None)
    srv = Server(state("power-greedy", view=view))
    try:
        pod = kube_pod(cpu="1", memory="2Gi")
        r = srv.post("/filter", extender_args(nodes, pod, cache_capable))
        assert r.status_code == 200, r.text
        result = r.json()
        kept = result["NodeNames"] if cache_capable else [n["metadata"]["name"] for n in result["Nodes"]["items"]]
        infos = [node_info(n) for n in nodes]
        infos[-1].cpu_requested, infos[-1].memory_requested = 3.8, 1.0
        feasible, failed = filter_nodes(pod, pod_requests(pod), infos)
        assert kept == [infos[i].name for i in feasible] == ["big", "mid", "small"]
        assert {**result["FailedNodes"], **result["FailedAndUnresolvableNodes"]} == failed
        assert "tainted" in result["FailedAndUnresolvableNodes"] and "full" in result["FailedNodes"]
        if not cache_capable:
            assert result["Nodes"]["items"][0] == nodes[0]  # the Node objects come back as they were sent

        r = srv.post("/prioritize", extender_args(nodes, pod, cache_capable))
        assert r.status_code == 200, r.text
        scores = {h["Host"]: h["Score"] for h in r.json()}
        assert set(scores) == {n["metadata"]["name"] for n in nodes}
        assert all(isinstance(s, int) and 0 <= s <= 10 for s in scores.values())
        assert scores["tainted"] == scores["full"] == 0
        top = max(scores, key=scores.get)
        assert scores[top] == 10 and list(scores.values()).count(10) == 1
        live_nodes = cluster() if not cache_capable else nodes
        assert top == live_choice(live_nodes, pod, make_policy("power-greedy"))
    finally:
        srv.stop()


def test_extender_scores_keep_the_policys_order():
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(1, 30))
        scores = rng.normal(size=n) * 100
        mask = rng.random(n) < 0.7
        if not mask.any():
            continue
        choice = int(np.argmax(np.where(mask, scores, -np.inf)))
        out = extender_scores(scores, choice, mask)
        assert out[choice] == 10 and out.count(10) == 1
        assert all(0 <= s <= 9 for k, s in enumerate(out) if k != choice)
        feasible = [k for k in range(n) if mask[k]]
        for a in feasible:  # never inverted: a better score never gets a lower integer
            for b in feasible:
                if scores[a] > scores[b]:
                    assert out[a] >= out[b]
        assert all(out[k] == 0 for k in range(n) if not mask[k])


def test_node_names_without_a_cluster_view_is_a_clear_400(server):
    r = server.post("/filter", extender_args(cluster(), kube_pod(), cache_capable=True))
    assert r.status_code == 400 and "nodeCacheCapable" in r.json()["Error"]


# ------------------------------------------------------------------------------------------ reading extender bodies
QUANTITIES = st.sampled_from(["4", "3500m", "16Gi", "8000Mi", "1.5", "2e3", "0", "lots", "-1", "", "1Ki"])
NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", max_size=12)


@st.composite
def node_objects(draw) -> dict:
    """v1.Node objects as JSON, well-typed, with values the reading may refuse (bad quantities, no name)."""
    node = json.loads((FIXTURES / "v1-node.json").read_text())
    node["metadata"]["name"] = draw(NAMES)
    node["metadata"]["labels"] = draw(st.dictionaries(NAMES, NAMES, max_size=4))
    node["metadata"]["annotations"] = draw(st.fixed_dictionaries({}, optional={
        "rlsched.io/cpu-requested": QUANTITIES, "rlsched.io/memory-requested": QUANTITIES}))
    node["spec"] = draw(st.fixed_dictionaries({}, optional={
        "unschedulable": st.booleans(),
        "taints": st.lists(st.fixed_dictionaries({"key": NAMES, "effect": st.sampled_from(
            ["NoSchedule", "NoExecute", "PreferNoSchedule"])}, optional={"value": NAMES}), max_size=3)}))
    node["status"]["allocatable"] = draw(st.fixed_dictionaries({}, optional={
        "cpu": QUANTITIES, "memory": QUANTITIES, "pods": st.sampled_from(["110", "8", "x"])}))
    return node


@given(node_objects())
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_fast_node_reading_agrees_with_node_info(node):
    """The extender's typed reading of a Node's bytes gives what `node_info` gives for the same object (and the
    requests of its annotations), or both refuse it; the refusal is one line naming the node."""
    cache = NodeCache(lambda info: (BUILTIN_NODE_TYPES["x3550"], False))
    try:
        expected = node_info(node)
        ann = node["metadata"]["annotations"]
        requested = {k: ann[f"rlsched.io/{k}-requested"] for k in ("cpu", "memory")
                     if f"rlsched.io/{k}-requested" in ann}
        expected.cpu_requested, expected.memory_requested = resources(requested, "annotations")
    except ObjectError:
        expected = None
    raw = json.dumps(node).encode()
    if expected is None:
        with pytest.raises(ClientError) as err:
            cache.entry(raw, "Nodes.items", 3)
        assert str(err.value).startswith("Nodes.items[3]: ") and "\n" not in str(err.value)
    else:
        assert cache.entry(raw, "Nodes.items", 3).info == expected
        assert cache.entry(raw, "Nodes.items", 3).info is cache.entry(raw, "x").info and cache.hits == 2


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                               st.sampled_from(["Pod", "Nodes", "NodeNames", "items", "metadata", "name", "x"]),
                               inner, max_size=4), max_leaves=12)


@given(st.one_of(JSON_VALUES.map(lambda v: json.dumps(v).encode()), st.binary(max_size=60)))
@settings(max_examples=300, deadline=None)
def test_any_extender_body_decodes_or_is_one_line_naming_the_field(body):
    try:
        args = decode_args(body)
    except ClientError as exc:
        assert "\n" not in str(exc) and ": " in str(exc), str(exc)
        return
    assert isinstance(args.Pod, dict)
    assert args.Nodes is None or isinstance(args.Nodes.items, list)


def test_extender_reading_errors_name_the_field():
    for body, field in [(b'{"Pod": {}, "Nodes": {"items": [{"metadata": {"name": 5}}]}}',
                         "Nodes.items[0].metadata.name: Expected `str | null`, got `int`"),
                        (b'{"Pod": {}, "Nodes": {"items": [{"metadata": {"labels": {"a": 1}}}]}}',
                         "Nodes.items[0].metadata.labels"),
                        (b'{"Pod": [], "Nodes": null}', "Pod: Expected `object`"),
                        (b'{"Pod": {}, "NodeNames": ["' + b"a" * 300 + b'"]}', "NodeNames[0]"),
                        (b'{"Pod": {}, "Nodes": {"items": 1}}', "Nodes.items: Expected `array`"),
                        (b'{"Pod": {', "body: not valid JSON")]:
        with pytest.raises(ClientError, match=re.escape(field)):
            nodes = decode_args(body).Nodes
            NodeCache(lambda info: (BUILTIN_NODE_TYPES["x3550"], False)).entries(nodes.items, "Nodes.items")


def test_a_changed_node_is_read_again_and_the_cache_is_bounded():
    """The readings are keyed by the Node's bytes: the same name with new content (more capacity) is read anew;
    the cache keeps at most its limit (never below twice the nodes a request may carry)."""
    srv = Server(state(limits=ServeLimits(node_cache_entries=6, max_nodes=4)))  # 2 x max_nodes wins
    try:
        pod = kube_pod(cpu="6", memory="1Gi")
        small = [kube_node("a", "4", "8Gi", labels={"rlsched.io/node-type": "x3550"})]
        assert srv.post("/filter", extender_args(small, pod, False)).json()["FailedNodes"] == {"a": "Insufficient cpu"}
        grown = [kube_node("a", "8", "8Gi", labels={"rlsched.io/node-type": "x3550"})]
        r = srv.post("/filter", extender_args(grown, pod, False)).json()
        assert [n["metadata"]["name"] for n in r["Nodes"]["items"]] == ["a"] and r["FailedNodes"] == {}
        for k in range(30):
            nodes = [kube_node(f"n{k}-{j}", "4", "8Gi") for j in range(3)]
            assert srv.post("/prioritize", extender_args(nodes, kube_pod(), False)).status_code == 200
        assert len(srv.state.node_cache) <= 8 and srv.state.node_cache.misses == 2 + 90
        dup = [kube_node("a", "4", "8Gi"), kube_node("a", "8", "8Gi")]
        r = srv.post("/prioritize", extender_args(dup, pod, False))
        assert r.status_code == 400 and "Nodes.items[1].metadata.name: 'a' appears twice" in r.json()["detail"]
    finally:
        srv.stop()


# ------------------------------------------------------------------------------------------ bounded input
@pytest.mark.parametrize("path,body,field", [
    ("/schedule", b"{not json", "body: not valid JSON"),
    ("/schedule", '{"cpu_request": "four", "memory_request": 1, "node_states": []}', "cpu_request"),
    ("/schedule", '{"cpu_request": NaN, "memory_request": 1, "node_states": [{"node_id": "a", "cpu_available": 1, '
                  '"memory_available": 1}]}', "cpu_request"),
    ("/schedule", '{"cpu_request": 1, "memory_request": -1, "node_states": [{"node_id": "a", "cpu_available": 1, '
                  '"memory_available": 1}]}', "memory_request"),
    ("/schedule", '{"cpu_request": 1, "memory_request": 1, "node_states": [{"node_id": "a", "cpu_available": '
                  'Infinity, "memory_available": 1}]}', "node_states[0].cpu_available"),
    ("/schedule", '{"cpu_request": 1, "memory_request": 1, "node_states": [{"node_id": "a", "cpu_available": 1, '
                  '"memory_available": 1, "watts": [1, 2]}]}', "node_states[0].watts"),
    ("/filter", '{"Nodes": {"items": []}}', "Pod"),
    ("/filter", '{"Pod": {"spec": {"containers": [{"resources": {"requests": {"cpu": "lots"}}}]}}, '
                '"Nodes": {"items": []}}', "Pod: spec.containers[0].resources.requests.cpu"),
    ("/prioritize", '{"Pod": {}, "Nodes": {"items": [{"metadata": {}}]}}', "Nodes.items[0]"),
    ("/prioritize", '{"Pod": {}, "Nodes": "all"}', "Nodes"),
])
def test_malformed_bodies_are_400_naming_the_field(server, path, body, field):
    r = server.post(path, body)
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert field in detail and "\n" not in detail, detail
    if path == "/filter":
        assert r.json()["Error"] == detail


def test_too_many_nodes_and_too_large_bodies_are_refused():
    srv = Server(state(limits=ServeLimits(max_body_bytes=1_000_000, max_nodes=1000)))
    try:
        many = {"cpu_request": 1, "memory_request": 1, "node_states": [
            {"node_id": f"n{i}", "cpu_available": 1, "memory_available": 1} for i in range(1001)]}
        r = srv.post("/schedule", many)
        assert r.status_code == 400 and "more than the limit of 1000" in r.json()["detail"]
        r = srv.post("/filter", b'{"Pod": {}, "Nodes": {"items": [' + b"{}," * 400_000 + b"{}]}}")
        assert r.status_code == 400 and "larger than the limit" in r.json()["Error"]
        r = requests.post(srv.url + "/schedule", data=(b"x" * 2_000_000 for _ in range(1)),  # chunked, no length
                          headers={"Content-Type": "application/json"}, timeout=30)
        assert r.status_code == 400 and "larger than the limit" in r.json()["detail"]
        assert requests.get(srv.url + "/healthz", timeout=5).text == "ok\n"
    finally:
        srv.stop()


def test_a_concurrent_burst_of_good_and_bad_requests(server):
    good = json.loads(BIDDING_EXAMPLE)
    expected = server.post("/schedule", good).json()["scheduled_node"]

    def one(i: int):
        if i % 3 == 0:
            return "bad", server.post("/schedule", b'{"cpu_request": -1}').status_code
        return "good", server.post("/schedule", good).json()["scheduled_node"]

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(300)))
    assert all(v == 400 for k, v in results if k == "bad")
    assert all(v == expected for k, v in results if k == "good")
    metrics = requests.get(server.url + "/metrics", timeout=5).text
    assert 'rlsched_serve_requests_total{code="400",endpoint="/schedule"} 100.0' in metrics
    assert 'rlsched_serve_requests_total{code="500"' not in metrics


SCHEMA_APP = create_app(ServeState(policy=make_policy("efficient-first"), fallback=make_policy("least-allocated"),
                                   limits=ServeLimits(max_nodes=200)))
schema = schemathesis.openapi.from_asgi("/openapi.json", SCHEMA_APP)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # starlette's test client over httpx
@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_the_openapi_schema_holds_under_schemathesis(case):
    """Requests generated from /openapi.json (valid and not): no 500, every response as the schema says, and
    every schema-violating request refused. (A schema-valid request may still be a 400: rules the schema cannot
    state, such as available <= capacity or a node type the service knows, are checked in the handler.)"""
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    case.call_and_validate(excluded_checks=[positive_data_acceptance])


# ------------------------------------------------------------------------------------------ robustness
def test_a_failing_model_is_answered_by_the_fallback_and_counted(server):
    class Broken:
        name = "dqn"

        def reset(self, seed=None):
            pass

        def predict(self, obs, mask):
            raise RuntimeError("model exploded")

    server.state.policy = Broken()
    r = server.post("/schedule", BIDDING_EXAMPLE)
    assert r.status_code == 200 and r.json()["policy"] == "least-allocated" and r.json()["scheduled_node"]
    r = server.post("/prioritize", extender_args(cluster(), kube_pod(), cache_capable=False))
    assert r.status_code == 200 and max(h["Score"] for h in r.json()) == 10
    assert "rlsched_serve_fallbacks_total 2.0" in requests.get(server.url + "/metrics", timeout=5).text


def test_rlsched_serve_hot_reloads_its_model_and_stops_on_sigterm(tmp_path):
    import os
    import signal
    import sys

    from rlmodel.agents.dqn import DQNConfig, train
    from rlmodel.sim import load_scenario

    small = dict(total_steps=200, learning_starts=50, buffer_size=500, batch_size=16, hidden=16, demo_episodes=2,
                 pretrain_steps=20, checkpoint_every=200, validation_episodes=0)
    path = tmp_path / "m.pth"
    train(DQNConfig(seed=1, **small), load_scenario("tiny"), path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLSCHED_")}
    proc = subprocess.Popen([str(Path(sys.executable).with_name("rlsched")), "serve", "--model", str(path),
                             "--listen", f"127.0.0.1:{port}"], stderr=subprocess.PIPE, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "rlsched serve did not start"
            time.sleep(0.2)
        model = requests.get(url + "/model", timeout=5).json()
        assert model["policy"] == "dqn" and model["scenario"]["name"] == "tiny" and model["global_step"] > 0
        answer = requests.post(url + "/schedule", data=BIDDING_EXAMPLE, headers=JSON, timeout=10).json()
        assert answer["policy"] == "dqn" and answer["model_version"] == str(path)
        train(DQNConfig(seed=2, **small), load_scenario("hetero"), tmp_path / "m2.pth")
        (tmp_path / "m2.pth").replace(path)  # a new model arrives atomically: served, and /model follows it
        deadline = time.monotonic() + 20
        while requests.get(url + "/model", timeout=5).json()["scenario"]["name"] != "hetero":
            assert time.monotonic() < deadline, "the new model was not picked up"
            time.sleep(0.3)
        path.write_bytes(b"not a model")  # refused: the model keeps serving
        time.sleep(3)
        answer = requests.post(url + "/schedule", data=BIDDING_EXAMPLE, headers=JSON, timeout=10).json()
        assert answer["policy"] == "dqn"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "refused" in err and "stopped" in err and "Traceback" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_rlsched_serve_on_port_0_says_its_real_address_and_a_port_in_use_is_one_line():
    import os
    import re
    import signal
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("RLSCHED_")}
    exe = str(Path(sys.executable).with_name("rlsched"))
    proc = subprocess.Popen([exe, "serve", "--policy", "least-allocated", "--listen", "127.0.0.1:0"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # the first line names the address it listens on
        found = re.search(r"on http://127\.0\.0\.1:(\d+) ", line)
        assert found and found.group(1) != "0", line
        port = int(found.group(1))
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        taken = subprocess.run([exe, "serve", "--policy", "least-allocated", "--listen", f"127.0.0.1:{port}"],
                               capture_output=True, text=True, env=env, timeout=60)
        assert taken.returncode == 1, taken.stderr
        assert taken.stderr.strip() == f"Error: --listen 127.0.0.1:{port}: cannot listen: Address already in use"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "stopped" in err and "Traceback" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------------------------------ Swagger UI
def test_the_swagger_ui_loads_in_headless_chromium_with_no_request_off_loopback(server, tmp_path):
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: `make test` installs the Debian package"
    html = requests.get(server.url + "/docs", timeout=5).text
    assert "https://" not in html and "http://" not in html  # every asset from this server
    common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
              f"--user-data-dir={tmp_path / 'profile'}",
              # any host but loopback fails to resolve: a request leaving the machine would fail the page
              "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--virtual-time-budget=15000"]
    dom = subprocess.run([*common, "--dump-dom", server.url + "/docs"], capture_output=True, text=True,
                         timeout=120).stdout
    for op in ("/schedule", "/filter", "/prioritize", "/model"):
        assert op in dom, f"{op} not listed in the rendered page"
    assert "opblock" in dom and "rlsched" in dom
    shot = tmp_path / "docs.png"
    subprocess.run([*common, f"--screenshot={shot}", "--window-size=1280,1600", server.url + "/docs"],
                   capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_rlsched_serve_with_a_kubeconfig_keeps_a_cluster_view_for_node_names(tmp_path):
    """nodeCacheCapable: true end to end: `rlsched serve --kubeconfig` lists and watches kmock; names suffice."""
    import os
    import sys

    from tests.testbed import KubeApi

    api = KubeApi()
    proc = None
    try:
        for n in cluster()[:3]:
            api.core.create_node({"apiVersion": "v1", "kind": "Node", **{k: n[k] for k in ("metadata", "spec",
                                                                                             "status")}})
        hog = kube_pod(cpu="7500m", memory="1Gi")
        hog["metadata"]["name"], hog["spec"]["nodeName"] = "hog", "mid"  # mid is full: only the view knows
        api.core.create_namespaced_pod("default", {"apiVersion": "v1", "kind": "Pod", **hog})
        kubeconfig = tmp_path / "kubeconfig"
        api.write_kubeconfig(kubeconfig, "kmock")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("RLSCHED_")}
        proc = subprocess.Popen([str(Path(sys.executable).with_name("rlsched")), "serve", "--policy",
                                 "efficient-first", "--kubeconfig", str(kubeconfig), "--listen",
                                 f"127.0.0.1:{port}"], stderr=subprocess.DEVNULL, env=env)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                r = requests.get(url + "/readyz", timeout=2)
                if r.status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "rlsched serve did not become ready"
            time.sleep(0.3)
        assert "cluster view synced" in r.text
        body = {"Pod": kube_pod(cpu="1", memory="1Gi"), "Nodes": None, "NodeNames": ["big", "mid", "small"]}
        r = requests.post(url + "/filter", json=body, timeout=10)
        assert r.status_code == 200 and r.json()["NodeNames"] == ["big", "small"], r.text
        assert r.json()["FailedNodes"] == {"mid": "Insufficient cpu"}
        r = requests.post(url + "/prioritize", json=body, timeout=10)
        assert r.status_code == 200 and {h["Host"]: h["Score"] for h in r.json()}["mid"] == 0
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(20)
        api.stop()


def test_schedule_passes_the_pods_signals_to_the_policy(server):
    """The pod's owner, QoS and workload history reach the policy: runtime-aware sends a short Job pod to the busy
    small node and a service's pod to the efficient one."""
    from rlmodel.policies import make_policy

    server.state.policy = make_policy("runtime-aware")
    nodes = [{"node_id": "big", "cpu_available": 10, "memory_available": 10, "cpu_capacity": 12,
              "memory_capacity": 12, "pods": 2, "node_type": "x3550"},
             {"node_id": "small", "cpu_available": 1.5, "memory_available": 3, "cpu_capacity": 2,
              "memory_capacity": 4, "pods": 1, "node_type": "ml110-g4"}]
    short = {"cpu_request": 0.5, "memory_request": 0.5, "node_states": nodes, "owner_kind": "Job",
             "workload_completed": 3, "workload_mean_run_s": 60.0}
    assert server.post("/schedule", short).json()["scheduled_node"] == "small"
    service = {**short, "owner_kind": "Deployment", "workload_completed": 0, "qos": "Guaranteed", "priority": 1000}
    assert server.post("/schedule", service).json()["scheduled_node"] == "big"
    r = server.post("/schedule", {**short, "qos": "Gold"})
    assert r.status_code == 400 and r.json()["detail"].startswith("qos:")
    r = server.post("/schedule", {**short, "workload_mean_run_s": -1})
    assert r.status_code == 400 and r.json()["detail"].startswith("workload_mean_run_s:")
