"""The resource blocker and the test app, served for real on loopback and measured from outside."""

from __future__ import annotations

import time

import psutil
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.services import Service


@pytest.fixture
def blocker():
    # the peers of these tests live on loopback, which the blocker refuses unless named
    svc = Service("containers/resource_blocker/app.py", env={"MAX_MEMORY_MB": "512", "ALLOWED_PEERS": "127.0.0.1"})
    yield svc
    svc.stop()


def tree_cpu_cores(pid: int, seconds: float) -> float:
    """CPU cores used by a process and its children over `seconds`, measured with psutil."""
    def total() -> float:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        s = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
                s += t.user + t.system
            except psutil.Error:
                pass
        return s

    c0, t0 = total(), time.monotonic()
    time.sleep(seconds)
    return (total() - c0) / (time.monotonic() - t0)


def rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / (1 << 20)


def test_blocker_reaches_holds_and_releases_cpu_and_memory(blocker):
    base_rss = rss_mib(blocker.proc.pid)
    r = requests.put(blocker.url + "/load", json={"cpu_cores": 1.0, "memory_mb": 300}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["target"]["cpu_cores"] == 1.0
    time.sleep(1.0)
    held = [tree_cpu_cores(blocker.proc.pid, 2.0) for _ in range(2)]  # holds it over time
    assert all(0.75 <= c <= 1.3 for c in held), held
    assert rss_mib(blocker.proc.pid) - base_rss >= 280
    measured = requests.get(blocker.url + "/load", timeout=5).json()["measured"]
    assert 0.7 <= measured["cpu_cores"] <= 1.3 and measured["rss_mib"] >= 280
    r = requests.delete(blocker.url + "/load", timeout=30)
    assert r.status_code == 200 and r.json()["target"]["cpu_cores"] == 0
    time.sleep(0.5)
    assert tree_cpu_cores(blocker.proc.pid, 1.5) < 0.15
    assert rss_mib(blocker.proc.pid) - base_rss < 100


def test_blocker_holds_a_fraction_of_a_core(blocker):
    requests.put(blocker.url + "/load", json={"cpu_cores": 0.5}, timeout=30).raise_for_status()
    time.sleep(1.0)
    assert 0.35 <= tree_cpu_cores(blocker.proc.pid, 3.0) <= 0.7


@pytest.mark.parametrize(
    "body,field",
    [
        ({"cpu_cores": -1}, "cpu_cores"),
        ({"cpu_cores": "two"}, "cpu_cores"),
        ({"cpu_cores": 1000}, "cpu_cores"),
        ({"memory_mb": 4096}, "memory_mb"),
        ({"disk_write_mbps": -5}, "disk_write_mbps"),
        ({"gpu": 1}, "gpu"),
        ({"network_mbps": 5}, "network_mbps"),  # no peer configured
        ({"network_mbps": 5, "network_peer": "ftp://x"}, "network_peer"),
    ],
)
def test_blocker_rejects_bad_input_and_changes_nothing(blocker, body, field):
    requests.put(blocker.url + "/load", json={"memory_mb": 64}, timeout=30).raise_for_status()
    r = requests.put(blocker.url + "/load", json=body, timeout=10)
    assert r.status_code == 400
    assert r.json()["error"].startswith(field)
    assert requests.get(blocker.url + "/load", timeout=5).json()["target"]["memory_mb"] == 64


def test_blocker_refuses_oversized_and_non_json_bodies(blocker):
    r = requests.put(blocker.url + "/load", data="x" * 10_000, headers={"Content-Type": "application/json"},
                     timeout=10)
    assert r.status_code == 413
    r = requests.put(blocker.url + "/load", data="cpu_cores=1", timeout=10)
    assert r.status_code == 400 and "application/json" in r.json()["error"]


def test_blocker_disk_and_network_rates(blocker):
    peer = Service("containers/resource_blocker/app.py")
    try:
        r = requests.put(blocker.url + "/load", json={"disk_write_mbps": 20, "disk_read_mbps": 20,
                                                       "network_mbps": 80, "network_peer": peer.url + "/sink"},
                         timeout=30)
        assert r.status_code == 200, r.text
        time.sleep(4.0)
        m = requests.get(blocker.url + "/load", timeout=5).json()["measured"]
    finally:
        requests.delete(blocker.url + "/load", timeout=30)
        peer.stop()
    assert 12 <= m["disk_write_mbps"] <= 28, m
    assert 12 <= m["disk_read_mbps"] <= 28, m
    assert 50 <= m["network_mbps"] <= 110, m


def test_blocker_metrics(blocker):
    requests.put(blocker.url + "/load", json={"memory_mb": 32}, timeout=30).raise_for_status()
    text = requests.get(blocker.url + "/metrics", timeout=5).text
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    target = {s.labels["resource"]: s.value for s in fams["resource_blocker_target"].samples}
    assert target["memory_mb"] == 32 and target["cpu_cores"] == 0


@pytest.fixture(scope="module")
def testapp():
    svc = Service("testapp/app.py")
    yield svc
    svc.stop()


@pytest.mark.parametrize("mode", ["cpu", "memory", "io", "mixed"])
def test_testapp_does_bounded_real_work(testapp, mode):
    r1 = requests.get(testapp.url + "/work", params={"mode": mode, "intensity": 1}, timeout=30)
    r5 = requests.get(testapp.url + "/work", params={"mode": mode, "intensity": 5}, timeout=30)
    assert r1.status_code == r5.status_code == 200
    assert r1.json()["mode"] == mode and r5.json()["intensity"] == 5
    w1, w5 = r1.json()["work"], r5.json()["work"]
    expected = {"cpu": {"sha256_rounds"}, "memory": {"memory_bytes"}, "io": {"io_bytes"},
                "mixed": {"sha256_rounds", "memory_bytes", "io_bytes"}}[mode]
    for key in expected:  # five times the work, counted by what was hashed, touched and read back
        assert w1[key] > 0 and abs(w5[key] / w1[key] - 5) < 0.01, (key, w1, w5)
    if "io_bytes" in expected:
        assert w5["io_bytes"] == int((1 << 20) * (5 if mode == "io" else 5 / 3))
    assert r1.json()["seconds"] > 0 and r5.json()["seconds"] > 0


@pytest.mark.parametrize("params", [{"intensity": 0}, {"intensity": 21}, {"intensity": "x"},
                                    {"mode": "gpu"}])
def test_testapp_validates_input(testapp, params):
    r = requests.get(testapp.url + "/work", params={"mode": "cpu", **params}, timeout=10)
    assert r.status_code == 400
    assert r.json()["error"].split(":")[0] in ("intensity", "mode")


def test_testapp_metrics_count_requests(testapp):
    for _ in range(3):
        requests.get(testapp.url + "/work", params={"mode": "cpu", "intensity": 1}, timeout=10).raise_for_status()
    text = requests.get(testapp.url + "/metrics", timeout=5).text
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    ok = [s.value for s in fams["testapp_requests"].samples
          if s.name == "testapp_requests_total" and s.labels == {"mode": "cpu", "code": "200"}]
    hist = [s.value for s in fams["testapp_request_duration_seconds"].samples
            if s.name.endswith("_count") and s.labels["mode"] == "cpu"]
    assert ok and ok[0] >= 3 and hist[0] == ok[0]


def test_cpu_workers_never_outlive_the_blocker():
    svc = Service("containers/resource_blocker/app.py")
    requests.put(svc.url + "/load", json={"cpu_cores": 1.0}, timeout=30).raise_for_status()
    time.sleep(0.5)
    children = psutil.Process(svc.proc.pid).children(recursive=True)
    assert children
    svc.proc.kill()  # SIGKILL: no handler, no atexit
    svc.proc.wait()
    gone, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, alive


@pytest.mark.parametrize("peer,allowed", [
    ("http://169.254.169.254/latest/meta-data", None),  # a cloud metadata service
    ("http://127.0.0.1:9/sink", None),  # loopback: not in the default private ranges' spirit
    ("http://[::1]:9/sink", None),
    ("http://8.8.8.8/sink", None),  # a public address
    ("http://10.1.2.3:8081/sink", "192.168.0.0/16"),  # private, but not in this allow-list
    ("http://169.254.169.254/", "0.0.0.0/0"),  # a wide range does not admit link-local
])
def test_blocker_refuses_peers_that_are_not_allowed(peer, allowed, monkeypatch):
    from containers.resource_blocker.app import allowed_peers, check_peer

    if allowed is None:
        monkeypatch.delenv("ALLOWED_PEERS", raising=False)
    else:
        monkeypatch.setenv("ALLOWED_PEERS", allowed)
    with pytest.raises(ValueError, match="network_peer"):
        check_peer(peer, allowed_peers())


def test_blocker_admits_node_addresses_and_named_loopback(monkeypatch):
    from containers.resource_blocker.app import allowed_peers, check_peer

    monkeypatch.delenv("ALLOWED_PEERS", raising=False)
    check_peer("http://192.168.39.12:8081/sink", allowed_peers())  # a minikube node
    monkeypatch.setenv("ALLOWED_PEERS", "127.0.0.2,10.0.0.0/8")
    check_peer("http://127.0.0.2:8081/sink", allowed_peers())


def test_blocker_over_http_refuses_metadata_peer_and_needs_its_token():
    svc = Service("containers/resource_blocker/app.py", env={"BLOCKER_TOKEN": "s3cret"})
    try:
        body = {"network_mbps": 1, "network_peer": "http://169.254.169.254/latest"}
        r = requests.put(svc.url + "/load", json=body, timeout=10)
        assert r.status_code == 401  # no token
        auth = {"Authorization": "Bearer s3cret"}
        r = requests.put(svc.url + "/load", json=body, headers=auth, timeout=10)
        assert r.status_code == 400 and "network_peer" in r.json()["error"]
        assert requests.put(svc.url + "/load", json={"memory_mb": 1}, headers=auth, timeout=10).status_code == 200
        wrong = {"Authorization": "Bearer wrong"}
        assert requests.delete(svc.url + "/load", headers=wrong, timeout=10).status_code == 401
        assert requests.get(svc.url + "/load", timeout=10).status_code == 200  # reads stay open
        assert requests.delete(svc.url + "/load", headers=auth, timeout=10).status_code == 200
    finally:
        svc.stop()
