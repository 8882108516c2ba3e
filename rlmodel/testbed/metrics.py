"""What the harness reads from Prometheus: energy per node VM over a window, CPU utilization per node.

Energy comes from the host power monitor's counters (`rlsched_vm_energy_joules_total{vm=...}`,
`rlsched_host_energy_joules_total`): the difference between the values Prometheus holds at the
window's end and start, divided by the difference of the monitor's own sample times
(`rlsched_last_sample_timestamp_seconds`, not the scrape times, which lag the samples by up to one
monitor interval), is the mean power over the window in W; times the window's length it is the
window's energy in J. Utilization comes from
node-exporter (`node_cpu_seconds_total`, label `node` set by the scrape config).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from rlmodel.testbed.kube import TestbedError

VM_ENERGY = "rlsched_vm_energy_joules_total"
HOST_ENERGY = "rlsched_host_energy_joules_total"
SAMPLE_TIME = "rlsched_last_sample_timestamp_seconds"


@dataclass(frozen=True)
class WindowPower:
    """Mean power over one window, per node (W), plus the host package and the window itself."""

    start_s: float
    end_s: float
    node_watts: dict[str, float]
    host_watts: float
    node_cpu_util: dict[str, float]
    source: str = "rlsched-monitor"
    """the power source (`power.source`)"""
    zone: str = "package"
    """what the source measures: package, core, uncore, dram, psys, platform (Kepler) or host (Scaphandre)"""
    pod_watts: tuple[tuple[str, str, str, float], ...] = ()
    """(node, namespace, pod, mean W) per pod, when the source attributes energy to pods (Kepler)"""

    @property
    def seconds(self) -> float:
        return self.end_s - self.start_s

    def node_energy_j(self, node: str) -> float:
        return self.node_watts[node] * self.seconds


class PrometheusReader:
    """Bounded queries (timeout, retries) against one Prometheus."""

    def __init__(self, url: str, *, timeout_s: float = 10.0, retries: int = 3, scrape_interval_s: float = 1.0):
        from prometheus_api_client import PrometheusConnect
        from urllib3.util.retry import Retry

        self.url = url
        self.timeout_s = timeout_s
        self.scrape_interval_s = scrape_interval_s
        retry = Retry(total=retries, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504),
                      allowed_methods=("GET",), raise_on_status=False)
        self.prom = PrometheusConnect(url=url, disable_ssl=True, retry=retry, timeout=timeout_s)

    def query(self, promql: str, at_s: float | None = None) -> list[dict]:
        """Instant query; the result vector, or TestbedError with one line."""
        import requests
        from prometheus_api_client.exceptions import PrometheusApiClientException

        params = {"time": f"{at_s:.3f}"} if at_s is not None else None
        try:
            return self.prom.custom_query(promql, params=params, timeout=self.timeout_s)
        except (requests.RequestException, PrometheusApiClientException, ValueError) as exc:
            detail = type(exc).__name__ + (f": {str(exc).splitlines()[0][:160]}" if str(exc) else "")
            raise TestbedError(f"Prometheus at {self.url}: query {promql!r} failed ({detail})") from None

    def _by(self, promql: str, label: str, at_s: float) -> dict[str, float]:
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in self.query(promql, at_s)}

    def wait_for_sample(self, after_s: float, timeout_s: float) -> float:
        """Block until Prometheus holds a power monitor sample taken at or after `after_s` (Unix s); returns an
        instant at which an instant query sees it."""
        deadline = time.time() + timeout_s
        metric = SAMPLE_TIME
        while True:
            now = time.time()
            stamps = [float(r["value"][1]) for r in self.query(metric, now)]
            if stamps and min(stamps) >= after_s:
                return now
            if time.time() >= deadline:
                have = f"last sample at {max(stamps):.1f}" if stamps else "no samples at all"
                raise TestbedError(f"Prometheus at {self.url}: no {metric} sample after the window ({have}); is the "
                                   "host power monitor running and in the scrape config?")
            time.sleep(min(0.25, self.scrape_interval_s / 2))

    def window_power(self, vms: dict[str, str], start_s: float, end_s: float) -> WindowPower:
        """Mean watts per node over [start_s, end_s] (Unix s); `vms` maps node name -> VM name."""
        # the end is read when the first sample taken after the window is in Prometheus; the start, the last
        # sample before the window: the measured span covers the window (a sample interval wider at most)
        seen_at = self.wait_for_sample(end_s, timeout_s=max(10.0, 5 * self.scrape_interval_s))
        watts = {}
        # one query per instant for every series the monitor exports, so values and sample time are consistent
        names = f'{{__name__=~"{VM_ENERGY}|{HOST_ENERGY}|{SAMPLE_TIME}"}}'
        at0, at1 = self.query(names, start_s), self.query(names, seen_at)

        def pick(result: list[dict], name: str, vm: str | None = None) -> float:
            for r in result:
                m = r["metric"]
                if m.get("__name__") == name and (vm is None or m.get("vm") == vm):
                    return float(r["value"][1])
            return math.nan

        t0, t1 = pick(at0, SAMPLE_TIME), pick(at1, SAMPLE_TIME)
        for node, vm in vms.items():
            e0, e1 = pick(at0, VM_ENERGY, vm), pick(at1, VM_ENERGY, vm)
            if math.isnan(e0) or math.isnan(e1):
                seen = ", ".join(sorted({r["metric"].get("vm", "") for r in at1 if "vm" in r["metric"]})) or "none"
                raise TestbedError(f"node {node}: no {VM_ENERGY}{{vm=\"{vm}\"}} in Prometheus over the window "
                                   f"(VMs seen: {seen}); set power.vm_prefix if the VMs are named differently")
            watts[node] = _rate(e0, e1, t0, t1, what=f"node {node}")
        host = _rate(pick(at0, HOST_ENERGY), pick(at1, HOST_ENERGY), t0, t1, what="host")
        window = max(end_s - start_s, self.scrape_interval_s)
        span = f"{max(2 * self.scrape_interval_s, window):.0f}s"
        util = self._by(f'1 - avg by (node) (rate(node_cpu_seconds_total{{mode="idle"}}[{span}]))', "node", end_s)
        return WindowPower(start_s, end_s, watts, host, {n: util.get(n, math.nan) for n in vms})


def _rate(e0: float, e1: float, t0: float, t1: float, *, what: str) -> float:
    if math.isnan(e0) or math.isnan(e1):
        raise TestbedError(f"{what}: energy counter missing in Prometheus over the window")
    if t1 <= t0:
        raise TestbedError(f"{what}: fewer than two energy samples in the window (window shorter than the scrape "
                           "interval, or the power monitor stopped)")
    if e1 < e0:
        raise TestbedError(f"{what}: energy counter went backwards ({e0:.1f} -> {e1:.1f} J): the power monitor "
                           "restarted during the window")
    return (e1 - e0) / (t1 - t0)
