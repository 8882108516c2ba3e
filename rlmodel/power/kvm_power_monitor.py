#!/usr/bin/env python3
"""Host power monitor: RAPL package energy attributed to each qemu VM (Minikube node) by CPU time.

One file, Python 3.8+ standard library only: copy it to the KVM host and run it as root with the
system python. `rlsched power monitor` runs the same code from the project's venv.

    sudo python3 kvm_power_monitor.py --interval 1 --csv power.csv --listen 0.0.0.0:9877

Collect, model, export are kept apart:
  collect  RaplSysfs / PerfEnergy (package joules), ProcStat (CPU seconds of qemu processes, /proc)
  model    EnergyCounter (wraparound, dropped samples), attribute() (watts per VM)
  export   CsvSink (one row per VM per sample, flushed), MetricsState (Prometheus text, HTTP and textfile)

Attribution: vm_watts = host_watts * vm_cpu_s / (interval_s * ncpus); vm_cpu_s is the process's
utime+stime delta, which already includes its vCPU threads. What no VM accounts for is reported as
the pseudo-VM `unattributed`. Numbers are always written with '.' as the decimal separator.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as _dt
import errno
import http.server
import io
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional, Tuple

__version__ = "1.0"

CSV_COLUMNS = [
    "timestamp", "interval_s", "host_joules", "host_watts", "vm", "vm_pid", "vm_cpu_s", "vm_cpu_share",
    "vm_watts", "vm_joules", "estimated",
]
DEFAULT_MATCH = r"^(qemu-system-[A-Za-z0-9_.+-]+|qemu-kvm|kvm)$"
UNATTRIBUTED = "unattributed"


class MonitorError(Exception):
    """A user-facing failure: printed as one line, exit 1."""


# ----------------------------------------------------------------------------------------- collect
class RaplSysfs:
    """Package energy counters from the powercap sysfs tree (`intel-rapl:N/energy_uj`).

    Only top-level package zones are read (one per socket); sub-zones `intel-rapl:N:M` (core, uncore,
    dram) are already contained in the package and are never added to it.
    """

    def __init__(self, root: str):
        self.root = root
        if not os.path.isdir(root):
            raise MonitorError("%s: no such directory: RAPL is unavailable (not an Intel/AMD host with the "
                               "powercap driver loaded, or inside a VM); use --estimate-tdp WATTS to estimate"
                               % root)
        zones = sorted(
            (d for d in os.listdir(root) if re.match(r"^intel-rapl:\d+$", d)),
            key=lambda d: int(d.split(":")[1]),
        )
        if not zones:
            raise MonitorError("%s: no intel-rapl:N package zone found: RAPL is unavailable; use "
                               "--estimate-tdp WATTS to estimate" % root)
        self.zones = [os.path.join(root, z) for z in zones]
        self.max_range_uj = [self._read_int(os.path.join(z, "max_energy_range_uj")) for z in self.zones]
        for zone, rng in zip(self.zones, self.max_range_uj):
            if rng <= 0:
                raise MonitorError("%s/max_energy_range_uj: %d: a counter range must be positive; this zone "
                                   "cannot be read correctly" % (zone, rng))
        self.read()  # fail now, with a clear message, if the counters are not readable

    @staticmethod
    def _read_int(path: str) -> int:
        try:
            with open(path, "r") as fh:
                return int(fh.read().strip())
        except PermissionError:
            raise MonitorError("%s: permission denied: energy_uj is readable by root only since 2020 "
                               "(CVE-2020-8694); run the monitor as root" % path) from None
        except FileNotFoundError:
            raise MonitorError("%s: no such file: RAPL zone incomplete" % path) from None
        except (OSError, ValueError) as exc:
            raise MonitorError("%s: cannot read: %s" % (path, exc)) from None

    def read(self) -> List[int]:
        """Current energy of every package zone, microjoules (raw counters, may wrap)."""
        return [self._read_int(os.path.join(z, "energy_uj")) for z in self.zones]


class PerfEnergy:
    """Package energy from `perf stat -a -e power/energy-pkg/ -I MS -x,` (fallback when sysfs is closed).

    perf prints the joules of each interval; they are accumulated into a counter that never wraps.
    """

    def __init__(self, interval_s: float, perf: str = "perf"):
        ms = max(10, int(round(interval_s * 1000)))
        cmd = [perf, "stat", "-a", "-e", "power/energy-pkg/", "-I", str(ms), "-x", ","]
        try:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        except FileNotFoundError:
            raise MonitorError("%s: not found: install linux-perf, or use --source sysfs" % perf) from None
        self.total_uj = 0
        self.error = None  # type: Optional[str]
        self.max_range_uj = [2 ** 63]
        self._lock = threading.Lock()
        self._seen = threading.Event()
        threading.Thread(target=self._pump, daemon=True).start()
        if not self._seen.wait(timeout=max(3.0, 3 * interval_s)):
            self.close()
            raise MonitorError("perf stat -e power/energy-pkg/: no reading within %.0f s%s"
                               % (max(3.0, 3 * interval_s), (": " + self.error) if self.error else ""))
        if self.error:
            self.close()
            raise MonitorError("perf stat -e power/energy-pkg/: %s" % self.error)

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            parsed = parse_perf_line(line)
            if parsed is None:
                if "not supported" in line or "<not" in line or "rror" in line:
                    self.error = line.strip()[:200]
                    self._seen.set()
                continue
            with self._lock:
                self.total_uj += int(round(parsed * 1e6))
            self._seen.set()

    def read(self) -> List[int]:
        with self._lock:
            return [self.total_uj]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def parse_perf_line(line: str) -> Optional[float]:
    """Joules from one `perf stat -I -x,` line (`time,value,unit,event,...`), else None."""
    fields = line.strip().split(",")
    if len(fields) < 4 or "energy-pkg" not in fields[3]:
        return None
    try:
        return float(fields[1])
    except ValueError:
        return None


class ProcStat:
    """CPU seconds (utime+stime) of processes, and the qemu VMs among them, from /proc."""

    def __init__(self, proc_root: str = "/proc", match: str = DEFAULT_MATCH):
        self.proc_root = proc_root
        self.match = re.compile(match)
        self.ticks = os.sysconf("SC_CLK_TCK")
        # pid -> (VM name or None, when first seen). A command line is read once per pid, and again while
        # the process is young (a fork has not yet exec'd qemu): rereading every process's cmdline each
        # interval would dominate the monitor's own CPU use.
        self._seen = {}  # type: Dict[int, Tuple[Optional[str], float]]
        self.recheck_young_s = 5.0

    def vms(self) -> Dict[int, str]:
        """pid -> VM name for every process whose program name matches."""
        now = time.monotonic()
        seen = {}  # type: Dict[int, Tuple[Optional[str], float]]
        for entry in os.listdir(self.proc_root):
            if not entry.isdigit():
                continue
            pid = int(entry)
            known = self._seen.get(pid)
            if known is not None and (known[0] is not None or now - known[1] > self.recheck_young_s):
                seen[pid] = known
                continue
            try:
                with open(os.path.join(self.proc_root, entry, "cmdline"), "rb") as fh:
                    argv = fh.read().split(b"\0")
            except OSError:
                continue  # exited while we looked
            name = None
            if argv and argv[0]:  # kernel threads have no command line
                prog = os.path.basename(argv[0].decode("utf-8", "replace"))
                if self.match.search(prog):
                    name = vm_name([a.decode("utf-8", "replace") for a in argv if a], pid)
            seen[pid] = (name, known[1] if known else now - self._age_s(pid))
        self._seen = seen  # exited pids are forgotten
        return {pid: v[0] for pid, v in seen.items() if v[0] is not None}

    def _age_s(self, pid: int) -> float:
        """Seconds since the process started (from its start time in /proc/PID/stat and /proc/uptime)."""
        try:
            with open(os.path.join(self.proc_root, str(pid), "stat"), "r") as fh:
                start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
            with open(os.path.join(self.proc_root, "uptime"), "r") as fh:
                uptime = float(fh.read().split()[0])
        except (OSError, ValueError, IndexError):
            return 0.0
        return max(0.0, uptime - start_ticks / self.ticks)

    def cpu_seconds(self, pid: int) -> Optional[float]:
        """utime+stime of `pid` in seconds (all its threads), or None if it is gone."""
        try:
            with open(os.path.join(self.proc_root, str(pid), "stat"), "r") as fh:
                data = fh.read()
        except OSError:
            return None
        # the command name may contain spaces and parentheses: fields start after the last ')'
        rest = data[data.rfind(")") + 2:].split()
        return (int(rest[11]) + int(rest[12])) / self.ticks

    def host_busy(self) -> Tuple[float, float]:
        """(busy, total) CPU seconds of all CPUs from /proc/stat (guest time is inside user time already,
        so the guest columns are not added again)."""
        with open(os.path.join(self.proc_root, "stat"), "r") as fh:
            fields = [int(x) for x in fh.readline().split()[1:9]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return float(sum(fields) - idle) / self.ticks, float(sum(fields)) / self.ticks


def vm_name(argv: List[str], pid: int) -> str:
    """The VM's name from qemu's `-name guest=NAME,...` or `-name NAME`, else `pid-PID`."""
    for i, arg in enumerate(argv):
        value = None
        if arg == "-name" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("-name="):
            value = arg[len("-name="):]
        if value is not None:
            for part in value.split(","):
                if part.startswith("guest="):
                    return part[len("guest="):]
            first = value.split(",")[0]
            if first and "=" not in first:
                return first
    return "pid-%d" % pid


# ------------------------------------------------------------------------------------------- model
class EnergyCounter:
    """Turns raw package counters into joules over the time since the previous reading, correcting
    wraparound per zone.

    A zone that reads lower than before wrapped once: delta += max_energy_range_uj. A reading that
    no single wrap explains (above the range), or whose delta implies more than `max_watts` on one zone
    over `interval_s` (a wrap included: a small backward step "explained" by a 2^32 uJ range would be
    thousands of watts), is dropped and counted in `dropped`. A zone whose counter did not move is
    stuck (RAPL counters advance every millisecond): the sample is dropped and counted in `stuck`.
    Nothing dropped is ever reported as watts.
    """

    def __init__(self, max_range_uj: List[int], max_watts: float):
        self.max_range_uj = max_range_uj
        self.max_watts = max_watts
        self.prev = None  # type: Optional[List[int]]
        self.dropped = 0
        self.stuck = 0

    def reset(self, reading: List[int]) -> None:
        """Take `reading` as the previous reading (the baseline of the next delta)."""
        self.prev = reading

    def delta_joules(self, reading: List[int], interval_s: float) -> Optional[float]:
        """Joules since the previous reading, `interval_s` seconds ago; None when dropped (or first)."""
        prev, self.prev = self.prev, reading
        if prev is None:
            return None
        total_uj = 0
        for p, c, rng in zip(prev, reading, self.max_range_uj):
            if c > rng or c < 0:
                self.dropped += 1
                return None
            d = c - p
            if d < 0:
                d += rng
            if interval_s <= 0 or d / 1e6 / interval_s > self.max_watts:
                self.dropped += 1
                return None
            if d == 0:
                self.stuck += 1
                return None
            total_uj += d
        return total_uj / 1e6


def attribute(host_watts: float, capacity_s: float, cpu_s: Dict[str, float]) -> Dict[str, float]:
    """Watts per VM in proportion to its CPU seconds out of `capacity_s` (the CPU seconds all CPUs had over
    the same span), plus `unattributed` (the rest). The VMs' shares never add up to more than the host's
    watts: when their CPU seconds exceed the capacity (reads a moment apart), they are scaled down."""
    capacity = max(capacity_s, sum(cpu_s.values()), 1e-12)
    out = {vm: host_watts * s / capacity for vm, s in cpu_s.items()}
    out[UNATTRIBUTED] = max(0.0, host_watts - sum(out.values()))
    return out


# ------------------------------------------------------------------------------------------ export
def fmt(x: float) -> str:
    """A number with '.' as decimal separator, whatever the locale (repr-based, not locale-aware)."""
    return ("%.6f" % x).rstrip("0").rstrip(".") if x == x else "nan"


def iso_utc(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class CsvSink:
    """Appends one row per VM per sample, flushed per row; writes the header only when the file is new or
    empty. An existing file must carry this monitor's header; a last row cut off by a crash (no final
    newline) is removed before appending, and said so. Opened without following a symbolic link (the
    monitor runs as root)."""

    def __init__(self, path: str):
        self.path = path
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise MonitorError("%s: is a symbolic link; give the real path" % path) from None
            raise MonitorError("%s: cannot open for appending: %s" % (path, exc.strerror)) from None
        self.fh = os.fdopen(fd, "a+", newline="", encoding="utf-8")
        try:
            self._check_existing()
        except BaseException:
            self.fh.close()
            raise
        self.writer = csv.writer(self.fh, lineterminator="\n")
        if os.fstat(fd).st_size == 0:
            self.writer.writerow(CSV_COLUMNS)
            self._flush()

    def _check_existing(self) -> None:
        fh = self.fh
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            return
        fh.seek(0)
        header = fh.readline()
        if header.rstrip("\r\n").split(",") != CSV_COLUMNS:
            raise MonitorError("%s: line 1 is not this monitor's header (expected %s): write to another file"
                               % (self.path, ",".join(CSV_COLUMNS)))
        fh.seek(size - 1)
        if fh.read(1) != "\n":
            # a row cut off by a crash or a full disk: drop it, so the next row does not glue onto it
            with open(self.path, "rb") as raw:
                data = raw.read()
            keep = data.rfind(b"\n") + 1
            os.truncate(fh.fileno(), keep)
            sys.stderr.write("kvm_power_monitor: %s: removed a cut-off last row (%d bytes)\n"
                             % (self.path, len(data) - keep))
        fh.seek(0, os.SEEK_END)

    def write(self, row: List[str]) -> None:
        self.writer.writerow(row)
        self._flush()

    def _flush(self) -> None:
        try:
            self.fh.flush()
        except OSError as exc:
            raise MonitorError("%s: cannot write: %s" % (self.path, exc.strerror)) from None

    def close(self) -> None:
        with contextlib.suppress(OSError):  # the error was reported by the write that failed
            self.fh.close()


class MetricsState:
    """Counters and gauges in Prometheus text exposition format (base units)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.host_joules = 0.0
        self.host_watts = 0.0
        self.vm_joules = {}  # type: Dict[str, float]
        self.vm_watts = {}  # type: Dict[str, float]
        self.vm_cpu_s = {}  # type: Dict[str, float]
        self.dropped = 0
        self.stuck = 0
        self.samples = 0
        self.estimated = False
        self.last_sample_unix_s = 0.0

    def update(self, host_watts: float, joules: float, watts: Dict[str, float], cpu_s: Dict[str, float],
               interval_s: float, at_unix_s: Optional[float] = None) -> None:
        with self.lock:
            self.samples += 1
            self.last_sample_unix_s = time.time() if at_unix_s is None else at_unix_s
            self.host_watts = host_watts
            self.host_joules += joules
            self.vm_watts = dict(watts)  # exited VMs leave the gauge; their counters stay
            for vm, w in watts.items():
                self.vm_joules[vm] = self.vm_joules.get(vm, 0.0) + w * interval_s
            for vm, s in cpu_s.items():
                self.vm_cpu_s[vm] = self.vm_cpu_s.get(vm, 0.0) + s

    def render(self) -> str:
        with self.lock:
            lines = [
                "# HELP rlsched_host_energy_joules_total CPU package energy (all sockets) since the monitor started.",
                "# TYPE rlsched_host_energy_joules_total counter",
                "rlsched_host_energy_joules_total %s" % fmt(self.host_joules),
                "# HELP rlsched_host_power_watts CPU package power over the last interval.",
                "# TYPE rlsched_host_power_watts gauge",
                "rlsched_host_power_watts %s" % fmt(self.host_watts),
                "# HELP rlsched_vm_energy_joules_total Package energy attributed to each VM by CPU time.",
                "# TYPE rlsched_vm_energy_joules_total counter",
            ]
            lines += ['rlsched_vm_energy_joules_total{vm="%s"} %s' % (_label(vm), fmt(j))
                      for vm, j in sorted(self.vm_joules.items())]
            lines += ["# HELP rlsched_vm_power_watts Package power attributed to each VM over the last interval.",
                      "# TYPE rlsched_vm_power_watts gauge"]
            lines += ['rlsched_vm_power_watts{vm="%s"} %s' % (_label(vm), fmt(w))
                      for vm, w in sorted(self.vm_watts.items())]
            lines += ["# HELP rlsched_vm_cpu_seconds_total CPU time (utime+stime) of each VM's qemu process.",
                      "# TYPE rlsched_vm_cpu_seconds_total counter"]
            lines += ['rlsched_vm_cpu_seconds_total{vm="%s"} %s' % (_label(vm), fmt(s))
                      for vm, s in sorted(self.vm_cpu_s.items())]
            lines += [
                "# HELP rlsched_dropped_samples_total Energy readings dropped as impossible (backwards or spikes).",
                "# TYPE rlsched_dropped_samples_total counter",
                "rlsched_dropped_samples_total %d" % self.dropped,
                "# HELP rlsched_stuck_samples_total Samples dropped because an energy counter did not advance.",
                "# TYPE rlsched_stuck_samples_total counter",
                "rlsched_stuck_samples_total %d" % self.stuck,
                "# HELP rlsched_samples_total Samples taken.",
                "# TYPE rlsched_samples_total counter",
                "rlsched_samples_total %d" % self.samples,
                "# HELP rlsched_last_sample_timestamp_seconds Unix time of the last sample: the counters above hold "
                "the energy up to this instant (divide counter differences by differences of this, not of scrape "
                "times).",
                "# TYPE rlsched_last_sample_timestamp_seconds gauge",
                "rlsched_last_sample_timestamp_seconds %s" % fmt(self.last_sample_unix_s),
                "# HELP rlsched_power_estimated 1 when watts are estimated from CPU utilization, not RAPL.",
                "# TYPE rlsched_power_estimated gauge",
                "rlsched_power_estimated %d" % int(self.estimated),
            ]
        return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def write_textfile(path: str, text: str) -> None:
    """node-exporter textfile collector: write to a fresh temp file in the same folder (created securely,
    not a predictable name), readable as the umask allows, then rename over `path`."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise MonitorError("%s: cannot write the textfile: %s" % (path, exc.strerror)) from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o644 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise MonitorError("%s: cannot write the textfile: %s" % (path, exc.strerror)) from None


class _MetricsHandler(http.server.BaseHTTPRequestHandler):
    state = MetricsState()  # replaced per server by serve_metrics
    server_version = "rlsched-power/" + __version__
    timeout = 5  # s: a client idle this long is dropped (and its thread freed)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path.split("?", 1)[0] not in ("/metrics", "/"):
            self.send_error(404, "try /metrics")
            return
        body = self.state.render().encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        self.send_error(405, "read-only")

    do_PUT = do_DELETE = do_POST

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (quiet: no line per scrape)
        pass


class _Server6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


def serve_metrics(listen: str, state: MetricsState) -> http.server.HTTPServer:
    host, _, port = listen.rpartition(":")
    try:
        port_n = int(port)
        if not 0 <= port_n <= 65535:
            raise ValueError
    except ValueError:
        raise MonitorError("--listen %s: expected HOST:PORT with a port from 0 to 65535" % listen) from None
    handler = type("Handler", (_MetricsHandler,), {"state": state})
    address = host.strip("[]") or "0.0.0.0"  # noqa: S104 - ":PORT" without a host means every interface, as asked
    server_class = _Server6 if ":" in address else http.server.ThreadingHTTPServer  # [::1]:9877
    try:
        server = server_class((address, port_n), handler)
    except (OSError, OverflowError) as exc:
        raise MonitorError("--listen %s: cannot listen: %s" % (listen, getattr(exc, "strerror", None) or exc)) \
            from None
    server.daemon_threads = True
    server.timeout = 5  # a stalled client cannot hold a handler thread forever
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# --------------------------------------------------------------------------------------------- run
class _Snapshot:
    """What one tick reads: monotonic time (s), raw energy counters (None: the read failed), VM CPU seconds
    by pid, and the host's (busy, total) CPU seconds (None: unreadable)."""

    __slots__ = ("t", "wall", "reading", "procs", "host")

    def __init__(self, t: float, reading: Optional[List[int]], procs: Dict[int, Tuple[str, float]],
                 host: Optional[Tuple[float, float]]):
        self.t, self.reading, self.procs, self.host = t, reading, procs, host
        self.wall = time.time()


class Monitor:
    """Samples every `interval_s`: package joules, each VM's CPU seconds, attribution, exports."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.procs = ProcStat(args.proc_root, args.match)
        self.ncpus = os.cpu_count() or 1
        self.estimated = False
        self.source = None  # type: Optional[object]
        if args.source == "perf":
            self.source = PerfEnergy(args.interval, perf=args.perf)
        else:
            try:
                self.source = RaplSysfs(args.rapl_root)
            except MonitorError:
                if args.estimate_tdp is None:
                    raise
                self.estimated = True
        if self.estimated:
            self.counter = None
        else:
            self.counter = EnergyCounter(self.source.max_range_uj, args.max_watts)  # type: ignore[union-attr]
        self.state = MetricsState()
        self.state.estimated = self.estimated
        # the server first: a --listen that fails must not leave a new, header-only CSV behind
        self.server = serve_metrics(args.listen, self.state) if args.listen else None
        try:
            self.csv = CsvSink(args.csv) if args.csv else None
        except MonitorError:
            if self.server:
                self.server.shutdown()
                self.server.server_close()
            raise
        self.stop = threading.Event()
        self._stuck_warned = False
        self.summary = {}  # type: Dict[str, List[float]]
        self.host_summary = [0, 0.0, 0.0]
        self.started = time.time()

    def run(self) -> None:
        """Sample until stopped or `--duration` has passed (checked on every tick, whatever the readings).

        Each row covers the time since the last *good* snapshot: energy, every VM's CPU seconds and the host's
        CPU time are read together, and a failed or dropped reading leaves the previous snapshot in place, so
        the next row's joules, CPU seconds and interval span the same time.
        """
        a = self.args
        deadline = time.monotonic() + a.duration if a.duration else None
        first = self._snapshot()
        base = first if self.estimated or first.reading is not None else None  # else: the next good reading
        if base is not None and base.reading is not None:
            self.counter.reset(base.reading)  # type: ignore[union-attr]
        next_tick = time.monotonic() + a.interval
        while not self.stop.is_set():
            wait = next_tick - time.monotonic()
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
            if wait > 0 and self.stop.wait(wait):
                break
            now = time.monotonic()
            next_tick += a.interval
            if next_tick < now:  # fell behind (suspend, overload): do not burst to catch up
                next_tick = now + a.interval
            snap = self._snapshot()
            if base is None or (not self.estimated and snap.reading is None):
                if snap.reading is not None:
                    self.counter.reset(snap.reading)  # type: ignore[union-attr]
                    base = snap
            else:
                # after a row, and after a dropped or stuck reading too (the counter now holds snap's reading,
                # the old baseline can no longer be trusted), snap is the next baseline
                self._sample(base, snap)
                base = snap
            self._publish_counts()
            if deadline is not None and now >= deadline:
                break

    def _snapshot(self) -> "_Snapshot":
        """Energy (raw counters), every VM's CPU seconds and the host's CPU time, read together."""
        t = time.monotonic()
        reading = None
        if not self.estimated:
            try:
                reading = self.source.read()  # type: ignore[union-attr]
            except MonitorError:
                self.counter.dropped += 1  # type: ignore[union-attr]
        procs = {}  # type: Dict[int, Tuple[str, float]]
        for pid, name in self.procs.vms().items():
            s = self.procs.cpu_seconds(pid)
            if s is not None:
                procs[pid] = (name, s)
        try:
            host = self.procs.host_busy()  # type: Optional[Tuple[float, float]]
        except (OSError, ValueError, IndexError):
            host = None
        return _Snapshot(t, reading, procs, host)

    def _sample(self, base: "_Snapshot", snap: "_Snapshot") -> None:
        """One row from two snapshots (none when the energy reading is dropped or stuck)."""
        a = self.args
        interval = snap.t - base.t
        if self.estimated:
            if base.host is None or snap.host is None:
                raise MonitorError("%s/stat: unreadable: --estimate-tdp needs the host's CPU time" % a.proc_root)
            d_busy, d_total = snap.host[0] - base.host[0], snap.host[1] - base.host[1]
            joules = a.estimate_tdp * (d_busy / d_total if d_total > 0 else 0.0) * interval
        else:
            # the counter's previous reading is base's: delta_joules compares against it
            joules = self.counter.delta_joules(snap.reading, interval)  # type: ignore[union-attr,arg-type]
            if joules is None:  # dropped or stuck: measure again from this reading
                self._warn_stuck()
                return
        cpu_s = {}  # type: Dict[str, float]
        pids = {}  # type: Dict[str, int]
        for pid, (name, s) in snap.procs.items():
            if pid in base.procs:  # a VM seen for the first time has no delta yet; exited VMs drop out
                cpu_s[name] = cpu_s.get(name, 0.0) + max(0.0, s - base.procs[pid][1])
                pids[name] = pid
        if base.host is not None and snap.host is not None and snap.host[1] > base.host[1]:
            capacity = snap.host[1] - base.host[1]
        else:
            capacity = interval * self.ncpus
        self._record(interval, joules, cpu_s, pids, capacity, snap.wall)

    def _warn_stuck(self) -> None:
        stuck = self.counter.stuck if self.counter else 0
        if stuck and not self._stuck_warned:
            sys.stderr.write("kvm_power_monitor: warning: the energy counter did not advance over a sample; such "
                             "samples are dropped and counted (rlsched_stuck_samples_total)\n")
            self._stuck_warned = True

    def _publish_counts(self) -> None:
        if self.counter is not None:
            self.state.dropped = self.counter.dropped
            self.state.stuck = self.counter.stuck

    def _record(self, interval: float, joules: float, cpu_s: Dict[str, float], pids: Dict[str, int],
                capacity_s: float, at_unix_s: float) -> None:
        host_watts = joules / interval
        watts = attribute(host_watts, capacity_s, cpu_s)
        self.state.update(host_watts, joules, watts, cpu_s, interval, at_unix_s)
        ts = iso_utc(at_unix_s)
        est = "1" if self.estimated else "0"
        self.host_summary[0] += 1
        self.host_summary[1] += host_watts
        self.host_summary[2] += joules
        for vm in sorted(watts, key=lambda v: (v == UNATTRIBUTED, v)):
            w = watts[vm]
            s = cpu_s.get(vm, 0.0)
            share = s / max(capacity_s, s, 1e-12)
            acc = self.summary.setdefault(vm, [0, 0.0, 0.0])
            acc[0] += 1
            acc[1] += w
            acc[2] += w * interval
            if self.csv:
                self.csv.write([ts, fmt(interval), fmt(joules), fmt(host_watts), vm,
                                str(pids.get(vm, "")), fmt(s), fmt(share), fmt(w), fmt(w * interval), est])
        if self.args.textfile:
            write_textfile(self.args.textfile, self.state.render())

    def close(self) -> None:
        if self.csv:
            self.csv.close()
        if self.server:
            self.server.shutdown()
            self.server.server_close()
        if isinstance(self.source, PerfEnergy):
            self.source.close()

    def summary_text(self) -> str:
        out = io.StringIO()
        n, sw, j = self.host_summary
        kind = "estimated" if self.estimated else "RAPL"
        out.write("%d samples over %.1f s (%s), dropped %d, stuck %d\n"
                  % (n, time.time() - self.started, kind, self.state.dropped, self.state.stuck))
        out.write("%-24s %8s %10s %12s\n" % ("vm", "samples", "mean W", "energy J"))
        out.write("%-24s %8d %10.2f %12.1f\n" % ("host", n, sw / n if n else 0.0, j))
        for vm in sorted(self.summary, key=lambda v: (v == UNATTRIBUTED, v)):
            c, w, e = self.summary[vm]
            out.write("%-24s %8d %10.2f %12.1f\n" % (vm, c, w / c if c else 0.0, e))
        return out.getvalue()


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="kvm_power_monitor.py",
        description="Attribute RAPL package energy to qemu VMs by CPU time; write CSV and Prometheus metrics. "
                    "Every option can also be set by the environment variable shown.",
        epilog="example: sudo python3 kvm_power_monitor.py --interval 1 --csv power.csv --listen 127.0.0.1:9877",
    )
    p.add_argument("--rapl-root", default=env("RLSCHED_RAPL_ROOT", "/sys/class/powercap"),
                   help="powercap sysfs root [RLSCHED_RAPL_ROOT] (default: %(default)s)")
    p.add_argument("--source", choices=["sysfs", "perf"], default=env("RLSCHED_POWER_SOURCE", "sysfs"),
                   help="where package energy comes from [RLSCHED_POWER_SOURCE] (default: %(default)s)")
    p.add_argument("--perf", default=env("RLSCHED_PERF", "perf"), help="perf executable [RLSCHED_PERF]")
    # string defaults from the environment go through `type` like the command line: a bad variable is one line
    p.add_argument("--interval", type=_positive, default=env("RLSCHED_POWER_INTERVAL", "1.0"),
                   help="seconds between samples [RLSCHED_POWER_INTERVAL] (default: %(default)s)")
    p.add_argument("--duration", type=_positive, default=env("RLSCHED_POWER_DURATION") or None,
                   help="stop after this many seconds (default: until SIGINT/SIGTERM) [RLSCHED_POWER_DURATION]")
    p.add_argument("--match", type=_regex, default=env("RLSCHED_POWER_MATCH", DEFAULT_MATCH),
                   help="regex on the program name of VM processes [RLSCHED_POWER_MATCH] (default: %(default)s)")
    p.add_argument("--csv", default=env("RLSCHED_POWER_CSV"), help="append samples to this CSV [RLSCHED_POWER_CSV]")
    p.add_argument("--listen", default=env("RLSCHED_POWER_LISTEN"),
                   help="serve Prometheus metrics on HOST:PORT at /metrics [RLSCHED_POWER_LISTEN]")
    p.add_argument("--textfile", default=env("RLSCHED_POWER_TEXTFILE"),
                   help="write a node-exporter textfile (atomically) [RLSCHED_POWER_TEXTFILE]")
    p.add_argument("--estimate-tdp", type=_positive, default=env("RLSCHED_ESTIMATE_TDP") or None,
                   metavar="WATTS", help="only when RAPL is unavailable: estimate package watts as WATTS x CPU "
                                         "utilization, and mark rows estimated [RLSCHED_ESTIMATE_TDP]")
    p.add_argument("--max-watts", type=_positive, default=env("RLSCHED_MAX_WATTS", "1000"),
                   help="readings implying more watts than this on one package (socket), wraps included, are "
                        "dropped [RLSCHED_MAX_WATTS] (default: %(default)s)")
    p.add_argument("--proc-root", default=env("RLSCHED_PROC_ROOT", "/proc"), help=argparse.SUPPRESS)
    p.add_argument("--version", action="version", version="%(prog)s " + __version__)
    return p


def _positive(text: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError("expected a number, got %r" % text) from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError("expected a positive number, got %r" % text)
    return value


def _regex(text: str) -> str:
    try:
        re.compile(text)
    except re.error as exc:
        raise argparse.ArgumentTypeError("invalid regular expression %r: %s" % (text, exc)) from None
    return text


_NUMERIC_ENV = {"RLSCHED_POWER_INTERVAL": "--interval", "RLSCHED_POWER_DURATION": "--duration",
                "RLSCHED_ESTIMATE_TDP": "--estimate-tdp", "RLSCHED_MAX_WATTS": "--max-watts"}


def check_environment() -> Optional[str]:
    """The first RLSCHED_* variable with a value its option would refuse, as one line (None: all fine)."""
    for var, option in sorted(_NUMERIC_ENV.items()):
        value = os.environ.get(var)
        if value in (None, ""):
            continue
        try:
            _positive(value)
        except argparse.ArgumentTypeError as exc:
            return "%s=%s (%s): %s" % (var, value[:40], option, exc)
    source = os.environ.get("RLSCHED_POWER_SOURCE")
    if source not in (None, "", "sysfs", "perf"):
        return "RLSCHED_POWER_SOURCE=%s (--source): expected sysfs or perf" % source[:40]
    return None


def main(argv: Optional[List[str]] = None) -> int:
    problem = check_environment()
    if problem:
        print("kvm_power_monitor: error: %s" % problem, file=sys.stderr)
        return 1
    args = build_parser().parse_args(argv)
    try:
        monitor = Monitor(args)
    except MonitorError as exc:
        print("kvm_power_monitor: error: %s" % exc, file=sys.stderr)
        return 1

    def _stop(signum, frame) -> None:
        monitor.stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
    try:
        monitor.run()
    except MonitorError as exc:
        print("kvm_power_monitor: error: %s" % exc, file=sys.stderr)
        return 1
    finally:
        monitor.close()
    sys.stdout.write(monitor.summary_text())
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
