"""Start the bundled simulator in a subprocess on its own CPU, for benchmarks."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def children_cpu_seconds(pid: int) -> float:
    """CPU seconds of the live child processes of `pid` (the gateway's store writer
    process when `[store] writer = "process"`), from /proc."""
    total = 0.0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            total += cpu_seconds(int(d.name))
    return total


@contextlib.contextmanager
def simulator(*extra: str, pin: bool = True) -> Iterator[tuple[subprocess.Popen, int]]:
    """Yields (process, port). With 2+ CPUs the simulator gets the first one and this
    process the second, so the two sides do not share a core."""
    cpus = sorted(os.sched_getaffinity(0))
    cmd = [
        sys.executable, "-m", "simulators.smsc", "--port", "0", "--log-level", "warning",
        "--enquire-link-interval", "0", *extra,
    ]
    if pin and len(cpus) >= 2 and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(cpus[0]), *cmd]
        os.sched_setaffinity(0, {cpus[1]})
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # "smsc-simulator listening on 127.0.0.1:PORT"
        m = re.search(r":(\d+)", line)
        if not m:
            raise RuntimeError(f"simulator did not start: {line!r}")
        yield proc, int(m.group(1))
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if pin:
            os.sched_setaffinity(0, set(cpus))
