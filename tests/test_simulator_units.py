"""Simulator building blocks without sockets: ids, store, masking, receipts, fast encoders,
timer heap, delivery queue, fault decisions."""

from __future__ import annotations

import io
import json
import random
import statistics

import pytest
import structlog
import trio
import trio.lowlevel
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandId, CommandStatus
from gateway.smpp.errors import PduError
from gateway.smpp.receipt import parse_receipt_text
from gateway import logs
from simulators.smsc.config import Faults, Receipts
from simulators.smsc.delivery import MO, Deliveries, Job
from simulators.smsc.faults import NACK, RESPOND, SILENT, FaultState
from simulators.smsc.ids import MessageIds
from gateway.logs import mask_number
from simulators.smsc.receipts import ReceiptPolicy, excerpt, smpp_absolute_time
from simulators.smsc.stats import Stats
from simulators.smsc.store import STAT_STATE, MessageStore, Record
from simulators.smsc.timers import TimerHeap

S = CommandStatus


# ---- ids and store -------------------------------------------------------------------------


def test_message_ids():
    ids = MessageIds("hex", 6, start=0xFFFE)
    assert [ids.next()[1] for _ in range(3)] == ["00fffe", "00ffff", "010000"]
    assert ids.parse("00FFFF") == 0xFFFF and ids.parse(" 10000\0") == 0x10000
    assert ids.parse("xyz") is None and ids.parse("") is None and ids.parse("-1") is None
    dec = MessageIds("decimal")
    assert dec.next() == (1, "1") and dec.parse("0001") == 1 and dec.parse("ff") is None
    with pytest.raises(ValueError):
        MessageIds("octal")


@pytest.mark.parametrize("fmt", ["hex", "decimal"])
@pytest.mark.parametrize("width", [0, 1, 6, 64])
def test_message_id_pattern_is_the_format_spec(fmt, width):
    """`pattern % n` (the hot path's) writes what format(n, spec) writes."""
    ids = MessageIds(fmt, width)
    for n in (0, 1, 9, 10, 15, 16, 255, 0xFFFF, 10**6, 2**63, 16**70):
        assert ids.pattern % n == format(n, ids.spec) == ids.format(n)


def test_store_is_a_bounded_ring():
    store = MessageStore(10)
    assert store.size == 16
    recs = [Record(n, str(n), "a", None, 0.0, "DELIVRD") for n in range(1, 40)]
    for r in recs:
        store.put(r)
    assert store.get(39) is recs[-1] and store.get(24) is recs[23]
    assert store.get(23) is None  # evicted: its slot holds 39
    assert len(list(store.records())) == 16


# ---- masking and logs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("491701234567", "*********567"),
        ("+491701234567", "+*********567"),
        ("Acme", "Acme"),
        ("123", "***"),
        ("1234", "*234"),
        ("", ""),
    ],
)
def test_mask_number(raw, masked):
    assert mask_number(raw) == masked


def test_log_lines_mask_numbers():
    out = io.StringIO()
    saved = structlog.get_config()
    logs.configure("json", "info", stream=out)
    try:
        logs.get_logger("smsc").info(
            "mo_queued", source="491701234567", destination="12345", account="test"
        )
    finally:
        structlog.configure(**saved)
    event = json.loads(out.getvalue())
    assert event["source"] == "*********567" and event["destination"] == "**345"
    assert "491701234567" not in out.getvalue()


# ---- receipts ------------------------------------------------------------------------------------


def test_wanted_follows_registered_delivery():
    p = ReceiptPolicy(Receipts(), random.Random(0))
    assert [p.wanted(rd, "DELIVRD") for rd in (0, 1, 2, 3)] == [False, True, False, True]
    assert [p.wanted(rd, "UNDELIV") for rd in (0, 1, 2, 3)] == [False, True, True, True]
    assert ReceiptPolicy(Receipts(when="always"), random.Random(0)).wanted(0, "DELIVRD")
    assert not ReceiptPolicy(Receipts(when="never"), random.Random(0)).wanted(1, "UNDELIV")


@pytest.mark.parametrize("when", ["requested", "always", "never"])
def test_wants_table_is_wanted(when):
    p = ReceiptPolicy(Receipts(when=when), random.Random(0))
    for stat in STAT_STATE:
        for rd in range(256):
            assert p.wants[stat][rd & 3] is p.wanted(rd, stat)


def test_outcome_weights_and_prefixes():
    p = ReceiptPolicy(
        Receipts(outcomes={"DELIVRD": 3, "UNDELIV": 1}, prefix_outcomes={"4900": "EXPIRED"}),
        random.Random(1),
    )
    draws = [p.outcome("491700000000") for _ in range(4000)]
    assert 0.70 < draws.count("DELIVRD") / 4000 < 0.80
    assert p.outcome("+4900111") == "EXPIRED"
    assert p.fixed_outcome is None
    assert ReceiptPolicy(Receipts(), random.Random(0)).fixed_outcome == "DELIVRD"


def test_delay_distributions():
    from simulators.smsc.config import ExponentialDelay, FixedDelay, UniformDelay

    assert ReceiptPolicy(Receipts(delay=FixedDelay(seconds=0)), random.Random(0)).immediate
    fixed = ReceiptPolicy(Receipts(delay=FixedDelay(seconds=2.5)), random.Random(0))
    assert not fixed.immediate and fixed.delay() == 2.5
    uni = ReceiptPolicy(Receipts(delay=UniformDelay(min=1, max=3)), random.Random(0))
    values = [uni.delay() for _ in range(2000)]
    assert min(values) >= 1 and max(values) <= 3 and 1.9 < statistics.mean(values) < 2.1
    exp = ReceiptPolicy(Receipts(delay=ExponentialDelay(mean=4)), random.Random(0))
    assert 3.6 < statistics.mean(exp.delay() for _ in range(4000)) < 4.4


def test_receipt_text_and_excerpts():
    p = ReceiptPolicy(Receipts(date_with_seconds=True, text_excerpt_length=5), random.Random(0))
    sub = P.SubmitSm(source_addr="Acme", destination_addr="4917", short_message=b"Hello world")
    rec = Record(5, "0005", "a", sub, 1_700_000_000.0, "UNDELIV", state=5, done=1_700_000_061.0)
    fields = parse_receipt_text(p.build(rec).short_message)
    assert (fields.id, fields.dlvrd, fields.stat, fields.err, fields.text) == (
        "0005",
        "000",
        "UNDELIV",
        "001",
        "Hello",
    )
    assert (fields.submit_date, fields.done_date) == ("231114221320", "231114221421")
    # UCS2: characters GSM cannot show become '?'; UDH is skipped
    ucs2 = "Привет мир".encode("utf-16-be")
    assert excerpt(b"\x05\x00\x03\x01\x02\x01" + ucs2, 8, True, 4) == b"????"
    assert excerpt("Grüße".encode("utf-16-be"), 8, False, 20) == bytes(
        [0x47, 0x72, 0x7E, 0x1E, 0x65]
    )
    assert smpp_absolute_time(1_700_000_000.25) == "231114221320200+"


# ---- fast encoders ---------------------------------------------------------------------------

addr = st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=255), max_size=20)
u8 = st.integers(0, 255)


long_addr = st.one_of(
    addr,
    st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=255), min_size=20, max_size=22),
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["DELIVRD", "UNDELIV", "EXPIRED", "REJECTD"]),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.integers(0, 20),
    st.tuples(u8, u8, long_addr, u8, u8, long_addr),
    st.binary(min_size=1, max_size=160),
    st.sampled_from([0, 3, 8, 0xF0, 0xE5]),
    st.sampled_from([0, 0x40]),
    st.one_of(
        st.text(alphabet="0123456789abcdef", min_size=1, max_size=64),
        st.text(alphabet="0123456789abcdef", min_size=150, max_size=200),
    ),
    st.floats(1_600_000_000, 1_900_000_000),
    st.floats(0, 200),
)
def test_encoded_receipt_is_what_build_encodes(
    stat, text, tlvs, seconds, excerpt_len, addrs, sm, dc, esm, mid, submitted, after
):
    """The template path (ReceiptPolicy.encoded) writes the same bytes as build() + the
    codec, or is build() itself; an address the codec refuses is refused the same way."""
    policy = ReceiptPolicy(
        Receipts(
            text=text, tlvs=tlvs, date_with_seconds=seconds, text_excerpt_length=excerpt_len
        ),
        random.Random(0),
    )
    dton, dnpi, daddr, ston, snpi, saddr = addrs
    sub = P.SubmitSm(
        source_addr_ton=ston,
        source_addr_npi=snpi,
        source_addr=saddr,
        dest_addr_ton=dton,
        dest_addr_npi=dnpi,
        destination_addr=daddr,
        esm_class=esm,
        data_coding=dc,
        short_message=sm,
    )
    done = submitted + after
    rec = Record(7, mid, "a", sub, submitted, stat, True, state=2, done=done)
    for _ in range(2):  # the second time from the caches
        try:
            expected = policy.build(rec).encode()
        except PduError as e:
            with pytest.raises(PduError) as ei:
                policy.encoded(rec).encode()
            assert ei.value.command_status == e.command_status
            continue
        got = policy.encoded(rec)
        assert got.encode() == expected
        got.sequence_number = 9
        assert P.decode(got.encode()).sequence_number == 9


def test_encoded_receipt_falls_back_to_build():
    sub = P.SubmitSm(destination_addr="4917", short_message=b"Hello")
    rec = Record(5, "0005", "a", sub, 1_700_000_000.0, "DELIVRD", state=2, done=1_700_000_000.0)
    fast = ReceiptPolicy(Receipts(), random.Random(0))
    assert isinstance(fast.encoded(rec), P.Encoded)
    assert P.decode(fast.encoded(rec).encode()) == fast.build(rec)
    slow = ReceiptPolicy(Receipts(network_error_code=True), random.Random(0))
    assert slow.encoded(rec) == slow.build(rec)
    rec.short_message = b"replaced"
    assert fast.encoded(rec) == fast.build(rec)
    # Refused as build() + the codec refuse them: text over 255 octets, long addresses.
    long_id = Record(5, "a" * 200, "a", sub, 1_700_000_000.0, "DELIVRD", state=2, done=1.0)
    with pytest.raises(PduError) as ei:
        fast.encoded(long_id).encode()
    assert ei.value.command_status == S.ESME_RINVMSGLEN
    for field in ("source_addr", "destination_addr"):
        bad = P.SubmitSm(short_message=b"Hello", **{field: "4" * 21})
        rec = Record(6, "06", "a", bad, 1_700_000_000.0, "DELIVRD", state=2, done=1.0)
        with pytest.raises(PduError) as ei:
            fast.encoded(rec).encode()
        assert ei.value.command_status == S.ESME_RINVSRCADR


@pytest.mark.parametrize(
    "fields",
    [
        {"destination_addr": "49\x0017"},
        {"source_addr": "Acme\x00"},
        {"destination_addr": "49\u20ac17"},
        {"source_addr_ton": 256},
        {"dest_addr_npi": -1},
        {"source_addr": b"Acme"},
    ],
)
def test_encoded_receipt_refuses_addresses_as_the_codec_does(fields):
    """Addresses the inline head formatting does not take (NUL, beyond Latin-1, a ton/npi
    that is not an octet, not a str) are refused with the codec's error, as build() + the
    codec refuse them."""
    sub = P.SubmitSm(short_message=b"Hello", **{"destination_addr": "4917", **fields})
    rec = Record(6, "06", "a", sub, 1_700_000_000.0, "DELIVRD", state=2, done=1.0)
    policy = ReceiptPolicy(Receipts(), random.Random(0))
    with pytest.raises(PduError) as expected:
        policy.build(rec).encode()
    with pytest.raises(PduError) as got:
        policy.encoded(rec)
    assert (got.value.command_status, str(got.value)) == (
        expected.value.command_status,
        str(expected.value),
    )


# ---- timer heap ------------------------------------------------------------------------------


async def test_timer_heap_fires_in_order_with_mock_clock(autojump_clock):
    heap = TimerHeap(max_entries=4)
    fired = []

    def note(arg, now):
        fired.append((arg, round(now, 3)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(heap.run)
        await trio.lowlevel.checkpoint()
        t0 = trio.current_time()
        heap.schedule(t0 + 10, note, "c")
        heap.schedule(t0 + 5, note, "b")
        await trio.sleep(1)
        heap.schedule(t0 + 2, note, "a")  # earlier than the sleeping deadline: wakes the runner
        heap.schedule(t0 + 20, note, "d")
        assert not heap.schedule(t0 + 30, note, "e") and heap.dropped == 1  # full
        await trio.sleep(30)
        nursery.cancel_scope.cancel()
    assert fired == [
        ("a", round(t0 + 2, 3)),
        ("b", round(t0 + 5, 3)),
        ("c", round(t0 + 10, 3)),
        ("d", round(t0 + 20, 3)),
    ]


# ---- delivery queue --------------------------------------------------------------------------


class FakeReceiver:
    def __init__(self, window: int = 10) -> None:
        self.window = window
        self.sent: list[Job] = []

    def offer(self, job: Job, now: float) -> bool:
        if len(self.sent) >= self.window:
            return False
        self.sent.append(job)
        return True


class _NullLog:
    def warning(self, *a, **k):
        pass


def deliveries(max_held: int = 3, retries: int = 1) -> tuple[Deliveries, Stats, TimerHeap]:
    stats, timers = Stats(), TimerHeap()
    return (
        Deliveries(
            "a",
            stats=stats,
            timers=timers,
            max_held=max_held,
            retries=retries,
            retry_delay=1.0,
            log=_NullLog(),
        ),
        stats,
        timers,
    )


def test_deliveries_hold_round_robin_and_bound():
    d, stats, _ = deliveries(max_held=3)
    for i in range(5):
        d.deliver(Job(i), 0.0)
    assert [j.pdu for j in d.held] == [0, 1, 2] and stats.receipts_dropped == 2
    a, b = FakeReceiver(window=1), FakeReceiver(window=50)
    d.add_receiver(a, 0.0)
    assert [j.pdu for j in a.sent] == [0] and [j.pdu for j in d.held] == [1, 2]
    d.add_receiver(b, 0.0)
    assert [j.pdu for j in b.sent] == [1, 2]
    for i in range(3, 6):
        d.deliver(Job(i), 1.0)
    assert [j.pdu for j in b.sent] == [1, 2, 3, 4, 5]  # a is full, b takes the rest
    c = FakeReceiver()
    d.add_receiver(c, 2.0)
    for t in (3.0, 3.0, 4.0, 5.0, 5.0):  # round-robin per burst (same `now`)
        d.deliver(Job(t), t)
    assert ([j.pdu for j in b.sent[5:]], [j.pdu for j in c.sent]) in (
        ([3.0, 3.0, 5.0, 5.0], [4.0]),
        ([4.0], [3.0, 3.0, 5.0, 5.0]),
    )
    d.remove_receiver(b)
    d.remove_receiver(c)
    d.requeue([Job("back")], 0.0)
    assert d.held[0].pdu == "back"


def test_deliveries_held_jobs_go_to_the_bind_that_answered_in_order():
    """While every window is full, new jobs queue behind the held ones, and a bind that
    answers one (refill) takes the oldest held jobs, as many as it has room for."""
    d, _, _ = deliveries(max_held=10)
    a, b = FakeReceiver(window=1), FakeReceiver(window=1)
    d.add_receiver(a, 0.0)
    d.add_receiver(b, 0.0)
    for i in range(5):
        d.deliver(Job(i), 1.0)
    assert sorted(j.pdu for j in a.sent + b.sent) == [0, 1]
    assert [j.pdu for j in d.held] == [2, 3, 4]
    b.window = 3  # b answered two
    d.refill(b, 2.0)
    assert [j.pdu for j in b.sent][-2:] == [2, 3] and [j.pdu for j in d.held] == [4]
    d.deliver(Job(5), 3.0)
    assert [j.pdu for j in d.held] == [4, 5]
    a.window = 2
    d.refill(a, 4.0)
    assert a.sent[-1].pdu == 4 and [j.pdu for j in d.held] == [5]
    d.refill(a, 4.0)  # no room: nothing moves
    assert [j.pdu for j in d.held] == [5]


def test_deliveries_retry_policy():
    d, stats, timers = deliveries(retries=1)
    nack = P.GenericNack(command_status=S.ESME_RTHROTTLED)
    job = Job("r")
    d.on_response(job, nack, 0.0)
    assert len(timers) == 1 and stats.receipts_retried == 1 and job.tries == 1
    d.on_response(job, P.DeliverSmResp(command_status=S.ESME_RTHROTTLED), 0.0)
    assert stats.receipts_failed == 1 and len(timers) == 1  # retries exhausted
    d.on_response(Job("x"), P.DeliverSmResp(command_status=S.ESME_RINVDSTADR), 0.0)
    assert stats.receipts_failed == 2  # final status: no retry
    d.on_response(Job("u"), P.DeliverSmResp(command_status=S.ESME_RINVBNDSTS), 0.0)
    assert stats.receipts_retried == 2  # that bind was unbinding: another one may take it
    d.on_response(Job("m", MO), P.DeliverSmResp(), 0.0)
    assert stats.mo_acked == 1
    d.on_timeout(Job("t"), 0.0)
    assert stats.deliver_sm_timeouts == 1 and len(timers) == 3


# ---- fault decisions ---------------------------------------------------------------------------


def test_fault_order_and_determinism():
    stats = Stats()
    f = FaultState(Faults(never_answer=1.0, queue_full=1.0), stats)
    assert f.refuse(0.0) == (SILENT, 0)
    f.set(Faults(generic_nack=1.0, queue_full=1.0, generic_nack_status="ESME_RSYSERR"))
    assert f.refuse(0.0) == (NACK, S.ESME_RSYSERR)
    f.set(Faults(queue_full=1.0))
    assert f.refuse(0.0) == (RESPOND, S.ESME_RMSGQFUL)
    a = FaultState(Faults(queue_full=0.3, seed=9), Stats())
    b = FaultState(Faults(queue_full=0.3, seed=9), Stats())
    assert [a.refuse(0.0) for _ in range(50)] == [b.refuse(0.0) for _ in range(50)]
    f.set(Faults(malformed_pdu=3, unbind_on_submit=2, drop_after=4))
    assert [f.malformed_due(n) for n in range(1, 7)] == [False, False, True, False, False, True]
    assert [f.unbind_due(n) for n in (1, 2, 3)] == [False, True, False]
    assert [f.drop_due(n) for n in (3, 4, 5)] == [False, True, False]


def test_malformed_pdus_are_refused_by_the_codec():
    f = FaultState(Faults(malformed_pdu=1), Stats())
    with pytest.raises(PduError) as exc:
        P.decode(f.malformed_pdu())
    assert exc.value.command_id == CommandId.DELIVER_SM and "NUL" in str(exc.value)
    f.set(Faults(malformed_pdu=1, malformed_kind="bad_length"))
    raw = f.malformed_pdu()
    assert P.peek_header(raw)[0] == 8
