"""The store interface: exactly the operations the pipeline needs, no SQL outside the backend.

A PostgreSQL backend for several gateway nodes implements this same class; nothing above it
changes. Every write method returns only once the write is durable (committed), unless it is
named `*_nowait`, which queues it for the next group commit and returns at once (used for
progress the recovery can redo: a crash before that commit is covered by the documented
recovery policy).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence

import msgspec

from gateway.states import State
from gateway.store.records import (
    MessageRecord,
    MessageView,
    ReceiptRecord,
    SegmentReceipt,
    SegmentRecord,
    StateMove,
)


class InsertResult(msgspec.Struct, frozen=True, gc=False):
    """Outcome of inserting one message: the stored record and whether it already existed
    (same tenant + client_ref: the first result is returned, nothing new is stored). A
    Struct: one per message of a request, built faster than a class with an __init__; not
    tracked by the cyclic GC (a record and a bool: never part of a cycle)."""

    record: MessageRecord
    existing: bool


class Store(abc.ABC):
    # Called with the highest receipt journal seq of each committed batch that had one:
    # the journal deletes the files the store now covers (gateway.service sets it).
    on_journal_committed: Callable[[int], None] | None = None

    # ---- life cycle ------------------------------------------------------------------
    @abc.abstractmethod
    async def run(self, *, task_status=None) -> None:
        """Open, migrate, serve writes until cancelled; then flush and close."""

    # ---- intake (durable before the API answers) -------------------------------------
    @abc.abstractmethod
    async def insert_messages(
        self, messages: Sequence[tuple[MessageRecord, Sequence[SegmentRecord]]]
    ) -> list[InsertResult]:
        """Insert messages with their segments in one transaction, idempotent on
        (tenant, client_ref)."""

    # ---- pipeline progress -------------------------------------------------------------
    @abc.abstractmethod
    def set_state_nowait(
        self,
        message_id: str,
        new: State,
        *,
        now: float,
        channel: str | None = None,
        attempts: int | None = None,
        error_code: str | None = None,
        error: str | None = None,
    ) -> None:
        """Queue a state change. Applied only if the stored state may move to `new`
        (gateway.states.TRANSITIONS); refused moves are counted, never applied."""

    @abc.abstractmethod
    def submitted_nowait(
        self,
        message_id: str,
        *,
        now: float,
        channel: str | None,
        attempts: int | None,
        segments: Sequence[SegmentRecord] = (),
        via: State | None = None,
    ) -> None:
        """Queue the SMSC's acceptance of a message as one op: the new versions of
        `segments` and the move to SUBMITTED (with `via`: the chain `via` -> SUBMITTED,
        for a pipeline that did not store the move to `via`)."""

    def submitted_many_nowait(
        self,
        accepted: Sequence[tuple[MessageRecord, SegmentRecord]],
        *,
        now: float,
        via: State | None = None,
    ) -> None:
        """submitted_nowait for each one-segment message of `accepted` (its record and its
        segment's new version; channel and attempts from the record), in order: what one
        read of submit_sm_resps accepted. A backend may queue them as one op."""
        for rec, seg in accepted:
            self.submitted_nowait(
                rec.id, now=now, channel=rec.channel, attempts=rec.attempts, segments=[seg], via=via
            )

    @abc.abstractmethod
    def update_segment_nowait(self, segment: SegmentRecord) -> None:
        """Queue the new version of one segment (submit result or receipt)."""

    @abc.abstractmethod
    async def record_receipt(self, receipt: ReceiptRecord) -> None:
        """Store a receipt durably (matched or not). Awaited before deliver_sm_resp."""

    @abc.abstractmethod
    async def record_receipts(
        self,
        receipts: Sequence[ReceiptRecord],
        *,
        segments: Sequence[SegmentReceipt] = (),
        moves: Sequence[StateMove] = (),
    ) -> None:
        """Store a batch of receipts durably in one write (one deliver_sm batch of a bind),
        together with what they change in their segments and the message moves they cause:
        one transaction, so an acknowledged receipt is never stored without its effect.
        A receipt that settles its segment is one of `segments` (its text in
        SegmentReceipt.receipt, stored in the segment's row); `receipts` are the rows of
        the receipts table: those that settle nothing at once (unmatched, intermediate)."""

    @abc.abstractmethod
    def record_receipts_nowait(
        self,
        receipts: Sequence[ReceiptRecord],
        *,
        segments: Sequence[SegmentReceipt] = (),
        moves: Sequence[StateMove] = (),
        journal_seq: int | None,
    ) -> None:
        """Queue what record_receipts stores, as one op, for receipts already durable in
        the receipt journal (gateway.store.journal) as frame `journal_seq`: the same
        transaction that applies them records `journal_seq` as committed (journal_mark),
        so a restart replays exactly the frames above it. Ops carry increasing seqs."""

    @abc.abstractmethod
    async def journal_mark(self) -> int:
        """The highest receipt journal seq whose op is committed (0: none yet)."""

    @abc.abstractmethod
    def match_receipt_nowait(self, channel: str, id_key: str, message_id: str, seq: int) -> None:
        """Link receipts stored unmatched (they overtook their submit_sm_resp) to the
        segment that now carries `id_key`."""

    @abc.abstractmethod
    async def flush(self) -> None:
        """Wait until everything queued so far is committed."""

    # ---- reads -----------------------------------------------------------------------
    @abc.abstractmethod
    async def get_message(self, tenant: str, message_id: str) -> MessageView | None: ...

    @abc.abstractmethod
    async def get_view(self, message_id: str) -> MessageView | None:
        """Any tenant's message by id (internal use: receipts, recovery; never the API)."""

    @abc.abstractmethod
    async def find_by_client_ref(self, tenant: str, client_ref: str) -> MessageView | None: ...

    @abc.abstractmethod
    async def find_segment(self, channel: str, id_key: str) -> SegmentRecord | None:
        """The segment a receipt names (by the channel's normalised SMSC message id)."""

    @abc.abstractmethod
    async def unfinished(self) -> list[MessageView]:
        """Messages not in a final state, oldest first (recovery after a restart)."""

    @abc.abstractmethod
    async def unmatched_receipts(
        self, channel: str | None = None, since: float | None = None
    ) -> list[ReceiptRecord]:
        """Receipts stored without a message (received at or after `since`), oldest first."""

    @abc.abstractmethod
    async def count_open(self) -> dict[str, int]:
        """Messages in each non-final state (the backlog; cheap enough to poll)."""

    @abc.abstractmethod
    async def count_since(self, since: float) -> dict[str, int]:
        """Messages per tenant created at or after `since` (daily quota after a restart)."""
