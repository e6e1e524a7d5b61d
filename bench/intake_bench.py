"""Instructions per message of the gateway's intake path, in one process.

    .venv/bin/python bench/intake_bench.py             # callgrind: 10,000 and 30,000 messages
    .venv/bin/python bench/intake_bench.py --run N     # the workload alone (timings)
    .venv/bin/python bench/intake_bench.py --tree DIR  # another checkout's gateway
    .venv/bin/python bench/intake_bench.py --prefixes  # routes by prefix too (see below)

What runs (no sockets, no store process, no SMSC): the batch workload's requests as
bench/gateway_bench.py sends them (POST /v1/messages, 100 recipients 49151..., "Your code
is 123456", category otp, the same head) go as bytes through the builtin server's HTTP
parser (`http11.RequestReader`) and its per-request driver (`httpserver._handle`: the ASGI
scope, receive and send, the response head), into the tenant app (`TenantApp`: bearer
auth, body decoding, `Gateway.accept`: validation, routing, records, the tenant limits,
the store insert, the channel queueing) and out as the 202 answer's bytes, written to a
stream that keeps nothing. The store answers `insert_messages` at once (every message
new); the gateway has the benchmark's config (one channel `sim`, catch-all route, tenant
`bench`), its channel is up (a client that could submit) and does not run: what intake
queues on it is taken off after each request (the harness's work, as is building the
request bytes, the same for every commit compared). The GC is tuned as the daemon tunes
it.

Under callgrind (the default) the workload runs for 10,000 and for 30,000 messages and the
difference of the two totals, over 20,000, is reported: start-up and imports cancel out.
For changes on the intake path (gateway.service, gateway.api). Needs valgrind.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from callgrind_total import per_message  # bench/, the script's directory

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "sk_bench"
PER_REQUEST = 100  # recipients per request, as gateway_bench.py --workload batch

CONFIG = """
[store]
path = "/nonexistent/intake-bench.db"
[[channels]]
name = "sim"
port = 2775
system_id = "test"
password = "test"
tps = 100000
burst = 5000
message_id_format = "hex"
receipt_id_format = "hex"
{routes}[[routes]]
channels = ["sim"]
[[tenants]]
id = "bench"
api_key_hash = "{key_hash}"
tps = 1000000
daily_quota = 1000000000
"""


class _Store:
    """Inserts at once: every message is new."""

    async def insert_messages(self, messages):
        from gateway.store.base import InsertResult

        return [InsertResult(rec, False) for rec, _segs in messages]


class _Client:
    """A bind that could submit: the channel is up."""

    can_submit = True


class _Stream:
    """Where the answers go: counted, not kept (each must be a 202)."""

    def __init__(self) -> None:
        self.sent = 0

    async def send_all(self, data: bytes) -> None:
        if not data.startswith(b"HTTP/1.1 202 "):
            raise SystemExit(f"not accepted: {data[:300]!r}")
        self.sent += len(data)


def request_bytes(i: int) -> bytes:
    """Request i of the batch workload, as bench/gateway_bench.py's LoadClient sends it."""
    import json

    to = [f"49151{(i * PER_REQUEST + k) % 10**8:08d}" for k in range(PER_REQUEST)]
    body = json.dumps({"to": to, "text": "Your code is 123456", "category": "otp"}).encode()
    return (
        b"POST /v1/messages HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer %s\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (API_KEY.encode(), len(body), body)
    )


# --prefixes: routes by country prefix before the catch-all (a destination's route then
# depends on its first 4 digits), as a deployment's config has them; the bench's
# destinations all take the first.
PREFIX_ROUTES = "".join(f'[[routes]]\nprefix = "{p}"\nchannels = ["sim"]\n' for p in ("4915", "4916", "44"))


async def workload(n: int, prefixes: bool = False) -> dict[str, float]:
    import trio

    from gateway import config as C
    from gateway import logs
    from gateway.api import httpserver
    from gateway.api.http11 import NEED_DATA, RequestReader
    from gateway.api.tenant import TenantApp
    from gateway.channels import Channel
    from gateway.service import Gateway

    logs.configure("json", "warning")
    cfg = C.parse(CONFIG.format(key_hash=C.hash_api_key(API_KEY), routes=PREFIX_ROUTES if prefixes else ""))
    store = _Store()
    gw = Gateway(cfg, store)  # type: ignore[arg-type]
    ch = Channel(cfg.channels[0], store, clock=time.time)  # type: ignore[arg-type]
    ch.clients.append(_Client())  # type: ignore[arg-type]
    gw.channels[ch.name] = ch
    app = TenantApp(gw)
    requests = n // PER_REQUEST
    wire = [request_bytes(i) for i in range(requests)]
    reader = RequestReader(max_head=httpserver.MAX_HEAD_BYTES, max_body=httpserver.MAX_BODY_BYTES)
    stream = _Stream()
    guard = trio.CancelScope()
    peer = ("127.0.0.1", 40000)
    t0 = time.process_time()
    for data in wire:
        reader.feed(data)
        req = reader.next_request()
        assert req is not NEED_DATA
        if not await httpserver._handle(stream, req, app, peer, guard):  # type: ignore[arg-type]
            raise SystemExit("the connection would have closed")
        ch.queue.drain()
    t1 = time.process_time()
    if ch.stats.queued != requests * PER_REQUEST or reader.buffered:
        raise SystemExit(f"the workload did not complete: {ch.stats.queued} queued")
    return {"us": (t1 - t0) * 1e6 / (requests * PER_REQUEST), "sent": stream.sent}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=int, metavar="N", help="run the workload for N messages (no callgrind)")
    ap.add_argument("--tree", type=Path, default=ROOT, help="checkout whose code runs")
    ap.add_argument("--prefixes", action="store_true", help="routes by prefix before the catch-all")
    ap.add_argument("--keep", type=Path, help="copy the callgrind files here (for callgrind_annotate)")
    a = ap.parse_args()
    sys.path.insert(0, str(a.tree.resolve()))
    if a.run:
        import trio

        from gateway import gctune

        gctune.tune()  # as the daemon does
        r = trio.run(workload, a.run, a.prefixes)
        print(f"{a.run} messages, intake CPU per message: {r['us']:.2f} us ({r['sent']:,} bytes answered)")
        return 0
    args = ["--tree", str(a.tree.resolve())] + (["--prefixes"] if a.prefixes else [])
    n = per_message(__file__, 10_000, 30_000, *args, keep=a.keep)
    print(f"intake path (HTTP bytes to answer bytes): {n:,} instructions per message")
    return 0


if __name__ == "__main__":
    sys.exit(main())
