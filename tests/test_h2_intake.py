"""Intake fast paths (gateway.service) against their general forms: message ids drawn per
batch, destinations checked per batch, records and answers built per batch."""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import service


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
