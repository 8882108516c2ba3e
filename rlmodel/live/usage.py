"""CPU in use per node, measured: node-exporter's `node_cpu_seconds_total` in Prometheus.

Busy cores of a node = the sum over its CPUs of (1 - the rate of idle seconds) over `window_s`, the same
reading the testbed's power windows use (`rlmodel.testbed.metrics`), in cores. A series belongs to the node
named by its `node` label (the testbed's scrape config, and the usual kubernetes_sd relabelling, add it);
without one, to the node whose name or one of whose `status.addresses` is the host part of `instance`.
Series that match no node are ignored; nodes with no series keep the estimate from requests.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from rlmodel.live.podspec import Obj

log = logging.getLogger("rlsched.live")


def busy_cores_query(window_s: float) -> str:
    """The PromQL for busy cores per scrape target, over `window_s`."""
    return (f'sum by (node, instance) (1 - rate(node_cpu_seconds_total{{mode="idle"}}[{max(window_s, 1.0):g}s]))')


def _host(instance: str) -> str:
    """"10.0.0.5:9100" -> "10.0.0.5", "[fd00::1]:9100" -> "fd00::1", "node-a" -> "node-a"."""
    if instance.startswith("["):
        return instance[1:].partition("]")[0]
    host, sep, port = instance.rpartition(":")
    return host if sep and port.isdigit() and ":" not in host else instance


def match_nodes(result: list[dict], nodes: Mapping[str, Obj]) -> dict[str, float]:
    """{node name: busy cores} from an instant-query result of `busy_cores_query`."""
    by_address: dict[str, str] = {}
    for name, node in nodes.items():
        by_address[name] = name
        for addr in ((node.get("status") or {}).get("addresses") or []):
            if isinstance(addr, Mapping) and isinstance(addr.get("address"), str):
                by_address.setdefault(addr["address"], name)
    out: dict[str, float] = {}
    for series in result:
        labels = series.get("metric") or {}
        try:
            cores = float(series["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        if not math.isfinite(cores):
            continue
        label = labels.get("node")
        owner = label if isinstance(label, str) and label in nodes else \
            by_address.get(_host(str(labels.get("instance", ""))))
        if owner is not None:
            out[owner] = out.get(owner, 0.0) + max(cores, 0.0)
    return out


class PrometheusUsage:
    """Reads busy cores per node from the Prometheus at `url` (bounded: `timeout_s` per query)."""

    def __init__(self, url: str, *, window_s: float = 60.0, timeout_s: float = 10.0):
        from rlmodel.testbed.metrics import PrometheusReader

        self.url, self.window_s = url, window_s
        self.reader = PrometheusReader(url, timeout_s=timeout_s, retries=1)

    def read(self, nodes: Mapping[str, Obj]) -> dict[str, float]:
        """{node: busy cores}; raises TestbedError (one line naming the query) when Prometheus fails."""
        return match_nodes(self.reader.query(busy_cores_query(self.window_s)), nodes)


__all__ = ["PrometheusUsage", "busy_cores_query", "match_nodes"]
