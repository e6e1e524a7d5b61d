"""The tenant API refuses a sender that submit_sm's source_addr cannot carry (422, path
`$.sender`) instead of accepting it and failing the message at dispatch."""

from __future__ import annotations

import pytest
import trio

from tests.test_api import setup, stored_count  # noqa: F401 - the fixture

BAD = ["a\x00b", "G\u00e4teway\u20ac", "\t", "\n", "ab\ncd", " lead", "trail ", "x" * 21, "\u00e9"]
GOOD = ["Gateway", "+4915112345678", "12345", "My Shop", "x" * 20, "A-1_b.c!"]


@pytest.mark.parametrize("sender", BAD, ids=[repr(s) for s in BAD])
async def test_unsendable_sender_is_422_and_stores_nothing(setup, sender):  # noqa: F811
    gw, client, _ = setup
    status, err = await client.request("POST", "/v1/messages", {"to": "4915112345678", "text": "x", "sender": sender})
    assert status == 422, err
    assert err["error"]["code"] == "invalid_body" and err["error"]["details"]["path"] == "$.sender"
    assert await stored_count(gw) == 0


@pytest.mark.parametrize("sender", GOOD)
async def test_sendable_sender_is_delivered(setup, sender):  # noqa: F811
    _, client, _ = setup
    status, body = await client.request("POST", "/v1/messages", {"to": "4915112345678", "text": "x", "sender": sender})
    assert status == 202, body
    mid = body["messages"][0]["id"]
    view = {}
    for _ in range(250):
        _, view = await client.request("GET", f"/v1/messages/{mid}")
        if view["state"] == "delivered":
            break
        await trio.sleep(0.02)
    assert view["state"] == "delivered" and view["sender"] == sender, view
