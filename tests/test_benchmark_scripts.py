"""The benchmark scripts: a wrong scenario name is refused in one line, as the command does (no traceback); the
live scheduler benchmark runs against kmock."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCENARIO_OPTION = {
    "told_run_times.py": "--scenario", "online_lookahead.py": "--scenario", "decision_signal.py": "--scenario",
    "dqn_targets.py": "--scenarios", "efficient_first_variants.py": "--scenarios", "policy_energy.py": "--scenarios",
}


@pytest.mark.parametrize("script", sorted(SCENARIO_OPTION))
def test_a_wrong_scenario_is_one_line_naming_the_option(script):
    option = SCENARIO_OPTION[script]
    value = "hetero,no-such-scenario" if option == "--scenarios" else "no-such-scenario"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), option, value], capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert f"{option}: no-such-scenario: no such scenario file" in last
    assert run.stdout == ""  # refused before any work


def test_scheduler_throughput_runs_the_scheduler_and_the_bind_only_path_against_kmock():
    """A small run of the live scheduler benchmark: every pod bound (the script raises otherwise) in both the
    scheduler's row and the binding path's row, each next to a ceiling measured in the same run."""
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scheduler_throughput.py"), "--nodes", "3",
                          "--pods", "20", "--binder", "process", "--policies", "least-allocated", "--bind-only"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["policy"] for r in rows] == ["bind-only", "least-allocated"]
    for r in rows:
        assert r["nodes"] == 3 and r["pods"] == 20 and r["binder"] == "process"
        assert r["pods_per_s"] > 0 and r["kmock_bindings_per_s"] > 0
        assert r["ratio_to_ceiling"] == pytest.approx(r["pods_per_s"] / r["kmock_bindings_per_s"], rel=0.01)
        assert r["bind_chain_ms_per_pod"] >= 0
