"""The receipt journal: an append-only file of opaque frames made durable by group commit,
so a deliver_sm can be acknowledged before SQLite has stored its receipts.

Why. A receipt is acknowledged only once it is durable. Through the store that is a SQLite
commit behind a busy batching writer (20-40 ms under load), and the SMSC's window of
unanswered deliver_sm then throttles receipts. Here it is one write and one fdatasync shared
by every frame reserved meanwhile. The store applies the frames lazily and records in SQLite
the highest seq it has committed (the "committed" mark); after a crash the gateway replays
the frames above it. Payloads are opaque bytes: this module knows nothing of receipts.

Files. `f"{prefix}.{first_seq:020d}"`, first_seq being the seq of the first frame the file
may hold. Appends go to the newest file; once it holds `roll_bytes` the next round starts a
new one, and an older file is deleted once the mark covers its last frame (committed()).

Frame. A 16-byte header, struct `>IIQ`: payload length (at most 16 MiB), CRC32 (zlib) of the
8-byte big-endian seq followed by the payload, seq; then the payload. Seqs increase by 1
across frames and files, except that a failed round's frames are cut off the file again
(their callers were told and acknowledged nothing), leaving a gap: open() checks that seqs
strictly increase.

Group commit. reserve() assigns a seq and buffers the frame without a checkpoint, so the
caller queues its store op in the same step and ops and frames share one order. synced()
waits for a round: os.write of everything buffered, then os.fdatasync, in a worker thread,
one round at a time; the first waiter that finds no round running starts the next one, and
a round that ends with frames buffered starts the next itself. A round cannot be cancelled
once started (trio.lowlevel.start_thread_soon), so it always wakes its waiters; a
cancelled waiter just stops waiting (its frame is still written).

Rounds. Every round's bytes begin with a round mark: a frame with seq 0 whose 8-byte payload
is the seq of the round's first frame. A file begins with one too (its head: the file's
first seq), written and synced when the file is created, before any round. open() skips
marks (they are not frames to replay).

Crash. A round whose fdatasync did not return was never acknowledged, so a bad frame at the
end of the newest file is a torn write and open() cuts it off. So is a bad frame with good
frames after it when no round mark follows it: those frames are of the same unsynced round
(a later round starts only once the one before it is synced), as when a crash leaves a
zeroed page in the middle of a round's write. A bad frame anywhere else may hold
acknowledged receipts: JournalCorrupt, and the gateway does not start. (Files written
before round marks existed have none: there only a bad frame with no good frame after it is
a torn tail.)
"""

from __future__ import annotations

import functools
import os
import struct
import time
import zlib
from typing import Any, NamedTuple

import msgspec
import structlog
import trio

from gateway.errors import GatewayError

__all__ = ["MAX_PAYLOAD", "JournalCorrupt", "JournalError", "JournalStats", "ReceiptJournal"]

log = structlog.get_logger("gateway.store.journal")

MAX_PAYLOAD = 16 * 1024 * 1024
_HEADER = struct.Struct(">IIQ")  # payload length, CRC32 of seq + payload, seq
_SEQ = struct.Struct(">Q")
_MARK_SEQ = 0  # the seq of a round mark (frames count from 1)
_MARK_LENGTH = struct.pack(">I", _SEQ.size)  # the first field of a round mark's header
_MARK_SIZE = _HEADER.size + _SEQ.size
# O_APPEND: after a failed round is truncated away, the next write lands at the new end.
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND


class JournalError(GatewayError):
    """The receipt journal cannot take or keep a frame (a write or sync failed, the file
    cannot be opened): the caller must not acknowledge what it journaled."""

    code = "receipt_journal"
    http_status = 503


class JournalCorrupt(JournalError):
    """A journal frame that fails its checks somewhere other than the torn tail of the newest
    file: acknowledged receipts may be in it, so the gateway refuses to start (the operator
    moves the file away, docs/operations.md)."""

    code = "receipt_journal_corrupt"


class JournalStats(msgspec.Struct):  # counters, for /admin/stats
    frames: int = 0  # frames appended (reserved) since open
    bytes: int = 0  # bytes written by successful rounds
    syncs: int = 0  # successful write+fdatasync rounds (group commits)
    sync_seconds: float = 0.0  # time in those rounds' thread hops, total
    failures: int = 0  # failed rounds
    files: int = 0  # journal files on disk now
    replayed: int = 0  # frames returned by open()
    torn_bytes: int = 0  # bytes cut off a torn tail at open


def _crc(seq: int, payload: bytes | memoryview) -> int:
    return zlib.crc32(payload, zlib.crc32(_SEQ.pack(seq)))


def _frame_at(data: bytes, off: int) -> tuple[int, bytes, int] | None:
    """(seq, payload, end) of the frame at `off` if it passes its checks, else None
    (incomplete, longer than MAX_PAYLOAD, wrong CRC)."""
    if off + _HEADER.size > len(data):
        return None
    length, crc, seq = _HEADER.unpack_from(data, off)
    end = off + _HEADER.size + length
    if length > MAX_PAYLOAD or end > len(data):
        return None
    payload = data[off + _HEADER.size : end]
    return (seq, payload, end) if _crc(seq, payload) == crc else None


class _Outcome(NamedTuple):
    fd: int  # the file to append to next (a new one if the round rolled)
    error: OSError | None  # why the round failed
    undone: bool  # a failed round was cut off the file again (else: broken)
    seconds: float


def _mark(first: int) -> bytes:
    """A round mark (also a file's head): a frame with seq 0 holding the first seq."""
    payload = _SEQ.pack(first)
    return _HEADER.pack(len(payload), _crc(_MARK_SEQ, payload), _MARK_SEQ) + payload


def _is_mark(frame: tuple[int, bytes, int] | None) -> bool:
    """Whether a frame read by _frame_at is a round mark."""
    return frame is not None and frame[0] == _MARK_SEQ and len(frame[1]) == _SEQ.size


def _new_file(path: str, first: int) -> int:
    """Create a journal file whose head (a round mark) is synced before any round is
    written to it: a torn first round cannot take the head with it, so open() knows the
    file has round marks (see "Crash" above)."""
    fd = os.open(path, _FLAGS, 0o644)
    try:
        head = _mark(first)
        if os.write(fd, head) != len(head):
            raise OSError(f"short write of the head of {path}")
        os.fdatasync(fd)
    except OSError:
        _close_quietly(fd)
        try:
            os.unlink(path)
        except OSError:
            pass
        raise
    return fd


def _fsync_dir(path: str) -> None:
    # A new or deleted file's entry is durable only once its directory is synced.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _cut(fd: int, size: int) -> bool:
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    except OSError:
        return False
    return True


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


class ReceiptJournal:
    def __init__(self, prefix: str, *, roll_bytes: int = 8 * 1024 * 1024) -> None:
        self.prefix = prefix
        self.roll_bytes = roll_bytes
        self._dir = os.path.dirname(prefix) or "."
        self._base = os.path.basename(prefix) + "."
        self.stats = JournalStats()
        self._fd: int | None = None  # the current file; None: not open or closed
        self._path = ""
        self._first = 0  # the current file's first_seq
        self._size = 0  # its bytes, all synced
        self._cur_last = 0  # the last seq written to it
        self._closed: list[tuple[int, int, str]] = []  # older files: first, last seq, path
        self._buf: list[bytes] = []  # frames reserved since the last round started
        self._last = 0  # last seq reserved
        self._done = 0  # every seq up to it went through a round (or was found at open)
        self._failed: list[tuple[int, int]] = []  # seq ranges of failed rounds
        self._round: trio.Event | None = None  # set when the running round is over
        self._closing = False
        self._broken = False
        self.committed_seq = 0  # the store's mark, as last reported (open, committed())

    def exists(self) -> bool:
        """Whether any journal file of `prefix` is on disk (without opening the journal)."""
        try:
            return any(n.startswith(self._base) for n in os.listdir(self._dir))
        except FileNotFoundError:
            return False

    @property
    def last_seq(self) -> int:
        """The last seq reserved (or found at open)."""
        return self._last

    def _name(self, first: int) -> str:
        return f"{self.prefix}.{first:020d}"

    def open(self, committed: int) -> list[tuple[int, bytes]]:
        """Synchronous (startup): check every journal file, cut a torn tail off the newest,
        delete the files the mark covers and start a new file. Returns the (seq, payload)
        frames above `committed`, in seq order, for the caller to replay."""
        if self._fd is not None or self._closing:
            raise JournalError("receipt journal already open", prefix=self.prefix)
        self.committed_seq = committed
        try:
            names = sorted(n for n in os.listdir(self._dir) if n.startswith(self._base))
            files = []
            for name in names:
                digits = name[len(self._base) :]
                path = os.path.join(self._dir, name)
                if len(digits) != 20 or not (digits.isascii() and digits.isdigit()):
                    raise JournalCorrupt(f"{path}: not a receipt journal file name", file=path)
                files.append((int(digits), path))
            # Check everything before changing anything: a corrupt file stops the start.
            last, found, torn = 0, [], None
            for i, (first, path) in enumerate(files):
                with open(path, "rb") as f:
                    data = f.read()
                frames, end = self._read(path, data, first, last, i == len(files) - 1)
                if end < len(data):
                    torn = (path, end, len(data) - end)
                if frames:
                    last = frames[-1][0]
                found.append((first, path, frames))
            if torn is not None:
                path, end, cut = torn
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.ftruncate(fd, end)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                self.stats.torn_bytes += cut
                log.warning("receipt_journal_torn_tail", file=path, offset=end, bytes=cut)
            replay: list[tuple[int, bytes]] = []
            for first, path, frames in found:
                if frames and frames[-1][0] > committed:
                    self._closed.append((first, frames[-1][0], path))
                    replay.extend(fr for fr in frames if fr[0] > committed)
                else:
                    os.unlink(path)
            start = max(last, committed) + 1
            fd = _new_file(self._name(start), start)
            try:
                _fsync_dir(self._dir)  # the new file's entry (and the deletions) durable
            except OSError:
                os.close(fd)
                raise
        except JournalError:
            self._closed.clear()
            raise
        except OSError as e:
            self._closed.clear()
            raise JournalError(f"receipt journal {self.prefix}: {e}", prefix=self.prefix) from e
        self._fd, self._path, self._first, self._size = fd, self._name(start), start, _MARK_SIZE
        self._cur_last = start - 1
        self._last = self._done = start - 1
        self.stats.files = len(self._closed) + 1
        self.stats.replayed = len(replay)
        return replay

    def _read(
        self, path: str, data: bytes, first: int, after: int, newest: bool
    ) -> tuple[list[tuple[int, bytes]], int]:
        """A file's frames and the offset where the good ones end. A bad frame is a torn
        write only at the end of the newest file: no good frame may start after it (a
        write that was synced, so maybe acknowledged)."""
        frames: list[tuple[int, bytes]] = []
        off = 0
        # The file has round marks (this version): its head is one, synced at creation.
        marked = _is_mark(_frame_at(data, 0))
        while off < len(data):
            frame = _frame_at(data, off)
            if frame is None:
                if newest and self._torn(data, off, marked):
                    break
                raise JournalCorrupt(f"{path}: bad frame at offset {off}", file=path, offset=off)
            seq, payload, end = frame
            if _is_mark(frame):
                off = end
                continue
            if seq <= after or seq < first:
                raise JournalCorrupt(
                    f"{path}: seq {seq} out of order at offset {off}", file=path, offset=off
                )
            frames.append((seq, payload))
            after, off = seq, end
        return frames, off

    @staticmethod
    def _torn(data: bytes, off: int, marked: bool) -> bool:
        """Whether the bad frame at `off` of the newest file is where its last, unsynced
        round was torn: nothing good follows it, or (a file with round marks) no round mark
        follows it (the good frames after it are of that same round)."""
        if not marked:
            return not any(_frame_at(data, o) for o in range(off + 1, len(data) - _HEADER.size + 1))
        # A mark's header starts with its payload length, 8: look only where those 4
        # bytes are (a zeroed region has none), not at every offset of up to 8 MiB.
        i = data.find(_MARK_LENGTH, off + 1)
        while i != -1:
            if _is_mark(_frame_at(data, i)):
                return False
            i = data.find(_MARK_LENGTH, i + 1)
        return True

    def reserve(self, payload: bytes) -> int:
        """Assign the next seq to `payload` and buffer its frame for the next round. No
        checkpoint: the caller queues its store op with this seq in the same step."""
        if self._broken:
            raise JournalError("receipt journal broken", prefix=self.prefix)
        if self._fd is None or self._closing:
            raise JournalError("receipt journal not open", prefix=self.prefix)
        if len(payload) > MAX_PAYLOAD:
            raise JournalError(f"receipt journal frame of {len(payload)} bytes", size=len(payload))
        seq = self._last + 1
        self._buf.append(_HEADER.pack(len(payload), _crc(seq, payload), seq) + payload)
        self._last = seq
        self.stats.frames += 1
        return seq

    async def synced(self, seq: int) -> None:
        """Return once frame `seq` is written and fdatasync'ed; JournalError if the round
        holding it failed (or the journal broke or closed before writing it)."""
        if seq > self._last:
            raise ValueError(f"receipt journal seq {seq} was never reserved")
        if seq <= self._done:
            await trio.lowlevel.checkpoint()
        while seq > self._done:
            if self._round is not None:
                await self._round.wait()
            elif self._broken or self._fd is None or self._closing:
                raise JournalError("receipt journal cannot write", prefix=self.prefix, seq=seq)
            else:
                self._start_round()
        if any(lo <= seq <= hi for lo, hi in self._failed):
            raise JournalError("receipt journal write failed", prefix=self.prefix, seq=seq)

    def _start_round(self) -> None:
        """Hand everything buffered to a worker thread as one round (trio thread, no
        checkpoint). The thread's end is delivered straight to _round_over by
        run_sync_soon: the waiters wake in the next event-loop pass, and the next round
        starts at once if frames were reserved meanwhile. (Through trio.to_thread a round
        took ~8 ms end to end under load for ~1 ms of write and fdatasync: two more passes
        to resume the task that ran it, then one to wake the waiters and start the next.)"""
        lo, hi = self._done + 1, self._last
        self._buf.insert(0, _mark(lo))
        data = b"".join(self._buf)
        self._buf.clear()
        # Roll before writing, never after: a round that fails to start the new file
        # has written nothing, and the old file then holds only seqs below its name.
        roll = self._name(lo) if self._size > _MARK_SIZE and self._size >= self.roll_bytes else None
        done = trio.Event()
        token = trio.lowlevel.current_trio_token()

        def deliver(result: Any) -> None:  # in the worker thread; an outcome.Outcome
            try:
                token.run_sync_soon(self._round_over, result, roll, lo, hi, len(data), done)
            except trio.RunFinishedError:  # the run ended first: nobody is waiting
                pass

        try:
            trio.lowlevel.start_thread_soon(
                functools.partial(self._io, self._fd, self._size, data, roll, lo), deliver
            )
        except RuntimeError as e:  # no thread (resources): nothing written, frames kept
            self._buf.insert(0, data[_MARK_SIZE:])  # (without the round mark)
            raise JournalError(f"receipt journal round not started: {e}", prefix=self.prefix) from e
        self._round = done

    def _round_over(
        self, result: Any, roll: str | None, lo: int, hi: int, size: int, done: trio.Event
    ) -> None:
        """A round's end, in the trio thread: record it, wake its waiters, chain the next."""
        try:
            out = result.unwrap()
        except BaseException as e:  # a bug in _io: its frames count as failed
            out = _Outcome(self._fd, OSError(f"round raised {e!r}"), False, 0.0)  # type: ignore[arg-type]
        self._round = None
        self._finish(out, roll, lo, hi, size)
        done.set()
        if self._buf and self._fd is not None and not (self._broken or self._closing):
            try:
                self._start_round()
            except JournalError as e:  # a waiter tries again (and is told if it fails)
                log.error("receipt_journal_round_not_started", error=str(e))

    def _io(self, fd: int, size: int, data: bytes, roll: str | None, first: int) -> _Outcome:
        """The round's file work, in a worker thread (`roll`: the new file to start, whose
        first seq is `first`). Touches no journal state: the trio side records the
        outcome (_finish)."""
        t0 = time.perf_counter()
        target, base = fd, size
        try:
            if roll is not None:
                target, base = _new_file(roll, first), _MARK_SIZE
                _fsync_dir(self._dir)
            view = memoryview(data)
            while view:
                view = view[os.write(target, view) :]
            os.fdatasync(target)
        except OSError as e:
            # Cut the round off again so that no garbage precedes later frames.
            undone = _cut(target, base)
            if target != fd:  # a new file: drop it, the current one was not touched
                _close_quietly(target)
                try:
                    os.unlink(roll)  # type: ignore[arg-type]
                    undone = True
                except OSError:
                    pass
            return _Outcome(fd, e, undone, time.perf_counter() - t0)
        if target != fd:
            _close_quietly(fd)  # its frames are synced already
        return _Outcome(target, None, True, time.perf_counter() - t0)

    def _finish(self, out: _Outcome, roll: str | None, lo: int, hi: int, size: int) -> None:
        """Record a round's outcome (trio thread, before its waiters wake)."""
        if out.fd != self._fd:  # rolled: the old file stays until committed() covers it
            self._closed.append((self._first, self._cur_last, self._path))
            self._fd, self._path, self._first, self._size = out.fd, roll or "", lo, _MARK_SIZE
            self.stats.files += 1
        self._done = hi
        if out.error is None:
            self._size += size
            self._cur_last = hi
            self.stats.syncs += 1
            self.stats.bytes += size
            self.stats.sync_seconds += out.seconds
        else:
            self._failed.append((lo, hi))
            self.stats.failures += 1
            error = str(out.error)
            log.error(
                "receipt_journal_round_failed", file=self._path, frames=hi - lo + 1, error=error
            )
            if not out.undone and not self._broken:
                self._broken = True  # later frames could follow garbage: take no more
                log.error("receipt_journal_broken", file=self._path, error=error)
        if self._closing:
            self._close_now()

    def committed(self, seq: int) -> None:
        """Every frame up to `seq` is applied by the store: delete the older files it covers
        (never the current one). Cheap when there is nothing to delete."""
        if seq > self.committed_seq:
            self.committed_seq = seq
        while self._closed and self._closed[0][1] <= seq:
            _, _, path = self._closed.pop(0)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as e:  # the next open() deletes it
                log.warning("receipt_journal_unlink_failed", file=path, error=str(e))
            self.stats.files -= 1

    def close(self) -> None:
        """Close the current file (synced frames stay); a running round closes it when it
        ends. Idempotent."""
        self._closing = True
        if self._round is None:
            self._close_now()

    def _close_now(self) -> None:
        if self._fd is not None:
            _close_quietly(self._fd)
            self._fd = None
