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
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read: {exc}") from exc
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

    def number(self, key: str, default: float | None = None, *, low: float = 0.0, positive: bool = False) -> float:
        if key not in self.table:
            if default is None:
                raise self.fail(key, "missing")
            return default
        value = self.table[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(key, f"expected a number, got {value!r}")
        if positive and value <= 0:
            raise self.fail(key, f"must be > 0, got {value!r}")
        if value < low:
            raise self.fail(key, f"must be >= {low:g}, got {value!r}")
        return float(value)

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

    def range_(self, key: str, default: tuple[float, float], *, positive: bool = True) -> tuple[float, float]:
        if key not in self.table:
            return default
        value = self.table[key]
        ok = (
            isinstance(value, list) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
        )
        if not ok:
            raise self.fail(key, f"expected [low, high] (two numbers), got {value!r}")
        low, high = float(value[0]), float(value[1])
        if (positive and low <= 0) or low < 0 or high < low:
            raise self.fail(key, f"expected 0 {'<' if positive else '<='} low <= high, got {value!r}")
        return (low, high)

    def string(self, key: str) -> str:
        value = self.table.get(key)
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"expected a non-empty string, got {value!r}")
        return value


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
    cpu = r.number("cpu_cores", base.cpu_cores if base else None, positive=True)
    mem = r.number("memory_gib", base.memory_gib if base else None, positive=True)
    if "watts" in table:
        watts = table["watts"]
        if (
            not isinstance(watts, list) or len(watts) != CURVE_POINTS
            or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w >= 0
                       for w in watts)
        ):
            raise r.fail("watts", f"expected {CURVE_POINTS} non-negative numbers (W at 0, 10, ..., 100 % CPU), "
                                  f"got {watts!r}")
        curve = tuple(float(w) for w in watts)
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


def parse_scenario(text: str, *, name: str, source: str) -> Scenario:
    """Parse scenario TOML text. `source` is used in error messages (a path or "built-in:NAME")."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: invalid TOML: {exc}") from exc
    top = _Reader(source, data, "")
    top.check_keys({"cluster", "node_types", "workload", "reward", "description"})

    cluster = data.get("cluster", {})
    if not isinstance(cluster, dict):
        raise top.fail("cluster", "expected a table")
    c = _Reader(source, cluster, "cluster.")
    c.check_keys({"idle_sleep_after_s", "sleep_watts", "wake_s"})
    idle_after = c.number("idle_sleep_after_s", 0.0)
    sleep_watts = c.number("sleep_watts", 0.0)
    wake_s = c.number("wake_s", 0.0)

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
        mean_interarrival_s=w.number("mean_interarrival_s", d.mean_interarrival_s, positive=True),
        cpu_request_cores=w.range_("cpu_request_cores", d.cpu_request_cores),
        memory_request_gib=w.range_("memory_request_gib", d.memory_request_gib),
        usage_of_request=w.range_("usage_of_request", d.usage_of_request, positive=False),
        duration_s=w.range_("duration_s", d.duration_s),
    )

    rw_raw = data.get("reward", {})
    if not isinstance(rw_raw, dict):
        raise top.fail("reward", "expected a table")
    rw = _Reader(source, rw_raw, "reward.")
    rw.check_keys({"energy_scale_j", "overload_penalty_j_per_pod_s", "unschedulable_penalty_j"})
    dr = RewardSpec()
    reward = RewardSpec(
        energy_scale_j=rw.number("energy_scale_j", dr.energy_scale_j, positive=True),
        overload_penalty_j_per_pod_s=rw.number("overload_penalty_j_per_pod_s", dr.overload_penalty_j_per_pod_s),
        unschedulable_penalty_j=rw.number("unschedulable_penalty_j", dr.unschedulable_penalty_j),
    )

    max_cpu = max(g.node_type.cpu_cores for g in groups)
    if workload.cpu_request_cores[0] > max_cpu:
        raise w.fail("cpu_request_cores", f"every request exceeds the largest node ({max_cpu:g} cores)")
    return Scenario(name=name, groups=groups, idle_sleep_after_s=idle_after, sleep_watts=sleep_watts,
                    wake_s=wake_s, workload=workload, reward=reward, source=source)
