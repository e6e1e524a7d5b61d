"""The API's destination normalisation (gateway.service.normalise_destination)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.service import normalise_destination


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("491511234567", "491511234567"),
        ("+49 151 123-45.67", "491511234567"),
        ("00491511234567", "491511234567"),
        ("0151123456", "0151123456"),  # national form: kept, the route decides
        ("12345", None),  # too short
        ("1234567890123456", None),  # too long
        ("49151１２３４５６", None),  # not ASCII digits
        ("", None),
    ],
)
def test_examples(raw, expected):
    assert normalise_destination(raw) == expected


@given(st.text("0123456789+-. ", max_size=20) | st.text(max_size=20))
def test_the_digits_only_shortcut_gives_what_the_full_path_gives(raw):
    """A string of 6-15 ASCII digits is returned as is; a leading blank (stripped by the
    full path) takes the full path: both must agree on every input."""
    assert normalise_destination(raw) == normalise_destination(" " + raw)
