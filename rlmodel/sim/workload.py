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


def as_stored_cpu_cores(cores):
    """CPU request as Kubernetes stores it: whole millicores (scalar or array)."""
    return np.round(np.asarray(cores) * 1000.0) / 1000.0


def as_stored_memory_gib(gib):
    """Memory request as Kubernetes stores it: whole MiB (scalar or array)."""
    return np.round(np.asarray(gib) * 1024.0) / 1024.0


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
        cpu_request_cores=as_stored_cpu_cores(cpu),
        memory_request_gib=as_stored_memory_gib(mem),
        usage_cores=usage,
        work_s=work,
    )


def sample_pod(spec: WorkloadSpec, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """One pod from the same distributions as `sample_trace`, drawn alone (look-ahead planners sample
    the pods still to come one at a time): (cpu_request_cores, memory_request_gib, usage_cores, work_s)."""
    cpu = rng.uniform(*spec.cpu_request_cores)
    mem = rng.uniform(*spec.memory_request_gib)
    usage = cpu * rng.uniform(*spec.usage_of_request)
    work = rng.uniform(*spec.duration_s)
    return float(as_stored_cpu_cores(cpu)), float(as_stored_memory_gib(mem)), usage, work
