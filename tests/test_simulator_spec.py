"""SMPP 3.4 rules the simulator keeps, checked on the wire with a raw socket client:

- short_message and message_payload together are refused (sections 4.4.1, 5.3.2.32);
- a v3.3 ESME (interface_version < 0x34) gets no optional parameters (section 5.2.4 and
  the sc_interface_version definition): neither in its bind response nor in the deliver_sm
  sent to that bind;
- requests pipelined behind a bind in the same write are answered after the bind response,
  and handled as bound requests when the bind succeeded.
"""

from __future__ import annotations

import itertools
import struct

import trio

from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandId, CommandStatus, Tag
from gateway.smpp.receipt import parse_receipt_text
from tests.sim_helpers import account, esme, make_config, simulator, wait_for

S = CommandStatus
C = CommandId


def bind(kind: int = C.BIND_TRANSCEIVER, version: int = 0x34, password: str = "secret", seq=1):
    cls = P.PDU_CLASSES[kind]
    return cls(
        sequence_number=seq, system_id="test", password=password, interface_version=version
    ).encode()


def submit(seq: int, text: bytes = b"hi", payload: bytes | None = None, rd: int = 1) -> P.Pdu:
    return P.SubmitSm(
        sequence_number=seq,
        source_addr="123",
        destination_addr="491701234567",
        short_message=text,
        registered_delivery=rd,
        tlvs=[P.Tlv(Tag.MESSAGE_PAYLOAD, payload)] if payload is not None else [],
    )


class Raw:
    """A bare TCP client: writes bytes as given, splits what comes back into PDUs."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = b""

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def read(self, n: int, timeout: float = 5.0) -> list[P.Pdu]:
        out: list[P.Pdu] = []
        with trio.fail_after(timeout):
            while len(out) < n:
                while len(self.buf) >= 16:
                    (length,) = struct.unpack_from(">I", self.buf)
                    if len(self.buf) < length:
                        break
                    out.append(P.decode(self.buf[:length]))
                    self.buf = self.buf[length:]
                if len(out) >= n:
                    break
                data = await self.stream.receive_some(65536)
                assert data, f"connection closed after {out}"
                self.buf += data
        return out

    async def answer(self, pdu: P.Pdu) -> None:
        await self.send(P.make_response(pdu).encode())


async def raw(srv) -> Raw:
    return Raw(await trio.open_tcp_stream("127.0.0.1", srv.port))


# ---- short_message + message_payload -----------------------------------------------------


async def test_short_message_and_message_payload_together_refused():
    async with simulator() as srv, esme(srv) as c:
        resp = await c.request(submit(0, text=b"hi", payload=b"abc"))
        assert resp.command_id == C.SUBMIT_SM_RESP
        assert resp.command_status == S.ESME_RINVPARLEN
        assert srv.stats.messages_accepted == 0
        # The valid form: sm_length 0 and the text in message_payload.
        resp = await c.request(submit(0, text=b"", payload=b"payload text"))
        assert resp.command_status == 0
        r = await c.next_delivery()
        assert parse_receipt_text(r.short_message).text == "payload text"


async def test_short_message_and_message_payload_refused_with_faults_active():
    cfg = make_config([account(faults={"drop_after": 1000})])
    async with simulator(cfg) as srv, esme(srv) as c:
        assert srv.accounts["test"].faults.active
        resp = await c.request(submit(0, text=b"hi", payload=b"abc"))
        assert resp.command_status == S.ESME_RINVPARLEN
        assert srv.stats.messages_accepted == 0


async def test_submit_multi_short_message_and_message_payload_refused():
    async with simulator() as srv, esme(srv) as c:
        multi = P.SubmitMulti(
            source_addr="123",
            dest_addresses=[P.DestAddress(1, 1, 1, "491701234567")],
            short_message=b"hi",
            tlvs=[P.Tlv(Tag.MESSAGE_PAYLOAD, b"abc")],
        )
        resp = await c.request(multi)
        assert resp.command_status == S.ESME_RINVPARLEN
        assert srv.stats.messages_accepted == 0


# ---- v3.3 ESMEs get no TLVs --------------------------------------------------------------


async def test_v33_bind_resp_and_receipts_have_no_tlvs():
    async with simulator() as srv:
        r = await raw(srv)
        await r.send(bind(version=0x33))
        (resp,) = await r.read(1)
        assert resp.command_id == C.BIND_TRANSCEIVER_RESP and resp.command_status == 0
        assert resp.tlvs == []
        await r.send(submit(2, text=b"Hello v3.3").encode())
        sresp, dsm = await r.read(2)
        assert sresp.command_id == C.SUBMIT_SM_RESP and sresp.command_status == 0
        assert dsm.command_id == C.DELIVER_SM and dsm.esm_class == 0x04
        assert dsm.tlvs == []
        fields = parse_receipt_text(dsm.short_message)
        assert (fields.id, fields.stat, fields.err) == (sresp.message_id, "DELIVRD", "000")
        await r.answer(dsm)
        await wait_for(lambda: srv.stats.receipts_acked == 1)


async def test_v34_bind_keeps_its_tlvs():
    async with simulator() as srv:
        r = await raw(srv)
        await r.send(bind(version=0x34))
        (resp,) = await r.read(1)
        assert resp.tlv(Tag.SC_INTERFACE_VERSION) == 0x34
        await r.send(submit(2).encode())
        sresp, dsm = await r.read(2)
        assert dsm.tlv(Tag.RECEIPTED_MESSAGE_ID) == sresp.message_id
        assert dsm.tlv(Tag.MESSAGE_STATE) is not None


async def test_receipt_built_for_v34_goes_to_v33_receiver_without_tlvs():
    """Receipts are built once per account; the v3.3 bind gets them stripped, also the
    codec-built shape (network_error_code) and on every resend."""
    cfg = make_config([account(receipts={"network_error_code": True})])
    async with simulator(cfg) as srv, esme(srv, "transmitter") as tx:
        rx = await raw(srv)
        await rx.send(bind(C.BIND_RECEIVER, version=0x33))
        (resp,) = await rx.read(1)
        assert resp.command_status == 0 and resp.tlvs == []
        sresp = await tx.request(submit(0, text=b"abc"))
        (dsm,) = await rx.read(1)
        assert dsm.tlvs == []
        assert parse_receipt_text(dsm.short_message).id == sresp.message_id
        # Refused with a retryable status: sent again, still without TLVs.
        await rx.send(P.DeliverSmResp(sequence_number=dsm.sequence_number,
                                      command_status=S.ESME_RTHROTTLED).encode())
        (again,) = await rx.read(1)
        assert again.tlvs == [] and again.short_message == dsm.short_message


# ---- requests pipelined behind the bind --------------------------------------------------


async def test_requests_pipelined_behind_bind_answered_after_it():
    async with simulator() as srv:
        r = await raw(srv)
        await r.send(bind() + submit(2).encode() + P.EnquireLink(sequence_number=3).encode())
        out = await r.read(4)
        assert out[0].command_id == C.BIND_TRANSCEIVER_RESP and out[0].command_status == 0
        # After the bind_resp, in any order (the session answers enquire_link as it decodes):
        rest = {p.command_id: p for p in out[1:]}
        assert set(rest) == {C.SUBMIT_SM_RESP, C.DELIVER_SM, C.ENQUIRE_LINK_RESP}
        assert rest[C.SUBMIT_SM_RESP].command_status == 0
        assert rest[C.SUBMIT_SM_RESP].sequence_number == 2
        assert rest[C.ENQUIRE_LINK_RESP].sequence_number == 3
        assert srv.stats.messages_accepted == 1


async def test_requests_pipelined_behind_failed_bind_refused_after_it():
    async with simulator() as srv:
        r = await raw(srv)
        await r.send(bind(password="wrong") + submit(2).encode())
        out = await r.read(2)
        assert [(p.command_id, p.command_status) for p in out] == [
            (C.BIND_TRANSCEIVER_RESP, S.ESME_RINVPASWD),
            (C.SUBMIT_SM_RESP, S.ESME_RINVBNDSTS),
        ]
        assert srv.stats.submit_sm == 0


async def test_pipelined_bind_split_across_reads():
    """The bind and the next request arrive cut at odd places: still in order."""
    async with simulator() as srv:
        r = await raw(srv)
        b, s2, s3 = bind(), submit(2, rd=0).encode(), submit(3, rd=0).encode()
        data = b + s2 + s3
        # The second read holds the end of the bind, all of submit 2 and a bit of submit 3.
        cuts = [0, 5, len(b) + len(s2) + 3, len(data) - 7, len(data)]
        for i, j in itertools.pairwise(cuts):
            await r.send(data[i:j])
            await trio.sleep(0.02)
        out = await r.read(3)
        assert [(p.command_id, p.command_status, p.sequence_number) for p in out] == [
            (C.BIND_TRANSCEIVER_RESP, 0, 1),
            (C.SUBMIT_SM_RESP, 0, 2),
            (C.SUBMIT_SM_RESP, 0, 3),
        ]


async def test_held_receipts_follow_the_bind_resp():
    async with simulator() as srv:
        async with esme(srv, "transmitter") as tx:
            await tx.request(submit(0))
        await wait_for(lambda: len(srv.accounts["test"].deliveries.held) == 1)
        r = await raw(srv)
        await r.send(bind(C.BIND_RECEIVER) + P.EnquireLink(sequence_number=2).encode())
        out = await r.read(3)
        assert [p.command_id for p in out] == [
            C.BIND_RECEIVER_RESP,
            C.DELIVER_SM,
            C.ENQUIRE_LINK_RESP,
        ]


async def test_broken_frame_behind_bind_answered_after_it_then_closed():
    async with simulator() as srv:
        r = await raw(srv)
        await r.send(bind() + struct.pack(">IIII", 8, C.SUBMIT_SM, 0, 2))
        out = await r.read(2)
        assert [(p.command_id, p.command_status) for p in out] == [
            (C.BIND_TRANSCEIVER_RESP, 0),
            (C.GENERIC_NACK, S.ESME_RINVCMDLEN),
        ]
        with trio.fail_after(5):
            assert await r.stream.receive_some(100) == b""
