"""Replay captured writer-process frames through execute_batch, counted by callgrind.

    .venv/bin/python bench/writer_replay.py FRAMES [--start 15] [--end N] [--dump FILE]

FRAMES: the batches a writer process read, as it read them (4-byte big-endian length, then
the msgpack frame), e.g. from a run of bench/instructions_bench.py with this temporary
patch in gateway/store/sqlite_writer.serve's loop (not committed):

    cap = os.environ.get("GW_CAPTURE")            # before the loop
    capf = open(f"{cap}.{os.getpid()}", "wb") if cap else None
    ...
    if capf is not None:                          # first thing for each frame
        capf.write(_HEADER.pack(len(frame)) + frame); capf.flush()

The frames are applied on a fresh file as the writer process applies them (single-thread
SQLite, the gateway's GC thresholds, synchronous=FULL), under
`valgrind --tool=callgrind`, counting frames [start, end) only: the first frames (the
bench's warm-up) fill the statement cache and the tables. Deterministic to ~0.1 %, where
the live bench moves by 1-3 %. Prints the instructions and, per inserted message of the
counted frames, the instructions per message. `--dump FILE` writes the database's rows
(messages, segments, receipts) to FILE, to compare two trees' results.
"""

from __future__ import annotations

import argparse
import cmath
import math
import os
import re
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_HEADER = struct.Struct(">I")


def _frames(path: Path) -> list[bytes]:
    data = path.read_bytes()
    out, i = [], 0
    while i < len(data):
        (n,) = _HEADER.unpack_from(data, i)
        out.append(data[i + 4 : i + 4 + n])
        i += 4 + n
    return out


def _replay(frames: list[bytes], start: int, end: int, dump: str | None) -> None:
    """The measured part: math.lgamma and cmath.acosh mark its start and end for
    callgrind's --zero-before and --dump-before."""
    sys.path.insert(0, str(ROOT))
    import msgspec

    from gateway import gctune
    from gateway.store import sqlite_writer
    from gateway.store.sqlite import execute_batch, open_writer

    sqlite_writer._single_threaded_sqlite()
    gctune.tune()
    with tempfile.TemporaryDirectory(prefix="writer-replay-") as d:
        path = os.path.join(d, "gateway.db")
        conn, _before, _after, chunk = open_writer(path, "FULL", 5.0, 128)
        encode = msgspec.msgpack.Encoder().encode
        decode = msgspec.msgpack.Decoder().decode
        for k, frame in enumerate(frames[:end]):
            if k == start:
                math.lgamma(3.0)
            msg = decode(frame)
            if msg == "resume":
                continue
            bulk, ops = msg
            encode(["ok", execute_batch(conn, ops, bulk, chunk).to_wire(), 0.0])
        cmath.acosh(3.0)
        if dump:
            with open(dump, "w") as f:
                for table, order in (("messages", "id"), ("segments", "message_id, seq"), ("receipts", "id")):
                    for row in conn.execute(f"SELECT * FROM {table} ORDER BY {order}"):
                        f.write(repr(row) + "\n")
        conn.close()


def _inserted(frames: list[bytes], start: int, end: int) -> int:
    import msgspec

    n = 0
    for frame in frames[start:end]:
        msg = msgspec.msgpack.decode(frame)
        if msg != "resume":
            n += sum(data[0] for kind, data in msg[1] if kind == 0)  # insert ops: rows
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("frames", type=Path)
    ap.add_argument("--start", type=int, default=15, help="first frame counted")
    ap.add_argument("--end", type=int, default=None, help="first frame not counted (default: all)")
    ap.add_argument("--dump", help="write the rows stored to this file")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    frames = _frames(a.frames)
    end = len(frames) if a.end is None else a.end
    if a.inside:
        _replay(frames, a.start, end, a.dump)
        return 0
    with tempfile.TemporaryDirectory(prefix="callgrind-") as d:
        cmd = [
            "valgrind", "--tool=callgrind", "--zero-before=math_lgamma", "--dump-before=cmath_acosh",
            f"--callgrind-out-file={d}/replay.%p", f"--log-file={d}/log", sys.executable, __file__,
            str(a.frames), "--start", str(a.start), "--end", str(end), "--inside",
            *(["--dump", a.dump] if a.dump else []),
        ]
        subprocess.run(cmd, check=True, cwd=ROOT)
        dumps = list(Path(d).glob("replay.*.1"))
        if not dumps:
            print("no callgrind dump (valgrind missing, or the markers were not reached)", file=sys.stderr)
            return 1
        total = int(re.search(r"^summary:\s*(\d+)", dumps[0].read_text(), re.M).group(1))
    messages = _inserted(frames, a.start, end)
    print(f"frames {a.start}-{end - 1}: {total:,} instructions, {messages} messages inserted, "
          f"{total / max(1, messages):,.0f} per message")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
