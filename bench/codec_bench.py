"""Codec throughput: our SMPP codec (gateway.smpp.pdu) vs smpplib 2.2.4.

One PDU = one encode + one decode of an already-built PDU object:
    ours:    decode(pdu.encode())
    smpplib: smpplib.smpp.parse_pdu(pdu.generate(), client=...)
Both sides get byte-identical PDUs (checked before measuring), so the comparison is like for
like. Single process, single thread, one run; each measurement repeats its workload until
`--seconds` have elapsed (time.perf_counter) or `--max-pdus` PDUs are done, whichever first.

Workloads: a realistic gateway mix (per message: submit_sm with a 60-160 octet short_message
and one or two TLVs, submit_sm_resp, deliver_sm delivery receipt with receipted_message_id and
message_state TLVs, deliver_sm_resp; plus an enquire_link every 20 messages) and each PDU type
alone.

    python bench/codec_bench.py [--seconds 2] [--type-seconds 1] [--max-pdus N] [--cpu N] [--json]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import random
import string
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import smpplib
import smpplib.smpp

from gateway.smpp.constants import CommandId, Tag
from gateway.smpp.pdu import PDU_CLASSES, Tlv, decode

SubmitSm = PDU_CLASSES[CommandId.SUBMIT_SM]
SubmitSmResp = PDU_CLASSES[CommandId.SUBMIT_SM_RESP]
DeliverSm = PDU_CLASSES[CommandId.DELIVER_SM]
DeliverSmResp = PDU_CLASSES[CommandId.DELIVER_SM_RESP]
EnquireLink = PDU_CLASSES[CommandId.ENQUIRE_LINK]


class _Client:
    """What smpplib's request PDUs ask for a sequence number when parsed without a socket."""

    sequence = 0

    def next_sequence(self) -> int:
        return 0


_CLIENT = _Client()


def _smpplib(name: str, seq: int, **fields: Any) -> Any:
    p = smpplib.smpp.make_pdu(name, client=_CLIENT, **fields)
    p.sequence = seq
    return p


# ---------------------------------------------------------------------------------------
# Workload: pairs (ours, smpplib) describing the same PDU.


def _message_pdus(rng: random.Random, seq: int) -> list[tuple[str, Any, Any]]:
    """The four PDUs one submitted message costs: submit_sm, its resp, the receipt, its resp."""
    text = "".join(
        rng.choices(
            string.ascii_letters + string.digits + " .,!?", k=rng.randint(60, 160)
        )
    ).encode()
    src = rng.choice(["ACME", "Shop24", "4915112345678"])
    dst = "49" + "".join(rng.choices(string.digits, k=10))
    ref = rng.randint(0, 0xFFFF)
    tlv_kw: dict[str, Any] = {"user_message_reference": ref}
    tlvs = [Tlv(Tag.USER_MESSAGE_REFERENCE, ref)]
    if rng.random() < 0.5:
        tlv_kw["source_port"] = 9200
        tlvs.append(Tlv(Tag.SOURCE_PORT, 9200))
    common = {
        "service_type": "",
        # international number (TON 1, NPI 1) or alphanumeric sender (TON 5, NPI 0)
        "source_addr_ton": 1 if src.isdigit() else 5,
        "source_addr_npi": 1 if src.isdigit() else 0,
        "source_addr": src,
        "dest_addr_ton": 1,
        "dest_addr_npi": 1,
        "destination_addr": dst,
        "esm_class": 0,
        "protocol_id": 0,
        "priority_flag": 0,
        "schedule_delivery_time": "",
        "validity_period": "",
        "registered_delivery": 1,
        "replace_if_present_flag": 0,
        "data_coding": 0,
        "sm_default_msg_id": 0,
    }
    # smpplib's SubmitSM params_order puts user_message_reference before source_port, as we do.
    submit = SubmitSm(sequence_number=seq, short_message=text, tlvs=tlvs, **common)
    sl_submit = _smpplib("submit_sm", seq, short_message=text, **common, **tlv_kw)

    msg_id = f"{rng.getrandbits(64):016x}"
    resp = SubmitSmResp(sequence_number=seq, message_id=msg_id)
    sl_resp = _smpplib("submit_sm_resp", seq, message_id=msg_id)

    rseq = seq + 1
    receipt_text = (
        f"id:{msg_id} sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 "
        f"stat:DELIVRD err:000 text:{text[:20].decode()}"
    ).encode()
    rcommon = dict(
        common,
        source_addr=dst,
        destination_addr=src,
        esm_class=0x04,
        registered_delivery=0,
    )
    rcommon.update(
        source_addr_ton=1,
        source_addr_npi=1,
        dest_addr_ton=common["source_addr_ton"],
        dest_addr_npi=common["source_addr_npi"],
    )
    receipt = DeliverSm(
        sequence_number=rseq,
        short_message=receipt_text,
        tlvs=[Tlv(Tag.MESSAGE_STATE, 2), Tlv(Tag.RECEIPTED_MESSAGE_ID, msg_id)],
        **rcommon,
    )
    # smpplib's DeliverSM params_order writes message_state before receipted_message_id.
    sl_receipt = _smpplib(
        "deliver_sm",
        rseq,
        short_message=receipt_text,
        message_state=2,
        receipted_message_id=msg_id,
        **rcommon,
    )
    dresp = DeliverSmResp(sequence_number=rseq, message_id="")
    sl_dresp = _smpplib("deliver_sm_resp", rseq, message_id="")
    return [
        ("submit_sm", submit, sl_submit),
        ("submit_sm_resp", resp, sl_resp),
        ("deliver_sm (receipt)", receipt, sl_receipt),
        ("deliver_sm_resp", dresp, sl_dresp),
    ]


def build_workloads(seed: int = 34) -> dict[str, list[tuple[Any, Any]]]:
    rng = random.Random(seed)
    by_type: dict[str, list[tuple[Any, Any]]] = {}
    mix: list[tuple[Any, Any]] = []
    seq = 1
    for i in range(100):
        for name, ours, theirs in _message_pdus(rng, seq):
            by_type.setdefault(name, []).append((ours, theirs))
            mix.append((ours, theirs))
        seq += 2
        if i % 20 == 19:
            pair = (EnquireLink(sequence_number=seq), _smpplib("enquire_link", seq))
            by_type.setdefault("enquire_link", []).append(pair)
            mix.append(pair)
            seq += 1
    for name, pairs in by_type.items():
        for ours, theirs in pairs:
            a, b = ours.encode(), theirs.generate()
            if a != b:
                raise SystemExit(
                    f"{name}: the two codecs disagree on the bytes; fix the workload\n{a.hex()}\n{b.hex()}"
                )
            if decode(a) != ours:
                raise SystemExit(f"{name}: our round trip failed")
    return {"mix": mix, **by_type}


# ---------------------------------------------------------------------------------------
# Measurement


def _ours_batch(pdus: list[Any]) -> Callable[[], int]:
    n = len(pdus)

    def run() -> int:
        for p in pdus:
            decode(p.encode())
        return n

    return run


def _smpplib_batch(pdus: list[Any]) -> Callable[[], int]:
    n = len(pdus)
    parse = smpplib.smpp.parse_pdu
    client = _CLIENT

    def run() -> int:
        for p in pdus:
            parse(p.generate(), client=client)
        return n

    return run


def measure(
    batch: Callable[[], int], seconds: float, max_pdus: int
) -> dict[str, float]:
    batch()  # warm-up (imports, caches)
    done = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        done += batch()
        t = time.perf_counter()
        if t >= deadline or done >= max_pdus:
            break
    elapsed = t - t0
    return {"pdus": done, "seconds": round(elapsed, 4), "pdus_per_s": done / elapsed}


def _pin(cpu: int | None) -> int | None:
    """Pin the process to one CPU (--cpu); single-threaded either way."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return None
    os.sched_setaffinity(0, {cpu})
    return cpu


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--seconds",
        type=float,
        default=2.0,
        help="time per measurement of the mix (default 2)",
    )
    ap.add_argument(
        "--type-seconds",
        type=float,
        default=1.0,
        help="time per per-type measurement (default 1)",
    )
    ap.add_argument(
        "--max-pdus", type=int, default=5_000_000, help="cap on PDUs per measurement"
    )
    ap.add_argument("--cpu", type=int, default=None, help="pin to this CPU (Linux)")
    ap.add_argument(
        "--json", action="store_true", help="print machine-readable results only"
    )
    args = ap.parse_args(argv)

    cpu = _pin(args.cpu)
    workloads = build_workloads()
    results = []
    for name, pairs in workloads.items():
        secs = args.seconds if name == "mix" else args.type_seconds
        ours = measure(_ours_batch([p[0] for p in pairs]), secs, args.max_pdus)
        theirs = measure(_smpplib_batch([p[1] for p in pairs]), secs, args.max_pdus)
        avg_len = sum(len(p[0].encode()) for p in pairs) / len(pairs)
        results.append(
            {
                "workload": name,
                "distinct_pdus": len(pairs),
                "avg_bytes": round(avg_len, 1),
                "ours_pdus_per_s": round(ours["pdus_per_s"]),
                "smpplib_pdus_per_s": round(theirs["pdus_per_s"]),
                "ratio": round(ours["pdus_per_s"] / theirs["pdus_per_s"], 2),
                "ours": ours,
                "smpplib": theirs,
            }
        )
    meta = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "smpplib": importlib.metadata.version("smpplib"),
        "pinned_cpu": cpu,
        "unit": "PDUs/s, one PDU = one encode + one decode",
    }
    if args.json:
        print(json.dumps({"meta": meta, "results": results}, indent=2))
        return 0
    print(
        f"SMPP codec throughput ({meta['unit']}); Python {meta['python']}, "
        f"{'pinned to CPU ' + str(cpu) if cpu is not None else 'not pinned'}"
    )
    head = f"{'workload':<22} {'avg B':>6} {'ours PDUs/s':>13} {'smpplib PDUs/s':>15} {'ratio':>7}"
    print(head)
    print("-" * len(head))
    for r in results:
        print(
            f"{r['workload']:<22} {r['avg_bytes']:>6} {r['ours_pdus_per_s']:>13,} "
            f"{r['smpplib_pdus_per_s']:>15,} {r['ratio']:>6.1f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
