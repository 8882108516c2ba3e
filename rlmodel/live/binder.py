"""Where the scheduler's Binding calls run: in its own binder thread, or in a process of its own.

A Binding call costs its caller about 0.4 ms of CPU in the official client (request building, urllib3) on an
idle machine and 0.9-1.1 ms in the scheduler, where it competes with the scheduling loop and the informers for
one interpreter lock. `ProcessBinder` moves the call into a child process with its own interpreter: the
scheduler's binder thread hands it the Binding (a pipe message, tens of microseconds) and waits for the reply
without holding the lock, so the next decision runs meanwhile on the other core.

Both binders have one call, `bind(name, namespace, body, timeout_s)`, that returns when the API server has
answered 2xx and raises `kubernetes.client.exceptions.ApiException` (with the HTTP status) when it answered
otherwise; any other failure raises `BinderError` or the client's exception. The scheduler treats both alike.

The child builds its client from a `ClientSpec` (kubeconfig and context, or the in-cluster service account):
the same loader the command uses, so it reaches the same API server with the same credentials. It exits when
its stdin closes (the parent ended, however it ended) and ignores Ctrl-C (the parent stops it after the binds in
flight). A child found dead at a bind is replaced before it; one that dies or stalls during a bind fails that
bind (its pod backs off) and is replaced; a replacement that cannot start is tried again at the next bind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, BinaryIO

from rlmodel.errors import RlschedError
from rlmodel.live.podspec import Obj, create_binding


class BinderError(RlschedError):
    """The binder process could not be started, or did not answer."""


@dataclass(frozen=True)
class ClientSpec:
    """How to reach the API server, in a form another process can rebuild the client from."""

    kubeconfig: str | None = None
    """kubeconfig file (None: ~/.kube/config, or in-cluster, see `incluster`)"""
    context: str | None = None
    """kubeconfig context (None: the current one)"""
    incluster: bool = False
    """use the pod's service account (token and CA under /var/run/secrets/kubernetes.io/serviceaccount)"""

    @classmethod
    def resolve(cls, kubeconfig: str | os.PathLike[str] | None, context: str | None) -> ClientSpec:
        """In-cluster when neither is given and the process runs in a pod, else the kubeconfig."""
        if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            return cls(incluster=True)
        return cls(kubeconfig=os.fspath(kubeconfig) if kubeconfig is not None else None, context=context)

    def api_client(self) -> Any:
        """A `kubernetes.client.ApiClient`; RlschedError with one line when the configuration is unusable."""
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        try:
            if self.incluster:
                cfg = client.Configuration()
                config.load_incluster_config(client_configuration=cfg)
                return client.ApiClient(cfg)
            return config.new_client_from_config(config_file=self.kubeconfig, context=self.context)
        except (ConfigException, OSError, TypeError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            where = ("in-cluster service account" if self.incluster
                     else f"kubeconfig {self.kubeconfig or '~/.kube/config'}")
            raise RlschedError(f"{where}: {first}") from None

    def core(self) -> Any:
        """A `kubernetes.client.CoreV1Api` on `api_client()`."""
        from kubernetes import client

        return client.CoreV1Api(self.api_client())


class ThreadBinder:
    """Binds from the calling thread with the given CoreV1Api (or any object with its Binding method)."""

    def __init__(self, core: Any):
        self.core = core

    def start(self) -> None:
        pass

    def bind(self, name: str, namespace: str, body: Obj, timeout_s: float) -> None:
        create_binding(self.core, name, namespace, body, _request_timeout=timeout_s)

    def stop(self) -> None:
        pass


class ProcessBinder:
    """Binds from a child process (see the module docstring). `start()` waits until its client is built.

    The child is `python -m rlmodel.live.binder`, one JSON line per request on its stdin and one per reply on its
    stdout: no pickling and no re-import of the caller's main module (as multiprocessing's spawn would do)."""

    def __init__(self, spec: ClientSpec, *, start_timeout_s: float = 60.0, grace_s: float = 5.0):
        self.spec, self.start_timeout_s, self.grace_s = spec, start_timeout_s, grace_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._pending = b""
        self._lock = threading.Lock()  # one bind in flight (several: a BinderPool of these)
        self._stopped = True  # until start(), and after stop()
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        with self._lock:
            self._start()
            self._stopped = False

    def _start(self) -> None:
        spec = json.dumps(dataclasses.asdict(self.spec))
        self._proc = subprocess.Popen([sys.executable, "-m", "rlmodel.live.binder", spec], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, bufsize=0)
        self._pending = b""
        try:
            status, message = self._reply(self.start_timeout_s)
        except BinderError:
            self._end()
            raise
        if status != "ready":
            self._end()
            raise BinderError(message)

    def _reply(self, timeout_s: float) -> list[Any]:
        """The child's next reply line, decoded; BinderError when it ends or stays silent for `timeout_s`."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise BinderError(f"the binder process did not answer within {timeout_s:g} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise BinderError(f"the binder process ended (exit status {self._proc.wait()})")
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        try:
            return json.loads(line)
        except ValueError:
            raise BinderError(f"the binder process wrote {line[:80]!r}, not a reply") from None

    def bind(self, name: str, namespace: str, body: Obj, timeout_s: float) -> None:
        from kubernetes.client.exceptions import ApiException

        with self._lock:
            if self._stopped:
                raise BinderError("the binder process is stopped")
            if self._proc is None or self._proc.poll() is not None:  # died, or a restart failed: a new one
                self.restarts += 1
                self._end()
                self._start()
            assert self._proc is not None and self._proc.stdin is not None
            try:
                self._proc.stdin.write(json.dumps([name, namespace, body, timeout_s]).encode() + b"\n")
                # the call has its own timeout; the margin covers a child that stalls without answering
                status, reason = self._reply(timeout_s + self.grace_s)
            except (BinderError, OSError) as exc:
                self.restarts += 1
                self._end()
                self._start()
                raise BinderError(f"bind {namespace}/{name}: {exc} (restarted)") from None
        if status == 0:
            raise BinderError(f"bind {namespace}/{name}: {reason}")
        if not 200 <= status < 300:
            raise ApiException(status=status, reason=reason)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ends the child this object started: asks (stdin closed), then kills it if it has not ended."""
        with self._lock:
            self._stopped = True
            self._end(timeout_s)

    def _end(self, timeout_s: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()  # the child reads EOF and exits
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:  # the Popen is the one we started: safe to signal
            proc.kill()
            proc.wait(timeout_s)


class BinderPool:
    """Several binders, one call in flight on each: `bind` takes a free one (waiting if all are busy). For
    `bind_concurrency` > 1 with process binders: each binder thread of the scheduler gets a child to itself."""

    def __init__(self, binders: list[Any]):
        if not binders:
            raise ValueError("a binder pool needs at least one binder")
        self.binders = binders
        self._free: queue.Queue[Any] = queue.Queue()
        for b in binders:
            self._free.put(b)

    @property
    def pids(self) -> list[int | None]:
        return [getattr(b, "pid", None) for b in self.binders]

    @property
    def restarts(self) -> int:
        return sum(getattr(b, "restarts", 0) for b in self.binders)

    def start(self) -> None:
        started = []
        try:
            for b in self.binders:
                b.start()
                started.append(b)
        except BaseException:
            for b in started:
                b.stop()
            raise

    def bind(self, name: str, namespace: str, body: Obj, timeout_s: float) -> None:
        b = self._free.get()
        try:
            b.bind(name, namespace, body, timeout_s)
        finally:
            self._free.put(b)

    def stop(self) -> None:
        for b in self.binders:
            b.stop()


def process_binder(spec: ClientSpec, processes: int = 1) -> BinderPool:
    """A pool of `processes` process binders: one per bind in flight."""
    return BinderPool([ProcessBinder(spec) for _ in range(processes)])


def serve(spec: ClientSpec, rfile: BinaryIO, wfile: BinaryIO) -> None:
    """The binder process: build the client, then one Binding per request line until stdin closes."""
    from kubernetes.client.exceptions import ApiException

    def reply(*values: Any) -> None:
        wfile.write(json.dumps(list(values)).encode() + b"\n")
        wfile.flush()

    try:
        core = spec.core()
    except RlschedError as exc:
        reply("error", str(exc))
        return
    reply("ready", "")
    for line in rfile:
        try:
            name, namespace, body, timeout_s = json.loads(line)
        except ValueError:
            reply(0, "not a request line")
            continue
        try:
            create_binding(core, name, namespace, body, _request_timeout=timeout_s)
            reply(201, "")
        except ApiException as exc:
            reply(int(exc.status or 0) or 500, str(exc.reason or ""))
        except Exception as exc:  # noqa: BLE001 - a connection error, a timeout: the parent backs the pod off
            reply(0, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us after the binds
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # nothing but replies on the reply pipe, whatever a library prints
    with contextlib.suppress(BrokenPipeError, KeyboardInterrupt):
        serve(ClientSpec(**json.loads(sys.argv[1])), sys.stdin.buffer, replies)
