"""Stored records: one msgspec Struct per table row, used by the store, the pipeline and the
API views alike."""

from __future__ import annotations

import msgspec

from gateway.config import Category
from gateway.states import State

PRIORITY = {"otp": 0, "notification": 1, "marketing": 2}

# gc=False on the records of every message in flight (MessageRecord, SegmentRecord): they
# hold scalars only, so they can never be part of a reference cycle, and the cyclic
# collector need not walk them. Tracked, the messages in a busy gateway's queues were most
# of what every gen-0 collection walked: 0.49 s of the gateway's 9.3 s of CPU in a
# 200,000-message batch run, 0.07 s untracked (docs/benchmarks.md, "Eleventh session").
# tests/test_untracked_records.py keeps their fields scalar.


class MessageRecord(msgspec.Struct, kw_only=True, gc=False):
    id: str
    tenant: str
    client_ref: str | None = None
    source_addr: str
    destination: str
    text: str
    category: Category
    priority: int  # 0 otp, 1 notification, 2 marketing (lower goes first)
    state: State = State.ACCEPTED
    channel: str | None = None
    data_coding: int
    segment_count: int
    attempts: int = 0
    error_code: str | None = None
    error: str | None = None
    created_at: float
    updated_at: float
    expires_at: float
    submitted_at: float | None = None
    done_at: float | None = None
    concat_ref: int | None = None  # UDH/SAR reference of a multipart message, fixed at intake


class SegmentState:
    PENDING = "pending"
    SUBMITTED = "submitted"
    DELIVERED = "delivered"
    UNDELIVERABLE = "undeliverable"
    EXPIRED = "expired"
    REJECTED = "rejected"
    FAILED = "failed"
    DELETED = "deleted"
    UNKNOWN = "unknown"


class SegmentRecord(msgspec.Struct, kw_only=True, gc=False):
    message_id: str
    seq: int  # 1..segment_count
    state: str = SegmentState.PENDING
    channel: str | None = None
    smsc_message_id: str | None = None
    id_key: str | None = None  # receipt_id_key(smsc_message_id, channel's format)
    submit_status: int | None = None
    submitted_at: float | None = None
    receipt_error: str | None = None
    receipt_at: float | None = None
    # The text of the receipt that settled the segment (store v7), as received (latin-1).
    # Such a receipt has no row of its own in `receipts` (ReceiptRecord): that table keeps
    # the receipts that settled nothing at once (unmatched, early, intermediate).
    receipt: str | None = None


class SegmentReceipt(msgspec.Struct, frozen=True, gc=False):
    """What a receipt changes in its segment (store.record_receipts): the state it reports,
    its error, when it came, and its text: the segment's receipt columns (SegmentRecord's
    fields of the same names). The segment's other columns are the submit's."""

    message_id: str
    seq: int
    state: str
    receipt_error: str | None
    receipt_at: float
    receipt: str | None = None


class ReceiptRecord(msgspec.Struct, kw_only=True):
    channel: str
    smsc_message_id: str
    id_key: str
    state: str | None  # segment state the receipt reports (SegmentState value)
    error_code: str | None = None
    raw: str  # the receipt text as received (latin-1), for audits
    received_at: float
    message_id: str | None = None  # filled when matched
    seq: int | None = None


# A receipt as a channel reads it from a deliver_sm, before it is matched: ReceiptRecord's
# fields without those its batch shares (channel, received_at) and those of its match
# (message_id, seq), in this order. A tuple, not a Struct: one is built per receipt on the
# gateway's one busy core, and most receipts never become a ReceiptRecord (the one that
# settles a segment is stored in the segment's row: SegmentReceipt.receipt).
Receipt = tuple[str, str, str | None, str | None, str]
RECEIPT_FIELDS = ("smsc_message_id", "id_key", "state", "error_code", "raw")
assert RECEIPT_FIELDS == tuple(
    f.name
    for f in msgspec.structs.fields(ReceiptRecord)
    if f.name not in ("channel", "received_at", "message_id", "seq")
), "Receipt is ReceiptRecord's own fields, in order"


def receipt_record(
    channel: str, received_at: float, r: Receipt, message_id: str | None = None, seq: int | None = None
) -> ReceiptRecord:
    """A Receipt as a row of the receipts table."""
    smsc_message_id, id_key, state, error_code, raw = r
    return ReceiptRecord(
        channel=channel,
        smsc_message_id=smsc_message_id,
        id_key=id_key,
        state=state,
        error_code=error_code,
        raw=raw,
        received_at=received_at,
        message_id=message_id,
        seq=seq,
    )


class ReceiptFrame(msgspec.Struct, array_like=True, frozen=True):
    """A receipt batch as a receipt journal frame (gateway.store.journal): one bind's
    deliver batch, the receipts it stores (matched or not; not the duplicates), msgpack,
    an array. Frames written before store v7 are a list of ReceiptRecord maps
    (decode_frames reads both)."""

    channel: str
    received_at: float
    receipts: list[Receipt]


encode_frame = msgspec.msgpack.Encoder().encode
_decode_frame = msgspec.msgpack.Decoder(ReceiptFrame).decode
_decode_records = msgspec.msgpack.Decoder(list[ReceiptRecord]).decode


def decode_frames(payload: bytes) -> list[ReceiptFrame]:
    """A journal frame's receipts, by channel (one frame, or none for an empty one, for a
    frame of this version). msgspec.DecodeError if it is neither form."""
    try:
        return [_decode_frame(payload)]
    except msgspec.DecodeError:
        pass
    records = _decode_records(payload)  # before v7: ReceiptRecords (their match is redone)
    groups: dict[str, list[ReceiptRecord]] = {}
    for r in records:  # one bind's batch: one channel (grouped all the same)
        groups.setdefault(r.channel, []).append(r)
    return [
        ReceiptFrame(
            name,
            group[0].received_at,
            [(r.smsc_message_id, r.id_key, r.state, r.error_code, r.raw) for r in group],
        )
        for name, group in groups.items()
    ]


class StateMove(msgspec.Struct, frozen=True):
    """A message's move to `state` at wall time `at` (store.record_receipts); to a failure,
    with the receipt error of the segment that decided it (`None` leaves the stored
    error_code unchanged, like set_state_nowait)."""

    message_id: str
    state: State
    at: float
    error_code: str | None = None


class MessageView(msgspec.Struct, kw_only=True):
    """A message with its segments, as the API shows it."""

    message: MessageRecord
    segments: list[SegmentRecord]
