"""The pieces of `--backend kubernetes` that need no server: label selectors, counter arithmetic, which node a
series belongs to, which curve a node gets, the manifests `cluster apply` sends."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmodel.errors import ConfigError, TestbedError
from rlmodel.sim.scenario import load_scenario
from rlmodel.testbed.backend import node_curves
from rlmodel.testbed.calibrate import fit_node
from rlmodel.testbed.cluster import any_cluster_manifests, node_affinity
from rlmodel.testbed.config import load_config
from rlmodel.testbed.kube import NodeInfo
from rlmodel.testbed.power_sources import NodeMatcher, Series, _mean_watts, counter_increase, utilization
from rlmodel.testbed.selector import parse_selector

KEYS = st.sampled_from(["a", "rlsched.io/testbed", "kubernetes.io/os", "tier"])
VALUES = st.sampled_from(["true", "x", "linux", "b-1", ""])


@st.composite
def requirements(draw):
    key = draw(KEYS)
    kind = draw(st.sampled_from(["=", "==", "!=", "in", "notin", "exists", "!exists"]))
    if kind in ("=", "==", "!="):
        value = draw(VALUES)
        return f"{key}{kind}{value}", (key, kind, (value,))
    if kind in ("in", "notin"):
        values = draw(st.lists(VALUES.filter(bool), min_size=1, max_size=3))
        return f"{key} {kind} ({', '.join(values)})", (key, kind, tuple(values))
    return (key if kind == "exists" else f"!{key}"), (key, kind, ())


def reference(req, labels) -> bool:
    key, kind, values = req
    if kind == "exists":
        return key in labels
    if kind == "!exists":
        return key not in labels
    if kind in ("=", "==", "in"):
        return labels.get(key) in values if key in labels else False
    return key not in labels or labels[key] not in values


@given(st.lists(requirements(), max_size=4), st.dictionaries(KEYS, VALUES, max_size=4))
def test_a_selector_selects_as_the_api_server_does(reqs, labels):
    text = ",".join(t for t, _ in reqs)
    sel = parse_selector(text)
    assert len(sel.requirements) == len(reqs)
    assert sel.matches(labels) == all(reference(r, labels) for _, r in reqs)


@given(st.text(max_size=60))
def test_any_text_parses_or_is_one_config_error(text):
    try:
        parse_selector(text)
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("kubernetes.node_selector: ")


def test_a_bad_selector_in_the_configuration_names_the_key():
    with pytest.raises(ConfigError, match=r"node_selector=a b: kubernetes.node_selector: invalid term"):
        load_config(None, env={}, overrides=["kubernetes.node_selector=a b"])


@given(st.lists(st.tuples(st.floats(0.1, 5), st.floats(0, 50), st.booleans()), min_size=2, max_size=30))
def test_counter_increase_is_the_energy_drawn_whatever_the_restarts(steps):
    """A counter that gains `gain` per sample and sometimes restarts from zero just before a sample: the increase
    is the sum of the gains, the span the samples' span."""
    t, value, samples, gained = 0.0, 1000.0, [(0.0, 1000.0)], 0.0
    for dt, gain, restart in steps:
        t += dt
        value = gain if restart and gain < value else value + gain
        samples.append((t, value))
        gained += gain
    inc = counter_increase(samples, 0.0, t)
    assert inc is not None
    assert inc[0] == pytest.approx(gained)
    assert (inc[1], inc[2]) == (0.0, t)



@given(st.lists(st.tuples(st.floats(0.1, 5), st.floats(0, 50), st.booleans()), min_size=2, max_size=30),
       st.lists(st.floats(0, 1), min_size=1, max_size=5))
def test_adjacent_windows_add_up_to_the_whole_nothing_counted_twice(steps, cuts):
    """Windows that tile a span share out its energy exactly: a window boundary between two scrapes splits that
    interval's increase, it does not give it to both windows."""
    t, value, samples = 0.0, 1000.0, [(0.0, 1000.0)]
    for dt, gain, restart in steps:
        t += dt
        value = gain if restart and gain < value else value + gain
        samples.append((t, value))
    bounds = [0.0, *sorted(c * t for c in cuts), t]
    parts = [counter_increase(samples, a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
    whole = counter_increase(samples, 0.0, t)
    assert sum(p[0] for p in parts if p) == pytest.approx(whole[0], rel=1e-9, abs=1e-9)
    for (a, b), p in zip([(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a], parts, strict=True):
        assert p is not None and (p[1], p[2]) == (a, b)  # each over exactly its own seconds


def _counter(times, rates):
    """Samples at `times` of a counter from 0 whose rate is piecewise constant: `rates` = [(from Unix s, per s)]."""
    def integral(x):
        edges = [*(at for at, _ in rates[1:]), math.inf]
        return sum(r * max(0.0, min(x, end) - at) for (at, r), end in zip(rates, edges, strict=True))
    return [(x, integral(x) - integral(times[0])) for x in times]


@settings(max_examples=60, deadline=None)
@given(st.floats(0, 0.999), st.floats(0, 0.999), st.floats(0, 1.999))
def test_power_and_utilization_are_read_over_the_same_seconds_whatever_the_scrape_phases(phase_w, phase_u, start):
    """A node at 10 %, 55 %, then 100 % CPU for 8 s each, watts = 40 + 80 x utilization; the power exporter and
    node-exporter scraped each second at their own instants, as Prometheus staggers targets. The calibrated
    curve is the true line within 3 % wherever the node went: each 2 s slice's watts and utilization cover the
    same seconds. (Reading each counter over its own covering samples shifted one against the other by up to a
    scrape interval at each end, bending the fit by up to 9 % at 30 %.)"""
    levels = [(0.0, 0.1), (8.0, 0.55), (16.0, 1.0)]
    tw = [phase_w - 2 + k for k in range(30)]
    tu = [phase_u - 2 + k for k in range(30)]
    energy = _counter(tw, [(start + at - 10 * (at == 0), 40 + 80 * u) for at, u in levels])
    idle_cpu = Series({}, _counter(tu, [(start + at - 10 * (at == 0), 1 - u) for at, u in levels]))
    util, watts = [], []
    for k in range(12):
        a, b = start + 2 * k, start + 2 * k + 2
        watts.append(_mean_watts([Series({}, energy)], a, b, 1.0))
        util.append(utilization([idle_cpu, idle_cpu], a, b))  # two CPUs alike
    fit = fit_node("n", np.array(util), np.array(watts))
    for pct in range(10, 101, 10):
        assert fit.watts[pct // 10] == pytest.approx(40 + 80 * pct / 100, rel=0.03), (fit.watts, util, watts)


def test_series_belong_to_nodes_by_label_name_address_or_host_mapping():
    nodes = [NodeInfo("a", "10.0.0.1", 2, 4), NodeInfo("b", "10.0.0.2", 2, 4, addresses=("10.0.0.2", "b.lab")),
             NodeInfo("c", "10.0.0.3", 2, 4)]
    m = NodeMatcher(nodes, hosts={"192.168.1.9": "c", "192.168.1.8": "elsewhere"})
    assert m.node_of({"node_name": "a"}) == "a"
    assert m.node_of({"exported_instance": "b"}) == "b"
    assert m.node_of({"instance": "10.0.0.2:9102"}) == "b"
    assert m.node_of({"instance": "b.lab:9102"}) == "b"
    assert m.node_of({"instance": "192.168.1.9:8080"}) == "c"
    assert m.node_of({"instance": "192.168.1.8:8080"}) is None  # mapped to a node not selected
    assert m.node_of({"node_name": "zzz", "instance": "10.0.0.1:1"}) == "a"  # the next label is tried
    assert NodeMatcher(nodes, ("node_name",)).node_of({"instance": "10.0.0.1:1"}) is None


def test_node_curves_come_from_the_label_then_a_pattern_then_the_position():
    sc = load_scenario("hetero")
    cfg = load_config(None, env={}, overrides=['scheduler.node_types={"^gpu-": "x3550"}'])
    n = sc.num_nodes
    nodes = [NodeInfo(f"n{i}", "10.0.0.1", 2, 4) for i in range(n)]
    nodes[0] = NodeInfo("n0", "10.0.0.1", 2, 4, labels=(("rlsched.io/node-type", "ml110-g4"),))
    nodes[1] = NodeInfo("gpu-1", "10.0.0.1", 2, 4)
    types, how = node_curves(sc, nodes, cfg)
    assert how[:3] == ["label", "pattern", "position"]
    assert [t.name for t in types[:3]] == ["ml110-g4", "x3550", sc.node_types[2].name]
    nodes[0] = NodeInfo("n0", "10.0.0.1", 2, 4, labels=(("rlsched.io/node-type", "nope"),))
    with pytest.raises(TestbedError, match="node n0: label rlsched.io/node-type='nope' names no type"):
        node_curves(sc, nodes, cfg)


def test_apply_limits_the_agents_to_the_selected_nodes_and_pulls_from_the_registry():
    cfg = load_config(None, env={}, overrides=["kubernetes.node_selector=lab=true,!gpu",
                                               "images.registry=registry.lab:5000"])
    assert node_affinity("") is None
    docs = any_cluster_manifests(cfg, skip=("node-exporter",))
    daemonsets = [d for d in docs if d["kind"] == "DaemonSet"]
    assert [d["metadata"]["name"] for d in daemonsets] == ["resource-blocker"]
    spec = daemonsets[0]["spec"]["template"]["spec"]
    exprs = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"][0]["matchExpressions"]
    assert exprs == [{"key": "lab", "operator": "In", "values": ["true"]}, {"key": "gpu", "operator": "DoesNotExist"}]
    container = spec["containers"][0]
    assert container["image"] == "registry.lab:5000/rlsched/resource-blocker:latest"
    assert container["imagePullPolicy"] == "IfNotPresent"
    with pytest.raises(TestbedError, match="--skip prometheus: expected one of"):
        any_cluster_manifests(cfg, skip=("prometheus",))


def test_row_logs_append_only_to_a_file_with_the_same_columns(tmp_path):
    from rlmodel.testbed.backend import POWER_COLUMNS, _RowLog

    path = tmp_path / "power_samples.csv"
    log = _RowLog(path, POWER_COLUMNS)
    log.write({c: 1 for c in POWER_COLUMNS})
    log.close()
    again = _RowLog(path, POWER_COLUMNS)  # the same columns: appended, one header
    again.write({c: 2 for c in POWER_COLUMNS})
    again.close()
    assert path.read_text().count("run,episode") == 1 and len(path.read_text().splitlines()) == 3
    old = tmp_path / "old.csv"  # a file from before the source and zone columns
    old.write_text(",".join(POWER_COLUMNS[:-2]) + "\n1,2,3\n")
    with pytest.raises(TestbedError, match=r"old.csv: its columns .* are not this version's"):
        _RowLog(old, POWER_COLUMNS)
    assert old.read_text().endswith("1,2,3\n")


def test_the_monitor_source_finds_a_node_by_its_vm_name():
    from rlmodel.testbed.power_sources import MonitorSource

    nodes = [NodeInfo("a", "10.0.0.1", 2, 4), NodeInfo("b", "10.0.0.2", 2, 4)]
    source = MonitorSource(reader=None, nodes=nodes, vm_prefix="mk-")  # type: ignore[arg-type]
    assert source.matcher.node_of({"vm": "mk-b"}) == "b"
    assert source.matcher.node_of({"vm": "other"}) is None
    assert source.selector() == "rlsched_vm_energy_joules_total"


class _RangeReader:
    """A Prometheus stand-in for range selectors: each metric's raw samples, as `{selector}[Ns]` returns them."""

    scrape_interval_s = 1.0
    url = "http://prometheus.test"

    def __init__(self, series: list[tuple[dict, list[tuple[float, float]]]]):
        self.series = series

    def query(self, promql: str, at_s: float | None = None) -> list[dict]:
        selector = promql.rsplit("[", 1)[0]
        names = re.search(r'__name__=~"([^"]+)"', selector)
        wanted = set(names[1].split("|")) if names else {selector.split("{")[0]}
        return [{"metric": labels, "values": [[t, str(v)] for t, v in samples if at_s is None or t <= at_s]}
                for labels, samples in self.series if labels["__name__"] in wanted]


def test_the_monitors_counters_are_placed_at_its_own_sample_times_not_the_scrapes():
    """The monitor samples every 2 s at t = 0, 2, 4, ...; Prometheus scrapes every 1 s, 1.5 s after each sample
    (so each sample is scraped twice). VM a draws 10 W until t = 10, then 30 W; the host 50 W throughout. The
    window [10, 20] is 30 W: read at the scrape times, it would be shifted 1.5 s into the 10 W stretch."""
    from rlmodel.testbed.metrics import HOST_ENERGY, SAMPLE_TIME, VM_ENERGY
    from rlmodel.testbed.power_sources import MonitorSource

    def joules(t, before, after):
        return before * min(t, 10.0) + after * max(0.0, t - 10.0)

    scrapes = [k * 1.0 + 1.5 for k in range(0, 26)]
    sample_of = [2 * ((s - 1.5) // 2) for s in scrapes]  # the monitor's latest sample at each scrape
    job = {"instance": "host:9101", "job": "rlsched-monitor"}
    vm = [(s, joules(t, 10, 30)) for s, t in zip(scrapes, sample_of, strict=True)]
    host = [(s, joules(t, 50, 50)) for s, t in zip(scrapes, sample_of, strict=True)]
    clock = list(zip(scrapes, sample_of, strict=True))
    idle = [(s, 0.5 * s) for s in scrapes]  # node-exporter: half idle
    reader = _RangeReader([({"__name__": VM_ENERGY, "vm": "m-a", **job}, vm),
                           ({"__name__": HOST_ENERGY, **job}, host),
                           ({"__name__": SAMPLE_TIME, **job}, clock),
                           ({"__name__": "node_cpu_seconds_total", "mode": "idle", "node": "a", "cpu": "0"}, idle)])
    source = MonitorSource(reader, [NodeInfo("a", "10.0.0.1", 2, 4)], vm_prefix="m-")
    w = source.window(10.0, 20.0, timeout_s=0.0)
    assert w.node_watts["a"] == pytest.approx(30.0) and w.host_watts == pytest.approx(50.0)
    assert w.node_cpu_util["a"] == pytest.approx(0.5)
    assert source.window(4.0, 14.0, timeout_s=0.0).node_watts["a"] == pytest.approx((6 * 10 + 4 * 30) / 10)
