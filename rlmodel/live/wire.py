"""kube-scheduler extender requests, read at the speed the verbs need (`k8s.io/kube-scheduler/extender/v1`).

With `nodeCacheCapable: false` an `ExtenderArgs` carries every candidate Node object in full: about 3 KiB each
(images, conditions, managed fields), 15 MiB at 5,000 nodes. Reading that into Python objects takes longer than
kube-scheduler should wait, and rlsched reads six fields of it. So:

* `decode_args` parses the body with msgspec into typed structs: the Pod as a JSON object, each Node as its raw
  bytes (`msgspec.Raw`, syntax-checked, not converted);
* `NodeCache.entry` turns a Node's bytes into what the filter and the observation need (`NodeInfo`, power
  curve, asleep), decoding only `metadata.{name, labels, annotations}`, `spec.{taints, unschedulable}` and
  `status.allocatable` (the rest is skipped without building objects). The result is a pure function of the
  bytes and the service's configuration, so it is cached by the bytes themselves (content-addressed: a client
  cannot make another client's node read differently). kube-scheduler sends the same Node objects from its
  cache until a node changes, so most nodes of a request are found there.

A client's mistake raises `ClientError` with one line naming the field (`Nodes.items[3].metadata.labels`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from rlmodel.errors import RlschedError
from rlmodel.live.filter import NodeInfo, node_info_of
from rlmodel.live.podspec import ObjectError, resources
from rlmodel.sim.power import NodeType

REQUESTED_CPU_ANNOTATION = "rlsched.io/cpu-requested"  # on a Node: what its pods request (a quantity)
REQUESTED_MEMORY_ANNOTATION = "rlsched.io/memory-requested"


class ClientError(RlschedError):
    """The request is wrong: a 400 with this one line."""


# ------------------------------------------------------------------------------------------ the wire types
class NodeListWire(msgspec.Struct):
    items: list[msgspec.Raw] = []


class ExtenderArgsWire(msgspec.Struct):
    """ExtenderArgs with the Node objects kept as bytes (unknown keys are ignored, as Go's decoder does)."""

    Pod: dict[str, Any]
    Nodes: NodeListWire | None = None
    NodeNames: list[Annotated[str, msgspec.Meta(max_length=253)]] | None = None


class _Taint(msgspec.Struct):
    key: str = ""
    value: str = ""
    effect: str = ""


class _Meta(msgspec.Struct):
    name: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class _Spec(msgspec.Struct):
    taints: list[_Taint] | None = None
    unschedulable: bool | None = None


class _Status(msgspec.Struct):
    allocatable: dict[str, str | int | float] | None = None


class _Node(msgspec.Struct):
    """The fields of a v1.Node that rlsched reads (v1 types: labels and annotations map[string]string, a
    Quantity is a string or a number in JSON)."""

    metadata: _Meta | None = None
    spec: _Spec | None = None
    status: _Status | None = None


_ARGS = msgspec.json.Decoder(ExtenderArgsWire)
_NODE = msgspec.json.Decoder(_Node)


def _one_line(exc: msgspec.DecodeError, prefix: str) -> str:
    """msgspec's "Expected `str`, got `int` - at `$.metadata.name`" as "PREFIX.metadata.name: Expected ..."."""
    text = str(exc).splitlines()[0] if str(exc) else "invalid"
    if not isinstance(exc, msgspec.ValidationError):
        return f"{prefix or 'body'}: not valid JSON ({text[:120]})"
    where = ""
    if " - at `$" in text:
        text, _, where = text.rpartition(" - at `$")
        where = where.rstrip("`")
    field = (prefix + where).lstrip(".") or "body"
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in f"{field}: {text[:200]}")


def decode_args(body: bytes) -> ExtenderArgsWire:
    """The ExtenderArgs of a request body; ClientError naming the field when it is not one."""
    try:
        return _ARGS.decode(body)
    except msgspec.DecodeError as exc:
        raise ClientError(_one_line(exc, "")) from None


# ------------------------------------------------------------------------------------------ Node objects
@dataclass(frozen=True)
class NodeEntry:
    """What a Node object gives the extender: its NodeInfo (requests from the annotations), curve, and whether
    it counts as asleep. Shared between requests: never modified."""

    info: NodeInfo
    node_type: NodeType
    asleep: bool


class NodeCache:
    """Node bytes -> `NodeEntry`, at most `max_entries` (least recently used dropped first)."""

    def __init__(self, resolve: Callable[[NodeInfo], tuple[NodeType, bool]], max_entries: int = 20_000):
        self.resolve, self.max_entries = resolve, max_entries
        self._entries: dict[bytes, NodeEntry] = {}
        self.hits = self.misses = 0

    def entries(self, raws: list[msgspec.Raw], where: str) -> list[NodeEntry]:
        """The entries of a request's Node objects (`where`: their list, named in errors with the position)."""
        return [self.entry(raw, where, i) for i, raw in enumerate(raws)]

    def entry(self, raw: msgspec.Raw | bytes, where: str, index: int | None = None) -> NodeEntry:
        """The entry of one Node object (named in errors as `where`, or `where[index]`: `Nodes.items[3]`)."""
        key = raw if isinstance(raw, bytes) else bytes(raw)
        found = self._entries.pop(key, None)
        if found is not None:
            self._entries[key] = found  # most recently used last
            self.hits += 1
            return found
        self.misses += 1
        entry = self._read(key, where if index is None else f"{where}[{index}]")
        self._entries[key] = entry
        if len(self._entries) > self.max_entries:  # drop the least recently used quarter at once
            for old in list(itertools.islice(self._entries, len(self._entries) - self.max_entries * 3 // 4)):
                self._entries.pop(old, None)
        return entry

    def __len__(self) -> int:
        return len(self._entries)

    def _read(self, raw: bytes, where: str) -> NodeEntry:
        try:
            node = _NODE.decode(raw)
        except msgspec.DecodeError as exc:
            raise ClientError(_one_line(exc, where)) from None
        meta, spec, status = node.metadata or _Meta(), node.spec or _Spec(), node.status or _Status()
        annotations = meta.annotations or {}
        try:
            info = node_info_of(meta.name, meta.labels or {}, [(t.key, t.value, t.effect) for t in spec.taints or []],
                                bool(spec.unschedulable), status.allocatable or {})
            # read as a requests map: {"cpu": ..., "memory": ...} from the two annotations present
            requested = {kind: annotations[key] for kind, key in (("cpu", REQUESTED_CPU_ANNOTATION),
                                                                  ("memory", REQUESTED_MEMORY_ANNOTATION))
                         if key in annotations}
            info.cpu_requested, info.memory_requested = resources(
                requested, "metadata.annotations[rlsched.io/{cpu,memory}-requested]")
        except ObjectError as exc:
            raise ClientError(f"{where}: {exc}") from None
        node_type, asleep = self.resolve(info)
        return NodeEntry(info, node_type, asleep)


def encode(value: Any) -> bytes:
    """JSON of a response (msgspec: plain dicts, lists, strings and numbers)."""
    return msgspec.json.encode(value)


__all__ = ["ClientError", "ExtenderArgsWire", "NodeCache", "NodeEntry", "decode_args", "encode"]
