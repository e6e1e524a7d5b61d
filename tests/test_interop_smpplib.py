"""Interoperability: smpplib 2.2.4's blocking client (in a thread) against our simulator."""

from __future__ import annotations

import time

import smpplib.client
import smpplib.consts
import smpplib.gsm
import trio

from gateway.smpp.receipt import parse_receipt_text
from tests.sim_helpers import account, make_config, simulator

LONG_UCS2 = "Ваш код подтверждения: 123456. Никому его не сообщайте! 您的验证码是123456。" * 2


def _smpplib_session(port: int) -> dict:
    sent, receipts = [], []
    client = smpplib.client.Client("127.0.0.1", port, timeout=0.5, allow_unknown_opt_params=True)
    client.set_message_sent_handler(lambda pdu, **kw: sent.append(pdu))
    client.set_message_received_handler(lambda pdu, **kw: receipts.append(pdu))
    client.connect()
    try:
        client.bind_transceiver(system_id="interop", password="pw")
        submitted = 0
        for text in ("Hello from smpplib", LONG_UCS2):
            parts, coding, esm_class = smpplib.gsm.make_parts(text)
            for part in parts:
                client.send_message(
                    source_addr_ton=smpplib.consts.SMPP_TON_ALNUM,
                    source_addr="Acme",
                    dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
                    destination_addr="491701234567",
                    short_message=part,
                    data_coding=coding,
                    esm_class=esm_class,
                    registered_delivery=True,
                )
                submitted += 1
        deadline = time.monotonic() + 10
        while (len(sent) < submitted or len(receipts) < submitted) and time.monotonic() < deadline:
            client.read_once()  # a socket timeout here sends enquire_link and returns
    finally:
        try:
            client.unbind()
        finally:
            client.disconnect()
    return {"submitted": submitted, "sent": sent, "receipts": receipts}


async def test_smpplib_binds_submits_and_receives_receipts():
    async with simulator(make_config([account("interop", "pw")])) as srv:
        with trio.fail_after(30):
            result = await trio.to_thread.run_sync(_smpplib_session, srv.port)
    n = result["submitted"]
    assert n >= 3  # one GSM part + a multipart UCS2 text
    ids = [pdu.message_id.decode() for pdu in result["sent"]]
    assert len(ids) == n and len(set(ids)) == n and all(pdu.status == 0 for pdu in result["sent"])
    receipts = result["receipts"]
    assert len(receipts) == n
    assert sorted(r.receipted_message_id.decode() for r in receipts) == sorted(ids)
    for r in receipts:
        fields = parse_receipt_text(r.short_message)
        assert fields.id == r.receipted_message_id.decode() and fields.stat == "DELIVRD"
        assert int(r.esm_class) == 0x04
    assert srv.stats.receipts_acked == n and srv.stats.unbinds_received == 1
