"""Run JMeter non-GUI against the test app and summarise its JTL.

`run_load` finds JMeter (explicit path, `RLSCHED_JMETER`, else `jmeter` on PATH), runs the plan with
every knob passed as a `-J` property, writes OUT/results.jtl (CSV with a header), OUT/jmeter.log and
OUT/summary.csv. Debian's JMeter 2.13 loads no plan under its XStream 1.4.20 and still exits 0; when
the log shows that refusal, the run is repeated through a tiny launcher (jmeter/launcher/) that only
adds the XStream type permission. A run that writes no samples is an error.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from rlmodel.assets import asset_path
from rlmodel.atomic import atomic_path
from rlmodel.errors import LoadError

DEFAULT_PLAN = asset_path("jmeter", "testapp.jmx")  # package data (jmeter/testapp.jmx in the source tree)
LAUNCHER_SRC = asset_path("jmeter", "launcher", "RlschedJMeter.java")
SUMMARY_COLUMNS = ["requests", "errors", "error_rate", "throughput_rps", "latency_mean_ms", "latency_p50_ms",
                   "latency_p95_ms", "latency_p99_ms"]


@dataclass(frozen=True)
class LoadSummary:
    """What a JMeter run measured (latency is JMeter's `elapsed`: request sent to response read, ms)."""

    requests: int
    errors: int
    error_rate: float
    throughput_rps: float
    latency_mean_ms: float
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float


def find_jmeter(explicit: str | None = None) -> str:
    """The JMeter executable: `explicit`, else $RLSCHED_JMETER, else `jmeter` on PATH."""
    candidate = explicit or os.environ.get("RLSCHED_JMETER") or shutil.which("jmeter")
    if not candidate:
        raise LoadError("jmeter not found: install it (Debian: apt-get install jmeter jmeter-http; or JMeter 5.6 "
                        "from jmeter.apache.org), or pass --jmeter PATH / set RLSCHED_JMETER")
    path = shutil.which(candidate) or candidate
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise LoadError(f"{candidate}: not an executable JMeter")
    return path


def summarize_jtl(path: Path) -> LoadSummary:
    """Summary of a CSV JTL (header row; quoted fields with commas are fine)."""
    try:
        df = pd.read_csv(path, quotechar='"', escapechar=None, dtype={"responseMessage": str},
                         keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise LoadError(f"{path}: cannot parse the JTL: {str(exc).strip()[:200]}") from None
    missing = {"timeStamp", "elapsed", "success"} - set(df.columns)
    if missing:
        raise LoadError(f"{path}: not a CSV JTL with a header (missing {', '.join(sorted(missing))})")
    if df.empty:
        raise LoadError(f"{path}: JMeter wrote no samples")
    elapsed = pd.to_numeric(df["elapsed"], errors="coerce").to_numpy(dtype=float)
    start = pd.to_numeric(df["timeStamp"], errors="coerce").to_numpy(dtype=float)
    ok = df["success"].astype(str).str.lower().eq("true").to_numpy()
    span_s = (np.nanmax(start + elapsed) - np.nanmin(start)) / 1000.0
    n = len(df)
    errors = int((~ok).sum())
    return LoadSummary(
        requests=n, errors=errors, error_rate=errors / n,
        throughput_rps=n / span_s if span_s > 0 else float("nan"),
        latency_mean_ms=float(np.nanmean(elapsed)),
        latency_p50_ms=float(np.nanpercentile(elapsed, 50)),
        latency_p95_ms=float(np.nanpercentile(elapsed, 95)),
        latency_p99_ms=float(np.nanpercentile(elapsed, 99)),
    )


@dataclass(frozen=True)
class JtlWindow:
    """When a JTL's requests ran (Unix s: first request sent, last response read) and how many missed a
    latency objective (slower than `slo_ms`, or failed)."""

    start_s: float
    end_s: float
    requests: int
    misses: int
    latency_p50_ms: float
    latency_p95_ms: float


def jtl_window(path: Path, slo_ms: float) -> JtlWindow:
    """The time span and service-level misses of a CSV JTL."""
    try:
        df = pd.read_csv(path, usecols=["timeStamp", "elapsed", "success"], keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise LoadError(f"{path}: cannot parse the JTL: {str(exc).strip()[:200]}") from None
    if df.empty:
        raise LoadError(f"{path}: JMeter wrote no samples")
    start = pd.to_numeric(df["timeStamp"], errors="coerce").to_numpy(dtype=float)
    elapsed = pd.to_numeric(df["elapsed"], errors="coerce").to_numpy(dtype=float)
    ok = df["success"].astype(str).str.lower().eq("true").to_numpy()
    misses = int((~ok | (elapsed > slo_ms)).sum())
    return JtlWindow(float(np.nanmin(start)) / 1000.0, float(np.nanmax(start + elapsed)) / 1000.0, len(df), misses,
                     float(np.nanpercentile(elapsed, 50)), float(np.nanpercentile(elapsed, 95)))


# JMeter executables known to need the launcher (Debian's 2.13), so later runs skip the failing first try
_NEEDS_LAUNCHER: set[str] = set()


def _launcher(jmeter: str) -> list[str]:
    """java command line that runs JMeter through the XStream-permission launcher (compiled once, cached)."""
    real = Path(os.path.realpath(jmeter))
    jar = next((p for p in (real.parent / "ApacheJMeter.jar", Path("/usr/share/jmeter/bin/ApacheJMeter.jar"))
                if p.is_file()), None)
    java, javac = shutil.which("java"), shutil.which("javac")
    if jar is None or java is None or javac is None:
        raise LoadError("JMeter refused the plan (XStream ForbiddenClassException) and the launcher that fixes it "
                        "needs ApacheJMeter.jar, java and javac (Debian: apt-get install openjdk-17-jdk-headless)")
    src = LAUNCHER_SRC.read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rlsched" / "jmeter-launcher" / \
        hashlib.sha256(src + str(jar).encode()).hexdigest()[:16]
    if not (cache / "RlschedJMeter.class").is_file():
        cache.mkdir(parents=True, exist_ok=True)
        r = subprocess.run([javac, "-d", str(cache), "-cp", str(jar), str(LAUNCHER_SRC)], capture_output=True,
                           text=True, timeout=120)
        if r.returncode != 0:
            raise LoadError(f"compiling {LAUNCHER_SRC.name} failed: {r.stderr.strip()[:300]}")
    return [java, "-cp", f"{cache}{os.pathsep}{jar}", f"-Djmeter.home={jar.parent.parent}", "RlschedJMeter"]


def run_load(target: str, out: Path, *, plan: Path = DEFAULT_PLAN, threads: int = 4, duration_s: int = 30,
             ramp_up_s: int = 1, mode: str = "cpu", intensity: int = 1, jmeter: str | None = None) -> LoadSummary:
    """Drive `target` (the test app's URL, e.g. http://127.0.0.1:8080/work) with JMeter; write OUT/results.jtl,
    OUT/jmeter.log and OUT/summary.csv; return the summary."""
    url = urlsplit(target)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise LoadError(f"--target {target}: expected http(s)://HOST[:PORT][/PATH]")
    if not plan.is_file():
        raise LoadError(f"{plan}: no such JMeter plan")
    exe = find_jmeter(jmeter)
    # JMeter runs in `out` (its working files land there): every path it gets must not depend on our cwd
    out, plan = out.resolve(), plan.resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LoadError(f"--out {out}: cannot create the folder: {exc.strerror or exc}") from None
    jtl, log = out / "results.jtl", out / "jmeter.log"
    args = [
        "-n", "-t", str(plan), "-l", str(jtl), "-j", str(log),
        f"-Jhost={url.hostname}", f"-Jport={url.port or (443 if url.scheme == 'https' else 80)}",
        f"-Jprotocol={url.scheme}", f"-Jpath={url.path or '/work'}", f"-Jthreads={threads}",
        f"-Jduration={duration_s}", f"-Jramp_up={ramp_up_s}", f"-Jmode={mode}", f"-Jintensity={intensity}",
        "-Jjmeter.save.saveservice.output_format=csv", "-Jjmeter.save.saveservice.print_field_names=true",
        "-Jjmeter.save.saveservice.timestamp_format=ms",
    ]
    timeout = duration_s + ramp_up_s + 120
    for attempt in (("launcher",) if exe in _NEEDS_LAUNCHER else ("plain", "launcher")):
        jtl.unlink(missing_ok=True)
        cmd = [exe, *args] if attempt == "plain" else [*_launcher(exe), *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=out)
        except subprocess.TimeoutExpired:
            raise LoadError(f"JMeter did not finish within {timeout} s (see {log})") from None
        if jtl.is_file() and jtl.stat().st_size > 0:
            break
        refused = log.is_file() and "ForbiddenClassException" in log.read_text(errors="replace")
        if attempt == "plain" and refused:
            _NEEDS_LAUNCHER.add(exe)
            continue  # Debian's JMeter 2.13: retry through the launcher
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise LoadError(f"JMeter wrote no samples (exit {proc.returncode}; {tail[0][:200]}); see {log}")
    summary = summarize_jtl(jtl)
    with atomic_path(out / "summary.csv") as tmp:
        pd.DataFrame([asdict(summary)], columns=SUMMARY_COLUMNS).to_csv(tmp, index=False)
    return summary
