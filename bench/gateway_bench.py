"""End to end: HTTP -> gateway -> SMPP -> simulator -> receipts stored, on this machine.

    .venv/bin/python bench/gateway_bench.py [--workload single|batch|both] [--count N]
        [--clients 50] [--batch 100] [--binds 2] [--window 64] [--profile]

Three processes: the simulator (immediate DELIVRD receipts), the gateway (`smpp-gateway
run`, durable SQLite store, synchronous=FULL) and this load generator (HTTP/1.1 keep-alive
clients on h11 + trio). Workloads:

- single: one message per request, `--clients` concurrent connections;
- batch: `--batch` recipients per request, `--clients` concurrent connections.

Reported: messages per second from the first request to the moment the last message is
`delivered` in the store (its receipt stored), plus request latency percentiles and the
CPU seconds each process used. Bounded: --count messages and a 120 s deadline.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h11
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.simproc import children_cpu_seconds, cpu_seconds, simulator  # noqa: E402
from gateway.config import hash_api_key  # noqa: E402

API_KEY = "sk_bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gateway_config(
    tmp: Path, smsc_port: int, api: int, admin: int, binds: int, window: int, server: str,
    batch_wait_ms: float = 2.0, store_writer: str = "process", batch_max: int = 3000,
    receipt_journal: bool = True,
) -> Path:
    text = f"""
[listeners]
api = "127.0.0.1:{api}"
admin = "127.0.0.1:{admin}"
server = "{server}"
[store]
path = "{tmp / 'gw.db'}"
batch_wait_ms = {batch_wait_ms}
batch_max = {batch_max}
writer = "{store_writer}"
receipt_journal = {"true" if receipt_journal else "false"}
[logging]
level = "warning"
format = "json"
[[channels]]
name = "sim"
port = {smsc_port}
system_id = "test"
password = "test"
binds = {binds}
window = {window}
tps = 100000
burst = 5000
message_id_format = "hex"
receipt_id_format = "hex"
[[routes]]
channels = ["sim"]
[[tenants]]
id = "bench"
api_key_hash = "{hash_api_key(API_KEY)}"
tps = 1000000
daily_quota = 1000000000
"""
    path = tmp / "gateway.toml"
    path.write_text(text)
    return path


class HttpClient:
    """One keep-alive HTTP/1.1 connection (h11 over a trio stream)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    async def connect(cls, port: int) -> HttpClient:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(stream)

    async def request(self, method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
        headers = [
            ("Host", "bench"),
            ("Authorization", f"Bearer {API_KEY}"),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
        ]
        c = self.conn
        data = c.send(h11.Request(method=method, target=target, headers=headers))
        if body:
            data += c.send(h11.Data(data=body))
        data += c.send(h11.EndOfMessage())
        await self.stream.send_all(data)
        status, chunks = 0, []
        while True:
            ev = c.next_event()
            if ev is h11.NEED_DATA:
                c.receive_data(await self.stream.receive_some(65536))
            elif isinstance(ev, h11.Response):
                status = ev.status_code
            elif isinstance(ev, h11.Data):
                chunks.append(bytes(ev.data))
            elif isinstance(ev, h11.EndOfMessage):
                c.start_next_cycle()
                return status, b"".join(chunks)


class LoadClient:
    """The workload's client: one keep-alive connection sending pre-framed requests and
    reading responses by Content-Length. Several times cheaper per request than h11 (which
    cost ~150-190 us of CPU per request, on the same 2 cores as the gateway); h11 still
    serves the benchmark's own admin requests, an HTTP implementation independent of ours."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = b""

    @classmethod
    async def connect(cls, port: int) -> LoadClient:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(stream)

    async def post(self, target: str, body: bytes) -> tuple[int, bytes]:
        await self.stream.send_all(
            b"POST %s HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer %s\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (target.encode(), API_KEY.encode(), len(body), body)
        )
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                head = self.buf[:end].lower()
                at = head.find(b"content-length:")
                if at < 0:
                    raise RuntimeError(f"response without Content-Length: {head[:200]!r}")
                length = int(head[at + 15 : head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None])
                if len(self.buf) >= end + 4 + length:
                    status = int(head[9:12])
                    body, self.buf = self.buf[end + 4 : end + 4 + length], self.buf[end + 4 + length :]
                    return status, body
            data = await self.stream.receive_some(65536)
            if not data:
                raise RuntimeError("connection closed by the gateway")
            self.buf += data


async def wait_ready(admin: int, proc: subprocess.Popen) -> None:
    with trio.fail_after(30):
        while True:
            try:
                client = await HttpClient.connect(admin)
                status, _ = await client.request("GET", "/readyz")
                await client.stream.aclose()
                if status == 200:
                    return
            except OSError:
                pass
            if proc.poll() is not None:
                raise RuntimeError("gateway exited")
            await trio.sleep(0.1)


async def store_stats(admin: int) -> dict:
    client = await HttpClient.connect(admin)
    _, body = await client.request("GET", "/admin/stats/store")
    await client.stream.aclose()
    return json.loads(body)


async def delivered(admin: int) -> int:
    """Messages the store has moved to `delivered` since it opened (committed)."""
    return (await store_stats(admin))["finished"].get("delivered", 0)


async def timeline(admin: int, every: float = 0.5) -> None:
    """Print per-interval rates of each pipeline step (where the pipeline stalls). Reads the
    full /admin/stats (open-message counts included): it costs the gateway some CPU."""

    async def sample() -> tuple[int, ...]:
        client = await HttpClient.connect(admin)
        _, body = await client.request("GET", "/admin/stats")
        await client.stream.aclose()
        s = json.loads(body)
        chs = s["channels"]
        return (
            s["store"]["messages_inserted"],
            sum(c["dispatched"] for c in chs),
            sum(c["segments_accepted"] for c in chs),
            sum(c["receipts"] for c in chs),
            sum(s["store"]["finished"].values()),
            sum(sum(c["queue"].values()) for c in chs),
            sum(c["inflight_segments"] for c in chs),
        )

    t0 = time.perf_counter()
    last = await sample()
    while True:
        await trio.sleep(every)
        now = await sample()
        d = [(b - a) / every for a, b in zip(last, now)]
        print(
            f"  t={time.perf_counter() - t0:5.1f}s per second: inserted {d[0]:7,.0f} dispatched"
            f" {d[1]:7,.0f} accepted by SMSC {d[2]:7,.0f} receipts {d[3]:7,.0f} finished"
            f" {d[4]:7,.0f}; queued {now[5]:,} in flight {now[6]:,}",
            file=sys.stderr,
        )
        last = now


async def run_workload(
    api: int, admin: int, count: int, clients: int, per_request: int, base: int,
    deadline: float = 120.0, show_timeline: bool = False,
) -> dict:
    requests = count // per_request
    latencies: list[float] = []
    errors: dict[int, int] = {}
    next_req = 0

    def body(i: int) -> bytes:
        to = [f"49151{(base + i * per_request + k) % 10**8:08d}" for k in range(per_request)]
        return json.dumps({"to": to if per_request > 1 else to[0], "text": "Your code is 123456", "category": "otp"}).encode()

    async def worker() -> None:
        nonlocal next_req
        client = await LoadClient.connect(api)
        async with client.stream:
            while next_req < requests:
                i = next_req
                next_req += 1
                payload = body(i)
                t = time.perf_counter()
                status, _ = await client.post("/v1/messages", payload)
                latencies.append(time.perf_counter() - t)
                if status != 202:
                    errors[status] = errors.get(status, 0) + 1

    before = await delivered(admin)
    t0 = time.perf_counter()
    async with trio.open_nursery() as watch:
        if show_timeline:
            watch.start_soon(timeline, admin)
        with trio.move_on_after(deadline):
            async with trio.open_nursery() as n:
                for _ in range(clients):
                    n.start_soon(worker)
            t_accepted = time.perf_counter()
            target = before + requests * per_request
            while await delivered(admin) < target:
                await trio.sleep(0.05)
        t_done = time.perf_counter()
        watch.cancel_scope.cancel()
    done = await delivered(admin) - before
    if done < requests * per_request:
        client = await HttpClient.connect(admin)
        _, stats = await client.request("GET", "/admin/stats")
        await client.stream.aclose()
        print("incomplete; gateway stats:", stats.decode()[:3000], file=sys.stderr)
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2) if latencies else 0.0

    return {
        "messages": requests * per_request,
        "delivered": done,
        "complete": done >= requests * per_request and not errors,
        "errors": errors,
        "accept_s": round(t_accepted - t0, 3),
        "total_s": round(t_done - t0, 3),
        "accepted_per_s": round(requests * per_request / (t_accepted - t0), 1),
        "msgs_per_s": round(done / (t_done - t0), 1),
        "latency_ms": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": pct(1.0)},
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--workload", choices=["single", "batch", "both"], default="both")
    p.add_argument("--count", type=int, default=0, help="messages (default 20k single, 200k batch)")
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--binds", type=int, default=2)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--profile", action="store_true", help="py-spy the gateway into bench/gateway-<workload>.txt")
    p.add_argument("--gil", action="store_true", help="with --profile: sample only the thread holding the GIL")
    p.add_argument("--deadline", type=float, default=120.0, help="seconds per workload at most")
    p.add_argument("--server", choices=["builtin", "hypercorn"], default="builtin")
    p.add_argument("--json", action="store_true")
    p.add_argument("--timeline", action="store_true", help="print inserted/finished rates every 0.5 s")
    p.add_argument("--batch-wait-ms", type=float, default=2.0, help="store.batch_wait_ms of the gateway")
    p.add_argument("--batch-max", type=int, default=3000, help="store.batch_max of the gateway")
    p.add_argument("--store-writer", choices=["thread", "process"], default="process", help="store.writer of the gateway (default: the gateway's default)")
    p.add_argument(
        "--receipt-journal", choices=["on", "off"], default="on",
        help="store.receipt_journal of the gateway (off: receipts acknowledged after their commit)",
    )
    a = p.parse_args()
    workloads = ["single", "batch"] if a.workload == "both" else [a.workload]
    reports = {}
    with simulator(pin=False) as (sim, smsc_port), tempfile.TemporaryDirectory() as tmp:
        api, admin = free_port(), free_port()
        cfg = gateway_config(
            Path(tmp), smsc_port, api, admin, a.binds, a.window, a.server, a.batch_wait_ms,
            a.store_writer, a.batch_max, a.receipt_journal == "on",
        )
        env = dict(os.environ, PYTHONGC="1")
        gw = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", "--config", str(cfg)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        try:
            trio.run(wait_ready, admin, gw)
            base = 0
            for w in workloads:
                per = 1 if w == "single" else a.batch
                count = a.count or (20_000 if w == "single" else 200_000)
                spy = None
                spy_bin = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
                if a.profile and Path(spy_bin).exists():
                    spy = subprocess.Popen(
                        [spy_bin, "record", "-p", str(gw.pid), "-f", "raw", "-r", "200", "-o", str(ROOT / "bench" / f"gateway-{w}.txt"), "--nonblocking", *(["--gil"] if a.gil else [])],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )
                    time.sleep(1)
                cpu_gw, cpu_sim, cpu_me = cpu_seconds(gw.pid), cpu_seconds(sim.pid), time.process_time()
                cpu_wp = children_cpu_seconds(gw.pid)
                writer0 = trio.run(store_stats, admin)
                r = trio.run(
                    run_workload, api, admin, count, a.clients, per, base, a.deadline, a.timeline
                )
                writer1 = trio.run(store_stats, admin)
                r["cpu_s"] = {
                    "gateway": round(cpu_seconds(gw.pid) - cpu_gw, 2),
                    # the store's writer process (writer = "process"), not in "gateway"
                    "writer_process": round(children_cpu_seconds(gw.pid) - cpu_wp, 2),
                    "simulator": round(cpu_seconds(sim.pid) - cpu_sim, 2),
                    "loadgen": round(time.process_time() - cpu_me, 2),
                }
                r["gateway_cpu_us_per_msg"] = round(r["cpu_s"]["gateway"] / max(r["delivered"], 1) * 1e6, 1)
                r["gateway_and_writer_cpu_us_per_msg"] = round(
                    (r["cpu_s"]["gateway"] + r["cpu_s"]["writer_process"]) / max(r["delivered"], 1) * 1e6, 1
                )
                # the store writer's thread (part of the gateway's CPU) or process (not)
                writer_cpu = writer1["commit_cpu_seconds"] - writer0["commit_cpu_seconds"]
                r["writer_cpu_us_per_msg"] = round(writer_cpu / max(r["delivered"], 1) * 1e6, 1)
                r["writer_batches"] = writer1["batches"] - writer0["batches"]
                r["state_writes_per_msg"] = round(
                    (writer1["state_writes"] - writer0["state_writes"]) / max(r["delivered"], 1), 2
                )
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    spy.wait(timeout=30)
                base += count
                reports[w] = r
                if not a.json:
                    print(
                        f"{w}: {r['messages']} msgs ({per}/request, {a.clients} clients): "
                        f"{r['msgs_per_s']:,.0f} msg/s first request -> last receipt stored "
                        f"(accepted {r['accepted_per_s']:,.0f}/s); request p50 {r['latency_ms']['p50']} ms "
                        f"p99 {r['latency_ms']['p99']} ms; CPU s {r['cpu_s']}; gateway "
                        f"{r['gateway_cpu_us_per_msg']} us/msg, with writer process "
                        f"{r['gateway_and_writer_cpu_us_per_msg']} us/msg (store writer {a.store_writer} "
                        f"{r['writer_cpu_us_per_msg']} us/msg, "
                        f"{r['writer_batches']} commits, {r['state_writes_per_msg']} state writes/msg); "
                        f"complete={r['complete']} {r['errors'] or ''}",
                        flush=True,
                    )
        finally:
            gw.send_signal(signal.SIGTERM)
            try:
                gw.wait(timeout=30)
            except subprocess.TimeoutExpired:
                gw.kill()
    if a.json:
        print(json.dumps(reports))
    return 0 if all(r["complete"] for r in reports.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
