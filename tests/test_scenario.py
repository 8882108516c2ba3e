"""Scenario files: built-ins, user files, and one-line errors naming file and key."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from rlmodel.cli import main
from rlmodel.errors import ScenarioError
from rlmodel.sim import builtin_scenarios, load_scenario

GOOD = """
[cluster]
idle_sleep_after_s = 120
sleep_watts = 8.0
wake_s = 30.0

[[node_types]]
name = "ml110-g5"
count = 4
cpu_cores = 4
memory_gib = 8
watts = [93.7, 97, 101, 105, 110, 116, 121, 125, 129, 133, 135]

[[node_types]]
name = "x3550"
count = 2

[workload]
pods_per_episode = 60
mean_interarrival_s = 20.0
cpu_request_cores = [0.25, 2.0]
memory_request_gib = [0.25, 2.0]
usage_of_request = [0.3, 1.2]
duration_s = [120, 1800]
"""


def test_builtins_load():
    assert {"homogeneous", "hetero", "hetero-sleep", "tiny"} <= set(builtin_scenarios())
    for name in builtin_scenarios():
        sc = load_scenario(name)
        assert sc.num_nodes > 0 and sc.workload.pods_per_episode > 0
    assert load_scenario("hetero-sleep").sleep_enabled and not load_scenario("hetero").sleep_enabled


def test_user_file_with_builtin_and_custom_types(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text(GOOD)
    sc = load_scenario(str(p))
    assert sc.name == "mine" and sc.num_nodes == 6
    assert sc.node_types[0].cpu_cores == 4 and sc.node_types[5].cpu_cores == 12
    assert sc.node_types[5].watts[0] == 66
    assert (sc.idle_sleep_after_s, sc.sleep_watts, sc.wake_s) == (120, 8.0, 30.0)
    assert sc.workload.duration_s == (120.0, 1800.0)


@pytest.mark.parametrize(
    "old,new,key",
    [
        ("count = 4", "count = 0", "node_types[0].count"),
        ("count = 4", 'count = "4"', "node_types[0].count"),
        ("watts = [93.7, 97, 101, 105, 110, 116, 121, 125, 129, 133, 135]", "watts = [1, 2, 3]", "node_types[0].watts"),
        ('name = "x3550"', 'name = "mystery"', "node_types[1].cpu_cores"),
        ("wake_s = 30.0", "wake_s = -1", "cluster.wake_s"),
        ("wake_s = 30.0", "wakeup_s = 30.0", "cluster.wakeup_s"),
        ("duration_s = [120, 1800]", "duration_s = [1800, 120]", "workload.duration_s"),
        ("duration_s = [120, 1800]", "duration_s = \"5\"", "workload.duration_s"),
            ("duration_s = [120, 1800]", "duration_s = {dist = \"gamma\"}", "workload.duration_s.dist"),
        ("mean_interarrival_s = 20.0", "mean_interarrival_s = 0", "workload.mean_interarrival_s"),
        ("cpu_request_cores = [0.25, 2.0]", "cpu_request_cores = [13, 14]", "workload.cpu_request_cores"),
        ("[workload]", "[workloads]", "workloads"),
    ],
)
def test_errors_name_file_and_key(tmp_path, old, new, key):
    p = tmp_path / "bad.toml"
    assert old in GOOD
    p.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(ScenarioError) as err:
        load_scenario(str(p))
    msg = str(err.value)
    assert msg.startswith(f"{p}: {key}"), msg
    assert "\n" not in msg


def test_invalid_toml_and_missing_file(tmp_path):
    p = tmp_path / "broken.toml"
    p.write_text("[cluster\nwake_s = 1\n")
    with pytest.raises(ScenarioError, match=r"broken.toml: invalid TOML: .*line 1"):
        load_scenario(str(p))
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario(str(tmp_path / "absent.toml"))
    with pytest.raises(ScenarioError, match="node_types: missing"):
        load_scenario(str(_write(tmp_path, "[cluster]\n")))


def _write(tmp_path, text):
    p = tmp_path / "x.toml"
    p.write_text(text)
    return p


def test_scaled_keeps_load_per_node():
    sc = load_scenario("hetero")
    big = sc.scaled(4)
    assert big.num_nodes == 4 * sc.num_nodes
    assert big.workload.pods_per_episode == 4 * sc.workload.pods_per_episode
    assert big.workload.mean_interarrival_s == pytest.approx(sc.workload.mean_interarrival_s / 4)


@pytest.mark.parametrize("extra,message", [
    ('[[node_types]]\nname = "n"\ncount = 1\ncpu_cores = 4\nmemory_gib = 4\n'
     'watts = [50, 60, 70, 65, 90, 100, 110, 120, 130, 140, 150]\n', "power must not fall"),
    ('[[node_types]]\nname = "n"\ncount = 1\ncpu_cores = 4\nmemory_gib = 1\nwatts = [1,1,1,1,1,1,1,1,1,1,1]\n'
     '[workload]\nmemory_request_gib = [2, 3]\n', "every request exceeds the largest node (1 GiB)"),
    ('[[node_types]]\nname = "n"\ncount = 1\ncpu_cores = 1\nmemory_gib = 8\nwatts = [1,1,1,1,1,1,1,1,1,1,1]\n'
     '[workload]\ncpu_request_cores = [0.5, 20]\n', "only 3% of the pods"),
    ('[[node_types]]\nname = "x3550"\ncount = 1\n[workload]\nmean_interarrival_s = 1e308\n', "must be at most"),
    ('[[node_types]]\nname = "x3550"\ncount = 1\n[workload]\nmean_interarrival_s = 1' + "0" * 400 + "\n",
     "expected a number"),
    ('[[node_types]]\nname = "n"\ncount = 1\ncpu_cores = 4\nmemory_gib = 4\nwatts = [0,0,0,0,0,0,0,0,0,0,0]\n',
     "must be > 0"),
])
def test_scenarios_that_would_mislead_are_refused(tmp_path, extra, message):
    path = tmp_path / "s.toml"
    path.write_text(extra)
    r = CliRunner().invoke(main, ["scenarios", "--show", str(path)])
    assert r.exit_code == 1 and message in r.output and r.output.count("\n") == 1, r.output


def test_show_refuses_what_is_not_a_regular_file(tmp_path):
    import os

    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    r = CliRunner().invoke(main, ["scenarios", "--show", str(fifo)])  # would block forever on read
    assert r.exit_code == 1 and "not a regular file" in r.output
