"""The ESME reader's read size: small reads while the event loop is idle, larger reads
after slow passes (a busy loop), back down when reads come back short."""

from __future__ import annotations

import trio

from gateway.smpp import pdu as P
from gateway.smpp import session as S
from gateway.smpp.esme import RECEIVE_MAX, EsmeClient, EsmeSettings
from gateway.smpp.transport import RECEIVE_SIZE

ENQUIRE_LINK = 16  # bytes: a PDU without a body, so any multiple of 16 is whole PDUs


class FakeStream:
    """Serves `plan`: (fill, delay) per read: `fill` True returns as many bytes as asked,
    else one PDU; each read first waits `delay` seconds (the rest of the loop's pass)."""

    def __init__(self, plan: list[tuple[bool, float]]) -> None:
        self.plan = list(plan)
        self.asked: list[int] = []
        self.seq = 0

    async def receive_some(self, max_bytes: int) -> bytes:
        if not self.plan:
            return b""  # the SMSC closed: the reader returns
        fill, delay = self.plan.pop(0)
        self.asked.append(max_bytes)
        await trio.sleep(delay)
        out = []
        for _ in range(max_bytes // ENQUIRE_LINK if fill else 1):
            self.seq += 1
            out.append(P.EnquireLink(sequence_number=self.seq).encode())
        return b"".join(out)

    async def send_all(self, data: bytes) -> None:
        pass


def bound_session() -> S.Session:
    esme, smsc = S.Session(S.Role.ESME), S.Session(S.Role.SMSC)
    esme.send(P.BindTransceiver(system_id="gw", password="pw", interface_version=0x34))
    smsc.receive_data(esme.data_to_send())
    (ev,) = smsc.next_events()
    smsc.send(P.make_response(ev.pdu, system_id="smsc"))
    esme.receive_data(smsc.data_to_send())
    esme.next_events()
    assert esme.bound
    return esme


async def read_sizes(plan: list[tuple[bool, float]]) -> list[int]:
    client = EsmeClient(EsmeSettings(port=1, system_id="gw", password="pw"))
    stream = FakeStream(plan)
    session = bound_session()
    await client._reader(stream, session)  # type: ignore[arg-type]
    assert client.last_error == "connection closed by SMSC"
    return stream.asked


async def test_reads_stay_small_while_the_loop_is_idle(autojump_clock):
    asked = await read_sizes([(True, 0.0)] * 8)
    assert asked == [RECEIVE_SIZE] * 8


async def test_full_reads_after_slow_passes_grow_up_to_the_maximum(autojump_clock):
    asked = await read_sizes([(True, 0.005)] * 8)
    assert asked[:5] == [RECEIVE_SIZE * 2**i for i in range(5)]
    assert RECEIVE_SIZE * 16 == RECEIVE_MAX and asked[5:] == [RECEIVE_MAX] * 3


async def test_short_reads_shrink_back_to_the_small_size(autojump_clock):
    asked = await read_sizes([(True, 0.005)] * 5 + [(False, 0.005)] * 6)
    assert asked[5:] == [RECEIVE_MAX, RECEIVE_MAX // 2, RECEIVE_MAX // 4, RECEIVE_MAX // 8, RECEIVE_SIZE, RECEIVE_SIZE]


async def test_every_pdu_of_the_large_reads_is_handled(autojump_clock):
    client = EsmeClient(EsmeSettings(port=1, system_id="gw", password="pw"))
    stream = FakeStream([(True, 0.005)] * 6)
    session = bound_session()
    await client._reader(stream, session)  # type: ignore[arg-type]
    # Each enquire_link is answered by the session: one 16-byte enquire_link_resp per PDU.
    assert len(session.data_to_send()) == sum(stream.asked) == stream.seq * ENQUIRE_LINK
