"""A testbed in a box, on loopback: what `rlsched cluster up` and `--backend minikube` talk to in the tests.

* kmock serves the Kubernetes API (in a thread), with its gaps filled here: Namespace paths, the
  pods/binding subresource (sets spec.nodeName and copies the Binding's annotations, as the API server
  does). N nodes own the addresses 127.0.0.2, 127.0.0.3, ...
* `StubMinikube`: a `minikube` executable that records its arguments (JSON lines) and answers `status`.
* `Kubelets` plays the kubelets and the DaemonSet controller, as KWOK does: for every DaemonSet it
  starts the real program on every node's address (node-exporter, the resource blocker); for every
  test app pod bound to a node it starts the real test app there, then marks the pod Ready; deleting
  stops them. `KubeProxy` plays kube-proxy for the test app's NodePort on the first node's address.
* The power monitor runs on a fake RAPL tree whose package draws `rapl_watts`; one qemu-like busy
  process per node (named after the node) gives it VMs to attribute power to.
Prometheus is started by the code under test (`cluster up`), from the Debian binary.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import http.server
import itertools
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from tests.fakes import FakeRapl, start_fake_vm
from tests.services import ROOT

NODE_EXPORTER = "prometheus-node-exporter"


def free_port_all() -> int:
    """A port free on every address (bound on 0.0.0.0), so 127.0.0.2:PORT, 127.0.0.3:PORT... are free too."""
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def wait_http(url: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {seconds} s")


def start_prometheus(folder: Path, jobs: dict[str, list[str]], procs: list) -> str:
    """A real Prometheus scraping `jobs` (name -> HOST:PORT targets) every second, its data in `folder`; the process
    is appended to `procs` (the caller stops it); returns its URL once /-/ready answers."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
              "scrape_configs": [{"job_name": name, "static_configs": [{"targets": targets}]}
                                 for name, targets in jobs.items()]}
    (folder / "prometheus.yml").write_text(json.dumps(config))
    port = free_port_all()
    procs.append(subprocess.Popen(
        ["prometheus", f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/-/ready")
    return url


# ------------------------------------------------------------------------------------------ Kubernetes API
def _patch_kmock_paths() -> None:
    """kmock parses /api/v1/namespaces[/NAME] as a namespace with no resource: make it the namespaces resource;
    and it finds one object by checking them all: look its key up instead."""
    from kmock._internal import parsing

    if getattr(parsing.parse_path, "_rlsched", False):
        return
    original = parsing.parse_path

    def parse_path(path: str):
        parts = path.strip("/").split("/")
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) in (3, 4):
            return parsing.ParsedPath("", "v1", "namespaces", None, parts[3] if len(parts) == 4 else None, None)
        return original(path)

    parse_path._rlsched = True  # type: ignore[attr-defined]
    parsing.parse_path = parse_path

    # kmock finds the one object a read, create, update or delete names by checking every object it holds: at
    # 1,000 nodes ~15 ms a request, where an API server looks the key up. Look up the key kmock stores objects
    # under first; fall back to the scan (which also answers the misses, as before).
    from kmock._internal import k8s

    original_get = k8s.KubernetesEmulator._KubernetesEmulator__get_obj  # type: ignore[attr-defined]

    def get_obj(self, request, strict):
        if strict and request.name is not None and request.resource is not None:
            key = (request.resource, request.namespace, request.name)
            if key in self._objects:
                return self._objects[key]
        return original_get(self, request, strict)

    k8s.KubernetesEmulator._KubernetesEmulator__get_obj = get_obj  # type: ignore[attr-defined]



class _RecentRequests(list):
    """kmock's log of every request it has served, kept short. kmock routes each request by checking, for each
    reaction in turn, whether the request is among those the reaction's filter lets through, which it finds by
    filtering the whole log: a request cost grows with every request served before it (0.3 s per GET after
    ~1,500 requests, where a Binding, matched by the first reaction, stays at 20 ms). The request being routed
    is always the newest, so the last few entries are all routing needs; tests never assert on the log."""

    def append(self, item) -> None:
        super().append(item)
        if len(self) > 24:  # keeps the newest 12: more than the requests ever in flight at once here
            del self[:-12]


def _clients(target) -> None:
    """The official client's APIs for `target.url` as `target.api`, `.core`, `.apps`, `.coordination`."""
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = target.url
    target.api = client.ApiClient(cfg)
    target.core = client.CoreV1Api(target.api)
    target.apps = client.AppsV1Api(target.api)
    target.coordination = client.CoordinationV1Api(target.api)


class KubeApi:
    """kmock's Kubernetes emulator served on 127.0.0.1 from a background thread."""

    def __init__(self, port: int = 0):
        import kmock

        _patch_kmock_paths()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.port = 0
        self.emulator = None
        self._error: BaseException | None = None

        # Each reaction answers with a kmock.Response whose status is explicit, success included: kmock copies a
        # returned Response's status onto the reaction itself, so one 404 would otherwise stick to every later
        # answer of the same reaction (a bind after the 404 of a missing pod came back 404 though it was bound).
        def status(code: int, reason: str = "", message: str = ""):
            return kmock.Response(status=code, payload={
                "apiVersion": "v1", "kind": "Status", "status": "Success" if code < 300 else "Failure", "code": code,
                **({"reason": reason} if reason else {}), **({"message": message} if message else {})})

        async def bind(request):
            key = (request.resource, request.namespace, request.name)
            objects = self.emulator.objects
            if key not in objects:
                return status(404, "NotFound", f"pods {request.name!r} not found")
            bound = (objects[key].raw.get("spec") or {}).get("nodeName")
            if bound:  # as the API server: a pod is bound once
                return status(409, "Conflict", f"pod {request.name} is already assigned to node {bound!r}")
            # as the API server's BindingREST: spec.nodeName and the Binding's annotations, in one update
            change = {"spec": {"nodeName": request.data["target"]["name"]}}
            annotations = (request.data.get("metadata") or {}).get("annotations")
            if annotations:
                change["metadata"] = {"annotations": annotations}
            objects[key].patch(change)
            # and a watch event, as for any update (kmock sends one only for the updates it serves itself)
            await self.emulator._buses[request.resource].put({"type": "MODIFIED", "object": objects[key].raw})
            return status(201)

        def replace(request):  # kmock answers PUT with 404: store the whole object, as an update does
            key = (request.resource, request.namespace, request.name)
            objects = self.emulator.objects
            if key not in objects:
                return status(404, "NotFound", f"{request.resource.plural} {request.name!r} not found")
            objects[key] = request.data
            return kmock.Response(status=200, payload=request.data)

        async def main():
            emu = kmock.KubernetesEmulator()
            object.__setattr__(emu, "_requests", _RecentRequests())
            emu.resources.load_bundled()
            emu[kmock.resource("v1/pods"), kmock.subresource("binding"), "post"] << bind
            emu[kmock.resource("coordination.k8s.io/v1/leases"), "put"] << replace
            self.emulator = emu
            async with emu, kmock.Server(emu, port=port) as server:
                self.port = server.port
                self._loop = asyncio.get_running_loop()
                self._stop = asyncio.Event()
                self._ready.set()
                await self._stop.wait()

        def run():
            try:
                asyncio.run(main())
            except BaseException as exc:  # surfaced by start()
                self._error = exc
                self._ready.set()

        self.thread = threading.Thread(target=run, daemon=True, name="kmock")
        self.thread.start()
        if not self._ready.wait(20) or self._error:
            raise RuntimeError(f"kmock did not start: {self._error!r}")
        self.url = f"http://127.0.0.1:{self.port}"
        _clients(self)

    def add_node(self, name: str, address: str, cpu: str = "2", memory: str = "4Gi",
                 labels: dict | None = None) -> None:
        self.core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}},
                               "status": {"addresses": [{"type": "InternalIP", "address": address},
                                                        {"type": "Hostname", "address": name}],
                                          "allocatable": {"cpu": cpu, "memory": memory}}})

    def write_kubeconfig(self, path: Path, context: str) -> None:
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        }))

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(timeout=10)


class KubeApiProcess:
    """The same kmock API server in a process of its own (`python -m tests.testbed --kmock`), as a real API
    server is: its work does not share this process's GIL with the code under test. Same `core`, `url`,
    `port`, `write_kubeconfig` and `stop()` as `KubeApi`, but no `emulator` to reach into."""

    def __init__(self, port: int = 0):
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.testbed", "--kmock", str(port)], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.proc.kill()
            raise RuntimeError(f"kmock process did not start: {line!r}")
        self.port = int(line)
        self.url = f"http://127.0.0.1:{self.port}"
        _clients(self)

    write_kubeconfig = KubeApi.write_kubeconfig

    def stop(self) -> None:
        """Ends the process this object started (closing its stdin is its signal to stop)."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _serve_kmock(port: int) -> None:
    api = KubeApi(port=port)
    print(api.port, flush=True)
    sys.stdin.read()  # until the parent closes our stdin (or dies)
    api.stop()


# ------------------------------------------------------------------------------------------ minikube
STUB = """#!{python}
import json, os, sys
with open({log!r}, "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\\n")
args = sys.argv[1:]
if "status" in args:
    print(json.dumps([{{"Name": n, "Host": "Running", "Kubelet": "Running"}} for n in {nodes!r}]))
sys.exit(int(os.environ.get("STUB_MINIKUBE_EXIT", "0")))
"""


class StubMinikube:
    """`minikube` that records its command lines in `calls` (one list of arguments per call)."""

    def __init__(self, folder: Path, nodes: list[str]):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "minikube"
        self.log = folder / "minikube-calls.jsonl"
        self.path.write_text(STUB.format(python=sys.executable, log=str(self.log), nodes=nodes))
        self.path.chmod(self.path.stat().st_mode | stat.S_IXUSR)

    @property
    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------ kubelets
class KubeProxy:
    """Forwards GET requests on ADDRESS:PORT to the test app endpoints, round-robin (kube-proxy's NodePort)."""

    def __init__(self, address: str, port: int):
        self.endpoints: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self._rr = itertools.count()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                with proxy._lock:
                    eps = list(proxy.endpoints)
                if not eps:
                    self.send_error(503, "no endpoints")
                    return
                host, port = eps[next(proxy._rr) % len(eps)]
                try:
                    conn = http.client.HTTPConnection(host, port, timeout=30)
                    conn.request("GET", self.path)
                    r = conn.getresponse()
                    body = r.read()
                    conn.close()
                except OSError:
                    self.send_error(502, "endpoint down")
                    return
                self.send_response(r.status)
                self.send_header("Content-Type", r.getheader("Content-Type", "text/plain"))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((address, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Kubelets:
    """Plays kubelets and the DaemonSet controller for the nodes in `kube` (see the module docstring)."""

    def __init__(self, kube: KubeApi, nodes: dict[str, str], namespace: str, ports: dict[str, int],
                 work_dir: Path, proxy: KubeProxy, never_ready: bool = False, agents_namespace: str = "rlsched-system"):
        self.kube, self.nodes, self.namespace, self.ports = kube, nodes, namespace, ports
        self.agents_namespace = agents_namespace
        self.work_dir, self.proxy = work_dir, proxy
        self.never_ready = never_ready
        self.agents: dict[tuple[str, str], subprocess.Popen] = {}  # (daemonset, node) -> process
        self.pods: dict[str, tuple[subprocess.Popen, tuple[str, int]]] = {}  # pod -> (process, endpoint)
        self._stop = threading.Event()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True, name="kubelets")
        self.thread.start()

    def _agent_cmd(self, ds: str, address: str) -> list[str] | None:
        if ds == "node-exporter":
            textfile = self.work_dir / f"textfile-{address}"
            textfile.mkdir(parents=True, exist_ok=True)
            return [NODE_EXPORTER, f"--web.listen-address={address}:{self.ports['node_exporter']}",
                    "--no-collector.systemd", f"--collector.textfile.directory={textfile}"]
        if ds == "resource-blocker":
            return [sys.executable, str(ROOT / "containers/resource_blocker/app.py"), "--host", address, "--port",
                    str(self.ports["resource_blocker"])]
        return None

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self._sync()
            except Exception as exc:  # noqa: BLE001 - recorded, the loop goes on like a kubelet
                self.errors.append(repr(exc))

    def _sync(self) -> None:
        dss = {d.metadata.name for d in self.kube.apps.list_namespaced_daemon_set(self.agents_namespace).items}
        for ds in dss:
            for node, address in self.nodes.items():
                if (ds, node) not in self.agents:
                    cmd = self._agent_cmd(ds, address)
                    if cmd:
                        self.agents[(ds, node)] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                                                   stderr=subprocess.DEVNULL)
        for key in [k for k in self.agents if k[0] not in dss]:
            _stop_process(self.agents.pop(key))
        pods = {p.metadata.name: p for p in self.kube.core.list_namespaced_pod(self.namespace).items}
        for name, p in pods.items():
            if name in self.pods or not p.spec.node_name or self.never_ready:
                continue
            address = self.nodes[p.spec.node_name]
            port = free_port_all()
            proc = subprocess.Popen([sys.executable, str(ROOT / "testapp/app.py"), "--host", address, "--port",
                                     str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_http(f"http://{address}:{port}/healthz")
            self.pods[name] = (proc, (address, port))
            with self.proxy._lock:
                self.proxy.endpoints.append((address, port))
            self.kube.core.patch_namespaced_pod_status(name, self.namespace, {"status": {
                "phase": "Running", "podIP": address,
                "conditions": [{"type": "Ready", "status": "True"}]}})
        for name in [n for n in self.pods if n not in pods]:
            proc, endpoint = self.pods.pop(name)
            with self.proxy._lock:
                self.proxy.endpoints.remove(endpoint)
            _stop_process(proc)

    def kill_agent(self, ds: str, node: str) -> None:
        """Make a node's agent stop answering (SIGSTOP: the port stays bound, requests hang)."""
        os.kill(self.agents[(ds, node)].pid, 19)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=10)
        for proc in self.agents.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, 18)  # SIGCONT, in case it was stopped
            _stop_process(proc)
        for proc, _ in self.pods.values():
            _stop_process(proc)


def _stop_process(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------------------------------ the box
class Testbed:
    """Everything above, plus a power monitor on fake RAPL and an rlsched.toml pointing at it all."""

    __test__ = False

    def __init__(self, tmp: Path, *, nodes: int = 3, profile: str = "rlsched", rapl_watts: float = 40.0,
                 vm_duty: tuple[float, ...] = (0.1, 0.2, 0.3), window_s: float = 3.0, never_ready: bool = False,
                 host_monitor: bool = True):
        self.tmp = tmp
        self.profile = profile
        self.rapl_watts = rapl_watts
        self.node_names = [profile] + [f"{profile}-m{i + 1:02d}" for i in range(1, nodes)]
        self.addresses = {n: f"127.0.0.{i + 2}" for i, n in enumerate(self.node_names)}
        self.ports = {"node_exporter": free_port_all(), "resource_blocker": free_port_all(),
                      "testapp_node_port": free_port_all()}
        self._cleanup: list = []
        try:
            self.kube = KubeApi()
            self._cleanup.append(self.kube.stop)
            for n in self.node_names:
                self.kube.add_node(n, self.addresses[n])
            self.kubeconfig = tmp / "kubeconfig"
            self.kube.write_kubeconfig(self.kubeconfig, profile)
            self.minikube = StubMinikube(tmp / "bin", self.node_names)
            self.proxy = KubeProxy(self.addresses[self.node_names[0]], self.ports["testapp_node_port"])
            self._cleanup.append(self.proxy.stop)
            self.kubelets = Kubelets(self.kube, self.addresses, "rlsched", self.ports, tmp / "kubelets", self.proxy,
                                     never_ready=never_ready)
            self._cleanup.append(self.kubelets.stop)
            self.monitor_port = free_port_all()
            if host_monitor:
                # the host: fake RAPL, one qemu-like process per node, the power monitor serving metrics
                self.rapl = FakeRapl(tmp / "powercap", [rapl_watts], [2**32], process=True)
                self.rapl.__enter__()
                self._cleanup.append(lambda: self.rapl.__exit__(None, None, None))
                self.vms = [start_fake_vm(n, vm_duty[i % len(vm_duty)]) for i, n in enumerate(self.node_names)]
                for vm in self.vms:
                    self._cleanup.append(lambda vm=vm: _stop_process(vm))
                self.monitor = subprocess.Popen(
                    [sys.executable, str(ROOT / "rlmodel/power/kvm_power_monitor.py"), "--rapl-root",
                     str(tmp / "powercap"), "--interval", "0.5", "--listen", f"127.0.0.1:{self.monitor_port}",
                     "--csv", str(tmp / "power.csv")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                self._cleanup.append(lambda: _stop_process(self.monitor))
                wait_http(f"http://127.0.0.1:{self.monitor_port}/metrics")
            self.prom_port = free_port_all()
            self.config = tmp / "rlsched.toml"
            self.config.write_text(f"""
state_dir = "{tmp / 'state'}"

[minikube]
profile = "{profile}"
nodes = {nodes}
binary = "{self.minikube.path}"

[kubernetes]
kubeconfig = "{self.kubeconfig}"
request_timeout_s = 5
retries = 2

[ports]
node_exporter = {self.ports['node_exporter']}
resource_blocker = {self.ports['resource_blocker']}
testapp_node_port = {self.ports['testapp_node_port']}

[prometheus]
url = "http://127.0.0.1:{self.prom_port}"
listen = "127.0.0.1:{self.prom_port}"
scrape_interval_s = 1

[power]
monitor = "127.0.0.1:{self.monitor_port}"

[jmeter]
threads = 2

[measurement]
window_s = {window_s}
ready_timeout_s = 15
node_timeout_s = 2

[slo]
latency_ms = 2000
""")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for fn in reversed(self._cleanup):
            with contextlib.suppress(Exception):  # best-effort teardown
                fn()
        self._cleanup = []


if __name__ == "__main__" and sys.argv[1:2] == ["--kmock"]:
    _serve_kmock(int(sys.argv[2]))
