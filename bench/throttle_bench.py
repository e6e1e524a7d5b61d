"""Achieved rate of TokenBucket.take() on the real clock.

For each target rate and each number of concurrent takers, a fresh bucket (full, depth
max(1, rate/10) as the channel default) is drained by tasks calling `take()` in a loop for
`--duration` seconds. A bucket delivers `depth` tokens at once and then one per 1/rate, so
N takes finishing at time T after the start give

    achieved = (N - depth) / T

which is compared with the target. Also reported: the grant-time jitter (how late each grant
came against its ideal schedule) and the process CPU time divided by the takes (this
includes the event loop's own wake-ups, so it is large at low rates).

    .venv/bin/python bench/throttle_bench.py [--duration 2.5] [--rates 10,100,1000,5000]
                                             [--takers 1,8] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.throttle import TokenBucket


async def run_one(rate: float, takers: int, duration: float) -> dict:
    depth = max(1.0, rate / 10)
    grants: list[float] = []
    start = trio.current_time()
    bucket = TokenBucket(rate, depth, start)
    cpu0 = time.process_time()

    async def taker() -> None:
        while True:
            await bucket.take()
            grants.append(trio.current_time())

    with trio.move_on_at(start + duration):
        async with trio.open_nursery() as nursery:
            for _ in range(takers):
                nursery.start_soon(taker)
    cpu = time.process_time() - cpu0

    n = len(grants)
    elapsed = grants[-1] - start
    achieved = (n - depth) / elapsed
    # lateness of each grant against the ideal schedule: grant i (0-based) is due at
    # start + max(0, i + 1 - depth) / rate
    late = sorted(t - (start + max(0.0, i + 1 - depth) / rate) for i, t in enumerate(grants))
    return {
        "target_tps": rate,
        "takers": takers,
        "depth": depth,
        "takes": n,
        "elapsed_s": round(elapsed, 4),
        "achieved_tps": round(achieved, 3),
        "error_pct": round((achieved - rate) / rate * 100, 3),
        "late_p50_ms": round(late[len(late) // 2] * 1000, 3),
        "late_max_ms": round(late[-1] * 1000, 3),
        "cpu_us_per_take": round(cpu / n * 1e6, 2),
    }


async def main_async(args: argparse.Namespace) -> list[dict]:
    results = []
    for rate in args.rates:
        for takers in args.takers:
            results.append(await run_one(rate, takers, args.duration))
            if not args.json:
                print_row(results[-1])
    return results


HEADER = (
    f"{'target':>8} {'takers':>6} {'depth':>6} {'takes':>6} {'elapsed s':>9} "
    f"{'achieved':>10} {'error %':>8} {'late p50 ms':>11} {'late max ms':>11} {'cpu us/take':>11}"
)


def print_row(r: dict) -> None:
    print(
        f"{r['target_tps']:>8g} {r['takers']:>6} {r['depth']:>6g} {r['takes']:>6} "
        f"{r['elapsed_s']:>9.3f} {r['achieved_tps']:>10.2f} {r['error_pct']:>+8.3f} "
        f"{r['late_p50_ms']:>11.3f} {r['late_max_ms']:>11.3f} {r['cpu_us_per_take']:>11.2f}",
        flush=True,
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=2.5, help="seconds per run (default 2.5)")
    p.add_argument(
        "--rates", type=lambda s: [float(x) for x in s.split(",")], default=[10, 100, 1000, 5000]
    )
    p.add_argument("--takers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8])
    p.add_argument("--tolerance", type=float, default=1.0, help="allowed |error| in %% (default 1)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    args = p.parse_args()
    if not 0 < args.duration <= 3:
        p.error("--duration must be in (0, 3]")

    if not args.json:
        print(HEADER)
    results = trio.run(main_async, args)
    ok = all(abs(r["error_pct"]) <= args.tolerance for r in results)
    if args.json:
        print(
            json.dumps(
                {
                    "python": platform.python_version(),
                    "trio": trio.__version__,
                    "machine": platform.machine(),
                    "duration_s": args.duration,
                    "tolerance_pct": args.tolerance,
                    "ok": ok,
                    "results": results,
                },
                indent=2,
            )
        )
    else:
        print(f"all within ±{args.tolerance:g} %: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
