"""submit_sm read through learned shapes (simulators/smsc/shapes.py) and the connection's
framing: the same PDUs, answers and receipts as the strict decoder and the session give."""

from __future__ import annotations

import random
import struct
import time

import pytest
import trio
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandId, Tag
from gateway.smpp.errors import PduError
from simulators.smsc import handlers, shapes
from simulators.smsc.config import Receipts
from simulators.smsc.connection import Connection
from simulators.smsc.receipts import ReceiptPolicy
from simulators.smsc.server import SmscServer
from simulators.smsc.shapes import SubmitShape, learn
from simulators.smsc.store import STAT_STATE, Record
from tests.sim_helpers import account, make_config

SUBMIT_SM = int(CommandId.SUBMIT_SM)
HEADER = struct.Struct(">IIII")
POLICY = ReceiptPolicy(Receipts(), random.Random(0))

u8 = st.integers(0, 255)
latin1 = st.characters(min_codepoint=1, max_codepoint=255)


def cstr(max_size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=latin1, max_size=max_size)


times = st.sampled_from(["", "000000005959000R", "261126120000000+"])
submits = st.builds(
    P.SubmitSm,
    sequence_number=st.integers(1, 0x7FFFFFFF),
    service_type=cstr(5),
    source_addr_ton=u8,
    source_addr_npi=u8,
    source_addr=cstr(20),
    dest_addr_ton=u8,
    dest_addr_npi=u8,
    destination_addr=cstr(20),
    esm_class=u8,
    protocol_id=u8,
    priority_flag=u8,
    schedule_delivery_time=times,
    validity_period=times,
    registered_delivery=u8,
    replace_if_present_flag=u8,
    data_coding=u8,
    sm_default_msg_id=u8,
    short_message=st.binary(max_size=255),
)


def strict(frame: bytes, p: int = 0, end: int | None = None):
    """The strict decoder on the frame at b[p:end]: the PDU or the PduError."""
    end = len(frame) if end is None else end
    length, cid, status, seq = HEADER.unpack_from(frame, p)
    try:
        return P.decode_frame(frame[p:end], length, cid, status, seq)
    except PduError as e:
        return e


def shape_of(pdu) -> SubmitShape:
    frame = pdu.encode()
    got, shape = learn(frame, 16, len(frame), pdu.sequence_number)
    assert got == pdu and shape is not None
    shape.prepare(POLICY)
    return shape


def mutate(data: bytes, draw) -> bytes:
    b = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["set", "insert", "delete", "cut", "grow"]))
        i = draw(st.integers(0, max(0, len(b) - 1)))
        if kind == "set" and b:
            b[i] = draw(st.sampled_from([0, 1, 0x30, 0xFF, draw(u8)]))
        elif kind == "insert":
            b[i:i] = draw(st.binary(min_size=1, max_size=3))
        elif kind == "delete" and b:
            del b[i : i + draw(st.integers(1, 3))]
        elif kind == "cut":
            del b[i:]
        else:
            b += draw(st.binary(min_size=1, max_size=25))
    return bytes(b)


def frame_of(body: bytes, seq: int = 5) -> bytes:
    return HEADER.pack(16 + len(body), SUBMIT_SM, 0, seq) + body


@settings(max_examples=400, deadline=None)
@given(submits)
def test_learn_is_the_strict_decoder_on_valid_pdus(pdu):
    frame = pdu.encode()
    got, shape = learn(frame + b"\x00\x01trailing", 16, len(frame), pdu.sequence_number)
    assert got == strict(frame) == pdu
    assert shape is not None and shape.pdu == pdu
    assert shape.head + pdu.destination_addr.encode("latin-1") + b"\0" + shape.tail == frame[16:]


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_learn_refuses_what_the_strict_decoder_refuses(data):
    pdu = data.draw(submits)
    body = data.draw(st.one_of(st.binary(max_size=120), st.just(pdu.encode()[16:]).map(lambda b: mutate(b, data.draw))))
    frame = frame_of(body)
    expected = strict(frame)
    got, shape = learn(frame + b"\0" * 30, 16, len(frame), 5)
    if isinstance(expected, PduError):
        assert got is None and shape is None
    else:
        assert got == expected
        assert (shape is None) == bool(expected.tlvs)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_shape_reads_only_what_the_strict_decoder_reads_the_same(data):
    """Whatever body a shape takes, the strict decoder decodes to the same PDU; the body of
    its own PDU with another destination (of at most 20 octets, no NUL) it takes."""
    pdu = data.draw(submits)
    shape = shape_of(pdu)
    dest = data.draw(st.binary(max_size=24))
    candidates = [shape.head + dest + b"\0" + shape.tail]
    candidates.append(mutate(candidates[0], data.draw))
    candidates.append(mutate(pdu.encode()[16:], data.draw))
    candidates.append(data.draw(st.binary(max_size=100)))
    for body in candidates:
        frame = frame_of(body, 77)
        after = data.draw(st.binary(max_size=30))  # the next frame in the read
        for buf, p in ((frame, 0), (b"\0" * 3 + frame + after, 3)):
            got = shape.decode(buf, p + 16, p + len(frame), 77)
            expected = strict(frame)
            if got is not None:
                raw, read = got
                assert read == expected
                assert raw == read.destination_addr.encode("latin-1")
                assert read.sequence_number == 77 and read.tlvs == []
                # the one shared list (no list per message for the GC to walk), never the
                # template PDU's own
                assert read.tlvs is shapes._NO_TLVS and read.tlvs is not pdu.tlvs
            elif body == candidates[0] and len(dest) <= 20 and 0 not in dest:
                pytest.fail("a body of the shape with a valid destination was not read")


@settings(max_examples=300, deadline=None)
@given(
    submits,
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.integers(0, 260),
    st.sampled_from(["DELIVRD", "UNDELIV", "EXPIRED", "REJECTD", "DELETED"]),
    st.one_of(st.text(alphabet="0123456789abcdef", min_size=1, max_size=64)),
    st.floats(1_600_000_000, 1_900_000_000),
    st.booleans(),
)
def test_shaped_receipt_is_what_encoded_gives(pdu, text, tlvs, seconds, excerpt_len, stat, mid, t, network_error):
    policy = ReceiptPolicy(
        Receipts(
            text=text, tlvs=tlvs, date_with_seconds=seconds, text_excerpt_length=excerpt_len,
            network_error_code=network_error,
        ),
        random.Random(0),
    )
    shape_format = policy.shape_format(pdu)
    if shape_format is None:
        assert network_error
        return
    fmt, fixed = shape_format
    rec = Record(7, mid, "a", pdu, t, stat, True, 1, STAT_STATE[stat], t)
    bmid = mid.encode()
    saddr = pdu.destination_addr.encode("latin-1")
    for _ in range(2):  # the second time from the caches
        body = policy.shaped_body(fmt, fixed, saddr, stat, t, bmid)
        if body is None:  # the text would pass 255 octets: encoded() decides
            with pytest.raises(PduError):
                policy.encoded(rec, bmid).encode()
            continue
        expected = policy.encoded(rec, bmid)  # the template, or build() for UDH / UCS2
        assert body == expected.encode()[16:]


# ---- the connection: framed reads against the session's ------------------------------------


class Unframed(Connection):
    """Every read to the session, as before the framing."""

    def _receive_framed(self, data: bytes, now: float) -> None:
        self.session.receive_data(data)
        self._handle(self.session.next_events(), now)


def _submit(dest: str, seq: int, text: bytes = b"Your code is 123456", **kw) -> bytes:
    fields = dict(
        source_addr_ton=5, source_addr=kw.pop("source", "Gateway"), dest_addr_ton=1,
        dest_addr_npi=1, destination_addr=dest, validity_period="000000005959000R",
        registered_delivery=1, short_message=text,
    )
    fields.update(kw)
    return P.SubmitSm(sequence_number=seq, **fields).encode()


def _frames(draw, n: int) -> list[bytes]:
    """A mix of what an ESME sends (and some of what it should not)."""
    out = []
    for seq in range(2, n + 2):
        kind = draw(st.sampled_from(
            ["shaped"] * 6 + ["udh", "ucs2", "other_text", "tlvs", "conflict", "bad_dest", "plus", "bad_body",
             "status", "enquire", "query", "ack", "acks", "nack", "deliver", "unbind", "data_sm"]
        ))
        if kind == "shaped":
            out.append(_submit(f"49151{draw(st.integers(0, 10**6)):08d}", seq))
        elif kind == "other_text":
            out.append(_submit("4915100000001", seq, b"another %% text", source="4917000"))
        elif kind == "udh":  # a segment of a concatenated text, same shape for every recipient
            udh = b"\x05\x00\x03\x2a\x02" + bytes((draw(st.integers(1, 2)),))
            out.append(_submit(f"4915100{draw(st.integers(0, 99)):02d}", seq, udh + b"Part of a long text", esm_class=0x40))
        elif kind == "ucs2":
            out.append(_submit("4915100000009", seq, "Grüße €".encode("utf-16-be"), data_coding=8))
        elif kind == "tlvs":
            out.append(_submit("4915100000002", seq, tlvs=[P.Tlv(int(Tag.SAR_MSG_REF_NUM), 7)]))
        elif kind == "conflict":
            out.append(_submit("4915100000003", seq, tlvs=[P.Tlv(int(Tag.MESSAGE_PAYLOAD), b"x")]))
        elif kind == "bad_dest":
            out.append(_submit(draw(st.sampled_from(["", "49a", "4" * 20, "+", "49 1"])), seq))
        elif kind == "plus":
            out.append(_submit("+4915100000004", seq))
        elif kind == "bad_body":
            good = _submit("4915100000005", seq)[16:]
            out.append(frame_of(mutate(good, draw), seq))
        elif kind == "status":
            f = bytearray(_submit("4915100000006", seq))
            f[11] = 1
            out.append(bytes(f))
        elif kind == "enquire":
            out.append(P.EnquireLink(sequence_number=seq).encode())
        elif kind == "query":
            out.append(P.QuerySm(sequence_number=seq, message_id=draw(st.sampled_from(["1", "2", "zz"]))).encode())
        elif kind == "ack":  # answers our receipts (their sequence numbers start at 1)
            out.append(P.DeliverSmResp(sequence_number=draw(st.integers(1, 6)), message_id="").encode())
        elif kind == "acks":  # a run of them, one maybe not the usual 17 octets
            for k in range(draw(st.integers(1, 5))):
                body = draw(st.sampled_from([b"\0", b"\0", b"x", b"12\0"]))
                out.append(HEADER.pack(16 + len(body), 0x80000005, draw(st.sampled_from([0, 0x58])), k + 1) + body)
        elif kind == "nack":
            out.append(P.GenericNack(sequence_number=draw(st.integers(1, 6)), command_status=0x58).encode())
        elif kind == "deliver":  # not legal from an ESME
            out.append(P.DeliverSm(sequence_number=seq, short_message=b"x").encode())
        elif kind == "unbind":
            out.append(P.Unbind(sequence_number=seq).encode())
        else:
            out.append(P.DataSm(sequence_number=seq, destination_addr="4915100000007",
                                tlvs=[P.Tlv(int(Tag.MESSAGE_PAYLOAD), b"hi")]).encode())
    if draw(st.booleans()):
        out.append(HEADER.pack(8, SUBMIT_SM, 0, 99))  # a broken frame: fatal
    return out


def _run(cls, reads: list[bytes], accounts) -> tuple[list[bytes], dict, list]:
    async def main():
        server = SmscServer(make_config(accounts))
        conn = cls(server, None)
        out = []
        now = trio.current_time()
        for k, data in enumerate(reads):
            conn.received(data, now + k)
            out.append(conn.session.data_to_send() + b"".join(conn._raw))
            conn._raw.clear()
        records = [(r.n, r.id, r.pdu, r.stat, r.state) for r in server.store.records()]
        snap = server.stats.snapshot()
        return out, snap, records

    return trio.run(main)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_framed_reads_answer_as_the_session_does(data):
    bind_type = data.draw(st.sampled_from(["bind_transceiver", "bind_transmitter", "bind_receiver"]))
    bind = P.PDU_CLASSES[int(CommandId[bind_type.upper()])](
        sequence_number=1, system_id="test", password="secret", interface_version=0x34
    ).encode()
    frames = _frames(data.draw, data.draw(st.integers(1, 40)))
    stream = bind + b"".join(frames)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=8))))
    reads = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    accounts = data.draw(st.sampled_from([
        None,
        [account(receipts={"tlvs": False, "text_excerpt_length": 5})],
        [account(receipts={"delay": {"kind": "fixed", "seconds": 30}})],
        [account(receipts={"outcomes": {"DELIVRD": 1, "UNDELIV": 1}})],
        [account(faults={"queue_full": 0.5, "seed": 3})],
    ]))
    with pytest.MonkeyPatch.context() as mp:  # one wall clock: the receipts' dates agree
        mp.setattr(time, "time", lambda: 1_790_000_000.25)
        mp.setattr(handlers, "_time", lambda: 1_790_000_000.25)
        assert _run(Connection, reads, accounts) == _run(Unframed, reads, accounts)


def test_framed_reads_use_the_shape(monkeypatch):
    """A batch of one template's submit_sm is read through one shape: the strict decoder
    runs for the first only."""
    calls = []
    import simulators.smsc.shapes as shapes

    real = shapes._DECODE_SUBMIT_SM
    monkeypatch.setattr(shapes, "_DECODE_SUBMIT_SM", lambda *a: calls.append(1) or real(*a))
    bind = P.BindTransceiver(sequence_number=1, system_id="test", password="secret").encode()
    batch = b"".join(_submit(f"4915100000{i:03d}", i + 2) for i in range(50))
    out, snap, records = _run(Connection, [bind, batch[:1000], batch[1000:]], None)
    assert len(calls) == 1
    assert snap["messages_accepted"] == 50 and snap["receipts_sent"] == 50
    assert [r[2].destination_addr for r in records] == [f"4915100000{i:03d}" for i in range(50)]


def test_shapes_stand_aside_while_texts_differ(monkeypatch):
    """An ESME sending a different text each time: after two shapes that read nothing, the
    reads go to the session whole for a while (no strict decode of ours per message);
    when its texts repeat again, shapes serve them again. Answers as the session's."""
    import simulators.smsc.connection as connection

    counts = {"learn": 0, "shaped": 0}
    real_learn, real_shaped = connection.learn, connection.on_shaped_submit_sm

    def learn(*a):
        counts["learn"] += 1
        return real_learn(*a)

    def shaped(*a):
        counts["shaped"] += 1
        return real_shaped(*a)

    monkeypatch.setattr(connection, "learn", learn)
    monkeypatch.setattr(connection, "on_shaped_submit_sm", shaped)
    monkeypatch.setattr(time, "time", lambda: 1_790_000_000.25)
    monkeypatch.setattr(handlers, "_time", lambda: 1_790_000_000.25)
    bind = P.BindTransceiver(sequence_number=1, system_id="test", password="secret").encode()
    seq = iter(range(2, 10_000))
    unique = [
        b"".join(_submit("4915100000001", next(seq), b"Your code is %06d" % (r * 20 + i)) for i in range(20))
        for r in range(5)
    ]
    batch = [b"".join(_submit(f"49151000{r:03d}{i}", next(seq)) for i in range(5)) for r in range(40)]
    reads = [bind, *unique, *batch]
    framed = _run(Connection, reads, None)
    assert counts["learn"] <= 5  # of 100 unique texts
    assert counts["shaped"] >= 5 * (40 - 32 - 1)  # the batch after the pause
    assert framed == _run(Unframed, reads, None)
