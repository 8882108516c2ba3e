"""The benchmark scripts refuse a wrong scenario name in one line, as the command does (no traceback)."""

from __future__ import annotations

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
