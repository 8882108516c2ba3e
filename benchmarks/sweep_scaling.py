"""`rlsched sweep` wall time for 8 runs (2 scenarios x 2 seeds x 2 values of `hidden`): 1 local worker, 2 local
workers, and a local Ray with 2 CPUs, each a fresh sweep through the CLI (Ray's start-up included). Prints the
wall times, the speed-ups over 1 worker, and whether the three gave identical result rows.

    .venv/bin/python benchmarks/sweep_scaling.py [--steps 3000] [--episodes 5] [--out results/sweep-scaling]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

COMPARED = ["run", "policy", "energy_j_mean", "cost_j_mean", "overload_pod_s_mean", "unschedulable_mean"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("results/sweep-scaling"))
    args = parser.parse_args()
    base = [sys.executable, "-m", "rlmodel.console", "sweep", "--scenarios", "tiny,hetero-sleep", "--seeds", "1,2",
            "--set", "hidden=32", "--set", "hidden=64", "--set", "demo_episodes=20", "--set", "pretrain_steps=300",
            "--set", "validation_episodes=5", "--steps", str(args.steps), "--episodes", str(args.episodes),
            "--policies", "round-robin,efficient-first"]
    walls, results = {}, {}
    for label, extra in (("1 worker", ["--workers", "1"]), ("2 workers", ["--workers", "2"]),
                         ("Ray local, 2 CPUs", ["--workers", "2", "--ray-address", "local"])):
        out = args.out / label.replace(" ", "-").replace(",", "")
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        r = subprocess.run([*base, *extra, "--out", str(out)], capture_output=True, text=True)
        walls[label] = time.perf_counter() - start
        if r.returncode != 0:
            raise SystemExit(f"{label}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
        results[label] = pd.read_csv(out / "results.csv")
        train = results[label].groupby("run")["train_s"].first().sum()
        print(f"{label:<18} {walls[label]:7.1f} s wall  (training inside the runs: {train:.1f} s in all)", flush=True)
    one = walls["1 worker"]
    for label, wall in walls.items():
        print(f"  speed-up over 1 worker, {label}: {one / wall:.2f}x")
    same = all(results[k][COMPARED].equals(results["1 worker"][COMPARED]) for k in results)
    print(f"identical result rows from the three: {same}")


if __name__ == "__main__":
    main()
