"""Receipts read per read (pdu.read_receipt, receipt.read_receipt_outcome,
Session.on_deliveries, EsmeClient.read_receipts, Channel._on_deliver with ReadOutcome
tuples): the same outcome as the strict decoder and
the general receipt reading, with no Pdu per receipt, and the general path for anything
else."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import msgspec
import pytest
import smpplib.command
import smpplib.smpp
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.channels import Channel, _Sent
from gateway.config import ChannelConfig
from gateway.smpp import pdu as P
from gateway.smpp import session as S
from gateway.smpp.constants import CommandId, CommandStatus, MessageState, Tag
from gateway.smpp.errors import PduError
from gateway.smpp.esme import EsmeClient
from gateway.smpp.receipt import (
    read_receipt_outcome,
    receipt_outcome,
    receipt_outcome_read,
    receipt_read_pdu,
)
from tests.scripted_smsc import ScriptedSmsc
from tests.test_accepted_reads import RecordingStore, job, state_of
from tests.test_esme import settings as esme_settings
from tests.test_pdu_properties import MUTATION, _mutate
from tests.test_session import bound_pair

CORPUS = Path(__file__).parent / "corpus" / "pdus.jsonl"
RECORDS = [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]

DELIVER_SM = int(CommandId.DELIVER_SM)
RMI = int(Tag.RECEIPTED_MESSAGE_ID)
MS = int(Tag.MESSAGE_STATE)
NEC = int(Tag.NETWORK_ERROR_CODE)
PAYLOAD = int(Tag.MESSAGE_PAYLOAD)
FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOME = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TEXT = (
    "id:{} sub:001 dlvrd:001 submit date:2611262300 done date:2611262301 stat:{} err:{}"
    " text:hello there"
)


def frame(body: bytes, seq: int = 7, status: int = 0, cid: int = DELIVER_SM) -> bytes:
    return struct.pack(">IIII", 16 + len(body), cid, status, seq) + body


def strict(b: bytes) -> P.Pdu | None:
    try:
        return P.decode(b)
    except PduError:
        return None


def plain_receipt(pdu: P.Pdu | None) -> bool:
    """What read_receipt must read: a deliver_sm the strict decoder takes, flagged a
    receipt, no times, no message_payload, every receipted_message_id with its NUL."""
    return (
        type(pdu) is P.DeliverSm
        and pdu.esm_class & 0x3C in (0x04, 0x20)
        and pdu.schedule_delivery_time == ""
        and pdu.validity_period == ""
        and all(t.tag != PAYLOAD and (t.tag != RMI or t.terminated) for t in pdu.tlvs)
    )


def check(b: bytes, after: bytes = b"") -> P.ReceiptRead | None:
    """read_receipt and read_receipt_outcome on the frame `b` (followed by `after` in the
    buffer) against the strict decoder on `b` alone and the general receipt reading of its
    PDU."""
    if len(b) < 16:
        return None
    length, cid, _status, seq = struct.unpack_from(">IIII", b)
    if cid != DELIVER_SM or length != len(b):
        return None  # the session reads a frame of this length and id only
    read = P.read_receipt(b + after, 16, length, seq)
    outcome = read_receipt_outcome(b + after, 16, length, seq)
    pdu = strict(b)
    if not plain_receipt(pdu):
        assert read is None, (b.hex(), pdu)
        assert outcome is None, (b.hex(), pdu)
        return None
    assert read is not None, (b.hex(), pdu)  # every plain receipt is read without a Pdu
    assert read == (seq, pdu.esm_class, pdu.short_message, pdu.tlv(RMI), pdu.tlv(MS))
    assert receipt_outcome_read(read) == receipt_outcome(pdu)
    assert outcome == (seq, *receipt_outcome(pdu)), (b.hex(), pdu)
    return read


# ---------------------------------------------------------------------------------------
# Bodies: raw (every edge of the strict decoder), ours, smpplib's, mutated


def _cstring(max_len: int) -> st.SearchStrategy[bytes]:
    """A C-string's octets around its limit: with its NUL, without, a NUL inside."""
    content = st.binary(max_size=max_len + 2).map(lambda b: b.replace(b"\0", b"x"))
    return st.one_of(
        content.map(lambda b: b + b"\0"),
        content.map(lambda b: b + b"\0"),
        content.map(lambda b: b + b"\0"),
        st.binary(max_size=max_len + 2),
    )


_TEXTS = st.one_of(
    st.builds(
        lambda i, stat, err, nuls: (TEXT.format(i, stat, err)).encode() + b"\0" * nuls,
        st.sampled_from(["1f", "0A0B", "", " 7 ", "x\0y", "12345678901234567890123"]),
        st.sampled_from(["DELIVRD", "UNDELIV", "ENROUTE", "EXPIRED", "x", ""]),
        st.sampled_from(["000", "021", ""]),
        st.integers(0, 2),
    ),
    st.binary(max_size=40),
    st.just(b""),
)
_ESM = st.one_of(st.sampled_from([0x04, 0x20, 0x24, 0x44, 0x06, 0x00, 0x08, 0x40, 0x3C]), st.integers(0, 255))
_TIME = st.one_of(st.just(b"\0"), st.just(b"\0"), st.just(b"2611262300000+\0"[:16] + b"\0"), _cstring(17))


def _tlv(tag: int, value: bytes, length: int | None = None) -> bytes:
    return struct.pack(">HH", tag, len(value) if length is None else length) + value


_RAW_TLV = st.one_of(
    st.builds(lambda v: _tlv(RMI, v + b"\0"), st.binary(max_size=12).map(lambda b: b.replace(b"\0", b"1"))),
    st.builds(lambda v: _tlv(RMI, v + b"\0"), st.sampled_from([b"", b" ", b"a\0b", b"6000"])),
    st.builds(lambda v: _tlv(RMI, v), st.binary(max_size=6)),  # no NUL, or empty
    st.builds(lambda v: _tlv(MS, bytes([v])), st.sampled_from([0, 1, 2, 3, 5, 8, 9, 255])),
    st.builds(lambda v: _tlv(MS, v), st.binary(max_size=3)),  # a wrong length too
    st.builds(lambda v: _tlv(NEC, v), st.binary(max_size=4)),
    st.builds(lambda v: _tlv(PAYLOAD, v), _TEXTS),
    st.builds(lambda t, v: _tlv(t, v), st.sampled_from([0x0204, 0x1400, 0x0005, 0x020C, 0x000E, 0x001D, 0x0426]), st.binary(max_size=3)),
    st.builds(_tlv, st.sampled_from([RMI, MS, NEC]), st.binary(max_size=4), st.integers(0, 9)),  # length off
    st.binary(min_size=1, max_size=3),  # stray octets
)


@st.composite
def raw_bodies(draw: st.DrawFn) -> bytes:
    """A deliver_sm body field by field, each at and around the strict decoder's limits."""
    sm = draw(_TEXTS)[:255]
    sm_length = draw(st.one_of(st.just(len(sm)), st.just(len(sm)), st.just(len(sm)), st.integers(0, 255)))
    return b"".join(
        [
            draw(st.one_of(st.just(b"\0"), st.just(b"\0"), _cstring(6))),  # service_type
            draw(st.binary(min_size=2, max_size=2)),
            draw(_cstring(21)),  # source_addr
            draw(st.binary(min_size=2, max_size=2)),
            draw(_cstring(21)),  # destination_addr
            bytes([draw(_ESM)]),
            draw(st.binary(min_size=2, max_size=2)),  # protocol_id, priority_flag
            draw(_TIME),
            draw(_TIME),
            draw(st.binary(min_size=4, max_size=4)),
            bytes([sm_length]),
            sm,
            *draw(st.lists(_RAW_TLV, max_size=4)),
        ]
    )


_TLVS = st.lists(
    st.one_of(
        st.builds(P.Tlv, st.just(RMI), st.sampled_from(["", " ", "1f", "6000", " 12 ", "a\x00b"])),
        st.builds(P.Tlv, st.just(RMI), st.sampled_from(["1f", "6000"]), st.just(False)),
        st.builds(P.Tlv, st.just(MS), st.sampled_from([*range(10), 255])),
        st.builds(P.Tlv, st.just(NEC), st.binary(max_size=4)),
        st.builds(P.Tlv, st.just(PAYLOAD), _TEXTS),
        st.builds(P.Tlv, st.just(int(Tag.USER_MESSAGE_REFERENCE)), st.integers(0, 0xFFFF)),
        st.builds(P.Tlv, st.just(0x1400), st.binary(max_size=4)),
    ),
    max_size=4,
)
_ADDR = st.one_of(st.text(st.characters(min_codepoint=1, max_codepoint=255), max_size=20), st.just("4915112345678"))


@st.composite
def our_receipts(draw: st.DrawFn) -> bytes:
    """A deliver_sm as our encoder writes it (a receipt mostly, anything it can encode)."""
    return P.DeliverSm(
        sequence_number=draw(st.integers(0, 0xFFFFFFFF)),
        service_type=draw(st.sampled_from(["", "", "CMT", "abcde"])),
        source_addr_ton=draw(st.integers(0, 255)),
        source_addr=draw(_ADDR),
        destination_addr=draw(_ADDR),
        esm_class=draw(_ESM),
        protocol_id=draw(st.integers(0, 255)),
        schedule_delivery_time=draw(st.sampled_from(["", "", "261126230000000+"])),
        validity_period=draw(st.sampled_from(["", "", "000001000000000R"])),
        data_coding=draw(st.integers(0, 255)),
        short_message=draw(_TEXTS)[:255],
        tlvs=draw(_TLVS),
    ).encode()


class _Client:
    sequence = 0

    def next_sequence(self) -> int:
        return 0


@st.composite
def smpplib_receipts(draw: st.DrawFn) -> bytes:
    """A deliver_sm as smpplib 2.2.4 writes it: the receipt TLVs by their smpplib names."""
    kwargs: dict = {
        "source_addr": draw(_ADDR),
        "destination_addr": draw(_ADDR),
        "esm_class": draw(_ESM),
        "short_message": draw(_TEXTS)[:254],
    }
    if draw(st.booleans()):
        kwargs["receipted_message_id"] = draw(st.sampled_from(["1f", "0059113978", "abc-1"]))
    if draw(st.booleans()):
        kwargs["message_state"] = draw(st.integers(0, 9))
    if draw(st.booleans()):
        kwargs["network_error_code"] = draw(st.binary(min_size=3, max_size=3))
    if draw(st.integers(0, 4)) == 0:
        kwargs["user_message_reference"] = draw(st.integers(0, 0xFFFF))
    sl = smpplib.smpp.make_pdu("deliver_sm", client=_Client(), **kwargs)
    for k, v in kwargs.items():
        setattr(sl, k, v)
    sl.sequence = draw(st.integers(1, 0x7FFFFFFF))
    return sl.generate()


_AFTER = st.one_of(
    st.just(b""), st.binary(max_size=30), st.just(b"\0" * 30), st.just(b"\x04\x27\x00\x01\x02"),
    st.just(b"\x00\x1e\x00\x03ab\x00"),
)


# ---------------------------------------------------------------------------------------
# read_receipt against the strict decoder


def test_the_usual_receipt_is_read() -> None:
    text = TEXT.format("1f", "DELIVRD", "000").encode()
    b = P.DeliverSm(
        sequence_number=9, source_addr="4915112345678", destination_addr="Acme", esm_class=4,
        short_message=text, tlvs=[P.Tlv(RMI, "1f"), P.Tlv(MS, 2), P.Tlv(NEC, b"\x03\x00\x00")],
    ).encode()
    assert check(b) == (9, 4, text, "1f", 2)
    assert check(b, b"\0" * 40) == (9, 4, text, "1f", 2)


def test_tlvs_the_receipt_path_does_not_read_are_skipped() -> None:
    b = P.DeliverSm(
        sequence_number=9, esm_class=4, short_message=b"x",
        tlvs=[
            P.Tlv(int(Tag.SOURCE_NETWORK_TYPE), 1), P.Tlv(MS, 2), P.Tlv(0x1400, b"vendor"),
            P.Tlv(int(Tag.ADDITIONAL_STATUS_INFO_TEXT), "ok", False), P.Tlv(RMI, "1f"), P.Tlv(MS, 3),
        ],
    ).encode()
    assert check(b) == (9, 4, b"x", "1f", 2)
    # an integer tag of the wrong length: refused by the strict decoder, declined here
    bad = frame(b"\0\0\0\0\0\0\0\x04\0\0\0\0\0\0\0\0\0" + _tlv(int(Tag.SOURCE_NETWORK_TYPE), b"\1\2"))
    assert strict(bad) is None and P.read_receipt(bad, 16, len(bad), 7) is None


@pytest.mark.parametrize(
    "change",
    [
        {"esm_class": 0},  # an MO
        {"schedule_delivery_time": "261126230000000+"},
        {"tlvs": [P.Tlv(RMI, "1f", False)]},  # unterminated
        {"tlvs": [P.Tlv(RMI, "1f"), P.Tlv(PAYLOAD, b"x")]},
        {"tlvs": [P.Tlv(RMI, "1f"), P.Tlv(RMI, "2", False)]},
    ],
)
def test_anything_else_is_declined(change: dict) -> None:
    fields = dict(esm_class=4, short_message=b"id:1 stat:DELIVRD", tlvs=[P.Tlv(RMI, "1f")])
    fields.update(change)
    b = P.DeliverSm(**fields).encode()
    assert strict(b) is not None
    assert P.read_receipt(b, 16, len(b), 1) is None
    assert check(b) is None


@FUZZ
@given(body=raw_bodies(), after=_AFTER)
def test_raw_bodies_read_as_the_strict_decoder_reads_them(body: bytes, after: bytes) -> None:
    check(frame(body), after)


@FUZZ
@given(b=st.one_of(our_receipts(), smpplib_receipts()), after=_AFTER)
def test_encoded_receipts_read_as_the_strict_decoder_reads_them(b: bytes, after: bytes) -> None:
    check(b, after)


@FUZZ
@given(
    b=st.one_of(our_receipts(), smpplib_receipts(), raw_bodies().map(frame)),
    mutations=st.lists(MUTATION, min_size=1, max_size=3),
    after=_AFTER,
)
def test_mutated_receipts_read_as_the_strict_decoder_reads_them(
    b: bytes, mutations: list, after: bytes
) -> None:
    for m in mutations:
        if len(b) < 16:
            return
        b = _mutate(b, m, True)
    check(b, after)


def test_every_truncation_of_a_receipt_reads_as_decoded() -> None:
    b = P.DeliverSm(
        esm_class=4, source_addr="4915112345678", short_message=b"id:1f stat:DELIVRD",
        tlvs=[P.Tlv(RMI, "1f"), P.Tlv(MS, 2), P.Tlv(NEC, b"\x03\x00\x01")],
    ).encode()
    reads = 0
    for n in range(16, len(b) + 1):
        cut = _mutate(b, ("truncate", n, False), True)
        for after in (b"", b"\0" * 8, b[n:], b):
            reads += check(cut, after) is not None
    assert reads  # the whole frame, at least, and the cuts that end between TLVs


@pytest.mark.parametrize("rec", [r for r in RECORDS if r["command"] == "deliver_sm"], ids=lambda r: r["id"])
def test_corpus_deliver_sm_reads_as_decoded(rec: dict) -> None:
    b = bytes.fromhex(rec["hex"])
    check(b)
    check(b, b"\0" * 16)


def test_the_corpus_receipts_are_read_without_a_pdu() -> None:
    """Real SMSCs' receipts: those with only the receipt TLVs take the reading."""
    read = [r["id"] for r in RECORDS if r["command"] == "deliver_sm" and check(bytes.fromhex(r["hex"]))]
    assert len(read) >= 3, read


def test_a_read_rebuilds_as_its_pdu() -> None:
    text = b"not a canonical receipt stat:DELIVRD"
    b = P.DeliverSm(sequence_number=3, esm_class=0x20, short_message=text, tlvs=[P.Tlv(RMI, "7"), P.Tlv(MS, 5)]).encode()
    read = check(b)
    assert read is not None and receipt_read_pdu(read) == P.decode(b)
    assert receipt_outcome_read(read) == receipt_outcome(P.decode(b))


# ---------------------------------------------------------------------------------------
# The session: on_deliveries against events


def _session(mode) -> S.Session:
    esme, _ = bound_pair(mode)
    esme.data_to_send()
    return esme


_OTHER_FRAMES = st.sampled_from(
    [
        P.EnquireLink(sequence_number=40).encode(),
        P.DeliverSm(sequence_number=41, short_message=b"an MO").encode(),
        P.DataSm(sequence_number=42, esm_class=4, tlvs=[P.Tlv(RMI, "1f")]).encode(),
        P.AlertNotification(sequence_number=43, source_addr="49151").encode(),
        P.SubmitSmResp(sequence_number=44, message_id="x").encode(),  # answers nothing
        frame(b"\0" * 3, seq=45),  # a deliver_sm cut short: refused
        frame(b"\0\0\0" + b"9" * 22 + b"\0\0\0\0\x04" + b"\0" * 8 + b"\x00", seq=46),  # leniently read
        frame(b"", seq=47, cid=0x00000666),  # unknown command
    ]
)
_FRAMES = st.one_of(our_receipts(), smpplib_receipts(), raw_bodies().map(frame), _OTHER_FRAMES)


def _same_reading(item: object, pdu: P.Pdu) -> bool:
    if type(item) is tuple:  # a ReadOutcome
        return plain_receipt(pdu) and item == (pdu.sequence_number, *receipt_outcome(pdu))
    return item == pdu


@SOME
@given(
    frames=st.lists(_FRAMES, min_size=1, max_size=8),
    cuts=st.lists(st.integers(1, 400), max_size=4),
    mode=st.sampled_from([P.BindTransceiver, P.BindReceiver, P.BindTransmitter]),
)
def test_on_deliveries_gives_what_the_events_give(frames: list[bytes], cuts: list[int], mode) -> None:
    """The same bytes, in the same reads, to a session with on_deliveries and one without:
    the same answers, the same other events, the same state, and each delivered item the
    PDU of a RequestReceived (a plain receipt as its reading), in wire order."""
    data = b"".join(frames)
    reads, pos = [], 0
    for c in sorted(cuts):
        if pos < c < len(data):
            reads.append(data[pos:c])
            pos = c
    reads.append(data[pos:])
    plain, fast = _session(mode), _session(mode)
    calls: list[list] = []
    fast.on_deliveries = calls.append
    events_plain, events_fast = [], []
    for r in reads:
        plain.receive_data(r)
        fast.receive_data(r)
        events_plain += plain.next_events()
        events_fast += fast.next_events()
        assert fast.data_to_send() == plain.data_to_send()
    assert all(calls)  # no empty call
    delivered = [item for call in calls for item in call]
    requests = [e.pdu for e in events_plain if type(e) is S.RequestReceived]
    assert len(delivered) == len(requests)
    assert all(_same_reading(i, p) for i, p in zip(delivered, requests)), (delivered, requests)
    rest = [repr(e) for e in events_plain if type(e) is not S.RequestReceived]
    assert [repr(e) for e in events_fast] == rest
    assert (fast.state, fast.outstanding) == (plain.state, plain.outstanding)


def test_a_reads_deliveries_come_in_one_call_in_wire_order() -> None:
    esme = _session(P.BindTransceiver)
    calls: list[list] = []
    esme.on_deliveries = calls.append
    text = TEXT.format("1f", "DELIVRD", "000").encode()
    receipt = P.DeliverSm(sequence_number=5, esm_class=4, short_message=text, tlvs=[P.Tlv(RMI, "1f")])
    mo = P.DeliverSm(sequence_number=6, short_message=b"hi")
    odd = P.DeliverSm(sequence_number=8, esm_class=4, short_message=text, tlvs=[P.Tlv(PAYLOAD, b"v")])
    data = receipt.encode() + mo.encode() + P.EnquireLink(sequence_number=7).encode() + odd.encode()
    esme.receive_data(data[:50])
    assert calls == []
    esme.receive_data(data[50:])
    done = (MessageState.DELIVERED, "000", False, text.decode())
    assert calls == [[(5, "1f", *done), P.decode(mo.encode()), P.decode(odd.encode())]]
    assert [type(e) for e in esme.next_events()] == [S.LinkChecked]


def test_deliveries_reach_the_handler_when_a_later_frame_is_fatal() -> None:
    esme = _session(P.BindTransceiver)
    calls: list[list] = []
    esme.on_deliveries = calls.append
    receipt = P.DeliverSm(sequence_number=5, esm_class=4, short_message=b"x").encode()
    esme.receive_data(receipt + struct.pack(">IIII", 8, DELIVER_SM, 0, 9))
    assert calls == [[(5, None, None, None, False, "x")]]  # an id-less, stat-less receipt
    (ev,) = esme.next_events()
    assert isinstance(ev, S.InvalidPdu) and ev.fatal


def test_deliveries_reach_the_handler_when_on_accepted_raises() -> None:
    esme, _ = bound_pair(window=3)
    esme.send(P.SubmitSm(destination_addr="1", short_message=b"x"))
    esme.data_to_send()
    calls: list[list] = []

    def boom(accepted):
        raise RuntimeError("sink bug")

    esme.on_accepted = boom
    esme.on_deliveries = calls.append
    receipt = P.DeliverSm(sequence_number=5, esm_class=4, short_message=b"x").encode()
    with pytest.raises(RuntimeError):
        esme.receive_data(P.SubmitSmResp(sequence_number=2, message_id="m").encode() + receipt)
    assert calls == [[(5, None, None, None, False, "x")]]  # an id-less, stat-less receipt


def test_a_receipt_in_a_state_that_refuses_it_is_refused() -> None:
    esme = _session(P.BindTransmitter)  # deliver_sm is not legal on a transmitter bind
    calls: list[list] = []
    esme.on_deliveries = calls.append
    esme.receive_data(P.DeliverSm(sequence_number=5, esm_class=4, short_message=b"x").encode())
    assert calls == []
    (ev,) = esme.next_events()
    assert isinstance(ev, S.InvalidPdu)
    assert P.decode(esme.data_to_send()).command_status == CommandStatus.ESME_RINVBNDSTS


@pytest.mark.parametrize("rec", RECORDS, ids=lambda r: r["id"])
def test_corpus_pdus_through_on_deliveries(rec: dict) -> None:
    b = bytes.fromhex(rec["hex"])
    plain, fast = _session(P.BindTransceiver), _session(P.BindTransceiver)
    calls: list[list] = []
    fast.on_deliveries = calls.append
    plain.receive_data(b)
    fast.receive_data(b)
    assert fast.data_to_send() == plain.data_to_send()
    events = plain.next_events()
    requests = [e.pdu for e in events if type(e) is S.RequestReceived]
    delivered = [i for c in calls for i in c]
    assert len(delivered) == len(requests)
    assert all(_same_reading(i, p) for i, p in zip(delivered, requests))
    assert [repr(e) for e in fast.next_events()] == [repr(e) for e in events if type(e) is not S.RequestReceived]


# ---------------------------------------------------------------------------------------
# The ESME driver


async def test_the_esme_hands_read_receipts_to_its_handler_and_answers_them(nursery) -> None:
    smsc = ScriptedSmsc()
    port = await nursery.start(smsc.serve)
    got: list = []

    async def handler(items):
        got.extend(items)
        # the second receipt is refused (a handler's choice): its own resp says so
        return [CommandStatus.ESME_RX_T_APPN if i == 1 else 0 for i in range(len(items))]

    client = EsmeClient(esme_settings(port), on_deliver=handler)
    client.read_receipts = True
    nursery.start_soon(client.run)
    text = TEXT.format("1f", "DELIVRD", "000").encode()
    with trio.fail_after(5):
        await client.wait_bound()
        conn = smsc.connections[-1]
        await conn.push(
            P.DeliverSm(esm_class=4, short_message=text, tlvs=[P.Tlv(RMI, "1f"), P.Tlv(MS, 2)]),
            P.DeliverSm(esm_class=4, short_message=text),
            P.DeliverSm(short_message=b"an MO"),
            P.DataSm(esm_class=4, tlvs=[P.Tlv(RMI, "1f")]),
        )
        while len(conn.deliver_statuses) < 3 or conn.session.outstanding:
            await trio.sleep(0.01)
    assert [type(i) for i in got] == [tuple, tuple, P.DeliverSm, P.DataSm]
    done = (MessageState.DELIVERED, "000", False, text.decode())
    assert got[0][1:] == ("1f", *done) and got[1][1:] == ("1f", *done)  # the TLV's id, the text's
    assert [i[0] for i in got[:2]] == [got[2].sequence_number - 2, got[2].sequence_number - 1]
    assert sorted(conn.deliver_statuses) == sorted([0, CommandStatus.ESME_RX_T_APPN, 0])
    assert client.stats.delivered_in == 4
    await client.close()


async def test_without_read_receipts_the_handler_gets_pdus(nursery) -> None:
    smsc = ScriptedSmsc()
    port = await nursery.start(smsc.serve)
    got: list = []

    async def handler(items):
        got.extend(items)
        return [0] * len(items)

    client = EsmeClient(esme_settings(port), on_deliver=handler)
    nursery.start_soon(client.run)
    with trio.fail_after(5):
        await client.wait_bound()
        conn = smsc.connections[-1]
        await conn.push(P.DeliverSm(esm_class=4, short_message=b"x"))
        while len(conn.deliver_statuses) < 1:
            await trio.sleep(0.01)
    assert [type(i) for i in got] == [P.DeliverSm]
    await client.close()


# ---------------------------------------------------------------------------------------
# The channel: the same store calls and state through either reading


class _Store(RecordingStore):
    async def find_segment(self, channel: str, key: str) -> None:
        self.calls.append(("find_segment", (channel, key), {}))
        return None


class _Journal:
    committed_seq = 0

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def reserve(self, payload: bytes) -> int:
        self.frames.append(payload)
        return len(self.frames)

    async def synced(self, seq: int) -> None:
        return None


def _receipts() -> bytes:
    """One read's worth of deliver_sm: canonical receipts (with and without TLVs, a
    network_error_code), a failure, an intermediate notification, a text that is not
    canonical, a duplicate, an unknown id, an MO and one with a message_payload."""
    def dsm(seq, text, esm=4, tlvs=()):
        return P.DeliverSm(sequence_number=seq, esm_class=esm, short_message=text.encode(), tlvs=list(tlvs)).encode()

    return b"".join(
        [
            dsm(1, TEXT.format("a", "DELIVRD", "000"), tlvs=[P.Tlv(RMI, "a"), P.Tlv(MS, 2)]),
            dsm(2, TEXT.format("b", "UNDELIV", "021"), tlvs=[P.Tlv(RMI, "b"), P.Tlv(MS, 5), P.Tlv(NEC, b"\x03\x00\x15")]),
            dsm(3, TEXT.format("c", "ENROUTE", "000"), esm=0x20, tlvs=[P.Tlv(RMI, "c")]),
            dsm(4, TEXT.format("d", "DELIVRD", "000")),  # the id from the text
            dsm(5, "id:e stat:EXPIRED err:000", tlvs=[P.Tlv(RMI, "e")]),  # not canonical
            dsm(6, TEXT.format("a", "DELIVRD", "000"), tlvs=[P.Tlv(RMI, "a"), P.Tlv(MS, 2)]),  # again
            dsm(7, TEXT.format("ff", "DELIVRD", "000"), tlvs=[P.Tlv(RMI, "ff")]),  # no such message
            dsm(8, "an MO", esm=0),
            dsm(9, TEXT.format("f", "DELIVRD", "000"), tlvs=[P.Tlv(RMI, "f"), P.Tlv(PAYLOAD, b"v")]),
        ]
    )


async def test_the_channel_makes_the_same_changes_with_read_receipts() -> None:
    cfg = ChannelConfig(name="c", system_id="s", password="p", message_id_format="hex", receipt_id_format="hex")
    outcomes = []
    for reading in (True, False):
        ch = Channel(cfg, _Store(), clock=lambda: 5.0)
        ch._wall = lambda: 6.0
        ch.journal = _Journal()  # type: ignore[assignment]
        jobs = [job(i) for i in range(6)]
        ch._inflight = len(jobs)
        ch._on_accepted([(_Sent(ch, j, 0), f"{i + 10:x}") for i, j in enumerate(jobs)])
        session = _session(P.BindTransceiver)
        delivered: list = []
        if reading:
            session.on_deliveries = delivered.extend
        session.receive_data(_receipts())
        if not reading:
            delivered = [e.pdu for e in session.next_events()]
        else:
            assert session.next_events() == []
        assert [type(i) is tuple for i in delivered] == [reading] * 7 + [False, False]
        statuses = await ch._on_deliver(delivered)
        assert statuses == [0] * 9
        outcomes.append(
            (state_of(ch, jobs), ch.store.calls, ch.journal.frames, sorted(ch._early), msgspec.to_builtins(ch.stats))
        )
    assert outcomes[0] == outcomes[1]
    state, calls, frames, early, stats = outcomes[0]
    assert [r["state"] for r in state[0]] == ["delivered", "undeliverable", "submitted", "delivered", "expired", "delivered"]
    assert stats["receipts"] == 8 and stats["receipts_duplicate"] == 1 and stats["mo"] == 1
    assert early and len(frames) == 1
