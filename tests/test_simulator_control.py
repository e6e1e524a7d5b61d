"""The simulator's HTTP control API (h11 server on 127.0.0.1, ephemeral port)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import trio

from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandStatus
from simulators.smsc.control import ControlApp
from tests.sim_helpers import account, esme, make_config, simulator


def _http(
    port: int, method: str, path: str, body: object | bytes | None = None
) -> tuple[int, object]:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method=method,
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


async def http(port: int, method: str, path: str, body: object | bytes | None = None):
    return await trio.to_thread.run_sync(_http, port, method, path, body)


def cfg():
    return make_config([account(), account("other", "pw")], control_port=0)


async def test_health_and_stats():
    async with simulator(cfg()) as srv, esme(srv) as c:
        await c.request(P.SubmitSm(destination_addr="491701234567", short_message=b"x"))
        status, body = await http(srv.control_port, "GET", "/health")
        assert (status, body) == (200, {"status": "ok"})
        status, stats = await http(srv.control_port, "GET", "/stats")
        assert status == 200
        assert (
            stats["submit_sm"] == 1 and stats["binds_ok"] == 1 and stats["resps"] == {"ESME_ROK": 1}
        )


async def test_post_mo_reaches_the_receiver():
    async with simulator(cfg()) as srv, esme(srv, "receiver") as rx:
        status, body = await http(
            srv.control_port,
            "POST",
            "/mo",
            {
                "account": "test",
                "source_addr": "491700000001",
                "destination_addr": "12345",
                "text": "UNSUBSCRIBE",
            },
        )
        assert (status, body) == (202, {"queued": True, "segments": 1})
        mo = await rx.next_delivery()
        assert (mo.short_message, mo.source_addr, mo.esm_class) == (
            b"UNSUBSCRIBE",
            "491700000001",
            0,
        )


async def test_post_mo_errors():
    async with simulator(cfg()) as srv:
        port = srv.control_port
        status, body = await http(
            port,
            "POST",
            "/mo",
            {"account": "nobody", "source_addr": "1", "destination_addr": "2", "text": "x"},
        )
        assert status == 404 and body["error"] == "unknown_account"
        status, body = await http(port, "POST", "/mo", {"account": "test", "text": "x"})
        assert status == 400 and "source_addr" in body["detail"]
        status, body = await http(port, "POST", "/mo", b"{not json")
        assert status == 400 and body["error"] == "invalid_json"
        status, body = await http(
            port,
            "POST",
            "/mo",
            {"account": "test", "source_addr": "1" * 30, "destination_addr": "2", "text": "x"},
        )
        assert status == 422  # address too long for a deliver_sm
        assert srv.stats.mo_injected == 0


async def test_switch_fault_personality_per_account():
    async with (
        simulator(cfg()) as srv,
        esme(srv) as c,
        esme(srv, "transceiver", "other", "pw") as other,
    ):
        status, body = await http(srv.control_port, "POST", "/faults/test", {"queue_full": 1.0})
        assert status == 200 and body["queue_full"] == 1.0 and body["max_tps"] == 0
        sub = P.SubmitSm(destination_addr="491701234567", short_message=b"x")
        assert (await c.request(sub)).command_status == CommandStatus.ESME_RMSGQFUL
        sub = P.SubmitSm(destination_addr="491701234567", short_message=b"x")
        assert (await other.request(sub)).command_status == 0  # other account untouched
        status, body = await http(srv.control_port, "GET", "/faults/test")
        assert body["queue_full"] == 1.0
        status, body = await http(srv.control_port, "POST", "/faults/test", {})
        assert status == 200 and body["queue_full"] == 0.0
        sub = P.SubmitSm(destination_addr="491701234567", short_message=b"x")
        assert (await c.request(sub)).command_status == 0


async def test_invalid_fault_names_the_path_and_changes_nothing():
    async with simulator(cfg()) as srv:
        port = srv.control_port
        await http(port, "POST", "/faults/test", {"max_tps": 10})
        for bad, where in [
            ({"queue_full": 2}, "$.queue_full"),
            ({"bogus": 1}, "bogus"),
            ({"max_tps": "many"}, "$.max_tps"),
            ([1, 2], "$"),
        ]:
            status, body = await http(port, "POST", "/faults/test", bad)
            assert status == 400 and body["error"] == "invalid_faults", body
            assert where in body["detail"]
        status, body = await http(port, "GET", "/faults/test")
        assert body["max_tps"] == 10 and body["queue_full"] == 0.0
        assert (await http(port, "POST", "/faults/nobody", {}))[0] == 404
        assert (await http(port, "GET", "/nowhere"))[0] == 404
        assert (await http(port, "DELETE", "/stats"))[0] == 405


async def test_control_app_is_plain_asgi():
    async with simulator(cfg()) as srv:
        app = ControlApp(srv)
        sent = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        await app({"type": "http", "method": "GET", "path": "/health"}, receive, send)
        assert sent[0]["status"] == 200 and json.loads(sent[1]["body"]) == {"status": "ok"}
