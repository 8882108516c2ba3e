"""The testbed backends: the same interface as the digital twin (`ClusterSim`), on a real cluster.

`PodPlacementEnv(scenario, cluster=KubernetesCluster(scenario, cfg))` is the Gymnasium env of the twin
with a real cluster behind it; the agent, `rlsched train|test|benchmark` use it with `--backend
kubernetes` (any cluster a kubeconfig context reaches; `rlsched cluster apply` deploys the agents) or
`--backend minikube` (`MinikubeCluster`: the testbed `rlsched cluster up` made, its context the profile).
Neither calls `minikube`.

Semantics (docs/testbed.md, "--backend minikube" and "Any Kubernetes cluster", says the same for users):
* Nodes are the cluster's nodes that match `kubernetes.node_selector`, sorted by name; their number must
  equal the scenario's. CPU and memory capacity are the nodes' allocatable minus what other pods already
  request. A node's power curve (the `watts_if_placed` feature only) is the node type its label
  `rlsched.io/node-type` names, else the first `[scheduler.node_types]` pattern matching its name (the
  live scheduler's mapping), else the scenario's type at its position; a type is one of the scenario's or
  a built-in one (fit yours with `rlsched calibrate`).
* reset: deletes every test app pod, sets each node's background load through its resource blocker
  (the scenario's `background_cpu_cores`, `background_memory_gib`), and starts the clock at 0.
* place(pod, node): creates the test app pod with the trace's requests and binds it to the node
  (a Binding, as a scheduler does; the pod's schedulerName is `rlsched`), then waits until it is Ready.
* advance_to(t), after a placement: one measurement window. JMeter drives the test app for
  `measurement.window_s`; the window is the JTL's span (first request to last response). Energy is
  the nodes' mean watts from the power monitor over that span times its length (J); the
  service-level signal is overload = window_s x test app pods x the fraction of requests slower than
  `slo.latency_ms` or failed (pod-s), so the reward has the twin's definition. Then the pods whose
  trace finish time (arrival + duration, no slowdown) is at or before t are deleted.
* Time (`now_s`) is the trace's; energy is counted over the windows only, one per decision.
* Any failure (API, node agent, Prometheus, a pod that never becomes Ready) raises TestbedError
  after deleting the test app pods, so the next `reset` starts clean.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import math
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import requests

from rlmodel.live.podspec import ObjectError, is_terminated, pod_requests
from rlmodel.load.jmeter import DEFAULT_PLAN, LoadError, jtl_window, run_load
from rlmodel.sim.backend import AWAKE, ClusterBackend, fits_mask
from rlmodel.sim.podtrace import PodTrace
from rlmodel.sim.power import PowerCurves
from rlmodel.sim.scenario import Scenario
from rlmodel.testbed.config import TestbedConfig
from rlmodel.testbed.kube import (
    TESTAPP_LABELS,
    Kube,
    TestbedError,
    cpu_cores,
    load_manifests,
    memory_gib,
    testapp_template,
    with_registry,
)
from rlmodel.testbed.metrics import PrometheusReader, WindowPower
from rlmodel.testbed.power_sources import power_source

WINDOW_COLUMNS = ["run", "episode", "step", "window_start_s", "window_end_s", "window_s", "pods", "requests",
                  "misses", "latency_p50_ms", "latency_p95_ms", "energy_j", "host_watts", "overload_pod_s"]
POWER_COLUMNS = ["run", "episode", "step", "node", "vm", "window_start_s", "window_end_s", "watts", "energy_j",
                 "cpu_util", "test_pods", "cpu_requested_cores", "source", "zone"]
POD_POWER_COLUMNS = ["run", "episode", "step", "node", "namespace", "pod", "window_start_s", "window_end_s", "watts",
                     "energy_j", "source", "zone"]


class _RowLog:
    """Appends rows to a CSV with a header, one flush per row (a crash loses nothing already written)."""

    def __init__(self, path: Path, columns: list[str]):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            new = not path.exists() or path.stat().st_size == 0
            if not new:  # appending: only to a file with these very columns, never a mixed CSV
                with open(path, encoding="utf-8", errors="replace") as fh:
                    header = fh.readline().rstrip("\r\n")
                if header != ",".join(columns):
                    raise TestbedError(f"{path}: its columns ({header[:120]}) are not this version's "
                                       f"({','.join(columns)}): write to another folder, or move the file away")
            self.fh = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise TestbedError(f"{path}: cannot write: {exc.strerror or exc}") from None
        self.writer = csv.DictWriter(self.fh, fieldnames=columns)
        if new:
            self.writer.writeheader()
            self.fh.flush()

    def write(self, row: dict[str, Any]) -> None:
        self.writer.writerow(row)
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


class KubernetesCluster:
    """A real cluster behind the written cluster interface, `rlmodel.sim.backend.ClusterBackend` (see the
    module docstring for the semantics)."""

    wake_s = 0.0  # testbed nodes never sleep
    backend = "kubernetes"

    def __init__(self, scenario: Scenario, cfg: TestbedConfig, *, record_dir: Path | None = None,
                 run: str = "", kube: Kube | None = None):
        self.scenario, self.cfg, self.run = scenario, cfg, run
        # kubernetes: the configured context, else the kubeconfig's current one; minikube: the profile's
        self.kube = kube or Kube(cfg, context=(cfg.kubernetes.context or None) if self.backend == "kubernetes" else "")
        self.prom = PrometheusReader(cfg.prometheus.url, timeout_s=cfg.prometheus.query_timeout_s,
                                     retries=cfg.kubernetes.retries, scrape_interval_s=cfg.prometheus.scrape_interval_s)
        selector = cfg.kubernetes.node_selector
        self.nodes = self.kube.nodes(selector)
        n = len(self.nodes)
        if n != scenario.num_nodes:
            where = f"the cluster {cfg.minikube.profile}" if self.backend == "minikube" else \
                f"the cluster at {self.kube.api.configuration.host}"
            chosen = f" matching kubernetes.node_selector {selector!r}" if selector else ""
            raise TestbedError(f"scenario {scenario.name} has {scenario.num_nodes} nodes, {where} has {n}{chosen}: "
                               f"use a scenario with {n} nodes (rlsched calibrate writes one)"
                               + ("" if selector or self.backend == "minikube" else
                                  ", or choose nodes with kubernetes.node_selector"))
        self.num_nodes = n
        self.names = [nd.name for nd in self.nodes]
        self.power = power_source(cfg, self.prom, self.nodes)
        self.vms = {nd.name: cfg.power.vm_prefix + nd.name for nd in self.nodes}
        types, self.curve_from = node_curves(scenario, self.nodes, cfg)
        self.node_type_names = [t.name for t in types]
        self.curves = np.array([t.watts for t in types], dtype=np.float64)
        self.idle_watts = self.curves[:, 0].copy()
        self.peak_watts = self.curves[:, -1].copy()
        self._power_curves = PowerCurves(self.curves)
        # shown in the observation as in the twin (the testbed's nodes themselves never sleep)
        self.sleep_after_s = scenario.idle_sleep_after_s
        # what the test app may request: allocatable minus the requests of every other pod (node agents, system)
        used_cpu, used_mem = self._other_requests()
        self.cores = np.maximum(np.array([nd.cpu_cores for nd in self.nodes]) - used_cpu, 0.0)
        self.memory_gib = np.maximum(np.array([nd.memory_gib for nd in self.nodes]) - used_mem, 0.0)
        template = testapp_template(load_manifests())
        self.template = with_registry(template, cfg.images.registry) if self.backend == "kubernetes" else template
        self.target_url = cfg.jmeter.target_url or \
            f"http://{self.nodes[0].address}:{cfg.ports.testapp_node_port}/work"
        self.record_dir = record_dir
        self._windows = _RowLog(record_dir / "windows.csv", WINDOW_COLUMNS) if record_dir else None
        self._power = _RowLog(record_dir / "power_samples.csv", POWER_COLUMNS) if record_dir else None
        self._pod_power = _RowLog(record_dir / "pod_power.csv", POD_POWER_COLUMNS) \
            if record_dir and cfg.power.source == "kepler" and cfg.power.pods else None
        self.episode = -1
        self.trace: PodTrace | None = None

    # ------------------------------------------------------------------ ClusterSim interface
    def reset(self, trace: PodTrace) -> None:
        """Clean cluster, background load set, clock at 0."""
        self.episode += 1
        self.trace = trace
        n = self.num_nodes
        self._guard(self.kube.delete_testapp_pods, self.cfg.measurement.ready_timeout_s)
        self._guard(self._set_background)
        self.now_s = 0.0
        self.energy_j = self.overload_pod_s = self.wake_delay_pod_s = self.imbalance_s = 0.0
        self.window_s_total = 0.0
        self.wakeups = self.unschedulable = self.pods_done = self.pods_placed = 0
        self.cpu_requested = [0.0] * n
        self.mem_requested = [0.0] * n
        bg = self.scenario.background_cpu_cores
        self.demand = [float(b) for b in bg]
        self.watts = [float(self.curves[i, 0]) for i in range(n)]
        self.state = [AWAKE] * n
        self.pods_on = [0] * n
        self.empty_since = [0.0] * n
        self.wake_done = [math.inf] * n
        self.node_of = np.full(len(trace), -1, dtype=np.int64)
        self.finish_s = np.full(len(trace), np.nan)
        self.start_s = np.full(len(trace), np.nan)
        self._alive: dict[int, str] = {}  # trace index -> pod name
        self._pending_window = False
        self._step = 0

    def fits(self, cpu_request: float, memory_request: float) -> np.ndarray:
        return fits_mask(self, cpu_request, memory_request)

    def power_w(self, demand_cores: np.ndarray) -> np.ndarray:
        """(N,) the scenario's curve at `demand_cores` (a prediction; measured watts are in `watts`)."""
        return self._power_curves.at_utilization(np.asarray(demand_cores, dtype=np.float64)
                                                 / np.maximum(self.cores, 1e-9))

    def watts_if_added(self, extra_cores: float) -> np.ndarray:
        return self.power_w(np.asarray(self.demand) + extra_cores)

    @property
    def measured_s(self) -> float:
        """Seconds over which energy was measured (the windows)."""
        return self.window_s_total

    @property
    def pods_active(self) -> int:
        return self.pods_placed - self.pods_done

    def place(self, pod: int, node: int) -> None:
        """Create the pod from the trace, bind it to `node`, wait until Ready."""
        assert self.trace is not None
        name = f"testapp-{self.run or 'run'}-e{self.episode}-p{pod}".lower()[:63].rstrip("-")
        cpu, mem = float(self.trace.cpu_request_cores[pod]), float(self.trace.memory_request_gib[pod])
        body = self._pod_body(name, cpu, mem, pod)

        def go() -> None:
            self.kube.create_pod(body)
            self.kube.bind(name, self.names[node])
            self.kube.wait_ready(name, self.cfg.measurement.ready_timeout_s)

        self._guard(go)
        self._alive[pod] = name
        self.node_of[pod] = node
        self.start_s[pod] = self.now_s  # Ready: it runs from now
        self.pods_placed += 1
        self.pods_on[node] += 1
        self.cpu_requested[node] += cpu
        self.mem_requested[node] += mem
        self.demand[node] += float(self.trace.usage_cores[pod])
        self._pending_window = True

    def reject(self, pod: int) -> None:
        self.unschedulable += 1

    def advance_to(self, t: float) -> None:
        """Measure the window of the last placement (if any), then retire pods finished by trace time t."""
        if self._pending_window:
            self._guard(self._measure_window)
            self._pending_window = False
        self._retire(t)
        self.now_s = max(self.now_s, t)

    def drain(self) -> float:
        """Measure the last window, then delete every test app pod (the episode's end)."""
        if self._pending_window:
            self._guard(self._measure_window)
            self._pending_window = False
        self._retire(math.inf)
        return self.now_s

    def label_run(self, run: str) -> None:
        """The `run` column of the window and power rows written from now on (and the pods' name prefix)."""
        self.run = run

    def close(self) -> None:
        """Close the window and power CSVs (idempotent)."""
        for log in (self._windows, self._power, self._pod_power):
            if log is not None:
                log.close()

    # ------------------------------------------------------------------ internals
    def _guard(self, fn, *args):
        """Run fn; on any failure delete the test app pods (best effort) and raise TestbedError."""
        try:
            return fn(*args)
        except (TestbedError, LoadError) as exc:
            self._cleanup()
            raise TestbedError(str(exc)) from None

    def _cleanup(self) -> None:
        with contextlib.suppress(TestbedError):
            self.kube.delete_testapp_pods(timeout_s=30)

    def _pod_body(self, name: str, cpu: float, mem_gib: float, index: int) -> dict[str, Any]:
        body = copy.deepcopy(self.template)
        meta = body["metadata"]
        meta["name"] = name
        meta["namespace"] = self.kube.namespace
        meta["labels"] = {**meta.get("labels", {}), **TESTAPP_LABELS, "rlsched.io/episode": str(self.episode),
                          "rlsched.io/pod": str(index)}
        container = body["spec"]["containers"][0]
        res = container.setdefault("resources", {})
        cpu_m, mem_mi = max(1, round(cpu * 1000)), max(1, round(mem_gib * 1024))
        limits = res.get("limits", {})
        res["requests"] = {"cpu": f"{cpu_m}m", "memory": f"{mem_mi}Mi"}
        res["limits"] = {"cpu": f"{max(cpu_m, round(cpu_cores(limits.get('cpu', '0')) * 1000))}m",
                         "memory": f"{max(mem_mi, round(memory_gib(limits.get('memory', '0')) * 1024))}Mi"}
        body["spec"]["schedulerName"] = "rlsched"
        body["spec"].pop("nodeName", None)
        return body

    def _blocker(self, node: int) -> str:
        return f"http://{self.nodes[node].address}:{self.cfg.ports.resource_blocker}"

    def _set_background(self) -> None:
        cpu, mem = self.scenario.background_cpu_cores, self.scenario.background_memory_gib
        for i, nd in enumerate(self.nodes):
            url = self._blocker(i) + "/load"
            body = {"cpu_cores": cpu[i], "memory_mb": mem[i] * 1024}
            try:
                token = os.environ.get("RLSCHED_BLOCKER_TOKEN", "")  # when the blockers run with BLOCKER_TOKEN
                r = requests.put(url, json=body, timeout=self.cfg.measurement.node_timeout_s,
                                 headers={"Authorization": f"Bearer {token}"} if token else None)
            except requests.RequestException as exc:
                timeout = self.cfg.measurement.node_timeout_s
                raise TestbedError(f"node {nd.name}: the resource blocker at {url} does not answer "
                                   f"({type(exc).__name__}, timeout {timeout:g} s)") from None
            if r.status_code != 200:
                msg = r.json().get("error", r.text) if r.headers.get("content-type", "").startswith(
                    "application/json") else r.text
                raise TestbedError(f"node {nd.name}: the resource blocker refused the background load {body}: "
                                   f"{str(msg)[:200]}")

    def _other_requests(self) -> tuple[np.ndarray, np.ndarray]:
        """CPU (cores) and memory (GiB) requested on each node by pods other than the test app's."""
        cpu, mem = np.zeros(self.num_nodes), np.zeros(self.num_nodes)
        index = {name: i for i, name in enumerate(self.names)}
        pods = self.kube.call("list pods", self.kube.core.list_pod_for_all_namespaces).items
        for obj in pods:
            p = self.kube.api.sanitize_for_serialization(obj)  # the JSON form the live filter reads
            labels = (p.get("metadata") or {}).get("labels") or {}
            if all(labels.get(k) == v for k, v in TESTAPP_LABELS.items()):
                continue
            node = (p.get("spec") or {}).get("nodeName")
            if node not in index or is_terminated(p):
                continue
            try:  # the effective requests, as kube-scheduler counts them (init containers, overhead)
                pod_cpu, pod_mem = pod_requests(p)
            except ObjectError as exc:
                raise TestbedError(f"pod {p['metadata'].get('name')}: {exc}") from None
            cpu[index[node]] += pod_cpu
            mem[index[node]] += pod_mem
        return cpu, mem

    def _measure_window(self) -> None:
        cfg = self.cfg
        out = (self.record_dir or Path(tempfile.gettempdir()) / "rlsched-windows") / "jmeter" / \
            f"{self.run or 'run'}-e{self.episode:03d}-s{self._step:04d}"
        if cfg.measurement.settle_s > 0:
            time.sleep(cfg.measurement.settle_s)
        run_load(self.target_url, out, plan=Path(cfg.jmeter.plan) if cfg.jmeter.plan else DEFAULT_PLAN,
                 threads=cfg.jmeter.threads, duration_s=max(1, round(cfg.measurement.window_s)), ramp_up_s=0,
                 mode=cfg.jmeter.mode, intensity=cfg.jmeter.intensity, jmeter=cfg.jmeter.binary or None)
        jw = jtl_window(out / "results.jtl", cfg.slo.latency_ms)
        power: WindowPower = self.power.window(jw.start_s, jw.end_s)
        seconds = power.seconds
        pods = self.pods_active
        energy = sum(power.node_energy_j(n) for n in self.names)
        overload = seconds * pods * (jw.misses / jw.requests if jw.requests else 1.0)
        self.energy_j += energy
        self.overload_pod_s += overload
        awake = np.asarray(self.state) == AWAKE
        util = np.where(awake, np.minimum(np.asarray(self.demand) / np.maximum(self.cores, 1e-9), 1.0), 0.0)
        self.imbalance_s += float(util.std()) * seconds  # the demand estimate over the window, as the twin counts it
        self.window_s_total += seconds
        for i, name in enumerate(self.names):
            self.watts[i] = power.node_watts[name]
        if self._windows is not None:
            self._windows.write({"run": self.run, "episode": self.episode, "step": self._step,
                                 "window_start_s": f"{jw.start_s:.3f}", "window_end_s": f"{jw.end_s:.3f}",
                                 "window_s": f"{seconds:.3f}", "pods": pods, "requests": jw.requests,
                                 "misses": jw.misses, "latency_p50_ms": f"{jw.latency_p50_ms:.1f}",
                                 "latency_p95_ms": f"{jw.latency_p95_ms:.1f}", "energy_j": f"{energy:.3f}",
                                 "host_watts": "" if math.isnan(power.host_watts) else f"{power.host_watts:.3f}",
                                 "overload_pod_s": f"{overload:.3f}"})
        if self._power is not None:
            for i, name in enumerate(self.names):
                self._power.write({"run": self.run, "episode": self.episode, "step": self._step, "node": name,
                                   "vm": self.vms[name] if power.source == "rlsched-monitor" else "",
                                   "window_start_s": f"{jw.start_s:.3f}",
                                   "window_end_s": f"{jw.end_s:.3f}", "watts": f"{power.node_watts[name]:.3f}",
                                   "energy_j": f"{power.node_energy_j(name):.3f}",
                                   "cpu_util": f"{power.node_cpu_util[name]:.4f}", "test_pods": self.pods_on[i],
                                   "cpu_requested_cores": f"{self.cpu_requested[i]:.3f}",
                                   "source": power.source, "zone": power.zone})
        if self._pod_power is not None:
            for node, namespace, pod, watts in power.pod_watts:
                self._pod_power.write({"run": self.run, "episode": self.episode, "step": self._step, "node": node,
                                       "namespace": namespace, "pod": pod, "window_start_s": f"{jw.start_s:.3f}",
                                       "window_end_s": f"{jw.end_s:.3f}", "watts": f"{watts:.3f}",
                                       "energy_j": f"{watts * seconds:.3f}", "source": power.source,
                                       "zone": power.zone})
        self._step += 1

    def _retire(self, t: float) -> None:
        assert self.trace is not None
        trace = self.trace
        for pod, name in list(self._alive.items()):
            finish = float(trace.arrival_s[pod] + trace.work_s[pod])
            if finish <= t:
                self._guard(self.kube.delete_pod, name)
                node = int(self.node_of[pod])
                del self._alive[pod]
                self.pods_done += 1
                self.pods_on[node] -= 1
                self.cpu_requested[node] -= float(trace.cpu_request_cores[pod])
                self.mem_requested[node] -= float(trace.memory_request_gib[pod])
                self.demand[node] -= float(trace.usage_cores[pod])
                self.finish_s[pod] = min(finish, max(self.now_s, t if math.isfinite(t) else finish))
                if self.pods_on[node] == 0:
                    self.cpu_requested[node] = self.mem_requested[node] = 0.0
                    self.demand[node] = float(self.scenario.background_cpu_cores[node])
                    self.empty_since[node] = self.now_s


class MinikubeCluster(KubernetesCluster):
    """The Minikube testbed (`rlsched cluster up`): its context is the profile's, its power the host monitor's
    unless `power.source` says otherwise."""

    backend = "minikube"


def node_curves(scenario: Scenario, nodes: list, cfg: TestbedConfig) -> tuple[list, list[str]]:
    """Each node's type (see the module docstring) and where it came from: "label", "pattern" or "position"."""
    import re

    from rlmodel.live.view import NODE_TYPE_LABEL
    from rlmodel.sim.power import BUILTIN_NODE_TYPES

    known = {**BUILTIN_NODE_TYPES, **{t.name: t for t in scenario.node_types}}
    patterns = list(cfg.scheduler.node_types.items())
    for pattern, name in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise TestbedError(f"scheduler.node_types: {pattern!r}: invalid regular expression: {exc}") from None
        if name not in known:
            raise TestbedError(f"scheduler.node_types: {pattern!r} = {name!r}: not a type of scenario {scenario.name} "
                               f"nor a built-in one (known: {', '.join(sorted(known))})")
    types, how = [], []
    for i, node in enumerate(nodes):
        label = dict(node.labels).get(NODE_TYPE_LABEL)
        if label is not None:
            if label not in known:
                raise TestbedError(f"node {node.name}: label {NODE_TYPE_LABEL}={label!r} names no type of scenario "
                                   f"{scenario.name} nor a built-in one (known: {', '.join(sorted(known))})")
            types.append(known[label])
            how.append("label")
            continue
        match = next((name for pattern, name in patterns if re.search(pattern, node.name)), None)
        if match is not None:
            types.append(known[match])
            how.append("pattern")
        else:
            types.append(scenario.node_types[i])
            how.append("position")
    return types, how


if TYPE_CHECKING:
    def _implements(cluster: KubernetesCluster) -> ClusterBackend:
        return cluster  # mypy: KubernetesCluster implements the written cluster interface
