"""A channel: N binds to one SMSC account, its priority queue, its rate, its receipts.

Flow inside a channel (all tasks in the nursery the channel owns):

    queue (3 lanes) --dispatcher per bind--> rate bucket --> window slot --> submit_sm
    submit_sm_resp --(callback in the reader task)--> segment outcome --> store (nowait)
        all segments accepted -> SUBMITTED, wait for receipts
        retryable (throttled, nack, timeout, lost bind) -> retry heap -> back into the queue
        final refusal -> REJECTED;  attempts exhausted -> FAILED
    deliver_sm receipt --deliver worker--> match (memory, else store, else wait briefly for
        the resp that is still in flight) --> receipt stored durably --> deliver_sm_resp

Nothing here awaits per message on the submit path: dispatchers hand PDUs to the ESME with
`submit_nowait` and a callback, so a window of 64 stays full with no task switch per PDU.
Store writes on that path are `*_nowait` (group-committed by the store's writer); the
durable points are intake (before the API answers) and receipts (before deliver_sm_resp),
plus, on channels with `on_submitting_recovery = "unknown"`, the SUBMITTING move before the
submit_sm leaves (one commit per dispatcher batch; see _dispatch_recorded).
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial

import msgspec
import structlog
import trio

from gateway.config import ChannelConfig
from gateway.errors import Unavailable
from gateway.lanes import Lanes
from gateway.smpp import pdu as P
from gateway.smpp import text as T
from gateway.smpp.constants import CommandStatus, status_name
from gateway.smpp.esme import EsmeClient, Outcome, SubmitResult
from gateway.smpp.receipt import ReadOutcome, receipt_id_key, receipt_outcome
from gateway.states import State
from gateway.store.base import Store
from gateway.store.journal import JournalError, ReceiptJournal
from gateway.store.records import (
    MessageRecord,
    Receipt,
    ReceiptFrame,
    ReceiptRecord,
    SegmentReceipt,
    SegmentRecord,
    SegmentState,
    StateMove,
    encode_frame,
    receipt_record,
)
from gateway.submission import (
    MESSAGE_STATE_OF_SEGMENT,
    RECEIPT_SEGMENT_STATE,
    SEGMENT_FINAL,
    SubmitTemplates,
    message_state_from_segments,
)
from gateway.throttle import AdaptiveRate, TokenBucket

log = structlog.get_logger("gateway.channels")

RETRY_BASE = 0.5  # seconds before the first retry of a retryable outcome
RETRY_MAX = 60.0
EARLY_RECEIPT_HOLD = 120.0  # how long an unmatched receipt waits (in memory) for its resp
EARLY_RECEIPTS_MAX = 100_000
AWAITING_RECEIPTS_MAX = 500_000  # submitted messages kept in memory for receipt matching
RECEIPT_COMMIT_WAIT = 30.0  # a receipt batch waits this long for its commit, even if cancelled

# Members read in the hot paths: an Enum class attribute costs ~150 ns on Python 3.11
# (EnumType.__getattr__ puts every class attribute read through the slow hook), a module
# global ~10 ns; ~11 reads per message were 3.5 % of the gateway's instructions.
_DELIVERED = State.DELIVERED
_SUBMITTED = State.SUBMITTED
_SUBMITTING = State.SUBMITTING
_QUEUED = State.QUEUED
_ACCEPTED = Outcome.ACCEPTED
_NOT_SENT = Outcome.NOT_SENT
_PENDING = SegmentState.PENDING
_SEG_SUBMITTED = SegmentState.SUBMITTED
_ALERT_NOTIFICATION = P.AlertNotification.command_id
_SEGMENT_FAILED = SEGMENT_FINAL - {SegmentState.DELIVERED}

# A matched receipt to apply: (owning channel, job, segment index, segment state it
# reports, error code, its text: stored in the segment's row with its state)
ReceiptEffect = tuple["Channel", "Job", int, "str | None", "str | None", str]


_KEY_MEMO = 65_536  # Channel._key_of: entries at most (~3 MB), then emptied


class Job(msgspec.Struct, eq=False, gc=False):
    """One message moving through the channel (memory only; the store has the truth). A
    Struct: one is made per message, ~3x faster than a class with an __init__. Not tracked
    by the cyclic GC (gc=False, as its records: gateway.store.records): nothing it holds
    refers back to a Job or to anything that does (records, PDUs, results, tuples of
    strings), so it is never part of a cycle."""

    record: MessageRecord
    segments: list[SegmentRecord]
    pdus: list[P.Pdu | P.Encoded] | None = None
    pending: int = 0
    outcomes: dict[int, SubmitResult] = {}  # a new dict per Job (msgspec copies it)
    # Receipts being stored (segment index -> the state and error they report), applied
    # in memory once their batch commits. Deliver batches of several binds are stored
    # at the same time: each computes its effects over what the others are storing, so
    # the batch that completes a message carries its final move (see
    # Channel._on_deliver).
    receipts_in_flight: dict[int, tuple[str, str | None]] | None = None
    # The final state whose move a receipt batch stores (or stored) with its receipts.
    final_move: State | None = None


class _Sent(msgspec.Struct):
    """A segment in flight: what its submit's outcome is for. The ESME calls it with the
    SubmitResult, or hands it back to Channel._on_accepted with the message_id when the
    SMSC accepted it (most of the traffic, one call per read)."""

    channel: Channel
    job: Job
    idx: int

    def __call__(self, result: SubmitResult) -> None:
        self.channel._on_result(self.job, self.idx, result)


class ChannelStats(msgspec.Struct, kw_only=True):
    queued: int = 0
    dispatched: int = 0
    segments_sent: int = 0
    segments_accepted: int = 0
    retries: int = 0
    throttled: int = 0
    rejected: int = 0
    failed: int = 0
    expired: int = 0
    submitted_messages: int = 0
    receipts: int = 0
    receipts_matched: int = 0
    receipts_unmatched: int = 0
    receipts_duplicate: int = 0
    receipts_early: int = 0
    mo: int = 0
    alerts: int = 0  # alert_notification (no answer is due)


class ReceiptScope:
    """Channels bound to the same SMSC account (host, port, system_id) share receipts: the
    SMSC may deliver a receipt on any receiver bind of the account, so a receipt that one
    channel cannot match is looked up in its siblings, running or configured before."""

    def __init__(self) -> None:
        self.names: set[str] = set()  # every channel name ever configured on the account
        self.members: list[Channel] = []  # the running ones
        # False only when no member holds an early receipt (Channel._early): then a
        # submit_sm_resp need not look for one (set by _hold_early, cleared when seen empty)
        self.early_held = False
        # Segments a journaled receipt made final whose store op has not committed yet: id
        # key -> journal seq. Memory has forgotten them and the store still says
        # `submitted`, so another receipt for one (a retransmission, a sibling bind) is a
        # duplicate, not a match found in the store. Pruned as the store commits.
        self.settling: dict[str, int] = {}
        self._settling_order: deque[tuple[int, list[str]]] = deque()  # (seq, its keys)

    def settle(self, keys: list[str], seq: int) -> None:
        """The receipts of journal frame `seq` made the segments of `keys` final."""
        if keys:
            self.settling.update(dict.fromkeys(keys, seq))
            self._settling_order.append((seq, keys))

    def prune_settled(self, committed: int) -> None:
        """Forget the keys whose store op has committed (journal seq <= `committed`)."""
        order = self._settling_order
        settling = self.settling
        while order and order[0][0] <= committed:
            seq, keys = order.popleft()
            for key in keys:
                if settling.get(key) == seq:
                    del settling[key]


class Channel:
    def __init__(
        self,
        cfg: ChannelConfig,
        store: Store,
        *,
        scope: ReceiptScope | None = None,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.cfg = cfg
        # `on_submitting_recovery = "unknown"`: the SUBMITTING move is committed before the
        # submit_sm leaves; with "resubmit" it stays in memory (see _mark_submitting).
        self._stores_submitting = cfg.on_submitting_recovery == "unknown"
        self.name = cfg.name
        self.store = store
        self._templates = SubmitTemplates(cfg)
        self.queue: Lanes[Job] = Lanes()
        self.stats = ChannelStats()
        self.log = log.bind(channel=cfg.name)
        self.scope = scope or ReceiptScope()
        self.scope.names.add(cfg.name)
        self.scope.members.append(self)
        self._wall = clock or _wall_clock
        self._rng = rng or random.Random()
        now = trio.current_time()
        self.rate = AdaptiveRate(TokenBucket(cfg.tps, cfg.bucket_depth, now), now)
        self.refs = T.ReferenceCounter()
        self.clients: list[EsmeClient] = []
        self._client_scopes: dict[EsmeClient, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None
        self._retry_heap: list[tuple[float, int, Job]] = []
        self._retry_wake = trio.Event()
        self._tiebreak = itertools.count()
        # receipt matching: id_key -> (job, segment index), for submitted segments
        self._by_key: dict[str, tuple[Job, int]] = {}
        # The receipt key of each SMSC message id accepted lately (raw id -> receipt_id_key),
        # kept while both of the channel's id formats are one: the receipt names the id as
        # the submit_sm_resp did, and its key is then found here, not computed again (~4k
        # instructions: int() and str() of the id). A pure function's results: any entry is
        # right while the formats stay, so the memo is simply emptied when it is full and
        # on retune.
        self._key_of: dict[str, str] = {}
        # The gateway's receipt journal, once it takes frames (after a restart's replay);
        # None: receipt batches are acknowledged after their commit.
        self.journal: ReceiptJournal | None = None
        self._awaiting: dict[str, Job] = {}  # message id -> job waiting for receipts
        # receipts ahead of their resp: id key -> (segment state, error code, held since,
        # text)
        self._early: dict[str, tuple[str, str | None, float, str]] = {}
        self._inflight = 0  # segments sent, response pending
        self._sending = 0  # jobs a dispatcher is handing to the ESME right now
        # on_submitting_recovery = "unknown": jobs whose SUBMITTING move is (being) committed
        # and which no dispatcher has sent yet (message id -> job)
        self._recorded: dict[str, Job] = {}
        self._draining = False
        self._stopped = trio.Event()
        self.down_since: float | None = trio.current_time()

    # ---- status ------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        return any(c.can_submit for c in self.clients)

    def snapshot(self) -> dict:
        return {
            "name": self.name,
            "up": self.up,
            "binds": [
                {"bound": c.bound, "last_error": c.last_error, **msgspec.structs.asdict(c.stats)}
                for c in self.clients
            ],
            "queue": dict(zip(("otp", "notification", "marketing"), self.queue.lengths())),
            "inflight_segments": self._inflight,
            "awaiting_receipts": len(self._awaiting),
            "retry_scheduled": len(self._retry_heap),
            "rate": {"configured": self.cfg.tps, "effective": self.rate.effective_rate},
            **msgspec.structs.asdict(self.stats),
        }

    # ---- life cycle ----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for _ in range(self.cfg.binds):
                    self._start_client()
                nursery.start_soon(self._retry_loop)
                nursery.start_soon(self._housekeeping)
                task_status.started()
                await self._stopped.wait()
                nursery.cancel_scope.cancel()
        finally:
            if self in self.scope.members:
                self.scope.members.remove(self)

    def _start_client(self) -> None:
        assert self._nursery is not None
        idx = len(self.clients)
        client = EsmeClient(
            self.cfg.esme_settings(), on_deliver=self._on_deliver, name=f"{self.name}#{idx}"
        )
        client.on_window_free = partial(self._refill, client)
        client.on_accepted = self._on_accepted
        client.read_receipts = True  # receipts come read to their outcome (ReadOutcome, _on_deliver)
        self.clients.append(client)
        self._nursery.start_soon(self._client_life, client)

    async def _client_life(self, client: EsmeClient) -> None:
        with trio.CancelScope() as scope:
            self._client_scopes[client] = scope
            async with trio.open_nursery() as n:
                n.start_soon(client.run)
                n.start_soon(self._dispatch, client)
        self._client_scopes.pop(client, None)

    async def _stop_client(self, client: EsmeClient) -> None:
        await client.close()
        scope = self._client_scopes.get(client)
        if scope is not None:
            scope.cancel()
        if client in self.clients:
            self.clients.remove(client)

    def retune(self, cfg: ChannelConfig) -> None:
        """Apply limits in place: TPS, burst, window, number of binds, formats, policies."""
        assert cfg.name == self.name and cfg.connection_key() == self.cfg.connection_key()
        old = self.cfg
        self.cfg = cfg
        self._stores_submitting = cfg.on_submitting_recovery == "unknown"
        self._templates = SubmitTemplates(cfg)
        self._key_of.clear()  # the formats may have changed
        self.rate.configure(cfg.tps, cfg.bucket_depth, trio.current_time())
        for c in self.clients:
            c.set_window(cfg.window)
        if self._nursery is not None:
            while len(self.clients) < cfg.binds:
                self._start_client()
            for client in self.clients[cfg.binds :]:
                self._nursery.start_soon(self._stop_client, client)
        self.log.info("channel_retuned", tps=cfg.tps, window=cfg.window, binds=cfg.binds, old_tps=old.tps)

    async def drain_and_stop(self, timeout: float = 10.0) -> list[Job]:
        """Stop taking new work, let in-flight segments finish (bounded), unbind, and return
        the jobs still queued or scheduled for retry, so the caller can reroute them."""
        self._draining = True
        with trio.move_on_after(timeout):
            # A job half-sent by a dispatcher ends in the retry heap or in flight: wait for
            # both, so what is returned below really is everything left.
            while self._inflight or self._sending:
                await trio.sleep(0.02)
        async with trio.open_nursery() as n:
            for c in list(self.clients):
                n.start_soon(c.close)
        left = self._take_back_recorded()
        left += self.queue.drain()
        left += [job for _, _, job in self._retry_heap]
        self._retry_heap.clear()
        self._stopped.set()
        return left

    # ---- intake ------------------------------------------------------------------------

    def enqueue(self, job: Job, *, front: bool = False) -> None:
        if self._draining:
            raise RuntimeError(f"channel {self.name} is draining")
        job.record.channel = self.name
        self.queue.put(job, job.record.priority, front=front)
        self.stats.queued += 1

    def enqueue_new(self, jobs: list[Job], priority: int) -> None:
        """`enqueue` of messages just stored at intake, all of `priority` (one request: one
        category) and already recorded on this channel: one lane append for the lot."""
        if self._draining:
            raise RuntimeError(f"channel {self.name} is draining")
        self.queue.put_many(jobs, priority)
        self.stats.queued += len(jobs)

    def take_queued(self) -> list[Job]:
        """Remove everything waiting in the queue (failover moves it elsewhere)."""
        return self.queue.drain()

    async def apply_stored_receipts(self) -> int:
        """After a restart: receipts stored unmatched (they overtook their submit_sm_resp and
        the process stopped before linking them) that name a segment this channel now holds
        for its receipts. They were acknowledged, so the SMSC will not send them again: link
        and apply them. Returns how many were applied."""
        jobs = [j for j in self._awaiting.values() if any(s.id_key for s in j.segments)]
        if not jobs:
            return 0
        # a receipt cannot be older than the earliest submit it could answer
        since = min((s.submitted_at for j in jobs for s in j.segments if s.submitted_at), default=0.0)
        applied = 0
        now = self._wall()
        for r in await self.store.unmatched_receipts(self.name, since - 60.0):
            found = self._by_key.get(r.id_key) if r.id_key and r.state is not None else None
            if found is None:
                continue
            job, idx = found
            seg = job.segments[idx]
            if seg.state in SEGMENT_FINAL:  # one receipt per segment (the first stored)
                continue
            # As when the resp claims an early receipt (_on_result): linked, and applied
            # by the segment's new version (its text with it), then the message's move.
            self.store.match_receipt_nowait(self.name, r.id_key, seg.message_id, seg.seq)
            self._apply_receipt(job, idx, r.state, r.error_code, now, r.raw)
            applied += 1
        if applied:
            await self.store.flush()  # applied when this returns, as before a crash
            self.stats.receipts_matched += applied
        return applied

    def awaiting_jobs(self) -> list[Job]:
        """Submitted messages held for their receipts (a stopped channel hands them on)."""
        return list(self._awaiting.values())

    def holds(self, job: Job) -> bool:
        """Whether this channel keeps `job` for its receipts (or its expiry) right now."""
        return self._awaiting.get(job.record.id) is job

    def release_orphan(self, job: Job) -> bool:
        """Give back an orphan kept for expiry (its channel runs again); False if it is no
        longer here (expired meanwhile)."""
        if not self.holds(job):
            return False
        del self._awaiting[job.record.id]
        return True

    def adopt_submitted(self, job: Job, *, orphan: bool = False) -> None:
        """After a restart: a submitted message whose receipts are still due. An `orphan`
        was submitted by a channel not running (removed or disabled): its receipts cannot come through
        this channel's SMSC (its SMSC ids could collide with ours, so they are not indexed);
        it is only kept to be expired when its validity has passed."""
        self._remember_for_receipts(job)
        if orphan:
            return
        for i, seg in enumerate(job.segments):
            if seg.id_key and seg.state == SegmentState.SUBMITTED:
                self._by_key[seg.id_key] = (job, i)

    # ---- submit path ---------------------------------------------------------------------

    async def _dispatch(self, client: EsmeClient) -> None:
        """One per bind: take the next job when this bind has a free slot, send it."""
        while not self._draining:
            if not await client.acquire_slot():
                return
            job = await self.queue.get()
            if self._draining:
                self.queue.put(job, job.record.priority, front=True)
                return
            if self._stores_submitting:
                await self._dispatch_recorded(client, job)
                continue
            now = self._wall()
            if not self._expired(job, now):
                self._mark_submitting(job, now)
                await self._submit_job(client, job, now)
            self._burst(client)

    def _refill(self, client: EsmeClient) -> None:
        """The bind's reader freed window slots: fill them now (EsmeClient.on_window_free),
        unless every submit must be recorded as `submitting` first (_dispatch_recorded), or
        a dispatcher is in the middle of a job (`_sending`: a multipart message waiting for
        a slot or a token for its next segment). The burst would take every freed slot
        and the reader would not wake that dispatcher, so later one-segment messages
        would overtake the rest of the multipart one for as long as any were queued
        (found by review). The reader wakes the dispatcher instead, and after the job its
        own _burst fills the window, as before the refill existed."""
        if not self._stores_submitting and not self._sending:
            self._burst(client)

    def _burst(self, client: EsmeClient) -> None:
        """Send queued single-segment jobs while this bind has window room and the bucket
        has tokens, without awaiting: under load the window refills in bursts (a read of
        responses frees many slots), and the awaits of the general path (a slot, the queue,
        the send) cost ~3 us of task machinery per message. Anything else (multipart,
        no token, no room) is left to the general path."""
        if self._stores_submitting:
            # Every submit must wait for its SUBMITTING move to commit (_dispatch_recorded).
            # A reload can switch a channel to "unknown" while a dispatcher awaits inside a
            # job; the burst that follows must not send on the old rule.
            return
        queue, bucket = self.queue, self.rate.bucket
        room = client.free_slots()
        # The burst takes microseconds: one reading of each clock for all of it.
        clock = trio.current_time()
        now = self._wall()
        submit = client.submit_nowait
        stats = self.stats
        templates = self._templates
        while room > 0 and not self._draining:
            job = queue.peek()
            if job is None or len(job.segments) != 1 or job.segments[0].state != _PENDING:
                return
            if not bucket.try_take(1, clock):
                return
            queue.get_nowait()
            room -= 1
            rec = job.record
            if rec.expires_at <= now and self._expired(job, now):
                continue
            # _mark_submitting inlined (SUBMITTING is not stored first here: above)
            rec.attempts += 1
            rec.state = _SUBMITTING
            rec.updated_at = now
            stats.dispatched += 1
            pdus = job.pdus
            if pdus is None:
                # _prepare's usual case inlined: one PDU from the templates
                try:
                    pdus = templates.pdus(rec, rec.concat_ref or 0, now)
                except (T.TextError, P.PduError):
                    pdus = None
                if pdus is None or len(pdus) != 1:
                    if not self._prepare(job, now):  # rejects it, with the reason
                        continue
                    pdus = job.pdus
                else:
                    job.pdus = pdus
            if job.outcomes:  # a retry: the last attempt's outcomes go (a first: empty)
                job.outcomes = {}
            job.pending = 1
            # _send_one inlined
            # (timeout None: the client's; now: the burst's clock reading. Positional: a
            # keyword argument costs ~200 instructions more per call.)
            if submit(pdus[0], _Sent(self, job, 0), None, clock):  # type: ignore[index]
                self._inflight += 1
                stats.segments_sent += 1
            else:
                self._on_result(job, 0, SubmitResult(Outcome.NOT_SENT))

    async def _dispatch_recorded(self, client: EsmeClient, first: Job) -> None:
        """Dispatch for `on_submitting_recovery = "unknown"`: the SMSC must never get a
        message the store does not know is being submitted, or a crash right after the
        submit would resend it (a duplicate) instead of marking it unknown. So the
        SUBMITTING moves are committed before the PDUs leave: this job and what else is
        queued share one commit, as many as can leave at once (free rate tokens, at most a
        window), so few jobs wait recorded-but-unsent. Those that do are in `_recorded`:
        a drain takes them back to `queued` (they were never sent) and returns them."""
        room = min(client.settings.window, max(1, int(self.rate.bucket.tokens(trio.current_time()))))
        jobs = [first]
        while len(jobs) < room:
            more = self.queue.get_nowait()
            if more is None:
                break
            jobs.append(more)
        now = self._wall()
        jobs = [job for job in jobs if not self._expired(job, now)]
        for job in jobs:
            self._mark_submitting(job, now)
            self._recorded[job.record.id] = job
        delay = 0.05
        while not self._draining:
            try:
                await self.store.flush()
                break
            except Unavailable as e:
                # The SUBMITTING moves stay queued in the store (it retries them); the jobs
                # wait here, so nothing is added to the store's queue while it fails.
                self.log.warning("submitting_not_recorded", error=str(e), jobs=len(jobs), retry_in=delay)
                await trio.sleep(delay)
                delay = min(delay * 2, 5.0)
        for job in jobs:
            # The check and the pop come before any await: a drain either sees the job in
            # `_recorded` or in flight (`_sending`), never neither.
            if self._draining or self._recorded.pop(job.record.id, None) is None:
                return
            await self._submit_job(client, job, self._wall())

    def _take_back_recorded(self) -> list[Job]:
        """Jobs recorded as `submitting` that no dispatcher sent: back to `queued`."""
        jobs = list(self._recorded.values())
        self._recorded.clear()
        for job in jobs:
            job.record.attempts -= 1
            self._set_state(job, State.QUEUED, attempts=job.record.attempts)
        return jobs

    def _expired(self, job: Job, now: float) -> bool:
        if job.record.expires_at > now:
            return False
        self._finish(job, State.EXPIRED, error="validity period passed before submission")
        self.stats.expired += 1
        return True

    def _mark_submitting(self, job: Job, now: float) -> None:
        rec = job.record
        rec.attempts += 1
        if self._stores_submitting:
            self._set_state(job, _SUBMITTING, attempts=rec.attempts)
        else:
            # Not stored: after a crash a stored SUBMITTING would be resubmitted exactly as
            # the stored QUEUED is, so the store learns of this attempt with its outcome
            # (submitted_nowait via SUBMITTING, or the final state): one write, not two.
            rec.state = _SUBMITTING
            rec.updated_at = now
        self.stats.dispatched += 1

    def _submitted(self, job: Job, segments: list[SegmentRecord]) -> None:
        """The SMSC accepted every segment: store the move (and `segments`' versions)."""
        rec = job.record
        rec.state = _SUBMITTED
        rec.updated_at = now = self._wall()
        self.store.submitted_nowait(
            rec.id,
            now=now,
            channel=rec.channel,
            attempts=rec.attempts,
            segments=segments,
            via=None if self._stores_submitting else _SUBMITTING,
        )

    async def _submit_job(self, client: EsmeClient, job: Job, now: float) -> None:
        self._sending += 1
        try:
            await self._send_segments(client, job, now)
        finally:
            self._sending -= 1

    def _prepare(self, job: Job, now: float) -> bool:
        """The job's submit_sm PDUs (kept for its retries in this attempt); False if its
        text cannot be encoded, or this channel splits it into another number of segments
        than it was accepted with (then it is rejected)."""
        if job.pdus is None:
            rec = job.record
            try:
                pdus = self._templates.pdus(rec, rec.concat_ref or 0, now)
            except (T.TextError, P.PduError) as e:
                self._finish(job, State.REJECTED, error_code="encoding", error=str(e))
                self.stats.rejected += 1
                return False
            if len(pdus) != len(job.segments):
                # The segments were fixed at intake for the first channel; this one's text
                # settings (concatenation, allow_latin1) split the text differently. Sending
                # would skip parts or index past the PDUs: refuse the message instead.
                self._finish(
                    job,
                    State.REJECTED,
                    error_code="segmentation_changed",
                    error=(
                        f"channel {self.name} splits the message into {len(pdus)} segment(s), "
                        f"it was accepted as {len(job.segments)}"
                    ),
                )
                self.stats.rejected += 1
                return False
            job.pdus = pdus
        return True

    def _send_one(self, client: EsmeClient, job: Job, i: int) -> None:
        """Send segment i now (a slot and a token are taken already)."""
        assert job.pdus is not None
        if not client.submit_nowait(job.pdus[i], _Sent(self, job, i)):
            self._on_result(job, i, SubmitResult(Outcome.NOT_SENT))
            return
        self._inflight += 1
        self.stats.segments_sent += 1

    async def _send_segments(self, client: EsmeClient, job: Job, now: float) -> None:
        """Send the job's pending segments (marked SUBMITTING already)."""
        if not self._prepare(job, now):
            return
        to_send = [
            i for i, seg in enumerate(job.segments) if seg.state == SegmentState.PENDING
        ]
        job.outcomes = {}
        job.pending = len(to_send)
        bucket = self.rate.bucket
        for i in to_send:
            # try_take costs ~0.3 us, an awaited take() ~8 us of scheduling: ask first.
            if not bucket.try_take(1, trio.current_time()):
                await self.rate.take()
            if not await client.acquire_slot(wait_for_bind=False):
                self._on_result(job, i, SubmitResult(Outcome.NOT_SENT))
                continue
            self._send_one(client, job, i)

    def _on_accepted(self, done: list[tuple[_Sent, str]]) -> None:
        """The segments a bind's read saw accepted (EsmeClient.on_accepted): the common case
        of _on_result + _attempt_done inlined for one-segment messages, in the reader's
        step. A multipart message, or any while early receipts are held (one may be for
        these), goes the general way."""
        if self.scope.early_held:
            for sent, message_id in done:
                sent(SubmitResult(_ACCEPTED, 0, message_id))
            return
        now = self._wall()
        stats = self.stats
        rate = self.rate
        name = self.name
        id_format = self.cfg.message_id_format
        key_of = self._key_of if id_format == self.cfg.receipt_id_format else None
        by_key = self._by_key
        via = None if self._stores_submitting else _SUBMITTING
        accepted: list[tuple[MessageRecord, SegmentRecord]] = []  # stored as one op, below
        awaiting = self._awaiting
        fast = 0
        for sent, message_id in done:
            job = sent.job
            segs = job.segments
            if len(segs) != 1:
                sent(SubmitResult(_ACCEPTED, 0, message_id))
                continue
            fast += 1
            self._inflight -= 1
            if rate.backing_off:  # else on_success has nothing to do
                rate.on_success(trio.current_time())
            seg = segs[0]
            seg.state = _SEG_SUBMITTED
            seg.channel = name
            seg.smsc_message_id = message_id
            seg.submit_status = 0
            seg.submitted_at = now
            key = seg.id_key = receipt_id_key(message_id, id_format)
            if key:
                by_key[key] = (job, 0)
                if key_of is not None:
                    key_of[message_id] = key
            job.pending = 0
            # The attempt is over: _attempt_done's one-segment case.
            rec = job.record
            rec.submitted_at = now
            rec.state = _SUBMITTED
            rec.updated_at = now
            job.pdus = None  # only a retry would send them again; a new attempt rebuilds
            if job.outcomes:
                job.outcomes.clear()
            accepted.append((rec, seg))
            awaiting[rec.id] = job  # _remember_for_receipts, its bound kept once below
        if len(awaiting) > AWAITING_RECEIPTS_MAX:
            self._forget_oldest()
        if accepted:
            try:
                self.store.submitted_many_nowait(accepted, now=now, via=via)
            except Exception:  # (a closed store) the read's results still apply in memory
                self.log.exception("result_callback_failed")
        stats.segments_accepted += fast
        stats.submitted_messages += fast
        if key_of is not None and len(key_of) > _KEY_MEMO:
            key_of.clear()

    def _on_result(self, job: Job, idx: int, result: SubmitResult) -> None:
        """Called once per segment submit (in the ESME reader task): no awaiting here."""
        outcome = result.outcome
        if outcome is not _NOT_SENT:
            self._inflight -= 1
        job.outcomes[idx] = result
        now = self._wall()
        seg = job.segments[idx]
        if outcome is _ACCEPTED:
            self.stats.segments_accepted += 1
            if self.rate.backing_off:  # else on_success has nothing to do
                self.rate.on_success(trio.current_time())
            seg.state = _SEG_SUBMITTED
            seg.channel = self.name
            seg.smsc_message_id = result.message_id or ""
            seg.submit_status = 0
            seg.submitted_at = now
            key = receipt_id_key(seg.smsc_message_id, self.cfg.message_id_format)
            seg.id_key = key
            if key and self.cfg.message_id_format == self.cfg.receipt_id_format:
                key_of = self._key_of
                if len(key_of) >= _KEY_MEMO:
                    key_of.clear()
                key_of[seg.smsc_message_id] = key
            if len(job.segments) > 1:  # one segment: its version goes with the move
                self.store.update_segment_nowait(seg)
            if key:
                self._by_key[key] = (job, idx)
                early = None
                scope = self.scope
                if scope.early_held:
                    for ch in scope.members:  # it may have come on a sibling's bind
                        early = ch._early.pop(key, None)
                        if early is not None:
                            break
                    else:
                        scope.early_held = any(ch._early for ch in scope.members)
                if early is not None:
                    # Its receipt came first and is stored (unmatched): link and apply it now.
                    self.store.match_receipt_nowait(self.name, key, seg.message_id, seg.seq)
                    self.stats.receipts_matched += 1
                    self.stats.receipts_unmatched -= 1
                    seg_state, error_code, _, raw = early
                    self._apply_receipt(job, idx, seg_state, error_code, now, raw)
        elif result.throttled:
            self.stats.throttled += 1
            self.rate.on_throttled(trio.current_time())
        job.pending -= 1
        if job.pending == 0:
            self._attempt_done(job, now)

    def _attempt_done(self, job: Job, now: float) -> None:
        outcomes = job.outcomes
        if len(job.segments) == 1 and job.segments[0].state == _SEG_SUBMITTED:
            # The common case, the general path below inlined: one segment, accepted.
            self.stats.submitted_messages += 1
            job.record.submitted_at = now
            job.pdus = None  # only a retry would send them again; a new attempt rebuilds
            job.outcomes.clear()  # drops the submit_sm_resp while the job awaits its receipt
            self._submitted(job, job.segments)  # the segment's version goes with the move
            self._remember_for_receipts(job)
            return
        rejected = [r for r in outcomes.values() if r.outcome is Outcome.REJECTED]
        if rejected:
            r = rejected[0]
            for i, res in outcomes.items():
                if res.outcome is Outcome.REJECTED:
                    seg = job.segments[i]
                    seg.state = SegmentState.REJECTED
                    seg.submit_status = res.status
                    self.store.update_segment_nowait(seg)
            self.stats.rejected += 1
            self._finish(job, State.REJECTED, error_code=status_name(r.status), error="refused by SMSC")
            return
        if all(seg.state != SegmentState.PENDING for seg in job.segments):
            self.stats.submitted_messages += 1
            job.record.submitted_at = now
            self._submitted(job, [])  # the segments' versions are queued already
            self._remember_for_receipts(job)
            # Receipts that raced ahead of their resps may have completed it already.
            self._check_complete(job)
            return
        # Some segments must be sent again (retryable outcomes).
        if job.record.attempts >= self.cfg.max_attempts:
            reasons = sorted({r.reason for r in outcomes.values() if r.outcome is not Outcome.ACCEPTED})
            self.stats.failed += 1
            self._finish(job, State.FAILED, error_code="attempts_exhausted", error=", ".join(reasons))
            return
        if job.record.expires_at <= now:
            self.stats.expired += 1
            self._finish(job, State.EXPIRED, error="validity period passed while retrying")
            return
        self.stats.retries += 1
        job.pdus = None  # rebuilt at the next attempt: the relative validity has shrunk
        if self._stores_submitting:
            self._set_state(job, _QUEUED)
        else:  # the store has it queued still (SUBMITTING was not stored)
            job.record.state = _QUEUED
        delay = min(RETRY_MAX, RETRY_BASE * 2 ** (job.record.attempts - 1))
        delay *= 0.5 + self._rng.random() / 2
        heapq.heappush(self._retry_heap, (trio.current_time() + delay, next(self._tiebreak), job))
        self._retry_wake.set()

    async def _retry_loop(self) -> None:
        while True:
            if not self._retry_heap:
                await self._retry_wake.wait()
                self._retry_wake = trio.Event()
                continue
            due = self._retry_heap[0][0]
            now = trio.current_time()
            if due > now:
                with trio.move_on_after(due - now):
                    await self._retry_wake.wait()
                self._retry_wake = trio.Event()
                continue
            _, _, job = heapq.heappop(self._retry_heap)
            if self._draining:
                self._retry_heap.append((due, next(self._tiebreak), job))
                return
            self.queue.put(job, job.record.priority, front=True)

    # ---- state bookkeeping -----------------------------------------------------------------

    def _set_state(
        self,
        job: Job,
        state: State,
        *,
        attempts: int | None = None,
        error_code: str | None = None,
        error: str | None = None,
    ) -> None:
        rec = job.record
        rec.state = state
        rec.updated_at = now = self._wall()
        self.store.set_state_nowait(
            rec.id, state, now=now, channel=rec.channel, attempts=attempts, error_code=error_code, error=error
        )

    def _finish(self, job: Job, state: State, *, error_code: str | None = None, error: str | None = None) -> None:
        rec = job.record
        rec.error_code, rec.error = error_code, error
        rec.done_at = self._wall()
        self._set_state(job, state, error_code=error_code, error=error)
        self._forget(job)

    def _remember_for_receipts(self, job: Job) -> None:
        self._awaiting[job.record.id] = job
        if len(self._awaiting) > AWAITING_RECEIPTS_MAX:
            self._forget_oldest()

    def _forget_oldest(self) -> None:
        """Keep at most AWAITING_RECEIPTS_MAX jobs awaiting receipts in memory: the oldest
        go first (dicts keep insertion order); the store still matches their receipts."""
        awaiting = self._awaiting
        while len(awaiting) > AWAITING_RECEIPTS_MAX:
            old = awaiting.pop(next(iter(awaiting)))
            for seg in old.segments:
                if seg.id_key:
                    self._by_key.pop(seg.id_key, None)

    def _forget(self, job: Job) -> None:
        self._awaiting.pop(job.record.id, None)
        for seg in job.segments:
            if seg.id_key and self._by_key.get(seg.id_key, (None,))[0] is job:
                del self._by_key[seg.id_key]

    def _check_complete(self, job: Job) -> None:
        """Move a submitted job whose segments say final (message_state_from_segments) to
        that state, queued in the store; a failure with the receipt error of the segment
        that decided it."""
        if job.record.state is not _SUBMITTED:
            return
        segs = job.segments
        final = message_state_from_segments([s.state for s in segs])
        if final is not None:
            rec = job.record
            error_code = (
                None if final is _DELIVERED else _deciding_error((s.state, s.receipt_error) for s in segs)
            )
            if error_code is not None:
                rec.error_code = error_code
            rec.done_at = self._wall()
            self._set_state(job, final, error_code=error_code)
            self._forget(job)

    def _moved(self, job: Job, final: State, error_code: str | None, at: float) -> None:
        """In memory only: the move to `final` committed with its receipts at `at`
        (`error_code` None leaves the record's alone, as the store does)."""
        rec = job.record
        rec.state = final
        if error_code is not None:
            rec.error_code = error_code
        rec.done_at = rec.updated_at = at
        self._forget(job)

    def _expire_queued(self, now: float) -> None:
        """Expire the queued messages whose validity has passed (the channel is down)."""
        queue = self.queue
        if not any(job.record.expires_at <= now for job in queue):
            return
        for job in queue.drain(lambda job: job.record.expires_at > now):
            self._expired(job, now)  # finishes it EXPIRED, as a dispatcher would

    async def _housekeeping(self) -> None:
        """Expire submitted messages whose receipts never came, and, while the channel is
        down, queued messages whose validity passed; track channel up/down."""
        while True:
            await trio.sleep(1.0)
            now = self._wall()
            if self.up:
                self.down_since = None
            else:
                if self.down_since is None:
                    self.down_since = trio.current_time()
                # No dispatcher takes them (where expiry is checked): expire them here.
                self._expire_queued(now)
            late = [
                j
                for j in list(self._awaiting.values())[:10_000]
                if j.record.expires_at + 3600 <= now and j.record.state is State.SUBMITTED
            ]
            for job in late:
                for seg in job.segments:
                    if seg.state == SegmentState.SUBMITTED:
                        seg.state = SegmentState.EXPIRED
                        self.store.update_segment_nowait(seg)
                self.stats.expired += 1
                self._finish(job, State.EXPIRED, error="no receipt within the validity period")

    # ---- receipts and MO -----------------------------------------------------------------

    async def _on_deliver(self, pdus: list[P.Pdu | ReadOutcome]) -> list[int]:
        """One batch of deliver_sm from a bind: receipts are read, matched, made durable
        (take_receipts), then applied; the ESME acknowledges them after this returns. The
        usual receipt comes read to its outcome by the session already, as a ReadOutcome
        tuple (its sequence number, then what receipt_outcome gives)."""
        now = self._wall()
        receipts: list[Receipt] = []
        id_format = self.cfg.receipt_id_format
        # (an empty memo if the formats differ: _on_accepted and _on_result fill it only
        # when they are one)
        key_of = self._key_of
        for pdu in pdus:
            if type(pdu) is tuple:  # a receipt: read_receipt_outcome reads flagged ones only
                _seq, raw_id, state, error_code, intermediate, text = pdu
            else:
                outcome = receipt_outcome(pdu)
                if outcome is None:
                    if pdu.command_id == _ALERT_NOTIFICATION:  # a handset is reachable again
                        self.stats.alerts += 1
                    else:
                        self.stats.mo += 1
                        self.log.info("mo_received", command=pdu.command_name)
                    continue
                raw_id, state, error_code, intermediate, text = outcome
            receipts.append(
                (  # a Receipt (gateway.store.records): no ReceiptRecord unless it needs a row
                    raw_id or "",
                    (key_of.pop(raw_id, None) or receipt_id_key(raw_id, id_format)) if raw_id else "",
                    # The segment state it reports, None for none: an intermediate
                    # notification (esm_class 0x20) reports progress, not an outcome
                    # (stored, matched, never applied: UNDELIV there means "retrying").
                    None if state is None or intermediate else RECEIPT_SEGMENT_STATE.get(state),
                    error_code,
                    text,
                )
            )
        if receipts:
            await self.take_receipts(receipts, now)
        return [CommandStatus.ESME_ROK] * len(pdus)

    async def take_receipts(
        self,
        receipts: list[Receipt],
        now: float,
        *,
        replayed: int | None = None,
        targets: dict[str, tuple[Channel, Job, int]] | None = None,
        channel: str | None = None,
    ) -> None:
        """Match receipts of this channel (`state`: the segment state each reports, None for
        none), received at `now`, to their segments, store them with their effects and apply
        them. Durable when this returns: in the receipt journal (then stored by the next
        group commit) or, with no journal, committed. `replayed`: the journal frame they
        come from (a restart's replay, gateway.service): stored under its seq, not journaled
        again. `targets`: a replay's receipts of a channel not running any more (`channel`,
        its name), matched only there (by id_key: the segments of the messages it left,
        which running channels keep as orphans).

        Where each is stored (store v7; docs/architecture.md, "Receipts in their segment's
        row"):
        - one that settles its segment (matched, reports a final state): its text in the
          segment's row, written with its state (SegmentReceipt.receipt), no row of its own;
        - one that settles nothing at once: a row of the receipts table (ReceiptRecord).
          Unmatched ones, kept for audits and for apply_stored_receipts; those that overtook
          their submit_sm_resp are linked to their segment when it lands (and their text
          goes into it as they are applied, _on_result). Matched ones that report no state
          (an intermediate notification, ENROUTE, a stat the gateway does not know), linked
          to their segment: the SMSC's account of what happened in between, which an
          operator asking "why so late" wants;
        - duplicates, none: a second receipt for a segment that is final or being made
          final (an SMSC's retransmission when our deliver_sm_resp was late or lost, a
          sibling bind's copy; counted in stats.receipts_duplicate). Their effect is nil and
          a retransmitted window would be a window of rows; the receipt that settled the
          segment is in its row. They are not journaled either (a replay would match them
          again against a store that has not committed the first).
        """
        name = self.name if channel is None else channel
        rows: list[ReceiptRecord] = []  # the receipts table's
        kept: list[Receipt] = []  # every receipt stored (rows and settling ones): the frame
        to_apply: list[ReceiptEffect] = []
        seen: set[str] = set()
        settling = self.scope.settling
        if settling and self.journal is not None:
            self.scope.prune_settled(self.journal.committed_seq)
        stats = self.stats
        by_key = self._by_key
        for receipt in receipts:
            stats.receipts += 1
            smsc_id, key, seg_state, error_code, raw = receipt
            if key in settling:  # made final by a receipt the store has not committed yet
                stats.receipts_duplicate += 1
                continue
            found = by_key.get(key) if targets is None and key else None  # this channel's own, mostly
            if found is not None:
                owner = self
                job, idx = found
            else:
                if targets is None:
                    target = self._in_memory(key) if key else None
                    if target is None and key and key not in self._early:
                        target = await self._find_in_store(key)
                        # The resp may have landed (on another bind) while the store was read.
                        target = target or self._in_memory(key)
                else:
                    target = targets.get(key) if key else None
                if target is None:
                    stats.receipts_unmatched += 1
                    rows.append(receipt_record(name, now, receipt))
                    kept.append(receipt)
                    if targets is None and key and seg_state is not None and key not in self._early:
                        # Probably ahead of its submit_sm_resp: hold it for the resp to claim.
                        stats.receipts_early += 1
                        self._hold_early(key, seg_state, error_code, raw, now)
                    else:
                        self.log.warning("receipt_unmatched", smsc_message_id=smsc_id)
                    continue
                owner, job, idx = target
            seg = job.segments[idx]
            in_flight = job.receipts_in_flight
            if (
                seg.state in SEGMENT_FINAL
                or (seg_state is not None and key in seen)
                # another batch is storing a receipt for it
                or (in_flight is not None and idx in in_flight)
                or (job.final_move is not None and len(job.segments) == 1)
            ):
                stats.receipts_duplicate += 1
                continue
            if seg_state is not None:
                seen.add(key)
                to_apply.append((owner, job, idx, seg_state, error_code, raw))
            else:
                rows.append(receipt_record(name, now, receipt, seg.message_id, seg.seq))
            kept.append(receipt)
            stats.receipts_matched += 1
        if replayed is not None:
            # Queued even when nothing is left to store: the journal's mark passes the frame.
            segments, moves = _receipt_effects(to_apply, now)
            self.store.record_receipts_nowait(rows, segments=segments, moves=moves, journal_seq=replayed)
            self._apply_stored(to_apply, moves, now)
        elif kept:
            await self._store_receipts(rows, to_apply, now, frame=kept)

    async def _store_receipts(
        self,
        records: list[ReceiptRecord],
        to_apply: list[ReceiptEffect],
        now: float,
        *,
        frame: list[Receipt],
    ) -> None:
        """Store receipts (`records`: the receipts table's rows; `to_apply`: those that
        settle their segment) with their effects in one store op, apply the effects in
        memory, and return once they are durable.

        With the receipt journal (if the gateway runs one): the batch's receipts (`frame`,
        all of them) become a journal frame, its store op is queued under the frame's seq,
        its effects are applied at once, and this returns when the frame is synced: the
        SMSC's deliver_sm_resp does not wait for the store's group commit (tens of ms under
        load, and the SMSC keeps at most a window of receipts unanswered). A restart
        replays the frames above the store's mark (gateway.service, docs/architecture.md
        "Receipt journal").

        Without it: one commit, awaited, then the effects are applied. Batches of several
        binds are stored concurrently: each one's effects are computed over the receipts
        the others are storing (Job.receipts_in_flight), so whichever completes a message
        carries its final move. A batch that fails is not applied (the SMSC sends its
        receipts again) and takes back the moves it carried."""
        segments, moves = _receipt_effects(to_apply, now)
        journal = self.journal
        seq = None
        if journal is not None:
            try:
                seq = journal.reserve(encode_frame(ReceiptFrame(self.name, now, frame)))
            except JournalError as e:  # the store alone makes them durable (below)
                self.log.error("receipt_journal_unavailable", error=str(e))
        if seq is not None:
            # The frame and the op are queued in the same step: store ops follow frame order.
            self.store.record_receipts_nowait(records, segments=segments, moves=moves, journal_seq=seq)
            self.scope.settle([k for _o, job, idx, _s, _e, _r in to_apply if (k := job.segments[idx].id_key)], seq)
            self._apply_stored(to_apply, moves, now)
            try:
                await journal.synced(seq)  # type: ignore[union-attr]
            except JournalError as e:
                # Not durable in the journal: durable once the store has committed the op.
                self.log.error("receipt_journal_failed", error=str(e))
                with trio.CancelScope(shield=True, deadline=trio.current_time() + RECEIPT_COMMIT_WAIT) as wait:
                    await self.store.flush()
                if wait.cancelled_caught:  # neither journaled nor committed: not acknowledged
                    raise Unavailable(f"receipts not committed within {RECEIPT_COMMIT_WAIT:.0f} s") from e
            return
        try:
            # Shielded (bounded): a cancelled wait does not cancel the store's op, which
            # commits anyway, so giving the moves back on a cancellation (a bind closing
            # while the batch commits) made memory disagree with the store, and the SMSC's
            # second copy of the receipt then stored a second final move (refused).
            with trio.CancelScope(shield=True, deadline=trio.current_time() + RECEIPT_COMMIT_WAIT) as wait:
                await self.store.record_receipts(records, segments=segments, moves=moves)
            if wait.cancelled_caught:
                raise Unavailable(f"receipts not committed within {RECEIPT_COMMIT_WAIT:.0f} s")
        except BaseException:
            moved = {m.message_id for m in moves}
            for _owner, job, idx, _state, _error, _raw in to_apply:
                _done_in_flight(job, idx)
                if job.record.id in moved:
                    job.final_move = None
            raise
        self._apply_stored(to_apply, moves, now)

    def _apply_stored(self, to_apply: list[ReceiptEffect], moves: list[StateMove], now: float) -> None:
        """Make a stored (or queued) receipt batch's effects in memory."""
        multipart: dict[str, tuple[Channel, Job]] | None = None
        for owner, job, idx, seg_state, error_code, raw in to_apply:
            segs = job.segments
            if len(segs) == 1:
                # Most receipts: _apply_receipt(stored=True) and _moved inlined.
                seg = segs[0]
                if seg_state is None or seg.state in SEGMENT_FINAL:
                    continue
                seg.state = seg_state
                seg.receipt_error = error_code
                seg.receipt_at = now
                seg.receipt = raw
                rec = job.record
                final = job.final_move  # what its receipt batch computed and stored
                if rec.state is not _SUBMITTED or final is None:
                    if seg.id_key:
                        owner._by_key.pop(seg.id_key, None)
                    if rec.state is _SUBMITTED:
                        owner._check_complete(job)
                    continue
                rec.state = final
                if final is not _DELIVERED and error_code is not None:
                    rec.error_code = error_code
                rec.done_at = rec.updated_at = now
                owner._awaiting.pop(rec.id, None)
                if seg.id_key:
                    owner._by_key.pop(seg.id_key, None)
                continue
            if job.receipts_in_flight is not None:
                _done_in_flight(job, idx)
            owner._apply_receipt(job, idx, seg_state, error_code, now, raw, stored=True)
            if len(segs) > 1:
                if multipart is None:
                    multipart = {}
                multipart[job.record.id] = (owner, job)
        if multipart is not None:
            # A multipart message moves once all of the batch is applied: its move was
            # computed over all of it (the first failed segment, not the first applied).
            carried = {m.message_id: m for m in moves}
            for owner, job in multipart.values():
                owner._complete_multipart(job, carried.get(job.record.id), now)

    def _complete_multipart(self, job: Job, move: StateMove | None, now: float) -> None:
        """After a receipt batch is stored and applied: the move it carried for `job`
        (`move`), committed, is made in memory. Without one, the batch carrying the move
        is still being stored and makes it; if none does (it failed), memory decides."""
        if job.record.state is not _SUBMITTED:
            return
        if move is not None:
            self._moved(job, move.state, move.error_code, now)
        elif job.final_move is None and not job.receipts_in_flight:
            self._check_complete(job)

    def _hold_early(self, key: str, seg_state: str, error_code: str | None, raw: str, now: float) -> None:
        early = self._early
        # its text too: applied, it goes into the segment's row like any settling receipt's
        early[key] = (seg_state, error_code, now, raw)
        self.scope.early_held = True
        # Oldest first: forget what no resp claimed in time (it stays stored, unmatched).
        while early:
            oldest, (_, _, at, _) = next(iter(early.items()))
            if len(early) <= EARLY_RECEIPTS_MAX and at >= now - EARLY_RECEIPT_HOLD:
                break
            del early[oldest]

    def _apply_receipt(
        self,
        job: Job,
        idx: int,
        seg_state: str | None,
        error_code: str | None,
        now: float,
        raw: str,
        *,
        stored: bool = False,
    ) -> None:
        """Apply a receipt (the segment state it reports, its text `raw`) to the job in
        memory; `stored`: its effects were committed with the receipt (_receipt_effects),
        else they are queued now."""
        seg = job.segments[idx]
        if seg_state is None or seg.state in SEGMENT_FINAL:
            return
        seg.state = seg_state
        seg.receipt_error = error_code
        seg.receipt_at = now
        seg.receipt = raw
        if not stored:
            self.store.update_segment_nowait(seg)
        if seg.id_key:
            self._by_key.pop(seg.id_key, None)
        if job.record.state is _SUBMITTED:
            if not stored:
                self._check_complete(job)
            elif len(job.segments) == 1:
                final = job.final_move  # what its receipt batch computed and stored
                if final is None:
                    self._check_complete(job)
                else:
                    self._moved(job, final, None if final is _DELIVERED else error_code, now)
            # else: a multipart message moves after the whole batch (_store_receipts)

    def _in_memory(self, key: str) -> tuple[Channel, Job, int] | None:
        found = self._by_key.get(key)
        if found is not None:
            return self, *found
        for ch in self.scope.members:
            found = ch._by_key.get(key) if ch is not self else None
            if found is not None:
                return ch, *found
        return None

    async def _find_in_store(self, key: str) -> tuple[Channel, Job, int] | None:
        """A receipt for a message no running channel holds (restart, eviction, a sibling
        channel since removed): the store knows the segment by channel and id."""
        seg = None
        for name in sorted(self.scope.names, key=lambda n: n != self.name):
            seg = await self.store.find_segment(name, key)
            if seg is not None:
                break
        if seg is None:
            return None
        view = await self.store.get_view(seg.message_id)
        if view is None:
            return None
        job = self._awaiting.get(view.message.id) or Job(view.message, view.segments)
        idx = next(i for i, s in enumerate(job.segments) if s.seq == seg.seq)
        if job.record.state is _SUBMITTED:
            self._remember_for_receipts(job)
        return self, job, idx


def _receipt_effects(
    to_apply: list[ReceiptEffect], now: float
) -> tuple[list[SegmentReceipt], list[StateMove]]:
    """What a batch of matched receipts changes: the new version of each segment, and the
    final state of each submitted message whose segments are then all final, counting the
    receipts other batches are storing (several receipts of one message may share a batch,
    or be in two batches stored at once). Marks the receipts in flight and the messages
    whose final move this batch carries; Channel._apply_receipt (and, for multipart
    messages, Channel._complete_multipart) makes the changes in memory once they are
    stored. A move to a failure carries the receipt error of the segment that decided it
    (the first failed one), a move to delivered none. A receipt whose segment another batch
    made final since it was matched (while this batch read the store) is a duplicate: no
    effect, and it is not stored (take_receipts)."""
    segments: list[SegmentReceipt] = []
    states: dict[str, tuple[Job, dict[int, tuple[str, str | None]]]] = {}
    moves: list[StateMove] = []
    for _owner, job, idx, seg_state, error_code, raw in to_apply:
        seg = job.segments[idx]
        if seg_state is None or seg.state in SEGMENT_FINAL:
            continue
        segments.append(SegmentReceipt(seg.message_id, seg.seq, seg_state, error_code, now, raw))
        if len(job.segments) == 1:
            # Its receipt alone decides, and final_move marks it in flight (_on_deliver
            # counts another receipt for it as a duplicate): no in-flight dict needed.
            if job.record.state is _SUBMITTED and job.final_move is None:
                final = job.final_move = MESSAGE_STATE_OF_SEGMENT.get(seg_state)
                # a failure carries its receipt error; delivered carries none
                moves.append(StateMove(job.record.id, final, now, None if final is _DELIVERED else error_code))
            continue
        in_flight = job.receipts_in_flight
        if in_flight is None:
            in_flight = job.receipts_in_flight = {}
        in_flight[idx] = (seg_state, error_code)
        if job.record.state is _SUBMITTED and job.final_move is None:
            states[job.record.id] = (job, in_flight)
    for job, in_flight in states.values():
        # What the segments will say once this batch and those being stored commit.
        seg_states = [in_flight.get(i, (s.state, s.receipt_error)) for i, s in enumerate(job.segments)]
        final = message_state_from_segments([state for state, _ in seg_states])
        if final is not None:
            job.final_move = final
            error_code = None if final is _DELIVERED else _deciding_error(seg_states)
            moves.append(StateMove(job.record.id, final, now, error_code))
    return segments, moves


def _deciding_error(segments: Iterable[tuple[str, str | None]]) -> str | None:
    """The receipt error of the segment that made a message fail, from its segments' (state,
    receipt error): the first failed one (message_state_from_segments takes its state)."""
    for state, error in segments:
        if state in _SEGMENT_FAILED:
            return error
    return None


def _done_in_flight(job: Job, idx: int) -> None:
    """A receipt batch is settled (stored or failed): its receipt is no longer in flight."""
    in_flight = job.receipts_in_flight
    if in_flight is not None:
        in_flight.pop(idx, None)
        if not in_flight:
            job.receipts_in_flight = None



def _wall_clock() -> float:
    return time.time()
