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


@pytest.mark.parametrize("util,message", [("35", "cpu_util: 35 is outside 0..1 (percent?"),
                                          ("-0.1", "cpu_util: -0.1 is outside 0..1"),
                                          ("inf", "cpu_util: inf is outside 0..1")])
def test_utilization_outside_0_1_is_refused_not_clipped(tmp_path, util, message):
    bad = tmp_path / "pct.csv"
    bad.write_text("node,watts,cpu_util\n" + "".join(f"n1,{10 + i},0.{i}\n" for i in range(1, 8))
                   + f"n1,30,{util}\n")
    r = CliRunner().invoke(main, ["calibrate", "--power", str(bad), "--out", str(tmp_path / "o.toml")])
    assert r.exit_code == 1 and f"{bad}: line 9: {message}" in r.output and r.output.count("\n") == 1
    assert not (tmp_path / "o.toml").exists()


def test_a_monitor_csv_without_vms_is_one_line(tmp_path):
    from rlmodel.power.kvm_power_monitor import CSV_COLUMNS

    p = tmp_path / "power.csv"
    p.write_text(",".join(CSV_COLUMNS) + "\n2026-01-01T00:00:01.000Z,1,40,40,unattributed,,0,0,40,40,0\n")
    r = CliRunner().invoke(main, ["calibrate", "--power", str(p), "--out", str(tmp_path / "o.toml"),
                                  "--set", "prometheus.url=http://127.0.0.1:9"])
    assert r.exit_code == 1 and "only `unattributed`" in r.output and "Traceback" not in r.output


def test_a_monitor_rows_utilization_covers_the_seconds_its_watts_cover(tmp_path, monkeypatch):
    """Each monitor row's watts are the mean over the `interval_s` before its timestamp; its utilization must be
    node-exporter's over those seconds, wherever the scrapes fell. The node goes from 20 % to 80 % busy at
    t = 10.5 s; node-exporter is scraped at x.25 s; rows every second at x.0 s."""
    import datetime as dt

    from rlmodel.power.kvm_power_monitor import CSV_COLUMNS
    from rlmodel.testbed import calibrate as cal
    from rlmodel.testbed import power_sources

    t0 = 1_790_000_000.0
    def idle_s(t):  # one CPU's idle seconds since t0
        return 0.8 * min(t, 10.5) + 0.2 * max(0.0, t - 10.5)

    scrapes = [k + 0.25 for k in range(-2, 24)]
    series = [power_sources.Series({"node": "a", "cpu": "0", "mode": "idle"}, [(t0 + s, idle_s(s)) for s in scrapes])]
    monkeypatch.setattr(power_sources, "raw_series", lambda reader, selector, start, at: series)
    rows = []
    for k in range(1, 21):
        stamp = dt.datetime.fromtimestamp(t0 + k, dt.timezone.utc).isoformat().replace("+00:00", "Z")
        row = dict.fromkeys(CSV_COLUMNS, "0")
        row.update(timestamp=stamp, interval_s="1", vm="mk-a", vm_watts=str(40 + k))
        rows.append(",".join(row[c] for c in CSV_COLUMNS))
    p = tmp_path / "power.csv"
    p.write_text(",".join(CSV_COLUMNS) + "\n" + "\n".join(rows) + "\n")
    got = cal.read_samples([p], prometheus_url="http://prometheus.test", vm_prefix="mk-")
    # the counter read at each row's two ends by interpolating between the scrapes (computed apart, with numpy)
    xs, ys = [t0 + s for s in scrapes], [idle_s(s) for s in scrapes]
    want = [1 - (np.interp(t0 + k, xs, ys) - np.interp(t0 + k - 1, xs, ys)) for k in range(1, 21)]
    assert list(got["node"]) == ["a"] * 20
    assert got["cpu_util"].to_numpy() == pytest.approx(want, abs=1e-9)
    truth = [1 - (idle_s(k) - idle_s(k - 1)) for k in range(1, 21)]  # busy share over (k - 1, k]
    for k, (g, w) in enumerate(zip(got["cpu_util"], truth, strict=True), start=1):
        # exact but for the scrape interval holding the step (10.25-11.25 s), smeared as a rate must be
        assert g == pytest.approx(w, abs=1e-9 if k not in (11, 12) else 0.05), k
