"""What a pod asks of a node, computed from the pod object as kube-scheduler does.

Objects are the JSON form of Kubernetes objects (camelCase keys: what the API server sends, what a scheduler
extender receives, and what `ApiClient().sanitize_for_serialization(V1Pod)` gives).

Effective requests (k8s.io/component-helpers `resource.PodRequests`, used by NodeResourcesFit):
the larger of (a) the sum over app containers plus restartable init containers ("sidecars",
`restartPolicy: Always`) and (b) for each ordinary init container, its request plus the sidecars started
before it; plus the pod's `overhead`. CPU in cores, memory in GiB.

`create_binding` writes the one thing a scheduler writes about a pod: its Binding.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from rlmodel.errors import RlschedError

Obj = Mapping[str, Any]


class ObjectError(RlschedError):
    """A Kubernetes object that is malformed where rlsched reads it; the message names the field.

    The message is always one line: control characters from the object (a key with a newline) are escaped."""

    def __init__(self, message: str):
        super().__init__("".join(c if c.isprintable() else repr(c)[1:-1] for c in str(message)))


def as_map(value: Any, field: str) -> Mapping[str, Any]:
    """`value` as a JSON object ({} for null), or ObjectError naming `field`."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ObjectError(f"{field}: expected an object")
    return value


def as_list(value: Any, field: str) -> list[Any]:
    """`value` as a JSON array ([] for null), or ObjectError naming `field`."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ObjectError(f"{field}: expected a list")
    return value


def as_text(value: Any, field: str) -> str:
    """`value` as a string ("" for null), or ObjectError naming `field`."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ObjectError(f"{field}: expected a string")
    return value


_SUFFIX: dict[str, Decimal | int] = {
    "": 1, "m": Decimal(1) / 1000, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_SIMPLE = re.compile(r"([0-9]{1,18})(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?")


def quantity(value: Any, field: str) -> float:
    """A Kubernetes quantity ("1500m", "4Gi", "3927800Ki") as a float in base units (cores, bytes), as
    `kubernetes.utils.parse_quantity` reads it; ObjectError naming `field` when it is not one. The common form
    (whole number, optional suffix) is computed here with the same Decimal arithmetic, the rest by the client."""
    if isinstance(value, str) and len(value) <= 40:
        parsed = _parse_text(value)
        if parsed is not None:
            return parsed
    from kubernetes.utils import parse_quantity

    try:
        return float(parse_quantity(value))
    except (ValueError, TypeError, ArithmeticError):
        raise ObjectError(f"{field}: invalid quantity {str(value)[:40]!r}") from None


@functools.lru_cache(maxsize=8192)
def _parse_text(value: str) -> float | None:
    """The common form (whole number, optional suffix), or None. Cached: a cluster's nodes and pods repeat a
    handful of quantities."""
    simple = _SIMPLE.fullmatch(value)
    return float(Decimal(simple.group(1)) * _SUFFIX[simple.group(2) or ""]) if simple is not None else None


def resources(values: Obj | None, field: str) -> tuple[float, float]:
    """(cores, GiB) of a `requests`/`limits`/`allocatable` map (missing entries are 0)."""
    values = as_map(values, field)
    cpu = quantity(values["cpu"], f"{field}.cpu") if "cpu" in values else 0.0
    mem = quantity(values["memory"], f"{field}.memory") / 2**30 if "memory" in values else 0.0
    if not (0 <= cpu < 1e9 and 0 <= mem < 1e12):  # also refuses NaN
        raise ObjectError(f"{field}: quantity out of range")
    return cpu, mem


def _container_requests(c: Any, field: str) -> tuple[float, float]:
    if not isinstance(c, Mapping):  # a container is an object, never null
        raise ObjectError(f"{field}: expected an object")
    res = as_map(c.get("resources"), f"{field}.resources")
    return resources(res.get("requests"), f"{field}.resources.requests")


def pod_requests(pod: Obj) -> tuple[float, float]:
    """The pod's effective (cores, GiB) requests, as NodeResourcesFit counts them."""
    spec = as_map(as_map(pod, "pod").get("spec"), "spec")
    app_cpu = app_mem = 0.0
    for i, c in enumerate(as_list(spec.get("containers"), "spec.containers")):
        cpu, mem = _container_requests(c, f"spec.containers[{i}]")
        app_cpu, app_mem = app_cpu + cpu, app_mem + mem
    side_cpu = side_mem = 0.0  # sidecars started so far
    init_cpu = init_mem = 0.0  # the largest init-time need
    for i, c in enumerate(as_list(spec.get("initContainers"), "spec.initContainers")):
        cpu, mem = _container_requests(c, f"spec.initContainers[{i}]")
        # a sidecar (restartPolicy Always) keeps running next to the app containers
        if as_map(c, f"spec.initContainers[{i}]").get("restartPolicy") == "Always":
            side_cpu, side_mem = side_cpu + cpu, side_mem + mem
            init_cpu, init_mem = max(init_cpu, side_cpu), max(init_mem, side_mem)
        else:
            init_cpu, init_mem = max(init_cpu, cpu + side_cpu), max(init_mem, mem + side_mem)
    cpu, mem = max(app_cpu + side_cpu, init_cpu), max(app_mem + side_mem, init_mem)
    over_cpu, over_mem = resources(spec.get("overhead"), "spec.overhead")
    return cpu + over_cpu, mem + over_mem


def is_terminated(pod: Obj) -> bool:
    """Succeeded or Failed pods hold no resources on their node."""
    return as_map(pod.get("status"), "status").get("phase") in ("Succeeded", "Failed")


def binding(name: str, namespace: str, node: str, annotations: dict[str, str] | None = None) -> Obj:
    """The Binding that places pod `namespace/name` on `node`. The API server copies its `annotations` onto the pod
    in the same write as `spec.nodeName`."""
    meta: Obj = {"name": name, "namespace": namespace, **({"annotations": annotations} if annotations else {})}
    return {"apiVersion": "v1", "kind": "Binding", "metadata": meta,
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}}


def create_binding(core: Any, name: str, namespace: str, body: Obj, **kwargs: Any) -> None:
    """POST pods/{name}/binding with the official client's CoreV1Api `core` (kwargs: `_request_timeout`...).
    The client cannot deserialize the Status a Binding returns, so the reply is taken raw and read to the end:
    only then does its connection go back to the pool (unread, every bind would open a new connection)."""
    resp = core.create_namespaced_pod_binding(name, namespace, body, _preload_content=False, **kwargs)
    resp.read()
    resp.release_conn()
