"""Running the live scheduler as a service: a model that is hot-reloaded, and the /healthz, /readyz and /metrics
endpoints (loopback by default)."""

from __future__ import annotations

import http.server
import logging
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from rlmodel.errors import RlschedError
from rlmodel.live.scheduler import Scheduler

log = logging.getLogger("rlsched.scheduler")


class ModelReloader:
    """Watches a model file: when it changes (or on `reload()`, e.g. SIGHUP), loads it, checks it, and swaps the
    scheduler's policy; a file that fails to load is refused with a warning and the old model keeps serving."""

    def __init__(self, path: Path, scheduler: Scheduler, loader: Callable[[Path], object], poll_s: float = 2.0):
        self.path, self.scheduler, self.loader, self.poll_s = path, scheduler, loader, poll_s
        self._mtime = self._stamp()
        self._stop = threading.Event()
        self.reloads = self.refused = 0

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def reload(self) -> bool:
        """Load the file now; True when the new model serves."""
        try:
            policy = self.loader(self.path)
        except RlschedError as exc:
            self.refused += 1
            log.warning("model %s refused, the previous model keeps serving: %s", self.path, exc)
            return False
        self.scheduler.policy = policy  # type: ignore[assignment]  # one reference: the swap is atomic
        self.reloads += 1
        log.info("model %s reloaded", self.path)
        return True

    def run(self) -> None:
        while not self._stop.wait(self.poll_s):
            stamp = self._stamp()
            if stamp is not None and stamp != self._mtime:
                self._mtime = stamp
                self.reload()

    def start(self) -> None:
        threading.Thread(target=self.run, name="rlsched-reload", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


def parse_listen(listen: str) -> tuple[str, int]:
    """(host, port) of `--listen HOST:PORT` (an IPv6 host in brackets); RlschedError in one line otherwise."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise RlschedError(f"--listen {listen}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def listen_socket(listen: str) -> socket.socket:
    """A TCP socket bound and listening on `--listen HOST:PORT` (port 0: one the system picks; the socket's
    getsockname() says which), or RlschedError in one line: a bad address, a port in use, an address not here."""
    host, port = parse_listen(listen)
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise RlschedError(f"--listen {listen}: cannot listen: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn and http.server do
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise RlschedError(f"--listen {listen}: cannot listen: {exc.strerror or exc}") from None
    return sock


def url_of(sock: socket.socket) -> str:
    """http://HOST:PORT of a listening socket, with the port it really got (an IPv6 host in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve_health(listen: str, scheduler: Scheduler) -> http.server.ThreadingHTTPServer:
    """/healthz (the process answers), /readyz (caches synced, a policy loaded; says where CPU in use comes
    from) and /metrics on `listen` (HOST:PORT, bound by `listen_socket`, as `rlsched serve` is), in a daemon thread."""
    sock = listen_socket(listen)

    class Handler(http.server.BaseHTTPRequestHandler):
        timeout = 5

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._send(200, b"ok\n", "text/plain")
            elif path == "/readyz":
                ready = scheduler.ready
                synced = {k: "synced" if v else "syncing" for k, v in scheduler.synced.items()}
                body = (f"{'ready' if ready else 'not ready'}: nodes {synced['nodes']}, pods {synced['pods']}, "
                        f"policy {scheduler.policy.name}, CPU in use from {scheduler.cpu_source}\n").encode()
                self._send(200 if ready else 503, body, "text/plain")
            elif path == "/metrics":
                self._send(200, generate_latest(scheduler.metrics.registry), CONTENT_TYPE_LATEST)
            else:
                self._send(404, b"try /healthz, /readyz or /metrics\n", "text/plain")

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
            pass

    # the server takes the socket already bound (IPv4 or IPv6) instead of binding one of its own family
    server = http.server.ThreadingHTTPServer(sock.getsockname()[:2], Handler, bind_and_activate=False)
    server.socket.close()
    server.socket, server.address_family = sock, sock.family
    server.server_address = sock.getsockname()
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="rlsched-health", daemon=True).start()
    return server
