"""The Minikube harness against a testbed in a box (tests/testbed.py): kmock as the API server, a stub
minikube, real node-exporter, resource blockers, test apps, Prometheus, JMeter and the power monitor on
fake RAPL. Marked `testbed`; they run in `make test`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import requests
from click.testing import CliRunner

from rlmodel.cli import main
from rlmodel.sim.scenario import load_scenario
from rlmodel.testbed.cluster import stop_prometheus
from rlmodel.testbed.config import TestbedConfig, load_config
from tests.testbed import Testbed

pytestmark = [pytest.mark.testbed, pytest.mark.timeout(600)]

SCENARIO = """
description = "three Minikube VMs, three pods: a short testbed episode"
[[node_types]]
name = "minikube-vm"
count = 3
background_cpu_cores = 0.1
background_memory_gib = 0.0625

[workload]
pods_per_episode = 3
mean_interarrival_s = 30.0
cpu_request_cores = [0.1, 0.4]
memory_request_gib = [0.0625, 0.125]
duration_s = [20, 60]
"""


def run(args, *, ok: bool = True, env: dict | None = None):
    result = CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("testbed")
    tb = Testbed(tmp)
    cfg = load_config(tb.config)
    try:
        yield tb
    finally:
        stop_prometheus(cfg)
        tb.close()


ROOT = Path(__file__).resolve().parents[1]


def make(target: str, box, **variables) -> subprocess.CompletedProcess:
    """The Makefile's target, pointed at the box's configuration through RLSCHED_CONFIG."""
    args = ["make", "--no-print-directory", "-C", str(ROOT), target] + [f"{k}={v}" for k, v in variables.items()]
    return subprocess.run(args, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "RLSCHED_CONFIG": str(box.config)})


@pytest.fixture(scope="module")
def up(box):
    """`make cluster-up SKIP_IMAGES=1` on the box."""
    result = make("cluster-up", box, SKIP_IMAGES=1)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_cluster_up_runs_minikube_applies_manifests_and_reports_everything_up(box, up):
    start = [c for c in box.minikube.calls if "start" in c]
    assert start == [["-p", "rlsched", "start", "--driver=kvm2", "--nodes=3", "--cpus=2", "--memory=4096mb"]]
    assert not any("image" in c for c in box.minikube.calls)  # --skip-images
    ns = box.kube.core.read_namespace("rlsched")
    assert ns.metadata.name == "rlsched"
    assert box.kube.core.read_namespace("rlsched-system").metadata.labels[
        "pod-security.kubernetes.io/enforce"] == "privileged"
    assert ns.metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {d.metadata.name for d in box.kube.apps.list_namespaced_daemon_set("rlsched-system").items} == \
        {"node-exporter", "resource-blocker"}
    svc = box.kube.core.read_namespaced_service("testapp", "rlsched")
    assert svc.spec.ports[0].node_port == 30080
    assert "testapp-template" not in {p.metadata.name for p in box.kube.core.list_namespaced_pod("rlsched").items}
    assert "testbed up:" in up and "DOWN" not in up
    for node, address in box.addresses.items():
        assert f"node-exporter {node}" in up and f"{address}:{box.ports['node_exporter']}" in up
        assert f"resource-blocker {node}" in up
    # the Prometheus it started scrapes every node's node-exporter, labelled with the node's name
    prom = load_config(box.config).prometheus.url
    deadline = time.monotonic() + 30
    nodes = set()
    while time.monotonic() < deadline and nodes != set(box.node_names):
        r = requests.get(prom + "/api/v1/query", params={"query": 'up{job="node-exporter"} == 1'}, timeout=5).json()
        nodes = {s["metric"]["node"] for s in r["data"]["result"]}
        time.sleep(0.5)
    assert nodes == set(box.node_names)


def test_cluster_up_again_is_idempotent_and_status_reports_up(box, up):
    again = run(["cluster", "up", "--config", box.config, "--skip-images"]).output
    assert "DaemonSet node-exporter: updated" in again and "Service testapp: updated" in again
    status = run(["cluster", "status", "--config", box.config])
    assert "DOWN" not in status.output and "prometheus" in status.output and "power monitor" in status.output


def test_train_and_benchmark_on_the_testbed_use_the_power_monitor_energy(box, up, tmp_path):
    scenario = tmp_path / "tb3.toml"
    scenario.write_text(SCENARIO)
    model = tmp_path / "Dale.pth"
    # a model trained briefly in the twin of the same scenario, then fine-tuned for a few steps on the testbed
    run(["train", "--model", model, "--scenario", scenario, "--steps", "300", "--log-dir", tmp_path / "twin",
         "--set", "learning_starts=100", "--set", "validation_episodes=2"])
    t0 = time.time()
    out = run(["train", "--model", model, "--resume", "--steps", "303", "--backend", "minikube",
               "--config", box.config, "--log-dir", tmp_path / "tb-train"]).output
    assert "trained 303 steps" in out
    windows = pd.read_csv(tmp_path / "tb-train" / "windows.csv")
    assert len(windows) == 3 and (windows.requests > 0).all()
    shown = run(["test", "--model", model, "--scenario", scenario, "--backend", "minikube", "--config",
                 box.config]).output
    chosen = re.findall(r"-> node (\d) \(([\w-]+)\)", shown)
    assert len(chosen) == 3 and all(box.node_names[int(i)] == name for i, name in chosen)
    assert re.search(r"energy \d+\.\d kJ", shown)
    bench = tmp_path / "bench"
    out = run(["benchmark", "--backend", "minikube", "--config", box.config, "--scenario", scenario,
               "--policies", "round-robin,dqn", "--model", model, "--episodes", "1", "--out", bench]).output
    assert "windows.csv" in out
    episodes = pd.read_csv(bench / "episodes.csv")
    assert set(episodes.policy) == {"round-robin", "dqn"} and "oracle" not in set(episodes.policy)
    windows = pd.read_csv(bench / "windows.csv")
    power = pd.read_csv(bench / "power_samples.csv")
    assert set(windows.run) == {"round-robin", "dqn"} and len(windows) == 6
    assert len(power) == 3 * len(windows) and set(power.node) == set(box.node_names)
    # energies are the power monitor's: the host package reads the fake feeder's rate, and each
    # node's share follows its VM's CPU (duty 0.1 < 0.2 < 0.3 of one of 2 CPUs) and sums below the package
    # over all windows within 5 %; each window within 25 %: a window is a few seconds, and on a loaded 2-core
    # machine the fake feeder or the monitor can be descheduled for a few hundred ms at a window's edge
    mean_host_w = (windows.host_watts * windows.window_s).sum() / windows.window_s.sum()
    assert mean_host_w == pytest.approx(box.rapl_watts, rel=0.05), windows.host_watts
    assert windows.host_watts.between(0.75 * box.rapl_watts, 1.25 * box.rapl_watts).all(), windows.host_watts
    mean_w = power.groupby("node").watts.mean()
    assert mean_w[box.node_names[0]] < mean_w[box.node_names[1]] < mean_w[box.node_names[2]]
    assert (power.groupby(["run", "step"]).watts.sum() < 1.05 * box.rapl_watts).all()
    # and each window's node watts are the monitor's own samples over that window (its CSV), averaged
    monitor = pd.read_csv(box.tmp / "power.csv")
    monitor["t"] = (pd.to_datetime(monitor.timestamp, utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    for row in power.itertuples():
        inside = monitor[(monitor.vm == row.vm) & (monitor.t > row.window_start_s + 0.5)
                         & (monitor.t <= row.window_end_s)]
        assert len(inside) >= 2
        assert row.watts == pytest.approx(inside.vm_watts.mean(), rel=0.3, abs=0.3)
    per_episode = windows.groupby("run").energy_j.sum()
    for policy in ("round-robin", "dqn"):
        got = float(episodes.loc[episodes.policy == policy, "energy_j"].iloc[0])
        assert got == pytest.approx(per_episode[policy], rel=1e-3)
        assert got == pytest.approx(float(power.loc[power.run == policy, "energy_j"].sum()), rel=1e-3)
    # every pod was placed by binding, and none is left behind
    assert box.kube.core.list_namespaced_pod("rlsched").items == []
    assert time.time() - t0 < 400
    # the measured samples calibrate a scenario the twin can load
    calibrated = tmp_path / "calibrated.toml"
    out = run(["calibrate", "--power", bench / "power_samples.csv", "--power", tmp_path / "tb-train" /
               "power_samples.csv", "--out", calibrated]).output
    assert "MAPE" in out and calibrated.is_file()
    run(["scenarios", "--show", calibrated])
    # or the power monitor's own CSV, joined with node-exporter utilization from Prometheus
    from_monitor = tmp_path / "from-monitor.toml"
    out = run(["calibrate", "--power", box.tmp / "power.csv", "--out", from_monitor, "--config", box.config]).output
    fitted = load_scenario(str(from_monitor))
    assert [t.name for t in fitted.node_types] == [f"calibrated-{n}" for n in box.node_names]
    for name in box.node_names:
        assert name in out


def test_a_node_that_stops_answering_ends_the_episode_with_a_clear_error(box, up, tmp_path):
    scenario = tmp_path / "tb3.toml"
    scenario.write_text(SCENARIO)
    node = box.node_names[1]
    box.kubelets.kill_agent("resource-blocker", node)
    try:
        t0 = time.monotonic()
        result = run(["benchmark", "--backend", "minikube", "--config", box.config, "--scenario", scenario,
                      "--policies", "round-robin", "--episodes", "1", "--out", tmp_path / "b"], ok=False)
        assert result.exit_code == 1
        assert f"node {node}: the resource blocker" in result.output and "does not answer" in result.output
        assert "Traceback" not in result.output
        assert time.monotonic() - t0 < 60
    finally:
        os.kill(box.kubelets.agents[("resource-blocker", node)].pid, 18)


def test_prometheus_down_gives_a_clear_error(box, up, tmp_path):
    scenario = tmp_path / "tb3.toml"
    scenario.write_text(SCENARIO)
    result = run(["benchmark", "--backend", "minikube", "--config", box.config, "--scenario", scenario,
                  "--policies", "round-robin", "--episodes", "1", "--out", tmp_path / "b",
                  "--testbed-set", "prometheus.url=http://127.0.0.1:9"], ok=False)
    assert result.exit_code == 1
    assert "Prometheus at http://127.0.0.1:9" in result.output and "Traceback" not in result.output
    # the failed episode left no test app pods behind
    assert box.kube.core.list_namespaced_pod("rlsched").items == []


def test_cluster_down_removes_what_up_created(box, up):
    result = make("cluster-down", box)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ["-p", "rlsched", "delete"] in box.minikube.calls
    assert box.kube.apps.list_namespaced_daemon_set("rlsched-system").items == []
    assert box.kube.core.list_namespaced_service("rlsched").items == []
    assert "Prometheus (pid" in result.stdout
    cfg = load_config(box.config)
    with pytest.raises(requests.RequestException):
        requests.get(cfg.prometheus.url + "/-/ready", timeout=2)
    status = run(["cluster", "status", "--config", box.config], ok=False)
    assert status.exit_code == 1 and "DOWN" in status.output


@pytest.mark.parametrize("missing", ["never-ready"])
def test_a_pod_that_never_becomes_ready_gives_a_clear_error(tmp_path, missing):
    tb = Testbed(tmp_path, never_ready=True, window_s=2)
    cfg = load_config(tb.config)
    try:
        run(["cluster", "up", "--config", tb.config, "--skip-images", "--set", "measurement.ready_timeout_s=20"])
        scenario = tmp_path / "tb3.toml"
        scenario.write_text(SCENARIO)
        t0 = time.monotonic()
        result = run(["benchmark", "--backend", "minikube", "--config", tb.config, "--scenario", scenario,
                      "--policies", "round-robin", "--episodes", "1", "--out", tmp_path / "b",
                      "--testbed-set", "measurement.ready_timeout_s=3"], ok=False)
        assert result.exit_code == 1
        assert "not Ready after 3 s" in result.output and "Traceback" not in result.output
        assert time.monotonic() - t0 < 60
        assert tb.kube.core.list_namespaced_pod("rlsched").items == []
    finally:
        stop_prometheus(cfg)
        tb.close()


def test_docker_missing_is_a_clear_error_unless_images_are_skipped(box, tmp_path):
    result = run(["cluster", "up", "--config", box.config], ok=False,
                 env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"})
    assert result.exit_code == 1
    assert "no Docker engine reachable" in result.output and "--skip-images" in result.output


def test_config_file_env_and_set_precedence(tmp_path):
    path = tmp_path / "rlsched.toml"
    path.write_text('[minikube]\nnodes = 4\nprofile = "lab"\n[measurement]\nwindow_s = 12\n')
    cfg = load_config(path, env={"RLSCHED_MINIKUBE_NODES": "5"}, overrides=["measurement.window_s=7"])
    assert (cfg.minikube.nodes, cfg.minikube.profile, cfg.measurement.window_s, cfg.context) == (5, "lab", 7.0, "lab")
    path.write_text("[minikube]\nnodes = \"many\"\n")
    result = run(["cluster", "config", "--config", path], ok=False)
    assert result.exit_code == 1 and f"{path}: minikube.nodes: expected a whole number" in result.output
    result = run(["cluster", "config", "--set", "minikube.cpu=2"], ok=False)
    assert "unknown key 'cpu' in [minikube]" in result.output
    result = run(["cluster", "config"], ok=False, env={"RLSCHED_MEASUREMENT_WINDOW_S": "-1"})
    assert "RLSCHED_MEASUREMENT_WINDOW_S: measurement.window_s: must be > 0" in result.output
    shown = run(["cluster", "config", "--set", "minikube.nodes=6"]).output
    assert "nodes = 6" in shown and json.dumps("kvm2") in shown
    # what `cluster config` prints is a valid configuration file, and the shipped example holds the defaults
    (tmp_path / "printed.toml").write_text(shown)
    assert load_config(tmp_path / "printed.toml", env={}).minikube.nodes == 6
    example = Path(__file__).resolve().parents[1] / "rlsched.example.toml"
    assert load_config(example, env={}).as_dict() == TestbedConfig().as_dict()
    # and it lists every key (tables such as [scheduler.node_types] as a section)
    from rlmodel.testbed.config import describe

    text = example.read_text()
    for key, default, _ in describe():
        section, _, name = key.rpartition(".")
        listed = f"[{key}]" in text if isinstance(default, dict) else re.search(rf"(?m)^{name} = ", text.split(
            f"[{section}]")[1].split("\n[")[0] if section else text.split("\n[")[0])
        assert listed, f"rlsched.example.toml does not list {key}"


@pytest.mark.hardware
def test_real_minikube_and_rapl(tmp_path):  # pragma: no cover - needs a kvm2 host with RAPL
    """On a real host, after `make cluster-up` and the power monitor: `.venv/bin/python -m pytest -m hardware`.

    Uses ./rlsched.toml (or the defaults); one short episode of round-robin on the real testbed.
    """
    if not Path("/sys/class/powercap/intel-rapl:0/energy_uj").exists():
        pytest.fail("no RAPL on this machine: the hardware tests need an Intel/AMD KVM host")
    status = run(["cluster", "status"], ok=False)
    assert status.exit_code == 0, status.output
    scenario = tmp_path / "tb3.toml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "bench"
    run(["benchmark", "--backend", "minikube", "--scenario", scenario, "--policies", "round-robin",
         "--episodes", "1", "--out", out, "--testbed-set", "measurement.window_s=20"])
    windows = pd.read_csv(out / "windows.csv")
    power = pd.read_csv(out / "power_samples.csv")
    assert len(windows) == 3 and (windows.requests > 0).all()
    assert (windows.host_watts > 1).all() and (power.watts > 0).all()
    assert (power.groupby("step").watts.sum() <= windows.set_index("step").host_watts * 1.05).all()
