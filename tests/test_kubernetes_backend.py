"""`--backend kubernetes` and the Kepler and Scaphandre power sources, in the testbed box (tests/testbed.py):
kmock as the API server of "any cluster" (no minikube: the stub records every call), real node-exporters and
resource blockers started for the DaemonSets `rlsched cluster apply` creates, test apps, JMeter, and two real
Prometheus servers scraping fake exporters that serve Kepler's (0.10+ and pre-0.10) and Scaphandre's exact
metric text (tests/fake_exporters.py) with counters advancing at known rates. Marked `testbed`."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import time

import pandas as pd
import pytest
import requests
from click.testing import CliRunner

from rlmodel.cli import main
from rlmodel.errors import TestbedError
from rlmodel.sim.scenario import load_scenario
from rlmodel.testbed.config import load_config
from rlmodel.testbed.kube import NodeInfo
from rlmodel.testbed.metrics import PrometheusReader
from rlmodel.testbed.power_sources import KeplerSource, NodeMatcher, ScaphandreSource, counter_increase, power_source
from tests.services import ROOT
from tests.test_testbed import SCENARIO  # three nodes, three pods: a short episode
from tests.testbed import Testbed, _stop_process, free_port_all, start_prometheus, wait_http

pytestmark = [pytest.mark.testbed, pytest.mark.timeout(600)]

SELECT = "rlsched.io/testbed=true"
KEPLER_W = [30.0, 45.0, 60.0]  # node 1 has two sockets: its watts are two series that add up
SCAPH_W = [50.0, 70.0, 90.0]
CURVES = [(40.0, 120.0), (60.0, 100.0)]  # pre-0.10 fakes: idle and peak watts, following the host's CPU


def run(args, *, ok: bool = True):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def _poll(url: str, query: str, count: int, seconds: float = 60) -> None:
    """Prometheus's first queryable sample lags its start by several seconds: poll, do not sleep blindly."""
    deadline = time.monotonic() + seconds
    got = 0
    while time.monotonic() < deadline:
        got = len(requests.get(url + "/api/v1/query", params={"query": query}, timeout=5).json()["data"]["result"])
        if got >= count:
            return
        time.sleep(0.5)
    raise AssertionError(f"{query}: {got} series, expected {count}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The box with its nodes labelled, an unlabelled fourth node, the fake exporters and two Prometheus."""
    tmp = tmp_path_factory.mktemp("lab")
    tb = Testbed(tmp, profile="lab", host_monitor=False)
    procs: list[subprocess.Popen] = []
    try:
        for n in tb.node_names:
            tb.kube.core.patch_node(n, {"metadata": {"labels": {"rlsched.io/testbed": "true"}}})
        tb.kube.add_node("lab-x", "127.0.0.9")  # not selected: no agents, no power series
        tb.ports.update(kepler=free_port_all(), kepler_old=free_port_all(), scaphandre=free_port_all())
        addresses = [tb.addresses[n] for n in tb.node_names]
        py = [sys.executable, "-m", "tests.fake_exporters"]
        tb.exporters = {}
        for i, (node, address) in enumerate(zip(tb.node_names, addresses, strict=True)):
            kepler = [*py, "kepler", "--listen", f"{address}:{tb.ports['kepler']}", "--node", node, "--watts",
                      str(KEPLER_W[i]), "--sockets", "2" if i == 1 else "1", "--kube", tb.kube.url]
            # the third host's Scaphandre is reached at 127.0.0.1: only [power.hosts] says which node it is
            scaph_at = f"{address if i < 2 else '127.0.0.1'}:{tb.ports['scaphandre']}"
            scaph = [*py, "scaphandre", "--listen", scaph_at, "--watts", str(SCAPH_W[i])]
            cmds = {("kepler", node): kepler, ("scaphandre", node): scaph}
            if i < len(CURVES):
                cmds[("kepler-old", node)] = [*py, "kepler-old", "--listen", f"{address}:{tb.ports['kepler_old']}",
                                              "--node", node, "--idle-watts", str(CURVES[i][0]), "--peak-watts",
                                              str(CURVES[i][1]), "--kube", tb.kube.url]
            for key, cmd in cmds.items():
                proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                procs.append(proc)
                tb.exporters[key] = cmd[cmd.index("--listen") + 1]
        for (_, _), where in tb.exporters.items():
            wait_http(f"http://{where}/metrics")
        ne = [f"{a}:{tb.ports['node_exporter']}" for a in addresses]
        tb.prom_new = start_prometheus(tmp / "prom-new", {
            "node-exporter": ne, "kepler": [f"{a}:{tb.ports['kepler']}" for a in addresses],
            "scaphandre": [tb.exporters[("scaphandre", n)] for n in tb.node_names]}, procs)
        tb.prom_old = start_prometheus(tmp / "prom-old", {
            "node-exporter": ne[:2], "kepler": [tb.exporters[("kepler-old", n)] for n in tb.node_names[:2]]}, procs)
        text = tb.config.read_text()
        text = text.replace("[kubernetes]\n", f'[kubernetes]\nnode_selector = "{SELECT}"\n')
        text = text.replace("[power]\n", '[power]\nsource = "kepler"\n')
        text = text.replace(f'url = "http://127.0.0.1:{tb.prom_port}"', f'url = "{tb.prom_new}"')
        text += f'\n[power.hosts]\n"127.0.0.1" = "{tb.node_names[2]}"\n'
        tb.lab_config = tmp / "lab.toml"
        tb.lab_config.write_text(text)
        yield tb
    finally:
        for p in procs:
            _stop_process(p)
        tb.close()


@pytest.fixture(scope="module")
def applied(lab):
    """`rlsched cluster apply` on the lab, then Prometheus holding every series the tests read."""
    out = run(["cluster", "apply", "--config", lab.lab_config]).output
    _poll(lab.prom_new, 'node_cpu_seconds_total{mode="idle"}', 3)
    _poll(lab.prom_new, "kepler_node_cpu_joules_total", 3 * 2 + 2)
    _poll(lab.prom_new, "scaph_host_energy_microjoules", 3)
    _poll(lab.prom_old, "kepler_node_package_joules_total", 2 * 2)
    _poll(lab.prom_old, 'node_cpu_seconds_total{mode="idle"}', 2)
    return out


def _nodes(lab, names=None) -> list[NodeInfo]:
    names = names or lab.node_names
    return [NodeInfo(n, lab.addresses.get(n, "127.0.0.9"), 2.0, 4.0) for n in names]


def _window(source, seconds: float = 4.0, during=None):
    start = time.time()
    if during:
        time.sleep(seconds / 2)
        during()
        time.sleep(seconds / 2)
    else:
        time.sleep(seconds)
    return source.window(start, time.time())


def test_cluster_apply_selects_nodes_and_never_calls_minikube(lab, applied):
    assert lab.minikube.calls == []
    assert "3 nodes: " + ", ".join(lab.node_names) in applied and "lab-x" not in applied
    assert "DOWN" not in applied
    for ds in lab.kube.apps.list_namespaced_daemon_set("rlsched-system").items:
        terms = ds.spec.template.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
        expr = terms.node_selector_terms[0].match_expressions[0]
        assert (expr.key, expr.operator, expr.values) == ("rlsched.io/testbed", "In", ["true"])
    status = run(["cluster", "status", "--backend", "kubernetes", "--config", lab.lab_config]).output
    assert "DOWN" not in status and "3 nodes matching" in status
    for n in lab.node_names:
        assert f"kepler {n}" in status and f"resource-blocker {n}" in status
        assert f"node-exporter series {n}" in status  # matched by the address in `instance`
    assert "Kepler 0.10+, zone package" in status
    scaph = run(["cluster", "status", "--backend", "kubernetes", "--config", lab.lab_config, "--set",
                 "power.source=scaphandre"]).output
    assert all(f"scaphandre {n}" in scaph for n in lab.node_names) and "DOWN" not in scaph
    # without the hosts mapping, the third host is nobody's: its node is reported down
    unmapped = run(["cluster", "status", "--backend", "kubernetes", "--config", lab.lab_config, "--set",
                    "power.source=scaphandre", "--set", "power.hosts={}"], ok=False)
    assert unmapped.exit_code == 1 and "DOWN scaphandre " + lab.node_names[2] in unmapped.output
    assert lab.minikube.calls == []


def test_kepler_and_scaphandre_windows_match_the_fakes_rates(lab, applied):
    reader = PrometheusReader(lab.prom_new, scrape_interval_s=1.0)
    kepler = KeplerSource(reader, _nodes(lab), NodeMatcher(_nodes(lab)))
    w = _window(kepler)
    assert kepler.version == "0.10+" and (w.source, w.zone) == ("kepler", "package")
    for n, watts in zip(lab.node_names, KEPLER_W, strict=True):
        assert w.node_watts[n] == pytest.approx(watts, rel=0.03), (n, w.node_watts)
        assert 0.0 <= w.node_cpu_util[n] <= 1.0
    dram = _window(KeplerSource(reader, _nodes(lab), NodeMatcher(_nodes(lab)), zone="dram"))
    for n, watts in zip(lab.node_names, KEPLER_W, strict=True):
        assert dram.node_watts[n] == pytest.approx(0.1 * watts, rel=0.03)
    cfg = load_config(lab.lab_config, overrides=["power.source=scaphandre"])
    scaph = power_source(cfg, reader, _nodes(lab))
    assert isinstance(scaph, ScaphandreSource)
    w = _window(scaph)
    assert (w.source, w.zone) == ("scaphandre", "host")
    for n, watts in zip(lab.node_names, SCAPH_W, strict=True):  # µJ counters, read as J
        assert w.node_watts[n] == pytest.approx(watts, rel=0.03), (n, w.node_watts)


def test_pre_0_10_kepler_names_are_detected_and_follow_the_cpu(lab, applied):
    reader = PrometheusReader(lab.prom_old, scrape_interval_s=1.0)
    nodes = _nodes(lab, lab.node_names[:2])
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        package = KeplerSource(reader, nodes, NodeMatcher(nodes))
        time.sleep(2)  # a steady load across the window's edges: the two exporters are scraped at other instants
        w = _window(package, 8.0)
    finally:
        _stop_process(busy)
    assert package.version == "pre-0.10"  # kepler_node_package_joules_total, node in exported_instance
    for n, (idle, peak) in zip(lab.node_names[:2], CURVES, strict=True):
        expected = idle + (peak - idle) * w.node_cpu_util[n]  # the fake follows the host's CPU, node-exporter too
        assert w.node_watts[n] == pytest.approx(expected, rel=0.10), (n, w.node_watts, w.node_cpu_util)
    platform = KeplerSource(reader, nodes, NodeMatcher(nodes), zone="platform")
    start = time.time()
    time.sleep(3)
    end = time.time()
    p, k = platform.window(start, end), package.window(start, end)
    for n in lab.node_names[:2]:  # the same counter model, x1.25 on the platform: the same span gives the ratio
        assert p.node_watts[n] / k.node_watts[n] == pytest.approx(1.25, rel=0.01)
    missing = KeplerSource(reader, nodes, NodeMatcher(nodes), zone="psys")  # a 0.10+ zone, absent here
    with pytest.raises(TestbedError, match="no Kepler node energy for zone psys"):
        missing.window(start, end)


def test_a_counter_reset_mid_window_counts_from_zero_not_backwards(lab, applied):
    reader = PrometheusReader(lab.prom_new, scrape_interval_s=1.0)
    node = lab.node_names[0]
    kepler = KeplerSource(reader, _nodes(lab), NodeMatcher(_nodes(lab)))
    where = lab.exporters[("kepler", node)]
    w = _window(kepler, 6.0, during=lambda: requests.post(f"http://{where}/reset", timeout=5))
    # the energy between the last sample before the restart and the restart is lost (at most one scrape interval)
    assert 0.7 * KEPLER_W[0] <= w.node_watts[node] <= 1.03 * KEPLER_W[0], w.node_watts
    # a plain last-minus-first would have gone far negative
    series = [r for r in reader.query(f'kepler_node_cpu_joules_total{{zone="package",node_name="{node}"}}[8s]')]
    values = [float(v) for _, v in series[0]["values"]]
    assert values[-1] < values[0]
    assert w.node_watts[lab.node_names[1]] == pytest.approx(KEPLER_W[1], rel=0.03)  # the others are untouched


def test_counter_increase_handles_resets_and_spans():
    samples = [(0.0, 100.0), (1.0, 110.0), (2.0, 5.0), (3.0, 15.0), (4.0, 25.0)]
    # half of the first and last intervals, the restart's 5 and the 10 after it; over exactly [0.5, 3.5]
    assert counter_increase(samples, 0.5, 3.5) == (5.0 + 5.0 + 10.0 + 5.0, 0.5, 3.5)
    assert counter_increase(samples, 1.0, 3.0) == (15.0, 1.0, 3.0)
    assert counter_increase(samples, -2.0, 1.5) == (12.5, 0.0, 1.5)  # only what the samples cover
    assert counter_increase(samples[:1], 0, 1) is None
    assert counter_increase(samples, 5.0, 6.0) is None  # nothing after the start


def test_a_node_without_power_series_is_one_clear_error_naming_the_query(lab, applied):
    reader = PrometheusReader(lab.prom_new, scrape_interval_s=1.0)
    nodes = _nodes(lab, [*lab.node_names, "lab-x"])
    with pytest.raises(TestbedError) as err:
        KeplerSource(reader, nodes, NodeMatcher(nodes)).window(time.time() - 3, time.time())
    msg = str(err.value)
    assert msg.startswith("node lab-x: no series of kepler_node_cpu_joules_total{zone=\"package\"}") and "\n" not in msg
    # and from the command line: one line, exit 1, no traceback
    result = run(["calibrate", "--source", "kepler", "--backend", "kubernetes", "--last-s", "10", "--step-s", "2",
                  "--out", lab.tmp / "x.toml", "--config", lab.lab_config, "--set", "kubernetes.node_selector="],
                 ok=False)
    assert result.exit_code == 1 and "node lab-x: no series of kepler_node_cpu_joules_total" in result.output
    assert "Traceback" not in result.output


def test_calibrate_fits_the_curve_from_kepler_data(lab, applied):
    # the host's CPU at three levels for a few seconds each: idle, one core busy, two cores busy
    t0 = time.time()
    time.sleep(8)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"])]
    time.sleep(8)
    busy.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
    time.sleep(8)
    for p in busy:
        _stop_process(p)
    time.sleep(2.5)  # the last samples are scraped
    out_file = lab.tmp / "lab-calibrated.toml"
    out = run(["calibrate", "--source", "kepler", "--backend", "kubernetes", "--end", f"{t0 + 24:.3f}", "--last-s",
               "24", "--step-s", "2", "--out", out_file, "--config", lab.lab_config, "--set",
               f"prometheus.url={lab.prom_old}", "--set", f"kubernetes.node_selector={SELECT},rlsched.io/old=true"],
               ok=False)
    # the third node has no pre-0.10 Kepler: only the two that do are selected
    assert out.exit_code == 1 and "no node matches" in out.output
    for n in lab.node_names[:2]:
        lab.kube.core.patch_node(n, {"metadata": {"labels": {"rlsched.io/old": "true"}}})
    out = run(["calibrate", "--source", "kepler", "--backend", "kubernetes", "--end", f"{t0 + 24:.3f}", "--last-s",
               "24", "--step-s", "2", "--out", out_file, "--config", lab.lab_config, "--set",
               f"prometheus.url={lab.prom_old}", "--set", f"kubernetes.node_selector={SELECT},rlsched.io/old=true"])
    fitted = load_scenario(str(out_file))
    assert [t.name for t in fitted.node_types] == [f"calibrated-{n}" for n in lab.node_names[:2]]
    for (node, t), (idle, peak) in zip(zip(lab.node_names, fitted.node_types), CURVES):
        # the printed line: node, samples, held out, MAPE %, utilization range %, watts
        row = re.search(rf"^{node} +\d+ +\d+ +([\d.]+) % +(\d+)-(\d+) ", out.output, re.M)
        assert row, out.output
        mape, lo, hi = float(row[1]), int(row[2]) / 100, int(row[3]) / 100
        assert mape < 8.0 and hi - lo >= 0.25, out.output  # idle to two busy cores (on a busy host, less)
        inside = [u / 10 for u in range(11) if lo + 0.05 <= u / 10 <= hi - 0.05]
        for u in inside:  # the fitted curve where the host went, against the fake's true curve
            assert t.watts[round(u * 10)] == pytest.approx(idle + (peak - idle) * u, rel=0.08), (t.name, t.watts)
        assert len(inside) >= 2
        assert t.cpu_cores == 2.0 and t.memory_gib == 4.0  # the nodes' allocatable


def test_benchmark_train_and_test_on_any_cluster_with_kepler_power(lab, applied, tmp_path):
    scenario = tmp_path / "lab3.toml"
    scenario.write_text(SCENARIO)
    bench = tmp_path / "bench"
    out = run(["benchmark", "--backend", "kubernetes", "--config", lab.lab_config, "--scenario", scenario,
               "--policies", "round-robin", "--episodes", "1", "--out", bench]).output
    assert "pod_power.csv" in out
    windows = pd.read_csv(bench / "windows.csv")
    power = pd.read_csv(bench / "power_samples.csv")
    pods = pd.read_csv(bench / "pod_power.csv")
    assert len(windows) == 3 and (windows.requests > 0).all() and windows.host_watts.isna().all()
    assert set(power.node) == set(lab.node_names) and len(power) == 9  # the selected nodes only
    assert set(power.source) == {"kepler"} and set(power.zone) == {"package"} and power.vm.isna().all()
    for n, watts in zip(lab.node_names, KEPLER_W, strict=True):
        rows = power[power.node == n]
        assert (rows.watts / watts).between(0.97, 1.03).all(), rows.watts
        # energy = the window's mean watts x its length, never a sum of samples
        assert rows.energy_j.to_numpy() == pytest.approx((rows.watts * (rows.window_end_s - rows.window_start_s))
                                                         .to_numpy(), rel=1e-3)
    episodes = pd.read_csv(bench / "episodes.csv")
    assert float(episodes.energy_j.iloc[0]) == pytest.approx(float(power.energy_j.sum()), rel=1e-3)
    # Kepler's per-pod energy is recorded alongside: the test app pods, each at the fake's 2 W per pod
    testapp = pods[pods.namespace == "rlsched"]
    assert len(testapp) >= 3 and testapp.pod.str.startswith("testapp-").all()
    assert testapp.watts.between(1.8, 2.2).all(), testapp.watts
    assert lab.kube.core.list_namespaced_pod("rlsched").items == []
    model = _tiny_model(tmp_path, scenario)
    out = run(["train", "--model", model, "--resume", "--steps", "203", "--backend", "kubernetes", "--config",
               lab.lab_config, "--log-dir", tmp_path / "lab-train"]).output
    assert "trained 203 steps" in out
    trained = pd.read_csv(tmp_path / "lab-train" / "power_samples.csv")
    assert len(trained) == 9 and set(trained.source) == {"kepler"}
    shown = run(["test", "--scenario", scenario, "--model", model, "--backend", "kubernetes", "--config",
                 lab.lab_config]).output
    assert "energy" in shown and lab.minikube.calls == []
    assert not math.isnan(float(episodes.energy_j.iloc[0]))


def _tiny_model(tmp_path, scenario):
    model = tmp_path / "Dale.pth"
    run(["train", "--model", model, "--scenario", scenario, "--steps", "200", "--log-dir", tmp_path / "twin",
         "--set", "learning_starts=100", "--set", "validation_episodes=1"])
    return model


def test_a_scenario_of_another_size_names_the_selector(lab, applied, tmp_path):
    scenario = tmp_path / "lab2.toml"
    scenario.write_text(SCENARIO.replace("count = 3", "count = 2"))
    result = run(["benchmark", "--backend", "kubernetes", "--config", lab.lab_config, "--scenario", scenario,
                  "--policies", "round-robin", "--episodes", "1", "--out", tmp_path / "b"], ok=False)
    assert result.exit_code == 1 and f"matching kubernetes.node_selector '{SELECT}'" in result.output
    assert "Traceback" not in result.output


def test_cluster_delete_removes_what_apply_made(lab, applied):
    out = run(["cluster", "delete", "--config", lab.lab_config]).output
    assert "DaemonSet node-exporter: deleted" in out and "Service testapp: deleted" in out
    assert lab.kube.apps.list_namespaced_daemon_set("rlsched-system").items == []
    assert lab.minikube.calls == []
