"""Testbed configuration in one place: `rlsched.toml`, then `RLSCHED_<SECTION>_<KEY>` variables, then CLI.

Precedence (last wins): the defaults below < the TOML file < environment variables < `--set
section.key=value` options. Every key has a unit in its name where it has one. Example file::

    [minikube]
    profile = "rlsched"
    nodes = 3

    [measurement]
    window_s = 30

`rlsched cluster config` prints the effective values; `rlsched.example.toml` lists every key.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from rlmodel.errors import ConfigError
from rlmodel.fielddocs import field_docs
from rlmodel.k8s_names import dns_label_problem, dns_subdomain_problem
from rlmodel.overrides import CoercionError, coerce

DEFAULT_CONFIG_FILE = Path("rlsched.toml")


@dataclass
class MinikubeConfig:
    profile: str = "rlsched"
    """Minikube profile; also the kubeconfig context and the name of the first node"""
    driver: str = "kvm2"
    """Minikube driver (kvm2: one qemu VM per node, which the power monitor can see)"""
    nodes: int = 3
    """nodes in the cluster"""
    cpus: int = 2
    """vCPUs per node"""
    memory_mib: int = 4096
    """memory per node, MiB"""
    binary: str = "minikube"
    """the minikube executable"""
    start_timeout_s: float = 900.0
    """how long `minikube start` may take"""


@dataclass
class KubernetesConfig:
    kubeconfig: str = ""
    """kubeconfig file ("" = $KUBECONFIG or ~/.kube/config)"""
    context: str = ""
    """kubeconfig context ("" = the Minikube profile)"""
    namespace: str = "rlsched"
    """namespace of the test app (Pod Security level restricted)"""
    agents_namespace: str = "rlsched-system"
    """namespace of the node agents, node-exporter and the resource blocker (Pod Security level privileged:
    they need the host's network, PIDs and files)"""
    request_timeout_s: float = 10.0
    """timeout of every API call"""
    retries: int = 3
    """attempts per API call on connection errors and 5xx"""
    node_selector: str = ""
    """label selector of the nodes the testbed backends use, in name order ("" = every node), e.g.
    "rlsched.io/testbed=true"; `=`, `==`, `!=`, `in (...)`, `notin (...)`, `KEY` and `!KEY` terms"""


@dataclass
class ImagesConfig:
    docker_host: str = ""
    """Docker engine to build with ("" = $DOCKER_HOST or the local socket)"""
    registry: str = ""
    """any cluster: registry the rlsched/* images were pushed to, e.g. "registry.lab:5000" ("" = the images are
    on the nodes already, pull policy Never)"""


@dataclass
class PortsConfig:
    node_exporter: int = 9100
    """node-exporter's port on every node (hostNetwork)"""
    resource_blocker: int = 8081
    """the resource blocker's hostPort on every node"""
    testapp_node_port: int = 30080
    """the test app Service's NodePort"""


@dataclass
class PrometheusConfig:
    url: str = "http://127.0.0.1:9090"
    """where rlsched queries Prometheus"""
    binary: str = "prometheus"
    """the Prometheus executable `cluster up` starts (Debian: apt-get install prometheus)"""
    listen: str = "127.0.0.1:9090"
    """--web.listen-address of the Prometheus that `cluster up` starts"""
    scrape_interval_s: float = 1.0
    """scrape interval; windows are read at this resolution"""
    query_timeout_s: float = 10.0
    """timeout of every query"""


@dataclass
class PowerConfig:
    source: str = "rlsched-monitor"
    """where node energy comes from: rlsched-monitor (the host script, per VM), kepler or scaphandre (their
    Prometheus metrics)"""
    monitor: str = "127.0.0.1:9877"
    """HOST:PORT where host_scripts/kvm_power_monitor.py --listen serves its metrics"""
    vm_prefix: str = ""
    """prefix of the qemu guest names before the node name ("" : minikube's kvm2 names VMs after nodes)"""
    zone: str = "package"
    """Kepler zone: package, core, uncore, dram, psys (0.10+ zone label; pre-0.10 has kepler_node_ZONE_joules_total
    for package, core, uncore, dram and platform)"""
    node_label: str = ""
    """label naming a power series' node ("" = node_name, node, exported_instance, then instance, by node
    name or address)"""
    host_label: str = "instance"
    """Scaphandre: the label that identifies a host (its host part is matched against `hosts`, then node names
    and addresses)"""
    hosts: dict = field(default_factory=dict)
    """Scaphandre: a table HOST = NODE for hosts that are neither a node's name nor one of its addresses"""
    pods: bool = True
    """Kepler: record each pod's energy per window (pod_power.csv) alongside the nodes'"""


@dataclass
class JMeterConfig:
    binary: str = ""
    """JMeter executable ("" = $RLSCHED_JMETER or jmeter on PATH)"""
    plan: str = ""
    """JMeter plan ("" = jmeter/testapp.jmx)"""
    threads: int = 4
    """concurrent users during a window"""
    mode: str = "cpu"
    """the test app's work per request: cpu, memory, io or mixed"""
    intensity: int = 1
    """work per request (1-20)"""
    target_url: str = ""
    """URL JMeter drives ("" = http://FIRST_NODE_ADDRESS:NODE_PORT/work)"""


@dataclass
class MeasurementConfig:
    window_s: float = 30.0
    """measurement window after each placement (JMeter runs for this long), s"""
    ready_timeout_s: float = 120.0
    """how long a pod may take to become Ready, s"""
    node_timeout_s: float = 5.0
    """timeout of every call to a node's agents (resource blocker, node-exporter), s"""
    settle_s: float = 0.0
    """pause after a pod is Ready and before the window starts, s"""


@dataclass
class SloConfig:
    latency_ms: float = 500.0
    """a request slower than this (or failed) misses the service level"""


@dataclass
class SchedulerSettings:
    """`rlsched scheduler run` (command-line options win over these)."""

    name: str = "rlsched"
    """pods with this spec.schedulerName are the scheduler's"""
    namespaces: str = ""
    """namespaces whose pods it schedules, comma-separated ("" = all)"""
    listen: str = "127.0.0.1:10259"
    """HOST:PORT of /healthz, /readyz and /metrics"""
    fallback_policy: str = "efficient-first"
    """the built-in policy that places a pod when the model fails"""
    node_types: dict = field(default_factory=dict)
    """power curve by node name: a table REGEX = TYPE, tried in order after the rlsched.io/node-type label"""
    default_node_type: str = "x3550"
    """power curve of a node with no label and no node_types match (with a warning)"""
    scenario: str = ""
    """a scenario file (e.g. from `rlsched calibrate`) whose node types labels and node_types may name"""
    asleep_taints: str = "ToBeDeletedByClusterAutoscaler"
    """a node with one of these taint keys (comma-separated) counts as asleep"""
    asleep_labels: str = ""
    """a node with one of these label keys (comma-separated) counts as asleep"""
    cpu_in_use: str = "requests"
    """where a node's CPU in use comes from: requests (estimated) or prometheus (node-exporter, at prometheus.url)"""
    usage_window_s: float = 60.0
    """rate window of the Prometheus CPU reading, s"""
    usage_every_s: float = 10.0
    """how often CPU in use is read from Prometheus, s"""
    bind_concurrency: int = 1
    """Binding calls in flight at once (binder threads; with binder = process, a child process each, with its next
    Bindings waiting in its pipe)"""
    binder: str = "thread"
    """where Binding calls run: thread (the binder thread) or process (a child process, off the interpreter lock
    the decisions hold; docs/scheduler.md has both measured)"""


@dataclass
class TestbedConfig:
    """The whole configuration. `source` records where the values came from, for messages."""

    __test__ = False  # not a pytest test class despite the name

    minikube: MinikubeConfig = field(default_factory=MinikubeConfig)
    kubernetes: KubernetesConfig = field(default_factory=KubernetesConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)
    ports: PortsConfig = field(default_factory=PortsConfig)
    prometheus: PrometheusConfig = field(default_factory=PrometheusConfig)
    power: PowerConfig = field(default_factory=PowerConfig)
    jmeter: JMeterConfig = field(default_factory=JMeterConfig)
    measurement: MeasurementConfig = field(default_factory=MeasurementConfig)
    slo: SloConfig = field(default_factory=SloConfig)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    state_dir: str = ".rlsched"
    """where `cluster up` keeps what it started (Prometheus data, pid, rendered config)"""
    source: str = "defaults"

    @property
    def context(self) -> str:
        return self.kubernetes.context or self.minikube.profile

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("source")
        return out


SECTIONS = ("minikube", "kubernetes", "images", "ports", "prometheus", "power", "jmeter", "measurement", "slo",
            "scheduler")
_TOP_KEYS = ("state_dir",)
_POSITIVE = {"nodes", "cpus", "memory_mib", "retries", "threads", "intensity", "window_s", "ready_timeout_s",
             "request_timeout_s", "query_timeout_s", "node_timeout_s", "scrape_interval_s", "start_timeout_s",
             "latency_ms", "node_exporter", "resource_blocker", "testapp_node_port", "usage_window_s", "usage_every_s",
             "bind_concurrency"}
_BOUNDS = {"node_exporter": 65535, "resource_blocker": 65535, "testapp_node_port": 65535, "nodes": 100,
           "intensity": 20, "threads": 10_000, "retries": 20, "bind_concurrency": 64}
_CHOICES = {"mode": ("cpu", "memory", "io", "mixed"), "cpu_in_use": ("requests", "prometheus"),
            "binder": ("process", "thread"),
            "source": ("rlsched-monitor", "kepler", "scaphandre"),
            "zone": ("package", "core", "uncore", "dram", "psys", "platform")}


# Kubernetes names: a value the API server would refuse could never match an object (rlmodel.k8s_names)
_NAMESPACE_KEYS = ("kubernetes.namespace", "kubernetes.agents_namespace")


def _name_problem(key: str, value: Any) -> str | None:
    """What is wrong with a Kubernetes name among the settings (None: nothing, or the key is not a name)."""
    if key in _NAMESPACE_KEYS:
        return dns_label_problem(value)
    if key == "scheduler.name":
        return dns_subdomain_problem(value)
    if key == "scheduler.namespaces":  # comma-separated, "" = all
        for ns in (n.strip() for n in value.split(",")):
            problem = dns_label_problem(ns) if ns else None
            if problem:
                return f"namespace {problem}"
    return None


def _coerce(where: str, key: str, current: Any, value: Any, *, from_text: bool) -> Any:
    """`value` converted to the type of the default `current`, or ConfigError naming `where` and `key`."""
    try:
        out = coerce(current, value, from_text=from_text)
    except CoercionError as exc:
        raise ConfigError(f"{where}: {key}: {exc}") from None
    name = key.rpartition(".")[2]
    if name in _POSITIVE and out <= 0:
        raise ConfigError(f"{where}: {key}: must be > 0, got {value!r}")
    if name in _BOUNDS and out > _BOUNDS[name]:
        raise ConfigError(f"{where}: {key}: must be at most {_BOUNDS[name]}, got {value!r}")
    if name in _CHOICES and out not in _CHOICES[name]:
        raise ConfigError(f"{where}: {key}: expected one of {', '.join(_CHOICES[name])}, got {value!r}")
    problem = _name_problem(key, out)
    if problem:
        raise ConfigError(f"{where}: {key}: {problem}")
    if name == "node_selector":
        from rlmodel.testbed.selector import parse_selector

        parse_selector(out, where=f"{where}: {key}")
    return out


def _set(cfg: TestbedConfig, section: str | None, key: str, value: Any, where: str, *, from_text: bool) -> None:
    target: Any = cfg if section is None else getattr(cfg, section)
    names = [f.name for f in dataclasses.fields(target)
             if not (section is None and f.name == "source") and f.name not in SECTIONS]
    if key not in names:
        label = f"[{section}]" if section else "top level"
        raise ConfigError(f"{where}: unknown key {key!r} in {label} (expected one of: {', '.join(names)})")
    dotted = f"{section}.{key}" if section else key
    setattr(target, key, _coerce(where, dotted, getattr(target, key), value, from_text=from_text))


def load_config(path: Path | None = None, *, env: Mapping[str, str] | None = None,
                overrides: Iterable[str] = ()) -> TestbedConfig:
    """The effective configuration.

    `path`: a TOML file (an error if given and missing); None reads ./rlsched.toml when it exists.
    `env`: the environment (default os.environ): `RLSCHED_MINIKUBE_NODES=4` sets `[minikube] nodes`.
    `overrides`: `section.key=value` strings, applied last.
    """
    cfg = TestbedConfig()
    explicit = path is not None
    path = path if path is not None else DEFAULT_CONFIG_FILE
    if path.exists() or explicit:
        if path.exists() and not path.is_file():
            raise ConfigError(f"{path}: not a regular file")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such configuration file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
        except RecursionError:
            raise ConfigError(f"{path}: invalid TOML: nested too deeply") from None
        except ValueError as exc:  # an integer literal too long to convert
            raise ConfigError(f"{path}: invalid TOML: {str(exc)[:120]}") from None
        for name, value in data.items():
            if name in SECTIONS:
                if not isinstance(value, dict):
                    raise ConfigError(f"{path}: [{name}]: expected a table")
                for key, v in value.items():
                    _set(cfg, name, key, v, str(path), from_text=False)
            elif name in _TOP_KEYS:
                _set(cfg, None, name, value, str(path), from_text=False)
            else:
                raise ConfigError(f"{path}: unknown section {name!r} (expected one of: {', '.join(SECTIONS)})")
        cfg.source = str(path)
    environ = os.environ if env is None else env
    for section in SECTIONS:
        for f in dataclasses.fields(getattr(cfg, section)):
            var = f"RLSCHED_{section.upper()}_{f.name.upper()}"
            if var in environ:
                _set(cfg, section, f.name, environ[var], var, from_text=True)
    if "RLSCHED_STATE_DIR" in environ:
        _set(cfg, None, "state_dir", environ["RLSCHED_STATE_DIR"], "RLSCHED_STATE_DIR", from_text=True)
    for item in overrides:
        shown = f"--set {item if item.isprintable() else repr(item)}"  # the message stays one line
        dotted, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"{shown}: expected SECTION.KEY=VALUE")
        section, _, key = dotted.strip().rpartition(".")
        if section and section not in SECTIONS:
            raise ConfigError(f"{shown}: unknown section {section!r} (expected one of: {', '.join(SECTIONS)})")
        _set(cfg, section or None, key, value.strip(), shown, from_text=True)
    return cfg


def describe() -> list[tuple[str, Any, str]]:
    """(section.key, default, meaning) for every key, from the field docstrings in this module."""
    cfg = TestbedConfig()
    rows = []
    for section in SECTIONS:
        obj = getattr(cfg, section)
        docs = field_docs(type(obj))
        rows += [(f"{section}.{f.name}", getattr(obj, f.name), docs.get(f.name, "")) for f in dataclasses.fields(obj)]
    rows.append(("state_dir", cfg.state_dir, field_docs(TestbedConfig).get("state_dir", "")))
    return rows


def render_toml(cfg: TestbedConfig) -> str:
    """`cfg` as a configuration file (every key with its meaning as a comment), loadable by `load_config`."""
    values = cfg.as_dict()

    def shown(value: Any) -> str:
        if isinstance(value, str):
            return json.dumps(value)
        if isinstance(value, dict):  # an inline table; JSON strings are TOML basic strings
            return "{" + ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in value.items()) + "}"
        return str(value).lower() if isinstance(value, bool) else str(value)

    rows = describe()
    # top-level keys first: TOML puts them before any [section]
    lines = [f"{key} = {shown(values[key])}  # {text}" for key, _, text in rows if "." not in key]
    section = None
    for key, _, text in rows:
        sec, _, name = key.rpartition(".")
        if not sec:
            continue
        if sec != section:
            lines += ["", f"[{sec}]"]
            section = sec
        lines.append(f"{name} = {shown(values[sec][name])}  # {text}")
    return "\n".join(lines) + "\n"
