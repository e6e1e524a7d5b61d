"""Schema versions of the SQLite store, kept in code.

`MIGRATIONS` is a list of (version, SQL script), applied in order. `PRAGMA user_version`
records the version a database file is at; `migrate()` applies every script above it, all
of them in ONE transaction together with the new user_version (SQLite DDL is transactional,
so a failure half way leaves the file exactly as it was). A file written by a newer gateway
(user_version above the last version known here) is refused with `StoreVersionError`: an
older binary must not guess at a schema it does not know.

Rules for adding a version: append, never edit a released script; a script holds only
statements valid inside a transaction (no VACUUM, no `PRAGMA journal_mode`); table columns
mirror the msgspec Structs of gateway.store.records (the tests compare them): `messages`
is MessageRecord's fields, then segment 1's columns (SegmentRecord's non-key fields, each
prefixed `seg_`, v5); SegmentRecord's last field, `receipt`, is v7's column.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence

from gateway.errors import GatewayError


class StoreVersionError(GatewayError):
    """The database file is at a schema version this gateway does not know (newer)."""

    code = "store_version"
    http_status = 500


V1 = """
CREATE TABLE messages (
    id            TEXT PRIMARY KEY,
    tenant        TEXT NOT NULL,
    client_ref    TEXT,
    source_addr   TEXT NOT NULL,
    destination   TEXT NOT NULL,
    text          TEXT NOT NULL,
    category      TEXT NOT NULL,
    priority      INTEGER NOT NULL,
    state         TEXT NOT NULL,
    channel       TEXT,
    data_coding   INTEGER NOT NULL,
    segment_count INTEGER NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    error_code    TEXT,
    error         TEXT,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    expires_at    REAL NOT NULL,
    submitted_at  REAL,
    done_at       REAL
);
-- idempotent intake: one message per (tenant, client_ref) when a client_ref is given
CREATE UNIQUE INDEX messages_client_ref ON messages (tenant, client_ref)
    WHERE client_ref IS NOT NULL;
-- recovery (unfinished) and count_by_state
CREATE INDEX messages_state ON messages (state, created_at);

CREATE TABLE segments (
    message_id      TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    state           TEXT NOT NULL,
    channel         TEXT,
    smsc_message_id TEXT,
    id_key          TEXT,
    submit_status   INTEGER,
    submitted_at    REAL,
    receipt_error   TEXT,
    receipt_at      REAL,
    PRIMARY KEY (message_id, seq)
) WITHOUT ROWID;
-- receipt matching: the channel's normalised SMSC message id
CREATE INDEX segments_id_key ON segments (channel, id_key) WHERE id_key IS NOT NULL;

-- Every receipt as received, matched or not (an audit log: never refused, so no foreign
-- key; message_id/seq are filled when it was matched to a segment).
CREATE TABLE receipts (
    id              INTEGER PRIMARY KEY,
    channel         TEXT NOT NULL,
    smsc_message_id TEXT NOT NULL,
    id_key          TEXT NOT NULL,
    state           TEXT,
    error_code      TEXT,
    raw             TEXT NOT NULL,
    received_at     REAL NOT NULL,
    message_id      TEXT,
    seq             INTEGER
);
CREATE INDEX receipts_unmatched ON receipts (channel, id) WHERE message_id IS NULL;
CREATE INDEX receipts_message ON receipts (message_id);
"""

# A receipt that overtook its submit_sm_resp is stored unmatched, then linked by
# (channel, id_key) when the resp arrives (SqliteStore.match_receipt_nowait).
V2 = """
CREATE INDEX receipts_unmatched_key ON receipts (channel, id_key) WHERE message_id IS NULL;
"""

# The concatenation reference is chosen at intake and stored, so segments resent after a
# restart carry the same reference as those the SMSC already took (the handset reassembles).
V3 = """
ALTER TABLE messages ADD COLUMN concat_ref INTEGER;
"""

# Open messages only. The (state, created_at) index changed with every state move (three
# or four per message); this partial index is keyed on columns no move but the final one
# touches (done_at is set exactly when a message reaches a final state), so a message costs
# one index insert at intake and one delete when it ends. Recovery and the open-message
# counts read it; its size is the backlog, not the history.
V4 = """
DROP INDEX messages_state;
CREATE INDEX messages_open ON messages (created_at) WHERE done_at IS NULL;
"""

# Segment 1 of every message lives in its message's row (columns `seg_` + the segment
# columns; seg_state NULL: the message has no segment 1), the segments table keeps segments
# 2 and up. Most messages have one segment: each pipeline event (intake, submit, receipt)
# was a message row write and a segment row write; now it is one row write, with one
# index (messages_seg_id_key) for receipt matching. docs/architecture.md, "Store".
V5 = """
ALTER TABLE messages ADD COLUMN seg_state TEXT;
ALTER TABLE messages ADD COLUMN seg_channel TEXT;
ALTER TABLE messages ADD COLUMN seg_smsc_message_id TEXT;
ALTER TABLE messages ADD COLUMN seg_id_key TEXT;
ALTER TABLE messages ADD COLUMN seg_submit_status INTEGER;
ALTER TABLE messages ADD COLUMN seg_submitted_at REAL;
ALTER TABLE messages ADD COLUMN seg_receipt_error TEXT;
ALTER TABLE messages ADD COLUMN seg_receipt_at REAL;
UPDATE messages SET
    seg_state = s.state,
    seg_channel = s.channel,
    seg_smsc_message_id = s.smsc_message_id,
    seg_id_key = s.id_key,
    seg_submit_status = s.submit_status,
    seg_submitted_at = s.submitted_at,
    seg_receipt_error = s.receipt_error,
    seg_receipt_at = s.receipt_at
FROM segments AS s WHERE s.message_id = messages.id AND s.seq = 1;
DELETE FROM segments WHERE seq = 1;
CREATE INDEX messages_seg_id_key ON messages (seg_channel, seg_id_key)
    WHERE seg_id_key IS NOT NULL;
"""

# The receipt journal's committed mark (gateway/store/journal.py): the highest journal frame
# whose receipts this database holds, written by the transaction that applies them. A
# restart replays the frames above it. And receipts_message goes: nothing reads receipts by
# message (reads take the unmatched ones), and every matched receipt paid an index insert.
V6 = """
CREATE TABLE receipt_journal (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
INSERT INTO receipt_journal (id, seq) VALUES (1, 0);
DROP INDEX receipts_message;
"""

# The text of the receipt that settled a segment lives in the segment's row (segment 1:
# messages.seg_receipt, the others: segments.receipt), written by the same UPDATE that
# records the receipt's state, error and time: a matched receipt no longer costs a row in
# `receipts`, which keeps the receipts that settled nothing at once (unmatched ones, those
# that overtook their submit_sm_resp and are linked later, intermediate ones).
# docs/architecture.md, "Store". Backfilled from the matched receipts that reported a
# state (the latest by id per segment; in practice a segment has one, later ones were
# duplicates and not stored); those rows stay where they are, nothing is deleted. One
# GROUP BY pass each: no index leads from a segment to its receipts since v6.
V7 = """
ALTER TABLE messages ADD COLUMN seg_receipt TEXT;
ALTER TABLE segments ADD COLUMN receipt TEXT;
UPDATE messages SET seg_receipt = r.raw
FROM (
    SELECT message_id, raw, max(id) FROM receipts
    WHERE message_id IS NOT NULL AND seq = 1 AND state IS NOT NULL
    GROUP BY message_id
) AS r
WHERE messages.id = r.message_id AND messages.seg_state IS NOT NULL;
UPDATE segments SET receipt = r.raw
FROM (
    SELECT message_id, seq, raw, max(id) FROM receipts
    WHERE message_id IS NOT NULL AND seq > 1 AND state IS NOT NULL
    GROUP BY message_id, seq
) AS r
WHERE segments.message_id = r.message_id AND segments.seq = r.seq;
"""

MIGRATIONS: list[tuple[int, str]] = [
    (1, V1),
    (2, V2),
    (3, V3),
    (4, V4),
    (5, V5),
    (6, V6),
    (7, V7),
]

LATEST = MIGRATIONS[-1][0]


def statements(script: str) -> Iterator[str]:
    """Split a script into complete SQL statements (semicolons inside strings, comments or
    trigger bodies do not split: sqlite3.complete_statement decides)."""
    buf = ""
    for piece in script.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            stmt = buf.strip()
            buf = ""
            if stmt.strip(";").strip() and not _only_comments(stmt):
                yield stmt
    if buf.strip(" \t\r\n;") and not _only_comments(buf):
        raise ValueError(f"incomplete SQL statement at the end of a migration: {buf[:80]!r}")


def _only_comments(stmt: str) -> bool:
    return all(
        not line.strip() or line.strip().startswith("--") or line.strip() == ";"
        for line in stmt.splitlines()
    )


def version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def migrate(
    conn: sqlite3.Connection, migrations: Sequence[tuple[int, str]] = MIGRATIONS
) -> tuple[int, int]:
    """Bring the database to the last version in `migrations`; returns (before, after).

    `conn` must be in autocommit mode (isolation_level=None): the transaction is managed
    here. Raises StoreVersionError for a file newer than `migrations` knows.
    """
    versions = [v for v, _ in migrations]
    if versions != sorted(set(versions)) or (versions and versions[0] < 1):
        raise ValueError(f"migration versions must be increasing and >= 1: {versions}")
    latest = versions[-1] if versions else 0
    conn.execute("BEGIN IMMEDIATE")  # the write lock first: two processes cannot both migrate
    try:
        current = version(conn)
        if current > latest:
            raise StoreVersionError(
                f"database schema version {current} is newer than this gateway knows"
                f" ({latest}): use a newer gateway or restore a matching backup",
                found=current,
                supported=latest,
            )
        for v, script in migrations:
            if v <= current:
                continue
            for stmt in statements(script):
                conn.execute(stmt)
        if latest != current:
            conn.execute(f"PRAGMA user_version = {int(latest)}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return current, latest
