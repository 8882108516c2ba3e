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

from rlmodel.atomic import atomic_path
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


def _config_file_option(f):
    return click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        envvar="RLSCHED_CONFIG", show_envvar=True,
                        help="Testbed configuration [default: ./rlsched.toml when present].")(f)


def _backend_options(f):
    """--backend, --config and --testbed-set, shared by train, test and benchmark."""
    f = click.option("--testbed-set", "testbed_set", multiple=True, metavar="SECTION.KEY=VALUE",
                     help="Override a testbed setting (repeatable); `rlsched cluster config` lists them.")(f)
    f = _config_file_option(f)
    return click.option("--backend", type=click.Choice(["sim", "minikube"]), default="sim", show_default=True,
                        envvar="RLSCHED_BACKEND", show_envvar=True,
                        help="Where episodes run: the embedded simulated cluster, or the Minikube testbed.")(f)


def _testbed_config(config_path: Path | None, testbed_set: tuple[str, ...]):
    from rlmodel.testbed.config import load_config

    return load_config(config_path, overrides=testbed_set)


def _make_env(backend: str, sc, config_path: Path | None, testbed_set: tuple[str, ...], record_dir: Path | None,
              run: str = ""):
    """The env for `backend` (the twin, or the twin's env over a MinikubeCluster)."""
    from rlmodel.envs.placement import PodPlacementEnv

    if backend == "sim":
        return PodPlacementEnv(sc)
    from rlmodel.testbed.backend import MinikubeCluster

    cluster = MinikubeCluster(sc, _testbed_config(config_path, testbed_set), record_dir=record_dir, run=run)
    return PodPlacementEnv(sc, cluster=cluster)


def _close_env(env) -> None:
    close = getattr(env.sim, "close", None)
    if close is not None:
        close()


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
@click.option("--model", "-m", type=click.Path(dir_okay=False, path_type=Path), default=None,
              envvar="RLSCHED_MODEL", show_envvar=True,
              help="A trained DQN model file: adds the `dqn` policy (included by default when given).")
@_backend_options
def benchmark(scenario: str, policies: str | None, episodes: int, seed: int, scale: int, oracle: bool,
              out: Path | None, model: Path | None, backend: str, config_path: Path | None,
              testbed_set: tuple[str, ...]) -> None:
    """Run placement policies on identical episodes and report energy, overload and misses.

    Writes OUT/episodes.csv (one row per policy and episode), OUT/summary.csv (one row per
    policy, with 95 % confidence intervals and ratios to round-robin) and OUT/benchmark.png.

    \b
    Example:
      rlsched benchmark --scenario hetero --policies round-robin,power-greedy --episodes 10
      rlsched benchmark --model Dale.pth --scale 4
      rlsched benchmark --backend minikube --scenario minikube --policies round-robin,dqn --model Dale.pth -n 3

    With --backend minikube the episodes run on the testbed (see `rlsched cluster up`), there is no
    oracle row, and OUT/windows.csv and OUT/power_samples.csv hold every measurement window.
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
    if not policies and model is not None:
        names.append("dqn")
    if not names:
        raise click.BadParameter("no policy given", param_hint="--policies")
    if len(set(names)) != len(names):
        raise click.BadParameter("a policy is named twice", param_hint="--policies")
    if "dqn" in names and model is None:
        raise click.BadParameter("the dqn policy needs a model file (--model PATH)", param_hint="--policies")
    chosen = [_load_dqn(model) if n == "dqn" else make_policy(n) for n in names]
    out = out or Path("results") / f"benchmark-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(f"{out}: cannot create the output folder: {exc.strerror}") from None

    if backend != "sim":
        oracle = False  # the offline optimum is a property of the twin
    env = _make_env(backend, sc, config_path, testbed_set, out if backend != "sim" else None)
    total = episodes * (len(chosen) + (1 if oracle else 0))
    with tqdm(total=total, desc=f"benchmark {sc.name}", unit="ep", file=sys.stderr, leave=False,
              disable=None) as bar:  # no bar when stderr is not a terminal
        def tick(policy: str, episode: int) -> None:
            bar.set_postfix_str(policy)
            bar.update()

        try:
            episodes_df = run_benchmark(sc, chosen, episodes=episodes, seed=seed, with_oracle=oracle,
                                        on_episode=tick, env=env)
        finally:
            _close_env(env)
    summary = summarize(episodes_df)
    write_csv_atomic(episodes_df, out / "episodes.csv")
    write_csv_atomic(summary, out / "summary.csv")
    plot_energy(summary, out / "benchmark.png", f"{sc.name}: {episodes} episodes, seeds {seed}..{seed + episodes - 1}")
    run = {"scenario": sc.name, "source": sc.source, "policies": names, "episodes": episodes, "seed": seed,
           "scale": scale, "oracle": oracle, "model": str(model) if model else None, "backend": backend}
    with atomic_path(out / "run.json") as tmp:
        Path(tmp).write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    click.echo(f"scenario {sc.name} ({sc.num_nodes} nodes), {episodes} episodes from seed {seed}")
    click.echo(format_table(summary))
    if oracle:
        kinds = sorted(set(episodes_df.loc[episodes_df.policy == "oracle", "oracle_kind"]))
        click.echo(f"oracle: {', '.join(kinds)} (exact: offline optimum; lower-bound: the larger of the fluid "
                   "and cover bounds, see README)")
    click.echo(f"wrote {out / 'episodes.csv'}, {out / 'summary.csv'}, {out / 'benchmark.png'}"
               + (f", {out / 'windows.csv'}, {out / 'power_samples.csv'}" if backend != "sim" else ""))


def _load_dqn(model: Path | None):
    from rlmodel.agents.policy import DQNPolicy

    assert model is not None
    return DQNPolicy.load(model)


@main.command()
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
@click.option("--log-dir", type=click.Path(file_okay=False, path_type=Path), default=None, envvar="RLSCHED_LOG_DIR",
              show_envvar=True, help="Training log folder [default: runs/<scenario>__<seed>__<timestamp>].")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a hyperparameter (repeatable); `rlsched train --hyperparameters` lists them.")
@click.option("--hyperparameters", is_flag=True, help="List the hyperparameters with defaults and meanings, and exit.")
@_backend_options
def train(model: Path, scenario: str | None, steps: int | None, seed: int, resume: bool, backend: str,
          log_dir: Path | None, overrides: tuple[str, ...], hyperparameters: bool, config_path: Path | None,
          testbed_set: tuple[str, ...]) -> None:
    """Train a DQN scheduler and save it to a model file.

    Every node bids with one shared network; the feasible node with the best bid gets the pod. The
    model file is written atomically every 10,000 steps, at the end and on Ctrl-C. Training
    writes LOG_DIR/train.csv (one row per episode, flushed) and TensorBoard events when tensorboard
    is installed.

    \b
    Example:
      rlsched train --model Dale.pth --scenario hetero-sleep
      rlsched train --model Dale.pth --resume --steps 100000
      rlsched train --model Dale.pth --resume --steps 60200 --backend minikube --scenario minikube

    With --backend minikube every step is a real pod and a measurement window (LOG_DIR also gets
    windows.csv and power_samples.csv); validation of checkpoints still runs in the twin.
    """
    import dataclasses

    import torch
    from tqdm import tqdm

    from rlmodel.agents.dqn import DQNConfig, apply_overrides, check_config, config_help
    from rlmodel.agents.dqn import train as train_dqn
    from rlmodel.agents.model_file import load_model
    from rlmodel.sim.scenario import load_scenario

    if hyperparameters:
        defaults = dataclasses.asdict(DQNConfig())
        for key, text in config_help().items():
            click.echo(f"{key:<22} {defaults[key]!s:<16} {text}")
        return
    start = 0
    if resume:
        stored = load_model(model).data
        start = int(stored["global_step"])
        fields = {f.name for f in dataclasses.fields(DQNConfig)}
        cfg = DQNConfig(**{k: v for k, v in stored["hyperparameters"].items() if k in fields})
        if steps is not None:
            cfg.total_steps = steps
        if cfg.total_steps <= int(stored["global_step"]):
            raise click.ClickException(f"{model}: already trained for {stored['global_step']} steps; "
                                       f"pass --steps above that to continue")
        scenario = scenario or stored["scenario"]["source"].removeprefix("built-in:")
    else:
        cfg = DQNConfig(seed=seed)
        if steps is not None:
            cfg.total_steps = steps
    cfg = apply_overrides(cfg, list(overrides))
    check_config(cfg)
    sc = load_scenario(scenario or "hetero-sleep")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    log_dir = log_dir or Path("runs") / f"{sc.name}__{cfg.seed}__{stamp}"
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / "config.json").write_text(json.dumps({"scenario": sc.source, "model": str(model), "resume": resume,
                                                     "hyperparameters": dataclasses.asdict(cfg)}, indent=2) + "\n")
    torch.set_num_threads(1)  # small networks: one thread is faster and keeps runs reproducible
    writer = _tensorboard_writer(log_dir)
    bar = tqdm(total=cfg.total_steps, initial=start, desc=f"train {sc.name}", unit="step", file=sys.stderr,
               disable=None, dynamic_ncols=True)

    def on_episode(log, step: int) -> None:
        bar.update(step - bar.n)
        bar.set_postfix(energy_kJ=f"{log.energy_j / 1000:.0f}", ret=f"{log.ret:.0f}", eps=f"{log.epsilon:.2f}")
        if writer is not None:
            writer.add_scalar("episode/energy_j", log.energy_j, step)
            writer.add_scalar("episode/return", log.ret, step)
            writer.add_scalar("episode/overload_pod_s", log.overload_pod_s, step)
            writer.add_scalar("train/epsilon", log.epsilon, step)
            writer.add_scalar("train/loss", log.loss, step)

    env = _make_env(backend, sc, config_path, testbed_set, log_dir if backend != "sim" else None, run="train")
    if cfg.demonstrator and not resume:
        click.echo(f"demonstrations: {cfg.demo_episodes} episodes of {cfg.demonstrator} in the twin, then "
                   f"{cfg.pretrain_steps} pretraining steps", err=True)
    try:
        data = train_dqn(cfg, sc, model, resume=resume, log_csv=log_dir / "train.csv", on_episode=on_episode,
                         env=env)
    except KeyboardInterrupt:
        bar.close()
        click.echo(f"interrupted: checkpoint saved to {model}; continue with `rlsched train --model {model} "
                   f"--resume`", err=True)
        sys.exit(130)
    finally:
        bar.close()
        _close_env(env)
        if writer is not None:
            writer.close()
    m = data["metrics"]
    click.echo(f"trained {data['global_step']} steps ({data['episodes']} episodes) on {sc.name} in "
               f"{m['train_wall_s']:.0f} s; last {m['episodes_in_mean']} episodes: energy "
               f"{m['energy_j_mean'] / 1000:.1f} kJ, overload {m['overload_pod_s_mean']:.1f} pod-s")
    click.echo(f"wrote {model} and {log_dir / 'train.csv'}")


def _tensorboard_writer(log_dir: Path):
    """A TensorBoard SummaryWriter when tensorboard is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(log_dir))


@main.command("test")
@click.option("--model", "-m", type=click.Path(dir_okay=False, path_type=Path), default=Path("Dale.pth"),
              show_default=True, envvar="RLSCHED_MODEL", show_envvar=True, help="Model file to run.")
@click.option("--scenario", "-s", default=None, envvar="RLSCHED_SCENARIO", show_envvar=True,
              help="Scenario name or file [default: the model's training scenario].")
@click.option("--episodes", "-n", type=click.IntRange(1, 10_000), default=1, show_default=True,
              envvar="RLSCHED_EPISODES", show_envvar=True, help="Episodes to run greedily.")
@_seed_option(1000)
@click.option("--bids", type=click.IntRange(1, 100), default=5, show_default=True,
              help="How many of the best feasible bids to print per pod.")
@_backend_options
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
    from rlmodel.sim.scenario import load_scenario

    loaded = load_model(model)
    src = scenario or loaded.data["scenario"]["source"].removeprefix("built-in:")
    sc = load_scenario(src)
    env = _make_env(backend, sc, config_path, testbed_set, None, run="test")
    policy = DQNPolicy(loaded.network)
    type_names = [t.name for t in sc.node_types]
    labels = getattr(env.sim, "names", type_names)  # the testbed shows node names
    try:
        for ep in range(episodes):
            obs, info = env.reset(seed=seed + ep)
            click.echo(f"episode {ep} (seed {seed + ep}) on {sc.name}, {sc.num_nodes} nodes")
            done = not info["action_mask"].any()
            while not done:
                mask = info["action_mask"]
                q = policy.scores(obs, mask)
                action = int(np.argmax(np.where(mask, q, -np.inf)))
                feasible = np.flatnonzero(mask)
                top = feasible[np.argsort(-q[feasible], kind="stable")][:bids]
                shown = " ".join(f"{n}:{q[n]:.3f}{'*' if n == action else ''}" for n in top)
                click.echo(f"  pod {info['pod']:>4} t={info['time_s']:8.1f}s cpu={obs['pod'][0]:.3f} "
                           f"mem={obs['pod'][1]:.3f}GiB -> node {action} ({labels[action]})  bids {shown}")
                obs, _, done, _, info = env.step(action)
            m = env.episode_metrics()
            click.echo(f"  energy {m['energy_j'] / 1000:.1f} kJ, overload {m['overload_pod_s']:.1f} pod-s, "
                       f"unschedulable {int(m['unschedulable'])}, wake delay {m['wake_delay_pod_s']:.1f} pod-s, "
                       f"mean {m['mean_watts']:.1f} W")
    finally:
        _close_env(env)


@main.group()
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
def load_run(target: str, plan: Path | None, threads: int, duration: int, ramp_up: int, mode: str, intensity: int,
             out: Path | None, jmeter: str | None) -> None:
    """Run JMeter non-GUI against the test app; write results.jtl and summary.csv.

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


@main.group()
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

    frames = [read_power_csv(f) for f in files]
    if sum(len(f) for f in frames) == 0:
        raise click.ClickException(f"{', '.join(map(str, files))}: no samples (header only)")
    table = summarize_power(frames)
    est = " (estimated from CPU utilization, not RAPL)" if table["estimated"].any() else ""
    click.echo(f"{'vm':<24} {'duration s':>10} {'samples':>8} {'mean W':>9} {'p95 W':>9} {'energy J':>12}")
    for r in table.itertuples(index=False):
        click.echo(f"{r.vm:<24} {r.duration_s:>10.1f} {r.samples:>8d} {r.mean_watts:>9.2f} {r.p95_watts:>9.2f} "
                   f"{r.energy_j:>12.1f}")
    if est:
        click.echo("watts" + est)
    if csv_out:
        write_csv_atomic(table, csv_out)
    if plot:
        plot_power(frames, plot)
        click.echo(f"wrote {plot}")



# ------------------------------------------------------------------------------------------- testbed
def _config_options(f):
    f = click.option("--set", "testbed_set", multiple=True, metavar="SECTION.KEY=VALUE",
                     help="Override a setting (repeatable), e.g. --set minikube.nodes=4.")(f)
    return _config_file_option(f)


def _print_checks(checks) -> bool:
    width = max((len(c.piece) for c in checks), default=10)
    for c in checks:
        state = "up  " if c.up else "DOWN"
        click.echo(f"  {state} {c.piece:<{width}}  {c.where}" + (f"  ({c.detail})" if c.detail else ""))
    return all(c.up for c in checks)


@main.group()
def cluster() -> None:
    """The Minikube testbed: bring it up, check it, tear it down.

    Settings come from ./rlsched.toml (or --config), RLSCHED_<SECTION>_<KEY> variables and --set;
    `rlsched cluster config` shows the effective values.
    """


@cluster.command("up")
@_config_options
@click.option("--skip-images", is_flag=True, envvar="RLSCHED_SKIP_IMAGES", show_envvar=True,
              help="Do not build and load the images (they are in the cluster already).")
def cluster_up_cmd(config_path: Path | None, testbed_set: tuple[str, ...], skip_images: bool) -> None:
    """Start Minikube, load the images, apply the manifests, start Prometheus, wait for every node.

    \b
    Example:
      rlsched cluster up --set minikube.nodes=3
    """
    from rlmodel.testbed.cluster import cluster_up

    cfg = _testbed_config(config_path, testbed_set)
    checks = cluster_up(cfg, skip_images=skip_images, say=click.echo)
    click.echo("testbed up:")
    _print_checks(checks)


@cluster.command("status")
@_config_options
def cluster_status_cmd(config_path: Path | None, testbed_set: tuple[str, ...]) -> None:
    """Report each piece of the testbed as up or down (exit 1 if any is down)."""
    from rlmodel.testbed.cluster import cluster_status

    cfg = _testbed_config(config_path, testbed_set)
    if not _print_checks(cluster_status(cfg)):
        sys.exit(1)


@cluster.command("down")
@_config_options
@click.option("--keep-minikube", is_flag=True, help="Remove the objects and Prometheus but keep the Minikube VMs.")
def cluster_down_cmd(config_path: Path | None, testbed_set: tuple[str, ...], keep_minikube: bool) -> None:
    """Remove what `up` created: the objects, Prometheus, and (unless --keep-minikube) the cluster."""
    from rlmodel.testbed.cluster import cluster_down

    cluster_down(_testbed_config(config_path, testbed_set), keep_minikube=keep_minikube, say=click.echo)


@cluster.command("config")
@_config_options
def cluster_config_cmd(config_path: Path | None, testbed_set: tuple[str, ...]) -> None:
    """Print the effective configuration as TOML (every key, with its meaning)."""
    from rlmodel.testbed.config import render_toml

    cfg = _testbed_config(config_path, testbed_set)
    click.echo(f"# effective configuration (file: {cfg.source})")
    click.echo(render_toml(cfg), nl=False)


@main.command()
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
@_config_options
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

    cfg = _testbed_config(config_path, testbed_set)
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


if __name__ == "__main__":  # pragma: no cover
    main()
