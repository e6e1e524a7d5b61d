"""Stored records: one msgspec Struct per table row, used by the store, the pipeline and the
API views alike."""

from __future__ import annotations

import msgspec

from gateway.config import Category
from gateway.states import State

PRIORITY = {"otp": 0, "notification": 1, "marketing": 2}


class MessageRecord(msgspec.Struct, kw_only=True):
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


class SegmentRecord(msgspec.Struct, kw_only=True):
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


class SegmentReceipt(msgspec.Struct, frozen=True, gc=False):
    """What a receipt changes in its segment (store.record_receipts): the state it reports,
    its error, when it came. The segment's other columns are the submit's."""

    message_id: str
    seq: int
    state: str
    receipt_error: str | None
    receipt_at: float


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


# A receipt batch as a receipt journal frame (gateway.store.journal): msgpack of the records.
encode_receipts = msgspec.msgpack.Encoder().encode
decode_receipts = msgspec.msgpack.Decoder(list[ReceiptRecord]).decode


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
