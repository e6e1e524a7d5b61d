"""Sans-IO SMPP 3.4 session: one state machine for both ends of a bind.

Theory of operation
-------------------
A `Session` is fed the bytes that arrived (`receive_data`) and returns what they mean
(`next_events`); what the application wants to send goes through `send`, and everything to
be written to the socket, ours and automatic answers alike, is collected until the driver
takes it with `data_to_send` (one write for everything ready: that batching is worth 2x in
throughput). It never touches a socket or a clock: times are passed in as plain floats.

The same class serves the ESME (our gateway) and the SMSC (our simulator); it is told its
`role` and reads the one table below, `_LEGAL`, to know which requests each side may send in
each bind state. Rules it enforces on its own, because every SMPP peer needs them:

- sequence numbers: 1..0x7FFFFFFF, wrapping to 1, never reusing one still outstanding;
- responses are matched to outstanding requests by sequence number (any order); a response
  nobody asked for is reported, not crashed on; `generic_nack` completes the request with
  its sequence number (status says why). A driver that sets `on_response` gets the
  responses to its message traffic and enquire_links as calls `on_response(response,
  request)` made from inside `receive_data`, in wire order, instead of as events (no event
  object, no dispatch per response); bind and unbind responses, which change the state,
  stay events. The handler may call `send`; if it raises, the exception propagates and
  the frames after its own stay buffered for the next `receive_data`. A driver that also
  sets `on_accepted` gets the read's accepting submit_sm_resps (ESME_ROK, a message_id
  and nothing else) as one list of (sequence number, message_id), after the read's other
  calls: no Pdu is built for them (the common response, once per message);
- a driver that sets `on_request` gets the peer's plain message traffic (the windowed
  requests legal in this state that the session has nothing to do for: submit_sm, data_sm,
  ... in the SMSC role, deliver_sm, data_sm, alert_notification in the ESME role) as calls
  `on_request(pdu)` from inside `receive_data`, in wire order, instead of RequestReceived
  events; binds, enquire_link, unbind, refused and undecodable requests are handled as
  without it. Same error contract as `on_response`;
- a driver in the ESME role that sets `on_deliveries` gets the read's plain requests
  (deliver_sm, data_sm, alert_notification) as one list, in wire order, after the read's
  other calls, instead of events or `on_request` calls: a deliver_sm that is a plain
  delivery receipt (`pdu.read_receipt`: what the strict decoder reads, no unusual field
  or TLV) read straight to its outcome, a `receipt.ReadOutcome` tuple (sequence number,
  message id, state, error code, intermediate, text: `receipt.read_receipt_outcome`)
  with no Pdu built (the once-per-message request), anything else as its Pdu;
- every request carries a deadline (`now + response_timeout`); `expire(now)` reports the
  overdue ones and forgets them, so no request is ever left without an outcome;
- `window`: at most that many outstanding "windowed" requests (message traffic); `send`
  refuses beyond it, drivers wait for `window_free` first;
- the peer's `enquire_link` and `unbind` are answered here, automatically;
- a request that is illegal in the current state is answered with ESME_RINVBNDSTS (its
  *_resp, or generic_nack when it has none); a PDU that fails to decode is answered with
  generic_nack or its *_resp carrying the PduError's status, except what we receive from a
  foreign peer where a refusal does harm: responses, and deliver_sm / data_sm in the ESME
  role, are then decoded leniently (`pdu.decode_frame_lenient`), and a response that still
  cannot be read completes its request with its header's command_status (never as a
  generic_nack); both are reported as `InvalidPdu(tolerated=True)`; a broken frame (command_length
  under 16 or over the maximum) cannot be resynchronised: the session answers generic_nack
  and moves to CLOSED, and the driver drops the connection.

Frames are decoded in place: the per-command decoder reads the body straight from the read
buffer between the frame's start and its command_length (no copy per frame). A decoder
reads past its frame only on its way to failing, and when it fails the frame alone is
decoded again (`pdu.decode_frame`), so errors and answers are exactly those of decoding the
frame by itself.

Bind states follow SMPP 3.4 section 2.2: OPEN -> (bind) -> BOUND_TX/RX/TRX -> (unbind) ->
CLOSED. BINDING and UNBINDING are the moments between a request and its response.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from operator import attrgetter
from typing import Any

import msgspec

from gateway.smpp import pdu as P
from gateway.smpp import receipt as R
from gateway.smpp.constants import RESPONSE_BIT, CommandId, CommandStatus
from gateway.smpp.errors import PduError, ProtocolError

C = CommandId


class Role(enum.Enum):
    ESME = "esme"
    SMSC = "smsc"


class State(enum.Enum):
    OPEN = "open"  # connected, not bound
    BINDING = "binding"  # bind request sent / received, response pending
    BOUND_TX = "bound_tx"
    BOUND_RX = "bound_rx"
    BOUND_TRX = "bound_trx"
    UNBINDING = "unbinding"  # we sent unbind, waiting for unbind_resp
    CLOSED = "closed"  # unbound or broken: nothing more may be sent


_BOUND_STATE_OF_BIND = {
    C.BIND_TRANSMITTER: State.BOUND_TX,
    C.BIND_RECEIVER: State.BOUND_RX,
    C.BIND_TRANSCEIVER: State.BOUND_TRX,
}

# Requests each side may SEND in each state (SMPP 3.4 sections 2.2-2.3 and 4). Whatever one
# side may send is what the other side may receive, so this one table serves both.
_ESME_TX = {C.SUBMIT_SM, C.SUBMIT_MULTI, C.DATA_SM, C.QUERY_SM, C.CANCEL_SM, C.REPLACE_SM}
_SMSC_RX = {C.DELIVER_SM, C.DATA_SM, C.ALERT_NOTIFICATION}
_LINK = {C.ENQUIRE_LINK, C.UNBIND}
_LEGAL: dict[tuple[State, Role], frozenset[int]] = {
    (State.OPEN, Role.ESME): frozenset({*_BOUND_STATE_OF_BIND, C.ENQUIRE_LINK}),
    (State.OPEN, Role.SMSC): frozenset({C.OUTBIND, C.ENQUIRE_LINK}),
    (State.BINDING, Role.ESME): frozenset({C.ENQUIRE_LINK}),
    (State.BINDING, Role.SMSC): frozenset({C.ENQUIRE_LINK}),
    (State.BOUND_TX, Role.ESME): frozenset(_ESME_TX | _LINK),
    (State.BOUND_TX, Role.SMSC): frozenset(_LINK),
    (State.BOUND_RX, Role.ESME): frozenset(_LINK),
    (State.BOUND_RX, Role.SMSC): frozenset(_SMSC_RX | _LINK),
    (State.BOUND_TRX, Role.ESME): frozenset(_ESME_TX | _LINK),
    (State.BOUND_TRX, Role.SMSC): frozenset(_SMSC_RX | _LINK),
    (State.UNBINDING, Role.ESME): frozenset(),
    (State.UNBINDING, Role.SMSC): frozenset(),
    (State.CLOSED, Role.ESME): frozenset(),
    (State.CLOSED, Role.SMSC): frozenset(),
}

# Requests that occupy a window slot: message traffic, not link management.
WINDOWED = frozenset(_ESME_TX | _SMSC_RX)
# Requests that have no response.
_NO_RESPONSE = frozenset({C.OUTBIND, C.ALERT_NOTIFICATION})
_BOUND = frozenset({State.BOUND_TX, State.BOUND_RX, State.BOUND_TRX})
# Read per PDU: a module global, not an Enum class attribute (~150 ns each on Python 3.11).
_CLOSED = State.CLOSED


# ---------------------------------------------------------------------------------------
# Events


class RequestReceived(msgspec.Struct, gc=False):
    """A peer request for the application (submit_sm, deliver_sm, bind_*, query_sm...).

    The application answers with `session.send(make_response(pdu, ...))`.
    """

    pdu: P.Pdu


class ResponseReceived(msgspec.Struct, gc=False):
    """The answer to one of our requests. `pdu` may be a generic_nack."""

    pdu: P.Pdu
    request: P.Pdu


class RequestTimedOut(msgspec.Struct, gc=False):
    request: P.Pdu


class OutbindReceived(msgspec.Struct, gc=False):
    pdu: P.Pdu


class Unbound(msgspec.Struct, gc=False):
    """The bind ended: the peer unbound (we answered) or our unbind was answered."""

    by_peer: bool


class LinkChecked(msgspec.Struct, gc=False):
    """The peer sent enquire_link; it was answered already."""


class InvalidPdu(msgspec.Struct, gc=False):
    """Bytes that did not decode or a request not allowed now. Already answered if possible.

    `tolerated`: the PDU broke the codec's strict rules but was handled all the same (a
    response or a received deliver_sm / data_sm decoded leniently, or a response whose body
    could not be read completing its request with its header's command_status); the event
    only reports the anomaly, for logs and counters."""

    error: Exception
    fatal: bool = False  # the stream cannot be resynchronised; close the connection
    tolerated: bool = False


class UnexpectedResponse(msgspec.Struct, gc=False):
    """A response whose sequence number matches nothing outstanding."""

    pdu: P.Pdu


class _Outstanding(msgspec.Struct, gc=False):
    pdu: P.Pdu
    deadline: float
    answer: int  # the command_id of its response (generic_nack also answers it)
    plain: bool  # not a bind or unbind: its response changes no state
    windowed: bool


# Requests whose response changes the bind state: always reported as events.
_STATEFUL = frozenset({*_BOUND_STATE_OF_BIND, C.UNBIND})
_GENERIC_NACK = int(C.GENERIC_NACK)
_UNPACK_HEADER = P.HEADER.unpack_from
_DECODERS = P.DECODERS
_MAX_SEQUENCE = P.MAX_SEQUENCE
# A body decoded in place (inside the read buffer) may read past its frame only on its way
# to failing; these are the ways it fails. The frame is then decoded alone, which gives the
# canonical PduError.
_DECODE_FAILURES = (PduError, IndexError, struct.error)

ResponseHandler = Callable[[P.Pdu, P.Pdu], None]
AcceptedHandler = Callable[[list[tuple[int, str]]], None]
RequestHandler = Callable[[P.Pdu], None]
DeliveriesHandler = Callable[[list["P.Pdu | R.ReadOutcome"]], None]
_DELIVER_SM = int(C.DELIVER_SM)
_read_receipt = R.read_receipt_outcome
_SUBMIT_SM_RESP = int(C.SUBMIT_SM_RESP)
_ACKS = frozenset({int(C.DELIVER_SM_RESP), int(C.DATA_SM_RESP)})
# A response of 17 octets: the header, then an empty message_id (its NUL, the "x" pad byte).
_PACK_ACK = struct.Struct(">IIIIx").pack
# The longest message_id of a submit_sm_resp, without its NUL (the codec's C-string limit of
# 65 octets, pdu._MSGID_RESP_LAYOUT): a longer one takes the general path and its error.
_MESSAGE_ID_MAX = 64
_PACK_HEADER = P.HEADER.pack
_ENCODED = P.Encoded
# What send_encoded_response takes: responses that cannot answer a peer's bind.
_ENCODABLE_RESPONSES = frozenset(
    int(c)
    for c in CommandId
    if c & RESPONSE_BIT
    and c != C.GENERIC_NACK
    and c & ~RESPONSE_BIT not in _BOUND_STATE_OF_BIND
)


def _tolerated(e: PduError, how: str) -> PduError:
    """The strict decoder's error, reworded to say the PDU was handled all the same."""
    return PduError(
        f"{e.reason}; tolerated: {how}",
        e.command_status,
        command_id=e.command_id,
        sequence_number=e.sequence_number,
    )


class Session:
    def __init__(
        self,
        role: Role,
        *,
        window: int = 10,
        response_timeout: float = 10.0,
        max_pdu_length: int = P.DEFAULT_MAX_PDU_LENGTH,
        on_response: ResponseHandler | None = None,
        on_accepted: AcceptedHandler | None = None,
        on_request: RequestHandler | None = None,
        on_deliveries: DeliveriesHandler | None = None,
    ) -> None:
        self.role = role
        # Set: responses to requests other than bind and unbind complete through
        # `on_response(response, request)` during receive_data, instead of as events.
        self.on_response = on_response
        # Set: the submit_sm_resps of a read that accept their submit_sm (ESME_ROK, the body
        # a message_id alone) go to `on_accepted([(seq, message_id), ...])` once, after
        # the read's other handler calls, instead of one `on_response` each (no Pdu built).
        self.on_accepted = on_accepted
        # Set: the peer's plain message traffic (requests in `_plain_receive`) goes to
        # `on_request(pdu)` during receive_data, in wire order, instead of as events.
        self.on_request = on_request
        # Set (ESME role): the read's plain requests go to `on_deliveries([...])` once,
        # in wire order, after the read's other handler calls; a plain delivery receipt
        # read to its outcome, an R.ReadOutcome tuple (no Pdu built), anything else as
        # its Pdu.
        self.on_deliveries = on_deliveries
        self.peer_role = Role.SMSC if role is Role.ESME else Role.ESME
        self._bound_as: State | None = None  # the bound state an UNBINDING session came from
        self.state = State.OPEN
        self.window = window
        self.response_timeout = response_timeout
        self.max_pdu_length = max_pdu_length
        self._seq = 0
        self._outstanding: dict[int, _Outstanding] = {}
        self._windowed = 0
        self._rest = b""  # the start of a PDU not yet wholly received
        self._outbox: list[bytes] = []
        self._events: list[Any] = []
        self._peer_pending: dict[int, P.Pdu] = {}  # peer requests awaiting our answer (binds)

    # ---- state ---------------------------------------------------------------------

    def _set_state(self, new: State) -> None:
        # The legal sets are looked up once per state change, not per PDU (an Enum-keyed
        # dict lookup costs ~0.8 us, paid on every request otherwise).
        if new is State.UNBINDING:
            old = getattr(self, "_state", None)
            self._bound_as = old if old in _BOUND else None
        self._state = new
        self._bound = new in _BOUND
        self._may_send = _LEGAL[(new, self.role)]
        if new is State.UNBINDING and self._bound_as is not None:
            # Until our unbind is answered the peer may still be sending: a receipt in flight
            # must reach the application, and a crossing unbind is answered ESME_ROK.
            self._may_receive = _LEGAL[(self._bound_as, self.peer_role)]
        else:
            self._may_receive = _LEGAL[(new, self.peer_role)]
        # Requests the application handles with nothing for the session to do first.
        self._plain_receive = self._may_receive & WINDOWED

    # Read by drivers once or twice per message (the simulator's connection): a C getter
    # (attrgetter) costs no Python frame per read, as a `def` getter does.
    state = property(attrgetter("_state"), _set_state)

    # ---- introspection -------------------------------------------------------------

    # `state in BOUND_TX/RX/TRX`, kept by _set_state (a C getter, as `state`).
    bound = property(attrgetter("_bound"))

    @property
    def outstanding(self) -> int:
        return len(self._outstanding)

    @property
    def window_used(self) -> int:
        return self._windowed

    @property
    def window_free(self) -> int:
        return self.window - self._windowed

    def is_outstanding(self, sequence_number: int) -> bool:
        return sequence_number in self._outstanding

    def next_deadline(self) -> float | None:
        if not self._outstanding:
            return None
        return min(o.deadline for o in self._outstanding.values())

    def can_send(self, command_id: int) -> bool:
        return command_id in self._may_send

    # ---- sending -------------------------------------------------------------------

    def _next_sequence(self) -> int:
        seq = self._seq
        outstanding = self._outstanding
        while True:
            seq = seq + 1 if seq < P.MAX_SEQUENCE else 1
            if seq not in outstanding:
                self._seq = seq
                return seq

    def send(self, pdu: P.Pdu, now: float = 0.0, timeout: float | None = None) -> P.Pdu:
        """Queue `pdu` for sending. Requests get the next sequence number and a deadline.

        Returns the PDU (with its sequence number filled in for requests). Raises
        ProtocolError if the command is not allowed in this state or the window is full,
        PduError if a field cannot be encoded; in both cases nothing is queued.
        """
        cid = pdu.command_id
        if cid & RESPONSE_BIT:
            self._send_response(pdu)
            return pdu
        if cid not in self._may_send:
            raise ProtocolError(f"{pdu.command_name} not allowed in state {self._state.value}")
        windowed = cid in WINDOWED
        if windowed and self._windowed >= self.window:
            raise ProtocolError("window full", CommandStatus.ESME_RTHROTTLED)
        outstanding = self._outstanding
        seq = self._seq + 1
        if seq > _MAX_SEQUENCE or seq in outstanding:
            seq = self._next_sequence()
        else:
            self._seq = seq
        pdu.sequence_number = seq
        if pdu.__class__ is _ENCODED:
            # Encoded.encode() inlined (the gateway's submit_sm, the simulator's receipts:
            # once per message): the header packed in front of the body, no call.
            body = pdu.body
            self._outbox.append(_PACK_HEADER(16 + len(body), cid, pdu.command_status, seq) + body)
        else:
            self._outbox.append(pdu.encode())
        if cid in _NO_RESPONSE:
            return pdu
        plain = cid not in _STATEFUL
        outstanding[seq] = _Outstanding(
            pdu,
            now + (self.response_timeout if timeout is None else timeout),
            cid | RESPONSE_BIT,
            plain,
            windowed,
        )
        if windowed:
            self._windowed += 1
        elif not plain:
            self.state = State.BINDING if cid in _BOUND_STATE_OF_BIND else State.UNBINDING
        return pdu

    def send_acks(self, command_id: int, sequence_numbers: list[int]) -> None:
        """Queue ESME_ROK answers with an empty message_id to the peer's requests
        `sequence_numbers`, as one buffer: `command_id` is DELIVER_SM_RESP or DATA_SM_RESP
        (their body is then a single NUL). What an ESME sends once per receipt, without
        encoding a Pdu each. ProtocolError if the session is closed, ValueError for another
        command_id; nothing is queued then."""
        if command_id not in _ACKS:
            raise ValueError(f"send_acks answers deliver_sm and data_sm, not 0x{command_id:08x}")
        if self._state is _CLOSED:
            raise ProtocolError("session closed")
        # The answers differ only in their sequence number (octets 12-15 of 17): the numbers
        # are packed in one call, then laid into copies of one answer octet by octet (four
        # slice assignments, not one pack and one bytes object per answer). A number that
        # does not fit raises struct.error as a pack per answer would, before anything is
        # queued.
        n = len(sequence_numbers)
        numbers = struct.pack(f">{n}I", *sequence_numbers)
        acks = bytearray(_PACK_ACK(17, command_id, 0, 0) * n)
        acks[12::17] = numbers[0::4]
        acks[13::17] = numbers[1::4]
        acks[14::17] = numbers[2::4]
        acks[15::17] = numbers[3::4]
        self._outbox.append(bytes(acks))

    def send_encoded_response(
        self, command_id: int, sequence_number: int, body: bytes, command_status: int = 0
    ) -> None:
        """Queue a response whose body is wire bytes already (everything after the 16-octet
        header, exactly as the codec encodes it: the caller's responsibility, as for
        `P.Encoded`): the header is packed in front of it, no PDU object is built or encoded.
        For the responses a peer's bind cannot be waiting for: a bind_*_resp or a
        generic_nack (which may answer a bind) is refused with ValueError, as is a request
        id; those go through `send`. ProtocolError if the session is closed. Nothing is
        queued when it raises."""
        if command_id not in _ENCODABLE_RESPONSES:
            raise ValueError(
                f"send_encoded_response takes responses that cannot answer a bind, not 0x{command_id:08x}"
            )
        if self._state is _CLOSED:
            raise ProtocolError("session closed")
        if self._peer_pending and sequence_number in self._peer_pending:
            # Answers the peer's pending bind by its number: the general path decides.
            self._send_response(P.Encoded(command_id, body, sequence_number, command_status))
            return
        self._outbox.append(
            _PACK_HEADER(16 + len(body), command_id, command_status, sequence_number) + body
        )

    def _send_response(self, pdu: P.Pdu) -> None:
        if self._state is _CLOSED:
            raise ProtocolError("session closed")
        data = pdu.encode()
        self._outbox.append(data)
        if self._peer_pending:
            request = self._peer_pending.pop(pdu.sequence_number, None)
            if request is not None and request.command_id in _BOUND_STATE_OF_BIND:
                # Our answer to the peer's bind decides the state (SMSC role).
                if pdu.command_status == CommandStatus.ESME_ROK:
                    self.state = _BOUND_STATE_OF_BIND[request.command_id]
                else:
                    self.state = State.OPEN

    @property
    def has_output(self) -> bool:
        """Bytes are queued for data_to_send()."""
        return bool(self._outbox)

    def data_to_send(self) -> bytes:
        """Everything queued for the socket since the last call, as one buffer."""
        if not self._outbox:
            return b""
        data = b"".join(self._outbox) if len(self._outbox) > 1 else self._outbox[0]
        self._outbox.clear()
        return data

    # ---- receiving -----------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the socket. Complete PDUs become events (or, with an
        `on_response` / `on_request` handler set, handler calls); partial ones wait."""
        if self._state is _CLOSED and not self._outstanding:
            return
        rest = self._rest
        buf = rest + data if rest else data
        if buf.__class__ is not bytes:
            buf = bytes(buf)  # decoded fields are slices of it: they must be bytes
        pos = 0
        end = len(buf)
        max_len = self.max_pdu_length
        outstanding = self._outstanding
        events = self._events
        unpack = _UNPACK_HEADER
        decoders = _DECODERS
        accepting = self.on_accepted is not None
        on_request = self.on_request  # read once per call
        accepted: list[tuple[int, str]] = []
        deliveries: list[Any] | None = [] if self.on_deliveries is not None else None
        try:
            while end - pos >= 16:
                length, cid, status, seq = unpack(buf, pos)
                if length < 16 or length > max_len:
                    pos = end  # cannot be resynchronised: drop everything
                    self._fatal(
                        PduError(
                            f"command_length {length} outside 16..{max_len}",
                            CommandStatus.ESME_RINVCMDLEN,
                            command_id=cid,
                            sequence_number=seq,
                        )
                    )
                    return
                start = pos
                pos += length
                if pos > end:
                    pos = start
                    break
                if cid == _SUBMIT_SM_RESP and accepting and status == 0:
                    # The usual answer, read without a Pdu: exactly what the strict decoder
                    # takes with no TLVs (a message_id of at most 64 octets, its NUL the
                    # body's last octet); anything else goes the general way below.
                    o = outstanding.get(seq)
                    if o is not None and o.answer == cid:
                        body = start + 16
                        if body < pos and buf.find(0, body, pos) == pos - 1 and pos - 1 - body <= _MESSAGE_ID_MAX:
                            del outstanding[seq]
                            self._windowed -= 1  # a submit_sm is windowed
                            accepted.append((seq, buf[body : pos - 1].decode("latin-1")))
                            continue
                elif (
                    cid == _DELIVER_SM
                    and deliveries is not None
                    and status == 0
                    and cid in self._plain_receive
                ):
                    # The usual request, a receipt, read to its outcome without a Pdu:
                    # only what the strict decoder reads, with nothing unusual
                    # (R.read_receipt_outcome); anything else goes the general way below.
                    receipt = _read_receipt(buf, start + 16, pos, seq)
                    if receipt is not None:
                        deliveries.append(receipt)
                        continue
                # Decode in place: the body is read from the buffer between start and pos.
                decoder = decoders.get(cid)
                pdu = None
                if decoder is not None:
                    try:
                        pdu = decoder(buf, start + 16, pos, status, seq)
                    except _DECODE_FAILURES:
                        pass
                if pdu is None:
                    try:
                        pdu = P.decode_frame(buf[start:pos], length, cid, status, seq)
                    except PduError as e:
                        pdu = self._undecodable(e, buf[start:pos], length, cid, status, seq)
                        if pdu is None:
                            continue
                if cid & RESPONSE_BIT:
                    o = outstanding.get(seq)
                    handler = self.on_response
                    if (
                        handler is not None
                        and o is not None
                        and o.plain
                        and (cid == o.answer or cid == _GENERIC_NACK)
                    ):
                        del outstanding[seq]
                        if o.windowed:
                            self._windowed -= 1
                        handler(pdu, o.pdu)
                    else:
                        self._handle_response(pdu)
                elif cid in self._plain_receive:
                    if deliveries is not None:
                        deliveries.append(pdu)
                    elif on_request is not None:
                        on_request(pdu)
                    else:
                        events.append(RequestReceived(pdu))
                else:
                    self._handle_request(pdu)
        finally:
            self._rest = buf[pos:] if pos < end else b""
            try:
                if accepted:  # taken off `outstanding` already: they must reach the handler
                    self.on_accepted(accepted)  # type: ignore[misc]
            finally:
                if deliveries:  # consumed from the buffer: they must reach the handler
                    self.on_deliveries(deliveries)  # type: ignore[misc]

    def next_events(self) -> list[Any]:
        events = self._events
        self._events = []
        return events

    def expire(self, now: float) -> list[RequestTimedOut]:
        """Forget and report requests whose deadline has passed."""
        late = [seq for seq, o in self._outstanding.items() if o.deadline <= now]
        out = []
        for seq in late:
            o = self._outstanding.pop(seq)
            if o.windowed:
                self._windowed -= 1
            cid = o.pdu.command_id
            if cid in _BOUND_STATE_OF_BIND and self._state is State.BINDING:
                self.state = State.OPEN  # the bind may be tried again
            elif cid == C.UNBIND and self._state is State.UNBINDING:
                self.state = State.CLOSED
            out.append(RequestTimedOut(o.pdu))
        return out

    def abandon_all(self) -> list[P.Pdu]:
        """The connection is gone: every outstanding request ends without a response."""
        pending = [o.pdu for o in self._outstanding.values()]
        self._outstanding.clear()
        self._windowed = 0
        self.state = State.CLOSED
        return pending

    def _fatal(self, error: PduError) -> None:
        self._outbox.append(
            P.GenericNack(
                sequence_number=error.sequence_number or 0, command_status=error.command_status
            ).encode()
        )
        self.state = State.CLOSED
        self._events.append(InvalidPdu(error, fatal=True))

    def _handle_request(self, pdu: P.Pdu) -> None:
        """A request other than plain message traffic in a state that allows it."""
        cid = pdu.command_id
        if cid not in self._may_receive:
            status = (
                CommandStatus.ESME_RALYBND
                if cid in _BOUND_STATE_OF_BIND and self._state in _BOUND
                else CommandStatus.ESME_RINVBNDSTS
            )
            err = ProtocolError(
                f"{pdu.command_name} not allowed in state {self._state.value}", status
            )
            if self._state is not State.CLOSED:
                self._outbox.append(P.error_response(cid, pdu.sequence_number, status).encode())
            self._events.append(InvalidPdu(err))
            return
        if cid == C.ENQUIRE_LINK:
            self._outbox.append(P.EnquireLinkResp(sequence_number=pdu.sequence_number).encode())
            self._events.append(LinkChecked())
        elif cid == C.UNBIND:
            self._outbox.append(P.UnbindResp(sequence_number=pdu.sequence_number).encode())
            if self._state is not State.CLOSED:
                self.state = State.CLOSED
                self._events.append(Unbound(by_peer=True))
        elif cid == C.OUTBIND:
            self._events.append(OutbindReceived(pdu))
        else:
            if cid in _BOUND_STATE_OF_BIND:
                self.state = State.BINDING
                self._peer_pending[pdu.sequence_number] = pdu
            self._events.append(RequestReceived(pdu))

    def _handle_response(self, pdu: P.Pdu) -> None:
        o = self._outstanding.get(pdu.sequence_number)
        if o is None or not (
            pdu.command_id == C.GENERIC_NACK or pdu.command_id == o.pdu.command_id | RESPONSE_BIT
        ):
            self._events.append(UnexpectedResponse(pdu))
            return
        del self._outstanding[pdu.sequence_number]
        request = o.pdu
        if o.windowed:
            self._windowed -= 1
        if o.plain and self.on_response is not None:
            self.on_response(pdu, request)
            return
        rcid = request.command_id
        if rcid in _BOUND_STATE_OF_BIND:
            self.state = (
                _BOUND_STATE_OF_BIND[rcid]
                if pdu.command_status == CommandStatus.ESME_ROK and pdu.command_id != C.GENERIC_NACK
                else State.OPEN
            )
        elif rcid == C.UNBIND:
            self._events.append(ResponseReceived(pdu, request))
            if self._state is not State.CLOSED:  # a crossing unbind may have closed it
                self.state = State.CLOSED
                self._events.append(Unbound(by_peer=False))
            return
        self._events.append(ResponseReceived(pdu, request))

    def _undecodable(
        self, e: PduError, frame: bytes, length: int, cid: int, status: int, seq: int
    ) -> P.Pdu | None:
        """A frame the strict decoder refused (off the fast path). Returns the PDU to handle
        as if it had decoded, or None when it has been dealt with (answered, reported).

        What we receive from the peer is read leniently where a refusal would do harm
        (robustness principle): responses, and deliver_sm / data_sm in the ESME role (an
        SMSC takes a non-zero deliver_sm_resp as final and drops the receipt or MO). A
        response that cannot be read even so still completes the request it answers with
        its header's command_status, never as a generic_nack: a submit the SMSC accepted
        must not look retryable (that would send the SMS twice). Each case is reported as a
        tolerated InvalidPdu. Requests we serve (SMSC role) stay strictly decoded."""
        # P.LENIENT_REQUESTS: the requests an ESME receives (deliver_sm, data_sm)
        if cid & RESPONSE_BIT or (cid in P.LENIENT_REQUESTS and self.role is Role.ESME):
            if cid in P.LENIENT_DECODERS:
                try:
                    pdu = P.decode_frame_lenient(frame, length, cid, status, seq)
                except PduError:
                    pdu = None
                if pdu is not None:
                    self._events.append(InvalidPdu(_tolerated(e, "decoded leniently"), tolerated=True))
                    return pdu
            if cid & RESPONSE_BIT:
                o = self._outstanding.get(seq)
                if o is not None and cid in (_GENERIC_NACK, o.answer):
                    self._events.append(
                        InvalidPdu(_tolerated(e, "body unread, header status kept"), tolerated=True)
                    )
                    return P.unreadable_response(cid, seq, status)
                self._events.append(InvalidPdu(e))  # answers nothing outstanding
                return None
        self._answer_invalid(e)
        return None

    def _answer_invalid(self, e: PduError) -> None:
        cid, seq = e.command_id, e.sequence_number or 0
        if cid is not None and cid & RESPONSE_BIT:
            self._events.append(InvalidPdu(e))  # a response is never answered
            return
        # Framing and unknown commands get generic_nack (SMPP 3.4 section 4.3); a known
        # request with a bad field gets its own *_resp carrying the reason.
        if cid is None or e.command_status in (
            CommandStatus.ESME_RINVCMDLEN,
            CommandStatus.ESME_RINVCMDID,
        ):
            answer = P.GenericNack(sequence_number=seq, command_status=e.command_status)
        else:
            answer = P.error_response(cid, seq, e.command_status)
        if self._state is not State.CLOSED:
            self._outbox.append(answer.encode())
        self._events.append(InvalidPdu(e))
