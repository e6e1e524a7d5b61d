"""The SMSC simulator: listener, accounts, message acceptance, receipts, shutdown.

`SmscServer.run` owns one nursery holding the timer heap, the accept loop, one task per
connection (`Connection.run`), the MO generators and the optional control API. Use it as

    async with trio.open_nursery() as nursery:
        server = await nursery.start(SmscServer(cfg).run)
        ...                      # server.port is the bound port (config port 0 = ephemeral)
        await server.shutdown()  # unbind every bind, wait (bounded), stop everything
"""

from __future__ import annotations

import random
import time
from typing import Any

import msgspec
import trio

from gateway.smpp.errors import PduError, SmppError
from gateway.smpp.text import ReferenceCounter
from simulators.smsc import mo
from simulators.smsc.config import Account, Config, Faults
from simulators.smsc.connection import Connection
from simulators.smsc.delivery import MO, Deliveries, Job
from simulators.smsc.faults import FaultState
from simulators.smsc.ids import MessageIds
from gateway.logs import get_logger
from simulators.smsc.receipts import ReceiptPolicy, smpp_absolute_time
from simulators.smsc.recorder import Recorder
from simulators.smsc.stats import Stats
from simulators.smsc.store import ENROUTE, STAT_STATE, MessageStore, Record
from simulators.smsc.timers import TimerHeap


class AccountRuntime:
    """The live state of one configured account."""

    def __init__(self, cfg: Account, server: SmscServer, seed: int) -> None:
        self.cfg = cfg
        self.name = cfg.system_id
        self.binds = 0
        self.policy = ReceiptPolicy(cfg.receipts, random.Random(f"{seed}/{cfg.system_id}"))
        self.faults = FaultState(cfg.faults, server.stats)
        self.deliveries = Deliveries(
            cfg.system_id,
            stats=server.stats,
            timers=server.timers,
            max_held=cfg.max_held_receipts,
            retries=server.cfg.server.receipt_retries,
            retry_delay=server.cfg.server.receipt_retry_delay,
            log=server.log,
        )
        self.mo_refs = ReferenceCounter(10_000, bits=8, seed=seed)


class SmscServer:
    def __init__(self, cfg: Config, *, recorder: Recorder | None = None) -> None:
        s = cfg.server
        self.cfg = cfg
        self.log = get_logger("smsc")
        self.stats = Stats()
        self.timers = TimerHeap(s.max_scheduled_receipts, log=self.log)
        self.ids = MessageIds(s.message_id_format, s.message_id_width, s.message_id_start)
        self.store = MessageStore(s.max_tracked_messages)
        if recorder is None and s.record:
            recorder = Recorder(s.record)
        self.recorder = recorder
        self.accounts: dict[str, AccountRuntime] = {
            a.system_id: AccountRuntime(a, self, s.seed) for a in cfg.accounts
        }
        self.connections: set[Connection] = set()
        self.port: int | None = None
        self.control_port: int | None = None
        self.shutting_down = False
        self.started_at = time.time()
        self._nursery: trio.Nursery | None = None
        self._accept_scope = trio.CancelScope()
        self._all_closed = trio.Event()

    # ---- lifecycle -----------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        s = self.cfg.server
        listeners = await trio.open_tcp_listeners(s.port, host=s.host)
        self.port = listeners[0].socket.getsockname()[1]
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self.timers.run)
                if self.recorder is not None:
                    nursery.start_soon(self._flush_recorder)
                for acct in self.accounts.values():
                    if acct.cfg.mo.interval > 0:
                        nursery.start_soon(mo.generate, self, acct.name, acct.cfg.mo)
                if s.control_port is not None:
                    from simulators.smsc.control import serve_control

                    self.control_port = await nursery.start(
                        serve_control, self, s.control_host, s.control_port
                    )
                nursery.start_soon(self._accept, listeners)
                self.log.info(
                    "listening",
                    host=s.host,
                    port=self.port,
                    control_port=self.control_port,
                    accounts=sorted(self.accounts),
                )
                task_status.started(self)
        finally:
            if self.recorder is not None:
                self.recorder.close()

    async def _accept(self, listeners: list[trio.SocketListener]) -> None:
        with self._accept_scope:
            async with trio.open_nursery() as nursery:
                for listener in listeners:
                    nursery.start_soon(self._accept_on, listener)

    async def _accept_on(self, listener: trio.SocketListener) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as e:  # EMFILE and friends: back off, keep serving
                    self.log.warning("accept_failed", error=str(e))
                    await trio.sleep(0.1)
                    continue
                self._nursery.start_soon(self._serve, stream)  # type: ignore[union-attr]

    async def _serve(self, stream: trio.SocketStream) -> None:
        conn = Connection(self, stream)
        self.connections.add(conn)
        self.stats.connections += 1
        self.stats.connections_open += 1
        conn.log.info("connected")
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)
            self.stats.connections_open -= 1
            conn.log.info("disconnected")
            if self.shutting_down and not self.connections:
                self._all_closed.set()

    async def _flush_recorder(self) -> None:
        while True:
            await trio.sleep(1.0)
            self.recorder.flush()  # type: ignore[union-attr]

    async def shutdown(self) -> None:
        """Stop accepting, unbind every bind, wait for them (bounded), stop every task."""
        if self.shutting_down:
            return
        self.shutting_down = True
        self._accept_scope.cancel()
        now = trio.current_time()
        for conn in list(self.connections):
            conn.start_unbind(now)
        if self.connections:
            with trio.move_on_after(self.cfg.server.shutdown_timeout + 0.5):
                await self._all_closed.wait()
        self.log.info("stopped", **self.summary_extra())
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    # ---- messages --------------------------------------------------------------------------

    def accept(self, acct: AccountRuntime, pdu: Any, dests: list | None = None) -> Record:
        """A new message: id, outcome, remembered for query/cancel/replace."""
        n, mid = self.ids.next()
        policy = acct.policy
        if dests is None:
            stat = policy.fixed_outcome or policy.outcome(pdu.destination_addr)
            rec = Record(
                n,
                mid,
                acct.name,
                pdu,
                time.time(),
                stat,
                policy.wanted(pdu.registered_delivery, stat),
            )
        else:
            with_stats = [(ton, npi, addr, policy.outcome(addr)) for ton, npi, addr in dests]
            stat = with_stats[0][3]
            want = any(policy.wanted(pdu.registered_delivery, d[3]) for d in with_stats)
            rec = Record(n, mid, acct.name, pdu, time.time(), stat, want, dests=with_stats)
        self.store.put(rec)
        self.stats.messages_accepted += 1
        return rec

    def schedule_final(self, acct: AccountRuntime, rec: Record, now: float) -> None:
        delay = acct.policy.delay()
        if delay <= 0 or not self.timers.schedule(now + delay, self.finalize, rec):
            self.finalize(rec, now)

    def finalize(self, rec: Record, now: float, prefer: Connection | None = None) -> None:
        """The message reaches its final state; its receipt(s) leave if wanted."""
        if rec.state != ENROUTE:
            return  # cancelled meanwhile
        rec.state = STAT_STATE[rec.stat]
        rec.done = time.time()
        if rec.receipt:
            self._send_receipts(rec, now, prefer)

    def _send_receipts(self, rec: Record, now: float, prefer: Connection | None) -> None:
        acct = self.accounts[rec.account]
        policy = acct.policy
        if rec.dests is None:
            targets: list[tuple[Any, str | None]] = [(None, None)]
        else:
            rd = rec.pdu.registered_delivery
            targets = [(d[:3], d[3]) for d in rec.dests if policy.wanted(rd, d[3])]
        for dest, stat in targets:
            try:
                pdu = policy.build(rec, dest, stat) if dest is not None else policy.encoded(rec)
            except (PduError, SmppError) as e:
                self.stats.receipts_failed += 1
                self.log.warning("receipt_unencodable", message_id=rec.id, error=str(e))
                continue
            for k in range(rec.copies):
                job = Job(pdu if k == 0 else msgspec.structs.replace(pdu))
                if prefer is None or not prefer.offer(job, now):
                    acct.deliveries.deliver(job, now)

    def cancel(self, rec: Record, now: float) -> None:
        """cancel_sm: the message becomes DELETED (receipt if registered_delivery asks)."""
        acct = self.accounts[rec.account]
        rec.stat = "DELETED"
        rec.receipt = acct.policy.wanted(rec.pdu.registered_delivery, "DELETED")
        if rec.dests is not None:
            rec.dests = [(t, n, a, "DELETED") for t, n, a, _ in rec.dests]
        self.stats.receipts_cancelled += 1
        self.finalize(rec, now)

    def absolute_time(self, t: float) -> str:
        return smpp_absolute_time(t)

    # ---- control ---------------------------------------------------------------------------

    def inject_mo(self, system_id: str, source: str, destination: str, text: str) -> int:
        """Queue an MO for the account's receivers. Returns the number of segments.

        Raises KeyError (unknown account), gateway.smpp errors (text/addresses invalid).
        """
        acct = self.accounts[system_id]
        pdus = mo.build_mo(source, destination, text, acct.mo_refs)
        now = trio.current_time()
        for pdu in pdus:
            acct.deliveries.deliver(Job(pdu, MO), now)
        self.stats.mo_injected += 1
        self.log.info(
            "mo_queued",
            account=system_id,
            source=source,
            destination=destination,
            segments=len(pdus),
        )
        return len(pdus)

    def set_faults(self, system_id: str, faults: Faults) -> None:
        acct = self.accounts[system_id]
        acct.faults.set(faults)
        active = {
            k: v for k, v in msgspec.structs.asdict(faults).items() if v != getattr(Faults(), k)
        }
        self.log.info("faults_set", account=system_id, faults=active)

    def summary_extra(self) -> dict[str, Any]:
        return {
            "uptime_s": round(time.time() - self.started_at, 3),
            "receipts_held": sum(len(a.deliveries.held) for a in self.accounts.values()),
            "timers_pending": len(self.timers),
            "binds_live": sum(a.binds for a in self.accounts.values()),
        }

    def snapshot(self) -> dict[str, Any]:
        return self.stats.snapshot(**self.summary_extra())

    def summary(self) -> str:
        return self.stats.summary(**self.summary_extra())
