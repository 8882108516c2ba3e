"""`rlsched calibrate` fits known curves back from noisy samples and refuses bad input with one line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from rlmodel.cli import main
from rlmodel.sim.scenario import load_scenario
from rlmodel.testbed.calibrate import fit_node

TRUE = {"n1": lambda u: 4.0 + 16.0 * u - 4.0 * u**2, "n2": lambda u: 6.0 + 10.0 * u}


def _samples(path, n=200, noise=0.02, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for node, f in TRUE.items():
        u = rng.uniform(0.02, 0.95, n)
        rows += [{"run": "x", "node": node, "watts": f(x) * (1 + rng.normal(0, noise)), "cpu_util": x} for x in u]
    pd.DataFrame(rows).to_csv(path, index=False)


def test_fit_recovers_the_curve_and_reports_holdout_error(tmp_path):
    csv = tmp_path / "power_samples.csv"
    _samples(csv)
    out = tmp_path / "cal.toml"
    result = CliRunner().invoke(main, ["calibrate", "--power", str(csv), "--out", str(out), "--cpu-cores", "2",
                                       "--memory-gib", "4"])
    assert result.exit_code == 0, result.output
    sc = load_scenario(str(out))
    assert [t.name for t in sc.node_types] == ["calibrated-n1", "calibrated-n2"]
    for t, f in zip(sc.node_types, TRUE.values(), strict=True):
        want = [f(u) for u in np.linspace(0, 1, 11)]
        assert np.allclose(t.watts, want, rtol=0.05, atol=0.2)
        assert t.cpu_cores == 2 and t.memory_gib == 4
    assert sc.workload == load_scenario("minikube").workload  # --like minikube
    for line in result.output.splitlines()[1:3]:
        mape = float(line.split()[3])
        assert 0.5 < mape < 4.0  # 2 % noise: the held-out error is about that, not zero and not large


def test_fitted_curve_never_falls_and_needs_enough_samples():
    u = np.linspace(0, 0.5, 20)
    fit = fit_node("n", u, 10 - 2 * u)  # measured power falling with load (noise, background): clamp
    assert all(b >= a for a, b in zip(fit.watts, fit.watts[1:], strict=False))
    with pytest.raises(Exception, match="node n: 3 samples, need at least 4"):
        fit_node("n", u[:3], u[:3])


def test_bad_calibration_input_is_one_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("node,watts,cpu_util\nn1,12.5,0.3\nn1,lots,0.4\n")
    r = CliRunner().invoke(main, ["calibrate", "--power", str(bad), "--out", str(tmp_path / "o.toml")])
    assert r.exit_code == 1 and f"{bad}: line 3: watts: not a number" in r.output and "Traceback" not in r.output
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    r = CliRunner().invoke(main, ["calibrate", "--power", str(other), "--out", str(tmp_path / "o.toml")])
    assert r.exit_code == 1 and "expected columns node,watts,cpu_util" in r.output
    r = CliRunner().invoke(main, ["calibrate", "--power", str(tmp_path / "none.csv"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "no such file" in r.output
    assert not (tmp_path / "o.toml").exists()
