"""The test app whose requests JMeter times: a bounded amount of real work per request.

    GET /work?mode=cpu|memory|io|mixed&intensity=1..20
    GET /healthz
    GET /metrics   request counts and a latency histogram (Prometheus)

Work per unit of intensity: cpu, 20,000 SHA-256 rounds; memory, 8 MiB allocated and touched;
io, 1 MiB written, fsync'd and read back; mixed, a third of each. The response reports the work
done (`work`: SHA-256 rounds, bytes of memory touched, bytes read back from disk) and its wall time
(`seconds`), so a client can check that the work was really done, not only that time passed.

Run locally: python testapp/app.py --host 127.0.0.1 --port 8080
(the image runs the same app under gunicorn).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time

from flask import Flask, Response, jsonify, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

MODES = ("cpu", "memory", "io", "mixed")
MAX_INTENSITY = 20


def work_cpu(units: float) -> dict:
    rounds = int(20_000 * units)
    h = b"rlsched"
    for _ in range(rounds):
        h = hashlib.sha256(h).digest()
    return {"sha256_rounds": rounds, "digest": h.hex()[:16]}


def work_memory(units: float) -> dict:
    size = int(8 * (1 << 20) * units)
    buf = bytearray(size)
    for i in range(0, size, 4096):
        buf[i] = 1
    return {"memory_bytes": sum(buf) * 4096}


def work_io(units: float, folder: str) -> dict:
    size = int((1 << 20) * units)
    fd, path = tempfile.mkstemp(prefix="testapp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(size))
            fh.flush()
            os.fsync(fh.fileno())
        with open(path, "rb") as fh:
            return {"io_bytes": len(fh.read())}
    finally:
        os.unlink(path)


def create_app(scratch_dir: str | None = None) -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 1024
    folder = scratch_dir or os.environ.get("SCRATCH_DIR", tempfile.gettempdir())
    registry = CollectorRegistry()
    requests_total = Counter("testapp_requests", "Requests to /work", ["mode", "code"], registry=registry)
    latency = Histogram("testapp_request_duration_seconds", "Time spent doing the work of /work", ["mode"],
                        registry=registry, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))

    @app.get("/work")
    def work():
        mode = request.args.get("mode", "cpu")
        raw = request.args.get("intensity", "1")
        if mode not in MODES:
            requests_total.labels("invalid", "400").inc()
            return jsonify(error=f"mode: expected one of {', '.join(MODES)}, got {mode[:20]!r}"), 400
        try:
            intensity = int(raw)
        except ValueError:
            intensity = 0
        if not 1 <= intensity <= MAX_INTENSITY:
            requests_total.labels(mode, "400").inc()
            return jsonify(error=f"intensity: expected a whole number from 1 to {MAX_INTENSITY}, got {raw[:20]!r}"), 400
        start = time.perf_counter()
        if mode == "cpu":
            done = work_cpu(intensity)
        elif mode == "memory":
            done = work_memory(intensity)
        elif mode == "io":
            done = work_io(intensity, folder)
        else:
            done = {**work_cpu(intensity / 3), **work_memory(intensity / 3), **work_io(intensity / 3, folder)}
        elapsed = time.perf_counter() - start
        latency.labels(mode).observe(elapsed)
        requests_total.labels(mode, "200").inc()
        return jsonify(mode=mode, intensity=intensity, seconds=elapsed, work=done)

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.get("/metrics")
    def metrics():
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="rlsched test app (development server)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    create_app().run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
