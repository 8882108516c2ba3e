"""CPU in use from Prometheus: real node-exporters scraped by a real Prometheus, read by the live scheduler's
view, checked against the host's own /proc/stat over the same time (every "node" runs on this host)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from rlmodel.live.scheduler import Scheduler, SchedulerConfig
from rlmodel.live.usage import PrometheusUsage, _host, busy_cores_query, match_nodes
from rlmodel.policies import make_policy
from rlmodel.testbed.prometheus import render_config, write_config
from tests.services import free_port
from tests.testbed import KubeApi, wait_http


def node(name: str, address: str) -> dict:
    return {"metadata": {"name": name}, "status": {"addresses": [{"type": "InternalIP", "address": address}]}}


def test_series_are_matched_by_node_label_then_by_the_instance_address():
    nodes = {"a": node("a", "10.0.0.1"), "b": node("b", "fd00::2"), "c": node("c", "10.0.0.3")}
    result = [
        {"metric": {"instance": "10.0.0.9:9100", "node": "a"}, "value": [0, "1.5"]},  # the label wins
        {"metric": {"instance": "[fd00::2]:9100"}, "value": [0, "0.25"]},
        {"metric": {"instance": "c:9100"}, "value": [0, "2"]},  # by name
        {"metric": {"instance": "10.9.9.9:9100"}, "value": [0, "7"]},  # nobody's: ignored
        {"metric": {"instance": "10.0.0.3:9100"}, "value": [0, "NaN"]},  # not a reading
        {"metric": {"instance": "10.0.0.1:9100"}, "value": [0, "-0.01"]},  # rounding below zero: 0
    ]
    assert match_nodes(result, nodes) == {"a": 1.5, "b": 0.25, "c": 2.0}
    assert 'rate(node_cpu_seconds_total{mode="idle"}[60s])' in busy_cores_query(60)


@given(host=st.one_of(st.ip_addresses(v=4).map(str), st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)),
       port=st.integers(1, 65535))
def test_the_host_of_an_instance(host, port):
    assert _host(f"{host}:{port}") == host
    assert _host(host) == host


@given(host=st.ip_addresses(v=6).map(str), port=st.integers(1, 65535))
def test_the_host_of_an_ipv6_instance(host, port):
    assert _host(f"[{host}]:{port}") == host


def _proc_busy() -> tuple[float, float]:
    with open("/proc/stat") as fh:
        fields = [float(x) for x in fh.readline().split()[1:]]
    # as node-exporter's 1 - idle rate: everything but idle is busy (guest time is already in user and nice)
    return sum(fields[:8]) - fields[3], time.monotonic()


@pytest.fixture
def prometheus(tmp_path):
    procs = []
    try:
        port = free_port()
        for address in ("127.0.0.2", "127.0.0.3"):
            procs.append(subprocess.Popen(
                ["prometheus-node-exporter", f"--web.listen-address={address}:{port}", "--no-collector.systemd"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        # node-a's series carry a node label (the testbed's scrape config); node-b's only their instance
        config = render_config(node_exporters={"node-a": f"127.0.0.2:{port}"}, resource_blockers=[], testapps=[],
                               scrape_interval_s=1)
        config["scrape_configs"].append({"job_name": "plain", "static_configs": [{"targets": [f"127.0.0.3:{port}"]}]})
        write_config(tmp_path / "prometheus.yml", config)
        prom_port = free_port()
        procs.append(subprocess.Popen(
            ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        url = f"http://127.0.0.1:{prom_port}"
        wait_http(url + "/-/ready")
        yield url
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)


def test_the_view_reads_busy_cores_from_prometheus(prometheus):
    api = KubeApi()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # one core busy, on every "node"
    s = None
    try:
        api.add_node("node-a", "127.0.0.2", cpu="2")
        api.add_node("node-b", "127.0.0.3", cpu="2")
        s = Scheduler(api.core, make_policy("efficient-first"), SchedulerConfig(usage_every_s=0.5, watch_timeout_s=5),
                      usage=PrometheusUsage(prometheus, window_s=5, timeout_s=5))
        assert not s.ready  # not before Prometheus has been read
        s.start()
        deadline = time.monotonic() + 60
        # the first rate needs two samples of each target in Prometheus: wait for both nodes' readings
        while time.monotonic() < deadline and len(s.view._cpu_used) < 2:
            time.sleep(0.5)
        assert s.ready and "Prometheus" in s.cpu_source and "read" in s.cpu_source
        time.sleep(6)  # a full rate window with the busy process running
        c0 = _proc_busy()
        time.sleep(5)
        c1 = _proc_busy()
        host_busy = (c1[0] - c0[0]) / os.sysconf("SC_CLK_TCK") / (c1[1] - c0[1])
        with s.lock:
            state = s.view.state(time.time())
        readings = dict(zip(state.names, state.demand, strict=True))
        for name in ("node-a", "node-b"):
            # the reading is the host's busy cores (both exporters read this host's /proc/stat), not the requests (0)
            assert readings[name] >= 0.7, readings
            assert abs(readings[name] - host_busy) < 0.6, (readings, host_busy)
        watts = state.power_w(state.demand)
        assert list(watts) == pytest.approx(state.watts)
        assert min(watts) > min(state.idle_watts)  # a busy node draws more than idle
    finally:
        busy.kill()
        busy.wait()
        if s is not None:
            s.stop()
        api.stop()


def test_an_unreachable_prometheus_is_reported_and_requests_stand_in():
    api = KubeApi()
    s = Scheduler(api.core, make_policy("efficient-first"), SchedulerConfig(usage_every_s=0.2, watch_timeout_s=5),
                  usage=PrometheusUsage(f"http://127.0.0.1:{free_port()}", timeout_s=1))
    try:
        api.add_node("node-a", "127.0.0.2", cpu="2")
        s.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and s.usage_error is None:
            time.sleep(0.2)
        assert not s.ready and "unreachable" in s.cpu_source and "requests meanwhile" in s.cpu_source
        from rlmodel.live.service import serve_health

        port = free_port()
        server = serve_health(f"127.0.0.1:{port}", s)
        try:
            r = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
            assert r.status_code == 503 and "unreachable" in r.text
        finally:
            server.shutdown()
            server.server_close()
        with s.lock:
            assert list(s.view.state(time.time()).demand) == [0.0]  # the requests' estimate
    finally:
        s.stop()
        api.stop()
