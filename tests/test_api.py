"""Tenant API: send, read back, idempotency, auth, every error shape, nothing stored on error."""

from __future__ import annotations

import contextlib
import sqlite3

import pytest
import trio

from gateway.api.tenant import TenantApp
from gateway.service import Gateway
from gateway.store.sqlite import SqliteStore
from tests.gateway_helpers import OTHER_KEY, AsgiClient, accept_with_receipt, gateway_config, wait_until
from tests.scripted_smsc import ScriptedSmsc


@pytest.fixture
async def setup(nursery, tmp_path):
    smsc = ScriptedSmsc()
    port = await nursery.start(smsc.serve)
    smsc.on_submit = accept_with_receipt()
    cfg = gateway_config(tmp_path / "gw.db", [("a", port)])
    gw = Gateway(cfg, SqliteStore(cfg.store))
    await nursery.start(gw.run)
    await wait_until(lambda: gw.channels["a"].up)
    return gw, AsgiClient(TenantApp(gw)), smsc


async def stored_count(gw) -> int:
    """Every message in the store, open or final (straight from the file: no store API
    counts the history, it would scan every row)."""
    await gw.store.flush()
    with contextlib.closing(sqlite3.connect(gw.store.path)) as conn:
        return conn.execute("SELECT count(*) FROM messages").fetchone()[0]


async def test_send_and_read_back_with_receipt(setup):
    gw, client, smsc = setup
    status, body = await client.request("POST", "/v1/messages", {"to": "+49 151 1234 5678", "text": "hi", "category": "otp"})
    assert status == 202
    (m,) = body["messages"]
    assert m["to"] == "4915112345678" and m["segments"] == 1 and m["state"] == "queued"

    async def delivered():
        _, view = await client.request("GET", f"/v1/messages/{m['id']}")
        return view["state"] == "delivered"

    with trio.fail_after(5):
        while not await delivered():
            await trio.sleep(0.02)
    status, view = await client.request("GET", f"/v1/messages/{m['id']}")
    assert status == 200
    assert view["segments"][0]["state"] == "delivered"
    assert view["segments"][0]["smsc_message_id"]
    # the receipt that settled it, as the SMSC sent it (store v7)
    assert "stat:DELIVRD" in view["segments"][0]["receipt"]
    assert view["done_at"] >= view["created_at"]


async def test_batch_and_client_ref_idempotency(setup):
    gw, client, smsc = setup
    body = {"to": ["4915112345678", "4917012345678", "4916012345678"], "text": "x", "client_ref": "order-7"}
    status, first = await client.request("POST", "/v1/messages", body)
    assert status == 202 and len(first["messages"]) == 3
    status, again = await client.request("POST", "/v1/messages", body)
    assert status == 202
    assert [m["id"] for m in again["messages"]] == [m["id"] for m in first["messages"]]
    assert all(m["duplicate"] for m in again["messages"])
    assert await stored_count(gw) == 3
    status, view = await client.request("GET", "/v1/messages", query="client_ref=order-7%231")
    assert status == 200 and view["id"] == first["messages"][1]["id"]


async def test_client_ref_used_for_other_content_is_409_and_stores_nothing(setup):
    gw, client, _ = setup
    first = {"to": "4915112345678", "text": "x", "client_ref": "r1"}
    status, sent = await client.request("POST", "/v1/messages", first)
    assert status == 202
    for other in ({**first, "text": "y"}, {**first, "to": "4917012345678"}, {**first, "category": "otp"}):
        status, err = await client.request("POST", "/v1/messages", other)
        assert status == 409 and err["error"]["code"] == "client_ref_reused", err
    # A batch sent again with one more recipient is another request as well.
    batch = {"to": ["4915112345678", "4917012345678"], "text": "x", "client_ref": "b1"}
    status, _ = await client.request("POST", "/v1/messages", batch)
    assert status == 202
    status, err = await client.request("POST", "/v1/messages", {**batch, "to": [*batch["to"], "4916012345678"]})
    assert status == 409 and err["error"]["code"] == "client_ref_reused"
    assert await stored_count(gw) == 3
    # The same request again is answered from the store.
    status, again = await client.request("POST", "/v1/messages", first)
    assert status == 202 and again["messages"][0]["id"] == sent["messages"][0]["id"]
    assert again["messages"][0]["duplicate"] is True
    assert await stored_count(gw) == 3


async def test_store_unavailable_is_503_with_its_code_and_no_internals(setup):
    """The store's own error text (SQLite's, with the file's path) is for the operator's log:
    the tenant gets the documented code, no details, and when to try again."""
    from gateway.store.sqlite import StoreUnavailable

    gw, client, _ = setup

    async def full(_built):
        raise StoreUnavailable(
            "store write failed: database or disk is full", path=gw.store.path,
            reason="OperationalError: database or disk is full",
        )

    gw.store.insert_messages = full
    status, err = await client.request("POST", "/v1/messages", {"to": "4915112345678", "text": "x"})
    assert status == 503
    assert err["error"]["code"] == "store_unavailable" and err["error"].get("details") is None
    assert client.last_headers.get(b"retry-after") == b"1"


async def test_single_client_ref_lookup(setup):
    gw, client, _ = setup
    _, sent = await client.request("POST", "/v1/messages", {"to": "4915112345678", "text": "x", "client_ref": "abc"})
    status, view = await client.request("GET", "/v1/messages", query="client_ref=abc")
    assert status == 200 and view["id"] == sent["messages"][0]["id"]


async def test_tenant_sees_only_its_own_messages(setup):
    gw, client, _ = setup
    _, sent = await client.request("POST", "/v1/messages", {"to": "4915112345678", "text": "x", "client_ref": "mine"})
    mid = sent["messages"][0]["id"]
    status, err = await client.request("GET", f"/v1/messages/{mid}", key=OTHER_KEY)
    assert status == 404 and err["error"]["code"] == "not_found"
    status, _ = await client.request("GET", "/v1/messages", key=OTHER_KEY, query="client_ref=mine")
    assert status == 404


@pytest.mark.parametrize(
    "body,key,status,code",
    [
        ({"to": "4915112345678", "text": "x"}, None, 401, "unauthorized"),
        ({"to": "4915112345678", "text": "x"}, "wrong", 401, "unauthorized"),
        (b"{not json", "default", 422, "invalid_body"),
        (b"", "default", 422, "invalid_body"),
        ({"to": "4915112345678"}, "default", 422, "invalid_body"),
        ({"to": "4915112345678", "text": "x", "bogus": 1}, "default", 422, "invalid_body"),
        ({"to": "hello", "text": "x"}, "default", 422, "invalid_body"),
        ({"to": [], "text": "x"}, "default", 422, "invalid_body"),
        ({"to": ["4915112345678"] * 1001, "text": "x"}, "default", 422, "invalid_body"),
        ({"to": "4915112345678", "text": "x", "category": "spam"}, "default", 422, "invalid_body"),
        ({"to": "4915112345678", "text": "x", "template_id": "t1"}, "default", 422, "templates_unavailable"),
        ({"to": "4915112345678", "text": "x" * 40000}, "default", 422, "invalid_body"),
        # `#` would collide with the references of a batch's messages (`ref#i`)
        ({"to": "4915112345678", "text": "x", "client_ref": "a#1"}, "default", 422, "invalid_body"),
        (b'{"to": "4915112345678", "text": "\xff\xfe"}', "default", 422, "invalid_body"),  # not UTF-8
    ],
)
async def test_bad_requests_store_nothing(setup, body, key, status, code):
    gw, client, _ = setup
    kw = {} if key == "default" else {"key": key}
    got, err = await client.request("POST", "/v1/messages", body, **kw)
    assert got == status, err
    assert err["error"]["code"] == code
    assert err["error"]["message"]
    assert await stored_count(gw) == 0


async def test_invalid_body_names_the_path(setup):
    gw, client, _ = setup
    status, err = await client.request("POST", "/v1/messages", {"to": ["4915112345678", "nope"], "text": "x"})
    assert status == 422 and err["error"]["details"]["path"] == "$.to[1]"


async def test_body_over_the_limit_is_413(setup):
    gw, client, _ = setup
    big = b"{" + b" " * (gw.cfg.listeners.max_body_bytes + 1) + b"}"
    status, err = await client.request("POST", "/v1/messages", big)
    assert status == 413 and err["error"]["code"] == "payload_too_large"
    assert await stored_count(gw) == 0


async def test_category_not_allowed_is_403(setup, tmp_path):
    gw, client, _ = setup
    tenant = gw.cfg.tenants[0]
    import msgspec

    gw._tenants_by_hash[tenant.api_key_hash] = msgspec.structs.replace(tenant, categories=["otp"])
    status, err = await client.request("POST", "/v1/messages", {"to": "4915112345678", "text": "x", "category": "marketing"})
    assert status == 403 and err["error"]["code"] == "forbidden"
    assert await stored_count(gw) == 0


async def test_rate_limit_is_429_with_retry_after(setup):
    gw, client, _ = setup
    import msgspec

    slow = [msgspec.structs.replace(t, tps=1.0) for t in gw.cfg.tenants]
    gw.limiter.retune(slow, trio.current_time())
    codes = []
    for _ in range(3):
        status, err = await client.request("POST", "/v1/messages", {"to": "4915112345678", "text": "x"})
        codes.append(status)
    assert codes[0] == 202 and 429 in codes
    assert await stored_count(gw) == codes.count(202)


async def test_unknown_paths_and_methods(setup):
    gw, client, _ = setup
    assert (await client.request("GET", "/v2/nothing"))[0] == 404
    assert (await client.request("DELETE", "/v1/messages"))[0] == 405
    assert (await client.request("GET", "/v1/messages/0123abcd"))[0] == 404
    assert (await client.request("GET", "/v1/messages", query=""))[0] == 400


def test_message_ids_are_time_ordered_and_unique():
    from gateway.service import new_message_ids

    ids = new_message_ids(1000) + new_message_ids(3000) + new_message_ids(1)
    assert len(set(ids)) == len(ids) == 4001
    assert all(len(i) == 28 and int(i, 16) >= 0 for i in ids)
    assert [i[:12] for i in ids] == sorted(i[:12] for i in ids)  # the clock part never goes back
