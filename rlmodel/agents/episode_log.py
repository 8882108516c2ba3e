"""Where training episodes are logged: one list of sinks, each gets every finished episode once.

`open_sinks(log_dir)` gives the CSV (`train.csv`, one flushed row per episode) and, when tensorboard
is installed, TensorBoard event files in the same folder. The training loop calls `write` on each.
"""

from __future__ import annotations

import contextlib
import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rlmodel.errors import OutputError

LOG_COLUMNS = ["step", "episode", "energy_j", "overload_pod_s", "return", "epsilon", "loss", "wall_s"]


@dataclass
class EpisodeLog:
    """One finished training episode (energy in J, overload in pod-s, return in the env's reward units)."""

    step: int
    episode: int
    energy_j: float
    overload_pod_s: float
    ret: float
    epsilon: float
    loss: float
    wall_s: float


class EpisodeSink(Protocol):
    """Receives every finished episode; `close` at the end of training (also after an interruption)."""

    def write(self, log: EpisodeLog) -> None: ...

    def close(self) -> None: ...


class CsvSink:
    """`train.csv`: a header, then one row per episode, flushed (a crash loses nothing already logged)."""

    def __init__(self, path: Path, *, append: bool):
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            new = not append or not path.exists() or path.stat().st_size == 0
            self._fh = path.open("a" if append else "w", newline="", encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"{path}: cannot write: {exc.strerror or exc}") from None
        if new:
            csv.writer(self._fh).writerow(LOG_COLUMNS)
            self._flush()

    def write(self, log: EpisodeLog) -> None:
        csv.writer(self._fh).writerow([log.step, log.episode, f"{log.energy_j:.3f}", f"{log.overload_pod_s:.3f}",
                                       f"{log.ret:.4f}", f"{log.epsilon:.4f}", f"{log.loss:.6g}", f"{log.wall_s:.2f}"])
        self._flush()

    def _flush(self) -> None:
        try:
            self._fh.flush()
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot write: {exc.strerror or exc}") from None

    def close(self) -> None:
        with contextlib.suppress(OSError):  # a failed write was reported already
            self._fh.close()


class TensorBoardSink:
    """TensorBoard scalars per episode: episode/energy_j, episode/return, episode/overload_pod_s,
    train/epsilon, train/loss, at the environment step."""

    def __init__(self, writer):
        self._writer = writer

    @classmethod
    def open(cls, log_dir: Path) -> TensorBoardSink | None:
        """A sink writing to `log_dir`, or None when tensorboard is not installed."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return cls(SummaryWriter(str(log_dir)))

    def write(self, log: EpisodeLog) -> None:
        w = self._writer
        w.add_scalar("episode/energy_j", log.energy_j, log.step)
        w.add_scalar("episode/return", log.ret, log.step)
        w.add_scalar("episode/overload_pod_s", log.overload_pod_s, log.step)
        w.add_scalar("train/epsilon", log.epsilon, log.step)
        w.add_scalar("train/loss", log.loss, log.step)

    def close(self) -> None:
        self._writer.close()


def open_sinks(log_dir: Path | None, *, append: bool = False) -> list[EpisodeSink]:
    """The sinks of a training run logging to `log_dir` (none when it is None)."""
    if log_dir is None:
        return []
    sinks: list[EpisodeSink] = [CsvSink(log_dir / "train.csv", append=append)]
    tensorboard = TensorBoardSink.open(log_dir)
    if tensorboard is not None:
        sinks.append(tensorboard)
    return sinks
