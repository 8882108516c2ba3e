"""Experiment sweeps: scenarios x training seeds x hyperparameter grids, each run a training followed by a
paired benchmark on held-out seeds, on local worker processes or a Ray cluster.

A run is keyed by its configuration (scenario, seed, overrides, budgets); it writes
`OUT/runs/<key>/model.pth` and, last and atomically, `OUT/runs/<key>/rows.csv`. A run whose rows exist is
finished: a sweep started again (after a crash, Ctrl-C or SIGTERM) runs only the others, so it loses at most
the runs that were in flight. When every run is done, `results.csv` (one row per run and policy) and
`summary.csv` (mean and 95 % CI across seeds per scenario, overrides and policy) are written, and
`sweep.png`.

Executors: `local` (worker processes, `workers` of them) and `ray` (`ray_address` "local" starts a Ray
instance for the sweep with `workers` CPUs; "auto" or "ray://HOST:PORT" joins a running cluster, whose
workers need rlsched installed). Every run sets torch to one thread, so results do not depend on where it ran.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rlmodel.errors import OutputError, RlschedError

RESULT_COLUMNS = ["run", "scenario", "seed", "overrides", "steps", "episodes", "policy", "energy_j_mean",
                  "cost_j_mean", "overload_pod_s_mean", "unschedulable_mean", "ratio_to_efficient_first",
                  "train_s"]


class SweepError(RlschedError):
    """A sweep cannot start or a run failed (the message names the run)."""


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: train on `scenario` with `seed` and `overrides`, then benchmark."""

    scenario: str
    seed: int
    overrides: tuple[tuple[str, str], ...]
    steps: int
    episodes: int
    eval_seed: int
    policies: tuple[str, ...]

    @property
    def key(self) -> str:
        """A folder name unique to the configuration: readable, with a short hash of everything."""
        text = json.dumps(asdict(self), sort_keys=True)
        digest = hashlib.sha256(text.encode()).hexdigest()[:10]
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(self.scenario).stem)
        sets = "_".join(f"{k}={v}" for k, v in self.overrides)
        sets = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in sets)[:60]
        return f"{name}__s{self.seed}__{sets or 'default'}__{digest}"

    @property
    def overrides_text(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.overrides) or "default"


@dataclass
class SweepPlan:
    """The grid: every scenario x seed x combination of the override values."""

    scenarios: Sequence[str]
    seeds: Sequence[int]
    grid: dict[str, list[str]] = field(default_factory=dict)
    steps: int = 60_000
    episodes: int = 20
    eval_seed: int = 1000
    policies: tuple[str, ...] = ("round-robin", "efficient-first", "runtime-aware")

    def __post_init__(self) -> None:
        # a repeat would be run once and counted twice: two "seeds" that are one, a narrower CI than measured
        for option, values in (("--scenarios", self.scenarios), ("--seeds", self.seeds),
                               ("--policies", self.policies)):
            seen: set[Any] = set()
            for v in values:
                if v in seen:
                    raise SweepError(f"{option}: {v} is given twice")
                seen.add(v)

    def runs(self) -> list[RunSpec]:
        keys = sorted(self.grid)
        combos = list(itertools.product(*(self.grid[k] for k in keys))) or [()]
        return [RunSpec(scenario=s, seed=seed, overrides=tuple(zip(keys, combo, strict=True)), steps=self.steps,
                        episodes=self.episodes, eval_seed=self.eval_seed, policies=tuple(self.policies))
                for s in self.scenarios for seed in self.seeds for combo in combos]


def parse_sets(pairs: Sequence[str]) -> dict[str, list[str]]:
    """`--set KEY=VALUE` pairs as a grid: a key given several times takes each value in turn. Every value is
    checked against the hyperparameter's type now, not in a worker an hour later."""
    from rlmodel.agents.dqn import DQNConfig, apply_overrides

    grid: dict[str, list[str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SweepError(f"--set {pair}: expected KEY=VALUE")
        key = key.strip().replace("-", "_")
        apply_overrides(DQNConfig(), [f"{key}={value}"])  # ModelError/ConfigError naming the key
        if value not in grid.setdefault(key, []):
            grid[key].append(value)
    return grid


def run_one(spec: RunSpec, out: str) -> list[dict[str, Any]]:
    """Train and benchmark one run (in a worker); writes the run's folder and returns its rows."""
    import torch

    from rlmodel.agents.dqn import DQNConfig, apply_overrides, train
    from rlmodel.agents.policy import DQNPolicy
    from rlmodel.evaluation.benchmark import run_benchmark, summarize
    from rlmodel.evaluation.report import write_csv_atomic
    from rlmodel.policies import make_policy
    from rlmodel.sim import load_scenario

    torch.set_num_threads(1)
    folder = Path(out) / "runs" / spec.key
    folder.mkdir(parents=True, exist_ok=True)
    scenario = load_scenario(spec.scenario)
    cfg = apply_overrides(DQNConfig(seed=spec.seed, total_steps=spec.steps), [f"{k}={v}" for k, v in spec.overrides])
    model = folder / "model.pth"
    model.unlink(missing_ok=True)  # a run that was interrupted starts over
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        train(cfg, scenario, model, log_dir=folder / "log")
    train_s = time.perf_counter() - start
    policies = [make_policy(p) for p in spec.policies] + [DQNPolicy.load(model)]
    df = run_benchmark(scenario, policies, episodes=spec.episodes, seed=spec.eval_seed, with_oracle=False)
    write_csv_atomic(df, folder / "episodes.csv")
    summary = summarize(df, reference="efficient-first" if "efficient-first" in spec.policies else None)
    ef = summary.set_index("policy")["energy_j_mean"].get("efficient-first", math.nan)
    rows = [{"run": spec.key, "scenario": spec.scenario, "seed": spec.seed, "overrides": spec.overrides_text,
             "steps": spec.steps, "episodes": spec.episodes, "policy": r.policy, "energy_j_mean": r.energy_j_mean,
             "cost_j_mean": r.cost_j_mean, "overload_pod_s_mean": r.overload_pod_s_mean,
             "unschedulable_mean": r.unschedulable_mean,
             "ratio_to_efficient_first": r.energy_j_mean / ef if ef == ef and ef > 0 else math.nan,
             "train_s": round(train_s, 3)} for r in summary.itertuples(index=False)]
    write_csv_atomic(pd.DataFrame(rows, columns=RESULT_COLUMNS), folder / "rows.csv")  # last: the run is done
    return rows


def finished(out: Path, spec: RunSpec) -> bool:
    return (out / "runs" / spec.key / "rows.csv").is_file()


def _local(todo: list[RunSpec], out: Path, workers: int) -> Iterator[RunSpec]:
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        pending: dict[Future, RunSpec] = {pool.submit(run_one, spec, str(out)): spec for spec in todo}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    spec = pending.pop(fut)
                    try:
                        fut.result()
                    except Exception as exc:  # noqa: BLE001 - name the run; the others go on
                        raise SweepError(f"run {spec.key}: {type(exc).__name__}: {str(exc)[:300]}") from None
                    yield spec
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise


def _ray(todo: list[RunSpec], out: Path, workers: int, address: str) -> Iterator[RunSpec]:
    try:
        import ray
    except ImportError:
        raise SweepError("--ray-address: Ray is not installed (pip install 'rlsched[sweep]')") from None
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # no GPUs are asked for: keep Ray quiet
    started = False
    if not ray.is_initialized():
        if address == "local":
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}})
        else:
            ray.init(address=address, log_to_driver=False)
        started = True
    try:
        remote = ray.remote(num_cpus=1)(run_one)
        refs = {remote.remote(spec, str(out.resolve())): spec for spec in todo}
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            spec = refs.pop(done[0])
            try:
                ray.get(done[0])
            except Exception as exc:  # noqa: BLE001 - name the run
                raise SweepError(f"run {spec.key}: {type(exc).__name__}: {str(exc)[:300]}") from None
            yield spec
    finally:
        if started:
            ray.shutdown()


def make_folder(out: Path) -> None:
    """`out` and its parents, or OutputError naming it (under a file, read-only, not a place for files)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out}: cannot create the output folder: {exc.strerror or exc}") from None


def run_sweep(plan: SweepPlan, out: Path, *, workers: int = 1, ray_address: str | None = None,
              on_run: Callable[[RunSpec], None] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run every unfinished run of `plan`, then write and return (results, summary)."""
    make_folder(out)
    runs = plan.runs()
    todo = [spec for spec in runs if not finished(out, spec)]
    executor = _ray(todo, out, workers, ray_address) if ray_address else _local(todo, out, workers)
    for spec in (executor if todo else ()):
        if on_run is not None:
            on_run(spec)
    return collect(out, runs)


def collect(out: Path, runs: Sequence[RunSpec]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """results.csv, summary.csv and sweep.png from the runs' rows."""
    from rlmodel.evaluation.benchmark import ci95_halfwidth
    from rlmodel.evaluation.report import write_csv_atomic

    results = pd.concat([pd.read_csv(out / "runs" / spec.key / "rows.csv") for spec in runs], ignore_index=True)
    results = results.sort_values(["scenario", "overrides", "seed", "policy"], kind="stable").reset_index(drop=True)
    write_csv_atomic(results, out / "results.csv")
    rows = []
    for (scenario, overrides, policy), g in results.groupby(["scenario", "overrides", "policy"], sort=True):
        energy, ratio = g["energy_j_mean"].to_numpy(), g["ratio_to_efficient_first"].to_numpy()
        rows.append({"scenario": scenario, "overrides": overrides, "policy": policy, "seeds": len(g),
                     "energy_j_mean": float(energy.mean()), "energy_j_ci95": ci95_halfwidth(energy),
                     "ratio_to_efficient_first": float(np.mean(ratio)),
                     "ratio_to_efficient_first_ci95": ci95_halfwidth(ratio),
                     "cost_j_mean": float(g["cost_j_mean"].mean()), "train_s_mean": float(g["train_s"].mean())})
    summary = pd.DataFrame(rows)
    write_csv_atomic(summary, out / "summary.csv")
    _plot(summary, out / "sweep.png")
    return results, summary


def _plot(summary: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlmodel.atomic import save_figure_atomic

    dqn = summary[summary.policy == "dqn"]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(dqn)), 3.5))
    labels = [f"{s}\n{o}" for s, o in zip(dqn.scenario, dqn.overrides, strict=True)]
    ax.bar(range(len(dqn)), dqn.ratio_to_efficient_first, yerr=dqn.ratio_to_efficient_first_ci95.fillna(0),
           color="tab:blue", capsize=3)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xticks(range(len(dqn)), labels, fontsize=7)
    ax.set_ylabel("DQN energy / efficient-first")
    ax.set_title("rlsched sweep: mean over training seeds, 95 % CI")
    fig.tight_layout()
    save_figure_atomic(fig, path)
