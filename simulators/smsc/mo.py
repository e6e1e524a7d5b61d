"""Mobile-originated messages: deliver_sm (esm_class 0) from a handset to the service.

Triggered on demand (control API `POST /mo`, `smsc-simulator mo`) and, when an account's
`mo.interval` is set, on a timer cycling through its configured sources, destinations and
texts (the defaults include the opt-out words TD, T, STOP and UNSUBSCRIBE). A text is encoded
in GSM 7-bit when it can be, else UCS2, and split with 8-bit-reference UDH when it is long.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import trio

from gateway.smpp import pdu as P
from gateway.smpp.text import ReferenceCounter, split
from simulators.smsc.config import Mo

if TYPE_CHECKING:
    from simulators.smsc.server import SmscServer


def _ton_npi(address: str) -> tuple[int, int]:
    digits = address.lstrip("+")
    if digits.isdigit():
        return (1, 1) if len(digits) > 6 else (3, 0)  # international / network specific
    return (5, 0)  # alphanumeric


def build_mo(source: str, destination: str, text: str, refs: ReferenceCounter) -> list[P.Pdu]:
    """The deliver_sm segment(s) of one MO. Raises gateway.smpp.text errors, PduError."""
    segments = split(text, reference=refs.next(source))
    sn, dn = _ton_npi(source), _ton_npi(destination)
    pdus = []
    for seg in segments:
        pdu = P.DeliverSm(
            source_addr_ton=sn[0],
            source_addr_npi=sn[1],
            source_addr=source,
            dest_addr_ton=dn[0],
            dest_addr_npi=dn[1],
            destination_addr=destination,
            esm_class=seg.esm_class_bits,
            data_coding=seg.data_coding,
            short_message=seg.short_message,
        )
        pdu.encode()  # validate now (address lengths...), not when the bind sends it
        pdus.append(pdu)
    return pdus


async def generate(server: SmscServer, system_id: str, cfg: Mo) -> None:
    """Inject one MO every `cfg.interval` seconds, forever (cancelled with the server)."""
    sources = itertools.cycle(cfg.sources)
    destinations = itertools.cycle(cfg.destinations)
    texts = itertools.cycle(cfg.texts)
    while True:
        await trio.sleep(cfg.interval)
        server.inject_mo(system_id, next(sources), next(destinations), next(texts))
