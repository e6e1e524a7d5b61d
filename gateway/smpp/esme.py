"""Trio ESME driver: keeps one bind to an SMSC up and moves requests through it.

A thin I/O shell around the sans-IO `Session`. One `EsmeClient` owns one bind; a channel
owning N binds runs N clients. `run()` is the client's whole life: connect (TCP_NODELAY,
optional TLS), bind, then four tasks in a nursery owned by the connection:

- reader: socket bytes -> session -> events (responses complete their requests, deliver_sm
  and data_sm go to the deliver task, the peer's unbind ends the connection);
- writer: sends everything the session has queued in one `send_all` per wake-up, so a burst
  of submits and deliver_sm_resps costs one system call;
- ticker: expires overdue requests and keeps enquire_link going when the link is idle;
- deliver task: hands the application every deliver_sm received since its last call, as
  one batch, and answers each only after the handler returned its status (so a receipt is
  acknowledged only once the gateway has stored it; one batch = one durable write, and the
  batch grows by itself while the previous one is being committed).

Wake-ups are per read, not per PDU: a read that completes 40 responses wakes the sender
once, and the sender refills the window in one burst. Task switches, not parsing, are what
a trio driver spends its time on.

When the connection ends, every request still outstanding completes with DISCONNECTED
(outcome unknown: the SMSC may have accepted it), and the client reconnects with exponential
back-off and jitter. A bind refused for credentials waits `bind_failure_backoff` seconds,
never a tight loop. `submit()` never raises for SMSC-side conditions: throttling,
generic_nack, queue full, timeouts and disconnects come back as a `SubmitResult` whose
`outcome` says whether to retry.
"""

from __future__ import annotations

import enum
import random
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import msgspec
import structlog
import trio

from gateway.smpp import pdu as P
from gateway.smpp import session as S
from gateway.smpp.constants import (
    INTERFACE_VERSION_34,
    THROTTLING_STATUSES,
    CommandId,
    CommandStatus,
    is_retryable,
    status_name,
)
from gateway.smpp.errors import ProtocolError
from gateway.smpp.transport import RECEIVE_SIZE, connect

RECEIVE_MAX = 64 * 1024  # the reader's largest read (a busy loop: see _reader)
BUSY_PASS = 0.001  # s: a read that waited longer for its turn came after a busy pass

log = structlog.get_logger("gateway.smpp.esme")

BindMode = Literal["transceiver", "transmitter", "receiver"]
_BIND_CLASS = {
    "transceiver": P.BindTransceiver,
    "transmitter": P.BindTransmitter,
    "receiver": P.BindReceiver,
}
# Bind refusals that will not fix themselves by retrying soon: wrong credentials/config.
_CREDENTIAL_FAILURES = frozenset(
    {
        CommandStatus.ESME_RINVPASWD,
        CommandStatus.ESME_RINVSYSID,
        CommandStatus.ESME_RBINDFAIL,
        CommandStatus.ESME_RINVSYSTYP,
    }
)


class EsmeSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """How to reach and bind one SMSC account. Times in seconds. A gateway channel's config
    (gateway.config.ChannelConfig) extends this Struct, so these fields are defined once."""

    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str
    password: str
    system_type: str = ""
    bind_mode: BindMode = "transceiver"
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""
    window: int = 64
    response_timeout: float = 10.0
    connect_timeout: float = 10.0
    enquire_link_interval: float = 30.0
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    bind_failure_backoff: float = 60.0
    unbind_timeout: float = 2.0
    deliver_batch_max: int = 1024  # deliver_sm held for the handler before reading pauses
    deliver_concurrency: int = 2  # handler calls (batches) in progress at once
    tls: bool = False
    tls_verify: bool = True
    tls_ca_file: str | None = None


class Outcome(enum.Enum):
    ACCEPTED = "accepted"  # ESME_ROK: the SMSC took it
    RETRY = "retry"  # throttled / queue full / generic_nack / transient: send again later
    REJECTED = "rejected"  # final refusal (invalid destination, ...)
    TIMEOUT = "timeout"  # no response in time: outcome unknown
    DISCONNECTED = "disconnected"  # connection lost while outstanding: outcome unknown
    NOT_SENT = "not_sent"  # never left this process (client closing): safe to resend


class SubmitResult(msgspec.Struct, frozen=True, gc=False):
    outcome: Outcome
    status: int = 0
    message_id: str | None = None
    response: P.Pdu | None = None
    throttled: bool = False  # the SMSC asked us to slow down

    @property
    def reason(self) -> str:
        if self.outcome in (Outcome.ACCEPTED, Outcome.RETRY, Outcome.REJECTED):
            if self.response is not None and self.response.command_id == CommandId.GENERIC_NACK:
                return f"generic_nack:{status_name(self.status)}"
            return status_name(self.status)
        return self.outcome.value


def classify(response: P.Pdu) -> SubmitResult:
    """Map an SMSC response to an outcome. A generic_nack says the PDU could not be
    handled, not that the message is bad: retryable, and it counts as throttled whatever
    its command_status (ESME_RSYSERR as much as ESME_RTHROTTLED): an SMSC nacking submits
    is overloaded or struggling, so the channel backs off too. Except when the nack says
    the PDU itself is wrong for this SMSC (_NACK_FINAL): the same bytes would be nacked
    again, so the message is rejected rather than retried until its attempts run out
    while slowing the channel for everyone."""
    status = response.command_status
    message_id = getattr(response, "message_id", None)
    if response.command_id == CommandId.GENERIC_NACK:
        if status in _NACK_FINAL:
            return SubmitResult(Outcome.REJECTED, status, None, response)
        return SubmitResult(Outcome.RETRY, status, None, response, throttled=True)
    if status == CommandStatus.ESME_ROK:
        return SubmitResult(Outcome.ACCEPTED, status, message_id, response)
    if is_retryable(status):
        return SubmitResult(
            Outcome.RETRY, status, message_id, response, throttled=status in THROTTLING_STATUSES
        )
    return SubmitResult(Outcome.REJECTED, status, message_id, response)


_GENERIC_NACK = int(CommandId.GENERIC_NACK)
# generic_nack statuses that say the PDU is not one this SMSC can take (unknown command,
# bad length): resending it cannot succeed.
_NACK_FINAL = frozenset({int(CommandStatus.ESME_RINVCMDID), int(CommandStatus.ESME_RINVCMDLEN)})
_ENQUIRE_LINK = int(CommandId.ENQUIRE_LINK)
_ACCEPTED = Outcome.ACCEPTED
# ESME_ROK answers as wire bytes, a batch's in one buffer (Session.send_acks): the body
# of a deliver_sm_resp / data_sm_resp with an empty message_id is one NUL.
_ACK_ID = {
    int(CommandId.DELIVER_SM): int(CommandId.DELIVER_SM_RESP),
    int(CommandId.DATA_SM): int(CommandId.DATA_SM_RESP),
}
_DELIVER_SM = int(CommandId.DELIVER_SM)
_DELIVER_SM_RESP = int(CommandId.DELIVER_SM_RESP)


class _Waiter:
    __slots__ = ("event", "result")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.result: SubmitResult | None = None

    def set(self, result: SubmitResult) -> None:
        if self.result is None:
            self.result = result
            self.event.set()


def describe(e: BaseException) -> str:
    """`Type: message` of an I/O error, through trio's wrapping to the root cause (a TLS
    stream failing its handshake says BrokenResourceError; the operator needs
    "SSLCertVerificationError: certificate verify failed")."""
    while not str(e) and e.__cause__ is not None:
        e = e.__cause__
    return f"{type(e).__name__}: {e}"


class ClientClosed(Exception):
    code = "client_closed"


# Gets the requests accepted in one read: (the on_result each was submitted with, message_id).
AcceptedSink = Callable[[list[tuple[Callable[[SubmitResult], None], str]]], None]

# Gets the deliver_sm/data_sm/alert_notification PDUs received since the last call and
# returns one command_status per PDU (ESME_ROK = taken; anything else refuses that PDU).
# With EsmeClient.read_receipts, a plain delivery receipt comes read to its outcome, a
# receipt.ReadOutcome tuple (its sequence number first), instead of its DeliverSm
# (Session.on_deliveries).
DeliverHandler = Callable[[list[Any]], Awaitable[list[int]]]


async def _accept_all(pdus: list[P.Pdu]) -> list[int]:
    return [CommandStatus.ESME_ROK] * len(pdus)


class EsmeStats(msgspec.Struct, kw_only=True):
    connects: int = 0
    binds: int = 0
    bind_failures: int = 0
    disconnects: int = 0
    submitted: int = 0
    accepted: int = 0
    retry: int = 0
    rejected: int = 0
    timeouts: int = 0
    lost_on_disconnect: int = 0
    delivered_in: int = 0
    invalid_pdus: int = 0


class EsmeClient:
    """One bind to one SMSC account, kept alive until `close()` or cancellation."""

    def __init__(
        self,
        settings: EsmeSettings,
        *,
        on_deliver: DeliverHandler = _accept_all,
        name: str = "esme",
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.on_deliver = on_deliver
        # Called (no awaiting) after a read whose responses freed window slots: a sender
        # that can fill them without waiting does so from the reader's step.
        self.on_window_free: Callable[[], None] | None = None
        # Set: the requests the SMSC accepted in one read (ESME_ROK with a message_id) come
        # back as one call, `on_accepted([(on_result, message_id), ...])` with the on_result
        # each was submitted with, instead of one on_result(SubmitResult) call each.
        self.on_accepted: AcceptedSink | None = None
        # Set (before run): the handler gets plain delivery receipts as receipt.ReadOutcome
        # tuples (sequence_number, message_id, state, error_code, intermediate, text:
        # receipt.read_receipt_outcome), read per read with no Pdu
        # (Session.on_deliveries), in wire order with the Pdus of everything else.
        self.read_receipts = False
        self.name = name
        self.stats = EsmeStats()
        self.log = log.bind(channel=name, smsc=f"{settings.host}:{settings.port}")
        self._rng = rng or random.Random()
        self._session: S.Session | None = None
        self._stream: trio.abc.Stream | None = None
        self._waiters: dict[int, Callable[[SubmitResult], None]] = {}
        self._bound = trio.Event()
        self._closing = False
        self._closed = trio.Event()
        self._wake_writer = trio.Event()
        self._writer_woken = False  # _wake_writer was set by submit_nowait, not yet flushed
        self._window_lot = trio.lowlevel.ParkingLot()
        self._deliver_pending: list[Any] = []
        self._delivering = 0  # deliver batches with the handler (answered when it returns)
        self._deliver_wake = trio.Event()
        self._deliver_room = trio.lowlevel.ParkingLot()
        self._conn_scope: trio.CancelScope | None = None
        self._completed = False  # a request completed during the current read
        self._now: Callable[[], float] = trio.current_time
        self._last_rx = 0.0
        self.last_error: str | None = None

    # ---- public API ------------------------------------------------------------------

    @property
    def bound(self) -> bool:
        return self._session is not None and self._session.bound

    @property
    def can_submit(self) -> bool:
        return self.bound and self.settings.bind_mode != "receiver" and not self._closing

    def set_window(self, window: int) -> None:
        """Retune the window in place (no reconnect); waiters re-check at once."""
        self.settings = msgspec.structs.replace(self.settings, window=window)
        if self._session is not None:
            self._session.window = window
        self._window_lot.unpark_all()

    async def wait_bound(self) -> None:
        while not self.bound:
            if self._closing:
                raise ClientClosed(self.name)
            await self._bound.wait()

    async def acquire_slot(self, *, wait_for_bind: bool = True) -> bool:
        """Wait until bound with a free window slot. False when the client is closing, or
        (with `wait_for_bind=False`) when the bind is down: a sender halfway through a
        multipart message must not sit on it until the SMSC comes back.

        Returns without yielding when a slot is free already, so a sender that keeps the
        window full costs no task switch per message.
        """
        while True:
            if self._closing:
                return False
            session = self._session
            if session is None or not session.bound:
                if not wait_for_bind:
                    return False
                await self._bound.wait()
            elif session.window_free <= 0:
                await self._window_lot.park()
            else:
                return True

    def free_slots(self) -> int:
        """How many requests submit_nowait() would send now without waiting: the free
        window slots while bound and not closing, else 0."""
        session = self._session
        if self._closing or session is None or not session.bound:
            return 0
        return max(0, session.window_free)

    def submit_nowait(
        self,
        request: P.Pdu,
        on_result: Callable[[SubmitResult], None],
        timeout: float | None = None,
        now: float | None = None,
    ) -> bool:
        """Send `request` now; `on_result` is called exactly once with its outcome.

        Call after `acquire_slot()` returned True (and without awaiting in between). Returns
        False, without calling `on_result`, when the request could not be queued (no bind,
        window full, closing): it was not sent and may be resent. `now`: trio's clock
        (`trio.current_time()`) as the caller read it within the same step, for a caller
        that submits many at once (Channel._burst reads it once per burst); None reads it
        here. The request's deadline is `now` plus its timeout.
        """
        session = self._session
        if self._closing or session is None:
            return False
        try:
            session.send(request, self._now() if now is None else now, timeout)
        except ProtocolError:
            return False
        self._waiters[request.sequence_number] = on_result
        self.stats.submitted += 1
        if not self._writer_woken:  # a burst sends many: one Event.set() call for all
            self._writer_woken = True
            self._wake_writer.set()
        return True

    async def submit(self, request: P.Pdu, timeout: float | None = None) -> SubmitResult:
        """Send a request (submit_sm, data_sm, query_sm...) and wait for its outcome.

        Waits for a bind and a free window slot first. Never raises for SMSC behaviour.
        """
        while True:
            if not await self.acquire_slot():
                return SubmitResult(Outcome.NOT_SENT)
            waiter = _Waiter()
            if self.submit_nowait(request, waiter.set, timeout):
                break
        await waiter.event.wait()
        result = waiter.result
        assert result is not None
        return result

    async def close(self) -> None:
        """Stop taking requests, let outstanding ones finish (bounded), unbind, disconnect."""
        self._closing = True
        self._bound.set()  # wake anyone waiting for a bind: they get NOT_SENT
        self._window_lot.unpark_all()
        session = self._session
        if session is not None and session.bound and self._stream is not None:
            with trio.move_on_after(self.settings.response_timeout):
                # Our requests answered, and what the SMSC delivered answered too: a
                # deliver_sm stored but not answered before the unbind is sent again (on
                # another bind), a second copy racing the first one's commit.
                while session.outstanding or self._deliver_pending or self._delivering:
                    await trio.sleep(0.01)
            if session.bound:
                try:
                    session.send(P.Unbind(), trio.current_time(), self.settings.unbind_timeout)
                    self._wake_writer.set()
                except ProtocolError:
                    pass
                with trio.move_on_after(self.settings.unbind_timeout):
                    while session.state is S.State.UNBINDING:
                        await trio.sleep(0.01)
        if self._conn_scope is not None:
            self._conn_scope.cancel()
        with trio.move_on_after(self.settings.unbind_timeout + 1):
            await self._closed.wait()

    # ---- connection loop -------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, bind, serve; reconnect with back-off until closed or cancelled."""
        task_status.started()
        attempt = 0
        try:
            while not self._closing:
                delay: float | None = None
                try:
                    bound = await self._connect_and_serve()
                except _BindRefused as e:
                    self.stats.bind_failures += 1
                    self.last_error = e.reason
                    if e.status in _CREDENTIAL_FAILURES:
                        delay = self.settings.bind_failure_backoff
                    bound = False
                    self.log.warning("bind_refused", status=status_name(e.status), retry_in=delay)
                except (OSError, trio.BrokenResourceError, trio.TooSlowError, ssl.SSLError) as e:
                    self.last_error = describe(e)
                    self.log.warning("connection_failed", error=self.last_error)
                    bound = False
                if self._closing:
                    break
                attempt = 0 if bound else attempt + 1
                if delay is None:
                    delay = self._backoff(attempt)
                await trio.sleep(delay)
        finally:
            self._closed.set()

    def _backoff(self, attempt: int) -> float:
        base = min(self.settings.reconnect_max, self.settings.reconnect_min * (2 ** max(attempt - 1, 0)))
        return base * (0.5 + self._rng.random() / 2)  # jitter: 50-100% of the step

    def _tls_context(self) -> ssl.SSLContext | None:
        if not self.settings.tls:
            return None
        ctx = ssl.create_default_context(cafile=self.settings.tls_ca_file)
        if not self.settings.tls_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    async def _connect_and_serve(self) -> bool:
        """One connection's life. Returns True if it got bound (resets the back-off)."""
        st = self.settings
        stream = await connect(
            st.host, st.port, tls=self._tls_context(), timeout=st.connect_timeout
        )
        self.stats.connects += 1
        session = S.Session(
            S.Role.ESME,
            window=st.window,
            response_timeout=st.response_timeout,
            on_response=self._on_response,
            on_accepted=self._on_accepted,
            on_deliveries=self._on_deliveries if self.read_receipts else None,
        )
        self._stream, self._session = stream, session
        self._now = trio.lowlevel.current_clock().current_time
        self._wake_writer = trio.Event()
        self._writer_woken = False
        self._send_lock = trio.Lock()
        was_bound = False
        try:
            async with stream:
                after_bind = await self._bind(stream, session)
                was_bound = True
                self.stats.binds += 1
                self._bound.set()
                self._window_lot.unpark_all()
                self.log.info("bound", mode=st.bind_mode)
                with trio.CancelScope() as scope:
                    self._conn_scope = scope
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._writer, stream, session, nursery.cancel_scope)
                        nursery.start_soon(self._ticker, session, nursery.cancel_scope)
                        nursery.start_soon(
                            self._deliver_loop, stream, session, nursery.cancel_scope
                        )
                        await self._reader(stream, session, after_bind)
                        nursery.cancel_scope.cancel()
        finally:
            self._conn_scope = None
            self._bound = trio.Event()
            self._deliver_pending = []  # unanswered: the SMSC delivers them again
            self._deliver_room.unpark_all()
            lost = session.abandon_all()
            for request in lost:
                self._finish(request.sequence_number, SubmitResult(Outcome.DISCONNECTED))
            self.stats.lost_on_disconnect += len(lost)
            for seq in list(self._waiters):
                self._finish(seq, SubmitResult(Outcome.DISCONNECTED))
            self._window_lot.unpark_all()
            self._stream = self._session = None
            if was_bound:
                self.stats.disconnects += 1
                self.log.info("disconnected", abandoned=len(lost))
        return was_bound

    async def _bind(self, stream: trio.abc.Stream, session: S.Session) -> list[Any]:
        """Bind; returns the events that came in the same read after the bind response (an
        SMSC may send held receipts or an enquire_link right behind it): the reader
        handles them first."""
        st = self.settings
        bind = _BIND_CLASS[st.bind_mode](
            system_id=st.system_id,
            password=st.password,
            system_type=st.system_type,
            interface_version=INTERFACE_VERSION_34,
            addr_ton=st.addr_ton,
            addr_npi=st.addr_npi,
            address_range=st.address_range,
        )
        session.send(bind, trio.current_time())
        await stream.send_all(session.data_to_send())
        with trio.fail_after(st.response_timeout):
            while True:
                data = await stream.receive_some(RECEIVE_SIZE)
                if not data:
                    raise trio.BrokenResourceError("connection closed during bind")
                session.receive_data(data)
                events = session.next_events()
                for i, ev in enumerate(events):
                    if isinstance(ev, S.ResponseReceived) and ev.request is bind:
                        if session.bound:
                            self._last_rx = trio.current_time()
                            return events[i + 1 :]
                        raise _BindRefused(ev.pdu.command_status)
                    if isinstance(ev, S.InvalidPdu) and ev.fatal:
                        raise trio.BrokenResourceError(str(ev.error))
                    if isinstance(ev, S.Unbound):
                        raise trio.BrokenResourceError("unbound during bind")
                out = session.data_to_send()
                if out:
                    await stream.send_all(out)

    async def _reader(
        self, stream: trio.abc.Stream, session: S.Session, first: Sequence[Any] = ()
    ) -> None:
        """Read until the connection ends; `first`: events the bind's read brought after
        the bind response (held receipts, an enquire_link), handled before reading on."""
        if first and await self._handle_events(stream, session, list(first)):
            return
        size = RECEIVE_SIZE
        now = self._now
        while True:
            while len(self._deliver_pending) >= self.settings.deliver_batch_max:
                await self._deliver_room.park()  # backpressure: the handler is behind
            asked = now()
            try:
                data = await stream.receive_some(size)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
                self.last_error = describe(e)
                return
            if not data:
                self.last_error = "connection closed by SMSC"
                return
            self._last_rx = got = now()
            # One read per event-loop pass: when the loop is busy (other binds, the API,
            # the store) a pass takes milliseconds and a 4 KiB read a pass falls behind
            # what the SMSC sends (its window then stays full of PDUs waiting in our
            # socket). So a full read after a slow pass doubles the next one; a read
            # that does not fill half the buffer halves it again. An idle loop keeps the
            # small reads that let ESME and SMSC overlap (transport.RECEIVE_SIZE).
            n = len(data)
            if n == size:
                if got - asked > BUSY_PASS and size < RECEIVE_MAX:
                    size *= 2
            elif n < size >> 1 and size > RECEIVE_SIZE:
                size >>= 1
            session.receive_data(data)  # responses complete through _on_response
            if await self._handle_events(stream, session, session.next_events()):
                return

    async def _handle_events(
        self, stream: trio.abc.Stream, session: S.Session, events: list[Any]
    ) -> bool:
        """Hand what a read brought to its consumers; True if the connection must end."""
        end = False
        delivered = 0
        for ev in events:
            t = type(ev)
            if t is S.RequestReceived:
                delivered += 1
                self._deliver_pending.append(ev.pdu)
            elif t is S.ResponseReceived:  # unbind_resp
                self._on_response(ev.pdu, ev.request)
            elif t is S.Unbound:
                self.log.info("unbound", by_peer=ev.by_peer)
                end = True
            elif t is S.InvalidPdu:
                self.stats.invalid_pdus += 1
                self.log.warning("invalid_pdu", error=str(ev.error), fatal=ev.fatal)
                end = end or ev.fatal
            elif t is S.UnexpectedResponse:
                self.log.warning(
                    "unexpected_response",
                    command=ev.pdu.command_name,
                    seq=ev.pdu.sequence_number,
                )
        if delivered:  # once per read
            self.stats.delivered_in += delivered
            self._deliver_wake.set()
        if self._completed:
            self._completed = False
            refill = self.on_window_free
            if refill is not None:
                # The sender refills the window in this step: waking its task instead
                # put one more event-loop pass (milliseconds under load) into every
                # submit's round trip while the window is what limits the rate.
                try:
                    refill()
                except Exception:  # the sender's bug must not break the reader
                    self.log.exception("window_refill_failed")
            if session.window_free > 0:  # else a woken sender would find it full
                self._window_lot.unpark_all()  # once per read: the sender refills in a burst
        if session.has_output:  # answers the session made (enquire_link_resp, nacks)
            self._wake_writer.set()
        if end:
            # Flush our unbind_resp / generic_nack before closing (the writer may be
            # mid-send: _flush waits for it).
            with trio.move_on_after(1):
                await self._flush(stream, session)
        return end

    def _on_response(self, response: P.Pdu, request: P.Pdu) -> None:
        """The session's response handler (called while it decodes a read)."""
        self._completed = True
        if request.command_id == _ENQUIRE_LINK:
            return
        if response.command_status == 0 and response.command_id != _GENERIC_NACK:
            # The common case, classify() inlined.
            result = SubmitResult(
                _ACCEPTED, 0, getattr(response, "message_id", None), response
            )
            self.stats.accepted += 1
        else:
            result = classify(response)
            self._count(result)
        on_result = self._waiters.pop(request.sequence_number, None)
        if on_result is not None:
            try:
                on_result(result)
            except Exception:  # a caller's callback bug must not break the reader
                self.log.exception("result_callback_failed")

    def _on_accepted(self, accepted: list[tuple[int, str]]) -> None:
        """The session's handler for a read's accepting submit_sm_resps (seq, message_id):
        one call per read for what is most of the traffic."""
        self._completed = True
        self.stats.accepted += len(accepted)
        waiters = self._waiters
        sink = self.on_accepted
        if sink is not None:
            done = []
            for seq, message_id in accepted:
                on_result = waiters.pop(seq, None)
                if on_result is not None:
                    done.append((on_result, message_id))
            try:
                sink(done)
            except Exception:  # a caller's callback bug must not break the reader
                self.log.exception("result_callback_failed")
            return
        for seq, message_id in accepted:
            self._finish(seq, SubmitResult(_ACCEPTED, 0, message_id))

    def _on_deliveries(self, items: list[Any]) -> None:
        """The session's handler for what a read delivered (receipts read as tuples,
        anything else as Pdus, in wire order): queued for the deliver task, woken once."""
        pending = self._deliver_pending
        if pending:
            pending += items
        else:
            self._deliver_pending = items  # the session's list: a new one per read
        self.stats.delivered_in += len(items)
        self._deliver_wake.set()

    def _count(self, result: SubmitResult) -> None:
        o = result.outcome
        if o is Outcome.ACCEPTED:
            self.stats.accepted += 1
        elif o is Outcome.RETRY:
            self.stats.retry += 1
        elif o is Outcome.REJECTED:
            self.stats.rejected += 1
        elif o is Outcome.TIMEOUT:
            self.stats.timeouts += 1

    def _finish(self, seq: int, result: SubmitResult) -> None:
        on_result = self._waiters.pop(seq, None)
        if on_result is not None:
            try:
                on_result(result)
            except Exception:  # a caller's callback bug must not break the reader
                self.log.exception("result_callback_failed")

    async def _writer(
        self, stream: trio.abc.Stream, session: S.Session, conn_scope: trio.CancelScope
    ) -> None:
        while True:
            await self._wake_writer.wait()
            self._wake_writer = trio.Event()
            self._writer_woken = False  # what is queued from here wakes the new Event
            if not await self._flush(stream, session):
                # The peer is gone: end this connection (run() reconnects).
                conn_scope.cancel()
                return

    async def _flush(self, stream: trio.abc.Stream, session: S.Session) -> bool:
        """Send what the session has queued; False if the connection is broken. The bytes
        are taken under the send lock, so two senders (the writer, the receipt loop)
        cannot put PDUs on the wire out of the order they were queued in."""
        try:
            async with self._send_lock:
                data = session.data_to_send()
                if data:
                    await stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            self.last_error = describe(e)
            return False
        return True

    async def _ticker(self, session: S.Session, conn_scope: trio.CancelScope) -> None:
        st = self.settings
        tick = min(0.1, st.response_timeout / 4)
        link_check: P.Pdu | None = None
        while True:
            await trio.sleep(tick)
            now = trio.current_time()
            for ev in session.expire(now):
                if ev.request is link_check:
                    self.log.warning("enquire_link_timeout")
                    conn_scope.cancel()
                    return
                self._count(SubmitResult(Outcome.TIMEOUT))
                self._finish(ev.request.sequence_number, SubmitResult(Outcome.TIMEOUT))
                self._window_lot.unpark_all()
            if now - self._last_rx >= st.enquire_link_interval and session.bound:
                if link_check is None or not session.is_outstanding(link_check.sequence_number):
                    try:
                        link_check = session.send(P.EnquireLink(), now)
                    except ProtocolError:
                        continue
                    self._last_rx = now  # do not send another before this one is answered
                    self._wake_writer.set()

    async def _deliver_loop(
        self, stream: trio.abc.Stream, session: S.Session, conn_scope: trio.CancelScope
    ) -> None:
        """Hand what arrived to the handler, up to `deliver_concurrency` batches at a time:
        the SMSC keeps a window of unanswered deliver_sm, and a handler that stores them
        durably answers a batch only after its commit. With one batch at a time, what
        arrived meanwhile waited for that commit before its own began."""
        slots = trio.Semaphore(self.settings.deliver_concurrency)
        async with trio.open_nursery() as nursery:
            while True:
                await self._deliver_wake.wait()
                self._deliver_wake = trio.Event()
                if not self._deliver_pending:
                    continue
                await slots.acquire()  # meanwhile the next batch grows
                batch, self._deliver_pending = self._deliver_pending, []
                if not batch:
                    slots.release()
                    continue
                self._deliver_room.unpark_all()
                nursery.start_soon(self._deliver_batch, stream, session, conn_scope, batch, slots)

    async def _deliver_batch(
        self,
        stream: trio.abc.Stream,
        session: S.Session,
        conn_scope: trio.CancelScope,
        batch: list[Any],
        slots: trio.Semaphore,
    ) -> None:
        self._delivering += 1
        try:
            await self._answer(stream, session, conn_scope, batch)
        finally:
            self._delivering -= 1
            slots.release()

    async def _answer(
        self,
        stream: trio.abc.Stream,
        session: S.Session,
        conn_scope: trio.CancelScope,
        batch: list[Any],
    ) -> None:
        """Call the handler, queue one answer per PDU with its status, send them (from
        here, not by waking the writer: one event-loop pass sooner). A receipt.ReadOutcome
        is a deliver_sm's: its sequence number first."""
        try:
            statuses = await self.on_deliver(batch)
            if len(statuses) != len(batch):
                raise ValueError(f"handler gave {len(statuses)} statuses for {len(batch)} PDUs")
        except Exception:  # the handler's bug must not kill the bind; the SMSC redelivers
            self.log.exception("deliver_handler_failed", pdus=len(batch))
            statuses = [CommandStatus.ESME_RX_T_APPN] * len(batch)
        try:
            seqs = _taken_receipts(batch, statuses)
            if seqs is not None:
                session.send_acks(_DELIVER_SM_RESP, seqs)
            else:
                _queue_answers(session, batch, statuses)
        except ProtocolError:
            return  # session closed: the SMSC will redeliver
        if not await self._flush(stream, session):
            conn_scope.cancel()


def _taken_receipts(batch: list[Any], statuses: list[int]) -> list[int] | None:
    """The usual batch: receipts read per read (receipt.ReadOutcome), every one taken
    (status 0, as `_queue_answers` tests it: list.count compares the same way). Their
    sequence numbers, in order, to answer in one buffer, what _queue_answers queues for
    such a batch, with no turn per receipt; None for any other batch."""
    if type(statuses) is not list or not batch or statuses.count(0) != len(batch):
        return None
    seqs = [pdu[0] for pdu in batch if type(pdu) is tuple]
    return seqs if len(seqs) == len(batch) else None


def _queue_answers(session: S.Session, batch: list[Any], statuses: list[int]) -> None:
    """Queue one answer per PDU of `batch` with its status: ESME_ROK deliver_sm_resps and
    data_sm_resps in one buffer per command, anything else one by one. ProtocolError if
    the session is closed."""
    acks = _ACK_ID
    ok: dict[int, list[int]] = {}  # ESME_ROK answers by response id: one buffer each
    for pdu, status in zip(batch, statuses, strict=True):
        if type(pdu) is tuple:  # a receipt read per read (receipt.ReadOutcome)
            if status == 0:
                seqs = ok.get(_DELIVER_SM_RESP)
                if seqs is None:
                    seqs = ok[_DELIVER_SM_RESP] = []
                seqs.append(pdu[0])
            else:
                session.send(P.error_response(_DELIVER_SM, pdu[0], status))
            continue
        ack_id = acks.get(pdu.command_id)
        if ack_id is not None and status == 0:
            seqs = ok.get(ack_id)
            if seqs is None:
                seqs = ok[ack_id] = []
            seqs.append(pdu.sequence_number)
        elif P.response_class(pdu.command_id) is None:
            continue  # alert_notification: nothing to answer
        elif status == CommandStatus.ESME_ROK:
            session.send(P.make_response(pdu, status, message_id=""))
        else:
            session.send(P.error_response(pdu.command_id, pdu.sequence_number, status))
    for ack_id, seqs in ok.items():
        session.send_acks(ack_id, seqs)


class _BindRefused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status_name(status))
        self.status = status
        self.reason = f"bind refused: {status_name(status)}"
