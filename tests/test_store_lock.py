"""One gateway per SQLite store file: SqliteStore holds an exclusive flock on `<path>.lock`
while it runs. A second store on the same file is refused (StoreUnavailable) before it opens
anything; the lock goes with the process that holds it (close, `kill -9`), never with the
writer child process. The writer (process or thread) holds `<path>.writer.lock`: a store
whose gateway was killed keeps its writer process until it has committed and exited, and a
new store's writer waits for it."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import trio

from gateway.config import StoreConfig
from gateway.store.sqlite import SqliteStore, StoreUnavailable
from tests.test_store_sqlite import msg

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["thread", "process"])
def writer_mode(request):
    return request.param


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "gateway.db"


def store(path: Path, writer: str) -> SqliteStore:
    return SqliteStore(StoreConfig(path=str(path), batch_wait_ms=1.0, writer=writer))


async def test_second_store_on_the_same_file_is_refused(db_path, writer_mode):
    first = store(db_path, writer_mode)
    async with trio.open_nursery() as n:
        await n.start(first.run)
        await first.insert_messages([msg(1)])

        second = store(db_path, writer_mode)
        with pytest.raises(StoreUnavailable) as info:
            await n.start(second.run)
        err = info.value
        assert err.code == "store_unavailable" and err.http_status == 503
        assert str(db_path) in err.message
        assert "another gateway" in err.message and f"pid {os.getpid()}" in err.message
        assert err.details["holder_pid"] == os.getpid()
        assert second.writer_pid is None  # no writer process was started

        # the first one keeps working
        await first.insert_messages([msg(2)])
        await first.flush()
        assert await first.get_message("acme", "m000002") is not None
        assert len(await first.unfinished()) == 2
        n.cancel_scope.cancel()

    # closed: the next one opens, the lock file stays
    third = store(db_path, writer_mode)
    async with trio.open_nursery() as n:
        await n.start(third.run)
        assert len(await third.unfinished()) == 2
        n.cancel_scope.cancel()
    assert Path(f"{db_path}.lock").exists()


async def test_a_held_lock_opens_nothing(db_path, writer_mode):
    """Refused before the database is touched: no file, no WAL, no migration."""
    fd = os.open(f"{db_path}.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by "someone else"
        s = store(db_path, writer_mode)
        async with trio.open_nursery() as n:
            with pytest.raises(StoreUnavailable) as info:
                await n.start(s.run)
        assert str(db_path) in info.value.message and "another gateway" in info.value.message
        assert sorted(p.name for p in db_path.parent.iterdir()) == ["gateway.db.lock"]
        with pytest.raises(StoreUnavailable):  # and it stays closed
            await s.get_message("acme", "x")
    finally:
        os.close(fd)
    # released: it opens
    s = store(db_path, writer_mode)
    async with trio.open_nursery() as n:
        await n.start(s.run)
        await s.insert_messages([msg(1)])
        n.cancel_scope.cancel()


async def test_lock_fd_is_not_inherited(db_path, writer_mode):
    s = store(db_path, writer_mode)
    async with trio.open_nursery() as n:
        await n.start(s.run)
        fd = s._lock_fd
        assert fd is not None and not os.get_inheritable(fd)
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        if writer_mode == "process" and os.path.isdir("/proc/self/fd"):
            lock = os.path.realpath(f"{db_path}.lock")
            fds = Path(f"/proc/{s.writer_pid}/fd")
            held = [os.readlink(p) for p in fds.iterdir()]
            assert lock not in held and any(h == os.path.realpath(db_path) for h in held)
        n.cancel_scope.cancel()
    assert s._lock_fd is None


_HOLDER = textwrap.dedent(
    """
    import sys, trio
    from gateway.config import StoreConfig
    from gateway.store.sqlite import SqliteStore

    async def main():
        s = SqliteStore(StoreConfig(path=sys.argv[1], batch_wait_ms=1.0, writer=sys.argv[2]))
        async with trio.open_nursery() as n:
            await n.start(s.run)
            print("READY", s.writer_pid or 0, flush=True)
            await trio.sleep_forever()

    trio.run(main)
    """
)


def _spawn_holder(db_path: Path, writer_mode: str) -> tuple[subprocess.Popen, int]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(db_path), writer_mode],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    for line in proc.stdout:  # (structlog writes to stdout too)
        if line.startswith("READY "):  # the store is open (and its writer up)
            return proc, int(line.split()[1])
    raise AssertionError(f"holder did not open the store (exit {proc.wait()})")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


async def test_lock_is_free_after_the_holder_is_killed(db_path, writer_mode):
    """`kill -9` of the gateway releases its lock, even while its writer child still lives
    (stopped here, so it cannot exit on the end of its stdin). A new gateway's writer then
    waits for that orphan (the writer lock): it fails, naming it, after busy_timeout while
    the orphan hangs, and opens once the orphan has finished and exited."""
    proc, writer_pid = _spawn_holder(db_path, writer_mode)
    try:
        s = store(db_path, writer_mode)
        async with trio.open_nursery() as n:  # held by the other process
            with pytest.raises(StoreUnavailable) as info:
                await n.start(s.run)
        assert f"pid {proc.pid}" in info.value.message

        if writer_pid:
            os.kill(writer_pid, signal.SIGSTOP)
        proc.kill()
        proc.wait(timeout=10)
        if writer_pid and os.path.isdir("/proc"):
            assert _alive(writer_pid)  # the orphaned writer is still there

            # It may still be committing what it had read: no second writer meanwhile.
            s = SqliteStore(
                StoreConfig(path=str(db_path), batch_wait_ms=1.0, writer=writer_mode),
                busy_timeout=0.3,
            )
            async with trio.open_nursery() as n:
                with pytest.raises(StoreUnavailable) as info:
                    await n.start(s.run)
            assert f"pid {writer_pid}" in info.value.message and "writer" in info.value.message
            os.kill(writer_pid, signal.SIGCONT)  # it reads the end of its stdin and exits

        s = store(db_path, writer_mode)
        async with trio.open_nursery() as n:
            with trio.fail_after(20):
                await n.start(s.run)
            await s.insert_messages([msg(1)])
            await s.flush()
            n.cancel_scope.cancel()
        if writer_pid and os.path.isdir("/proc"):
            assert not _alive(writer_pid)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if writer_pid:
            try:
                os.kill(writer_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 5
            while os.path.isdir("/proc") and _alive(writer_pid) and time.monotonic() < deadline:
                await trio.sleep(0.01)


_WRITER_LOCK_HOLDER = textwrap.dedent(
    """
    import sys, time
    from gateway.store.sqlite import writer_lock

    writer_lock(sys.argv[1], 5.0)
    print("HELD", flush=True)
    time.sleep(float(sys.argv[2]))
    """
)


async def test_a_store_waits_for_the_writer_lock(db_path, writer_mode):
    """While another process holds the writer lock (an earlier gateway's writer finishing
    its last batch), the store's writer waits for it, then opens: whatever that writer
    committed is there before recovery reads."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    holder = subprocess.Popen(
        [sys.executable, "-c", _WRITER_LOCK_HOLDER, str(db_path), "0.8"],
        stdout=subprocess.PIPE, env=env, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "HELD"
        with open(f"{db_path}.writer.lock") as f:
            assert f.read().strip() == str(holder.pid)  # who holds it, for the message
        s = store(db_path, writer_mode)
        t0 = time.monotonic()
        async with trio.open_nursery() as n:
            with trio.fail_after(20):
                await n.start(s.run)
            waited = time.monotonic() - t0
            assert holder.poll() is not None or waited >= 0.3  # it waited for the holder
            await s.insert_messages([msg(1)])
            await s.flush()
            # Now this store's writer holds it: nobody else gets it.
            fd = os.open(f"{db_path}.writer.lock", os.O_RDWR)
            try:
                with pytest.raises(BlockingIOError):
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            finally:
                os.close(fd)
            n.cancel_scope.cancel()
        fd = os.open(f"{db_path}.writer.lock", os.O_RDWR)  # released on close
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    finally:
        holder.kill()
        holder.wait()
