"""Files: written atomically with the umask's permissions, stale temp files cleaned, unwritable paths one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rlmodel.atomic import atomic_path
from rlmodel.cli import main
from rlmodel.errors import OutputError


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_atomic_files_respect_the_umask(tmp_path, umask_022):
    with atomic_path(tmp_path / "a.csv") as tmp:
        Path(tmp).write_text("x\n")
    assert (tmp_path / "a.csv").stat().st_mode & 0o777 == 0o644
    os.umask(0o077)
    with atomic_path(tmp_path / "b.csv") as tmp:
        Path(tmp).write_text("x\n")
    assert (tmp_path / "b.csv").stat().st_mode & 0o777 == 0o600


def test_benchmark_outputs_get_the_umask_permissions(tmp_path, umask_022):
    r = CliRunner().invoke(main, ["benchmark", "-s", "tiny", "-n", "1", "--policies", "round-robin",
                                  "--no-oracle", "--out", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    for name in ("episodes.csv", "summary.csv", "benchmark.png", "run.json"):
        assert (tmp_path / "b" / name).stat().st_mode & 0o777 == 0o644, name


def test_a_killed_writers_temp_file_is_removed_at_the_next_write(tmp_path):
    # a writer killed mid-write leaves its temp file (its pid in the name): the next write removes it
    code = ("import os, sys, time\nfrom rlmodel.atomic import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n    open(tmp, 'w').write('half')\n"
            "    os.kill(os.getpid(), 9)\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.pth")], timeout=60)
    assert r.returncode == -9
    left = [p for p in tmp_path.iterdir() if p.name != "m.pth"]
    assert len(left) == 1 and not (tmp_path / "m.pth").exists()
    mine = tmp_path / f".m.pth.{os.getpid()}.keep.tmp.pth"  # a live writer's temp file is left alone
    mine.write_text("in progress")
    with atomic_path(tmp_path / "m.pth") as tmp:
        Path(tmp).write_text("whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.pth", mine.name])


@pytest.mark.parametrize("args", [
    ["benchmark", "-s", "tiny", "-n", "1", "--policies", "random", "--out", "{file}/sub"],
    ["power", "summary", "{csv}", "--csv", "{file}/s.csv"],
    ["power", "summary", "{csv}", "--plot", "/proc/version/p.png"],
    ["train", "-s", "tiny", "--steps", "10", "--model", "{tmp}/m.pth", "--log-dir", "{file}/log"],
    ["calibrate", "--power", "{samples}", "--out", "{file}/c.toml"],
])
def test_unwritable_outputs_are_one_line(tmp_path, args):
    from rlmodel.power.kvm_power_monitor import CSV_COLUMNS

    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "p.csv").write_text(",".join(CSV_COLUMNS) + "\n2026-01-01T00:00:01.000Z,1,2,2,vm,1,0.5,0.25,1,1,0\n")
    (tmp_path / "s.csv").write_text("node,watts,cpu_util\n" + "".join(f"n,{10 + i},0.{i}\n" for i in range(8)))
    subs = {"file": str(tmp_path / "file"), "csv": str(tmp_path / "p.csv"), "tmp": str(tmp_path),
            "samples": str(tmp_path / "s.csv")}
    r = CliRunner().invoke(main, [a.format(**subs) for a in args])
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output and r.output.strip().splitlines()[-1].startswith("Error: ")
    assert len([ln for ln in r.output.splitlines() if ln.startswith("Error")]) == 1


def test_output_error_is_typed(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(OutputError, match="cannot write"), atomic_path(tmp_path / "f" / "x") as tmp:
        Path(tmp).write_text("")


@pytest.mark.parametrize("text,message", [("apiVersion: v1\nclusters: [ {\n  bad\n", "not valid YAML"),
                                          ("- a list\n", "not a kubeconfig"), ("", "kubeconfig")])
def test_a_broken_kubeconfig_is_one_line(tmp_path, text, message):
    from rlmodel.errors import TestbedError
    from rlmodel.testbed.config import load_config
    from rlmodel.testbed.kube import Kube

    path = tmp_path / "kubeconfig"
    path.write_text(text)
    with pytest.raises(TestbedError, match=message) as info:
        Kube(load_config(None, env={}, overrides=[f"kubernetes.kubeconfig={path}"]))
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_cluster_down_never_signals_a_process_it_did_not_start(tmp_path):
    from rlmodel.testbed.cluster import state_dir, stop_prometheus
    from rlmodel.testbed.config import load_config

    cfg = load_config(None, env={}, overrides=[f"state_dir={tmp_path}"])
    folder = state_dir(cfg)
    folder.mkdir(parents=True)
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        for text in (f"{bystander.pid}\n",  # the old format: a bare pid
                     f"{bystander.pid} 1 {folder / 'prometheus.yml'}\n",  # a reused pid: another start time
                     f"{bystander.pid} {_start_ticks(bystander.pid)} {folder / 'prometheus.yml'}\n"):  # not ours
            (folder / "prometheus.pid").write_text(text)
            assert stop_prometheus(cfg) is None
            assert bystander.poll() is None, "a process rlsched did not start was signalled"
    finally:
        bystander.kill()
        bystander.wait()


def _start_ticks(pid: int) -> int:
    from rlmodel.testbed.cluster import _start_ticks as ticks

    value = ticks(pid)
    assert value is not None
    return value
