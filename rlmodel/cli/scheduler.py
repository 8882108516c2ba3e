"""`rlsched scheduler run`: the live secondary scheduler."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

from rlmodel.cli.options import config_options, inference_threads, testbed_config


@click.group()
def scheduler() -> None:
    """Place real pods with the trained model (pods with spec.schedulerName = --scheduler-name)."""


@scheduler.command("run")
@click.option("--model", "-m", type=click.Path(dir_okay=False, path_type=Path), default=None,
              envvar="RLSCHED_MODEL", show_envvar=True, help="A trained DQN model file (hot-reloaded when it changes).")
@click.option("--policy", "policy_name", default=None, envvar="RLSCHED_POLICY", show_envvar=True,
              help="A built-in policy instead of a model, e.g. efficient-first.")
@click.option("--scheduler-name", default=None, callback=lambda ctx, param, v: _k8s_name(param, v, subdomain=True),
              help="Pods with this spec.schedulerName are ours "
              "[default: scheduler.name, rlsched].")
@click.option("--kubeconfig", type=click.Path(dir_okay=False, path_type=Path), default=None, envvar="KUBECONFIG",
              help="kubeconfig [default: in-cluster when running in a pod, else ~/.kube/config].")
@click.option("--context", default=None, help="kubeconfig context [default: the current one].")
@click.option("--namespace", "namespaces", multiple=True, callback=lambda ctx, param, v: _k8s_name(param, v),
              help="Schedule pods of this namespace (repeatable) "
              "[default: scheduler.namespaces, all].")
@click.option("--listen", default=None, help="HOST:PORT of /healthz, /readyz and /metrics "
              "[default: scheduler.listen, 127.0.0.1:10259].")
@click.option("--fallback-policy", default=None, help="The built-in policy that places a pod when the model fails "
              "[default: scheduler.fallback_policy, efficient-first].")
@click.option("--node-type", "node_types", multiple=True, metavar="REGEX=TYPE",
              help="Power curve of nodes whose name matches REGEX (repeatable; tried after the rlsched.io/node-type "
                   "label, before scheduler.node_types).")
@click.option("--default-node-type", default=None, help="Power curve of nodes with no label and no match, with a "
              "warning [default: scheduler.default_node_type, x3550].")
@click.option("--leader-elect/--no-leader-elect", default=None,
              help="Hold a coordination.k8s.io Lease so only one replica schedules [default: on in a cluster].")
@click.option("--lease-namespace", default="rlsched-system", show_default=True,
              callback=lambda ctx, param, v: _k8s_name(param, v),
              help="Namespace of the leader-election Lease.")
@config_options
def run(model: Path | None, policy_name: str | None, scheduler_name: str | None, kubeconfig: Path | None,
        context: str | None, namespaces: tuple[str, ...], listen: str | None, fallback_policy: str | None,
        node_types: tuple[str, ...], default_node_type: str | None, leader_elect: bool | None, lease_namespace: str,
        config_path: Path | None, testbed_set: tuple[str, ...]) -> None:
    """Run the scheduler until SIGTERM or Ctrl-C (then it stops taking pods, finishes the binds already
    decided and exits 0). Settings: the [scheduler] section of ./rlsched.toml (or --config, --set
    scheduler.KEY=VALUE); the options here win over it.

    \b
    Example:
      rlsched scheduler run --model Dale.pth --kubeconfig ~/.kube/config --namespace default
      rlsched scheduler run --policy efficient-first --node-type '^minikube=minikube-vm'
      rlsched scheduler run --policy efficient-first --set scheduler.cpu_in_use=prometheus
    """
    from rlmodel.live.binder import ClientSpec, process_binder
    from rlmodel.live.scheduler import Scheduler, SchedulerConfig
    from rlmodel.live.service import ModelReloader, serve_health, url_of
    from rlmodel.live.view import ClusterView
    from rlmodel.policies import make_policy

    if (model is None) == (policy_name is None):
        raise click.UsageError("give either --model PATH or --policy NAME")
    cfg = testbed_config(config_path, testbed_set)
    settings = cfg.scheduler
    resolver = curve_resolver(settings, node_types, default_node_type)
    fallback_policy = fallback_policy or settings.fallback_policy
    make_policy(fallback_policy)  # PolicyError: unknown name
    scheduler_name = scheduler_name or settings.name
    namespaces = namespaces or tuple(n.strip() for n in settings.namespaces.split(",") if n.strip())
    listen = listen or settings.listen

    def load(path: Path):
        from rlmodel.agents.policy import DQNPolicy

        return DQNPolicy.load(path)

    inference_threads()
    policy = load(model) if model is not None else make_policy(policy_name or "")
    spec = ClientSpec.resolve(kubeconfig, context)
    core = spec.core()
    if leader_elect is None:
        leader_elect = bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and kubeconfig is None
    leader = None
    if leader_elect:
        from kubernetes import client

        from rlmodel.live.leader import LeaderElector

        leader = LeaderElector(client.CoordinationV1Api(core.api_client), lease_namespace)
    usage = None
    if settings.cpu_in_use == "prometheus":
        from rlmodel.live.usage import PrometheusUsage

        usage = PrometheusUsage(cfg.prometheus.url, window_s=settings.usage_window_s,
                                timeout_s=cfg.prometheus.query_timeout_s)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s",
                        stream=sys.stderr)
    view = ClusterView(resolver, asleep_taints=_names(settings.asleep_taints),
                       asleep_labels=_names(settings.asleep_labels),
                       usage_max_age_s=max(3 * settings.usage_every_s, settings.usage_window_s))
    # scheduler.binder = "thread" (the default): the binder threads call the API with `core` themselves
    binder = process_binder(spec, settings.bind_concurrency) if settings.binder == "process" else None
    sched = Scheduler(core, policy, SchedulerConfig(scheduler_name=scheduler_name, namespaces=namespaces,
                                                    fallback_policy=fallback_policy,
                                                    usage_every_s=settings.usage_every_s,
                                                    bind_concurrency=settings.bind_concurrency),
                      view=view, model_label=str(model or ""), leader=leader, usage=usage, binder=binder)
    server = serve_health(listen, sched)
    reloader = ModelReloader(model, sched, load) if model is not None else None
    if reloader is not None:
        reloader.start()
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda *_: reloader.reload())
    try:
        sched.start()  # BinderError: the binder process could not start (then the finally below cleans up)
        click.echo(f"rlsched scheduler {scheduler_name}: policy {policy.name}, CPU in use from {sched.cpu_source}, "
                   f"/healthz /readyz /metrics on {url_of(server.socket)}", err=True)
        signal.pause() if hasattr(signal, "pause") else sched._stop.wait()
    except KeyboardInterrupt:  # SIGTERM arrives as KeyboardInterrupt (rlmodel.console)
        pass
    finally:
        sched.stop()
        if reloader is not None:
            reloader.stop()
        server.shutdown()
        server.server_close()
    click.echo("rlsched scheduler: stopped", err=True)


def _k8s_name(param: click.Parameter, value: Any, subdomain: bool = False) -> Any:
    """The option's value(s), or BadParameter when one is not a name the API server accepts (rlmodel.k8s_names)."""
    from rlmodel.k8s_names import dns_label_problem, dns_subdomain_problem

    check = dns_subdomain_problem if subdomain else dns_label_problem
    for v in value if isinstance(value, tuple) else (value,):
        problem = check(v) if v is not None else None
        if problem:
            raise click.BadParameter(problem, param=param)
    return value


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def curve_resolver(settings, node_types: tuple[str, ...], default_node_type: str | None):
    """The CurveResolver of the [scheduler] settings: built-in types plus the scenario's, the command line's
    REGEX=TYPE patterns (`node_types`) first, then scheduler.node_types."""
    from rlmodel.live.view import CurveResolver
    from rlmodel.sim.power import BUILTIN_NODE_TYPES
    from rlmodel.sim.scenario import load_scenario

    patterns = []
    for item in node_types:
        pattern, sep, type_name = item.rpartition("=")
        if not sep or not pattern:
            raise click.BadParameter(f"{item}: expected REGEX=TYPE", param_hint="--node-type")
        patterns.append((pattern, type_name))
    types = dict(BUILTIN_NODE_TYPES)
    if settings.scenario:
        types.update({t.name: t for t in load_scenario(settings.scenario).node_types})
    return CurveResolver(types=types, patterns=[*patterns, *settings.node_types.items()],
                         default=default_node_type or settings.default_node_type)


def _core_api(kubeconfig: Path | None, context: str | None):
    from rlmodel.live.binder import ClientSpec

    return ClientSpec.resolve(kubeconfig, context).core()


@scheduler.command("manifests")
@click.option("--serve", "what", flag_value="serve.yaml", help="`rlsched serve` instead: ServiceAccount, read-only "
              "RBAC, Deployment, Service.")
@click.option("--extender-config", "what", flag_value="extender-config.yaml",
              help="A KubeSchedulerConfiguration that calls `rlsched serve` as an extender.")
def manifests(what: str | None) -> None:
    """Print the manifests that run the scheduler in a cluster: ServiceAccount, least-privilege RBAC, Deployment.

    \b
    Example:
      rlsched scheduler manifests > scheduler.yaml
      rlsched scheduler manifests --serve | kubectl apply -f -
      rlsched scheduler manifests --extender-config > kube-scheduler-config.yaml
    """
    from rlmodel.assets import asset_path

    click.echo(asset_path("scheduler", what or "scheduler.yaml").read_text(encoding="utf-8"), nl=False)


COMMANDS = [scheduler]


@scheduler.command("image-context")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
def image_context(out: Path) -> None:
    """Write the scheduler image's Docker build context into the folder OUT (the package, its dependencies as
    requirements.txt, the Dockerfile). `rlsched cluster up` builds the image from the same context.

    \b
    Example:
      rlsched scheduler image-context ctx && docker build -t rlsched/scheduler:latest ctx
    """
    from rlmodel.testbed.cluster import SCHEDULER_IMAGE, scheduler_image_context

    try:
        scheduler_image_context(out)
    except OSError as exc:
        raise click.ClickException(f"{out}: {exc.strerror or exc}") from None
    click.echo(f"{out}: build context of {SCHEDULER_IMAGE} (docker build -t {SCHEDULER_IMAGE} {out})")
