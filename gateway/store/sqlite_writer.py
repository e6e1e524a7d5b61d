"""The SQLite writer process: `python -m gateway.store.sqlite_writer`, started and owned by a
SqliteStore with `[store] writer = "process"` (gateway.store.sqlite).

Why a process: in thread mode the batch execution (binding parameters, coalescing state
changes, SQLite's own work between GIL releases) shares the GIL with the busy trio thread:
the writer waits for the GIL (a convoy, docs/architecture.md "GIL switch interval") and its
Python work runs on the gateway's one GIL-bound core. Here it has an interpreter of its own.

Protocol, over stdin/stdout, every frame a 4-byte big-endian length then msgspec.msgpack:

- gateway -> writer, first frame: {"path", "synchronous", "busy_timeout", "chunk_rows",
  "expect" (the database file's (device, inode) the first writer reported, or None)};
  the writer takes the writer lock (`writer_lock`: waits up to busy_timeout for the writer
  of an earlier, killed gateway to finish); writer -> gateway: ["ready", schema before,
  schema after, chunk_rows, the database file's (device, inode)] once the writer
  connection is open (WAL, synchronous, foreign keys, busy_timeout, migrations: the same
  settings as thread mode; a restarted writer refuses a database file that is not
  "expect"), or ["error", "version" | "unavailable", message, details] and exit 1.
- then per batch: gateway -> writer [bulk, [[kind, data], ...]] (no flushes, plain data);
  writer -> gateway, only after COMMIT: ["ok", counts, cpu seconds] (gateway.store.sqlite
  _Counts.to_wire: per-op results and rejections by op index), or ["fail", error type,
  message] when the batch failed as a whole (rolled back; an environment error) and the
  writer goes on.
- The gateway keeps up to two batches in flight (the next one is in the pipe while one
  commits). After a "fail" the writer answers every later batch ["skipped"] without
  touching the database until the gateway sends the frame "resume": the gateway requeues
  the failed batch and the skipped ones together, so the ops commit in the order they were
  queued (a retried older segment version must not overwrite a newer one).
- end of stdin: PRAGMA optimize, close, exit 0.

msgpack has no tuples: the data comes back as lists, which the batch execution takes as
they are (it builds every key it hashes itself), so it is the very code of thread mode
(gateway.store.sqlite.execute_batch). States travel as their str
values in both modes.

SQLite runs single-threaded here (`_single_threaded_sqlite`): this process has one thread
and one connection, so SQLite's mutexes and its memory statistics are pure overhead (~4 %
of the writer's instructions, docs/benchmarks.md "Ninth session").

SIGINT and SIGTERM are ignored: the gateway drains its queue through this process when it
stops (a Ctrl-C or systemd's SIGTERM to the whole group must not kill it first); it exits
when its stdin closes, which also happens when the gateway dies.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sqlite3
import struct
import sys
import time
from typing import BinaryIO

import msgspec

from gateway import gctune
from gateway.store.migrations import StoreVersionError
from gateway.store.sqlite import execute_batch, open_writer, writer_lock

_HEADER = struct.Struct(">I")


def _read_frame(inp: BinaryIO) -> bytes | None:
    head = inp.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None  # the gateway closed the pipe (or died)
    (n,) = _HEADER.unpack(head)
    body = inp.read(n)
    if len(body) < n:
        return None
    return body


def _write_frame(out: BinaryIO, payload: bytes) -> None:
    out.write(_HEADER.pack(len(payload)) + payload)
    out.flush()


# sqlite3_config() options (sqlite3.h)
_SQLITE_CONFIG_SINGLETHREAD = 1
_SQLITE_CONFIG_MEMSTATUS = 9


def _single_threaded_sqlite() -> bool:
    """Switch the SQLite library of this process to single-thread mode without memory
    statistics, before any connection is opened; True if it is.

    The writer process uses SQLite from one thread only (serve), where the default
    ("serialized") mode takes a mutex in every bind, step, malloc and free, and the memory
    statistics take another one per allocation. sqlite3_config() only works while the
    library is not initialised (Python's module may have initialised it): shutdown (no
    connection is open yet), configure, initialise again. Called through the library the
    sqlite3 module itself uses (symbols looked up from the _sqlite3 extension). Anything
    unexpected leaves the defaults: this only saves CPU.

    Never call this in a process whose SQLite may be used by several threads (the gateway
    in thread mode: its read connection moves between trio's worker threads)."""
    try:
        import _sqlite3

        lib = ctypes.CDLL(_sqlite3.__file__)
        config, shutdown, initialize = lib.sqlite3_config, lib.sqlite3_shutdown, lib.sqlite3_initialize
    except (ImportError, OSError, AttributeError):
        return False
    if shutdown() != 0:
        return False
    single = config(_SQLITE_CONFIG_SINGLETHREAD) == 0
    # MEMSTATUS takes a variadic int: passed as a plain int argument, which is how the
    # Linux ABIs (x86-64, aarch64) pass it; not attempted elsewhere.
    if single and sys.platform == "linux":
        config(_SQLITE_CONFIG_MEMSTATUS, ctypes.c_int(0))
    initialize()  # (sqlite3_open initialises too, should this fail)
    return single


def serve(inp: BinaryIO, out: BinaryIO) -> int:
    encode = msgspec.msgpack.Encoder().encode
    decode = msgspec.msgpack.Decoder().decode
    first = _read_frame(inp)
    if first is None:
        return 0
    cfg = decode(first)
    try:
        # Held until this process exits (the kernel releases it on any exit): a gateway
        # started while this one still commits after its own gateway died waits for it.
        writer_lock(cfg["path"], cfg["busy_timeout"])
        conn, before, after, chunk = open_writer(
            cfg["path"], cfg["synchronous"], cfg["busy_timeout"], cfg["chunk_rows"],
            cfg.get("expect"),
        )
    except StoreVersionError as e:
        _write_frame(out, encode(["error", "version", e.message, e.details]))
        return 1
    except (sqlite3.Error, OSError) as e:
        _write_frame(out, encode(["error", "unavailable", f"{e}", {}]))
        return 1
    _write_frame(out, encode(["ready", before, after, chunk, conn.files[0]]))
    poisoned = False  # a batch failed: skip the later ones until "resume"
    try:
        while (frame := _read_frame(inp)) is not None:
            cpu0 = time.process_time()
            msg = decode(frame)
            if msg == "resume":
                poisoned = False
                continue
            if poisoned:
                _write_frame(out, encode(["skipped"]))
                continue
            bulk, ops = msg
            try:
                counts = execute_batch(conn, ops, bulk, chunk)
            except Exception as e:  # environment (disk, lock, I/O) or a bug: batch failed
                reply = ["fail", type(e).__name__, str(e)]
                poisoned = True
            else:
                reply = ["ok", counts.to_wire(), 0.0]
            if reply[0] == "ok":
                reply[2] = time.process_time() - cpu0
            _write_frame(out, encode(reply))
    finally:
        try:  # keep planner statistics fresh, bounded work (as thread mode at close)
            conn.execute("PRAGMA analysis_limit=1000")
            conn.execute("PRAGMA optimize")
        except sqlite3.Error:
            pass
        conn.close()
    return 0


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Frames own fd 1: anything else printed goes to stderr.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    inp = os.fdopen(os.dup(0), "rb")
    _single_threaded_sqlite()
    gctune.tune()
    try:
        return serve(inp, out)
    except BrokenPipeError:  # the gateway is gone
        return 0


if __name__ == "__main__":
    sys.exit(main())
