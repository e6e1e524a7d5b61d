"""The writer process switches its SQLite library to single-thread mode without memory
statistics (gateway.store.sqlite_writer._single_threaded_sqlite). Process-wide, so each test
runs it in a child process: this one's SQLite is used from several threads."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_the_library_is_configured_before_the_first_connection():
    out = run(
        """
        import ctypes, sqlite3, _sqlite3
        from gateway.store.sqlite_writer import _single_threaded_sqlite
        lib = ctypes.CDLL(_sqlite3.__file__)
        lib.sqlite3_memory_used.restype = ctypes.c_int64
        c = sqlite3.connect(":memory:")  # the library is initialised, as after import
        before = lib.sqlite3_memory_used()  # counted by default
        c.close()
        print(_single_threaded_sqlite(), before > 0, end=" ")
        c = sqlite3.connect(":memory:")
        c.execute("CREATE TABLE t (x TEXT)")
        c.executemany("INSERT INTO t VALUES (?)", [("a" * 100,)] * 100)
        # without memory statistics SQLite counts no allocation at all
        print(c.execute("SELECT count(*) FROM t").fetchone()[0], lib.sqlite3_memory_used())
        """
    )
    assert out == "True True 100 0"


def test_the_writer_process_commits_in_that_mode(tmp_path):
    path = tmp_path / "gateway.db"
    out = run(
        f"""
        import io, struct, msgspec, sqlite3
        from gateway.states import State
        from gateway.store import sqlite as S, sqlite_writer
        from tests.test_store_sqlite import msg
        assert sqlite_writer._single_threaded_sqlite()
        rec, _ = msg(1, state=State.QUEUED)
        row = list(msgspec.structs.astuple(rec) + S._NO_SEG1)
        row[8] = rec.state.value
        move = [S._STATE, [rec.id, "submitting", rec.created_at + 1, None, None, None, None]]
        cfg = {{"path": {str(path)!r}, "synchronous": "FULL", "busy_timeout": 1.0, "chunk_rows": 128}}
        H = struct.Struct(">I")
        inp = io.BytesIO(b"".join(H.pack(len(p)) + p for p in map(msgspec.msgpack.encode, [
            cfg, [True, [[S._INSERT, S._insert_columns([tuple(row)], None)]]], [True, [move]]])))
        out = io.BytesIO()
        assert sqlite_writer.serve(inp, out) == 0
        print(sqlite3.connect({str(path)!r}).execute("SELECT state FROM messages").fetchall())
        """
    )
    assert out == "[('submitting',)]"
