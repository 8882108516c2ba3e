"""Ctrl-C and SIGTERM (what `timeout`, batch systems and Kubernetes send) end every command with a line and exit
130, keeping what was done: a training checkpoint, the benchmark's finished episodes. Never a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from rlmodel.agents.model_file import load_model

RLSCHED = str(Path(sys.executable).with_name("rlsched"))


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLSCHED_")}
    return subprocess.Popen([RLSCHED, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def _wait_for(predicate, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_sigterm_during_training_saves_a_checkpoint(tmp_path):
    model = tmp_path / "m.pth"
    proc = _start(["train", "--model", str(model), "-s", "tiny", "--steps", "1000000", "--set", "demo_episodes=4",
                   "--set", "pretrain_steps=50", "--set", "validation_episodes=2", "--set", "checkpoint_every=500",
                   "--log-dir", str(tmp_path / "log")], tmp_path)
    _wait_for(lambda: model.exists() or proc.poll() is not None, 120)
    time.sleep(1.0)  # training is under way
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "checkpoint saved" in err and "Traceback" not in err
    data = load_model(model).data
    assert 0 < data["global_step"] < 1_000_000


def test_ctrl_c_at_start_is_one_line_and_130(tmp_path):
    proc = _start(["train", "--model", str(tmp_path / "m.pth"), "-s", "tiny", "--log-dir", str(tmp_path / "log")],
                  tmp_path)
    time.sleep(0.3)  # still importing
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "checkpoint saved" not in err  # nothing was saved, and it does not claim so
    assert not (tmp_path / "m.pth").exists()


def test_sigterm_during_a_benchmark_keeps_the_finished_episodes(tmp_path):
    out = tmp_path / "b"
    proc = _start(["benchmark", "-s", "hetero-sleep", "-n", "2000", "--no-oracle", "--policies",
                   "round-robin,efficient-first", "--out", str(out)], tmp_path)
    time.sleep(6.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    episodes = pd.read_csv(out / "episodes.csv")
    assert len(episodes) > 0 and "interrupted" in err
    if (out / "summary.csv").exists():  # over the episodes every started policy finished
        summary = pd.read_csv(out / "summary.csv")
        assert set(summary.policy) <= {"round-robin", "efficient-first"}
