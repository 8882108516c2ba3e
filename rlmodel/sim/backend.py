"""The written interface of a cluster: what the environment, the policies and the evaluation read and call.

Two protocols, checked by mypy against every implementation (see the `_implements` lines at the end of
`rlmodel/sim/cluster.py` and `rlmodel/testbed/backend.py`):

* `ClusterState`, the read side: the per-node arrays an observation is built from
  (`rlmodel.envs.observation.ObservationBuilder`). A live cluster view implements only this.
* `ClusterBackend`, a cluster an episode runs on: the state plus the episode's counters and the actions
  (`reset`, `place`, `reject`, `advance_to`, `drain`, `close`). Implemented by the digital twin
  (`rlmodel.sim.cluster.ClusterSim`) and the testbeds (`rlmodel.testbed.backend.KubernetesCluster`, `MinikubeCluster`).

Units: time in s, CPU in cores, memory in GiB, power in W, energy in J. Per-node sequences have one
entry per node, in the order of `names`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from rlmodel.sim.podtrace import PodTrace

AWAKE, ASLEEP, WAKING = 0, 1, 2
"""Values of `ClusterState.state`."""


PerNode = Sequence[float] | np.ndarray
"""One value per node: a list (the twin) or an array (a live view)."""
PerNodeInt = Sequence[int] | np.ndarray


class ClusterState(Protocol):
    """The state of a cluster at `now_s`, as an observation needs it."""

    @property
    def num_nodes(self) -> int:
        """N, the number of nodes."""

    @property
    def names(self) -> Sequence[str]:
        """Node names, unique, in index order."""

    @property
    def cores(self) -> np.ndarray:
        """(N,) allocatable CPU, cores."""

    @property
    def memory_gib(self) -> np.ndarray:
        """(N,) allocatable memory, GiB."""

    @property
    def curves(self) -> np.ndarray:
        """(N, 11) power curves: W at 0, 10, ..., 100 % CPU utilization."""

    @property
    def idle_watts(self) -> np.ndarray:
        """(N,) W at 0 % CPU."""

    @property
    def peak_watts(self) -> np.ndarray:
        """(N,) W at 100 % CPU."""

    @property
    def wake_s(self) -> float:
        """Time a sleeping node needs to wake, s (0: nodes never sleep)."""

    @property
    def sleep_after_s(self) -> float:
        """Idle time after which an empty node sleeps, s (0: never)."""

    @property
    def now_s(self) -> float:
        """The cluster's clock, s."""

    @property
    def cpu_requested(self) -> PerNode:
        """Per node: sum of the CPU requests of the pods bound there, cores."""

    @property
    def mem_requested(self) -> PerNode:
        """Per node: sum of the memory requests of the pods bound there, GiB."""

    @property
    def demand(self) -> PerNode:
        """Per node: CPU in use (pods and background), cores; may exceed `cores`."""

    @property
    def watts(self) -> PerNode:
        """Per node: power drawn now (or measured over the last window), W."""

    @property
    def pods_on(self) -> PerNodeInt:
        """Per node: pods bound to it (running or waiting for it to wake)."""

    @property
    def state(self) -> PerNodeInt:
        """Per node: AWAKE, ASLEEP or WAKING."""

    @property
    def empty_since(self) -> PerNode:
        """Per node: when it last became empty, s (meaningful while `pods_on` is 0)."""

    @property
    def wake_done(self) -> PerNode:
        """Per node: when a waking node runs its pods, s (inf when not waking)."""

    def fits(self, cpu_request: float, memory_request: float) -> np.ndarray:
        """(N,) bool: nodes where requests (cores, GiB) fit next to what is bound (NodeResourcesFit)."""

    def power_w(self, demand_cores: np.ndarray) -> np.ndarray:
        """(N,) W each awake node draws at `demand_cores` (N,) of CPU demand, from its curve."""


class ClusterBackend(ClusterState, Protocol):
    """A cluster one episode runs on: `reset(trace)`, then `place`/`reject` each pod as time advances."""

    @property
    def energy_j(self) -> float:
        """Energy of the episode so far, J."""

    @property
    def overload_pod_s(self) -> float:
        """Slowdown of the episode so far, pod-s (the service-level signal)."""

    @property
    def imbalance_s(self) -> float:
        """Standard deviation over nodes of CPU utilization (0..1), integrated over the episode, utilization-s."""

    @property
    def wake_delay_pod_s(self) -> float:
        """Time pods waited for sleeping nodes to wake, pod-s."""

    @property
    def wakeups(self) -> int:
        """Nodes woken in the episode."""

    @property
    def unschedulable(self) -> int:
        """Pods rejected in the episode."""

    @property
    def pods_placed(self) -> int:
        """Pods bound in the episode."""

    @property
    def pods_done(self) -> int:
        """Pods finished in the episode."""

    @property
    def pods_active(self) -> int:
        """Pods bound and not finished."""

    @property
    def measured_s(self) -> float:
        """Seconds over which `energy_j` was counted (the twin: the whole episode; the testbed: the windows)."""

    @property
    def node_of(self) -> np.ndarray:
        """(pods,) node index of each pod of the trace (-1: not placed)."""

    @property
    def finish_s(self) -> np.ndarray:
        """(pods,) when each pod finished, s (NaN: not yet)."""

    @property
    def start_s(self) -> np.ndarray:
        """(pods,) when each pod started running, s (NaN: not yet); its run time is finish_s - start_s."""

    def reset(self, trace: PodTrace) -> None:
        """Start an episode of `trace` at t = 0 with every node awake and empty."""

    def place(self, pod: int, node: int) -> None:
        """Bind pod `pod` (index in the trace) to `node` now. The caller checks `fits` first."""

    def reject(self, pod: int) -> None:
        """Record pod `pod` as unschedulable."""

    def advance_to(self, t: float) -> None:
        """Move the clock to `t` (s), accounting energy and finishing pods on the way."""

    def drain(self) -> float:
        """Run until every bound pod has finished; the end time, s."""

    def label_run(self, run: str) -> None:
        """Label what the backend records from now on (the testbed's window rows) with `run`, e.g. a policy."""

    def close(self) -> None:
        """Release what the backend holds (files, connections). Idempotent."""


def fits_mask(cluster: ClusterState, cpu_request: float, memory_request: float) -> np.ndarray:
    """(N,) bool: nodes of `cluster` where the requests (cores, GiB) fit next to what is bound there,
    with kube-scheduler's NodeResourcesFit rule (requested + request <= allocatable)."""
    cpu_free = cluster.cores - np.asarray(cluster.cpu_requested)
    mem_free = cluster.memory_gib - np.asarray(cluster.mem_requested)
    return (cpu_free + 1e-9 >= cpu_request) & (mem_free + 1e-9 >= memory_request)
