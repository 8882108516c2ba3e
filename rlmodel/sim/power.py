"""Node power curves: watts as a piecewise-linear function of CPU utilization.

A curve is 11 points, watts at 0, 10, ..., 100 % utilization (the SPECpower_ssj2008 load levels).
Between points the power is linearly interpolated; utilization is clipped to [0, 1] because a
node cannot run faster than its cores (overload is modelled as slowdown, not as extra watts).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib import resources

import numpy as np

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CURVE_POINTS = 11


@dataclass(frozen=True)
class NodeType:
    """A kind of node: capacity and power curve.

    Attributes:
        name: identifier used in scenario files.
        cpu_cores: allocatable CPU in cores.
        memory_gib: allocatable memory in GiB.
        watts: wall power in W at 0, 10, ..., 100 % CPU utilization.
        description: human-readable hardware description.
        source: where the curve comes from.
    """

    name: str
    cpu_cores: float
    memory_gib: float
    watts: tuple[float, ...]
    description: str = ""
    source: str = ""

    @property
    def idle_watts(self) -> float:
        """Power at 0 % utilization, W."""
        return self.watts[0]

    @property
    def peak_watts(self) -> float:
        """Power at 100 % utilization, W."""
        return self.watts[-1]

    def power_w(self, utilization: float) -> float:
        """Wall power in W at `utilization` (fraction of cores busy, clipped to [0, 1])."""
        return float(power_w(np.asarray([self.watts]), np.asarray([utilization]))[0])


def power_w(curves: np.ndarray, utilization: np.ndarray) -> np.ndarray:
    """Vectorized power lookup: the one piecewise-linear interpolation of power curves.

    The twin (`ClusterSim.power_w`, through `PowerCurves`), the testbed (`MinikubeCluster.power_w`)
    and calibration all use it; only the twin's per-event scalar path in `ClusterSim._refresh` repeats
    the same arithmetic inline for speed.

    Args:
        curves: (N, 11) watts per node at 0..100 % utilization.
        utilization: (N,) fraction of each node's cores busy; clipped to [0, 1].
    Returns:
        (N,) watts.
    """
    return PowerCurves(curves).at_utilization(utilization)


class PowerCurves:
    """N power curves with the lookup tables precomputed, for repeated vectorized lookups (W)."""

    def __init__(self, curves: np.ndarray):
        curves = np.asarray(curves, dtype=np.float64)
        if curves.ndim != 2 or curves.shape[1] != CURVE_POINTS:
            raise ValueError(f"power curves must have shape (N, {CURVE_POINTS}), not {curves.shape}")
        self.curves = curves
        n = curves.shape[0]
        # flat tables: watts at point k of node i is _flat[11 i + k], the slope after it _slope[10 i + k]
        self._flat = curves.ravel()
        self._slope = np.diff(curves, axis=1).ravel()
        self._row11 = np.arange(n) * CURVE_POINTS
        self._row10 = np.arange(n) * (CURVE_POINTS - 1)

    def at_utilization(self, utilization: np.ndarray) -> np.ndarray:
        """(N,) watts at `utilization` (N,), a fraction of cores busy, clipped to [0, 1]."""
        x = np.clip(utilization, 0.0, 1.0) * (CURVE_POINTS - 1)
        lo = np.minimum(x.astype(np.int64), CURVE_POINTS - 2)
        return self._flat[self._row11 + lo] + (x - lo) * self._slope[self._row10 + lo]


def _load_builtin() -> dict[str, NodeType]:
    text = resources.files("rlmodel.sim").joinpath("data/node_types.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    out = {}
    for entry in data["node_type"]:
        out[entry["name"]] = NodeType(
            name=entry["name"],
            cpu_cores=float(entry["cpu_cores"]),
            memory_gib=float(entry["memory_gib"]),
            watts=tuple(float(w) for w in entry["watts"]),
            description=entry.get("description", ""),
            source=entry.get("source", ""),
        )
    return out


BUILTIN_NODE_TYPES: dict[str, NodeType] = _load_builtin()
