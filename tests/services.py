"""Start the project's services as real processes on loopback (shared by the service tests)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Service:
    """A service script run with the venv's python, reachable at `self.url` once /healthz answers."""

    def __init__(self, script: str, host: str = "127.0.0.1", env: dict | None = None):
        self.port = free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / script), "--host", host, "--port", str(self.port)],
            env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/healthz", timeout=1).ok:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{script} did not answer /healthz on {self.url}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
