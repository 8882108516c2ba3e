"""Shared fixtures: small scenarios written as users would write them."""

from __future__ import annotations

import signal

import pytest

from rlmodel.sim.scenario import parse_scenario


def pytest_configure(config):
    """SIGTERM (a CI timeout, `kill`) ends the run as Ctrl-C does: the fixtures' teardowns stop the API servers,
    Prometheus and stand-ins they started, instead of leaving them to the next run."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def make_scenario(text: str, name: str = "test"):
    return parse_scenario(text, name=name, source=f"{name}.toml")


ONE_NODE = """
[[node_types]]
name = "one"
count = 1
cpu_cores = 1
memory_gib = 4
watts = [100, 110, 120, 130, 140, 150, 160, 170, 180, 190, 200]

[workload]
cpu_request_cores = [0.1, 1.0]  # what fits the node (a scenario whose pods mostly fit nowhere is refused)
"""


@pytest.fixture
def one_node_scenario():
    return make_scenario(ONE_NODE)


@pytest.fixture
def sleepy_two_nodes():
    return make_scenario("""
[cluster]
idle_sleep_after_s = 50
sleep_watts = 5
wake_s = 20

[[node_types]]
name = "n"
count = 2
cpu_cores = 2
memory_gib = 4
watts = [50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150]
""")
