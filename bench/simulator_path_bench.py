"""Instructions per message of the simulator's submit and receipt paths, in one process.

    .venv/bin/python bench/simulator_path_bench.py            # callgrind: 2,000 and 6,000 messages
    .venv/bin/python bench/simulator_path_bench.py --run N    # the workload alone (timings)
    .venv/bin/python bench/simulator_path_bench.py --tree DIR # another checkout's simulator

What runs (no sockets, no gateway): a default `SmscServer` (account test/test, immediate
DELIVRD receipts, hex ids) and two `Connection`s on it, each bound as a transceiver. The
reads are handed to `Connection.received` as the reader task would hand them, and what the
connections queue is taken with `Session.data_to_send` as their writes would: per round, a
batch of READ submit_sm, as the gateway encodes them (its submit_sm template: sender
"Gateway", 49151... destinations, "Your code is 123456", relative validity,
registered_delivery 1), goes to one connection, alternating; the receipts that come out
(routed per burst, so to one bind) are answered with deliver_sm_resp ESME_ROK in a read of
their own before that bind's next batch, as the gateway's `send_acks` writes them. Building
the submit_sm bytes and the answers (the harness's own work: a header pack per PDU) is in
the count too, the same for every commit compared.

Under callgrind (the default) the workload runs for 2,000 and for 6,000 messages and the
difference of the two totals, over 4,000, is reported: start-up and imports cancel out and
the count repeats closely, where bench/instructions_bench.py (three processes,
timing-dependent batches) moves by ~1 %. For changes inside the simulator's connection,
handlers and receipts (and the session and codec under them). Needs valgrind.
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from pathlib import Path

from callgrind_total import per_message  # bench/, the script's directory

ROOT = Path(__file__).resolve().parent.parent

READ = 32  # submit_sm per read
_HEADER = struct.Struct(">IIII")


class _Stream:
    """Never used: the harness hands reads to Connection.received itself."""


async def workload(n: int) -> dict[str, float]:
    import trio

    from gateway import logs
    from gateway.config import ChannelConfig
    from gateway.smpp import pdu as P
    from gateway.smpp.constants import CommandId
    from gateway.submission import _build
    from simulators.smsc.config import Config
    from simulators.smsc.connection import Connection
    from simulators.smsc.server import SmscServer

    logs.configure("json", "warning")
    server = SmscServer(Config())
    conns = [Connection(server, _Stream()) for _ in range(2)]  # type: ignore[arg-type]
    now = trio.current_time()
    for conn in conns:
        bind = P.BindTransceiver(
            sequence_number=1, system_id="test", password="test", interface_version=0x34
        )
        conn.received(bind.encode(), now)
        _, cid, status, _ = _HEADER.unpack_from(conn.session.data_to_send())
        if cid != CommandId.BIND_TRANSCEIVER_RESP or status or not conn.session.bound:
            raise SystemExit("bind failed")

    cfg = ChannelConfig(name="c", system_id="test", password="test")
    (template,) = _build("Your code is 123456", "Gateway", "", "000000005959000R", cfg, 0)
    body = template.encode()[16:]
    at = 1 + 2 + len("Gateway") + 1 + 2
    head, tail = body[:at], body[at:]
    submit = int(CommandId.SUBMIT_SM)
    reads = []
    seqs = [1, 1]
    for k in range(0, n, READ):
        c = (k // READ) % 2
        parts = []
        for i in range(k, min(n, k + READ)):
            dest = b"49151%08d" % i
            seqs[c] += 1
            parts.append(
                _HEADER.pack(16 + len(head) + len(dest) + len(tail), submit, 0, seqs[c])
                + head + dest + tail
            )
        reads.append((c, b"".join(parts)))

    deliver_sm = int(CommandId.DELIVER_SM)
    submit_sm_resp = int(CommandId.SUBMIT_SM_RESP)
    deliver_sm_resp = int(CommandId.DELIVER_SM_RESP)
    pack = _HEADER.pack
    unpack = _HEADER.unpack_from
    acks: list[list[int]] = [[], []]
    resps = receipts = 0
    t0 = time.process_time()
    for r, (c, data) in enumerate(reads):
        conn = conns[c]
        t = now + r * 0.001
        if acks[c]:
            conn.received(b"".join([pack(17, deliver_sm_resp, 0, s) + b"\0" for s in acks[c]]), t)
            acks[c] = []
        conn.received(data, t)
        for j in (0, 1):
            out = conns[j].session.data_to_send()
            pos, end = 0, len(out)
            while pos < end:
                length, cid, status, seq = unpack(out, pos)
                if cid == deliver_sm:
                    acks[j].append(seq)
                    receipts += 1
                elif cid == submit_sm_resp and status == 0:
                    resps += 1
                pos += length
    for j in (0, 1):
        if acks[j]:
            conns[j].received(b"".join([pack(17, deliver_sm_resp, 0, s) + b"\0" for s in acks[j]]), now + 1)
            conns[j].session.data_to_send()
    t1 = time.process_time()
    st = server.stats
    if not (resps == receipts == st.receipts_acked == n):
        raise SystemExit(f"the workload did not complete: {resps} resps, {receipts} receipts, {st.receipts_acked} acked")
    return {"us": (t1 - t0) * 1e6 / n}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=int, metavar="N", help="run the workload for N messages (no callgrind)")
    ap.add_argument("--tree", type=Path, default=ROOT, help="checkout whose code runs")
    ap.add_argument("--keep", type=Path, help="copy the callgrind files here (for callgrind_annotate)")
    a = ap.parse_args()
    sys.path.insert(0, str(a.tree.resolve()))
    if a.run:
        import trio

        from gateway import gctune

        gctune.tune()  # as the simulator's command line does
        r = trio.run(workload, a.run)
        print(f"{a.run} messages, simulator CPU per message: {r['us']:.2f} us (harness included)")
        return 0
    n = per_message(__file__, 2000, 6000, "--tree", str(a.tree.resolve()), keep=a.keep)
    print(f"simulator submit + receipt path: {n:,} instructions per message")
    return 0


if __name__ == "__main__":
    sys.exit(main())
