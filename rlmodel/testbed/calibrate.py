"""`rlsched calibrate`: fit each node's power curve (W vs CPU utilization) from measured samples.

Inputs, either kind of CSV (several files are concatenated):
* the harness's `power_samples.csv` (written by `--backend minikube` runs): columns `node`, `watts`,
  `cpu_util` (0-1), one row per node per measurement window;
* the power monitor's CSV (`timestamp`, `vm`, `vm_watts`, ...), joined with node-exporter's utilization
  read from Prometheus, each row over the `interval_s` seconds before its timestamp that its watts cover
  (the VM name minus `power.vm_prefix` is the node);
* or no file: a power source's counters in Prometheus over a past span (`samples_from_source`, `rlsched
  calibrate --source kepler|scaphandre|rlsched-monitor --last-s S`), cut into `step_s` slices: each slice's
  mean watts (counter difference / slice length) and node-exporter utilization over the same seconds.

Model: per node, a least-squares polynomial in utilization (quadratic with 12 or more samples, else
linear), evaluated at 0, 10, ..., 100 % and made non-decreasing: the 11-point curve of a scenario's
node type. A random 25 % of the samples (seeded) is held out; the mean absolute percentage error of
the fitted curve on them is reported per node. The output is a scenario file the twin trains on: one
node type per node, with the workload, reward and background load of a reference scenario.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rlmodel.atomic import atomic_path
from rlmodel.errors import CalibrationError
from rlmodel.sim.power import CURVE_POINTS, power_w
from rlmodel.sim.scenario import Scenario


@dataclass(frozen=True)
class NodeFit:
    """A fitted curve and how well it predicts held-out samples."""

    node: str
    watts: tuple[float, ...]  # at 0, 10, ..., 100 % CPU
    samples: int
    holdout_samples: int
    holdout_mape: float  # mean absolute percentage error on held-out samples (0.05 = 5 %)
    util_range: tuple[float, float]


def read_samples(paths: list[Path], *, prometheus_url: str | None = None, vm_prefix: str = "",
                 scrape_interval_s: float = 1.0) -> pd.DataFrame:
    """Samples as a frame with columns node, watts, cpu_util (0-1)."""
    frames = []
    for path in paths:
        try:
            df = pd.read_csv(path)
        except FileNotFoundError:
            raise CalibrationError(f"{path}: no such file") from None
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise CalibrationError(f"{path}: not a CSV: {str(exc).strip()[:160]}") from None
        if {"node", "watts", "cpu_util"} <= set(df.columns):
            frames.append(_numeric(df[["node", "watts", "cpu_util"]], path))
        elif {"timestamp", "vm", "vm_watts"} <= set(df.columns):
            if not prometheus_url:
                raise CalibrationError(f"{path}: a power monitor CSV needs node-exporter utilization: pass "
                                       "set prometheus.url (--set prometheus.url=URL or rlsched.toml)")
            frames.append(_join_utilization(df, path, prometheus_url, vm_prefix, scrape_interval_s))
        else:
            raise CalibrationError(f"{path}: expected columns node,watts,cpu_util (power_samples.csv) or "
                                   f"timestamp,vm,vm_watts (power monitor CSV); found {', '.join(df.columns[:8])}")
    out = pd.concat(frames, ignore_index=True)
    out = out.dropna()
    if out.empty:
        raise CalibrationError(f"{', '.join(map(str, paths))}: no usable samples")
    return out


def _numeric(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    out = df.copy()
    for col in ("watts", "cpu_util"):
        values = pd.to_numeric(out[col], errors="coerce")
        bad = values.isna() & out[col].notna() & (out[col].astype(str).str.lower() != "nan")
        if bad.any():
            line = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # header is line 1
            raise CalibrationError(f"{path}: line {line}: {col}: not a number ({out[col].iloc[line - 2]!r})")
        out[col] = values
    watts = out["watts"].to_numpy(dtype=float)
    wrong = (watts < 0) | np.isinf(watts)
    if wrong.any():
        line = int(np.flatnonzero(wrong)[0]) + 2
        raise CalibrationError(f"{path}: line {line}: watts: {watts[line - 2]:g} is not a finite number >= 0")
    _check_utilization(out["cpu_util"].to_numpy(dtype=float), path, lines=np.arange(2, len(out) + 2))
    out["node"] = out["node"].astype(str)
    return out


def _check_utilization(util: np.ndarray, path: Path | str, lines: np.ndarray | None = None) -> None:
    """cpu_util is a fraction of the node's cores, 0..1: a value outside (percent, a bad join) is refused,
    never clipped into a flat curve."""
    wrong = np.isinf(util) | (util < 0) | (util > 1)
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        where = f"line {lines[i]}: " if lines is not None else ""
        hint = " (percent? give a fraction of the cores, 0..1)" if 1 < util[i] <= 100 else ""
        raise CalibrationError(f"{path}: {where}cpu_util: {util[i]:g} is outside 0..1{hint}")


def _join_utilization(df: pd.DataFrame, path: Path, url: str, vm_prefix: str, step_s: float) -> pd.DataFrame:
    from rlmodel.errors import TestbedError
    from rlmodel.testbed.metrics import PrometheusReader
    from rlmodel.testbed.power_sources import IDLE, raw_series, utilizations

    df = df[df["vm"] != "unattributed"].copy()
    if df.empty:
        raise CalibrationError(f"{path}: no VM rows (only `unattributed`): the monitor saw no VM; nothing to fit")
    ts = pd.to_datetime(df["timestamp"], utc=True, errors="coerce")
    if ts.isna().any():
        line = int(np.flatnonzero(ts.isna().to_numpy())[0]) + 2
        raise CalibrationError(f"{path}: line {line}: timestamp: not an ISO time")
    df["t"] = (ts - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    df["node"] = df["vm"].astype(str).str.removeprefix(vm_prefix)
    df["watts"] = pd.to_numeric(df["vm_watts"], errors="coerce")
    # each row's watts are the monitor's mean over the `interval_s` before its timestamp: the utilization is read
    # over those same seconds (power_sources.utilizations: node-exporter's idle counters, interpolated at the ends)
    span = (pd.to_numeric(df["interval_s"], errors="coerce").to_numpy(float) if "interval_s" in df.columns
            else np.full(len(df), step_s))
    df["span"] = np.where(span > 0, span, step_s)  # a missing or bad interval: one scrape step
    reader = PrometheusReader(url, scrape_interval_s=step_s)
    try:
        series = raw_series(reader, IDLE, float((df["t"] - df["span"]).min()), float(df["t"].max()) + step_s)
    except TestbedError as exc:
        raise CalibrationError(f"{path}: node-exporter utilization: {exc}") from None
    df["cpu_util"] = math.nan
    for node, rows in df.groupby("node").groups.items():
        mine = [s for s in series if s.labels.get("node") == node]
        t, span_s = df.loc[rows, "t"].to_numpy(float), df.loc[rows, "span"].to_numpy(float)
        df.loc[rows, "cpu_util"] = utilizations(mine, t - span_s, t)
    return df[["node", "watts", "cpu_util"]]


def fit_node(node: str, util: np.ndarray, watts: np.ndarray, *, seed: int = 0, holdout: float = 0.25) -> NodeFit:
    """Fit one node's curve; MAPE on a random `holdout` share of the samples."""
    n = util.size
    if n < 4:
        raise CalibrationError(f"node {node}: {n} samples, need at least 4 (run longer or more windows)")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_hold = max(1, int(round(holdout * n)))
    test, train = order[:n_hold], order[n_hold:]
    curve = _fit_curve(util[train], watts[train])
    predicted = power_w(np.tile(curve, (n_hold, 1)), util[test])  # the twin's own interpolation
    nonzero = watts[test] > 1e-9
    mape = float(np.mean(np.abs(predicted[nonzero] - watts[test][nonzero]) / watts[test][nonzero])) \
        if nonzero.any() else math.nan
    full = _fit_curve(util, watts)  # the curve written uses every sample
    return NodeFit(node, tuple(round(float(w), 3) for w in full), n, n_hold, mape,
                   (float(util.min()), float(util.max())))


def _fit_curve(util: np.ndarray, watts: np.ndarray) -> np.ndarray:
    u = util  # checked to lie in 0..1 when read
    degree = 2 if u.size >= 12 and np.ptp(u) > 0.05 else (1 if np.ptp(u) > 1e-6 else 0)
    coef = np.polyfit(u, watts, degree)
    curve = np.polyval(coef, np.linspace(0, 1, CURVE_POINTS))
    curve = np.maximum(curve, 0.0)
    return np.maximum.accumulate(curve)  # power never falls as utilization rises


def samples_from_source(source, start_s: float, end_s: float, step_s: float) -> pd.DataFrame:
    """Samples (node, watts, cpu_util) from a power source (`rlmodel.testbed.power_sources`) over [start_s, end_s]
    (Unix s), one per node per `step_s` slice; slices without a utilization reading are dropped."""
    if end_s - start_s < 2 * step_s:
        raise CalibrationError(f"the span ({end_s - start_s:g} s) holds fewer than two {step_s:g} s slices: "
                               "widen it or shorten --step-s")
    rows = source.samples(start_s, end_s, step_s)
    df = pd.DataFrame(rows, columns=["node", "t", "watts", "cpu_util"])
    df = df.dropna()
    if df.empty:
        raise CalibrationError(f"{source.name}: no slice with both power and node-exporter utilization in the span "
                               "(is node-exporter scraped?)")
    return df[["node", "watts", "cpu_util"]]


def calibrate(samples: pd.DataFrame, *, like: Scenario, cpu_cores: float | dict[str, float], memory_gib: float |
              dict[str, float], seed: int = 0) -> tuple[list[NodeFit], str]:
    """Fits per node (sorted by name) and the scenario TOML text built from them and `like`. `cpu_cores` and
    `memory_gib`: one value for every node, or one per node name."""
    fits = [fit_node(str(node), g["cpu_util"].to_numpy(float), g["watts"].to_numpy(float), seed=seed)
            for node, g in sorted(samples.groupby("node"), key=lambda kv: str(kv[0]))]
    bg_cpu = like.background_cpu_cores[0] if like.num_nodes else 0.0
    bg_mem = like.background_memory_gib[0] if like.num_nodes else 0.0
    wl, rw = like.workload, like.reward
    lines = [f'description = "Calibrated from measured power ({len(fits)} nodes); workload from {like.name}"', ""]
    if like.sleep_enabled:
        lines += ["[cluster]", f"idle_sleep_after_s = {like.idle_sleep_after_s:g}",
                  f"sleep_watts = {like.sleep_watts:g}", f"wake_s = {like.wake_s:g}", ""]
    for f in fits:
        cores = cpu_cores[f.node] if isinstance(cpu_cores, dict) else cpu_cores
        memory = memory_gib[f.node] if isinstance(memory_gib, dict) else memory_gib
        mape = "n/a" if math.isnan(f.holdout_mape) else f"{100 * f.holdout_mape:.1f} %"
        lines += ["[[node_types]]", f'name = "calibrated-{f.node}"',
                  f'description = "node {f.node}: {f.samples} samples, utilization {100 * f.util_range[0]:.0f}-'
                  f'{100 * f.util_range[1]:.0f} %, held-out MAPE {mape}"',
                  "count = 1", f"cpu_cores = {cores:g}", f"memory_gib = {memory:g}",
                  "watts = [" + ", ".join(f"{w:g}" for w in f.watts) + "]",
                  f"background_cpu_cores = {min(bg_cpu, cores):g}",
                  f"background_memory_gib = {min(bg_mem, memory):g}", ""]
    lines += ["[workload]", f"pods_per_episode = {wl.pods_per_episode}",
              f"mean_interarrival_s = {wl.mean_interarrival_s:g}",
              f"cpu_request_cores = [{wl.cpu_request_cores[0]:g}, {wl.cpu_request_cores[1]:g}]",
              f"memory_request_gib = [{wl.memory_request_gib[0]:g}, {wl.memory_request_gib[1]:g}]",
              f"usage_of_request = [{wl.usage_of_request[0]:g}, {wl.usage_of_request[1]:g}]",
              f"duration_s = [{wl.duration_s[0]:g}, {wl.duration_s[1]:g}]", "",
              "[reward]", f"energy_scale_j = {rw.energy_scale_j:g}",
              f"overload_penalty_j_per_pod_s = {rw.overload_penalty_j_per_pod_s:g}",
              f"unschedulable_penalty_j = {rw.unschedulable_penalty_j:g}", ""]
    return fits, "\n".join(lines)


def write_scenario(path: Path, text: str) -> Scenario:
    """Validate the text as a scenario, then write it atomically; returns the parsed scenario."""
    from rlmodel.sim.scenario import parse_scenario

    scenario = parse_scenario(text, name=path.stem, source=str(path))
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return scenario

