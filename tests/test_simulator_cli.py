"""`smsc-simulator` as a process: flags, the `mo` subcommand, SIGTERM -> unbind + summary."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import trio

from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandStatus
from simulators.client import EsmeClient

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "simulators.smsc"]


async def _read_line(stream: trio.abc.ReceiveStream, buf: bytearray) -> bytes:
    while b"\n" not in buf:
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        buf += chunk
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line


async def _read_all(stream: trio.abc.ReceiveStream, buf: bytearray) -> bytes:
    while chunk := await stream.receive_some(4096):
        buf += chunk
    return bytes(buf)


async def test_run_mo_subcommand_and_sigterm_summary(tmp_path):
    record = tmp_path / "rec.jsonl"
    args = [
        *CLI,
        "--port",
        "0",
        "--control-port",
        "0",
        "--account",
        "cli:pw",
        "--id-format",
        "decimal",
        "--fault",
        "queue_full=0",
        "--record",
        str(record),
        "--log-level",
        "warning",
    ]
    proc = await trio.lowlevel.open_process(args, cwd=ROOT, stdout=subprocess.PIPE)
    buf = bytearray()
    try:
        with trio.fail_after(10):
            line = (await _read_line(proc.stdout, buf)).decode()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+) control=http://127\.0\.0\.1:(\d+)", line)
        assert m, line
        port, control = int(m.group(1)), int(m.group(2))
        client = await EsmeClient.connect("127.0.0.1", port)
        async with client:
            await client.bind("transceiver", "cli", "pw")
            resp = await client.request(
                P.SubmitSm(destination_addr="491701234567", short_message=b"x")
            )
            assert resp.command_status == 0 and resp.message_id == "1"
            with trio.fail_after(20):
                mo = await trio.run_process(
                    [
                        *CLI,
                        "mo",
                        "--control-port",
                        str(control),
                        "--account",
                        "cli",
                        "--from",
                        "491700000001",
                        "--to",
                        "12345",
                        "--text",
                        "STOP",
                    ],
                    cwd=ROOT,
                    capture_stdout=True,
                )
            assert b'"segments":1' in mo.stdout
            delivered = await client.next_delivery()
            assert delivered.short_message == b"STOP"
            proc.send_signal(signal.SIGTERM)
            with trio.fail_after(10):
                await client.closed.wait()
            assert client.unbound_by_peer  # graceful: the simulator unbound first
        with trio.fail_after(10):
            out = (await _read_all(proc.stdout, buf)).decode()
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "smsc-simulator summary" in out
    assert re.search(r"submit_sm\s+1", out) and re.search(r"unbinds_sent\s+1", out)
    assert re.search(r"mo_acked\s+1", out)
    assert '"message_id":"1"' in record.read_text()


async def test_config_error_exits_2_and_names_the_path(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[accounts]]\nsystem_id = "a"\n[accounts.faults]\nqueue_full = 3\n')
    with trio.fail_after(20):
        result = await trio.run_process(
            [*CLI, "--config", str(bad)], cwd=ROOT, capture_stderr=True, check=False
        )
    assert result.returncode == 2
    assert b"$.accounts[0].faults.queue_full" in result.stderr


async def test_mo_subcommand_reports_unreachable_control_port():
    with trio.fail_after(20):
        result = await trio.run_process(
            [
                *CLI,
                "mo",
                "--control-port",
                "1",
                "--account",
                "a",
                "--from",
                "1",
                "--to",
                "2",
                "--text",
                "x",
                "--timeout",
                "1",
            ],
            cwd=ROOT,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 1 and b"smsc-simulator mo" in result.stderr


async def test_fault_flag_applies():
    proc = await trio.lowlevel.open_process(
        [*CLI, "--port", "0", "--fault", "queue_full=1", "--log-level", "error"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    try:
        with trio.fail_after(10):
            line = (await _read_line(proc.stdout, bytearray())).decode()
        port = int(line.rsplit(":", 1)[1])
        client = await EsmeClient.connect("127.0.0.1", port)
        async with client:
            await client.bind("transmitter", "test", "test")
            resp = await client.request(P.SubmitSm(destination_addr="491701234567"))
            assert resp.command_status == CommandStatus.ESME_RMSGQFUL
    finally:
        proc.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            assert await proc.wait() == 0
