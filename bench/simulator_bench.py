"""Simulator throughput: submit_sm/s with immediate receipts, simulator on its own core.

    .venv/bin/python bench/simulator_bench.py [--count 200000] [--duration 20] [--binds 8]
        [--window 64] [--repeat 3] [--profile]

Starts `smsc-simulator` in a subprocess pinned to one CPU (taskset when there are >= 2
CPUs), runs the load generator (simulators/loadgen.py) in this process pinned to another CPU,
and reports:

- msg/s: submit_sm answered per wall-clock second, every message with its receipt received
  and acknowledged (the end-to-end figure, bounded by whichever side is slower);
- simulator CPU: the simulator process's user+system CPU seconds during the run (from
  /proc/<pid>/stat), and msg per simulator CPU-second = what one core of the simulator alone
  sustains (the figure the >= 60k/s target is about).

`--profile` runs py-spy on the simulator for the duration and writes
bench/simulator-profile.txt (raw: one stack per line with its sample count).
Bounded: --count messages or --duration seconds, whichever comes first.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.simproc import cpu_seconds, simulator
from simulators.loadgen import run_load


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--count", type=int, default=200_000)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--binds", type=int, default=8)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--profile", action="store_true")
    p.add_argument(
        "--repeat", type=int, default=3, help="runs (a fresh simulator each); best is reported"
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    reports = [run_once(args) for _ in range(args.repeat)]
    best = max(reports, key=lambda r: r["msg_per_simulator_cpu_s"])
    if args.repeat > 1:
        per_cpu = sorted(r["msg_per_simulator_cpu_s"] for r in reports)
        rates = sorted(r["msg_per_s"] for r in reports)
        best = dict(
            best, runs=args.repeat, msg_per_simulator_cpu_s_all=per_cpu, msg_per_s_all=rates
        )
    if args.json:
        print(json.dumps(best))
    else:
        if args.repeat > 1:
            print(
                f"{args.repeat} runs: msg per simulator CPU-second {best['msg_per_simulator_cpu_s_all']}, "
                f"end-to-end msg/s {best['msg_per_s_all']}"
            )
        print(
            f"best: {best['messages']} msgs, {best['msg_per_s']:,.0f} msg/s end-to-end, simulator "
            f"{best['simulator_cpu_util']:.0%} busy, {best['msg_per_simulator_cpu_s']:,.0f} msg per "
            f"simulator CPU-second ({best['us_per_msg_simulator']} us/msg, receipts included)"
        )
    return 0 if all(r["complete"] for r in reports) else 1


def run_once(args: argparse.Namespace) -> dict:
    with simulator() as (proc, port):
        spy = None
        if args.profile:
            spy = subprocess.Popen(
                [
                    shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy")),
                    "record", "-p", str(proc.pid), "-f", "raw", "-r", "500", "--nonblocking",
                    "-o", str(ROOT / "bench" / "simulator-profile.txt"),
                ]
            )
            time.sleep(1.0)
        cpu0 = cpu_seconds(proc.pid)
        result = trio.run(
            lambda: run_load(
                "127.0.0.1",
                port,
                "test",
                "test",
                binds=args.binds,
                window=args.window,
                count=args.count,
                duration=args.duration,
            )
        )
        cpu1 = cpu_seconds(proc.pid)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=30)
    sim_cpu = cpu1 - cpu0
    per_cpu = result.accepted / sim_cpu if sim_cpu > 0 else float("nan")
    report = {
        "messages": result.submitted,
        "receipts": result.receipts,
        "complete": result.complete,
        "elapsed_s": result.elapsed_s,
        "msg_per_s": result.submit_rate,
        "simulator_cpu_s": round(sim_cpu, 3),
        "simulator_cpu_util": round(sim_cpu / result.elapsed_s, 3),
        "msg_per_simulator_cpu_s": round(per_cpu, 1),
        "us_per_msg_simulator": round(1e6 / per_cpu, 2) if sim_cpu > 0 else None,
        "latency_ms": result.latency_ms,
        "binds": args.binds,
        "window": args.window,
    }
    if not args.json:
        print(result.line())
        print(
            f"  simulator CPU {sim_cpu:.2f}s ({report['simulator_cpu_util']:.0%} of one core): "
            f"{per_cpu:,.0f} msg per simulator CPU-second "
            f"({report['us_per_msg_simulator']} us/msg, receipts included)",
            flush=True,
        )
    return report


if __name__ == "__main__":
    sys.exit(main())
