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
    """The Minikube testbed: bring it up, check it, tear it down.

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
def cluster_status_cmd(config_path: Path | None, testbed_set: tuple[str, ...]) -> None:
    """Report each piece of the testbed as up or down (exit 1 if any is down)."""
    from rlmodel.testbed.cluster import cluster_status

    cfg = testbed_config(config_path, testbed_set)
    if not _print_checks(cluster_status(cfg)):
        sys.exit(1)


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


@click.command()
@click.option("--power", "power_csvs", multiple=True, required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="A power_samples.csv from a testbed run, or a power monitor CSV (repeatable).")
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Scenario TOML to write.")
@click.option("--like", default="minikube", show_default=True,
              help="Scenario whose workload, reward and background load the output copies.")
@click.option("--cpu-cores", type=click.FloatRange(min=0.001), default=None,
              help="Cores per node [default: minikube.cpus].")
@click.option("--memory-gib", type=click.FloatRange(min=0.001), default=None,
              help="Memory per node, GiB [default: minikube.memory_mib / 1024].")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=0, show_default=True,
              help="Seed of the held-out split.")
@config_options
def calibrate(power_csvs: tuple[Path, ...], out: Path, like: str, cpu_cores: float | None, memory_gib: float | None,
              seed: int, config_path: Path | None, testbed_set: tuple[str, ...]) -> None:
    """Fit each node's power curve from measured samples and write a scenario the twin can train on.

    A monitor CSV is joined with node-exporter utilization from Prometheus (prometheus.url). Prints,
    per node, the held-out mean absolute percentage error of the fitted curve.

    \b
    Example:
      rlsched calibrate --power results/tb/power_samples.csv --out calibrated.toml
      rlsched train --scenario calibrated.toml --model Dale.pth
    """
    from rlmodel.sim.scenario import load_scenario
    from rlmodel.testbed.calibrate import calibrate as fit
    from rlmodel.testbed.calibrate import read_samples, write_scenario

    cfg = testbed_config(config_path, testbed_set)
    samples = read_samples(list(power_csvs), prometheus_url=cfg.prometheus.url, vm_prefix=cfg.power.vm_prefix,
                           scrape_interval_s=cfg.prometheus.scrape_interval_s)
    fits, text = fit(samples, like=load_scenario(like), cpu_cores=cpu_cores or cfg.minikube.cpus,
                     memory_gib=memory_gib or cfg.minikube.memory_mib / 1024, seed=seed)
    write_scenario(out, text)
    click.echo(f"{'node':<16} {'samples':>7} {'held out':>8} {'MAPE':>7} {'util %':>9}  W at 0/50/100 %")
    for f in fits:
        mape = "n/a" if f.holdout_mape != f.holdout_mape else f"{100 * f.holdout_mape:.1f} %"
        click.echo(f"{f.node:<16} {f.samples:>7} {f.holdout_samples:>8} {mape:>7} "
                   f"{100 * f.util_range[0]:>3.0f}-{100 * f.util_range[1]:<3.0f}   "
                   f"{f.watts[0]:.1f} / {f.watts[5]:.1f} / {f.watts[10]:.1f}")
    click.echo(f"wrote {out}: train on it with `rlsched train --scenario {out}`")


COMMANDS = [cluster, calibrate]
