"""Pod traces: the arrivals of one episode, drawn from a scenario's workload spec (uniform pods, workload
classes with a daily cycle, or a window of a recorded trace)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from rlmodel.sim.podtrace import OWNER_KINDS, QOS_CLASSES, PodTrace, as_stored_cpu_cores, as_stored_memory_gib
from rlmodel.sim.scenario import ArrivalSpec, WorkloadSpec

__all__ = ["PodTrace", "as_stored_cpu_cores", "as_stored_memory_gib", "sample_pods", "sample_trace"]


def sample_trace(spec: WorkloadSpec, rng: np.random.Generator) -> PodTrace:
    """Draw one episode's pods. Uniform pods: Poisson arrivals, uniform requests, usage and durations (the
    random stream of every earlier version). Classes: `_sample_classes`. A trace: a window from a random offset."""
    if spec.trace is not None:
        return _sample_window(spec, rng)
    if spec.classes:
        return _sample_classes(spec, rng)
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
    if spec.classes or spec.trace is not None:  # a fresh episode's pods, shifted to start one gap after start_s
        later = sample_trace(replace(spec, pods_per_episode=max(n, 1)), rng)
        shift = start_s + float(rng.exponential(spec.mean_interarrival_s))
        return replace(later, arrival_s=later.arrival_s[:n] + shift, cpu_request_cores=later.cpu_request_cores[:n],
                       memory_request_gib=later.memory_request_gib[:n], usage_cores=later.usage_cores[:n],
                       work_s=later.work_s[:n], owner_kind=None, qos=None, priority=None, replicas=None,
                       workload=None)
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


def _sample_window(spec: WorkloadSpec, rng: np.random.Generator) -> PodTrace:
    """`pods_per_episode` consecutive pods of the trace from an offset drawn uniformly; usage the trace leaves
    empty is drawn from `usage_of_request` times the request."""
    assert spec.trace is not None
    n = spec.pods_per_episode
    start = int(rng.integers(0, len(spec.trace) - n + 1))
    window = spec.trace.window(start, n, time_scale=spec.time_scale)
    usage = window.usage_cores
    missing = np.isnan(usage)
    if missing.any():
        drawn = window.cpu_request_cores * rng.uniform(*spec.usage_of_request, size=n)
        usage = np.where(missing, drawn, usage)
    return replace(window, usage_cores=usage)


def next_arrival(t: float, rng: np.random.Generator, mean_gap_s: float, arrivals: ArrivalSpec) -> float:
    """The next arrival after `t` (s) of a Poisson process whose rate follows the daily cycle (thinning)."""
    a = arrivals.amplitude
    if a == 0.0:
        return t + float(rng.exponential(mean_gap_s))
    top = (1.0 + a) / mean_gap_s  # the highest rate of the cycle
    while True:
        t += float(rng.exponential(1.0 / top))
        if rng.random() * (1.0 + a) <= 1.0 + a * math.sin(2.0 * math.pi * t / arrivals.period_s):
            return t


def _sample_classes(spec: WorkloadSpec, rng: np.random.Generator) -> PodTrace:
    """Batches arrive (Poisson, daily cycle); each picks a class by weight, one of the class's workloads
    uniformly, and `replicas` pods; every pod draws its requests, usage and run time from its class (run times
    around its workload's typical one when the class sets `duration_spread`). The last batch is cut to
    `pods_per_episode`. A BestEffort pod requests nothing; its class's `cpu_request_cores` is its size."""
    classes = spec.classes
    n = spec.pods_per_episode
    weights = np.array([c.weight for c in classes], dtype=np.float64)
    p = weights / weights.sum()
    typical = [c.duration_s.sample(rng, c.workloads) if c.duration_spread is not None else None for c in classes]
    first_id = np.cumsum([0] + [c.workloads for c in classes])
    names = tuple(f"{c.name}-{w}" for c in classes for w in range(c.workloads))
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("arrival", "cpu", "mem", "usage", "work", "owner", "qos",
                                                         "prio", "replicas", "workload")}
    count, t = 0, 0.0
    while count < n:
        if count:
            t = next_arrival(t, rng, spec.mean_interarrival_s, spec.arrivals)
        k = int(rng.choice(len(classes), p=p))
        c = classes[k]
        r = min(max(1, int(round(float(c.replicas.sample(rng, 1)[0])))), n - count)
        w = int(rng.integers(c.workloads))
        size = c.cpu_request_cores.sample(rng, r)
        mem = c.memory_request_gib.sample(rng, r)
        usage = size * c.usage_of_request.sample(rng, r)
        if c.duration_spread is None:
            work = c.duration_s.sample(rng, r)
        else:
            assert typical[k] is not None
            work = typical[k][w] * np.exp(c.duration_spread * rng.standard_normal(r))  # type: ignore[index]
        if c.qos == "BestEffort":
            size, mem = np.zeros(r), np.zeros(r)
        for key, value in (("arrival", np.full(r, t)), ("cpu", size), ("mem", mem), ("usage", usage),
                           ("work", work), ("owner", np.full(r, OWNER_KINDS.index(c.owner_kind))),
                           ("qos", np.full(r, QOS_CLASSES.index(c.qos))), ("prio", np.full(r, c.priority)),
                           ("replicas", np.full(r, r)), ("workload", np.full(r, first_id[k] + w))):
            cols[key].append(value)
        count += r

    def cat(key: str, dtype=np.float64) -> np.ndarray:
        return np.concatenate(cols[key]).astype(dtype)

    cpu = as_stored_cpu_cores(cat("cpu"))
    return PodTrace(arrival_s=cat("arrival"), cpu_request_cores=cpu,
                    memory_request_gib=as_stored_memory_gib(cat("mem")),
                    usage_cores=cat("usage"), work_s=cat("work"), owner_kind=cat("owner", np.int64),
                    qos=cat("qos", np.int64), priority=cat("prio", np.int64), replicas=cat("replicas", np.int64),
                    workload=cat("workload", np.int64), workload_names=names)
