"""`rlsched load`: JMeter load on the test app."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import click


@click.group()
def load() -> None:
    """Load on the test app with JMeter."""


@load.command("run")
@click.option("--target", required=True, envvar="RLSCHED_LOAD_TARGET", show_envvar=True,
              help="The test app's URL, e.g. http://127.0.0.1:8080/work.")
@click.option("--plan", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JMeter plan [default: jmeter/testapp.jmx].")
@click.option("--threads", type=click.IntRange(1, 10_000), default=4, show_default=True,
              envvar="RLSCHED_LOAD_THREADS", show_envvar=True, help="Concurrent JMeter users.")
@click.option("--duration", type=click.IntRange(1, 86_400), default=30, show_default=True,
              envvar="RLSCHED_LOAD_DURATION", show_envvar=True, help="Seconds of load.")
@click.option("--ramp-up", type=click.IntRange(0, 3600), default=1, show_default=True,
              help="Seconds to start all users.")
@click.option("--mode", type=click.Choice(["cpu", "memory", "io", "mixed"]), default="cpu", show_default=True,
              help="Kind of work per request.")
@click.option("--intensity", type=click.IntRange(1, 20), default=1, show_default=True, help="Work per request.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder [default: results/load-<timestamp>].")
@click.option("--jmeter", default=None, envvar="RLSCHED_JMETER", show_envvar=True,
              help="JMeter executable [default: jmeter on PATH].")
@click.option("--max-error-rate", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True,
              envvar="RLSCHED_LOAD_MAX_ERROR_RATE", show_envvar=True,
              help="Exit 1 when more than this share of requests failed (a dead or wrong target).")
def load_run(target: str, plan: Path | None, threads: int, duration: int, ramp_up: int, mode: str, intensity: int,
             out: Path | None, jmeter: str | None, max_error_rate: float) -> None:
    """Run JMeter non-GUI against the test app; write results.jtl and summary.csv.

    The results are written whatever the error rate; the exit status is 1 when more than
    --max-error-rate of the requests failed.

    \b
    Example:
      rlsched load run --target http://127.0.0.1:8080/work --threads 8 --duration 60 --out results/load
    """
    from rlmodel.load.jmeter import DEFAULT_PLAN, run_load

    out = out or Path("results") / f"load-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}"
    s = run_load(target, out, plan=plan or DEFAULT_PLAN, threads=threads, duration_s=duration, ramp_up_s=ramp_up,
                 mode=mode, intensity=intensity, jmeter=jmeter)
    click.echo(f"{s.requests} requests, {s.errors} errors ({s.error_rate:.2%}), {s.throughput_rps:.1f} req/s; "
               f"latency mean {s.latency_mean_ms:.1f} ms, p50 {s.latency_p50_ms:.0f}, p95 {s.latency_p95_ms:.0f}, "
               f"p99 {s.latency_p99_ms:.0f} ms")
    click.echo(f"wrote {out / 'results.jtl'} and {out / 'summary.csv'}")
    if s.error_rate > max_error_rate:
        raise click.ClickException(f"{s.error_rate:.0%} of the requests to {target} failed (more than "
                                   f"--max-error-rate {max_error_rate:.0%}): is the test app running there?")


COMMANDS = [load]
