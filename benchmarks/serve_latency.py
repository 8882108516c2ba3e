"""`rlsched serve` latency: POST /prioritize at 100, 1,000 and 5,000 nodes, in both extender modes, and requests/s
under a bounded concurrent load.

The service runs in a process of its own (uvicorn, one worker, as `rlsched serve` runs it) with the DQN (an
untrained network of the default shape: latency does not depend on the weights) or `--model`:
* nodeCacheCapable: false -> the request carries every Node object in full, as kube-scheduler serializes them
  (tests/fixtures/v1-node.json, renamed and resized), and requests come from their annotations. Two cases:
  "full-nodes" sends the same objects every time, as kube-scheduler does while its nodes do not change (the
  service reads each Node once, then finds it by its bytes); "full-nodes-changed" changes every node's
  resourceVersion before each request (every node updated since the last request: the service reads all of
  them again; the worst case, and the first request after a start);
* nodeCacheCapable: true -> the request carries node names; the service's cluster view holds the nodes (fed
  directly here, as its informers would).
Latency is measured by the client, one request at a time (p50, p99 of `--requests` up to 1,000 nodes; of
--requests / (nodes / 1,000), at least 20, above: at 5,000 nodes the p99 of 20 is their slowest), then `--concurrency`
clients send requests back to back for `--load-s` seconds (requests/s, p99 under load).

    .venv/bin/python benchmarks/serve_latency.py [--nodes 100,1000,5000] [--requests 200] [--model Dale.pth]
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
NODE = json.loads((ROOT / "tests" / "fixtures" / "v1-node.json").read_text())
POD = json.loads((ROOT / "tests" / "fixtures" / "v1-pod.json").read_text())
TYPES = ("x3550", "ml110-g5", "ml110-g4")


def nodes(n: int) -> list[dict]:
    out = []
    for i in range(n):
        node = copy.deepcopy(NODE)
        node["metadata"]["name"] = f"worker-{i:05d}"
        node["metadata"]["labels"]["rlsched.io/node-type"] = TYPES[i % 3]
        node["metadata"]["annotations"]["rlsched.io/cpu-requested"] = f"{(i * 37) % 11000}m"
        out.append(node)
    return out


def child(n: int, port: int, model: str | None) -> None:
    """The service: a cluster view of `n` nodes and uvicorn on 127.0.0.1:port."""
    import uvicorn

    from rlmodel.agents.dqn import DQNConfig
    from rlmodel.agents.features import NUM_FEATURES
    from rlmodel.agents.policy import DQNPolicy
    from rlmodel.agents.qnet import NodeScorer
    from rlmodel.live.api import ServeState, create_app
    from rlmodel.live.view import ClusterView
    from rlmodel.policies import make_policy

    cfg = DQNConfig()
    policy = DQNPolicy.load(model) if model else DQNPolicy(NodeScorer(NUM_FEATURES, cfg.hidden, cfg.layers))
    view = ClusterView()
    for node in nodes(n):
        view.upsert_node(node, 0.0)
    gc.freeze()  # as the informer does after a list (rlmodel.live.scheduler)
    state = ServeState(policy=policy, fallback=make_policy("efficient-first"), view=view)
    uvicorn.run(create_app(state), host="127.0.0.1", port=port, log_level="error", access_log=False)


def changed(body: bytes, j: int) -> bytes:
    """`body` with every node's resourceVersion set to a value of request `j` (each Node object is new)."""
    rv = NODE["metadata"]["resourceVersion"]
    return body.replace(f'"resourceVersion": "{rv}"'.encode(), f'"resourceVersion": "{10**9 + j}"'.encode())


def measure(url: str, body: bytes, count: int, change: bool = False) -> list[float]:
    session = requests.Session()
    out = []
    for j in range(count):
        sent = changed(body, j) if change else body
        if change and sent == body:
            raise RuntimeError("the Node objects did not change")
        t0 = time.perf_counter()
        r = session.post(url, data=sent, headers={"Content-Type": "application/json"}, timeout=30)
        out.append(time.perf_counter() - t0)
        if r.status_code != 200 or len(r.json()) == 0:
            raise RuntimeError(f"{url}: HTTP {r.status_code} {r.text[:200]}")
    return out


def load(url: str, body: bytes, concurrency: int, seconds: float) -> tuple[float, float]:
    deadline = time.perf_counter() + seconds

    def worker(_: int) -> list[float]:
        return measure_until(url, body, deadline)

    with ThreadPoolExecutor(concurrency) as pool:
        lat = [x for part in pool.map(worker, range(concurrency)) for x in part]
    return len(lat) / seconds, float(np.percentile(lat, 99))


def measure_until(url: str, body: bytes, deadline: float) -> list[float]:
    session = requests.Session()
    out = []
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        r = session.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=30)
        r.raise_for_status()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="100,1000,5000")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--load-s", type=float, default=10.0)
    parser.add_argument("--model", default=None)
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.model)
        return
    for n in (int(x) for x in args.nodes.split(",")):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, __file__, "--child", str(n), str(port)] + (["--model", args.model] if args.model else [])
        proc = subprocess.Popen(cmd)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the service did not start")
                time.sleep(0.2)
            full = nodes(n)
            cases = (("full-nodes", False, {"Pod": POD, "Nodes": {"items": full}, "NodeNames": None}),
                     ("full-nodes-changed", True, {"Pod": POD, "Nodes": {"items": full}, "NodeNames": None}),
                     ("node-names", False, {"Pod": POD, "Nodes": None,
                                            "NodeNames": [x["metadata"]["name"] for x in full]}))
            for mode, change, body in cases:
                raw = json.dumps(body).encode()
                url = f"http://127.0.0.1:{port}/prioritize"
                count = max(20, args.requests // max(1, n // 1000))
                measure(url, raw, 5)  # warm up
                lat = measure(url, raw, count, change)
                if change:  # under load every request would need bodies of its own: measured one at a time only
                    print(json.dumps({"nodes": n, "mode": mode, "body_mib": round(len(raw) / 2**20, 2),
                                      "requests": count, "p50_ms": round(1000 * float(np.percentile(lat, 50)), 1),
                                      "p99_ms": round(1000 * float(np.percentile(lat, 99)), 1)}), flush=True)
                    continue
                rps, p99_load = load(url, raw, args.concurrency, args.load_s)
                print(json.dumps({"nodes": n, "mode": mode, "body_mib": round(len(raw) / 2**20, 2),
                                  "requests": count, "p50_ms": round(1000 * float(np.percentile(lat, 50)), 1),
                                  "p99_ms": round(1000 * float(np.percentile(lat, 99)), 1),
                                  "concurrency": args.concurrency, "requests_per_s": round(rps, 1),
                                  "p99_under_load_ms": round(1000 * p99_load, 1)}), flush=True)
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
