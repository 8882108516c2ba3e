"""`rlsched sweep`: a grid of trainings and benchmarks on local workers and on a local Ray, resumable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from rlmodel.cli import main
from rlmodel.evaluation.sweep import SweepPlan, finished, parse_sets, run_sweep

TINY = ["demo_episodes=2", "pretrain_steps=20", "learning_starts=50", "validation_episodes=1",
        "checkpoint_every=100"]
COMPARED = ["run", "scenario", "seed", "overrides", "policy", "energy_j_mean", "cost_j_mean", "overload_pod_s_mean",
            "unschedulable_mean", "ratio_to_efficient_first"]


def plan() -> SweepPlan:
    """2 scenarios x 2 seeds x 2 values of one hyperparameter, tiny budgets."""
    grid = parse_sets(TINY + ["hidden=16", "hidden=32"])
    return SweepPlan(scenarios=["tiny", "hetero-sleep"], seeds=[1, 2], grid=grid, steps=150, episodes=2,
                     policies=("round-robin", "efficient-first"))


def test_grid_keys_and_bad_sets():
    runs = plan().runs()
    assert len(runs) == 8 and len({r.key for r in runs}) == 8
    assert {dict(r.overrides)["hidden"] for r in runs} == {"16", "32"}
    from rlmodel.errors import RlschedError

    with pytest.raises(RlschedError, match="hidden"):
        parse_sets(["hidden=wide"])
    r = CliRunner().invoke(main, ["sweep", "--scenarios", "nope", "--seeds", "1", "--out", "x"])
    assert r.exit_code == 1 and "nope" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["sweep", "--scenarios", "tiny", "--seeds", "a", "--out", "x"])
    assert r.exit_code == 2 and "whole numbers" in r.output


@pytest.mark.parametrize("args, message", [
    (["--scenarios", "tiny", "--seeds", "1,2,1"], "--seeds: 1 is given twice"),
    (["--scenarios", "tiny,hetero,tiny", "--seeds", "1"], "--scenarios: tiny is given twice"),
    (["--scenarios", "tiny", "--seeds", "1", "--policies", "round-robin,efficient-first,round-robin"],
     "--policies: round-robin is given twice"),
])
def test_a_repeated_seed_scenario_or_baseline_is_refused_rather_than_counted_twice(tmp_path, args, message):
    """Run once and summarized twice, a repeated seed would report two seeds and a CI from one measurement."""
    r = CliRunner().invoke(main, ["sweep", *args, "--out", str(tmp_path / "s")])
    assert r.exit_code == 1 and r.output.strip() == f"Error: {message}", r.output
    assert not (tmp_path / "s").exists()  # refused before anything was made


def test_an_output_folder_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "s"
    r = CliRunner().invoke(main, ["sweep", "--scenarios", "tiny", "--seeds", "1", "--out", str(out)])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.output.strip() == f"Error: {out}: cannot create the output folder: Not a directory"


def sweep_args(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "rlmodel.console", "sweep", "--scenarios", "tiny,hetero-sleep", "--seeds", "1,2",
            "--steps", "150", "--episodes", "2", "--policies", "round-robin,efficient-first", "--out", str(out),
            *[a for s in TINY + ["hidden=16", "hidden=32"] for a in ("--set", s)], *extra]


def test_local_workers_and_ray_give_identical_rows(tmp_path):
    """The same grid on 2 local workers (in-process API) and on a local Ray with 2 CPUs (the CLI, in a process of
    its own: Ray's processes stay out of the test process)."""
    pytest.importorskip("ray")
    local, _ = run_sweep(plan(), tmp_path / "local", workers=2)
    assert len(local) == 8 * 3 and set(local.policy) == {"round-robin", "efficient-first", "dqn"}
    r = subprocess.run(sweep_args(tmp_path / "ray", "--workers", "2", "--ray-address", "local"), capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "8 to do on Ray (local)" in r.stdout
    on_ray = pd.read_csv(tmp_path / "ray" / "results.csv")
    pd.testing.assert_frame_equal(local[COMPARED], on_ray[COMPARED])
    summary = pd.read_csv(tmp_path / "ray" / "summary.csv")
    # the summary is the mean over seeds of each configuration's rows
    ef = summary[(summary.policy == "efficient-first") & (summary.scenario == "tiny")]
    rows = local[(local.policy == "efficient-first") & (local.scenario == "tiny")]
    assert len(ef) == 2 and ef.energy_j_mean.iloc[0] == pytest.approx(rows[rows.overrides == ef.overrides.iloc[0]]
                                                                      .energy_j_mean.mean())
    for name in ("results.csv", "summary.csv", "sweep.png"):
        assert (tmp_path / "ray" / name).stat().st_size > 0


def test_a_sweep_killed_midway_finishes_only_the_missing_runs(tmp_path):
    out = tmp_path / "sweep"
    proc = subprocess.Popen(sweep_args(out, "--workers", "1"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 120
    while not list(out.glob("runs/*/rows.csv")) and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    done_before = {p.parent.name for p in out.glob("runs/*/rows.csv")}
    assert proc.returncode == 130, output
    assert 1 <= len(done_before) < 8
    mtimes = {k: (out / "runs" / k / "rows.csv").stat().st_mtime_ns for k in done_before}
    ran = []
    results, _ = run_sweep(plan(), out, workers=1, on_run=lambda spec: ran.append(spec.key))
    assert sorted(ran) == sorted(r.key for r in plan().runs() if r.key not in done_before)
    assert all((out / "runs" / k / "rows.csv").stat().st_mtime_ns == t for k, t in mtimes.items())  # not redone
    assert all(finished(out, r) for r in plan().runs()) and len(results) == 24
    r = CliRunner().invoke(main, ["sweep", "--scenarios", "tiny,hetero-sleep", "--seeds", "1,2", "--steps", "150",
                                  "--episodes", "2", "--policies", "round-robin,efficient-first", "--out", str(out)]
                           + [a for s in TINY + ["hidden=16", "hidden=32"] for a in ("--set", s)])
    assert r.exit_code == 0 and "8 already finished" in r.output and "0 to do" in r.output
    assert Path(out / "summary.csv").is_file()
