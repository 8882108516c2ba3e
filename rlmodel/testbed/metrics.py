"""Reading Prometheus: `PrometheusReader` (bounded instant queries) and `WindowPower`, one window's mean power
per node. How each power source's counters become a `WindowPower` is in `rlmodel.testbed.power_sources`.

The host power monitor's metric names are here: `rlsched_vm_energy_joules_total{vm=...}`,
`rlsched_host_energy_joules_total`, and `rlsched_last_sample_timestamp_seconds`, the monitor's clock for
both (the scrape lags a sample by up to one monitor interval).
"""

from __future__ import annotations

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
