"""Live scheduler throughput against kmock, next to kmock's own ceiling measured in the same run.

For each cluster size: create the nodes (objects only) and the pending pods first (not timed), then start
the scheduler and time until every pod is bound: pods bound per second, and pod-created -> bound latency
(all pods exist before the start, so this is the time each waited in the queue plus its decision and bind).
The ceiling: bare Binding calls on the same number of fresh pods, one at a time (the scheduler binds from one
thread), so `ratio` says how close the scheduler gets to what the API server allows. A second ceiling also
writes what the scheduler writes per pod (the Binding, an Event and the decision annotation), so
`ratio_full` says how close it gets to what the API server allows for the same writes.

    .venv/bin/python benchmarks/scheduler_throughput.py [--nodes 100,1000] [--pods 200] [--model Dale.pth]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the kmock harness ships with the tests

from rlmodel.agents.dqn import DQNConfig  # noqa: E402
from rlmodel.agents.features import NUM_FEATURES  # noqa: E402
from rlmodel.agents.policy import DQNPolicy  # noqa: E402
from rlmodel.agents.qnet import NodeScorer  # noqa: E402
from rlmodel.live.scheduler import Scheduler, SchedulerConfig  # noqa: E402
from rlmodel.policies import make_policy  # noqa: E402
from tests.testbed import KubeApi  # noqa: E402


def create(api, nodes: int, pods: int, tag: str) -> None:
    for i in range(nodes):
        api.core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"n{i:04d}", "labels": {
            "rlsched.io/node-type": ("x3550", "ml110-g5", "ml110-g4")[i % 3]}},
            "status": {"allocatable": {"cpu": "12", "memory": "24Gi", "pods": "110"}}})
    for i in range(pods):
        api.core.create_namespaced_pod("default", {"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": f"{tag}-{i:04d}", "namespace": "default"}, "spec": {"schedulerName": "rlsched", "containers": [
                {"name": "c", "image": "x", "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}}]}})


class Timed:
    """The API client, recording when each Binding returned."""

    def __init__(self, core):
        self._core, self.bound = core, {}

    def create_namespaced_pod_binding(self, name, namespace, body, **kwargs):
        out = self._core.create_namespaced_pod_binding(name, namespace, body, **kwargs)
        self.bound[name] = time.perf_counter()
        return out

    def __getattr__(self, name):
        return getattr(self._core, name)


def run(nodes: int, pods: int, policy, label: str) -> dict:
    api = KubeApi()
    try:
        create(api, nodes, pods, "p")
        core = Timed(api.core)
        s = Scheduler(core, policy, SchedulerConfig(watch_timeout_s=60))
        start = time.perf_counter()
        s.start()
        while len(core.bound) < pods:
            time.sleep(0.05)
            if time.perf_counter() - start > 900:
                raise RuntimeError("not all pods bound within 900 s")
        wall = time.perf_counter() - start
        s.stop()
        waits = np.array(sorted(core.bound.values())) - start
        # kmock's ceiling in the same run: bare Bindings of fresh pods, serially
        create(api, 0, pods, "q")
        t0 = time.perf_counter()
        for i in range(pods):
            api.core.create_namespaced_pod_binding(f"q-{i:04d}", "default", {
                "apiVersion": "v1", "kind": "Binding", "metadata": {"name": f"q-{i:04d}"},
                "target": {"apiVersion": "v1", "kind": "Node", "name": "n0000"}}, _preload_content=False)
        ceiling = pods / (time.perf_counter() - t0)
        # the same three writes per pod as the scheduler, serially
        create(api, 0, pods, "r")
        t0 = time.perf_counter()
        for i in range(pods):
            name = f"r-{i:04d}"
            api.core.create_namespaced_pod_binding(name, "default", {
                "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                "target": {"apiVersion": "v1", "kind": "Node", "name": "n0000"}}, _preload_content=False)
            api.core.create_namespaced_event("default", {
                "apiVersion": "v1", "kind": "Event", "metadata": {"name": f"{name}.e", "namespace": "default"},
                "involvedObject": {"kind": "Pod", "name": name, "namespace": "default"}, "reason": "Scheduled",
                "message": "bench", "type": "Normal", "source": {"component": "bench"}}, _preload_content=False)
            api.core.patch_namespaced_pod(name, "default", {"metadata": {"annotations": {"x": "y"}}},
                                          _preload_content=False)
        ceiling_full = pods / (time.perf_counter() - t0)
    finally:
        api.stop()
    rate = pods / wall
    return {"nodes": nodes, "policy": label, "pods": pods, "pods_per_s": round(rate, 1),
            "latency_p50_s": round(float(np.percentile(waits, 50)), 3),
            "latency_p99_s": round(float(np.percentile(waits, 99)), 3),
            "kmock_bindings_per_s": round(ceiling, 1), "ratio_to_ceiling": round(rate / ceiling, 3),
            "kmock_same_writes_per_s": round(ceiling_full, 1), "ratio_full": round(rate / ceiling_full, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="100,1000", help="cluster sizes, comma-separated")
    parser.add_argument("--pods", type=int, default=200)
    parser.add_argument("--model", default=None, help="a DQN model file (default: an untrained network of the "
                                                       "default shape; latency does not depend on the weights)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    cfg = DQNConfig()
    dqn = DQNPolicy.load(args.model) if args.model else DQNPolicy(NodeScorer(NUM_FEATURES, cfg.hidden, cfg.layers))
    for n in (int(x) for x in args.nodes.split(",")):
        for label, policy in (("dqn", dqn), ("least-allocated", make_policy("least-allocated"))):
            print(json.dumps(run(n, args.pods, policy, label)), flush=True)


if __name__ == "__main__":
    main()
