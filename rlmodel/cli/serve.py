"""`rlsched serve`: the model as an HTTP service (scoring API and kube-scheduler extender)."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import click

from rlmodel.cli.options import config_options, inference_threads, testbed_config


@click.command("serve")
@click.option("--model", "-m", type=click.Path(dir_okay=False, path_type=Path), default=None,
              envvar="RLSCHED_MODEL", show_envvar=True, help="A trained DQN model file (hot-reloaded when it changes).")
@click.option("--policy", "policy_name", default=None, envvar="RLSCHED_POLICY", show_envvar=True,
              help="A built-in policy instead of a model, e.g. efficient-first.")
@click.option("--listen", default="127.0.0.1:8000", show_default=True, envvar="RLSCHED_SERVE_LISTEN",
              show_envvar=True, help="HOST:PORT to serve on (loopback by default).")
@click.option("--kubeconfig", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Keep a cluster view (nodes and pods) for the extender verbs [default: none; requests come "
                   "from the request].")
@click.option("--context", default=None, help="kubeconfig context [default: the current one].")
@click.option("--cluster-view", is_flag=True, help="Keep a cluster view with the in-cluster credentials (or "
              "~/.kube/config); implied by --kubeconfig and --context.")
@click.option("--fallback-policy", default=None, help="The built-in policy that answers when the model fails "
              "[default: scheduler.fallback_policy, efficient-first].")
@click.option("--node-type", "node_types", multiple=True, metavar="REGEX=TYPE",
              help="Power curve of extender nodes whose name matches REGEX (repeatable; after the label).")
@click.option("--default-node-type", default=None, help="Power curve of nodes with no label, type or match "
              "[default: scheduler.default_node_type, x3550].")
@click.option("--max-body-mib", type=click.IntRange(1, 1024), default=64, show_default=True,
              help="Request body limit, MiB (64 fits 5,000 full Node objects).")
@click.option("--max-nodes", type=click.IntRange(1, 1_000_000), default=10_000, show_default=True,
              help="Nodes in one request.")
@config_options
def serve(model: Path | None, policy_name: str | None, listen: str, kubeconfig: Path | None, context: str | None,
          cluster_view: bool, fallback_policy: str | None, node_types: tuple[str, ...],
          default_node_type: str | None, max_body_mib: int, max_nodes: int, config_path: Path | None,
          testbed_set: tuple[str, ...]) -> None:
    """Serve the model over HTTP until SIGTERM or Ctrl-C: POST /schedule, the kube-scheduler extender verbs
    POST /filter and /prioritize, /healthz, /readyz, /metrics, GET /model; OpenAPI at /openapi.json and
    Swagger UI at /docs (served from the package).

    \b
    Example:
      rlsched serve --model Dale.pth
      rlsched serve --policy efficient-first --listen 127.0.0.1:8000 --kubeconfig ~/.kube/config
    """
    try:
        import uvicorn

        from rlmodel.live.api import ServeLimits, ServeState, create_app
    except ImportError as exc:
        raise click.ClickException(f"rlsched serve needs the serve extra ({exc.name} is missing): "
                                   "pip install 'rlsched[serve]'") from None
    from rlmodel.cli.scheduler import _core_api, curve_resolver
    from rlmodel.live.service import ModelReloader, listen_socket, url_of
    from rlmodel.policies import make_policy

    if (model is None) == (policy_name is None):
        raise click.UsageError("give either --model PATH or --policy NAME")
    sock = listen_socket(listen)  # before anything starts: a port in use is one line, not a half-started service
    settings = testbed_config(config_path, testbed_set).scheduler
    resolver = curve_resolver(settings, node_types, default_node_type)
    fallback = make_policy(fallback_policy or settings.fallback_policy)

    state = ServeState(policy=fallback, fallback=fallback, model_label=str(model or ""), resolver=resolver,
                       limits=ServeLimits(max_body_bytes=max_body_mib * 2**20, max_nodes=max_nodes))

    def load(path: Path):
        """The policy of a model file; what GET /model reports follows it (also on a hot reload)."""
        from rlmodel.agents.model_file import load_model
        from rlmodel.agents.policy import DQNPolicy

        loaded = load_model(path)
        state.model_info = {key: loaded.data.get(key) for key in (
            "format", "format_version", "feature_schema", "network", "scenario", "global_step", "metrics")}
        return DQNPolicy(loaded.network)

    inference_threads()
    state.policy = load(model) if model is not None else make_policy(policy_name or "")
    policy = state.policy
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s",
                        stream=sys.stderr)
    informers = None
    if cluster_view or kubeconfig is not None or context is not None:
        from rlmodel.live.scheduler import Scheduler, SchedulerConfig
        from rlmodel.live.view import ClusterView

        view = ClusterView(resolver)
        # the scheduler's informers keep the view; it schedules nothing (no pod has an empty schedulerName)
        informers = Scheduler(_core_api(kubeconfig, context), fallback, SchedulerConfig(scheduler_name=""),
                              view=view)
        informers.start_informers()
        state.view, state.view_lock, state.view_ready = view, informers.lock, lambda: informers.ready
    reloader = ModelReloader(model, state, load) if model is not None else None  # type: ignore[arg-type]
    if reloader is not None:
        reloader.start()
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda *_: reloader.reload())
    app = create_app(state)
    click.echo(f"rlsched serve: policy {policy.name} on {url_of(sock)} (docs at /docs)", err=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=10))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn shut down gracefully, then re-raised the SIGTERM/SIGINT it caught
        pass
    finally:
        if reloader is not None:
            reloader.stop()
        if informers is not None:
            informers.stop(timeout_s=5)
        sock.close()
    click.echo("rlsched serve: stopped", err=True)


COMMANDS = [serve]
