"""Fault personalities: how a misbehaving SMSC treats submit_sm (one `FaultState` per account).

Decisions are made in a fixed order for every submit_sm (documented in docs/simulator.md):

1. `max_tps`: more than N accepted submits in the current one-second window (trio clock,
   per account) -> submit_sm_resp ESME_RTHROTTLED;
2. `never_answer` (probability): no response at all; the message is not accepted;
3. `generic_nack` (probability): generic_nack with `generic_nack_status` (default
   ESME_RTHROTTLED, a "retry later" answer; ESME_RSYSERR and ESME_RMSGQFUL selectable);
4. `queue_full` (probability): submit_sm_resp ESME_RMSGQFUL;
5. otherwise the message is accepted, with `slow_answer` (resp delayed),
   `receipt_before_resp` and `duplicate_receipts` (probabilities) applied to it;
6. then, counting every submit_sm received on the connection: `malformed_pdu` every Nth,
   `unbind_on_submit` at the Nth, `drop_after` at the Nth (connection closed after the
   answers so far are written).

Probabilities are drawn from random.Random(seed), re-seeded whenever the personality is
switched, so a given sequence of submits always meets the same faults.
"""

from __future__ import annotations

import random
import struct

from gateway.smpp.constants import CommandId, CommandStatus
from simulators.smsc.config import Faults
from simulators.smsc.stats import Stats

_HEADER = struct.Struct(">IIII")
MALFORMED_SEQUENCE_BASE = 0x7FFF0000

# verdicts before acceptance
RESPOND = "respond"  # answer submit_sm_resp with the given status
SILENT = "silent"  # no answer
NACK = "nack"  # generic_nack with the given status


class FaultState:
    __slots__ = ("_count", "_malformed_seq", "_sec", "_stats", "active", "cfg", "rng")

    def __init__(self, cfg: Faults, stats: Stats) -> None:
        self._stats = stats
        self._malformed_seq = 0
        self.set(cfg)

    def set(self, cfg: Faults) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.active = cfg.active
        self._sec = -1
        self._count = 0

    def fired(self, name: str) -> None:
        self._stats.faults[name] += 1

    def chance(self, p: float) -> bool:
        if p <= 0.0:
            return False
        return p >= 1.0 or self.rng.random() < p

    def refuse(self, now: float) -> tuple[str, int] | None:
        """Steps 1-4: (verdict, status) when the submit is not accepted, else None."""
        f = self.cfg
        if f.max_tps:
            sec = int(now)
            if sec != self._sec:
                self._sec = sec
                self._count = 0
            if self._count >= f.max_tps:
                self.fired("max_tps")
                return RESPOND, CommandStatus.ESME_RTHROTTLED
        if self.chance(f.never_answer):
            self.fired("never_answer")
            return SILENT, 0
        if self.chance(f.generic_nack):
            self.fired("generic_nack")
            return NACK, int(CommandStatus[f.generic_nack_status])
        if self.chance(f.queue_full):
            self.fired("queue_full")
            return RESPOND, CommandStatus.ESME_RMSGQFUL
        if f.max_tps:
            self._count += 1
        return None

    def slow_delay(self) -> float:
        f = self.cfg
        if f.slow_answer > 0 and self.chance(f.slow_answer_fraction):
            self.fired("slow_answer")
            return f.slow_answer
        return 0.0

    def receipt_first(self) -> bool:
        if self.chance(self.cfg.receipt_before_resp):
            self.fired("receipt_before_resp")
            return True
        return False

    def duplicate(self) -> bool:
        if self.chance(self.cfg.duplicate_receipts):
            self.fired("duplicate_receipts")
            return True
        return False

    # ---- step 6: per-connection counts ---------------------------------------------------

    def malformed_due(self, submits: int) -> bool:
        n = self.cfg.malformed_pdu
        if n and submits % n == 0:
            self.fired("malformed_pdu")
            return True
        return False

    def unbind_due(self, submits: int) -> bool:
        if self.cfg.unbind_on_submit and submits == self.cfg.unbind_on_submit:
            self.fired("unbind_on_submit")
            return True
        return False

    def drop_due(self, submits: int) -> bool:
        if self.cfg.drop_after and submits == self.cfg.drop_after:
            self.fired("drop_after")
            return True
        return False

    def malformed_pdu(self) -> bytes:
        """A corrupt deliver_sm of the configured kind (see docs/simulator.md)."""
        self._malformed_seq = (self._malformed_seq + 1) & 0xFFFF
        seq = MALFORMED_SEQUENCE_BASE + self._malformed_seq
        if self.cfg.malformed_kind == "bad_length":
            # command_length 8 is below the 16-octet header: the stream cannot be re-framed,
            # a correct peer answers generic_nack ESME_RINVCMDLEN and drops the connection.
            return _HEADER.pack(8, CommandId.DELIVER_SM, 0, seq)
        # missing_nul: the body ends inside destination_addr (no NUL terminator); framing is
        # intact, a correct peer answers generic_nack (or deliver_sm_resp) with an error and
        # carries on.
        body = b"\x00" + b"\x01\x01" + b"12345\x00" + b"\x01\x01" + b"4917012"
        return _HEADER.pack(16 + len(body), CommandId.DELIVER_SM, 0, seq) + body
