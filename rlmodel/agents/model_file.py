"""Model files: a `torch.save`d dict of tensors and plain data, loaded with `weights_only=True`.

Contents: format name and version, the feature schema the network expects, network shape,
hyperparameters, training scenario and seed, step counters, final metrics, the network weights,
and (for `--resume`) the target network, optimizer and random-generator states.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rlmodel.agents.features import FEATURE_SCHEMA_VERSION, FEATURES, NUM_FEATURES
from rlmodel.agents.qnet import NodeScorer
from rlmodel.atomic import atomic_path
from rlmodel.errors import ModelError

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


def save_model(path: Path, data: dict[str, Any]) -> None:
    """Write `data` to `path` atomically (temp file in the same folder, then rename)."""
    with atomic_path(path) as tmp:
        torch.save(data, tmp)


def load_model(path: str | Path, *, device: str = "cpu") -> LoadedModel:
    """Load and validate a model file. Raises ModelError with a one-line reason."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file (train one with `rlsched train --model {path}`)")
    try:
        data = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError,
            KeyError, IndexError) as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
        # torch's weights-only refusal puts the actual reason on a later line
        reason = next((ln for ln in lines if "WeightsUnpickler error" in ln), lines[0])
        raise ModelError(f"{path}: not a readable rlsched model file (corrupt or not saved by rlsched): "
                         f"{reason[:200]}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelError(f"{path}: not an rlsched DQN model (no '{FORMAT}' format marker)")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelError(f"{path}: model format version {version}, this rlsched reads version {FORMAT_VERSION}")
    schema = data.get("feature_schema", {})
    if schema.get("version") != FEATURE_SCHEMA_VERSION or tuple(schema.get("features", ())) != FEATURES:
        raise ModelError(
            f"{path}: the model expects feature schema v{schema.get('version')} with "
            f"{len(schema.get('features', ()))} features, this rlsched computes v{FEATURE_SCHEMA_VERSION} "
            f"with {NUM_FEATURES}: retrain the model"
        )
    net_cfg = data.get("network", {})
    try:
        network = NodeScorer(NUM_FEATURES, hidden=int(net_cfg["hidden"]), layers=int(net_cfg["layers"]))
        network.load_state_dict(data["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: the network weights do not match the stored network shape: {first}") from None
    network.to(device).eval()
    return LoadedModel(path=path, data=data, network=network)
