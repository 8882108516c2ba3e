"""`rlsched scheduler run`: a secondary scheduler (kube-scheduler's "multiple schedulers" pattern) that places
pods with `spec.schedulerName: <name>` using a policy (the trained DQN or a baseline).

Machinery: an informer as client-go's reflector (`watch_events`, on the official client's list calls and its
watch-stream line reader): list, then watch from the list's resourceVersion with bookmarks, following the
resourceVersion of every event; when the API server ends a watch (its `timeoutSeconds`) or the connection drops,
watch again from the last resourceVersion (after a back-off when it dropped), so events missed meanwhile are
replayed and nothing is re-listed; on 410 Gone (that resourceVersion is too old) list again. An API server that
gives no resourceVersion (kmock) is listed again instead. The client's `watch.Watch` did not fit: with raw dicts
(`deserialize=False`, as a cache of thousands of objects needs) it neither follows the resourceVersion nor reads
an ERROR event. A watch fits a scheduler better than kopf, whose handlers are per-object reactions with their own
retry semantics, while a scheduler needs one ordered queue and one cache.

The cycle, as kube-scheduler's: queue (priority, then creation time) -> filter (`rlmodel.live.filter`) ->
score (the policy on the observation `ClusterView` builds, the same as in the twin) -> assume (the pod
counts on its node at once) -> bind (Binding subresource) -> forget the assumption if the bind fails. A
409 means another actor bound it (done); a 404 that the pod is gone (dropped). Unschedulable pods wait in
a back-off (1 s doubling to 60 s) and are retried early when a node is added or a pod is deleted. Events
`Scheduled` (Normal) and `FailedScheduling` (Warning) carry `source.component` = the scheduler's name; the
pod gets the annotation `rlsched.io/decision` (policy, model, top scores). If the policy raises, the
fallback policy places the pod (Warning event `ScoringFailed`, metric `rlsched_scheduler_fallbacks_total`).

Threads, as kube-scheduler's goroutines: two informers; the scheduling loop (filter, score, assume); the
binder (`bind_concurrency` threads, one by default), so the next decision overlaps the binds in flight (the
binding cycle is asynchronous upstream too, with a goroutine per bind); and the event recorder. A binder thread
makes the Binding call itself, or hands it to a process of its own (`rlmodel.live.binder`, `scheduler.binder =
"process"`), so the call's CPU does not compete with the decisions for the interpreter lock. The decision
annotation rides on the Binding itself (the API server copies a Binding's `metadata.annotations` onto the pod,
in the same write as `spec.nodeName`), so a placement costs one write. Events are best effort and yield to
binds: while pods wait to be bound, an event waits too, at most `event_max_delay_s`.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from rlmodel.envs.observation import ObservationBuilder
from rlmodel.errors import RlschedError
from rlmodel.live.binder import ThreadBinder
from rlmodel.live.filter import PodFilter, describe, filter_nodes, unsupported
from rlmodel.live.podspec import Obj, ObjectError, binding, pod_requests
from rlmodel.live.view import ClusterView
from rlmodel.policies.base import Policy, predict_with_scores

log = logging.getLogger("rlsched.scheduler")
DECISION_ANNOTATION = "rlsched.io/decision"


@dataclass
class SchedulerConfig:
    """Settings of the live scheduler (times in s)."""

    scheduler_name: str = "rlsched"
    """pods with this spec.schedulerName are ours"""
    namespaces: tuple[str, ...] = ()
    """namespaces whose pods we schedule (empty: all)"""
    backoff_initial_s: float = 1.0
    """first wait of an unschedulable pod before it is tried again"""
    backoff_max_s: float = 60.0
    """longest wait (the back-off doubles up to it)"""
    request_timeout_s: float = 10.0
    """timeout of every API call"""
    watch_timeout_s: float = 30.0
    """the API server ends each watch after this long (`timeoutSeconds`), and it is made again from the last
    resourceVersion; a watch that brings nothing for this long plus 10 s counts as a dropped connection"""
    fallback_policy: str = "efficient-first"
    """the built-in policy that places a pod when the policy raises"""
    event_max_delay_s: float = 5.0
    """longest an event waits for the binds queued before it (events yield to binds)"""
    binds_ahead: int = 8
    """decisions (assumed pods) that may wait for the binder"""
    bind_concurrency: int = 1
    """Binding calls in flight at once: the binder threads, unless the binder says how many callers it takes (its
    `slots`: a pool of process binders, one child per call in flight, each with its pipeline depth)"""
    usage_every_s: float = 10.0
    """how often CPU in use is read, when a `usage` source is given"""


class WatchGone(RlschedError):
    """The watch's resourceVersion is too old for the API server (410 Gone): list again."""


def resource_version(obj: Any) -> str | None:
    """An object's `metadata.resourceVersion` (None when it has none)."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
    return str(rv) if rv else None


def watch_events(list_fn: Callable[..., Any], rv: str | None, *, timeout_s: float) -> Iterator[tuple[str, Obj]]:
    """One watch with the client's list call `list_fn` (for example `CoreV1Api.list_node`) from resourceVersion
    `rv` (None: from now, the objects there are first sent as ADDED): (type, object) for each ADDED, MODIFIED,
    DELETED and BOOKMARK event, as raw dicts, until the API server ends the watch after `timeout_s`. An ERROR event
    raises: `WatchGone` for 410, else the client's `ApiException` with the event's code."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.watch.watch import iter_resp_lines

    kwargs: dict[str, Any] = {"watch": True, "allow_watch_bookmarks": True, "timeout_seconds": max(1, round(timeout_s)),
                              "_preload_content": False, "_request_timeout": timeout_s + 10.0}
    if rv:
        kwargs["resource_version"] = rv
    resp = list_fn(**kwargs)
    try:
        status = getattr(resp, "status", 200)
        if isinstance(status, int) and not 200 <= status < 300:
            if status == 410:
                raise WatchGone(f"watch from resourceVersion {rv}: HTTP 410")
            raise ApiException(status=status, reason=str(getattr(resp, "reason", "")))
        for line in iter_resp_lines(resp):
            if not line:
                continue
            event = json.loads(line)
            etype = event.get("type") if isinstance(event, dict) else None
            obj = event.get("object") if isinstance(event, dict) else None
            if etype == "ERROR":
                code = obj.get("code") if isinstance(obj, dict) else None
                why = f"{obj.get('reason', '')}: {obj.get('message', '')}" if isinstance(obj, dict) else ""
                if code == 410:
                    raise WatchGone(f"watch from resourceVersion {rv}: {why}")
                raise ApiException(status=code if isinstance(code, int) else 500, reason=why)
            if etype in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK") and isinstance(obj, dict):
                yield etype, obj
    finally:
        resp.close()
        resp.release_conn()


class SchedulerMetrics:
    """`rlsched_scheduler_*` metrics in their own registry (served at /metrics)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.attempts = Counter("rlsched_scheduler_attempts", "Scheduling attempts by result", ["result"],
                                registry=self.registry)
        self.e2e = Histogram("rlsched_scheduler_e2e_duration_seconds", "From pod seen to bound, s",
                             buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=self.registry)
        self.pending = Gauge("rlsched_scheduler_pending_pods", "Pods waiting to be scheduled", registry=self.registry)
        self.fallbacks = Counter("rlsched_scheduler_fallbacks", "Pods placed by the fallback policy",
                                 registry=self.registry)
        self.model = Gauge("rlsched_scheduler_model_info", "The policy in use", ["policy", "model"],
                           registry=self.registry)
        self.events_dropped = Counter("rlsched_scheduler_events_dropped", "Events not written (recorder full or "
                                      "the API refused them)", registry=self.registry)


class Scheduler:
    """Informers feed `view`; one loop thread schedules. `start()`, then `stop()` (finishes the bind in flight)."""

    def __init__(self, core_api: Any, policy: Policy, cfg: SchedulerConfig | None = None, *,
                 view: ClusterView | None = None, fallback: Policy | None = None, model_label: str = "",
                 clock: Callable[[], float] = time.time, leader: Any = None, usage: Any = None,
                 binder: Any = None):
        from rlmodel.policies import make_policy

        self.core, self.policy, self.cfg = core_api, policy, cfg or SchedulerConfig()
        self.fallback = fallback or make_policy(self.cfg.fallback_policy)
        self.view = view or ClusterView()
        self.model_label, self.clock = model_label, clock
        self.leader = leader  # a LeaderElector: only its leader schedules (None: always)
        self.usage = usage  # a PrometheusUsage (None: CPU in use is estimated from requests)
        # where Binding calls run (`rlmodel.live.binder`): the binder thread itself, or a process of its own
        self.binder = binder if binder is not None else ThreadBinder(core_api)
        self.usage_error: str | None = None  # the last failure to read it (None: the last read worked)
        self.usage_read_at: float | None = None
        self.metrics = SchedulerMetrics()
        self.metrics.model.labels(policy.name, model_label).set(1)
        self.lock = threading.RLock()
        self.wakeup = threading.Condition(self.lock)
        self._stop = threading.Event()
        self._queue: list[tuple[int, str, int, tuple[str, str]]] = []
        self._queued: set[tuple[str, str]] = set()
        self._backoff: dict[tuple[str, str], float] = {}  # key -> when it may be tried again
        self._delay: dict[tuple[str, str], float] = {}  # key -> its last back-off, s (doubles per failure)
        self._seen: dict[tuple[str, str], float] = {}
        # pods whose attempt ended for good (bound by us, bound by another, deleted): not queued again until the
        # cache shows them bound or gone, whatever a re-list or a replayed watch says meanwhile
        self._finished: set[tuple[str, str]] = set()
        self._seq = itertools.count()
        self.synced = {"nodes": False, "pods": False}
        self._threads: list[threading.Thread] = []  # loop, binder, recorder, usage: stop() waits for them
        # the informers block in a watch until its next event or timeout; they only read and end at their next
        # wake-up, so stop() does not wait for them (SIGTERM must not wait for a watch)
        self._informers: list[threading.Thread] = []
        # events and annotations are written off the scheduling path (kube-scheduler's event recorder does the
        # same): a slow API server delays them, not the next bind. Bounded: when full, the oldest are dropped.
        self._records: queue.Queue[tuple[float, tuple[Any, ...]] | None] = queue.Queue(maxsize=10_000)
        self._binds: queue.Queue[tuple[Any, ...] | None] = queue.Queue(maxsize=max(1, self.cfg.binds_ahead))
        self._loop_thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start_informers(self) -> None:
        """Only keep `view` up to date (list + watch), scheduling nothing: the scoring service's cluster view."""
        for target, name in ((self._informer_nodes, "nodes"), (self._informer_pods, "pods")):
            t = threading.Thread(target=target, name=f"rlsched-{name}", daemon=True)
            t.start()
            self._informers.append(t)

    def start(self) -> None:
        self.binder.start()  # BinderError: the binder process could not start
        if self.leader is not None:
            self.leader.start()
        self.start_informers()
        threads = [(self._loop, "loop"), *[(self._binder, f"binder-{i}" if i else "binder")
                                           for i in range(self._binder_threads)],
                   (self._recorder, "recorder")]
        if self.usage is not None:
            threads.append((self._read_usage, "usage"))
        for target, name in threads:
            t = threading.Thread(target=target, name=f"rlsched-{name}", daemon=True)
            t.start()
            self._threads.append(t)
            if name == "loop":
                self._loop_thread = t

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop taking pods; the binds already decided finish; returns when the threads have ended."""
        self._stop.set()
        with self.wakeup:
            self.wakeup.notify_all()
        if self._loop_thread is not None:
            self._loop_thread.join(timeout_s)  # no new decisions after this
        for _ in range(self._binder_threads):
            self._binds.put(None)  # each binder thread binds what was decided, then ends
        for t in self._threads:
            if t.name.startswith("rlsched-binder"):
                t.join(timeout_s)  # their events queued before the recorder's last round
        self._records.put(None)  # the recorder writes what is queued, then ends
        for t in self._threads:
            t.join(timeout_s)
        self.binder.stop()
        if self.leader is not None:
            self.leader.stop()  # after the last bind: release the lease for the next replica

    @property
    def _binder_threads(self) -> int:
        """`bind_concurrency` threads, or as many as the binder has slots (a process binder: its children times
        their pipeline depth, so that each child has its next Binding waiting when it answers one)."""
        return max(1, getattr(self.binder, "slots", None) or self.cfg.bind_concurrency)

    @property
    def ready(self) -> bool:
        """Caches synced and, when CPU in use is read from Prometheus, its last read worked."""
        return all(self.synced.values()) and (self.usage is None or (
            self.usage_read_at is not None and self.usage_error is None))

    @property
    def cpu_source(self) -> str:
        """Where the observation's CPU in use comes from, in words (for /readyz and the log)."""
        if self.usage is None:
            return "requests (estimated: no Prometheus configured)"
        if self.usage_error is not None:
            return f"Prometheus {self.usage.url}, unreachable ({self.usage_error}); requests meanwhile"
        if self.usage_read_at is None:
            return f"Prometheus {self.usage.url} (not read yet)"
        return f"Prometheus {self.usage.url} (read {max(self.clock() - self.usage_read_at, 0.0):.0f} s ago)"

    def _read_usage(self) -> None:
        while not self._stop.is_set():
            if self.synced["nodes"]:
                with self.lock:
                    nodes = dict(self.view.nodes)
                try:
                    cores = self.usage.read(nodes)
                except Exception as exc:  # noqa: BLE001 - one line; the requests stand in meanwhile
                    if self.usage_error is None:
                        log.warning("CPU in use: %s; estimating from requests meanwhile", exc)
                    self.usage_error = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
                else:
                    now = self.clock()
                    with self.lock:
                        self.view.set_cpu_used(cores, now)
                    if self.usage_error is not None or self.usage_read_at is None:
                        log.info("CPU in use: from Prometheus %s (%d of %d nodes have a reading)", self.usage.url,
                                 len(cores), len(nodes))
                    self.usage_error, self.usage_read_at = None, now
            self._stop.wait(self.cfg.usage_every_s if self.synced["nodes"] else 0.2)

    # ------------------------------------------------------------------ informers
    def _informer_nodes(self) -> None:
        self._inform("nodes", self.core.list_node)

    def _informer_pods(self) -> None:
        self._inform("pods", self.core.list_pod_for_all_namespaces)

    def _inform(self, kind: str, list_fn: Callable[..., Any]) -> None:
        """List, then watch from the last resourceVersion seen, until stopped (see the module docstring)."""
        from kubernetes.client.exceptions import ApiException

        delay, rv, listed = 0.5, None, False
        while not self._stop.is_set():
            try:
                if not listed:
                    resp = list_fn(_preload_content=False, _request_timeout=self.cfg.request_timeout_s)
                    data = json.loads(resp.data)
                    with self.lock:
                        self._replace(kind, data.get("items") or [])
                        if kind == "nodes":
                            self.view.statics()  # the per-node arrays, built now rather than by the first decision
                        self.synced[kind] = True
                    rv = resource_version(data)
                    listed, delay = True, 0.5
                    del data, resp
                    # the list is most of what this process holds and lives until the objects change: keep it out
                    # of the cyclic collector's full passes (about 0.2 s per million objects, paid by one decision);
                    # the objects are still freed by reference counting when the view drops them
                    gc.freeze()
                for etype, obj in watch_events(list_fn, rv, timeout_s=self.cfg.watch_timeout_s):
                    if self._stop.is_set():
                        break
                    rv = resource_version(obj) or rv
                    if etype != "BOOKMARK":
                        with self.lock:
                            self._apply(kind, etype, obj)
                delay = 0.5
                listed = rv is not None  # the watch ended: resume from where it was (with no resourceVersion, list)
            except WatchGone as exc:
                log.info("%s informer: %s; listing again", kind, exc)
                listed = False
            except ApiException as exc:
                log.warning("%s informer: HTTP %s %s; listing again in %.1f s", kind, exc.status, exc.reason, delay)
                listed = False
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
            except Exception as exc:  # noqa: BLE001 - a dropped connection, a timeout: watch again, or list again
                if self._stop.is_set():
                    break
                listed = listed and rv is not None
                log.info("%s informer: %s; %s in %.1f s", kind, type(exc).__name__,
                         f"watching again from resourceVersion {rv}" if listed else "listing again", delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)

    def _replace(self, kind: str, items: list[Obj]) -> None:
        now = self.clock()
        if kind == "nodes":
            names = {n["metadata"]["name"] for n in items}
            for gone in set(self.view.nodes) - names:
                self.view.delete_node(gone)
            for n in items:
                self._apply("nodes", "ADDED", n)
        else:
            keys = {(p["metadata"].get("namespace", ""), p["metadata"]["name"]) for p in items}
            for ns, name in set(self.view.pods) - keys:
                self.view.delete_pod(ns, name, now)
            for p in items:
                self._apply("pods", "ADDED", p)

    def _apply(self, kind: str, etype: str, obj: Obj) -> None:
        now = self.clock()
        meta = obj.get("metadata") or {}
        if kind == "nodes":
            if etype == "DELETED":
                self.view.delete_node(meta.get("name", ""))
                return
            new = meta.get("name") not in self.view.nodes
            self.view.upsert_node(obj, now)
            if new:
                self._flush_backoff()  # a node was added: unschedulable pods may fit now
            return
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if etype == "DELETED":
            self.view.delete_pod(key[0], key[1], now)
            self._seen.pop(key, None)
            self._backoff.pop(key, None)
            self._delay.pop(key, None)
            self._finished.discard(key)
            self._flush_backoff()  # room was freed
            return
        self.view.upsert_pod(obj, now)
        if (obj.get("spec") or {}).get("nodeName"):
            self._finished.discard(key)  # bound, as the cache now shows: nothing more to remember
        if self._ours_pending(obj) and key not in self._finished:
            self._seen.setdefault(key, now)
            if key not in self._backoff:
                self._enqueue(key, obj)

    def _ours_pending(self, pod: Obj) -> bool:
        spec, meta = pod.get("spec") or {}, pod.get("metadata") or {}
        if spec.get("schedulerName") != self.cfg.scheduler_name or spec.get("nodeName"):
            return False
        if meta.get("deletionTimestamp"):
            return False
        if self.cfg.namespaces and meta.get("namespace") not in self.cfg.namespaces:
            return False
        return (pod.get("status") or {}).get("phase", "Pending") == "Pending"

    # ------------------------------------------------------------------ queue
    def _enqueue(self, key: tuple[str, str], pod: Obj) -> None:
        if key in self._queued:
            return
        priority = (pod.get("spec") or {}).get("priority") or 0
        created = str((pod.get("metadata") or {}).get("creationTimestamp") or "")
        heapq.heappush(self._queue, (-int(priority), created, next(self._seq), key))
        self._queued.add(key)
        self.metrics.pending.set(len(self._queued) + len(self._backoff))
        self.wakeup.notify_all()

    def _flush_backoff(self) -> None:
        for key in list(self._backoff):
            pod = self.view.pods.get(key)
            del self._backoff[key]
            if pod is not None and self._ours_pending(pod) and key not in self._finished:
                self._enqueue(key, pod)

    def _to_backoff(self, key: tuple[str, str]) -> None:
        delay = min(self._delay.get(key, self.cfg.backoff_initial_s / 2) * 2, self.cfg.backoff_max_s)
        self._delay[key] = delay
        self._backoff[key] = self.clock() + delay

    def _next(self) -> tuple[str, str] | None:
        """The next pod to schedule (ready back-offs move to the queue first), or None when stopping."""
        with self.wakeup:
            while not self._stop.is_set():
                now = self.clock()
                for key, ready in list(self._backoff.items()):
                    if ready <= now:
                        del self._backoff[key]
                        pod = self.view.pods.get(key)
                        if pod is not None and self._ours_pending(pod):
                            self._enqueue(key, pod)
                if self._queue and (self.leader is None or self.leader.is_leader):
                    _, _, _, key = heapq.heappop(self._queue)
                    self._queued.discard(key)
                    return key
                soonest = min(self._backoff.values(), default=now + 1.0)
                self.wakeup.wait(max(0.01, min(soonest - now, 1.0)))
        return None

    # ------------------------------------------------------------------ the cycle
    def _loop(self) -> None:
        while True:
            key = self._next()
            if key is None:
                return
            try:
                plan = self._plan(key)
            except Exception:  # noqa: BLE001 - one pod's failure never stops the scheduler
                log.exception("scheduling %s/%s failed", *key)
                with self.lock:
                    self._to_backoff(key)
                plan = None
            if plan is not None:
                self._binds.put(plan)  # waits when `binds_ahead` decisions are already queued
            with self.lock:
                self.metrics.pending.set(len(self._queued) + len(self._backoff))

    def _binder(self) -> None:
        while True:
            plan = self._binds.get()
            try:
                if plan is None:
                    return
                self._bind(*plan)
            except Exception:  # noqa: BLE001 - logged; _bind already forgot the assumption and backed off
                log.exception("binding %s/%s failed", *plan[0])  # type: ignore[index]
            finally:
                self._binds.task_done()

    def schedule_one(self, key: tuple[str, str]) -> str | None:
        """One scheduling cycle for the pod `key`, bound before it returns; the node it was bound to, or None."""
        plan = self._plan(key)
        return self._bind(*plan) if plan is not None else None

    def _plan(self, key: tuple[str, str]) -> tuple[Any, ...] | None:
        """Filter, score and assume: the arguments of `_bind`, or None when the pod is not placed now."""
        ns, name = key
        with self.lock:
            pod = self.view.pods.get(key)
            if pod is None or not self._ours_pending(pod) or key in self._finished or key in self.view.assumed:
                return None  # gone, bound, or decided and waiting for the binder
            try:
                field = unsupported(pod)
                request = pod_requests(pod)
                infos = self.view.node_infos()
                if field is None:
                    check = PodFilter(pod, request)
                    now = self.clock()
                    state = self.view.state(now, infos)
                    st = self.view.statics()
                    fit = check.resources_fit(st.cpu_requested, st.memory_requested, st.pods, st.cores,
                                              st.memory_gib, st.max_pods)
                    mask = check.mask(infos, fit, st.hard)
                    if not mask.any():
                        _, failed = filter_nodes(pod, request, infos)  # every node's reason, for the message
                        self._fail(key, pod, describe(failed, len(infos)), "unschedulable")
                        return None
            except ObjectError as exc:
                field = f"an invalid field ({exc})"
            if field is not None:
                self._fail(key, pod, f"rlsched does not evaluate {field}: the pod stays pending rather than "
                                     "being placed while ignoring a constraint", "unsupported")
                return None
            # live, there is no episode: the pod is scored as at an episode's start
            obs = ObservationBuilder(state).build(state, (request[0], request[1], 0.0), mask, self.view.signals(pod))
            choice, scores, used = self._decide(obs, mask, pod)
            node = infos[choice].name
            self.view.assume(ns, name, node)
            return key, pod, node, scores, used, st.names, mask

    def _decide(self, obs: dict[str, np.ndarray], mask: np.ndarray, pod: Obj) -> tuple[int, np.ndarray | None, str]:
        try:
            choice, scores = predict_with_scores(self.policy, obs, mask)
            if not (0 <= choice < len(mask)) or not mask[choice]:
                raise RlschedError(f"policy {self.policy.name} chose infeasible node {choice}")
            return choice, scores, self.policy.name
        except Exception as exc:  # noqa: BLE001 - any failure of the model: the fallback places the pod
            self.metrics.fallbacks.inc()
            self._event(pod, "Warning", "ScoringFailed",
                        f"policy {self.policy.name} failed ({type(exc).__name__}: {str(exc)[:120]}); placed by "
                        f"{self.fallback.name}")
            choice, scores = predict_with_scores(self.fallback, obs, mask)
            return choice, scores, self.fallback.name

    def _bind(self, key: tuple[str, str], pod: Obj, node: str, scores: np.ndarray | None, used: str,
              names: list[str], mask: np.ndarray) -> str | None:
        from kubernetes.client.exceptions import ApiException

        ns, name = key
        top = []
        if scores is not None:
            feasible = np.flatnonzero(mask)
            order = feasible[np.argsort(-scores[feasible], kind="stable")[:3]]
            top = [{"node": names[i], "score": round(float(scores[i]), 4)} for i in order.tolist()]
        decision = {"policy": used, "model": self.model_label, "node": node, "top": top}
        # the API server copies a Binding's annotations onto the pod with spec.nodeName: one write
        body = binding(name, ns, node, {DECISION_ANNOTATION: json.dumps(decision, separators=(",", ":"))})
        try:
            self.binder.bind(name, ns, body, self.cfg.request_timeout_s)
        except ApiException as exc:
            with self.lock:
                self.view.forget(ns, name)
                if exc.status == 409:  # bound by someone else meanwhile: nothing to retry
                    self.metrics.attempts.labels("conflict").inc()
                    self._finished.add(key)
                    return None
                if exc.status == 404:  # deleted meanwhile
                    self.metrics.attempts.labels("gone").inc()
                    self._finished.add(key)
                    return None
                self.metrics.attempts.labels("error").inc()
                self._to_backoff(key)
            log.warning("bind %s/%s to %s: HTTP %s", ns, name, node, exc.status)
            return None
        except Exception:
            with self.lock:
                self.view.forget(ns, name)
                self.metrics.attempts.labels("error").inc()
                self._to_backoff(key)
            raise
        with self.lock:
            seen = self._seen.pop(key, self.clock())
            self._delay.pop(key, None)
            self._finished.add(key)
        self.metrics.attempts.labels("scheduled").inc()
        self.metrics.e2e.observe(max(self.clock() - seen, 0.0))
        if log.isEnabledFor(logging.INFO):
            log.info("scheduled %s", json.dumps({"pod": f"{ns}/{name}", **decision}))
        self._event(pod, "Normal", "Scheduled", f"Successfully assigned {ns}/{name} to {node}")
        return node

    def _fail(self, key: tuple[str, str], pod: Obj, message: str, result: str) -> None:
        self.metrics.attempts.labels(result).inc()
        self._to_backoff(key)
        self._event(pod, "Warning", "FailedScheduling", message)

    def _record(self, *args: Any) -> None:
        try:
            self._records.put_nowait((time.monotonic(), args))
        except queue.Full:
            self.metrics.events_dropped.inc()
            log.warning("event recorder full: event for %s dropped", args[0] if args else "")

    def _binds_waiting(self) -> bool:
        return bool(self._queue) or self._binds.unfinished_tasks > 0

    def _recorder(self) -> None:
        while True:
            item = self._records.get()
            if item is None:
                return
            made, args = item
            # binds first: an event waits while pods wait to be bound, at most event_max_delay_s
            while not self._stop.is_set() and self._binds_waiting() and \
                    time.monotonic() - made < self.cfg.event_max_delay_s:
                self._stop.wait(0.02)
            try:
                self.core.create_namespaced_event(*args, _request_timeout=self.cfg.request_timeout_s)
            except Exception as exc:  # noqa: BLE001 - events are best effort
                self.metrics.events_dropped.inc()
                log.debug("event for %s: %s", args[0] if args else "", type(exc).__name__)
            finally:
                self._records.task_done()

    @property
    def records_pending(self) -> int:
        """Events not written yet."""
        return self._records.unfinished_tasks

    def _event(self, pod: Obj, etype: str, reason: str, message: str) -> None:
        meta = pod.get("metadata") or {}
        ns, name = meta.get("namespace", "default"), meta.get("name", "")
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        body = {"apiVersion": "v1", "kind": "Event",
                "metadata": {"name": f"{name}.{time.time_ns():x}", "namespace": ns},
                "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": name, "namespace": ns,
                                   **({"uid": meta["uid"]} if meta.get("uid") else {})},
                "reason": reason, "message": message[:1024], "type": etype,
                "source": {"component": self.cfg.scheduler_name}, "reportingComponent": self.cfg.scheduler_name,
                "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1}
        self._record(ns, body)
