"""Insert ops travel by column (sqlite._insert_columns): the columns equal in every row of
a request once, the others as lists. Whatever the rows, the database must end up exactly
as with the row-by-row statements (executemany, the reference), through msgpack too (the
writer process), duplicates of a client_ref included."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.store import sqlite as S

T0 = 1_795_000_000.0

# A request's messages share one template; hypothesis varies which columns differ.
_row_spec = st.fixed_dictionaries(
    {
        "dest": st.sampled_from(["4915100000001", "4915100000002", "447700900123"]),
        "ref": st.one_of(st.none(), st.sampled_from(["r1", "r2", "r3"])),
        "text": st.sampled_from(["code 1", "code 1", "héllo", ""]),
        "tenant": st.sampled_from(["acme", "acme", "beta"]),
        "created": st.sampled_from([T0, T0, T0 + 0.5, T0 + 1]),
        "priority": st.sampled_from([0, 0, 1, True]),
        "segments": st.sampled_from([1, 1, 1, 2, 3]),
        "concat": st.one_of(st.none(), st.integers(0, 255)),
    }
)
# sizes drawn evenly (lists alone mostly come out short): about 80 % reach the 8 rows an op
# needs to be written by column
_row_specs = st.integers(1, 40).flatmap(lambda n: st.lists(_row_spec, min_size=n, max_size=n))


def _rows(specs, start: int) -> tuple[list[tuple], dict[int, list[tuple]] | None]:
    rows: list[tuple] = []
    rests: dict[int, list[tuple]] = {}
    for k, sp in enumerate(specs):
        mid = f"m{start + k:08d}"
        rec = S.MessageRecord(
            id=mid, tenant=sp["tenant"], client_ref=sp["ref"], source_addr="Acme",
            destination=sp["dest"], text=sp["text"], category="otp", priority=sp["priority"],
            data_coding=0, segment_count=sp["segments"], created_at=sp["created"],
            updated_at=sp["created"], expires_at=T0 + 86_400,
            concat_ref=sp["concat"] if sp["segments"] > 1 else None,
        )
        segs = [S.SegmentRecord(message_id=mid, seq=n) for n in range(1, sp["segments"] + 1)]
        rows.append(msgspec.structs.astuple(rec) + msgspec.structs.astuple(segs[0])[2:])
        if len(segs) > 1:
            rests[k] = [msgspec.structs.astuple(seg) for seg in segs[1:]]
    return rows, rests or None


def _db(path: Path) -> sqlite3.Connection:
    conn, *_ = S.open_writer(str(path), "OFF", 1.0, 8)
    return conn


def _dump(conn: sqlite3.Connection) -> tuple[list, list]:
    messages = conn.execute("SELECT * FROM messages ORDER BY id").fetchall()
    segments = conn.execute("SELECT * FROM segments ORDER BY message_id, seq").fetchall()
    return messages, segments


# Per request: client_refs or none, multipart messages or none (a request without either
# and of _COLUMNS_MIN_ROWS rows or more is what the columns path writes as it came).
_requests = st.lists(st.tuples(_row_specs, st.booleans(), st.booleans()), min_size=1, max_size=4)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=_requests, wire=st.booleans())
def test_columns_store_what_rows_store(tmp_path_factory, requests, wire):
    d = tmp_path_factory.mktemp("cols")
    ops, start = [], 0
    for specs, refs, multipart in requests:
        specs = [
            {**sp, "ref": sp["ref"] if refs else None, "segments": sp["segments"] if multipart else 1}
            for sp in specs
        ]
        rows, rests = _rows(specs, start)
        start += len(specs)
        data = S._insert_columns(rows, rests)
        assert S._insert_rows(data) == rows  # nothing lost on the way
        if wire:  # as the writer process gets it: lists, int keys
            data = msgspec.msgpack.decode(msgspec.msgpack.encode(data))
        ops.append((S._INSERT, data))
    results = {}
    dumps = {}
    for name, bulk in (("columns", True), ("rows", False)):
        conn = _db(d / f"{name}.db")
        counts = S.execute_batch(conn, ops, bulk, 8)
        results[name] = (counts.inserted, counts.duplicates, counts.results)
        dumps[name] = _dump(conn)
        conn.close()
    assert dumps["columns"] == dumps["rows"]
    assert results["columns"] == results["rows"]
    # every client_ref of a tenant once; the rest all stored
    messages, _ = dumps["columns"]
    refs = [(m[1], m[2]) for m in messages if m[2] is not None]
    assert len(refs) == len(set(refs))


def test_a_request_without_client_refs_binds_its_equal_columns_once(tmp_path):
    rows, _ = _rows([{"dest": f"49151000{i:05d}", "ref": None, "text": "code 1", "tenant": "acme",
                      "created": T0, "priority": 0, "segments": 1, "concat": None} for i in range(20)], 0)
    n, shared, values, varying, columns, rests = S._insert_columns(rows, None)
    assert n == 20 and rests is None
    assert [S._MSG_ROW[j] for j in varying] == ["id", "destination"]
    assert values[shared.index(S._MSG_ROW.index("text"))] == "code 1"
    conn = _db(tmp_path / "db")
    seen: list[tuple[str, list]] = []

    class Recording:  # the writer connection, its statements and parameters recorded
        def __getattr__(self, name):
            return getattr(conn, name)

        def execute(self, sql, params=()):
            seen.append((sql, list(params)))
            return conn.execute(sql, params)

    counts = S.execute_batch(Recording(), [(S._INSERT, S._insert_columns(rows, None))], True, 8)
    assert counts.inserted == 20 and counts.results == {0: [None] * 20}
    inserts = [(sql, params) for sql, params in seen if sql.startswith("INSERT INTO messages")]
    bound_once = sum(1 for v in values if v is not None)
    assert [len(params) for _sql, params in inserts] == [bound_once + 2 * k for k in (8, 8, 4)]
    assert all(params.count("code 1") == 1 for _sql, params in inserts)
    assert conn.execute("SELECT count(*) FROM messages WHERE text = 'code 1'").fetchone() == (20,)


_message_spec = st.fixed_dictionaries(
    {
        "dest": st.sampled_from(["4915100000001", "447700900123"]),
        "ref": st.one_of(st.none(), st.sampled_from(["r1", "r2"])),
        "created": st.sampled_from([T0, T0 + 0.5]),
        "priority": st.sampled_from([0, 1, True]),
        "count": st.sampled_from([1, 1, 1, 1.0, 2]),  # segment_count
        # the segments given: its own segment 1 (the usual), or something else
        "segs": st.sampled_from(["own", "own", "own", "seq2", "other", "none", "two"]),
    }
)


@given(st.lists(_message_spec, min_size=1, max_size=30))
@settings(max_examples=300)
def test_the_one_segment_insert_is_the_row_by_row_op(specs):
    """_one_segment_insert (the usual request, built by column) makes exactly the op the
    row-by-row _insert_op makes, or declines (None) and leaves the request to it: every
    message must come with its own segment 1 alone."""
    messages = []
    for k, sp in enumerate(specs):
        mid = f"m{k:08d}"
        rec = S.MessageRecord(
            id=mid, tenant="acme", client_ref=sp["ref"], source_addr="Acme", destination=sp["dest"],
            text="code 1", category="otp", priority=sp["priority"], data_coding=0,
            segment_count=sp["count"], created_at=sp["created"], updated_at=sp["created"],
            expires_at=T0 + 86_400,
        )
        segs = {
            "own": [S.SegmentRecord(message_id=mid, seq=1)],
            "seq2": [S.SegmentRecord(message_id=mid, seq=2)],
            "other": [S.SegmentRecord(message_id="elsewhere", seq=1)],
            "none": [],
            "two": [S.SegmentRecord(message_id=mid, seq=1), S.SegmentRecord(message_id=mid, seq=2)],
        }[sp["segs"]]
        messages.append((rec, segs))
    fast = S._one_segment_insert(messages)
    usual = all(sp["segs"] == "own" and sp["count"] == 1 for sp in specs)
    assert (fast is not None) == usual
    if fast is None:
        return
    slow = S._insert_op(messages)
    assert fast.kind == slow.kind and fast.weight == slow.weight and fast.recs == slow.recs
    assert msgspec.msgpack.encode(fast.data) == msgspec.msgpack.encode(slow.data)
    assert S._insert_rows(fast.data) == S._insert_rows(slow.data)
