"""Message ids: one counter per simulator, written in hex or decimal, optionally zero-padded.

The integer behind an id doubles as its slot in the bounded message store (see store.py).
"""

from __future__ import annotations


class MessageIds:
    __slots__ = ("_base", "n", "pattern", "spec")

    def __init__(self, fmt: str = "hex", width: int = 0, start: int = 1) -> None:
        if fmt not in ("hex", "decimal"):
            raise ValueError(f"unknown message id format {fmt!r}")
        letter = "x" if fmt == "hex" else "d"
        self.spec = f"0{width}{letter}" if width else letter
        self.pattern = "%" + self.spec  # `pattern % n` == format(n, spec), for n >= 0, faster
        self._base = 16 if fmt == "hex" else 10
        self.n = start - 1

    def next(self) -> tuple[int, str]:
        n = self.n + 1
        self.n = n
        return n, self.pattern % n

    def format(self, n: int) -> str:
        return self.pattern % n

    def parse(self, message_id: str) -> int | None:
        """The integer of an id in our format (leading zeros, case ignored), else None."""
        s = message_id.strip().strip("\0")
        if not s or not s.isalnum():
            return None
        try:
            return int(s, self._base)
        except ValueError:
            return None
