"""The simulated cluster (digital twin): node power curves, scenarios, pod traces, the event core."""

from rlmodel.sim.cluster import ClusterSim
from rlmodel.sim.podtrace import PodTrace
from rlmodel.sim.power import BUILTIN_NODE_TYPES, NodeType, power_w
from rlmodel.sim.scenario import Scenario, builtin_scenarios, load_scenario, parse_scenario
from rlmodel.sim.workload import sample_trace

__all__ = [
    "BUILTIN_NODE_TYPES", "ClusterSim", "NodeType", "PodTrace", "Scenario", "builtin_scenarios",
    "load_scenario", "parse_scenario", "power_w", "sample_trace",
]
