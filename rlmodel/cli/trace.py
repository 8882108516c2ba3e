"""`rlsched trace`: import public cluster traces as native trace CSVs, and describe a trace."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np


@click.group()
def trace() -> None:
    """Pod traces to replay in the twin (`[workload] trace = "file.csv"`)."""


@trace.command("import")
@click.option("--format", "fmt", type=click.Choice(["alibaba-openb"]), required=True,
              help="The trace's format: alibaba-openb = Alibaba cluster-trace-gpu-v2023 (OpenB) pod list.")
@click.argument("pod_list", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--node-list", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The trace's node list: also write a scenario with its node groups.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The native trace CSV to write.")
@click.option("--scenario", "scenario_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The scenario to write with --node-list [default: --out with the suffix .toml].")
@click.option("--cpu-only", is_flag=True,
              help="Keep GPU pods with their CPU and memory requests alone (without it they are skipped).")
@click.option("--pods-per-episode", type=click.IntRange(1, 1_000_000), default=200, show_default=True,
              help="The scenario's episode length, pods (at most the trace's).")
def trace_import(fmt: str, pod_list: Path, node_list: Path | None, out: Path, scenario_out: Path | None,
                 cpu_only: bool, pods_per_episode: int) -> None:
    """Convert a public trace to rlsched's native trace CSV (docs/scenarios.md, "Trace replay").

    \b
    Example:
      rlsched trace import --format alibaba-openb openb_pod_list_default.csv \\
          --node-list openb_node_list_all_node.csv --out openb.csv
      rlsched benchmark --scenario openb.toml --episodes 5
    """
    from rlmodel.sim.openb import import_openb

    report = import_openb(pod_list, out, node_list=node_list, scenario_out=scenario_out, cpu_only=cpu_only,
                          pods_per_episode=pods_per_episode)
    skipped = ", ".join(f"{reason}: {n}" for reason, n in report.skipped.items()) or "none"
    click.echo(f"{out}: {report.pods_kept} pods of {report.pods_read} (skipped: {skipped})")
    if report.node_groups:
        target = scenario_out if scenario_out is not None else out.with_suffix(".toml")
        nodes = sum(n for _, n in report.node_groups)
        click.echo(f"{target}: {nodes} nodes in {len(report.node_groups)} groups")


@trace.command("show")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def trace_show(path: Path) -> None:
    """Describe a native trace CSV: pods, span, requests, run times, and the mix of owners and QoS classes."""
    from rlmodel.sim.podtrace import OWNER_KINDS, QOS_CLASSES, read_trace

    t = read_trace(path).with_signals()
    assert t.owner_kind is not None and t.qos is not None and t.workload is not None
    click.echo(f"{path}: {len(t)} pods over {float(t.arrival_s[-1] - t.arrival_s[0]):.0f} s, "
               f"{len(set(t.workload[t.workload >= 0].tolist()))} workloads")
    for name, values, unit in (("cpu request", t.cpu_request_cores, "cores"),
                               ("memory request", t.memory_request_gib, "GiB"), ("run time", t.work_s, "s")):
        q = np.percentile(values, [50, 90, 99])
        click.echo(f"  {name:<15} median {q[0]:.4g}, p90 {q[1]:.4g}, p99 {q[2]:.4g}, max {values.max():.4g} {unit}")
    owners = np.bincount(t.owner_kind, minlength=len(OWNER_KINDS))
    qos = np.bincount(t.qos, minlength=len(QOS_CLASSES))
    click.echo("  owners: " + ", ".join(f"{k} {n}" for k, n in zip(OWNER_KINDS, owners, strict=True) if n))
    click.echo("  QoS: " + ", ".join(f"{k} {n}" for k, n in zip(QOS_CLASSES, qos, strict=True) if n))
    for k, label in enumerate(QOS_CLASSES):
        mine = t.qos == k
        if mine.any():
            click.echo(f"  mean run time {label}: {float(t.work_s[mine].mean()):.0f} s")


COMMANDS = [trace]
