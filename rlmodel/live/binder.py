"""Where the scheduler's Binding calls run: in its own binder thread, or in a process of its own.

A Binding call costs its caller about 0.4 ms of CPU in the official client (request building, urllib3) on an
idle machine and 0.9-1.1 ms in the scheduler, where it competes with the scheduling loop and the informers for
one interpreter lock. `ProcessBinder` moves the call into a child process with its own interpreter: the
scheduler's binder threads hand it Bindings (a pipe message each, tens of microseconds) and wait for the replies
without holding the lock, so the next decision runs meanwhile on the other core. The child's pipe holds the
next few Bindings (`depth`, 4 by default): it starts the next one as soon as it has answered one, instead of
waiting until the scheduler, busy with a decision, gets the interpreter lock back to hand it one. That wait,
not the call, bounded the binds before (measured in docs/scheduler.md).

Both binders have one call, `bind(name, namespace, body, timeout_s)`, that returns when the API server has
answered 2xx and raises `kubernetes.client.exceptions.ApiException` (with the HTTP status) when it answered
otherwise; any other failure raises `BinderError` or the client's exception. The scheduler treats both alike.

The child builds its client from a `ClientSpec` (kubeconfig and context, or the in-cluster service account):
the same loader the command uses, so it reaches the same API server with the same credentials. It exits when
its stdin closes (the parent ended, however it ended) after answering what it was sent, and ignores Ctrl-C (the
parent stops it after the binds in flight). A child found dead at a bind is replaced before it; one that dies
or stalls fails the binds waiting on it (their pods back off) and is replaced at the next bind; a replacement
that cannot start is tried again at the next bind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
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


class _Call:
    """One Binding handed to a child: its reply, or why it has none."""

    __slots__ = ("done", "status", "reason")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.status: int = 0
        self.reason: str = ""

    def resolve(self, status: int, reason: str) -> None:
        self.status, self.reason = status, reason
        self.done.set()


class _Child:
    """One binder process and the calls sent to it that have no reply yet (its reader thread resolves them)."""

    def __init__(self, proc: subprocess.Popen[bytes], pending: bytes):
        self.proc, self.pending = proc, pending
        self.calls: dict[int, tuple[_Call, float]] = {}  # id -> (call, its timeout_s), in the order sent
        self.lock = threading.Lock()
        self.progress = time.monotonic()  # the last reply, or when the child went from idle to busy
        self.closed = False  # its reader has ended: no call may wait on it any more
        self.reader: threading.Thread | None = None


class ProcessBinder:
    """Binds from a child process (see the module docstring). `start()` waits until its client is built.

    The child is `python -m rlmodel.live.binder`, one JSON line per request on its stdin and one per reply on its
    stdout: no pickling and no re-import of the caller's main module (as multiprocessing's spawn would do).

    Pipelined: up to `depth` calls of `bind` may wait on one child at once. The child makes one Binding call at a
    time (one in flight at the API server, as from one client thread), in the order sent; the others wait in its
    pipe, so it starts the next Binding as soon as a reply is out, without waiting for this process to hand it
    one (which it could only do once it holds the interpreter lock: after the decision being computed). A reader
    thread hands each reply to its caller. A child that ends, or sends no reply for a call's `timeout_s` +
    `grace_s` while calls wait (it answers each within its own timeout when healthy), fails the calls waiting on
    it (`BinderError`: their pods back off) and is replaced at the next bind."""

    def __init__(self, spec: ClientSpec, *, depth: int = 4, start_timeout_s: float = 60.0, grace_s: float = 5.0):
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self.spec, self.depth, self.start_timeout_s, self.grace_s = spec, depth, start_timeout_s, grace_s
        self._child: _Child | None = None
        self._lock = threading.Lock()  # the child's lifecycle and its stdin
        self._slots = threading.BoundedSemaphore(depth)
        self._ids = itertools.count()
        self._stopped = True  # until start(), and after stop()
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.proc.pid if child is not None else None

    @property
    def slots(self) -> int:
        """Calls of `bind` that may wait at once: the binder threads that keep this child busy."""
        return self.depth

    def start(self) -> None:
        with self._lock:
            self._start()
            self._stopped = False

    def _start(self) -> None:
        spec = json.dumps(dataclasses.asdict(self.spec))
        proc = subprocess.Popen([sys.executable, "-m", "rlmodel.live.binder", spec], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, bufsize=0)
        assert proc.stdout is not None
        try:
            line, pending = _read_line(proc, b"", self.start_timeout_s)
            status, message = json.loads(line)
        except (BinderError, ValueError) as exc:
            _end(proc)
            proc.stdout.close()
            raise BinderError(str(exc) if isinstance(exc, BinderError)
                              else f"the binder process wrote {line[:80]!r}, not a reply") from None
        if status != "ready":
            _end(proc)
            proc.stdout.close()
            raise BinderError(message)
        child = self._child = _Child(proc, pending)
        child.reader = threading.Thread(target=self._read, args=(child,), name="rlsched-binder-reader", daemon=True)
        child.reader.start()

    def _read(self, child: _Child) -> None:
        """The reader thread of one child: replies to their callers until the child ends or stalls."""
        assert child.proc.stdout is not None
        fd, why = child.proc.stdout.fileno(), ""
        try:
            while not why:
                while b"\n" in child.pending:
                    line, _, child.pending = child.pending.partition(b"\n")
                    try:
                        ident, status, reason = json.loads(line)
                        with child.lock:
                            call, _ = child.calls.pop(int(ident))
                            child.progress = time.monotonic()
                    except (ValueError, TypeError, KeyError):
                        why = f"the binder process wrote {line[:80]!r}, not a reply"
                        break
                    call.resolve(int(status), str(reason))
                if why:
                    break
                with child.lock:
                    limit = max((t for _, t in child.calls.values()), default=None)
                    since = time.monotonic() - child.progress
                if limit is not None and since > limit + self.grace_s:
                    why = f"the binder process sent no reply within {limit + self.grace_s:g} s (killed)"
                    child.proc.kill()  # the Popen we started: safe to signal
                    break
                if not select.select([fd], [], [], 0.5 if limit is None else min(limit + self.grace_s - since,
                                                                                    0.5))[0]:
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    try:
                        code: int | str = child.proc.wait(self.grace_s)
                    except subprocess.TimeoutExpired:  # its output closed, the process not (yet) ended
                        code = "unknown"
                    why = f"the binder process ended (exit status {code})"
                child.pending += chunk
        except OSError as exc:
            why = f"the binder process's reply pipe failed ({exc})"
        finally:
            with child.lock:
                calls, child.calls = child.calls, {}
                child.closed = True
            for call, _ in calls.values():
                call.resolve(0, why or "the binder process stopped")
            child.proc.stdout.close()

    def bind(self, name: str, namespace: str, body: Obj, timeout_s: float) -> None:
        from kubernetes.client.exceptions import ApiException

        with self._slots:
            call = _Call()
            with self._lock:
                if self._stopped:
                    raise BinderError("the binder process is stopped")
                child = self._child
                if child is None or child.proc.poll() is not None or child.closed:
                    self.restarts += 1  # died, stalled, or a restart failed: a new one
                    self._end()
                    self._start()
                    child = self._child
                assert child is not None and child.proc.stdin is not None
                ident = next(self._ids)
                with child.lock:
                    if child.closed:  # it ended a moment ago: this pod backs off, the next bind replaces it
                        raise BinderError(f"bind {namespace}/{name}: the binder process ended")
                    if not child.calls:
                        child.progress = time.monotonic()
                    child.calls[ident] = (call, timeout_s)
                try:
                    child.proc.stdin.write(json.dumps([ident, name, namespace, body, timeout_s]).encode() + b"\n")
                except OSError as exc:  # the child is gone: its reader fails the calls waiting on it
                    with child.lock:
                        child.calls.pop(ident, None)
                    raise BinderError(f"bind {namespace}/{name}: the binder process is gone ({exc})") from None
            call.done.wait()  # always resolved: by its reply, or by the reader when the child ends or stalls
        if call.status == 0:
            raise BinderError(f"bind {namespace}/{name}: {call.reason}")
        if not 200 <= call.status < 300:
            raise ApiException(status=call.status, reason=call.reason)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ends the child this object started: asks (stdin closed: it answers what it was sent, then exits), then
        kills it if it has not ended."""
        with self._lock:
            self._stopped = True
            self._end(timeout_s)

    def _end(self, timeout_s: float = 5.0) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        _end(child.proc, timeout_s)
        if child.reader is not None:
            child.reader.join(timeout_s)


def _read_line(proc: subprocess.Popen[bytes], pending: bytes, timeout_s: float) -> tuple[bytes, bytes]:
    """The child's next line and what follows it; BinderError when it ends or stays silent for `timeout_s`."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout_s
    while b"\n" not in pending:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise BinderError(f"the binder process did not answer within {timeout_s:g} s")
        chunk = os.read(fd, 65536)
        if not chunk:
            raise BinderError(f"the binder process ended (exit status {proc.wait()})")
        pending += chunk
    line, _, rest = pending.partition(b"\n")
    return line, rest


def _end(proc: subprocess.Popen[bytes], timeout_s: float = 5.0) -> None:
    """Ends a child we started: closing its stdin asks it to finish and exit; killed if it has not ended."""
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:  # the Popen is the one we started: safe to signal
        proc.kill()
        proc.wait(timeout_s)


class BinderPool:
    """Several binders: `bind` takes a free slot (waiting if all are busy); a binder has `slots` of them (a
    process binder its pipeline depth, anything else one). For `bind_concurrency` > 1 with process binders: one
    child per Binding call in flight at the API server, each kept busy by as many binder threads as its depth."""

    def __init__(self, binders: list[Any]):
        if not binders:
            raise ValueError("a binder pool needs at least one binder")
        self.binders = binders
        self._free: queue.Queue[Any] = queue.Queue()
        for level in range(max(getattr(b, "slots", 1) for b in binders)):
            for b in binders:  # interleaved: the calls spread over the children
                if getattr(b, "slots", 1) > level:
                    self._free.put(b)

    @property
    def slots(self) -> int:
        """Calls of `bind` that may wait at once (the scheduler starts as many binder threads)."""
        return sum(getattr(b, "slots", 1) for b in self.binders)

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


def process_binder(spec: ClientSpec, processes: int = 1, depth: int = 4) -> BinderPool:
    """A pool of `processes` process binders (one per Binding call in flight), each pipelined `depth` deep."""
    return BinderPool([ProcessBinder(spec, depth=depth) for _ in range(processes)])


def serve(spec: ClientSpec, rfile: BinaryIO, wfile: BinaryIO) -> None:
    """The binder process: build the client, then one Binding per request line, in order, until stdin closes.

    Request `[id, name, namespace, body, timeout_s]`; reply `[id, status, reason]` (status 0: no HTTP answer)."""
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
            ident, name, namespace, body, timeout_s = json.loads(line)
        except ValueError:
            reply(None, 0, "not a request line")  # the parent takes it for a broken child and replaces it
            continue
        try:
            create_binding(core, name, namespace, body, _request_timeout=timeout_s)
            reply(ident, 201, "")
        except ApiException as exc:
            reply(ident, int(exc.status or 0) or 500, str(exc.reason or ""))
        except Exception as exc:  # noqa: BLE001 - a connection error, a timeout: the parent backs the pod off
            reply(ident, 0, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us after the binds
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # nothing but replies on the reply pipe, whatever a library prints
    with contextlib.suppress(BrokenPipeError, KeyboardInterrupt):
        serve(ClientSpec(**json.loads(sys.argv[1])), sys.stdin.buffer, replies)
