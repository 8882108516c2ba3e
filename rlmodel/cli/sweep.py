"""`rlsched sweep`: scenarios x seeds x hyperparameter grids, each a training and a paired benchmark."""

from __future__ import annotations

from pathlib import Path

import click


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected whole numbers separated by commas") from None
    if not values or any(not 0 <= v <= 9999 for v in values):
        raise click.BadParameter(f"{text!r}: expected seeds from 0 to 9999")
    return values


@click.command()
@click.option("--scenarios", required=True, help="Comma-separated scenarios (built-in names or TOML paths).")
@click.option("--seeds", required=True, help="Comma-separated training seeds, e.g. 1,2,3.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="A hyperparameter (repeatable); one key given several times is a grid over its values.")
@click.option("--steps", type=click.IntRange(1, 100_000_000), default=60_000, show_default=True,
              help="Training steps of every run.")
@click.option("--episodes", "-n", type=click.IntRange(1, 100_000), default=20, show_default=True,
              help="Held-out benchmark episodes of every run.")
@click.option("--eval-seed", type=click.IntRange(0, 899_999), default=1000, show_default=True,
              help="First held-out episode seed.")
@click.option("--policies", "-p", default="round-robin,efficient-first,runtime-aware", show_default=True,
              help="Baselines benchmarked next to each run's DQN.")
@click.option("--workers", type=click.IntRange(1, 1024), default=1, show_default=True,
              help="Local worker processes (or, with --ray-address local, the CPUs of the local Ray).")
@click.option("--ray-address", default=None,
              help="Run on Ray: `local` starts one for the sweep, `auto` or ray://HOST:PORT joins a cluster.")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output folder; a sweep run again into it skips the finished runs.")
def sweep(scenarios: str, seeds: str, sets: tuple[str, ...], steps: int, episodes: int, eval_seed: int,
          policies: str, workers: int, ray_address: str | None, out: Path) -> None:
    """Train and benchmark every scenario x seed x `--set` combination; write results.csv, summary.csv, sweep.png.

    \b
    Example:
      rlsched sweep --scenarios hetero-sleep,classes-sleep --seeds 1,2,3 --set demonstrator=efficient-first \\
          --set demonstrator=runtime-aware --workers 2 --out results/sweep
      rlsched sweep --scenarios hetero-sleep --seeds 1,2 --ray-address auto --out results/sweep-ray
    """
    from rlmodel.evaluation.sweep import SweepPlan, finished, make_folder, parse_sets, run_sweep
    from rlmodel.policies import make_policy
    from rlmodel.sim import load_scenario

    names = [s.strip() for s in scenarios.split(",") if s.strip()]
    for name in names:
        load_scenario(name)  # a bad scenario stops the sweep before any run
    baselines = tuple(p.strip() for p in policies.split(",") if p.strip())
    for p in baselines:
        make_policy(p)
    plan = SweepPlan(scenarios=names, seeds=_ints(seeds), grid=parse_sets(sets), steps=steps, episodes=episodes,
                     eval_seed=eval_seed, policies=baselines)
    make_folder(out)  # before the first line: an output folder that cannot be made is one line, nothing started
    runs = plan.runs()
    todo = sum(not finished(out, r) for r in runs)
    where = f"Ray ({ray_address})" if ray_address else f"{workers} local worker(s)"
    plural = "s" * (len(runs) != 1)
    click.echo(f"sweep: {len(runs)} run{plural} ({len(runs) - todo} already finished in {out}), {todo} to do on "
               f"{where}")
    with click.progressbar(length=todo, label="runs", show_pos=True) as bar:
        _, summary = run_sweep(plan, out, workers=workers, ray_address=ray_address, on_run=lambda _: bar.update(1))
    dqn = summary[summary.policy == "dqn"]
    for r in dqn.itertuples(index=False):
        ci = f" ± {r.ratio_to_efficient_first_ci95:.3f}" if r.ratio_to_efficient_first_ci95 == \
            r.ratio_to_efficient_first_ci95 else ""
        click.echo(f"  {r.scenario:<16} {r.overrides:<40} dqn / efficient-first {r.ratio_to_efficient_first:.3f}{ci} "
                   f"({r.seeds} seeds, training {r.train_s_mean:.0f} s)")
    click.echo(f"wrote {out / 'results.csv'}, {out / 'summary.csv'}, {out / 'sweep.png'}")


COMMANDS = [sweep]
