"""Import Alibaba's cluster-trace-gpu-v2023 ("OpenB") into a native trace CSV and a scenario.

The pod list (`openb_pod_list_*.csv`) has the columns `name, cpu_milli, memory_mib, num_gpu, gpu_milli, gpu_spec,
qos, pod_phase, creation_time, deletion_time, scheduled_time` (times in s; `qos` in LS, BE, Burstable,
Guaranteed; a pod never scheduled has an empty `scheduled_time`). The node list (`openb_node_list_*.csv`) has
`sn, cpu_milli, memory_mib, gpu, model`. Extra columns are ignored. The files are not shipped with rlsched
(their licence is not stated); download them from https://github.com/alibaba/clusterdata.

Conversion rules:
* a pod never scheduled, or without a deletion time (still running when the trace ends: its run time is not
  known), is skipped and counted;
* a GPU pod (`num_gpu` > 0 or `gpu_milli` > 0) is skipped and counted (the twin has no GPUs), unless
  `cpu_only`: then it is kept with its CPU and memory requests alone;
* arrival = creation_time minus the first kept pod's; run time = deletion_time - scheduled_time (a pod with
  a run time of 0 or less is skipped and counted);
* requests: cpu_milli / 1000 cores, memory_mib / 1024 GiB; usage is left empty (the scenario's
  `usage_of_request` draws it);
* QoS, priority and owner: LS (latency-sensitive) -> Guaranteed, priority 1000, Deployment; Guaranteed ->
  Guaranteed, 1000, Deployment; Burstable -> Burstable, 500, Deployment; BE (best-effort) -> BestEffort, 0,
  Job (the trace's requests are kept as the scheduler saw them);
* workload: the trace has no owner column, so pods of the same QoS and the same CPU, memory and GPU requests
  are taken as one workload (`LS/8000m/32768Mi`).

Node groups: nodes with the same CPU and memory form one group. Its power curve is the built-in SPECpower
type with the nearest core count (by ratio; ties: the lower peak watts per core), scaled by node cores / type cores
(a node twice as large draws as two of those servers); ties go to the type listed first in CURVE_TYPES.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rlmodel.errors import ScenarioError
from rlmodel.sim.podtrace import OWNER_KINDS, QOS_CLASSES, PodTrace, batch_sizes, csv_lines, csv_number, write_trace
from rlmodel.sim.power import BUILTIN_NODE_TYPES, NodeType

POD_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "gpu_spec", "qos", "pod_phase",
               "creation_time", "deletion_time", "scheduled_time")
NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
QOS_MAP: dict[str, tuple[str, int, str]] = {  # OpenB qos -> (QoS class, priority, owner kind)
    "LS": ("Guaranteed", 1000, "Deployment"),
    "Guaranteed": ("Guaranteed", 1000, "Deployment"),
    "Burstable": ("Burstable", 500, "Deployment"),
    "BE": ("BestEffort", 0, "Job"),
}
CURVE_TYPES = ("ml110-g4", "ml110-g5", "x3550", "x3250-x3470", "x3250-x3480", "x3550-x5675", "r620")
"""The built-in SPECpower types a node group's curve is chosen from."""
MAX_FILE_BYTES = 1 << 30


@dataclass
class ImportReport:
    """What an import kept and skipped (counts by reason)."""

    pods_read: int = 0
    pods_kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    node_groups: list[tuple[NodeType, int]] = field(default_factory=list)


def _rows(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, row by column) of a CSV with a header holding `required`; errors name the file and line."""
    reader = csv_lines(path, MAX_FILE_BYTES)
    header = [h.strip() for h in next(reader, [])]
    missing = [c for c in required if c not in header]
    if missing:
        raise ScenarioError(f"{path}: line 1: missing column {missing[0]!r} (expected: {', '.join(required)})")
    col = {name: header.index(name) for name in required}
    for line, row in enumerate(reader, start=2):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != len(header):
            raise ScenarioError(f"{path}: line {line}: {len(row)} fields, the header has {len(header)}")
        yield line, {name: row[i].strip() for name, i in col.items()}


def _num(row: dict[str, str], name: str, where: str, *, empty: float | None = None, high: float = 1e12) -> float:
    """Column `name` of an OpenB row, >= 0 and at most `high`; `empty` when the cell is empty (if given)."""
    if not row[name] and empty is not None:
        return empty
    return csv_number(row[name], f"{where}, column {name}", low=0.0, high=high)


def read_openb_pods(path: str | Path, *, cpu_only: bool = False, report: ImportReport | None = None) -> PodTrace:
    """The OpenB pod list as a PodTrace in arrival order (see the module docstring for the rules)."""
    path = Path(path)
    report = report if report is not None else ImportReport()
    pods: list[tuple[float, float, float, float, int, int, int, str]] = []
    for line, row in _rows(path, POD_COLUMNS):
        where = f"{path}: line {line}"
        report.pods_read += 1
        cpu = _num(row, "cpu_milli", where, high=1e8) / 1000.0
        mem = _num(row, "memory_mib", where, high=1e10) / 1024.0
        gpus = _num(row, "num_gpu", where, empty=0.0, high=1e6)
        gpu_milli = _num(row, "gpu_milli", where, empty=0.0, high=1e9)
        qos = row["qos"]
        if qos not in QOS_MAP:
            raise ScenarioError(f"{where}, column qos: {qos[:40]!r} is not one of {', '.join(QOS_MAP)}")
        created = _num(row, "creation_time", where)
        scheduled = _num(row, "scheduled_time", where, empty=math.nan)
        deleted = _num(row, "deletion_time", where, empty=math.nan)
        if math.isnan(scheduled):
            report.skipped["never scheduled"] += 1
            continue
        if math.isnan(deleted):
            report.skipped["no deletion time (run time unknown)"] += 1
            continue
        if scheduled < created:
            raise ScenarioError(f"{where}, column scheduled_time: {scheduled:g} is before creation_time {created:g}")
        if (gpus > 0 or gpu_milli > 0) and not cpu_only:
            report.skipped["GPU pods (--cpu-only keeps them without their GPUs)"] += 1
            continue
        run = deleted - scheduled
        if run <= 0:
            report.skipped["run time 0 or less"] += 1
            continue
        qos_class, priority, owner = QOS_MAP[qos]
        workload = f"{qos}/{row['cpu_milli']}m/{row['memory_mib']}Mi" + (f"/{row['num_gpu']}gpu" if gpus else "")
        pods.append((created, cpu, mem, run, QOS_CLASSES.index(qos_class), priority, OWNER_KINDS.index(owner),
                     workload))
    if not pods:
        raise ScenarioError(f"{path}: no pod to import (read {report.pods_read}; skipped: "
                            f"{', '.join(f'{k} {v}' for k, v in report.skipped.items()) or 'none'})")
    pods.sort(key=lambda p: p[0])  # stable: rows with one creation time keep their order
    report.pods_kept = len(pods)
    names: dict[str, int] = {}
    workload_ids = np.array([names.setdefault(p[7], len(names)) for p in pods], dtype=np.int64)
    arrival = np.array([p[0] for p in pods]) - pods[0][0]
    return PodTrace(arrival_s=arrival, cpu_request_cores=np.array([p[1] for p in pods]),
                    memory_request_gib=np.array([p[2] for p in pods]), usage_cores=np.full(len(pods), np.nan),
                    work_s=np.array([p[3] for p in pods]), owner_kind=np.array([p[6] for p in pods], dtype=np.int64),
                    qos=np.array([p[4] for p in pods], dtype=np.int64),
                    priority=np.array([p[5] for p in pods], dtype=np.int64),
                    replicas=batch_sizes(arrival, workload_ids), workload=workload_ids,
                    workload_names=tuple(names))


def curve_for(cores: float, memory_gib: float) -> NodeType:
    """The node type of a node with `cores` and `memory_gib`: the nearest built-in curve by core ratio, scaled."""
    def distance(t: NodeType) -> tuple[float, float]:
        return abs(math.log(cores / t.cpu_cores)), t.peak_watts / t.cpu_cores

    base = min((BUILTIN_NODE_TYPES[n] for n in CURVE_TYPES), key=distance)
    k = cores / base.cpu_cores
    name = f"openb-{cores:g}c-{memory_gib:g}g"
    return NodeType(name=name, cpu_cores=cores, memory_gib=memory_gib, watts=tuple(round(w * k, 3) for w in base.watts),
                    description=f"OpenB node group: {cores:g} cores, {memory_gib:g} GiB; curve {base.name} x {k:.4g}",
                    source=f"{base.name} ({base.source}) scaled by cores")


def read_openb_nodes(path: str | Path) -> list[tuple[NodeType, int]]:
    """Node groups (type, count) of the OpenB node list, largest group first."""
    path = Path(path)
    counts: Counter = Counter()
    for line, row in _rows(path, NODE_COLUMNS):
        where = f"{path}: line {line}"
        cpu = _num(row, "cpu_milli", where, high=1e8)
        mem = _num(row, "memory_mib", where, high=1e10)
        if cpu <= 0 or mem <= 0:
            raise ScenarioError(f"{where}, column {'cpu_milli' if cpu <= 0 else 'memory_mib'}: a node needs "
                                "CPU and memory > 0")
        counts[(cpu / 1000.0, mem / 1024.0)] += 1
    if not counts:
        raise ScenarioError(f"{path}: no nodes")
    return [(curve_for(cores, gib), n) for (cores, gib), n in counts.most_common()]


def scenario_text(groups: Iterable[tuple[NodeType, int]], trace_path: str, pods_per_episode: int,
                  source: str) -> str:
    """A scenario TOML replaying `trace_path` on the node groups."""
    q = json.dumps  # a TOML basic string (the same escapes)
    lines = [f"description = {q(f'Imported from {source} (rlsched trace import)')}", ""]
    for t, count in groups:
        lines += ["[[node_types]]", f"name = {q(t.name)}", f"count = {count}", f"cpu_cores = {t.cpu_cores!r}",
                  f"memory_gib = {t.memory_gib!r}", f"watts = [{', '.join(repr(w) for w in t.watts)}]",
                  f"description = {q(t.description)}", ""]
    lines += ["[workload]", f"trace = {q(trace_path)}", f"pods_per_episode = {pods_per_episode}",
              "time_scale = 1.0", ""]
    return "\n".join(lines)


def import_openb(pod_list: str | Path, out: str | Path, *, node_list: str | Path | None = None,
                 scenario_out: str | Path | None = None, cpu_only: bool = False,
                 pods_per_episode: int = 200) -> ImportReport:
    """Convert the pod list to a native trace CSV at `out` and, with a node list, write a scenario replaying
    it (`scenario_out`, default: `out` with the suffix .toml). Files are written atomically."""
    from rlmodel.atomic import atomic_path

    report = ImportReport()
    trace = read_openb_pods(pod_list, cpu_only=cpu_only, report=report)
    groups = read_openb_nodes(node_list) if node_list is not None else None
    write_trace(trace, out)
    if groups is not None:
        report.node_groups = groups
        target = Path(scenario_out) if scenario_out is not None else Path(out).with_suffix(".toml")
        try:
            rel = Path(out).resolve().relative_to(target.resolve().parent)
        except ValueError:
            rel = Path(out).resolve()
        text = scenario_text(groups, rel.as_posix(), min(pods_per_episode, len(trace)), Path(pod_list).name)
        with atomic_path(target) as tmp:
            Path(tmp).write_text(text, encoding="utf-8")
    return report
