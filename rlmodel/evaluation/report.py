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
    """A fixed-width table of the summary for the terminal, ranked by cost (energy plus penalties)."""
    ref = str(summary["reference"].iloc[0]) if len(summary) else ""
    versus = f"vs {ref}"[:24]
    width = max([20, *(len(str(p)) for p in summary["policy"])])  # the longest name, so the columns stay aligned
    header = (f"{'#':>2} {'policy':<{width}} {'cost kJ':>9} {'± ci95':>7} {versus:>24} {'energy kJ':>10} "
              f"{'J/pod':>7} {'vs oracle':>9} {'overload pod-s':>14} {'unplaced':>8} {'wake pod-s':>10}")
    lines = [header, "-" * len(header)]

    def num(x: float, fmt: str) -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)

    for r in summary.itertuples(index=False):
        gap = "-" if math.isnan(r.gap_to_oracle) else f"{r.gap_to_oracle * 100:+.1f}%"
        # paired against the reference: ratio of mean costs, and the mean per-episode difference with its CI
        paired = "-" if r.policy == ref or r.policy == "oracle" else \
            f"{r.cost_ratio_to_reference:.3f} ({r.cost_diff_to_reference_j / 1000:+.1f}" \
            f"±{num(r.cost_diff_to_reference_j_ci95 / 1000, '.1f')})"
        rank = "" if math.isnan(r.rank) else f"{int(r.rank)}"
        lines.append(
            f"{rank:>2} {r.policy:<{width}} {r.cost_j_mean / 1000:>9.1f} {num(r.cost_j_ci95 / 1000, '.1f'):>7} "
            f"{paired:>24} {r.energy_j_mean / 1000:>10.1f} {num(r.energy_j_per_placed_pod_mean, '.0f'):>7} "
            f"{gap:>9} {r.overload_pod_s_mean:>14.1f} {r.unschedulable_mean:>8.2f} "
            f"{num(r.wake_delay_pod_s_mean, '.1f'):>10}"
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
