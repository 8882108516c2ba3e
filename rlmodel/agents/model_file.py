"""Model files: a `torch.save`d dict of tensors and plain data, loaded with `weights_only=True`.

Contents: format name and version, the feature schema the network expects, network shape,
hyperparameters, training scenario and seed, step counters, final metrics, the network weights,
and (for `--resume`) the target network, optimizer and random-generator states.
"""

from __future__ import annotations

import math
import pickle
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from rlmodel.agents.features import FEATURE_SCHEMA_VERSION, FEATURES, NUM_FEATURES
from rlmodel.agents.qnet import NodeScorer
from rlmodel.atomic import atomic_path
from rlmodel.errors import ModelError

if TYPE_CHECKING:
    from rlmodel.agents.episode_log import EpisodeLog
    from rlmodel.sim.scenario import Scenario

__all__ = ["FORMAT", "FORMAT_VERSION", "LoadedModel", "ModelError", "TrainingState", "load_model", "model_data",
           "read_training_state", "save_model"]

FORMAT = "rlsched-dqn"
FORMAT_VERSION = 1


@dataclass
class LoadedModel:
    """A model file's content, validated. `network` is ready to score nodes (eval mode)."""

    path: Path
    data: dict[str, Any]
    network: NodeScorer

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return self.data["hyperparameters"]

    @property
    def global_step(self) -> int:
        """Environment steps trained."""
        return int(self.data["global_step"])

    @property
    def network_shape(self) -> tuple[int, int]:
        """(hidden, layers) of the node-scoring MLP."""
        return int(self.data["network"]["hidden"]), int(self.data["network"]["layers"])

    @property
    def scenario_source(self) -> str:
        """The training scenario as `load_scenario` takes it (a built-in name or a path)."""
        return str(self.data["scenario"]["source"]).removeprefix("built-in:")


def model_data(*, hyperparameters: dict[str, Any], scenario: Scenario, num_nodes: int, global_step: int,
               episodes: int, recent: Sequence[EpisodeLog], train_wall_s: float, validation_cost_kj: float,
               validation_cost_kj_latest: float, state_dict: Mapping[str, torch.Tensor],
               last_state_dict: Mapping[str, torch.Tensor], target_state_dict: Mapping[str, torch.Tensor],
               optimizer: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """The content of a model file (the one place it is built): `state_dict` is the policy, the rest
    describes it and lets `--resume` continue. `recent`: the last episodes, summarized in `metrics`."""
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "feature_schema": {"version": FEATURE_SCHEMA_VERSION, "features": list(FEATURES)},
        "network": {"hidden": hyperparameters["hidden"], "layers": hyperparameters["layers"],
                    "attention": bool(hyperparameters.get("attention", False)),
                    "num_features": NUM_FEATURES},
        "hyperparameters": hyperparameters,
        "scenario": {"name": scenario.name, "source": scenario.source, "num_nodes": num_nodes},
        "seed": hyperparameters["seed"], "global_step": global_step, "episodes": episodes,
        "metrics": {
            "episodes_in_mean": len(recent),
            "energy_j_mean": float(np.mean([e.energy_j for e in recent])) if recent else math.nan,
            "overload_pod_s_mean": float(np.mean([e.overload_pod_s for e in recent])) if recent else math.nan,
            "return_mean": float(np.mean([e.ret for e in recent])) if recent else math.nan,
            "train_wall_s": train_wall_s,
            "validation_cost_kj": validation_cost_kj,
            "validation_cost_kj_latest": validation_cost_kj_latest,
        },
        "versions": {"torch": str(torch.__version__)},
        "state_dict": state_dict,  # the policy: best checkpoint on the validation episodes
        "last_state_dict": last_state_dict,  # where --resume continues
        "target_state_dict": {k: v.detach().cpu() for k, v in target_state_dict.items()},
        "optimizer": optimizer,
        "rng": {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()},
    }


@dataclass
class TrainingState:
    """What `--resume` continues from (read from a model file by `read_training_state`)."""

    last_state_dict: Mapping[str, torch.Tensor]
    target_state_dict: Mapping[str, torch.Tensor]
    best_state_dict: dict[str, torch.Tensor]
    best_score: float
    optimizer: dict[str, Any] | None
    global_step: int
    episodes: int
    rng: dict[str, Any] | None


def read_training_state(data: dict[str, Any], path: Path, num_nodes: int) -> TrainingState:
    """The resumable state of a loaded model file, for a cluster of `num_nodes` nodes (ModelError if it
    was trained on another size)."""
    if data["scenario"]["num_nodes"] != num_nodes:
        raise ModelError(f"{path}: trained on {data['scenario']['num_nodes']} nodes, cannot resume on {num_nodes}")
    return TrainingState(
        last_state_dict=data.get("last_state_dict", data["state_dict"]),
        target_state_dict=data.get("target_state_dict", data["state_dict"]),
        best_state_dict=data["state_dict"],
        best_score=float(data["metrics"].get("validation_cost_kj", math.inf)),
        optimizer=data.get("optimizer"),
        global_step=int(data["global_step"]),
        episodes=int(data["episodes"]),
        rng=data.get("rng"),
    )


def save_model(path: Path, data: dict[str, Any]) -> None:
    """Write `data` to `path` atomically (temp file in the same folder, then rename)."""
    try:
        with atomic_path(path) as tmp:
            torch.save(data, tmp)
    except RuntimeError as exc:  # torch's writer on a full disk: "PytorchStreamWriter failed writing file ..."
        raise ModelError(f"{path}: cannot write the model file: {str(exc).splitlines()[0][:160]}") from None


def _reason(exc: BaseException) -> str:
    """Why torch could not read a file, in words (not torch's advice to file an issue, not a bare errno)."""
    if isinstance(exc, zipfile.BadZipFile):
        return "not a zip archive, as files written by torch.save are (truncated or another format)"
    if isinstance(exc, EOFError):
        return "the file ends early (truncated)"
    if isinstance(exc, OSError):
        return f"cannot read it: {exc.strerror or type(exc).__name__}"
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    refused = next((ln for ln in lines if "WeightsUnpickler error" in ln), None)
    if refused is not None or isinstance(exc, pickle.UnpicklingError):
        detail = (refused or "").split("WeightsUnpickler error:", 1)[-1].strip()
        return ("it holds objects other than tensors and plain data, which are never loaded (weights_only)"
                + (f": {detail[:120]}" if detail else ""))
    if any("central directory" in ln or "zip archive" in ln for ln in lines):
        return "not a complete zip archive (truncated or corrupt)"
    return (lines[0] if lines else type(exc).__name__)[:160]


def _expect(path: Path, data: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ModelError(f"{path}: field {key}: expected {what} (the file is damaged or not written by rlsched)")
    return value


def _check_fields(path: Path, data: dict[str, Any]) -> None:
    """Every field the loader, `rlsched test` and `--resume` read, with the type they need."""
    _expect(path, data, "hyperparameters", dict, "a table of hyperparameters")
    scenario = _expect(path, data, "scenario", dict, "a table with name, source and num_nodes")
    if not (isinstance(scenario.get("name"), str) and isinstance(scenario.get("source"), str)
            and isinstance(scenario.get("num_nodes"), int) and scenario["num_nodes"] >= 1):
        raise ModelError(f"{path}: field scenario: expected name, source (text) and num_nodes (>= 1)")
    for key in ("seed", "global_step", "episodes"):
        if _expect(path, data, key, int, "a whole number >= 0") < 0:
            raise ModelError(f"{path}: field {key}: expected a whole number >= 0")
    metrics = _expect(path, data, "metrics", dict, "a table of numbers")
    if not all(isinstance(k, str) and isinstance(v, (int, float)) for k, v in metrics.items()):
        raise ModelError(f"{path}: field metrics: expected a table of numbers")
    for key in ("state_dict", "last_state_dict", "target_state_dict"):
        if key in data or key == "state_dict":
            sd = _expect(path, data, key, dict, "network weights (a table of tensors)")
            if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
                raise ModelError(f"{path}: field {key}: expected network weights (a table of tensors)")
    if "optimizer" in data:
        opt = _expect(path, data, "optimizer", dict, "an optimizer state")
        if not isinstance(opt.get("state"), dict) or not isinstance(opt.get("param_groups"), list):
            raise ModelError(f"{path}: field optimizer: expected an optimizer state (state, param_groups)")
    if "rng" in data:
        rng = _expect(path, data, "rng", dict, "random-generator states")
        if not isinstance(rng.get("numpy"), dict) or not isinstance(rng.get("torch"), torch.Tensor):
            raise ModelError(f"{path}: field rng: expected numpy and torch random-generator states")


def load_model(path: str | Path, *, device: str = "cpu") -> LoadedModel:
    """Load and validate a model file. Raises ModelError with a one-line reason."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file (train one with `rlsched train --model {path}`)")
    try:
        data = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError,
            KeyError, IndexError, TypeError, AttributeError, MemoryError, OverflowError, RecursionError) as exc:
        raise ModelError(f"{path}: not a readable rlsched model file: {_reason(exc)}") from None
    # compare only values of the expected type: a tensor stored where a number belongs has no truth value
    if not isinstance(data, dict) or not isinstance(data.get("format"), str) or data["format"] != FORMAT:
        raise ModelError(f"{path}: not an rlsched DQN model (no '{FORMAT}' format marker)")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version != FORMAT_VERSION:
        raise ModelError(f"{path}: model format version {str(version)[:40]}, this rlsched reads version "
                         f"{FORMAT_VERSION}")
    schema = data.get("feature_schema")
    if not isinstance(schema, dict) or not isinstance(schema.get("features"), (list, tuple)) \
            or not all(isinstance(f, str) for f in schema["features"]) or not isinstance(schema.get("version"), int):
        raise ModelError(f"{path}: field feature_schema: expected a table with version and features")
    if schema["version"] != FEATURE_SCHEMA_VERSION or tuple(schema["features"]) != FEATURES:
        raise ModelError(
            f"{path}: the model expects feature schema v{schema['version']} with "
            f"{len(schema['features'])} features, this rlsched computes v{FEATURE_SCHEMA_VERSION} "
            f"with {NUM_FEATURES}: retrain the model"
        )
    _check_fields(path, data)
    net_cfg = data.get("network")
    if not isinstance(net_cfg, dict) or not all(isinstance(net_cfg.get(k), int) and not isinstance(net_cfg[k], bool)
                                               for k in ("hidden", "layers")):
        raise ModelError(f"{path}: field network: expected whole numbers hidden and layers")
    if not (1 <= net_cfg["hidden"] <= 65_536 and 0 <= net_cfg["layers"] <= 64):
        raise ModelError(f"{path}: field network: hidden = {net_cfg['hidden']}, layers = {net_cfg['layers']} are "
                         "out of range")
    if not isinstance(net_cfg.get("attention", False), bool) or (net_cfg.get("attention") and net_cfg["layers"] < 1):
        raise ModelError(f"{path}: field network: attention must be true or false (and needs layers >= 1)")
    try:
        network = NodeScorer(NUM_FEATURES, hidden=net_cfg["hidden"], layers=net_cfg["layers"],
                             attention=net_cfg.get("attention", False))
        network.load_state_dict(data["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: the network weights do not match the stored network shape: {first}") from None
    bad = next((k for k, v in data["state_dict"].items() if not torch.isfinite(v).all()), None)
    if bad is not None:
        raise ModelError(f"{path}: the network weights contain NaN or infinite values ({bad}): the training that "
                         "wrote it diverged; retrain")
    network.to(device).eval()
    return LoadedModel(path=path, data=data, network=network)
