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


def sample_pods(spec: WorkloadSpec, rng: np.random.Generator, n: int, *, start_s: float) -> PodTrace:
    """`n` pods still to come after `start_s`, from the same distributions as `sample_trace` (Poisson
    arrivals, the first one gap after `start_s`: arrivals are memoryless). For look-ahead planners that
    sample possible futures. Each pod's request, memory, usage factor and run time are drawn together
    (sample_trace draws each quantity for the whole episode in turn), so the random stream differs."""
    arrival = start_s + np.cumsum(rng.exponential(spec.mean_interarrival_s, size=n))
    u = rng.random((n, 4))  # per pod: cpu request, memory request, usage factor, run time

    def scaled(col: int, bounds: tuple[float, float]) -> np.ndarray:
        return bounds[0] + (bounds[1] - bounds[0]) * u[:, col]  # = rng.uniform(*bounds), draw by draw

    cpu = scaled(0, spec.cpu_request_cores)
    return PodTrace(
        arrival_s=arrival,
        cpu_request_cores=as_stored_cpu_cores(cpu),
        memory_request_gib=as_stored_memory_gib(scaled(1, spec.memory_request_gib)),
        usage_cores=cpu * scaled(2, spec.usage_of_request),
        work_s=scaled(3, spec.duration_s),
    )
