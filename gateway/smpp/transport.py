"""Socket set-up shared by the ESME driver and the simulator: TCP_NODELAY, TLS, loopback."""

from __future__ import annotations

import socket
import ssl

import trio


def set_nodelay(stream: trio.abc.Stream) -> None:
    """Disable Nagle: with Nagle and delayed ACKs every windowed round trip waits ~35 ms."""
    sock_stream = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    if isinstance(sock_stream, trio.SocketStream):
        sock_stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def connect(
    host: str,
    port: int,
    *,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    timeout: float = 10.0,
) -> trio.abc.Stream:
    """Open a TCP (or TLS) stream with TCP_NODELAY set. Raises OSError / trio.TooSlowError."""
    with trio.fail_after(timeout):
        stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
        set_nodelay(stream)
        if tls is not None:
            ssl_stream = trio.SSLStream(stream, tls, server_hostname=server_hostname or host)
            await ssl_stream.do_handshake()
            stream = ssl_stream
    return stream


# Reads of a few KiB (10-25 PDUs) rather than "everything available": with one bind and a
# window of 64, whole-window reads make ESME and SMSC take turns (each idle while the other
# works a full window); smaller reads let them overlap. Measured with bench/session_bench.py,
# receipts included, one run each: 256 KiB 20.5k round trips/s, 8 KiB 29-34k, 4 KiB 37-39k,
# 2 KiB 39-43k, 1 KiB 33-35k (per-read overhead starts to dominate).
# The gateway's ESME reader starts here and grows its reads while its event loop is busy
# (gateway.smpp.esme, EsmeClient._reader).
RECEIVE_SIZE = 4 * 1024
