"""Pure helpers of the submit path: PDUs from a message, receipt states, lanes."""

from __future__ import annotations

import msgspec
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import ChannelConfig
from gateway.lanes import Lanes
from gateway.smpp import pdu as P
from gateway.smpp import text as T
from gateway.smpp.constants import Tag
from gateway.states import State
from gateway.store.records import MessageRecord, SegmentState
from gateway.submission import (
    SubmitTemplates,
    build_pdus,
    message_state_from_segments,
    relative_validity,
    source_ton_npi,
)


def channel(**kw) -> ChannelConfig:
    return ChannelConfig(name="c", system_id="s", password="p", **kw)


def message(text: str, **kw) -> MessageRecord:
    base = dict(
        id="m1",
        tenant="t",
        source_addr="Acme",
        destination="4915112345678",
        text=text,
        category="otp",
        priority=0,
        data_coding=0,
        segment_count=1,
        created_at=0.0,
        updated_at=0.0,
        expires_at=3600.0,
    )
    base.update(kw)
    return MessageRecord(**base)


@pytest.mark.parametrize(
    "source,expected",
    [("Acme", (5, 0)), ("4915112345678", (1, 1)), ("+4915112345678", (1, 1)), ("12345", (0, 1))],
)
def test_source_ton_npi_auto(source, expected):
    assert source_ton_npi(source, channel()) == expected


def test_source_ton_npi_configured_wins():
    assert source_ton_npi("Acme", channel(source_addr_ton=2, source_addr_npi=9)) == (2, 9)


def test_relative_validity_format():
    assert relative_validity(3600) == "000000010000000R"
    assert relative_validity(86400 + 61) == "000001000101000R"
    assert relative_validity(10) == "000000000100000R"  # at least one minute
    assert len(relative_validity(10**9)) == 16


def test_single_gsm_message_pdu():
    (pdu,) = build_pdus(message("hello"), channel(), reference=7, now=0.0)
    assert pdu.short_message == b"hello" and pdu.data_coding == 0
    assert pdu.registered_delivery == 1 and pdu.esm_class == 0
    assert (pdu.source_addr_ton, pdu.dest_addr_ton) == (5, 1)
    assert P.decode(pdu.encode()) == pdu


def test_long_ucs2_message_udh_and_sar():
    text = "【Acme】您的验证码是123456，五分钟内有效。" * 4
    n = T.segment_count(text)
    pdus = build_pdus(message(text), channel(), reference=300, now=0.0)
    assert len(pdus) == n > 1
    assert all(p.data_coding == 8 and p.esm_class & 0x40 for p in pdus)
    assert [p.short_message[5] for p in pdus] == list(range(1, n + 1))
    assert {p.short_message[3] for p in pdus} == {300 & 0xFF}
    sar = build_pdus(message(text), channel(concatenation="sar"), reference=300, now=0.0)
    assert [p.tlv(Tag.SAR_SEGMENT_SEQNUM) for p in sar] == list(range(1, len(sar) + 1))
    assert {p.tlv(Tag.SAR_MSG_REF_NUM) for p in sar} == {300}


def test_payload_mode_uses_message_payload():
    (pdu,) = build_pdus(message("x" * 500), channel(concatenation="payload"), reference=0, now=0.0)
    assert pdu.short_message == b"" and len(pdu.tlv(Tag.MESSAGE_PAYLOAD)) == 500


@pytest.mark.parametrize(
    "states,expected",
    [
        ([SegmentState.DELIVERED] * 3, State.DELIVERED),
        ([SegmentState.DELIVERED, SegmentState.SUBMITTED], None),
        ([SegmentState.SUBMITTED, SegmentState.UNDELIVERABLE], State.UNDELIVERABLE),
        ([SegmentState.EXPIRED, SegmentState.DELIVERED], State.EXPIRED),
        ([SegmentState.DELETED], State.FAILED),
        ([], None),
    ],
)
def test_message_state_from_segments(states, expected):
    assert message_state_from_segments(states) is expected


async def test_lanes_serve_by_priority_then_fifo():
    q: Lanes[str] = Lanes()
    q.put("m1", 2)
    q.put("n1", 1)
    q.put("o1", 0)
    q.put("o2", 0)
    q.put("retry", 2, front=True)
    assert q.lengths() == (2, 1, 2)
    assert [await q.get() for _ in range(5)] == ["o1", "o2", "n1", "retry", "m1"]


async def test_lanes_get_waits_for_put():
    q: Lanes[str] = Lanes()
    got = []

    async def getter():
        got.append(await q.get())

    async with trio.open_nursery() as n:
        n.start_soon(getter)
        await trio.sleep(0.01)
        assert not got
        q.put("x", 1)
    assert got == ["x"]


@given(
    ops=st.lists(
        st.tuples(st.integers(-2, 4), st.lists(st.integers(0, 99), max_size=5), st.booleans()),
        max_size=12,
    )
)
def test_lanes_put_many_is_put_of_each(ops):
    many: Lanes[int] = Lanes()
    each: Lanes[int] = Lanes()
    for priority, items, batched in ops:
        if batched:
            many.put_many(items, priority)
        else:
            for x in items:
                many.put(x, priority)
        for x in items:
            each.put(x, priority)
    assert many.lengths() == each.lengths() and len(many) == len(each)
    assert [many.get_nowait() for _ in range(len(many))] == [
        each.get_nowait() for _ in range(len(each))
    ]


async def test_lanes_put_many_wakes_a_getter_per_item():
    q: Lanes[str] = Lanes()
    got: list[str] = []

    async def getter():
        got.append(await q.get())

    async with trio.open_nursery() as n:
        for _ in range(3):
            n.start_soon(getter)
        await trio.sleep(0.01)
        q.put_many(["a", "b"], 1)
        await trio.sleep(0.01)
        assert sorted(got) == ["a", "b"]  # two items: two of the three getters woke
        q.put_many([], 1)
        q.put("c", 0)
    assert sorted(got) == ["a", "b", "c"] and len(q) == 0


def test_lanes_drain_with_filter():
    q: Lanes[int] = Lanes()
    for i in range(6):
        q.put(i, i % 3)
    taken = q.drain(keep=lambda x: x % 2 == 0)
    assert sorted(taken) == [1, 3, 5]
    assert len(q) == 3 and sorted(q) == [0, 2, 4]


# ---- submit_sm from templates (SubmitTemplates) ---------------------------------------

_TEXTS = st.one_of(
    st.text(alphabet="abcXYZ 0123456789@£$¥èéùìòÇ\n{}[]~|€^", max_size=400),  # GSM 7-bit
    st.text(alphabet="abcé您的验证码是😀ß", max_size=200),  # UCS2 / Latin-1 / surrogates
)


@given(
    text=_TEXTS,
    source=st.sampled_from(["Acme", "4915112345678", "+4915112345678", "12345", "A" * 11]),
    dest=st.from_regex(r"\+?[0-9]{1,20}", fullmatch=True),
    validity=st.integers(min_value=0, max_value=80 * 86400),
    reference=st.integers(min_value=0, max_value=0xFFFF),
    concat=st.sampled_from(["udh8", "udh16", "sar", "payload"]),
    latin1=st.booleans(),
    registered=st.booleans(),
    ton_npi=st.sampled_from([(None, None), (2, 9), (0, None)]),
)
@settings(max_examples=300, deadline=None)
def test_templates_give_the_codecs_bytes(
    text, source, dest, validity, reference, concat, latin1, registered, ton_npi
):
    """The wire bytes of a templated submit_sm are exactly the codec's encoding of the
    PDU build_pdus makes (or both refuse the text the same way)."""
    cfg = channel(
        concatenation=concat, allow_latin1=latin1, registered_delivery=registered,
        source_addr_ton=ton_npi[0], source_addr_npi=ton_npi[1],
    )
    templates = SubmitTemplates(cfg)
    msg = message(text, source_addr=source, destination=dest, expires_at=float(validity))
    try:
        expected = [p.encode() for p in build_pdus(msg, cfg, reference, now=0.0)]
    except (T.TextError, P.PduError) as e:
        with pytest.raises(type(e)):
            templates.pdus(msg, reference, now=0.0)
        return
    for _ in range(2):  # built, then from the cached cut
        got = templates.pdus(msg, reference, now=0.0)
        for seq, pdu in enumerate(got, 1):
            pdu.sequence_number = seq
        assert [p.encode() for p in got] == [
            e[:12] + seq.to_bytes(4, "big") + e[16:] for seq, e in enumerate(expected, 1)
        ]
        assert [P.decode(p.encode()) for p in got] == [
            msgspec.structs.replace(P.decode(e), sequence_number=seq)
            for seq, e in enumerate(expected, 1)
        ]


def test_templates_for_one_text_differ_in_the_destination_only():
    templates = SubmitTemplates(channel())
    a, b = (
        templates.pdus(message("hello", destination=d), reference=0, now=0.0)[0]
        for d in ("4915112345678", "447700900123")
    )
    assert P.decode(a.encode()).destination_addr == "4915112345678"
    assert P.decode(b.encode()).destination_addr == "447700900123"
    assert len(templates._cuts) == 1


@given(
    times=st.lists(
        st.tuples(
            st.sampled_from([0.0, 59.5, 60.0, 3600.25, 86_400.0, 70 * 86_400.0]),  # expires_at
            st.sampled_from([0.0, 0.5, 30.0, 3600.0]),  # now
        ),
        min_size=1,
        max_size=12,
    )
)
@settings(max_examples=100, deadline=None)
def test_templates_validity_follows_each_message(times):
    """One channel's templates over messages of varying expiry and clock readings (the
    validity of the last one is remembered): each PDU carries its own validity_period."""
    templates = SubmitTemplates(channel())
    for expires_at, now in times:
        [pdu] = templates.pdus(message("hello", expires_at=expires_at), reference=0, now=now)
        assert P.decode(pdu.encode()).validity_period == relative_validity(expires_at - now)


def test_templates_first_validity_is_computed_whatever_it_is():
    """The remembered validity starts as nothing: a first message whose seconds left are
    any value (-1.0 included) gets its own."""
    templates = SubmitTemplates(channel())
    [pdu] = templates.pdus(message("hello", expires_at=99.0), reference=0, now=100.0)
    assert P.decode(pdu.encode()).validity_period == relative_validity(-1.0)
