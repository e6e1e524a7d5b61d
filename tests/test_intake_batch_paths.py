"""Intake fast paths (gateway.service) against their general forms: message ids drawn per
batch, destinations checked per batch, records and answers built per batch."""

from __future__ import annotations

import copy
import os
import time

import msgspec
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import config as C
from gateway import service
from gateway.api.schemas import AcceptedMessage, SendMessage
from gateway.channels import Channel
from gateway.errors import GatewayError, InvalidBody
from gateway.store.base import InsertResult
from gateway.store.records import SegmentRecord


def _reference_ids(prefix: str, data: bytes) -> list[str]:
    """The id format, one id at a time: prefix + 16 hex digits of 8 random bytes."""
    return [prefix + data[8 * i : 8 * i + 8].hex() for i in range(len(data) // 8)]


@pytest.mark.parametrize("sizes", [[1], [3, 700, 1], [512, 512, 1000], [0, 2]])
def test_message_ids_are_the_pool_bytes_in_order_after_the_time_prefix(monkeypatch, sizes):
    stream = bytes(range(256)) * 200
    drawn = []

    def urandom(n: int) -> bytes:
        start = sum(len(d) for d in drawn)
        drawn.append(stream[start : start + n])
        return drawn[-1]

    monkeypatch.setattr(service, "_random", service._RandomPool())
    monkeypatch.setattr(os, "urandom", urandom)
    monkeypatch.setattr(time, "time", lambda: 1_790_000_000.123)
    prefix = f"{1_790_000_000_123:012x}"
    used = 0
    for n in sizes:
        ids = service.new_message_ids(n)
        assert ids == _reference_ids(prefix, stream[used : used + 8 * n])
        used += 8 * n
    assert len(drawn) <= 1 + sum(sizes) * 8 // 4096  # 4 KiB (or a batch's) per draw


_DIGITISH = st.text(alphabet="0123456789+ -.٣²x", min_size=0, max_size=18)


@given(st.lists(st.one_of(_DIGITISH, st.from_regex(r"\A[0-9]{1,17}\Z")), min_size=1, max_size=8))
def test_plain_destinations_is_true_exactly_when_each_normalises_to_itself(raws):
    assert service.plain_destinations(raws) == all(service.normalise_destination(r) == r for r in raws)


@pytest.mark.parametrize(
    "raws",
    [["4915112345678"], ["491511234", "00491511234"], ["123456", "1234567890123456"], ["12345"], ["0123456"], []],
)
def test_plain_destinations_examples(raws):
    assert service.plain_destinations(raws) == (bool(raws) and all(service.normalise_destination(r) == r for r in raws))


# ---- Gateway.accept against the per-destination loop it replaced -------------------------

_KEY = "sk_h2"
_CONFIG = f"""
[store]
path = "/nonexistent/h2.db"
[[channels]]
name = "a"
port = 1
system_id = "s"
password = "p"
[[channels]]
name = "b"
port = 2
system_id = "s"
password = "p"
allow_latin1 = true
concatenation = "udh16"
[[channels]]
name = "c"
port = 3
system_id = "s"
password = "p"
concatenation = "sar"
[[channels]]
name = "off"
port = 4
system_id = "s"
password = "p"
enabled = false
[[routes]]
prefix = "4915"
channels = ["a", "b"]
[[routes]]
prefix = "491"
categories = ["otp"]
channels = ["c"]
[[routes]]
prefix = "44"
channels = ["b"]
[[routes]]
prefix = "33"
channels = ["off"]
[[routes]]
prefix = "1"
categories = ["marketing"]
channels = ["c", "a"]
[[routes]]
channels = ["c"]
[[tenants]]
id = "t"
api_key_hash = "{C.hash_api_key(_KEY)}"
tps = 1000000
"""


class _Store:
    def __init__(self) -> None:
        self.inserted: list = []

    async def insert_messages(self, messages):
        self.inserted.append(list(messages))
        return [InsertResult(rec, False) for rec, _segs in messages]

    async def find_by_client_ref(self, tenant, ref):
        return None


class _Client:
    def __init__(self, up: bool) -> None:
        self.can_submit = up


def _reference_built(gw: service.Gateway, tenant, body: SendMessage, ids: list[str]):
    """The records accept built before its batch paths: one destination at a time (the
    loop of commit 2cfcac5, verbatim but for the ids, given)."""
    recipients = body.recipients
    dests = []
    for i, raw in enumerate(recipients):
        d = service.normalise_destination(raw)
        if d is None:
            path = "$.to" if isinstance(body.to, str) else f"$.to[{i}]"
            raise InvalidBody(f"not a phone number: {raw[:3]}...", path=path)
        dests.append(d)
    now = gw.wall()
    validity = body.validity_seconds
    built = []
    up: dict[str, bool] = {}
    templates = {}
    replace = msgspec.structs.replace
    chosen: dict[str, str] = {}
    key_length = gw.router.key_length
    first_segment = SegmentRecord(message_id="", seq=1)
    for i, dest in enumerate(dests):
        key = dest[:key_length]
        channel = chosen.get(key)
        if channel is None:
            channel = chosen[key] = gw._pick_channel(dest, body.category, up)
        tmpl = templates.get(channel)
        if tmpl is None:
            tmpl = templates[channel] = gw._record_template(tenant, body, channel, now, validity)
        ref = body.client_ref
        if ref is not None and len(dests) > 1:
            ref = f"{ref}#{i}"
        mid = ids[i]
        count = tmpl.segment_count
        rec = replace(
            tmpl,
            id=mid,
            client_ref=ref,
            destination=dest,
            concat_ref=gw.channels[channel].refs.next(dest) if count > 1 else None,
        )
        if count == 1:
            built.append((rec, [replace(first_segment, message_id=mid)]))
        else:
            built.append((rec, [SegmentRecord(message_id=mid, seq=k + 1) for k in range(count)]))
    return built


def _error(e: GatewayError) -> tuple:
    return type(e), str(e), e.details


_VALID = st.builds(
    lambda p, rest: p + rest,
    st.sampled_from(["4915", "4916", "491", "44", "1", "7", "+4915", "0044"]),
    st.from_regex(r"\A[0-9]{5,10}\Z"),
)
_ODD = st.one_of(
    st.builds(lambda p, rest: p + rest, st.sampled_from(["33", "0", "", "00"]), st.from_regex(r"\A[0-9]{0,11}\Z")),
    st.sampled_from(["+44 20-7946.0958", "49 151 234", "abc", "٣٣٣٣٣٣٣", "00", "4915123456789012"]),
)
_DEST = st.one_of(_VALID, _VALID, _VALID, _VALID, _VALID, _VALID, _ODD)
_TEXT = st.sampled_from(["Your code is 123456", "x" * 200, "Grüße €", "é" * 150, "ok 😀", "[]{}~" * 40])


@settings(max_examples=300)
@given(
    to=st.one_of(_DEST, st.lists(_VALID, min_size=1, max_size=8), st.lists(_DEST, min_size=1, max_size=8)),
    text=_TEXT,
    category=st.sampled_from(["otp", "notification", "marketing"]),
    client_ref=st.sampled_from([None, "ref-1"]),
    up=st.tuples(st.booleans(), st.booleans(), st.booleans()),
)
def test_accept_builds_what_the_per_destination_loop_built(to, text, category, client_ref, up):
    """Same records, segments, concatenation references and answers, or the same error,
    as routing and building one destination at a time."""
    cfg = C.parse(_CONFIG)
    tenant = cfg.tenants[0]
    body = SendMessage(to=to, text=text, category=category, client_ref=client_ref)

    async def main() -> None:
        store = _Store()
        gw = service.Gateway(cfg, store, wall_clock=lambda: 1_790_000_000.0)  # type: ignore[arg-type]
        for ch_cfg, is_up in zip(cfg.channels, up):
            ch = Channel(ch_cfg, store, clock=time.time)  # type: ignore[arg-type]
            ch.clients.append(_Client(is_up))  # type: ignore[arg-type]
            gw.channels[ch.name] = ch
        n = len(body.recipients)
        ids = [f"{i:028x}" for i in range(n)]
        service_ids = service.new_message_ids
        service.new_message_ids = lambda k: ids[:k]
        refs = {name: copy.deepcopy(ch.refs) for name, ch in gw.channels.items()}
        try:
            try:
                got = await gw.accept(tenant, body)
            except GatewayError as e:
                got_error = _error(e)
            else:
                got_error = None
            fresh = {name: ch.refs for name, ch in gw.channels.items()}
            for name, ch in gw.channels.items():
                ch.refs = refs[name]
            try:
                want = _reference_built(gw, tenant, body, ids)
            except GatewayError as e:
                assert got_error == _error(e)
                assert store.inserted == []
                return
        finally:
            service.new_message_ids = service_ids
        assert got_error is None
        assert store.inserted == [want]
        assert got == [
            AcceptedMessage(
                id=rec.id,
                to=rec.destination,
                state=rec.state.value,
                segments=rec.segment_count,
                channel=rec.channel,
                client_ref=rec.client_ref,
                duplicate=False,
            )
            for rec, _segs in want
        ]
        for name, ch in gw.channels.items():  # the next references come out the same
            assert [fresh[name].next(d) for d in ("4915100", "44100")] == [ch.refs.next(d) for d in ("4915100", "44100")]
        queued = [job.record for ch in gw.channels.values() for job in ch.queue]
        assert sorted(r.id for r in queued) == sorted(rec.id for rec, _segs in want)

    trio.run(main)

