"""Tenant API bodies: the one definition of what goes over HTTP (msgspec validates them)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from gateway.config import SENDER_MAX, SENDER_PATTERN, Category
from gateway.store.records import MessageRecord, SegmentRecord

MAX_RECIPIENTS = 1000

Recipient = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]


class SendMessage(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """POST /v1/messages. `to` is one number or a list of up to 1,000.

    `signature_id`, `template_id` and `params` are reserved for reviewed templates (a later
    release); until then a request that sets them is refused with `templates_unavailable`.
    """

    to: Recipient | Annotated[list[Recipient], msgspec.Meta(min_length=1, max_length=MAX_RECIPIENTS)]
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=10_000)] | None = None
    category: Category = "notification"
    # Printable ASCII but `#`: a batch's message i is stored as `client_ref#i`, so a `#` of
    # the tenant's own could name another request's message.
    client_ref: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[\x21\x22\x24-\x7e]+$")] | None = None
    # What submit_sm's source_addr can carry, as for the config's senders (gateway.config,
    # SENDER_PATTERN): 1..20 printable ASCII, no leading/trailing space. Refused here rather
    # than accepted and `rejected` at dispatch.
    sender: Annotated[str, msgspec.Meta(min_length=1, max_length=SENDER_MAX, pattern=SENDER_PATTERN)] | None = None
    validity_seconds: Annotated[int, msgspec.Meta(ge=60, le=7 * 86400)] | None = None
    signature_id: str | None = None
    template_id: str | None = None
    params: dict[str, str] | None = None

    @property
    def recipients(self) -> list[str]:
        return [self.to] if isinstance(self.to, str) else list(self.to)


class AcceptedMessage(msgspec.Struct, gc=False):  # positional too: built once per recipient
    # gc=False: strings, numbers and None only, no cycle possible; one is made per
    # recipient, and an untracked object is cheaper to make and to free.
    id: str
    to: str
    state: str
    segments: int
    channel: str | None
    client_ref: str | None = None
    duplicate: bool = False  # same tenant + client_ref seen before: this is the first result


class SendResult(msgspec.Struct, kw_only=True):
    messages: list[AcceptedMessage]


class SegmentView(msgspec.Struct, kw_only=True):
    seq: int
    state: str
    smsc_message_id: str | None
    submit_status: int | None
    submitted_at: float | None
    receipt_error: str | None
    receipt_at: float | None
    receipt: str | None  # the text of the receipt that settled it, as the SMSC sent it

    @classmethod
    def of(cls, s: SegmentRecord) -> SegmentView:
        return cls(
            seq=s.seq,
            state=s.state,
            smsc_message_id=s.smsc_message_id,
            submit_status=s.submit_status,
            submitted_at=s.submitted_at,
            receipt_error=s.receipt_error,
            receipt_at=s.receipt_at,
            receipt=s.receipt,
        )


class MessageStatus(msgspec.Struct, kw_only=True):
    id: str
    to: str
    sender: str
    category: str
    state: str
    channel: str | None
    client_ref: str | None
    segments: list[SegmentView]
    attempts: int
    error_code: str | None
    error: str | None
    created_at: float
    submitted_at: float | None
    done_at: float | None

    @classmethod
    def of(cls, m: MessageRecord, segments: list[SegmentRecord]) -> MessageStatus:
        return cls(
            id=m.id,
            to=m.destination,
            sender=m.source_addr,
            category=m.category,
            state=m.state.value if hasattr(m.state, "value") else str(m.state),
            channel=m.channel,
            client_ref=m.client_ref,
            segments=[SegmentView.of(s) for s in segments],
            attempts=m.attempts,
            error_code=m.error_code,
            error=m.error,
            created_at=m.created_at,
            submitted_at=m.submitted_at,
            done_at=m.done_at,
        )


class ErrorBody(msgspec.Struct):
    code: str
    message: str
    details: dict | None = None


class ErrorResponse(msgspec.Struct):
    error: ErrorBody
