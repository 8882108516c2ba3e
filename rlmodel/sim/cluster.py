"""A discrete-event digital twin of a Kubernetes cluster whose cost is energy.

Model (all times in s, CPU in cores, memory in GiB, power in W, energy in J):

* Each node has capacity (cores, GiB) and a power curve P(u), u = min(demand / cores, 1).
* A pod reserves its requests on the node it is bound to (kube-scheduler's NodeResourcesFit: a pod
  may only be bound where requests fit). While running it demands `usage_cores` of CPU.
* Processor sharing: when the demand on a node exceeds its cores, every pod on it progresses at
  rate cores / demand < 1, so it runs longer. The extra wall time, summed over pods, is the
  overload (pod-seconds of slowdown), the service-level signal.
* Idle sleep (optional): a node that has had no pod for `idle_sleep_after_s` drops to
  `sleep_watts`. A pod bound to a sleeping node waits `wake_s` while the node wakes at peak power;
  that wait is recorded as wake delay (pod-seconds).
* Background load (scenario `background_cpu_cores`, the testbed's resource blocker) is CPU demand
  that is always there: it draws power and shares the cores with the pods, but reserves no requests.
  A node with background load never sleeps.
* Power is constant between events, so energy is integrated exactly: sum of P * dt. So is the imbalance:
  the standard deviation over nodes of CPU utilization (min(demand / cores, 1) on awake nodes, 0 on others),
  integrated over time (`imbalance_s`, utilization-seconds).

The core keeps per-node state in plain Python lists and one heap of next-event times: a node's pods
share one "virtual clock" advancing at the node's rate, so a pod finishes when the clock reaches
its start value plus its work, and only the node whose pods changed is recomputed.
"""

from __future__ import annotations

import heapq
import math
from typing import TYPE_CHECKING

import numpy as np

from rlmodel.sim.backend import ASLEEP, AWAKE, WAKING, ClusterBackend, fits_mask
from rlmodel.sim.podtrace import PodTrace
from rlmodel.sim.power import PowerCurves
from rlmodel.sim.scenario import Scenario

__all__ = ["ASLEEP", "AWAKE", "WAKING", "ClusterSim", "fits_mask"]
_EPS = 1e-9
_INF = math.inf


class ClusterSim:
    """Event-driven simulation of one episode: bind pods with `place`, move time with `advance_to`.

    Implements `rlmodel.sim.backend.ClusterBackend`.

    Usage::

        sim = ClusterSim(scenario)
        sim.reset(trace)
        for i in range(len(trace)):
            sim.advance_to(trace.arrival_s[i])
            mask = sim.fits(trace.cpu_request_cores[i], trace.memory_request_gib[i])
            sim.place(i, chosen_node) if mask.any() else sim.reject(i)
        sim.drain()
        sim.energy_j, sim.overload_pod_s
    """

    def __init__(self, scenario: Scenario):
        self.scenario = scenario
        types = scenario.node_types
        self.num_nodes = len(types)
        self.cores = np.array([t.cpu_cores for t in types], dtype=np.float64)
        self.memory_gib = np.array([t.memory_gib for t in types], dtype=np.float64)
        self.names = [f"{t.name}-{i}" for i, t in enumerate(types)]
        self.curves = np.array([t.watts for t in types], dtype=np.float64)
        self.idle_watts = self.curves[:, 0].copy()
        self.peak_watts = self.curves[:, -1].copy()
        self._cores = self.cores.tolist()
        self._power = PowerCurves(self.curves)  # vectorized lookups
        self._curves = self.curves.tolist()  # the scalar path in _refresh
        self._peak = self.peak_watts.tolist()
        self._bg = [float(b) for b in scenario.background_cpu_cores]
        self.sleep_after_s = scenario.idle_sleep_after_s
        self.sleep_watts = scenario.sleep_watts
        self.wake_s = scenario.wake_s
        self.trace: PodTrace | None = None

    # ------------------------------------------------------------------ episode
    def reset(self, trace: PodTrace) -> None:
        """Start an episode at t=0 with every node awake and empty."""
        n = self.num_nodes
        self.trace = trace
        self._usage = trace.usage_cores.tolist()
        self._work = trace.work_s.tolist()
        self._cpu_req_pod = trace.cpu_request_cores.tolist()
        self._mem_req_pod = trace.memory_request_gib.tolist()
        self.now_s = 0.0
        self.energy_j = 0.0
        self.overload_pod_s = 0.0
        self.imbalance_s = 0.0
        self._util = [0.0] * n
        self._util_sum = self._util_sq = 0.0
        self.wake_delay_pod_s = 0.0
        self.wakeups = 0
        self.unschedulable = 0
        self.pods_done = 0
        self.pods_placed = 0
        self.cpu_requested = [0.0] * n
        self.mem_requested = [0.0] * n
        self.demand = self._bg[:]
        self.state = [AWAKE] * n
        self.pods_on = [0] * n  # bound pods, running or waiting for wake
        self._vt = [0.0] * n  # virtual clock: work-seconds done by each running pod
        self._last = [0.0] * n
        self._rate = [1.0] * n
        self._running: list[list[tuple[float, int]]] = [[] for _ in range(n)]
        self._waiting: list[list[int]] = [[] for _ in range(n)]
        self._wake_done = [_INF] * n
        self._sleep_at = [self.sleep_after_s if self.sleep_after_s > 0 and not bg else _INF for bg in self._bg]
        self.empty_since = [0.0] * n  # when the node last became empty (meaningful while pods_on == 0)
        self.watts = [0.0] * n
        self._overload_rate = [0.0] * n
        self._total_overload_rate = 0.0
        self._version = [0] * n
        self._events: list[tuple[float, int, int]] = []
        self.node_of = np.full(len(trace), -1, dtype=np.int64)
        self.finish_s = np.full(len(trace), np.nan)
        self.start_s = np.full(len(trace), np.nan)  # when each pod started running (after its node woke), s
        self._total_watts = 0.0
        for i in range(n):
            self._refresh(i)  # power at the background demand; schedules the first events

    # ------------------------------------------------------------------ queries
    def fits(self, cpu_request: float, memory_request: float) -> np.ndarray:
        """Boolean mask (N,): nodes where the requests fit next to what is already bound there."""
        return fits_mask(self, cpu_request, memory_request)

    def watts_if_added(self, extra_cores: float) -> np.ndarray:
        """(N,) power in W each node would draw once `extra_cores` more demand runs on it (awake)."""
        return self.power_w(np.asarray(self.demand) + extra_cores)

    def power_w(self, demand_cores: np.ndarray) -> np.ndarray:
        """(N,) power in W of awake nodes running `demand_cores` (N,) of CPU demand (>= 0)."""
        return self._power.at_utilization(demand_cores / self.cores)

    @property
    def wake_done(self) -> list[float]:
        """Per node: when a waking node runs its pods (inf when not waking), s."""
        return self._wake_done

    @property
    def measured_s(self) -> float:
        """Seconds over which energy was integrated (the whole episode so far)."""
        return self.now_s

    @property
    def pods_active(self) -> int:
        return self.pods_placed - self.pods_done

    def label_run(self, run: str) -> None:
        """The twin records nothing per run."""

    def close(self) -> None:
        """Nothing to release (the twin holds no files or connections)."""

    # ------------------------------------------------------------------ actions
    def place(self, pod: int, node: int) -> None:
        """Bind `pod` to `node` at the current time. The caller checks `fits` first."""
        t = self.now_s
        self._sync(node, t)
        self.node_of[pod] = node
        self.pods_placed += 1
        self.cpu_requested[node] += self._cpu_req_pod[pod]
        self.mem_requested[node] += self._mem_req_pod[pod]
        self.pods_on[node] += 1
        self._sleep_at[node] = _INF
        state = self.state[node]
        if state == AWAKE:
            self._start(node, pod)
        else:
            if state == ASLEEP:
                self.state[node] = WAKING
                self._wake_done[node] = t + self.wake_s
                self.wakeups += 1
            self._waiting[node].append(pod)
            self.wake_delay_pod_s += self._wake_done[node] - t
        self._refresh(node)

    def reject(self, pod: int) -> None:
        """Record `pod` as unschedulable (it fits nowhere)."""
        self.unschedulable += 1

    def advance_to(self, t: float) -> None:
        """Process every event up to time `t` (s) and integrate energy to `t`."""
        events = self._events
        while events and events[0][0] <= t:
            when, node, version = heapq.heappop(events)
            if version != self._version[node]:
                continue  # superseded by a later change on that node
            self._integrate(when)
            self._handle(node, when)
        self._integrate(t)

    def drain(self) -> float:
        """Run until every bound pod has finished; returns the end time (s)."""
        events = self._events
        while self.pods_done < self.pods_placed and events:
            when, node, version = heapq.heappop(events)
            if version != self._version[node]:
                continue
            self._integrate(when)
            self._handle(node, when)
        return self.now_s

    # ------------------------------------------------------------------ snapshots (oracle search)
    def snapshot(self) -> tuple:
        """Everything that changes during an episode, for `restore` (used by exhaustive search)."""
        return (
            self.now_s, self.energy_j, self.overload_pod_s, self.imbalance_s, self._util[:], self._util_sum,
            self._util_sq, self.wake_delay_pod_s, self.wakeups,
            self.unschedulable, self.pods_done, self.pods_placed, self.cpu_requested[:], self.mem_requested[:],
            self.demand[:], self.state[:], self.pods_on[:], self._vt[:], self._last[:], self._rate[:],
            [r[:] for r in self._running], [w[:] for w in self._waiting], self._wake_done[:], self._sleep_at[:],
            self.watts[:], self._overload_rate[:], self._total_watts, self._total_overload_rate,
            self._version[:], self._events[:], self.node_of.copy(), self.finish_s.copy(), self.empty_since[:],
            self.start_s.copy(),
        )

    def restore(self, snap: tuple) -> None:
        (self.now_s, self.energy_j, self.overload_pod_s, self.imbalance_s, util, self._util_sum, self._util_sq,
         self.wake_delay_pod_s, self.wakeups,
         self.unschedulable, self.pods_done, self.pods_placed, cpu_req, mem_req, demand, state, pods_on, vt,
         last, rate, running, waiting, wake_done, sleep_at, watts, orate, self._total_watts,
         self._total_overload_rate, version, events, node_of, finish, empty_since, start) = snap
        self.start_s = start.copy()
        self._util = util[:]
        self.empty_since = empty_since[:]
        self.cpu_requested, self.mem_requested, self.demand = cpu_req[:], mem_req[:], demand[:]
        self.state, self.pods_on, self._vt, self._last, self._rate = state[:], pods_on[:], vt[:], last[:], rate[:]
        self._running = [r[:] for r in running]
        self._waiting = [w[:] for w in waiting]
        self._wake_done, self._sleep_at, self.watts = wake_done[:], sleep_at[:], watts[:]
        self._overload_rate, self._version, self._events = orate[:], version[:], events[:]
        self.node_of, self.finish_s = node_of.copy(), finish.copy()

    def progress(self) -> list[tuple[int, float]]:
        """(pod, work done in s) for every bound pod that has not finished: running ones, then those waiting
        for their node to wake (done 0). What a scheduler could know from pod start times and slowdowns."""
        out: list[tuple[int, float]] = []
        for node in range(self.num_nodes):
            vt_now = self._vt[node] + self._rate[node] * (self.now_s - self._last[node])
            out += [(pod, self._work[pod] - (finish - vt_now)) for finish, pod in self._running[node]]
            out += [(pod, 0.0) for pod in self._waiting[node]]
        return out

    def branch(self, snap: tuple, *, usage_cores: list[float], work_s: list[float], cpu_request_cores: list[float],
               memory_request_gib: list[float], remaining_s: dict[int, float]) -> None:
        """Continue from `snap` (a `snapshot` of a simulator of the same scenario) in a possible future.

        The per-pod lists (one entry per pod of the trace) replace the trace's: what is not known yet, such
        as the run times and usage of pods still to come, can be sampled. `remaining_s` gives the work left
        (s) of each running pod. Used by look-ahead planners (`rlmodel.evaluation.rollout`).
        """
        self.restore(snap)
        self._usage, self._work = usage_cores, work_s
        self._cpu_req_pod, self._mem_req_pod = cpu_request_cores, memory_request_gib
        t = self.now_s
        for node in range(self.num_nodes):
            self._sync(node, t)
            if self._running[node]:
                vt = self._vt[node]
                self._running[node] = [(vt + remaining_s[pod], pod) for _, pod in self._running[node]]
                heapq.heapify(self._running[node])
            self._schedule(node)

    # ------------------------------------------------------------------ internals
    def _integrate(self, t: float) -> None:
        dt = t - self.now_s
        if dt > 0:
            self.energy_j += self._total_watts * dt
            self.overload_pod_s += self._total_overload_rate * dt
            n = self.num_nodes
            mean = self._util_sum / n
            self.imbalance_s += math.sqrt(max(self._util_sq / n - mean * mean, 0.0)) * dt
            self.now_s = t

    def _sync(self, node: int, t: float) -> None:
        """Advance the node's virtual clock to t."""
        self._vt[node] += self._rate[node] * (t - self._last[node])
        self._last[node] = t

    def _start(self, node: int, pod: int) -> None:
        self.start_s[pod] = self._last[node]
        heapq.heappush(self._running[node], (self._vt[node] + self._work[pod], pod))
        self.demand[node] += self._usage[pod]

    def _handle(self, node: int, t: float) -> None:
        self._sync(node, t)
        if self.state[node] == WAKING and self._wake_done[node] <= t + _EPS:
            self.state[node] = AWAKE
            self._wake_done[node] = _INF
            for pod in self._waiting[node]:
                self._start(node, pod)
            self._waiting[node] = []
        running = self._running[node]
        vt = self._vt[node] + 1e-7  # finish times are computed from vt; allow round-off
        while running and running[0][0] <= vt:
            _, pod = heapq.heappop(running)
            self.demand[node] -= self._usage[pod]
            self.cpu_requested[node] -= self._cpu_req_pod[pod]
            self.mem_requested[node] -= self._mem_req_pod[pod]
            self.pods_on[node] -= 1
            self.pods_done += 1
            self.finish_s[pod] = t
            if self.pods_on[node] == 0:
                # exact zeros: no drift of float sums on empty nodes
                self.cpu_requested[node] = self.mem_requested[node] = 0.0
                self.demand[node] = self._bg[node]
                self.empty_since[node] = t
                if self.sleep_after_s > 0 and not self._bg[node]:
                    self._sleep_at[node] = t + self.sleep_after_s
        if self.state[node] == AWAKE and self.pods_on[node] == 0 and self._sleep_at[node] <= t + _EPS:
            self.state[node] = ASLEEP
            self._sleep_at[node] = _INF
        self._refresh(node)

    def _refresh(self, node: int) -> None:
        """Recompute the node's rate, power and next event after a change at the current time."""
        state = self.state[node]
        cores = self._cores[node]
        demand = self.demand[node]
        u = 0.0
        if state == ASLEEP:
            watts = self.sleep_watts
        elif state == WAKING:
            watts = self._peak[node]
        else:
            # the scalar form of rlmodel.sim.power.power_w, inline: this runs at every event
            u = demand / cores
            if u >= 1.0:
                u = 1.0
                watts = self._peak[node]
            else:
                x = u * 10.0
                i = int(x)
                curve = self._curves[node]
                watts = curve[i] + (x - i) * (curve[i + 1] - curve[i])
        running = self._running[node]
        rate = cores / demand if demand > cores else 1.0
        orate = len(running) * (1.0 - rate)
        old = self._util[node]
        self._util[node] = u
        self._util_sum += u - old
        self._util_sq += u * u - old * old
        self._total_watts += watts - self.watts[node]
        self._total_overload_rate += orate - self._overload_rate[node]
        self.watts[node] = watts
        self._overload_rate[node] = orate
        self._rate[node] = rate
        self._schedule(node)

    def _schedule(self, node: int) -> None:
        t = self.now_s
        nxt = _INF
        running = self._running[node]
        if running:
            nxt = t + (running[0][0] - self._vt[node]) / self._rate[node]
        if self.state[node] == WAKING:
            nxt = min(nxt, self._wake_done[node])
        elif self.state[node] == AWAKE and self.pods_on[node] == 0:
            nxt = min(nxt, self._sleep_at[node])
        self._version[node] += 1
        if nxt < _INF:
            heapq.heappush(self._events, (max(nxt, t), node, self._version[node]))


if TYPE_CHECKING:
    def _implements(sim: ClusterSim) -> ClusterBackend:
        return sim  # mypy: ClusterSim implements the written cluster interface
