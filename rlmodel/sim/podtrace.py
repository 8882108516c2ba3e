"""The pods of an episode (`PodTrace`) and the native trace CSV that stores them.

Native trace CSV (`rlsched trace import` writes it, `[workload] trace = "file.csv"` replays it), one row per pod
in arrival order, header required, columns in any order:

    arrival_s, cpu_request_cores, memory_request_gib, cpu_usage_cores, duration_s, owner_kind, qos, priority,
    workload

* `arrival_s`: s since the trace began, non-decreasing; `duration_s` > 0: the pod's run time unslowed, s;
* `cpu_request_cores`, `memory_request_gib` >= 0; `cpu_usage_cores` >= 0, or empty / column absent: drawn from
  the scenario's `usage_of_request` times the request;
* `owner_kind` in OWNER_KINDS (empty: Pod), `qos` in QOS_CLASSES (empty: derived: BestEffort when both requests
  are 0, else Burstable), `priority` a whole number (empty: 0), `workload` any text naming the pod's workload
  (empty: none; pods of one workload share the history features).

Pods of one workload that arrive at the same second form one batch (`replicas`).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from rlmodel.errors import ScenarioError

OWNER_KINDS: tuple[str, ...] = ("Pod", "Job", "CronJob", "Deployment", "StatefulSet", "Other")
"""A pod's controller as the scheduler sees it. Pod: none (a bare pod); Deployment also covers a ReplicaSet; Other:
any other controller (DaemonSet, ReplicationController, a custom one)."""
QOS_CLASSES: tuple[str, ...] = ("BestEffort", "Burstable", "Guaranteed")
"""Kubernetes QoS classes (status.qosClass)."""
MAX_PRIORITY = 2_000_001_000  # system-node-critical; a PriorityClass value is at most this (and >= its negation)
TRACE_COLUMNS: tuple[str, ...] = ("arrival_s", "cpu_request_cores", "memory_request_gib", "cpu_usage_cores",
                                  "duration_s", "owner_kind", "qos", "priority", "workload")
REQUIRED_COLUMNS: tuple[str, ...] = ("arrival_s", "cpu_request_cores", "memory_request_gib", "duration_s")
MAX_TRACE_BYTES = 1 << 30
MAX_TRACE_SECONDS = 1e9  # 31 years
MAX_TRACE_CORES = 1e5
MAX_TRACE_GIB = 1e7


def default_qos(cpu_request_cores: np.ndarray, memory_request_gib: np.ndarray) -> np.ndarray:
    """QoS codes when none is declared: BestEffort when a pod requests nothing, else Burstable (requests without
    limits, as the twin's pods are)."""
    nothing = (np.asarray(cpu_request_cores) <= 0) & (np.asarray(memory_request_gib) <= 0)
    return np.where(nothing, QOS_CLASSES.index("BestEffort"), QOS_CLASSES.index("Burstable")).astype(np.int64)


def batch_sizes(arrival_s: np.ndarray, workload: np.ndarray) -> np.ndarray:
    """Per pod: how many pods of its workload arrive at the same time (1 for pods of no workload, -1)."""
    n = len(arrival_s)
    out = np.ones(n, dtype=np.int64)
    i = 0
    while i < n:
        j = i + 1
        while j < n and arrival_s[j] == arrival_s[i]:
            j += 1
        if j - i > 1:
            ws, counts = np.unique(workload[i:j], return_counts=True)
            size = dict(zip(ws.tolist(), counts.tolist(), strict=True))
            for k in range(i, j):
                if workload[k] >= 0:
                    out[k] = size[int(workload[k])]
        i = j
    return out


@dataclass(frozen=True)
class PodTrace:
    """The pods of one episode, in arrival order (all arrays have one entry per pod).

    Attributes:
        arrival_s: arrival time, s (non-decreasing, first pod at 0).
        cpu_request_cores: CPU request, cores.
        memory_request_gib: memory request, GiB.
        usage_cores: actual CPU demand while running, cores.
        work_s: run time in s when the pod is not slowed.
        owner_kind: index into OWNER_KINDS (None: every pod a bare Pod).
        qos: index into QOS_CLASSES (None: derived from the requests, `default_qos`).
        priority: the pod's priority (None: 0).
        replicas: pods created together with it, itself included (None: 1).
        workload: id of the pod's workload (None or -1: none); pods of one workload share history features.
        workload_names: the workloads' names by id (for display).
    """

    arrival_s: np.ndarray
    cpu_request_cores: np.ndarray
    memory_request_gib: np.ndarray
    usage_cores: np.ndarray
    work_s: np.ndarray
    owner_kind: np.ndarray | None = None
    qos: np.ndarray | None = None
    priority: np.ndarray | None = None
    replicas: np.ndarray | None = None
    workload: np.ndarray | None = None
    workload_names: tuple[str, ...] = field(default=(), compare=False)

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])

    def with_signals(self) -> PodTrace:
        """The same trace with every optional array filled (defaults for those absent)."""
        n = len(self)
        return replace(
            self,
            owner_kind=self.owner_kind if self.owner_kind is not None else np.zeros(n, dtype=np.int64),
            qos=self.qos if self.qos is not None else default_qos(self.cpu_request_cores, self.memory_request_gib),
            priority=self.priority if self.priority is not None else np.zeros(n, dtype=np.int64),
            replicas=self.replicas if self.replicas is not None else np.ones(n, dtype=np.int64),
            workload=self.workload if self.workload is not None else np.full(n, -1, dtype=np.int64))

    def window(self, start: int, n: int, *, time_scale: float = 1.0) -> PodTrace:
        """Pods start..start+n-1, arrivals re-based to 0 and every time (arrival, run time) times `time_scale`."""
        full = self.with_signals()
        sl = slice(start, start + n)
        arrival = (full.arrival_s[sl] - full.arrival_s[start]) * time_scale
        assert full.workload is not None
        return replace(full, arrival_s=arrival, cpu_request_cores=full.cpu_request_cores[sl],
                       memory_request_gib=full.memory_request_gib[sl], usage_cores=full.usage_cores[sl],
                       work_s=full.work_s[sl] * time_scale, owner_kind=_cut(full.owner_kind, sl),
                       qos=_cut(full.qos, sl),
                       priority=_cut(full.priority, sl), replicas=batch_sizes(arrival, full.workload[sl]),
                       workload=full.workload[sl])


def _cut(a: np.ndarray | None, sl: slice) -> np.ndarray | None:
    return None if a is None else a[sl]


def as_stored_cpu_cores(cores):
    """CPU request as Kubernetes stores it: whole millicores (scalar or array)."""
    return np.round(np.asarray(cores) * 1000.0) / 1000.0


def as_stored_memory_gib(gib):
    """Memory request as Kubernetes stores it: whole MiB (scalar or array)."""
    return np.round(np.asarray(gib) * 1024.0) / 1024.0


# ------------------------------------------------------------------------------------------ the CSV
@dataclass(frozen=True)
class TraceFile:
    """A native trace CSV as read: the pods (usage NaN where the file leaves it to the scenario)."""

    trace: PodTrace
    source: str


def csv_number(text: str, where: str, *, low: float, high: float, positive: bool = False) -> float:
    """A CSV cell as a finite number in [low, high] (> 0 with `positive`); ScenarioError naming `where`."""
    try:
        value = float(text)
    except ValueError:
        raise ScenarioError(f"{where}: expected a number, got {text[:40]!r}") from None
    if not math.isfinite(value):
        raise ScenarioError(f"{where}: expected a finite number, got {text[:40]!r}")
    if positive and value <= 0:
        raise ScenarioError(f"{where}: must be > 0, got {value:g}")
    if not low <= value <= high:
        raise ScenarioError(f"{where}: must be between {low:g} and {high:g}, got {value:g}")
    return value


def parse_trace_rows(rows: Iterable[list[str]], source: str) -> PodTrace:
    """A PodTrace from CSV rows (the first is the header). Every error names `source`, the line and the column."""
    it = iter(rows)
    header = next(it, None)
    if header is None:
        raise ScenarioError(f"{source}: empty file (expected a header: {', '.join(TRACE_COLUMNS)})")
    header = [h.strip() for h in header]
    unknown = [h for h in header if h not in TRACE_COLUMNS]
    if unknown:
        raise ScenarioError(f"{source}: line 1: unknown column {unknown[0]!r} (expected: {', '.join(TRACE_COLUMNS)})")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ScenarioError(f"{source}: line 1: missing column {missing[0]!r}")
    if len(set(header)) != len(header):
        raise ScenarioError(f"{source}: line 1: a column appears twice")
    col = {name: i for i, name in enumerate(header)}
    arrival, cpu, mem, usage, work, owner, qos, prio, wl = [], [], [], [], [], [], [], [], []
    names: dict[str, int] = {}
    last = -math.inf
    for line, row in enumerate(it, start=2):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank line
        if len(row) != len(header):
            raise ScenarioError(f"{source}: line {line}: {len(row)} fields, the header has {len(header)}")

        def cell(name: str, row: list[str] = row) -> str:
            return row[col[name]].strip() if name in col else ""

        def at(name: str, line: int = line) -> str:
            return f"{source}: line {line}, column {name}"

        a = csv_number(cell("arrival_s"), at("arrival_s"), low=0.0, high=MAX_TRACE_SECONDS)
        if a < last:
            raise ScenarioError(f"{at('arrival_s')}: {a:g} is before the previous row's {last:g} (rows must be in "
                                "arrival order)")
        last = a
        c = csv_number(cell("cpu_request_cores"), at("cpu_request_cores"), low=0.0, high=MAX_TRACE_CORES)
        m = csv_number(cell("memory_request_gib"), at("memory_request_gib"), low=0.0, high=MAX_TRACE_GIB)
        u_text = cell("cpu_usage_cores")
        u = math.nan if not u_text else csv_number(u_text, at("cpu_usage_cores"), low=0.0, high=MAX_TRACE_CORES)
        d = csv_number(cell("duration_s"), at("duration_s"), low=0.0, high=MAX_TRACE_SECONDS, positive=True)
        kind = cell("owner_kind") or "Pod"
        if kind not in OWNER_KINDS:
            raise ScenarioError(f"{at('owner_kind')}: {kind[:40]!r} is not one of {', '.join(OWNER_KINDS)}")
        q_text = cell("qos")
        if q_text and q_text not in QOS_CLASSES:
            raise ScenarioError(f"{at('qos')}: {q_text[:40]!r} is not one of {', '.join(QOS_CLASSES)}")
        p_text = cell("priority")
        try:
            p = int(p_text) if p_text else 0
        except ValueError:
            raise ScenarioError(f"{at('priority')}: expected a whole number, got {p_text[:40]!r}") from None
        if abs(p) > MAX_PRIORITY:
            raise ScenarioError(f"{at('priority')}: must be between {-MAX_PRIORITY} and {MAX_PRIORITY}, got {p}")
        w_text = cell("workload")
        arrival.append(a)
        cpu.append(c)
        mem.append(m)
        usage.append(u)
        work.append(d)
        owner.append(OWNER_KINDS.index(kind))
        qos.append(QOS_CLASSES.index(q_text) if q_text else -1)
        prio.append(p)
        wl.append(names.setdefault(w_text, len(names)) if w_text else -1)
    if not arrival:
        raise ScenarioError(f"{source}: no pods (only a header)")
    cpu_a, mem_a = np.asarray(cpu), np.asarray(mem)
    qos_a = np.asarray(qos, dtype=np.int64)
    qos_a = np.where(qos_a < 0, default_qos(cpu_a, mem_a), qos_a)
    arrival_a, wl_a = np.asarray(arrival), np.asarray(wl, dtype=np.int64)
    return PodTrace(arrival_s=arrival_a, cpu_request_cores=as_stored_cpu_cores(cpu_a),
                    memory_request_gib=as_stored_memory_gib(mem_a), usage_cores=np.asarray(usage),
                    work_s=np.asarray(work), owner_kind=np.asarray(owner, dtype=np.int64), qos=qos_a,
                    priority=np.asarray(prio, dtype=np.int64), replicas=batch_sizes(arrival_a, wl_a), workload=wl_a,
                    workload_names=tuple(names))


def csv_lines(path: Path, max_bytes: int = MAX_TRACE_BYTES) -> Iterator[list[str]]:
    """The rows of a CSV file, read as they are consumed; ScenarioError naming the file when it is missing,
    too large, or cannot be read as UTF-8 CSV."""
    if not path.exists():
        raise ScenarioError(f"{path}: no such file")
    if not path.is_file():
        raise ScenarioError(f"{path}: not a regular file")
    if path.stat().st_size > max_bytes:
        raise ScenarioError(f"{path}: larger than {max_bytes} bytes")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            yield from csv.reader(f)
    except UnicodeDecodeError:
        raise ScenarioError(f"{path}: not UTF-8 text") from None
    except csv.Error as exc:
        raise ScenarioError(f"{path}: not a CSV file ({exc})") from None
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc}") from None


def read_trace(path: str | Path) -> PodTrace:
    """Read a native trace CSV. Raises ScenarioError naming the file, line and column."""
    return parse_trace_rows(csv_lines(Path(path)), str(path))


def trace_rows(trace: PodTrace) -> Iterable[list[str]]:
    """The native CSV rows of a trace, header first."""
    full = trace.with_signals()
    assert full.owner_kind is not None and full.qos is not None and full.priority is not None
    assert full.workload is not None
    yield list(TRACE_COLUMNS)
    for i in range(len(full)):
        w = int(full.workload[i])
        usage = float(full.usage_cores[i])
        yield [repr(float(full.arrival_s[i])),
               repr(float(full.cpu_request_cores[i])), repr(float(full.memory_request_gib[i])),
               "" if math.isnan(usage) else repr(usage), repr(float(full.work_s[i])),
               OWNER_KINDS[int(full.owner_kind[i])], QOS_CLASSES[int(full.qos[i])], str(int(full.priority[i])),
               (full.workload_names[w] if w < len(full.workload_names) else f"w{w}") if w >= 0 else ""]


def write_trace(trace: PodTrace, path: str | Path) -> None:
    """Write a native trace CSV atomically (temp file + rename, the umask's permissions)."""
    from rlmodel.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        for row in trace_rows(trace):
            w.writerow(row)
        f.flush()
        os.fsync(f.fileno())
