"""The benchmark never ranks a policy better for leaving pods unplaced, and its figures recompute."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from rlmodel.cli import main
from rlmodel.errors import PolicyError
from rlmodel.evaluation.benchmark import EPISODE_COLUMNS, summarize

OVERLOADED = """
[[node_types]]
name = "ml110-g5"
count = 2

[workload]
pods_per_episode = 40
mean_interarrival_s = 5
cpu_request_cores = [0.5, 1.8]
memory_request_gib = [0.5, 3.0]
duration_s = [300, 900]
"""


def _episodes(rows):
    base = {c: 0.0 for c in EPISODE_COLUMNS}
    return pd.DataFrame([{**base, "scenario": "s", "oracle_kind": "", **r} for r in rows], columns=EPISODE_COLUMNS)


def test_dropping_pods_does_not_rank_first():
    # B saves 10 kJ of energy by leaving one pod out per episode; that pod costs 100 kJ
    rows = []
    for ep in range(3):
        rows.append({"policy": "A", "episode": ep, "energy_j": 100e3 + ep, "unschedulable": 0, "pods": 10,
                     "pods_placed": 10, "cost_j": 100e3 + ep, "energy_j_per_placed_pod": (100e3 + ep) / 10})
        rows.append({"policy": "B", "episode": ep, "energy_j": 90e3, "unschedulable": 1, "pods": 10,
                     "pods_placed": 9, "cost_j": 190e3, "energy_j_per_placed_pod": 10e3})
    s = summarize(_episodes(rows), reference="A").set_index("policy")
    assert s.loc["A", "rank"] == 1 and s.loc["B", "rank"] == 2
    assert s.loc["B", "cost_ratio_to_reference"] == pytest.approx(190e3 / 100_001)
    assert s.loc["B", "cost_diff_to_reference_j"] == pytest.approx(190e3 - 100_001)
    with pytest.raises(PolicyError, match="--reference C"):
        summarize(_episodes(rows), reference="C")


def test_an_overloaded_scenario_ranks_by_cost_and_warns(tmp_path):
    sc = tmp_path / "overloaded.toml"
    sc.write_text(OVERLOADED)
    out = tmp_path / "b"
    r = CliRunner().invoke(main, ["benchmark", "--scenario", str(sc), "--episodes", "4", "--no-oracle",
                                  "--reference", "efficient-first", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "pods left unplaced per episode" in r.output
    episodes = pd.read_csv(out / "episodes.csv")
    summary = pd.read_csv(out / "summary.csv")
    assert episodes.unschedulable.sum() > 0  # the scenario does leave pods out
    # independent recomputation: cost = energy + 20 J per overloaded pod-s + 100 kJ per pod left out
    cost = episodes.energy_j + 20 * episodes.overload_pod_s + 100_000 * episodes.unschedulable
    assert (episodes.cost_j - cost).abs().max() < 1e-6
    assert (episodes.pods_placed == episodes.pods - episodes.unschedulable).all()
    per_policy = cost.groupby(episodes.policy).mean()
    assert list(summary.cost_j_mean) == pytest.approx(list(per_policy[summary.policy]))
    assert summary.cost_j_mean.is_monotonic_increasing  # ranked by cost, best first
    assert list(summary["rank"]) == list(range(1, len(summary) + 1))
    ef = episodes[episodes.policy == "efficient-first"].set_index("episode").cost_j
    for p, g in episodes.groupby("policy"):
        row = summary.set_index("policy").loc[p]
        diff = g.set_index("episode").cost_j - ef
        assert row.cost_diff_to_reference_j == pytest.approx(diff.mean())
        assert row.energy_j_per_placed_pod_mean == pytest.approx((g.energy_j / g.pods_placed).mean())


def test_the_reference_must_be_benchmarked():
    r = CliRunner().invoke(main, ["benchmark", "-s", "tiny", "-n", "1", "--policies", "random",
                                  "--reference", "round-robin"])
    assert r.exit_code == 2 and "--reference" in r.output


def test_the_printed_table_stays_aligned_with_long_policy_names():
    """Every row of the printed table lines up with the header, whatever the length of a policy's name (the
    built-in runtime-aware-short-headroom is 28 characters)."""
    from rlmodel.evaluation.report import format_table

    rows = []
    for name in ("round-robin", "runtime-aware-short-headroom", "a-policy-with-a-name-longer-than-any-built-in"):
        for ep in range(3):
            rows.append({"policy": name, "episode": ep, "energy_j": 100e3 + 7 * ep, "pods": 10, "pods_placed": 10,
                         "cost_j": 100e3 + 7 * ep, "energy_j_per_placed_pod": (100e3 + 7 * ep) / 10})
    lines = format_table(summarize(_episodes(rows), reference="round-robin")).splitlines()
    header, rows_out = lines[0], lines[2:]
    assert len(rows_out) == 3
    cost_end = header.index("cost kJ") + len("cost kJ")
    for line in rows_out:
        assert len(line) == len(header), line
        assert line[cost_end - 1] != " " and line[cost_end] == " ", line  # the cost column ends under its title
