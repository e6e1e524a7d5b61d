"""Counters of everything the simulator did, as one JSON-able snapshot and a text summary."""

from __future__ import annotations

from collections import Counter
from typing import Any

from gateway.smpp.constants import status_name


class Stats:
    """Plain attribute counters (cheap to bump on the hot path) plus a few Counters."""

    def __init__(self) -> None:
        self.connections = 0
        self.connections_open = 0
        self.binds_ok = 0
        self.binds_failed = 0
        self.unbinds_received = 0
        self.unbinds_sent = 0
        self.submit_sm = 0
        self.submit_multi = 0
        self.data_sm = 0
        self.query_sm = 0
        self.cancel_sm = 0
        self.replace_sm = 0
        self.messages_accepted = 0
        self.receipts_sent = 0  # deliver_sm receipts written (retries and duplicates included)
        self.receipts_acked = 0  # deliver_sm_resp ESME_ROK for a receipt
        self.receipts_retried = 0
        self.receipts_failed = 0  # given up: final error status or retries exhausted
        self.receipts_dropped = 0  # hold queue or timer heap full
        self.receipts_cancelled = 0
        self.mo_injected = 0  # MO texts queued (on demand or by timer)
        self.mo_sent = 0  # MO deliver_sm written (one per segment, retries included)
        self.mo_acked = 0
        self.mo_failed = 0
        self.deliver_sm_timeouts = 0
        self.enquire_links_received = 0
        self.enquire_links_sent = 0
        self.invalid_pdus = 0
        self.unexpected_responses = 0
        self.resps_ok = 0  # ESME_ROK answers (kept apart from `resps`: cheaper on the hot path)
        self.deliver_sm_resp_ok = 0
        self.resps: Counter[int] = (
            Counter()
        )  # submit_sm_resp / submit_multi_resp / data_sm_resp by status
        self.bind_failures: Counter[int] = Counter()
        self.deliver_sm_resp: Counter[int] = Counter()  # statuses received for our deliver_sm
        self.faults: Counter[str] = Counter()  # fault personality -> times fired

    def snapshot(self, **extra: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in vars(self).items():
            if k in ("resps_ok", "deliver_sm_resp_ok"):
                continue
            if isinstance(v, Counter):
                if k == "faults":
                    out[k] = dict(sorted(v.items()))
                else:
                    merged = Counter(v)
                    ok = (
                        self.resps_ok
                        if k == "resps"
                        else self.deliver_sm_resp_ok
                        if k == "deliver_sm_resp"
                        else 0
                    )
                    if ok:
                        merged[0] += ok
                    out[k] = {status_name(s): n for s, n in sorted(merged.items())}
            else:
                out[k] = v
        out.update(extra)
        return out

    def summary(self, **extra: Any) -> str:
        snap = self.snapshot(**extra)
        lines = ["smsc-simulator summary"]
        for k, v in snap.items():
            if isinstance(v, dict):
                if v:
                    inner = ", ".join(f"{a}={b}" for a, b in v.items())
                    lines.append(f"  {k:<24} {inner}")
            elif v:
                lines.append(f"  {k:<24} {v}")
        return "\n".join(lines)
