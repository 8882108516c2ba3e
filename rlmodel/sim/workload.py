"""Pod traces: the arrivals of one episode, drawn from a scenario's workload spec."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlmodel.sim.scenario import WorkloadSpec


@dataclass(frozen=True)
class PodTrace:
    """The pods of one episode, in arrival order (all arrays have one entry per pod).

    Attributes:
        arrival_s: arrival time, s (non-decreasing, first pod at 0).
        cpu_request_cores: CPU request, cores.
        memory_request_gib: memory request, GiB.
        usage_cores: actual CPU demand while running, cores.
        work_s: run time in s when the pod is not slowed.
    """

    arrival_s: np.ndarray
    cpu_request_cores: np.ndarray
    memory_request_gib: np.ndarray
    usage_cores: np.ndarray
    work_s: np.ndarray

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])


def sample_trace(spec: WorkloadSpec, rng: np.random.Generator) -> PodTrace:
    """Draw one episode's pods: Poisson arrivals, uniform requests, usage and durations."""
    n = spec.pods_per_episode
    gaps = rng.exponential(spec.mean_interarrival_s, size=n)
    gaps[0] = 0.0  # the first pod arrives at t=0: no idle lead-in
    cpu = rng.uniform(*spec.cpu_request_cores, size=n)
    mem = rng.uniform(*spec.memory_request_gib, size=n)
    usage = cpu * rng.uniform(*spec.usage_of_request, size=n)
    work = rng.uniform(*spec.duration_s, size=n)
    return PodTrace(
        arrival_s=np.cumsum(gaps),
        # round requests to what Kubernetes stores: millicores and MiB
        cpu_request_cores=np.round(cpu * 1000.0) / 1000.0,
        memory_request_gib=np.round(mem * 1024.0) / 1024.0,
        usage_cores=usage,
        work_s=work,
    )
