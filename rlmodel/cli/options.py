"""Options shared by several commands, and the env every episode-running command builds.

Every option also reads an environment variable (`RLSCHED_...`, shown in --help).
"""

from __future__ import annotations

from pathlib import Path

import click

from rlmodel.envs.placement import PodPlacementEnv
from rlmodel.sim.scenario import Scenario


def scenario_option(f):
    return click.option(
        "--scenario", "-s", default="hetero-sleep", show_default=True, envvar="RLSCHED_SCENARIO",
        show_envvar=True, help="Built-in scenario name (see `rlsched scenarios`) or path to a scenario TOML file.",
    )(f)


def seed_option(default: int):
    return click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=default, show_default=True,
                        envvar="RLSCHED_SEED", show_envvar=True, help="Seed of the first episode (then seed+1, ...).")


def config_file_option(f):
    return click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        envvar="RLSCHED_CONFIG", show_envvar=True,
                        help="Testbed configuration [default: ./rlsched.toml when present].")(f)


def config_options(f):
    """--config and --set SECTION.KEY=VALUE, for the testbed commands."""
    f = click.option("--set", "testbed_set", multiple=True, metavar="SECTION.KEY=VALUE",
                     help="Override a setting (repeatable), e.g. --set minikube.nodes=4.")(f)
    return config_file_option(f)


def backend_options(f):
    """--backend, --config and --testbed-set, shared by train, test and benchmark."""
    f = click.option("--testbed-set", "testbed_set", multiple=True, metavar="SECTION.KEY=VALUE",
                     help="Override a testbed setting (repeatable); `rlsched cluster config` lists them.")(f)
    f = config_file_option(f)
    return click.option("--backend", type=click.Choice(["sim", "minikube", "kubernetes"]), default="sim",
                        show_default=True, envvar="RLSCHED_BACKEND", show_envvar=True,
                        help="Where episodes run: the embedded simulated cluster, the Minikube testbed, or any "
                             "cluster a kubeconfig context reaches (see `rlsched cluster apply`).")(f)


def testbed_config(config_path: Path | None, testbed_set: tuple[str, ...]):
    from rlmodel.testbed.config import load_config

    return load_config(config_path, overrides=testbed_set)


def make_env(backend: str, sc: Scenario, config_path: Path | None, testbed_set: tuple[str, ...],
             record_dir: Path | None, run: str = "") -> PodPlacementEnv:
    """The env for `backend`: the twin, or the same env over a real cluster (MinikubeCluster or
    KubernetesCluster). Close it with `env.sim.close()`."""
    if backend == "sim":
        return PodPlacementEnv(sc)
    from rlmodel.testbed.backend import KubernetesCluster, MinikubeCluster

    kind = MinikubeCluster if backend == "minikube" else KubernetesCluster
    cluster = kind(sc, testbed_config(config_path, testbed_set), record_dir=record_dir, run=run)
    return PodPlacementEnv(sc, cluster=cluster)


def inference_threads() -> None:
    """One torch intra-op thread for the long-running commands that score pods (`scheduler run`, `serve`): a
    decision scores a few thousand nodes at most with a small network, so one thread is as fast, and more would
    spin on the cores the API server and the rest of the host need."""
    import torch

    torch.set_num_threads(1)
