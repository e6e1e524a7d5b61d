"""Delivery receipts: outcome (by destination prefix or weights), delay, and the deliver_sm.

A receipt is a deliver_sm with esm_class 0x04 from the original destination to the original
source, carrying the SMPP 3.4 Appendix B text

    id:<id> sub:001 dlvrd:<001|000> submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:<STAT>
    err:<NNN> text:<first 20 characters>

and the TLVs receipted_message_id (the same id string as the submit_sm_resp) and
message_state (+ network_error_code when enabled). Dates are UTC. The text excerpt is the first
octets of the original user data (after any UDH) for single-octet alphabets, or the first
characters of a UCS2 text rendered in GSM 7-bit ('?' for what GSM cannot show).
"""

from __future__ import annotations

import bisect
import random
import struct
import time
from typing import Any

from gateway.smpp import pdu as P
from gateway.smpp.constants import (
    DATA_CODING_UCS2,
    ESM_CLASS_SMSC_RECEIPT,
    ESM_CLASS_UDHI,
    CommandStatus,
    Tag,
)
from gateway.smpp.errors import PduError
from gateway.smpp.text import encode_gsm7, is_gsm7
from simulators.smsc.config import FixedDelay, Receipts, UniformDelay
from simulators.smsc.store import STAT_STATE, Record

DEFAULT_ERROR_CODES = {"DELIVRD": 0, "UNDELIV": 1, "EXPIRED": 2, "REJECTD": 3, "DELETED": 4}
_TAG_RECEIPTED_ID = int(Tag.RECEIPTED_MESSAGE_ID)
_TAG_MESSAGE_STATE = int(Tag.MESSAGE_STATE)
_TAG_NETWORK_ERROR = int(Tag.NETWORK_ERROR_CODE)
_TAG_PAYLOAD = int(Tag.MESSAGE_PAYLOAD)
_NETWORK_TYPE_GSM = 3
# Tlv is frozen, so one message_state TLV per stat is shared by every receipt.
_STATE_TLVS = {stat: P.Tlv(_TAG_MESSAGE_STATE, state) for stat, state in STAT_STATE.items()}
_DELIVER_SM = int(P.DeliverSm.command_id)
# The wire bytes of the message_state TLV per stat, and the receipted_message_id header.
_STATE_TLV_BYTES = {stat: struct.pack(">HHB", _TAG_MESSAGE_STATE, 1, v) for stat, v in STAT_STATE.items()}
_RID_HEAD = struct.Struct(">HH")
# The mandatory fields before sm_length: service_type "", the two addresses (ton, npi,
# C-string), esm_class 0x04, then protocol_id .. sm_default_msg_id all 0 or empty (the two
# empty time C-strings are one NUL each), formatted as the codec's template does.
_HEAD = b"\0%c%c%b\0%c%c%b\0" + bytes((ESM_CLASS_SMSC_RECEIPT,)) + bytes(8)
# A receipt's body after the head: sm_length, "id:<id><middle><excerpt>", then the TLVs
# receipted_message_id (tag, length, id, NUL) and message_state.
_TAILS = {  # by (text, tlvs)
    (True, True): b"%cid:%b%b%b%b%b\0%b",
    (True, False): b"%cid:%b%b%b",
    (False, True): b"\0%b%b\0%b",
    (False, False): b"\0",  # sm_length 0
}
_RID_HEADS = [_RID_HEAD.pack(int(Tag.RECEIPTED_MESSAGE_ID), n) for n in range(257)]
_CACHE_MAX = 4096  # text middles remembered per policy (bounded)


def _escape(b: bytes) -> bytes:
    """`b` as literal text of a `bytes %` format."""
    return b.replace(b"%", b"%%")


class _DateFormatter:
    """UTC YYMMDDhhmm[ss] of a time.time() value, cached per second (receipts come in bursts)."""

    __slots__ = ("_cache", "_fmt")

    def __init__(self, seconds: bool) -> None:
        self._fmt = "%y%m%d%H%M%S" if seconds else "%y%m%d%H%M"
        self._cache: dict[int, str] = {}

    def __call__(self, t: float) -> str:
        key = int(t)
        value = self._cache.get(key)
        if value is None:
            if len(self._cache) >= 256:
                self._cache.clear()
            value = self._cache[key] = time.strftime(self._fmt, time.gmtime(key))
        return value


def smpp_absolute_time(t: float) -> str:
    """SMPP 3.4 absolute time (16 chars, UTC): YYMMDDhhmmss + tenths + '00+'."""
    tenths = int((t - int(t)) * 10)
    return time.strftime("%y%m%d%H%M%S", time.gmtime(int(t))) + f"{tenths}00+"


def excerpt(short_message: bytes, data_coding: int, udhi: bool, length: int) -> bytes:
    """The first `length` characters of the user data, as octets for a data_coding-0 text."""
    data = short_message
    if udhi and data and 1 + data[0] <= len(data):
        data = data[1 + data[0] :]
    if data_coding != DATA_CODING_UCS2 and not 0xE0 <= data_coding <= 0xEF:
        return data[:length]
    text = data[: 2 * length].decode("utf-16-be", "replace")
    if not is_gsm7(text):
        text = "".join(c if is_gsm7(c) else "?" for c in text)
    return encode_gsm7(text)


def user_data(pdu: Any, override: bytes | None = None) -> bytes:
    """short_message, or the message_payload TLV when short_message is empty."""
    if override is not None:
        return override
    sm = getattr(pdu, "short_message", b"")
    if sm:
        return sm
    payload = pdu.tlv(_TAG_PAYLOAD, b"") if pdu.tlvs else b""
    return payload if isinstance(payload, bytes) else b""


def _head(pdu: Any, saddr: str, daddr: str) -> bytes:
    """A receipt's mandatory fields before sm_length, written by the codec, which raises its
    precise error for an address pair it does not take (the last octet it writes is
    sm_length 0)."""
    return P.DeliverSm(
        0, 0, [], "", pdu.dest_addr_ton, pdu.dest_addr_npi, saddr,
        pdu.source_addr_ton, pdu.source_addr_npi, daddr, ESM_CLASS_SMSC_RECEIPT,
    ).encode()[16:-1]


class ReceiptPolicy:
    """One account's receipt rules: which outcome, after how long, in what shape."""

    def __init__(self, cfg: Receipts, rng: random.Random) -> None:
        self.cfg = cfg
        self._rng = rng
        weighted = [(s, w) for s, w in cfg.outcomes.items() if w > 0]
        self._single = weighted[0][0] if len(weighted) == 1 else None
        self._stats = [s for s, _ in weighted]
        self._cum: list[float] = []
        total = 0.0
        for _, w in weighted:
            total += w
            self._cum.append(total)
        self._total = total
        self._prefixes = {p.lstrip("+"): s for p, s in cfg.prefix_outcomes.items()}
        self._lengths = sorted({len(p) for p in self._prefixes}, reverse=True)
        d = cfg.delay
        if isinstance(d, FixedDelay):
            self._delay_kind, self._a, self._b = 0, d.seconds, 0.0
        elif isinstance(d, UniformDelay):
            self._delay_kind, self._a, self._b = 1, d.min, d.max
        else:
            self._delay_kind, self._a, self._b = 2, d.mean, 0.0
        self.immediate = self._delay_kind == 0 and self._a == 0
        codes = dict(DEFAULT_ERROR_CODES)
        codes.update(cfg.error_codes)
        self._err = {s: f"{c:03d}"[-3:] for s, c in codes.items()}
        self._err_int = codes
        self._submit_date = _DateFormatter(cfg.date_with_seconds)
        self._when = cfg.when
        self._text = cfg.text
        self._tlvs = cfg.tlvs
        self._network_error = cfg.network_error_code
        self._excerpt_len = cfg.text_excerpt_length
        # Outcome without a draw: one weighted stat and no prefix rules (the benchmark case).
        self.fixed_outcome = self._single if not self._lengths else None
        # wanted(rd, stat) as a table: wants[stat][rd & 3] (the submit_sm hot path)
        self.wants = {
            stat: tuple(self.wanted(rd, stat) for rd in range(4)) for stat in STAT_STATE
        }
        # encoded(): the text between the id and the excerpt per (stat, submit second, done
        # second).
        self._middles: dict[tuple, bytes] = {}
        self._tail = _TAILS[(bool(self._text), bool(self._tlvs))]
        self._full = _HEAD + self._tail  # head and tail in one formatting
        self._last_stat: str | None = None
        self._last_lo = 0.0
        self._last_middle = b""

    # ---- decisions ---------------------------------------------------------------------

    def outcome(self, destination: str) -> str:
        if self._lengths:
            d = destination.lstrip("+")
            prefixes = self._prefixes
            for n in self._lengths:
                stat = prefixes.get(d[:n])
                if stat is not None:
                    return stat
        if self._single is not None:
            return self._single
        i = bisect.bisect_right(self._cum, self._rng.random() * self._total)
        return self._stats[min(i, len(self._stats) - 1)]

    def delay(self) -> float:
        kind = self._delay_kind
        if kind == 0:
            return self._a
        if kind == 1:
            return self._rng.uniform(self._a, self._b)
        return self._rng.expovariate(1.0 / self._a) if self._a > 0 else 0.0

    def wanted(self, registered_delivery: int, stat: str) -> bool:
        """Does this message get a receipt? (SMSC delivery receipt bits 0-1.)"""
        when = self._when
        if when == "requested":
            bits = registered_delivery & 0x03
            if bits == 2:
                return stat != "DELIVRD"
            return bits != 0
        return when == "always"

    def error_code(self, stat: str) -> int:
        return self._err_int[stat]

    # ---- the PDU -------------------------------------------------------------------------

    def _middle(self, stat: str, submitted_at: float, done_at: float) -> str:
        """The Appendix B text between the id and the excerpt: " sub:... text:"."""
        fmt = self._submit_date
        submitted = fmt(submitted_at)
        done = submitted if done_at == submitted_at else fmt(done_at)
        return (
            f" sub:001 dlvrd:{'001' if stat == 'DELIVRD' else '000'} "
            f"submit date:{submitted} done date:{done} "
            f"stat:{stat} err:{self._err[stat]} text:"
        )

    def _middle_bytes(self, stat: str, submitted_at: float, done_at: float) -> bytes:
        """`_middle` as bytes, cached per (stat, submit second, done second); the last one
        whose two dates fall in one second is also kept for encoded()'s one-compare path."""
        sec = int(submitted_at)
        mkey = (stat, sec, int(done_at))
        middle = self._middles.get(mkey)
        if middle is None:
            middle = self._middle(stat, submitted_at, done_at).encode("latin-1")
            if len(self._middles) >= _CACHE_MAX:
                self._middles.clear()
            self._middles[mkey] = middle
        if sec == mkey[2] and submitted_at >= 0:
            self._last_stat = stat
            self._last_lo = float(sec)
            self._last_middle = middle
        return middle

    def build(
        self, rec: Record, dest: tuple[int, int, str] | None = None, stat: str | None = None
    ) -> P.Pdu:
        """The receipt deliver_sm for `rec` (final state already set) to one destination.

        `dest` / `stat` override the record's for one submit_multi destination.
        """
        pdu = rec.pdu
        if stat is None:
            stat = rec.stat
        mid = rec.id
        if dest is None:
            dton, dnpi, daddr = pdu.dest_addr_ton, pdu.dest_addr_npi, pdu.destination_addr
        else:
            dton, dnpi, daddr = dest
        if len(daddr) > 20 or len(pdu.source_addr) > 20:  # data_sm allows 64
            raise PduError(
                "address longer than a deliver_sm can carry (20)", CommandStatus.ESME_RINVSRCADR
            )
        if self._text:
            data = rec.short_message
            if data is None:
                data = getattr(pdu, "short_message", b"") or user_data(pdu)
            dc = pdu.data_coding
            if pdu.esm_class & ESM_CLASS_UDHI or dc == DATA_CODING_UCS2 or 0xE0 <= dc <= 0xEF:
                ex = excerpt(data, dc, bool(pdu.esm_class & ESM_CLASS_UDHI), self._excerpt_len)
            else:
                ex = data[: self._excerpt_len]
            sm = f"id:{mid}{self._middle(stat, rec.submitted, rec.done)}".encode("latin-1") + ex
        else:
            sm = b""
        if self._tlvs:
            tlvs = [P.Tlv(_TAG_RECEIPTED_ID, mid), _STATE_TLVS[stat]]
            if self._network_error:
                code = self._err_int[stat] & 0xFFFF
                tlvs.append(
                    P.Tlv(_TAG_NETWORK_ERROR, bytes((_NETWORK_TYPE_GSM, code >> 8, code & 0xFF)))
                )
        elif self._network_error:
            code = self._err_int[stat] & 0xFFFF
            tlvs = [P.Tlv(_TAG_NETWORK_ERROR, bytes((_NETWORK_TYPE_GSM, code >> 8, code & 0xFF)))]
        else:
            tlvs = []
        return P.DeliverSm(
            source_addr_ton=dton,
            source_addr_npi=dnpi,
            source_addr=daddr,
            dest_addr_ton=pdu.source_addr_ton,
            dest_addr_npi=pdu.source_addr_npi,
            destination_addr=pdu.source_addr,
            esm_class=ESM_CLASS_SMSC_RECEIPT,
            short_message=sm,
            tlvs=tlvs,
        )

    def shape_format(self, pdu: Any) -> tuple[bytes, int] | None:
        """For the receipts of the submit_sm that share `pdu`'s fields but the destination
        (a learned shape, simulators/smsc/shapes.py; no TLVs): the receipt `encoded()` gives
        (its common path, or `build()` + the codec for a UDH or UCS2 text) as one `bytes %`
        format with everything that depends on those fields written in (the message's
        source address and the TON/NPI, the excerpt), and the part of sm_length that does
        not depend on the message (3 + the excerpt). None with network_error_code (left to
        `encoded()`). `shaped_body` formats it for one message. `pdu` was decoded strictly,
        so its addresses pass the codec's checks (20 octets at most, no NUL, Latin-1)."""
        if self._network_error:
            return None
        sm = pdu.short_message  # no message_payload: the shape has no TLVs
        dc = pdu.data_coding
        udhi = pdu.esm_class & ESM_CLASS_UDHI
        if udhi or dc == DATA_CODING_UCS2 or 0xE0 <= dc <= 0xEF:
            ex = excerpt(sm, dc, bool(udhi), self._excerpt_len)  # as build() takes it
        else:
            ex = sm[: self._excerpt_len]
        before = bytes((0, pdu.dest_addr_ton, pdu.dest_addr_npi))  # service_type "", ton, npi
        after = (
            b"\0"
            + bytes((pdu.source_addr_ton, pdu.source_addr_npi))
            + pdu.source_addr.encode("latin-1")
            + b"\0"
            + _HEAD[-9:]  # esm_class 0x04, protocol_id .. sm_default_msg_id
        )
        fmt = _escape(before) + b"%b" + _escape(after)  # %b: the receipt's source_addr
        if self._text:
            fmt += b"%cid:%b%b" + _escape(ex) + (b"%b%b\0%b" if self._tlvs else b"")
        else:
            fmt += b"\0%b%b\0%b" if self._tlvs else b"\0"
        return fmt, 3 + len(ex)

    def shaped_body(
        self, fmt: bytes, fixed: int, saddr: bytes, stat: str, t: float, mid: bytes
    ) -> bytes | None:
        """The body of the receipt `encoded()` gives for a message of `fmt`'s shape (`shape_format`), sent
        to `saddr` (the message's destination), its outcome `stat`, submitted and done at
        `t`, its id `mid` (at most 64 octets). None when the text would pass 255 octets
        (`encoded()` then decides what happens)."""
        lm = len(mid)
        if self._text:
            lo = self._last_lo
            if stat is self._last_stat and lo <= t < lo + 1.0:
                middle = self._last_middle
            else:
                middle = self._middle_bytes(stat, t, t)
            n = fixed + lm + len(middle)
            if n > 255:
                return None
            if self._tlvs:
                return fmt % (saddr, n, mid, middle, _RID_HEADS[lm + 1], mid, _STATE_TLV_BYTES[stat])
            return fmt % (saddr, n, mid, middle)
        if self._tlvs:
            return fmt % (saddr, _RID_HEADS[lm + 1], mid, _STATE_TLV_BYTES[stat])
        return fmt % (saddr,)

    def encoded(self, rec: Record, mid: bytes | None = None) -> P.Pdu | P.Encoded:
        """`build(rec)` as wire bytes (a `P.Encoded` deliver_sm), for the common receipt:
        one destination, single-octet text (no UDH), no replace_sm text, no
        network_error_code. Anything else gets `build(rec)` itself. Same checks, same
        errors; tests compare the two byte for byte.

        The mandatory fields before sm_length depend only on the two addresses: they are
        formatted here with the codec's template and checks (a cache per address pair
        missed on every receipt of a gateway sending to many destinations: 2 us more per
        receipt than this); an address pair these checks do not pass goes through the
        codec, which writes it or raises its error. The receipt text between the id and
        the excerpt depends only on the stat and the two dates: cached.

        `mid`: rec.id as bytes when the caller has them already (the submit_sm hot path)."""
        pdu = rec.pdu
        try:
            sm = pdu.short_message
        except AttributeError:  # data_sm
            return self.build(rec)
        if (
            self._network_error
            or rec.short_message is not None
            or rec.dests is not None
            or not sm
            or pdu.esm_class & ESM_CLASS_UDHI
        ):
            return self.build(rec)
        dc = pdu.data_coding
        if dc == DATA_CODING_UCS2 or 0xE0 <= dc <= 0xEF:
            return self.build(rec)
        # The receipt goes from the message's destination back to its source.
        saddr = pdu.destination_addr
        daddr = pdu.source_addr
        if len(saddr) > 20 or len(daddr) > 20:
            return self.build(rec)  # raises as build() does
        stat = rec.stat
        if mid is None:
            mid = rec.id.encode("latin-1")
        lm = len(mid)
        if self._text:
            submitted = rec.submitted
            done = rec.done
            # The middle of the last second seen (receipts come in bursts), else the cache.
            lo = self._last_lo
            if stat is self._last_stat and lo <= submitted < lo + 1.0 and lo <= done < lo + 1.0:
                middle = self._last_middle
            else:
                middle = self._middle_bytes(stat, submitted, done)
            ex = sm[: self._excerpt_len]
            n = 3 + lm + len(middle) + len(ex)
            if n > 255:
                # The codec refuses it when sending, as before (after the addresses).
                _head(pdu, saddr, daddr)
                return self.build(rec)
        elif self._tlvs and lm + 1 > 0xFFFF:
            _head(pdu, saddr, daddr)
            return self.build(rec)
        # The head (the mandatory fields before sm_length) and what follows it in one
        # formatting: sm_length, the text, the TLVs (`_TAILS`).
        try:
            s = saddr.encode("latin-1")
            d = daddr.encode("latin-1")
            if 0 in s or 0 in d:
                raise TypeError
            # ton/npi that are not octets raise here (%c), as in the codec's template.
            dton, dnpi = pdu.dest_addr_ton, pdu.dest_addr_npi
            ston, snpi = pdu.source_addr_ton, pdu.source_addr_npi
            if self._text:
                if self._tlvs:  # (the id is shorter than the text's 255 octets)
                    rid = _RID_HEADS[lm + 1]
                    body = self._full % (
                        dton, dnpi, s, ston, snpi, d, n, mid, middle, ex, rid, mid,
                        _STATE_TLV_BYTES[stat],
                    )
                else:
                    body = self._full % (dton, dnpi, s, ston, snpi, d, n, mid, middle, ex)
            elif self._tlvs:
                rid = _RID_HEAD.pack(_TAG_RECEIPTED_ID, lm + 1)
                body = self._full % (dton, dnpi, s, ston, snpi, d, rid, mid, _STATE_TLV_BYTES[stat])
            else:
                body = self._full % (dton, dnpi, s, ston, snpi, d)
            return P.Encoded(_DELIVER_SM, body)
        except (AttributeError, UnicodeEncodeError, TypeError, OverflowError):
            pass
        # The codec writes the head or raises its precise error.
        head = _head(pdu, saddr, daddr)
        if self._text:
            if self._tlvs:
                rid = _RID_HEADS[len(mid) + 1]
                body = head + self._tail % (n, mid, middle, ex, rid, mid, _STATE_TLV_BYTES[stat])
            else:
                body = head + self._tail % (n, mid, middle, ex)
        elif self._tlvs:
            rid = _RID_HEAD.pack(_TAG_RECEIPTED_ID, len(mid) + 1)
            body = head + self._tail % (rid, mid, _STATE_TLV_BYTES[stat])
        else:
            body = head + self._tail
        return P.Encoded(_DELIVER_SM, body)
