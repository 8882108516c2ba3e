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

import msgspec
import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rlmodel.envs.observation import PRIOR_RUN_S, ObservationBuilder, PodSignals
from rlmodel.errors import RlschedError
from rlmodel.live.filter import EPS, NodeInfo, PodFilter
from rlmodel.live.podspec import ObjectError, pod_requests
from rlmodel.live.signals import History, pod_signals
from rlmodel.live.view import DEFAULT_ASLEEP_TAINTS, ClusterView, CurveResolver, LiveState, NodeStatics, is_asleep
from rlmodel.live.wire import ClientError, ExtenderArgsWire, NodeCache, decode_args, encode
from rlmodel.policies.base import Policy, predict_with_scores
from rlmodel.sim.podtrace import MAX_PRIORITY, OWNER_KINDS, QOS_CLASSES, default_qos
from rlmodel.sim.power import CURVE_POINTS, NodeType

log = logging.getLogger("rlsched.serve")
MAX_EXTENDER_PRIORITY = 10  # k8s.io/kube-scheduler/extender/v1.MaxExtenderPriority
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
    node_cache_entries: int = 20_000
    """Node objects (full mode) whose reading is kept, by their bytes (about 3 KiB each); at least twice
    `max_nodes`, so one request's nodes always fit (a cache smaller than the cycle of nodes would never hit)"""


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
    node_cache: NodeCache | None = None  # made on first use (full Node objects)
    last_nodes: tuple[list[Any], NodeStatics | None] = ([], None)  # the last request's entries and arrays


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


_ENDPOINTS = frozenset({"/schedule", "/filter", "/prioritize", "/model", "/healthz", "/readyz", "/metrics"})


class _Bounded:
    """ASGI middleware: refuses a body over the limit (by its Content-Length, or counted as it arrives when it
    is chunked), and counts every response by endpoint and code with its latency. (Plain ASGI: Starlette's
    BaseHTTPMiddleware re-streams the body, which costs ~10 ms on a 15 MiB extender request.)"""

    def __init__(self, app: ASGIApp, state: ServeState, metrics: ServeMetrics):
        self.app, self.state, self.metrics = app, state, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope["path"]
        status = [500]

        async def counted_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        limit = self.state.limits.max_body_bytes
        too_large = _bad(f"body: larger than the limit of {limit} bytes", path)
        headers = dict(scope.get("headers") or ())
        length = headers.get(b"content-length")
        try:
            if length is not None and (not length.isdigit() or int(length) > limit):
                await too_large(scope, receive, counted_send)
            elif length is None and scope.get("method") == "POST" and \
                    headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                body = bytearray()
                while True:  # read once, bounded; the app is handed what was read
                    message = await receive()
                    if message["type"] != "http.request":
                        return  # the client went away
                    body += message.get("body", b"")
                    if len(body) > limit or not message.get("more_body", False):
                        break
                if len(body) > limit:
                    await too_large(scope, receive, counted_send)
                else:
                    await self.app(scope, _replay(bytes(body), receive), counted_send)
            else:
                await self.app(scope, receive, counted_send)
        finally:
            endpoint = path if path in _ENDPOINTS else "other"
            self.metrics.requests.labels(endpoint, str(status[0])).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)


def _replay(body: bytes, receive: Receive) -> Receive:
    """An ASGI receive that gives `body` once, then defers to `receive` (for the disconnect)."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def create_app(state: ServeState) -> FastAPI:
    """The FastAPI app serving `state` (see the module docstring)."""
    metrics = ServeMetrics()
    app = FastAPI(title="rlsched", version=_version(), docs_url=None, redoc_url=None,
                  description="Energy-aware pod placement with a trained model: a plain scoring API and the "
                              "kube-scheduler extender verbs.")
    app.state.rlsched = state
    app.state.metrics = metrics
    app.mount("/static/swagger-ui", StaticFiles(directory=str(SWAGGER_UI)), name="swagger-ui")

    app.add_middleware(_Bounded, state=state, metrics=metrics)

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

    # The extender verbs compute on the event loop (milliseconds; at 5,000 nodes some tens): handing them to a
    # worker thread put a GIL switch (up to 5 ms, often several) into the tail of every request.
    extender_body = {"requestBody": {"required": True, "content": {"application/json": {
        "schema": _inline_schema(ExtenderArgs)}}}}

    @app.post("/filter", response_model=ExtenderFilterResult, response_model_exclude_none=True, responses=BAD,
              openapi_extra=extender_body)
    async def filter_(request: Request) -> Response:
        """kube-scheduler extender: the nodes where the pod fits by the rules rlsched evaluates (body:
        ExtenderArgs)."""
        return _filter(state, await request.body())

    @app.post("/prioritize", response_model=list[HostPriority], responses=BAD, openapi_extra=extender_body)
    async def prioritize(request: Request) -> Response:
        """kube-scheduler extender: every node's score in 0..10; the node the model picks gets 10 (body:
        ExtenderArgs)."""
        return _prioritize(state, metrics, await request.body())

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


def _inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of `model` with its `$defs` inlined (an `openapi_extra` request body has no components)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.rsplit("/", 1)[1]])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(schema)


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


@dataclass
class _Candidates:
    """The nodes of one extender request with what is bound to them, as arrays (`statics`), the CPU in use
    (`demand`, cores), and the Node objects as sent (full mode) to echo back from /filter."""

    statics: NodeStatics
    demand: np.ndarray
    now_s: float
    sleep_after_s: float
    raws: list[msgspec.Raw] | None

    def live_state(self) -> LiveState:
        st = self.statics
        empty = np.where(np.isnan(st.empty_since), self.now_s, st.empty_since)
        return LiveState.of_arrays(st, st.cpu_requested, st.memory_requested, st.pods, self.demand, empty,
                                   self.now_s, self.sleep_after_s)


def _node_cache(state: ServeState) -> NodeCache:
    if state.node_cache is None:
        taints, labels = (state.view.asleep_taints, state.view.asleep_labels) if state.view is not None else \
            (set(DEFAULT_ASLEEP_TAINTS), set())

        def resolve(info: NodeInfo) -> tuple[NodeType, bool]:
            return state.resolver.resolve(info.name, info.labels)[0], is_asleep(info, taints, labels)

        entries = max(state.limits.node_cache_entries, 2 * state.limits.max_nodes)
        state.node_cache = NodeCache(resolve, max_entries=entries)
    return state.node_cache


def _first_repeat(names: Sequence[str]) -> int:
    """The position of the first name seen before (-1: none)."""
    seen: set[str] = set()
    for k, name in enumerate(names):
        if name in seen:
            return k
        seen.add(name)
    return -1


def _own_totals(st: NodeStatics) -> NodeStatics:
    """`st` with copies of the arrays a request changes (what is requested, pods, empty since)."""
    return dataclasses.replace(st, cpu_requested=st.cpu_requested.copy(), memory_requested=st.memory_requested.copy(),
                               pods=st.pods.copy(), empty_since=st.empty_since.copy())


def _candidates(state: ServeState, args: ExtenderArgsWire) -> _Candidates:
    """The nodes of an ExtenderArgs. Full Node objects: capacity, labels and taints from them; what is requested
    from the cluster view when there is one (it knows what is bound where), else from the rlsched.io/*-requested
    annotations (else zero). Node names: everything from the cluster view, as `rlsched scheduler` sees it."""
    now = state.clock()
    if args.Nodes is not None:
        items = args.Nodes.items
        if len(items) > state.limits.max_nodes:
            raise ClientError(f"Nodes.items: {len(items)} nodes, more than the limit of {state.limits.max_nodes}")
        cache = _node_cache(state)
        entries = cache.entries(items, "Nodes.items")
        last_entries, last = state.last_nodes
        if last is not None and len(entries) == len(last_entries) and \
                all(a is b for a, b in zip(entries, last_entries, strict=True)):
            st = _own_totals(last)  # the same nodes as the last request (kube-scheduler's usual case)
        else:
            st = NodeStatics.build([e.info for e in entries], [e.node_type for e in entries],
                                   [e.asleep for e in entries], np.full(len(entries), math.nan))
            state.last_nodes = (entries, _own_totals(st))
        if len(st.position) != len(entries):
            k = _first_repeat(st.names)
            raise ClientError(f"Nodes.items[{k}].metadata.name: {entries[k].info.name!r} appears twice")
        if state.view is None:
            return _Candidates(st, st.cpu_requested.copy(), now, 0.0, items)
        with state.view_lock:  # the cluster view's totals win over the annotations
            view = state.view.statics()
            index = np.fromiter((view.position.get(n, -1) for n in st.names), dtype=np.int64, count=len(st.names))
            known, at = index >= 0, index[index >= 0]
            for name in ("cpu_requested", "memory_requested", "pods", "empty_since"):
                getattr(st, name)[known] = getattr(view, name)[at]
            return _Candidates(st, state.view.demand(st, now), now, state.view.sleep_after_s, items)
    if args.NodeNames is not None:
        names = args.NodeNames
        if len(names) > state.limits.max_nodes:
            raise ClientError(f"NodeNames: {len(names)} nodes, more than the limit of {state.limits.max_nodes}")
        if state.view is None:
            raise ClientError("NodeNames: this extender has no cluster view (nodeCacheCapable needs `rlsched serve "
                              "--kubeconfig`); configure nodeCacheCapable: false")
        with state.view_lock:
            position = state.view.statics().position
            missing = next((n for n in names if n not in position), None)
            if missing is not None:
                raise ClientError(f"NodeNames: {missing!r} is not in the cluster view")
            st = state.view.subset(names)
            if len(st.position) != len(names):
                raise ClientError(f"NodeNames: {names[_first_repeat(names)]!r} appears twice")
            return _Candidates(st, state.view.demand(st, now), now, state.view.sleep_after_s, None)
    raise ClientError("Nodes, NodeNames: one of them must be given")


_UNRESOLVABLE = ("node(s) didn't match", "node(s) had untolerated taint", "node(s) were unschedulable")


def _feasible(args: ExtenderArgsWire, nodes: _Candidates) -> tuple[PodFilter, tuple[float, float], np.ndarray]:
    """(the pod's filter, its requests in cores and GiB, the (N,) mask of nodes that can take it)."""
    st = nodes.statics
    try:
        request = pod_requests(args.Pod)
        check = PodFilter(args.Pod, request)
        fit = check.resources_fit(st.cpu_requested, st.memory_requested, st.pods, st.cores, st.memory_gib,
                                  st.max_pods)
        return check, request, check.mask(st.infos, fit, st.hard)
    except ObjectError as exc:
        raise ClientError(f"Pod: {exc}") from None


def _filter(state: ServeState, body: bytes) -> Response:
    args = decode_args(body)
    nodes = _candidates(state, args)
    check, _, mask = _feasible(args, nodes)
    st = nodes.statics
    failed: dict[str, str] = {}
    unresolvable: dict[str, str] = {}
    for k in np.flatnonzero(~mask).tolist():
        info = st.infos[k]
        reason = check.constraint_reason(info) or \
            check.resource_reason(st.cpu_requested[k], st.memory_requested[k], st.pods[k], info) or "rejected"
        # preemption cannot help with a selector, taint or cordon; it can with resources
        (unresolvable if reason.startswith(_UNRESOLVABLE) else failed)[info.name] = reason
    keep = np.flatnonzero(mask).tolist()
    rest = encode({"FailedNodes": failed, "FailedAndUnresolvableNodes": unresolvable, "Error": ""})
    if nodes.raws is not None:  # the Node objects go back byte for byte as they came
        kept = b",".join(bytes(nodes.raws[k]) for k in keep)
        out = b'{"Nodes":{"items":[' + kept + b"]}," + rest[1:]
    else:
        out = b'{"NodeNames":' + encode([st.names[k] for k in keep]) + b"," + rest[1:]
    return Response(out, media_type="application/json")


def extender_scores(scores: np.ndarray | None, choice: int, mask: np.ndarray) -> list[int]:
    """Integer scores in 0..MaxExtenderPriority with the policy's order: the chosen node alone gets the maximum,
    the other feasible nodes 0..max-1 by their score (min-max scaled), infeasible nodes 0."""
    n = len(mask)
    out = np.zeros(n, dtype=np.int64)
    if scores is not None:
        values = np.asarray(scores, dtype=np.float64)
        others = np.asarray(mask, dtype=bool) & np.isfinite(values)
        others[choice] = False
        if others.any():
            lo, hi = values[others].min(), values[others].max()
            frac = (values[others] - lo) / (hi - lo) if hi > lo else np.ones(int(others.sum()))
            out[others] = np.floor(frac * (MAX_EXTENDER_PRIORITY - 1) + 1e-9).astype(np.int64)
    out[choice] = MAX_EXTENDER_PRIORITY
    return out.tolist()


def _prioritize(state: ServeState, metrics: ServeMetrics, body: bytes) -> Response:
    args = decode_args(body)
    nodes = _candidates(state, args)
    names = nodes.statics.names
    if not names:
        return Response(b"[]", media_type="application/json")
    _, request, mask = _feasible(args, nodes)
    if not mask.any():
        return Response(encode([{"Host": n, "Score": 0} for n in names]), media_type="application/json")
    try:
        if state.view is not None:
            with state.view_lock:
                signals = state.view.signals(args.Pod)
        else:
            signals = pod_signals(args.Pod, History())
    except (AttributeError, TypeError, ValueError) as exc:
        raise ClientError(f"Pod: not a Pod object ({type(exc).__name__})") from None
    choice, scores, _ = _decide(state, metrics, nodes.live_state(), request, mask, signals)
    return Response(encode([{"Host": n, "Score": s} for n, s in zip(names, extender_scores(scores, choice, mask),
                                                                     strict=True)]),
                    media_type="application/json")


__all__ = ["ExtenderArgs", "ScheduleRequest", "ServeLimits", "ServeState", "create_app", "extender_scores"]
