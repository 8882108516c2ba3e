"""Commands on the digital twin (and, with --backend minikube or kubernetes, a real cluster): scenarios, benchmark,
train, test."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import click

from rlmodel.atomic import atomic_path
from rlmodel.cli.options import backend_options, make_env, scenario_option, seed_option


@click.command()
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
        wl = sc.workload
        if wl.trace is not None:
            arrivals = f"{wl.pods_per_episode}-pod windows of {wl.trace_source} ({len(wl.trace)} pods), " \
                       f"times x {wl.time_scale:g}"
        elif wl.classes:
            arrivals = f"{wl.pods_per_episode} pods in batches every {wl.mean_interarrival_s:g} s on average"
        else:
            arrivals = f"{wl.pods_per_episode} pods every {wl.mean_interarrival_s:g} s on average"
        click.echo(f"{sc.name:<14} {sc.num_nodes:>4} nodes ({groups}); {sleep}; {arrivals}")
        if show_name:
            for c in wl.classes:
                click.echo(f"  class {c.name} (weight {c.weight:g}): {c.owner_kind}, {c.qos}, priority {c.priority}, "
                           f"{c.replicas.describe()} pods a batch, {c.workloads} workload(s); cpu "
                           f"{c.cpu_request_cores.describe()} cores, run time {c.duration_s.describe()} s")
            if wl.arrivals.peak_to_trough != 1.0:
                click.echo(f"  daily cycle: period {wl.arrivals.period_s:g} s, peak / trough "
                           f"{wl.arrivals.peak_to_trough:g}")


@click.command()
@scenario_option
@click.option("--policies", "-p", default=None, envvar="RLSCHED_POLICIES", show_envvar=True,
              help="Comma-separated policies [default: every baseline].")
@click.option("--episodes", "-n", type=click.IntRange(1, 100_000), default=20, show_default=True,
              envvar="RLSCHED_EPISODES", show_envvar=True, help="Episodes per policy (paired: same seeds).")
@seed_option(1000)
@click.option("--scale", type=click.IntRange(1, 1000), default=1, show_default=True, envvar="RLSCHED_SCALE",
              show_envvar=True, help="Multiply every node group and the pod rate by this factor.")
@click.option("--oracle/--no-oracle", default=True, show_default=True, envvar="RLSCHED_ORACLE", show_envvar=True,
              help="Add the offline optimum (small episodes) or its lower bound as an `oracle` row.")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              envvar="RLSCHED_OUT", show_envvar=True, help="Output folder [default: results/benchmark-<timestamp>].")
@click.option("--model", "-m", type=click.Path(dir_okay=False, path_type=Path), default=None,
              envvar="RLSCHED_MODEL", show_envvar=True,
              help="A trained DQN model file: adds the `dqn` policy (included by default when given).")
@click.option("--reference", "-r", default=None, envvar="RLSCHED_REFERENCE", show_envvar=True,
              help="The policy every other is compared with, paired per episode [default: round-robin when "
                   "benchmarked, else the first policy].")
@backend_options
def benchmark(scenario: str, policies: str | None, episodes: int, seed: int, scale: int, oracle: bool,
              out: Path | None, model: Path | None, reference: str | None, backend: str, config_path: Path | None,
              testbed_set: tuple[str, ...]) -> None:
    """Run placement policies on identical episodes and rank them by cost (energy plus penalties).

    The cost is what the reward charges: energy, plus the overload penalty, plus a penalty per pod left
    unplaced, so a policy never ranks better by leaving pods out. Each policy is compared with
    --reference on the same episodes (ratio of costs and paired difference with its 95 % CI).
    Writes OUT/episodes.csv (one row per policy and episode), OUT/summary.csv (one row per
    policy, with 95 % confidence intervals) and OUT/benchmark.png. Ctrl-C (or SIGTERM) keeps the
    episodes that finished and exits 130.

    \b
    Example:
      rlsched benchmark --scenario hetero --policies round-robin,power-greedy --episodes 10
      rlsched benchmark --model Dale.pth --scale 4 --reference efficient-first
      rlsched benchmark --backend minikube --scenario minikube --policies round-robin,dqn --model Dale.pth -n 3

    With --backend minikube the episodes run on the testbed (see `rlsched cluster up`), with
    --backend kubernetes on any cluster (see `rlsched cluster apply`); there is no oracle row, and
    OUT/windows.csv and OUT/power_samples.csv (and, with Kepler, OUT/pod_power.csv) hold every
    measurement window.
    """
    from tqdm import tqdm

    from rlmodel.agents.policy import DQNPolicy
    from rlmodel.evaluation.benchmark import run_benchmark, summarize, unplaced_warnings
    from rlmodel.evaluation.report import format_table, plot_energy, write_csv_atomic
    from rlmodel.policies import BASELINES, make_policy
    from rlmodel.sim.scenario import load_scenario

    sc = load_scenario(scenario)
    if scale > 1:
        sc = sc.scaled(scale)
    names = [p.strip() for p in policies.split(",") if p.strip()] if policies else list(BASELINES)
    if not policies and model is not None:
        names.append("dqn")
    if not names:
        raise click.BadParameter("no policy given", param_hint="--policies")
    if len(set(names)) != len(names):
        raise click.BadParameter("a policy is named twice", param_hint="--policies")
    if "dqn" in names and model is None:
        raise click.BadParameter("the dqn policy needs a model file (--model PATH)", param_hint="--policies")
    reference = reference or ("round-robin" if "round-robin" in names else names[0])
    if reference not in names:
        raise click.BadParameter(f"{reference} is not among the policies ({', '.join(names)})",
                                 param_hint="--reference")
    chosen = [DQNPolicy.load(model) if n == "dqn" and model is not None else make_policy(n) for n in names]
    out = out or Path("results") / f"benchmark-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(f"{out}: cannot create the output folder: {exc.strerror}") from None

    if backend != "sim":
        oracle = False  # the offline optimum is a property of the twin
    env = make_env(backend, sc, config_path, testbed_set, out if backend != "sim" else None)
    # progress in pods, so that an episode of a million pods moves the bar too
    total = episodes * len(chosen) * sc.workload.pods_per_episode
    # no bar when stderr is not a terminal, unless episodes are so large that silence would look like a hang:
    # then a line every 10 s
    large = sc.workload.pods_per_episode >= 100_000
    tty = sys.stderr.isatty()
    with tqdm(total=total, desc=f"benchmark {sc.name}", unit="pod", file=sys.stderr, leave=False,
              disable=False if large else None, unit_scale=True, mininterval=0.1 if tty else 10.0,
              ascii=not tty) as bar:
        def tick(policy: str, episode: int) -> None:
            bar.set_postfix_str(f"{policy} episode {episode + 1}/{episodes}")

        rows: list[dict] = []
        try:
            episodes_df = run_benchmark(sc, chosen, episodes=episodes, seed=seed, with_oracle=oracle,
                                        on_episode=tick, env=env, rows=rows, on_decisions=bar.update)
        except KeyboardInterrupt:
            # keep what finished: the episodes so far, summarized over the episodes every policy completed
            bar.close()
            _write_partial(rows, out, reference)
            sys.exit(130)
        finally:
            env.sim.close()
    summary = summarize(episodes_df, reference)
    write_csv_atomic(episodes_df, out / "episodes.csv")
    write_csv_atomic(summary, out / "summary.csv")
    plot_energy(summary, out / "benchmark.png", f"{sc.name}: {episodes} episodes, seeds {seed}..{seed + episodes - 1}")
    run = {"scenario": sc.name, "source": sc.source, "policies": names, "episodes": episodes, "seed": seed,
           "scale": scale, "oracle": oracle, "model": str(model) if model else None, "backend": backend}
    with atomic_path(out / "run.json") as tmp:
        Path(tmp).write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    click.echo(f"scenario {sc.name} ({sc.num_nodes} nodes), {episodes} episodes from seed {seed}")
    click.echo(format_table(summary))
    for line in unplaced_warnings(summary, sc.reward.unschedulable_penalty_j):
        click.secho(line, fg="yellow", err=True)
    if oracle:
        kinds = sorted(set(episodes_df.loc[episodes_df.policy == "oracle", "oracle_kind"]))
        click.echo(f"oracle: {', '.join(kinds)} (exact: offline optimum; lower-bound: the larger of the fluid "
                   "and cover bounds, see docs/results.md)")
    click.echo(f"wrote {out / 'episodes.csv'}, {out / 'summary.csv'}, {out / 'benchmark.png'}"
               + (f", {out / 'windows.csv'}, {out / 'power_samples.csv'}" if backend != "sim" else "")
               + (f", {out / 'pod_power.csv'}" if (out / "pod_power.csv").exists() else ""))


def _remove_if_unused(log_dir: Path, created: bool) -> None:
    """Remove a log folder this run created when it holds no logged episode (a failed or aborted start)."""
    import shutil

    csv = log_dir / "train.csv"
    logged = csv.exists() and csv.read_bytes().count(b"\n") > 1
    if created and not logged and not any(p.name not in ("config.json", "train.csv") for p in log_dir.iterdir()):
        shutil.rmtree(log_dir, ignore_errors=True)


def _write_partial(rows: list[dict], out: Path, reference: str) -> None:
    """After an interruption: episodes.csv with every finished episode, and summary.csv over the episodes
    every policy finished (a paired comparison needs the same episodes)."""
    import pandas as pd

    from rlmodel.evaluation.benchmark import EPISODE_COLUMNS, summarize
    from rlmodel.evaluation.report import write_csv_atomic

    df = pd.DataFrame(rows, columns=EPISODE_COLUMNS)
    write_csv_atomic(df, out / "episodes.csv")
    note = f"interrupted: {len(df)} finished episodes in {out / 'episodes.csv'}"
    common = set.intersection(*(set(g.episode) for _, g in df.groupby("policy"))) if len(df) else set()
    policies = set(df.policy)
    if common and reference in policies:
        write_csv_atomic(summarize(df[df.episode.isin(common)], reference), out / "summary.csv")
        note += f"; {out / 'summary.csv'} over the {len(common)} episodes every started policy finished"
    click.echo(note, err=True)


@click.command()
@click.option("--model", "-m", type=click.Path(dir_okay=False, path_type=Path), default=Path("Dale.pth"),
              show_default=True, envvar="RLSCHED_MODEL", show_envvar=True, help="Model file to write (and resume).")
@click.option("--scenario", "-s", default=None, envvar="RLSCHED_SCENARIO", show_envvar=True,
              help="Built-in scenario name or TOML path [default: hetero-sleep; with --resume: the model's].")
@click.option("--steps", type=click.IntRange(1, 100_000_000), default=None, envvar="RLSCHED_STEPS", show_envvar=True,
              help="Environment steps (pod placements) to train for [default: 60000; with --resume: the "
                   "model's own budget].")
@click.option("--seed", type=click.IntRange(0, 9_999), default=1, show_default=True, envvar="RLSCHED_SEED",
              show_envvar=True, help="Seed of networks, exploration and training traces.")
@click.option("--resume", is_flag=True, envvar="RLSCHED_RESUME", show_envvar=True,
              help="Continue from --model: weights, optimizer, step counter, random states.")
@click.option("--force", is_flag=True, help="Replace --model if it exists (without it, an existing model is refused).")
@click.option("--log-dir", type=click.Path(file_okay=False, path_type=Path), default=None, envvar="RLSCHED_LOG_DIR",
              show_envvar=True, help="Training log folder [default: runs/<scenario>__<seed>__<timestamp>].")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a hyperparameter (repeatable); `rlsched train --hyperparameters` lists them.")
@click.option("--hyperparameters", is_flag=True, help="List the hyperparameters with defaults and meanings, and exit.")
@backend_options
def train(model: Path, scenario: str | None, steps: int | None, seed: int, resume: bool, force: bool, backend: str,
          log_dir: Path | None, overrides: tuple[str, ...], hyperparameters: bool, config_path: Path | None,
          testbed_set: tuple[str, ...]) -> None:
    """Train a DQN scheduler and save it to a model file.

    Every node bids with one shared network; the feasible node with the best bid gets the pod. The
    model file is written atomically at every checkpoint (`checkpoint_every` steps), at the end and on
    Ctrl-C or SIGTERM (exit 130). An existing model file is refused unless --resume or --force. Training
    writes LOG_DIR/train.csv (one row per episode, flushed) and TensorBoard events when tensorboard
    is installed.

    \b
    Example:
      rlsched train --model Dale.pth --scenario hetero-sleep
      rlsched train --model Dale.pth --resume --steps 100000
      rlsched train --model Dale.pth --resume --steps 60200 --backend minikube --scenario minikube

    With --backend minikube or kubernetes every step is a real pod and a measurement window (LOG_DIR
    also gets windows.csv and power_samples.csv); validation of checkpoints still runs in the twin.
    """
    import dataclasses

    import torch
    from tqdm import tqdm

    from rlmodel.agents.dqn import (
        DQNConfig,
        apply_overrides,
        check_config,
        check_memory,
        config_for_resume,
        config_help,
    )
    from rlmodel.agents.dqn import train as train_dqn
    from rlmodel.sim.scenario import load_scenario

    if hyperparameters:
        defaults = dataclasses.asdict(DQNConfig())
        for key, text in config_help().items():
            click.echo(f"{key:<22} {defaults[key]!s:<16} {text}")
        return
    start = 0
    if model.exists() and not (resume or force):
        raise click.ClickException(f"{model}: exists; pass --resume to continue training it or --force to replace it")
    if resume and force:
        raise click.BadParameter("--resume continues the model file, --force replaces it: pass one",
                                 param_hint="--force")
    if resume:
        cfg, trained_on, start = config_for_resume(model, steps)
        scenario = scenario or trained_on
    else:
        cfg = DQNConfig(seed=seed)
        if steps is not None:
            cfg = dataclasses.replace(cfg, total_steps=steps)
    cfg = apply_overrides(cfg, list(overrides))
    check_config(cfg)
    sc = load_scenario(scenario or "hetero-sleep")
    check_memory(cfg, sc.num_nodes, sc.workload.pods_per_episode)  # before any folder is written
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    log_dir = log_dir or Path("runs") / f"{sc.name}__{cfg.seed}__{stamp}"
    new_log_dir = not log_dir.exists()
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(f"{log_dir}: cannot create the log folder: {exc.strerror}") from None
    with atomic_path(log_dir / "config.json") as tmp:
        Path(tmp).write_text(json.dumps({"scenario": sc.source, "model": str(model), "resume": resume,
                                         "hyperparameters": dataclasses.asdict(cfg)}, indent=2) + "\n")
    torch.set_num_threads(1)  # small networks: one thread is faster and keeps runs reproducible
    bar = tqdm(total=cfg.total_steps, initial=start, desc=f"train {sc.name}", unit="step", file=sys.stderr,
               disable=None, dynamic_ncols=True)

    def on_episode(log, step: int) -> None:
        bar.update(step - bar.n)
        bar.set_postfix(energy_kJ=f"{log.energy_j / 1000:.0f}", ret=f"{log.ret:.0f}", eps=f"{log.epsilon:.2f}")

    before = model.stat().st_mtime_ns if model.exists() else None
    env = None
    try:
        env = make_env(backend, sc, config_path, testbed_set, log_dir if backend != "sim" else None, run="train")
        if cfg.demonstrator and not resume:
            click.echo(f"demonstrations: {cfg.demo_episodes} episodes of {cfg.demonstrator} in the twin, then "
                       f"{cfg.pretrain_steps} pretraining steps", err=True)
        data = train_dqn(cfg, sc, model, resume=resume, log_dir=log_dir, on_episode=on_episode, env=env)
    except KeyboardInterrupt:
        bar.close()
        written = model.exists() and model.stat().st_mtime_ns != before
        if written:
            click.echo(f"interrupted: checkpoint saved to {model}; continue with `rlsched train --model {model} "
                       f"--resume`", err=True)
        else:
            _remove_if_unused(log_dir, new_log_dir)
            click.echo(f"interrupted before the first checkpoint: {model} "
                       f"{'unchanged' if before is not None else 'not written'}", err=True)
        sys.exit(130)
    except Exception:
        _remove_if_unused(log_dir, new_log_dir)
        raise
    finally:
        bar.close()
        if env is not None:
            env.sim.close()
    m = data["metrics"]
    click.echo(f"trained {data['global_step']} steps ({data['episodes']} episodes) on {sc.name} in "
               f"{m['train_wall_s']:.0f} s; last {m['episodes_in_mean']} episodes: energy "
               f"{m['energy_j_mean'] / 1000:.1f} kJ, overload {m['overload_pod_s_mean']:.1f} pod-s")
    click.echo(f"wrote {model} and {log_dir / 'train.csv'}")


@click.command("test")
@click.option("--model", "-m", type=click.Path(dir_okay=False, path_type=Path), default=Path("Dale.pth"),
              show_default=True, envvar="RLSCHED_MODEL", show_envvar=True, help="Model file to run.")
@click.option("--scenario", "-s", default=None, envvar="RLSCHED_SCENARIO", show_envvar=True,
              help="Scenario name or file [default: the model's training scenario].")
@click.option("--episodes", "-n", type=click.IntRange(1, 10_000), default=1, show_default=True,
              envvar="RLSCHED_EPISODES", show_envvar=True, help="Episodes to run greedily.")
@seed_option(1000)
@click.option("--bids", type=click.IntRange(1, 100), default=5, show_default=True,
              help="How many of the best feasible bids to print per pod.")
@backend_options
def test_cmd(model: Path, scenario: str | None, episodes: int, seed: int, bids: int, backend: str,
             config_path: Path | None, testbed_set: tuple[str, ...]) -> None:
    """Run a trained model greedily and show, per pod, the chosen node and the nodes' bids.

    \b
    Example:
      rlsched test --model Dale.pth --episodes 2
    """
    import numpy as np

    from rlmodel.agents.model_file import load_model
    from rlmodel.agents.policy import DQNPolicy
    from rlmodel.envs.observation import POD_COL
    from rlmodel.sim.scenario import load_scenario

    loaded = load_model(model)
    src = scenario or loaded.scenario_source
    sc = load_scenario(src)
    env = make_env(backend, sc, config_path, testbed_set, None, run="test")
    policy = DQNPolicy(loaded.network)
    labels = env.sim.names
    try:
        for ep in range(episodes):
            obs, info = env.reset(seed=seed + ep)
            policy.reset(seed=seed + ep)
            click.echo(f"episode {ep} (seed {seed + ep}) on {sc.name}, {sc.num_nodes} nodes")
            done = not info["action_mask"].any()
            while not done:
                mask = info["action_mask"]
                action = policy.predict(obs, mask)
                q = policy.scores(obs, mask)  # the bids, shown next to the choice
                feasible = np.flatnonzero(mask)
                top = feasible[np.argsort(-q[feasible], kind="stable")][:bids]
                shown = " ".join(f"{n}:{q[n]:.3f}{'*' if n == action else ''}" for n in top)
                cpu, mem = obs["pod"][POD_COL["cpu_request_cores"]], obs["pod"][POD_COL["memory_request_gib"]]
                click.echo(f"  pod {info['pod']:>4} t={info['time_s']:8.1f}s cpu={cpu:.3f} mem={mem:.3f}GiB "
                           f"-> node {action} ({labels[action]})  bids {shown}")
                obs, _, done, _, info = env.step(action)
            m = env.episode_metrics()
            click.echo(f"  energy {m['energy_j'] / 1000:.1f} kJ, overload {m['overload_pod_s']:.1f} pod-s, "
                       f"unschedulable {int(m['unschedulable'])}, wake delay {m['wake_delay_pod_s']:.1f} pod-s, "
                       f"mean {m['mean_watts']:.1f} W")
    finally:
        env.sim.close()


COMMANDS = [scenarios, benchmark, train, test_cmd]
