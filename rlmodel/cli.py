"""The `rlsched` command line: a thin shell over the library.

Every command parses its options, calls one library function, prints, and exits: 0 on success, 1
with a one-line message for a user's mistake (bad file, bad option value), 2 for usage errors.
Every option can also be set through an environment variable (shown in --help).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import click

from rlmodel.errors import RlschedError


class _Group(click.Group):
    """Turns the library's typed errors into `Error: <one line>` and exit 1, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except RlschedError as exc:
            raise click.ClickException(str(exc)) from None


def _scenario_option(f):
    return click.option(
        "--scenario", "-s", default="hetero-sleep", show_default=True, envvar="RLSCHED_SCENARIO",
        show_envvar=True, help="Built-in scenario name (see `rlsched scenarios`) or path to a scenario TOML file.",
    )(f)


def _seed_option(default: int):
    return click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=default, show_default=True,
                        envvar="RLSCHED_SEED", show_envvar=True, help="Seed of the first episode (then seed+1, ...).")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="rlsched")
def main() -> None:
    """rlsched: energy-aware Kubernetes scheduling on a digital twin and a Minikube testbed.

    \b
    Example:
      rlsched benchmark --scenario hetero-sleep --episodes 20
      rlsched scenarios
    """


@main.command()
@click.option("--show", "show_name", metavar="NAME|PATH", default=None, help="Print one scenario's nodes and workload.")
def scenarios(show_name: str | None) -> None:
    """List the built-in scenarios, or show one (built-in or file) after validating it.

    \b
    Example:
      rlsched scenarios --show hetero-sleep
    """
    from rlmodel.sim.scenario import builtin_scenarios, load_scenario

    names = [show_name] if show_name else builtin_scenarios()
    for name in names:
        sc = load_scenario(name)
        sleep = f"sleep after {sc.idle_sleep_after_s:g} s at {sc.sleep_watts:g} W, wake {sc.wake_s:g} s" \
            if sc.sleep_enabled else "always on"
        groups = ", ".join(f"{g.count} x {g.node_type.name}" for g in sc.groups)
        click.echo(f"{sc.name:<14} {sc.num_nodes:>4} nodes ({groups}); {sleep}; "
                   f"{sc.workload.pods_per_episode} pods every {sc.workload.mean_interarrival_s:g} s on average")


@main.command()
@_scenario_option
@click.option("--policies", "-p", default=None, envvar="RLSCHED_POLICIES", show_envvar=True,
              help="Comma-separated policies [default: every baseline].")
@click.option("--episodes", "-n", type=click.IntRange(1, 100_000), default=20, show_default=True,
              envvar="RLSCHED_EPISODES", show_envvar=True, help="Episodes per policy (paired: same seeds).")
@_seed_option(1000)
@click.option("--scale", type=click.IntRange(1, 1000), default=1, show_default=True, envvar="RLSCHED_SCALE",
              show_envvar=True, help="Multiply every node group and the pod rate by this factor.")
@click.option("--oracle/--no-oracle", default=True, show_default=True, envvar="RLSCHED_ORACLE", show_envvar=True,
              help="Add the offline optimum (small episodes) or its lower bound as an `oracle` row.")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              envvar="RLSCHED_OUT", show_envvar=True, help="Output folder [default: results/benchmark-<timestamp>].")
def benchmark(scenario: str, policies: str | None, episodes: int, seed: int, scale: int, oracle: bool,
              out: Path | None) -> None:
    """Run placement policies on identical episodes and report energy, overload and misses.

    Writes OUT/episodes.csv (one row per policy and episode), OUT/summary.csv (one row per
    policy, with 95 % confidence intervals and ratios to round-robin) and OUT/benchmark.png.

    \b
    Example:
      rlsched benchmark --scenario hetero --policies round-robin,power-greedy --episodes 10
    """
    from tqdm import tqdm

    from rlmodel.evaluation.benchmark import run_benchmark, summarize
    from rlmodel.evaluation.report import format_table, plot_energy, write_csv_atomic
    from rlmodel.policies import BASELINES, make_policy
    from rlmodel.sim.scenario import load_scenario

    sc = load_scenario(scenario)
    if scale > 1:
        sc = sc.scaled(scale)
    names = [p.strip() for p in policies.split(",") if p.strip()] if policies else list(BASELINES)
    if not names:
        raise click.BadParameter("no policy given", param_hint="--policies")
    if len(set(names)) != len(names):
        raise click.BadParameter("a policy is named twice", param_hint="--policies")
    chosen = [make_policy(n) for n in names]
    out = out or Path("results") / f"benchmark-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(f"{out}: cannot create the output folder: {exc.strerror}") from None

    total = episodes * (len(chosen) + (1 if oracle else 0))
    with tqdm(total=total, desc=f"benchmark {sc.name}", unit="ep", file=sys.stderr, leave=False,
              disable=None) as bar:  # no bar when stderr is not a terminal
        def tick(policy: str, episode: int) -> None:
            bar.set_postfix_str(policy)
            bar.update()

        episodes_df = run_benchmark(sc, chosen, episodes=episodes, seed=seed, with_oracle=oracle, on_episode=tick)
    summary = summarize(episodes_df)
    write_csv_atomic(episodes_df, out / "episodes.csv")
    write_csv_atomic(summary, out / "summary.csv")
    plot_energy(summary, out / "benchmark.png", f"{sc.name}: {episodes} episodes, seeds {seed}..{seed + episodes - 1}")
    run = {"scenario": sc.name, "source": sc.source, "policies": names, "episodes": episodes, "seed": seed,
           "scale": scale, "oracle": oracle}
    (out / "run.json").write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    click.echo(f"scenario {sc.name} ({sc.num_nodes} nodes), {episodes} episodes from seed {seed}")
    click.echo(format_table(summary))
    if oracle:
        kinds = sorted(set(episodes_df.loc[episodes_df.policy == "oracle", "oracle_kind"]))
        click.echo(f"oracle: {', '.join(kinds)} (exact: offline optimum; lower-bound: fluid relaxation, see README)")
    click.echo(f"wrote {out / 'episodes.csv'}, {out / 'summary.csv'}, {out / 'benchmark.png'}")


if __name__ == "__main__":  # pragma: no cover
    main()
