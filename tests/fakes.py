"""Test doubles shipped with the tests: a fake powercap tree with a feeder, and qemu-like busy processes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

BUSY = """
import sys, time
duty = float(sys.argv[1])
period = 0.02
while True:
    start = time.perf_counter()
    while time.perf_counter() - start < duty * period:
        pass
    time.sleep(max(0.0, (1 - duty) * period))
"""


class FakeRapl:
    """A powercap tree in `root` whose package zones advance at known watts and wrap at a known range.

    Zones: intel-rapl:N (package-N) with a sub-zone intel-rapl:N:0 that must never be added to the
    package. A feeder rewrites every energy_uj (atomically) every `tick_s`: a background thread, or with
    `process=True` a separate process (its own interpreter: a test process busy with servers in threads
    cannot stall it through the GIL). Energy is a function of CLOCK_MONOTONIC, shared by both.
    """

    def __init__(self, root: Path, watts: list[float], range_uj: list[int], tick_s: float = 0.005,
                 *, process: bool = False, start: float | None = None):
        self.root, self.watts, self.range_uj, self.tick_s = root, watts, range_uj, tick_s
        self.process, self.proc = process, None
        self.start = time.monotonic() if start is None else start
        self._stop = threading.Event()
        if start is not None:  # the feeder process of a tree that exists
            return
        for i, rng in enumerate(range_uj):
            pkg = root / f"intel-rapl:{i}"
            sub = root / f"intel-rapl:{i}" / f"intel-rapl:{i}:0"
            sub.mkdir(parents=True)
            (pkg / "name").write_text(f"package-{i}\n")
            (pkg / "max_energy_range_uj").write_text(f"{rng}\n")
            (sub / "name").write_text("core\n")
            (sub / "max_energy_range_uj").write_text(f"{rng}\n")
            # a sibling zone at top level, as on real hosts (psys/dram): not a package, must be ignored
        (root / "intel-rapl-mmio:0").mkdir()
        self._write()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def energy_uj(self, i: int, elapsed: float) -> int:
        return int(self.watts[i] * 1e6 * elapsed) % self.range_uj[i]

    def _write(self) -> None:
        elapsed = time.monotonic() - self.start
        for i in range(len(self.watts)):
            for path, factor in ((self.root / f"intel-rapl:{i}" / "energy_uj", 1.0),
                                 (self.root / f"intel-rapl:{i}" / f"intel-rapl:{i}:0" / "energy_uj", 0.5)):
                tmp = path.with_suffix(".tmp")
                tmp.write_text(f"{int(self.energy_uj(i, elapsed) * factor)}\n")
                os.replace(tmp, path)

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            self._write()

    def __enter__(self) -> FakeRapl:
        if self.process:
            self.proc = subprocess.Popen([sys.executable, __file__, "rapl-feeder", str(self.root), repr(self.watts),
                                          repr(self.range_uj), repr(self.tick_s), repr(self.start)],
                                         preexec_fn=die_with_parent)
        else:
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        else:
            self._stop.set()
            self.thread.join()


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGKILL when the test process dies, however it dies (prctl PR_SET_PDEATHSIG).
    A busy stand-in VM left behind by a killed run is counted by the next run's power monitor as a VM of the
    same name."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1


def start_fake_vm(name: str, duty: float) -> subprocess.Popen:
    """A real busy process whose command line looks like qemu's: `qemu-system-x86_64 ... -name guest=NAME`.
    It dies with the test process."""
    return subprocess.Popen(
        ["bash", "-c", 'exec -a qemu-system-x86_64 "$0" -c "$1" "$2" -name "guest=$3,debug-threads=on"',
         sys.executable, BUSY, str(duty), name], preexec_fn=die_with_parent,
    )


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        rest = fh.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__" and sys.argv[1:2] == ["rapl-feeder"]:
    import ast

    root, watts, range_uj, tick_s, start = sys.argv[2:7]
    # as root (CI), run ahead of the test's busy processes: a stalled feeder leaves a stale counter that then
    # jumps, which moves energy across a short window's edge (real RAPL never stalls)
    with contextlib.suppress(OSError):
        os.nice(-5)
    FakeRapl(Path(root), ast.literal_eval(watts), ast.literal_eval(range_uj), float(tick_s),
             start=float(start))._run()


def write_synthetic_openb(pod_list, node_list, *, pods: int = 400, seed: int = 0) -> None:
    """A small pod list and node list in the exact format of Alibaba's cluster-trace-gpu-v2023 (OpenB), with its
    shape: latency-sensitive pods live about 11 h, best-effort ones about 1 h (lognormal), Poisson arrivals a
    few minutes apart, a few GPU pods, pods never scheduled and pods still running at the end. Not Alibaba's data."""
    import csv as _csv

    import numpy as _np

    rng = _np.random.default_rng(seed)
    t = 0.0
    with open(pod_list, "w", newline="") as f:
        w = _csv.writer(f)
        w.writerow(["name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "gpu_spec", "qos", "pod_phase",
                    "creation_time", "deletion_time", "scheduled_time"])
        for i in range(pods):
            t += float(rng.exponential(300.0))
            qos = rng.choice(["LS", "BE", "Burstable", "Guaranteed"], p=[0.35, 0.45, 0.1, 0.1])
            mean_h = 11.0 if qos in ("LS", "Guaranteed") else 1.0
            run = float(rng.lognormal(_np.log(mean_h * 3600) - 0.5, 1.0))
            cpu = int(rng.choice([250, 500, 1000, 1500, 2000, 4000], p=[0.2, 0.25, 0.25, 0.15, 0.1, 0.05]))
            mem = int(cpu * float(rng.choice([1.0, 2.0, 4.0])))
            gpu = int(rng.random() < 0.05)
            created = round(t)
            scheduled = "" if rng.random() < 0.03 else str(created + int(rng.integers(0, 30)))
            deleted = "" if (scheduled == "" or rng.random() < 0.03) else str(int(scheduled) + max(1, round(run)))
            phase = "Pending" if scheduled == "" else ("Running" if deleted == "" else "Succeeded")
            w.writerow([f"openb-pod-{i:04d}", cpu, mem, gpu, 1000 * gpu, "V100M16" if gpu else "", qos, phase,
                        created, deleted, scheduled])
    with open(node_list, "w", newline="") as f:
        w = _csv.writer(f)
        w.writerow(["sn", "cpu_milli", "memory_mib", "gpu", "model"])
        for i, (cpu, mem) in enumerate([(4000, 8192)] * 4 + [(8000, 16384)] * 4 + [(16000, 32768)] * 2):
            w.writerow([f"openb-node-{i:04d}", cpu, mem, 0, ""])
