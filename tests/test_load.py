"""JMeter for real (Debian's 2.13 here) against the real test app, and the JTL summary."""

from __future__ import annotations

import csv
import shutil
import statistics
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from rlmodel.cli import main as cli
from rlmodel.load.jmeter import LoadError, run_load, summarize_jtl
from tests.services import Service, free_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def testapp():
    svc = Service("testapp/app.py")
    yield svc
    svc.stop()


def test_jmeter_run_against_the_test_app(testapp, tmp_path):
    out = tmp_path / "load"
    r = CliRunner().invoke(cli, ["load", "run", "--target", f"{testapp.url}/work", "--threads", "3",
                                 "--duration", "4", "--out", str(out)])
    assert r.exit_code == 0, r.output
    with (out / "results.jtl").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) > 20
    summary = pd.read_csv(out / "summary.csv").iloc[0]
    # the summary agrees with the JTL, recomputed here without pandas
    elapsed = [int(row["elapsed"]) for row in rows]
    assert summary.requests == len(rows)
    assert summary.errors == 0 and summary.error_rate == 0
    assert all(row["success"] == "true" and row["responseCode"] == "200" for row in rows)
    assert summary.latency_mean_ms == pytest.approx(statistics.fmean(elapsed))
    assert summary.latency_p50_ms == pytest.approx(statistics.median(elapsed))
    span = (max(int(r["timeStamp"]) + int(r["elapsed"]) for r in rows) - min(int(r["timeStamp"]) for r in rows)) / 1000
    assert summary.throughput_rps == pytest.approx(len(rows) / span)
    assert 3 <= span <= 6


def test_errors_are_counted(tmp_path):
    closed = f"http://127.0.0.1:{free_port()}/work"  # nothing listens there
    s = run_load(closed, tmp_path / "err", threads=1, duration_s=2)
    assert s.requests > 0 and s.errors == s.requests and s.error_rate == 1.0


def test_jtl_with_quoted_commas_parses(tmp_path):
    jtl = tmp_path / "r.jtl"
    jtl.write_text(
        "timeStamp,elapsed,label,responseCode,responseMessage,threadName,dataType,success,bytes,Latency\n"
        "1000,10,work,200,OK,users 1-1,text,true,253,9\n"
        '1010,30,work,500,"Internal error, retry later",users 1-1,text,false,10,29\n'
        '1050,20,work,Non HTTP response code: java.net.ConnectException,"Connection refused, (x)",users 1-2,'
        "text,false,0,0\n"
    )
    s = summarize_jtl(jtl)
    assert (s.requests, s.errors) == (3, 2)
    assert s.latency_mean_ms == pytest.approx(20.0)
    assert s.throughput_rps == pytest.approx(3 / 0.07)


def test_no_samples_is_an_error(tmp_path, testapp):
    stub = tmp_path / "jmeter"
    stub.write_text("#!/bin/sh\nexit 0\n")  # exits 0 and writes nothing, as a broken JMeter does
    stub.chmod(0o755)
    with pytest.raises(LoadError, match="wrote no samples"):
        run_load(f"{testapp.url}/work", tmp_path / "o", duration_s=1, jmeter=str(stub))


def test_missing_jmeter_and_bad_target(tmp_path, monkeypatch):
    monkeypatch.setenv("RLSCHED_JMETER", str(tmp_path / "nope"))
    r = CliRunner().invoke(cli, ["load", "run", "--target", "http://127.0.0.1:1/work", "--out", str(tmp_path)])
    assert r.exit_code == 1 and "not an executable JMeter" in r.output
    r = CliRunner().invoke(cli, ["load", "run", "--target", "ftp://x", "--out", str(tmp_path)])
    assert r.exit_code == 1 and "--target ftp://x" in r.output


def test_a_dead_target_exits_1_and_relative_paths_work(tmp_path, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.chdir(tmp_path)
    shutil.copy(ROOT / "jmeter" / "testapp.jmx", tmp_path / "plan.jmx")
    # relative --out and --plan, as in the README: JMeter runs in the output folder, the paths still resolve
    r = CliRunner().invoke(cli, ["load", "run", "--target", f"http://127.0.0.1:{port}/work", "--duration", "1",
                                 "--threads", "1", "--plan", "plan.jmx", "--out", "results/dead"])
    assert r.exit_code == 1, r.output
    assert "100% of the requests" in r.output and "--max-error-rate" in r.output
    assert (tmp_path / "results" / "dead" / "summary.csv").is_file()  # the results are kept
