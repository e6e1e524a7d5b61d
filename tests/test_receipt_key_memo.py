"""Channel._key_of: the receipt key of each SMSC message id accepted lately, so a receipt
that names the id as its submit_sm_resp did finds its key without computing it again. The
matching must be exactly that of computing every key (receipt_id_key), whatever the
spellings, the formats, the memo's bound and a retune."""

from __future__ import annotations

import msgspec
import pytest

from gateway import channels as C
from gateway.channels import Channel, _Sent
from gateway.config import ChannelConfig
from gateway.smpp import pdu as P
from gateway.smpp.constants import Tag
from gateway.smpp.esme import Outcome, SubmitResult
from gateway.smpp.receipt import receipt_id_key
from tests.test_accepted_reads import RecordingStore, job, state_of

IDS = ["0a1b", "ff", "00c", "1234", "7"]
# How the receipts name them: as the resp did, in other spellings, and an unknown one.
RECEIPT_IDS = ["0a1b", "FF", "c", "1234", "999"]


class Store(RecordingStore):
    async def find_segment(self, channel: str, key: str):  # an unknown id: not in the store
        self.calls.append(("find_segment", (channel, key), {}))
        return None


class _Journal:
    committed_seq = 0

    def __init__(self) -> None:
        self.seq = 0

    def reserve(self, payload: bytes) -> int:
        self.seq += 1
        return self.seq

    async def synced(self, seq: int) -> None:
        return None


def receipt(seq: int, rid: str) -> P.DeliverSm:
    text = f"id:{rid} sub:001 dlvrd:001 submit date:2611262300 done date:2611262300 stat:DELIVRD err:000 text:x"
    return P.DeliverSm(
        sequence_number=seq, source_addr="4915100000000", destination_addr="Acme", esm_class=4,
        short_message=text.encode(),
        tlvs=[P.Tlv(int(Tag.RECEIPTED_MESSAGE_ID), rid), P.Tlv(int(Tag.MESSAGE_STATE), 2)],
    )


def channel(receipt_format: str, store: RecordingStore) -> Channel:
    cfg = ChannelConfig(
        name="c", system_id="s", password="p", message_id_format="hex", receipt_id_format=receipt_format
    )
    ch = Channel(cfg, store, clock=lambda: 5.0)
    ch.journal = _Journal()  # type: ignore[assignment]
    return ch


async def run(receipt_format: str, memo: bool, per_result: bool = False) -> tuple:
    store = Store()
    ch = channel(receipt_format, store)
    jobs = [job(i) for i in range(len(IDS))]
    ch._inflight = len(jobs)
    if per_result:
        for j, mid in zip(jobs, IDS):
            ch._on_result(j, 0, SubmitResult(Outcome.ACCEPTED, 0, mid))
    else:
        ch._on_accepted([(_Sent(ch, j, 0), mid) for j, mid in zip(jobs, IDS)])
    if receipt_format == "hex":  # one format: the memo holds what receipt_id_key gives
        assert ch._key_of == {mid: receipt_id_key(mid, "hex") for mid in IDS}
    else:
        assert ch._key_of == {}
    if not memo:
        ch._key_of.clear()
    await ch._on_deliver([receipt(k + 1, rid) for k, rid in enumerate(RECEIPT_IDS)])
    calls = [(name, a, kw) for name, a, kw in store.calls]
    return state_of(ch, jobs), msgspec.to_builtins(calls, str_keys=True), sorted(ch._key_of)


@pytest.mark.parametrize("per_result", [False, True])
@pytest.mark.parametrize("receipt_format", ["hex", "decimal", "auto"])
async def test_receipts_match_as_with_every_key_computed(receipt_format, per_result):
    with_memo = await run(receipt_format, memo=True, per_result=per_result)
    computed = await run(receipt_format, memo=False, per_result=per_result)
    assert with_memo[:2] == computed[:2]
    records = with_memo[0][0]
    if receipt_format == "hex":
        # every spelling of a known id matched; the ids named as the resp named them left
        # the memo, the others (other spellings: computed) stay until it is emptied
        assert [r["state"] for r in records] == ["delivered"] * 4 + ["submitted"]
        assert with_memo[2] == ["00c", "7", "ff"]


async def test_the_memo_is_emptied_when_full_and_keys_are_then_computed(monkeypatch):
    with_memo = await run("hex", memo=True)
    monkeypatch.setattr(C, "_KEY_MEMO", 3)
    store = Store()
    ch = channel("hex", store)
    jobs = [job(i) for i in range(len(IDS))]
    ch._inflight = len(jobs)
    ch._on_accepted([(_Sent(ch, j, 0), mid) for j, mid in zip(jobs, IDS)])
    assert ch._key_of == {}  # 5 > 3: emptied at the end of the read
    await ch._on_deliver([receipt(k + 1, rid) for k, rid in enumerate(RECEIPT_IDS)])
    assert [j.record.state for j in jobs] == [r["state"] for r in with_memo[0][0]]


async def test_a_retune_empties_the_memo_the_formats_may_change():
    store = Store()
    ch = channel("hex", store)
    jobs = [job(i) for i in range(2)]
    ch._inflight = 2
    ch._on_accepted([(_Sent(ch, j, 0), mid) for j, mid in zip(jobs, ["1a", "1b"])])
    assert ch._key_of == {"1a": "26", "1b": "27"}
    ch.retune(msgspec.structs.replace(ch.cfg, receipt_id_format="decimal"))
    assert ch._key_of == {}
    # "1a" read as decimal is no number: an opaque key, not 26, so no match
    await ch._on_deliver([receipt(1, "1a"), receipt(2, "27")])
    assert [j.record.state.value for j in jobs] == ["submitted", "delivered"]
