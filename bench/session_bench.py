"""One bind of the gateway's ESME driver through the simulator, receipts included.

    .venv/bin/python bench/session_bench.py [--count 200000] [--duration 20] [--window 64]

The simulator runs in a subprocess on one CPU, this process (gateway.smpp.esme.EsmeClient,
one transceiver bind) on the other. The client keeps the window full with
`acquire_slot()` + `submit_nowait()`; its deliver handler counts receipts. Reported:
submit_sm round trips per second, from the first submit to the last receipt received and
acknowledged, and the CPU each side spent per message. Bounded by --count and --duration.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.simproc import cpu_seconds, simulator  # noqa: E402
from gateway.smpp import pdu as P  # noqa: E402
from gateway.smpp.constants import CommandStatus  # noqa: E402
from gateway.smpp.esme import EsmeClient, EsmeSettings, Outcome, SubmitResult  # noqa: E402


async def run(port: int, count: int, duration: float, window: int) -> dict:
    receipts = 0
    accepted = 0
    other = 0
    all_done = trio.Event()

    def check_done() -> None:
        if receipts >= accepted and accepted + other >= sent and sending_finished:
            all_done.set()

    async def on_deliver(pdus: list[P.Pdu]) -> list[int]:
        nonlocal receipts
        receipts += len(pdus)
        check_done()
        return [CommandStatus.ESME_ROK] * len(pdus)

    def on_result(result: SubmitResult) -> None:
        nonlocal accepted, other
        if result.outcome is Outcome.ACCEPTED:
            accepted += 1
        else:
            other += 1
        check_done()

    settings = EsmeSettings(
        port=port, system_id="test", password="test", window=window
    )
    client = EsmeClient(settings, on_deliver=on_deliver)
    sent = 0
    sending_finished = False
    pdu_args = dict(
        source_addr="Acme",
        source_addr_ton=5,
        destination_addr="4915112345678",
        dest_addr_ton=1,
        dest_addr_npi=1,
        registered_delivery=1,
        short_message=b"Your verification code is 123456. It expires in 5 minutes.",
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.run)
        await client.wait_bound()
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        deadline = trio.current_time() + duration
        while sent < count and trio.current_time() < deadline:
            if not await client.acquire_slot():
                break
            if client.submit_nowait(P.SubmitSm(**pdu_args), on_result):
                sent += 1
            if sent % 256 == 0:
                await trio.lowlevel.checkpoint()  # let the reader run between bursts
        sending_finished = True
        check_done()
        with trio.move_on_after(30):
            await all_done.wait()
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        await client.close()
        nursery.cancel_scope.cancel()
    return {
        "sent": sent,
        "accepted": accepted,
        "other_outcomes": other,
        "receipts": receipts,
        "elapsed_s": round(elapsed, 3),
        "round_trips_per_s": round(accepted / elapsed, 1),
        "client_cpu_us_per_msg": round(cpu / max(sent, 1) * 1e6, 2),
        "complete": receipts >= accepted == sent,
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--count", type=int, default=200_000)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)  # as the daemon does: fewer young-generation passes
    with simulator() as (proc, port):
        sim0 = cpu_seconds(proc.pid)
        report = trio.run(run, port, a.count, a.duration, a.window)
        sim_cpu = cpu_seconds(proc.pid) - sim0
    report["simulator_cpu_us_per_msg"] = round(sim_cpu / max(report["sent"], 1) * 1e6, 2)
    report["window"] = a.window
    if a.json:
        print(json.dumps(report))
    else:
        print(
            f"{report['sent']} submit_sm, 1 bind, window {a.window}: "
            f"{report['round_trips_per_s']:,.0f} round trips/s with receipts "
            f"({report['receipts']} receipts, {report['elapsed_s']} s); CPU per message: "
            f"client {report['client_cpu_us_per_msg']} us, simulator {report['simulator_cpu_us_per_msg']} us; "
            f"complete={report['complete']}"
        )
    return 0 if report["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
