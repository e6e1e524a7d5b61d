"""What the simulator answers to each ESME request (bind, submit_sm, query_sm, ...).

Every handler is `handler(conn, pdu, now)`: it queues its answer on `conn.session` (the
connection's writer sends everything of a batch in one write) and never awaits. The session
has already checked that the request is legal in the bind state, and answers enquire_link
and unbind on its own.
"""

from __future__ import annotations

import hmac
import time
from time import time as _time
from typing import TYPE_CHECKING, Any

from gateway.smpp import pdu as P
from gateway.smpp.constants import (
    INTERFACE_VERSION_34,
    CommandId,
    CommandStatus,
    Tag,
)
from simulators.smsc.delivery import Job
from simulators.smsc.faults import NACK, RESPOND
from simulators.smsc.store import ENROUTE, STAT_STATE, Record

if TYPE_CHECKING:
    from simulators.smsc.connection import Connection

S = CommandStatus
C = CommandId

_BIND_TYPES = {
    C.BIND_TRANSMITTER: "transmitter",
    C.BIND_RECEIVER: "receiver",
    C.BIND_TRANSCEIVER: "transceiver",
}
_SC_INTERFACE_VERSION = [P.Tlv(int(Tag.SC_INTERFACE_VERSION), INTERFACE_VERSION_34)]
_SubmitSmResp = P.SubmitSmResp
_SUBMIT_SM_RESP = int(C.SUBMIT_SM_RESP)
_DELIVER_SM = int(C.DELIVER_SM)


_TAG_PAYLOAD = int(Tag.MESSAGE_PAYLOAD)
# short_message and message_payload together (SMPP 3.4 sections 4.4.1, 4.5.1 and 5.3.2.32:
# "must not be used simultaneously"; with message_payload, sm_length must be 0). The spec
# names no status. ESME_RINVPARLEN ("invalid parameter length": sm_length must be 0 here)
# rather than ESME_RSUBMITFAIL: the request itself is wrong and sending it again cannot
# succeed, whereas ESME_RSUBMITFAIL is commonly taken as "try again later" (it is in the
# gateway's RETRYABLE_STATUSES), so an ESME would resend the same invalid PDU. data_sm has
# no short_message field: nothing to check there.
_PAYLOAD_CONFLICT = S.ESME_RINVPARLEN


def payload_conflict(pdu: Any) -> bool:
    """Both a non-empty short_message and a message_payload TLV (an empty short_message with
    message_payload is the valid form)."""
    if pdu.short_message:
        for t in pdu.tlvs:
            if t.tag == _TAG_PAYLOAD:
                return True
    return False


def valid_address(address: str) -> bool:
    """A destination we accept: 1-20 digits, optionally after a '+'."""
    a = address.removeprefix("+")
    return a.isdigit() and 0 < len(a) <= 20 and a.isascii()


# ---- bind ---------------------------------------------------------------------------------


def on_bind(conn: Connection, pdu: Any, now: float) -> None:
    server = conn.server
    kind = _BIND_TYPES[pdu.command_id]
    acct = server.accounts.get(pdu.system_id)
    if acct is None:
        status = S.ESME_RINVSYSID
    elif not hmac.compare_digest(pdu.password.encode("latin-1"), acct.cfg.password.encode("utf-8")):
        status = S.ESME_RINVPASWD
    elif (
        kind not in acct.cfg.bind_types
        or (acct.cfg.max_binds and acct.binds >= acct.cfg.max_binds)
        or server.shutting_down
    ):
        status = S.ESME_RBINDFAIL
    else:
        status = S.ESME_ROK
    if status != S.ESME_ROK:
        conn.session.send(P.error_response(pdu.command_id, pdu.sequence_number, status))
        server.stats.binds_failed += 1
        server.stats.bind_failures[status] += 1
        conn.log.info("bind_refused", system_id=pdu.system_id, bind_type=kind, status=status.name)
        return
    # interface_version 0x00-0x33: a v3.3 (or earlier) ESME, which does not support optional
    # parameters (SMPP 3.4 section 5.2.4, sc_interface_version 5.3.2.25): no
    # sc_interface_version in its bind_resp and no TLVs in the deliver_sm sent to this bind.
    no_tlvs = pdu.interface_version < INTERFACE_VERSION_34
    conn.interface_version = pdu.interface_version
    conn.no_tlvs = no_tlvs
    conn.session.send(
        P.make_response(
            pdu,
            system_id=server.cfg.server.system_id,
            tlvs=[] if no_tlvs else list(_SC_INTERFACE_VERSION),
        )
    )
    conn.account = acct
    conn.bind_type = kind
    acct.binds += 1
    server.stats.binds_ok += 1
    conn.log = conn.log.bind(account=acct.name, bind_type=kind)
    conn.log.info("bound")
    if kind != "transmitter":
        conn.became_receiver(now)


# ---- submit_sm (the hot path) ---------------------------------------------------------------


def on_submit_sm(conn: Connection, pdu: Any, now: float) -> None:
    server = conn.server
    st = server.stats
    st.submit_sm += 1
    conn.submits += 1
    acct = conn.account
    if acct.faults.active:
        _submit_with_faults(conn, acct, pdu, now)
        return
    dest = pdu.destination_addr
    if not (dest.isdigit() and dest.isascii() and len(dest) <= 20) and not valid_address(dest):
        _refuse(conn, pdu, S.ESME_RINVDSTADR)
        return
    if pdu.tlvs and payload_conflict(pdu):
        _refuse(conn, pdu, _PAYLOAD_CONFLICT)
        return
    policy = acct.policy
    if not policy.immediate or server.recorder is not None:
        rec = server.accept(acct, pdu)
        conn.session.send(_SubmitSmResp(sequence_number=pdu.sequence_number, message_id=rec.id))
        st.resps_ok += 1
        if server.recorder is not None:
            server.recorder.write(acct.name, pdu, 0, rec.id)
        server.schedule_final(acct, rec, now)
        return
    # The benchmark's hot path: server.accept + server.finalize inlined for an account whose
    # messages are final at once (no delay, no faults, no recording). Same effects.
    ids = server.ids
    n = ids.n + 1
    ids.n = n
    mid = ids.pattern % n
    stat = policy.fixed_outcome or policy.outcome(dest)
    wall = _time()
    want = policy.wants[stat][pdu.registered_delivery & 3]
    rec = Record(
        n,
        mid,
        acct.name,
        pdu,
        wall,
        stat,
        want,
        1,  # copies
        STAT_STATE[stat],  # state: final at once
        wall,  # done
    )
    store = server.store
    store.ring[n & store.mask] = rec  # store.put(rec)
    st.messages_accepted += 1
    # submit_sm_resp from its template: message_id + NUL is the whole body (ids are ASCII).
    bmid = mid.encode()
    if len(bmid) < 65:
        conn.session.send_encoded_response(_SUBMIT_SM_RESP, pdu.sequence_number, bmid + b"\0")
    else:
        conn.session.send(_SubmitSmResp(sequence_number=pdu.sequence_number, message_id=mid))
    st.resps_ok += 1
    if want:
        acct.deliveries.deliver(Job(policy.encoded(rec, bmid)), now)


def on_shaped_submit_sm(conn: Connection, shape: Any, raw: bytes, pdu: Any, now: float) -> None:
    """`on_submit_sm` for a submit_sm read through a learned shape (simulators/smsc/shapes.py:
    no TLVs, so no payload conflict; `raw` its destination's octets): the benchmark's hot
    path with the receipt formatted from the shape's receipt format, else `on_submit_sm`.
    Same effects, same bytes."""
    acct = conn.account
    policy = acct.policy
    server = conn.server
    # bytes.isdigit: ASCII digits, not empty (the decoder limits it to 20 octets)
    if acct.faults.active or not policy.immediate or server.recorder is not None or not raw.isdigit():
        on_submit_sm(conn, pdu, now)
        return
    if not shape.ready:
        shape.prepare(policy)
    st = server.stats
    st.submit_sm += 1
    conn.submits += 1
    ids = server.ids
    n = ids.n + 1
    ids.n = n
    mid = ids.pattern % n
    stat = shape.stat
    if stat is None:
        stat = policy.outcome(pdu.destination_addr)
        want = policy.wants[stat][shape.rd]
        state = STAT_STATE[stat]
    else:
        want = shape.want
        state = shape.state
    wall = _time()
    rec = Record(n, mid, acct.name, pdu, wall, stat, want, 1, state, wall)
    store = server.store
    store.ring[n & store.mask] = rec
    st.messages_accepted += 1
    bmid = mid.encode()
    if len(bmid) < 65:
        conn.session.send_encoded_response(_SUBMIT_SM_RESP, pdu.sequence_number, bmid + b"\0")
    else:
        conn.session.send(_SubmitSmResp(sequence_number=pdu.sequence_number, message_id=mid))
    st.resps_ok += 1
    if want:
        fmt = shape.receipt
        body = (
            policy.shaped_body(fmt, shape.fixed, raw, stat, wall, bmid)
            if fmt is not None and len(bmid) < 65
            else None
        )
        acct.deliveries.deliver(
            Job(P.Encoded(_DELIVER_SM, body) if body is not None else policy.encoded(rec, bmid)),
            now,
        )


def _refuse(conn: Connection, pdu: Any, status: int) -> None:
    conn.session.send(P.error_response(pdu.command_id, pdu.sequence_number, status))
    conn.server.stats.resps[status] += 1
    if conn.server.recorder is not None:
        conn.server.recorder.write(conn.account.name, pdu, status, None)


def _submit_with_faults(conn: Connection, acct: Any, pdu: Any, now: float) -> None:
    server = conn.server
    faults = acct.faults
    verdict = faults.refuse(now)
    if verdict is not None:
        kind, status = verdict
        if kind == RESPOND:
            _refuse(conn, pdu, status)
        elif kind == NACK:
            conn.session.send(
                P.GenericNack(sequence_number=pdu.sequence_number, command_status=status)
            )
            if server.recorder is not None:
                server.recorder.write(acct.name, pdu, status, None)
        elif server.recorder is not None:  # SILENT: no answer at all
            server.recorder.write(acct.name, pdu, None, None)
    elif not valid_address(pdu.destination_addr):
        _refuse(conn, pdu, S.ESME_RINVDSTADR)
    elif payload_conflict(pdu):
        _refuse(conn, pdu, _PAYLOAD_CONFLICT)
    else:
        rec = server.accept(acct, pdu)
        if faults.duplicate():
            rec.copies = 2
        resp = _SubmitSmResp(sequence_number=pdu.sequence_number, message_id=rec.id)
        first = faults.receipt_first()
        if first:
            # The receipt overtakes the resp: final at once and queued first (in the same
            # write when this bind is a receiver itself).
            server.finalize(rec, now, prefer=conn)
        delay = faults.slow_delay()
        if delay > 0:
            server.timers.schedule(now + delay, conn.send_late_response, resp)
        else:
            conn.session.send(resp)
        server.stats.resps_ok += 1
        if server.recorder is not None:
            server.recorder.write(acct.name, pdu, 0, rec.id)
        if not first:
            server.schedule_final(acct, rec, now)
    n = conn.submits
    if faults.malformed_due(n):
        conn.send_raw(faults.malformed_pdu())
    if faults.unbind_due(n) and conn.session.bound:
        conn.session.send(P.Unbind(), now)
        server.stats.unbinds_sent += 1
    if faults.drop_due(n):
        conn.log.info("fault_drop_connection", submits=n)
        conn.close_after_flush()


# ---- other message traffic ----------------------------------------------------------------


def on_data_sm(conn: Connection, pdu: Any, now: float) -> None:
    server = conn.server
    server.stats.data_sm += 1
    if not valid_address(pdu.destination_addr):
        conn.session.send(P.error_response(pdu.command_id, pdu.sequence_number, S.ESME_RINVDSTADR))
        server.stats.resps[S.ESME_RINVDSTADR] += 1
        return
    rec = server.accept(conn.account, pdu)
    conn.session.send(P.make_response(pdu, message_id=rec.id))
    server.stats.resps_ok += 1
    if server.recorder is not None:
        server.recorder.write(conn.account.name, pdu, 0, rec.id)
    server.schedule_final(conn.account, rec, now)


def on_submit_multi(conn: Connection, pdu: Any, now: float) -> None:
    server = conn.server
    server.stats.submit_multi += 1
    acct = conn.account
    if payload_conflict(pdu):
        _refuse(conn, pdu, _PAYLOAD_CONFLICT)
        return
    unsuccess = []
    accepted = []
    for d in pdu.dest_addresses:
        if d.dest_flag == 2:
            unsuccess.append(P.UnsuccessSme(0, 0, d.dl_name, int(S.ESME_RINVDLNAME)))
        elif not valid_address(d.address):
            unsuccess.append(P.UnsuccessSme(d.ton, d.npi, d.address, int(S.ESME_RINVDSTADR)))
        else:
            accepted.append((d.ton, d.npi, d.address))
    if not accepted:
        # Nothing to deliver: an id would name nothing, so refuse the whole request.
        conn.session.send(
            P.make_response(pdu, S.ESME_RINVDSTADR, message_id="", unsuccess_smes=unsuccess)
        )
        server.stats.resps[S.ESME_RINVDSTADR] += 1
        return
    rec = server.accept(acct, pdu, dests=accepted)
    conn.session.send(P.make_response(pdu, message_id=rec.id, unsuccess_smes=unsuccess))
    server.stats.resps_ok += 1
    if server.recorder is not None:
        server.recorder.write(acct.name, pdu, 0, rec.id)
    server.schedule_final(acct, rec, now)


def _lookup(conn: Connection, message_id: str, source_addr: str) -> Any:
    server = conn.server
    n = server.ids.parse(message_id)
    rec = server.store.get(n) if n is not None else None
    if rec is None or rec.account != conn.account.name:
        return None
    if source_addr and source_addr != rec.pdu.source_addr:
        return None
    return rec


def on_query_sm(conn: Connection, pdu: Any, now: float) -> None:
    server = conn.server
    server.stats.query_sm += 1
    rec = _lookup(conn, pdu.message_id, pdu.source_addr)
    if rec is None:
        status = (
            S.ESME_RQUERYFAIL if server.ids.parse(pdu.message_id) is not None else S.ESME_RINVMSGID
        )
        conn.session.send(P.error_response(pdu.command_id, pdu.sequence_number, status))
        return
    final = rec.state != ENROUTE
    acct = server.accounts[rec.account]
    conn.session.send(
        P.make_response(
            pdu,
            message_id=pdu.message_id,
            final_date=server.absolute_time(rec.done) if final else "",
            message_state=rec.state,
            error_code=min(acct.policy.error_code(rec.stat), 255) if final else 0,
        )
    )


def on_cancel_sm(conn: Connection, pdu: Any, now: float) -> None:
    server = conn.server
    server.stats.cancel_sm += 1
    if pdu.message_id:
        rec = _lookup(conn, pdu.message_id, pdu.source_addr)
        matches = [rec] if rec is not None and rec.state == ENROUTE else []
        if matches and pdu.destination_addr and pdu.destination_addr != rec.pdu.destination_addr:
            matches = []
    else:
        # No id: every pending message of this account from source_addr to destination_addr.
        name = conn.account.name
        matches = [
            r
            for r in server.store.records()
            if r.state == ENROUTE
            and r.account == name
            and r.pdu.source_addr == pdu.source_addr
            and getattr(r.pdu, "destination_addr", None) == pdu.destination_addr
        ]
    if not matches:
        conn.session.send(P.error_response(pdu.command_id, pdu.sequence_number, S.ESME_RCANCELFAIL))
        return
    for rec in matches:
        server.cancel(rec, now)
    conn.session.send(P.make_response(pdu))


def on_replace_sm(conn: Connection, pdu: Any, now: float) -> None:
    server = conn.server
    server.stats.replace_sm += 1
    rec = _lookup(conn, pdu.message_id, pdu.source_addr)
    if rec is None or rec.state != ENROUTE:
        conn.session.send(
            P.error_response(pdu.command_id, pdu.sequence_number, S.ESME_RREPLACEFAIL)
        )
        return
    rec.short_message = pdu.short_message
    if pdu.registered_delivery:
        acct = server.accounts[rec.account]
        rec.receipt = acct.policy.wanted(pdu.registered_delivery, rec.stat)
    rec.submitted = time.time()
    conn.session.send(P.make_response(pdu))


HANDLERS: dict[int, Any] = {
    C.BIND_TRANSMITTER: on_bind,
    C.BIND_RECEIVER: on_bind,
    C.BIND_TRANSCEIVER: on_bind,
    C.SUBMIT_SM: on_submit_sm,
    C.DATA_SM: on_data_sm,
    C.SUBMIT_MULTI: on_submit_multi,
    C.QUERY_SM: on_query_sm,
    C.CANCEL_SM: on_cancel_sm,
    C.REPLACE_SM: on_replace_sm,
}
