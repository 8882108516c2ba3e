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

from rlmodel.errors import ScenarioError
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


@dataclass(frozen=True)
class WorkloadSpec:
    """How pods arrive. Ranges are [low, high] and sampled uniformly.

    Attributes:
        pods_per_episode: pods arriving in one episode.
        mean_interarrival_s: mean of the exponential gap between arrivals, s.
        cpu_request_cores: CPU request, cores.
        memory_request_gib: memory request, GiB.
        usage_of_request: actual CPU use as a fraction of the request (above 1: the pod bursts).
        duration_s: work of the pod in s when it runs unslowed.
    """

    pods_per_episode: int = 60
    mean_interarrival_s: float = 20.0
    cpu_request_cores: tuple[float, float] = (0.25, 2.0)
    memory_request_gib: tuple[float, float] = (0.25, 2.0)
    usage_of_request: tuple[float, float] = (0.3, 1.2)
    duration_s: tuple[float, float] = (120.0, 1800.0)


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
    """

    energy_scale_j: float = 1000.0
    overload_penalty_j_per_pod_s: float = 20.0
    unschedulable_penalty_j: float = 100_000.0

    def cost_j(self, energy_j: float, overload_pod_s: float, unschedulable: float) -> float:
        """What the environment minimises, J: energy plus the penalties (minus the return, times energy_scale_j)."""
        return (energy_j + self.overload_penalty_j_per_pod_s * overload_pod_s
                + self.unschedulable_penalty_j * unschedulable)


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

    def scaled(self, factor: int) -> Scenario:
        """The same scenario with `factor` times as many nodes of every group and as many pods, arriving
        `factor` times as fast (same load per node)."""
        if factor < 1:
            raise ScenarioError(f"{self.name}: scale factor must be >= 1, got {factor}")
        wl = self.workload
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
    """Share of the workload's pods (uniform CPU and memory requests) whose requests fit some empty node."""
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
    if workload.cpu_request_cores[0] > max_cpu:
        raise w.fail("cpu_request_cores", f"every request exceeds the largest node ({max_cpu:g} cores)")
    if workload.memory_request_gib[0] > max_mem:
        raise w.fail("memory_request_gib", f"every request exceeds the largest node ({max_mem:g} GiB)")
    share = fitting_share(groups, workload)
    if share < MIN_FITTING_SHARE:
        raise w.fail("cpu_request_cores", f"only {share:.0%} of the pods' requests (CPU and memory) fit on any "
                                          f"node: the benchmark would measure pods left out, not placements")


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
    w = _Reader(source, wl_raw, "workload.")
    w.check_keys({"pods_per_episode", "mean_interarrival_s", "cpu_request_cores", "memory_request_gib",
                  "usage_of_request", "duration_s"})
    d = WorkloadSpec()
    workload = WorkloadSpec(
        pods_per_episode=w.integer("pods_per_episode", d.pods_per_episode, high=MAX_PODS),
        mean_interarrival_s=w.number("mean_interarrival_s", d.mean_interarrival_s, positive=True, high=MAX_SECONDS),
        cpu_request_cores=w.range_("cpu_request_cores", d.cpu_request_cores, high=MAX_CORES),
        memory_request_gib=w.range_("memory_request_gib", d.memory_request_gib, high=MAX_GIB),
        usage_of_request=w.range_("usage_of_request", d.usage_of_request, positive=False, high=1000.0),
        duration_s=w.range_("duration_s", d.duration_s, high=MAX_SECONDS),
    )

    rw_raw = data.get("reward", {})
    if not isinstance(rw_raw, dict):
        raise top.fail("reward", "expected a table")
    rw = _Reader(source, rw_raw, "reward.")
    rw.check_keys({"energy_scale_j", "overload_penalty_j_per_pod_s", "unschedulable_penalty_j"})
    dr = RewardSpec()
    reward = RewardSpec(
        energy_scale_j=rw.number("energy_scale_j", dr.energy_scale_j, positive=True, high=MAX_PENALTY_J),
        overload_penalty_j_per_pod_s=rw.number("overload_penalty_j_per_pod_s", dr.overload_penalty_j_per_pod_s,
                                               high=MAX_PENALTY_J),
        unschedulable_penalty_j=rw.number("unschedulable_penalty_j", dr.unschedulable_penalty_j, high=MAX_PENALTY_J),
    )

    _check_requests_fit(w, groups, workload)
    return Scenario(name=name, groups=groups, idle_sleep_after_s=idle_after, sleep_watts=sleep_watts,
                    wake_s=wake_s, workload=workload, reward=reward, source=source)
