"""`rlsched power summary`: energy is the sum of joules, means are time-weighted, nothing counted twice, and any
bad file is one line naming file and line (property-based)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlmodel.cli import main
from rlmodel.power.kvm_power_monitor import CSV_COLUMNS
from rlmodel.power.summary import read_power_csv, summarize_power

HEADER = ",".join(CSV_COLUMNS) + "\n"


def row(ts: str, interval: float, host_w: float, vm: str, vm_w: float) -> str:
    return (f"{ts},{interval},{host_w * interval},{host_w},{vm},1,0.1,0.1,{vm_w},{vm_w * interval},0\n")


def test_mixed_intervals_are_time_weighted_and_gaps_are_not_time(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    # 8 samples of 0.5 s at 50 W, then (in another file, an hour later) 14 samples of 1 s at 70 W
    a.write_text(HEADER + "".join(row(f"2026-01-01T00:00:{i // 2:02d}.{5 * (i % 2)}00Z", 0.5, 50.0, "vm", 20.0)
                                  for i in range(1, 9)))
    b.write_text(HEADER + "".join(row(f"2026-01-01T01:00:{i:02d}.000Z", 1.0, 70.0, "vm", 30.0)
                                  for i in range(1, 15)))
    t = summarize_power([read_power_csv(a), read_power_csv(b)]).set_index("vm")
    energy = 8 * 0.5 * 50 + 14 * 70  # J
    assert t.loc["host", "energy_j"] == pytest.approx(energy)
    assert t.loc["host", "duration_s"] == pytest.approx(18.0)
    assert t.loc["host", "mean_watts"] == pytest.approx(energy / 18.0)  # 65.6 W, not the plain mean 62.7 W
    assert t.loc["host", "mean_watts"] * t.loc["host", "duration_s"] == pytest.approx(t.loc["host", "energy_j"])
    assert t.loc["host", "span_s"] > 3600
    assert t.loc["vm", "energy_j"] == pytest.approx(8 * 0.5 * 20 + 14 * 30)


def test_a_file_given_twice_or_repeated_rows_count_once(tmp_path):
    a = tmp_path / "a.csv"
    body = "".join(row(f"2026-01-01T00:00:{i:02d}.000Z", 1.0, 40.0, "vm", 10.0) for i in range(1, 6))
    a.write_text(HEADER + body)
    once = CliRunner().invoke(main, ["power", "summary", str(a), "--csv", str(tmp_path / "once.csv")])
    twice = CliRunner().invoke(main, ["power", "summary", str(a), str(a), "--csv", str(tmp_path / "twice.csv")])
    assert once.exit_code == 0 and twice.exit_code == 0 and "given twice" in twice.output
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "once.csv"), pd.read_csv(tmp_path / "twice.csv"))
    doubled = tmp_path / "doubled.csv"
    doubled.write_text(HEADER + body + body)
    r = CliRunner().invoke(main, ["power", "summary", str(doubled), "--csv", str(tmp_path / "d.csv")])
    assert r.exit_code == 0 and "5 repeated rows" in r.output
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "once.csv"), pd.read_csv(tmp_path / "d.csv"))
    clash = tmp_path / "clash.csv"
    clash.write_text(HEADER + body + row("2026-01-01T00:00:01.000Z", 1.0, 41.0, "vm", 10.0))
    r = CliRunner().invoke(main, ["power", "summary", str(clash)])
    assert r.exit_code == 1 and f"{clash}: lines 2, 7" in r.output


@pytest.mark.parametrize("edit,message", [
    (lambda r: r.replace(",40.0,vm", ",nan,vm"), "column host_watts"),
    (lambda r: r.replace(",40.0,vm", ",inf,vm"), "column host_watts"),
    (lambda r: r.replace(",40.0,vm", ",-40.0,vm"), "column host_watts"),
    (lambda r: r.replace("Z,1.0,", "Z,0,", 1), "column interval_s"),
    (lambda r: r.replace("Z,1.0,", "Z,-1.0,", 1), "column interval_s"),
    (lambda r: r.replace(",10.0,10.0,0", ",50.0,50.0,0"), "more than the host's"),
])
def test_impossible_values_name_file_and_line(tmp_path, edit, message):
    p = tmp_path / "bad.csv"
    p.write_text(HEADER + row("2026-01-01T00:00:01.000Z", 1.0, 40.0, "vm", 10.0)
                 + edit(row("2026-01-01T00:00:02.000Z", 1.0, 40.0, "vm", 10.0)))
    r = CliRunner().invoke(main, ["power", "summary", str(p)])
    assert r.exit_code == 1 and r.output.count("\n") == 1, r.output
    assert f"{p}: line 3: " in r.output and message in r.output


numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10**6),
                    st.sampled_from(["", "x", "1e400", "-0"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 50), numbers, numbers, st.sampled_from(["vm", "b", "unattributed"]),
                          numbers), min_size=1, max_size=6))
def test_any_power_csv_gives_finite_numbers_or_one_line(tmp_path, rows):
    p = tmp_path / "h.csv"
    text = HEADER + "".join(f"2026-01-01T00:00:{s:02d}.000Z,{iv},{hw},{hw},{vm},1,0.1,0.1,{vw},{vw},0\n"
                            for s, iv, hw, vm, vw in rows)
    p.write_text(text)
    r = CliRunner().invoke(main, ["power", "summary", str(p), "--csv", str(tmp_path / "s.csv")])
    if r.exit_code == 0:
        table = pd.read_csv(tmp_path / "s.csv")
        for col in ("duration_s", "mean_watts", "energy_j", "p95_watts"):
            assert table[col].map(math.isfinite).all() and (table[col] >= 0).all()
    else:
        assert r.exit_code == 1 and "Traceback" not in r.output
        assert r.output.strip().count("\n") == 0 and str(p) in r.output
