"""Where a node's energy comes from (`[power] source`): the host power monitor, Kepler or Scaphandre.

Every source answers the same two questions from Prometheus:

* `window(start_s, end_s)`: each node's mean watts over one measurement window (`WindowPower`);
* `samples(start_s, end_s, step_s)`: (node, t, watts, cpu_util) for every `step_s` slice of a longer span,
  what `rlsched calibrate --source` fits curves to.

Energy is always a counter difference: the raw samples Prometheus holds for an energy counter, read at
the window's start and end by linear interpolation between the samples around each (`counter_increase`),
give the energy (J) over exactly the window; energy / window length is the mean power (W). Never a sum or
mean of instantaneous watts. Utilization is read over the same seconds, whatever instants the two
exporters were scraped at, and adjacent windows add up without counting any energy twice. A counter that
goes down restarted from zero (an exporter restart, a RAPL wrap that the exporter passed on): as
Prometheus's `increase()`, the value after the drop counts as the increase since the restart.
Several series of one node (sockets, Kepler's dynamic/idle modes) add up.

Sources (docs/power-monitor.md, "Power sources", says the same for users):

* `rlsched-monitor`: `rlsched_vm_energy_joules_total{vm}` of host_scripts/kvm_power_monitor.py, the VM named
  after the node (`power.vm_prefix`), zone `package` (the VM's share of the host's package energy).
* `kepler`: 0.10+ `kepler_node_cpu_joules_total{zone=ZONE}` (label `node_name`), or pre-0.10
  `kepler_node_ZONE_joules_total` (`ZONE` = package, core, uncore, dram or platform; the `mode` dynamic and
  idle series add up), whichever Prometheus holds (checked once, 0.10+ first). Per pod:
  `kepler_pod_cpu_joules_total` (0.10+) or `kepler_container_ZONE_joules_total` summed by pod (pre-0.10).
* `scaphandre`: `scaph_host_energy_microjoules` (µJ), one series per host, zone `host`.

A series belongs to the node named by the first of its labels (`power.node_label`, else node_name, node,
exported_instance, instance; Scaphandre: `power.host_label`, then node) whose value, or whose host part, is
a node's name or one of its addresses, or a host mapped to a node in `[power.hosts]`.
CPU utilization comes the same way from node-exporter's `node_cpu_seconds_total{mode="idle"}`:
1 - idle seconds / (CPUs x span).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from rlmodel.errors import TestbedError
from rlmodel.live.usage import _host
from rlmodel.testbed.kube import NodeInfo
from rlmodel.testbed.metrics import HOST_ENERGY, SAMPLE_TIME, VM_ENERGY, PrometheusReader, WindowPower

SOURCES = ("rlsched-monitor", "kepler", "scaphandre")
KEPLER_NEW = "kepler_node_cpu_joules_total"
KEPLER_POD_NEW = "kepler_pod_cpu_joules_total"
SCAPHANDRE = "scaph_host_energy_microjoules"
IDLE = 'node_cpu_seconds_total{mode="idle"}'
NODE_LABELS = ("node_name", "node", "exported_instance", "instance")


def kepler_old_metric(zone: str) -> str:
    """The pre-0.10 node counter of `zone` (package, core, uncore, dram, platform)."""
    return f"kepler_node_{zone}_joules_total"


# ------------------------------------------------------------------------------------------ counter arithmetic
def _cumulative(samples: Sequence[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """(times, energy since the first sample) of a counter: its increases summed, a drop counted as a restart
    from zero (the value after it is that interval's increase)."""
    t, v = np.array(samples, dtype=float).reshape(-1, 2).T
    step = np.diff(v)
    return t, np.concatenate(([0.0], np.cumsum(np.where(step >= 0, step, v[1:]))))


def counter_increases(samples: Sequence[tuple[float, float]], starts_s: np.ndarray, ends_s: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(increase, seconds covered) of a counter over each window [starts_s[i], ends_s[i]], clipped to the samples'
    time range; 0 and 0 for a window they do not cover (or with fewer than two samples).

    `samples`: (Unix s, value) in increasing time order. The counter, restarts summed over (`_cumulative`), is
    read at each window's two ends by linear interpolation between the samples around them: each scrape
    interval's increase is spread evenly over the interval. So two series scraped at different instants (a power
    counter and node-exporter's CPU seconds) are measured over the same seconds, and adjacent windows add up to
    the whole: nothing is counted twice.
    """
    starts_s, ends_s = np.asarray(starts_s, dtype=float), np.asarray(ends_s, dtype=float)
    if len(samples) < 2:
        return np.zeros(starts_s.shape), np.zeros(starts_s.shape)
    t, cum = _cumulative(samples)
    a, b = np.maximum(starts_s, t[0]), np.minimum(ends_s, t[-1])
    covered = b > a
    return (np.where(covered, np.interp(b, t, cum) - np.interp(a, t, cum), 0.0),
            np.where(covered, b - a, 0.0))


def counter_increase(samples: Sequence[tuple[float, float]], start_s: float, end_s: float
                     ) -> tuple[float, float, float] | None:
    """(increase, t_from, t_to) of a counter over [start_s, end_s] (`counter_increases`); `t_from`, `t_to`: the
    part of it the samples cover. None with fewer than two samples or no overlap."""
    inc, covered = counter_increases(samples, np.array([start_s]), np.array([end_s]))
    if covered[0] <= 0:
        return None
    return float(inc[0]), max(start_s, samples[0][0]), min(end_s, samples[-1][0])


@dataclass
class NodeMatcher:
    """Which node a series belongs to (see the module docstring)."""

    nodes: Sequence[NodeInfo]
    labels: Sequence[str] = NODE_LABELS
    hosts: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = {n.name for n in self.nodes}
        self._by: dict[str, str] = {}
        for n in self.nodes:
            for a in (n.address, *n.addresses):
                self._by.setdefault(a, n.name)
        for host, node in self.hosts.items():
            if node not in names:
                continue  # a mapping to a node outside the selection is not an error: it is not measured
            self._by[host] = node
        for name in names:
            self._by[name] = name

    def node_of(self, labels: Mapping[str, str]) -> str | None:
        for key in self.labels:
            value = labels.get(key)
            if not isinstance(value, str) or not value:
                continue
            for candidate in (value, _host(value)):
                if candidate in self._by:
                    return self._by[candidate]
        return None


# ------------------------------------------------------------------------------------------ reading raw samples
@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    samples: list[tuple[float, float]]


def raw_series(reader: PrometheusReader, selector: str, start_s: float, at_s: float) -> list[Series]:
    """Every sample of the series `selector` selects, from a little before `start_s` to `at_s`."""
    span = max(1, math.ceil(at_s - start_s + 3 * reader.scrape_interval_s + 1))
    result = reader.query(f"{selector}[{span}s]", at_s)
    out = []
    for r in result:
        values = r.get("values") or []
        try:
            samples = [(float(t), float(v)) for t, v in values]
        except (TypeError, ValueError):
            continue
        out.append(Series(dict(r.get("metric") or {}), samples))
    return out


def _by_node(series: Iterable[Series], matcher: NodeMatcher) -> dict[str, list[Series]]:
    out: dict[str, list[Series]] = {}
    for s in series:
        node = matcher.node_of(s.labels)
        if node is not None:
            out.setdefault(node, []).append(s)
    return out


def _mean_watts(series: Sequence[Series], start_s: float, end_s: float, scale: float) -> float | None:
    """Sum over the series of (counter increase x scale) / its sample span; None if a series has < 2 samples."""
    total = 0.0
    for s in series:
        inc = counter_increase(s.samples, start_s, end_s)
        if inc is None or inc[2] <= inc[1]:
            return None
        total += inc[0] * scale / (inc[2] - inc[1])
    return total


def utilizations(series: Sequence[Series], starts_s: np.ndarray, ends_s: np.ndarray) -> np.ndarray:
    """Per window, 1 - idle CPU seconds / (CPUs x span) from node_cpu_seconds_total{mode="idle"} series (one per
    CPU); NaN where no series covers the window."""
    idle = span = np.zeros(np.shape(starts_s))
    for s in series:
        inc, covered = counter_increases(s.samples, starts_s, ends_s)
        idle, span = idle + inc, span + covered
    with np.errstate(invalid="ignore", divide="ignore"):
        busy = 1.0 - idle / span
    # counters read at scrape times stray a hair outside 0..1; more than that is a wrong join: no reading
    return np.where((span > 0) & (busy >= -0.02) & (busy <= 1.02), np.clip(busy, 0.0, 1.0), np.nan)


def utilization(series: Sequence[Series], start_s: float, end_s: float) -> float:
    """`utilizations` over one window."""
    return float(utilizations(series, np.array([start_s]), np.array([end_s]))[0])


# ------------------------------------------------------------------------------------------ sources
class CounterSource:
    """A source whose node energy is a Prometheus counter (Kepler, Scaphandre)."""

    name = ""
    zone = ""
    scale = 1.0  # counter unit -> J

    def __init__(self, reader: PrometheusReader, nodes: Sequence[NodeInfo], matcher: NodeMatcher):
        self.reader, self.nodes, self.matcher = reader, list(nodes), matcher
        self.names = [n.name for n in self.nodes]
        self.util_matcher = NodeMatcher(self.nodes, ("node", "instance"))

    def selector(self) -> str:
        raise NotImplementedError

    def pod_selector(self) -> str | None:
        return None

    def energy_series(self, start_s: float, at_s: float) -> dict[str, list[Series]]:
        """Each node's energy counter series, samples from a little before `start_s` to `at_s`."""
        return _by_node(raw_series(self.reader, self.selector(), start_s, at_s), self.matcher)

    # -- one window
    def window(self, start_s: float, end_s: float, timeout_s: float | None = None) -> WindowPower:
        """Mean watts per node over [start_s, end_s] (Unix s), once Prometheus holds a sample after `end_s` of
        every node (waits up to `timeout_s`, default 5 scrape intervals and at least 10 s)."""
        selector = self.selector()
        deadline = time.time() + (timeout_s if timeout_s is not None else max(10.0, 5 * self.reader.scrape_interval_s))
        while True:
            at = time.time()
            by_node = self.energy_series(start_s, at)
            missing = [n for n in self.names if n not in by_node]
            if missing:
                raise TestbedError(self._missing(selector, missing, by_node))
            late = [n for n in self.names
                    if min((s.samples[-1][0] for s in by_node[n] if s.samples), default=-math.inf) < end_s]
            if not late:
                break
            if time.time() >= deadline:
                raise TestbedError(f"Prometheus at {self.reader.url}: no sample of {selector} after the window for "
                                   f"node {late[0]} (is its {self.name} exporter scraped?)")
            time.sleep(min(0.25, self.reader.scrape_interval_s / 2))
        watts = {}
        for n in self.names:
            w = _mean_watts(by_node[n], start_s, end_s, self.scale)
            if w is None:
                raise TestbedError(f"node {n}: fewer than two samples of {selector} over the window (window shorter "
                                   "than the scrape interval, or the exporter stopped)")
            watts[n] = w
        util_series = _by_node(raw_series(self.reader, IDLE, start_s, at), self.util_matcher)
        util = {n: utilization(util_series.get(n, []), start_s, end_s) for n in self.names}
        pods = self._pods(start_s, end_s, at)
        return WindowPower(start_s, end_s, watts, math.nan, util, source=self.name, zone=self.zone, pod_watts=pods)

    def _pods(self, start_s: float, end_s: float, at: float) -> tuple[tuple[str, str, str, float], ...]:
        selector = self.pod_selector()
        if selector is None:
            return ()
        groups: dict[tuple[str, str, str], list[Series]] = {}
        for s in raw_series(self.reader, selector, start_s, at):
            node = self.matcher.node_of(s.labels)
            pod = s.labels.get("pod_name", "")
            if node is None or not pod:
                continue
            ns = s.labels.get("pod_namespace") or s.labels.get("container_namespace") or ""
            groups.setdefault((node, ns, pod), []).append(s)
        out = []
        for (node, ns, pod), series in sorted(groups.items()):
            w = _mean_watts(series, start_s, end_s, self.scale)
            if w is not None:
                out.append((node, ns, pod, w))
        return tuple(out)

    def _missing(self, selector: str, missing: list[str], by_node: Mapping[str, object]) -> str:
        seen = ", ".join(sorted(by_node)) or "none"
        return (f"node {missing[0]}: no series of {selector} in Prometheus at {self.reader.url} matches it"
                + (f" (and {len(missing) - 1} more nodes)" if len(missing) > 1 else "")
                + f"; nodes matched: {seen}. Is the {self.name} exporter on that node scraped? {self._hint()}")

    def _hint(self) -> str:
        return "Set power.node_label to the label that names the node."

    # -- a longer span, sliced
    def samples(self, start_s: float, end_s: float, step_s: float) -> list[tuple[str, float, float, float]]:
        """(node, slice start, mean watts, cpu utilization) for every `step_s` slice of [start_s, end_s]."""
        selector = self.selector()
        by_node = self.energy_series(start_s, end_s)
        missing = [n for n in self.names if n not in by_node]
        if missing:
            raise TestbedError(self._missing(selector, missing, by_node))
        util_series = _by_node(raw_series(self.reader, IDLE, start_s, end_s), self.util_matcher)
        out = []
        t = start_s
        while t + step_s <= end_s + 1e-9:
            for n in self.names:
                w = _mean_watts(by_node[n], t, t + step_s, self.scale)
                u = utilization(util_series.get(n, []), t, t + step_s)
                if w is not None:
                    out.append((n, t, w, u))
            t += step_s
        return out


class KeplerSource(CounterSource):
    """Kepler's node counters, 0.10+ or pre-0.10 names, detected once."""

    name = "kepler"

    def __init__(self, reader: PrometheusReader, nodes: Sequence[NodeInfo], matcher: NodeMatcher,
                 zone: str = "package", pods: bool = True):
        super().__init__(reader, nodes, matcher)
        self.zone = zone
        self.record_pods = pods
        self.version: str | None = None  # "0.10+" or "pre-0.10", once detected

    def detect(self) -> str:
        if self.version is None:
            names = f"{KEPLER_NEW}|{kepler_old_metric(self.zone)}"
            result = self.reader.query(f'count by (__name__) ({{__name__=~"{names}"}})')
            have = {r["metric"].get("__name__") for r in result}
            if KEPLER_NEW in have and self.zone != "platform":
                self.version = "0.10+"
            elif kepler_old_metric(self.zone) in have and self.zone != "psys":
                self.version = "pre-0.10"
            else:
                raise TestbedError(f"Prometheus at {self.reader.url}: no Kepler node energy for zone {self.zone}: "
                                   f"neither {KEPLER_NEW}{{zone=\"{self.zone}\"}} (Kepler 0.10+) nor "
                                   f"{kepler_old_metric(self.zone)} (pre-0.10) is there. Is Kepler scraped?")
        return self.version

    def selector(self) -> str:
        if self.detect() == "0.10+":
            return f'{KEPLER_NEW}{{zone="{self.zone}"}}'
        return kepler_old_metric(self.zone)

    def pod_selector(self) -> str | None:
        if not self.record_pods:
            return None
        if self.detect() == "0.10+":
            return f'{KEPLER_POD_NEW}{{zone="{self.zone}"}}'
        return f"kepler_container_{self.zone}_joules_total"


class ScaphandreSource(CounterSource):
    """Scaphandre's host counter (µJ), one series per host."""

    name = "scaphandre"
    zone = "host"
    scale = 1e-6

    def selector(self) -> str:
        return SCAPHANDRE

    def _hint(self) -> str:
        return "Map hosts to nodes with [power.hosts] HOST = NODE, or set power.host_label."


class MonitorSource(CounterSource):
    """The host power monitor (host_scripts/kvm_power_monitor.py): per-VM energy counters, the VM named
    `vm_prefix` + node, and the host package's counter. Its samples are timed by the monitor's own clock
    (`rlsched_last_sample_timestamp_seconds`, scraped with them), not by the scrape, which lags a sample by
    up to one monitor interval: each scraped value is placed at the instant the monitor took it."""

    name = "rlsched-monitor"
    zone = "package"

    def __init__(self, reader: PrometheusReader, nodes: Sequence[NodeInfo], vm_prefix: str = ""):
        self.vms = {n.name: vm_prefix + n.name for n in nodes}
        super().__init__(reader, nodes, NodeMatcher(nodes, ("vm",), {vm: node for node, vm in self.vms.items()}))

    def selector(self) -> str:
        return VM_ENERGY

    def _retimed(self, names: str, start_s: float, at_s: float) -> list[Series]:
        """The series of the metrics `names` (a regex), each sample at the monitor's sample time of its scrape."""
        series = raw_series(self.reader, f'{{__name__=~"{names}|{SAMPLE_TIME}"}}', start_s, at_s)
        target = ("instance", "job")
        clocks = {tuple(s.labels.get(k, "") for k in target): dict(s.samples)
                  for s in series if s.labels.get("__name__") == SAMPLE_TIME}
        out = []
        for s in series:
            clock = clocks.get(tuple(s.labels.get(k, "") for k in target))
            if s.labels.get("__name__") == SAMPLE_TIME or clock is None:
                continue
            by_time = {clock[t]: v for t, v in s.samples if t in clock}  # a sample scraped twice counts once
            out.append(Series(s.labels, sorted(by_time.items())))
        return out

    def energy_series(self, start_s: float, at_s: float) -> dict[str, list[Series]]:
        return _by_node(self._retimed(VM_ENERGY, start_s, at_s), self.matcher)

    def window(self, start_s: float, end_s: float, timeout_s: float | None = None) -> WindowPower:
        w = super().window(start_s, end_s, timeout_s)
        host = self._retimed(HOST_ENERGY, start_s, time.time())
        host_w = _mean_watts(host, start_s, end_s, 1.0) if host else None
        return replace(w, host_watts=math.nan if host_w is None else host_w)

    def _hint(self) -> str:
        return "Set power.vm_prefix if the VMs are named differently."


PowerSource = MonitorSource | KeplerSource | ScaphandreSource


def power_source(cfg, reader: PrometheusReader, nodes: Sequence[NodeInfo]) -> PowerSource:
    """The source `cfg.power.source` names, for `nodes`."""
    p = cfg.power
    labels = (p.node_label,) if p.node_label else NODE_LABELS
    if p.source == "kepler":
        return KeplerSource(reader, nodes, NodeMatcher(nodes, labels), zone=p.zone, pods=p.pods)
    if p.source == "scaphandre":
        host_labels = (p.node_label,) if p.node_label else (p.host_label, "node")
        return ScaphandreSource(reader, nodes, NodeMatcher(nodes, host_labels, dict(p.hosts)))
    return MonitorSource(reader, nodes, p.vm_prefix)
