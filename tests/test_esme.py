"""The trio ESME driver against a scripted SMSC on 127.0.0.1."""

from __future__ import annotations

import random

import pytest
import trio

from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandStatus, Tag
from gateway.smpp.esme import EsmeClient, EsmeSettings, Outcome, SubmitResult
from tests.scripted_smsc import ScriptedSmsc


def settings(port: int, **kw) -> EsmeSettings:
    base = dict(
        port=port,
        system_id="gw",
        password="secret",
        window=8,
        response_timeout=1.0,
        reconnect_min=0.05,
        reconnect_max=0.2,
        bind_failure_backoff=30.0,
        enquire_link_interval=30.0,
    )
    base.update(kw)
    return EsmeSettings(**base)


def submit(n: int = 0) -> P.Pdu:
    return P.SubmitSm(source_addr="Acme", destination_addr=f"49151{n:07d}", short_message=b"hi")


@pytest.fixture
async def smsc(nursery):
    server = ScriptedSmsc()
    await nursery.start(server.serve)
    return server


async def test_bind_submit_and_window(smsc, nursery):
    client = EsmeClient(settings(smsc.port))
    nursery.start_soon(client.run)
    with trio.fail_after(5):
        await client.wait_bound()
        results = []

        async def one(i):
            results.append(await client.submit(submit(i)))

        async with trio.open_nursery() as n:
            for i in range(50):
                n.start_soon(one, i)
    assert len(results) == 50
    assert all(r.outcome is Outcome.ACCEPTED for r in results)
    assert len({r.message_id for r in results}) == 50
    assert client.stats.accepted == 50
    # TCP_NODELAY and the window: never more than 8 outstanding at the SMSC
    await client.close()


async def test_retryable_and_final_statuses(smsc, nursery):
    statuses = iter(
        [CommandStatus.ESME_RTHROTTLED, CommandStatus.ESME_RMSGQFUL, CommandStatus.ESME_RINVDSTADR]
    )

    def react(conn, pdu):
        return [P.error_response(pdu.command_id, pdu.sequence_number, next(statuses))]

    smsc.on_submit = react
    client = EsmeClient(settings(smsc.port))
    nursery.start_soon(client.run)
    with trio.fail_after(5):
        r1 = await client.submit(submit())
        r2 = await client.submit(submit())
        r3 = await client.submit(submit())
    assert (r1.outcome, r1.throttled) == (Outcome.RETRY, True)
    assert (r2.outcome, r2.throttled) == (Outcome.RETRY, True)
    assert r3.outcome is Outcome.REJECTED and r3.reason == "ESME_RINVDSTADR"
    assert client.bound  # nothing above killed the session
    await client.close()


async def test_generic_nack_is_retryable(smsc, nursery):
    smsc.on_submit = lambda conn, pdu: [
        P.GenericNack(sequence_number=pdu.sequence_number, command_status=CommandStatus.ESME_RSYSERR)
    ]
    client = EsmeClient(settings(smsc.port))
    nursery.start_soon(client.run)
    with trio.fail_after(5):
        r = await client.submit(submit())
    assert r.outcome is Outcome.RETRY
    assert r.reason.startswith("generic_nack")
    # ESME_RSYSERR is not a throttling status on a submit_sm_resp, but any generic_nack
    # answering a submit asks the channel to back off.
    assert r.status == CommandStatus.ESME_RSYSERR and r.throttled
    assert r.reason == "generic_nack:ESME_RSYSERR"
    await client.close()


@pytest.mark.parametrize("status", [CommandStatus.ESME_RINVCMDID, CommandStatus.ESME_RINVCMDLEN])
async def test_generic_nack_saying_the_pdu_is_wrong_is_final(smsc, nursery, status):
    """Unknown command or bad length: the same submit_sm would be nacked again, so it is
    rejected, not retried (and the channel is not slowed for it)."""
    smsc.on_submit = lambda conn, pdu: [P.GenericNack(sequence_number=pdu.sequence_number, command_status=status)]
    client = EsmeClient(settings(smsc.port))
    nursery.start_soon(client.run)
    with trio.fail_after(5):
        r = await client.submit(submit())
    assert (r.outcome, r.throttled, r.status) == (Outcome.REJECTED, False, status)
    assert r.reason == f"generic_nack:{status.name}"
    await client.close()


async def test_response_timeout_frees_the_window(smsc, nursery):
    smsc.on_submit = lambda conn, pdu: None  # never answer
    client = EsmeClient(settings(smsc.port, window=2, response_timeout=0.3))
    nursery.start_soon(client.run)
    with trio.fail_after(5):
        results = []

        async def one(i):
            results.append(await client.submit(submit(i)))

        async with trio.open_nursery() as n:
            for i in range(4):  # twice the window: the second pair needs freed slots
                n.start_soon(one, i)
    assert [r.outcome for r in results] == [Outcome.TIMEOUT] * 4
    assert client.stats.timeouts == 4
    await client.close()


async def test_disconnect_completes_outstanding_and_reconnects(smsc, nursery):
    answered = []

    def react(conn, pdu):
        if len(answered) == 0:
            answered.append(pdu)
            # Close the connection instead of answering.
            conn.server.to_close = conn
            return None
        return [P.make_response(pdu, message_id="ok")]

    smsc.on_submit = react
    client = EsmeClient(settings(smsc.port, response_timeout=5))
    nursery.start_soon(client.run)
    with trio.fail_after(5):
        await client.wait_bound()

        async def closer():
            while not hasattr(smsc, "to_close"):
                await trio.sleep(0.01)
            await smsc.to_close.stream.aclose()

        nursery.start_soon(closer)
        r = await client.submit(submit())
        assert r.outcome is Outcome.DISCONNECTED
        r2 = await client.submit(submit())  # waits for the reconnect
    assert r2.outcome is Outcome.ACCEPTED
    assert client.stats.binds == 2 and smsc.binds == 2
    await client.close()


async def test_bad_credentials_back_off_long(smsc, nursery, mock_clock):
    # Jump virtual time only after 50 ms of real idleness, so loopback I/O completes first.
    mock_clock.autojump_threshold = 0.05
    client = EsmeClient(settings(smsc.port, password="wrong", bind_failure_backoff=60.0))
    nursery.start_soon(client.run)
    await trio.sleep(200)  # virtual time: at most ceil(200/60)+1 attempts, not a tight loop
    assert 2 <= smsc.bind_attempts <= 5
    assert client.stats.bind_failures == smsc.bind_attempts
    assert "ESME_RINVPASWD" in client.last_error
    await client.close()


async def test_reconnect_backoff_grows_with_jitter():
    client = EsmeClient(settings(1, reconnect_min=1.0, reconnect_max=16.0), rng=random.Random(7))
    delays = [client._backoff(a) for a in range(1, 8)]
    for attempt, d in enumerate(delays, start=1):
        step = min(16.0, 2 ** (attempt - 1))
        assert step / 2 <= d <= step
    assert delays[-1] <= 16.0


async def test_deliver_sm_acknowledged_after_handler(smsc, nursery):
    got = []
    release = trio.Event()

    async def handler(pdus):
        await release.wait()
        got.extend(pdus)
        return [CommandStatus.ESME_ROK] * len(pdus)

    client = EsmeClient(settings(smsc.port), on_deliver=handler)
    nursery.start_soon(client.run)
    with trio.fail_after(5):
        await client.wait_bound()
        conn = smsc.connections[-1]
        receipt = P.DeliverSm(
            esm_class=0x04,
            short_message=b"id:1 sub:001 dlvrd:001 submit date:2611260101 done date:2611260101 stat:DELIVRD err:000 text:",
            tlvs=[P.Tlv(Tag.RECEIPTED_MESSAGE_ID, "1"), P.Tlv(Tag.MESSAGE_STATE, 2)],
        )
        await conn.push(receipt)
        await trio.sleep(0.2)
        assert not conn.session.outstanding == 0  # not answered while the handler holds it
        release.set()
        while conn.session.outstanding:
            await trio.sleep(0.01)
    assert got[0].tlv(Tag.RECEIPTED_MESSAGE_ID) == "1"
    await client.close()


async def test_handler_failure_answers_temporary_error(smsc, nursery):
    async def handler(pdus):
        raise RuntimeError("store down")

    client = EsmeClient(settings(smsc.port), on_deliver=handler)
    nursery.start_soon(client.run)
    with trio.fail_after(5):
        await client.wait_bound()
        conn = smsc.connections[-1]
        sent = P.DeliverSm(short_message=b"MO")
        await conn.push(sent)
        while conn.session.outstanding:
            await trio.sleep(0.01)
    assert client.bound
    # the refusal is a temporary error, so the SMSC will deliver it again
    assert conn.deliver_statuses == [CommandStatus.ESME_RX_T_APPN]


async def test_peer_unbind_reconnects(smsc, nursery):
    client = EsmeClient(settings(smsc.port))
    nursery.start_soon(client.run)
    with trio.fail_after(5):
        await client.wait_bound()
        await smsc.connections[-1].push(P.Unbind())
        while smsc.binds < 2:
            await trio.sleep(0.01)
        r = await client.submit(submit())
    assert r.outcome is Outcome.ACCEPTED
    await client.close()


async def test_enquire_link_when_idle(smsc, nursery):
    client = EsmeClient(settings(smsc.port, enquire_link_interval=0.2))
    nursery.start_soon(client.run)
    with trio.fail_after(5):
        await client.wait_bound()
        await trio.sleep(0.7)
    assert smsc.link_checks >= 2
    assert client.bound
    await client.close()


async def test_graceful_close_unbinds(smsc, nursery):
    client = EsmeClient(settings(smsc.port))
    nursery.start_soon(client.run)
    with trio.fail_after(5):
        await client.wait_bound()
        await client.close()
    assert smsc.unbinds == 1
    assert (await client.submit(submit())).outcome is Outcome.NOT_SENT


async def test_set_window_applies_without_reconnect(smsc, nursery):
    client = EsmeClient(settings(smsc.port, window=1))
    nursery.start_soon(client.run)
    with trio.fail_after(5):
        await client.wait_bound()
        client.set_window(16)
        async with trio.open_nursery() as n:
            for i in range(32):
                n.start_soon(client.submit, submit(i))
    assert client.stats.connects == 1 and client.stats.accepted == 32
    await client.close()


async def test_unanswered_enquire_link_drops_and_reconnects(smsc, nursery):
    client = EsmeClient(settings(smsc.port, enquire_link_interval=0.2, response_timeout=0.3))
    nursery.start_soon(client.run)
    with trio.fail_after(5):
        await client.wait_bound()
        smsc.mute = True  # the link hangs: enquire_link goes unanswered
        while client.stats.disconnects < 1:
            await trio.sleep(0.01)
        smsc.mute = False
        while smsc.binds < 2:
            await trio.sleep(0.01)
    await client.close()


async def test_deliver_handler_gets_batches_and_answers_each(smsc, nursery):
    batches = []

    async def handler(pdus):
        batches.append(len(pdus))
        await trio.sleep(0.05)  # a slow durable write: more PDUs pile up meanwhile
        return [CommandStatus.ESME_ROK if i % 2 == 0 else CommandStatus.ESME_RX_T_APPN for i in range(len(pdus))]

    client = EsmeClient(settings(smsc.port), on_deliver=handler)
    nursery.start_soon(client.run)
    with trio.fail_after(5):
        await client.wait_bound()
        conn = smsc.connections[-1]
        for i in range(30):
            await conn.push(P.DeliverSm(short_message=f"MO {i}".encode()))
        while len(conn.deliver_statuses) < 30:
            await trio.sleep(0.01)
    assert sum(batches) == 30 and len(batches) < 30  # batched, not one call per PDU
    await client.close()


async def test_deliver_batches_run_two_at_a_time(smsc, nursery):
    """While the handler holds a batch (a commit), the next one is handed over too; a
    third waits for a free slot (deliver_concurrency = 2) and collects what arrives."""
    held: list[tuple[int, trio.Event]] = []

    async def handler(pdus):
        release = trio.Event()
        held.append((len(pdus), release))
        await release.wait()
        return [CommandStatus.ESME_ROK] * len(pdus)

    client = EsmeClient(settings(smsc.port), on_deliver=handler)
    nursery.start_soon(client.run)
    with trio.fail_after(5):
        await client.wait_bound()
        conn = smsc.connections[-1]
        for n in range(3):
            await conn.push(P.DeliverSm(short_message=f"MO {n}".encode()))
            while len(held) < min(n + 1, 2):
                await trio.sleep(0.01)
        await trio.sleep(0.1)
        assert [n for n, _ in held] == [1, 1]  # the third PDU waits for a slot
        await conn.push(P.DeliverSm(short_message=b"MO 3"))
        held[0][1].set()
        while len(held) < 3:
            await trio.sleep(0.01)
        assert held[2][0] == 2  # what piled up meanwhile, as one batch
        for _, release in held[1:]:
            release.set()
        while len(conn.deliver_statuses) < 4:
            await trio.sleep(0.01)
    await client.close()


async def test_tls_bind_with_verified_certificate(nursery, tmp_path):
    import trustme

    ca = trustme.CA()
    server_ctx = __import__("ssl").create_default_context(__import__("ssl").Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    smsc = ScriptedSmsc()
    port = await nursery.start(lambda task_status: smsc.serve(task_status, tls=server_ctx))
    client = EsmeClient(settings(port, tls=True, tls_ca_file=str(ca_file)))
    nursery.start_soon(client.run)
    with trio.fail_after(5):
        r = await client.submit(submit())
    assert r.outcome is Outcome.ACCEPTED
    await client.close()


async def test_tls_refuses_an_unknown_certificate(nursery, tmp_path, mock_clock):
    mock_clock.autojump_threshold = 0.05
    import trustme

    server_ctx = __import__("ssl").create_default_context(__import__("ssl").Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(server_ctx)
    smsc = ScriptedSmsc()
    port = await nursery.start(lambda task_status: smsc.serve(task_status, tls=server_ctx))
    client = EsmeClient(settings(port, tls=True))  # system CAs: the test CA is unknown
    nursery.start_soon(client.run)
    await trio.sleep(3)
    assert not client.bound and smsc.binds == 0
    assert "SSL" in (client.last_error or "") or "certificate" in (client.last_error or "").lower()
    await client.close()


@pytest.mark.parametrize("seq", [1, 0x7FFFFFFF, 123456])
def test_receipt_acks_are_the_codecs_bytes(seq):
    """The ESME answers deliver_sm / data_sm with Session.send_acks: the same bytes as the
    codec's ESME_ROK response with an empty message_id."""
    from gateway.smpp import esme
    from gateway.smpp import session as S

    for request, resp_cls in ((P.DeliverSm, P.DeliverSmResp), (P.DataSm, P.DataSmResp)):
        session = S.Session(S.Role.ESME)
        session.send_acks(esme._ACK_ID[request.command_id], [seq, seq])
        one = resp_cls(sequence_number=seq, message_id="").encode()
        assert session.data_to_send() == one + one


@pytest.mark.parametrize("with_link", [True, False])
async def test_what_arrives_with_the_bind_response_is_handled(nursery, with_link):
    """An SMSC may write a held receipt and an enquire_link right behind bind_resp, in one
    segment: the ESME answers both (before, everything after bind_resp in that read was
    dropped: the receipt went unanswered until the SMSC's timeout, the enquire_link too).
    The receipt alone (no event besides it in that read) is answered too."""
    answers: list[P.Pdu] = []
    expected = 2 if with_link else 1

    async def raw_smsc(stream: trio.SocketStream) -> None:
        bind = P.decode(await stream.receive_some(4096))
        receipt = P.DeliverSm(
            sequence_number=77, source_addr="1", destination_addr="2", esm_class=4,
            short_message=b"id:1 sub:001 dlvrd:001 submit date:2401010000 done date:2401010000 stat:DELIVRD err:000 text:x",
        )
        link = P.EnquireLink(sequence_number=78)
        await stream.send_all(
            P.make_response(bind, system_id="SMSC").encode()
            + receipt.encode()
            + (link.encode() if with_link else b"")
        )
        buf = b""
        with trio.move_on_after(3):
            while len(answers) < expected:
                data = await stream.receive_some(4096)
                if not data:
                    break
                buf += data
                while len(buf) >= 16 and len(buf) >= int.from_bytes(buf[:4], "big"):
                    n = int.from_bytes(buf[:4], "big")
                    answers.append(P.decode(buf[:n]))
                    buf = buf[n:]

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    nursery.start_soon(trio.serve_listeners, raw_smsc, listeners)
    delivered: list[P.Pdu] = []

    async def on_deliver(pdus):
        delivered.extend(pdus)
        return [0] * len(pdus)

    client = EsmeClient(settings(port, enquire_link_interval=100), on_deliver=on_deliver)
    nursery.start_soon(client.run)
    with trio.fail_after(2):
        while len(answers) < expected:
            await trio.sleep(0.01)
    assert [p.sequence_number for p in delivered] == [77]
    assert sorted((p.command_name, p.sequence_number, p.command_status) for p in answers) == [
        ("deliver_sm_resp", 77, 0),
        ("enquire_link_resp", 78, 0),
    ][:expected]
    await client.close()


async def test_the_window_is_refilled_from_the_reader(smsc, nursery):
    """on_window_free runs in the reader's step after responses free slots: what it
    submits there goes out without any sender task, and the window is never exceeded."""
    client = EsmeClient(settings(smsc.port, window=4))
    results: list[SubmitResult] = []
    todo = list(range(20))
    calls: list[int] = []

    def refill() -> None:
        calls.append(client.free_slots())
        while todo and client.free_slots() > 0:
            assert client.submit_nowait(submit(todo.pop(0)), results.append)

    client.on_window_free = refill
    nursery.start_soon(client.run)
    with trio.fail_after(5):
        await client.wait_bound()
        refill()  # the first window; the reader refills it from here on
        while len(results) < 20:
            await trio.sleep(0.01)
    assert all(r.outcome is Outcome.ACCEPTED for r in results)
    assert sum(1 for p in smsc.received if isinstance(p, P.SubmitSm)) == 20
    assert calls[0] == 4 and all(0 < free <= 4 for free in calls[1:])
    assert len(calls) > 1
    await client.close()


async def test_a_failing_refill_does_not_break_the_reader(smsc, nursery):
    client = EsmeClient(settings(smsc.port))

    def refill() -> None:
        raise RuntimeError("sender bug")

    client.on_window_free = refill
    nursery.start_soon(client.run)
    with trio.fail_after(5):
        r1 = await client.submit(submit(1))
        r2 = await client.submit(submit(2))  # the reader survived the first refill
    assert r1.outcome is Outcome.ACCEPTED and r2.outcome is Outcome.ACCEPTED
    await client.close()
