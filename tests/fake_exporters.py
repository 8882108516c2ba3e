"""Small processes that serve an energy exporter's exact metric text, where the exporter itself cannot run
(no RAPL here): Kepler 0.10+, Kepler before 0.10, and Scaphandre. The real Prometheus scrapes them.

    python -m tests.fake_exporters KIND --listen HOST:PORT --node NAME --watts W [options]

KIND: kepler (0.10+ names: kepler_node_cpu_joules_total{node_name,path,zone}, kepler_node_cpu_watts,
kepler_pod_cpu_joules_total), kepler-old (kepler_node_{package,platform}_joules_total{instance,mode,...} with
a dynamic and an idle series, kepler_container_package_joules_total), scaphandre
(scaph_host_energy_microjoules, no labels, in µJ). The energy counters advance at `--watts` (split over
`--sockets` packages, and over the dynamic/idle modes for kepler-old), or with `--idle-watts I --peak-watts P`
at I + (P - I) x the host's CPU utilization read from /proc/stat every 0.1 s. `POST /reset`: the counters
restart from 0, as when the exporter restarts. `--kube URL`: Kepler also reports every
pod the API server at URL has bound to the node, at `--pod-watts` each. Like Kepler, it follows the pods in
the background (every 0.5 s): a scrape answers with the counters as of its arrival, never after a round
trip to a slow API server (which would value a sample later than Prometheus stamps it).
"""

from __future__ import annotations

import argparse
import http.server
import json
import threading
import time
import urllib.request

PLATFORM_OVER_PACKAGE = 1.25  # the platform (whole machine) draws more than the CPU package


def host_busy() -> tuple[float, float]:
    """(busy jiffies, all jiffies) of the host, from /proc/stat. Busy is everything but `idle`: the utilization
    rlsched reads, 1 - rate(node_cpu_seconds_total{mode="idle"}), counts iowait as busy too, and the fit is checked
    against this curve (counting iowait as idle here made the two disagree whenever the host waited on a disk)."""
    with open("/proc/stat") as fh:
        fields = [float(x) for x in fh.readline().split()[1:]]
    idle = fields[3]
    total = sum(fields[:8])
    return total - idle, total


class Counter:
    """Energy in J since start (or since the reset), integrated from the watts model."""

    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.t0 = time.time()
        self.last = self.t0
        self.energy_j = args.start_j
        self.watts = args.watts if args.watts is not None else args.idle_watts
        self.pods: dict[tuple[str, str, str], float] = {}  # (namespace, name, uid) -> J
        if args.idle_watts is not None:
            self._prev = host_busy()
            threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        while True:
            time.sleep(0.1)
            busy, total = host_busy()
            d_total = total - self._prev[1]
            if d_total > 0:
                util = min(max((busy - self._prev[0]) / d_total, 0.0), 1.0)
                with self.lock:
                    self._advance()
                    self.watts = self.args.idle_watts + (self.args.peak_watts - self.args.idle_watts) * util
            self._prev = (busy, total)

    def _advance(self) -> None:
        now = time.time()
        self.energy_j += self.watts * (now - self.last)
        for k in self.pods:
            self.pods[k] += self.args.pod_watts * (now - self.last)
        self.last = now

    def reset(self) -> None:
        with self.lock:
            self._advance()
            self.energy_j = 0.0
            self.pods = {k: 0.0 for k in self.pods}

    def read(self, pods: list[tuple[str, str, str]]) -> tuple[float, float, dict]:
        with self.lock:
            self._advance()
            for k in pods:
                self.pods.setdefault(k, 0.0)
            for k in [k for k in self.pods if k not in pods]:
                del self.pods[k]
            return self.energy_j, self.watts, dict(self.pods)


def bound_pods(url: str, node: str) -> list[tuple[str, str, str]]:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/api/v1/pods", timeout=2) as r:
            items = json.loads(r.read()).get("items") or []
    except (OSError, ValueError):
        return []
    out = []
    for p in items:
        meta, spec = p.get("metadata") or {}, p.get("spec") or {}
        if spec.get("nodeName") == node:
            out.append((meta.get("namespace", ""), meta.get("name", ""), meta.get("uid") or meta.get("name", "")))
    return out


def kepler_text(node: str, energy: float, watts: float, sockets: int, pods: dict) -> str:
    lines = ["# HELP kepler_node_cpu_joules_total Energy consumption of cpu at node level in joules",
             "# TYPE kepler_node_cpu_joules_total counter"]
    for zone, share in (("package", 1.0), ("dram", 0.1)):
        for s in range(sockets):
            path = f"/sys/class/powercap/intel-rapl/intel-rapl:{s}" + ("" if zone == "package" else f":{s}")
            lines.append(f'kepler_node_cpu_joules_total{{node_name="{node}",path="{path}",zone="{zone}"}} '
                         f"{energy * share / sockets:.6f}")
    lines += ["# HELP kepler_node_cpu_watts Power consumption of cpu at node level in watts",
              "# TYPE kepler_node_cpu_watts gauge"]
    for s in range(sockets):
        lines.append(f'kepler_node_cpu_watts{{node_name="{node}",path="/sys/class/powercap/intel-rapl/intel-rapl:{s}",'
                     f'zone="package"}} {watts / sockets:.6f}')
    lines += ["# HELP kepler_pod_cpu_joules_total Energy consumption of cpu at pod level in joules",
              "# TYPE kepler_pod_cpu_joules_total counter"]
    for (ns, name, uid), joules in sorted(pods.items()):
        lines.append(f'kepler_pod_cpu_joules_total{{node_name="{node}",pod_id="{uid}",pod_name="{name}",'
                     f'pod_namespace="{ns}",state="running",zone="package"}} {joules:.6f}')
    lines += ["# HELP kepler_build_info A metric with a constant '1' value labeled with version information",
              "# TYPE kepler_build_info gauge",
              'kepler_build_info{arch="amd64",branch="",goversion="go1.24.4",revision="fake",version="v0.10.2"} 1']
    return "\n".join(lines) + "\n"


def kepler_old_text(node: str, energy: float, sockets: int, pods: dict) -> str:
    dynamic_share = 0.6
    lines = []
    for metric, scale, help_ in (("package", 1.0, "Aggregated value in package value from node"),
                                 ("platform", PLATFORM_OVER_PACKAGE, "Aggregated value in platform value from node")):
        lines += [f"# HELP kepler_node_{metric}_joules_total {help_}",
                  f"# TYPE kepler_node_{metric}_joules_total counter"]
        for mode, share in (("dynamic", dynamic_share), ("idle", 1 - dynamic_share)):
            if metric == "package":
                for s in range(sockets):
                    lines.append(f'kepler_node_package_joules_total{{instance="{node}",mode="{mode}",package="{s}",'
                                 f'source="rapl-sysfs"}} {energy * scale * share / sockets:.6f}')
            else:
                lines.append(f'kepler_node_platform_joules_total{{instance="{node}",mode="{mode}",source="acpi"}} '
                             f"{energy * scale * share:.6f}")
    lines += ["# HELP kepler_container_package_joules_total Aggregated value in package value from container",
              "# TYPE kepler_container_package_joules_total counter"]
    for (ns, name, uid), joules in sorted(pods.items()):
        for mode, share in (("dynamic", 0.5), ("idle", 0.5)):
            lines.append(f'kepler_container_package_joules_total{{container_id="{uid}",container_name="app",'
                         f'container_namespace="{ns}",instance="{node}",mode="{mode}",pod_name="{name}",'
                         f'source="rapl-sysfs"}} {joules * share:.6f}')
    return "\n".join(lines) + "\n"


def scaphandre_text(energy: float, watts: float) -> str:
    return "\n".join([
        "# HELP scaph_host_energy_microjoules Energy measurement for the whole host, as extracted from the sensor, "
        "in microjoules.",
        "# TYPE scaph_host_energy_microjoules counter",
        f"scaph_host_energy_microjoules {round(energy * 1e6)}",
        "# HELP scaph_host_power_microwatts Power measurement on the whole host, in microwatts",
        "# TYPE scaph_host_power_microwatts gauge",
        f"scaph_host_power_microwatts {round(watts * 1e6)}",
    ]) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["kepler", "kepler-old", "scaphandre"])
    ap.add_argument("--listen", required=True)
    ap.add_argument("--node", default="")
    ap.add_argument("--watts", type=float, default=None)
    ap.add_argument("--idle-watts", type=float, default=None)
    ap.add_argument("--peak-watts", type=float, default=None)
    ap.add_argument("--sockets", type=int, default=1)
    ap.add_argument("--start-j", type=float, default=123456.0)
    ap.add_argument("--kube", default="")
    ap.add_argument("--pod-watts", type=float, default=2.0)
    args = ap.parse_args()
    if (args.watts is None) == (args.idle_watts is None):
        ap.error("give --watts, or --idle-watts and --peak-watts")
    counter = Counter(args)
    pods_now: list[list[tuple[str, str, str]]] = [[]]
    if args.kube and args.kind != "scaphandre":
        pods_now[0] = bound_pods(args.kube, args.node)

        def follow_pods() -> None:
            while True:
                time.sleep(0.5)
                pods_now[0] = bound_pods(args.kube, args.node)

        threading.Thread(target=follow_pods, daemon=True).start()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path not in ("/metrics", "/healthz"):
                self.send_error(404)
                return
            energy, watts, pod_j = counter.read(pods_now[0])
            if args.kind == "kepler":
                body = kepler_text(args.node, energy, watts, args.sockets, pod_j)
            elif args.kind == "kepler-old":
                body = kepler_old_text(args.node, energy, args.sockets, pod_j)
            else:
                body = scaphandre_text(energy, watts)
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):  # noqa: N802
            if self.path != "/reset":
                self.send_error(404)
                return
            counter.reset()
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    host, _, port = args.listen.rpartition(":")
    server = http.server.ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
