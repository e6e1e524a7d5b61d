"""SqliteStore on real files: records round trip, idempotent intake, the transition table in
SQL, receipts, recovery after a crash, migrations, group commit, typed errors."""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import tempfile
import textwrap
from pathlib import Path

import msgspec
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import StoreConfig
from gateway.states import FINAL, TRANSITIONS, State, can_move
from gateway.store import migrations
from gateway.store import sqlite as S
from gateway.store.base import Store
from gateway.store.migrations import LATEST, MIGRATIONS, StoreVersionError, migrate
from gateway.store.records import (
    MessageRecord,
    MessageView,
    ReceiptRecord,
    SegmentReceipt,
    SegmentRecord,
    SegmentState,
    StateMove,
)
from gateway.store.sqlite import SqliteStore, StoreRejected, StoreUnavailable

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_700_000_000.0


def msg(i: int, *, tenant: str = "acme", client_ref: str | None = None, segments: int = 1, **kw):
    rec = MessageRecord(
        id=kw.pop("id", f"m{i:06d}"),
        tenant=tenant,
        client_ref=client_ref,
        source_addr="Acme",
        destination=f"4915100{i:05d}",
        text=f"code {i}",
        category="otp",
        priority=0,
        data_coding=0,
        segment_count=segments,
        created_at=T0 + i * 1.000123,  # not round: floats must come back bit for bit
        updated_at=T0 + i * 1.000123,
        expires_at=T0 + 86_400,
        **kw,
    )
    segs = [SegmentRecord(message_id=rec.id, seq=n) for n in range(1, segments + 1)]
    return rec, segs


WRITER = "thread"  # every store test runs in both writer modes (the fixture below)


@pytest.fixture(autouse=True, params=["thread", "process"])
def writer_mode(request, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "WRITER", request.param)
    return request.param


def config(path: Path, **kw) -> StoreConfig:
    base = {"path": str(path), "batch_wait_ms": 1.0, "writer": WRITER}
    base.update(kw)
    return StoreConfig(**base)


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "gateway.db"


@pytest.fixture
async def store(db_path, nursery):
    s = SqliteStore(config(db_path))
    await nursery.start(s.run)
    return s


async def open_store(nursery, path, **kw) -> SqliteStore:
    s = SqliteStore(config(path, **kw))
    await nursery.start(s.run)
    return s


# ---- records ---------------------------------------------------------------------------


def test_is_a_store():
    assert issubclass(SqliteStore, Store)


def test_tables_mirror_the_records(tmp_path):
    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    migrate(conn)
    for table, struct in (
        ("messages", MessageRecord),
        ("segments", SegmentRecord),
        ("receipts", ReceiptRecord),
    ):
        cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
        fields = [f.name for f in msgspec.structs.fields(struct)]
        if table == "messages":  # then segment 1's columns (v5): a segment's, prefixed
            fields += ["seg_" + f.name for f in msgspec.structs.fields(SegmentRecord)[2:]]
        assert [c for c in cols if c != "id" or table != "receipts"] == fields, table


async def test_round_trip(store):
    a, a_segs = msg(1, client_ref="ref-1")
    b, b_segs = msg(2, segments=3, channel=None)
    results = await store.insert_messages([(a, a_segs), (b, b_segs)])
    assert [r.existing for r in results] == [False, False]
    assert results[0].record == a
    view = await store.get_message("acme", a.id)
    assert view == MessageView(message=a, segments=a_segs)
    assert view.message.state is State.ACCEPTED
    view = await store.get_message("acme", b.id)
    assert view == MessageView(message=b, segments=b_segs)
    assert [s.seq for s in view.segments] == [1, 2, 3]
    assert await store.find_by_client_ref("acme", "ref-1") == MessageView(
        message=a, segments=a_segs
    )
    assert await store.get_view(a.id) == MessageView(message=a, segments=a_segs)
    assert await store.get_message("acme", "nope") is None
    assert await store.count_open() == {
        s.value: (2 if s is State.ACCEPTED else 0) for s in State if s not in FINAL
    }


async def test_tenant_isolation(store):
    a, a_segs = msg(1, tenant="acme", client_ref="same")
    b, b_segs = msg(2, tenant="globex", client_ref="same")
    results = await store.insert_messages([(a, a_segs), (b, b_segs)])
    assert [r.existing for r in results] == [False, False]  # client_ref is per tenant
    assert await store.get_message("globex", a.id) is None
    assert await store.get_message("acme", b.id) is None
    assert (await store.get_message("globex", b.id)).message == b
    assert (await store.find_by_client_ref("acme", "same")).message.id == a.id
    assert (await store.find_by_client_ref("globex", "same")).message.id == b.id
    assert await store.find_by_client_ref("initech", "same") is None


# ---- idempotent intake -------------------------------------------------------------------


async def test_client_ref_idempotent_across_calls(store):
    first, first_segs = msg(1, client_ref="r1")
    [r] = await store.insert_messages([(first, first_segs)])
    assert not r.existing
    store.set_state_nowait(first.id, State.QUEUED, now=T0 + 5)
    await store.flush()
    again, again_segs = msg(2, client_ref="r1", segments=2)
    [r] = await store.insert_messages([(again, again_segs)])
    assert r.existing
    assert r.record.id == first.id
    assert r.record.state is State.QUEUED  # the stored record as it is now
    assert await store.get_message("acme", again.id) is None
    assert store.stats.duplicates == 1
    # nothing of the duplicate was stored, segments included
    assert (await store.get_message("acme", first.id)).segments == first_segs
    assert sum((await store.count_open()).values()) == 1


async def test_client_ref_idempotent_within_one_call(store):
    a, a_segs = msg(1, client_ref="dup")
    b, b_segs = msg(2, client_ref="dup", segments=2)
    c, c_segs = msg(3)
    results = await store.insert_messages([(a, a_segs), (b, b_segs), (c, c_segs)])
    assert [r.existing for r in results] == [False, True, False]
    assert results[1].record == a
    assert results[1].record is not a  # a copy, not the caller's object
    assert await store.get_message("acme", b.id) is None
    assert (await store.get_message("acme", a.id)).segments == a_segs


async def test_client_ref_idempotent_concurrent_callers(store):
    results = []

    async def one(i):
        rec, segs = msg(i, client_ref="race")
        results.extend(await store.insert_messages([(rec, segs)]))

    async with trio.open_nursery() as n:
        for i in range(30):
            n.start_soon(one, i)
    assert len(results) == 30
    assert sum(not r.existing for r in results) == 1
    winner = next(r.record for r in results if not r.existing)
    assert {r.record.id for r in results} == {winner.id}
    assert all(r.record == winner for r in results)
    assert (await store.count_open())["accepted"] == 1
    # and a later attempt (another batch) too
    late, late_segs = msg(99, client_ref="race")
    [r] = await store.insert_messages([(late, late_segs)])
    assert r.existing and r.record == winner


async def test_segments_must_belong_to_their_message(store):
    rec, _ = msg(1)
    with pytest.raises(StoreRejected):
        await store.insert_messages([(rec, [SegmentRecord(message_id="other", seq=1)])])


async def test_bad_op_fails_alone(store):
    """A duplicate message id (a bug upstream) fails only its own caller."""
    base, base_segs = msg(1)
    await store.insert_messages([(base, base_segs)])
    outcomes = {}

    async def one(i, rec, segs):
        try:
            outcomes[i] = await store.insert_messages([(rec, segs)])
        except StoreRejected as e:
            outcomes[i] = e

    clash, clash_segs = msg(50, id=base.id)
    async with trio.open_nursery() as n:
        for i in range(10):
            rec, segs = (clash, clash_segs) if i == 5 else msg(100 + i)
            n.start_soon(one, i, rec, segs)
    assert isinstance(outcomes.pop(5), StoreRejected)
    assert all(not r[0].existing for r in outcomes.values())
    assert store.stats.rejected_ops == 1 and store.stats.isolated_batches >= 1
    assert (await store.count_open())["accepted"] == 10
    assert (await store.get_message("acme", base.id)).message == base


# ---- state transitions -------------------------------------------------------------------


async def test_transitions_legal_applied_illegal_refused(store):
    rec, segs = msg(1)
    await store.insert_messages([(rec, segs)])
    store.set_state_nowait(rec.id, State.QUEUED, now=T0 + 10)
    store.set_state_nowait(rec.id, State.SUBMITTING, now=T0 + 11, channel="ch1", attempts=1)
    store.set_state_nowait(rec.id, State.SUBMITTED, now=T0 + 12)
    store.set_state_nowait(rec.id, State.DELIVERED, now=T0 + 13)
    await store.flush()
    m = (await store.get_message("acme", rec.id)).message
    assert (m.state, m.channel, m.attempts) == (State.DELIVERED, "ch1", 1)
    assert (m.updated_at, m.submitted_at, m.done_at) == (T0 + 13, T0 + 12, T0 + 13)
    assert store.stats.transitions_applied == 4 and store.stats.transitions_refused == 0

    store.set_state_nowait(rec.id, State.QUEUED, now=T0 + 20)  # delivered -> queued
    store.set_state_nowait("no-such-id", State.QUEUED, now=T0 + 20)
    await store.flush()
    m = (await store.get_message("acme", rec.id)).message
    assert m.state is State.DELIVERED and m.updated_at == T0 + 13
    assert store.stats.transitions_refused == 2


async def test_transitions_in_one_batch_keep_their_order(store):
    rec, segs = msg(1)
    await store.insert_messages([(rec, segs)])
    moves = [State.QUEUED, State.SUBMITTING, State.QUEUED, State.SUBMITTING, State.SUBMITTED]
    for n, state in enumerate(moves):
        store.set_state_nowait(
            rec.id, state, now=T0 + n, attempts=n, error_code="x" if n == 2 else None
        )
    before = store.stats.batches
    await store.flush()
    assert store.stats.batches == before + 1
    m = (await store.get_message("acme", rec.id)).message
    assert m.state is State.SUBMITTED and m.attempts == 4
    assert m.error_code == "x"  # None left it unchanged
    assert store.stats.transitions_refused == 0


async def test_a_batch_of_moves_is_one_row_write(store):
    """queued -> submitting -> submitted -> delivered in one batch: one UPDATE, the fields
    of every move kept (submitted_at from the SUBMITTED move), counted as four moves."""
    items = [msg(i) for i in range(3)]
    await store.insert_messages(items)
    writes = store.stats.state_writes
    for rec, _ in items:
        store.set_state_nowait(rec.id, State.QUEUED, now=T0 + 1)
        store.set_state_nowait(rec.id, State.SUBMITTING, now=T0 + 2, channel="c", attempts=1)
        store.set_state_nowait(rec.id, State.SUBMITTED, now=T0 + 3)
        store.set_state_nowait(rec.id, State.DELIVERED, now=T0 + 4)
    await store.flush()
    assert store.stats.state_writes == writes + 3
    assert store.stats.transitions_applied == 12 and store.stats.transitions_refused == 0
    assert store.stats.finished == {"delivered": 3}
    for rec, _ in items:
        m = (await store.get_message("acme", rec.id)).message
        assert (m.state, m.channel, m.attempts) == (State.DELIVERED, "c", 1)
        assert (m.updated_at, m.submitted_at, m.done_at) == (T0 + 4, T0 + 3, T0 + 4)


_MOVE_FIELDS = (
    st.sampled_from(list(State)),
    st.none() | st.sampled_from(["c1", "c2"]),  # channel
    st.none() | st.integers(0, 3),  # attempts
    st.none() | st.just("e"),  # error_code
    st.none() | st.just("err"),  # error
)
_MOVE = st.tuples(st.integers(0, 2), *_MOVE_FIELDS)  # (which message, ...)


def _model(stored: MessageRecord, moves: list) -> tuple[MessageRecord, int, int]:
    """The documented semantics of a batch's moves of one message (_apply_states): chains
    of moves each legal after the one before, a chain applied whole if the stored state
    allows its first move. Returns the row, moves applied, moves refused."""
    chains: list[list] = []
    for m in moves:
        if chains and can_move(chains[-1][-1][1], m[1]):
            chains[-1].append(m)
        else:
            chains.append([m])
    m, applied, refused = stored, 0, 0
    for chain in chains:
        if not can_move(m.state, chain[0][1]):
            refused += len(chain)
            continue
        applied += len(chain)
        m = msgspec.structs.replace(m)
        for _mid, new, now, *fields in chain:
            m.state, m.updated_at = new, now
            for name, value in zip(S._OPTIONAL, fields):
                if value is not None:
                    setattr(m, name, value)
            if new is State.SUBMITTED:
                m.submitted_at = now
            if new in FINAL:
                m.done_at = now
    return m, applied, refused


@given(
    st.lists(st.sampled_from(list(State)), min_size=3, max_size=3),
    st.lists(_MOVE, max_size=14),
    st.booleans(),
    st.booleans(),
)
def test_coalesced_moves_follow_the_model(starts, moves, bulk, wire):
    """Any batch of moves of a few messages, as queued (tuples) or off the wire (lists):
    stored rows and counts are those of the chain semantics, in both statement forms."""
    with tempfile.TemporaryDirectory() as d:
        conn, *_ = S.open_writer(os.path.join(d, "t.db"), "OFF", 1.0, 4)
        try:
            _check_moves(conn, starts, moves, bulk, wire)
        finally:
            conn.close()


def _check_moves(conn, starts, moves, bulk, wire):
    recs = [msg(i, state=st_)[0] for i, st_ in enumerate(starts)]
    for rec in recs:
        conn.execute(S._INSERT_MESSAGE, msgspec.structs.astuple(rec) + S._NO_SEG1)
    ops = []
    for n, (i, new, *fields) in enumerate(moves):
        data = (recs[i].id, new._value_, T0 + 1 + n, *fields)
        ops.append([S._STATE, list(data)] if wire else (S._STATE, data))
    counts = S.execute_batch(conn, ops, bulk, 4)
    applied = refused = 0
    for i, rec in enumerate(recs):
        mine = [(m[0], State(m[1]), m[2], *m[3:]) for _k, m in ops if m[0] == rec.id]
        want, a, r = _model(rec, mine)
        got = S._message(conn.execute(f"{S._SELECT_MESSAGE} WHERE id = ?", (rec.id,)).fetchone())
        assert got == want, mine
        applied, refused = applied + a, refused + r
    assert (counts.applied, counts.refused) == (applied, refused)


_SEG1_VERSION = st.tuples(
    st.integers(0, 3),  # which message
    st.booleans(),  # a whole version (update_segment_nowait) or a receipt's columns
    st.sampled_from([SegmentState.SUBMITTED, SegmentState.DELIVERED, SegmentState.UNDELIVERABLE]),
    st.none() | st.sampled_from(["c1", "c2"]),
    st.none() | st.just("001"),
)


@given(
    st.lists(st.sampled_from(list(State)), min_size=4, max_size=4),
    st.lists(st.tuples(st.integers(0, 3), *_MOVE_FIELDS), max_size=10),
    st.lists(_SEG1_VERSION, max_size=6),
    st.booleans(),
)
@settings(max_examples=300)
def test_segment_1_rides_on_its_message_move_exactly(starts, moves, versions, bulk):
    """Segment 1 lives in the message row, and its versions are written by the message's
    move in the same batch (one row write): the rows and counts are those of the moves and
    the versions written in two batches, whichever moves are refused. (Message 3's row has
    no segment 1, as a v4 file's message without segment rows: its columns stay NULL; such
    a version carried by a move counts as written, alone as missing.)"""
    results = []
    for split in (False, True):
        with tempfile.TemporaryDirectory() as d:
            conn, *_ = S.open_writer(os.path.join(d, "t.db"), "OFF", 1.0, 4)
            try:
                recs = [msg(i, state=st_)[0] for i, st_ in enumerate(starts)]
                for rec in recs:
                    seg1 = S._NO_SEG1 if rec.id == recs[3].id else ("pending",) + S._NO_SEG1[1:]
                    conn.execute(S._INSERT_MESSAGE, msgspec.structs.astuple(rec) + seg1)
                state_ops = [
                    (S._STATE, (recs[i].id, new._value_, T0 + 1 + n, *fields))
                    for n, (i, new, *fields) in enumerate(moves)
                ]
                seg_ops = []
                for n, (i, whole, state, channel, error) in enumerate(versions):
                    mid = recs[i].id
                    if whole:
                        seg = SegmentRecord(message_id=mid, seq=1, state=state, channel=channel,
                                            id_key=f"k{n}", submitted_at=T0 + n, receipt_error=error)
                        seg_ops.append((S._SEGMENT, S._segment_row(seg)))
                    else:
                        seg_ops.append((S._RECEIPT, ([], [(state, error, T0 + 9 + n, f"id:{n} stat:x", mid, 1)], [], None)))
                if split:
                    counts = S.execute_batch(conn, state_ops, bulk, 4)
                    counts.add(S.execute_batch(conn, seg_ops, bulk, 4))
                else:
                    counts = S.execute_batch(conn, state_ops + seg_ops, bulk, 4)
                rows = conn.execute(f"{S._SELECT_VIEW} ORDER BY id").fetchall()
            finally:
                conn.close()
        seg_counts = counts.seg_updated + counts.seg_missing
        results.append((rows, counts.applied, counts.refused, seg_counts))
    assert results[0] == results[1]


async def test_an_illegal_move_inside_a_batch_starts_a_new_chain(store):
    """accepted -> queued -> (delivered: illegal after queued) -> submitting: the illegal
    move is refused against the stored state (queued), the chain around it still applies."""
    rec, segs = msg(1)
    await store.insert_messages([(rec, segs)])
    store.set_state_nowait(rec.id, State.QUEUED, now=T0 + 1)
    store.set_state_nowait(rec.id, State.DELIVERED, now=T0 + 2)
    store.set_state_nowait(rec.id, State.SUBMITTING, now=T0 + 3)
    await store.flush()
    m = (await store.get_message("acme", rec.id)).message
    assert m.state is State.SUBMITTING and m.done_at is None and m.updated_at == T0 + 3
    assert store.stats.transitions_applied == 2 and store.stats.transitions_refused == 1
    assert store.stats.finished == {}


async def test_a_chain_refused_by_the_stored_state_changes_nothing(store):
    rec, segs = msg(1, state=State.DELIVERED)
    await store.insert_messages([(rec, segs)])
    store.set_state_nowait(rec.id, State.SUBMITTING, now=T0 + 1)  # delivered -> submitting
    store.set_state_nowait(rec.id, State.SUBMITTED, now=T0 + 2)
    await store.flush()
    assert (await store.get_message("acme", rec.id)).message == rec
    assert store.stats.transitions_refused == 2 and store.stats.state_writes == 0


@given(st.integers(0, 2000), st.sampled_from([1, 2, 8, 128]))
def test_chunks_cover_the_rows_with_few_sizes(n, chunk):
    sizes = S._chunks(n, chunk)
    assert sum(sizes) == n
    assert all(0 < k <= chunk and k & (k - 1) == 0 for k in sizes)
    rest = [k for k in sizes if k != chunk]
    assert len(rest) == len(set(rest))  # the remainder: distinct powers of two


_VALUE = st.none() | st.integers(-3, 3) | st.text(max_size=3) | st.floats(allow_nan=False)


@given(st.lists(st.tuples(_VALUE, _VALUE, _VALUE), min_size=1, max_size=40), st.sampled_from([1, 4, 128]))
def test_bulk_writes_store_nulls_and_values_exactly(rows, chunk):
    """A column None in every row of a statement is a literal NULL, not bound: each value
    lands in its own column, the rows keep their order (rowids), updates hit their key."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (a, b, c)")
    n = S._write(conn, "INSERT INTO t (a, b, c) VALUES {rows}", "", rows, True, chunk)
    assert n == len(rows)
    assert conn.execute("SELECT a, b, c FROM t ORDER BY rowid").fetchall() == rows
    flipped = [(c, a, rowid) for rowid, (a, _b, c) in enumerate(rows, 1)]
    update = "UPDATE t SET a = v.column1, c = v.column2 FROM (VALUES {rows}) AS v WHERE t.rowid = v.column3"
    assert S._write(conn, update, "", flipped, True, chunk) == len(rows)
    assert conn.execute("SELECT a, b, c FROM t ORDER BY rowid").fetchall() == [
        (c, b, a) for a, b, c in rows
    ]


def test_all_null_columns_are_literals():
    rows = [("x", None, None, 1), ("y", None, 2, None)]
    assert S._shared_columns(rows) == ((1,), ())
    assert S._sized("VALUES {rows}", 2, 4, (1,)) == "VALUES (?, NULL, ?, ?), (?, NULL, ?, ?)"
    assert S._bound(4, (1,))(rows[0]) == ("x", None, 1)
    assert S._bound(2, (1,))(("x", None)) == ("x",)  # one value: still a tuple


def test_a_text_every_row_shares_is_bound_once():
    rows = [("t", None, "x", 1), ("t", None, "y", 1)]
    # the ints are equal too, but only text is shared (1, 1.0 and True compare equal)
    assert S._shared_columns(rows) == ((1,), (0,))
    assert S._sized("VALUES {rows}", 2, 4, (1,), (0,)) == "VALUES (?1, NULL, ?2, ?3), (?1, NULL, ?4, ?5)"
    assert S._shared_columns(rows[:1]) == ((1,), ())  # one row: nothing to share


_ALIKE = st.none() | st.sampled_from(["", "a", "b"]) | st.sampled_from([0, 1, 1.0, True, False, 0.0])


@given(
    st.lists(st.tuples(_ALIKE, _ALIKE, _ALIKE, _ALIKE), min_size=1, max_size=40),
    st.sampled_from([1, 2, 8, 128]),
)
def test_bulk_writes_with_shared_values_store_each_value_and_type(rows, chunk):
    """Columns equal in every row of a statement (often, with few distinct values) and
    values equal in Python but not in SQLite (1, 1.0, True): every value comes back with
    its own type, in its own row and column, inserted and updated."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (a, b, c, d)")
    assert S._write(conn, "INSERT INTO t (a, b, c, d) VALUES {rows}", "", rows, True, chunk) == len(rows)

    def stored():
        return [
            tuple((type(x).__name__, x) for x in r)
            for r in conn.execute("SELECT a, b, c, d FROM t ORDER BY rowid")
        ]

    def typed(rs):  # what SQLite gives back: a bool is stored as an integer
        return [tuple((type(int(x) if type(x) is bool else x).__name__, x) for x in r) for r in rs]

    assert stored() == typed(rows)
    swapped = [(d, c, b, a, rowid) for rowid, (a, b, c, d) in enumerate(rows, 1)]
    update = (
        "UPDATE t SET a = v.column1, b = v.column2, c = v.column3, d = v.column4"
        " FROM (VALUES {rows}) AS v WHERE t.rowid = v.column5"
    )
    assert S._write(conn, update, "", swapped, True, chunk) == len(rows)
    assert stored() == typed([(d, c, b, a) for a, b, c, d in rows])


@pytest.mark.parametrize("error", [None, "nul\x00inside"])
@pytest.mark.parametrize("bulk", [False, True], ids=["executemany", "bulk"])
async def test_every_pair_of_the_transition_table(db_path, nursery, bulk, error):
    """The generated SQL agrees with gateway.states.TRANSITIONS on all 121 pairs, in both
    forms (a NUL character in a value sends a bulk group through executemany)."""
    store = SqliteStore(config(db_path), bulk_writes=bulk)
    await nursery.start(store.run)
    pairs = [(old, new) for old in State for new in State]
    items = [msg(i, state=old) for i, (old, _) in enumerate(pairs)]
    await store.insert_messages(items)
    for (rec, _), (_, new) in zip(items, pairs):
        store.set_state_nowait(rec.id, new, now=T0 + 99, error=error)
    await store.flush()
    legal = sum(can_move(o, n) for o, n in pairs)
    assert store.stats.transitions_applied == legal
    assert store.stats.transitions_refused == len(pairs) - legal
    for (rec, _), (old, new) in zip(items, pairs):
        m = (await store.get_message("acme", rec.id)).message
        assert m.state is (new if new in TRANSITIONS[old] else old), (old, new)
        assert (m.done_at is not None) == (new in FINAL and can_move(old, new))
        assert m.error == (error if can_move(old, new) else None)


@pytest.mark.parametrize("bulk", [False, True], ids=["executemany", "bulk"])
async def test_nul_characters_survive(db_path, nursery, bulk):
    """SQLite's JSON functions stop at a NUL: such groups go row by row, nothing is cut."""
    store = SqliteStore(config(db_path), bulk_writes=bulk)
    await nursery.start(store.run)
    rec, segs = msg(1, client_ref="ref\x00x")
    rec.text = "a\x00b \u00e9\u4e2d\U0001f600"
    plain, plain_segs = msg(2, client_ref="plain")
    await store.insert_messages([(rec, segs), (plain, plain_segs)])
    assert (await store.get_message("acme", rec.id)).message == rec
    [again] = await store.insert_messages([msg(3, client_ref="ref\x00x")])
    assert again.existing and again.record == rec
    r = ReceiptRecord(
        channel="c", smsc_message_id="1", id_key="1", state=None, raw="id:1\x00junk", received_at=T0
    )
    await store.record_receipt(r)
    assert await store.unmatched_receipts() == [r]


# ---- segments and receipts ----------------------------------------------------------------


async def test_segment_update_and_find_segment(store):
    rec, segs = msg(1, segments=2)
    await store.insert_messages([(rec, segs)])
    s1 = msgspec.structs.replace(
        segs[0],
        state=SegmentState.SUBMITTED,
        channel="ch1",
        smsc_message_id="0A1B",
        id_key="2587",
        submit_status=0,
        submitted_at=T0 + 5,
    )
    store.update_segment_nowait(s1)
    s1.state = SegmentState.DELIVERED  # the caller keeps mutating: the queued op is a snapshot
    store.update_segment_nowait(SegmentRecord(message_id="nope", seq=1))
    await store.flush()
    assert await store.find_segment("ch1", "2587") == msgspec.structs.replace(
        s1, state=SegmentState.SUBMITTED
    )
    assert await store.find_segment("ch2", "2587") is None
    assert await store.find_segment("ch1", "9999") is None
    view = await store.get_message("acme", rec.id)
    assert view.segments[0].state == SegmentState.SUBMITTED
    assert view.segments[1] == segs[1]
    assert store.stats.segments_updated == 1 and store.stats.segments_missing == 1


async def test_last_segment_version_in_a_batch_wins(store):
    rec, segs = msg(1)
    await store.insert_messages([(rec, segs)])
    seg = segs[0]
    for state in (SegmentState.SUBMITTED, SegmentState.DELIVERED, SegmentState.UNKNOWN):
        seg.state = state
        store.update_segment_nowait(seg)
    await store.flush()
    assert (await store.get_message("acme", rec.id)).segments[0].state == SegmentState.UNKNOWN
    assert store.stats.segments_updated == 3


async def test_receipts_matched_and_unmatched(store):
    rec, segs = msg(1)
    await store.insert_messages([(rec, segs)])

    def receipt(channel, key, **kw):
        return ReceiptRecord(
            channel=channel,
            smsc_message_id=key,
            id_key=key,
            state=SegmentState.DELIVERED,
            raw=f"id:{key} sub:001 dlvrd:001 stat:DELIVRD err:000",
            received_at=T0 + 50,
            **kw,
        )

    matched = receipt("ch1", "1", message_id=rec.id, seq=1)
    lost_a = receipt("ch1", "2", error_code="000")
    lost_b = receipt("ch2", "3")
    for r in (matched, lost_a, lost_b):
        await store.record_receipt(r)
    assert await store.unmatched_receipts() == [lost_a, lost_b]
    assert await store.unmatched_receipts("ch1") == [lost_a]
    assert await store.unmatched_receipts("ch3") == []
    assert store.stats.receipts == 3


async def test_receipts_in_one_op_and_late_matching(store):
    """A receipt that overtook its submit_sm_resp is stored unmatched, then linked."""
    rec, segs = msg(1, segments=2)
    await store.insert_messages([(rec, segs)])

    def receipt(key, state):
        return ReceiptRecord(
            channel="ch1", smsc_message_id=key, id_key=key, state=state, raw="r", received_at=T0
        )

    early = [receipt("k1", None), receipt("k1", SegmentState.DELIVERED), receipt("k2", None)]
    await store.record_receipts(early)
    await store.record_receipts([])
    assert len(await store.unmatched_receipts("ch1")) == 3
    store.match_receipt_nowait("ch1", "k1", rec.id, 2)
    store.match_receipt_nowait("ch1", "nope", rec.id, 1)
    await store.flush()
    assert await store.unmatched_receipts() == [early[2]]
    assert store.stats.receipts == 3 and store.stats.receipts_matched == 2
    conn = sqlite3.connect(store.path)
    assert conn.execute("SELECT message_id, seq FROM receipts WHERE id_key = 'k1'").fetchall() == [
        (rec.id, 2),
        (rec.id, 2),
    ]
    plan = conn.execute("EXPLAIN QUERY PLAN " + S._MATCH_RECEIPT, (1, 1, 1, 1)).fetchall()
    assert "receipts_unmatched_key" in plan[0][3]


def dump(path: Path) -> dict:
    conn = sqlite3.connect(path)
    return {
        t: conn.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall()
        for t in ("messages", "receipts")
    } | {"segments": conn.execute("SELECT * FROM segments ORDER BY 1, 2").fetchall()}


async def test_bulk_and_row_by_row_agree(tmp_path):
    """The multi-row statements (bulk_writes=True) and executemany write the same rows;
    300 messages and 200 moves of each kind in one batch: several statements per group."""

    async def scenario(path, bulk):
        async with trio.open_nursery() as n:
            s = SqliteStore(config(path), bulk_writes=bulk)
            await n.start(s.run)
            items = [msg(i, client_ref=f"r{i % 250}", segments=1 + i % 3) for i in range(300)]
            await s.insert_messages(items)
            for rec, segs in items[:200]:
                s.set_state_nowait(rec.id, State.QUEUED, now=T0 + 1, channel="ch")
                s.set_state_nowait(rec.id, State.SUBMITTING, now=T0 + 2, attempts=1)
                for seg in segs:
                    seg.state, seg.id_key, seg.channel = SegmentState.SUBMITTED, rec.id, "ch"
                    seg.submitted_at = T0 + 2.5
                    s.update_segment_nowait(seg)
                s.set_state_nowait(rec.id, State.SUBMITTED, now=T0 + 3)
                s.set_state_nowait(rec.id, State.QUEUED, now=T0 + 4)  # refused
            await s.record_receipts(
                [
                    ReceiptRecord(
                        channel="ch",
                        smsc_message_id=rec.id,
                        id_key=rec.id,
                        state=SegmentState.DELIVERED,
                        raw="stat:DELIVRD",
                        received_at=T0 + 5,
                        message_id=rec.id,
                        seq=1,
                    )
                    for rec, _ in items[:200]
                ]
            )
            await s.flush()
            assert s.stats.max_batch_ops > 2 * S._CHUNK_ROWS  # groups of several statements
            stats = msgspec.structs.replace(
                s.stats, commit_seconds=0.0, commit_cpu_seconds=0.0, last_commit_at=None
            )
            n.cancel_scope.cancel()
        return dump(path), stats

    bulk, bulk_stats = await scenario(tmp_path / "bulk.db", True)
    rows, rows_stats = await scenario(tmp_path / "rows.db", False)
    assert bulk == rows
    assert bulk_stats == rows_stats
    assert bulk_stats.transitions_refused == 200 and bulk_stats.state_writes == 200
    assert bulk_stats.duplicates == 50 and bulk_stats.receipts == 200


# ---- recovery ------------------------------------------------------------------------------


async def test_unfinished_after_crash_in_process(db_path):
    """Store A never shuts down (its file stays open, WAL not checkpointed): B, opened on the
    files as A leaves them (copied while A is idle: a second store on A's own file is refused,
    test_store_lock.py), sees every message A acknowledged."""
    async with trio.open_nursery() as outer:
        a = await open_store(outer, db_path)
        items = [msg(i, segments=1 + i % 3) for i in range(20)]
        await a.insert_messages(items)
        a.set_state_nowait(items[0][0].id, State.REJECTED, now=T0 + 1)  # final
        a.set_state_nowait(items[1][0].id, State.QUEUED, now=T0 + 1)
        await a.flush()
        crashed = db_path.parent / "crashed" / db_path.name
        crashed.parent.mkdir()
        wal = Path(f"{db_path}-wal")
        assert wal.stat().st_size > 0  # the commits are (also) in the WAL
        for suffix in ("", "-wal"):  # no -shm: a crash leaves none that can be trusted
            Path(f"{crashed}{suffix}").write_bytes(Path(f"{db_path}{suffix}").read_bytes())
        b = await open_store(outer, crashed)
        views = await b.unfinished()
        assert [v.message.id for v in views] == [rec.id for rec, _ in items[1:]]  # oldest first
        assert views[0].message.state is State.QUEUED
        assert [v.segments for v in views] == [segs for _, segs in items[1:]]
        outer.cancel_scope.cancel()


CRASHER = textwrap.dedent(
    """
    import os, signal, sys, trio
    sys.path.insert(0, {root!r})
    from gateway.config import StoreConfig
    from gateway.states import State
    from gateway.store.sqlite import SqliteStore
    from tests.test_store_sqlite import msg

    async def main():
        store = SqliteStore(StoreConfig(path={path!r}, batch_wait_ms=1.0, writer={writer!r}))
        async with trio.open_nursery() as n:
            await n.start(store.run)
            async def one(i):
                await store.insert_messages([msg(i, client_ref=f"r{{i}}", segments=2)])
            async with trio.open_nursery() as m:
                for i in range(200):
                    m.start_soon(one, i)
            for i in range(0, 200, 2):
                store.set_state_nowait(f"m{{i:06d}}", State.QUEUED, now=1.0)
            await store.flush()
            print("acknowledged", flush=True)
            if store.writer_pid is not None:  # else it would close the file cleanly
                os.kill(store.writer_pid, signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)

    trio.run(main)
    """
)


async def test_unfinished_after_kill_9(db_path, nursery):
    script = CRASHER.format(root=str(ROOT), path=str(db_path), writer=WRITER)
    proc = await trio.run_process(
        [sys.executable, "-c", script], capture_stdout=True, capture_stderr=True, check=False
    )
    assert proc.returncode == -9, proc.stderr.decode()
    assert proc.stdout.decode().splitlines()[-1] == "acknowledged"
    assert Path(str(db_path) + "-wal").exists()  # no clean close happened
    b = await open_store(nursery, db_path)
    views = await b.unfinished()
    assert len(views) == 200
    assert sum(v.message.state is State.QUEUED for v in views) == 100
    assert all(len(v.segments) == 2 for v in views)
    assert [v.message.id for v in views] == [f"m{i:06d}" for i in range(200)]


async def test_clean_shutdown_flushes_queued_ops(db_path):
    rec, segs = msg(1)
    async with trio.open_nursery() as n:
        a = await open_store(n, db_path, batch_wait_ms=150.0)
        await a.insert_messages([(rec, segs)])
        a.set_state_nowait(rec.id, State.QUEUED, now=T0 + 1)
        assert a.queued == 1  # the writer is still waiting to fill its batch
        n.cancel_scope.cancel()
    with pytest.raises(StoreUnavailable):
        a.set_state_nowait(rec.id, State.HELD, now=T0 + 2)
    with pytest.raises(StoreUnavailable):
        await a.get_message("acme", rec.id)
    assert not Path(str(db_path) + "-wal").exists()  # last connection closed cleanly
    async with trio.open_nursery() as n:
        b = await open_store(n, db_path)
        assert (await b.get_message("acme", rec.id)).message.state is State.QUEUED
        n.cancel_scope.cancel()


# ---- migrations ------------------------------------------------------------------------------


async def test_new_database_is_at_latest_version(store, db_path):
    conn = sqlite3.connect(db_path)
    assert migrations.version(conn) == LATEST
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"messages_client_ref", "messages_open", "segments_id_key", "messages_seg_id_key"} <= indexes
    assert "messages_state" not in indexes  # replaced by messages_open in v4


def test_v1_database_upgrades(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, MIGRATIONS[:1]) == (0, 1)
    conn.execute(
        "INSERT INTO receipts (channel, smsc_message_id, id_key, state, raw, received_at)"
        " VALUES ('c', '1', '1', NULL, 'raw', 1.0)"
    )
    v2 = (
        2,
        "ALTER TABLE receipts ADD COLUMN note TEXT; CREATE INDEX receipts_note ON receipts (note);",
    )
    assert migrate(conn, [*MIGRATIONS[:1], v2]) == (1, 2)
    assert migrations.version(conn) == 2
    assert conn.execute("SELECT raw, note FROM receipts").fetchall() == [("raw", None)]
    assert migrate(conn, [*MIGRATIONS[:1], v2]) == (2, 2)  # idempotent


def test_failed_migration_changes_nothing(tmp_path):
    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    migrate(conn, MIGRATIONS[:1])
    bad = (2, "CREATE TABLE extra (x INTEGER); INSERT INTO no_such_table VALUES (1);")
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, [*MIGRATIONS[:1], bad])
    assert migrations.version(conn) == 1
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'extra'").fetchone() is None


async def test_v1_file_opens_in_the_store(db_path, nursery):
    conn = sqlite3.connect(db_path, isolation_level=None)
    migrate(conn, MIGRATIONS[:1])
    old, _ = msg(0)
    # A row as v1 wrote it: the columns of that time (later versions add columns at the end).
    v1_cols = [r[1] for r in conn.execute("PRAGMA table_info(messages)")]
    row = msgspec.structs.asdict(old)
    conn.execute(
        f"INSERT INTO messages ({', '.join(v1_cols)}) VALUES ({', '.join('?' * len(v1_cols))})",
        [row[c].value if hasattr(row[c], "value") else row[c] for c in v1_cols],
    )
    conn.close()
    s = await open_store(nursery, db_path)  # v1 -> latest
    rec, segs = msg(1)
    await s.insert_messages([(rec, segs)])
    assert (await s.get_message("acme", rec.id)).message == rec
    assert (await s.get_message("acme", old.id)).message == old
    conn = sqlite3.connect(db_path)
    assert migrations.version(conn) == LATEST
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "receipts_unmatched_key" in names


async def test_v3_file_keeps_its_open_messages_through_v4(db_path, nursery):
    """v4 swaps the state index for the open-message index: a v3 file's open and final
    messages are told apart exactly as before (recovery and counts)."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    migrate(conn, MIGRATIONS[:3])
    states = [State.QUEUED, State.SUBMITTED, State.DELIVERED, State.HELD, State.FAILED]
    for i, state in enumerate(states):
        rec, _ = msg(i, state=state)
        if state in FINAL:
            rec.done_at = T0 + 1
        row = msgspec.structs.astuple(rec)
        conn.execute(  # v3's columns: the record's fields
            f"INSERT INTO messages ({S._cols(S._MSG_FIELDS)}) VALUES ({S._marks(len(row))})",
            [v.value if isinstance(v, State) else v for v in row],
        )
    conn.close()
    s = await open_store(nursery, db_path)  # v3 -> v4
    assert [v.message.state for v in await s.unfinished()] == [
        State.QUEUED, State.SUBMITTED, State.HELD
    ]
    counts = await s.count_open()
    assert (counts["queued"], counts["submitted"], counts["held"]) == (1, 1, 1)
    assert sum(counts.values()) == 3


async def test_v4_file_moves_segment_1_into_the_message_row(db_path, nursery):
    """v5 keeps segment 1 in its message's row: a v4 file's segments (one-part and
    multipart messages, submitted, with receipts) read back the same, and receipts still
    find their segment by (channel, id_key)."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    migrate(conn, MIGRATIONS[:4])
    views = []
    for i, parts in enumerate((1, 3, 1)):
        rec, segs = msg(i, segments=parts, state=State.SUBMITTED, channel="c1")
        for seg in segs:
            seg.state = SegmentState.SUBMITTED if seg.seq != 2 else SegmentState.DELIVERED
            seg.channel = "c1"
            seg.smsc_message_id = f"{i:x}{seg.seq}"
            seg.id_key = f"k{i}-{seg.seq}"
            seg.submit_status = 0
            seg.submitted_at = T0 + i + seg.seq / 10
            seg.receipt_error = "000" if seg.seq == 2 else None
        row = msgspec.structs.astuple(rec)
        conn.execute(
            f"INSERT INTO messages ({S._cols(S._MSG_FIELDS)}) VALUES ({S._marks(len(row))})",
            [v.value if isinstance(v, State) else v for v in row],
        )
        v4_cols = [r[1] for r in conn.execute("PRAGMA table_info(segments)")]  # v4's
        for seg in segs:
            row = msgspec.structs.asdict(seg)
            conn.execute(
                f"INSERT INTO segments ({', '.join(v4_cols)}) VALUES ({', '.join('?' * len(v4_cols))})",
                [row[c] for c in v4_cols],
            )
        views.append(MessageView(message=rec, segments=segs))
    conn.close()
    s = await open_store(nursery, db_path)  # v4 -> v5
    for view in views:
        assert await s.get_view(view.message.id) == view
    assert [v for v in await s.unfinished()] == views
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT count(*) FROM segments WHERE seq = 1").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM segments").fetchone() == (2,)
    assert await s.find_segment("c1", "k1-1") == views[1].segments[0]
    assert await s.find_segment("c1", "k1-3") == views[1].segments[2]
    assert await s.find_segment("c1", "k2-1") == views[2].segments[0]
    assert await s.find_segment("c2", "k2-1") is None


async def test_v6_file_keeps_its_receipts_and_settles_each_segment_with_its_text(db_path, nursery):
    """v7 stores the text of the receipt that settled a segment in the segment's row. A v6
    file's matched receipts that reported a state fill it in (the latest by id per
    segment); every receipts row stays as it was (nothing lost, unmatched ones still
    unmatched); rows naming nothing that exists (bad input) change nothing."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    migrate(conn, MIGRATIONS[:6])
    msg_cols = [r[1] for r in conn.execute("PRAGMA table_info(messages)")]  # v6's
    seg_cols = [r[1] for r in conn.execute("PRAGMA table_info(segments)")]
    one, _ = msg(1, state=State.DELIVERED)  # one segment, two receipts (the later wins)
    two, two_segs = msg(2, segments=3, state=State.UNDELIVERABLE)  # receipts for 1 and 3
    ongoing, _ = msg(3, state=State.SUBMITTED)  # an intermediate receipt only: no text
    bare, _ = msg(4, state=State.DELIVERED)  # no segment 1 (v4 era): stays without one
    for rec in (one, two, ongoing, bare):
        row = msgspec.structs.asdict(rec)
        row["state"] = rec.state.value
        row["seg_state"] = None if rec is bare else SegmentState.DELIVERED
        conn.execute(
            f"INSERT INTO messages ({', '.join(msg_cols)}) VALUES ({', '.join('?' * len(msg_cols))})",
            [row.get(c) for c in msg_cols],
        )
    for seg in two_segs[1:]:
        seg.state = SegmentState.UNDELIVERABLE if seg.seq == 3 else SegmentState.DELIVERED
        row = msgspec.structs.asdict(seg)
        conn.execute(
            f"INSERT INTO segments ({', '.join(seg_cols)}) VALUES ({', '.join('?' * len(seg_cols))})",
            [row[c] for c in seg_cols],
        )
    receipts = [  # (smsc id, state, message_id, seq); raw = "raw-<n>"
        ("a", "delivered", one.id, 1),
        ("a", "delivered", one.id, 1),  # a later one for the same segment (the latest wins)
        ("b1", "delivered", two.id, 1),
        ("b3", "undeliverable", two.id, 3),
        ("c", None, ongoing.id, 1),  # intermediate: settled nothing
        ("d", "delivered", bare.id, 1),  # its message has no segment 1
        ("e", "delivered", "m999999", 1),  # names no message
        ("f", "delivered", two.id, 7),  # names no segment
        ("g", "delivered", None, None),  # unmatched
        ("h", None, None, None),  # unmatched, intermediate
    ]
    for n, (smsc_id, state, mid, seq) in enumerate(receipts):
        conn.execute(
            "INSERT INTO receipts (channel, smsc_message_id, id_key, state, error_code, raw,"
            " received_at, message_id, seq) VALUES ('c1', ?, ?, ?, NULL, ?, ?, ?, ?)",
            (smsc_id, smsc_id, state, f"raw-{n}", T0 + n, mid, seq),
        )
    before = conn.execute("SELECT * FROM receipts ORDER BY id").fetchall()
    conn.close()

    s = await open_store(nursery, db_path)  # v6 -> v7
    assert [seg.receipt for seg in (await s.get_view(one.id)).segments] == ["raw-1"]
    assert [seg.receipt for seg in (await s.get_view(two.id)).segments] == ["raw-2", None, "raw-3"]
    assert [seg.receipt for seg in (await s.get_view(ongoing.id)).segments] == [None]
    assert (await s.get_view(bare.id)).segments == []
    assert [r.smsc_message_id for r in await s.unmatched_receipts()] == ["g", "h"]
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT * FROM receipts ORDER BY id").fetchall() == before
    assert conn.execute("SELECT seg_receipt FROM messages WHERE id = ?", (bare.id,)).fetchone() == (None,)
    assert conn.execute("SELECT count(*) FROM messages").fetchone() == (4,)
    assert conn.execute("SELECT count(*) FROM segments").fetchone() == (2,)
    assert migrations.version(conn) == LATEST


async def test_segment_1_and_the_others_are_written_where_they_live(store, db_path):
    """Segment 1 in the message row, 2..n in the segments table: a version, a receipt and a
    reading of each find the right place; a message without segment 1 gets no phantom."""
    one, one_segs = msg(1)
    three, three_segs = msg(2, segments=3)
    bare, _ = msg(3)  # as a v4 file's message without segment rows became in v5
    await store.insert_messages([(one, one_segs), (three, three_segs)])
    conn = sqlite3.connect(db_path)
    row = msgspec.structs.astuple(bare)
    conn.execute(
        f"INSERT INTO messages ({S._cols(S._MSG_FIELDS)}) VALUES ({S._marks(len(row))})",
        [v.value if isinstance(v, State) else v for v in row],
    )
    conn.commit()
    conn.close()
    for seg in (one_segs[0], three_segs[0], three_segs[2]):
        seg.state, seg.channel, seg.id_key = SegmentState.SUBMITTED, "c", f"{seg.message_id}/{seg.seq}"
        seg.submitted_at = T0 + seg.seq
        store.update_segment_nowait(seg)
    stray = SegmentRecord(message_id=bare.id, seq=1, state=SegmentState.SUBMITTED)
    store.update_segment_nowait(stray)  # no segment 1 stored: counted missing, nothing made
    await store.record_receipts(
        [],
        segments=[
            SegmentReceipt(one.id, 1, SegmentState.DELIVERED, "000", T0 + 9),
            SegmentReceipt(three.id, 3, SegmentState.UNDELIVERABLE, "001", T0 + 9),
        ],
    )
    one_segs[0].state, one_segs[0].receipt_error, one_segs[0].receipt_at = "delivered", "000", T0 + 9
    three_segs[2].state, three_segs[2].receipt_error = "undeliverable", "001"
    three_segs[2].receipt_at = T0 + 9
    assert (await store.get_view(one.id)).segments == one_segs
    assert (await store.get_view(three.id)).segments == three_segs
    assert (await store.get_view(bare.id)).segments == []
    assert store.stats.segments_missing == 1
    assert await store.find_segment("c", f"{three.id}/3") == three_segs[2]
    assert await store.find_segment("c", f"{three.id}/1") == three_segs[0]
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT message_id, seq FROM segments ORDER BY 1, 2").fetchall() == [
        (three.id, 2),
        (three.id, 3),
    ]


@pytest.mark.parametrize("seqs", [[1, 1], [2, 2], [1, 3], [1], [1, 2, 3]])
async def test_segments_other_than_1_to_segment_count_are_refused(store, seqs):
    rec, _ = msg(1, segments=2)
    segs = [SegmentRecord(message_id=rec.id, seq=n) for n in seqs]
    with pytest.raises(StoreRejected):
        await store.insert_messages([(rec, segs)])
    assert await store.get_view(rec.id) is None


async def test_newer_database_refuses_to_open(db_path):
    conn = sqlite3.connect(db_path, isolation_level=None)
    migrate(conn)
    conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    conn.close()
    async with trio.open_nursery() as n:
        with pytest.raises(StoreVersionError) as info:
            await n.start(SqliteStore(config(db_path)).run)
    assert info.value.code == "store_version"
    assert info.value.details == {"found": LATEST + 1, "supported": LATEST}
    assert "newer" in str(info.value)


# ---- group commit ----------------------------------------------------------------------------


async def test_concurrent_inserts_share_transactions(db_path, nursery):
    s = await open_store(nursery, db_path, batch_wait_ms=5.0)
    done = 0

    async def one(i):
        nonlocal done
        rec, segs = msg(i, client_ref=f"r{i}")
        [r] = await s.insert_messages([(rec, segs)])
        assert not r.existing
        done += 1

    async with trio.open_nursery() as n:
        for i in range(1000):
            n.start_soon(one, i)
    assert done == 1000
    assert s.stats.messages_inserted == 1000
    assert s.stats.batches <= 20, s.stats
    assert s.stats.max_batch_ops >= 50


async def test_batch_max_caps_a_batch(db_path, nursery):
    s = await open_store(nursery, db_path, batch_max=10, batch_wait_ms=50.0)
    with trio.fail_after(2):  # a full batch does not wait for batch_wait_ms
        async with trio.open_nursery() as n:
            for i in range(35):
                n.start_soon(s.insert_messages, [msg(i, segments=0)])
    assert s.stats.max_batch_ops == 10
    assert s.stats.batches == 4


async def test_flush_waits_for_queued_ops_and_cuts_the_wait(db_path, nursery):
    s = await open_store(nursery, db_path, batch_wait_ms=300.0)
    rec, segs = msg(1)
    with trio.fail_after(3):
        await s.insert_messages([(rec, segs)])
    s.set_state_nowait(rec.id, State.QUEUED, now=T0 + 1)
    assert (await s.get_message("acme", rec.id)).message.state is State.ACCEPTED  # not yet
    t = trio.current_time()
    await s.flush()
    assert trio.current_time() - t < 0.15
    assert (await s.get_message("acme", rec.id)).message.state is State.QUEUED
    await s.flush()  # nothing queued: returns at once


# ---- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["missing_dir", "under_a_file"])
async def test_unusable_path_is_a_typed_error(tmp_path, where):
    if where == "missing_dir":
        path = tmp_path / "no" / "such" / "dir" / "gateway.db"
    else:
        (tmp_path / "file").write_text("x")
        path = tmp_path / "file" / "gateway.db"
    store = SqliteStore(config(path))
    async with trio.open_nursery() as n:
        with pytest.raises(StoreUnavailable) as info:
            await n.start(store.run)
    assert info.value.code == "store_unavailable"
    assert info.value.http_status == 503


async def test_locked_database_fails_callers_then_recovers(db_path, nursery):
    s = SqliteStore(config(db_path), busy_timeout=0.05)
    await nursery.start(s.run)
    rec, segs = msg(1)
    await s.insert_messages([(rec, segs)])

    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    s.set_state_nowait(rec.id, State.QUEUED, now=T0 + 1)
    with pytest.raises(StoreUnavailable) as info:
        await s.insert_messages([msg(2)])
    assert info.value.code == "store_unavailable" and "locked" in info.value.message
    assert s.stats.failed_batches >= 1 and s.stats.retried_ops >= 1
    other.execute("ROLLBACK")
    other.close()

    with trio.fail_after(5):  # the writer keeps going; the nowait op was kept and retried
        await s.insert_messages([msg(3)])
        await s.flush()
    assert (await s.get_message("acme", rec.id)).message.state is State.QUEUED
    assert await s.get_message("acme", "m000002") is None
    assert (await s.get_message("acme", "m000003")) is not None


async def test_not_running_store_is_unavailable(db_path):
    s = SqliteStore(config(db_path))
    with pytest.raises(StoreUnavailable):
        await s.get_message("acme", "x")


def test_bad_synchronous_setting(db_path):
    with pytest.raises(ValueError):
        SqliteStore(config(db_path), synchronous="sometimes")


async def test_query_plans_use_the_indexes(store, db_path):
    """Also once ANALYZE has statistics (PRAGMA optimize at close may run it)."""
    items = [msg(i, segments=2) for i in range(300)]
    await store.insert_messages(items)
    for rec, _ in items[:280]:
        store.set_state_nowait(rec.id, State.REJECTED, now=T0)
    await store.flush()
    conn = sqlite3.connect(db_path)
    conn.execute("ANALYZE")

    def plan(sql, params):
        return " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))

    assert "USING INDEX segments_id_key" in plan(
        "SELECT * FROM segments WHERE channel = ? AND id_key = ?", ("c", "k")
    )
    assert "USING INDEX messages_seg_id_key" in plan(
        "SELECT * FROM messages WHERE seg_channel = ? AND seg_id_key = ?", ("c", "k")
    )
    pk = "USING INDEX sqlite_autoindex_messages_1 (id=?)"
    for n in (1, 2, 64):  # the multi-row statements: one lookup per row, by key
        values = f"SCAN {n if n > 1 else ''} CONSTANT ROW{'S' if n > 1 else ''} | SCAN v | "
        values = values.replace("SCAN  ", "SCAN ")
        found = plan(S._sized(S._FIND_CLIENT_REFS, n, 2), ["t", "r"] * n)
        assert values + "SEARCH m USING INDEX messages_client_ref (tenant=? AND client_ref=?)" in found
        for new in State:
            if S.state_sql(new) is not None:
                sql = S._sized(S.state_sql(new, ("channel",), bulk=True), n, 7)
                row = ["x", "queued", 1.0, "c", 1, "e", "err"]  # a queued move
                assert values + "SEARCH messages " + pk in plan(sql, row * n)
        cols = len(S._SEG_FIELDS)
        sql = S._sized(S._BULK_UPDATE_SEGMENT, n, cols)
        assert values + "SEARCH segments USING PRIMARY KEY" in plan(sql, [None] * cols * n)
    for new in State:
        if S.state_sql(new) is not None:
            assert plan(S.state_sql(new, ("channel",)), ("x", 1.0, "c")) == "SEARCH messages " + pk
    assert "USING PRIMARY KEY" in plan(S._UPDATE_SEGMENT, (None,) * len(S._SEG_FIELDS))
    assert plan(S._UNFINISHED_MESSAGES, ()) == "SCAN messages USING INDEX messages_open"
    assert plan(S._UNFINISHED_SEGMENTS, ()) == (
        "SCAN m USING INDEX messages_open | SEARCH s USING PRIMARY KEY (message_id=?)"
    )
    assert plan(S._COUNT_OPEN, ()).startswith("SCAN messages USING INDEX messages_open")


def test_state_sql_follows_the_transition_table():
    state_sql = S.state_sql
    assert state_sql(State.ACCEPTED) is None  # nothing moves back to accepted
    sql = state_sql(State.SUBMITTED, ("channel", "attempts"))
    assert sql.endswith("WHERE messages.id = ?1 AND +messages.state IN ('submitting')")
    assert "channel = ?3, attempts = ?4" in sql and "submitted_at = ?2" in sql
    assert "done_at" not in sql
    assert "done_at = ?2" in state_sql(State.DELIVERED)
    # a coalesced chain: guarded by the sources of its first move, submitted_at carried
    sql = state_sql(State.DELIVERED, ("submitted_at",), first=State.SUBMITTING)
    assert sql.endswith("AND +messages.state IN ('queued')")
    assert "submitted_at = ?3" in sql and "done_at = ?2" in sql


async def test_a_full_queue_takes_progress_and_intake_each_up_to_batch_max(db_path):
    """Receipts and state changes queued behind a flood of inserts go in the next batch,
    with at most batch_max rows of inserts; a flush waits for everything queued before it,
    deferred inserts included. Without inserts (the pipelined sender's second slot), only
    progress is taken."""
    s = SqliteStore(config(db_path, batch_max=10))
    inserts = [S._Op(S._INSERT, [], weight=4) for _ in range(5)]  # 20 rows > batch_max
    receipt = S._Op(S._RECEIPT, [()], weight=3)
    state = S._Op(S._STATE, ("m", State.QUEUED), weight=1)
    flush = S._Op(S._FLUSH, None, weight=0)
    late = S._Op(S._STATE, ("m2", State.QUEUED), weight=1)
    for op in [*inserts[:3], receipt, *inserts[3:], state, flush, late]:
        s._enqueue(op)
    assert s._take(inserts=False) == [receipt, state, late]  # no insert, the flush waits
    assert s._queued_inserts == 5 and s._urgent == 1
    s._requeue([receipt, state, late])
    first = s._take()
    assert first == [receipt, state, late, inserts[0], inserts[1]]  # requeued first; 8 rows of inserts
    assert s._take() == inserts[2:4]  # a third would exceed batch_max
    assert s._urgent == 1  # the flush still waits for the last insert
    assert s._take() == [inserts[4], flush]
    assert s._queue == [] and s._queued_weight == 0 and s._urgent == 0
    assert s._queued_inserts == 0


async def test_receipts_commit_with_their_effects(store):
    """record_receipts stores the receipts, the segment versions and the message moves in
    one transaction; the moves obey the transition table like any other."""
    rec, segs = msg(1, state=State.SUBMITTED)
    done, done_segs = msg(2, state=State.DELIVERED)
    await store.insert_messages([(rec, segs), (done, done_segs)])
    seg = msgspec.structs.replace(
        segs[0], state=SegmentState.DELIVERED, receipt_at=T0 + 5, receipt="id:a1 stat:DELIVRD"
    )
    change = SegmentReceipt(rec.id, 1, SegmentState.DELIVERED, None, T0 + 5, "id:a1 stat:DELIVRD")
    unmatched = ReceiptRecord(  # settles nothing: a row of its own
        channel="ch1", smsc_message_id="b2", id_key="178", state=SegmentState.DELIVERED,
        raw="id:b2 stat:DELIVRD", received_at=T0 + 5,
    )
    batches = store.stats.batches
    await store.record_receipts(
        [unmatched],
        segments=[change],
        moves=[StateMove(rec.id, State.DELIVERED, T0 + 5), StateMove(done.id, State.EXPIRED, T0 + 5)],
    )
    assert store.stats.batches == batches + 1
    view = await store.get_message("acme", rec.id)
    assert view.message.state is State.DELIVERED and view.message.done_at == T0 + 5
    assert view.segments == [seg]
    assert (await store.get_message("acme", done.id)).message.state is State.DELIVERED  # refused
    assert store.stats.transitions_refused == 1 and store.stats.finished == {"delivered": 1}
    # both receipts are counted, one of them as a row of the receipts table
    assert (store.stats.receipts, store.stats.receipt_rows) == (2, 1)
    assert await store.unmatched_receipts() == [unmatched]


async def test_a_receipt_that_settles_its_segment_is_stored_in_the_segment_row(store, db_path):
    """v7: the receipt's text is written with its state, error and time, in segment 1's
    message row (riding on the message's move, or alone) or in `segments`, over a whole
    version queued in the same batch too; no receipts row. An op the store refuses (bad
    input) changes nothing, its segments included."""
    one, one_segs = msg(1, state=State.SUBMITTED)
    three, three_segs = msg(2, segments=3, state=State.SUBMITTED)
    await store.insert_messages([(one, one_segs), (three, three_segs)])
    await store.record_receipts(
        [],
        segments=[
            SegmentReceipt(one.id, 1, SegmentState.DELIVERED, None, T0 + 5, "id:1 stat:DELIVRD"),
            SegmentReceipt(three.id, 1, SegmentState.DELIVERED, None, T0 + 5, "id:31 stat:DELIVRD"),
            SegmentReceipt(three.id, 3, SegmentState.UNDELIVERABLE, "001", T0 + 5, "id:33 stat:UNDELIV"),
        ],
        moves=[StateMove(one.id, State.DELIVERED, T0 + 5)],
    )
    seg2 = msgspec.structs.replace(three_segs[1], state=SegmentState.SUBMITTED, channel="c", id_key="k")
    store.update_segment_nowait(seg2)
    store.record_receipts_nowait(
        [],
        segments=[SegmentReceipt(three.id, 2, SegmentState.DELIVERED, "000", T0 + 6, "id:32 stat:DELIVRD")],
        journal_seq=None,
    )
    await store.flush()
    view = await store.get_view(one.id)
    assert view.message.state is State.DELIVERED
    assert [(g.state, g.receipt) for g in view.segments] == [("delivered", "id:1 stat:DELIVRD")]
    view = await store.get_view(three.id)
    assert [(g.state, g.receipt_error, g.receipt) for g in view.segments] == [
        ("delivered", None, "id:31 stat:DELIVRD"),
        ("delivered", "000", "id:32 stat:DELIVRD"),
        ("undeliverable", "001", "id:33 stat:UNDELIV"),
    ]
    assert view.segments[1].id_key == "k"  # the whole version, the receipt over it
    assert (store.stats.receipts, store.stats.receipt_rows) == (4, 0)
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT count(*) FROM receipts").fetchone() == (0,)
    conn.close()

    # bad input: a receipts row the table refuses (raw NULL) fails its whole op
    bad = ReceiptRecord(channel="c", smsc_message_id="x", id_key="x", state=None, raw=None, received_at=T0)
    before = await store.get_view(three.id)
    with pytest.raises(StoreRejected):
        await store.record_receipts(
            [bad],
            segments=[SegmentReceipt(three.id, 1, SegmentState.UNDELIVERABLE, "009", T0 + 7, "id:31 again")],
            moves=[StateMove(three.id, State.UNDELIVERABLE, T0 + 7, "009")],
        )
    assert await store.get_view(three.id) == before
    assert (store.stats.receipts, store.stats.receipt_rows) == (4, 0)


async def test_a_receipt_move_stores_its_error_code(store):
    """A move to a failure carries the receipt error (error_code); a move without one
    (delivered) leaves error_code as it is, like set_state_nowait."""
    failed, failed_segs = msg(1, state=State.SUBMITTED)
    ok, ok_segs = msg(2, state=State.SUBMITTED)
    await store.insert_messages([(failed, failed_segs), (ok, ok_segs)])
    await store.record_receipts(
        [],
        segments=[
            SegmentReceipt(failed.id, 1, SegmentState.UNDELIVERABLE, "001", T0 + 5),
            SegmentReceipt(ok.id, 1, SegmentState.DELIVERED, "000", T0 + 5),
        ],
        moves=[StateMove(failed.id, State.UNDELIVERABLE, T0 + 5, "001"), StateMove(ok.id, State.DELIVERED, T0 + 5)],
    )
    view = await store.get_message("acme", failed.id)
    assert (view.message.state, view.message.error_code, view.message.error) == (State.UNDELIVERABLE, "001", None)
    assert view.message.done_at == T0 + 5
    view = await store.get_message("acme", ok.id)
    assert (view.message.state, view.message.error_code) == (State.DELIVERED, None)


@pytest.mark.parametrize("same_batch", [False, True])
async def test_a_receipt_writes_only_its_columns_of_the_segment(store, same_batch):
    """record_receipts writes a segment's state, receipt_error and receipt_at (the submit
    columns are stored already: the id_key index is not touched), also over a whole
    version queued in the same batch."""
    rec, segs = msg(1, state=State.SUBMITTED)
    await store.insert_messages([(rec, segs)])
    submitted = msgspec.structs.replace(
        segs[0], state=SegmentState.SUBMITTED, channel="ch1", smsc_message_id="0A1B",
        id_key="2587", submit_status=0, submitted_at=T0 + 1,
    )
    store.update_segment_nowait(submitted)
    if not same_batch:
        await store.flush()
    change = SegmentReceipt(rec.id, 1, SegmentState.UNDELIVERABLE, "001", T0 + 5)
    await store.record_receipts([], segments=[change])
    [stored] = (await store.get_message("acme", rec.id)).segments
    assert stored == msgspec.structs.replace(
        submitted, state=SegmentState.UNDELIVERABLE, receipt_error="001", receipt_at=T0 + 5
    )
    assert await store.find_segment("ch1", "2587") == stored
    assert store.stats.segments_updated == 2 and store.stats.segments_missing == 0


async def test_submitted_is_one_op_with_its_segments(store):
    """submitted_nowait: the segment versions and the move to SUBMITTED; `via` makes it the
    chain via -> submitted, guarded like a move to `via`; a receipt's move queued in the
    same batch extends that chain (one row write)."""
    a, a_segs = msg(1, state=State.QUEUED)
    b, b_segs = msg(2, state=State.SUBMITTING)
    c, c_segs = msg(3, state=State.SUBMITTING)
    d, d_segs = msg(4, state=State.QUEUED)
    await store.insert_messages([(a, a_segs), (b, b_segs), (c, c_segs), (d, d_segs)])
    seg = msgspec.structs.replace(
        a_segs[0], state=SegmentState.SUBMITTED, channel="ch1", smsc_message_id="0A",
        id_key="10", submit_status=0, submitted_at=T0 + 1,
    )
    store.submitted_nowait(a.id, now=T0 + 1, channel="ch1", attempts=1, segments=[seg], via=State.SUBMITTING)
    store.submitted_nowait(b.id, now=T0 + 1, channel="ch1", attempts=2)
    store.submitted_nowait(c.id, now=T0 + 1, channel="ch1", attempts=1, via=State.SUBMITTING)  # refused
    store.submitted_nowait(d.id, now=T0 + 1, channel="ch1", attempts=1, via=State.SUBMITTING)
    store.set_state_nowait(d.id, State.DELIVERED, now=T0 + 2)
    writes = store.stats.state_writes
    await store.flush()
    got = {m.id: (await store.get_message("acme", m.id)) for m in (a, b, c, d)}
    assert got[a.id].message.state is State.SUBMITTED and got[a.id].segments == [seg]
    assert got[a.id].message.submitted_at == T0 + 1 and got[a.id].message.attempts == 1
    assert got[b.id].message.state is State.SUBMITTED and got[b.id].message.attempts == 2
    assert got[c.id].message.state is State.SUBMITTING  # SUBMITTING may not move to SUBMITTING
    assert got[d.id].message.state is State.DELIVERED and got[d.id].message.submitted_at == T0 + 1
    assert store.stats.state_writes - writes == 3  # a, b, d (its three moves in one write)
    assert store.stats.transitions_refused == 2  # c's chain of two moves
    assert store.stats.segments_updated == 1


async def test_a_value_no_writer_can_take_fails_alone(store):
    """An integer beyond 64 bits: SQLite cannot bind it (thread), msgpack cannot carry it to
    the writer process (process); either way only its own caller fails."""
    outcomes = {}

    async def one(i, rec, segs):
        try:
            outcomes[i] = await store.insert_messages([(rec, segs)])
        except StoreRejected as e:
            outcomes[i] = e

    bad, bad_segs = msg(1)
    bad.attempts = 2**70
    async with trio.open_nursery() as n:
        n.start_soon(one, 0, bad, bad_segs)
        for i in range(1, 5):
            n.start_soon(one, i, *msg(i + 1))
    assert isinstance(outcomes.pop(0), StoreRejected)
    assert all(not r[0].existing for r in outcomes.values())
    assert store.stats.rejected_ops == 1
    assert await store.get_message("acme", bad.id) is None
    assert (await store.count_open())["accepted"] == 4


async def test_submitted_many_is_submitted_nowait_for_each(store):
    """submitted_many_nowait (one read's acceptances) stores what submitted_nowait for each
    would: one-segment messages as one op, a segment that is not its message's segment 1
    the general way in its place, refused moves refused alike (`via` guards them)."""
    states = [State.QUEUED, State.QUEUED, State.SUBMITTING, State.QUEUED]
    groups = []
    for base in (0, 10):  # 0..3 one call each, 10..13 in one submitted_many_nowait
        items = [msg(base + i, state=st, segments=2 if i == 1 else 1) for i, st in enumerate(states)]
        await store.insert_messages(items)
        accepted = []
        for i, (rec, segs) in enumerate(items):
            seg = segs[-1]  # message 1: its segment 2 alone
            seg = msgspec.structs.replace(
                seg, state=SegmentState.SUBMITTED, channel="ch1", smsc_message_id=f"{base + i:X}",
                id_key=str(base + i), submit_status=0, submitted_at=T0 + 1,
            )
            rec.channel, rec.attempts = "ch1", 1 + i % 2
            accepted.append((rec, seg))
        groups.append(accepted)
    for rec, seg in groups[0]:
        store.submitted_nowait(
            rec.id, now=T0 + 1, channel=rec.channel, attempts=rec.attempts, segments=[seg], via=State.SUBMITTING
        )
    ops = store.queued
    store.submitted_many_nowait(groups[1], now=T0 + 1, via=State.SUBMITTING)
    # [0], [1's segment 2], [2, 3] before; then 10 joins the tail op, [11's], [12, 13]
    assert store.queued - ops == 2
    await store.flush()
    assert store.stats.transitions_refused == 4  # message 2 of each group: SUBMITTING -> SUBMITTING

    def view(v):
        out = msgspec.to_builtins(v)
        out["message"].pop("id"), out["message"].pop("destination"), out["message"].pop("text")
        out["message"].pop("created_at"), out["message"].pop("updated_at")
        for g in out["segments"]:
            g.pop("message_id"), g.pop("smsc_message_id"), g.pop("id_key")
        return out

    for (a, _), (b, _) in zip(*groups):
        va, vb = await store.get_view(a.id), await store.get_view(b.id)
        assert view(va) == view(vb)
        assert va.message.state is (State.SUBMITTING if a.id.endswith("2") else State.SUBMITTED)
        assert [g.state for g in va.segments][-1] == SegmentState.SUBMITTED


async def test_consecutive_submitted_moves_share_one_op_in_queue_order(store):
    """submitted_nowait calls in a row are one op (one per burst of resps, not per
    message); a move queued after them still applies after them."""
    items = [msg(i, state=State.QUEUED) for i in range(5)]
    await store.insert_messages(items)
    ops_before = store.stats.ops
    for rec, _segs in items[:4]:
        store.submitted_nowait(rec.id, now=T0 + 1, channel="ch1", attempts=1, via=State.SUBMITTING)
    store.set_state_nowait(items[0][0].id, State.DELIVERED, now=T0 + 2)  # after its submitted
    store.submitted_nowait(items[4][0].id, now=T0 + 3, channel="ch1", attempts=1, via=State.SUBMITTING)
    assert store.queued == 3  # [submitted x4], [delivered], [submitted]
    await store.flush()
    assert store.stats.ops - ops_before == 4  # the three and the flush
    states = [(await store.get_view(rec.id)).message.state for rec, _ in items]
    assert states == [State.DELIVERED, *[State.SUBMITTED] * 4]
    assert store.stats.transitions_refused == 0


async def test_a_submitted_op_no_writer_can_take_fails_alone(store):
    """submitted_nowait with a value neither SQLite nor msgpack takes: only that op is
    refused (named as a "submitted" op in the error), the others in its batch apply."""
    a, a_segs = msg(1, state=State.QUEUED)
    b, b_segs = msg(2, state=State.QUEUED)
    await store.insert_messages([(a, a_segs), (b, b_segs)])
    store.submitted_nowait(a.id, now=T0 + 1, channel="ch1", attempts=2**70, via=State.SUBMITTING)
    store.submitted_nowait(b.id, now=T0 + 1, channel="ch1", attempts=1, via=State.SUBMITTING)
    await store.flush()
    assert store.stats.rejected_ops == 1
    assert (await store.get_message("acme", a.id)).message.state is State.QUEUED
    assert (await store.get_message("acme", b.id)).message.state is State.SUBMITTED
    store.set_state_nowait(a.id, State.SUBMITTING, now=T0 + 2)
    await store.flush()  # the writer goes on
    assert (await store.get_message("acme", a.id)).message.state is State.SUBMITTING


async def test_a_one_segment_submitted_op_no_writer_can_take_fails_alone(store):
    """The same with segment 1's version (the column form, _SUBMITTED_COLS): the bad move
    is refused alone, by msgpack in the gateway (process) or by SQLite in the writer's
    isolation pass (thread); the others of its op apply with their segment versions."""
    items = [msg(i, state=State.QUEUED) for i in range(3)]
    await store.insert_messages(items)
    for i, (rec, segs) in enumerate(items):
        seg = msgspec.structs.replace(segs[0], state=SegmentState.SUBMITTED, channel="ch1",
                                      smsc_message_id=f"0{i}", id_key=f"{i}", submit_status=0,
                                      submitted_at=T0 + 1)
        store.submitted_nowait(rec.id, now=T0 + 1, channel="ch1", attempts=2**70 if i == 1 else 1,
                               segments=[seg], via=State.SUBMITTING)
    assert store.queued == 1  # one op
    await store.flush()
    assert store.stats.rejected_ops == 1
    views = [await store.get_message("acme", rec.id) for rec, _ in items]
    assert [v.message.state for v in views] == [State.SUBMITTED, State.QUEUED, State.SUBMITTED]
    assert [v.segments[0].smsc_message_id for v in views] == ["00", None, "02"]
    assert store.stats.segments_updated == 2 and store.stats.transitions_applied == 4


async def test_a_writer_process_dying_while_idle_fails_nothing(db_path, nursery, writer_mode):
    """Killed with no batch in flight: the store lets it go at once, and the next batch
    starts a new writer process instead of failing on the dead pipe."""
    if writer_mode != "process":
        pytest.skip("only the process mode has a writer process")
    s = await open_store(nursery, db_path)
    await s.insert_messages([msg(1)])
    first_pid = s.writer_pid
    os.kill(first_pid, signal.SIGKILL)
    with trio.fail_after(10):
        await wait_for(lambda: s.writer_pid is None)
    [result] = await s.insert_messages([msg(2)])  # no StoreUnavailable
    assert not result.existing
    assert s.writer_pid not in (None, first_pid)
    assert s.stats.failed_batches == 0 and s.stats.writer_restarts == 1


async def test_killed_writer_process_fails_its_batch_and_restarts(db_path, nursery, writer_mode):
    """SIGKILL of the writer process mid-traffic: durable callers get StoreUnavailable (and
    succeed when they retry, idempotent on client_ref), no nowait op is lost, a new writer
    process takes over."""
    if writer_mode != "process":
        pytest.skip("only the process mode has a writer process")
    s = await open_store(nursery, db_path)
    first_pid = s.writer_pid
    assert first_pid is not None
    unavailable = 0
    n_messages = 400

    async def client(k):
        nonlocal unavailable
        for i in range(k, n_messages, 20):
            item = msg(i, client_ref=f"r{i}")
            while True:
                try:
                    [result] = await s.insert_messages([item])
                    break
                except StoreUnavailable:
                    unavailable += 1
                    await trio.sleep(0.01)
            s.set_state_nowait(result.record.id, State.QUEUED, now=T0 + 1)
            s.set_state_nowait(result.record.id, State.SUBMITTING, now=T0 + 2)
            await trio.sleep(0.001)

    async def killer():
        await wait_for(lambda: s.stats.messages_inserted >= 100)
        # while a batch is in flight (sent, not answered): it is the one that fails. Killed
        # between batches, the writer is only found dead and replaced by the next one.
        await wait_for(lambda: bool(s._inflight), every=0)
        os.kill(first_pid, signal.SIGKILL)

    with trio.fail_after(30):
        async with trio.open_nursery() as n:
            n.start_soon(killer)
            for k in range(20):
                n.start_soon(client, k)
        while True:
            try:
                await s.flush()
                break
            except StoreUnavailable:
                await trio.sleep(0.01)
    assert s.stats.failed_batches >= 1 and s.stats.writer_restarts == 1
    assert s.writer_pid not in (None, first_pid)
    assert s.stats.lost_ops == 0
    views = await s.unfinished()
    assert len(views) == n_messages
    assert all(v.message.state is State.SUBMITTING for v in views)  # every nowait move applied
    # and it keeps working
    await s.insert_messages([msg(10_000)])
    assert await s.get_message("acme", "m010000") is not None
    print("unavailable", unavailable, "retried", s.stats.retried_ops)


async def wait_for(predicate, every: float = 0.005) -> None:
    while not predicate():
        await trio.sleep(every)


# ---- files removed under the store -------------------------------------------------------


async def test_a_deleted_wal_keeps_what_was_acknowledged_and_stops_writes(db_path):
    """`rm gateway.db-wal` while the store runs: SQLite would keep committing into the
    removed file and the next start would lose every message since the last checkpoint. The
    writer notices after its next commit, copies the WAL into the database file, and takes
    no more writes (StoreUnavailable naming the file); a restart sees everything that was
    acknowledged."""
    async with trio.open_nursery() as n:
        s = await open_store(n, db_path)
        await s.insert_messages([msg(i) for i in range(1, 11)])
        os.unlink(f"{db_path}-wal")
        await s.insert_messages([msg(i) for i in range(11, 21)])  # committed, then noticed
        with pytest.raises(StoreUnavailable) as info:
            await s.insert_messages([msg(21)])
        assert "WAL file" in info.value.message and f"{db_path}-wal" in info.value.message
        assert "copied into the database file" in info.value.message
        n.cancel_scope.cancel()
    async with trio.open_nursery() as n:
        again = await open_store(n, db_path)
        for i in range(1, 21):
            assert await again.get_message("acme", f"m{i:06d}") is not None, i
        assert await again.get_message("acme", "m000021") is None
        await again.insert_messages([msg(21)])  # a new WAL: writes again
        assert await again.get_message("acme", "m000021") is not None
        n.cancel_scope.cancel()


async def test_a_replaced_database_file_stops_writes(db_path):
    async with trio.open_nursery() as n:
        s = await open_store(n, db_path)
        await s.insert_messages([msg(1)])
        os.rename(db_path, f"{db_path}.moved")
        Path(db_path).write_bytes(b"")  # another file at the path
        await s.insert_messages([msg(2)])
        with pytest.raises(StoreUnavailable) as info:
            await s.insert_messages([msg(3)])
        assert "database file" in info.value.message and "restart" in info.value.message
        n.cancel_scope.cancel()


async def test_a_deleted_wal_is_noticed_through_a_symlinked_path(tmp_path):
    """SQLite puts the WAL next to a symlink's target: that is the file watched."""
    real = tmp_path / "data"
    real.mkdir()
    link = tmp_path / "gateway.db"
    link.symlink_to(real / "gateway.db")
    async with trio.open_nursery() as n:
        s = await open_store(n, link)
        await s.insert_messages([msg(1)])
        assert (real / "gateway.db-wal").exists() and not Path(f"{link}-wal").exists()
        os.unlink(real / "gateway.db-wal")
        await s.insert_messages([msg(2)])
        with pytest.raises(StoreUnavailable) as info:
            await s.insert_messages([msg(3)])
        assert f"{real / 'gateway.db'}-wal" in info.value.message
        n.cancel_scope.cancel()


def _writer(path: Path) -> sqlite3.Connection:
    conn, *_ = S.open_writer(str(path), "FULL", 0.2, 128)  # a held snapshot: 0.2 s waits
    return conn


def _insert(conn: sqlite3.Connection, *ids: int) -> None:
    rows = []
    for i in ids:
        rec, segs = msg(i)
        rows.append(msgspec.structs.astuple(rec) + msgspec.structs.astuple(segs[0])[2:])
    S.execute_batch(conn, [(S._INSERT, S._insert_columns(rows, None))], True, 128)


def test_a_wal_not_all_copied_fails_its_batch_until_the_copy_completes(db_path, writer_mode):
    """A reader's snapshot holds WAL frames back from the checkpoint: the database file
    alone is not consistent yet, so the batch that found the WAL deleted is not reported
    durable, and the copy is retried before every later batch until it completes."""
    if writer_mode != "thread":
        pytest.skip("execute_batch directly, once")
    w = _writer(db_path)
    reader = sqlite3.connect(str(db_path), isolation_level=None)
    try:
        _insert(w, 1)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM messages").fetchone()  # a snapshot held
        _insert(w, 2)  # frames the checkpoint cannot copy while the snapshot is held
        os.unlink(f"{db_path}-wal")
        with pytest.raises(S.StoreFilesGone, match="not complete yet"):
            _insert(w, 3)
        assert w.copy_pending
        with pytest.raises(S.StoreFilesGone):
            _insert(w, 4)  # still held: still pending, nothing written
        assert w.copy_pending
        reader.execute("COMMIT")
        with pytest.raises(S.StoreFilesGone):
            _insert(w, 5)  # the copy completes before it refuses
        assert not w.copy_pending
    finally:
        reader.close()
        w.close()
    check = sqlite3.connect(str(db_path))
    ids = {r[0] for r in check.execute("SELECT id FROM messages")}
    check.close()
    assert {"m000001", "m000002", "m000003"} <= ids and not ids & {"m000004", "m000005"}


def test_a_stat_error_is_not_taken_for_a_removed_file(db_path, writer_mode, monkeypatch):
    if writer_mode != "thread":
        pytest.skip("execute_batch directly, once")
    w = _writer(db_path)
    try:
        real_stat = os.stat

        def flaky(p, *a, **kw):
            if str(p).endswith("-wal"):
                raise PermissionError(13, "Permission denied", str(p))
            return real_stat(p, *a, **kw)

        monkeypatch.setattr(S.os, "stat", flaky)
        _insert(w, 1)
        _insert(w, 2)
        assert w.gone is None
    finally:
        monkeypatch.undo()
        w.close()


async def test_a_restarted_writer_refuses_a_replaced_database(db_path, nursery, writer_mode):
    """The writer process dies after the database file was replaced: the new one does not
    open (and write to) whatever file is at the path now."""
    if writer_mode != "process":
        pytest.skip("only the process mode restarts its writer")
    s = await open_store(nursery, db_path)
    await s.insert_messages([msg(1)])
    other = db_path.with_name("other.db")
    S.open_writer(str(other), "FULL", 5.0, 128)[0].close()
    os.rename(db_path, f"{db_path}.moved")
    os.rename(other, db_path)  # another store file at the path
    first_pid = s.writer_pid
    os.kill(first_pid, signal.SIGKILL)
    with trio.fail_after(10):
        await wait_for(lambda: s.writer_pid is None)
    with pytest.raises(StoreUnavailable) as info:
        await s.insert_messages([msg(2)])
    assert "not the one this gateway opened" in info.value.message


def test_a_journaled_receipt_op_applied_before_is_skipped(db_path, writer_mode):
    """A batch requeued after its writer process died between COMMIT and reply comes again:
    its receipt ops carry journal seqs the committed mark already covers, and add nothing
    (no second receipt row, no second segment write or move)."""
    if writer_mode != "thread":
        pytest.skip("execute_batch directly, once")
    w = _writer(db_path)
    try:
        rec, _ = msg(1, state=State.SUBMITTED)
        _insert(w, 1)
        w.execute("UPDATE messages SET state = 'submitted', seg_state = 'submitted' WHERE id = ?", (rec.id,))
        receipt = ReceiptRecord(  # unmatched: a row
            channel="c", smsc_message_id="ab", id_key="ab", state="delivered", raw="id:ab stat:DELIVRD",
            received_at=T0 + 5,
        )
        op = S._receipt_op(
            [receipt],
            [SegmentReceipt(message_id=rec.id, seq=1, state=SegmentState.DELIVERED, receipt_error=None,
                            receipt_at=T0 + 5, receipt="id:cd stat:DELIVRD")],
            [StateMove(message_id=rec.id, state=State.DELIVERED, at=T0 + 5)],
            7,
        )
        first = S.execute_batch(w, [(op.kind, op.data)], True, 128)
        again = S.execute_batch(w, [(op.kind, op.data)], True, 128)
        later = S._receipt_op([receipt], [], [], 8)  # the next frame still applies
        third = S.execute_batch(w, [(later.kind, later.data)], True, 128)
    finally:
        w.close()
    assert (first.receipts, first.receipt_rows, first.applied, first.applied_before) == (2, 1, 1, 0)
    assert (again.receipts, again.applied, again.seg_updated, again.applied_before) == (0, 0, 0, 1)
    assert (third.receipts, third.applied_before) == (1, 0)
    check = sqlite3.connect(str(db_path))
    try:
        assert check.execute("SELECT count(*) FROM receipts").fetchone()[0] == 2
        assert check.execute("SELECT seq FROM receipt_journal").fetchone()[0] == 8
        assert check.execute("SELECT state, seg_receipt FROM messages").fetchone() == (
            "delivered", "id:cd stat:DELIVRD"
        )
    finally:
        check.close()
