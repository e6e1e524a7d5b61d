"""kill -9 the gateway process mid-traffic, restart it: every message the API accepted is
resubmitted (or, by channel policy, marked unknown) and ends in a final state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.gateway_helpers import accept_with_receipt, gateway_config_text
from tests.scripted_smsc import ScriptedSmsc
from tests.test_daemon import free_port, http

ROOT = Path(__file__).resolve().parents[1]


async def start_gateway(config: Path, admin: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "run", "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with trio.fail_after(20):
        while True:
            try:
                status, body = await trio.to_thread.run_sync(http, "GET", f"{admin}/readyz", None, None)
                if status == 200:
                    return proc
            except OSError:
                pass
            assert proc.poll() is None, "gateway exited"
            await trio.sleep(0.1)


async def states(api: str, ids: list[str]) -> list[str]:
    out = []
    for mid in ids:
        _, view = await trio.to_thread.run_sync(http, "GET", f"{api}/v1/messages/{mid}")
        out.append(view["state"])
    return out


@pytest.mark.parametrize("policy", ["resubmit", "unknown"])
async def test_kill_9_and_restart_loses_nothing(nursery, tmp_path, policy):
    smsc = ScriptedSmsc()
    port = await nursery.start(smsc.serve)
    smsc.on_submit = lambda conn, pdu: None  # hung SMSC: messages stay in flight
    api_port, admin_port = free_port(), free_port()
    api, admin = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{admin_port}"
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(
        gateway_config_text(
            tmp_path / "gw.db",
            [("a", port)],
            listeners=f'[listeners]\napi = "127.0.0.1:{api_port}"\nadmin = "127.0.0.1:{admin_port}"\n',
            window=8,
            response_timeout=30.0,
            on_submitting_recovery=policy,
        )
    )
    proc = await start_gateway(cfg, admin)
    try:
        to = [f"49151{i:07d}" for i in range(40)]
        status, body = await trio.to_thread.run_sync(
            http, "POST", f"{api}/v1/messages", {"to": to, "text": "recover me"}
        )
        assert status == 202
        ids = [m["id"] for m in body["messages"]]
        with trio.fail_after(10):
            while len(smsc.received) < 9:  # bind + a full window of submits in flight
                await trio.sleep(0.02)
        await trio.sleep(0.2)  # let the store commit the `submitting` states
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    smsc.on_submit = accept_with_receipt()
    proc = await start_gateway(cfg, admin)
    try:
        final = {"delivered", "unknown"}
        with trio.fail_after(20):
            while True:
                got = await states(api, ids)
                if all(s in final for s in got):
                    break
                await trio.sleep(0.2)
        if policy == "resubmit":
            assert got == ["delivered"] * 40
        else:
            # the ones in flight when killed are `unknown`, the queued rest were delivered
            assert got.count("unknown") == 8 and got.count("delivered") == 32
        _, stats = await trio.to_thread.run_sync(http, "GET", f"{admin}/admin/stats", None, None)
        assert stats["recovered"] == (40 if policy == "resubmit" else 32)
        assert sum(stats["messages_open"].values()) == 0  # all 40 final
        json.dumps(stats)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
