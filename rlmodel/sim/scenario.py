"""Scenario files: the simulated cluster, its workload and the reward weights, in TOML.

A scenario is either a built-in name (`homogeneous`, `hetero`, `hetero-sleep`, ...) or a path to a
TOML file. The format is documented in docs/scenarios.md; every error names the file and the key.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from rlmodel.errors import ScenarioError
from rlmodel.sim.podtrace import MAX_PRIORITY, OWNER_KINDS, QOS_CLASSES, PodTrace, read_trace
from rlmodel.sim.power import BUILTIN_NODE_TYPES, CURVE_POINTS, NodeType

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MAX_NODES = 100_000
MAX_PODS = 1_000_000
# Upper bounds of numbers (far above any real cluster): beyond them a float sum such as an episode's energy
# could overflow to inf, which would then be printed as a result.
MAX_SECONDS = 1e7       # any time in a scenario, s (115 days)
MAX_WATTS = 1e5         # any power, W
MAX_CORES = 1e5         # cores of one node or request
MAX_GIB = 1e7           # GiB of one node or request
MAX_PENALTY_J = 1e12    # any reward weight, J
MIN_FITTING_SHARE = 0.5  # a workload whose requests mostly fit no node is refused
MAX_FILE_BYTES = 1 << 20  # a scenario file is a few hundred bytes


@dataclass(frozen=True)
class NodeGroup:
    """`count` identical nodes of one type."""

    node_type: NodeType
    count: int
    background_cpu_cores: float = 0.0
    """CPU demand that runs on each node of the group all the time (the testbed's resource blocker), cores"""
    background_memory_gib: float = 0.0
    """memory the background load holds on each node, GiB (not a request: it does not change what fits)"""


LOGNORMAL_MAX_SIGMAS = 4.0  # a lognormal without `max` is clipped at median * exp(4 sigma) (99.997th percentile)


@dataclass(frozen=True)
class Dist:
    """A distribution of a non-negative quantity, as a scenario declares it.

    * `[low, high]` or `{dist = "uniform", low, high}`: uniform on [low, high];
    * `{dist = "lognormal", median, sigma, max}`: median * exp(sigma * N(0, 1)), clipped at `max` (default
      median * exp(4 sigma)), so every draw is bounded;
    * `{dist = "choice", values = [...], weights = [...]}`: one of `values` (weights default equal);
    * a bare number: that value always.
    """

    kind: str
    params: tuple[float, ...]
    weights: tuple[float, ...] = ()

    @staticmethod
    def uniform(low: float, high: float) -> Dist:
        return Dist("uniform", (float(low), float(high)))

    @property
    def low(self) -> float:
        """The smallest value a draw can take."""
        if self.kind == "uniform":
            return self.params[0]
        if self.kind == "lognormal":
            return 0.0
        return min(v for v, w in zip(self.params, self.weights, strict=True) if w > 0)

    @property
    def high(self) -> float:
        """The largest value a draw can take."""
        if self.kind == "uniform":
            return self.params[1]
        if self.kind == "lognormal":
            return self.params[2]
        return max(v for v, w in zip(self.params, self.weights, strict=True) if w > 0)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """(n,) draws."""
        if self.kind == "uniform":
            return rng.uniform(self.params[0], self.params[1], size=n)
        if self.kind == "lognormal":
            median, sigma, top = self.params
            return np.minimum(median * np.exp(sigma * rng.standard_normal(n)), top)
        p = np.asarray(self.weights, dtype=np.float64)
        return np.asarray(self.params, dtype=np.float64)[rng.choice(len(self.params), size=n, p=p / p.sum())]

    def describe(self) -> str:
        if self.kind == "uniform":
            return f"uniform [{self.params[0]:g}, {self.params[1]:g}]"
        if self.kind == "lognormal":
            return f"lognormal median {self.params[0]:g} sigma {self.params[1]:g} (max {self.params[2]:g})"
        return "choice of " + ", ".join(f"{v:g}" for v in self.params)


@dataclass(frozen=True)
class WorkloadClass:
    """One kind of workload in a scenario's mix (`[[workload.classes]]`).

    Attributes:
        name: the class name.
        weight: share of arrivals (batches) drawn from this class, relative to the other classes' weights.
        owner_kind: the pods' controller, one of OWNER_KINDS.
        qos: the pods' QoS class, one of QOS_CLASSES. A BestEffort pod requests nothing (the scheduler sees 0
            cores and 0 GiB); its `cpu_request_cores` is then the size its usage is drawn from.
        priority: the pods' priority (PriorityClass value).
        replicas: pods created together in one batch (a rollout or a parallel Job), same arrival time.
        workloads: distinct workloads (Deployments, Jobs, ...) of this class; a batch belongs to one of them,
            drawn uniformly. Pods of one workload share its identity, which the history features follow.
        cpu_request_cores, memory_request_gib, usage_of_request, duration_s: per-pod distributions (cores,
            GiB, a fraction of the request, s of work).
        duration_spread: when set, each workload draws one typical run time per episode from `duration_s`
            and its pods run typical * exp(duration_spread * N(0, 1)) (pods of one workload behave alike);
            when absent, every pod's run time is drawn from `duration_s` on its own.
    """

    name: str
    weight: float
    owner_kind: str
    qos: str
    priority: int
    replicas: Dist
    workloads: int
    cpu_request_cores: Dist
    memory_request_gib: Dist
    usage_of_request: Dist
    duration_s: Dist
    duration_spread: float | None = None


@dataclass(frozen=True)
class ArrivalSpec:
    """Arrival process of batches (`[workload.arrivals]`): Poisson with mean gap `mean_interarrival_s`, its rate
    following a daily cycle rate(t) = mean_rate * (1 + a sin(2 pi t / period_s)), a = (r - 1) / (r + 1) for
    r = peak_to_trough (1: no cycle). Sampled by thinning, so the gaps are exact for that rate."""

    period_s: float = 86_400.0
    peak_to_trough: float = 1.0

    @property
    def amplitude(self) -> float:
        r = self.peak_to_trough
        return (r - 1.0) / (r + 1.0)


@dataclass(frozen=True)
class WorkloadSpec:
    """How pods arrive: one uniform kind of pod (the ranges below, [low, high]), a mix of workload classes
    (`classes`), or a window of a recorded trace (`trace`).

    Attributes:
        pods_per_episode: pods arriving in one episode.
        mean_interarrival_s: mean of the exponential gap between arrivals, s.
        cpu_request_cores: CPU request, cores.
        memory_request_gib: memory request, GiB.
        usage_of_request: actual CPU use as a fraction of the request (above 1: the pod bursts).
        duration_s: work of the pod in s when it runs unslowed.
        classes: workload classes (empty: every pod from the ranges above). With classes, the ranges above
            are the [smallest, largest] value any class can draw, and arrivals are batches of `replicas` pods.
        arrivals: the daily cycle of the arrival rate.
        trace: a recorded trace; an episode replays `pods_per_episode` consecutive pods of it from an offset
            drawn from the seed, times scaled by `time_scale` (usage the file leaves empty is drawn from
            `usage_of_request`).
        trace_source: the trace file's path.
        time_scale: factor on a trace's arrival times and run times.
    """

    pods_per_episode: int = 60
    mean_interarrival_s: float = 20.0
    cpu_request_cores: tuple[float, float] = (0.25, 2.0)
    memory_request_gib: tuple[float, float] = (0.25, 2.0)
    usage_of_request: tuple[float, float] = (0.3, 1.2)
    duration_s: tuple[float, float] = (120.0, 1800.0)
    classes: tuple[WorkloadClass, ...] = ()
    arrivals: ArrivalSpec = field(default_factory=ArrivalSpec)
    trace: PodTrace | None = field(default=None, compare=False, repr=False)
    trace_source: str = ""
    time_scale: float = 1.0

    @property
    def max_replicas(self) -> int:
        """The largest batch of pods created together."""
        if self.trace is not None:
            full = self.trace.with_signals()
            assert full.replicas is not None
            return int(full.replicas.max())
        return max([int(round(c.replicas.high)) for c in self.classes] + [1])

    @property
    def max_usage_cores(self) -> float:
        """The largest CPU demand of one pod, cores."""
        if self.trace is not None:
            usage = self.trace.usage_cores
            known = usage[~np.isnan(usage)]
            drawn = float(self.trace.cpu_request_cores.max()) * self.usage_of_request[1]
            return max(float(known.max()) if known.size else 0.0, drawn)
        return self.cpu_request_cores[1] * max(self.usage_of_request[1], 1.0)


@dataclass(frozen=True)
class RewardSpec:
    """Reward weights.

    Attributes:
        energy_scale_j: joules per unit of reward (1000: the return is in kJ).
        overload_penalty_j_per_pod_s: joules charged per pod-second of slowdown (service-level
            penalty expressed as equivalent energy).
        unschedulable_penalty_j: joules charged per pod that is left unplaced (it fits on no node, or the
            agent chose a node where it does not fit). Far above what one pod's run costs (about 10 kJ
            on the SPECpower nodes), so that no policy can save energy by crowding pods out.
        imbalance_penalty_j: joules charged per unit of the standard deviation of node CPU utilization (0..1),
            integrated over time (per utilization-second, `imbalance_s`); 0 by default.
    """

    energy_scale_j: float = 1000.0
    overload_penalty_j_per_pod_s: float = 20.0
    unschedulable_penalty_j: float = 100_000.0
    imbalance_penalty_j: float = 0.0

    def cost_j(self, energy_j: float, overload_pod_s: float, unschedulable: float, imbalance_s: float = 0.0) -> float:
        """What the environment minimises, J: energy plus the penalties (minus the return, times energy_scale_j)."""
        return (energy_j + self.overload_penalty_j_per_pod_s * overload_pod_s
                + self.unschedulable_penalty_j * unschedulable + self.imbalance_penalty_j * imbalance_s)


@dataclass(frozen=True)
class Scenario:
    """A simulated cluster and its workload.

    Attributes:
        name: scenario name (built-in name or file stem).
        groups: node groups in order; node indices follow this order.
        idle_sleep_after_s: a node with no pods for this long sleeps; 0 means never.
        sleep_watts: power of a sleeping node, W.
        wake_s: time to wake a sleeping node, s, spent at peak power before pods start.
        workload: pod arrival process.
        reward: reward weights.
        source: where the scenario came from (path or "built-in").
    """

    name: str
    groups: tuple[NodeGroup, ...]
    idle_sleep_after_s: float = 0.0
    sleep_watts: float = 0.0
    wake_s: float = 0.0
    workload: WorkloadSpec = field(default_factory=WorkloadSpec)
    reward: RewardSpec = field(default_factory=RewardSpec)
    source: str = "built-in"

    @property
    def node_types(self) -> list[NodeType]:
        """One NodeType per node, in node-index order."""
        return [g.node_type for g in self.groups for _ in range(g.count)]

    @property
    def background_cpu_cores(self) -> list[float]:
        """Background CPU demand of each node, in node-index order, cores."""
        return [g.background_cpu_cores for g in self.groups for _ in range(g.count)]

    @property
    def background_memory_gib(self) -> list[float]:
        """Background memory of each node, in node-index order, GiB."""
        return [g.background_memory_gib for g in self.groups for _ in range(g.count)]

    @property
    def num_nodes(self) -> int:
        return sum(g.count for g in self.groups)

    @property
    def sleep_enabled(self) -> bool:
        return self.idle_sleep_after_s > 0

    def with_overload_weight(self, j_per_pod_s: float) -> Scenario:
        """The same scenario with overload charged `j_per_pod_s` J per pod-second in its reward."""
        return replace(self, reward=replace(self.reward, overload_penalty_j_per_pod_s=j_per_pod_s))

    def scaled(self, factor: int) -> Scenario:
        """The same scenario with `factor` times as many nodes of every group and as many pods, arriving
        `factor` times as fast (same load per node)."""
        if factor < 1:
            raise ScenarioError(f"{self.name}: scale factor must be >= 1, got {factor}")
        wl = self.workload
        if wl.trace is not None and factor > 1:
            raise ScenarioError(f"{self.name}: a trace scenario cannot be scaled (replay a longer window on more "
                                "nodes instead)")
        workload = replace(wl, pods_per_episode=wl.pods_per_episode * factor,
                           mean_interarrival_s=wl.mean_interarrival_s / factor)
        groups = tuple(replace(g, count=g.count * factor) for g in self.groups)
        return replace(self, name=f"{self.name}-x{factor}", groups=groups, workload=workload)


def builtin_scenarios() -> list[str]:
    """Names of the scenarios shipped with the package."""
    folder = resources.files("rlmodel.sim").joinpath("scenarios")
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a built-in scenario by name, or a scenario TOML file by path.

    Raises:
        ScenarioError: unknown name, unreadable file, invalid TOML or an invalid key (the message names
            the file and the key).
    """
    text_name = str(name_or_path)
    if text_name in builtin_scenarios():
        res = resources.files("rlmodel.sim").joinpath(f"scenarios/{text_name}.toml")
        return parse_scenario(res.read_text(encoding="utf-8"), name=text_name, source=f"built-in:{text_name}")
    path = Path(text_name)
    if not path.exists():
        raise ScenarioError(
            f"{text_name}: no such scenario file, and not a built-in scenario "
            f"(built-in: {', '.join(builtin_scenarios())})"
        )
    if not path.is_file():  # a folder, a FIFO or a device would block or fail on read
        raise ScenarioError(f"{path}: not a regular file")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ScenarioError(f"{path}: {path.stat().st_size} bytes; a scenario file is at most {MAX_FILE_BYTES}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read: {exc}") from None
    return parse_scenario(text, name=path.stem, source=str(path))


class _Reader:
    """Reads typed values out of a TOML table and names file and key on every error."""

    def __init__(self, source: str, table: dict[str, Any], prefix: str):
        self.source, self.table, self.prefix = source, table, prefix

    def fail(self, key: str, msg: str) -> ScenarioError:
        return ScenarioError(f"{self.source}: {self.prefix}{key}: {msg}")

    def check_keys(self, allowed: set[str]) -> None:
        for key in self.table:
            if key not in allowed:
                raise self.fail(key, f"unknown key (expected one of: {', '.join(sorted(allowed))})")

    def number(self, key: str, default: float | None = None, *, low: float = 0.0, positive: bool = False,
               high: float = math.inf) -> float:
        if key not in self.table:
            if default is None:
                raise self.fail(key, "missing")
            return default
        value = _finite(self.table[key])
        if value is None:
            raise self.fail(key, f"expected a number, got {_show(self.table[key])}")
        if positive and value <= 0:
            raise self.fail(key, f"must be > 0, got {value:g}")
        if value < low:
            raise self.fail(key, f"must be >= {low:g}, got {value:g}")
        if value > high:
            raise self.fail(key, f"must be at most {high:g}, got {value:g}")
        return value

    def integer(self, key: str, default: int | None = None, *, low: int = 1, high: int) -> int:
        if key not in self.table:
            if default is None:
                raise self.fail(key, "missing")
            return default
        value = self.table[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected a whole number, got {value!r}")
        if not low <= value <= high:
            raise self.fail(key, f"must be between {low} and {high}, got {value}")
        return value

    def range_(self, key: str, default: tuple[float, float], *, positive: bool = True,
               high: float = math.inf) -> tuple[float, float]:
        if key not in self.table:
            return default
        value = self.table[key]
        numbers = [_finite(v) for v in value] if isinstance(value, list) and len(value) == 2 else [None]
        if any(v is None for v in numbers):
            raise self.fail(key, f"expected [low, high] (two numbers), got {_show(value)}")
        lo, hi = float(numbers[0]), float(numbers[1])  # type: ignore[arg-type]
        if (positive and lo <= 0) or lo < 0 or hi < lo:
            raise self.fail(key, f"expected 0 {'<' if positive else '<='} low <= high, got {_show(value)}")
        if hi > high:
            raise self.fail(key, f"must be at most {high:g}, got {hi:g}")
        return (lo, hi)

    def string(self, key: str) -> str:
        value = self.table.get(key)
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"expected a non-empty string, got {value!r}")
        return value


def _finite(value: Any) -> float | None:
    """`value` as a finite float, or None (not a number, NaN, inf, or an integer too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        out = float(value)
    except OverflowError:
        return None
    return out if math.isfinite(out) else None


def _show(value: Any) -> str:
    """A short repr of a user's value for an error message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _parse_node_group(source: str, i: int, table: Any) -> NodeGroup:
    prefix = f"node_types[{i}]."
    if not isinstance(table, dict):
        raise ScenarioError(f"{source}: node_types[{i}]: expected a table")
    r = _Reader(source, table, prefix)
    r.check_keys({"name", "count", "cpu_cores", "memory_gib", "watts", "description", "background_cpu_cores",
                  "background_memory_gib"})
    name = r.string("name")
    count = r.integer("count", high=MAX_NODES)
    base = BUILTIN_NODE_TYPES.get(name)
    if base is None and not {"cpu_cores", "memory_gib", "watts"} <= table.keys():
        missing = sorted({"cpu_cores", "memory_gib", "watts"} - table.keys())
        raise r.fail(
            missing[0],
            f"missing: '{name}' is not a built-in node type ({', '.join(BUILTIN_NODE_TYPES)}), "
            "so cpu_cores, memory_gib and watts are required",
        )
    cpu = r.number("cpu_cores", base.cpu_cores if base else None, positive=True, high=MAX_CORES)
    mem = r.number("memory_gib", base.memory_gib if base else None, positive=True, high=MAX_GIB)
    if "watts" in table:
        watts = table["watts"]
        numbers = [_finite(w) for w in watts] if isinstance(watts, list) and len(watts) == CURVE_POINTS else [None]
        if any(w is None or not 0 <= w <= MAX_WATTS for w in numbers):
            raise r.fail("watts", f"expected {CURVE_POINTS} numbers from 0 to {MAX_WATTS:g} (W at 0, 10, ..., 100 % "
                                  f"CPU), got {_show(watts)}")
        curve = tuple(float(w) for w in numbers)  # type: ignore[arg-type]
        if curve[-1] <= 0:
            raise r.fail("watts", "a node draws power at full load: the last value (100 % CPU) must be > 0")
        falls = next((k for k in range(1, CURVE_POINTS) if curve[k] < curve[k - 1]), None)
        if falls is not None:
            raise r.fail("watts", f"power must not fall as utilization rises: {curve[falls]:g} W at {10 * falls} % "
                                  f"is below {curve[falls - 1]:g} W at {10 * (falls - 1)} %")
    else:
        assert base is not None
        curve = base.watts
    desc = table.get("description", base.description if base else "")
    node_type = NodeType(name=name, cpu_cores=cpu, memory_gib=mem, watts=curve, description=str(desc),
                         source=base.source if base and curve == base.watts else source)
    bg_cpu = r.number("background_cpu_cores", 0.0)
    if bg_cpu > cpu:
        raise r.fail("background_cpu_cores", f"more than the node's {cpu:g} cores")
    bg_mem = r.number("background_memory_gib", 0.0)
    if bg_mem > mem:
        raise r.fail("background_memory_gib", f"more than the node's {mem:g} GiB")
    return NodeGroup(node_type=node_type, count=count, background_cpu_cores=bg_cpu, background_memory_gib=bg_mem)


def fitting_share(groups: tuple[NodeGroup, ...], workload: WorkloadSpec) -> float:
    """Share of the workload's pods whose requests fit some empty node: exact for uniform requests and for a
    trace; for workload classes, each class's share of the pods (weight x mean batch size) times the share of
    4,000 of its requests, drawn with a fixed seed, that fit (a BestEffort pod requests nothing: it fits)."""
    def fit_share(req_cpu: np.ndarray, req_mem: np.ndarray) -> float:
        fits = np.zeros(len(req_cpu), dtype=bool)
        for g in groups:
            fits |= (req_cpu <= g.node_type.cpu_cores + 1e-9) & (req_mem <= g.node_type.memory_gib + 1e-9)
        return float(fits.mean())

    if workload.trace is not None:
        return fit_share(workload.trace.cpu_request_cores, workload.trace.memory_request_gib)
    if workload.classes:
        rng = np.random.default_rng(0)
        pods, fitting = 0.0, 0.0
        for c in workload.classes:
            share = c.weight * float(np.maximum(np.round(c.replicas.sample(rng, 4000)), 1).mean())
            fit = 1.0 if c.qos == "BestEffort" else fit_share(c.cpu_request_cores.sample(rng, 4000),
                                                              c.memory_request_gib.sample(rng, 4000))
            pods, fitting = pods + share, fitting + share * fit
        return fitting / pods

    def at_most(limit: float, low: float, high: float) -> float:  # P(uniform request on [low, high] <= limit)
        if high <= low:
            return 1.0 if low <= limit else 0.0
        return min(max((limit - low) / (high - low), 0.0), 1.0)

    (cl, ch), (ml, mh) = workload.cpu_request_cores, workload.memory_request_gib
    # a pod fits when some node has both its cores and its GiB: a union of rectangles [0, cpu] x [0, mem].
    # From the most cores down, each node shape adds the memory band above what larger shapes covered.
    share, covered_mem = 0.0, 0.0
    for cpu, mem in sorted({(g.node_type.cpu_cores, g.node_type.memory_gib) for g in groups}, reverse=True):
        if mem > covered_mem:
            share += at_most(cpu, cl, ch) * (at_most(mem, ml, mh) - at_most(covered_mem, ml, mh))
            covered_mem = mem
    return share


def _check_requests_fit(w: _Reader, groups: tuple[NodeGroup, ...], workload: WorkloadSpec) -> None:
    max_cpu = max(g.node_type.cpu_cores for g in groups)
    max_mem = max(g.node_type.memory_gib for g in groups)
    if workload.classes or workload.trace is not None:
        share = fitting_share(groups, workload)
        if share < MIN_FITTING_SHARE:
            raise w.fail("trace" if workload.trace is not None else "classes",
                         f"only {share:.0%} of the pods' requests (CPU and memory) fit on any node: the benchmark "
                         "would measure pods left out, not placements")
        return
    if workload.cpu_request_cores[0] > max_cpu:
        raise w.fail("cpu_request_cores", f"every request exceeds the largest node ({max_cpu:g} cores)")
    if workload.memory_request_gib[0] > max_mem:
        raise w.fail("memory_request_gib", f"every request exceeds the largest node ({max_mem:g} GiB)")
    share = fitting_share(groups, workload)
    if share < MIN_FITTING_SHARE:
        raise w.fail("cpu_request_cores", f"only {share:.0%} of the pods' requests (CPU and memory) fit on any "
                                          f"node: the benchmark would measure pods left out, not placements")


def _parse_dist(r: _Reader, key: str, default: Dist, *, positive: bool = True, high: float = math.inf) -> Dist:
    """A distribution (see `Dist`) at `key`, or `default` when absent."""
    if key not in r.table:
        return default
    value = r.table[key]
    if isinstance(value, list):
        return Dist.uniform(*r.range_(key, (0.0, 0.0), positive=positive, high=high))
    number = _finite(value)
    if number is not None:
        if (positive and number <= 0) or number < 0 or number > high:
            raise r.fail(key, f"expected a number {'>' if positive else '>='} 0 and at most {high:g}, got {number:g}")
        return Dist("choice", (number,), (1.0,))
    if not isinstance(value, dict):
        raise r.fail(key, f"expected [low, high], a number or a table with dist = \"lognormal\" | \"choice\" | "
                          f"\"uniform\", got {_show(value)}")
    d = _Reader(r.source, value, f"{r.prefix}{key}.")
    kind = value.get("dist")
    if kind == "uniform":
        d.check_keys({"dist", "low", "high"})
        low = d.number("low", low=0.0, positive=positive, high=high)
        top = d.number("high", low=low, high=high)
        return Dist.uniform(low, top)
    if kind == "lognormal":
        d.check_keys({"dist", "median", "sigma", "max"})
        median = d.number("median", positive=True, high=high)
        sigma = d.number("sigma", high=10.0)
        cap = d.number("max", min(median * math.exp(LOGNORMAL_MAX_SIGMAS * sigma), high), low=median, high=high)
        return Dist("lognormal", (median, sigma, cap))
    if kind == "choice":
        d.check_keys({"dist", "values", "weights"})
        values = value.get("values")
        numbers = [_finite(v) for v in values] if isinstance(values, list) and 0 < len(values) <= 10_000 else [None]
        if any(v is None or v < 0 or (positive and v <= 0) or v > high for v in numbers):
            raise d.fail("values", f"expected a list of numbers {'>' if positive else '>='} 0 and at most {high:g}, "
                                   f"got {_show(values)}")
        weights_raw = value.get("weights", [1.0] * len(numbers))
        weights = [_finite(w) for w in weights_raw] if isinstance(weights_raw, list) else [None]
        if len(weights) != len(numbers) or any(w is None or w < 0 for w in weights):
            raise d.fail("weights", f"expected {len(numbers)} numbers >= 0 (one per value), got {_show(weights_raw)}")
        if sum(weights) <= 0:  # type: ignore[arg-type]
            raise d.fail("weights", "at least one weight must be > 0")
        return Dist("choice", tuple(float(v) for v in numbers),  # type: ignore[arg-type]
                    tuple(float(w) for w in weights))  # type: ignore[arg-type]
    raise d.fail("dist", f"expected \"uniform\", \"lognormal\" or \"choice\", got {_show(kind)}")


_CLASS_KEYS = {"name", "weight", "owner_kind", "qos", "priority", "replicas", "workloads", "cpu_request_cores",
               "memory_request_gib", "usage_of_request", "duration_s", "duration_spread", "cpu_limit_of_request",
               "memory_limit_of_request"}


def _parse_class(source: str, i: int, table: Any, base: dict[str, Dist]) -> WorkloadClass:
    if not isinstance(table, dict):
        raise ScenarioError(f"{source}: workload.classes[{i}]: expected a table")
    r = _Reader(source, table, f"workload.classes[{i}].")
    r.check_keys(_CLASS_KEYS)
    name = r.string("name") if "name" in table else f"class-{i}"
    kind = table.get("owner_kind", "Pod")
    if kind not in OWNER_KINDS:
        raise r.fail("owner_kind", f"expected one of {', '.join(OWNER_KINDS)}, got {_show(kind)}")
    cpu_limit = r.number("cpu_limit_of_request", 0.0, high=1000.0) if "cpu_limit_of_request" in table else None
    mem_limit = r.number("memory_limit_of_request", 0.0, high=1000.0) if "memory_limit_of_request" in table else None
    for key, lim in (("cpu_limit_of_request", cpu_limit), ("memory_limit_of_request", mem_limit)):
        if lim is not None and lim < 1:
            raise r.fail(key, f"a limit is at least the request (>= 1), got {lim:g}")
    if "qos" in table:
        qos = table["qos"]
        if qos not in QOS_CLASSES:
            raise r.fail("qos", f"expected one of {', '.join(QOS_CLASSES)}, got {_show(qos)}")
        if qos == "BestEffort" and (cpu_limit is not None or mem_limit is not None):
            raise r.fail("qos", "a BestEffort pod has no requests and no limits")
    else:  # as Kubernetes derives it: limits equal to requests for CPU and memory -> Guaranteed
        qos = "Guaranteed" if cpu_limit == 1 and mem_limit == 1 else "Burstable"
    priority = r.integer("priority", 0, low=-MAX_PRIORITY, high=MAX_PRIORITY)
    replicas = _parse_dist(r, "replicas", Dist("choice", (1.0,), (1.0,)), high=10_000)
    if replicas.low < 1:
        raise r.fail("replicas", f"at least one pod per batch, got a distribution reaching {replicas.low:g}")
    spread = r.number("duration_spread", high=5.0) if "duration_spread" in table else None
    return WorkloadClass(
        name=name, weight=r.number("weight", 1.0, high=1e9), owner_kind=kind, qos=qos, priority=priority,
        replicas=replicas, workloads=r.integer("workloads", 1, high=100_000),
        cpu_request_cores=_parse_dist(r, "cpu_request_cores", base["cpu_request_cores"], high=MAX_CORES),
        memory_request_gib=_parse_dist(r, "memory_request_gib", base["memory_request_gib"], high=MAX_GIB),
        usage_of_request=_parse_dist(r, "usage_of_request", base["usage_of_request"], positive=False, high=1000.0),
        duration_s=_parse_dist(r, "duration_s", base["duration_s"], high=MAX_SECONDS),
        duration_spread=spread)


_WORKLOAD_KEYS = {"pods_per_episode", "mean_interarrival_s", "cpu_request_cores", "memory_request_gib",
                  "usage_of_request", "duration_s", "classes", "arrivals", "trace", "time_scale"}


def _parse_workload(source: str, wl_raw: dict[str, Any]) -> WorkloadSpec:
    w = _Reader(source, wl_raw, "workload.")
    w.check_keys(_WORKLOAD_KEYS)
    d = WorkloadSpec()
    arrivals = ArrivalSpec()
    if "arrivals" in wl_raw:
        if not isinstance(wl_raw["arrivals"], dict):
            raise w.fail("arrivals", "expected a table")
        a = _Reader(source, wl_raw["arrivals"], "workload.arrivals.")
        a.check_keys({"period_s", "peak_to_trough"})
        arrivals = ArrivalSpec(period_s=a.number("period_s", arrivals.period_s, positive=True, high=MAX_SECONDS),
                               peak_to_trough=a.number("peak_to_trough", 1.0, low=1.0, high=1000.0))
    pods = w.integer("pods_per_episode", d.pods_per_episode, high=MAX_PODS)
    gap = w.number("mean_interarrival_s", d.mean_interarrival_s, positive=True, high=MAX_SECONDS)
    if "trace" in wl_raw:
        for key in ("classes", "cpu_request_cores", "memory_request_gib", "duration_s", "arrivals",
                    "mean_interarrival_s"):
            if key in wl_raw:
                raise w.fail(key, "not used with a trace (the trace gives it)")
        path = Path(w.string("trace"))
        if not path.is_absolute() and not source.startswith("built-in"):
            path = Path(source).parent / path
        trace = read_trace(path)
        if pods > len(trace):
            raise w.fail("pods_per_episode", f"{pods} pods, but the trace {path} has {len(trace)}")
        usage = w.range_("usage_of_request", d.usage_of_request, positive=False, high=1000.0)
        scale = w.number("time_scale", 1.0, positive=True, high=1e6)
        return WorkloadSpec(pods_per_episode=pods, mean_interarrival_s=gap,
                            cpu_request_cores=(float(trace.cpu_request_cores.min()),
                                               float(trace.cpu_request_cores.max())),
                            memory_request_gib=(float(trace.memory_request_gib.min()),
                                                float(trace.memory_request_gib.max())),
                            usage_of_request=usage,
                            duration_s=(float(trace.work_s.min()) * scale, float(trace.work_s.max()) * scale),
                            trace=trace, trace_source=str(path), time_scale=scale)
    if "time_scale" in wl_raw:
        raise w.fail("time_scale", "only used with a trace")
    base = {
        "cpu_request_cores": _parse_dist(w, "cpu_request_cores", Dist.uniform(*d.cpu_request_cores), high=MAX_CORES),
        "memory_request_gib": _parse_dist(w, "memory_request_gib", Dist.uniform(*d.memory_request_gib), high=MAX_GIB),
        "usage_of_request": _parse_dist(w, "usage_of_request", Dist.uniform(*d.usage_of_request), positive=False,
                                        high=1000.0),
        "duration_s": _parse_dist(w, "duration_s", Dist.uniform(*d.duration_s), high=MAX_SECONDS),
    }
    classes_raw = wl_raw.get("classes")
    if classes_raw is None and all(v.kind == "uniform" for v in base.values()) and arrivals.peak_to_trough == 1.0:
        return WorkloadSpec(  # one uniform kind of pod: today's scenarios, sampled exactly as before
            pods_per_episode=pods, mean_interarrival_s=gap,
            **{k: (v.params[0], v.params[1]) for k, v in base.items()})  # type: ignore[arg-type]
    if classes_raw is None:  # distributions or a daily cycle without classes: one implicit class
        classes_raw = [{"name": "default"}]
    if not isinstance(classes_raw, list) or not classes_raw or len(classes_raw) > 1000:
        raise w.fail("classes", "expected one to 1000 [[workload.classes]] tables")
    classes = tuple(_parse_class(source, i, c, base) for i, c in enumerate(classes_raw))
    if sum(c.weight for c in classes) <= 0:
        raise w.fail("classes", "at least one class needs a weight > 0")

    def envelope(key: str) -> tuple[float, float]:
        return (min(getattr(c, key).low for c in classes), max(getattr(c, key).high for c in classes))

    return WorkloadSpec(pods_per_episode=pods, mean_interarrival_s=gap, cpu_request_cores=envelope("cpu_request_cores"),
                        memory_request_gib=envelope("memory_request_gib"),
                        usage_of_request=envelope("usage_of_request"), duration_s=envelope("duration_s"),
                        classes=classes, arrivals=arrivals)


def parse_scenario(text: str, *, name: str, source: str) -> Scenario:
    """Parse scenario TOML text. `source` is used in error messages (a path or "built-in:NAME")."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: invalid TOML: {exc}") from None
    except RecursionError:
        raise ScenarioError(f"{source}: invalid TOML: nested too deeply") from None
    except ValueError as exc:  # an integer literal too long to convert
        raise ScenarioError(f"{source}: invalid TOML: {str(exc)[:120]}") from None
    top = _Reader(source, data, "")
    top.check_keys({"cluster", "node_types", "workload", "reward", "description"})

    cluster = data.get("cluster", {})
    if not isinstance(cluster, dict):
        raise top.fail("cluster", "expected a table")
    c = _Reader(source, cluster, "cluster.")
    c.check_keys({"idle_sleep_after_s", "sleep_watts", "wake_s"})
    idle_after = c.number("idle_sleep_after_s", 0.0, high=MAX_SECONDS)
    sleep_watts = c.number("sleep_watts", 0.0, high=MAX_WATTS)
    wake_s = c.number("wake_s", 0.0, high=MAX_SECONDS)

    groups_raw = data.get("node_types")
    if not isinstance(groups_raw, list) or not groups_raw:
        raise top.fail("node_types", "missing: at least one [[node_types]] table is required")
    groups = tuple(_parse_node_group(source, i, g) for i, g in enumerate(groups_raw))
    if sum(g.count for g in groups) > MAX_NODES:
        raise top.fail("node_types", f"more than {MAX_NODES} nodes in all")

    wl_raw = data.get("workload", {})
    if not isinstance(wl_raw, dict):
        raise top.fail("workload", "expected a table")
    workload = _parse_workload(source, wl_raw)

    rw_raw = data.get("reward", {})
    if not isinstance(rw_raw, dict):
        raise top.fail("reward", "expected a table")
    rw = _Reader(source, rw_raw, "reward.")
    rw.check_keys({"energy_scale_j", "overload_penalty_j_per_pod_s", "unschedulable_penalty_j", "imbalance_penalty_j"})
    dr = RewardSpec()
    reward = RewardSpec(
        energy_scale_j=rw.number("energy_scale_j", dr.energy_scale_j, positive=True, high=MAX_PENALTY_J),
        overload_penalty_j_per_pod_s=rw.number("overload_penalty_j_per_pod_s", dr.overload_penalty_j_per_pod_s,
                                               high=MAX_PENALTY_J),
        unschedulable_penalty_j=rw.number("unschedulable_penalty_j", dr.unschedulable_penalty_j, high=MAX_PENALTY_J),
        imbalance_penalty_j=rw.number("imbalance_penalty_j", dr.imbalance_penalty_j, high=MAX_PENALTY_J),
    )

    _check_requests_fit(_Reader(source, wl_raw, "workload."), groups, workload)
    return Scenario(name=name, groups=groups, idle_sleep_after_s=idle_after, sleep_watts=sleep_watts,
                    wake_s=wake_s, workload=workload, reward=reward, source=source)
