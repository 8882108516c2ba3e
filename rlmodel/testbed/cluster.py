"""`rlsched cluster up|down|status|apply|delete`: Minikube, images, manifests, Prometheus, and checks that all answer.

up      minikube start (profile, driver, --nodes, --cpus, --memory); images built with the Docker SDK and
        loaded with `minikube image load` (unless skip_images); manifests applied (create or update);
        Prometheus started from its binary with a config rendered for the nodes' addresses and the host
        power monitor; then waits until every node's node-exporter and resource blocker answer.
status  each piece up or down.
down    deletes the manifests' objects, stops the Prometheus `up` started, and `minikube delete`
        (unless keep_minikube).
apply   any cluster (`--backend kubernetes`): the manifests only, on the context `kubernetes.context` (else the
        kubeconfig's current one), the agents' DaemonSets limited to the nodes `kubernetes.node_selector`
        selects; then waits until those nodes' agents answer. No `minikube`, no Prometheus: the cluster's own
        Prometheus scrapes node-exporter and the power source (docs/testbed.md, "Any Kubernetes cluster").
delete  any cluster: the test app pods and the manifests' objects.

Nothing here needs root; every subprocess gets an argument list (no shell) and a timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from rlmodel.assets import asset_path
from rlmodel.atomic import atomic_path
from rlmodel.testbed.config import TestbedConfig
from rlmodel.testbed.kube import Kube, NodeInfo, TestbedError, load_manifests, with_registry
from rlmodel.testbed.prometheus import render_config, write_config

# image tag -> (build context, Dockerfile relative to it); the tags are those in the manifests. The contexts are
# package data (containers/resource_blocker, testapp/ and jmeter/ in the source tree).
IMAGES = {
    "rlsched/resource-blocker:latest": (asset_path("resource_blocker"), "Dockerfile"),
    "rlsched/testapp:latest": (asset_path("testapp"), "Dockerfile"),
    "rlsched/jmeter:5.6.3": (asset_path("jmeter"), "Dockerfile"),
}

SCHEDULER_IMAGE = "rlsched/scheduler:latest"  # the live scheduler's (built from a context made at build time)
SCHEDULER_EXTRAS = ("testbed", "serve")  # the extras the scheduler image installs (Kubernetes, Prometheus, FastAPI)


def scheduler_image_context(out: Path) -> Path:
    """Write the scheduler image's build context into the folder `out` and return it: the installed `rlmodel`
    package with its files (assets copied, never linked), `requirements.txt` (the package's dependencies and
    those of SCHEDULER_EXTRAS, from its metadata) and the Dockerfile (`containers/scheduler`)."""
    import importlib.metadata

    import rlmodel

    out.mkdir(parents=True, exist_ok=True)
    package = Path(rlmodel.__file__).resolve().parent
    target = out / "rlmodel"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(package, target, symlinks=False, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    lines = []
    for req in importlib.metadata.requires("rlsched") or []:
        spec, _, marker = req.partition(";")
        marker = marker.strip()
        if "extra ==" in marker:
            extra = marker.split("extra ==", 1)[1].strip().strip("'\"")
            if extra not in SCHEDULER_EXTRAS:
                continue
            marker = ""
        lines.append(spec.strip() + (f"; {marker}" if marker else ""))
    (out / "requirements.txt").write_text("\n".join(dict.fromkeys(lines)) + "\n", encoding="utf-8")
    shutil.copyfile(asset_path("scheduler_image", "Dockerfile"), out / "Dockerfile")
    return out


Say = Callable[[str], None]
# Prometheus processes started by this process (kept so they are reaped here, not left as zombies)
_CHILDREN: dict[int, subprocess.Popen] = {}


@dataclass(frozen=True)
class Check:
    """One piece of the testbed and whether it answers."""

    piece: str
    where: str
    up: bool
    detail: str = ""


# ---------------------------------------------------------------------------------------- minikube
def minikube(cfg: TestbedConfig, *args: str, timeout_s: float = 120.0, check: bool = True) -> str:
    """Run `minikube -p PROFILE ARGS...`; its stdout, or TestbedError with its last line of output."""
    exe = shutil.which(cfg.minikube.binary) or cfg.minikube.binary
    cmd = [exe, "-p", cfg.minikube.profile, *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except FileNotFoundError:
        raise TestbedError(f"{cfg.minikube.binary}: not found (install minikube: https://minikube.sigs.k8s.io/docs/"
                           "start/, or set minikube.binary)") from None
    except subprocess.TimeoutExpired:
        raise TestbedError(f"`minikube {' '.join(args)}` did not finish within {timeout_s:g} s") from None
    if check and proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise TestbedError(f"`minikube {' '.join(args)}` failed (exit {proc.returncode}): {tail[0][:300]}")
    return proc.stdout


def start_args(cfg: TestbedConfig) -> list[str]:
    m = cfg.minikube
    return ["start", f"--driver={m.driver}", f"--nodes={m.nodes}", f"--cpus={m.cpus}", f"--memory={m.memory_mib}mb"]


# ---------------------------------------------------------------------------------------- images
def build_and_load_images(cfg: TestbedConfig, say: Say) -> None:
    """Build every image with the Docker SDK and load it into the cluster's nodes."""
    try:
        import docker
        from docker.errors import BuildError, DockerException
    except ImportError:  # pragma: no cover - the testbed extra installs it
        raise TestbedError("the docker package is missing: pip install 'rlsched[testbed]'") from None
    host = cfg.images.docker_host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    problem = _unreachable(host)
    if problem:
        # checked first: the docker package leaks its socket when the engine is not there
        raise TestbedError(_no_docker(RuntimeError(f"{host}: {problem}")))
    try:
        client = docker.DockerClient(base_url=cfg.images.docker_host) if cfg.images.docker_host \
            else docker.from_env()
    except DockerException as exc:
        raise TestbedError(_no_docker(exc)) from None
    with client:
        try:
            client.ping()
        except (DockerException, requests.RequestException) as exc:
            raise TestbedError(_no_docker(exc)) from None
        with tempfile.TemporaryDirectory(prefix="rlsched-image-") as tmp:
            images = {**IMAGES, SCHEDULER_IMAGE: (scheduler_image_context(Path(tmp)), "Dockerfile")}
            for tag, (context, dockerfile) in images.items():
                say(f"building {tag} from {context}")
                try:
                    client.images.build(path=str(context), dockerfile=dockerfile, tag=tag, rm=True)
                except (BuildError, DockerException, requests.RequestException) as exc:
                    raise TestbedError(f"building {tag}: {str(exc).splitlines()[0][:300]}") from None
                say(f"loading {tag} into minikube profile {cfg.minikube.profile}")
                minikube(cfg, "image", "load", tag, timeout_s=600)


def _unreachable(host: str) -> str:
    """Why the Docker engine at `host` (unix:// or tcp://) cannot be connected to, or "" if it can."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(host)
    try:
        if url.scheme in ("unix", "http+unix"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(5)
                s.connect(url.path)
        elif url.scheme in ("tcp", "http", "https"):
            with socket.create_connection((url.hostname or "localhost", url.port or 2375), timeout=5):
                pass
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return ""


def _no_docker(exc: Exception) -> str:
    return (f"no Docker engine reachable ({str(exc).splitlines()[0][:200]}): start Docker, set images.docker_host, "
            "or run with --skip-images if the images are loaded already")


# ---------------------------------------------------------------------------------------- prometheus
def state_dir(cfg: TestbedConfig) -> Path:
    return Path(cfg.state_dir) / cfg.minikube.profile


def prometheus_config(cfg: TestbedConfig, nodes: list[NodeInfo]) -> dict:
    p = cfg.ports
    return render_config(
        node_exporters={n.name: f"{n.address}:{p.node_exporter}" for n in nodes},
        resource_blockers={n.name: f"{n.address}:{p.resource_blocker}" for n in nodes},
        testapps={nodes[0].name: f"{nodes[0].address}:{p.testapp_node_port}"} if nodes else {},
        power_monitor=cfg.power.monitor or None,
        scrape_interval_s=cfg.prometheus.scrape_interval_s,
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks since boot (/proc/PID/stat field 22), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return [a.decode("utf-8", "replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        return []


def _write_pid(path: Path, pid: int, config_path: Path) -> None:
    """pid, start time and config: what identifies the Prometheus we started, whatever reuses the pid later."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(f"{pid} {_start_ticks(pid)} {config_path.resolve()}\n", encoding="utf-8")


def _read_pid(path: Path) -> int | None:
    """The pid of the Prometheus that `up` started, if it still runs: the process must have the recorded
    start time and our --config.file. Anything else (a stale file, a reused pid) is never signalled."""
    try:
        fields = path.read_text().split()
        pid, started, config = int(fields[0]), int(fields[1]), fields[2]
    except (OSError, ValueError, IndexError):
        return None
    if not _pid_alive(pid) or _start_ticks(pid) != started:
        return None
    if f"--config.file={config}" not in _cmdline(pid):
        return None
    return pid


def start_prometheus(cfg: TestbedConfig, nodes: list[NodeInfo], say: Say) -> int:
    """Start (or reload) the Prometheus `up` manages; returns its pid once /-/ready answers."""
    folder = state_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "prometheus.yml"
    write_config(config_path, prometheus_config(cfg, nodes))
    pid_file = folder / "prometheus.pid"
    pid = _read_pid(pid_file)
    if pid is not None:
        os.kill(pid, signal.SIGHUP)  # reload the re-rendered config
        say(f"Prometheus (pid {pid}) reloaded with {config_path}")
    else:
        exe = shutil.which(cfg.prometheus.binary)
        if exe is None:
            raise TestbedError(f"{cfg.prometheus.binary}: not found (Debian: apt-get install prometheus; or set "
                               "prometheus.binary)")
        log = open(folder / "prometheus.log", "ab")  # noqa: SIM115 - handed to the child process
        try:
            proc = subprocess.Popen(
                [exe, f"--config.file={config_path.resolve()}", f"--storage.tsdb.path={(folder / 'data').resolve()}",
                 f"--web.listen-address={cfg.prometheus.listen}"],  # no --web.enable-lifecycle: reload by SIGHUP
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        pid = proc.pid
        _CHILDREN[pid] = proc
        _write_pid(pid_file, pid, config_path)
        say(f"Prometheus started (pid {pid}) on {cfg.prometheus.listen}, config {config_path}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            break
        if _answers(cfg.prometheus.url.rstrip("/") + "/-/ready", 1.0):
            return pid
        time.sleep(0.2)
    raise TestbedError(f"Prometheus did not become ready at {cfg.prometheus.url}; see {folder / 'prometheus.log'}")


def stop_prometheus(cfg: TestbedConfig) -> int | None:
    """Stop the Prometheus `up` started (SIGTERM, then SIGKILL); its pid, or None if none ran."""
    pid_file = state_dir(cfg) / "prometheus.pid"
    pid = _read_pid(pid_file)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _pid_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        _reap(pid)
    pid_file.unlink(missing_ok=True)
    return pid


def _reap(pid: int) -> None:
    proc = _CHILDREN.get(pid)
    if proc is not None:
        if proc.poll() is not None:
            del _CHILDREN[pid]
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


# ---------------------------------------------------------------------------------------- checks
def _answers(url: str, timeout_s: float) -> bool:
    try:
        return requests.get(url, timeout=timeout_s).status_code < 500
    except requests.RequestException:
        return False


def agent_checks(cfg: TestbedConfig, nodes: list[NodeInfo]) -> list[Check]:
    """node-exporter and resource blocker on every node."""
    t, p = cfg.measurement.node_timeout_s, cfg.ports
    out = []
    for n in nodes:
        ne = f"http://{n.address}:{p.node_exporter}/metrics"
        rb = f"http://{n.address}:{p.resource_blocker}/healthz"
        out.append(Check(f"node-exporter {n.name}", ne, _answers(ne, t)))
        out.append(Check(f"resource-blocker {n.name}", rb, _answers(rb, t)))
    return out


def object_checks(kube: Kube, docs: list[dict]) -> list[Check]:
    """Whether each manifest's object (templates aside) exists."""
    return [Check(f"{doc['kind']} {doc['metadata']['name']}",
                  kube.namespace_of(doc["metadata"].get("namespace", doc["metadata"]["name"])), kube.exists(doc))
            for doc in docs if doc["kind"] != "Pod"]


def wait_for_agents(cfg: TestbedConfig, nodes: list[NodeInfo], timeout_s: float) -> list[Check]:
    deadline = time.monotonic() + timeout_s
    while True:
        checks = agent_checks(cfg, nodes)
        down = [c for c in checks if not c.up]
        if not down:
            return checks
        if time.monotonic() >= deadline:
            raise TestbedError(f"{down[0].piece} does not answer at {down[0].where} after {timeout_s:g} s"
                               + (f" (and {len(down) - 1} more)" if len(down) > 1 else ""))
        time.sleep(0.5)


# ---------------------------------------------------------------------------------------- up/down/status
def cluster_up(cfg: TestbedConfig, *, skip_images: bool = False, say: Say = print) -> list[Check]:
    """Bring the whole testbed up; returns the final checks (all up) or raises TestbedError."""
    say(f"minikube start: profile {cfg.minikube.profile}, {cfg.minikube.nodes} nodes ({cfg.minikube.driver}, "
        f"{cfg.minikube.cpus} CPUs, {cfg.minikube.memory_mib} MiB each)")
    minikube(cfg, *start_args(cfg), timeout_s=cfg.minikube.start_timeout_s)
    if skip_images:
        say("images: skipped (--skip-images)")
    else:
        build_and_load_images(cfg, say)
    kube = Kube(cfg)
    for kind, name, action in kube.apply(load_manifests()):
        say(f"{kind} {name}: {action}")
    nodes = kube.nodes()
    if len(nodes) != cfg.minikube.nodes:
        say(f"warning: the cluster has {len(nodes)} nodes, the configuration asks for {cfg.minikube.nodes}")
    start_prometheus(cfg, nodes, say)
    checks = wait_for_agents(cfg, nodes, cfg.measurement.ready_timeout_s)
    checks = [Check("prometheus", cfg.prometheus.url, True)] + checks
    checks.append(power_monitor_check(cfg))
    return checks


def power_monitor_check(cfg: TestbedConfig) -> Check:
    url = f"http://{cfg.power.monitor}/metrics"
    up = _answers(url, cfg.measurement.node_timeout_s)
    detail = "" if up else "start it on the host: sudo python3 host_scripts/kvm_power_monitor.py --listen " \
        + cfg.power.monitor
    return Check("power monitor", url, up, detail)


def cluster_status(cfg: TestbedConfig) -> list[Check]:
    """Each piece up or down; never raises for a piece that is down."""
    checks = []
    try:
        out = minikube(cfg, "status", "--output=json", timeout_s=60, check=False)
        try:
            data = json.loads(out) if out.strip() else []
        except json.JSONDecodeError:
            data = []
        entries = data if isinstance(data, list) else [data]
        hosts = {e.get("Name", "?"): e.get("Host", "?") for e in entries if isinstance(e, dict)}
        up = bool(hosts) and all(h == "Running" for h in hosts.values())
        checks.append(Check("minikube", f"profile {cfg.minikube.profile}", up,
                            ", ".join(f"{k}: {v}" for k, v in hosts.items()) or "no such profile"))
    except TestbedError as exc:
        checks.append(Check("minikube", f"profile {cfg.minikube.profile}", False, str(exc)))
    try:
        kube = Kube(cfg)
        nodes = kube.nodes()
        checks.append(Check("kubernetes API", kube.api.configuration.host, True, f"{len(nodes)} nodes"))
        checks += object_checks(kube, load_manifests())
        checks += agent_checks(cfg, nodes)
    except TestbedError as exc:
        checks.append(Check("kubernetes API", cfg.context, False, str(exc)))
    checks.append(Check("prometheus", cfg.prometheus.url,
                        _answers(cfg.prometheus.url.rstrip("/") + "/-/ready", cfg.prometheus.query_timeout_s)))
    checks.append(power_monitor_check(cfg))
    return checks


def cluster_down(cfg: TestbedConfig, *, keep_minikube: bool = False, say: Say = print) -> None:
    """Remove what `up` created: the manifests' objects and test app pods, Prometheus, the Minikube cluster."""
    try:
        kube = Kube(cfg)
        removed = kube.delete_testapp_pods()
        if removed:
            say(f"test app pods: {removed} deleted")
        for kind, name, action in kube.delete(load_manifests()):
            say(f"{kind} {name}: {action}")
    except TestbedError as exc:
        say(f"kubernetes objects: not removed ({exc})")
    pid = stop_prometheus(cfg)
    say(f"Prometheus (pid {pid}): stopped" if pid else "Prometheus: was not running")
    if keep_minikube:
        say(f"minikube profile {cfg.minikube.profile}: kept (--keep-minikube)")
    else:
        minikube(cfg, "delete", timeout_s=300)
        say(f"minikube profile {cfg.minikube.profile}: deleted")


# ---------------------------------------------------------------------------------------- any cluster
AGENTS = ("node-exporter", "resource-blocker")  # the DaemonSets `apply --skip` may leave out


def any_cluster_kube(cfg: TestbedConfig) -> Kube:
    """The API of the cluster `--backend kubernetes` uses: `kubernetes.context`, else the current context."""
    return Kube(cfg, context=cfg.kubernetes.context or None)


def node_affinity(selector: str) -> dict | None:
    """The selector as a required node affinity (= and in -> In, != and notin -> NotIn, KEY -> Exists, !KEY ->
    DoesNotExist), for the agents' DaemonSets; None for the empty selector."""
    from rlmodel.testbed.selector import parse_selector

    ops = {"=": "In", "in": "In", "!=": "NotIn", "notin": "NotIn", "exists": "Exists", "!exists": "DoesNotExist"}
    reqs = parse_selector(selector).requirements
    if not reqs:
        return None
    exprs = [{"key": r.key, "operator": ops[r.op], **({"values": list(r.values)} if r.values else {})} for r in reqs]
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": exprs}]}}}


def any_cluster_manifests(cfg: TestbedConfig, skip: tuple[str, ...] = ()) -> list[dict]:
    """The manifests `apply` sends: without the skipped agents, DaemonSets limited to the selected nodes."""
    import copy

    unknown = [s for s in skip if s not in AGENTS]
    if unknown:
        raise TestbedError(f"--skip {unknown[0]}: expected one of {', '.join(AGENTS)}")
    affinity = node_affinity(cfg.kubernetes.node_selector)
    docs = []
    for doc in load_manifests():
        if doc["kind"] == "DaemonSet" and doc["metadata"]["name"] in skip:
            continue
        if doc["kind"] == "DaemonSet" and affinity is not None:
            doc = copy.deepcopy(doc)
            doc["spec"]["template"]["spec"]["affinity"] = affinity
        docs.append(with_registry(doc, cfg.images.registry))
    return docs


def cluster_apply(cfg: TestbedConfig, *, skip: tuple[str, ...] = (), say: Say = print) -> list[Check]:
    """Apply the manifests to any cluster and wait for the selected nodes' agents; the final checks."""
    docs = any_cluster_manifests(cfg, skip)
    kube = any_cluster_kube(cfg)
    say(f"cluster at {kube.api.configuration.host}" + (f", nodes matching {cfg.kubernetes.node_selector!r}"
                                                      if cfg.kubernetes.node_selector else ", every node"))
    for kind, name, action in kube.apply(docs):
        say(f"{kind} {name}: {action}")
    nodes = kube.nodes(cfg.kubernetes.node_selector)
    if not nodes:
        raise TestbedError(f"no node matches kubernetes.node_selector {cfg.kubernetes.node_selector!r}")
    say(f"{len(nodes)} nodes: {', '.join(n.name for n in nodes)}")
    return wait_for_agents(cfg, nodes, cfg.measurement.ready_timeout_s)


def power_checks(cfg: TestbedConfig, nodes: list[NodeInfo]) -> list[Check]:
    """The power source answers for every node: the host monitor's endpoint, or Kepler's or Scaphandre's series in
    Prometheus (one check per node)."""
    from rlmodel.testbed.metrics import PrometheusReader
    from rlmodel.testbed.power_sources import KeplerSource, MonitorSource, power_source

    reader = PrometheusReader(cfg.prometheus.url, timeout_s=cfg.prometheus.query_timeout_s, retries=1,
                              scrape_interval_s=cfg.prometheus.scrape_interval_s)
    source = power_source(cfg, reader, nodes)
    checks = utilization_checks(reader, nodes)
    if isinstance(source, MonitorSource):
        return checks + [power_monitor_check(cfg)]
    try:
        selector = source.selector()
        seen = {source.matcher.node_of(r.get("metric") or {}) for r in reader.query(selector)}
    except TestbedError as exc:
        return [Check(f"{source.name}", cfg.prometheus.url, False, str(exc))]
    version = f"Kepler {source.version}, " if isinstance(source, KeplerSource) else ""
    return checks + [Check(f"{source.name} {n.name}", selector, n.name in seen,
                           f"{version}zone {source.zone}" if n.name in seen else "no series for this node")
                     for n in nodes]


def utilization_checks(reader, nodes: list[NodeInfo]) -> list[Check]:
    """node-exporter's CPU series in Prometheus for every node (by its `node` label or its address in `instance`):
    without them a window's cpu_util is empty and `calibrate --source` has nothing to fit."""
    from rlmodel.testbed.power_sources import IDLE, NodeMatcher

    matcher = NodeMatcher(nodes, ("node", "instance"))
    try:
        seen = {matcher.node_of(r.get("metric") or {}) for r in reader.query(f"count by (node, instance) ({IDLE})")}
    except TestbedError as exc:
        return [Check("node-exporter series", reader.url, False, str(exc))]
    return [Check(f"node-exporter series {n.name}", IDLE, n.name in seen,
                  "" if n.name in seen else "no series matches the node's name or addresses")
            for n in nodes]


def cluster_status_any(cfg: TestbedConfig) -> list[Check]:
    """Each piece of an any-cluster testbed up or down: API, objects, the selected nodes' agents, Prometheus,
    the power source per node. Never raises for a piece that is down; never calls minikube."""
    checks = []
    nodes: list[NodeInfo] = []
    try:
        kube = any_cluster_kube(cfg)
        nodes = kube.nodes(cfg.kubernetes.node_selector)
        chosen = f" matching {cfg.kubernetes.node_selector!r}" if cfg.kubernetes.node_selector else ""
        checks.append(Check("kubernetes API", kube.api.configuration.host, bool(nodes), f"{len(nodes)} nodes{chosen}"))
        checks += object_checks(kube, any_cluster_manifests(cfg))
        checks += agent_checks(cfg, nodes)
    except TestbedError as exc:
        checks.append(Check("kubernetes API", cfg.kubernetes.context or "(current context)", False, str(exc)))
    ready = _answers(cfg.prometheus.url.rstrip("/") + "/-/ready", cfg.prometheus.query_timeout_s)
    checks.append(Check("prometheus", cfg.prometheus.url, ready))
    if ready and nodes:
        checks += power_checks(cfg, nodes)
    return checks


def cluster_delete(cfg: TestbedConfig, *, say: Say = print) -> None:
    """Remove what `apply` created on any cluster: the test app pods and the manifests' objects."""
    kube = any_cluster_kube(cfg)
    removed = kube.delete_testapp_pods()
    if removed:
        say(f"test app pods: {removed} deleted")
    for kind, name, action in kube.delete(any_cluster_manifests(cfg)):
        say(f"{kind} {name}: {action}")
