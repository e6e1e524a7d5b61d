"""The gateway as one object: store, channels, router, tenant limits, intake, reload.

`Gateway.run()` owns the nursery in which the store writer and every channel live. The API
and the daemon talk to it only through its methods: `authenticate`, `accept`, `message`,
`apply_config`, `snapshot`, `drain`.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterable
from itertools import repeat
from operator import attrgetter, itemgetter

import msgspec
import structlog
import trio

from gateway import config as C
from gateway.api.schemas import AcceptedMessage, SendMessage
from gateway.channels import Channel, Job, ReceiptScope
from gateway.errors import (
    Conflict,
    Forbidden,
    InvalidBody,
    MessageRejected,
    NoRoute,
    Unauthorized,
    Unavailable,
)
from gateway.router import Router
from gateway.smpp import text as T
from gateway.states import State
from gateway.store.base import InsertResult, Store
from gateway.store.journal import JournalCorrupt, ReceiptJournal
from gateway.store.records import (
    PRIORITY,
    MessageRecord,
    MessageView,
    SegmentRecord,
    decode_frames,
    receipt_record,
)
from gateway.throttle import SECONDS_PER_DAY, TenantLimiter, utc_day

log = structlog.get_logger("gateway.service")

FAILOVER_AFTER = 5.0  # seconds a channel may be down before its queue moves elsewhere
INSERT_WAIT = 30.0  # seconds an intake waits for its insert, even if its caller is cancelled
DEFAULT_SENDER = "Gateway"


class _RandomPool:
    """Bytes from os.urandom drawn 4 KiB at a time (one syscall per 512 message ids)."""

    def __init__(self) -> None:
        self._bytes = b""

    def take(self, n_bytes: int) -> bytes:
        if len(self._bytes) < n_bytes:
            self._bytes += os.urandom(max(4096, n_bytes))
        out, self._bytes = self._bytes[:n_bytes], self._bytes[n_bytes:]
        return out


_random = _RandomPool()
_STATE_NAMES = {s: s.value for s in State}  # Enum .value is a descriptor call
_EXISTING = attrgetter("existing")  # InsertResult's
_HELD = State.HELD  # read per message: a global, not an Enum class attribute (~150 ns)


def new_message_ids(n: int) -> list[str]:
    """`n` time-ordered, unguessable ids: 12 hex digits of milliseconds + 16 random hex
    digits (from the OS's CSPRNG) each."""
    if n <= 0:
        return []
    prefix = f"{int(time.time() * 1000):012x}"
    # 16 hex digits per id, a space between ids; the prefix put before each and the whole
    # split on the spaces: C calls over the batch, no Python step per id.
    rand = _random.take(8 * n).hex(" ", 8)
    return (prefix + rand.replace(" ", " " + prefix)).split(" ")


def normalise_destination(raw: str) -> str | None:
    """E.164 digits without '+', or None. Spaces, dashes and dots are allowed separators."""
    if raw.isdigit() and raw.isascii() and 6 <= len(raw) <= 15 and raw[:2] != "00":
        return raw  # already in that form (most API requests): nothing to strip or cut
    s = raw.strip().replace(" ", "").replace("-", "").replace(".", "")
    if s.startswith("+"):
        s = s[1:]
    elif s.startswith("00"):
        s = s[2:]
    if not s.isdigit() or not 6 <= len(s) <= 15 or not s.isascii():
        return None
    return s


def plain_destinations(raws: list[str]) -> bool:
    """True if normalise_destination returns each of `raws` as it is (the usual batch:
    6 to 15 ASCII digits, no leading "00"). Checked over the batch in C calls: no Python
    call per recipient."""
    joined = "".join(raws)
    return (
        bool(raws)
        and joined.isascii()
        # bytes.isdigit: a table look-up per character; str.isdigit a Unicode database
        # look-up (~6x the instructions). The ASCII text encodes as a copy.
        and joined.encode().isdigit()
        and min(map(len, raws)) >= 6
        and max(map(len, raws)) <= 15
        # digit strings of 2 digits or more: none starts with "00" iff the least is >= "01"
        and min(raws) >= "01"
    )


def _routing_keys(dests: list[str], key_length: int) -> tuple[dict[str, str], list[str] | None]:
    """The routing keys of `dests` (a destination's first key_length digits: what its
    route depends on), each with the first destination that has it, in the order the keys
    first appear (routing these one by one meets the same error first as routing every
    destination in order); and each destination's key, or None if they all have one.
    C calls over the batch, no Python step per destination."""
    first = dests[0]
    if not key_length:  # a catch-all route alone
        return {"": first}, None
    # Strings between two that share a prefix share it too: the usual batch (one country)
    # is known to have one key from its least and greatest destinations.
    key = first[:key_length]
    if min(dests)[:key_length] == key == max(dests)[:key_length]:
        return {key: first}, None
    keys = list(map(itemgetter(slice(key_length)), dests))
    firsts = dict(zip(reversed(keys), reversed(dests)))  # a key's first is set last: kept
    return {key: firsts[key] for key in dict.fromkeys(keys)}, keys


@functools.lru_cache(maxsize=4096)  # a channel's queue moved at once: often one text
def _split(text: str, allow_latin1: bool, concatenation: str) -> tuple[int, int] | None:
    """(data coding, number of segments) a channel with these settings gives `text`, or
    None if it cannot encode it."""
    try:
        enc = T.choose_encoding(text, allow_latin1, concat=concatenation)
        count = T.segment_count(text, encoding=enc, concat=concatenation, allow_latin1=allow_latin1)
    except T.TextError:
        return None
    return enc.data_coding, count


def _accepted(results: Iterable[InsertResult]) -> list[AcceptedMessage]:
    """The API's answers for stored messages (each with whether it was stored before): one
    comprehension, not a function call per recipient."""
    names = _STATE_NAMES
    return [
        AcceptedMessage(  # positional (id, to, state, segments, channel, client_ref,
            res.record.id,  # duplicate): ~2x faster than by keyword
            res.record.destination,
            names[res.record.state] if type(res.record.state) is State else str(res.record.state),
            res.record.segment_count,
            res.record.channel,
            res.record.client_ref,
            res.existing,
        )
        for res in results
    ]


def _same_message(stored: MessageRecord, asked: MessageRecord) -> bool:
    """A request sent again asks for the message stored under its client_ref."""
    return (stored.destination, stored.text, stored.category) == (
        asked.destination,
        asked.text,
        asked.category,
    )


def _conflict(client_ref: str | None) -> Conflict:
    return Conflict(
        f"client_ref {client_ref!r} was used for a different request (other recipients,"
        " text or category): use a new client_ref for a new message",
        reason="client_ref_reused",
    )


# The receipt journal's files: `<store path>.receipts.<first seq>` (gateway.store.journal).
JOURNAL_SUFFIX = ".receipts"


class Gateway:
    def __init__(
        self,
        cfg: C.Config,
        store: Store,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.wall = wall_clock
        self.channels: dict[str, Channel] = {}
        self.router = Router(cfg.routes)
        self.limiter = TenantLimiter(cfg.tenants, trio.current_time())
        self._tenants_by_hash = {t.api_key_hash: t for t in cfg.tenants}
        self._nursery: trio.Nursery | None = None
        self._scopes: dict[tuple[str, int, str], ReceiptScope] = {}
        self._reload_lock = trio.Lock()
        self.started = trio.Event()
        self.recovered = 0
        self.journal: ReceiptJournal | None = None  # `[store] receipt_journal` (run)
        self._journal_live = False  # the channels journal their receipts (after the replay)
        self._orphans: dict[str, list[tuple[Channel, Job]]] = {}  # by their channel's name
        # Messages no running channel can take (no route up, or none that splits the text as
        # at intake), by id: stored `held`, routed again when channels change (_release_held).
        self._held: dict[str, Job] = {}
        self._held_seen: tuple = ()  # what the channels looked like at the last release
        self._held_tried = 0.0

    # ---- life cycle ----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(self.store.run)
                frames = await self._open_journal()
                await self._restore_quotas()
                for ch_cfg in self.cfg.channels:
                    if ch_cfg.enabled:
                        await self._start_channel(ch_cfg)
                await self._recover()
                await self._replay_journal(frames)
                nursery.start_soon(self._failover_loop)
                self.started.set()
                task_status.started()
        finally:
            if self.journal is not None:  # after the store's last commits (it ran inside)
                self.journal.close()

    async def _open_journal(self) -> list[tuple[int, bytes]]:
        """Open the receipt journal (`[store] receipt_journal`): the frames above the
        store's mark, which a restart must replay (_replay_journal). Opened with the setting
        off too while journal files exist: what they hold was acknowledged (the journal
        was on before this start) and is replayed all the same."""
        journal = ReceiptJournal(self.cfg.store.path + JOURNAL_SUFFIX)
        if not self.cfg.store.receipt_journal and not journal.exists():
            return []
        frames = journal.open(await self.store.journal_mark())
        self.journal = journal
        self.store.on_journal_committed = journal.committed
        return frames

    async def _replay_journal(self, frames: list[tuple[int, bytes]]) -> None:
        """After a crash: receipt batches that were acknowledged (durable in the journal)
        but whose store op had not committed. Each is matched and applied like a new batch,
        in journal order and under its frame's seq, and committed before the channels
        journal new receipts (so store ops keep following frame order)."""
        receipts = 0
        for seq, payload in frames:
            try:
                batches = decode_frames(payload)  # by channel (frames before v7: several)
            except msgspec.DecodeError as e:  # its CRC passed: written by another version
                raise JournalCorrupt(f"receipt journal frame {seq} cannot be read: {e}", seq=seq) from e
            if not batches:
                self.store.record_receipts_nowait([], journal_seq=seq)
            for k, batch in enumerate(batches):
                last = k == len(batches) - 1  # the frame's seq goes with its last op
                name, now, group = batch.channel, batch.received_at, batch.receipts
                receipts += len(group)
                ch = self.channels.get(name)
                if ch is not None:
                    await ch.take_receipts(group, now, replayed=seq if last else None)
                    continue
                # Its channel is not running any more (removed or disabled since): the
                # messages it submitted are kept as orphans by running channels, and
                # the receipts apply to them there, as they would have on arrival.
                targets = self._orphan_targets(name)
                if targets:
                    keeper = next(iter(self.channels.values()))
                    await keeper.take_receipts(
                        group, now, replayed=seq if last else None, targets=targets, channel=name
                    )
                    continue
                # No message of it is kept: stored unmatched, as on arrival.
                rows = [receipt_record(name, now, r) for r in group]
                if last:
                    self.store.record_receipts_nowait(rows, journal_seq=seq)
                else:
                    await self.store.record_receipts(rows)
        if frames:
            await self.store.flush()
            log.warning("receipt_journal_replayed", frames=len(frames), receipts=receipts)
        if self.cfg.store.receipt_journal:
            for ch in self.channels.values():
                ch.journal = self.journal
            self._journal_live = True

    async def _start_channel(self, cfg: C.ChannelConfig) -> Channel:
        assert self._nursery is not None
        scope = self._scopes.setdefault((cfg.host, cfg.port, cfg.system_id), ReceiptScope())
        ch = Channel(cfg, self.store, clock=self.wall, scope=scope)
        if self._journal_live:
            ch.journal = self.journal
        self.channels[cfg.name] = ch
        await self._nursery.start(ch.run)
        for holder, job in self._orphans.pop(cfg.name, []):  # its own messages, kept meanwhile
            if holder.release_orphan(job):
                ch.adopt_submitted(job)
        return ch

    async def drain(self, timeout: float = 10.0) -> None:
        """SIGTERM: stop every channel (in-flight segments finish, binds unbind). Queued
        messages stay `queued` in the store and resume on the next start."""
        async with trio.open_nursery() as n:
            for ch in list(self.channels.values()):
                n.start_soon(ch.drain_and_stop, timeout)
        await self.store.flush()

    async def _restore_quotas(self) -> None:
        """Today's usage per tenant comes from the store, so a restart does not hand every
        tenant a fresh daily quota."""
        wall = self.wall()
        midnight = utc_day(wall) * SECONDS_PER_DAY
        for tenant, used in (await self.store.count_since(midnight)).items():
            self.limiter.restore(tenant, used, wall)

    @property
    def orphans(self) -> int:
        """Submitted messages of a channel not running, kept (until they expire) elsewhere."""
        return sum(
            1
            for entries in self._orphans.values()
            for holder, job in entries
            if holder.holds(job)
        )

    def _orphan_targets(self, name: str) -> dict[str, tuple[Channel, Job, int]]:
        """The segments of channel `name`'s submitted messages kept as orphans, by id_key:
        where a replayed receipt of that channel (not running) applies."""
        return {
            seg.id_key: (holder, job, i)
            for holder, job in self._orphans.get(name, ())
            if holder.holds(job)
            for i, seg in enumerate(job.segments)
            if seg.id_key
        }

    def _keep_orphan(self, job: Job) -> None:
        """A submitted message whose channel is not running: a running channel of its route
        (else any) keeps it, only to expire it in time; if its own channel starts again
        (reload), it takes the message back (_start_channel)."""
        m = job.record
        holder = next(
            (self.channels[n] for n in self.router.candidates(m.destination, m.category) if n in self.channels),
            next(iter(self.channels.values()), None),
        )
        if holder is None:
            return  # no channel at all: the next start adopts it
        holder.adopt_submitted(job, orphan=True)
        self._orphans.setdefault(m.channel or "", []).append((holder, job))

    def _rehome(self, stopped: Channel) -> None:
        """A stopped channel's submitted messages (its own and orphans it kept) move to their
        own channel if it runs, else to an orphan keeper: they still await receipts or
        their expiry."""
        for entries in self._orphans.values():
            entries[:] = [e for e in entries if e[0] is not stopped]
        for job in stopped.awaiting_jobs():
            own = self.channels.get(job.record.channel or "")
            if own is not None:
                own.adopt_submitted(job)
            else:
                self._keep_orphan(job)

    async def _recover(self) -> None:
        """After a restart: put every unfinished message back where it belongs."""
        views = await self.store.unfinished()
        for view in views:
            m = view.message
            job = Job(m, view.segments)
            if m.state is State.SUBMITTED:
                ch = self.channels.get(m.channel or "")
                if ch is not None:
                    ch.adopt_submitted(job)
                else:  # its channel is not running (removed or disabled): expire it in time
                    self._keep_orphan(job)
                continue
            if m.state is State.SUBMITTING:
                ch_cfg = self.cfg.channel(m.channel) if m.channel else None
                # Only a channel set to "unknown" stores `submitting` (with "resubmit" it stays
                # in memory): if that channel is gone from the config, its policy still holds.
                policy = ch_cfg.on_submitting_recovery if ch_cfg is not None else "unknown"
                if policy == "unknown":
                    self.store.set_state_nowait(
                        m.id, State.UNKNOWN, now=self.wall(), error="process stopped while submitting"
                    )
                    continue
                # resubmit: segments already accepted keep their ids; the rest go again.
                self.store.set_state_nowait(m.id, State.QUEUED, now=self.wall())
                m.state = State.QUEUED
            self._route_job(job, initial=False)
            self.recovered += 1
        late = 0
        for ch in list(self.channels.values()):
            late += await ch.apply_stored_receipts()
        if views:
            log.info(
                "recovered",
                messages=len(views),
                requeued=self.recovered,
                orphans=self.orphans,
                late_receipts=late,
            )

    # ---- intake --------------------------------------------------------------------------

    def authenticate(self, api_key: str | None) -> C.TenantConfig:
        if not api_key:
            raise Unauthorized("missing API key (Authorization: Bearer <key>)")
        tenant = self._tenants_by_hash.get(C.hash_api_key(api_key))
        if tenant is None or not tenant.enabled:
            raise Unauthorized("invalid API key")
        return tenant

    def _pick_channel(
        self, destination: str, category: str, up: dict[str, bool] | None = None
    ) -> str:
        """The first channel of the route that is up (`up`: a request's memo of channel
        liveness, so a batch asks each channel once)."""
        names = self.router.candidates(destination, category)
        if not names:
            raise NoRoute(f"no route for {destination[:4]}... category {category}")
        for name in names:
            if up is not None:
                is_up = up.get(name)
                if is_up is None:
                    ch = self.channels.get(name)
                    is_up = up[name] = ch is not None and ch.up
            else:
                ch = self.channels.get(name)
                is_up = ch is not None and ch.up
            if is_up:
                return name
        # Nothing is up right now: queue on the first running channel of the route; the
        # failover loop moves it when another comes up first.
        for name in names:
            if name in self.channels:
                return name
        raise NoRoute(f"no running channel for route of {destination[:4]}...: {', '.join(names)}")

    async def accept(self, tenant: C.TenantConfig, body: SendMessage) -> list[AcceptedMessage]:
        """Validate, decide, store durably, enqueue. Raises a GatewayError (nothing stored)."""
        if body.signature_id or body.template_id or body.params:
            raise MessageRejected(
                "signature/template sending is not available yet; send `text`",
                reason="templates_unavailable",
            )
        if body.text is None:
            raise InvalidBody("`text` is required", path="$.text")
        if body.category not in tenant.categories:
            raise Forbidden(f"category {body.category} is not allowed for this tenant")
        recipients = body.recipients
        if plain_destinations(recipients):
            dests = recipients
        else:
            dests = []
            for i, raw in enumerate(recipients):
                d = normalise_destination(raw)
                if d is None:
                    path = "$.to" if isinstance(body.to, str) else f"$.to[{i}]"
                    raise InvalidBody(f"not a phone number: {raw[:3]}...", path=path)
                dests.append(d)
        now = self.wall()
        validity = body.validity_seconds
        n = len(dests)
        ids = new_message_ids(n)
        up: dict[str, bool] = {}
        # One text for every recipient: per channel, its encoding and segment count, and a
        # record the recipients' records are copies of (replace() costs 0.15 us, building
        # a 20-field record by keyword 1 us). A route depends on a destination's first
        # key_length digits: one choice per key (_routing_keys).
        templates: dict[str, MessageRecord] = {}
        template_of: dict[str, MessageRecord] = {}  # by key
        firsts, keys = _routing_keys(dests, self.router.key_length)
        for key, dest in firsts.items():
            channel = self._pick_channel(dest, body.category, up)
            tmpl = templates.get(channel)
            if tmpl is None:
                tmpl = templates[channel] = self._record_template(tenant, body, channel, now, validity)
            template_of[key] = tmpl
        if keys is None or len(templates) == 1:  # one template (tmpl) for all
            tmpls: Iterable[MessageRecord] = repeat(tmpl, n)
        else:
            tmpls = map(template_of.__getitem__, keys)
        replace = msgspec.structs.replace
        recs = [replace(t, id=mid, destination=dest) for t, mid, dest in zip(tmpls, ids, dests)]
        ref = body.client_ref
        if ref is not None:  # a batch's message i is `client_ref#i`
            if n == 1:
                recs[0].client_ref = ref
            else:
                for i, rec in enumerate(recs):
                    rec.client_ref = f"{ref}#{i}"
        if all(t.segment_count == 1 for t in templates.values()):  # the usual text
            segs = [[SegmentRecord(message_id=mid, seq=1)] for mid in ids]
        else:
            for rec in recs:
                if rec.segment_count > 1:
                    rec.concat_ref = self.channels[rec.channel or ""].refs.next(rec.destination)
            segs = [
                [SegmentRecord(message_id=rec.id, seq=k + 1) for k in range(rec.segment_count)]
                for rec in recs
            ]
        built = list(zip(recs, segs))
        if body.client_ref is not None and len(built) > 1:
            # A batch sent again (the client retried): answer it from the store, storing
            # nothing, or refuse it if the reference was used for other messages. Read
            # first because a batch with more recipients than the first would otherwise
            # store the new ones before the conflict shows. A single message needs no read:
            # the insert finds it (checked below).
            prior = await self.store.find_by_client_ref(tenant.id, built[0][0].client_ref or "")
            if prior is not None:
                return await self._replayed(tenant, built)
        wall = self.wall()
        self.limiter.check_and_take(tenant.id, len(built), trio.current_time(), wall)
        # Shielded from here to the queueing: a cancelled caller (the client's connection
        # timing out) does not cancel the store's op, which commits anyway, and a stored
        # message that no channel queues waits for the next restart. Bounded: a store that
        # does not answer within INSERT_WAIT fails the request (503) as it fails its op.
        with trio.CancelScope(shield=True, deadline=trio.current_time() + INSERT_WAIT) as wait:
            try:
                results = await self.store.insert_messages(built)
            except BaseException:
                self.limiter.refund(tenant.id, len(built), wall)
                raise
        if wait.cancelled_caught:
            self.limiter.refund(tenant.id, len(built), wall)
            raise Unavailable(f"the store did not answer within {INSERT_WAIT:.0f} s")
        duplicates = 0
        conflicts = 0
        fresh: dict[str | None, list[Job]] = {}  # per channel chosen, in intake order
        if len(templates) == 1 and not any(map(_EXISTING, results)):
            # The usual request: every message new, all on one channel (C calls, no Python
            # step per message).
            fresh[recs[0].channel] = list(map(Job, recs, segs))
        else:
            for (rec, segs), res in zip(built, results):
                if res.existing:
                    duplicates += 1
                    conflicts += not _same_message(res.record, rec)
                else:
                    jobs = fresh.get(rec.channel)
                    if jobs is None:
                        jobs = fresh[rec.channel] = []
                    jobs.append(Job(rec, segs))
        for name, jobs in fresh.items():
            self._enqueue_new(name, jobs, jobs[0].record.priority)
        # after the queueing: a message routed again answers with the channel it went to
        out = _accepted(results)
        if duplicates:
            self.limiter.refund(tenant.id, duplicates, wall)
        if conflicts and duplicates == len(built):
            # The reference names other content (a single message, or a batch that raced
            # with the one stored under it): nothing was stored by this request.
            raise _conflict(body.client_ref)
        return out

    async def _replayed(
        self, tenant: C.TenantConfig, built: list[tuple[MessageRecord, list[SegmentRecord]]]
    ) -> list[AcceptedMessage]:
        """The first result of a request whose client_ref is stored already, if the request
        asks for the same messages (recipients, text, category); else Conflict."""
        stored = []
        for rec, _segs in built:
            view = await self.store.find_by_client_ref(tenant.id, rec.client_ref or "")
            if view is None or not _same_message(view.message, rec):
                raise _conflict((rec.client_ref or "").split("#")[0])
            stored.append(InsertResult(view.message, existing=True))
        return _accepted(stored)

    def _record_template(
        self, tenant: C.TenantConfig, body: SendMessage, channel: str, now: float, validity: int | None
    ) -> MessageRecord:
        """The record of `body`'s text sent through `channel` (id and recipient to be set).
        Raises MessageRejected if the channel cannot encode the text."""
        ch_cfg = self.channels[channel].cfg
        text = body.text
        assert text is not None
        try:
            enc = T.choose_encoding(text, ch_cfg.allow_latin1, concat=ch_cfg.concatenation)
            count = T.segment_count(
                text, encoding=enc, concat=ch_cfg.concatenation, allow_latin1=ch_cfg.allow_latin1
            )
        except T.TextError as e:
            raise MessageRejected(str(e), reason=e.code) from None
        return MessageRecord(
            id="",
            tenant=tenant.id,
            source_addr=body.sender or tenant.default_source_addr or ch_cfg.source_addr or DEFAULT_SENDER,
            destination="",
            text=text,
            category=body.category,
            priority=PRIORITY[body.category],
            state=State.QUEUED,
            channel=channel,
            data_coding=enc.data_coding,
            segment_count=count,
            created_at=now,
            updated_at=now,
            expires_at=now + (validity or ch_cfg.validity_seconds),
        )

    async def message(self, tenant: C.TenantConfig, message_id: str) -> MessageView | None:
        return await self.store.get_message(tenant.id, message_id)

    async def message_by_ref(self, tenant: C.TenantConfig, client_ref: str) -> MessageView | None:
        return await self.store.find_by_client_ref(tenant.id, client_ref)

    # ---- routing between channels ---------------------------------------------------------

    def _enqueue_new(self, channel: str | None, jobs: list[Job], priority: int) -> None:
        """Messages of one request just stored (`queued`, all of `priority`): onto the
        channel chosen at intake, in one lane append. A reload may have removed that
        channel while the insert committed (the client must still get its answer: the
        messages are stored), so they are routed again; a draining gateway leaves them
        `queued` in the store, where the next start finds them."""
        ch = self.channels.get(channel or "")
        if ch is None:
            for job in jobs:
                self._route_job(job, initial=False)
            return
        try:
            ch.enqueue_new(jobs, priority)
        except RuntimeError:  # draining (SIGTERM): stays queued in the store
            pass

    def fits(self, job: Job, cfg: C.ChannelConfig) -> bool:
        """True if channel `cfg` splits the message as intake did (same data coding, same
        number of segments). Segments are fixed at intake: their rows, the concatenation
        reference, the billing; a channel that splits the text differently cannot send it."""
        m = job.record
        return _split(m.text, cfg.allow_latin1, cfg.concatenation) == (m.data_coding, m.segment_count)

    def _route_job(self, job: Job, *, initial: bool) -> None:
        """Queue a message that is not on a channel (recovery, a channel removed or changed,
        a held message released): its own channel if it may take it, else the first of its
        route that is up and splits it the same way, else the first running one that does;
        none: the message is held."""
        m = job.record
        names = self.router.candidates(m.destination, m.category)
        current = self.channels.get(m.channel or "")
        if (
            current is not None
            and (current.up or not initial)
            and m.channel in names
            and self.fits(job, current.cfg)
        ):
            self._put(current, job)
            return
        fitting = [
            self.channels[n] for n in names if n in self.channels and self.fits(job, self.channels[n].cfg)
        ]
        target = next((ch for ch in fitting if ch.up), fitting[0] if fitting else None)
        if target is None:
            if not names:
                why = f"no route for {m.destination[:4]}... category {m.category}"
            elif not any(n in self.channels for n in names):
                why = f"no running channel for its route: {', '.join(names)}"
            else:
                why = "no running channel of its route splits the text as at intake"
            self._hold(job, why)
            return
        self._put(target, job)

    def _put(self, ch: Channel, job: Job) -> None:
        m = job.record
        if m.state is _HELD:  # the store must see it queued before it is submitted
            self._held.pop(m.id, None)
            m.state = State.QUEUED
            self.store.set_state_nowait(m.id, State.QUEUED, now=self.wall())
        try:
            ch.enqueue(job)
        except RuntimeError:  # draining (SIGTERM): stays queued in the store
            pass

    def _hold(self, job: Job, why: str) -> None:
        m = job.record
        if m.state is not State.HELD:
            m.state = State.HELD
            self.store.set_state_nowait(m.id, State.HELD, now=self.wall(), error=why)
            n = len(self._held) + 1
            if n <= 10 or n % 1000 == 0:  # a whole queue may be held at once: not a line each
                log.warning("message_held", message_id=m.id, reason=why, held=n)
        self._held[m.id] = job

    @property
    def held(self) -> int:
        return len(self._held)

    def _release_held(self) -> int:
        """Route held messages again (a channel started, came up, or the config changed);
        those past their validity expire. Returns how many left `held`."""
        if not self._held:
            return 0
        now = self.wall()
        moved = 0
        for job in list(self._held.values()):
            m = job.record
            if m.expires_at <= now:
                del self._held[m.id]
                m.state = State.EXPIRED
                m.done_at = now
                self.store.set_state_nowait(
                    m.id, State.EXPIRED, now=now, error="validity period passed while held"
                )
                moved += 1
                continue
            self._route_job(job, initial=True)
            if m.state is not State.HELD:
                moved += 1
        if moved:
            log.info("held_released", released=moved, still_held=len(self._held))
        return moved

    async def _failover_loop(self) -> None:
        """Move queued messages off a channel that has been down for FAILOVER_AFTER seconds
        to the next channel of their route that is up."""
        while True:
            await trio.sleep(1.0)
            now = trio.current_time()
            if self._held:
                # Only when the channels changed (or to expire some, twice a minute): a
                # large held backlog is not re-examined every second for nothing.
                seen = (id(self.router), tuple((n, ch.up) for n, ch in self.channels.items()))
                if seen != self._held_seen or now - self._held_tried >= 30.0:
                    self._held_seen, self._held_tried = seen, now
                    self._release_held()
            for ch in list(self.channels.values()):
                if ch.up or ch.down_since is None or now - ch.down_since < FAILOVER_AFTER:
                    continue
                if not len(ch.queue):
                    continue
                moved = 0
                for job in ch.take_queued():
                    m = job.record
                    target = None
                    for name in self.router.candidates(m.destination, m.category):
                        other = self.channels.get(name)
                        if other is not None and other is not ch and other.up and self.fits(job, other.cfg):
                            target = other
                            break
                    if target is None:
                        ch.queue.put(job, m.priority)
                        continue
                    if job.pdus is not None and target.cfg.concatenation != ch.cfg.concatenation:
                        job.pdus = None
                    self._put(target, job)  # the store learns the channel when it is submitted
                    moved += 1
                if moved:
                    log.warning("failover", channel=ch.name, moved=moved)

    # ---- reload -------------------------------------------------------------------------

    async def apply_config(self, new: C.Config) -> C.ConfigDiff:
        """Apply an already validated config. Channels added/removed/changed are started,
        drained and stopped, or retuned in place; unchanged channels are not touched.

        What can fail is built before anything changes (the router, the tenants' keys). A
        channel step that fails anyway is logged (`reload_channel_failed`) and the others
        still run: stopping half way would leave the channels after it on a config that no
        longer exists, with nothing saying which."""
        async with self._reload_lock:
            d = C.diff(self.cfg, new)
            router = Router(new.routes)
            tenants_by_hash = {t.api_key_hash: t for t in new.tenants}
            old = self.cfg
            self.cfg = new
            self.router = router
            self.limiter.retune(new.tenants, trio.current_time())
            self._tenants_by_hash = tenants_by_hash
            failed: list[str] = []
            for step, names, apply in (
                ("start", d.added, self._reload_add),
                ("retune", d.retuned, self._reload_retune),
                ("reconnect", d.reconnect, self._reload_reconnect),
                ("stop", d.removed, self._reload_remove),
            ):
                for name in names:
                    try:
                        await apply(name, new)
                    except Exception as e:  # noqa: BLE001 - logged; the other channels still follow the file
                        failed.append(name)
                        log.error("reload_channel_failed", channel=name, step=step, error=repr(e))
            self._release_held()
            log.info(
                "config_applied",
                added=d.added,
                removed=d.removed,
                reconnect=d.reconnect,
                retuned=d.retuned,
                routes_changed=d.routes_changed,
                tenants_changed=d.tenants_changed,
                old_channels=len(old.channels),
                failed=failed,
            )
            return d

    async def _reload_add(self, name: str, new: C.Config) -> None:
        cfg = new.channel(name)
        if cfg is not None and cfg.enabled:
            await self._start_channel(cfg)

    async def _reload_retune(self, name: str, new: C.Config) -> None:
        ch = self.channels.get(name)
        cfg = new.channel(name)
        if ch is None or cfg is None:
            return
        before = ch.cfg
        ch.retune(cfg)
        if (before.concatenation, before.allow_latin1) != (cfg.concatenation, cfg.allow_latin1):
            # Its queued messages were split for the old settings: those the new ones split
            # differently go elsewhere or are held.
            for job in ch.take_queued():
                self._route_job(job, initial=False)

    async def _reload_reconnect(self, name: str, new: C.Config) -> None:
        old_ch = self.channels.pop(name, None)
        cfg = new.channel(name)
        if cfg is not None:
            await self._start_channel(cfg)  # the new binds first
        if old_ch is not None:
            for job in await old_ch.drain_and_stop():
                # to the new channel of that name if it splits the text the same
                self._route_job(job, initial=False)
            self._rehome(old_ch)

    async def _reload_remove(self, name: str, _new: C.Config) -> None:
        ch = self.channels.pop(name, None)
        if ch is not None:
            for job in await ch.drain_and_stop():
                job.record.channel = None
                self._route_job(job, initial=False)
            self._rehome(ch)

    # ---- stats ----------------------------------------------------------------------------

    def store_stats(self) -> dict:
        return msgspec.to_builtins(getattr(self.store, "stats", {}))

    async def snapshot(self) -> dict:
        return {
            "channels": [ch.snapshot() for ch in self.channels.values()],
            "messages_open": await self.store.count_open(),
            "store": self.store_stats(),
            "recovered": self.recovered,
            "receipt_journal": None if self.journal is None else msgspec.to_builtins(self.journal.stats),
            "orphans": self.orphans,
            "held": self.held,
        }



