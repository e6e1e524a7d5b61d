"""SMSC simulator over real sockets on 127.0.0.1: binds, submits, receipts, queries, MOs."""

from __future__ import annotations

import json

import pytest
import trio

from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandId, CommandStatus, MessageState, Tag
from gateway.smpp.receipt import parse_receipt_text, receipt_from_pdu
from gateway.smpp.session import LinkChecked, Unbound
from gateway.smpp.text import Encoding, split
from simulators.client import BindError, EsmeClient
from simulators.smsc.config import Faults
from tests.sim_helpers import account, esme, make_config, simulator, wait_for

S = CommandStatus


def submit(dest: str = "491701234567", text: bytes = b"Hello world", rd: int = 1, **kw) -> P.Pdu:
    return P.SubmitSm(
        source_addr="Acme",
        source_addr_ton=5,
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr=dest,
        short_message=text,
        registered_delivery=rd,
        **kw,
    )


# ---- binds -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bind_type", ["transmitter", "receiver", "transceiver"])
async def test_bind_each_type(bind_type):
    async with simulator() as srv, esme(srv, None) as c:
        resp = await c.bind(bind_type, "test", "secret")
        assert resp.command_status == 0
        assert resp.system_id == "SMSCSIM"
        assert resp.tlv(Tag.SC_INTERFACE_VERSION) == 0x34
        assert srv.stats.binds_ok == 1


async def test_bind_failures_have_their_status():
    cfg = make_config([account(bind_types=["transmitter"], max_binds=1)])
    async with simulator(cfg) as srv:
        cases = [
            ("transmitter", "nobody", "secret", S.ESME_RINVSYSID),
            ("transmitter", "test", "wrong", S.ESME_RINVPASWD),
            ("receiver", "test", "secret", S.ESME_RBINDFAIL),  # bind type not allowed
        ]
        for bind_type, sid, pw, status in cases:
            async with esme(srv, None) as c:
                with pytest.raises(BindError) as exc:
                    await c.bind(bind_type, sid, pw)
                assert exc.value.status == status
        async with esme(srv, "transmitter"), esme(srv, None) as second:  # max_binds = 1
            with pytest.raises(BindError) as exc:
                await second.bind("transmitter", "test", "secret")
            assert exc.value.status == S.ESME_RBINDFAIL
        assert srv.stats.binds_failed == 4
        assert srv.stats.bind_failures[S.ESME_RBINDFAIL] == 2


async def test_requests_before_bind_are_refused():
    async with simulator() as srv, esme(srv, None) as c:
        raw = submit()
        raw.sequence_number = 5
        await c.send_raw(raw.encode())  # our own session would refuse to send it
        await wait_for(lambda: len(c.events) == 1)
        (ev,) = c.events
        assert ev.pdu.command_id == CommandId.SUBMIT_SM_RESP
        assert ev.pdu.command_status == S.ESME_RINVBNDSTS
        assert srv.stats.submit_sm == 0


# ---- submit_sm -> resp -> receipt --------------------------------------------------------------


async def test_submit_resp_and_receipt():
    async with simulator() as srv, esme(srv) as c:
        resp = await c.request(submit(text=b"Hello world, this is a longer text"))
        assert resp.command_id == CommandId.SUBMIT_SM_RESP
        assert resp.command_status == 0
        r = await c.next_delivery()
        assert r.esm_class == 0x04
        assert (r.source_addr, r.destination_addr) == ("491701234567", "Acme")
        assert (r.source_addr_ton, r.dest_addr_ton) == (1, 5)
        assert r.tlv(Tag.RECEIPTED_MESSAGE_ID) == resp.message_id
        assert r.tlv(Tag.MESSAGE_STATE) == MessageState.DELIVERED
        fields = parse_receipt_text(r.short_message)
        assert fields.id == resp.message_id
        assert (fields.sub, fields.dlvrd, fields.stat, fields.err) == (
            "001",
            "001",
            "DELIVRD",
            "000",
        )
        assert fields.text == "Hello world, this is"  # first 20 characters
        assert len(fields.submit_date) == 10 and len(fields.done_date) == 10
        parsed = receipt_from_pdu(r)
        assert parsed.message_id == resp.message_id and parsed.is_final
        await wait_for(lambda: srv.stats.receipts_acked == 1)


async def test_registered_delivery_decides_receipts():
    cfg = make_config([account(receipts={"prefix_outcomes": {"4900": "UNDELIV"}})])
    async with simulator(cfg) as srv, esme(srv) as c:
        await c.request(submit(rd=0))  # none asked
        await c.request(submit(rd=2))  # failure only, delivered: none
        failed = await c.request(submit(dest="4900123", rd=2))  # failure only, failed: one
        r = await c.next_delivery()
        assert r.tlv(Tag.RECEIPTED_MESSAGE_ID) == failed.message_id
        await trio.sleep(0.05)
        assert c.pending_deliveries() == []
        assert srv.stats.messages_accepted == 3 and srv.stats.receipts_sent == 1


async def test_invalid_destination_refused():
    async with simulator() as srv, esme(srv) as c:
        for dest in ("", "abc", "+", "12-34"):
            resp = await c.request(submit(dest=dest))
            assert resp.command_status == S.ESME_RINVDSTADR
        assert (await c.request(submit(dest="+491701234567"))).command_status == 0


@pytest.mark.parametrize(
    ("fmt", "width", "start", "expected"),
    [
        ("hex", 0, 255, ["ff", "100"]),
        ("hex", 8, 1, ["00000001", "00000002"]),
        ("decimal", 0, 1000, ["1000", "1001"]),
        ("decimal", 12, 7, ["000000000007", "000000000008"]),
    ],
)
async def test_message_id_formats(fmt, width, start, expected):
    cfg = make_config(message_id_format=fmt, message_id_width=width, message_id_start=start)
    async with simulator(cfg) as srv, esme(srv) as a, esme(srv) as b:
        first = await a.request(submit())
        second = await b.request(submit())  # one counter for every connection
        assert [first.message_id, second.message_id] == expected
        receipts = [await a.next_delivery(), await b.next_delivery()]
        assert {r.tlv(Tag.RECEIPTED_MESSAGE_ID) for r in receipts} == set(expected)


async def test_deterministic_outcome_by_prefix_longest_wins():
    cfg = make_config(
        [
            account(
                receipts={
                    "prefix_outcomes": {"4900": "UNDELIV", "49001": "EXPIRED", "+4902": "REJECTD"},
                    "error_codes": {"UNDELIV": 21},
                    "network_error_code": True,
                }
            )
        ]
    )
    async with simulator(cfg) as srv, esme(srv) as c:
        cases = {
            "4900555": ("UNDELIV", 5),
            "49001555": ("EXPIRED", 3),
            "+4902555": ("REJECTD", 8),
            "4903555": ("DELIVRD", 2),
        }
        for dest, (stat, state) in cases.items():
            resp = await c.request(submit(dest=dest))
            r = await c.next_delivery()
            assert r.tlv(Tag.RECEIPTED_MESSAGE_ID) == resp.message_id
            assert parse_receipt_text(r.short_message).stat == stat
            assert r.tlv(Tag.MESSAGE_STATE) == state
        undeliv = receipt_from_pdu(r)
        assert undeliv is not None
        resp = await c.request(submit(dest="4900777"))
        r = await c.next_delivery()
        assert parse_receipt_text(r.short_message).err == "021"
        assert receipt_from_pdu(r).network_error == (3, 21)


async def test_weighted_outcomes_are_seeded():
    def cfg():
        return make_config(
            [account(receipts={"outcomes": {"DELIVRD": 0.5, "UNDELIV": 0.3, "EXPIRED": 0.2}})],
            seed=42,
        )

    runs = []
    for _ in range(2):
        async with simulator(cfg()) as srv, esme(srv) as c:
            for _ in range(40):
                c.queue(submit())
            await c.flush()
            receipts = await c.deliveries_n(40)
            runs.append([parse_receipt_text(r.short_message).stat for r in receipts])
    assert runs[0] == runs[1]
    assert set(runs[0]) == {"DELIVRD", "UNDELIV", "EXPIRED"}


async def test_multipart_gets_one_id_and_receipt_per_segment():
    text = "Grüße aus München 你好 " * 8  # UCS2, several segments
    segments = split(text, encoding=Encoding.UCS2, reference=77)
    assert len(segments) > 2
    async with simulator() as srv, esme(srv) as c:
        ids = []
        for seg in segments:
            resp = await c.request(
                submit(
                    text=seg.short_message,
                    esm_class=seg.esm_class_bits,
                    data_coding=seg.data_coding,
                )
            )
            ids.append(resp.message_id)
        assert len(set(ids)) == len(segments)
        receipts = await c.deliveries_n(len(segments))
        assert [r.tlv(Tag.RECEIPTED_MESSAGE_ID) for r in receipts] == ids
        # the excerpt is the segment's own text (UDH stripped), shown in GSM 7-bit
        excerpt = parse_receipt_text(receipts[0].short_message).text
        assert excerpt.startswith("Gr") and len(excerpt) == 20


# ---- query / cancel / replace / submit_multi / data_sm ------------------------------------------


async def test_query_sm_tracks_state():
    cfg = make_config([account(receipts={"delay": {"kind": "fixed", "seconds": 0.3}})])
    async with simulator(cfg) as srv, esme(srv) as c:
        resp = await c.request(submit())
        q = await c.request(P.QuerySm(message_id=resp.message_id, source_addr="Acme"))
        assert (q.command_status, q.message_state, q.final_date) == (0, MessageState.ENROUTE, "")
        await c.next_delivery()
        q = await c.request(P.QuerySm(message_id=resp.message_id, source_addr="Acme"))
        assert q.message_state == MessageState.DELIVERED and len(q.final_date) == 16
        unknown = await c.request(P.QuerySm(message_id="ffffff"))
        assert unknown.command_status == S.ESME_RQUERYFAIL
        invalid = await c.request(P.QuerySm(message_id="not-an-id"))
        assert invalid.command_status == S.ESME_RINVMSGID
        wrong_source = await c.request(P.QuerySm(message_id=resp.message_id, source_addr="Other"))
        assert wrong_source.command_status == S.ESME_RQUERYFAIL


async def test_immediate_final_state_queried_and_dated():
    """The default account (receipts at once, the inlined hot path): the record is final
    with its done date, as for a delayed receipt: query_sm answers DELIVERED with a
    final_date, and the receipt's done date is the submit date (not the epoch)."""
    async with simulator() as srv, esme(srv) as c:
        resp = await c.request(submit())
        fields = parse_receipt_text((await c.next_delivery()).short_message)
        assert fields.done_date == fields.submit_date
        q = await c.request(P.QuerySm(message_id=resp.message_id, source_addr="Acme"))
        assert (q.command_status, q.message_state, len(q.final_date)) == (
            0,
            MessageState.DELIVERED,
            16,
        )
        assert q.error_code == 0
        rec = srv.store.get(srv.ids.parse(resp.message_id))
        assert (rec.copies, rec.state, rec.done) == (1, MessageState.DELIVERED, rec.submitted)


async def test_cancel_sm_deletes_pending_message():
    cfg = make_config([account(receipts={"delay": {"kind": "fixed", "seconds": 30}})])
    async with simulator(cfg) as srv, esme(srv) as c:
        resp = await c.request(submit())
        other = await c.request(submit(dest="491700000002"))
        cancel = await c.request(P.CancelSm(message_id=resp.message_id, source_addr="Acme"))
        assert cancel.command_status == 0
        r = await c.next_delivery()  # a DELETED receipt (registered_delivery 1)
        assert r.tlv(Tag.RECEIPTED_MESSAGE_ID) == resp.message_id
        assert r.tlv(Tag.MESSAGE_STATE) == MessageState.DELETED
        q = await c.request(P.QuerySm(message_id=resp.message_id))
        assert q.message_state == MessageState.DELETED
        again = await c.request(P.CancelSm(message_id=resp.message_id))
        assert again.command_status == S.ESME_RCANCELFAIL
        # without an id: every pending message from source to destination
        by_addr = await c.request(P.CancelSm(source_addr="Acme", destination_addr="491700000002"))
        assert by_addr.command_status == 0
        r = await c.next_delivery()
        assert r.tlv(Tag.RECEIPTED_MESSAGE_ID) == other.message_id
        assert srv.stats.receipts_cancelled == 2


async def test_replace_sm_changes_pending_text():
    cfg = make_config([account(receipts={"delay": {"kind": "fixed", "seconds": 0.2}})])
    async with simulator(cfg) as srv, esme(srv) as c:
        resp = await c.request(submit(text=b"old text"))
        rep = await c.request(
            P.ReplaceSm(
                message_id=resp.message_id, source_addr="Acme", short_message=b"brand new text"
            )
        )
        assert rep.command_status == 0
        r = await c.next_delivery()
        assert parse_receipt_text(r.short_message).text == "brand new text"
        late = await c.request(P.ReplaceSm(message_id=resp.message_id, short_message=b"x"))
        assert late.command_status == S.ESME_RREPLACEFAIL


async def test_submit_multi_reports_unsuccessful_destinations():
    dests = [
        P.DestAddress(1, 1, 1, "491700000001"),
        P.DestAddress(1, 1, 1, "bogus"),
        P.DestAddress(2, dl_name="friends"),
        P.DestAddress(1, 1, 1, "4900123"),
    ]
    cfg = make_config([account(receipts={"prefix_outcomes": {"4900": "UNDELIV"}})])
    async with simulator(cfg) as srv, esme(srv) as c:
        resp = await c.request(
            P.SubmitMulti(
                source_addr="Acme",
                dest_addresses=dests,
                short_message=b"to many",
                registered_delivery=1,
            )
        )
        assert resp.command_status == 0 and resp.message_id
        assert [(u.address, u.error_status_code) for u in resp.unsuccess_smes] == [
            ("bogus", S.ESME_RINVDSTADR),
            ("friends", S.ESME_RINVDLNAME),
        ]
        receipts = await c.deliveries_n(2)
        assert {r.tlv(Tag.RECEIPTED_MESSAGE_ID) for r in receipts} == {resp.message_id}
        assert {r.source_addr: parse_receipt_text(r.short_message).stat for r in receipts} == {
            "491700000001": "DELIVRD",
            "4900123": "UNDELIV",
        }
        none_valid = await c.request(
            P.SubmitMulti(source_addr="Acme", dest_addresses=dests[1:3], short_message=b"x")
        )
        assert none_valid.command_status == S.ESME_RINVDSTADR


async def test_data_sm_answered_with_id_and_receipt():
    async with simulator() as srv, esme(srv) as c:
        resp = await c.request(
            P.DataSm(
                source_addr="Acme",
                destination_addr="491701234567",
                registered_delivery=1,
                tlvs=[P.Tlv(Tag.MESSAGE_PAYLOAD, b"payload text here, quite long")],
            )
        )
        assert resp.command_id == CommandId.DATA_SM_RESP and resp.command_status == 0
        r = await c.next_delivery()
        assert r.tlv(Tag.RECEIPTED_MESSAGE_ID) == resp.message_id
        assert parse_receipt_text(r.short_message).text == "payload text here, q"
        assert srv.stats.data_sm == 1
        # data_sm allows 64-character addresses, a deliver_sm only 20: no receipt, no crash
        long_src = await c.request(
            P.DataSm(source_addr="S" * 30, destination_addr="491701234567", registered_delivery=1)
        )
        assert long_src.command_status == 0
        await wait_for(lambda: srv.stats.receipts_failed == 1)
        assert (await c.request(submit())).command_status == 0


# ---- receipt routing -------------------------------------------------------------------------


async def test_receipts_held_until_a_receiver_binds():
    async with simulator() as srv, esme(srv, "transmitter") as tx:
        ids = [(await tx.request(submit(text=b"m%d" % i))).message_id for i in range(5)]
        await trio.sleep(0.05)
        assert tx.pending_deliveries() == []
        assert srv.snapshot()["receipts_held"] == 5
        async with esme(srv, "receiver") as rx:
            receipts = await rx.deliveries_n(5)
            assert [r.tlv(Tag.RECEIPTED_MESSAGE_ID) for r in receipts] == ids  # in order
        assert srv.snapshot()["receipts_held"] == 0


async def test_receipts_round_robin_over_receivers_of_the_account():
    cfg = make_config([account(), account("other", "pw")])
    async with (
        simulator(cfg) as srv,
        esme(srv, "receiver") as rx1,
        esme(srv, "receiver") as rx2,
        esme(srv, "receiver", "other", "pw") as foreign,
        esme(srv, "transmitter") as tx,
    ):
        for _ in range(10):  # one at a time: each submit is its own burst
            await tx.request(submit())
            await wait_for(
                lambda: len(rx1.deliveries) + len(rx2.deliveries) == srv.stats.receipts_sent
            )
        await wait_for(lambda: len(rx1.deliveries) + len(rx2.deliveries) == 10)
        assert (len(rx1.deliveries), len(rx2.deliveries)) == (5, 5)
        assert foreign.deliveries == []
        for _ in range(6):  # one burst: all to the next bind, in one write
            tx.queue(submit())
        await tx.flush()
        await wait_for(lambda: len(rx1.deliveries) + len(rx2.deliveries) == 16)
        assert sorted((len(rx1.deliveries), len(rx2.deliveries))) in ([5, 11], [8, 8])


async def test_held_receipts_go_out_as_late_answers_free_the_windows():
    """A client that answers receipts late and in batches (the gateway answers after its
    database commit): receipts beyond the windows are held, an answer sends the oldest held
    ones on the bind it came on, and every receipt arrives exactly once."""
    async with simulator(window=2) as srv, esme(srv) as a, esme(srv) as b:
        for c in (a, b):
            c.deliver_status = lambda pdu: None  # answered below, by hand
        ids = [(await a.request(submit())).message_id for _ in range(8)]
        await wait_for(lambda: len(a.deliveries) + len(b.deliveries) == 4)
        assert srv.snapshot()["receipts_held"] == 4

        def rid(pdu: P.Pdu) -> str:
            return pdu.tlv(Tag.RECEIPTED_MESSAGE_ID)

        answered = {id(p): False for p in a.deliveries + b.deliveries}

        async def answer(c: EsmeClient) -> None:
            for pdu in c.deliveries:
                if not answered.get(id(pdu)):
                    answered[id(pdu)] = True
                    c.session.send(P.make_response(pdu, message_id=""))
            await c.flush()

        await answer(a)
        await wait_for(lambda: len(a.deliveries) == 4)
        assert [rid(p) for p in a.deliveries[2:]] == ids[4:6]  # the oldest held, in order
        assert srv.snapshot()["receipts_held"] == 2 and len(b.deliveries) == 2
        with trio.fail_after(5):
            while srv.stats.receipts_acked < 8:
                await answer(a)
                await answer(b)
                await trio.sleep(0.01)
        assert sorted(rid(p) for p in a.deliveries + b.deliveries) == sorted(ids)
        assert srv.stats.receipts_sent == 8 and srv.snapshot()["receipts_held"] == 0


async def test_receipt_retried_after_retryable_status_not_after_final():
    cfg = make_config(receipt_retry_delay=0.01, receipt_retries=2)
    async with simulator(cfg) as srv, esme(srv) as c:
        answers = iter([S.ESME_RTHROTTLED, S.ESME_ROK, S.ESME_RINVDSTADR])
        c.deliver_status = lambda pdu: next(answers)
        resp = await c.request(submit())
        first, second = await c.deliveries_n(2)
        assert (
            first.tlv(Tag.RECEIPTED_MESSAGE_ID)
            == second.tlv(Tag.RECEIPTED_MESSAGE_ID)
            == resp.message_id
        )
        await c.request(submit())
        await c.next_delivery()  # refused with a final status: not sent again
        await wait_for(lambda: srv.stats.receipts_failed == 1)
        await trio.sleep(0.05)
        assert c.pending_deliveries() == []
        st = srv.stats
        assert (st.receipts_sent, st.receipts_acked, st.receipts_retried) == (3, 1, 1)


async def test_receipt_retried_after_timeout_then_given_up():
    cfg = make_config(response_timeout=0.2, receipt_retries=1, receipt_retry_delay=0.0)
    async with simulator(cfg) as srv, esme(srv) as c:
        c.deliver_status = lambda pdu: None  # never answer
        await c.request(submit())
        await c.deliveries_n(2, timeout=3)
        await wait_for(lambda: srv.stats.receipts_failed == 1, timeout=3)
        assert srv.stats.deliver_sm_timeouts == 2 and srv.stats.receipts_retried == 1


async def test_unanswered_receipts_go_to_the_next_receiver_when_a_bind_drops():
    async with simulator() as srv, esme(srv, "transmitter") as tx:
        lost = await EsmeClient.connect("127.0.0.1", srv.port)
        async with lost:
            await lost.bind("receiver", "test", "secret")
            lost.deliver_status = lambda pdu: None
            resp = await tx.request(submit())
            await lost.next_delivery()
        async with esme(srv, "receiver") as rx:
            r = await rx.next_delivery()
            assert r.tlv(Tag.RECEIPTED_MESSAGE_ID) == resp.message_id


async def test_delayed_receipt_with_mock_clock(mock_clock):
    mock_clock.autojump_threshold = 0.05  # jump only when really idle (sockets are real)
    cfg = make_config(
        [account(receipts={"delay": {"kind": "fixed", "seconds": 600}})], response_timeout=300
    )
    async with simulator(cfg) as srv, esme(srv, response_timeout=300) as c:
        t0 = trio.current_time()
        resp = await c.request(submit())
        q = await c.request(P.QuerySm(message_id=resp.message_id))
        assert q.message_state == MessageState.ENROUTE
        r = await c.next_delivery(timeout=1000)
        assert trio.current_time() - t0 >= 600
        assert r.tlv(Tag.RECEIPTED_MESSAGE_ID) == resp.message_id


# ---- link management -----------------------------------------------------------------------


async def test_simulator_sends_enquire_link_when_idle():
    async with simulator(enquire_link_interval=0.1) as srv, esme(srv) as c:
        await wait_for(lambda: any(isinstance(e, LinkChecked) for e in c.events), timeout=3)
        assert srv.stats.enquire_links_sent >= 1


async def test_enquire_link_and_unbind_answered():
    async with simulator() as srv, esme(srv) as c:
        assert (await c.request(P.EnquireLink())).command_status == 0
        resp = await c.unbind()
        assert resp.command_id == CommandId.UNBIND_RESP and resp.command_status == 0
        with trio.fail_after(2):
            await c.closed.wait()
        assert srv.stats.unbinds_received == 1 and srv.stats.enquire_links_received == 1


async def test_invalid_pdus_answered_with_generic_nack():
    async with simulator() as srv, esme(srv) as c:
        await c.send_raw(P.HEADER.pack(16, 0x0000_0999, 0, 77))  # unknown command id

        def nacks():
            return [
                e.pdu
                for e in c.events
                if getattr(e, "pdu", None) is not None
                and e.pdu.command_id == CommandId.GENERIC_NACK
            ]

        await wait_for(nacks)
        assert (nacks()[0].sequence_number, nacks()[0].command_status) == (77, S.ESME_RINVCMDID)
        assert srv.stats.invalid_pdus == 1
        assert (await c.request(submit())).command_status == 0  # the bind carries on


async def test_shutdown_unbinds_every_bind_then_stops():
    async with simulator() as srv:
        async with esme(srv) as a, esme(srv, "transmitter") as b:
            with trio.fail_after(5):
                await srv.shutdown()
            await wait_for(lambda: a.closed.is_set() and b.closed.is_set())
            assert a.unbound_by_peer and b.unbound_by_peer
            assert any(isinstance(e, Unbound) for e in a.events)
        assert srv.stats.unbinds_sent == 2
        assert "unbinds_sent" in srv.summary()


async def test_summary_counters():
    cfg = make_config(
        [account(receipts={"prefix_outcomes": {"4900": "REJECTD"}}, faults={"queue_full": 0.0})]
    )
    async with simulator(cfg) as srv:
        async with esme(srv) as c:
            for dest in ("491700000001", "4900000002", "bad"):
                await c.request(submit(dest=dest))
            await c.deliveries_n(2)
            await wait_for(lambda: srv.stats.receipts_acked == 2)
            srv.inject_mo("test", "491700000009", "12345", "STOP")
            await c.next_delivery()
            await wait_for(lambda: srv.stats.mo_acked == 1)
        snap = srv.snapshot()
        assert snap["binds_ok"] == 1 and snap["submit_sm"] == 3
        assert snap["resps"] == {"ESME_ROK": 2, "ESME_RINVDSTADR": 1}
        assert (snap["receipts_sent"], snap["receipts_acked"]) == (2, 2)
        assert (snap["mo_injected"], snap["mo_sent"], snap["mo_acked"]) == (1, 1, 1)
        text = srv.summary()
        assert "submit_sm" in text and "ESME_RINVDSTADR=1" in text


async def test_record_file(tmp_path):
    path = tmp_path / "rec.jsonl"
    async with simulator(record=str(path)) as srv, esme(srv) as c:
        resp = await c.request(submit(text="Grüße".encode("utf-16-be"), data_coding=8))
        await c.request(submit(dest="bad"))
        srv.set_faults("test", Faults(never_answer=1.0))
        c.queue(submit())
        await c.flush()
        await wait_for(lambda: srv.stats.submit_sm == 3)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["status"] for line in lines] == ["ESME_ROK", "ESME_RINVDSTADR", "NO_RESPONSE"]
    assert lines[0]["message_id"] == resp.message_id and lines[0]["text"] == "Grüße"
    assert lines[0]["destination_addr"] == "491701234567"


# ---- MO ------------------------------------------------------------------------------------


async def test_mo_on_demand_including_long_ucs2():
    async with simulator() as srv, esme(srv, "receiver") as rx:
        assert srv.inject_mo("test", "491700000001", "12345", "STOP") == 1
        mo = await rx.next_delivery()
        assert (mo.esm_class, mo.data_coding, mo.short_message) == (0, 0, b"STOP")
        assert (mo.source_addr, mo.destination_addr) == ("491700000001", "12345")
        long_text = "退订 " * 50
        n = srv.inject_mo("test", "491700000001", "12345", long_text)
        parts = await rx.deliveries_n(n)
        assert n > 1 and all(p.esm_class & 0x40 and p.data_coding == 8 for p in parts)
        assert "".join(p.short_message[6:].decode("utf-16-be") for p in parts) == long_text


async def test_mo_held_until_receiver_and_generated_on_timer():
    cfg = make_config(
        [
            account(
                mo={
                    "interval": 0.05,
                    "sources": ["491700000001", "491700000002"],
                    "texts": ["TD", "T", "STOP", "UNSUBSCRIBE"],
                }
            )
        ]
    )
    async with simulator(cfg) as srv:
        await wait_for(lambda: srv.stats.mo_injected >= 4)
        async with esme(srv, "receiver") as rx:
            first = await rx.deliveries_n(4)
        assert [m.short_message for m in first] == [b"TD", b"T", b"STOP", b"UNSUBSCRIBE"]
        assert [m.source_addr for m in first[:2]] == ["491700000001", "491700000002"]
