"""Test doubles shipped with the tests: a fake powercap tree with a feeder, and qemu-like busy processes."""

from __future__ import annotations

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
                                          repr(self.range_uj), repr(self.tick_s), repr(self.start)])
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


def start_fake_vm(name: str, duty: float) -> subprocess.Popen:
    """A real busy process whose command line looks like qemu's: `qemu-system-x86_64 ... -name guest=NAME`."""
    return subprocess.Popen(
        ["bash", "-c", 'exec -a qemu-system-x86_64 "$0" -c "$1" "$2" -name "guest=$3,debug-threads=on"',
         sys.executable, BUSY, str(duty), name],
    )


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        rest = fh.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__" and sys.argv[1:2] == ["rapl-feeder"]:
    import ast

    root, watts, range_uj, tick_s, start = sys.argv[2:7]
    FakeRapl(Path(root), ast.literal_eval(watts), ast.literal_eval(range_uj), float(tick_s),
             start=float(start))._run()
