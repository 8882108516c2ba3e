"""Reading and summarising the power monitor's CSVs (schema: `kvm_power_monitor.CSV_COLUMNS`)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from rlmodel.atomic import save_figure_atomic
from rlmodel.errors import PowerCsvError
from rlmodel.power.kvm_power_monitor import CSV_COLUMNS

# far above any real sample: an hour-long interval of a 1 MW host is 3.6e9 J
_UPPER = {"interval_s": 1e6, "host_joules": 1e12, "host_watts": 1e6, "vm_cpu_s": 1e9, "vm_cpu_share": 1.0 + 1e-6,
          "vm_watts": 1e6, "vm_joules": 1e12, "estimated": 1.0}
NUMERIC = ["interval_s", "host_joules", "host_watts", "vm_cpu_s", "vm_cpu_share", "vm_watts", "vm_joules"]


def read_power_csv(path: str | Path) -> pd.DataFrame:
    """Load one power CSV, validated: exact header, field count per row, numbers, timestamps.

    Raises PowerCsvError naming the file, the line (1 = header) and the column.
    """
    path = Path(path)
    try:
        with path.open("r", encoding="utf-8", newline="") as fh:
            header = fh.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise PowerCsvError(f"{path}: cannot read: {exc}") from None
    if header.split(",") != CSV_COLUMNS:
        raise PowerCsvError(f"{path}: line 1: header is not the power monitor's "
                            f"(expected {','.join(CSV_COLUMNS)})")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, on_bad_lines="error", engine="c")
    except pd.errors.ParserError as exc:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if m:
            raise PowerCsvError(f"{path}: line {m.group(2)}: {m.group(3)} fields, expected {m.group(1)}") from None
        raise PowerCsvError(f"{path}: not a valid CSV: {str(exc).strip()[:200]}") from None
    # a short row is padded by pandas: find it by counting fields on the raw line
    if len(df):
        missing = df[CSV_COLUMNS[-1]] == ""
        if missing.any():
            line = int(np.flatnonzero(missing.to_numpy())[0]) + 2
            raise PowerCsvError(f"{path}: line {line}: too few fields, expected {len(CSV_COLUMNS)}")
    for col in NUMERIC + ["estimated"]:
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() & (df[col].str.lower() != "nan")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise PowerCsvError(f"{path}: line {i + 2}: column {col}: not a number: {df[col].iloc[i][:40]!r}")
        # watts, joules, CPU seconds and intervals are finite, non-negative and physically plausible (a sum of
        # them must not overflow); an interval is positive
        v = values.to_numpy(dtype=float)
        high = _UPPER.get(col, np.inf)
        wrong = ~np.isfinite(v) | (v < 0) | (v > high)
        if col == "interval_s":
            wrong |= v == 0
        if wrong.any():
            i = int(np.flatnonzero(wrong)[0])
            rule = "a positive number" if col == "interval_s" else "a finite number >= 0"
            raise PowerCsvError(f"{path}: line {i + 2}: column {col}: {df[col].iloc[i][:40]!r} is not {rule}"
                                + (f" up to {high:g}" if np.isfinite(high) else ""))
        df[col] = values
    over = df["vm_watts"].to_numpy() > df["host_watts"].to_numpy() * (1 + 1e-6) + 1e-6
    if over.any():
        i = int(np.flatnonzero(over)[0])
        raise PowerCsvError(f"{path}: line {i + 2}: column vm_watts: {df['vm_watts'].iloc[i]:g} W is more than "
                            f"the host's {df['host_watts'].iloc[i]:g} W")
    ts = pd.to_datetime(df["timestamp"], format="ISO8601", utc=True, errors="coerce")
    if ts.isna().any():
        i = int(np.flatnonzero(ts.isna().to_numpy())[0])
        raise PowerCsvError(f"{path}: line {i + 2}: column timestamp: not an ISO-8601 time: "
                            f"{df['timestamp'].iloc[i]!r}")
    df["timestamp"] = ts
    df["source_file"] = str(path)
    df["line"] = np.arange(2, len(df) + 2)
    return _merge_duplicates(df, path)


def _merge_duplicates(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Rows repeated with the same (timestamp, vm) are merged when identical (said on stderr: the monitor
    never writes one twice, so a copy-paste or a concatenated file did) and refused when they differ."""
    key = ["timestamp", "vm"]
    dup = df.duplicated(key, keep=False)
    if not dup.any():
        return df
    values = [c for c in CSV_COLUMNS if c not in key]
    for _, g in df[dup].groupby(key, sort=False):
        if len(g[values].astype(str).drop_duplicates()) > 1:
            lines = ", ".join(str(x) for x in g["line"].head(3))
            raise PowerCsvError(f"{path}: lines {lines}: the same timestamp and vm with different values")
    merged = int(dup.sum() - df[dup].drop_duplicates(key).shape[0])
    print(f"{path}: {merged} repeated rows (same timestamp and vm, same values) counted once", file=sys.stderr)
    return df.drop_duplicates(key).reset_index(drop=True)


def summarize_power(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Per VM and for the host: duration_s, span_s, samples, mean_watts, p95_watts, energy_j, estimated.

    `energy_j` is the sum of the rows' joules; `duration_s` the sum of their intervals (time measured, gaps
    between files or runs excluded); `mean_watts` = energy_j / duration_s, a time-weighted mean whatever the
    sampling rates; `span_s` from the first sample's start to the last sample's end. The host's rows are
    one per (file, timestamp).
    """
    df = pd.concat(frames, ignore_index=True)
    rows = []
    host = df.drop_duplicates(subset=["source_file", "timestamp"])
    groups = [("host", host, "host_watts", "host_joules")]
    groups += [(vm, g, "vm_watts", "vm_joules") for vm, g in df.groupby("vm", sort=True)]
    for name, g, watts, joules in groups:
        start = (g["timestamp"] - pd.to_timedelta(g["interval_s"], unit="s")).min()
        duration = float(g["interval_s"].sum())
        energy = float(g[joules].sum())
        rows.append({
            "vm": name,
            "duration_s": duration,
            "span_s": float((g["timestamp"].max() - start).total_seconds()),
            "samples": len(g),
            "mean_watts": energy / duration if duration > 0 else 0.0,
            "p95_watts": float(g[watts].quantile(0.95)),
            "energy_j": energy,
            "estimated": bool(g["estimated"].any()),
        })
    out = pd.DataFrame(rows)
    # host first, unattributed last
    order = out["vm"].map(lambda v: (v != "host", v == "unattributed", v))
    return out.iloc[sorted(range(len(out)), key=lambda i: order.iloc[i])].reset_index(drop=True)


def plot_power(frames: list[pd.DataFrame], out: Path) -> None:
    """Watts over time per VM (and the host), saved as PNG atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = pd.concat(frames, ignore_index=True)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    host = df.drop_duplicates(subset=["source_file", "timestamp"]).sort_values("timestamp")
    ax.plot(host["timestamp"], host["host_watts"], color="black", lw=1.5, label="host (package)")
    for vm, g in df.groupby("vm", sort=True):
        g = g.sort_values("timestamp")
        ax.plot(g["timestamp"], g["vm_watts"], lw=1, label=vm)
    ax.set_ylabel("W")
    ax.set_xlabel("time (UTC)")
    ax.legend(loc="upper right", fontsize="small")
    fig.autofmt_xdate()
    fig.tight_layout()
    save_figure_atomic(fig, out)
