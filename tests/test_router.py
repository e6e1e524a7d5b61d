"""Channel choice by longest destination prefix, category and failover order."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import CATEGORIES, RouteConfig
from gateway.errors import NoRoute
from gateway.router import Router, mask_destination, normalize_destination


def R(prefix: str, channels: list[str], categories: list[str] | None = None) -> RouteConfig:
    return RouteConfig(prefix=prefix, channels=channels, categories=categories or [])


ROUTES = [
    R("", ["default"]),
    R("49", ["de1", "de2"]),
    R("4915", ["de-otp"], ["otp"]),
    R("86", ["cn1", "cn2", "cn3"], ["otp", "notification"]),
    R("86139", ["cn-mkt"], ["marketing"]),
]


def everything_up(_: str) -> bool:
    return True


@pytest.fixture
def router() -> Router:
    return Router(ROUTES)


@pytest.mark.parametrize(
    "dest,cat,expected",
    [
        ("+491512345678", "otp", ("de-otp",)),
        ("491512345678", "otp", ("de-otp",)),
        ("+491512345678", "marketing", ("de1", "de2")),  # 4915 has no marketing route
        ("+4930123456", "notification", ("de1", "de2")),
        ("8613912345678", "marketing", ("cn-mkt",)),
        ("8613912345678", "otp", ("cn1", "cn2", "cn3")),
        ("8613812345678", "marketing", ("default",)),  # 86 is otp/notification only
        ("15551234567", "otp", ("default",)),
        ("4", "otp", ("default",)),  # shorter than every prefix but ""
    ],
)
def test_candidates(router, dest, cat, expected):
    assert router.candidates(dest, cat) == expected


def test_no_route_without_default():
    router = Router([R("49", ["de"]), R("86", ["cn"], ["otp"])])
    assert router.candidates("15551234567", "otp") == ()
    assert router.route("15551234567", "otp") is None
    with pytest.raises(NoRoute) as e:
        router.choose("+15551234567", "otp", everything_up)
    assert str(e.value) == "no route for 1555... category otp"
    assert e.value.details["reason"] == "no_route"
    with pytest.raises(NoRoute, match="no route for 8613... category marketing"):
        router.choose("8613912345678", "marketing", everything_up)
    assert "15551234567" not in str(e.value)  # numbers are masked


def test_choose_failover_order(router):
    up = {"de1": False, "de2": True}
    assert router.choose("+4930123456", "otp", lambda c: up[c]) == "de2"
    up["de1"] = True
    assert router.choose("+4930123456", "otp", lambda c: up[c]) == "de1"
    down = {"cn1"}
    assert router.choose("8613812345678", "otp", lambda c: c not in down) == "cn2"
    down.add("cn2")
    assert router.choose("8613812345678", "otp", lambda c: c not in down) == "cn3"


def test_all_channels_down_is_reported_as_such(router):
    with pytest.raises(NoRoute) as e:
        router.choose("8613812345678", "otp", lambda c: False)
    msg = str(e.value)
    assert msg.startswith("all channels for route routes[3] (prefix 86, otp,notification) are down")
    assert msg.endswith("are down: cn1, cn2, cn3")
    assert e.value.details["reason"] == "channels_down"
    assert e.value.details["channels"] == ["cn1", "cn2", "cn3"]
    assert e.value.code == "no_route" and e.value.http_status == 422
    assert "8613812345678" not in msg


def test_channels_down_does_not_fall_back_to_shorter_prefix(router):
    # the longest route's channel list is the failover order; "default" is not tried
    with pytest.raises(NoRoute, match="are down: de-otp"):
        router.choose("491512345678", "otp", lambda c: c != "de-otp")


def test_same_prefix_first_route_wins_per_category():
    router = Router(
        [
            R("49", ["otp-a"], ["otp"]),
            R("49", ["all-b"]),
            R("49", ["otp-c"], ["otp"]),  # shadowed for otp by the first
        ]
    )
    assert router.candidates("4915", "otp") == ("otp-a",)
    assert router.candidates("4915", "marketing") == ("all-b",)


@pytest.mark.parametrize("dest", ["", "+", "49 151", "49-151", "abc", "++49", "４９", "49\n"])
def test_invalid_destination(router, dest):
    assert router.candidates(dest, "otp") == ()
    with pytest.raises(NoRoute, match="invalid destination") as e:
        router.choose(dest, "otp", everything_up)
    assert e.value.details["reason"] == "invalid_destination"


def test_unknown_category(router):
    assert router.candidates("4915", "promo") == ()
    with pytest.raises(NoRoute, match="unknown category 'promo'"):
        router.choose("4915", "promo", everything_up)


def test_empty_router():
    router = Router([])
    assert router.candidates("49", "otp") == ()
    assert router.channels == frozenset()


def test_channels_property(router):
    assert router.channels == {"default", "de1", "de2", "de-otp", "cn1", "cn2", "cn3", "cn-mkt"}


def test_helpers():
    assert normalize_destination("+4915") == "4915"
    assert normalize_destination("4915") == "4915"
    assert normalize_destination("+") is None
    assert normalize_destination("49 15") is None
    assert mask_destination("491512345678") == "4915..."
    assert mask_destination("491") == "4..."


# ---------------------------------------------------------------------------------------
# Properties: the router agrees with a brute-force reading of the rules

prefixes = st.text(alphabet="123", max_size=4)
categories = st.lists(st.sampled_from(CATEGORIES), unique=True, max_size=3)
channel_names = st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=4, unique=True)
route_configs = st.builds(
    lambda p, c, ch: RouteConfig(prefix=p, categories=c, channels=ch),
    prefixes,
    categories,
    channel_names,
)
destinations = st.builds(
    lambda plus, d: ("+" if plus else "") + d,
    st.booleans(),
    st.text(alphabet="1234", min_size=1, max_size=8),
)


def brute_force(routes: list[RouteConfig], destination: str, category: str) -> RouteConfig | None:
    d = destination.lstrip("+")
    best: RouteConfig | None = None
    for r in routes:  # first in config order wins among equal prefixes
        allows = not r.categories or category in r.categories
        if d.startswith(r.prefix) and allows and (best is None or len(r.prefix) > len(best.prefix)):
            best = r
    return best


@settings(max_examples=500, deadline=None)
@given(st.lists(route_configs, max_size=12), destinations, st.sampled_from(CATEGORIES))
def test_longest_allowing_prefix_wins(routes, destination, category):
    router = Router(routes)
    expected = brute_force(routes, destination, category)
    got = router.route(destination, category)
    if expected is None:
        assert got is None
        assert router.candidates(destination, category) == ()
        return
    assert got is not None
    assert got.prefix == expected.prefix
    assert got.channels == tuple(expected.channels)
    assert routes[got.index] is expected
    # no matching route allowing the category has a longer prefix
    d = destination.lstrip("+")
    for r in routes:
        if d.startswith(r.prefix) and (not r.categories or category in r.categories):
            assert len(r.prefix) <= len(got.prefix)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(route_configs, min_size=1, max_size=12),
    destinations,
    st.sampled_from(CATEGORIES),
    st.sets(st.sampled_from("abcdefgh")),
)
def test_choose_respects_failover_order(routes, destination, category, up):
    router = Router(routes)
    cands = router.candidates(destination, category)
    asked: list[str] = []

    def available(ch: str) -> bool:
        asked.append(ch)
        return ch in up

    try:
        chosen = router.choose(destination, category, available)
    except NoRoute as e:
        assert all(c not in up for c in cands)
        reason = e.details["reason"]
        assert reason == ("channels_down" if cands else "no_route")
        return
    assert chosen in up
    i = cands.index(chosen)
    assert asked == list(cands[: i + 1])  # tried in order, stopped at the first up
    assert all(c not in up for c in cands[:i])


@given(
    st.lists(st.tuples(st.text("0123456789", max_size=6), st.sampled_from(CATEGORIES)), max_size=8),
    st.text("0123456789", min_size=1, max_size=15),
    st.text("0123456789", min_size=1, max_size=15),
    st.sampled_from(CATEGORIES),
)
def test_numbers_alike_in_their_first_key_length_digits_share_a_route(prefixes, a, b, category):
    """Intake routes a batch with one lookup per d[:key_length] (Gateway.accept): two
    numbers with the same first key_length digits get the same route, whatever the rest."""
    router = Router([R(p, [f"c{i}"], [c]) for i, (p, c) in enumerate(prefixes)])
    n = router.key_length
    other = a[:n] + b if len(a) >= n else a  # shorter than n: only `a` itself has its key
    assert other[:n] == a[:n]
    assert router.candidates(a, category) == router.candidates(other, category)
