"""The SQLite cost of a message's three writes under other table shapes (no gateway code).

    .venv/bin/python bench/store_shapes_bench.py [--count 100000] [--rounds 3] [--shape S ...]

A message's life in the store is three row writes: its INSERT at intake, the UPDATE of the
move to `submitted` (SMSC message id, receipt key: an index insert) and the receipt's
UPDATE to `delivered` (plus a receipts row where the shape keeps one). Each is timed here
over `--count` messages in transactions of 1,000 and statements of 100 rows, as the writer
batches them, with plain SQL of the same columns and indexes as the gateway's schema:

- `wide`: the messages row with segment 1's columns in it (store v5/v6), receipts as rows;
- `receipt-in-row`: the same, the settling receipt's text in the row (store v7);
- `narrow`: the columns a move changes in a table of their own (WITHOUT ROWID, keyed by
  the message id), the rest written once (an idea of the ninth session's plan);
- `without-rowid`: the wide row in a WITHOUT ROWID table keyed by the id.

Shapes alternate within each round; per shape the best round is printed (microseconds per
message for each write, synchronous=OFF: the fsync is the same for all). A comparison of
shapes on one machine, not a rate of the gateway (bench/gateway_bench.py).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import tempfile
import time
from pathlib import Path

FIXED = (
    "id TEXT PRIMARY KEY, tenant TEXT NOT NULL, client_ref TEXT, source_addr TEXT NOT NULL,"
    " destination TEXT NOT NULL, text TEXT NOT NULL, category TEXT NOT NULL,"
    " priority INTEGER NOT NULL, data_coding INTEGER NOT NULL, segment_count INTEGER NOT NULL,"
    " created_at REAL NOT NULL, expires_at REAL NOT NULL, concat_ref INTEGER"
)
MOVING = (
    "state TEXT NOT NULL, channel TEXT, attempts INTEGER NOT NULL DEFAULT 0, error_code TEXT,"
    " error TEXT, updated_at REAL NOT NULL, submitted_at REAL, done_at REAL, seg_state TEXT,"
    " seg_channel TEXT, seg_smsc_message_id TEXT, seg_id_key TEXT, seg_submit_status INTEGER,"
    " seg_submitted_at REAL, seg_receipt_error TEXT, seg_receipt_at REAL, seg_receipt TEXT"
)
INDEXES = (
    "CREATE INDEX m_open ON {t} (created_at) WHERE done_at IS NULL;"
    " CREATE INDEX m_key ON {t} (seg_channel, seg_id_key) WHERE seg_id_key IS NOT NULL;"
)
CLIENT_REF = "CREATE UNIQUE INDEX m_cr ON messages (tenant, client_ref) WHERE client_ref IS NOT NULL;"
RECEIPTS = (
    "CREATE TABLE receipts (id INTEGER PRIMARY KEY, channel TEXT NOT NULL,"
    " smsc_message_id TEXT NOT NULL, id_key TEXT NOT NULL, state TEXT, error_code TEXT,"
    " raw TEXT NOT NULL, received_at REAL NOT NULL, message_id TEXT, seq INTEGER)"
)
SHAPES = ("wide", "receipt-in-row", "narrow", "without-rowid")
RAW = (
    "id:{} sub:001 dlvrd:001 submit date:2611270101 done date:2611270101 stat:DELIVRD"
    " err:000 text:Your code is 1234"
)
PER_TX, PER_STATEMENT = 1_000, 100


def _values(n: int, k: int) -> str:
    return ", ".join(["(" + ", ".join("?" * k) + ")"] * n)


def _schema(conn: sqlite3.Connection, shape: str) -> str:
    """Create the tables; returns the table the moves update."""
    if shape == "narrow":
        conn.executescript(
            f"CREATE TABLE messages ({FIXED}); {CLIENT_REF}"
            f" CREATE TABLE moves (id TEXT PRIMARY KEY, {MOVING}, created_at REAL NOT NULL)"
            f" WITHOUT ROWID; {INDEXES.format(t='moves')}"
        )
        table = "moves"
    else:
        rowid = " WITHOUT ROWID" if shape == "without-rowid" else ""
        conn.executescript(
            f"CREATE TABLE messages ({FIXED}, {MOVING}){rowid}; {CLIENT_REF}"
            f" {INDEXES.format(t='messages')}"
        )
        table = "messages"
    conn.execute(RECEIPTS)
    return table


def run(shape: str, count: int, path: Path) -> tuple[float, float, float]:
    """(insert, submitted, receipt) seconds per message."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    t = _schema(conn, shape)
    rng = random.Random(1)
    now = time.time()
    spent = [0.0, 0.0, 0.0]
    for b in range(count // PER_TX):
        ids = [f"{int(now * 1000) + b:012x}{rng.getrandbits(64):016x}" for _ in range(PER_TX)]
        fixed = [
            (i, "tenant-a", None, "Gateway", f"4479{rng.randrange(10**8):08d}",
             "Your code is 1234", "otp", 0, 0, 1, now, now + 86_400, None)
            for i in ids
        ]
        parts = range(0, PER_TX, PER_STATEMENT)
        submitted = [
            [x for i in ids[j : j + PER_STATEMENT]
             for x in (i, f"{rng.getrandbits(40):010x}", str(rng.getrandbits(40)), now)]
            for j in parts
        ]
        t0 = time.perf_counter()
        conn.execute("BEGIN")
        for j in parts:
            rows = fixed[j : j + PER_STATEMENT]
            if shape == "narrow":
                conn.execute(f"INSERT INTO messages VALUES {_values(len(rows), 13)}", [x for r in rows for x in r])
                conn.execute(
                    "INSERT INTO moves (id, state, channel, updated_at, seg_state, created_at)"
                    f" VALUES {_values(len(rows), 6)}",
                    [x for r in rows for x in (r[0], "queued", "smsc-a", now, "pending", now)],
                )
            else:
                conn.execute(
                    "INSERT INTO messages (id, tenant, client_ref, source_addr, destination, text,"
                    " category, priority, data_coding, segment_count, created_at, expires_at,"
                    " concat_ref, state, channel, updated_at, seg_state)"
                    f" VALUES {_values(len(rows), 17)}",
                    [x for r in rows for x in (*r, "queued", "smsc-a", now, "pending")],
                )
        conn.execute("COMMIT")
        t1 = time.perf_counter()
        conn.execute("BEGIN")
        for k, _j in enumerate(parts):
            conn.execute(
                f"UPDATE {t} SET state = 'submitted', updated_at = v.column4, submitted_at ="
                " v.column4, seg_state = 'submitted', seg_channel = 'smsc-a', seg_smsc_message_id"
                " = v.column2, seg_id_key = v.column3, seg_submit_status = 0, seg_submitted_at ="
                f" v.column4 FROM (VALUES {_values(PER_STATEMENT, 4)}) AS v WHERE {t}.id ="
                f" v.column1 AND +{t}.state IN ('queued', 'submitting')",
                submitted[k],
            )
        conn.execute("COMMIT")
        t2 = time.perf_counter()
        conn.execute("BEGIN")
        for j in parts:
            part = ids[j : j + PER_STATEMENT]
            if shape == "receipt-in-row":
                conn.execute(
                    f"UPDATE {t} SET state = 'delivered', updated_at = v.column2, done_at ="
                    " v.column2, seg_state = 'delivered', seg_receipt_at = v.column2, seg_receipt"
                    f" = v.column3 FROM (VALUES {_values(len(part), 3)}) AS v WHERE {t}.id ="
                    f" v.column1 AND +{t}.state IN ('submitted')",
                    [x for i in part for x in (i, now, RAW.format(i[-10:]))],
                )
                continue
            conn.execute(
                "INSERT INTO receipts (channel, smsc_message_id, id_key, state, error_code, raw,"
                f" received_at, message_id, seq) VALUES {_values(len(part), 9)}",
                [x for i in part for x in ("smsc-a", i[-10:], i[-10:], "delivered", "000",
                                           RAW.format(i[-10:]), now, i, 1)],
            )
            conn.execute(
                f"UPDATE {t} SET state = 'delivered', updated_at = v.column2, done_at ="
                " v.column2, seg_state = 'delivered', seg_receipt_at = v.column2"
                f" FROM (VALUES {_values(len(part), 2)}) AS v WHERE {t}.id = v.column1"
                f" AND +{t}.state IN ('submitted')",
                [x for i in part for x in (i, now)],
            )
        conn.execute("COMMIT")
        t3 = time.perf_counter()
        spent[0] += t1 - t0
        spent[1] += t2 - t1
        spent[2] += t3 - t2
    done = conn.execute(f"SELECT count(*) FROM {t} WHERE state = 'delivered'").fetchone()[0]
    conn.close()
    if done != count // PER_TX * PER_TX:
        raise SystemExit(f"{shape}: {done} messages delivered, not {count}")
    n = count // PER_TX * PER_TX
    return spent[0] / n, spent[1] / n, spent[2] / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--shape", action="append", choices=SHAPES, help="default: all")
    a = ap.parse_args()
    shapes = a.shape or list(SHAPES)
    best: dict[str, tuple[float, float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            for shape in shapes:
                got = run(shape, a.count, Path(tmp) / f"{shape}-{r}.db")
                if shape not in best or sum(got) < sum(best[shape]):
                    best[shape] = got
    print(f"best of {a.rounds} rounds, {a.count} messages, microseconds per message:")
    for shape in shapes:
        ins, sub, rc = (x * 1e6 for x in best[shape])
        print(f"  {shape:15} insert {ins:5.2f}  submitted {sub:5.2f}  receipt {rc:5.2f}  total {ins + sub + rc:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
