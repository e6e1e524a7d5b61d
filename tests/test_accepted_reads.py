"""Accepting submit_sm_resps handled per read (Session.on_accepted, EsmeClient.on_accepted,
Channel._on_accepted): the same outcomes as the general path, with no Pdu per response and
one call per read."""

from __future__ import annotations

import struct

import msgspec
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.channels import Channel, Job, _Sent
from gateway.config import ChannelConfig
from gateway.smpp import pdu as P
from gateway.smpp import session as S
from gateway.smpp.constants import CommandId, CommandStatus, Tag
from gateway.smpp.esme import EsmeClient, Outcome, SubmitResult
from gateway.states import State
from gateway.store.base import Store
from gateway.store.records import MessageRecord, SegmentRecord
from tests.scripted_smsc import ScriptedSmsc
from tests.test_esme import settings as esme_settings
from tests.test_esme import submit
from tests.test_session import bound_pair, sm

RESP = int(CommandId.SUBMIT_SM_RESP)


def frame(seq: int, body: bytes, status: int = 0, cid: int = RESP) -> bytes:
    return struct.pack(">IIII", 16 + len(body), cid, status, seq) + body


def esme_with_submits(n: int, accepting: bool):
    """A bound ESME session with `n` submit_sm outstanding (seqs 2..n+1; 1 was the bind),
    recording what its handlers get."""
    got: dict[str, list] = {"responses": [], "accepted": []}
    esme, _ = bound_pair(window=n + 1)
    esme.on_response = lambda resp, req: got["responses"].append(resp)
    if accepting:
        esme.on_accepted = got["accepted"].extend
    for _ in range(n):
        esme.send(sm())
    esme.data_to_send()
    return esme, got


def test_accepting_resps_of_a_read_come_as_one_list_in_wire_order():
    esme, got = esme_with_submits(4, accepting=True)
    calls = []
    esme.on_accepted = calls.append
    data = (
        frame(3, b"id-3\0")
        + frame(2, b"", CommandStatus.ESME_RTHROTTLED)  # a refusal: the general path
        + frame(5, b"5\0")
        + frame(4, b"4\0" + struct.pack(">HHB", Tag.DPF_RESULT, 1, 1))  # a TLV: general path
    )
    esme.receive_data(data[:30])  # a frame split over two reads
    esme.receive_data(data[30:])
    assert calls == [[(3, "id-3")], [(5, "5")]]
    assert [(r.sequence_number, r.command_status) for r in got["responses"]] == [
        (2, CommandStatus.ESME_RTHROTTLED),
        (4, 0),
    ]
    assert got["responses"][1].message_id == "4"
    assert esme.outstanding == 0 and esme.window_free == esme.window
    assert esme.next_events() == []


def test_without_on_accepted_every_resp_goes_to_on_response():
    esme, got = esme_with_submits(2, accepting=False)
    esme.receive_data(frame(2, b"a\0") + frame(3, b"b\0"))
    assert [r.message_id for r in got["responses"]] == ["a", "b"]


def test_a_resp_for_nothing_outstanding_or_another_request_is_not_accepted():
    esme, got = esme_with_submits(1, accepting=True)
    esme.send(P.EnquireLink())  # seq 3: its "submit_sm_resp" answers nothing
    esme.receive_data(frame(9, b"x\0") + frame(3, b"y\0"))
    assert got["accepted"] == [] and got["responses"] == []
    events = esme.next_events()
    assert [type(e) for e in events] == [S.UnexpectedResponse, S.UnexpectedResponse]
    assert esme.outstanding == 2


# Response bodies around the edges of the strict decoder: ids of 63-66 octets, a NUL
# inside, no NUL, Latin-1 octets, TLVs (good and bad), nothing at all.
_bodies = st.one_of(
    st.binary(max_size=80),
    st.builds(lambda n: b"7" * n + b"\0", st.integers(0, 70)),
    st.builds(lambda s: s + b"\0", st.binary(max_size=70).filter(lambda b: 0 not in b)),
    st.builds(lambda s, t: s + b"\0" + t, st.binary(max_size=10).filter(lambda b: 0 not in b), st.binary(max_size=12)),
)


@settings(max_examples=400, deadline=None)
@given(body=_bodies, status=st.sampled_from([0, 0, 0, CommandStatus.ESME_RSYSERR, CommandStatus.ESME_RTHROTTLED]))
def test_on_accepted_reads_exactly_what_the_strict_path_reads(body, status):
    """Every submit_sm_resp body: with on_accepted the outcome (message_id, status, events,
    window) is the one the general path gives, and only a resp the strict codec decodes
    as ESME_ROK with that message_id is taken as accepted."""
    plain, got_plain = esme_with_submits(1, accepting=False)
    fast, got_fast = esme_with_submits(1, accepting=True)
    data = frame(2, body, status)
    plain.receive_data(data)
    fast.receive_data(data)
    for (seq, message_id) in got_fast["accepted"]:
        (resp,) = got_plain["responses"]
        assert seq == 2 and resp.command_status == 0
        assert resp.message_id == message_id and resp.tlvs == []
        assert P.decode(data).message_id == message_id  # the strict codec, on its own
        assert not got_fast["responses"]
    if not got_fast["accepted"]:
        assert [(r.command_status, r.message_id, r.tlvs) for r in got_fast["responses"]] == [
            (r.command_status, r.message_id, r.tlvs) for r in got_plain["responses"]
        ]
    assert [repr(e) for e in fast.next_events()] == [repr(e) for e in plain.next_events()]
    assert fast.outstanding == plain.outstanding == 0
    assert fast.window_free == plain.window_free


def test_accepted_still_reach_the_handler_when_a_later_frame_is_fatal():
    esme, got = esme_with_submits(1, accepting=True)
    esme.receive_data(frame(2, b"ok\0") + struct.pack(">IIII", 8, RESP, 0, 9))
    assert got["accepted"] == [(2, "ok")]
    (ev,) = esme.next_events()
    assert isinstance(ev, S.InvalidPdu) and ev.fatal


async def test_the_esme_hands_a_reads_acceptances_to_its_sink(nursery):
    smsc = ScriptedSmsc()
    smsc.on_submit = lambda conn, pdu: None  # answered below, in one write
    port = await nursery.start(smsc.serve)
    client = EsmeClient(esme_settings(port))
    calls: list[list] = []
    refused: list[SubmitResult] = []
    client.on_accepted = calls.append
    nursery.start_soon(client.run)
    with trio.fail_after(5):
        await client.wait_bound()
        tags = ["a", "b", "c"]
        for t in tags:
            assert client.submit_nowait(submit(), refused.append if t == "b" else t)
        while len([p for p in smsc.received if isinstance(p, P.SubmitSm)]) < 3:
            await trio.sleep(0.01)
        seqs = [p.sequence_number for p in smsc.received if isinstance(p, P.SubmitSm)]
        await smsc.connections[0].stream.send_all(
            frame(seqs[0], b"m1\0")
            + frame(seqs[1], b"", CommandStatus.ESME_RINVDSTADR)
            + frame(seqs[2], b"m3\0")
        )
        while not (calls and refused):
            await trio.sleep(0.01)
    assert calls == [[("a", "m1"), ("c", "m3")]]
    assert [(r.outcome, r.status) for r in refused] == [(Outcome.REJECTED, CommandStatus.ESME_RINVDSTADR)]
    assert client.stats.accepted == 2 and client.stats.rejected == 1
    await client.close()


async def test_without_a_sink_the_esme_calls_each_on_result(nursery):
    smsc = ScriptedSmsc()
    port = await nursery.start(smsc.serve)
    client = EsmeClient(esme_settings(port))
    nursery.start_soon(client.run)
    with trio.fail_after(5):
        r = await client.submit(submit())
    assert r.outcome is Outcome.ACCEPTED and r.message_id and r.response is None
    await client.close()


class RecordingStore:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __getattr__(self, name):
        def record(*a, **kw):
            self.calls.append((name, a, kw))

        return record

    def submitted_many_nowait(self, accepted, **kw):
        Store.submitted_many_nowait(self, accepted, **kw)  # recorded as one call per message


def job(i: int, segments: int = 1) -> Job:
    rec = MessageRecord(
        id=f"m{i}", tenant="t", source_addr="Acme", destination=f"49151{i:08d}",
        text="x" * (200 if segments > 1 else 10), category="otp", priority=0,
        state=State.SUBMITTING, channel="c", data_coding=0, segment_count=segments,
        created_at=0.0, updated_at=0.0, expires_at=1e12, concat_ref=7 if segments > 1 else None,
        attempts=1,
    )
    return Job(rec, [SegmentRecord(message_id=rec.id, seq=k + 1) for k in range(segments)], pending=segments)


def state_of(ch: Channel, jobs: list[Job]) -> tuple:
    return (
        [msgspec.to_builtins(j.record) for j in jobs],
        [[msgspec.to_builtins(s) for s in j.segments] for j in jobs],
        [(j.pending, j.pdus, dict(j.outcomes)) for j in jobs],
        sorted(ch._by_key),
        list(ch._awaiting),
        ch._inflight,
        msgspec.to_builtins(ch.stats),
    )


async def test_the_channels_batch_path_makes_the_general_paths_changes():
    """One-segment jobs take the inlined path, a multipart one the general path; the
    store calls (each message's, in order: the one-segment messages' moves of a read are
    queued together after it), the jobs, the indexes and the counters are those of
    _on_result for each."""
    cfg = ChannelConfig(name="c", system_id="s", password="p", message_id_format="hex")
    results = []
    for batch in (True, False):
        store = RecordingStore()
        ch = Channel(cfg, store, clock=lambda: 5.0)
        jobs = [job(0), job(1, segments=2), job(2)]
        ch._inflight = 4
        ids = [("0A", jobs[0], 0), ("0b", jobs[1], 0), ("c", jobs[2], 0), ("d", jobs[1], 1)]
        if batch:
            ch._on_accepted([(_Sent(ch, j, i), mid) for mid, j, i in ids])
        else:
            for mid, j, i in ids:
                ch._on_result(j, i, SubmitResult(Outcome.ACCEPTED, 0, mid))
        # stable: each message's calls keep their order
        calls = sorted(store.calls, key=lambda c: c[1][0] if c[0] == "submitted_nowait" else c[1][0].message_id)
        results.append((state_of(ch, jobs), calls))
    assert results[0] == results[1]
    (state, calls) = results[0]
    assert [c[0] for c in calls].count("submitted_nowait") == 3
    assert state[3] == ["10", "11", "12", "13"]  # hex ids, canonical keys


async def test_a_store_refusal_does_not_lose_the_rest_of_the_read():
    """The store refusing the read's moves (it is closed) leaves the read's results applied
    in memory."""

    class Refusing(RecordingStore):
        def submitted_many_nowait(self, accepted, **kw):
            self.calls.append(("submitted_many_nowait", [rec.id for rec, _seg in accepted], kw))
            raise RuntimeError("the store is closed")

    store = Refusing()
    ch = Channel(ChannelConfig(name="c", system_id="s", password="p"), store, clock=lambda: 5.0)
    jobs = [job(0), job(1)]
    ch._inflight = 2
    ch._on_accepted([(_Sent(ch, j, 0), f"id{i}") for i, j in enumerate(jobs)])
    assert [c[1] for c in store.calls] == [["m0", "m1"]]
    assert [j.record.state for j in jobs] == [State.SUBMITTED, State.SUBMITTED]
    assert sorted(ch._awaiting) == ["m0", "m1"] and ch.stats.submitted_messages == 2


async def test_the_one_segment_receipt_apply_makes_the_general_applys_changes():
    """Channel._apply_stored applies a one-segment message's receipt inline; the general
    _apply_receipt(stored=True) makes the same changes (delivered with its move carried,
    a failure with its error, and a receipt whose move another batch carries)."""
    cfg = ChannelConfig(name="c", system_id="s", password="p", message_id_format="hex")
    outcomes = []
    for inline in (True, False):
        ch = Channel(cfg, RecordingStore(), clock=lambda: 5.0)
        jobs = [job(i) for i in range(3)]
        ch._inflight = 3
        ch._on_accepted([(_Sent(ch, j, 0), f"{i + 10:x}") for i, j in enumerate(jobs)])
        jobs[0].final_move = State.DELIVERED
        jobs[1].final_move = State.UNDELIVERABLE
        effects = [(ch, jobs[0], 0, "delivered", None, "id:a"), (ch, jobs[1], 0, "undeliverable", "001", "id:b"),
                   (ch, jobs[2], 0, "delivered", None, "id:c")]  # jobs[2]: no move carried here
        if inline:
            ch._apply_stored(effects, [], 7.0)
        else:
            for owner, j, idx, seg_state, error, raw in effects:
                owner._apply_receipt(j, idx, seg_state, error, 7.0, raw, stored=True)
        outcomes.append((state_of(ch, jobs), ch.store.calls))
    assert outcomes[0] == outcomes[1]
    state = outcomes[0][0]
    assert [r["state"] for r in state[0]] == ["delivered", "undeliverable", "delivered"]
    assert [segs[0]["receipt"] for segs in state[1]] == ["id:a", "id:b", "id:c"]  # as stored


async def test_the_bound_on_jobs_awaiting_receipts_holds_on_both_paths(monkeypatch):
    """At most AWAITING_RECEIPTS_MAX jobs wait for receipts in memory, the newest; the
    oldest are forgotten (their receipts are matched in the store), on the batch path as
    on _on_result's."""
    import gateway.channels as channels

    monkeypatch.setattr(channels, "AWAITING_RECEIPTS_MAX", 3)
    cfg = ChannelConfig(name="c", system_id="s", password="p", message_id_format="hex")
    results = []
    for batch in (True, False):
        ch = Channel(cfg, RecordingStore(), clock=lambda: 5.0)
        jobs = [job(i) for i in range(5)]
        ch._inflight = 5
        ids = [(f"{i + 10:X}", j, 0) for i, j in enumerate(jobs)]
        if batch:
            ch._on_accepted([(_Sent(ch, j, i), mid) for mid, j, i in ids])
        else:
            for mid, j, i in ids:
                ch._on_result(j, i, SubmitResult(Outcome.ACCEPTED, 0, mid))
        results.append((list(ch._awaiting), sorted(ch._by_key)))
    assert results[0] == results[1] == (["m2", "m3", "m4"], ["12", "13", "14"])
