"""A real Prometheus with a real node-exporter scrapes the resource blocker and the test app."""

from __future__ import annotations

import subprocess
import time

import pytest
import requests
from prometheus_api_client import PrometheusConnect

from rlmodel.testbed.prometheus import render_config, write_config
from tests.services import Service, free_port


def _wait_http(url: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


@pytest.fixture
def stack(tmp_path):
    procs, services = [], []
    try:
        blocker = Service("containers/resource_blocker/app.py")
        testapp = Service("testapp/app.py")
        services += [blocker, testapp]
        ne_port, prom_port = free_port(), free_port()
        textfiles = tmp_path / "textfile"
        textfiles.mkdir()
        procs.append(subprocess.Popen(
            ["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{ne_port}", "--no-collector.systemd",
             f"--collector.textfile.directory={textfiles}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        config = render_config(node_exporters=[f"127.0.0.1:{ne_port}"],
                               resource_blockers=[blocker.url.removeprefix("http://")],
                               testapps=[testapp.url.removeprefix("http://")], scrape_interval_s=1)
        write_config(tmp_path / "prometheus.yml", config)
        procs.append(subprocess.Popen(
            ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        prom_url = f"http://127.0.0.1:{prom_port}"
        _wait_http(prom_url + "/-/ready")
        yield prom_url, blocker, testapp
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
        for s in services:
            s.stop()


def _poll(prom: PrometheusConnect, query: str, want, seconds: float = 40):
    """Prometheus's first queryable sample lags the start by several seconds: poll, do not sleep blindly."""
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        last = prom.custom_query(query)
        if last and want(last):
            return last
        time.sleep(0.5)
    raise AssertionError(f"{query}: got {last}")


def test_prometheus_reads_back_what_the_blocker_reports(stack):
    prom_url, blocker, testapp = stack
    requests.put(blocker.url + "/load", json={"memory_mb": 96, "cpu_cores": 0.25}, timeout=30).raise_for_status()
    for _ in range(3):
        requests.get(testapp.url + "/work", params={"mode": "cpu", "intensity": 1}, timeout=10).raise_for_status()
    prom = PrometheusConnect(url=prom_url, disable_ssl=True)
    got = _poll(prom, 'resource_blocker_target{resource="memory_mb"}', lambda r: float(r[0]["value"][1]) == 96)
    assert got[0]["metric"]["job"] == "resource-blocker"
    _poll(prom, 'resource_blocker_target{resource="cpu_cores"}', lambda r: float(r[0]["value"][1]) == 0.25)
    # the blocker's own measurement of its CPU, scraped, is near what it was asked to hold
    _poll(prom, 'resource_blocker_measured{resource="cpu_cores"}', lambda r: 0.12 < float(r[0]["value"][1]) < 0.45)
    _poll(prom, 'testapp_requests_total{mode="cpu",code="200"}', lambda r: float(r[0]["value"][1]) >= 3)
    _poll(prom, "node_cpu_seconds_total", lambda r: len(r) > 0)
    up = {r["metric"]["job"]: r["value"][1] for r in prom.custom_query("up")}
    assert up == {"node-exporter": "1", "resource-blocker": "1", "testapp": "1"}
    requests.delete(blocker.url + "/load", timeout=30)
