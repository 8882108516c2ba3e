"""The CLI end to end on a tiny scenario (CliRunner)."""

from __future__ import annotations

import pandas as pd
from click.testing import CliRunner

from rlmodel.cli import main

TINY = """
[[node_types]]
name = "ml110-g4"
count = 2

[[node_types]]
name = "x3550"
count = 1

[workload]
pods_per_episode = 6
mean_interarrival_s = 30
duration_s = [60, 300]
cpu_request_cores = [0.2, 1.0]
"""


def test_benchmark_end_to_end(tmp_path):
    scen = tmp_path / "tiny.toml"
    scen.write_text(TINY)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["benchmark", "--scenario", str(scen), "--episodes", "3", "--out", str(out),
                                       "--policies", "round-robin,power-greedy,most-allocated"])
    assert result.exit_code == 0, result.output
    assert "round-robin" in result.output and "power-greedy" in result.output
    episodes = pd.read_csv(out / "episodes.csv")
    summary = pd.read_csv(out / "summary.csv")
    assert set(episodes.policy) == {"round-robin", "power-greedy", "most-allocated", "oracle"}
    assert len(episodes) == 12 and (episodes.energy_j > 0).all()
    assert list(summary.columns[:8]) == ["scenario", "policy", "episodes", "energy_j_mean", "energy_j_ci95",
                                         "ratio_to_round_robin", "ratio_to_round_robin_ci95", "gap_to_oracle"]
    rr = summary.set_index("policy").loc["round-robin"]
    assert rr.ratio_to_round_robin == 1.0
    # the summary's means are the episodes' means
    pg = episodes[episodes.policy == "power-greedy"].energy_j.mean()
    assert summary.set_index("policy").loc["power-greedy"].energy_j_mean == pg
    # the tiny episodes are solved exactly, and the optimum is no worse than any policy
    assert set(episodes[episodes.policy == "oracle"].oracle_kind) == {"exact"}
    assert (out / "benchmark.png").stat().st_size > 1000


def test_env_var_spelling(tmp_path):
    scen = tmp_path / "tiny.toml"
    scen.write_text(TINY)
    env = {"RLSCHED_SCENARIO": str(scen), "RLSCHED_EPISODES": "2", "RLSCHED_POLICIES": "random",
           "RLSCHED_ORACLE": "false", "RLSCHED_OUT": str(tmp_path / "o")}
    result = CliRunner().invoke(main, ["benchmark"], env=env)
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "o" / "episodes.csv")) == 2


def test_bad_input_is_one_line_and_exit_1(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace("count = 2", "count = -2"))
    r = CliRunner().invoke(main, ["benchmark", "--scenario", str(bad), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == [f"Error: {bad}: node_types[0].count: must be between 1 and 100000, got -2"]
    r = CliRunner().invoke(main, ["benchmark", "--policies", "fastest", "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "unknown policy 'fastest'" in r.output
    r = CliRunner().invoke(main, ["benchmark", "--episodes", "0"])
    assert r.exit_code == 2


def test_scenarios_lists_builtins():
    r = CliRunner().invoke(main, ["scenarios"])
    assert r.exit_code == 0 and "hetero-sleep" in r.output and "homogeneous" in r.output


def test_scheduler_names_the_api_server_would_refuse_are_refused_before_anything_starts(tmp_path):
    """A namespace or scheduler name that no object can carry would leave the scheduler waiting for nothing."""
    for args, option in ((["--namespace", "default", "--namespace", "Team A"], "'--namespace'"),
                         (["--scheduler-name", "RLsched"], "'--scheduler-name'"),
                         (["--lease-namespace", "-x"], "'--lease-namespace'")):
        r = CliRunner().invoke(main, ["scheduler", "run", "--policy", "least-allocated", "--kubeconfig",
                                      str(tmp_path / "missing"), *args])
        assert r.exit_code == 2, r.output
        assert option in r.output and "DNS-1123" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["scheduler", "run", "--policy", "least-allocated", "--kubeconfig",
                                  str(tmp_path / "missing"), "--set", "scheduler.namespaces=default,Team"])
    assert r.exit_code == 1 and "scheduler.namespaces: namespace must be" in r.output
