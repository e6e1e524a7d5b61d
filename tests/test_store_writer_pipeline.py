"""The writer process's pipeline: two batches in flight, and the order of the ops when one
of them fails (gateway.store.sqlite._pipelined, gateway.store.sqlite_writer)."""

from __future__ import annotations

import io
import sqlite3
import struct
from collections import deque

import msgspec
import trio

from gateway.config import StoreConfig
from gateway.states import State
from gateway.store import sqlite as S
from gateway.store import sqlite_writer
from gateway.store.records import SegmentState
from gateway.store.sqlite import SqliteStore, StoreUnavailable

from .test_store_sqlite import T0, msg

_HEADER = struct.Struct(">I")
enc = msgspec.msgpack.Encoder().encode
dec = msgspec.msgpack.Decoder().decode


def frames(*msgs) -> bytes:
    return b"".join(_HEADER.pack(len(p)) + p for p in map(enc, msgs))


def replies(data: bytes) -> list:
    out, i = [], 0
    while i < len(data):
        (n,) = _HEADER.unpack_from(data, i)
        out.append(dec(data[i + 4 : i + 4 + n]))
        i += 4 + n
    return out


def test_the_writer_skips_every_batch_after_a_failure_until_resume(tmp_path, monkeypatch):
    path = tmp_path / "gateway.db"
    conn, *_ = S.open_writer(str(path), "FULL", 1.0, 128)
    rec, _segs = msg(1, state=State.QUEUED)
    conn.execute(S._INSERT_MESSAGE, msgspec.structs.astuple(rec) + S._NO_SEG1)
    conn.close()
    executed = []

    def execute_batch(*args):  # the disk fails under the first batch
        executed.append(args)
        if len(executed) == 1:
            raise sqlite3.OperationalError("disk I/O error")
        return S.execute_batch(*args)

    monkeypatch.setattr(sqlite_writer, "execute_batch", execute_batch)
    move = [S._STATE, [rec.id, "submitting", T0 + 1, None, None, None, None]]
    cfg = {"path": str(path), "synchronous": "FULL", "busy_timeout": 1.0, "chunk_rows": 128}
    inp = io.BytesIO(frames(cfg, [True, [move]], [True, [move]], "resume", [True, [move]]))
    out = io.BytesIO()
    assert sqlite_writer.serve(inp, out) == 0
    got = replies(out.getvalue())
    assert [r[0] for r in got] == ["ready", "fail", "skipped", "ok"]
    assert len(executed) == 2  # the skipped batch never reached the database
    assert got[-1][1]["applied"] == 1
    with sqlite3.connect(path) as c:
        assert c.execute("SELECT state FROM messages").fetchall() == [("submitting",)]


class Interposed:
    """Between the store and its writer process: fails the first batch sent after arm(),
    as the writer does, and holds that reply until a second batch is in the pipe; answers
    the batches after it "skipped" until the store sends "resume". The others go through."""

    def __init__(self, real) -> None:
        self.real = real
        self.armed = False
        self.poisoned = False
        self.order: deque = deque()  # per frame sent: "real" or the reply to give
        self.sent_batches = 0
        self.resumes = 0
        self.second_sent = trio.Event()
        self.failed_sent = trio.Event()

    async def send(self, payload: bytes) -> None:
        msg_ = dec(payload)
        if msg_ == "resume":
            self.resumes += 1
            self.poisoned = False
            return
        self.sent_batches += 1
        if self.armed:
            self.armed = False
            self.poisoned = True
            self.order.append(["fail", "OperationalError", "disk I/O error (injected)"])
            self.failed_sent.set()
        elif self.poisoned:
            self.order.append(["skipped"])
            self.second_sent.set()
        else:
            self.order.append("real")
            await self.real.send(payload)

    async def receive(self):  # cancel-safe like the real pipe: the entry stays until done
        what = self.order[0]
        if what == "real":
            reply = await self.real.receive()
        else:
            if what[0] == "fail":
                await self.second_sent.wait()  # the next batch is in flight behind this one
            reply = what
        self.order.popleft()
        return reply


async def test_a_failed_batch_and_the_one_behind_it_are_retried_in_their_order(tmp_path, nursery):
    s = SqliteStore(StoreConfig(path=str(tmp_path / "gateway.db"), batch_wait_ms=0.0, writer="process"))
    await nursery.start(s.run)
    rec, segs = msg(1, state=State.SUBMITTED)
    await s.insert_messages([(rec, segs)])
    pipe = s._pipe = Interposed(s._pipe)
    pipe.armed = True
    v1 = msgspec.structs.replace(
        segs[0], state=SegmentState.SUBMITTED, channel="ch1", smsc_message_id="0A", id_key="10",
        submit_status=0, submitted_at=T0 + 1,
    )
    s.update_segment_nowait(v1)
    with trio.fail_after(5):
        await pipe.failed_sent.wait()
        v2 = msgspec.structs.replace(v1, state=SegmentState.DELIVERED, receipt_at=T0 + 2)
        s.update_segment_nowait(v2)  # sent while v1's batch is still in flight
        while True:  # a flush in a failed batch fails with it
            try:
                await s.flush()
                break
            except StoreUnavailable:
                await trio.sleep(0.01)
    [stored] = (await s.get_view(rec.id)).segments
    assert stored == v2  # v1 retried after v2 would have left v1
    assert s.stats.failed_batches == 2 and s.stats.retried_ops == 2
    assert pipe.resumes == 1 and pipe.sent_batches >= 3
