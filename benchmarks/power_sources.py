"""Power sources read from a real Prometheus: window accuracy against known rates, and read time per window.

For each cluster size, one fake exporter per node (tests/fake_exporters.py: Kepler 0.10+ text, or Scaphandre's)
serves an energy counter advancing at a known rate (node i: 20 + i W; Kepler nodes with two sockets on every
third node), each on its own loopback address, scraped every second by a Prometheus started here. Then
`--windows` windows of `--window-s` seconds are read the way `--backend kubernetes` reads them
(`rlmodel.testbed.power_sources`). Printed per source and size: the largest relative error of a node's window
watts against its known rate, and how long `window()` took after the window's end (median, max), which
includes waiting for the first scrape after the end (up to one scrape interval).

    .venv/bin/python benchmarks/power_sources.py [--nodes 3,30] [--windows 5] [--window-s 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the fake exporters and the harness ship with the tests

from rlmodel.testbed.kube import NodeInfo  # noqa: E402
from rlmodel.testbed.metrics import PrometheusReader  # noqa: E402
from rlmodel.testbed.power_sources import KeplerSource, NodeMatcher, ScaphandreSource  # noqa: E402
from tests.testbed import _stop_process, free_port_all, start_prometheus, wait_http  # noqa: E402


def measure(kind: str, n: int, windows: int, window_s: float) -> dict:
    port = free_port_all()
    nodes = [NodeInfo(f"node-{i:03d}", f"127.0.{1 + (i + 2) // 250}.{(i + 2) % 250 + 2}", 4, 8) for i in range(n)]
    rates = {nd.name: 20.0 + i for i, nd in enumerate(nodes)}
    procs: list[subprocess.Popen] = []
    with TemporaryDirectory(prefix="rlsched-power-bench-") as tmp:
        try:
            for i, nd in enumerate(nodes):
                cmd = [sys.executable, "-m", "tests.fake_exporters", kind, "--listen", f"{nd.address}:{port}",
                       "--node", nd.name, "--watts", str(rates[nd.name])]
                if kind == "kepler" and i % 3 == 0:
                    cmd += ["--sockets", "2"]
                procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            for nd in nodes:
                wait_http(f"http://{nd.address}:{port}/metrics")
            url = start_prometheus(Path(tmp), {kind: [f"{nd.address}:{port}" for nd in nodes]}, procs)
            reader = PrometheusReader(url, scrape_interval_s=1.0)
            matcher = NodeMatcher(nodes)
            source = KeplerSource(reader, nodes, matcher, pods=False) if kind == "kepler" else \
                ScaphandreSource(reader, nodes, matcher)
            metric = "kepler_node_cpu_joules_total" if kind == "kepler" else "scaph_host_energy_microjoules"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # the first samples lag Prometheus's start by several seconds
                if len(reader.query(metric)) >= n:
                    break
                time.sleep(0.5)
            time.sleep(3)
            errors, reads = [], []
            for _ in range(windows):
                start = time.time()
                time.sleep(window_s)
                end = time.time()
                t0 = time.perf_counter()
                w = source.window(start, end)
                reads.append(time.perf_counter() - t0)
                errors += [abs(w.node_watts[nd.name] / rates[nd.name] - 1) for nd in nodes]
        finally:
            for p in procs:
                _stop_process(p)
    return {"source": kind, "nodes": n, "windows": windows, "window_s": window_s,
            "max_error_pct": round(100 * max(errors), 2), "mean_error_pct": round(100 * statistics.mean(errors), 2),
            "read_s_median": round(statistics.median(reads), 3), "read_s_max": round(max(reads), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="3,30", help="cluster sizes, comma-separated")
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--window-s", type=float, default=3.0)
    args = parser.parse_args()
    for n in (int(x) for x in args.nodes.split(",")):
        for kind in ("kepler", "scaphandre"):
            print(json.dumps(measure(kind, n, args.windows, args.window_s)), flush=True)


if __name__ == "__main__":
    main()
