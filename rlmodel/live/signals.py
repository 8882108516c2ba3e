"""What a live scheduler knows of a pod besides its requests, read from Kubernetes objects: the same
`PodSignals` the twin's observation carries (owner kind, QoS class, priority, batch size, its workload's
run-time history).

* owner: the pod's controller reference. A ReplicaSet counts as its Deployment (the name without the
  `pod-template-hash` suffix); a Job named `<name>-<8+ digits>` (the CronJob controller's naming: the scheduled
  time in minutes) counts as CronJob `<name>`; a StatefulSet is itself; any other controller is Other; no
  controller: Pod (no workload).
* workload: (namespace, owner kind, owner name). Its history: pods of it that finished (phase Succeeded or
  Failed, or deleted after they started), with run time = the last container's `finishedAt` (or the deletion
  time) minus the pod's `startTime`.
* QoS: `status.qosClass`, else derived as Kubernetes does (no requests or limits anywhere: BestEffort; every
  container with CPU and memory limits equal to its requests: Guaranteed; else Burstable).
* priority: `spec.priority` (0 when absent); replicas: pods of the same workload created in the same second.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from rlmodel.envs.observation import PRIOR_RUN_S, PodSignals
from rlmodel.live.podspec import Obj
from rlmodel.sim.podtrace import OWNER_KINDS, QOS_CLASSES

_CRONJOB_JOB = re.compile(r"^(.+)-(\d{8,})$")
WorkloadKey = tuple[str, str, str]


def timestamp_s(text: object) -> float | None:
    """Unix time of an RFC 3339 timestamp (`2026-01-02T03:04:05Z`, fractions allowed), None when absent or bad."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def owner_of(pod: Obj) -> tuple[int, WorkloadKey | None]:
    """(index into OWNER_KINDS, workload key or None) of a pod."""
    meta = pod.get("metadata") or {}
    refs = [r for r in (meta.get("ownerReferences") or []) if isinstance(r, Mapping)]
    ref = next((r for r in refs if r.get("controller")), refs[0] if refs else None)
    if ref is None:
        return OWNER_KINDS.index("Pod"), None
    kind, name = str(ref.get("kind", "")), str(ref.get("name", ""))
    namespace = str(meta.get("namespace", ""))
    if kind == "ReplicaSet":
        labels = meta.get("labels") or {}
        suffix = f"-{labels.get('pod-template-hash', '')}"
        base = name[: -len(suffix)] if len(suffix) > 1 and name.endswith(suffix) else name
        return OWNER_KINDS.index("Deployment"), (namespace, "Deployment", base)
    if kind == "Job":
        cron = _CRONJOB_JOB.match(name)
        if cron is not None:
            return OWNER_KINDS.index("CronJob"), (namespace, "CronJob", cron.group(1))
        return OWNER_KINDS.index("Job"), (namespace, "Job", name)
    if kind in ("StatefulSet", "Deployment", "CronJob"):
        return OWNER_KINDS.index(kind), (namespace, kind, name)
    return OWNER_KINDS.index("Other"), (namespace, kind, name)


def qos_of(pod: Obj) -> int:
    """Index into QOS_CLASSES of the pod's QoS class."""
    declared = (pod.get("status") or {}).get("qosClass")
    if declared in QOS_CLASSES:
        return QOS_CLASSES.index(declared)
    spec = pod.get("spec") or {}
    containers = [c for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])
                  if isinstance(c, Mapping)]
    any_set, guaranteed = False, bool(containers)
    for c in containers:
        res = c.get("resources") or {}
        requests, limits = res.get("requests") or {}, res.get("limits") or {}
        if any(k in requests or k in limits for k in ("cpu", "memory")):
            any_set = True
        for k in ("cpu", "memory"):
            if k not in limits or str(requests.get(k, limits[k])) != str(limits[k]):
                guaranteed = False
    if not any_set:
        return QOS_CLASSES.index("BestEffort")
    return QOS_CLASSES.index("Guaranteed" if guaranteed else "Burstable")


def priority_of(pod: Obj) -> int:
    value = (pod.get("spec") or {}).get("priority")
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else 0


def run_time_s(pod: Obj, ended_s: float | None = None) -> float | None:
    """A finished pod's run time, s: its last container's finishedAt (else `ended_s`) minus its startTime."""
    status = pod.get("status") or {}
    start = timestamp_s(status.get("startTime"))
    if start is None:
        return None
    ends = [timestamp_s(((cs.get("state") or {}).get("terminated") or {}).get("finishedAt"))
            for cs in status.get("containerStatuses") or [] if isinstance(cs, Mapping)]
    known = [e for e in ends if e is not None]
    end = max(known) if known else ended_s
    return None if end is None or end < start else end - start


@dataclass
class History:
    """Run times of finished pods by workload, and of every finished pod (the prior)."""

    by_workload: dict[WorkloadKey, tuple[int, float]] = field(default_factory=dict)  # key -> (count, total s)
    count: int = 0
    total_s: float = 0.0
    recorded: set[tuple[str, str]] = field(default_factory=set)  # pods already counted

    def record(self, key: tuple[str, str], workload: WorkloadKey | None, run_s: float) -> None:
        if key in self.recorded or not math.isfinite(run_s):
            return
        self.recorded.add(key)
        self.count += 1
        self.total_s += run_s
        if workload is not None:
            n, total = self.by_workload.get(workload, (0, 0.0))
            self.by_workload[workload] = (n + 1, total + run_s)

    def of(self, workload: WorkloadKey | None) -> tuple[int, float]:
        """(completed pods, mean run time s) of a workload; with none, (0, the prior)."""
        n, total = self.by_workload.get(workload, (0, 0.0)) if workload is not None else (0, 0.0)
        if n:
            return n, total / n
        return 0, self.total_s / self.count if self.count else PRIOR_RUN_S


def pod_signals(pod: Obj, history: History, batch: int = 1) -> PodSignals:
    kind, workload = owner_of(pod)
    done, mean = history.of(workload)
    return PodSignals(owner_kind=kind, qos=qos_of(pod), priority=priority_of(pod), replicas=max(batch, 1),
                      workload_completed=done, workload_mean_run_s=mean)
