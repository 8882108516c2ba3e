"""`rlsched scheduler run`: the live secondary scheduler."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

import click


@click.group()
def scheduler() -> None:
    """Place real pods with the trained model (pods with spec.schedulerName = --scheduler-name)."""


@scheduler.command("run")
@click.option("--model", "-m", type=click.Path(dir_okay=False, path_type=Path), default=None,
              envvar="RLSCHED_MODEL", show_envvar=True, help="A trained DQN model file (hot-reloaded when it changes).")
@click.option("--policy", "policy_name", default=None, envvar="RLSCHED_POLICY", show_envvar=True,
              help="A built-in policy instead of a model, e.g. efficient-first.")
@click.option("--scheduler-name", default="rlsched", show_default=True, envvar="RLSCHED_SCHEDULER_NAME",
              show_envvar=True, help="Pods with this spec.schedulerName are ours.")
@click.option("--kubeconfig", type=click.Path(dir_okay=False, path_type=Path), default=None, envvar="KUBECONFIG",
              help="kubeconfig [default: in-cluster when running in a pod, else ~/.kube/config].")
@click.option("--context", default=None, help="kubeconfig context [default: the current one].")
@click.option("--namespace", "namespaces", multiple=True, help="Schedule pods of this namespace (repeatable) "
              "[default: all].")
@click.option("--listen", default="127.0.0.1:10259", show_default=True, envvar="RLSCHED_SCHEDULER_LISTEN",
              show_envvar=True, help="HOST:PORT of /healthz, /readyz and /metrics.")
@click.option("--fallback-policy", default="efficient-first", show_default=True,
              help="The built-in policy that places a pod when the model fails.")
@click.option("--node-type", "node_types", multiple=True, metavar="REGEX=TYPE",
              help="Power curve of nodes whose name matches REGEX (repeatable; after the rlsched.io/node-type label).")
@click.option("--default-node-type", default="x3550", show_default=True,
              help="Power curve of nodes with no label and no --node-type match (a warning says which).")
@click.option("--leader-elect/--no-leader-elect", default=None,
              help="Hold a coordination.k8s.io Lease so only one replica schedules [default: on in a cluster].")
@click.option("--lease-namespace", default="rlsched-system", show_default=True,
              help="Namespace of the leader-election Lease.")
def run(model: Path | None, policy_name: str | None, scheduler_name: str, kubeconfig: Path | None,
        context: str | None, namespaces: tuple[str, ...], listen: str, fallback_policy: str,
        node_types: tuple[str, ...], default_node_type: str, leader_elect: bool | None, lease_namespace: str) -> None:
    """Run the scheduler until SIGTERM or Ctrl-C (then it stops taking pods, finishes the bind in flight
    and exits 0).

    \b
    Example:
      rlsched scheduler run --model Dale.pth --kubeconfig ~/.kube/config --namespace default
      rlsched scheduler run --policy efficient-first --node-type '^minikube=minikube-vm'
    """
    from rlmodel.live.scheduler import Scheduler, SchedulerConfig
    from rlmodel.live.service import ModelReloader, serve_health
    from rlmodel.live.view import ClusterView, CurveResolver
    from rlmodel.policies import make_policy

    if (model is None) == (policy_name is None):
        raise click.UsageError("give either --model PATH or --policy NAME")
    patterns = []
    for item in node_types:
        pattern, sep, type_name = item.rpartition("=")
        if not sep or not pattern:
            raise click.BadParameter(f"{item}: expected REGEX=TYPE", param_hint="--node-type")
        patterns.append((pattern, type_name))
    resolver = CurveResolver(patterns=patterns, default=default_node_type)
    make_policy(fallback_policy)  # PolicyError: unknown name

    def load(path: Path):
        from rlmodel.agents.policy import DQNPolicy

        return DQNPolicy.load(path)

    policy = load(model) if model is not None else make_policy(policy_name or "")
    core = _core_api(kubeconfig, context)
    if leader_elect is None:
        leader_elect = bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and kubeconfig is None
    leader = None
    if leader_elect:
        from kubernetes import client

        from rlmodel.live.leader import LeaderElector

        leader = LeaderElector(client.CoordinationV1Api(core.api_client), lease_namespace)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s",
                        stream=sys.stderr)
    sched = Scheduler(core, policy, SchedulerConfig(scheduler_name=scheduler_name, namespaces=namespaces,
                                                    fallback_policy=fallback_policy),
                      view=ClusterView(resolver), model_label=str(model or ""), leader=leader)
    server = serve_health(listen, sched)
    reloader = ModelReloader(model, sched, load) if model is not None else None
    if reloader is not None:
        reloader.start()
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda *_: reloader.reload())
    sched.start()
    click.echo(f"rlsched scheduler {scheduler_name}: policy {policy.name}, /healthz /readyz /metrics on {listen}",
               err=True)
    try:
        signal.pause() if hasattr(signal, "pause") else sched._stop.wait()
    except KeyboardInterrupt:  # SIGTERM arrives as KeyboardInterrupt (rlmodel.console)
        pass
    finally:
        sched.stop()
        if reloader is not None:
            reloader.stop()
        server.shutdown()
    click.echo("rlsched scheduler: stopped", err=True)


def _core_api(kubeconfig: Path | None, context: str | None):
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    from rlmodel.errors import RlschedError

    try:
        if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config()
            return client.CoreV1Api()
        api = config.new_client_from_config(config_file=str(kubeconfig) if kubeconfig else None, context=context)
    except (ConfigException, OSError, TypeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise RlschedError(f"kubeconfig {kubeconfig or '~/.kube/config'}: {first}") from None
    return client.CoreV1Api(api)


@scheduler.command("manifests")
def manifests() -> None:
    """Print the manifests that run the scheduler in a cluster: ServiceAccount, least-privilege RBAC, Deployment.

    \b
    Example:
      rlsched scheduler manifests > scheduler.yaml
    """
    from rlmodel.assets import asset_path

    click.echo(asset_path("scheduler", "scheduler.yaml").read_text(encoding="utf-8"), nl=False)


COMMANDS = [scheduler]
