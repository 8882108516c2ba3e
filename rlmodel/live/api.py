"""`rlsched serve`: the model as an HTTP service (FastAPI under uvicorn).

* `POST /schedule`: the bidding scheduler's body verbatim (`cpu_request`, `memory_request` in cores and GiB,
  `node_states` with `cpu_available`/`memory_available`), or a richer one where each node also gives its
  capacity, what is requested and in use, its node type or 11-point watts curve, and whether it is asleep.
  Answers the chosen node, every node's bid, the policy and the model version; no feasible node: 200 with
  `scheduled_node: null` and the reason.
* kube-scheduler extender verbs (`k8s.io/kube-scheduler/extender/v1`: the Go structs have no json tags, so
  the keys are the Go field names): `POST /filter` (ExtenderArgs -> ExtenderFilterResult) and
  `POST /prioritize` (ExtenderArgs -> HostPriorityList, scores 0..10 = MaxExtenderPriority).
* `/healthz`, `/readyz`, `/metrics`, `GET /model`; OpenAPI at `/openapi.json`, Swagger UI at `/docs` served
  from the package (no CDN).

Every input is bounded (body size, node count, finite non-negative numbers); a client's mistake is a 400 whose
`detail` (and, for the extender verbs, `Error`) names the field in one line, never a 500. The service never
connects anywhere a request names.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from rlmodel.envs.observation import PRIOR_RUN_S, ObservationBuilder, PodSignals
from rlmodel.errors import RlschedError
from rlmodel.live.filter import EPS, NodeInfo, PodFilter, node_info
from rlmodel.live.podspec import ObjectError, pod_requests, resources
from rlmodel.live.signals import History, pod_signals
from rlmodel.live.view import DEFAULT_ASLEEP_TAINTS, ClusterView, CurveResolver, LiveState, is_asleep
from rlmodel.policies.base import Policy, predict_with_scores
from rlmodel.sim.podtrace import MAX_PRIORITY, OWNER_KINDS, QOS_CLASSES, default_qos
from rlmodel.sim.power import CURVE_POINTS, NodeType

log = logging.getLogger("rlsched.serve")
MAX_EXTENDER_PRIORITY = 10  # k8s.io/kube-scheduler/extender/v1.MaxExtenderPriority
REQUESTED_CPU_ANNOTATION = "rlsched.io/cpu-requested"  # on a Node: what its pods request (a quantity)
REQUESTED_MEMORY_ANNOTATION = "rlsched.io/memory-requested"
SWAGGER_UI = Path(__file__).resolve().parent / "swagger_ui"  # Swagger UI 5 from swagger-ui-dist, shipped here

# finite, non-negative, and bounded (beyond any real node: a million cores, an exbibyte, a megawatt)
MIN_CORES, MIN_GIB = 0.001, 1 / 1024  # the smallest node capacity: a millicore, a MiB
Cores = Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]
Gib = Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)]
Watts = Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]


@dataclass
class ServeLimits:
    """Bounds on what one request may carry."""

    max_body_bytes: int = 64 * 1024 * 1024
    """request body limit (the default fits 5,000 full Node objects as kube-scheduler sends them)"""
    max_nodes: int = 10_000
    """nodes in one request"""


# ------------------------------------------------------------------------------------------ /schedule
class NodeState(BaseModel):
    """A node as the caller sees it. Only `node_id`, `cpu_available` and `memory_available` are required (the
    bidding scheduler's body); capacity defaults to what is available (nothing requested)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    node_id: str = Field(min_length=1, max_length=253)
    cpu_available: Cores = Field(description="free CPU, cores (capacity minus requested)")
    memory_available: Gib = Field(description="free memory, GiB")
    cpu_capacity: Cores | None = Field(None, ge=MIN_CORES, description="allocatable CPU, cores")
    memory_capacity: Gib | None = Field(None, ge=MIN_GIB, description="allocatable memory, GiB")
    cpu_used: Cores | None = Field(None, description="CPU in use, cores (default: what is requested)")
    pods: int = Field(0, ge=0, le=100_000, description="pods on the node")
    node_type: str | None = Field(None, min_length=1, max_length=253, description="a built-in or configured node type")
    watts: list[Watts] | None = Field(None, min_length=CURVE_POINTS, max_length=CURVE_POINTS,
                                      description="wall power at 0, 10, ..., 100 % CPU, W")
    asleep: bool = False


class ScheduleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    cpu_request: Cores = Field(description="the pod's CPU request, cores")
    memory_request: Gib = Field(description="the pod's memory request, GiB")
    node_states: list[NodeState] = Field(min_length=1)
    owner_kind: Literal[OWNER_KINDS] = Field("Pod", description="the pod's controller")  # type: ignore[valid-type]
    qos: Literal[QOS_CLASSES] | None = Field(  # type: ignore[valid-type]
        None, description="the pod's QoS class (default: BestEffort when it requests nothing, else Burstable)")
    priority: int = Field(0, ge=-MAX_PRIORITY, le=MAX_PRIORITY, description="the pod's priority")
    replicas: int = Field(1, ge=1, le=100_000, description="pods created with it in one batch")
    workload_completed: int = Field(0, ge=0, le=10**9, description="pods of its workload that finished")
    workload_mean_run_s: float = Field(PRIOR_RUN_S, ge=0, le=1e9, allow_inf_nan=False,
                                       description="their mean run time, s (with none: a prior)")


class ScheduleResponse(BaseModel):
    scheduled_node: str | None
    bids: dict[str, float | None] = Field(description="each node's score (null: the pod does not fit there)")
    policy: str
    model_version: str
    reason: str = ""
    warnings: list[str] = Field(default_factory=list)


# ------------------------------------------------------------------------------------------ extender
class NodeList(BaseModel):
    model_config = ConfigDict(extra="allow")

    items: list[dict[str, Any]] = Field(default_factory=list)


class ExtenderArgs(BaseModel):
    """k8s.io/kube-scheduler/extender/v1.ExtenderArgs (Go field names)."""

    model_config = ConfigDict(extra="allow")

    Pod: dict[str, Any]
    Nodes: NodeList | None = None
    NodeNames: list[Annotated[str, Field(max_length=253)]] | None = None


class ExtenderFilterResult(BaseModel):
    Nodes: NodeList | None = None
    NodeNames: list[str] | None = None
    FailedNodes: dict[str, str] = Field(default_factory=dict)
    FailedAndUnresolvableNodes: dict[str, str] = Field(default_factory=dict)
    Error: str = ""


class HostPriority(BaseModel):
    Host: str
    Score: int = Field(ge=0, le=MAX_EXTENDER_PRIORITY)


class BadRequest(BaseModel):
    detail: str = Field(description="what is wrong, naming the field, in one line")
    Error: str | None = Field(None, description="the same, for the extender verbs whose result type has one")


BAD: dict[int | str, dict[str, Any]] = {
    400: {"model": BadRequest, "description": "the request is invalid (the field is named)"}}


class ClientError(RlschedError):
    """The request is wrong: a 400 with this one line."""


# ------------------------------------------------------------------------------------------ the service
@dataclass
class ServeState:
    """What the app serves with: the policy (swapped atomically by a ModelReloader), its fallback, and the
    optional cluster view (kept by informers when a kubeconfig is given)."""

    policy: Policy
    fallback: Policy
    model_label: str = ""
    model_info: dict[str, Any] = field(default_factory=dict)
    resolver: CurveResolver = field(default_factory=CurveResolver)
    view: ClusterView | None = None
    view_lock: threading.RLock = field(default_factory=threading.RLock)
    view_ready: Callable[[], bool] | None = None
    limits: ServeLimits = field(default_factory=ServeLimits)
    clock: Callable[[], float] = time.time


class ServeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("rlsched_serve_requests", "Requests by endpoint and status code", ["endpoint", "code"],
                                registry=self.registry)
        self.latency = Histogram("rlsched_serve_request_duration_seconds", "Request latency, s", ["endpoint"],
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
                                 registry=self.registry)
        self.fallbacks = Counter("rlsched_serve_fallbacks", "Requests scored by the fallback policy",
                                 registry=self.registry)
        self.model = Gauge("rlsched_serve_model_info", "The policy in use", ["policy", "model"],
                           registry=self.registry)


def _bad(message: str, path: str) -> JSONResponse:
    body: dict[str, Any] = {"detail": message}
    if path == "/filter":
        body["Error"] = message
    return JSONResponse(body, status_code=400)


def _field_of(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


def _one_line(errors: Sequence[Mapping[str, Any]]) -> str:
    if not errors:
        return "invalid request"
    first = errors[0]
    where = _field_of(first.get("loc", ()))
    msg = str(first.get("msg", "invalid")).splitlines()[0][:200]
    if first.get("type") == "json_invalid":
        return f"body: not valid JSON ({msg})"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {msg}{more}"


def create_app(state: ServeState) -> FastAPI:
    """The FastAPI app serving `state` (see the module docstring)."""
    metrics = ServeMetrics()
    app = FastAPI(title="rlsched", version=_version(), docs_url=None, redoc_url=None,
                  description="Energy-aware pod placement with a trained model: a plain scoring API and the "
                              "kube-scheduler extender verbs.")
    app.state.rlsched = state
    app.state.metrics = metrics
    app.mount("/static/swagger-ui", StaticFiles(directory=str(SWAGGER_UI)), name="swagger-ui")

    @app.middleware("http")
    async def bounded(request: Request, call_next):
        start = time.perf_counter()
        path = request.url.path
        length = request.headers.get("content-length")
        response: Response
        if length is not None and (not length.isdigit() or int(length) > state.limits.max_body_bytes):
            response = _bad(f"body: larger than the limit of {state.limits.max_body_bytes} bytes", path)
        elif length is None and request.method == "POST" and \
                request.headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > state.limits.max_body_bytes:
                    break
            if len(body) > state.limits.max_body_bytes:
                response = _bad(f"body: larger than the limit of {state.limits.max_body_bytes} bytes", path)
            else:
                request._body = body  # read once, bounded; FastAPI reads it from here
                response = await call_next(request)
        else:
            response = await call_next(request)
        endpoint = path if path in ("/schedule", "/filter", "/prioritize", "/model", "/healthz", "/readyz",
                                    "/metrics") else "other"
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _bad(_one_line(exc.errors()), request.url.path)

    @app.exception_handler(ClientError)
    async def client_error(request: Request, exc: ClientError) -> JSONResponse:
        return _bad(str(exc), request.url.path)

    @app.get("/docs", include_in_schema=False)
    def docs() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="rlsched API",
                                   swagger_js_url="/static/swagger-ui/swagger-ui-bundle.js",
                                   swagger_css_url="/static/swagger-ui/swagger-ui.css",
                                   swagger_favicon_url="/static/swagger-ui/favicon-32x32.png",
                                   swagger_ui_parameters={"validatorUrl": None})  # no call to swagger.io

    @app.post("/schedule", response_model=ScheduleResponse, responses=BAD)
    def schedule(body: ScheduleRequest) -> ScheduleResponse:
        """Score the nodes for one pod and pick one (the bidding scheduler's API)."""
        return _schedule(state, metrics, body)

    @app.post("/filter", response_model=ExtenderFilterResult, response_model_exclude_none=True, responses=BAD)
    def filter_(args: ExtenderArgs) -> ExtenderFilterResult:
        """kube-scheduler extender: the nodes where the pod fits by the rules rlsched evaluates."""
        return _filter(state, args)

    @app.post("/prioritize", response_model=list[HostPriority], responses=BAD)
    def prioritize(args: ExtenderArgs) -> list[HostPriority]:
        """kube-scheduler extender: every node's score in 0..10; the node the model picks gets 10."""
        return _prioritize(state, metrics, args)

    @app.get("/model")
    def model() -> dict[str, Any]:
        """The policy in use: format version, feature schema, training scenario and metrics."""
        return {"policy": state.policy.name, "model": state.model_label, **state.model_info}

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        return "ok\n"

    @app.get("/readyz", response_class=PlainTextResponse)
    def readyz() -> Response:
        ready = state.view_ready() if state.view_ready is not None else True
        view = "cluster view synced" if state.view is not None and ready else \
            "cluster view syncing" if state.view is not None else "no cluster view (requests from the request)"
        return PlainTextResponse(f"{'ready' if ready else 'not ready'}: policy {state.policy.name}, {view}\n",
                                 status_code=200 if ready else 503)

    @app.get("/metrics", response_class=PlainTextResponse,
             responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                              "description": "Prometheus text exposition"}})
    def metrics_endpoint() -> Response:
        metrics.model.clear()
        metrics.model.labels(state.policy.name, state.model_label).set(1)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("rlsched")
    except Exception:  # noqa: BLE001 - a source checkout without metadata
        return "0"


# ------------------------------------------------------------------------------------------ scoring
def _decide(state: ServeState, metrics: ServeMetrics, cluster: LiveState, request: tuple[float, float],
            mask: np.ndarray, signals: PodSignals | None = None) -> tuple[int, np.ndarray | None, str]:
    obs = ObservationBuilder(cluster).build(cluster, (request[0], request[1], 0.0), mask, signals)
    policy = state.policy
    try:
        choice, scores = predict_with_scores(policy, obs, mask)
        if not (0 <= choice < len(mask)) or not mask[choice]:
            raise RlschedError(f"policy {policy.name} chose infeasible node {choice}")
        return choice, scores, policy.name
    except Exception as exc:  # noqa: BLE001 - the model failed: the fallback answers, counted
        metrics.fallbacks.inc()
        log.warning("policy %s failed (%s: %s); scored by %s", policy.name, type(exc).__name__, str(exc)[:120],
                    state.fallback.name)
        choice, scores = predict_with_scores(state.fallback, obs, mask)
        return choice, scores, state.fallback.name


def _schedule(state: ServeState, metrics: ServeMetrics, body: ScheduleRequest) -> ScheduleResponse:
    nodes = body.node_states
    if len(nodes) > state.limits.max_nodes:
        raise ClientError(f"node_states: {len(nodes)} nodes, more than the limit of {state.limits.max_nodes}")
    names = [n.node_id for n in nodes]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ClientError(f"node_states: node_id {dup!r} appears twice")
    infos, types, asleep, used, warnings = [], [], [], [], []
    for i, n in enumerate(nodes):
        cpu_cap = n.cpu_capacity if n.cpu_capacity is not None else n.cpu_available
        mem_cap = n.memory_capacity if n.memory_capacity is not None else n.memory_available
        if cpu_cap < MIN_CORES or mem_cap < MIN_GIB:
            what, least = ("cpu", f"{MIN_CORES} cores") if cpu_cap < MIN_CORES else ("memory", "1 MiB")
            raise ClientError(f"node_states[{i}].{what}_capacity: a node needs at least {least} (the capacity, or "
                              "what is available when no capacity is given)")
        if n.cpu_available > cpu_cap + EPS:
            raise ClientError(f"node_states[{i}].cpu_available: {n.cpu_available} is more than cpu_capacity {cpu_cap}")
        if n.memory_available > mem_cap + EPS:
            raise ClientError(f"node_states[{i}].memory_available: {n.memory_available} is more than "
                              f"memory_capacity {mem_cap}")
        infos.append(NodeInfo(n.node_id, cpu_cores=cpu_cap, memory_gib=mem_cap, max_pods=10**9,
                              cpu_requested=cpu_cap - n.cpu_available,
                              memory_requested=mem_cap - n.memory_available, pods=n.pods))
        if n.watts is not None:
            watts = tuple(float(w) for w in n.watts)
            if any(b < a for a, b in zip(watts, watts[1:], strict=False)):
                raise ClientError(f"node_states[{i}].watts: must not decrease with utilization")
            types.append(NodeType(f"{n.node_id}-curve", cpu_cap, mem_cap, watts, source="request"))
        elif n.node_type is not None:
            if n.node_type not in state.resolver.types:
                raise ClientError(f"node_states[{i}].node_type: unknown type {n.node_type!r}")
            types.append(state.resolver.types[n.node_type])
        else:
            types.append(state.resolver.types[state.resolver.default])
            warnings.append(f"{n.node_id}: no node_type or watts; scored with the default curve "
                            f"{state.resolver.default}")
        asleep.append(n.asleep)
        used.append(n.cpu_used)
    now = state.clock()
    cluster = LiveState(infos, types, asleep, [now] * len(infos), now, cpu_used=used)
    request = (body.cpu_request, body.memory_request)
    mask = cluster.fits(*request)
    if not mask.any():
        return ScheduleResponse(scheduled_node=None, bids={n: None for n in names}, policy=state.policy.name,
                                model_version=state.model_label, warnings=warnings[:20],
                                reason=f"0/{len(names)} nodes have {request[0]:g} cores and {request[1]:g} GiB free")
    qos = QOS_CLASSES.index(body.qos) if body.qos is not None else \
        int(default_qos(np.array([body.cpu_request]), np.array([body.memory_request]))[0])
    signals = PodSignals(owner_kind=OWNER_KINDS.index(body.owner_kind), qos=qos,
                         priority=body.priority, replicas=body.replicas, workload_completed=body.workload_completed,
                         workload_mean_run_s=body.workload_mean_run_s)
    choice, scores, used_policy = _decide(state, metrics, cluster, request, mask, signals)
    bids = {n: (round(float(scores[k]), 6) if scores is not None and mask[k] and math.isfinite(scores[k]) else None)
            for k, n in enumerate(names)}
    return ScheduleResponse(scheduled_node=names[choice], bids=bids, policy=used_policy,
                            model_version=state.model_label, warnings=warnings[:20])


def _extender_nodes(state: ServeState, args: ExtenderArgs) -> tuple[list[NodeInfo], list[dict[str, Any]] | None]:
    """The nodes of an ExtenderArgs with what is requested on them: from the cluster view when there is one,
    else from the Node objects (requests from the rlsched.io/*-requested annotations, else zero)."""
    if args.Nodes is not None:
        items = args.Nodes.items
        if len(items) > state.limits.max_nodes:
            raise ClientError(f"Nodes.items: {len(items)} nodes, more than the limit of {state.limits.max_nodes}")
        infos = []
        for i, node in enumerate(items):
            try:
                info = node_info(node)
                ann = (node.get("metadata") or {}).get("annotations") or {}
                if not isinstance(ann, Mapping):
                    raise ObjectError("metadata.annotations: expected an object")
                # read as a requests map: {"cpu": ..., "memory": ...} from the two annotations present
                requested = {kind: ann[key] for kind, key in (("cpu", REQUESTED_CPU_ANNOTATION),
                                                              ("memory", REQUESTED_MEMORY_ANNOTATION)) if key in ann}
                info.cpu_requested, info.memory_requested = resources(
                    requested, "metadata.annotations[rlsched.io/{cpu,memory}-requested]")
            except ObjectError as exc:
                raise ClientError(f"Nodes.items[{i}]: {exc}") from None
            except (AttributeError, TypeError) as exc:
                raise ClientError(f"Nodes.items[{i}]: not a Node object ({type(exc).__name__})") from None
            infos.append(info)
        if state.view is not None:  # the cluster view knows what is bound where: its totals win
            with state.view_lock:
                st = state.view.statics()
                for info in infos:
                    k = st.position.get(info.name)
                    if k is not None:
                        known = st.infos[k]
                        info.cpu_requested, info.memory_requested, info.pods = \
                            known.cpu_requested, known.memory_requested, known.pods
        return infos, items
    if args.NodeNames is not None:
        if len(args.NodeNames) > state.limits.max_nodes:
            raise ClientError(f"NodeNames: {len(args.NodeNames)} nodes, more than the limit of "
                              f"{state.limits.max_nodes}")
        if state.view is None:
            raise ClientError("NodeNames: this extender has no cluster view (nodeCacheCapable needs `rlsched serve "
                              "--kubeconfig`); configure nodeCacheCapable: false")
        with state.view_lock:
            st = state.view.statics()
            missing = [n for n in args.NodeNames if n not in st.position]
            if missing:
                raise ClientError(f"NodeNames: {missing[0]!r} is not in the cluster view")
            return [dataclasses.replace(st.infos[st.position[n]]) for n in args.NodeNames], None
    raise ClientError("Nodes, NodeNames: one of them must be given")


_UNRESOLVABLE = ("node(s) didn't match", "node(s) had untolerated taint", "node(s) were unschedulable")


def _filter(state: ServeState, args: ExtenderArgs) -> ExtenderFilterResult:
    infos, items = _extender_nodes(state, args)
    try:
        request = pod_requests(args.Pod)
        check = PodFilter(args.Pod, request)
        reasons = [check.reason(info) for info in infos]
    except ObjectError as exc:
        raise ClientError(f"Pod: {exc}") from None
    failed: dict[str, str] = {}
    unresolvable: dict[str, str] = {}
    for info, reason in zip(infos, reasons, strict=True):
        if reason is not None:
            # preemption cannot help with a selector, taint or cordon; it can with resources
            (unresolvable if reason.startswith(_UNRESOLVABLE) else failed)[info.name] = reason
    keep = [k for k, r in enumerate(reasons) if r is None]
    if items is not None:
        return ExtenderFilterResult(Nodes=NodeList(items=[items[k] for k in keep]), FailedNodes=failed,
                                    FailedAndUnresolvableNodes=unresolvable)
    return ExtenderFilterResult(NodeNames=[infos[k].name for k in keep], FailedNodes=failed,
                                FailedAndUnresolvableNodes=unresolvable)


def extender_scores(scores: np.ndarray | None, choice: int, mask: np.ndarray) -> list[int]:
    """Integer scores in 0..MaxExtenderPriority with the policy's order: the chosen node alone gets the maximum,
    the other feasible nodes 0..max-1 by their score (min-max scaled), infeasible nodes 0."""
    n = len(mask)
    out = [0] * n
    if scores is not None:
        others = [k for k in range(n) if mask[k] and k != choice and math.isfinite(scores[k])]
        if others:
            lo, hi = min(scores[k] for k in others), max(scores[k] for k in others)
            for k in others:
                frac = (scores[k] - lo) / (hi - lo) if hi > lo else 1.0
                out[k] = int(math.floor(frac * (MAX_EXTENDER_PRIORITY - 1) + 1e-9))
    out[choice] = MAX_EXTENDER_PRIORITY
    return out


def _prioritize(state: ServeState, metrics: ServeMetrics, args: ExtenderArgs) -> list[HostPriority]:
    infos, _ = _extender_nodes(state, args)
    if not infos:
        return []
    try:
        request = pod_requests(args.Pod)
        check = PodFilter(args.Pod, request)
        mask = np.array([check.reason(info) is None for info in infos], dtype=bool)
    except ObjectError as exc:
        raise ClientError(f"Pod: {exc}") from None
    if not mask.any():
        return [HostPriority(Host=i.name, Score=0) for i in infos]
    taints, labels = (state.view.asleep_taints, state.view.asleep_labels) if state.view is not None else \
        (DEFAULT_ASLEEP_TAINTS, ())
    types = [state.resolver.resolve(info.name, info.labels)[0] for info in infos]
    asleep = [is_asleep(info, taints, labels) for info in infos]
    now = state.clock()
    cluster = LiveState(infos, types, asleep, [now] * len(infos), now)
    if state.view is not None:
        with state.view_lock:
            signals = state.view.signals(args.Pod)
    else:
        signals = pod_signals(args.Pod, History())
    choice, scores, _ = _decide(state, metrics, cluster, request, mask, signals)
    return [HostPriority(Host=i.name, Score=s) for i, s in zip(infos, extender_scores(scores, choice, mask),
                                                                 strict=True)]


__all__ = ["ExtenderArgs", "ScheduleRequest", "ServeLimits", "ServeState", "create_app", "extender_scores"]
