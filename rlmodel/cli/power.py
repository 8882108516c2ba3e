"""`rlsched power`: the host power monitor and power CSV summaries."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.group()
def power() -> None:
    """Host power: the RAPL monitor and power CSV summaries."""


@power.command("monitor", context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                            "help_option_names": []})
@click.pass_context
def power_monitor(ctx: click.Context) -> None:
    """Run the host power monitor (same code and options as host_scripts/kvm_power_monitor.py).

    \b
    Example:
      sudo .venv/bin/rlsched power monitor --interval 1 --csv power.csv --listen 127.0.0.1:9877
      rlsched power monitor --help
    """
    from rlmodel.power import kvm_power_monitor

    sys.exit(kvm_power_monitor.main(list(ctx.args)))


@power.command("summary")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also draw watts over time per VM to this PNG.")
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the summary table to this CSV.")
def power_summary(files: tuple[Path, ...], plot: Path | None, csv_out: Path | None) -> None:
    """Summarise power CSVs: per VM and for the host, duration, samples, mean and p95 watts, joules.

    \b
    Example:
      rlsched power summary power.csv --plot power.png
    """
    from rlmodel.evaluation.report import write_csv_atomic
    from rlmodel.power.summary import plot_power, read_power_csv, summarize_power

    unique: dict[Path, Path] = {}
    for f in files:
        if f.resolve() in unique:
            click.echo(f"{f}: given twice, read once", err=True)
        unique.setdefault(f.resolve(), f)
    frames = [read_power_csv(f) for f in unique.values()]
    if sum(len(f) for f in frames) == 0:
        raise click.ClickException(f"{', '.join(map(str, files))}: no samples (header only)")
    table = summarize_power(frames)
    est = " (estimated from CPU utilization, not RAPL)" if table["estimated"].any() else ""
    click.echo(f"{'vm':<24} {'measured s':>10} {'span s':>9} {'samples':>8} {'mean W':>9} {'p95 W':>9} "
               f"{'energy J':>12}")
    for r in table.itertuples(index=False):
        click.echo(f"{r.vm:<24} {r.duration_s:>10.1f} {r.span_s:>9.1f} {r.samples:>8d} {r.mean_watts:>9.2f} "
                   f"{r.p95_watts:>9.2f} {r.energy_j:>12.1f}")
    click.echo("mean W = energy / measured time (time-weighted); span includes gaps between samples or files")
    if est:
        click.echo("watts" + est)
    if csv_out:
        write_csv_atomic(table, csv_out)
    if plot:
        plot_power(frames, plot)
        click.echo(f"wrote {plot}")


COMMANDS = [power]
