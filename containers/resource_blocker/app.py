"""Resource blocker: holds a declared background load (CPU, memory, disk, network) on its node.

    PUT    /load      {"cpu_cores": 1.5, "memory_mb": 512, "disk_write_mbps": 20, "disk_read_mbps": 20,
                       "network_mbps": 10, "network_peer": "http://10.0.0.2:8081/sink"}
    GET    /load      target and what is measured now
    DELETE /load      release everything
    POST   /sink      accepts and discards a network stream (the peer side of network load)
    GET    /healthz, /metrics (Prometheus)

Every field is optional (missing means 0). Negative, non-numeric or unknown fields, cpu_cores above
the cores this process may use, memory above MAX_MEMORY_MB, and so on give 400 with a JSON error
naming the field, and change nothing. Units: cores, MiB, MB/s (disk), Mbit/s (network).

The blocker listens on a host port, so it guards what it can be made to do:
* `network_peer` must resolve only to addresses in ALLOWED_PEERS (comma-separated CIDRs or addresses;
  default: the private ranges cluster nodes use, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fd00::/8).
  Loopback and link-local addresses (169.254.169.254 is a cloud metadata service) are refused unless
  ALLOWED_PEERS names them explicitly; the blocker never streams to an address a client picked freely.
* With BLOCKER_TOKEN set, PUT/DELETE /load and POST /sink need `Authorization: Bearer <token>` (401
  otherwise); the harness sends RLSCHED_BLOCKER_TOKEN when it is set.

Run locally: python containers/resource_blocker/app.py --host 127.0.0.1 --port 8081
(the image runs the same app under gunicorn, one worker, several threads).
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import math
import multiprocessing as mp
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import psutil
import requests
from flask import Flask, Response, jsonify, request
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

FIELDS = ("cpu_cores", "memory_mb", "disk_write_mbps", "disk_read_mbps", "network_mbps")
MAX_BODY_BYTES = 4096
SINK_MAX_BYTES = 16 << 20
CHUNK = 1 << 20  # 1 MiB per disk or network write
PERIOD_S = 0.05  # CPU duty cycle period


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def usable_cores() -> float:
    """Cores this process may use: CPU affinity, capped by a cgroup v2 CPU quota when one is set."""
    cores = float(len(os.sched_getaffinity(0)))
    try:
        with open("/sys/fs/cgroup/cpu.max") as fh:
            quota, period = fh.read().split()
        if quota != "max":
            cores = min(cores, int(quota) / int(period))
    except (OSError, ValueError):
        pass
    return cores


def _cpu_worker(duty, stop, parent_pid: int) -> None:
    """Busy for `duty` of every period, asleep for the rest, until `stop` is set or the blocker is gone."""
    while not stop.is_set() and os.getppid() == parent_pid:  # never outlive the blocker, even after SIGKILL
        d = duty.value
        start = time.perf_counter()
        while time.perf_counter() - start < d * PERIOD_S:
            pass
        time.sleep(max(0.0, (1.0 - d) * PERIOD_S))


class Paced(threading.Thread):
    """Calls `step(nbytes)` so that about `rate_bytes_s` bytes per second pass, until stopped."""

    def __init__(self, rate_bytes_s: float, step, counter: list[int]):
        super().__init__(daemon=True)
        self.rate, self.step, self.counter = rate_bytes_s, step, counter
        self.stop = threading.Event()

    def run(self) -> None:
        start, sent = time.monotonic(), 0
        while not self.stop.is_set():
            due = start + sent / self.rate
            wait = due - time.monotonic()
            if wait > 0 and self.stop.wait(min(wait, 0.5)):
                break
            if wait > 0.5:
                continue
            try:
                n = self.step(CHUNK)
            except Exception:  # noqa: BLE001 (a broken disk or peer must not kill the service)
                n = 0
                self.stop.wait(1.0)
            sent += CHUNK
            self.counter[0] += n


class LoadController:
    """Converges the process to a target load and holds it."""

    def __init__(self, scratch_dir: str, peer_url: str | None):
        self.lock = threading.Lock()
        self.target: dict[str, float] = dict.fromkeys(FIELDS, 0.0)
        self.peer = peer_url
        self.scratch = os.path.join(scratch_dir, f"resource-blocker-{os.getpid()}.bin")
        self.ctx = mp.get_context("spawn")
        self.workers: list[Any] = []
        self.duty = self.ctx.Value("d", 0.0)
        self.stop_cpu = self.ctx.Event()
        self.memory: bytearray | None = None
        self.threads: dict[str, Paced] = {}
        self.bytes = {"disk_write": [0], "disk_read": [0], "network": [0]}
        self.proc = psutil.Process()
        self.measured = {"cpu_cores": 0.0, "rss_mib": 0.0, "disk_write_mbps": 0.0, "disk_read_mbps": 0.0,
                         "network_mbps": 0.0}
        threading.Thread(target=self._measure, daemon=True).start()

    # -- apply
    def apply(self, target: dict[str, float], peer: str | None) -> dict[str, float]:
        with self.lock:
            self._set_cpu(target["cpu_cores"])
            self._set_memory(target["memory_mb"])
            self._set_paced("disk_write", target["disk_write_mbps"] * 1e6, self._disk_write)
            self._set_paced("disk_read", target["disk_read_mbps"] * 1e6, self._disk_read)
            if peer:
                self.peer = peer
            self._set_paced("network", target["network_mbps"] * 1e6 / 8, self._net_send)
            self.target = dict(target)
            return dict(self.target)

    def _set_cpu(self, cores: float) -> None:
        n = math.ceil(cores - 1e-9) if cores > 0 else 0
        if n != len(self.workers):
            self.stop_cpu.set()
            for w in self.workers:
                w.join(timeout=2)
            self.workers, self.stop_cpu = [], self.ctx.Event()
            for _ in range(n):
                w = self.ctx.Process(target=_cpu_worker, args=(self.duty, self.stop_cpu, os.getpid()), daemon=True)
                w.start()
                self.workers.append(w)
        self.duty.value = cores / n if n else 0.0

    def _set_memory(self, mib: float) -> None:
        self.memory = None  # release first, so a change never holds both
        size = int(mib * (1 << 20))
        if size > 0:
            buf = bytearray(size)
            for i in range(0, size, 4096):  # touch every page so it is resident
                buf[i] = 1
            self.memory = buf

    def _set_paced(self, name: str, rate: float, step) -> None:
        old = self.threads.pop(name, None)
        if old:
            old.stop.set()
            old.join(timeout=2)
        if rate > 0:
            t = Paced(rate, step, self.bytes[name])
            self.threads[name] = t
            t.start()

    def _disk_write(self, n: int) -> int:
        with open(self.scratch, "ab") as fh:
            if fh.tell() > 256 * CHUNK:  # keep the scratch file bounded (256 MiB)
                fh.truncate(0)
            fh.write(os.urandom(16) * (n // 16))
            fh.flush()
            os.fsync(fh.fileno())
        return n

    def _disk_read(self, n: int) -> int:
        if not os.path.exists(self.scratch) or os.path.getsize(self.scratch) < n:
            with open(self.scratch, "ab") as fh:
                fh.write(b"\0" * n)
        with open(self.scratch, "rb") as fh:
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)  # read from disk, not the cache
            return len(fh.read(n))

    def _net_send(self, n: int) -> int:
        if not self.peer:
            return 0
        token = os.environ.get("BLOCKER_TOKEN", "")  # the peer blocker shares it
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # no redirects: a peer must not bounce the stream to an address that was never checked
        requests.post(self.peer, data=b"\0" * n, timeout=5, headers=headers,
                      allow_redirects=False).raise_for_status()
        return n

    # -- measure
    def _measure(self) -> None:
        prev_cpu, prev_t = self._cpu_s(), time.monotonic()
        prev_bytes = {k: v[0] for k, v in self.bytes.items()}
        while True:
            time.sleep(1.0)
            cpu, t = self._cpu_s(), time.monotonic()
            dt = t - prev_t
            now_bytes = {k: v[0] for k, v in self.bytes.items()}
            self.measured = {
                "cpu_cores": max(0.0, (cpu - prev_cpu) / dt),
                "rss_mib": self.proc.memory_info().rss / (1 << 20),
                "disk_write_mbps": (now_bytes["disk_write"] - prev_bytes["disk_write"]) / dt / 1e6,
                "disk_read_mbps": (now_bytes["disk_read"] - prev_bytes["disk_read"]) / dt / 1e6,
                "network_mbps": (now_bytes["network"] - prev_bytes["network"]) * 8 / dt / 1e6,
            }
            prev_cpu, prev_t, prev_bytes = cpu, t, now_bytes

    def _cpu_s(self) -> float:
        total = 0.0
        for p in [self.proc, *[psutil.Process(w.pid) for w in self.workers if w.is_alive()]]:
            try:
                c = p.cpu_times()
                total += c.user + c.system
            except psutil.Error:
                pass
        return total


def validate(body: Any, limits: dict[str, float]) -> tuple[dict[str, float], str | None]:
    """The target load from a request body, or raise ValueError naming the field."""
    if not isinstance(body, dict):
        raise ValueError("body: expected a JSON object")
    unknown = sorted(set(body) - set(FIELDS) - {"network_peer"})
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown field (known: {', '.join(FIELDS)}, network_peer)")
    target = {}
    for field in FIELDS:
        value = body.get(field, 0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{field}: expected a number, got {value!r}")
        if value < 0:
            raise ValueError(f"{field}: must be >= 0, got {value}")
        if value > limits[field]:
            raise ValueError(f"{field}: {value} is above the limit {limits[field]:g}")
        target[field] = float(value)
    peer = body.get("network_peer")
    if peer is not None and (not isinstance(peer, str) or not peer.startswith(("http://", "https://"))
                             or len(peer) > 512):
        raise ValueError("network_peer: expected an http(s) URL")
    if peer is not None:
        check_peer(peer, allowed_peers())
    return target, peer


DEFAULT_ALLOWED = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fd00::/8"


def allowed_peers() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """ALLOWED_PEERS as networks (an address alone is a /32 or /128)."""
    out = []
    for item in os.environ.get("ALLOWED_PEERS", DEFAULT_ALLOWED).split(","):
        if item.strip():
            out.append(ipaddress.ip_network(item.strip(), strict=False))
    return out


def check_peer(url: str, allowed: list) -> None:
    """ValueError unless every address `url`'s host resolves to lies in `allowed`; loopback and link-local
    addresses must be named in `allowed` themselves (a default private range does not admit them)."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        raise ValueError("network_peer: expected an http(s) URL with a host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, ValueError):
        raise ValueError(f"network_peer: {host} does not resolve") from None
    for info in infos:
        addr = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        special = addr.is_loopback or addr.is_link_local or addr.is_multicast or addr.is_unspecified
        ok = any(addr in net and (not special or net.prefixlen == net.max_prefixlen or
                                  net.network_address.is_loopback or net.network_address.is_link_local)
                 for net in allowed)
        if not ok:
            raise ValueError(f"network_peer: {host} ({addr}) is not an allowed peer (ALLOWED_PEERS)")


def create_app(scratch_dir: str | None = None) -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    limits = {
        "cpu_cores": usable_cores(),
        "memory_mb": _env_float("MAX_MEMORY_MB", 1024),
        "disk_write_mbps": _env_float("MAX_DISK_MBPS", 200),
        "disk_read_mbps": _env_float("MAX_DISK_MBPS", 200),
        "network_mbps": _env_float("MAX_NETWORK_MBPS", 1000),
    }
    ctl = LoadController(scratch_dir or os.environ.get("SCRATCH_DIR", tempfile.gettempdir()),
                         os.environ.get("NETWORK_PEER_URL"))
    registry = CollectorRegistry()
    g_target = Gauge("resource_blocker_target", "Declared background load", ["resource"], registry=registry)
    g_meas = Gauge("resource_blocker_measured", "Measured load of the blocker", ["resource"], registry=registry)
    app.extensions["load_controller"] = ctl

    def state() -> dict[str, Any]:
        return {"target": dict(ctl.target), "measured": dict(ctl.measured), "limits": limits}

    token = os.environ.get("BLOCKER_TOKEN", "")

    @app.before_request
    def authorize():
        if token and request.method in ("PUT", "DELETE", "POST"):
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return jsonify(error="Authorization: a bearer token is required (BLOCKER_TOKEN)"), 401
        return None

    @app.put("/load")
    def put_load():
        if not request.is_json:
            return jsonify(error="body: expected application/json"), 400
        body = request.get_json(silent=True)
        try:
            target, peer = validate(body, limits)
            if target["network_mbps"] > 0 and not (peer or ctl.peer):
                raise ValueError("network_mbps: needs network_peer (or NETWORK_PEER_URL)")
        except ValueError as exc:
            return jsonify(error=str(exc)), 400
        ctl.apply(target, peer)
        return jsonify(state())

    @app.get("/load")
    def get_load():
        return jsonify(state())

    @app.delete("/load")
    def delete_load():
        ctl.apply(dict.fromkeys(FIELDS, 0.0), None)
        return jsonify(state())

    @app.post("/sink")
    def sink():
        # the peer side of a network stream: read and drop, in bounded chunks, at most SINK_MAX_BYTES a request
        request.max_content_length = SINK_MAX_BYTES
        stream = request.stream
        while stream.read(1 << 16):
            pass
        return "", 204

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.get("/metrics")
    def metrics():
        for k, v in ctl.target.items():
            g_target.labels(k).set(v)
        for k, v in ctl.measured.items():
            g_meas.labels(k).set(v)
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    @app.errorhandler(413)
    def too_large(_):
        return jsonify(error=f"body: larger than {MAX_BODY_BYTES} bytes"), 413

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Resource blocker (development server)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    app = create_app()
    # SIGTERM (kubelet, tests) exits through SystemExit, so the CPU workers are stopped on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app.run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
