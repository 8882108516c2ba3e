"""Benchmark outputs: the printed table, the CSVs (written atomically) and the plot."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from rlmodel.atomic import atomic_path, save_figure_atomic


def write_csv_atomic(df: pd.DataFrame, path: Path) -> None:
    """Write `df` to `path` through a temp file in the same folder and a rename."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)



def format_table(summary: pd.DataFrame) -> str:
    """A fixed-width table of the summary for the terminal."""
    header = f"{'policy':<20} {'energy kJ':>10} {'± ci95':>8} {'vs RR':>7} {'vs oracle':>9} " \
             f"{'overload pod-s':>14} {'unsched':>7} {'wake pod-s':>10}"
    lines = [header, "-" * len(header)]

    def num(x: float, fmt: str) -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)

    for r in summary.itertuples(index=False):
        gap = "-" if math.isnan(r.gap_to_oracle) else f"{r.gap_to_oracle * 100:+.1f}%"
        lines.append(
            f"{r.policy:<20} {r.energy_j_mean / 1000:>10.1f} {num(r.energy_j_ci95 / 1000, '.1f'):>8} "
            f"{num(r.ratio_to_round_robin, '.3f'):>7} {gap:>9} {r.overload_pod_s_mean:>14.1f} "
            f"{r.unschedulable_mean:>7.2f} {num(r.wake_delay_pod_s_mean, '.1f'):>10}"
        )
    return "\n".join(lines)


def plot_energy(summary: pd.DataFrame, path: Path, title: str) -> None:
    """Bar chart of mean energy per policy with 95 % confidence intervals, saved atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    colors = ["#888888" if p == "oracle" else "#2a7ab0" for p in summary["policy"]]
    ci = summary["energy_j_ci95"].fillna(0.0) / 1000
    ax.bar(summary["policy"], summary["energy_j_mean"] / 1000, yerr=ci, capsize=4, color=colors)
    ax.set_ylabel("energy per episode (kJ)")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    save_figure_atomic(fig, path)
