"""Live scheduler throughput against kmock, next to kmock's own ceiling measured in the same run.

kmock runs in a process of its own (as an API server does), so it does not share the scheduler's GIL. For
each cluster size, two fresh kmock processes get the same nodes (objects only) and the same pending pods,
created before anything is timed:
* the ceiling: bare Binding calls for every pod, `--concurrency` at a time (as many as the scheduler's binder
  threads: the same concurrency), so `ratio` says how close the scheduler gets to what the API server allows. It is
  measured before and after the scheduler's run (`kmock_before_after`), and the higher of the two is the
  ceiling: on a shared machine, the less disturbed measurement;
* the scheduler: started, and timed until every pod is bound: pods bound per second from the moment its
  caches are synced (`sync_s`, the initial list of nodes and pods, is reported apart: kube-scheduler's
  scheduler_perf also times a scheduler that is already running), and pod-created -> bound latency from
  the start (all pods exist then, so the sync, the time each waited in the queue, its decision and bind).
  Its events (one per pod, written after the binds they follow, as they yield to binds) are waited for as
  well: `events_done_s` is when the last one was written.
* where the CPU went while the pods were bound (from the synced caches to the last bind: the window the rate is
  measured over), ms per pod (`cpu_ms_per_pod`, from /proc): each scheduler thread (the scheduling loop: filter,
  observation, score; the binder threads; the informers), the binder child's process (`binder-process`: the
  Binding calls) and kmock's process. The scheduler's Python threads share one GIL, so their sum bounds its rate:
  1000 / sum pods/s at best. With one Binding in flight, the child's and kmock's shares are a chain each bind
  goes through in turn, so their sum bounds it too (`bind_chain_ms_per_pod`); the ceiling's own chain, the client's
  and kmock's CPU a bare Binding, is `ceiling_chain_ms_per_bind`.

* with `--bind-only`, the scheduler's binding path with no decisions (a row whose policy is `bind-only`): the
  process binder's child fed Bindings as fast as it takes them, each carrying a decision annotation of the usual
  size, while a pods watch is open (as the scheduler's informer keeps one, so kmock sends an event per Binding).
  Its ratio is what the binding path allows before any decision is made: the scheduler's rows can be read against
  it (the gap between the two is what making decisions on the same cores costs).

kmock here is the tests' harness (`tests/testbed.py`), which keeps kmock's request log short and looks
objects up by key: unpatched, kmock's cost per request grows with every request it has served.

    .venv/bin/python benchmarks/scheduler_throughput.py [--nodes 100,1000] [--pods 200] [--repeat 1]
        [--binder process,thread] [--concurrency 1] [--policies dqn,least-allocated] [--model Dale.pth] [--bind-only]
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the kmock harness ships with the tests

from rlmodel.agents.dqn import DQNConfig  # noqa: E402
from rlmodel.agents.features import NUM_FEATURES  # noqa: E402
from rlmodel.agents.policy import DQNPolicy  # noqa: E402
from rlmodel.agents.qnet import NodeScorer  # noqa: E402
from rlmodel.live.binder import ClientSpec, ThreadBinder, process_binder  # noqa: E402
from rlmodel.live.podspec import binding, create_binding  # noqa: E402
from rlmodel.live.scheduler import DECISION_ANNOTATION, Scheduler, SchedulerConfig  # noqa: E402
from rlmodel.policies import BASELINES, make_policy  # noqa: E402
from tests.testbed import KubeApiProcess  # noqa: E402


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
    """The scheduler's binder (`rlmodel.live.binder`), recording when each Binding returned."""

    def __init__(self, binder):
        self._binder, self.bound = binder, {}
        self.slots = getattr(binder, "slots", None)

    def start(self):
        self._binder.start()

    def bind(self, name, namespace, body, timeout_s):
        self._binder.bind(name, namespace, body, timeout_s)
        self.bound[name] = time.perf_counter()

    def stop(self):
        self._binder.stop()


def ceiling(nodes: int, pods: int, concurrency: int = 1) -> tuple[float, float]:
    """Bare Bindings per second on a fresh kmock holding the same objects, `concurrency` calls in flight (threads
    sharing one client, as the scheduler's binder threads do); and the CPU a Binding cost the client's process and
    kmock's together, ms."""
    api = KubeApiProcess()
    try:
        create(api, nodes, pods, "p")

        def bind(indices):
            for i in indices:
                # the scheduler's own call
                create_binding(api.core, f"p-{i:04d}", "default", binding(f"p-{i:04d}", "default", "n0000"))

        workers = [threading.Thread(target=bind, args=(range(k, pods, concurrency),)) for k in range(concurrency)]
        cpu0 = cpu_s("/proc/self/stat") + cpu_s(f"/proc/{api.proc.pid}/stat")
        rate = pods / run_all(workers)
        return rate, (cpu_s("/proc/self/stat") + cpu_s(f"/proc/{api.proc.pid}/stat") - cpu0) / pods * 1e3
    finally:
        api.stop()


def run_all(threads: list[threading.Thread]) -> float:
    """Starts the threads and waits for them all: the wall time that took, s."""
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def cpu_s(path: str) -> float:
    """User + system CPU of a process or thread from its /proc stat file, s (0 where /proc is missing)."""
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_s() -> dict[str, float]:
    """CPU of each of this process's rlsched threads so far, s."""
    return {t.name.removeprefix("rlsched-"): cpu_s(f"/proc/self/task/{t.native_id}/stat")
            for t in threading.enumerate() if t.name.startswith("rlsched-")}


def bind_only(nodes: int, pods: int, tmp: Path, concurrency: int = 1) -> dict:
    """The process binder alone on a fresh kmock with the same objects: `slots` threads hand it every pod's Binding
    (with a decision annotation of the usual size) as fast as it takes them, a pods watch open meanwhile."""
    before, chain_before = ceiling(nodes, pods, concurrency)
    api = KubeApiProcess()
    stop = threading.Event()
    try:
        create(api, nodes, pods, "p")
        kubeconfig = tmp / "kubeconfig"
        api.write_kubeconfig(kubeconfig, "kmock")
        binder = process_binder(ClientSpec(str(kubeconfig), "kmock"), concurrency)
        binder.start()

        def watch() -> None:  # as the scheduler's pods informer: kmock writes it an event per Binding
            try:
                for _ in api.core.list_pod_for_all_namespaces(watch=True, _preload_content=False,
                                                              _request_timeout=120):
                    if stop.is_set():
                        return
            except Exception:  # noqa: BLE001 - the connection ends with kmock
                return

        threading.Thread(target=watch, daemon=True).start()
        time.sleep(0.5)  # kmock replays the listed pods to a new watch first
        todo: queue.Queue[int] = queue.Queue()
        for i in range(pods):
            todo.put(i)
        top = [{"node": f"n{k:04d}", "score": -1.2345} for k in range(3)]

        failed: list[BaseException] = []

        def feed() -> None:
            while not failed:
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                decision = {"policy": "dqn", "model": "Dale.pth@0123456789ab", "node": "n0000", "top": top}
                body = binding(f"p-{i:04d}", "default", "n0000",
                               {DECISION_ANNOTATION: json.dumps(decision, separators=(",", ":"))})
                try:
                    binder.bind(f"p-{i:04d}", "default", body, 30.0)
                except BaseException as exc:  # noqa: BLE001 - reported below: a failed bind voids the figure
                    failed.append(exc)

        feeders = [threading.Thread(target=feed) for _ in range(binder.slots)]
        cpu0 = {"binder-process": sum(cpu_s(f"/proc/{pid}/stat") for pid in binder.pids),
                "kmock": cpu_s(f"/proc/{api.proc.pid}/stat")}
        rate = pods / run_all(feeders)
        if failed:
            raise RuntimeError(f"bind-only: a Binding failed ({failed[0]!r})")
        chain = (sum(cpu_s(f"/proc/{pid}/stat") for pid in binder.pids) - cpu0["binder-process"]
                 + cpu_s(f"/proc/{api.proc.pid}/stat") - cpu0["kmock"]) / pods * 1e3
        binder.stop()
    finally:
        stop.set()
        api.stop()
    after, chain_after = ceiling(nodes, pods, concurrency)
    bare = max(before, after)
    return {"nodes": nodes, "policy": "bind-only", "binder": "process", "concurrency": concurrency, "pods": pods,
            "pods_per_s": round(rate, 1), "kmock_bindings_per_s": round(bare, 1),
            "kmock_before_after": [round(before, 1), round(after, 1)], "ratio_to_ceiling": round(rate / bare, 3),
            "bind_chain_ms_per_pod": round(chain, 2),
            "ceiling_chain_ms_per_bind": round(chain_before if before >= after else chain_after, 2)}


def run(nodes: int, pods: int, policy, label: str, binder: str, tmp: Path, concurrency: int = 1) -> dict:
    before, chain_before = ceiling(nodes, pods, concurrency)
    api = KubeApiProcess()
    try:
        create(api, nodes, pods, "p")
        kubeconfig = tmp / "kubeconfig"
        api.write_kubeconfig(kubeconfig, "kmock")
        # the process binder binds with a client of its own, built from the same kubeconfig
        core = Timed(process_binder(ClientSpec(str(kubeconfig), "kmock"), concurrency) if binder == "process"
                     else ThreadBinder(api.core))
        s = Scheduler(api.core, policy, SchedulerConfig(watch_timeout_s=60, bind_concurrency=concurrency),
                      binder=core)
        def cpu_now() -> dict[str, float]:
            out = {**thread_cpu_s(), "kmock": cpu_s(f"/proc/{api.proc.pid}/stat")}
            if binder == "process":
                out["binder-process"] = sum(cpu_s(f"/proc/{pid}/stat") for pid in core._binder.pids)
            return out

        start = time.perf_counter()
        s.start()
        while not s.ready:
            time.sleep(0.001)
        synced, cpu0 = time.perf_counter(), cpu_now()
        while len(core.bound) < pods:
            time.sleep(0.02)
            if time.perf_counter() - start > 900:
                raise RuntimeError("not all pods bound within 900 s")
        cpu1 = cpu_now()
        wall = max(core.bound.values()) - synced
        cpu = {k: (v - cpu0.get(k, 0.0)) / pods * 1e3 for k, v in cpu1.items()}
        while s.records_pending:
            time.sleep(0.05)
        events_done = time.perf_counter() - start
        s.stop()
        waits = np.array(sorted(core.bound.values())) - start
    finally:
        api.stop()
    after, chain_after = ceiling(nodes, pods, concurrency)
    bare = max(before, after)  # the machine is shared: of the two measurements, the one less disturbed
    rate = pods / wall
    return {"nodes": nodes, "policy": label, "binder": binder, "concurrency": concurrency, "pods": pods,
            "sync_s": round(synced - start, 3),
            "pods_per_s": round(rate, 1),
            "latency_p50_s": round(float(np.percentile(waits, 50)), 3),
            "latency_p99_s": round(float(np.percentile(waits, 99)), 3),
            "kmock_bindings_per_s": round(bare, 1),
            "kmock_before_after": [round(before, 1), round(after, 1)], "ratio_to_ceiling": round(rate / bare, 3),
            "events_done_s": round(events_done, 2),
            # where the CPU went from the synced caches to the last bind, ms per pod
            "cpu_ms_per_pod": {k: round(v, 2) for k, v in sorted(cpu.items())},
            "bind_chain_ms_per_pod": round(cpu.get("binder-process", 0.0) + cpu["kmock"], 2) if binder == "process"
            else None,
            "ceiling_chain_ms_per_bind": round(chain_before if before >= after else chain_after, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="100,1000", help="cluster sizes, comma-separated")
    parser.add_argument("--pods", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=1, help="runs per size and policy (then a line of medians: "
                        "the machine is shared, and one run's ratio can be off by a factor of 2)")
    parser.add_argument("--binder", default="process,thread", help="where Binding calls run, comma-separated: "
                        "thread (the command's default) and/or process")
    parser.add_argument("--concurrency", default="1", help="Binding calls in flight (scheduler.bind_concurrency; "
                        "the ceiling is measured at the same), comma-separated")
    parser.add_argument("--policies", default="dqn,least-allocated", help="the DQN and/or baselines (e.g. "
                        "least-allocated), comma-separated")
    parser.add_argument("--model", default=None, help="a DQN model file (default: an untrained network of the "
                                                       "default shape; latency does not depend on the weights)")
    parser.add_argument("--bind-only", action="store_true", help="also measure the binding path with no decisions "
                        "(the process binder fed as fast as it takes Bindings): a row per size and concurrency")
    args = parser.parse_args()
    for name in args.policies.split(","):
        if name != "dqn" and name not in BASELINES:
            parser.error(f"--policies: unknown policy {name!r} (dqn or one of: {', '.join(BASELINES)})")
    logging.basicConfig(level=logging.ERROR)
    torch.set_num_threads(1)  # as `rlsched scheduler run` does
    cfg = DQNConfig()
    dqn = DQNPolicy.load(args.model) if args.model else DQNPolicy(NodeScorer(NUM_FEATURES, cfg.hidden, cfg.layers))
    for n in (int(x) for x in args.nodes.split(",")):
        for conc in ([int(c) for c in args.concurrency.split(",")] if args.bind_only else []):
            rows = []
            for _ in range(args.repeat):
                with tempfile.TemporaryDirectory() as tmp:
                    rows.append(bind_only(n, args.pods, Path(tmp), conc))
                print(json.dumps(rows[-1]), flush=True)
            print_medians(rows, n, "bind-only", "process", conc, args.repeat)
        for (label, policy), binder, conc in itertools.product(
                [(p, dqn if p == "dqn" else make_policy(p)) for p in args.policies.split(",")], args.binder.split(","),
                [int(c) for c in args.concurrency.split(",")]):
            rows = []
            for _ in range(args.repeat):
                with tempfile.TemporaryDirectory() as tmp:
                    rows.append(run(n, args.pods, policy, label, binder, Path(tmp), conc))
                print(json.dumps(rows[-1]), flush=True)
            print_medians(rows, n, label, binder, conc, args.repeat)


def print_medians(rows: list[dict], nodes: int, label: str, binder: str, concurrency: int, repeats: int) -> None:
    """A line of medians over the repeats (none for one run)."""
    if repeats > 1:
        print(json.dumps({"nodes": nodes, "policy": label, "binder": binder, "concurrency": concurrency,
                          "repeats": repeats, **{
            f"median_{k}": round(float(np.median([r[k] for r in rows])), 3)
            for k in ("pods_per_s", "kmock_bindings_per_s", "ratio_to_ceiling", "latency_p50_s", "latency_p99_s")
            if k in rows[0]}}), flush=True)


if __name__ == "__main__":
    main()
