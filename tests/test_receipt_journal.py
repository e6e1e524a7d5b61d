"""The receipt journal (gateway.store.journal): frames durable by group commit, replayed above
the committed mark at open, a torn tail cut, corruption refused, files rolled and deleted
once committed, and a failed round cut off the file again."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import pytest
import trio

from gateway.store import journal as J
from gateway.store.journal import (
    MAX_PAYLOAD,
    JournalCorrupt,
    JournalError,
    ReceiptJournal,
)

_HEADER = struct.Struct(">IIQ")
MARK = 16 + 8  # a round mark: a frame header and the round's first seq


def prefix(tmp_path: Path) -> str:
    return str(tmp_path / "gateway.db.receipts")


def files(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("gateway.db.receipts."))


def name(first: int) -> str:
    return f"gateway.db.receipts.{first:020d}"


def reopen(tmp_path: Path, committed: int = 0, **kw) -> tuple[ReceiptJournal, list]:
    j = ReceiptJournal(prefix(tmp_path), **kw)
    return j, j.open(committed)


async def write(j: ReceiptJournal, *payloads: bytes) -> list[int]:
    """One round per payload."""
    seqs = []
    for p in payloads:
        seqs.append(j.reserve(p))
        await j.synced(seqs[-1])
    return seqs


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def slow_fdatasync(monkeypatch, seconds: float) -> None:
    """Every fdatasync of the journal's rounds takes `seconds` longer (a slow disk)."""
    real = os.fdatasync

    def slow(fd):
        time.sleep(seconds)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", slow)


async def test_round_trip_and_reopen_above_the_mark(tmp_path):
    j, replay = reopen(tmp_path)
    assert replay == [] and j.last_seq == 0
    payloads = [b"a", b"", b"ccc" * 100, bytes(range(256)), b"e"]
    assert await write(j, *payloads) == [1, 2, 3, 4, 5]
    j.close()
    j.close()  # idempotent
    with pytest.raises(JournalError):
        j.reserve(b"late")

    j, replay = reopen(tmp_path, 0)
    assert replay == list(enumerate(payloads, 1))
    assert j.stats.replayed == 5 and j.last_seq == 5
    j.close()
    j, replay = reopen(tmp_path, 3)
    assert replay == [(4, payloads[3]), (5, payloads[4])]
    assert await write(j, b"f") == [6]
    j.close()
    _, replay = reopen(tmp_path, 5)
    assert replay == [(6, b"f")]


async def test_group_commit_shares_rounds(tmp_path):
    j, _ = reopen(tmp_path)
    done = []

    async def receipt(i: int) -> None:
        seq = j.reserve(b"receipt %d" % i)
        await j.synced(seq)
        done.append(seq)

    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(receipt, i)
    assert sorted(done) == list(range(1, 51))
    assert j.stats.frames == 50 and 1 <= j.stats.syncs < 50
    frames = sum(16 + len(b"receipt %d" % i) for i in range(50))
    assert j.stats.bytes == frames + MARK * j.stats.syncs  # a round mark per round
    j.close()
    _, replay = reopen(tmp_path)
    assert sorted(replay) == replay and {p for _, p in replay} == {
        b"receipt %d" % i for i in range(50)
    }


async def test_frames_reserved_during_a_round_go_in_the_next(tmp_path, monkeypatch):
    j, _ = reopen(tmp_path)
    real = os.fdatasync
    calls = []
    token = trio.lowlevel.current_trio_token()

    def fdatasync(fd):  # reserve while the first round is in its thread
        calls.append(fd)
        if len(calls) == 1:
            trio.from_thread.run_sync(j.reserve, b"second", trio_token=token)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    await j.synced(j.reserve(b"first"))
    assert j.last_seq == 2 and j.stats.syncs == 1
    await j.synced(2)
    assert j.stats.syncs == 2 and len(calls) == 2


@pytest.mark.parametrize("damage", ["cut", "garbage", "zeros", "crc"])
async def test_torn_tail_of_the_newest_file_is_cut(tmp_path, damage):
    j, _ = reopen(tmp_path)
    await write(j, b"one", b"two")
    j.close()
    path = tmp_path / name(1)
    good = path.stat().st_size
    frame = _HEADER.pack(5, 0, 3) + b"three"  # a third frame, torn in different ways
    tails = {"cut": frame[:10], "garbage": b"\x07garbage!", "zeros": bytes(4096), "crc": frame}
    path.write_bytes(path.read_bytes() + tails[damage])
    torn = path.stat().st_size - good

    j, replay = reopen(tmp_path)
    assert replay == [(1, b"one"), (2, b"two")]
    assert path.stat().st_size == good
    assert j.stats.torn_bytes == torn > 0
    assert await write(j, b"three") == [3]
    j.close()
    _, replay = reopen(tmp_path)
    assert replay == [(1, b"one"), (2, b"two"), (3, b"three")]


async def test_a_bad_frame_followed_by_good_ones_is_corrupt(tmp_path):
    j, _ = reopen(tmp_path)
    await write(j, b"one", b"two", b"three")
    j.close()
    path = tmp_path / name(1)
    # The file's head, then each round: its mark and its frame. Frame 2 is synced: round 3
    # followed it.
    flip(path, MARK + MARK + 19 + MARK + 16 + 1)  # a payload byte of frame 2
    before = path.read_bytes()
    with pytest.raises(JournalCorrupt) as e:
        reopen(tmp_path)
    assert e.value.details["file"] == str(path) and e.value.details["offset"] == MARK + MARK + 19 + MARK
    assert path.read_bytes() == before  # nothing cut


async def test_a_bad_frame_in_an_older_file_is_corrupt(tmp_path):
    j, _ = reopen(tmp_path, roll_bytes=1)
    await write(j, b"one", b"two", b"three")  # one file per round
    j.close()
    assert files(tmp_path) == [name(1), name(2), name(3)]
    flip(tmp_path / name(2), 2 * MARK + 16 + 1)  # its last frame: a torn tail, if it were the newest
    with pytest.raises(JournalCorrupt) as e:
        reopen(tmp_path)
    assert e.value.details["file"] == str(tmp_path / name(2))


async def test_seqs_out_of_order_and_bad_names_are_corrupt(tmp_path):
    j, _ = reopen(tmp_path)
    await write(j, b"one", b"two")
    j.close()
    path = tmp_path / name(1)
    data = path.read_bytes()
    path.write_bytes(data + data[2 * MARK : 2 * MARK + 16 + 3])  # frame 1 again, intact
    with pytest.raises(JournalCorrupt, match="out of order"):
        reopen(tmp_path)
    path.write_bytes(data)
    reopen(tmp_path)[0].close()
    (tmp_path / "gateway.db.receipts.bad").write_bytes(b"")
    with pytest.raises(JournalCorrupt, match="name"):
        reopen(tmp_path)


async def test_rolling_and_committed(tmp_path):
    j, _ = reopen(tmp_path, roll_bytes=150)
    p = b"x" * 40  # 80-byte rounds (a mark, a 56-byte frame) after a 24-byte head: two per file
    assert await write(j, *[p] * 7) == list(range(1, 8))
    assert files(tmp_path) == [name(1), name(3), name(5), name(7)]
    assert j.stats.files == 4
    j.committed(1)  # file 1 still holds frame 2
    assert files(tmp_path) == [name(1), name(3), name(5), name(7)]
    j.committed(3)
    assert files(tmp_path) == [name(3), name(5), name(7)]
    j.committed(6)
    assert files(tmp_path) == [name(7)]
    j.committed(100)  # never the current file
    assert files(tmp_path) == [name(7)] and j.stats.files == 1
    assert await write(j, p) == [8]
    j.close()
    _, replay = reopen(tmp_path)
    assert replay == [(7, p), (8, p)]


async def test_open_with_the_mark_in_the_middle_of_rolled_files(tmp_path):
    j, _ = reopen(tmp_path, roll_bytes=150)
    p = b"y" * 40
    await write(j, *[p] * 7)
    j.close()
    j, replay = reopen(tmp_path, 4)
    assert [seq for seq, _ in replay] == [5, 6, 7]
    assert files(tmp_path) == [name(5), name(7), name(8)]
    assert j.stats.files == 3
    j.committed(6)
    assert files(tmp_path) == [name(7), name(8)]
    j.committed(7)
    assert files(tmp_path) == [name(8)]


async def test_a_failed_round_is_cut_off_and_later_rounds_work(tmp_path, monkeypatch):
    j, _ = reopen(tmp_path)
    await write(j, b"one")
    path = tmp_path / name(1)
    good = path.stat().st_size
    real = os.fdatasync
    token = trio.lowlevel.current_trio_token()

    def fdatasync(fd):  # the disk fails the second round, after its write
        monkeypatch.setattr(os, "fdatasync", real)
        trio.from_thread.run_sync(j.reserve, b"three", trio_token=token)  # during the round
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    two = j.reserve(b"two")
    with pytest.raises(JournalError):
        await j.synced(two)
    with pytest.raises(JournalError):  # still failed when asked again
        await j.synced(two)
    assert j.stats.failures == 1
    await j.synced(3)  # buffered, written by the next round (started by the failed one's end)
    data = path.read_bytes()
    assert len(data) > good and b"two" not in data and data.endswith(b"three")
    assert await write(j, b"four") == [4]
    j.close()
    _, replay = reopen(tmp_path)
    assert replay == [(1, b"one"), (3, b"three"), (4, b"four")]


async def test_a_failed_round_that_cannot_be_cut_breaks_the_journal(tmp_path, monkeypatch):
    j, _ = reopen(tmp_path)
    await write(j, b"one")

    def fail(*args):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "write", fail)
    monkeypatch.setattr(os, "ftruncate", fail)
    two = j.reserve(b"two")
    with pytest.raises(JournalError):
        await j.synced(two)
    monkeypatch.undo()
    with pytest.raises(JournalError, match="broken"):
        j.reserve(b"three")
    await j.synced(1)  # what was durable stays so
    j.close()
    _, replay = reopen(tmp_path)
    assert replay == [(1, b"one")]


async def test_a_payload_too_large_changes_nothing(tmp_path):
    j, _ = reopen(tmp_path)
    await write(j, b"one")
    with pytest.raises(JournalError):
        j.reserve(bytes(MAX_PAYLOAD + 1))
    assert j.last_seq == 1 and j.stats.frames == 1
    assert await write(j, b"two") == [2]
    j.close()
    _, replay = reopen(tmp_path)
    assert replay == [(1, b"one"), (2, b"two")]


async def test_an_empty_journal_starts_after_the_mark(tmp_path):
    j, replay = reopen(tmp_path, 41)
    assert replay == [] and j.last_seq == 41
    assert files(tmp_path) == [name(42)]
    assert await write(j, b"x") == [42]
    j.close()
    _, replay = reopen(tmp_path, 41)
    assert replay == [(42, b"x")]


async def test_a_waiter_cancelled_before_its_round_loses_nothing(tmp_path):
    j, _ = reopen(tmp_path)
    seq = j.reserve(b"one")
    with trio.CancelScope() as cs:
        cs.cancel()
        await j.synced(seq)
    assert cs.cancelled_caught and j.stats.syncs == 0
    await j.synced(seq)
    j.close()
    _, replay = reopen(tmp_path)
    assert replay == [(1, b"one")]


async def test_a_round_completes_when_its_runner_is_cancelled(tmp_path, monkeypatch):
    j, _ = reopen(tmp_path)
    slow_fdatasync(monkeypatch, 0.2)
    one, two = j.reserve(b"one"), j.reserve(b"two")
    waited = []

    async def other() -> None:
        await j.synced(two)
        waited.append(two)

    async with trio.open_nursery() as nursery:
        with trio.move_on_after(0.05) as scope:
            nursery.start_soon(other)
            await j.synced(one)  # runs the round, then is cancelled
    assert waited == [2] and j.stats.syncs == 1
    assert scope.cancelled_caught or scope.cancel_called
    j.close()
    _, replay = reopen(tmp_path)
    assert replay == [(1, b"one"), (2, b"two")]


async def test_a_roll_that_fails_fails_its_round_only(tmp_path, monkeypatch):
    j, _ = reopen(tmp_path, roll_bytes=1)
    await write(j, b"one")
    real = os.open

    def open_(path, *args, **kw):  # the new file cannot be created, once
        if str(path).startswith(prefix(tmp_path)):
            monkeypatch.setattr(os, "open", real)
            raise OSError(28, "No space left on device")
        return real(path, *args, **kw)

    monkeypatch.setattr(os, "open", open_)
    two = j.reserve(b"two")
    with pytest.raises(JournalError):
        await j.synced(two)
    assert files(tmp_path) == [name(1)] and j.stats.failures == 1
    assert await write(j, b"three") == [3]
    assert files(tmp_path) == [name(1), name(3)]
    j.close()
    _, replay = reopen(tmp_path)
    assert replay == [(1, b"one"), (3, b"three")]


async def test_close_during_a_round_lets_it_finish(tmp_path, monkeypatch):
    j, _ = reopen(tmp_path)
    slow_fdatasync(monkeypatch, 0.1)
    one = j.reserve(b"one")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(j.synced, one)
        await trio.sleep(0.02)
        j.close()
        with pytest.raises(JournalError):
            j.reserve(b"two")
    assert j.stats.syncs == 1
    _, replay = reopen(tmp_path)
    assert replay == [(1, b"one")]


async def test_a_round_ending_with_frames_buffered_starts_the_next(tmp_path, monkeypatch):
    """Rounds chain: frames reserved during a round are written by the next one as soon as
    it ends, before anyone waits for them (a waiter then finds them synced already)."""
    j, _ = reopen(tmp_path)
    slow_fdatasync(monkeypatch, 0.05)
    one = j.reserve(b"one")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(j.synced, one)
        await trio.sleep(0.01)  # the first round is in its thread
        two = j.reserve(b"two")  # nobody waits for it
    assert j.stats.syncs == 1
    with trio.fail_after(2):
        while j.stats.syncs < 2:
            await trio.sleep(0.01)
    await j.synced(two)
    assert j.stats.syncs == 2
    j.close()
    _, replay = reopen(tmp_path)
    assert replay == [(1, b"one"), (2, b"two")]


async def test_a_round_whose_thread_cannot_start_keeps_its_frames(tmp_path, monkeypatch):
    j, _ = reopen(tmp_path)
    real = trio.lowlevel.start_thread_soon

    def no_thread(*args, **kw):  # the process is out of threads, once
        monkeypatch.setattr(trio.lowlevel, "start_thread_soon", real)
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(trio.lowlevel, "start_thread_soon", no_thread)
    one = j.reserve(b"one")
    with pytest.raises(JournalError):
        await j.synced(one)
    two = j.reserve(b"two")
    await j.synced(two)  # the next round writes both
    await j.synced(one)
    assert j.stats.syncs == 1 and j.stats.failures == 0
    j.close()
    _, replay = reopen(tmp_path)
    assert replay == [(1, b"one"), (2, b"two")]


def frame(seq: int, payload: bytes) -> bytes:
    return _HEADER.pack(len(payload), J._crc(seq, payload), seq) + payload


def round_mark(first: int) -> bytes:
    return frame(0, struct.pack(">Q", first))


@pytest.mark.parametrize("zeroed", ["the mark", "the first frame"])
async def test_a_torn_round_with_a_zeroed_page_before_good_frames_is_cut(tmp_path, zeroed):
    """A crash during a round's write can leave a page of zeros with a later page of the
    same round written: a bad frame with good ones after it, but no round mark after it,
    so nothing there was synced (hence acknowledged): cut, not refused."""
    j, _ = reopen(tmp_path)
    await write(j, b"one", b"two")
    j.close()
    path = tmp_path / name(1)
    good = path.read_bytes()
    torn_round = round_mark(3) + frame(3, b"three" * 300) + frame(4, b"four")
    hole = (0, MARK) if zeroed == "the mark" else (MARK, MARK + 16 + 1500)
    torn = torn_round[: hole[0]] + bytes(hole[1] - hole[0]) + torn_round[hole[1] :]
    path.write_bytes(good + torn)
    j, replay = reopen(tmp_path)
    assert replay == [(1, b"one"), (2, b"two")]
    assert path.read_bytes() == good + torn[: hole[0]]  # cut where the round went bad
    assert j.stats.torn_bytes == len(torn) - hole[0]
    assert await write(j, b"x") == [3]
    j.close()
    assert reopen(tmp_path)[1] == [(1, b"one"), (2, b"two"), (3, b"x")]


async def test_without_round_marks_a_bad_frame_before_good_ones_is_corrupt(tmp_path):
    """Files written before round marks: a round's bounds are unknown there, so a bad
    frame with a good one after it is refused, as before."""
    path = tmp_path / name(1)
    path.write_bytes(frame(1, b"one") + bytes(64) + frame(2, b"two"))
    with pytest.raises(JournalCorrupt) as e:
        reopen(tmp_path)
    assert e.value.details["offset"] == 19
    path.write_bytes(frame(1, b"one") + frame(2, b"two") + bytes(64))  # a torn tail: cut
    assert reopen(tmp_path)[1] == [(1, b"one"), (2, b"two")]


async def test_a_file_starts_with_a_synced_head_so_its_first_round_can_be_cut(tmp_path, monkeypatch):
    """Found by review: the first round of a file (after open(), after a roll) had its mark
    at offset 0, and a torn first page took with it the proof that the file has round
    marks. Now every file starts with a head (a mark) synced before any round."""
    synced = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(os.fstat(fd).st_size), real(fd)))
    j, _ = reopen(tmp_path, roll_bytes=1)
    assert synced == [MARK] and (tmp_path / name(1)).read_bytes() == round_mark(1)
    await write(j, b"one")
    await write(j, b"two")  # rolls: the new file's head is synced before the round
    assert files(tmp_path) == [name(1), name(2)]
    assert synced[-2:] == [MARK, MARK + MARK + 16 + 3]
    j.close()
    # A crash in the first round of a new file: its mark and first frame zeroed, a later
    # page of it written. The head says the file has round marks: cut after the head.
    path = tmp_path / name(3)
    torn_round = round_mark(3) + frame(3, b"a" * 5000) + frame(4, b"b")
    path.write_bytes(round_mark(3) + bytes(4096) + torn_round[4096:])
    j, replay = reopen(tmp_path)
    assert replay == [(1, b"one"), (2, b"two")]
    assert path.read_bytes() == round_mark(3)
    j.close()


async def test_a_torn_round_of_megabytes_is_cut(tmp_path):
    """A torn 8 MiB round (zeros, then random bytes): no round mark follows the bad frame
    (the search looks where a mark's length field is), so it is all cut."""
    j, _ = reopen(tmp_path)
    await write(j, b"one")
    j.close()
    path = tmp_path / name(1)
    good = path.read_bytes()
    path.write_bytes(good + bytes(4 * 1024 * 1024) + os.urandom(4 * 1024 * 1024))
    j, replay = reopen(tmp_path)
    assert replay == [(1, b"one")] and path.read_bytes() == good
    j.close()
