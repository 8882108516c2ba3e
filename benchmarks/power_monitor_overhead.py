"""CPU overhead of the host power monitor at 10 Hz with 4 VMs.

Runs host_scripts/kvm_power_monitor.py with the system python against the tests' fake powercap tree
(two sockets, advancing and wrapping) and 4 qemu-like busy processes, writing CSV and serving metrics,
and reports the monitor's own CPU time (utime+stime from /proc) as a percentage of one core.

    .venv/bin/python benchmarks/power_monitor_overhead.py [--seconds 30] [--hz 10] [--vms 4]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes import FakeRapl, cpu_seconds, start_fake_vm  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--hz", type=float, default=10.0)
    parser.add_argument("--vms", type=int, default=4)
    args = parser.parse_args()
    python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    vms = [start_fake_vm(f"minikube-m{i + 1:02d}" if i else "minikube", 0.05) for i in range(args.vms)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        with FakeRapl(tmp_path / "powercap", watts=[35.0, 25.0], range_uj=[2**32, 2**32], tick_s=0.02):
            mon = subprocess.Popen([python, str(ROOT / "host_scripts" / "kvm_power_monitor.py"),
                                    "--rapl-root", str(tmp_path / "powercap"), "--interval", str(1 / args.hz),
                                    "--csv", str(tmp_path / "power.csv"), "--listen", "127.0.0.1:0",
                                    "--duration", str(args.seconds + 2)], stdout=subprocess.PIPE, text=True)
            time.sleep(2.0)  # skip start-up (interpreter and imports)
            c0, t0 = cpu_seconds(mon.pid), time.monotonic()
            time.sleep(args.seconds)
            c1, t1 = cpu_seconds(mon.pid), time.monotonic()
            out, _ = mon.communicate(timeout=30)
        rows = len((tmp_path / "power.csv").read_text().splitlines()) - 1
    for p in vms:
        p.kill()
        p.wait()
    pct = (c1 - c0) / (t1 - t0) * 100
    print(f"monitor at {args.hz:g} Hz with {args.vms} VMs: {pct:.2f} % of one core "
          f"({c1 - c0:.2f} CPU s over {t1 - t0:.1f} s; {rows} CSV rows)")
    print(out.strip().splitlines()[0])


if __name__ == "__main__":
    main()
