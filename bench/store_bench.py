"""SqliteStore throughput: group-committed intake + submit update + receipt per message.

Per message, the same writes the pipeline makes (gateway/channels.py):

- intake: `insert_messages` (durable), by C concurrent callers, each call carrying K
  messages (K=1: one API request per message; K=100: batch requests);
- submit update (on submit_sm_resp): `update_segment_nowait` + `set_state_nowait(SUBMITTED)`;
- receipt (on deliver_sm): `record_receipt` (durable, by C concurrent deliver workers), then
  `update_segment_nowait` + `set_state_nowait(DELIVERED)`.

Messages are inserted in state SUBMITTING (as if routed and dispatched) so that exactly those
writes are measured. Each scenario runs on a fresh database file, bounded by --messages and
--seconds (intake stops at whichever comes first; the run ends when every receipt is in and
the queue is flushed, or at 3 x --seconds + 5 s: then the row is marked `cut` and counts
only the messages delivered by then). Scenarios: synchronous FULL vs NORMAL x K in (1, 100);
options add batch_wait_ms=0 (--compare-wait), a trio thread kept busy with Python work in
1 ms slices (--busy), bulk_writes=False (--compare-rows), --switch-interval.

    .venv/bin/python bench/store_bench.py [--messages 20000] [--seconds 5] [--repeat 3]

Columns: msg/s (delivered messages / wall time), CPU us/msg (process CPU incl. the writer's
thread; +proc: the writer process with --store-writer process), writer us/msg (wall time in
the writer's thread hops or pipe exchanges) and its CPU part, commits
(write transactions), rows/commit, intake p50/p99 (latency of one insert call, ms).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.simproc import children_cpu_seconds  # noqa: E402
from gateway.config import StoreConfig
from gateway.states import State
from gateway.store.records import (
    MessageRecord,
    SegmentReceipt,
    SegmentRecord,
    SegmentState,
    StateMove,
)
from gateway.store.sqlite import SqliteStore


def _quiet_logs() -> None:
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def make(i: int, now: float) -> tuple[MessageRecord, list[SegmentRecord]]:
    mid = f"m{i:09d}"
    rec = MessageRecord(
        id=mid,
        tenant=f"t{i % 7}",
        client_ref=f"ref-{i}",
        source_addr="Acme",
        destination=f"4915{i:09d}",
        text="Your code is 123456. It expires in 10 minutes.",
        category="otp",
        priority=0,
        state=State.SUBMITTING,
        channel="ch1",
        data_coding=0,
        segment_count=1,
        attempts=1,
        created_at=now,
        updated_at=now,
        expires_at=now + 86_400,
    )
    return rec, [SegmentRecord(message_id=mid, seq=1)]


async def scenario(
    path: str,
    *,
    synchronous: str,
    per_call: int,
    callers: int,
    max_messages: int,
    seconds: float,
    batch_wait_ms: float,
    batch_max: int,
    busy: bool = False,
    bulk: bool = True,
    writer: str = "thread",
) -> dict:
    store = SqliteStore(
        StoreConfig(path=path, batch_wait_ms=batch_wait_ms, batch_max=batch_max, writer=writer),
        synchronous=synchronous,
        bulk_writes=bulk,
    )
    ids = itertools.count()
    latencies: list[float] = []
    send, recv = trio.open_memory_channel[tuple[MessageRecord, SegmentRecord]](max_messages + 1)
    counted = 0
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        cpu0, t0 = time.process_time(), time.perf_counter()
        child0 = children_cpu_seconds(os.getpid())  # the writer process, if any
        stop_at = trio.current_time() + seconds

        async def intake(send) -> None:
            nonlocal counted
            async with send:
                while trio.current_time() < stop_at:
                    first = next(ids)
                    if first * per_call >= max_messages:
                        return
                    now = time.time()
                    batch = [make(first * per_call + j, now) for j in range(per_call)]
                    t = time.perf_counter()
                    results = await store.insert_messages(batch)
                    latencies.append(time.perf_counter() - t)
                    counted += len(results)
                    for r, (_, segs) in zip(results, batch):
                        seg = segs[0]  # submit_sm_resp: accepted
                        seg.state = SegmentState.SUBMITTED
                        seg.channel = "ch1"
                        seg.smsc_message_id = seg.id_key = r.record.id[1:]
                        seg.submit_status = 0
                        seg.submitted_at = now
                        store.update_segment_nowait(seg)
                        store.set_state_nowait(r.record.id, State.SUBMITTED, now=now)
                        send.send_nowait((r.record, seg))

        async def deliver(recv) -> None:
            async with recv:
                async for rec, seg in recv:
                    now = time.time()
                    # as the gateway stores a matched receipt (store v7): its text in its
                    # segment's row, with the state, and the message's move, one op
                    raw = (
                        f"id:{seg.smsc_message_id} sub:001 dlvrd:001 submit date:2401011200"
                        " done date:2401011201 stat:DELIVRD err:000 text:Your code is"
                    )
                    await store.record_receipts(
                        [],
                        segments=[SegmentReceipt(rec.id, seg.seq, SegmentState.DELIVERED, None, now, raw)],
                        moves=[StateMove(rec.id, State.DELIVERED, now)],
                    )

        async def burn() -> None:
            # Stands in for the rest of the gateway (SMPP codec, HTTP): Python work on the
            # trio thread in 1 ms slices, yielding in between, as a busy event loop does.
            while True:
                end = time.perf_counter() + 0.001
                while time.perf_counter() < end:
                    pass
                await trio.lowlevel.checkpoint()

        if busy:
            nursery.start_soon(burn)
        with trio.move_on_after(seconds * 3 + 5) as hard:
            async with trio.open_nursery() as work:
                async with send, recv:  # the clones keep the channel open
                    for _ in range(callers):
                        work.start_soon(intake, send.clone())
                        work.start_soon(deliver, recv.clone())
            await store.flush()
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        child = children_cpu_seconds(os.getpid()) - child0
        nursery.cancel_scope.cancel()
    # the store closed cleanly (flushed): count what is delivered
    with sqlite3.connect(path) as conn:
        delivered = conn.execute(
            "SELECT count(*) FROM messages WHERE state = 'delivered'"
        ).fetchone()[0]
    stats = store.stats
    if not hard.cancelled_caught:
        assert delivered == counted, (delivered, counted)
    assert stats.transitions_refused == 0 and stats.segments_missing == 0, stats
    lat = sorted(latencies) or [float("nan")]
    return {
        "sync": synchronous,
        "busy": busy,
        "write": "bulk" if bulk else "rows",
        "per_call": per_call,
        "wait_ms": batch_wait_ms,
        "cut": hard.cancelled_caught,
        "messages": delivered,
        "seconds": wall,
        "msg_s": delivered / wall,
        "cpu_us": cpu / max(1, delivered) * 1e6,  # this process (trio thread + writer thread)
        "child_cpu_us": child / max(1, delivered) * 1e6,  # the writer process
        "commits": stats.batches,
        "writer_us": stats.commit_seconds / max(1, delivered) * 1e6,
        "writer_cpu_us": stats.commit_cpu_seconds / max(1, delivered) * 1e6,
        "rows_per_commit": stats.rows / max(1, stats.batches),
        "p50_ms": statistics.median(lat) * 1e3,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--messages", type=int, default=20_000, help="cap per scenario")
    ap.add_argument("--seconds", type=float, default=5.0, help="intake time cap per scenario")
    ap.add_argument("--callers", type=int, default=50)
    ap.add_argument("--batch-wait-ms", type=float, default=StoreConfig().batch_wait_ms)
    ap.add_argument("--batch-max", type=int, default=StoreConfig().batch_max)
    ap.add_argument("--compare-wait", action="store_true", help="also run with batch_wait_ms=0")
    ap.add_argument(
        "--busy", action="store_true", help="also run with the trio thread kept busy (1 ms slices)"
    )
    ap.add_argument(
        "--compare-rows",
        action="store_true",
        help="also run with bulk_writes=False (executemany, row by row)",
    )
    ap.add_argument(
        "--switch-interval",
        type=float,
        default=None,
        help="sys.setswitchinterval() for the run (seconds; CPython's default is 0.005)",
    )
    ap.add_argument("--store-writer", choices=["thread", "process"], default="thread")
    ap.add_argument("--repeat", type=int, default=1, help="run every scenario N times")
    ap.add_argument("--dir", default=None, help="where the database files go (default: a temp dir)")
    args = ap.parse_args()
    _quiet_logs()
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)

    both = [(s, k) for s in ("FULL", "NORMAL") for k in (1, 100)]
    runs = [(s, k, args.batch_wait_ms, False, True) for s, k in both]
    if args.compare_wait:
        runs += [(s, 1, 0.0, False, True) for s in ("FULL", "NORMAL")]
    if args.busy:
        runs += [(s, k, args.batch_wait_ms, True, True) for s, k in both]
    if args.compare_rows:
        runs += [(s, k, w, busy, False) for s, k, w, busy, _ in runs]
    runs = [r for r in runs for _ in range(args.repeat)]
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="store_bench.") as d:
        for n, (sync, k, wait, busy, bulk) in enumerate(runs):
            path = os.path.join(d, f"bench{n}.db")
            run = functools.partial(
                scenario,
                path,
                synchronous=sync,
                per_call=k,
                callers=args.callers,
                max_messages=args.messages,
                seconds=args.seconds,
                batch_wait_ms=wait,
                batch_max=args.batch_max,
                busy=busy,
                bulk=bulk,
                writer=args.store_writer,
            )
            rows.append(trio.run(run))
            r = rows[-1]
            what = f"{sync:<6} K={k:<3} wait={wait}ms busy={busy} {r['write']}"
            print(f"  done: {what}: {r['msg_s']:,.0f} msg/s", file=sys.stderr)

    print(
        f"\nswitch interval {sys.getswitchinterval() * 1e3:g} ms;"
        f" writer {args.store_writer};"
        f" SqliteStore: {args.callers} intake callers + {args.callers} receipt workers;"
        " per message: insert + submit update + durable receipt with its segment and move (one op)"
    )
    head = (
        f"{'synchronous':<11} {'write':<5} {'trio':<4} {'msgs/call':>9} {'wait ms':>7}"
        f" {'messages':>8} {'s':>6} {'msg/s':>8} {'CPU us/msg':>10} {'+proc':>6} {'writer us/msg':>13}"
        f" {'(CPU)':>6} {'commits':>7} {'rows/commit':>11} {'p50 ms':>7} {'p99 ms':>7}"
    )
    print(head)
    print("-" * len(head))
    footnote = "* cut at the hard time limit: delivered messages only"
    for r in rows:
        messages = f"{r['messages']}{'*' if r['cut'] else ''}"
        trio_load = "busy" if r["busy"] else "idle"
        print(
            f"{r['sync']:<11} {r['write']:<5} {trio_load:<4} {r['per_call']:>9}"
            f" {r['wait_ms']:>7g} {messages:>8} {r['seconds']:>6.2f} {r['msg_s']:>8,.0f}"
            f" {r['cpu_us']:>10.1f} {r['child_cpu_us']:>6.1f} {r['writer_us']:>13.1f} {r['writer_cpu_us']:>6.1f}"
            f" {r['commits']:>7} {r['rows_per_commit']:>11.1f}"
            f" {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f}"
        )
    if any(r["cut"] for r in rows):
        print(footnote)


if __name__ == "__main__":
    main()
