"""Pure pieces of turning a stored message into submit_sm PDUs and receipts into states.

No I/O: the channel calls these; tests call them directly.
"""

from __future__ import annotations

import functools

from gateway.config import ChannelConfig
from gateway.smpp import pdu as P
from gateway.smpp import text as T
from gateway.smpp.constants import MessageState, Tag
from gateway.states import State
from gateway.store.records import MessageRecord, SegmentState


def source_ton_npi(source: str, cfg: ChannelConfig) -> tuple[int, int]:
    """TON/NPI for a sender: configured values win; else alphanumeric -> 5/0
    (alphanumeric, unknown plan), long numbers -> 1/1 (international, E.164), short codes
    -> 0/1."""
    if cfg.source_addr_ton is not None and cfg.source_addr_npi is not None:
        return cfg.source_addr_ton, cfg.source_addr_npi
    digits = source.lstrip("+")
    if not digits.isdigit():
        ton, npi = 5, 0
    elif len(digits) >= 7:
        ton, npi = 1, 1
    else:
        ton, npi = 0, 1
    return (
        cfg.source_addr_ton if cfg.source_addr_ton is not None else ton,
        cfg.source_addr_npi if cfg.source_addr_npi is not None else npi,
    )


def relative_validity(seconds: float) -> str:
    """SMPP 3.4 relative time "YYMMDDhhmmss000R" for a validity period (capped at 63 days)."""
    return _relative(max(60, min(int(seconds), 63 * 86400)))


@functools.lru_cache(maxsize=4096)  # a busy channel submits many messages per second
def _relative(s: int) -> str:
    days, rem = divmod(s, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, secs = divmod(rem, 60)
    return f"0000{days:02d}{hours:02d}{minutes:02d}{secs:02d}000R"


def build_pdus(
    message: MessageRecord, cfg: ChannelConfig, reference: int, now: float
) -> list[P.Pdu]:
    """submit_sm PDUs for every segment of `message`, in order."""
    segments = T.split(
        message.text,
        concat=cfg.concatenation,
        reference=reference,
        allow_latin1=cfg.allow_latin1,
    )
    ton, npi = source_ton_npi(message.source_addr, cfg)
    validity = relative_validity(message.expires_at - now)
    dest = message.destination.lstrip("+")
    pdus = []
    for seg in segments:
        tlvs: list[P.Tlv] = []
        if seg.sar is not None:
            ref, total, seq = seg.sar
            tlvs = [
                P.Tlv(Tag.SAR_MSG_REF_NUM, ref),
                P.Tlv(Tag.SAR_TOTAL_SEGMENTS, total),
                P.Tlv(Tag.SAR_SEGMENT_SEQNUM, seq),
            ]
        elif seg.message_payload is not None:
            tlvs = [P.Tlv(Tag.MESSAGE_PAYLOAD, seg.message_payload)]
        pdus.append(
            P.SubmitSm(
                source_addr_ton=ton,
                source_addr_npi=npi,
                source_addr=message.source_addr,
                dest_addr_ton=1,
                dest_addr_npi=1,
                destination_addr=dest,
                esm_class=seg.esm_class_bits,
                validity_period=validity,
                registered_delivery=1 if cfg.registered_delivery else 0,
                data_coding=seg.data_coding,
                short_message=seg.short_message,
                tlvs=tlvs,
            )
        )
    return pdus


# Receipt message_state -> segment state (None: not final, e.g. ENROUTE/ACCEPTED).
RECEIPT_SEGMENT_STATE: dict[MessageState, str | None] = {
    MessageState.DELIVERED: SegmentState.DELIVERED,
    MessageState.EXPIRED: SegmentState.EXPIRED,
    MessageState.DELETED: SegmentState.DELETED,
    MessageState.UNDELIVERABLE: SegmentState.UNDELIVERABLE,
    MessageState.REJECTED: SegmentState.REJECTED,
    MessageState.UNKNOWN: SegmentState.UNKNOWN,
    MessageState.ENROUTE: None,
    MessageState.ACCEPTED: None,
}

_FAILED_SEGMENT_TO_MESSAGE = {
    SegmentState.UNDELIVERABLE: State.UNDELIVERABLE,
    SegmentState.EXPIRED: State.EXPIRED,
    SegmentState.REJECTED: State.REJECTED,
    SegmentState.DELETED: State.FAILED,
    SegmentState.FAILED: State.FAILED,
    SegmentState.UNKNOWN: State.UNKNOWN,
}
SEGMENT_FINAL = frozenset(
    {SegmentState.DELIVERED, *_FAILED_SEGMENT_TO_MESSAGE}
)


def message_state_from_segments(states: list[str]) -> State | None:
    """All delivered -> delivered; any final failure -> that failure (the first one);
    otherwise None (still waiting for receipts)."""
    if len(states) == 1:  # most messages
        s = states[0]
        return State.DELIVERED if s == SegmentState.DELIVERED else _FAILED_SEGMENT_TO_MESSAGE.get(s)
    for s in states:
        failed = _FAILED_SEGMENT_TO_MESSAGE.get(s)
        if failed is not None:
            return failed
    if states and all(s == SegmentState.DELIVERED for s in states):
        return State.DELIVERED
    return None
