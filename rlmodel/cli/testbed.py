"""Commands on the Minikube testbed: `rlsched cluster up|status|down|config` and `rlsched calibrate`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from rlmodel.cli.options import config_options, testbed_config


def _print_checks(checks) -> bool:
    width = max((len(c.piece) for c in checks), default=10)
    for c in checks:
        state = "up  " if c.up else "DOWN"
        click.echo(f"  {state} {c.piece:<{width}}  {c.where}" + (f"  ({c.detail})" if c.detail else ""))
    return all(c.up for c in checks)


@click.group()
def cluster() -> None:
    """The testbed: the Minikube one (up, status, down), or any cluster (apply, status --backend kubernetes,
    delete).

    Settings come from ./rlsched.toml (or --config), RLSCHED_<SECTION>_<KEY> variables and --set;
    `rlsched cluster config` shows the effective values.
    """


@cluster.command("up")
@config_options
@click.option("--skip-images", is_flag=True, envvar="RLSCHED_SKIP_IMAGES", show_envvar=True,
              help="Do not build and load the images (they are in the cluster already).")
def cluster_up_cmd(config_path: Path | None, testbed_set: tuple[str, ...], skip_images: bool) -> None:
    """Start Minikube, load the images, apply the manifests, start Prometheus, wait for every node.

    \b
    Example:
      rlsched cluster up --set minikube.nodes=3
    """
    from rlmodel.testbed.cluster import cluster_up

    cfg = testbed_config(config_path, testbed_set)
    checks = cluster_up(cfg, skip_images=skip_images, say=click.echo)
    click.echo("testbed up:")
    _print_checks(checks)


@cluster.command("status")
@config_options
@click.option("--backend", type=click.Choice(["minikube", "kubernetes"]), default="minikube", show_default=True,
              envvar="RLSCHED_BACKEND", show_envvar=True,
              help="The Minikube testbed, or any cluster (`cluster apply`; no minikube calls).")
def cluster_status_cmd(config_path: Path | None, testbed_set: tuple[str, ...], backend: str) -> None:
    """Report each piece of the testbed as up or down (exit 1 if any is down).

    With --backend kubernetes: the API, the objects `apply` made, the selected nodes' agents, Prometheus
    and the power source's series for every selected node.
    """
    from rlmodel.testbed.cluster import cluster_status, cluster_status_any

    cfg = testbed_config(config_path, testbed_set)
    if not _print_checks(cluster_status(cfg) if backend == "minikube" else cluster_status_any(cfg)):
        sys.exit(1)


@cluster.command("apply")
@config_options
@click.option("--skip", multiple=True, type=click.Choice(["node-exporter", "resource-blocker"]),
              help="Leave out an agent the cluster already runs (e.g. its own node-exporter on ports.node_exporter).")
def cluster_apply_cmd(config_path: Path | None, testbed_set: tuple[str, ...], skip: tuple[str, ...]) -> None:
    """Deploy rlsched's manifests on any cluster (`--backend kubernetes`), then wait for the selected nodes' agents.

    Uses kubernetes.context (else the kubeconfig's current context) and kubernetes.node_selector; never
    calls minikube and starts no Prometheus (point prometheus.url at the cluster's). The images must be
    pullable by the cluster (push them to your registry; see docs/testbed.md).

    \b
    Example:
      rlsched cluster apply --set kubernetes.context=lab --set kubernetes.node_selector=rlsched.io/testbed=true
    """
    from rlmodel.testbed.cluster import cluster_apply

    cfg = testbed_config(config_path, testbed_set)
    checks = cluster_apply(cfg, skip=skip, say=click.echo)
    click.echo("agents up:")
    _print_checks(checks)


@cluster.command("delete")
@config_options
def cluster_delete_cmd(config_path: Path | None, testbed_set: tuple[str, ...]) -> None:
    """Remove what `cluster apply` created on any cluster (the test app pods and the manifests' objects)."""
    from rlmodel.testbed.cluster import cluster_delete

    cluster_delete(testbed_config(config_path, testbed_set), say=click.echo)


@cluster.command("down")
@config_options
@click.option("--keep-minikube", is_flag=True, help="Remove the objects and Prometheus but keep the Minikube VMs.")
def cluster_down_cmd(config_path: Path | None, testbed_set: tuple[str, ...], keep_minikube: bool) -> None:
    """Remove what `up` created: the objects, Prometheus, and (unless --keep-minikube) the cluster."""
    from rlmodel.testbed.cluster import cluster_down

    cluster_down(testbed_config(config_path, testbed_set), keep_minikube=keep_minikube, say=click.echo)


@cluster.command("config")
@config_options
def cluster_config_cmd(config_path: Path | None, testbed_set: tuple[str, ...]) -> None:
    """Print the effective configuration as TOML (every key, with its meaning)."""
    from rlmodel.testbed.config import render_toml

    cfg = testbed_config(config_path, testbed_set)
    click.echo(f"# effective configuration (file: {cfg.source})")
    click.echo(render_toml(cfg), nl=False)


def _time_s(text: str | None) -> float | None:
    """Unix seconds from "1764590400", "1764590400.5" or an ISO time ("2026-12-01T08:00:00Z"); None for None."""
    if text is None:
        return None
    from datetime import datetime, timezone

    try:
        return float(text)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text[:60]!r} is neither Unix seconds nor an ISO time", param_hint="--end") from None
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()


@click.command()
@click.option("--power", "power_csvs", multiple=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="A power_samples.csv from a testbed run, or a power monitor CSV (repeatable).")
@click.option("--source", type=click.Choice(["rlsched-monitor", "kepler", "scaphandre"]), default=None,
              help="Instead of files: read this power source's counters (and node-exporter) from Prometheus.")
@click.option("--last-s", type=click.FloatRange(min=1, max=7 * 86400), default=600.0, show_default=True,
              help="With --source: the span read, s, ending at --end.")
@click.option("--end", "end_text", default=None, metavar="TIME",
              help="With --source: end of the span, Unix s or ISO time [default: now].")
@click.option("--step-s", type=click.FloatRange(min=0.5, max=3600), default=10.0, show_default=True,
              help="With --source: one sample per node per slice of this length, s.")
@click.option("--backend", type=click.Choice(["minikube", "kubernetes"]), default="minikube", show_default=True,
              envvar="RLSCHED_BACKEND", show_envvar=True,
              help="With --source: whose nodes (the Minikube profile's, or kubernetes.context's) are fitted.")
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Scenario TOML to write.")
@click.option("--like", default="minikube", show_default=True,
              help="Scenario whose workload, reward and background load the output copies.")
@click.option("--cpu-cores", type=click.FloatRange(min=0.001), default=None,
              help="Cores per node [default: with --source the nodes' allocatable, else minikube.cpus].")
@click.option("--memory-gib", type=click.FloatRange(min=0.001), default=None,
              help="Memory per node, GiB [default: with --source the nodes' allocatable, else "
                   "minikube.memory_mib / 1024].")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=0, show_default=True,
              help="Seed of the held-out split.")
@config_options
def calibrate(power_csvs: tuple[Path, ...], source: str | None, last_s: float, end_text: str | None, step_s: float,
              backend: str, out: Path, like: str, cpu_cores: float | None, memory_gib: float | None, seed: int,
              config_path: Path | None, testbed_set: tuple[str, ...]) -> None:
    """Fit each node's power curve from measured samples and write a scenario the twin can train on.

    From files (--power): a monitor CSV is joined with node-exporter utilization from Prometheus
    (prometheus.url). From a power source (--source): its energy counters in Prometheus over the last
    --last-s seconds, one sample per node per --step-s slice (counter differences over each slice),
    for the nodes kubernetes.node_selector selects. Prints, per node, the held-out mean absolute
    percentage error of the fitted curve.

    \b
    Example:
      rlsched calibrate --power results/tb/power_samples.csv --out calibrated.toml
      rlsched calibrate --source kepler --backend kubernetes --last-s 3600 --step-s 30 --out lab.toml
      rlsched train --scenario calibrated.toml --model Dale.pth
    """
    import time

    from rlmodel.sim.scenario import load_scenario
    from rlmodel.testbed.calibrate import calibrate as fit
    from rlmodel.testbed.calibrate import read_samples, samples_from_source, write_scenario

    if bool(power_csvs) == bool(source):
        raise click.UsageError("give --power FILE (repeatable) or --source NAME, not both")
    cfg = testbed_config(config_path, testbed_set)
    cores: float | dict[str, float] = cpu_cores or cfg.minikube.cpus
    memory: float | dict[str, float] = memory_gib or cfg.minikube.memory_mib / 1024
    if source:
        from rlmodel.testbed.cluster import any_cluster_kube
        from rlmodel.testbed.kube import Kube, TestbedError
        from rlmodel.testbed.metrics import PrometheusReader
        from rlmodel.testbed.power_sources import power_source

        cfg.power.source = source
        kube = any_cluster_kube(cfg) if backend == "kubernetes" else Kube(cfg)
        nodes = kube.nodes(cfg.kubernetes.node_selector)
        if not nodes:
            raise TestbedError(f"no node matches kubernetes.node_selector {cfg.kubernetes.node_selector!r}")
        reader = PrometheusReader(cfg.prometheus.url, timeout_s=cfg.prometheus.query_timeout_s,
                                  retries=cfg.kubernetes.retries, scrape_interval_s=cfg.prometheus.scrape_interval_s)
        end = _time_s(end_text) or time.time()
        samples = samples_from_source(power_source(cfg, reader, nodes), end - last_s, end, step_s)
        cores = cpu_cores or {n.name: n.cpu_cores for n in nodes}
        memory = memory_gib or {n.name: n.memory_gib for n in nodes}
    else:
        samples = read_samples(list(power_csvs), prometheus_url=cfg.prometheus.url, vm_prefix=cfg.power.vm_prefix,
                               scrape_interval_s=cfg.prometheus.scrape_interval_s)
    fits, text = fit(samples, like=load_scenario(like), cpu_cores=cores, memory_gib=memory, seed=seed)
    write_scenario(out, text)
    click.echo(f"{'node':<16} {'samples':>7} {'held out':>8} {'MAPE':>7} {'util %':>9}  W at 0/50/100 %")
    for f in fits:
        mape = "n/a" if f.holdout_mape != f.holdout_mape else f"{100 * f.holdout_mape:.1f} %"
        click.echo(f"{f.node:<16} {f.samples:>7} {f.holdout_samples:>8} {mape:>7} "
                   f"{100 * f.util_range[0]:>3.0f}-{100 * f.util_range[1]:<3.0f}   "
                   f"{f.watts[0]:.1f} / {f.watts[5]:.1f} / {f.watts[10]:.1f}")
    click.echo(f"wrote {out}: train on it with `rlsched train --scenario {out}`")


COMMANDS = [cluster, calibrate]
