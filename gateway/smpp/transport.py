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


# Large reads let one receive_some() carry many PDUs (each decoded from the same buffer).
RECEIVE_SIZE = 256 * 1024
