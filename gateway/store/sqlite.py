"""The embedded store: SQLite in WAL mode behind one batching writer task.

Theory of operation
-------------------

Connections. Two `sqlite3` connections per store, each used by one thread at a time
(`check_same_thread` is off because trio's worker threads change):

- the writer connection belongs to the writer alone: a worker thread of this process, or
  the writer process (see "Writer mode" below). WAL journal, `synchronous=FULL`, foreign
  keys on, `busy_timeout`;
- the read connection (`query_only`) serves every read. In WAL mode readers never block the
  writer nor wait for it, so reads run concurrently with a commit in progress. Each read is
  its own short transaction, so it sees everything committed before it started.

Durability. "Accepted" means "in the store before the API answers" and a receipt is
acknowledged only after it is stored. With WAL, `synchronous=NORMAL` commits without fsync:
a committed transaction survives a process crash (kill -9: the WAL is in the OS page cache)
but NOT a power cut or a kernel panic, where the last commits may roll back. Those are
exactly the messages we already answered 202 for, so the writer uses `synchronous=FULL`: the
WAL is fsynced at every commit. The price is one fsync per group commit, not per message
(bench/store_bench.py measures FULL against NORMAL).

Group commit. Every write is an op queued on one in-memory list; the writer task takes the
first op, then waits until the op at the head has waited `batch_wait_ms` or `batch_max` rows
are queued (whichever comes first; a `flush()` cuts the wait short), and executes the whole
batch in ONE hop to the writer and ONE transaction: inserts first, then state changes
(a message's consecutive moves coalesced into one UPDATE), segment updates, receipts and
late receipt matches, each group as a few multi-row statements (see the comment above
_INSERT_MESSAGE). Only then are the callers of durable ops woken. When more is queued than
one batch takes, pipeline progress goes before intake inserts (`_take`). While a
batch commits, new ops pile up for the next one, so the batch size grows with the load and
the per-message cost falls (DESIGN.md: a writer that flushed whatever was queued the moment
it woke made 3-row batches at +98 us/message, waiting a short bounded time to fill the batch
+10 us/message). The wait is for open-loop streams (submit results, receipts); with a fixed
number of callers each awaiting its write, the batch holds them all anyway and the wait only
adds latency (bench/store_bench.py --compare-wait).

Kinds are applied in a fixed order (inserts, states, segments, receipts). That is safe
because the only cross-kind dependency is "the message exists" (inserted first). Within a
kind the queue order is kept where it matters: several state changes of one message in one
batch form chains, one write per chain (`_apply_states`), and of several versions of one
segment the last one queued is written. The state UPDATEs are generated from gateway.states.TRANSITIONS (`state_sql`): a
move the table does not allow from the stored state changes no row and is counted.

The usual message's two writes after intake, the SMSC's acceptance and its receipt, travel
by column (a one-segment submitted_nowait is a row of a _SUBMITTED_COLS op, a receipt op
pairs each segment-1 receipt with its message's move) and are written by `_apply_fast`,
per group one UPDATE with the values the rows share bound once, when no other op of the
batch names the message; else they become rows of the general way at their op's place
(see "rows by column" below, and docs/architecture.md).

Writer mode (`[store] writer`). "thread": the batch runs in a trio worker thread on the
writer connection, sharing the GIL with the trio thread. "process": the store starts a
writer process (`python -m gateway.store.sqlite_writer`, inside `run()`: the store owns
it), which opens its own writer connection with the same settings and migrations; each
batch goes to it as plain data over its stdin (length-prefixed msgpack) and its answer
comes back over stdout after COMMIT. The same `execute_batch` runs in both modes, so the
order of kinds, coalescing, savepoint isolation and results are identical; only the read
connection stays in this process. A value msgpack cannot carry (an int beyond 64 bits)
is refused for its op alone, as SQLite would refuse it. If the process dies, the batch in
flight fails like an environment error (below: StoreUnavailable, nowait ops requeued; a
batch it committed before dying is then retried: inserts are idempotent on client_ref,
state moves guarded by the table, segment versions and matches idempotent), and the next
batch starts a new process after the writer's back-off (`stats.writer_restarts`).

Read-your-writes: a read sees every durable write that returned before it started; a
`*_nowait` op is visible once committed (`flush()` waits for that).

Queue bound. The queue is unbounded and never drops an op. Durable ops are bounded by their
awaiting callers; `*_nowait` ops by the work in flight in the pipeline (a few per message on
its way). `queued` exposes the length for monitoring.

Failures. SQLite errors caused by the environment (disk full, I/O error, database locked
beyond busy_timeout, read-only file) fail the whole batch: every awaiting caller gets
`StoreUnavailable` (HTTP 503; the API client retries, idempotent on client_ref; the SMSC
redelivers an unacknowledged receipt), the `*_nowait` ops go back to the head of the queue
and the writer retries after a back-off (they are never dropped while the store runs).
Errors caused by one op's data (a constraint, a value that cannot be bound) make the writer
redo the batch op by op, each in a SAVEPOINT: only the offending op fails (`StoreRejected`),
the others commit. The writer keeps going in both cases.

Shutdown. Cancelling `run()` lets the batch in progress finish (a thread hop cannot be
interrupted, a pipe exchange is shielded), then, shielded and bounded by `shutdown_timeout`,
commits what is still queued and closes both connections (the writer process: its stdin is
closed, it closes its connection and exits; killed if it has not within shutdown_timeout).
Ops still queued after that fail with StoreUnavailable.
"""

from __future__ import annotations

import fcntl
import functools
import operator
import os
import re
import sqlite3
import subprocess
import struct
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from itertools import chain, repeat
from typing import Any

import msgspec
import structlog
import trio

from gateway.config import StoreConfig
from gateway.errors import GatewayError, Unavailable
from gateway.states import FINAL, TRANSITIONS, State
from gateway.store.base import InsertResult, Store
from gateway.store.migrations import StoreVersionError, migrate
from gateway.store.records import (
    MessageRecord,
    MessageView,
    ReceiptRecord,
    SegmentReceipt,
    SegmentRecord,
    StateMove,
)

__all__ = ["SqliteStore", "StoreRejected", "StoreStats", "StoreUnavailable", "StoreVersionError"]

log = structlog.get_logger("gateway.store")


class StoreUnavailable(Unavailable):
    """The store cannot take or serve data right now (disk full, I/O error, locked, closed).
    Nothing of the failed operation was stored; retrying later is safe."""

    code = "store_unavailable"
    http_status = 503


class StoreRejected(GatewayError):
    """The store refused this one operation's data (a constraint such as a duplicate message
    id, or a value it cannot store): a bug upstream, not an outage. Nothing was stored."""

    code = "store_rejected"
    http_status = 500


class StoreStats(msgspec.Struct, kw_only=True):
    batches: int = 0  # committed write transactions (group commits)
    ops: int = 0  # ops committed (an insert call is one op)
    rows: int = 0  # rows written or attempted: messages + segments + updates + receipts
    max_batch_ops: int = 0
    messages_inserted: int = 0
    duplicates: int = 0  # inserts answered with the existing message (tenant, client_ref)
    transitions_applied: int = 0
    transitions_refused: int = 0  # illegal moves (or unknown message ids), never applied
    state_writes: int = 0  # message rows updated for those moves (a batch's chain is one)
    # messages that reached each final state since the store opened (monitoring: rates)
    finished: dict[str, int] = msgspec.field(default_factory=dict)
    segments_updated: int = 0
    segments_missing: int = 0  # segment updates naming no stored segment
    # receipts stored: in the row of the segment each settled (v7), or as rows of the
    # receipts table (those that settled nothing: unmatched, intermediate)
    receipts: int = 0
    receipt_rows: int = 0  # of those, rows of the receipts table
    receipts_matched: int = 0  # stored unmatched, linked later by match_receipt_nowait
    # receipt ops skipped: their journal frame was applied by an earlier commit (a batch
    # requeued after a writer process died between its COMMIT and its reply)
    receipt_ops_applied_before: int = 0
    rejected_ops: int = 0  # ops refused for their data (StoreRejected)
    isolated_batches: int = 0  # batches redone op by op to isolate a bad op
    failed_batches: int = 0  # batches that failed as a whole (StoreUnavailable)
    retried_ops: int = 0  # nowait ops put back in the queue after a failed batch
    lost_ops: int = 0  # nowait ops still queued when the store closed (disk failing)
    writer_restarts: int = 0  # writer processes started after one died (writer = "process")
    commit_seconds: float = 0.0  # time in the writer's thread hops, total
    commit_cpu_seconds: float = 0.0  # CPU time of the writer thread (or process) in those hops
    last_commit_at: float | None = None  # store clock
    last_error: str | None = None


# ---- SQL generated from the records and the state table --------------------------------

_MSG_FIELDS = tuple(f.name for f in msgspec.structs.fields(MessageRecord))
_SEG_FIELDS = tuple(f.name for f in msgspec.structs.fields(SegmentRecord))
_RCPT_FIELDS = tuple(f.name for f in msgspec.structs.fields(ReceiptRecord))
_SEG_KEY = ("message_id", "seq")
# Segment 1 of a message is kept in its message's row (migration v5): these columns, the
# segment's non-key fields prefixed; seg_state NULL means the message has no segment 1.
_SEG1_FIELDS = tuple("seg_" + n for n in _SEG_FIELDS[2:])
_MSG_ROW = _MSG_FIELDS + _SEG1_FIELDS  # a messages row as written at intake
_NO_SEG1 = (None,) * len(_SEG1_FIELDS)
_TENANT, _CLIENT_REF = _MSG_FIELDS.index("tenant"), _MSG_FIELDS.index("client_ref")
_SEGMENT_COUNT = _MSG_FIELDS.index("segment_count")
assert _SEG_FIELDS[:2] == _SEG_KEY, "segment rows put the key first"


def _cols(names: Sequence[str], prefix: str = "") -> str:
    return ", ".join(prefix + n for n in names)


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _q(state: State) -> str:
    if not re.fullmatch(r"[a-z_]+", state.value):
        raise ValueError(f"state value not usable as an SQL literal: {state.value!r}")
    return f"'{state.value}'"


# Writes. By default each group of rows (one kind, one batch) is written by a few
# multi-row statements: `INSERT ... VALUES (?, ...), (?, ...), ...` and
# `UPDATE ... FROM (VALUES ...) AS v`, up to _CHUNK_ROWS rows each. Why not executemany:
# sqlite3 releases the GIL around every statement step, i.e. once per row, and each time the
# writer thread has to win it back from the trio thread; when that thread is busy, each
# hand-over can cost up to the switch interval (5 ms). Measured with the trio thread kept
# busy (bench/store_bench.py --busy): executemany collapsed to 10-800 msg/s (commits of 175
# rows taking up to 2 s); one statement per group kept its rate. The first bulk form passed
# the rows as one JSON parameter unpacked by json_each; SQLite 3.40 re-parses the JSON text
# for every `->>` column, which made a 21-column message insert cost 12-13 us a row against
# 5 us with bound VALUES (docs/benchmarks.md, "Store"). Bound values also carry NUL
# characters, which JSON text in SQLite cannot. SqliteStore(bulk_writes=False) selects
# executemany. Statement texts are cached per row count; counts are split into powers of
# two so each kind has at most log2(_CHUNK_ROWS) + 1 texts.
_INSERT_MESSAGE = f"INSERT INTO messages ({_cols(_MSG_ROW)}) VALUES ({_marks(len(_MSG_ROW))})"
_INSERT_SEGMENT = f"INSERT INTO segments ({_cols(_SEG_FIELDS)}) VALUES ({_marks(len(_SEG_FIELDS))})"
_INSERT_RECEIPT = (
    f"INSERT INTO receipts ({_cols(_RCPT_FIELDS)}) VALUES ({_marks(len(_RCPT_FIELDS))})"
)
# update params: the non-key fields in order, then message_id, seq
_UPDATE_SEGMENT = (
    "UPDATE segments SET "
    + ", ".join(f"{n} = ?" for n in _SEG_FIELDS[2:])
    + " WHERE message_id = ? AND seq = ?"
)

_CHUNK_ROWS = 128  # rows per multi-row statement at most (a power of two)


def _v(i: int) -> str:
    """Column i (0-based) of a `(VALUES ...) AS v` row."""
    return f"v.column{i + 1}"


# `{rows}` is replaced by the rows' placeholders: "(?, ?), (?, ?), ..."
_BULK_INSERT_MESSAGE = f"INSERT INTO messages ({_cols(_MSG_ROW)}) VALUES {{rows}}"
_BULK_INSERT_SEGMENT = f"INSERT INTO segments ({_cols(_SEG_FIELDS)}) VALUES {{rows}}"
_BULK_INSERT_RECEIPT = f"INSERT INTO receipts ({_cols(_RCPT_FIELDS)}) VALUES {{rows}}"
# UPDATE ... FROM changes a target row at most once: callers pass each key once.
_BULK_UPDATE_SEGMENT = (
    "UPDATE segments SET "
    + ", ".join(f"{n} = {_v(i)}" for i, n in enumerate(_SEG_FIELDS[2:]))
    + " FROM (VALUES {rows}) AS v"
    + f" WHERE segments.message_id = {_v(len(_SEG_FIELDS) - 2)}"
    + f" AND segments.seq = {_v(len(_SEG_FIELDS) - 1)}"
)


def _seg1_updates(columns: Sequence[str]) -> tuple[str, str]:
    """Segment 1's `columns` written in its message row: (the row-by-row UPDATE, the
    multi-row one), with the segments forms' params: the values, then message_id and seq
    (the row form names seq too, so that the number of params matches; it is 1 here)."""
    n = len(columns)
    row = (
        "UPDATE messages SET "
        + ", ".join(f"{c} = ?" for c in columns)
        + f" WHERE id = ?{n + 1} AND ?{n + 2} = 1 AND seg_state IS NOT NULL"
    )
    bulk = (
        "UPDATE messages SET "
        + ", ".join(f"{c} = {_v(i)}" for i, c in enumerate(columns))
        + " FROM (VALUES {rows}) AS v"
        + f" WHERE messages.id = {_v(n)} AND messages.seg_state IS NOT NULL"
    )
    return row, bulk


# Segment 1's versions, in its message row (same params as the segments forms).
_UPDATE_SEG1, _BULK_UPDATE_SEG1 = _seg1_updates(_SEG1_FIELDS)
# What a receipt changes in its segment (record_receipts): only these columns, so the
# id_key index is left alone and fewer values are bound; a full version of the same segment
# queued in the same batch is written whole instead (_apply). Row: these, then the key.
# The receipt's text is one of them (v7): the receipt that settles a segment is stored by
# this write, with no row in `receipts`.
_RECEIPT_SEG_FIELDS = ("state", "receipt_error", "receipt_at", "receipt")
_RECEIPT_SEG_AT = tuple(_SEG_FIELDS.index(n) - 2 for n in _RECEIPT_SEG_FIELDS)
assert tuple(f.name for f in msgspec.structs.fields(SegmentReceipt)) == _SEG_KEY + _RECEIPT_SEG_FIELDS


def _segment_row(seg: SegmentRecord) -> tuple:
    """A whole segment version as queued: the non-key columns, then message_id, seq."""
    t = msgspec.structs.astuple(seg)
    return t[2:] + t[:2]


def _columns(rows: Sequence[tuple], varies: tuple[int, ...] = ()) -> list:
    """Rows (tuples of one length, at least one) by column, each column equal in every row
    sent once: [n, shared columns, their values, the other columns, their values: one
    tuple per column, row by row]. `varies`: columns taken as differing without a look
    (an id), whatever their values.

    "Equal" is == and one type: 1, 1.0 and True are equal in Python but not bound alike
    (in a TEXT column 1 and 1.0 would store "1" and "1.0")."""
    return _columns_of(zip(*rows), len(rows), varies)


def _columns_of(cols: Iterable[tuple], n: int, varies: tuple[int, ...] = ()) -> list:
    """_columns of rows given as their columns (tuples of n values each)."""
    shared: list[int] = []
    values: list[Any] = []
    varying: list[int] = []
    columns: list[tuple] = []
    for j, col in enumerate(cols):
        v = col[0]
        # C speed: count() tests identity first (one template's values), then ==. Of the
        # values equal to a float that is not integral (a time), none is an int or a bool.
        if (
            j not in varies
            and col.count(v) == n
            and (
                v is None
                or type(v) is str
                or (type(v) is float and not v.is_integer())
                or len(set(map(type, col))) == 1
            )
        ):
            shared.append(j)
            values.append(v)
        else:
            varying.append(j)
            columns.append(col)
    return [n, shared, values, varying, columns]


def _column_rows(data: Sequence[Any]) -> list[tuple]:
    """The rows of columns made by _columns (its first five items), as they were built."""
    n, shared, values, varying, columns = data[:5]
    cols: list[Any] = [None] * (len(shared) + len(varying))
    for j, v in zip(shared, values):
        cols[j] = (v,) * n
    for j, col in zip(varying, columns):
        if len(col) != n:
            raise ValueError(f"a column of {len(col)} values in an op of {n} rows")
        cols[j] = col
    return list(zip(*cols))


def _insert_columns(rows: list[tuple], rests: dict[int, list[tuple]] | None) -> tuple:
    """An insert op's data: its messages rows (_MSG_ROW) by column (_columns), then its
    segment rows 2.. per row index or None: (n, shared columns, their values, the other
    columns, their values, rests).

    The messages of one request share most of their row (tenant, text, category, times,
    channel, segment 1's state...): only the id, the recipient and perhaps the client_ref
    and concatenation reference differ. Sent row by row, the writer process decoded and
    freed ~25 equal values per message for nothing."""
    return (*_columns(rows), rests)


def _insert_op(messages: Sequence[tuple[MessageRecord, Sequence[SegmentRecord]]]) -> _Op:
    """The insert op of `messages`, row by row: any segments (segment 1 in its message's
    row, the others as rows of their own), each message checked; StoreRejected if one's
    segments are not its own 1..segment_count. (The usual request, every message with
    its own segment 1 alone, is built by column instead: _one_segment_insert.)"""
    rows = []
    rests: dict[int, list[tuple]] | None = None  # row index -> its segments 2.. (if any)
    recs = []
    weight = 0
    astuple = msgspec.structs.astuple
    for rec, segs in messages:
        first = _NO_SEG1
        rest = []
        for seg in segs:
            if seg.message_id != rec.id:
                raise StoreRejected(
                    f"segment {seg.seq} names message {seg.message_id!r}, not {rec.id!r}"
                )
            if seg.seq == 1 and first is _NO_SEG1:
                first = astuple(seg)[2:]  # segment 1 goes into the message row
            else:
                rest.append(astuple(seg))
        if len(segs) != rec.segment_count or (
            len(segs) > 1 and sorted(seg.seq for seg in segs) != list(range(1, len(segs) + 1))
        ):
            raise StoreRejected(
                f"message {rec.id!r} of {rec.segment_count} segment(s) comes with segments"
                f" {[seg.seq for seg in segs]}, not 1..{rec.segment_count}"
            )
        if rest:
            if rests is None:
                rests = {}
            rests[len(rows)] = rest
        # Rows are snapshots taken now: later changes to the records do not leak in.
        rows.append(astuple(rec) + first)
        recs.append(rec)
        weight += 1 + len(segs)
    op = _Op(_INSERT, _insert_columns(rows, rests), weight)
    op.recs = recs
    return op


def _one_segment_insert(messages: Sequence[tuple[MessageRecord, Sequence[SegmentRecord]]]) -> _Op | None:
    """The insert op of `messages` if every one has exactly its own segment 1 (a request's
    usual messages), else None (insert_messages checks them one by one). Its data is
    insert_messages' own (_insert_columns), built by column with no row per message: the
    records' fields transposed, then segment 1's after its key; every check is a C call
    over a column."""
    n = len(messages)
    recs, segss = zip(*messages)
    if list(map(len, segss)).count(1) != n:
        return None
    astuple = msgspec.structs.astuple
    msg_cols = list(zip(*map(astuple, recs)))
    seg_cols = list(zip(*[astuple(segs[0]) for segs in segss]))
    if (
        msg_cols[_SEGMENT_COUNT].count(1) != n
        or seg_cols[1].count(1) != n  # seq
        or seg_cols[0] != msg_cols[0]  # message_id: each message's own
    ):
        return None
    op = _Op(_INSERT, (*_columns_of(msg_cols + seg_cols[2:], n), None), 2 * n)
    op.recs = list(recs)  # snapshots taken now (the columns): later changes do not leak in
    return op


def _insert_rows(data: Sequence[Any]) -> list[tuple]:
    """The rows of an insert op's data (_insert_columns), as they were built."""
    return _column_rows(data)


def _with_receipt(version: tuple, receipt: tuple) -> tuple:
    """A whole segment version (update_segment_nowait's layout) with a receipt's columns
    (record_receipts' layout: _RECEIPT_SEG_FIELDS, message_id, seq) over it."""
    row = list(version)
    for i, at in enumerate(_RECEIPT_SEG_AT):
        row[at] = receipt[i]
    return tuple(row)


def _receipt_op(
    receipts: Sequence[ReceiptRecord],
    segments: Sequence[SegmentReceipt],
    moves: Sequence[StateMove],
    journal_seq: int | None,
) -> _Op:
    """A receipt batch's op: (receipt rows, segment receipt columns, moves, journal seq,
    pairs). `pairs`: the segment-1 receipts that come with their message's move (a
    one-segment message's receipt, the usual case), one _PAIR_ROW each, by column
    (_columns), or None; the other segment receipts and moves as rows.

    The writer sends a pair the general way where another row of the batch names its
    message (_apply): its segment receipt before the op's other segment receipts, its move
    after the op's other moves, pairs in their order. That is the general form's order
    because a pair is its message's first segment-1 receipt in the op and its only move
    (paired by message; with two moves of one message in the op nothing is), or the op is
    nothing but pairs, in the order of its receipts and moves (the usual batch, paired by
    position, where a message may have several)."""
    rows = [msgspec.structs.astuple(r) for r in receipts]
    pairs: list[tuple] = []
    if segments and len(segments) == len(moves):
        # The usual batch (one-segment messages): each segment receipt with its message's
        # move in the same place, as the channel builds them. Paired by position.
        for g, m in zip(segments, moves):
            if g.seq != 1 or g.message_id != m.message_id:
                break
            state = m.state
            pairs.append((
                g.message_id, g.state, g.receipt_error, g.receipt_at, g.receipt,
                (state if type(state) is State else State(state))._value_, m.at, m.error_code,
            ))
        else:  # nothing but pairs (a message may have several: see above)
            cols = _columns_of(zip(*pairs), len(pairs), _PAIR_VARIES)
            return _Op(_RECEIPT, (rows, [], [], journal_seq, cols), max(1, len(rows) + 2 * len(pairs)))
        pairs = []
    by_id = {m.message_id: m for m in moves} if segments else None
    if by_id is not None and len(by_id) == len(moves):
        rest = []
        for g in segments:
            m = by_id.pop(g.message_id, None) if g.seq == 1 else None
            if m is None:
                rest.append(g)
            else:
                pairs.append((
                    g.message_id, g.state, g.receipt_error, g.receipt_at, g.receipt,
                    (m.state if type(m.state) is State else State(m.state))._value_, m.at,
                    m.error_code,
                ))
        segments, moves = rest, list(by_id.values())
    seg_rows = [(g.state, g.receipt_error, g.receipt_at, g.receipt, g.message_id, g.seq) for g in segments]
    states = [  # set_state_nowait's layout: id, state, now, channel, attempts, error_code, error
        (m.message_id, (m.state if type(m.state) is State else State(m.state))._value_, m.at,
         None, None, m.error_code, None)
        for m in moves
    ]
    weight = len(rows) + len(seg_rows) + len(states) + 2 * len(pairs)
    data = (rows, seg_rows, states, journal_seq, _columns(pairs, _PAIR_VARIES) if pairs else None)
    return _Op(_RECEIPT, data, max(1, weight))


def _via_value(via: State | None) -> str | None:
    """A submitted move's `via` as queued: its plain str value (see _Op), or None."""
    return None if via is None else (via if type(via) is State else State(via))._value_


def _sub_row(
    message_id: str, now: float, channel: str | None, attempts: int | None, first: str | None,
    seg: SegmentRecord,
) -> tuple:
    """A _SUB_ROW: a one-segment message's move to SUBMITTED (`first`: its via value) with
    its segment 1's version, a snapshot taken now."""
    return (message_id, now, channel, attempts, first, *msgspec.structs.astuple(seg)[2:])


def _submitted_op(
    message_id: str,
    now: float,
    channel: str | None,
    attempts: int | None,
    segments: Sequence[SegmentRecord],
    via: State | None,
) -> _Op:
    """A submitted_nowait's op: with the message's own segment 1 alone (the usual), a
    _SUB_ROW of a _SUBMITTED_COLS op (sent by column); else an item of a _SUBMITTED op
    (message id, now, channel, attempts, via, its segments' versions)."""
    first = _via_value(via)
    if len(segments) == 1:
        seg = segments[0]
        if seg.seq == 1 and seg.message_id == message_id:
            return _Op(_SUBMITTED_COLS, [_sub_row(message_id, now, channel, attempts, first, seg)], 2)
    rows = [_segment_row(seg) for seg in segments]
    return _Op(_SUBMITTED, [(message_id, now, channel, attempts, first, rows)], 1 + len(rows))


_SEG1_RECEIPT_FIELDS = tuple("seg_" + n for n in _RECEIPT_SEG_FIELDS)
_SEG1_NONE, _SEG1_WHOLE, _SEG1_RECEIPT = 0, 1, 2  # what a state write carries of segment 1
_ALL_ROWS, _SEG1_ROWS, _NO_SEG1_ROWS = 0, 1, 2  # which rows a state write changes (state_sql)
# Rows sent by column (_columns) for the usual one-segment message, each the values of
# one row write (_apply_fast):
# - a submitted_nowait with its segment 1 (the message's own): the message id, now,
#   channel, attempts, via, then the segment's version (its fields after the key);
# - a receipt op's pair: a segment-1 receipt (its columns) with its message's move.
_SUB_ROW = ("id", "now", "channel", "attempts", "via", *_SEG1_FIELDS)
_PAIR_ROW = ("id", *_SEG1_RECEIPT_FIELDS, "state", "now", "error_code")
_SUB_VARIES = (0, _SUB_ROW.index("seg_smsc_message_id"), _SUB_ROW.index("seg_id_key"))
_PAIR_VARIES = (0, _PAIR_ROW.index("seg_receipt"))
_UPDATE_SEG1_RECEIPT, _BULK_UPDATE_SEG1_RECEIPT = _seg1_updates(_SEG1_RECEIPT_FIELDS)
_UPDATE_SEGMENT_RECEIPT = (
    "UPDATE segments SET "
    + ", ".join(f"{n} = ?" for n in _RECEIPT_SEG_FIELDS)
    + " WHERE message_id = ? AND seq = ?"
)
_BULK_UPDATE_SEGMENT_RECEIPT = (
    "UPDATE segments SET "
    + ", ".join(f"{n} = {_v(i)}" for i, n in enumerate(_RECEIPT_SEG_FIELDS))
    + " FROM (VALUES {rows}) AS v"
    + f" WHERE segments.message_id = {_v(len(_RECEIPT_SEG_FIELDS))}"
    + f" AND segments.seq = {_v(len(_RECEIPT_SEG_FIELDS) + 1)}"
)
# Which (tenant, client_ref) of a batch exist: one statement, joined to the unique index.
_FIND_CLIENT_REFS = (
    f"SELECT {_cols(_MSG_FIELDS, 'm.')} FROM (VALUES {{rows}}) AS v CROSS JOIN messages AS m"
    " ON m.tenant = v.column1 AND m.client_ref = v.column2"
)
_SELECT_MESSAGE = f"SELECT {_cols(_MSG_FIELDS)} FROM messages"
_SELECT_VIEW = f"SELECT {_cols(_MSG_ROW)} FROM messages"  # with segment 1 (_view_of)
_SELECT_SEGMENT = f"SELECT {_cols(_SEG_FIELDS)} FROM segments"
# Link the unmatched receipts of (channel, id_key) to their segment: (message_id, seq,
# channel, id_key). Always executemany: few rows (receipts that overtook their resp), and an
# UPDATE ... FROM (VALUES ...) form would let the planner start from the receipts table.
_MATCH_RECEIPT = (
    "UPDATE receipts SET message_id = ?1, seq = ?2"
    " WHERE channel = ?3 AND id_key = ?4 AND message_id IS NULL"
)
_SELECT_RECEIPT = f"SELECT {_cols(_RCPT_FIELDS)} FROM receipts"
# The receipt journal's committed mark (migration v6); only ever raised.
_SELECT_JOURNAL_MARK = "SELECT seq FROM receipt_journal WHERE id = 1"
_RAISE_JOURNAL_MARK = "UPDATE receipt_journal SET seq = ?1 WHERE id = 1 AND seq < ?1"
_NOT_FINAL = ", ".join(_q(s) for s in State if s not in FINAL)
# Open messages through the partial index messages_open (migration v4): `done_at IS NULL`
# selects it; the state test keeps the answer exact for a row inserted in a final state.
def _open_where(p: str = "") -> str:
    return f"{p}done_at IS NULL AND {p}state IN ({_NOT_FINAL})"


_UNFINISHED_MESSAGES = (
    f"{_SELECT_VIEW} INDEXED BY messages_open WHERE {_open_where()}"
    " ORDER BY created_at, rowid"
)
_UNFINISHED_SEGMENTS = (
    f"SELECT {_cols(_SEG_FIELDS, 's.')} FROM messages AS m INDEXED BY messages_open"
    f" CROSS JOIN segments AS s ON s.message_id = m.id WHERE {_open_where('m.')}"
)
_COUNT_OPEN = (
    f"SELECT state, count(*) FROM messages INDEXED BY messages_open WHERE {_open_where()}"
    " GROUP BY state"
)


# set_state_nowait's optional columns; `submitted_at` is set by a move to SUBMITTED, or
# carried by a coalesced chain of moves that passed through SUBMITTED (_apply_states).
_OPTIONAL = ("channel", "attempts", "error_code", "error")
_FIELDS = _OPTIONAL + ("submitted_at",)
# A queued move (set_state_nowait), and a coalesced chain of moves with its submitted_at.
_STATE_ROW = ("id", "state", "now", *_FIELDS)
_SOURCES: dict[State, tuple[State, ...]] = {
    new: tuple(old for old in State if new in TRANSITIONS[old]) for new in State
}


@functools.cache
def state_sql(
    new: State,
    fields: tuple[str, ...] = (),
    bulk: bool = False,
    *,
    first: State | None = None,
    seg1: int = _SEG1_NONE,
    rows: int = _ALL_ROWS,
) -> str | None:
    """The UPDATE for a move to `new`, generated from gateway.states.TRANSITIONS (the one
    definition): `... WHERE id = ? AND state IN (<every s with new in TRANSITIONS[s]>)`, so
    an illegal move changes no row (and is counted). None if no state may move to `new`.

    `first`: for a chain of moves coalesced into one write (first -> ... -> new, each step
    legal after the one before), the stored state must be a legal source of `first`.

    `seg1`: the move carries a version of the message's segment 1 (a whole one,
    _SEG1_WHOLE, or a receipt's columns, _SEG1_RECEIPT), written by the same row write;
    its values follow the others (positional) or the _STATE_ROW (bulk). A message without
    segment 1 (seg_state NULL) gets NULLs: each column is `iif(seg_state IS NULL, NULL,
    value)`, or with `rows` _SEG1_ROWS plain, the statement changing only the rows with
    segment 1 (_apply_fast: ~220 instructions less per column and row), which leaves the
    others to the same statement with `rows` _NO_SEG1_ROWS (the columns set to NULL).

    `fields`: the optional columns the caller set (the others stay unchanged). Values,
    positional: id, now, then each of `fields`. With `bulk`, the rows of a
    `FROM (VALUES {rows}) AS v` (each id once) are laid out as a queued move, whatever
    `fields` holds: id, state, now, then every one of _FIELDS (`_STATE_ROW`); a move is
    its own row. `updated_at` is always set, `submitted_at` on a move to SUBMITTED (unless
    given in `fields`), `done_at` on a move to a final state.
    """
    new = State(new)
    sources = _SOURCES[State(first) if first is not None else new]
    if not sources:
        return None
    assert all(f in _FIELDS for f in fields), fields
    if bulk:
        v = [_v(_STATE_ROW.index(name)) for name in ("id", "now", *fields)]
    else:
        v = [f"?{i + 1}" for i in range(2 + len(fields))]
    sets = [f"state = {_q(new)}", f"updated_at = {v[1]}"]
    sets += [f"{name} = {v[2 + i]}" for i, name in enumerate(fields)]
    if seg1 != _SEG1_NONE:
        cols = _SEG1_FIELDS if seg1 == _SEG1_WHOLE else _SEG1_RECEIPT_FIELDS
        at = len(_STATE_ROW) if bulk else len(v)
        values = [_v(at + i) if bulk else f"?{at + i + 1}" for i in range(len(cols))]
        if rows == _SEG1_ROWS:
            sets += [f"{col} = {value}" for col, value in zip(cols, values)]
        elif rows == _NO_SEG1_ROWS:  # what the guarded form writes there
            sets += [f"{col} = NULL" for col in cols]
        else:
            sets += [
                f"{col} = iif(messages.seg_state IS NULL, NULL, {value})"
                for col, value in zip(cols, values)
            ]
    if new is State.SUBMITTED and "submitted_at" not in fields:
        sets.append(f"submitted_at = {v[1]}")
    if new in FINAL:
        sets.append(f"done_at = {v[1]}")
    # The unary + keeps the planner off the state index whatever the statistics say (it
    # would scan every message in those states): the row is found by id only.
    return (
        f"UPDATE messages SET {', '.join(sets)}{' FROM (VALUES {rows}) AS v' if bulk else ''}"
        f" WHERE messages.id = {v[0]}"
        f" AND +messages.state IN ({', '.join(_q(s) for s in sources)})"
        + ("", " AND messages.seg_state IS NOT NULL", " AND messages.seg_state IS NULL")[rows]
    )


def _message(row: Sequence[Any]) -> MessageRecord:
    d = dict(zip(_MSG_FIELDS, row))
    d["state"] = State(d["state"])
    return MessageRecord(**d)


def _segment(row: Sequence[Any]) -> SegmentRecord:
    return SegmentRecord(**dict(zip(_SEG_FIELDS, row)))


def _view_of(row: Sequence[Any], rest: Iterable[SegmentRecord]) -> MessageView:
    """A message (a _SELECT_VIEW row) with its segment 1 from that row, then `rest`."""
    n = len(_MSG_FIELDS)
    segs = []
    if row[n] is not None:  # seg_state
        segs.append(SegmentRecord(message_id=row[0], seq=1, **dict(zip(_SEG_FIELDS[2:], row[n:]))))
    segs.extend(rest)
    return MessageView(message=_message(row[:n]), segments=segs)


def _receipt(row: Sequence[Any]) -> ReceiptRecord:
    return ReceiptRecord(**dict(zip(_RCPT_FIELDS, row)))


# ---- queued operations -------------------------------------------------------------------

# _SUBMITTED_COLS: one-segment submitted_nowait calls, sent by column (_SUB_ROW).
_INSERT, _STATE, _SEGMENT, _RECEIPT, _MATCH, _FLUSH, _SUBMITTED, _SUBMITTED_COLS = range(8)
_KIND_NAME = (
    "insert", "set_state", "update_segment", "receipt", "match_receipt", "flush", "submitted",
    "submitted",
)

# An op's own data is wrong: isolate it, the rest of the batch commits.
_DATA_ERRORS = (
    sqlite3.IntegrityError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    sqlite3.DataError,
    TypeError,
    ValueError,
    OverflowError,
)


class _Op(msgspec.Struct, eq=False):
    """A queued write. `data` is plain (tuples, lists, str, numbers, None; a state as its
    str value): what the batch execution (`execute_batch`) takes, in a thread or in the
    writer process, where msgpack brings tuples back as lists, all the same to it. A Struct
    (built ~3x faster than a class with an __init__): one is made per request, per burst of
    submit_sm_resp and per receipt batch."""

    kind: int
    data: Any
    weight: int = 1
    done: trio.Event | None = None  # None for *_nowait ops: nobody waits
    result: Any = None
    error: BaseException | None = None
    recs: list[MessageRecord] | None = None  # an insert's records, for its results


def _wire_data(kind: int, data: Any) -> Any:
    """An op's data as execute_batch takes it: one-segment submitted moves by column."""
    return _columns(data, _SUB_VARIES) if kind == _SUBMITTED_COLS else data


def _wire_ops(batch: list[_Op]) -> list[tuple[int, Any]]:
    """A batch's ops as execute_batch takes them, in thread and process mode alike: (kind,
    data) without flushes. The queued data is left as it is (a failed batch is requeued)."""
    return [(op.kind, _wire_data(op.kind, op.data)) for op in batch if op.kind != _FLUSH]


class _Counts:
    """What one batch execution did; folded into StoreStats on the trio side. `results`:
    per insert op (by its index in the batch's ops) the existing row of each duplicate item
    or None; `rejected`: (op index, kind, error, reason) of the ops refused for their data."""

    __slots__ = (
        "inserted",
        "duplicates",
        "applied",
        "refused",
        "state_writes",
        "finished",
        "seg_updated",
        "seg_missing",
        "receipts",
        "receipt_rows",
        "matched",
        "applied_before",
        "rejected",
        "isolated",
        "transactions",
        "results",
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)
        self.rejected = []
        self.finished = {}
        self.results = {}

    def add(self, other: _Counts) -> None:
        for name in self.__slots__:
            if name not in ("rejected", "isolated", "transactions", "finished", "results"):
                setattr(self, name, getattr(self, name) + getattr(other, name))
        for state, n in other.finished.items():
            self.finished[state] = self.finished.get(state, 0) + n
        self.results.update(other.results)

    def to_wire(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> _Counts:
        counts = cls()
        for name in cls.__slots__:
            setattr(counts, name, d[name])
        return counts


_NEW, _OPEN, _CLOSING, _CLOSED = range(4)

# ---- the writer process's pipe (gateway.store.sqlite_writer documents the protocol) --------

_HEADER = struct.Struct(">I")
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode


class _WriterGone(Exception):
    """The writer process's stdout ended."""


class _WriterFailed(Exception):
    """A batch failed in the writer process (its error type and message), or the process
    died with the batch in flight."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(message)
        self.type_name = type_name

    @classmethod
    def died(cls, proc: trio.Process | None) -> _WriterFailed:
        return cls("WriterDied", f"the writer process died (exit status {proc and proc.returncode})")

    @classmethod
    def of_reply(cls, reply: list) -> _WriterFailed:
        """From a "fail" reply (error type, message) or a "skipped" one."""
        return cls(str(reply[1]) if len(reply) > 1 else "Skipped", str(reply[2]) if len(reply) > 2 else "skipped")


class _Pipe:
    """Length-prefixed msgpack frames over the writer process's stdin and stdout."""

    def __init__(self, proc: trio.Process) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self._send = proc.stdin
        self._recv = proc.stdout
        self._buf = bytearray()

    async def send(self, payload: bytes) -> None:
        await self._send.send_all(_HEADER.pack(len(payload)) + payload)

    async def receive(self) -> Any:
        buf = self._buf
        while True:
            if len(buf) >= 4:
                (n,) = _HEADER.unpack_from(buf)
                if len(buf) >= 4 + n:
                    frame = bytes(buf[4 : 4 + n])
                    del buf[: 4 + n]
                    return _decode(frame)
            data = await self._recv.receive_some(1 << 16)
            if not data:
                raise _WriterGone("end of the writer's output")
            buf += data


# Batches in flight to the writer process at once. With one, the writer sat idle while the
# gateway encoded the next batch, sent it, and got round to reading the reply between its
# other tasks: ~55 % of every commit cycle in the batch benchmark. With two, batch N+1 is in
# the pipe while N commits. Order survives a failure: a writer whose batch failed skips
# every later batch until told to resume (gateway.store.sqlite_writer), and the gateway
# requeues the failed batch and the skipped ones together, in their order.
_PIPELINE = 2
_RESUME = _encode("resume")


class _Flight:
    """A batch sent to the writer process (or, with nothing to send, waiting its turn)."""

    __slots__ = ("batch", "sent", "index", "refused", "t0", "inserts")

    def __init__(
        self, batch: list[_Op], sent: bool, index: list[int] | None, refused: list, t0: float
    ) -> None:
        self.batch = batch
        self.sent = sent
        self.index = index
        self.refused = refused
        self.t0 = t0
        self.inserts = any(op.kind == _INSERT for op in batch)


class _LockHeld(Exception):
    def __init__(self, holder: int | None) -> None:
        super().__init__(holder)
        self.holder = holder  # the pid the holder wrote into the lock file, if any


def _flock_file(lock_path: str, wait: float) -> int:
    """An exclusive flock on `lock_path` (created if missing, never deleted: a new file at
    that path would not be the file another process holds a lock on), waiting up to `wait`
    seconds for its holder; _LockHeld (with the pid the holder wrote) if it is still held.
    Returns the fd, close-on-exec (a child holding a copy of the open file description
    would keep the lock after its parent died); closing it releases the lock. Writes this
    process's pid into the file, for the message another process shows (informative only)."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise _LockHeld(_lock_holder(fd)) from None
                time.sleep(0.02)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _lock_holder(fd: int) -> int | None:
    """The pid the holder of a store lock wrote into the lock file, if it did."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


async def _end(proc: trio.Process, timeout: float = 0.0) -> None:
    """Close the writer's stdin, wait up to `timeout` for it to exit, then kill it."""
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            try:
                await stream.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
    with trio.move_on_after(timeout):
        await proc.wait()
    if proc.returncode is None:
        if timeout:
            log.warning("store_writer_killed", pid=proc.pid, after_s=timeout)
        proc.kill()
        await proc.wait()


class SqliteStore(Store):
    """SQLite implementation of `Store`. Run it in a nursery (`await nursery.start(store.run)`)
    before using it; cancel to flush and close.

    `clock` (wall clock, default time.time) stamps `stats.last_commit_at`. Keyword knobs
    beyond StoreConfig exist for benchmarks and tests: `synchronous` ("FULL" is the only
    setting that keeps "durable before reply" through a power cut), `busy_timeout` (seconds
    a write waits for a lock held by another process), `shutdown_timeout`, `bulk_writes`
    (False: executemany instead of a few multi-row statements per group, see the comment
    above _INSERT_MESSAGE).
    """

    def __init__(
        self,
        config: StoreConfig,
        clock: Callable[[], float] | None = None,
        *,
        synchronous: str = "FULL",
        busy_timeout: float = 5.0,
        shutdown_timeout: float = 10.0,
        bulk_writes: bool = True,
    ) -> None:
        sync = synchronous.upper()
        if sync not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
        self.config = config
        self.path = config.path
        self.stats = StoreStats()
        self._clock = clock or time.time
        self._synchronous = sync
        self._busy_timeout = busy_timeout
        self._shutdown_timeout = shutdown_timeout
        self._bulk_writes = bulk_writes
        self._chunk_rows = _CHUNK_ROWS
        self._batch_max = max(1, config.batch_max)
        self._batch_wait = max(0.0, config.batch_wait_ms) / 1000.0
        self._status = _NEW
        self._queue: list[_Op] = []
        self._queued_weight = 0
        self._queued_inserts = 0  # insert ops in the queue
        self._want_progress = False  # the pipelined sender waits for a progress op
        self._urgent = 0  # flush ops queued: cut the batch wait short
        self._first_at = 0.0  # trio time the op at the head of the queue was queued
        self._wakeup = trio.Event()  # set when the queue becomes non-empty
        self._full = trio.Event()  # set when a batch is full or urgent
        self._w: sqlite3.Connection | None = None
        self._r: sqlite3.Connection | None = None
        self._w_limiter: trio.CapacityLimiter | None = None
        self._r_limiter: trio.CapacityLimiter | None = None
        self._writer_cpu = 0.0  # written by the writer's thread only
        self._process = config.writer == "process"
        self._proc: trio.Process | None = None  # the writer process (writer = "process")
        self._pipe: _Pipe | None = None
        self._writer_started = 0
        self._inflight: deque[_Flight] = deque()  # sent, replies not read yet (in order)
        self._flights = trio.Event()  # set when a flight is added
        self._room = trio.Event()  # set when a flight leaves or a failure is settled
        self._settling = False  # a failed batch's successors are being collected
        self._poisoned = False  # the writer skips batches until it is sent _RESUME
        self._failures = 0  # consecutive failed batches (backoff)
        self._writer_up = trio.Event()  # set when a writer process started (_watch_writer)
        self._lock_fd: int | None = None  # the store lock (_lock), held while the store runs
        self._writer_lock_fd: int | None = None  # thread mode: writer_lock, with the connection
        self._db_id: tuple[int, int] | None = None  # the database file the first writer opened

    @property
    def writer_pid(self) -> int | None:
        """The writer process's pid (writer = "process" and running), else None."""
        return None if self._proc is None else self._proc.pid

    @property
    def queued(self) -> int:
        """Ops waiting for the writer (not counting the batch being committed)."""
        return len(self._queue)

    # ---- life cycle --------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        if task_status is None:
            task_status = trio.TASK_STATUS_IGNORED
        if self._status != _NEW:
            raise RuntimeError("a SqliteStore runs once")
        self._w_limiter = trio.CapacityLimiter(1)
        self._r_limiter = trio.CapacityLimiter(1)
        try:
            self._lock()  # before anything touches the database
            if self._process:
                before, after = await self._start_writer()
                await trio.to_thread.run_sync(self._open_reader, limiter=self._r_limiter)
            else:
                before, after = await trio.to_thread.run_sync(self._open, limiter=self._w_limiter)
        except BaseException as e:
            self._status = _CLOSED
            self._fail_queued("store failed to open")
            with trio.CancelScope(shield=True):
                await self._stop_writer()
            self._unlock()
            if isinstance(e, sqlite3.Error | OSError):
                raise StoreUnavailable(
                    f"cannot open the store at {self.path}: {e}", path=self.path, reason=str(e)
                ) from e
            raise
        self._status = _OPEN
        log.info(
            "store_opened",
            path=self.path,
            schema=after,
            migrated_from=before if before != after else None,
            synchronous=self._synchronous,
            writer=self.config.writer,
        )
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer)
                task_status.started()
        finally:
            with trio.CancelScope(shield=True):
                self._status = _CLOSING
                with trio.move_on_after(self._shutdown_timeout):
                    while self._inflight:  # the replies of batches already sent
                        await self._settle_next()
                    await self._drain()
                self._status = _CLOSED
                self._fail_queued("store closed")
                try:
                    await self._close()
                finally:
                    self._unlock()  # after the writer (thread or process) has finished
                log.info("store_closed", path=self.path, **self._summary())

    def _lock(self) -> None:
        """One gateway per store file: an exclusive flock on `<path>.lock` (created if
        missing, never deleted: a new file at that path would not be the file another process
        holds a lock on), held until the store closes. Without it a second gateway on the same
        file would "recover" and send the first one's unfinished messages (duplicate SMS).
        StoreUnavailable, with nothing opened, if another process holds it.

        The fd is close-on-exec (and the writer process is spawned with close_fds): a flock
        belongs to the open file description, and a child holding a copy would keep the lock
        after the gateway died. The kernel releases it when the gateway exits, `kill -9` too.
        """
        lock_path = os.fspath(self.path) + ".lock"
        try:
            fd = _flock_file(lock_path, 0.0)
        except _LockHeld as held:
            by = f"another gateway (pid {held.holder})" if held.holder else "another gateway"
            raise StoreUnavailable(
                f"the store at {self.path} is in use by {by}: one gateway per store file "
                f"(lock file {lock_path})",
                path=self.path,
                reason="locked by another process",
                lock=lock_path,
                holder_pid=held.holder,
            ) from None
        self._lock_fd = fd

    def _unlock(self) -> None:
        """Release the store lock (closing the fd does). The file stays."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)

    def _open(self) -> tuple[int, int]:
        lock = writer_lock(self.path, self._busy_timeout)  # the writer runs in this process
        try:
            w, before, after, self._chunk_rows = open_writer(
                self.path, self._synchronous, self._busy_timeout, self._chunk_rows
            )
            try:
                self._open_reader()
            except BaseException:
                w.close()
                raise
        except BaseException:
            os.close(lock)
            raise
        self._w, self._writer_lock_fd = w, lock
        return before, after

    def _open_reader(self) -> None:
        r = sqlite3.connect(
            self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            r.execute("PRAGMA query_only=ON")
        except BaseException:
            r.close()
            raise
        self._r = r

    async def _close(self) -> None:
        assert self._r_limiter is not None and self._w_limiter is not None
        async with self._r_limiter:  # waits for a read in progress
            r, self._r = self._r, None
            if r is not None:
                r.close()
        await self._stop_writer()
        async with self._w_limiter:
            w, self._w = self._w, None
            if w is not None:
                try:  # keep planner statistics fresh, bounded work
                    w.execute("PRAGMA analysis_limit=1000")
                    w.execute("PRAGMA optimize")
                except sqlite3.Error:
                    pass
                w.close()
            lock, self._writer_lock_fd = self._writer_lock_fd, None
            if lock is not None:  # thread mode: released once its connection is closed
                os.close(lock)

    def _summary(self) -> dict[str, Any]:
        s = self.stats
        return {
            "batches": s.batches,
            "ops": s.ops,
            "transitions_refused": s.transitions_refused,
            "failed_batches": s.failed_batches,
            "lost_ops": s.lost_ops,
        }

    # ---- the queue ---------------------------------------------------------------------

    def _enqueue(self, op: _Op) -> None:
        if self._status == _CLOSED:
            raise StoreUnavailable("the store is closed", path=self.path)
        q = self._queue
        kind = op.kind
        if kind >= _SUBMITTED and q and q[-1].kind == kind:  # _SUBMITTED, _SUBMITTED_COLS
            # Consecutive moves to SUBMITTED (nobody waits for them) share one op: one per
            # burst of submit_sm_resp, not per message (one op per form: by column or
            # not). The queue order is kept (they are its last op); a bad one still fails
            # alone (_prepare, execute_batch).
            tail = q[-1]
            tail.data.extend(op.data)
            tail.weight += op.weight
        else:
            if not q:
                self._first_at = trio.current_time()
                self._wakeup.set()
            q.append(op)
        self._queued_weight += op.weight
        if kind == _INSERT:
            self._queued_inserts += 1
        elif self._want_progress:  # the pipelined sender has a slot for progress only
            self._want_progress = False
            self._room.set()
        if kind == _FLUSH:
            self._urgent += 1
            self._full.set()
        elif self._queued_weight >= self._batch_max:
            self._full.set()

    async def _submit(self, op: _Op) -> Any:
        """Queue a durable op and wait for its commit. If the caller is cancelled while
        waiting, the op still executes (inserts are idempotent on client_ref)."""
        op.done = trio.Event()
        self._enqueue(op)
        await op.done.wait()
        if op.error is not None:
            raise op.error
        return op.result

    def _take(self, inserts: bool = True) -> list[_Op]:
        """The next batch: everything queued if it fits `batch_max` rows; else pipeline
        progress (receipts, state changes, segment updates, receipt matches) up to
        `batch_max` rows and intake inserts up to `batch_max` rows, each class in queue
        order. Two budgets: with one, progress took it all under load and intake waited
        (~125 messages' inserts per commit in the batch benchmark). `inserts=False`: no
        insert (the pipelined sender's second batch in flight, see _pipelined).

        Why progress first: a receipt's deliver_sm_resp waits for its commit, and the SMSC
        keeps at most a window of them unanswered per bind. Strictly in queue order, a flood
        of intake (50 requests of 100 messages queue 10k rows) put each receipt batch behind
        it: receipts were acknowledged after 0.3-0.6 s, the SMSC's window stayed full and
        delivery stalled until the intake stopped (bench/gateway_bench.py --timeline).
        Reordering is safe because progress never names a message whose insert is still
        queued: the pipeline sees a message only after insert_messages returned. A flush is
        taken only with every op queued before it (it promises exactly that)."""
        q = self._queue
        budget = self._batch_max
        if self._queued_weight <= budget and (inserts or not self._queued_inserts):
            self._queue = []
            self._queued_weight = 0
            self._queued_inserts = 0
            self._urgent = 0
            return q
        take = [False] * len(q)
        weight = 0
        for cls in (False, True) if inserts else (False,):  # progress, then inserts
            used = 0
            for i, op in enumerate(q):
                if op.kind == _FLUSH or (op.kind == _INSERT) is not cls:
                    continue
                if used and used + op.weight > budget:
                    break
                take[i] = True
                used += op.weight
                if cls:
                    self._queued_inserts -= 1
            weight += used
        batch: list[_Op] = []
        rest: list[_Op] = []
        flushes = 0
        complete = True  # every op so far is in the batch
        for i, op in enumerate(q):
            if op.kind == _FLUSH and complete:
                take[i] = True
                flushes += 1
            elif not take[i]:
                complete = False
            (batch if take[i] else rest).append(op)
        self._queue = rest
        self._queued_weight -= weight
        self._urgent -= flushes
        self._first_at = trio.current_time()  # the rest has waited at least since now
        return batch

    def _requeue(self, ops: list[_Op]) -> None:
        if not self._queue:
            self._first_at = trio.current_time()
        self._queue[:0] = ops
        self._queued_weight += sum(op.weight for op in ops)
        self._queued_inserts += sum(1 for op in ops if op.kind == _INSERT)
        self._wakeup.set()  # the sender may be waiting for an empty queue to fill

    def _fail_queued(self, why: str) -> None:
        ops, self._queue = self._queue, []
        self._queued_weight = self._queued_inserts = self._urgent = 0
        lost = 0
        for op in ops:
            if op.done is not None:
                op.error = StoreUnavailable(why, path=self.path)
                op.done.set()
            else:
                lost += 1
        if lost:
            self.stats.lost_ops += lost
            log.error("store_ops_lost", path=self.path, ops=lost, reason=why)

    # ---- the writer --------------------------------------------------------------------

    async def _writer(self) -> None:
        if self._process:
            await self._pipelined()
            return
        while True:
            batch = await self._next_batch()
            if await self._commit(batch):
                self._failures = 0
            else:
                await trio.sleep(self._backoff())

    def _backoff(self) -> float:
        return min(1.0, 0.01 * 2**self._failures)

    async def _batch_ready(self) -> None:
        """Wait until ops are queued and the batch wait is over (or the batch is full or
        holds a flush)."""
        while not self._queue:
            self._wakeup = trio.Event()
            await self._wakeup.wait()
        if self._batch_wait > 0 and self._queued_weight < self._batch_max and not self._urgent:
            deadline = self._first_at + self._batch_wait
            if deadline > trio.current_time():
                self._full = trio.Event()
                with trio.move_on_at(deadline):
                    await self._full.wait()

    async def _next_batch(self) -> list[_Op]:
        await self._batch_ready()
        return self._take()

    # -- the writer process, pipelined (writer = "process") --

    async def _pipelined(self) -> None:
        """Send batches while up to _PIPELINE are in flight; a second task reads the replies
        (the pipe must be drained while a large batch is being sent, or both sides block)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._replies)
            nursery.start_soon(self._watch_writer)
            while True:
                if self._failures:
                    await trio.sleep(self._backoff())
                while True:
                    await self._batch_ready()
                    # At most one batch with inserts in flight: the other slot is for
                    # progress, so a receipt waits for at most one intake batch ahead of
                    # it (with both slots full of intake it waited ~16 ms in the queue).
                    inserts = not any(f.inserts for f in self._inflight)
                    if (
                        len(self._inflight) < _PIPELINE
                        and not self._settling
                        and self._queue
                        and (inserts or len(self._queue) > self._queued_inserts)
                    ):
                        break
                    self._want_progress = (
                        not inserts and len(self._inflight) < _PIPELINE and not self._settling
                    )
                    self._room = trio.Event()
                    await self._room.wait()
                    self._want_progress = False
                # No checkpoint from here to the append: a failure being settled either
                # sees this batch in flight or finds its ops still queued, never neither.
                batch = self._take(inserts)
                if not batch:  # only a flush that waits for inserts still queued
                    self._room = trio.Event()
                    await self._room.wait()
                    continue
                t0 = time.perf_counter()
                payload, index, refused = self._prepare(batch)
                with trio.CancelScope(shield=True):
                    if payload is not None and self._pipe is None:
                        try:
                            await self._start_writer()
                        except Exception as e:  # cannot start: the batch fails (retried)
                            self._batch_failed([batch], e, t0)
                            continue
                    flight = _Flight(batch, payload is not None, index, refused, t0)
                    self._inflight.append(flight)
                    self._flights.set()
                    if payload is None:
                        continue
                    pipe = self._pipe
                    assert pipe is not None
                    try:
                        await self._send_batch(pipe, payload)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass  # the reply reader sees the writer gone and fails the flights

    async def _watch_writer(self) -> None:
        """A writer process that dies while no batch is in flight is let go at once, so the
        next batch starts a new one instead of failing on the dead pipe (its durable
        callers would get StoreUnavailable for a death that happened while idle). With
        batches in flight the reply task sees the pipe end and fails them (requeued)."""
        while True:
            proc = self._proc
            if proc is None:
                self._writer_up = trio.Event()
                await self._writer_up.wait()
                continue
            await proc.wait()
            if self._proc is proc and not self._inflight and not self._settling:
                with trio.CancelScope(shield=True):
                    await self._writer_died()  # logs it; the next batch starts a new one
            else:
                await trio.sleep(0.01)  # the reply task or a restart takes it from here

    async def _send_batch(self, pipe: _Pipe, payload: bytes) -> None:
        """Send a batch's frame, after "resume" if the writer skips batches since a failed
        one (every batch it skipped has been requeued by then)."""
        if self._poisoned:
            self._poisoned = False
            await pipe.send(_RESUME)
        await pipe.send(payload)

    async def _replies(self) -> None:
        while True:
            while not self._inflight:
                self._flights = trio.Event()
                await self._flights.wait()
            await self._settle_next()

    async def _settle_next(self) -> None:
        """Read the reply of the oldest flight and complete its batch. Cancellable only
        while waiting for the reply (the flight stays first in line)."""
        flight = self._inflight[0]
        if not flight.sent:  # nothing was sent (flushes, refused ops): its turn has come
            self._inflight.popleft()
            counts = _Counts()
            counts.rejected = flight.refused
            self._batch_done(flight.batch, counts, flight.t0)
            self._room.set()
            return
        pipe = self._pipe
        try:
            if pipe is None:
                raise _WriterGone("the writer process is gone")
            reply = await pipe.receive()
        except (trio.BrokenResourceError, trio.ClosedResourceError, _WriterGone):
            with trio.CancelScope(shield=True):
                self._settling = True  # no new batch until these are requeued
                flights = list(self._inflight)
                self._inflight.clear()
                proc = self._proc
                try:
                    await self._writer_died()
                finally:
                    self._settling = False
                    self._batch_failed([f.batch for f in flights], _WriterFailed.died(proc), flight.t0)
                    self._room.set()
            return
        with trio.CancelScope(shield=True):
            self._inflight.popleft()
            if reply[0] == "ok":
                self._failures = 0
                self._batch_done(flight.batch, self._counts_of(reply, flight), flight.t0)
                self._room.set()
                return
            # Failed (or skipped, which only follows a failure): this batch and every later
            # one in flight, which the writer skips, fail together and are requeued in order.
            self._poisoned = True
            self._settling = True
            failed = [flight]
            try:
                while self._inflight:
                    later = self._inflight.popleft()
                    failed.append(later)
                    if later.sent and self._pipe is not None:
                        try:
                            await self._pipe.receive()  # ["skipped"]
                        except (trio.BrokenResourceError, trio.ClosedResourceError, _WriterGone):
                            await self._writer_died()
            finally:
                self._settling = False
                self._batch_failed(
                    [f.batch for f in failed],
                    _WriterFailed.of_reply(reply),
                    flight.t0,
                )
                self._room.set()

    async def _drain(self) -> None:
        while self._queue:
            if not await self._commit(self._take()):
                return

    async def _commit(self, batch: list[_Op]) -> bool:
        """One thread hop, one transaction. Wakes the batch's callers before any checkpoint,
        so a cancellation arriving meanwhile cannot strand them."""
        assert self._w_limiter is not None
        t0 = time.perf_counter()
        try:
            if self._process:
                counts = await self._exchange(batch)
            else:
                counts = await trio.to_thread.run_sync(
                    self._execute, batch, limiter=self._w_limiter
                )
        except Exception as e:  # environment (disk, lock, I/O) or a bug: the batch failed
            self._batch_failed([batch], e, t0)
            return False
        self._batch_done(batch, counts, t0)
        return True

    def _batch_failed(self, batches: list[list[_Op]], e: Exception, t0: float) -> None:
        """Batches (consecutive, in order) that did not commit: durable callers get
        StoreUnavailable, nowait ops go back to the head of the queue in their order."""
        self.stats.commit_seconds += time.perf_counter() - t0
        reason = f"{getattr(e, 'type_name', type(e).__name__)}: {e}"
        retry = []
        ops = 0
        for batch in batches:
            ops += len(batch)
            for op in batch:
                if op.done is not None:
                    op.error = StoreUnavailable(
                        f"store write failed: {e}", path=self.path, reason=reason
                    )
                    op.done.set()
                elif op.kind != _FLUSH:
                    retry.append(op)
        if retry:
            self._requeue(retry)
        s = self.stats
        s.failed_batches += len(batches)
        s.retried_ops += len(retry)
        s.last_error = reason
        self._failures += 1
        log.error(
            "store_batch_failed",
            path=self.path,
            error=reason,
            batches=len(batches),
            ops=ops,
            requeued=len(retry),
        )

    def _batch_done(self, batch: list[_Op], counts: _Counts, t0: float) -> None:
        s = self.stats
        s.commit_seconds += time.perf_counter() - t0
        s.commit_cpu_seconds = self._writer_cpu
        if counts.transactions:
            s.batches += counts.transactions
            s.last_commit_at = self._clock()
        s.ops += len(batch)
        s.rows += sum(op.weight for op in batch)
        s.max_batch_ops = max(s.max_batch_ops, len(batch))
        s.messages_inserted += counts.inserted
        s.duplicates += counts.duplicates
        s.transitions_applied += counts.applied
        s.transitions_refused += counts.refused
        s.state_writes += counts.state_writes
        for state, n in counts.finished.items():
            s.finished[state] = s.finished.get(state, 0) + n
        s.segments_updated += counts.seg_updated
        s.segments_missing += counts.seg_missing
        s.receipts += counts.receipts
        s.receipt_rows += counts.receipt_rows
        s.receipts_matched += counts.matched
        s.receipt_ops_applied_before += counts.applied_before
        s.isolated_batches += counts.isolated
        s.rejected_ops += len(counts.rejected)
        ops = [op for op in batch if op.kind != _FLUSH]  # what counts' indexes refer to
        for i, found in counts.results.items():
            op = ops[i]
            assert op.recs is not None
            if len(found) == len(op.recs) and found.count(None) == len(found):  # all new: C calls
                op.result = list(map(InsertResult, op.recs, repeat(False)))
                continue
            op.result = [
                InsertResult(rec, False) if row is None else InsertResult(_message(row), True)
                for rec, row in zip(op.recs, found)
            ]
        for i, kind, error, reason in counts.rejected:
            op = ops[i]
            op.result = None
            op.error = StoreRejected(
                f"the store refused this {_KIND_NAME[kind]}: {reason}", reason=reason
            )
            log.error("store_op_rejected", path=self.path, op=_KIND_NAME[kind], error=error)
        journaled = 0
        for op in batch:
            if op.kind == _RECEIPT and op.data[3] is not None and op.data[3] > journaled:
                journaled = op.data[3]
            if op.done is not None:
                op.done.set()
        if journaled and self.on_journal_committed is not None:
            self.on_journal_committed(journaled)

    # -- the writer process (writer = "process") --

    async def _start_writer(self) -> tuple[int, int]:
        """Start `python -m gateway.store.sqlite_writer` and wait until its connection is open
        (migrated). Returns the schema versions before and after; StoreUnavailable (or
        StoreVersionError) if it cannot open the store."""
        env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "gateway.store.sqlite_writer"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        pipe = _Pipe(proc)
        try:
            await pipe.send(
                _encode(
                    {
                        "path": self.path,
                        "synchronous": self._synchronous,
                        "busy_timeout": self._busy_timeout,
                        "chunk_rows": self._chunk_rows,
                        "expect": self._db_id,
                    }
                )
            )
            reply = await pipe.receive()
        except BaseException as e:
            with trio.CancelScope(shield=True):
                await _end(proc)
            if isinstance(e, trio.BrokenResourceError | trio.ClosedResourceError | _WriterGone):
                raise StoreUnavailable(
                    f"the store writer process did not start (exit status {proc.returncode})",
                    path=self.path,
                ) from e
            raise
        if reply[0] != "ready":
            with trio.CancelScope(shield=True):
                await _end(proc)
            if reply[1] == "version":
                raise StoreVersionError(reply[2], **reply[3])
            raise StoreUnavailable(
                f"cannot open the store at {self.path}: {reply[2]}", path=self.path, reason=reply[2]
            )
        _, before, after, self._chunk_rows, db_id = reply
        if self._db_id is None and db_id is not None:
            self._db_id = tuple(db_id)  # a writer started again must find this very file
        self._proc, self._pipe = proc, pipe
        self._writer_up.set()
        self._writer_started += 1
        if self._writer_started > 1:
            self.stats.writer_restarts += 1
        log.info("store_writer_started", path=self.path, pid=proc.pid)
        return before, after

    async def _stop_writer(self) -> None:
        """End of stdin: the writer closes its connection and exits; killed if it does not
        within shutdown_timeout."""
        proc, self._proc, self._pipe = self._proc, None, None
        if proc is None:
            return
        with trio.CancelScope(shield=True):
            await _end(proc, self._shutdown_timeout)

    async def _writer_died(self) -> None:
        proc, self._proc, self._pipe = self._proc, None, None
        self._poisoned = False  # the next process starts clean
        if proc is None:
            return
        await _end(proc, 0.0)
        log.error("store_writer_died", path=self.path, pid=proc.pid, returncode=proc.returncode)

    def _prepare(self, batch: list[_Op]) -> tuple[bytes | None, list[int] | None, list]:
        """The frame of a batch: (payload or None if nothing is to be sent, positions of
        the ops sent if not all, ops refused because msgpack cannot carry their data)."""
        ops = _wire_ops(batch)
        if not ops:
            return None, None, []
        try:
            return _encode([self._bulk_writes, ops]), None, []
        except Exception:  # an op's data cannot be encoded: it alone is refused
            pass
        sent, index, refused = [], [], []
        plain = [op for op in batch if op.kind != _FLUSH]
        for i, (op, wire) in enumerate(zip(plain, ops)):
            try:
                _encode(wire)
            except Exception as e:
                if op.kind >= _SUBMITTED and len(op.data) > 1:  # several moves: refuse the bad
                    good = []
                    for item in op.data:
                        try:
                            _encode(item)
                        except Exception as e:
                            refused.append((i, op.kind, f"{type(e).__name__}: {e}", str(e)))
                        else:
                            good.append(item)
                    if good:
                        sent.append((op.kind, _wire_data(op.kind, good)))
                        index.append(i)
                    continue
                refused.append((i, op.kind, f"{type(e).__name__}: {e}", str(e)))
            else:
                sent.append(wire)
                index.append(i)
        if not sent:
            return None, index, refused
        return _encode([self._bulk_writes, sent]), index, refused

    def _counts_of(self, reply: Any, flight: _Flight) -> _Counts:
        counts = _Counts.from_wire(reply[1])
        self._writer_cpu += reply[2]
        if flight.index is not None:
            index = flight.index
            counts.results = {index[i]: r for i, r in counts.results.items()}
            counts.rejected = [(index[i], *rest) for i, *rest in counts.rejected] + flight.refused
        return counts

    async def _exchange(self, batch: list[_Op]) -> _Counts:
        """One batch through the writer process, nothing else in flight (the drain at
        close): sent, executed, committed, answered. Shielded (the frames would lose their
        order). A writer that died or dies meanwhile fails the batch like an environment
        error; the next batch starts a new one."""
        t0 = time.perf_counter()
        payload, index, refused = self._prepare(batch)
        flight = _Flight(batch, payload is not None, index, refused, t0)
        if payload is None:
            counts = _Counts()
            counts.rejected = refused
            return counts
        with trio.CancelScope(shield=True):
            if self._pipe is None:
                await self._start_writer()
            pipe = self._pipe
            assert pipe is not None
            try:
                await self._send_batch(pipe, payload)
                reply = await pipe.receive()
            except (trio.BrokenResourceError, trio.ClosedResourceError, _WriterGone) as e:
                proc = self._proc
                await self._writer_died()
                raise _WriterFailed.died(proc) from e
        if reply[0] != "ok":
            self._poisoned = True
            raise _WriterFailed.of_reply(reply)
        return self._counts_of(reply, flight)

    # -- in the writer's thread (thread mode) --

    def _execute(self, batch: list[_Op]) -> _Counts:
        conn = self._w
        if conn is None:
            raise sqlite3.OperationalError("the writer connection is closed")
        ops = _wire_ops(batch)
        cpu0 = time.thread_time()
        try:
            counts = execute_batch(conn, ops, self._bulk_writes, self._chunk_rows)
        finally:
            self._writer_cpu += time.thread_time() - cpu0
        return counts

    # ---- writes --------------------------------------------------------------------------

    async def insert_messages(
        self, messages: Sequence[tuple[MessageRecord, Sequence[SegmentRecord]]]
    ) -> list[InsertResult]:
        if not messages:
            return []
        return await self._submit(_one_segment_insert(messages) or _insert_op(messages))

    def set_state_nowait(
        self,
        message_id: str,
        new: State,
        *,
        now: float,
        channel: str | None = None,
        attempts: int | None = None,
        error_code: str | None = None,
        error: str | None = None,
    ) -> None:
        """Queue a state change, applied only if TRANSITIONS allows it from the stored state
        (else counted in stats.transitions_refused). `None` leaves a field unchanged.
        `submitted_at` is set on a move to SUBMITTED, `done_at` on a move to a final state."""
        state = (new if type(new) is State else State(new))._value_  # plain str: see _Op
        self._enqueue(_Op(_STATE, (message_id, state, now, channel, attempts, error_code, error)))

    def submitted_nowait(
        self,
        message_id: str,
        *,
        now: float,
        channel: str | None,
        attempts: int | None,
        segments: Sequence[SegmentRecord] = (),
        via: State | None = None,
    ) -> None:
        """Queue what the SMSC's acceptance of a message changes, as one op: the new
        versions of `segments` (like update_segment_nowait) and the move to SUBMITTED (like
        set_state_nowait), or with `via`, the chain `via` -> SUBMITTED, guarded like a move
        to `via`: for a pipeline that did not store the move to `via` (SUBMITTING) before."""
        self._enqueue(_submitted_op(message_id, now, channel, attempts, segments, via))

    def submitted_many_nowait(
        self,
        accepted: Sequence[tuple[MessageRecord, SegmentRecord]],
        *,
        now: float,
        via: State | None = None,
    ) -> None:
        """submitted_nowait for each (record, its one segment) of `accepted`, in order: the
        rows of one _SUBMITTED_COLS op (a read of submit_sm_resps, one op and one enqueue
        instead of one per message). A segment that is not its message's segment 1 goes
        the general way, in its place."""
        first = _via_value(via)
        rows = []
        for rec, seg in accepted:
            if seg.seq == 1 and seg.message_id == rec.id:
                rows.append(_sub_row(rec.id, now, rec.channel, rec.attempts, first, seg))
                continue
            if rows:
                self._enqueue(_Op(_SUBMITTED_COLS, rows, 2 * len(rows)))
                rows = []
            self._enqueue(_submitted_op(rec.id, now, rec.channel, rec.attempts, (seg,), via))
        if rows:
            self._enqueue(_Op(_SUBMITTED_COLS, rows, 2 * len(rows)))

    def update_segment_nowait(self, segment: SegmentRecord) -> None:
        """Queue the new version of one segment (every field but the key is written). A
        segment that is not stored is counted in stats.segments_missing."""
        self._enqueue(_Op(_SEGMENT, _segment_row(segment)))  # a snapshot: the caller mutates

    async def record_receipt(self, receipt: ReceiptRecord) -> None:
        await self.record_receipts([receipt])

    async def record_receipts(
        self,
        receipts: Sequence[ReceiptRecord],
        *,
        segments: Sequence[SegmentReceipt] = (),
        moves: Sequence[StateMove] = (),
    ) -> None:
        """Store receipts durably (one deliver batch of a bind) together with what they
        change, in one transaction: their segments' receipt columns (state, receipt_error,
        receipt_at and the text of the receipt that settles the segment, which gets no
        receipts row: `receipts` are those that settle nothing at once; over a version
        queued by update_segment_nowait in the same batch) and
        the moves of their messages (like set_state_nowait, with their error_code), after
        every op queued before.
        A receipt acknowledged to the SMSC is never stored without its effect."""
        if not receipts and not segments and not moves:
            return
        await self._submit(_receipt_op(receipts, segments, moves, None))

    def record_receipts_nowait(
        self,
        receipts: Sequence[ReceiptRecord],
        *,
        segments: Sequence[SegmentReceipt] = (),
        moves: Sequence[StateMove] = (),
        journal_seq: int | None,
    ) -> None:
        """record_receipts for receipts durable in the receipt journal as frame
        `journal_seq`: queued, and the batch that commits it writes `journal_seq` as the
        journal's committed mark (then on_journal_committed is called). Queued even when
        empty: the mark must pass every frame."""
        self._enqueue(_receipt_op(receipts, segments, moves, journal_seq))

    async def journal_mark(self) -> int:
        def q(conn: sqlite3.Connection) -> int:
            return conn.execute(_SELECT_JOURNAL_MARK).fetchone()[0]

        return await self._read(q)

    def match_receipt_nowait(self, channel: str, id_key: str, message_id: str, seq: int) -> None:
        """Queue linking the receipts stored unmatched under (channel, id_key) (they overtook
        their submit_sm_resp) to segment (message_id, seq). Counted in stats.receipts_matched
        (receipts changed); receipts already matched are left alone."""
        self._enqueue(_Op(_MATCH, (message_id, seq, channel, id_key)))

    async def flush(self) -> None:
        """Wait until every op queued before this call is committed (raises
        StoreUnavailable if the batch holding them failed)."""
        await self._submit(_Op(_FLUSH, None, 0))

    # ---- reads -----------------------------------------------------------------------------

    async def _read(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._r_limiter is None or self._status == _CLOSED:
            raise StoreUnavailable("the store is not open", path=self.path)
        try:
            return await trio.to_thread.run_sync(
                self._in_read_txn, fn, *args, limiter=self._r_limiter
            )
        except sqlite3.Error as e:
            raise StoreUnavailable(f"store read failed: {e}", path=self.path, reason=str(e)) from e

    def _in_read_txn(self, fn: Callable[..., Any], *args: Any) -> Any:
        conn = self._r
        if conn is None:
            raise sqlite3.OperationalError("the store is closed")
        conn.execute("BEGIN")  # one snapshot for the message and its segments
        try:
            return fn(conn, *args)
        finally:
            conn.execute("COMMIT")

    @staticmethod
    def _view(conn: sqlite3.Connection, where: str, params: tuple) -> MessageView | None:
        row = conn.execute(f"{_SELECT_VIEW} WHERE {where}", params).fetchone()
        if row is None:
            return None
        segs = conn.execute(f"{_SELECT_SEGMENT} WHERE message_id = ? ORDER BY seq", (row[0],))
        return _view_of(row, map(_segment, segs))

    async def get_message(self, tenant: str, message_id: str) -> MessageView | None:
        return await self._read(self._view, "id = ? AND tenant = ?", (message_id, tenant))

    async def get_view(self, message_id: str) -> MessageView | None:
        """Not tenant-scoped: for the pipeline (a receipt names a segment, not a tenant).
        Never expose it to a tenant API."""
        return await self._read(self._view, "id = ?", (message_id,))

    async def find_by_client_ref(self, tenant: str, client_ref: str) -> MessageView | None:
        return await self._read(self._view, "tenant = ? AND client_ref = ?", (tenant, client_ref))

    async def find_segment(self, channel: str, id_key: str) -> SegmentRecord | None:
        """The most recently submitted segment with this key on this channel (SMSC ids can be
        reused after a while)."""

        def q(conn: sqlite3.Connection) -> SegmentRecord | None:
            found = [  # segment 1, in its message's row (messages_seg_id_key) ...
                _segment(row)
                for row in conn.execute(
                    f"SELECT id, 1, {_cols(_SEG1_FIELDS)} FROM messages"
                    " WHERE seg_channel = ? AND seg_id_key = ?"
                    " ORDER BY seg_submitted_at DESC LIMIT 1",
                    (channel, id_key),
                )
            ]
            found += [  # ... and the others (segments_id_key)
                _segment(row)
                for row in conn.execute(
                    f"{_SELECT_SEGMENT} WHERE channel = ? AND id_key = ?"
                    " ORDER BY submitted_at DESC LIMIT 1",
                    (channel, id_key),
                )
            ]
            return max(found, key=lambda seg: seg.submitted_at or 0.0, default=None)

        return await self._read(q)

    async def unfinished(self) -> list[MessageView]:
        def q(conn: sqlite3.Connection) -> list[MessageView]:
            msgs = conn.execute(_UNFINISHED_MESSAGES).fetchall()
            segs: dict[str, list[SegmentRecord]] = {}
            for row in conn.execute(_UNFINISHED_SEGMENTS):  # segments 2 and up
                segs.setdefault(row[0], []).append(_segment(row))
            for group in segs.values():
                group.sort(key=lambda seg: seg.seq)
            return [_view_of(r, segs.get(r[0], ())) for r in msgs]

        return await self._read(q)

    async def unmatched_receipts(
        self, channel: str | None = None, since: float | None = None
    ) -> list[ReceiptRecord]:
        """Receipts stored without a message (received at or after `since`), oldest first."""
        after = float("-inf") if since is None else since

        def q(conn: sqlite3.Connection) -> list[ReceiptRecord]:
            if channel is None:
                rows = conn.execute(
                    f"{_SELECT_RECEIPT} WHERE message_id IS NULL AND received_at >= ? ORDER BY id",
                    (after,),
                )
            else:
                rows = conn.execute(
                    f"{_SELECT_RECEIPT} WHERE message_id IS NULL AND channel = ?"
                    " AND received_at >= ? ORDER BY id",
                    (channel, after),
                )
            return [_receipt(r) for r in rows]

        return await self._read(q)

    async def count_open(self) -> dict[str, int]:
        """Messages in each non-final state (0 for none): reads the open-message index only,
        so the cost follows the backlog, not the history."""

        def q(conn: sqlite3.Connection) -> dict[str, int]:
            counts = {s.value: 0 for s in State if s not in FINAL}
            counts.update(conn.execute(_COUNT_OPEN))
            return counts

        return await self._read(q)

    async def count_since(self, since: float) -> dict[str, int]:
        def q(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute(
                "SELECT tenant, count(*) FROM messages WHERE created_at >= ? GROUP BY tenant",
                (since,),
            )
            return dict(rows)

        return await self._read(q)


# ---- batch execution on plain data: in the writer thread or the writer process --------


_flat = chain.from_iterable  # rows -> their values, in C
_NONE_AS_NULL = {}.get  # a C callable returning None for None (open_writer)


class StoreFilesGone(OSError):
    """The database file or its WAL was deleted or replaced under the open writer connection
    (an environment error: every later batch fails with it until the gateway restarts)."""


class _WriterConnection(sqlite3.Connection):
    """The writer connection (open_writer), with the identity of the files it writes as it
    opened them: (st_dev, st_ino) of the database and of its WAL, None where there was no
    file (an in-memory database), and, once one of them was found gone, why it stopped."""

    path = ""
    files: tuple[tuple[int, int] | None, ...] = ()
    gone: str | None = None
    copy_pending = False  # a deleted WAL not yet wholly copied into the database file


_UNKNOWN = (-1, -1)  # a file whose stat failed for another reason than "no such file"


def _file_ids(path: str) -> tuple[tuple[int, int] | None, ...]:
    """(st_dev, st_ino) of the database at `path` (a resolved path: SQLite puts the WAL
    next to a symlink's target) and of its WAL; None where there is no such file, _UNKNOWN
    where stat failed otherwise (EACCES, EIO, ESTALE: not taken for a removed file)."""
    out: list[tuple[int, int] | None] = []
    for p in (path, path + "-wal"):
        try:
            st = os.stat(p)
        except FileNotFoundError:
            out.append(None)
        except OSError:
            out.append(_UNKNOWN)
        else:
            out.append((st.st_dev, st.st_ino))
    return tuple(out)


def _checkpoint_all(conn: sqlite3.Connection) -> bool:
    """Copy every frame of the WAL into the database file (TRUNCATE checkpoint); True when
    all of it was copied. A reader's snapshot can hold frames back: SQLite waits for it up
    to the busy timeout, and the caller tries again before its next batch."""
    try:
        busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.Error:
        return False
    return not busy and copied == frames


def _check_files(conn: sqlite3.Connection) -> None:
    """After a COMMIT: are the database and its WAL still the files the connection has open?

    SQLite keeps writing to a file deleted under it (`rm gateway.db-wal` by a clean-up
    script): every commit would then live in a file no later start can read, and the next
    start would silently lose them. A deleted WAL's frames are still readable through the
    connection's open descriptor, so they are checkpointed into the database file at once
    (what was acknowledged is kept), and the connection takes no more writes: later batches
    fail with StoreFilesGone (503 at the API) until the gateway is restarted, which opens
    the database with a new WAL. One stat of each file per batch."""
    files = getattr(conn, "files", ())
    if not files or conn.gone is not None:
        return
    now = _file_ids(conn.path)
    if all(f is None or n == _UNKNOWN or f == n for f, n in zip(files, now)):
        return  # (a file that was not there at open is not watched)
    db_ok = files[0] is None or now[0] == files[0] or now[0] == _UNKNOWN
    what = "WAL file" if db_ok else "database file"
    where = conn.path + ("-wal" if db_ok else "")
    if not db_ok:
        saved = "what was written since is only in the removed file"
    elif _checkpoint_all(conn):
        saved = "its commits were copied into the database file"
    else:  # retried before every later batch (execute_batch) until it is all copied
        conn.copy_pending = True
        saved = "copying its commits into the database file is not complete yet"
    conn.gone = (
        f"the store's {what} {where} was deleted or replaced while open ({saved}); "
        "no more writes: restart the gateway"
    )
    log.critical("store_files_gone", path=conn.path, file=where, detail=saved)
    if conn.copy_pending:
        # The database file alone is not consistent until the copy completes: this batch
        # must not be acknowledged as durable.
        raise StoreFilesGone(conn.gone)


def writer_lock(path: str, wait: float) -> int:
    """Take the writer lock of the store at `path`: an exclusive flock on
    `<path>.writer.lock`, held by whoever holds the writer connection (the writer process,
    or the gateway in thread mode) until it closes it or dies. Returns its fd (closing it
    releases the lock).

    Why a second lock: the gateway's lock (`<path>.lock`) ends with the gateway, but a
    writer process whose gateway was killed (kill -9) still commits the batches it had read
    before it sees the end of its stdin. A new gateway taking over meanwhile would recover
    messages whose moves were still being committed. Its writer waits here instead, up to
    `wait` seconds (the store's busy_timeout), then gives up with TimeoutError naming the
    pid that holds the lock."""
    lock_path = os.fspath(path) + ".writer.lock"
    try:
        return _flock_file(lock_path, wait)
    except _LockHeld as held:
        raise TimeoutError(
            f"a store writer{f' (pid {held.holder})' if held.holder else ''} of an earlier "
            f"gateway still holds {lock_path} after {wait:g} s; it exits once it "
            "has committed what it had read (kill it if it hangs)"
        ) from None


def open_writer(
    path: str,
    synchronous: str,
    busy_timeout: float,
    chunk_rows: int,
    expect: tuple[int, int] | None = None,
) -> tuple[sqlite3.Connection, int, int, int]:
    """The writer connection: WAL, `synchronous`, foreign keys, busy_timeout, migrated to
    the latest schema. Returns it, the schema versions before and after, and the rows per
    multi-row statement (`chunk_rows`, lowered to fit the build's variable limit).
    `expect`: the database file's identity when the store first opened it (a writer
    process started again): StoreFilesGone, with nothing written, if the file at `path`
    is another one now."""
    w = sqlite3.connect(
        path,
        timeout=busy_timeout,
        isolation_level=None,  # transactions are explicit (BEGIN IMMEDIATE ... COMMIT)
        check_same_thread=False,
        cached_statements=1024,  # state_sql variants x row counts (_chunks)
        factory=_WriterConnection,
    )
    # sqlite3 binds a None through its adapter lookup, which fails twice (__adapt__,
    # __conform__) before falling back to NULL: ~400 ns per None, and a message row has
    # five to seven. A registered adapter is one dict hit (~120 ns); {}.get(None) is None.
    # Process-wide, and harmless anywhere: None still binds as NULL.
    sqlite3.register_adapter(type(None), _NONE_AS_NULL)
    try:
        w.path = os.path.realpath(path)
        if expect is not None and _file_ids(w.path)[0] != tuple(expect):
            raise StoreFilesGone(
                f"the store's database file {w.path} is not the one this gateway opened "
                "(replaced or removed while it ran): restart the gateway"
            )
        mode = w.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot use WAL journal mode (got {mode})")
        w.execute(f"PRAGMA synchronous={synchronous}")
        w.execute("PRAGMA foreign_keys=ON")
        # A 64 MiB page cache (default 2 MiB): the pages every batch touches (the newest
        # messages, the indexes' right edges, the open-message index) stay cached once the
        # file outgrows 2 MiB, instead of being read back from the OS each batch.
        w.execute("PRAGMA cache_size=-65536")
        # Multi-row statements bind rows x columns values: stay under the build's limit.
        limit = w.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(_MSG_ROW)
        while chunk_rows > max(1, limit):
            chunk_rows >>= 1
        before, after = migrate(w)
        w.files = _file_ids(w.path)  # the WAL exists from here on (journal mode, migration)
    except BaseException:
        w.close()
        raise
    return w, before, after, chunk_rows


def execute_batch(
    conn: sqlite3.Connection, ops: list[tuple[int, Any]], bulk: bool, chunk: int
) -> _Counts:
    """Execute one batch, `ops` as (kind, data) without flushes, in ONE transaction; no trio,
    no _Op: the same code runs in the writer thread and in the writer process
    (gateway.store.sqlite_writer). Environment errors propagate (the whole batch failed,
    rolled back); an op whose data SQLite refuses is isolated: the batch is redone op by op,
    each in a SAVEPOINT, and only that op is listed in `rejected`."""
    counts = _Counts()
    if not ops:
        return counts
    gone = getattr(conn, "gone", None)
    if gone is not None:
        if conn.copy_pending and _checkpoint_all(conn):  # type: ignore[attr-defined]
            conn.copy_pending = False  # type: ignore[attr-defined]
            log.warning("store_files_gone_copied", path=conn.path)  # type: ignore[attr-defined]
        raise StoreFilesGone(gone)
    counts.transactions = 1
    indexed = [(i, kind, data) for i, (kind, data) in enumerate(ops)]
    conn.execute("BEGIN IMMEDIATE")
    try:
        _apply(conn, indexed, counts, bulk, chunk)
        conn.execute("COMMIT")
        _check_files(conn)
        return counts
    except _DATA_ERRORS:
        _rollback(conn)
    except BaseException:
        _rollback(conn)
        raise
    # One op's data is bad: redo op by op, each in a savepoint, to fail only that one.
    counts = _Counts()
    counts.transactions = counts.isolated = 1
    # Moves to SUBMITTED share an op (submitted_nowait): each one fails alone.
    indexed = [
        one
        for i, kind, data in indexed
        for one in (
            [(i, kind, [item]) for item in data] if kind == _SUBMITTED
            else [(i, kind, _columns([row], _SUB_VARIES)) for row in _column_rows(data)]
            if kind == _SUBMITTED_COLS
            else [(i, kind, data)]
        )
    ]
    conn.execute("BEGIN IMMEDIATE")
    try:
        for op in indexed:
            one = _Counts()
            conn.execute("SAVEPOINT op")
            try:
                _apply(conn, [op], one, bulk, chunk)
            except _DATA_ERRORS as e:
                conn.execute("ROLLBACK TO op")
                counts.rejected.append((op[0], op[1], f"{type(e).__name__}: {e}", str(e)))
            else:
                counts.add(one)
            conn.execute("RELEASE op")
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise
    _check_files(conn)
    return counts


def _apply(
    conn: sqlite3.Connection, ops: list[tuple[int, int, Any]], counts: _Counts, bulk: bool, chunk: int
) -> None:
    inserts: list[tuple[int, list]] = []
    states: list[Sequence] = []
    segments: dict[tuple, Sequence] = {}  # key -> the last version queued
    full: set[tuple] = set()  # keys with a full version (update_segment_nowait) in the batch
    receipts: list[tuple] = []
    matches: dict[tuple, tuple] = {}
    journaled = 0  # the highest receipt journal seq among the ops
    n_segments = 0
    mark = None  # the journal's committed mark, read once if a receipt op has a seq
    # Rows by column written as they came (_apply_fast): those of messages no other op of
    # the batch names; `general`: the messages whose rows go the general way instead.
    subs: list[Sequence[Any]] = []
    pairs: list[Sequence[Any]] = []
    chains: list[tuple] = []  # a submitted row and a later pair of one message: _CHAIN_ROW
    general, joined = _named_twice(ops) if bulk else (None, None)
    waiting: dict[str, tuple] = {}  # joined submitted rows, until their pair comes

    def submitted(items: Iterable[Sequence[Any]]) -> None:  # submitted_nowait's rows
        nonlocal n_segments
        for mid, now, channel, attempts, via, seg_versions in items:
            if via is None:
                states.append((mid, _SUBMITTED_STATE, now, channel, attempts, None, None))
            else:  # a chain via -> submitted, guarded like a move to `via` (_CHAIN_LEN)
                states.append([mid, _SUBMITTED_STATE, now, channel, attempts, None, None, now, via, 2])
            for t in seg_versions:
                key = (t[-2], t[-1])
                segments[key] = t
                full.add(key)
            n_segments += len(seg_versions)

    def seg_receipts(rows: Iterable[Sequence[Any]]) -> None:  # record_receipts' segments
        nonlocal n_segments
        n = 0
        for r in rows:  # what the receipts changed, in the same transaction
            key = (r[-2], r[-1])
            if key in full:  # a whole version queued in this batch: the receipt over it
                segments[key] = _with_receipt(segments[key], r)
            else:
                segments[key] = r
            n += 1
        # Each segment receipt is a receipt too: the one that settled its segment, stored
        # (its text) in that segment's row.
        counts.receipts += n
        n_segments += n

    for i, k, data in ops:
        if k == _STATE:
            states.append(data)
        elif k == _SEGMENT:
            # a full new version of the row: the last one queued wins
            key = (data[-2], data[-1])  # (message_id, seq); data may be a list
            segments[key] = data
            full.add(key)
            n_segments += 1
        elif k == _INSERT:
            inserts.append((i, data))
        elif k == _RECEIPT:
            rows, seg_rows, moves, seq = data[:4]
            if seq is not None:
                if mark is None:
                    mark = conn.execute(_SELECT_JOURNAL_MARK).fetchone()[0]
                if seq <= mark:
                    # Applied by a committed batch already: this is that batch again,
                    # requeued because the writer process died between its COMMIT and
                    # its reply. Frames are applied in seq order, so the mark says so.
                    counts.applied_before += 1
                    continue
                if seq > journaled:
                    journaled = seq
            receipts.extend(rows)
            cols = data[4] if len(data) > 4 else None
            if cols is not None:
                cols, rest, ends = _fast_part(cols, general, joined, _PAIR_VARIES)
                if cols is not None:
                    pairs.append(cols)
                for r in ends:  # the chain the general way makes of the two rows, if legal
                    sub = waiting.pop(r[0])
                    if r[5] in _NEXT[_SUBMITTED_STATE]:
                        chains.append((*sub[:5], r[1], *sub[6:11], *r[2:]))
                    else:  # two rounds: the general way (no other op names the message)
                        submitted([(*sub[:5], [(*sub[5:], sub[0], 1)])])
                        rest.append(r)
                if rest:  # the pairs first: each is its message's first segment-1 receipt
                    seg_receipts([(*r[1:5], r[0], 1) for r in rest])
                    seg_receipts(seg_rows)
                    states.extend(moves)
                    states.extend([(r[0], r[5], r[6], None, None, r[7], None) for r in rest])
                    continue
            seg_receipts(seg_rows)
            states.extend(moves)
        elif k == _MATCH:
            matches[data[2], data[3]] = data  # per (channel, id_key): the last one wins
        elif k == _SUBMITTED:  # consecutive submitted_nowait calls, in order
            submitted(data)
        elif k == _SUBMITTED_COLS:
            cols, rest, ends = _fast_part(data, general, joined, _SUB_VARIES)
            if cols is not None:
                subs.append(cols)
            for r in ends:  # written with the pair a later op brings (_named_twice)
                waiting[r[0]] = r
            if rest:  # in their order (the op's rows all precede the next op's)
                submitted([(*r[:5], [(*r[5:], r[0], 1)]) for r in rest])
        else:
            raise ValueError(f"unknown op kind {k!r}")
    if inserts:
        _apply_inserts(conn, inserts, counts, bulk, chunk)
    whole: list[Sequence] = []
    receipt_only: list[Sequence] = []  # only receipts changed it: the rest is stored
    for key, t in segments.items():
        (whole if key in full else receipt_only).append(t)
    merged = 0
    if states:
        # Segment 1 lives in the message row: a version of it goes with its message's move
        # (one row write, not two); those the moves did not write (no move, or a refused
        # one) are written on their own below.
        seg1 = {t[-2]: (_SEG1_WHOLE, t) for t in whole if t[-1] == 1}
        for t in receipt_only:
            if t[-1] == 1:
                seg1[t[-2]] = (_SEG1_RECEIPT, t)
        written = _apply_states(conn, states, bulk, chunk, counts, seg1)
        if written:
            merged = len(written)
            whole = [t for t in whole if t[-1] != 1 or t[-2] not in written]
            receipt_only = [t for t in receipt_only if t[-1] != 1 or t[-2] not in written]
    n_keys = len(segments)
    if waiting:  # their pairs' op was applied before (journal): the moves to submitted alone
        subs.append(_columns(list(waiting.values()), _SUB_VARIES))
    if subs or pairs or chains:
        fast = sum(c[0] for c in subs) + sum(c[0] for c in pairs)
        n_keys += fast + len(chains)
        n_segments += fast + 2 * len(chains)  # a chain: a segment version, a receipt over it
        counts.receipts += sum(c[0] for c in pairs) + len(chains)
        cols = _columns(chains, _CHAIN_VARIES) if chains else None
        merged += _apply_fast(conn, subs, pairs, cols, chunk, counts, whole, receipt_only)
    if n_keys:
        n = merged
        for rows, in_message, in_table in (
            (whole, (_BULK_UPDATE_SEG1, _UPDATE_SEG1), (_BULK_UPDATE_SEGMENT, _UPDATE_SEGMENT)),
            (
                receipt_only,
                (_BULK_UPDATE_SEG1_RECEIPT, _UPDATE_SEG1_RECEIPT),
                (_BULK_UPDATE_SEGMENT_RECEIPT, _UPDATE_SEGMENT_RECEIPT),
            ),
        ):
            if not rows:
                continue
            # segment 1 is in its message's row (migration v5), the others in `segments`
            firsts = [t for t in rows if t[-1] == 1]
            if firsts:
                n += _write(conn, *in_message, firsts, bulk, chunk)
            if len(firsts) < len(rows):
                others = [t for t in rows if t[-1] != 1] if firsts else rows
                n += _write(conn, *in_table, others, bulk, chunk)
        missing = n_keys - n
        counts.seg_updated += n_segments - missing
        counts.seg_missing += missing
    if receipts:
        _write(conn, _BULK_INSERT_RECEIPT, _INSERT_RECEIPT, receipts, bulk, chunk)
        counts.receipts += len(receipts)
        counts.receipt_rows += len(receipts)
    if matches:  # after the receipts: a receipt and its match may share a batch
        counts.matched += conn.executemany(_MATCH_RECEIPT, matches.values()).rowcount
    if journaled:
        conn.execute(_RAISE_JOURNAL_MARK, (journaled,))


# ---- rows by column: one-segment submitted moves and receipt pairs ----------------------
#
# The usual message's two pipeline writes after intake, the SMSC's acceptance and its
# receipt, each come as one row of a column op (_SUB_ROW, _PAIR_ROW): the values equal in
# every row of an op travel once (a burst of resps shares the channel, the attempt, the
# segment's state...; a receipt batch its states, error and time). Such a row is a move
# with its segment 1's version: one UPDATE per group of rows, with the statement of the
# general way (state_sql), its shared values bound once and only the differing ones in
# its VALUES (_fast_sql). Taken that way only when no other op of the batch names the
# message (_named_twice): then its move is a chain of its own and its segment 1's version
# the only one, which is exactly what the general way would write. The others become
# rows of the general way (coalesced with the message's other moves).


def _ids(data: Sequence[Any]) -> Sequence[str]:
    """The message ids (column 0) of a column op."""
    n, shared, values, varying, columns = data[:5]
    if varying and varying[0] == 0:
        return columns[0]
    return (values[shared.index(0)],) * n


def _named_twice(
    ops: list[tuple[int, int, Any]],
) -> tuple[set[str], set[str]] | tuple[None, None]:
    """(the messages of the batch's column rows that another row or op also names: a move,
    a version of segment 1; the messages among them named exactly by one submitted row
    and one pair of a later op, which make one chain); (None, None) when the batch has no
    column rows."""
    order: list[tuple[bool, Sequence[str]]] = []  # (pairs or not, their ids), op by op
    named: list[Any] = []
    for _i, k, data in ops:
        if k == _SUBMITTED_COLS:
            order.append((False, _ids(data)))
        elif k == _RECEIPT:
            if len(data) > 4 and data[4] is not None:
                order.append((True, _ids(data[4])))
            named += [r[-2] for r in data[1] if r[-1] == 1]
            named += [m[0] for m in data[2]]
        elif k == _STATE:
            named.append(data[0])
        elif k == _SEGMENT:
            if data[-1] == 1:
                named.append(data[-2])
        elif k == _SUBMITTED:
            for item in data:
                named.append(item[0])
                named += [t[-2] for t in item[5] if t[-1] == 1]
    if not order:
        return None, None
    ids = list(chain.from_iterable(o[1] for o in order))
    seen = set(ids)
    twice = seen.intersection(named)
    joined: set[str] = set()
    if len(seen) < len(ids):
        times = Counter(ids)
        dups = {mid for mid, n in times.items() if n > 1}
        two = {mid for mid in dups if times[mid] == 2} - twice
        if two:
            subbed: set[str] = set()
            for is_pair, op_ids in order:
                found = two.intersection(op_ids)
                if found:
                    if is_pair:
                        joined |= found & subbed
                    else:
                        subbed |= found
        twice |= dups - joined
    return twice, joined


def _fast_part(
    data: Sequence[Any], general: set[str] | None, joined: set[str] | None, varies: tuple[int, ...]
) -> tuple[Sequence[Any] | None, list[tuple], list[tuple]]:
    """A column op split (_named_twice): (its rows no other op names, by column, or None;
    the rows of `general`, in order; the rows of `joined`). With `general` None
    (executemany mode) every row is a general one."""
    if general is not None and joined is not None:
        if (not general or general.isdisjoint(_ids(data))) and (not joined or joined.isdisjoint(_ids(data))):
            return data, [], []
    rows = _column_rows(data)
    if general is None or joined is None:
        return None, rows, []
    keep, rest, ends = [], [], []
    for r in rows:
        (rest if r[0] in general else ends if r[0] in joined else keep).append(r)
    return (_columns(keep, varies) if keep else None), rest, ends


# Where the values of a state_sql(..., bulk=True) row come from in a column op's row: per
# column of _STATE_ROW, then per segment-1 column, the row's column (None: NULL).
_SUB_LAYOUT = (0, None, 1, 2, 3, None, None, None, *range(5, 5 + len(_SEG1_FIELDS)))
_PAIR_LAYOUT = (0, None, 6, None, None, 7, None, None, *range(1, 1 + len(_SEG1_RECEIPT_FIELDS)))
# A submitted row and its pair (a later op) made one chain, as the general way coalesces
# them (_chains): the submitted row with the receipt's columns over its segment version,
# then the pair's move (state, time, error_code); submitted_at is the submitted row's now.
_CHAIN_ROW = _SUB_ROW + ("state", "at", "error_code")
_CHAIN_LAYOUT = (0, None, 15, 2, 3, 16, None, 1, *range(5, 5 + len(_SEG1_FIELDS)))
_CHAIN_VARIES = (0, *(_CHAIN_ROW.index(c) for c in ("seg_smsc_message_id", "seg_id_key", "seg_receipt")))
assert _SUB_ROW[5:] == _SEG1_FIELDS and _PAIR_ROW[1:5] == _SEG1_RECEIPT_FIELDS
assert _CHAIN_ROW[14:] == ("state", "at", "error_code") and _CHAIN_ROW[1] == "now"


def _apply_fast(
    conn: sqlite3.Connection,
    subs: list[Sequence[Any]],
    pairs: list[Sequence[Any]],
    chains: Sequence[Any] | None,
    chunk: int,
    counts: _Counts,
    whole: list[Sequence],
    receipt_only: list[Sequence],
) -> int:
    """Write column ops' rows (each a message's only move and segment-1 version in the
    batch): per group of rows one statement, that of the general way for such a chain
    (state_sql). Counts the moves as _apply_states does; the segment-1 versions of a group
    not wholly applied are added to `whole` / `receipt_only` (written on their own, as
    the general way does). Returns the segment-1 versions written with their moves."""
    merged = 0
    finished = counts.finished
    if chains is not None:
        # via, state, channel None, attempts None, error_code None, submitted_at None
        keys = ((4, False), (14, False), (2, True), (3, True), (16, True), (1, True))
        for (via, new, *nones), idx in _groups(chains, keys):
            fields = tuple(name for name, none in zip(("channel", "attempts", "error_code"), nones) if not none)
            fields += ("submitted_at",) * (not nones[3])
            first = _SUBMITTED_STATE if via is None else via
            total = chains[0] if idx is None else len(idx)
            n = _write_moves(conn, new, fields, first, _SEG1_WHOLE, _CHAIN_LAYOUT, chains, idx, chunk)
            _tally(counts, finished, new, n, total, 2 if via is None else 3)
            if n == total:
                merged += n
            else:
                rows = _column_rows(chains)
                whole.extend((*rows[i][5:14], rows[i][0], 1) for i in (idx or range(total)))
    for data in subs:
        # via, channel None, attempts None: the statement
        for (via, no_channel, no_attempts), idx in _groups(data, ((4, False), (2, True), (3, True))):
            fields = ("channel",) * (not no_channel) + ("attempts",) * (not no_attempts)
            total = data[0] if idx is None else len(idx)
            n = _write_moves(conn, _SUBMITTED_STATE, fields, via, _SEG1_WHOLE, _SUB_LAYOUT, data, idx, chunk)
            _tally(counts, finished, _SUBMITTED_STATE, n, total, 1 if via is None else 2)
            if n == total:
                merged += n
            else:
                rows = _column_rows(data)
                whole.extend((*rows[i][5:], rows[i][0], 1) for i in (idx or range(total)))
    for data in pairs:
        for (new, no_error), idx in _groups(data, ((5, False), (7, True))):
            fields = () if no_error else ("error_code",)
            total = data[0] if idx is None else len(idx)
            n = _write_moves(conn, new, fields, new, _SEG1_RECEIPT, _PAIR_LAYOUT, data, idx, chunk)
            _tally(counts, finished, new, n, total, 1)
            if n == total:
                merged += n
            else:
                rows = _column_rows(data)
                receipt_only.extend((*rows[i][1:5], rows[i][0], 1) for i in (idx or range(total)))
    return merged


def _tally(counts: _Counts, finished: dict[str, int], new: str, n: int, total: int, moves: int) -> None:
    """Count a column statement's `n` rows written of `total`, each row `moves` moves."""
    counts.applied += n * moves
    counts.refused += (total - n) * moves
    counts.state_writes += n
    if n and new in FINAL:
        finished[new] = finished.get(new, 0) + n


def _write_moves(
    conn: sqlite3.Connection,
    new: str,
    fields: tuple[str, ...],
    first: str | None,
    seg1: int,
    layout: tuple[int | None, ...],
    data: Sequence[Any],
    idx: list[int] | None,
    chunk: int,
) -> int:
    """The moves of the rows `idx` of a column op (a group of _groups), each with its
    segment 1's version (`seg1`, its columns where `layout` says): the rows changed.
    The rows with segment 1 are written with plain columns; the others, if some rows
    were not changed (refused, or a message stored without segment 1), by a second
    statement without the segment columns. A version whose own state is None (bad data,
    which the guard would take for a row without segment 1) keeps the guarded form."""
    sql = state_sql(new, fields, True, first=first, seg1=seg1)
    if sql is None:  # nothing may move to `first`: all refused
        return 0
    n, shared, values, varying, columns = data[:5]
    j = layout[len(_STATE_ROW)]  # the version's state
    if j in shared:
        stateless = values[shared.index(j)] is None
    else:
        col = columns[varying.index(j)]
        stateless = None in (col if idx is None else [col[i] for i in idx])
    if stateless:
        return _write_fast(conn, sql, layout, data, idx, chunk)
    sql = state_sql(new, fields, True, first=first, seg1=seg1, rows=_SEG1_ROWS)
    changed = _write_fast(conn, sql, layout, data, idx, chunk)
    if changed < (n if idx is None else len(idx)):
        sql = state_sql(new, fields, True, first=first, seg1=seg1, rows=_NO_SEG1_ROWS)
        changed += _write_fast(conn, sql, layout, data, idx, chunk)
    return changed


def _groups(
    data: Sequence[Any], keys: tuple[tuple[int, bool], ...]
) -> list[tuple[tuple, list[int] | None]]:
    """A column op's rows grouped by their statement: by the value of each key column
    (flat index, False) or whether it is None (True). [(key, row indexes or None: all)]."""
    n, shared, values, varying, columns = data[:5]
    const: list[Any] = []
    cols: list[Sequence[Any] | None] = []
    for j, is_none in keys:
        if j in shared:
            v = values[shared.index(j)]
            const.append(v is None if is_none else v)
            cols.append(None)
        else:
            col = columns[varying.index(j)]
            const.append(None)
            cols.append([v is None for v in col] if is_none else col)
    if all(c is None for c in cols):
        return [(tuple(const), None)]
    groups: dict[tuple, list[int]] = {}
    per_row = [c if c is not None else (v,) * n for c, v in zip(cols, const)]
    for i, key in enumerate(zip(*per_row)):
        groups.setdefault(key, []).append(i)
    if len(groups) == 1:
        return [(next(iter(groups)), None)]
    return list(groups.items())


_COLUMN_REF = re.compile(r"v\.column(\d+)")


@functools.cache
def _referenced(bulk_sql: str) -> tuple[int, ...]:
    """The columns (0-based) of its VALUES rows a `FROM (VALUES {rows}) AS v` statement uses."""
    return tuple(sorted({int(m) - 1 for m in _COLUMN_REF.findall(bulk_sql)}))


@functools.cache
def _fast_sql(bulk_sql: str, rows: int, spec: str) -> str:
    """`bulk_sql` for `rows` rows, each column it uses (_referenced, in order) made, by its
    letter in `spec`: "n" a literal NULL, "s" a parameter bound once (numbered first, in
    order), "v" a column of the VALUES rows (numbered after, column by column: a column's
    values in row order, then the next column's)."""
    rep: dict[int, str] = {}
    s = v = 0
    for k, kind in zip(_referenced(bulk_sql), spec, strict=True):
        if kind == "n":
            rep[k] = "NULL"
        elif kind == "s":
            s += 1
            rep[k] = f"?{s}"
        else:
            v += 1
            rep[k] = _v(v - 1)
    text = _COLUMN_REF.sub(lambda m: rep[int(m.group(1)) - 1], bulk_sql)
    values = ", ".join(  # column by column: the parameters are the columns' slices
        "(" + ", ".join(f"?{s + c * rows + r + 1}" for c in range(v)) + ")" for r in range(rows)
    )
    return text.replace("{rows}", values)


def _write_fast(
    conn: sqlite3.Connection,
    bulk_sql: str,
    layout: tuple[int | None, ...],
    data: Sequence[Any],
    idx: list[int] | None,
    chunk: int,
) -> int:
    """Run `bulk_sql` (a state_sql(..., bulk=True)) for the rows `idx` (None: all) of a
    column op, `layout` saying which column of the op each VALUES column is; returns the
    number of rows changed."""
    n, shared, values, varying, columns = data[:5]
    spec = []
    bound: list[Any] = []
    cols: list[Sequence[Any]] = []
    for k in _referenced(bulk_sql):
        j = layout[k]
        if j is None:
            spec.append("n")
        elif j in shared:
            v = values[shared.index(j)]
            if v is None:
                spec.append("n")
            else:
                spec.append("s")
                bound.append(v)
        else:
            col = columns[varying.index(j)]
            if len(col) != n:
                raise ValueError(f"a column of {len(col)} values in an op of {n} rows")
            cols.append(col if idx is None else [col[i] for i in idx])
            spec.append("v")
    if not cols:  # (a one-row op sent with its id shared)
        raise ValueError("a column op whose message ids are not a column")
    kinds = "".join(spec)
    changed = i = 0
    for size in _chunks(n if idx is None else len(idx), chunk):
        params = bound.copy()
        for c in cols:
            params += c[i : i + size]
        i += size
        changed += conn.execute(_fast_sql(bulk_sql, size, kinds), params).rowcount
    return changed


# An insert op of fewer rows (one-message requests) goes into the statements of the others
# (row by row, the batch's rows together): on its own it would be a statement of its own.
_COLUMNS_MIN_ROWS = 8


def _apply_inserts(
    conn: sqlite3.Connection, ops: list[tuple[int, Sequence[Any]]], counts: _Counts, bulk: bool, chunk: int
) -> None:
    """ops: (index, data), data an insert op's columns (_insert_columns). Results: per op
    the stored row of each duplicate message (same tenant and client_ref), None for an
    inserted one.

    An op of many rows with no client_ref and no segments 2.. (a batch request's messages)
    is written as it came, its equal columns bound once per statement (_write_columns):
    it has no duplicate to look for. The others become rows again and are written
    together after the duplicate check."""
    items: list[tuple[int, list[tuple], Any]] = []  # (index, rows, segment rows 2.. by row)
    for i, data in ops:
        n, shared, values, _varying, _columns, rests = data
        if (
            bulk
            and n >= _COLUMNS_MIN_ROWS
            and not rests
            and _CLIENT_REF in shared
            and values[shared.index(_CLIENT_REF)] is None
        ):
            _write_columns(conn, _BULK_INSERT_MESSAGE, data, chunk)
            counts.inserted += n
            counts.results[i] = [None] * n
        else:
            items.append((i, _insert_rows(data), rests))
    if not items:
        return
    # Which (tenant, client_ref) already exist: one indexed join for the whole batch.
    keys = [
        (row[_TENANT], row[_CLIENT_REF])
        for _i, rows, _rests in items
        for row in rows
        if row[_CLIENT_REF] is not None
    ]
    known: dict[tuple[str, str], Sequence[Any]] = {}
    if keys:
        for row in _read_rows(conn, _FIND_CLIENT_REFS, keys, chunk):
            known[(row[_TENANT], row[_CLIENT_REF])] = row
    new_rows: list[tuple] = []
    seg_rows: list[tuple] = []
    fresh: dict[tuple[str, str], Sequence[Any]] = {}  # inserted by this batch: key -> row
    for i, rows, rests in items:
        results: list[Sequence[Any] | None] = []
        for k, row in enumerate(rows):
            ref = row[_CLIENT_REF]
            if ref is not None:
                key = (row[_TENANT], ref)
                prev = known.get(key)
                if prev is None:
                    prev = fresh.get(key)  # the first one, as stored
                if prev is not None:
                    results.append(prev)
                    counts.duplicates += 1
                    continue
                fresh[key] = row
            new_rows.append(row)
            if rests and k in rests:
                seg_rows.extend(rests[k])
            results.append(None)
        counts.results[i] = results
    if new_rows:
        _write(conn, _BULK_INSERT_MESSAGE, _INSERT_MESSAGE, new_rows, bulk, chunk)
        counts.inserted += len(new_rows)
    if seg_rows:
        _write(conn, _BULK_INSERT_SEGMENT, _INSERT_SEGMENT, seg_rows, bulk, chunk)


def _write_columns(conn: sqlite3.Connection, bulk_sql: str, data: Sequence[Any], chunk: int) -> None:
    """Insert the rows of `data` (_insert_columns) by multi-row statements: each shared
    column one parameter (or a literal NULL), the others column by column (_sized's
    by_column: the parameters are slices of the columns, no row built)."""
    n, shared, values, varying, columns, _rests = data
    nulls = tuple(j for j, v in zip(shared, values) if v is None)
    bound = tuple(j for j, v in zip(shared, values) if v is not None)
    first = [v for v in values if v is not None]
    cols = len(shared) + len(varying)
    for col in columns:
        if len(col) != n:
            raise ValueError(f"a column of {len(col)} values in an op of {n} rows")
    i = 0
    for size in _chunks(n, chunk):
        params = first.copy()
        for col in columns:
            params += col[i : i + size]
        i += size
        conn.execute(_sized(bulk_sql, size, cols, nulls, bound, True), params)


def _apply_states(
    conn: sqlite3.Connection,
    states: list[Sequence],
    bulk: bool,
    chunk: int,
    counts: _Counts,
    seg1: dict[str, tuple[int, tuple]] | None = None,
) -> set[str]:
    """Apply queued state changes in queue order per message; counts applied and refused
    moves, rows written, and messages that reached a final state.

    Coalescing: consecutive changes of one message in one batch form a chain as long as
    each move is legal after the one before (gateway.states.TRANSITIONS, checked here); a
    chain is ONE write, to its last state, guarded by the sources of its first move, with
    the last value of every optional field (queued -> submitting -> submitted -> delivered
    within a batch is one row update, not four). The chain applies as a whole or not at all:
    if the stored state refuses the first move, the later ones are refused with it, where
    one by one a later move might have applied; moves come from the pipeline's own state
    machine, so a refusal is already an anomaly (counted).

    A move that is illegal after the previous one of its message starts a new chain; the
    n-th chain of each message goes into round n and rounds run in order. Inside a round
    every message appears once: chains are grouped by (first, last, fields set, moves), one
    statement per group.

    `seg1`: versions of segment 1 by message id (kind, version as queued: its values, then
    message_id, seq); each rides on its message's last chain, in the same UPDATE. Returns
    the messages whose version was written so (every write of the group applied).
    """
    current, earlier = _chains(states)
    rounds: list[dict[tuple, list]] = [{}]
    for r, chain in earlier:
        while len(rounds) <= r:
            rounds.append({})
        _group(rounds[r], (chain,))
    if earlier:
        last = {chain[0]: r for r, chain in earlier}  # a message's last earlier round
        for chain in current.values():
            r = last.get(chain[0], -1) + 1
            if r == len(rounds):
                rounds.append({})
            _group(rounds[r], (chain,), seg1)
    else:
        _group(rounds[0], current.values(), seg1)
    finished = counts.finished
    written: set[str] = set()
    n_state = len(_STATE_ROW)
    for groups in rounds:
        for key, rows in groups.items():
            first, new, weight, nones, kind = key[0], key[1], key[2], key[3:8], key[8]
            fields = tuple(name for name, none in zip(_FIELDS, nones) if not none)
            sql = state_sql(new, fields, first=first, seg1=kind)
            n = 0
            if sql is not None:  # else nothing may move to `first`: all refused
                bulk_sql = state_sql(new, fields, True, first=first, seg1=kind)
                if not bulk:  # positional: id, now, the fields set (then segment 1's)
                    at = [3 + i for i, none in enumerate(nones) if not none]
                    rows = [[r[0], r[2], *[r[i] for i in at], *r[n_state:]] for r in rows]
                n = _write(conn, bulk_sql, sql, rows, bulk, chunk)
            if kind and n == len(rows):
                written.update(r[0] for r in rows)
            counts.applied += n * weight
            counts.refused += (len(rows) - n) * weight
            counts.state_writes += n
            if n and new in FINAL:
                finished[new] = finished.get(new, 0) + n
    return written


# Several moves of one message coalesced, a chain: a list of _STATE_ROW (submitted_at: when
# the chain passed through SUBMITTED), then its first state and its number of moves. A
# single queued move has no submitted_at: 7 values, a chain _CHAIN_LEN. Told apart by
# length, not by a list subclass: indexing a subclass of list skips the interpreter's
# fast path (3x slower), and _group indexes every chain ten times.
_CHAIN_LEN = len(_STATE_ROW) + 2


_SUBMITTED_STATE = State.SUBMITTED._value_
_NEXT: dict[str, frozenset[str]] = {s._value_: frozenset(n._value_ for n in TRANSITIONS[s]) for s in State}


def _chains(states: list[Sequence]) -> tuple[dict[str, Sequence], list[tuple[int, Sequence]]]:
    """Coalesce the moves (_STATE_ROW without submitted_at) into chains, in queue order:
    each message's current chain (a single move stays the queued row itself), and the
    chains closed by an illegal move, with their round."""
    # Hot: every state change of the pipeline passes here, with the GIL held.
    current: dict[str, Sequence] = {}
    earlier: list[tuple[int, Sequence]] = []
    rounds: dict[str, int] = {}  # messages with earlier chains: the current chain's round
    nxt = _NEXT
    for op in states:
        mid = op[0]
        c = current.get(mid)
        if c is None:
            current[mid] = op
            continue
        new = op[1]
        if new not in nxt[c[1]]:  # a new chain, in the next round
            r = rounds.get(mid, 0)
            earlier.append((r, c))
            rounds[mid] = r + 1
            current[mid] = op
            continue
        if len(c) != _CHAIN_LEN:
            c = current[mid] = [*c, c[2] if c[1] == _SUBMITTED_STATE else None, c[1], 1]
        c[1] = new
        c[2] = op[2]
        for i in 3, 4, 5, 6:
            if op[i] is not None:
                c[i] = op[i]
        if new == _SUBMITTED_STATE:
            c[7] = op[2]
        c[9] += 1
    return current, earlier


def _group(
    groups: dict[tuple, list],
    chains: Iterable[Sequence],
    seg1: dict[str, tuple[int, tuple]] | None = None,
) -> None:
    """File each chain under (first, last, moves, which fields are None, what it carries of
    segment 1): its statement. `seg1`: the versions of segment 1 (by message id) that ride
    on these chains (a message's last)."""
    for chain in chains:
        kind = _SEG1_NONE
        if seg1:
            found = seg1.get(chain[0])
            if found is not None:
                kind, version = found
        if len(chain) == _CHAIN_LEN:
            # submitted_at is a field if the chain passed through SUBMITTED
            key = (chain[8], chain[1], chain[9], chain[3] is None, chain[4] is None,
                   chain[5] is None, chain[6] is None, chain[7] is None, kind)
            row = chain[:8]  # a new list
        else:
            key = (chain[1], chain[1], 1, chain[3] is None, chain[4] is None,
                   chain[5] is None, chain[6] is None, True, kind)
            row = [*chain, None] if kind else chain
        if kind:  # its values follow the _STATE_ROW (a single move has no submitted_at)
            row += version  # in place (a list made above), then the key dropped
            del row[-2:]
        rows = groups.get(key)
        if rows is None:
            groups[key] = [row]
        else:
            rows.append(row)


@functools.cache
def _sized(
    sql: str,
    rows: int,
    cols: int,
    nulls: tuple[int, ...] = (),
    shared: tuple[int, ...] = (),
    by_column: bool = False,
) -> str:
    """`sql` with `{rows}` replaced by `rows` rows of `cols` placeholders, a literal NULL
    for each column in `nulls` (the positions of the columns, hence `v.columnN`, stay).
    Each column in `shared` is one parameter for every row, bound once: its number is its
    rank in `shared`, and the other values follow, row by row (see _write), or with
    `by_column` column by column (each column's values in row order: the parameters are
    the columns' slices one after the other, _write_columns)."""
    if not shared and not by_column:
        row = "(" + ", ".join("NULL" if j in nulls else "?" for j in range(cols)) + ")"
        return sql.replace("{rows}", ", ".join([row] * rows))
    rank = {j: k + 1 for k, j in enumerate(shared)}
    base = len(shared)
    others = [j for j in range(cols) if j not in nulls and j not in rank]
    out = []
    for r in range(rows):
        cells = []
        for j in range(cols):
            if j in nulls:
                cells.append("NULL")
            elif j in rank:
                cells.append(f"?{rank[j]}")
            elif by_column:
                cells.append(f"?{base + others.index(j) * rows + r + 1}")
            else:
                base += 1
                cells.append(f"?{base}")
        out.append("(" + ", ".join(cells) + ")")
    return sql.replace("{rows}", ", ".join(out))


# Binding a None costs sqlite3 an adapter lookup even with the registered adapter
# (open_writer: a key tuple built, hashed, looked up, the adapter called) where a str or a
# number binds directly, and most rows carry several: a new segment is 7 NULLs out of 10
# columns, a new message 6 out of 21. A column that is None
# in every row of a statement is written as a literal NULL instead of bound. Per statement
# (not per row), so the rows keep their order (rowids) and a mixed group costs no more
# statements than before.
# Binding a str copies it into the statement (sqlite3 binds text as SQLITE_TRANSIENT): a
# statement's rows often share a text column (a batch request's tenant, sender, text,
# category, channel; a receipt batch's channel and state), which is then bound once and
# named by every row (_sized's `shared`). Only str: equal str values are the same value
# to SQLite, where 1, 1.0 and True compare equal in Python but are stored differently.
def _shared_columns(rows: list[tuple]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(the columns None in every row, the str columns equal in every row of several)."""
    n = len(rows)
    nones = (None,) * n
    nulls = []
    shared = []
    for j, col in enumerate(zip(*rows)):
        v = col[0]
        if v is None:
            if col == nones:  # tuple == compares by identity first, stops at a value
                nulls.append(j)
        elif n > 1 and type(v) is str and col[-1] == v and col.count(v) == n:
            shared.append(j)  # (the last row first: most columns that differ show it there)
    return tuple(nulls), tuple(shared)


@functools.cache
def _bound(cols: int, nulls: tuple[int, ...]) -> Callable[[Sequence[Any]], tuple]:
    """A row's values to bind when the columns `nulls` are literal NULLs."""
    kept = [j for j in range(cols) if j not in nulls]
    if len(kept) == 1:  # itemgetter of one index returns the value, not a 1-tuple
        j = kept[0]
        return lambda row: (row[j],)
    return operator.itemgetter(*kept) if kept else lambda row: ()


def _chunks(n: int, chunk: int) -> list[int]:
    """Row counts of the statements for n rows: full chunks, then powers of two."""
    sizes = [chunk] * (n // chunk)
    rest = n % chunk
    bit = chunk >> 1
    while rest:
        if rest >= bit:
            sizes.append(bit)
            rest -= bit
        bit >>= 1
    return sizes


def _write(
    conn: sqlite3.Connection,
    bulk_sql: str,
    row_sql: str,
    rows: list[tuple],
    bulk: bool,
    chunk: int = _CHUNK_ROWS,
) -> int:
    """Run a write for every row; returns the number of rows changed. executemany, or with
    `bulk` a few multi-row statements (`{rows}` in bulk_sql stands for the placeholders)."""
    if not bulk:
        return conn.executemany(row_sql, rows).rowcount
    cols = len(rows[0])
    changed = i = 0
    for size in _chunks(len(rows), chunk):
        part = rows[i : i + size]
        i += size
        nulls, shared = _shared_columns(part)
        if shared:
            first = part[0]
            params = [first[j] for j in shared]
            params += _flat(map(_bound(cols, tuple(sorted(nulls + shared))), part))
        elif nulls:
            params = list(_flat(map(_bound(cols, nulls), part)))
        else:
            params = list(_flat(part))
        changed += conn.execute(_sized(bulk_sql, size, cols, nulls, shared), params).rowcount
    return changed


def _read_rows(conn: sqlite3.Connection, sql: str, keys: list[tuple], chunk: int) -> list:
    """A multi-row VALUES query (`{rows}` in sql) for every key; all result rows."""
    cols = len(keys[0])
    out: list = []
    i = 0
    for size in _chunks(len(keys), chunk):
        part = keys[i : i + size]
        i += size
        out += conn.execute(_sized(sql, size, cols), list(_flat(part))).fetchall()
    return out


def _rollback(conn: sqlite3.Connection) -> None:
    # Some errors (SQLITE_FULL, IOERR, BUSY) may already have rolled the transaction back.
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
