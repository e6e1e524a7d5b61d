"""Channel choice: destination prefix + message category -> channels in failover order.

Rules
-----

- A route matches a destination if the destination starts with the route's prefix
  (`""` matches everything) and the route's categories include the message's category
  (empty categories: every category).
- Among matching routes the longest prefix wins. So if the longest prefix that matches
  the destination has no route for this category, a shorter prefix that has one is used.
- Several routes with the same prefix and an overlapping category: the first one in the
  config wins (the later one is shadowed for that category).
- The winning route's channels are tried in order; the first available one (up and not
  killed) is chosen. If none is available the message has no route right now: it does
  not fall back to a shorter prefix, because the route's channel list is the failover
  order the operator wrote down.

Structure
---------

Per category, one dict `prefix -> route` holding only the routes that allow that
category, and the distinct prefix lengths present, longest first. A lookup slices the
destination at each length and probes the dict: a handful of dict lookups, no scanning of
routes. Everything is computed once in the constructor; a reload builds a new Router.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from gateway.config import CATEGORIES, RouteConfig
from gateway.errors import NoRoute

__all__ = ["Route", "Router", "mask_destination", "normalize_destination"]


class Route:
    """One configured route, as the router resolved it."""

    __slots__ = ("categories", "channels", "index", "prefix")

    def __init__(
        self, prefix: str, categories: tuple[str, ...], channels: tuple[str, ...], index: int
    ):
        self.prefix = prefix
        self.categories = categories  # () = every category
        self.channels = channels
        self.index = index  # position in the config's route list

    def describe(self) -> str:
        cats = ",".join(self.categories) if self.categories else "all categories"
        return f"routes[{self.index}] (prefix {self.prefix or '*'}, {cats})"

    def __repr__(self) -> str:
        return f"Route(prefix={self.prefix!r}, categories={self.categories!r}, channels={self.channels!r})"


def normalize_destination(destination: str) -> str | None:
    """Digits only, a leading '+' stripped; None if that is not what it is."""
    d = destination[1:] if destination[:1] == "+" else destination
    return d if d.isascii() and d.isdigit() else None


def mask_destination(destination: str, keep: int = 4) -> str:
    """The first `keep` characters and '...' (phone numbers are never logged whole)."""
    return destination[:keep] + "..." if len(destination) > keep else destination[:1] + "..."


class Router:
    def __init__(self, routes: Iterable[RouteConfig]) -> None:
        self.routes: tuple[Route, ...] = tuple(
            Route(r.prefix, tuple(r.categories), tuple(r.channels), i) for i, r in enumerate(routes)
        )
        # category -> (lengths longest first, {prefix: Route})
        self._table: dict[str, tuple[tuple[int, ...], dict[str, Route]]] = {}
        for cat in CATEGORIES:
            by_prefix: dict[str, Route] = {}
            for r in self.routes:
                if (not r.categories or cat in r.categories) and r.prefix not in by_prefix:
                    by_prefix[r.prefix] = r
            lengths = tuple(sorted({len(p) for p in by_prefix}, reverse=True))
            self._table[cat] = (lengths, by_prefix)
        # A destination's route depends on its first `key_length` characters only (the
        # longest prefix): callers routing many destinations may memoise on d[:key_length].
        self.key_length = max((len(r.prefix) for r in self.routes), default=0)

    @property
    def channels(self) -> frozenset[str]:
        """Every channel some route refers to."""
        return frozenset(c for r in self.routes for c in r.channels)

    def route(self, destination: str, category: str) -> Route | None:
        """The route for this destination and category, or None."""
        entry = self._table.get(category)
        if entry is None:
            return None
        d = destination[1:] if destination[:1] == "+" else destination
        if not (d.isascii() and d.isdigit()):
            return None
        lengths, by_prefix = entry
        n = len(d)
        for length in lengths:
            if length <= n:
                r = by_prefix.get(d[:length])
                if r is not None:
                    return r
        return None

    def candidates(self, destination: str, category: str) -> tuple[str, ...]:
        """Channel names in failover order; () if no route matches."""
        r = self.route(destination, category)
        return r.channels if r is not None else ()

    def choose(self, destination: str, category: str, available: Callable[[str], bool]) -> str:
        """The first available channel of the matching route. Raises NoRoute, saying
        whether no route matches or every channel of the route is unavailable."""
        r = self.route(destination, category)
        if r is None:
            shown = mask_destination(destination.lstrip("+"))
            if normalize_destination(destination) is None:
                raise NoRoute(
                    f"invalid destination {shown}: digits only, optionally with a leading '+'",
                    reason="invalid_destination",
                    category=category,
                )
            if category not in self._table:
                raise NoRoute(
                    f"unknown category {category!r}", reason="unknown_category", category=category
                )
            raise NoRoute(
                f"no route for {shown} category {category}",
                reason="no_route",
                destination=shown,
                category=category,
            )
        for ch in r.channels:
            if available(ch):
                return ch
        raise NoRoute(
            f"all channels for route {r.describe()} are down: {', '.join(r.channels)}",
            reason="channels_down",
            destination=mask_destination(destination.lstrip("+")),
            category=category,
            prefix=r.prefix,
            channels=list(r.channels),
        )
