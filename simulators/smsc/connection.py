"""One ESME connection: a trio driver around a `Session(Role.SMSC)`.

Three tasks in a nursery owned by the connection:

- reader: receive_some -> session.receive_data (which hands each submit_sm... to
  `_on_request` and each deliver_sm_resp to `_on_response` as it decodes) -> handle the
  read's events (binds, link checks, ...; all of it queues answers, receipts, ... on the
  session) -> write everything queued in ONE send_all,
  itself, at once. Writing from the reader (rather than waking the writer) gets this
  connection's responses out before the other connections' batches are processed, so the
  client works on them while the simulator works on the rest (measured: the end-to-end rate
  is otherwise bounded by a convoy of whole-window batches). Waiting in send_all when the
  socket is full is the back-pressure: nothing more is read until it drains;
- writer: for what other tasks queue on this session (receipts routed here from other
  connections' submits, timers, MOs, shutdown): `kick()` wakes it and it writes everything
  queued in one send_all. Reader and writer never write concurrently (`_flush`);
- housekeeping: expires our unanswered requests (deliver_sm, enquire_link) and sends our own
  enquire_link when the link has been idle for `enquire_link_interval`.
"""

from __future__ import annotations

import itertools
import re
import struct
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandId, CommandStatus
from gateway.smpp.session import (
    InvalidPdu,
    LinkChecked,
    RequestReceived,
    RequestTimedOut,
    ResponseReceived,
    Role,
    Session,
    State,
    Unbound,
    UnexpectedResponse,
)
from gateway.smpp.transport import RECEIVE_SIZE, set_nodelay
from simulators.smsc.delivery import RECEIPT, Job
from simulators.smsc.handlers import HANDLERS, on_shaped_submit_sm
from simulators.smsc.shapes import SubmitShape, learn

if TYPE_CHECKING:
    from simulators.smsc.server import AccountRuntime, SmscServer

_DELIVER_SM = int(CommandId.DELIVER_SM)
_DELIVER_SM_RESP = int(CommandId.DELIVER_SM_RESP)
_ENQUIRE_LINK = int(CommandId.ENQUIRE_LINK)
_RECEIVING = (State.BOUND_RX, State.BOUND_TRX)
_SUBMITTING = (State.BOUND_TX, State.BOUND_TRX)
_SUBMIT_SM = int(CommandId.SUBMIT_SM)
# After two learned shapes in a row read nothing, this many reads go to the session whole
# before a shape is learned again (a shape costs about half a strict decode to learn).
_SKIP = 32
# What may end a bind when the session reads it (the peer's unbind, the answer to ours):
# a read is not cut into runs after one of these (_receive_framed).
_ENDS_BIND = frozenset(int(c) for c in (CommandId.UNBIND, CommandId.UNBIND_RESP, CommandId.GENERIC_NACK))
_FRAME_HEAD = struct.Struct(">IIII").unpack_from
_ids = itertools.count(1)


def without_tlvs(pdu: P.Pdu | P.Encoded) -> P.Pdu | P.Encoded:
    """`pdu` without its optional parameters, for a v3.3 ESME (a new PDU when it had any).

    Receipts are built once per account, with TLVs unless the account turns them off; the
    Appendix B text in short_message still carries id, stat and err."""
    typed = pdu.decode() if pdu.__class__ is P.Encoded else pdu
    if not typed.tlvs:
        return pdu
    return msgspec.structs.replace(typed, tlvs=[])


# The first 8 header octets (command_length, command_id) of frames seen in runs -> the
# match of a run of such frames (bounded: cleared when full).
_RUNS: dict[bytes, Any] = {}


def _frames_like(buf: bytes, pos: int, nxt: int) -> int:
    """The end of the run of whole frames at `pos` (the first one ends at `nxt`) that have
    its command_length and command_id: one regular expression match, where a Python loop
    costs ~2k instructions a frame (a run of receipt answers, or of submit_sm left to the
    session). A frame unlike the next one is its own run (no pattern compiled for it)."""
    key = buf[pos : pos + 8]
    if not buf.startswith(key, nxt):
        return nxt
    match = _RUNS.get(key)
    if match is None:
        if len(_RUNS) >= 256:
            _RUNS.clear()
        match = _RUNS[key] = re.compile(
            b"(?:" + re.escape(key) + b".{%d})+" % (nxt - pos - 8), re.S
        ).match
    return match(buf, pos).end()


class Connection:
    def __init__(self, server: SmscServer, stream: trio.abc.Stream) -> None:
        cfg = server.cfg.server
        self.id = next(_ids)
        self.server = server
        self._stats = server.stats
        self.stream = stream
        # Answers to our deliver_sm complete through _on_response, and the ESME's message
        # traffic (submit_sm...) is handled by _on_request, while the session decodes.
        self.session = Session(
            Role.SMSC,
            window=cfg.window,
            response_timeout=cfg.response_timeout,
            on_response=self._on_response,
            on_request=self._on_request,
        )
        self._now = trio.current_time()  # of the read being handled
        self.account: AccountRuntime | None = None
        self.bind_type: str | None = None
        # The ESME's interface_version from its bind; below 0x34 (v3.3) it gets no TLVs.
        self.interface_version: int | None = None
        self.no_tlvs = False
        self.submits = 0  # submit_sm received on this connection (fault counters)
        self.inflight: dict[int, Job] = {}  # our deliver_sm awaiting deliver_sm_resp, by seq
        self.closing = False
        self.last_rx = trio.current_time()
        self._raw: list[bytes] = []
        self._wake = trio.Event()
        self._writing = False
        self._in_reader = False  # the reader is handling a batch and will flush after it
        self._drained: trio.Event | None = None
        self._scope: trio.CancelScope | None = None
        self._receiver = False
        self._before_bind = True  # frames go to the session one at a time until bound
        self._head = b""  # of them (and once framing): the start of a frame not complete yet
        # Bound as a transmitter or transceiver: reads are framed here, submit_sm read
        # through the last learned shape (_receive_framed).
        self._framing = False
        self._shape: SubmitShape | None = None
        self._wasted = 0  # shapes learned in a row that read nothing
        self._skip = 0  # reads left to the session whole before learning again
        self.log = server.log.bind(conn=self.id)

    # ---- API for handlers / deliveries -------------------------------------------------

    def kick(self) -> None:
        """Wake the writer: something is queued on the session (no-op while this
        connection's reader is handling a batch: it flushes right after)."""
        if self._in_reader:
            return
        w = self._wake
        if not w.is_set():
            w.set()

    def offer(self, job: Job, now: float) -> bool:
        """Send `job` (a deliver_sm) now if this bind can take it: bound as a receiver, not
        closing, a free window slot. True if sent (one call instead of a check and a send:
        the delivery path runs once per receipt)."""
        s = self.session
        if self.closing or s.state not in _RECEIVING or s.window_free <= 0:
            return False
        pdu = job.pdu
        if self.no_tlvs:
            pdu = without_tlvs(pdu)  # a copy: the job keeps its PDU for other binds / retries
        self.inflight[s.send(pdu, now).sequence_number] = job
        if job.kind is RECEIPT:
            self._stats.receipts_sent += 1
        else:
            self._stats.mo_sent += 1
        if not self._in_reader:
            w = self._wake
            if not w.is_set():
                w.set()
        return True

    def send_late_response(self, resp: P.Pdu, now: float) -> None:
        """Timer callback for slow_answer: the delayed submit_sm_resp."""
        if self.closing or self.session.state is State.CLOSED:
            return
        self.session.send(resp)
        self.kick()

    def send_raw(self, data: bytes) -> None:
        """Bytes written after what the session has queued (deliberately malformed PDUs)."""
        self._raw.append(data)
        self.kick()

    def close_after_flush(self) -> None:
        """Write what is queued, then close the connection (no unbind)."""
        self.closing = True
        self.kick()

    def became_receiver(self, now: float) -> None:
        self._receiver = True
        self.account.deliveries.add_receiver(self, now)  # type: ignore[union-attr]

    def start_unbind(self, now: float) -> None:
        """Graceful end (server shutdown): unbind if bound, else just close."""
        if self.closing:
            return
        self._stop_receiving()
        if self.session.bound:
            self.session.send(P.Unbind(), now, timeout=self.server.cfg.server.shutdown_timeout)
            self.server.stats.unbinds_sent += 1
            self.kick()
        else:
            self.close_after_flush()

    def _stop_receiving(self) -> None:
        if self._receiver and self.account is not None:
            self._receiver = False
            self.account.deliveries.remove_receiver(self)

    # ---- tasks -------------------------------------------------------------------------

    async def run(self) -> None:
        set_nodelay(self.stream)
        try:
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                nursery.start_soon(self._writer)
                nursery.start_soon(self._housekeeping)
                await self._reader()
                nursery.cancel_scope.cancel()
        finally:
            self._cleanup()
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self.stream)

    async def _reader(self) -> None:
        stream = self.stream
        while not self.closing:
            try:
                data = await stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                self.log.debug("peer_closed")
                return
            self.received(data, trio.current_time())
            await self._flush()
            if self.closing:
                self.kick()  # the writer closes the connection
        # closing: the writer flushes and cancels us
        await trio.sleep_forever()

    def received(self, data: bytes, now: float) -> None:
        """Handle one read (its time `now`): everything it asks for is queued on the session
        (and `_raw`); the reader writes it all right after (bench/simulator_path_bench.py
        drives this without a socket)."""
        self.last_rx = self._now = now
        self._in_reader = True
        try:
            if self._before_bind:
                self._receive_before_bind(data, now)
            elif self._framing:
                self._receive_framed(data, now)
            else:
                session = self.session
                session.receive_data(data)
                self._handle(session.next_events(), now)
        finally:
            self._in_reader = False

    def _receive_before_bind(self, data: bytes, now: float) -> None:
        """Until the session is bound, feed it one frame at a time and handle each.

        In the SMSC role the session is BINDING from the bind request until we send the
        bind_resp, and refuses a request that arrives meanwhile (ESME_RINVBNDSTS), queueing
        that answer while it decodes. Fed a whole read at once, it would decode the requests
        an ESME pipelines behind its bind before the bind handler runs, so their answers
        would leave before the bind_resp. Frame by frame, the bind is answered first, and
        what follows it is handled as bound traffic when the bind succeeded (refused, after
        the bind_resp, when it did not). Once bound, the rest of the read and every later
        read go to the session whole, as before: the cost is only for the first frames.
        """
        session = self.session
        buf = self._head + data if self._head else data
        self._head = b""
        pos = 0
        end = len(buf)
        while True:
            if self.closing:
                return
            if session.bound:
                self._before_bind = False
                self._framing = session.state in _SUBMITTING
                break
            if end - pos < 16:
                self._head = buf[pos:]
                return
            length = int.from_bytes(buf[pos : pos + 4], "big")
            if length < 16 or length > session.max_pdu_length:
                break  # a broken frame: the session answers it and closes
            if end - pos < length:
                self._head = buf[pos:]
                return
            session.receive_data(buf[pos : pos + length])
            pos += length
            self._handle(session.next_events(), now)
        if pos < end:
            rest = buf[pos:] if pos else buf
            if self._framing:
                self._receive_framed(rest, now)
            else:
                session.receive_data(rest)
                self._handle(session.next_events(), now)

    def _receive_framed(self, data: bytes, now: float) -> None:
        """A read on a bind that may submit: frames are cut here. A submit_sm (header status
        0) is decoded here, through the last learned shape (simulators/smsc/shapes.py) or
        the codec's strict decoder, and handed to its handler as the session would hand it
        (`_on_request`); every other frame, and a submit_sm the strict decoder refuses, goes
        to the session, in runs of whole frames, in wire order (each run's events handled
        before what follows it). The session never holds a partial frame: `_head` keeps it.

        Handled exactly as one `receive_data` of the whole read would handle it: a run is
        cut off only while the session stays bound to submit. Once it may not (a frame in
        the run that can end the bind: unbind, unbind_resp, generic_nack; or, after a
        handler, a connection closing or unbinding), the rest of the read goes to the
        session in one call, as before (a session closed at the start of a call reads
        nothing of it, but one closed during a call reads on to its end). A broken frame
        (command_length under 16 or over the maximum) goes to the session with everything
        after it, which answers it and closes."""
        session = self.session
        head = self._head
        if head:
            buf = head + data
            self._head = b""
        else:
            buf = data
        pos = run = 0
        end = len(buf)
        max_len = session.max_pdu_length
        unpack = _FRAME_HEAD
        # True: the rest of the read goes to the session in one call (found by whole runs
        # of like frames, `_frames_like`), as in the reads after shapes stopped paying.
        plain = False
        if self._skip:
            self._skip -= 1
            plain = True
        while end - pos >= 16:
            length, cid, status, seq = unpack(buf, pos)
            if length < 16 or length > max_len:
                pos = end  # the session answers the broken frame and closes
                break
            nxt = pos + length
            if nxt > end:
                break
            if plain or cid != _SUBMIT_SM:
                if cid in _ENDS_BIND:
                    plain = True
                # this frame and the like of it after it (for the session), in one step
                pos = _frames_like(buf, pos, nxt)
                continue
            if status == 0:
                if self.closing or session.state not in _SUBMITTING:
                    plain = True
                else:
                    if run < pos:  # what came before it first (none of it ends the bind)
                        session.receive_data(buf[run:pos])
                        self._handle(session.next_events(), now)
                    shape = self._shape
                    got = shape.decode(buf, pos + 16, nxt, seq) if shape is not None else None
                    if got is not None:  # the usual case: _submit_frame's first step inline
                        try:
                            on_shaped_submit_sm(self, shape, got[0], got[1], now)
                        except Exception:
                            self._handler_failed(got[1])
                        run = nxt
                    elif self._submit_frame(buf, pos + 16, nxt, seq):
                        run = nxt
                        if self._skip:  # shapes stopped paying: the rest to the session
                            plain = True
                    else:
                        run = pos  # refused by the strict decoder: the session answers
            pos = nxt
        if pos < end:
            self._head = buf[pos:]
        if run < pos:
            session.receive_data(buf[run:pos])
            self._handle(session.next_events(), now)

    def _submit_frame(self, buf: bytes, body: int, end: int, seq: int) -> bool:
        """Serve the submit_sm whose body is buf[body:end] and which the last shape did not
        read: decoded strictly and handed to the general handler, as the session would;
        its shape (no TLVs) is kept for the next ones. False if the decoder refuses it (the
        session decodes it again and answers)."""
        pdu, shape = learn(buf, body, end, seq)
        if pdu is None:
            return False
        if shape is not None:
            old = self._shape
            if old is not None and not old.used:
                # Two shapes in a row that read nothing (a text per message): the next
                # _SKIP reads go to the session whole (no shape tried, the frames passed
                # over in runs).
                self._wasted += 1
                if self._wasted >= 2:
                    self._wasted = 0
                    self._skip = _SKIP
            else:
                self._wasted = 0
            self._shape = shape
        self._on_request(pdu)
        return True

    async def _flush(self) -> None:
        """Write everything queued in one send_all; one writer at a time."""
        while self._writing:
            if self._drained is None:
                self._drained = trio.Event()
            await self._drained.wait()
        data = self.session.data_to_send()
        if self._raw:
            data += b"".join(self._raw)
            self._raw.clear()
        if not data:
            return
        self._writing = True
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.closing = True
        finally:
            self._writing = False
            if self._drained is not None:
                self._drained.set()
                self._drained = None

    async def _writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            await self._flush()
            if self.closing:
                await self._flush()  # anything queued while the last write was blocked
                self._scope.cancel()  # type: ignore[union-attr]
                return

    async def _housekeeping(self) -> None:
        """Expire our unanswered requests; enquire_link when the link is idle.

        Sleeps until the next thing due: the earliest deadline of an outstanding request, the
        next idle-link check, or one response_timeout from now (a request sent meanwhile has
        its deadline at least that far away), so an idle bind costs no wake-ups.
        """
        cfg = self.server.cfg.server
        interval = cfg.enquire_link_interval
        timeout = cfg.response_timeout
        session = self.session
        last_enquire = trio.current_time()
        while True:
            now = trio.current_time()
            wake = now + timeout
            deadline = session.next_deadline()
            if deadline is not None and deadline < wake:
                wake = deadline
            if interval > 0:
                wake = min(wake, max(self.last_rx, last_enquire) + interval)
            await trio.sleep_until(max(wake, now + 0.001))
            now = trio.current_time()
            expired = session.expire(now)
            if expired:
                self._timed_out(expired, now)
            if (
                interval > 0
                and session.bound
                and not self.closing
                and now - self.last_rx >= interval
                and now - last_enquire >= interval
            ):
                last_enquire = now
                session.send(P.EnquireLink(), now)
                self.server.stats.enquire_links_sent += 1
                self.kick()

    # ---- events ------------------------------------------------------------------------

    def _handle(self, events: list[Any], now: float) -> None:
        for ev in events:
            if self.closing:
                return
            cls = ev.__class__
            if cls is RequestReceived:  # a bind (message traffic goes to _on_request)
                self._on_request(ev.pdu)  # `now` is self._now
            elif cls is ResponseReceived:
                self._on_response(ev.pdu, ev.request, now)
            elif cls is LinkChecked:
                self.server.stats.enquire_links_received += 1
            elif cls is Unbound:
                self._on_unbound(ev.by_peer)
            elif cls is InvalidPdu:
                self.server.stats.invalid_pdus += 1
                self.log.info("invalid_pdu", error=str(ev.error), fatal=ev.fatal)
                if ev.fatal:
                    self.close_after_flush()
            elif cls is UnexpectedResponse:
                self.server.stats.unexpected_responses += 1
                self.log.debug(
                    "unexpected_response",
                    command=ev.pdu.command_name,
                    sequence_number=ev.pdu.sequence_number,
                    status=ev.pdu.command_status,
                )

    def _on_request(self, pdu: Any) -> None:
        """Answer a request through its handler (a handler's bug answers ESME_RSYSERR): as
        the session's request handler, the ESME's message traffic (submit_sm, data_sm, ...)
        while it decodes the read whose time is `_now`; binds from `_handle`. Nothing is
        served once the connection is closing, as for the events of the read."""
        if self.closing:
            return
        handler = HANDLERS.get(pdu.command_id)
        try:
            if handler is not None:
                handler(self, pdu, self._now)
            else:  # legal but not something we serve (cannot happen for an SMSC)
                self.session.send(
                    P.error_response(
                        pdu.command_id, pdu.sequence_number, CommandStatus.ESME_RINVCMDID
                    )
                )
        except Exception:
            self._handler_failed(pdu)

    def _handler_failed(self, pdu: Any) -> None:
        """A handler raised: logged, and the request answered ESME_RSYSERR."""
        self.log.exception("handler_failed", command=pdu.command_name)
        if self.session.state is not State.CLOSED:
            self.session.send(
                P.error_response(pdu.command_id, pdu.sequence_number, CommandStatus.ESME_RSYSERR)
            )

    def _on_response(self, resp: P.Pdu, request: P.Pdu, now: float | None = None) -> None:
        """An answer to our request: as the session's response handler (deliver_sm_resp,
        enquire_link_resp, while it decodes: `now` is the read's time) or from a
        ResponseReceived event."""
        if request.command_id == _DELIVER_SM:
            job = self.inflight.pop(resp.sequence_number, None)
            if job is not None:
                deliveries = self.account.deliveries  # type: ignore[union-attr]
                if (
                    resp.command_status == 0
                    and resp.command_id == _DELIVER_SM_RESP
                    and job.kind is RECEIPT
                ):
                    st = self._stats
                    st.receipts_acked += 1
                    st.deliver_sm_resp_ok += 1
                else:
                    deliveries.on_response(job, resp, self._now if now is None else now)
                if deliveries.held:
                    deliveries.refill(self, self._now if now is None else now)

    def _timed_out(self, expired: list[RequestTimedOut], now: float) -> None:
        for ev in expired:
            req = ev.request
            if req.command_id == _DELIVER_SM:
                job = self.inflight.pop(req.sequence_number, None)
                if job is not None and self.account is not None:
                    self.account.deliveries.on_timeout(job, now)
            elif req.command_id == _ENQUIRE_LINK:
                self.log.warning("enquire_link_timeout")
                self.close_after_flush()
            elif req.command_id == CommandId.UNBIND:
                self.close_after_flush()
        if self.account is not None:
            self.account.deliveries.pump(now)

    def _on_unbound(self, by_peer: bool) -> None:
        self._stop_receiving()
        if by_peer:
            self.server.stats.unbinds_received += 1
            self.log.info("unbound_by_peer")
        else:
            self.log.info("unbound")
        self.close_after_flush()

    def _cleanup(self) -> None:
        self.closing = True
        self._stop_receiving()
        pending = self.session.abandon_all()
        acct = self.account
        if acct is not None:
            jobs = []
            for pdu in pending:
                if pdu.command_id == _DELIVER_SM:
                    job = self.inflight.pop(pdu.sequence_number, None)
                    if job is not None:
                        jobs.append(job)
            if jobs:
                acct.deliveries.requeue(jobs, trio.current_time())
            if self.bind_type is not None:
                acct.binds -= 1
        self.inflight.clear()
