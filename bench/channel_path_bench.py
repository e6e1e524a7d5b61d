"""Instructions per message of the channel's dispatch, accept and receipt paths, in one process.

    .venv/bin/python bench/channel_path_bench.py            # callgrind: 2,000 and 6,000 messages
    .venv/bin/python bench/channel_path_bench.py --run N    # the workload alone (timings)

What runs (no sockets, no store, no simulator): N one-segment jobs queued in one channel
are dispatched in bursts of 64 (`Channel._burst`: rate bucket, submit_sm from templates,
a client that takes each PDU without sending it), accepted per read
(`Channel._on_accepted`, 64 per read, hex message ids); then their
receipts, 64 per read, are read by an ESME-role `Session` (`on_deliveries`: each
a `receipt.ReadOutcome`, as `EsmeClient.read_receipts` has them), handed to
`Channel._on_deliver` (receipt_outcome, matching, the journaled store op, the effects
applied in memory) and answered with `Session.send_acks`. The store accepts every call and
does nothing; the receipt journal reserves seqs and is synced at once. Building the jobs
and encoding the receipts (the harness's own work) is in the count too, the same for every
commit compared.

Under callgrind (the default) the workload runs for 2,000 and for 6,000 messages and the
difference of the two totals, over 4,000, is reported: start-up and imports cancel out,
and the count repeats to ~0.05 %, where bench/instructions_bench.py (three processes,
timing-dependent batches) moves by ~1 %. For changes inside the channel, the session or the
receipt parser. Needs valgrind.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from callgrind_total import per_message  # bench/, the script's directory

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

READ = 64  # PDUs per read, as a window of 64 answers


class _Store:
    """Takes every store call (the path's own work is what is counted)."""

    def __getattr__(self, name: str):
        return lambda *a, **kw: None


class _Client:
    """An ESME with a window of READ that takes PDUs without sending them."""

    def __init__(self) -> None:
        self.sent: list = []  # the on_result of each submit, in order

    def free_slots(self) -> int:
        return READ

    def submit_nowait(self, pdu, on_result, timeout=None, now=None) -> bool:
        self.sent.append(on_result)
        return True


class _Journal:
    """Reserves seqs; synced at once."""

    committed_seq = 0

    def __init__(self) -> None:
        self.seq = 0

    def reserve(self, payload: bytes) -> int:
        self.seq += 1
        return self.seq

    async def synced(self, seq: int) -> None:
        return None


async def workload(n: int) -> dict[str, float]:
    from gateway.channels import Channel, Job
    from gateway.config import ChannelConfig
    from gateway.smpp import pdu as P
    from gateway.smpp import session as S
    from gateway.smpp.constants import CommandId, Tag
    from gateway.states import State
    from gateway.store.records import MessageRecord, SegmentRecord

    cfg = ChannelConfig(
        name="c", system_id="s", password="p", message_id_format="hex", receipt_id_format="hex",
        tps=100_000, burst=100_000,
    )
    ch = Channel(cfg, _Store(), clock=time.time)  # type: ignore[arg-type]
    ch.journal = _Journal()  # type: ignore[assignment]
    now = time.time()
    for i in range(n):
        rec = MessageRecord(
            id=f"m{i:012d}", tenant="t", source_addr="Acme", destination=f"49151{i:08d}",
            text="hello", category="otp", priority=0, state=State.QUEUED, channel="c",
            data_coding=0, segment_count=1, created_at=now, updated_at=now, expires_at=now + 3600,
        )
        ch.queue.put(Job(rec, [SegmentRecord(message_id=rec.id, seq=1)]), 0)
    ids = [format(0x1000000 + i, "x") for i in range(n)]
    client = _Client()
    t0 = time.process_time()
    while len(client.sent) < n:
        before = len(client.sent)
        ch._burst(client)  # type: ignore[arg-type]
        if len(client.sent) == before:
            raise SystemExit("the burst sent nothing (rate bucket?)")
    t1 = time.process_time()
    sent = client.sent
    for k in range(0, n, READ):
        ch._on_accepted([(sent[i], ids[i]) for i in range(k, min(n, k + READ))])
    t2 = time.process_time()
    text = (
        "id:{} sub:001 dlvrd:001 submit date:2611262300 done date:2611262300 stat:DELIVRD"
        " err:000 text:hello there"
    )
    reads = [
        b"".join(
            P.DeliverSm(
                sequence_number=i + 1, source_addr=f"49151{i:08d}", destination_addr="Acme",
                esm_class=4, short_message=text.format(ids[i]).encode(),
                tlvs=[P.Tlv(int(Tag.RECEIPTED_MESSAGE_ID), ids[i]), P.Tlv(int(Tag.MESSAGE_STATE), 2)],
            ).encode()
            for i in range(k, min(n, k + READ))
        )
        for k in range(0, n, READ)
    ]
    delivered: list = []
    session = S.Session(S.Role.ESME, on_deliveries=delivered.extend)
    session.state = S.State.BOUND_TRX
    t3 = time.process_time()
    for data in reads:
        session.receive_data(data)
        await ch._on_deliver(delivered)
        session.send_acks(CommandId.DELIVER_SM_RESP, [r[0] for r in delivered])
        session.data_to_send()
        delivered.clear()
    t4 = time.process_time()
    if ch.stats.receipts_matched != n or ch.stats.submitted_messages != n or session.next_events():
        raise SystemExit(f"the workload did not complete: {ch.stats}")
    us = 1e6 / n
    return {"dispatch_us": (t1 - t0) * us, "accept_us": (t2 - t1) * us, "receipt_us": (t4 - t3) * us}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=int, metavar="N", help="run the workload for N messages (no callgrind)")
    a = ap.parse_args()
    if a.run:
        import trio

        r = trio.run(workload, a.run)
        print(
            f"{a.run} messages, CPU per message: dispatch {r['dispatch_us']:.2f} us,"
            f" accept {r['accept_us']:.2f} us, receipt {r['receipt_us']:.2f} us"
        )
        return 0
    n = per_message(__file__, 2000, 6000)
    print(f"channel dispatch + accept + receipt path: {n:,} instructions per message")
    return 0


if __name__ == "__main__":
    sys.exit(main())
