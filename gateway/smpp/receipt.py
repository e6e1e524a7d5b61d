"""Delivery receipts: the SMPP 3.4 Appendix B text, the receipt TLVs, and message-id matching.

Protocol only: this module turns what an SMSC sends into plain values. Deciding what a receipt
means for a stored message (which segment, which tenant, billing) belongs to the caller.

Receipt text
------------
SMPP 3.4 Appendix B suggests (it is not normative) a `short_message` like::

    id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD
    err:E text: . . . . . . . . .

Real SMSCs vary it, and `parse_receipt_text` accepts what the corpus in tests/corpus shows:

- labels match case-insensitively (`Text:`, `STAT:`); `submit date` / `done date` may also be
  written `submit_date` / `submitdate`;
- any field may be missing, fields may come in any order, vendor fields (`imsi:...`, any
  `word:value`) are skipped, and stray words without a label are ignored (`err:000 te`);
- a header value is the run of non-blank characters after its label (`err:000 testing` gives
  `err='000'`; `id: sub:001` gives `id=''`). Only when the value is empty *and* the next word
  is not itself a label is that next word taken (`stat: DELIVRD` gives `DELIVRD`);
- `text:` runs to the end of the string, spaces and all, *except* when everything after some
  blank inside it is a sequence of standard `label:value` fields that did not occur before
  `text:`. That is the shape of a receipt whose `text:` was moved forward
  (`... text: stat:DELIVRD`), and the text then stops at that blank. An excerpt such as
  `text:my id:5` keeps `id:5` whenever `id:` came earlier, which it does in every normal receipt;
- trailing NULs are dropped; `bytes` are decoded Latin-1, which is lossless (every byte maps
  to the code point of the same value), so the raw strings keep every octet the SMSC sent.
  Decoding the excerpt for people (UTF-16BE inside a "GSM" receipt happens) is a separate step,
  `decode_receipt_excerpt`.

The first occurrence of a label wins. Values are returned exactly as written (`'001'`, `'21b'`):
interpretation is left to `parse_receipt_date`, `stat_to_state` and the caller.

Message ids (submit_sm_resp versus receipt)
-------------------------------------------
An SMSC often answers submit_sm_resp with an id in one form and quotes it in the receipt (text
`id:` or `receipted_message_id` TLV) in another. The corpus pairs in
tests/corpus/receipt_id_pairs.jsonl give the rules, all implemented by `receipt_id_key`:

R1. Surrounding blanks and NULs are not part of an id. An empty id names no message and never
    matches anything (`same_message_id('', '')` is False; the store must not look up `''`).
R2. Numeric ids compare by integer value: leading zeros do not matter (pair-13:
    `0416342074` = `416342074`), nor does the case of hex letters (pair-04, pair-14:
    `70BA8A69` = `70ba8a69`).
R3. The hex form and the decimal form of one integer name the same message (pairs 01-06, 14:
    `38601fa` = `0059113978` because 0x38601fa = 59113978).
R4. Different integers never match: not when they differ by one (pair-11: `38601fa` vs
    `0059113979`), not when one string extends the other (pair-12: `38601fa` vs `38601fa0`),
    and not when the TLV and the text of the same receipt disagree (pair-10: `6000` vs
    `5000`; `receipt_from_pdu` then trusts the TLV, as jasmin does).
R5. Identical strings always match (pairs 07-09), whatever their form.
R6. Ids that are not numbers in the configured form are opaque and compare exactly after R1.
    UUIDs (8-4-4-4-12 hex digits) in "auto" are compared without regard to letter case.
    Numeric reading is limited to ids of at most 64 characters (the SMPP 3.4 maximum is 64),
    longer strings are opaque.

Formats. A channel declares, separately for its submit_sm_resp ids and for its receipt ids,
which form its SMSC uses:

- "decimal": ASCII digits, read base 10;
- "hex": hex digits (optional `0x`), read base 16;
- "string": opaque, compared exactly (R1 only; no case folding);
- "auto": decided per id, from the id alone: only digits -> decimal; hex digits with at least
  one letter a-f (or a `0x` prefix) -> hex; a UUID -> opaque, lowercased; anything else ->
  opaque, exact.

`receipt_id_key(raw, fmt)` returns the key the store indexes on: for a numeric reading the
integer written in decimal without leading zeros, otherwise the id itself (after R1). Two ids
name the same message exactly when their keys are equal, so the store matches a receipt to a
segment by one indexed equality lookup. An id that is not valid in its declared numeric format
(a letter in a "decimal" id) falls back to the opaque key: it can then only equal an identical
opaque id, never a numeric key (numeric keys are all digits, such a fallback key is not).

When "auto" is safe, and when it is ambiguous. Letters are the only evidence of hex, so:

- safe when the SMSC uses decimal on both sides ("auto" then behaves as "decimal"), or opaque
  ids that are not pure hex (UUIDs, ids with letters beyond f, punctuation): "auto" then
  behaves as "string";
- a *missed match* when one side is hex and the other decimal and a hex id happens to contain
  no letter: `1234` (= 0x1234 = 4660) is read as decimal 1234 and never meets the decimal
  `4660` from the other side. Among uniformly random 8-digit hex ids that is
  (10/16)**8 = 2.3 % of messages; for small sequential ids (below 0xA, 0xA0, ...) far more;
- a *false match* when the SMSC uses hex on both sides: the letterless `1234` (hex, = 4660)
  is keyed 1234, exactly like `4d2` (hex, = 1234), a different message. Ids from one
  sequential counter will produce such pairs in time;
- identical strings (R5) and strings differing only in letter case or leading zeros always
  get equal keys under "auto", so an SMSC that uses one form on both sides never loses a
  receipt; the residual risk there is the false match above.

So "auto" is a bootstrapping and diagnostic setting: configure "hex" or "decimal" explicitly as
soon as the SMSC's forms are known, and keep "auto" only for decimal-only or opaque-id SMSCs,
where it costs nothing. `same_message_id(a, b)` answers for two ids of unknown form, i.e.
compares their "auto" keys, and carries the same caveats.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

import msgspec

from gateway.smpp import pdu as P
from gateway.smpp.constants import (
    ESM_CLASS_INTERMEDIATE_NOTIFICATION,
    ESM_CLASS_RECEIPT_MASK,
    ESM_CLASS_SMSC_RECEIPT,
    MessageState,
    Tag,
)

__all__ = [
    "FINAL_STATES",
    "ID_FORMATS",
    "IdFormat",
    "ReadOutcome",
    "Receipt",
    "ReceiptText",
    "decode_receipt_excerpt",
    "is_receipt",
    "normalise_message_id",
    "parse_receipt_date",
    "parse_receipt_fields",
    "parse_receipt_text",
    "read_receipt_outcome",
    "receipt_from_pdu",
    "receipt_id_key",
    "receipt_outcome",
    "receipt_outcome_read",
    "receipt_read_pdu",
    "receipt_text_of",
    "same_message_id",
    "stat_to_state",
]


# ---------------------------------------------------------------------------------------
# Receipt text


class ReceiptText(msgspec.Struct, frozen=True, gc=False):
    """The fields of a receipt text, each the raw string after its label (None if absent)."""

    id: str | None = None
    sub: str | None = None
    dlvrd: str | None = None
    submit_date: str | None = None
    done_date: str | None = None
    stat: str | None = None
    err: str | None = None
    text: str | None = None

    @property
    def is_receipt(self) -> bool:
        """True when the text carries an `id:` or a `stat:` (what makes it a receipt)."""
        return self.id is not None or self.stat is not None

    @property
    def state(self) -> MessageState | None:
        return stat_to_state(self.stat)


_FIELDS = ("id", "sub", "dlvrd", "submit_date", "done_date", "stat", "err", "text")

# Blanks are ASCII only: the text is Latin-1 decoded bytes, and \x85 / \xa0 are data there.
_BLANK = " \t\r\n\f\v"
_BLANK_NUL = _BLANK + "\x00"
_WS_RE = re.compile(r"[ \t\r\n\f\v]*")
_TOKEN_RE = re.compile(r"[^ \t\r\n\f\v]*")
_LABEL_BODY = r"(id|sub|dlvrd|submit[ _]?date|done[ _]?date|stat|err|text):"
_LABEL_RE = re.compile(_LABEL_BODY, re.IGNORECASE | re.ASCII)
# A vendor field: a word directly followed by a colon (`imsi:`, `MCC:`, `x-err:`).
_VENDOR_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]*:")
# Where a moved-forward `text:` may end: a blank run followed by a standard label.
_TAIL_RE = re.compile(r"[ \t\r\n\f\v]+(?=" + _LABEL_BODY + ")", re.IGNORECASE | re.ASCII)


def _key(label: str) -> str:
    k = label.lower().replace(" ", "").replace("_", "")
    return {"submitdate": "submit_date", "donedate": "done_date"}.get(k, k)


def _read_value(s: str, p: int) -> tuple[str, int]:
    """The header value starting at p (right after a label) and the position after it."""
    m = _TOKEN_RE.match(s, p)
    value, end = m.group(), m.end()
    if value:
        return value, end
    # Empty: `id: sub:001` is an empty id, but `stat: DELIVRD` is a stray blank.
    q = _WS_RE.match(s, end).end()
    if q > end and q < len(s) and not _LABEL_RE.match(s, q) and not _VENDOR_RE.match(s, q):
        m = _TOKEN_RE.match(s, q)
        return m.group(), m.end()
    return "", end


def _tail_is_fields(s: str, p: int, seen: dict[str, str]) -> bool:
    """True if s[p:] is only standard `label:value` fields absent from `seen`, no repeats."""
    n = len(s)
    taken: set[str] = set()
    while True:
        p = _WS_RE.match(s, p).end()
        if p >= n:
            return bool(taken)
        m = _LABEL_RE.match(s, p)
        if m is None:
            return False
        key = _key(m.group(1))
        if key == "text" or key in seen or key in taken:
            return False
        taken.add(key)
        p = _TOKEN_RE.match(s, m.end()).end()


def _scan(s: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    n = len(s)
    p = 0
    while True:
        p = _WS_RE.match(s, p).end()
        if p >= n:
            return fields
        m = _LABEL_RE.match(s, p)
        if m is not None:
            key = _key(m.group(1))
            p = m.end()
            if key == "text":
                end = n
                for t in _TAIL_RE.finditer(s, p):
                    if _tail_is_fields(s, t.end(), fields):
                        end = t.start()
                        break
                fields.setdefault("text", s[p:end])
                p = end
                continue
            value, p = _read_value(s, p)
            fields.setdefault(key, value)
            continue
        m = _VENDOR_RE.match(s, p)
        if m is not None:
            p = _TOKEN_RE.match(s, m.end()).end()  # vendor field: skip its value
            continue
        p = _TOKEN_RE.match(s, p).end()  # a stray word


def _as_text(data: str | bytes | bytearray | memoryview) -> str:
    if isinstance(data, str):
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data).decode("latin-1")
    raise TypeError(f"receipt text must be str or bytes, not {type(data).__name__}")


# The SMPP 3.4 Appendix B layout exactly as most SMSCs write it: every label once, in
# order, single spaces, no empty values. Such a text is split by one regex match (~0.7 us
# with the groups) instead of the tolerant scan below (~15 us); anything else takes the scan.
# Tests check that both give the same fields wherever the fast path applies, and that
# receipt_from_pdu, which uses the match directly, gives what the scan would give.
# With re.ASCII, \S is exactly [^ \t\n\r\f\v] and \d is [0-9] (and 20% faster to match).
_CANONICAL = re.compile(
    r"id:(\S+) sub:(\S+) dlvrd:(\S+) submit date:(\d+) done date:(\d+) stat:(\S+)"
    r" err:(\S+) [Tt]ext:(.*)",
    re.DOTALL | re.ASCII,
)


_canonical_match = _CANONICAL.fullmatch


def parse_receipt_fields(data: str | bytes) -> ReceiptText:
    """Every receipt field found in `data`, even if it does not amount to a receipt.

    Never raises for str or bytes input; a text with no fields gives all None.
    """
    s = _as_text(data).rstrip("\x00")
    m = _CANONICAL.fullmatch(s)
    if m is not None:
        return ReceiptText(*m.groups())
    return ReceiptText(**_scan(s))


def parse_receipt_text(data: str | bytes) -> ReceiptText | None:
    """The receipt fields of `data`, or None when it is not a receipt (no `id:`, no `stat:`).

    Never raises for str or bytes input.
    """
    fields = parse_receipt_fields(data)
    return fields if fields.is_receipt else None


def _utf16_reading(b: bytes) -> str | None:
    """b read as UTF-16BE when that is clearly what it is, else None."""
    if not b or not any(c < 0x20 and c not in (0x09, 0x0A, 0x0D) for c in b):
        return None  # a Latin-1 reading with no control octet is the better guess
    if len(b) % 2:
        b += b"\x00"  # the trailing-NUL strip may have eaten the low octet of the last char
    try:
        text = b.decode("utf-16-be")
    except UnicodeDecodeError:
        return None
    if all(c.isprintable() or c.isspace() for c in text):
        return text
    return None


def decode_receipt_excerpt(raw: str) -> str:
    """A human reading of the `text:` excerpt as returned by the parser (Latin-1 per octet).

    SMSCs copy the first octets of the original message into the excerpt, so a UCS2 message
    gives UTF-16BE octets inside an otherwise ASCII receipt (even with data_coding 0). Rules:
    UTF-16BE when the octets contain control characters and read as printable UTF-16BE;
    else UTF-8 when non-ASCII and valid UTF-8; else the Latin-1 string unchanged. Without
    control octets UTF-16BE cannot be told from ASCII (CJK in UTF-16BE is printable Latin-1),
    and the ASCII reading is kept: data_coding cannot decide it either, since it describes
    the receipt (ASCII header included), not the original message. Never raises.
    """
    if raw.isascii() and raw.isprintable():
        return raw  # the common excerpt: no control octet (so not UTF-16), nothing to decode
    try:
        b = raw.encode("latin-1")
    except UnicodeEncodeError:
        return raw  # already decoded text
    text = _utf16_reading(b)
    if text is not None:
        return text
    if not b.isascii():
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return raw


# ---------------------------------------------------------------------------------------
# Dates and states


# Dates repeat: minute resolution, and submit date = done date in most receipts. Parsing one
# (~1.4 us) costs 30 times a dict lookup, so results are kept per exact input string (pure
# function, datetimes immutable). Bounded: emptied when full, short strings only.
_DATE_MEMO: dict[str, datetime | None] = {}
_DATE_MEMO_MAX = 4096
_DATE_MEMO_LEN = 24


def parse_receipt_date(value: str | None) -> datetime | None:
    """A receipt date as a naive datetime (the SMSC's clock, normally UTC); None if invalid.

    - 10 digits: YYMMDDhhmm (SMPP 3.4);
    - 12 digits: YYMMDDhhmmss, or YYYYMMDDhhmm when the first reading is not a valid date
      (`201506201641` would have month 15, so it is 2015-06-20 16:41). When both are valid
      the seconds reading wins: it is the common extension;
    - 14 digits: YYYYMMDDhhmmss.
    Two-digit years follow POSIX `%y`: 00-68 -> 2000-2068, 69-99 -> 1969-1999 (so the epoch
    placeholder `7001010000` is 1970-01-01 00:00).
    """
    if value is None:
        return None
    if type(value) is not str or len(value) > _DATE_MEMO_LEN:
        return _parse_date(value)
    date = _DATE_MEMO.get(value, _MISSING)
    if date is _MISSING:
        date = _parse_date(value)
        if len(_DATE_MEMO) >= _DATE_MEMO_MAX:
            _DATE_MEMO.clear()
        _DATE_MEMO[value] = date
    return date  # type: ignore[return-value]


_MISSING: Any = object()


def _parse_date(value: str) -> datetime | None:
    s = value.strip(_BLANK_NUL)
    if not (s.isascii() and s.isdigit()):
        return None
    n = len(s)
    # Read as one integer and split by divmod (half the cost of five slices and int()s).
    if n == 10:  # YYMMDDhhmm, seconds 00
        return _date(int(s) * 100, True)
    if n == 12:  # YYMMDDhhmmss, else YYYYMMDDhhmm
        v = int(s)
        date = _date(v, True)
        return date if date is not None else _date(v * 100, False)
    if n == 14:  # YYYYMMDDhhmmss
        return _date(int(s), False)
    return None


def _date(v: int, two_digit_year: bool) -> datetime | None:
    """The datetime of the digits YY..MMDDhhmmss (a non-negative integer), None if invalid."""
    v, sec = divmod(v, 100)
    v, mi = divmod(v, 100)
    v, h = divmod(v, 100)
    v, d = divmod(v, 100)
    year, mo = divmod(v, 100)
    if two_digit_year:
        year += 2000 if year < 69 else 1900
    try:
        return datetime(year, mo, d, h, mi, sec)
    except ValueError:
        return None


_STAT_TABLE: dict[str, MessageState] = {}
for _state, _names in {
    MessageState.ENROUTE: ("ENROUTE", "EN_ROUTE", "BUFFRED", "BUFFERED", "SENT", "PENDING"),
    MessageState.DELIVERED: ("DELIVRD", "DELIVERED", "DELIVRED", "DELIVER", "DELIVR", "DLVRD"),
    MessageState.EXPIRED: ("EXPIRED", "EXPIRD"),
    MessageState.DELETED: ("DELETED", "DELETD"),
    MessageState.UNDELIVERABLE: (
        "UNDELIV",
        "UNDELIVERABLE",
        "UNDELIVERED",
        "UNDELIVRD",
        "UNDELIVR",
        "FAILED",
        "FAILD",
        "FAIL",
        "NOT_DELIVERED",
    ),
    MessageState.ACCEPTED: ("ACCEPTD", "ACCEPTED"),
    MessageState.UNKNOWN: ("UNKNOWN", "UNKNWN"),
    MessageState.REJECTED: ("REJECTD", "REJECTED"),
}.items():
    for _name in _names:
        _STAT_TABLE[_name] = _state
del _state, _names, _name

_QUALIFIABLE = frozenset(
    {MessageState.REJECTED, MessageState.UNDELIVERABLE, MessageState.EXPIRED, MessageState.DELETED}
)

FINAL_STATES: frozenset[MessageState] = frozenset(MessageState) - {MessageState.ENROUTE}


def stat_to_state(stat: str | None) -> MessageState | None:
    """The MessageState a receipt `stat:` value names, or None when it names none we know.

    Case-insensitive; the seven SMPP 3.4 abbreviations (DELIVRD, EXPIRED, DELETED, UNDELIV,
    ACCEPTD, UNKNOWN, REJECTD) plus ENROUTE, the spelled-out forms (DELIVERED, UNDELIVERABLE,
    ...), FAILED/FAIL as undeliverable, BUFFRED/BUFFERED/SENT/PENDING as en route, and the
    message_state numbers 1-8 written as the stat. A vendor qualifier before `_` is allowed
    on the failure words (`DND_REJECTED` is REJECTED) but never on DELIVERED/ACCEPTED or
    after NOT/NON/UN (`NOT_DELIVRD`, `X_DELIVRD` give None: a success is never guessed).
    """
    if not stat:
        return None
    if type(stat) is str:
        state = _STAT_TABLE.get(stat)  # already normalised (`DELIVRD`): the lookup below gives it
        if state is not None:
            return state
    s = stat.strip(_BLANK_NUL).upper().replace("-", "_").replace(" ", "_")
    state = _STAT_TABLE.get(s)
    if state is not None:
        return state
    if s.isascii() and s.isdigit() and len(s) <= 2:
        try:
            return MessageState(int(s))
        except ValueError:
            return None
    if "_" in s:
        prefix, word = s.rsplit("_", 1)
        state = _STAT_TABLE.get(word)
        # A vendor qualifier may refine a failure (DND_REJECTED) but must not turn a
        # negated word into a success (NOT_DELIVRD): positive states are never guessed.
        if state in _QUALIFIABLE and prefix.rsplit("_", 1)[-1] not in ("NOT", "NON", "UN"):
            return state
    return None


# ---------------------------------------------------------------------------------------
# Receipts from PDUs


class Receipt(msgspec.Struct, frozen=True, gc=False):
    """What one receipt PDU says, TLVs and text combined.

    - `message_id`: the `receipted_message_id` TLV when present and non-empty, else the text
      `id:` (None when neither). Match it with `receipt_id_key` in the channel's receipt format.
    - `receipted_message_id`: the TLV as sent (stripped), kept because it may be in another
      form than the text id (hex TLV, decimal text) or even disagree with it.
    - `state`: the `message_state` TLV when it holds a valid state, else from `stat:`.
    - `error_code`: the raw `err:` value (`'000'`, `'21b'`: decimal or hex depending on the
      SMSC, so left as written).
    - `network_error`: the `network_error_code` TLV as (network type, error code): octet 1 is
      the type (1 ANSI-136, 2 IS-95, 3 GSM, ...), octets 2-3 the big-endian code.
    - `submit_date` / `done_date`: parsed from the text (naive, SMSC clock).
    - `text`: the excerpt decoded for people (`decode_receipt_excerpt`); `text_fields.text`
      keeps the raw octets as Latin-1.
    - `intermediate`: esm_class says intermediate delivery notification (not final).
    """

    message_id: str | None = None
    state: MessageState | None = None
    error_code: str | None = None
    network_error: tuple[int, int] | None = None
    done_date: datetime | None = None
    submit_date: datetime | None = None
    text_fields: ReceiptText | None = None
    receipted_message_id: str | None = None
    text: str | None = None
    intermediate: bool = False

    @property
    def is_final(self) -> bool:
        """True when the receipt reports a final state (SMPP 3.4 5.2.28) and is not intermediate."""
        return not self.intermediate and self.state in FINAL_STATES


def _esm_receipt_type(esm_class: Any) -> int:
    try:
        return int(esm_class) & ESM_CLASS_RECEIPT_MASK
    except (TypeError, ValueError):
        return 0


def _clean_str(value: Any) -> str | None:
    if type(value) is str:
        return value.strip(_BLANK_NUL) or None
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).decode("latin-1")
    if not isinstance(value, str):
        return None
    value = value.strip(_BLANK_NUL)
    return value or None


_TAG_RECEIPTED_MESSAGE_ID = int(Tag.RECEIPTED_MESSAGE_ID)
_TAG_MESSAGE_STATE = int(Tag.MESSAGE_STATE)
_TAG_NETWORK_ERROR_CODE = int(Tag.NETWORK_ERROR_CODE)
_TAG_MESSAGE_PAYLOAD = int(Tag.MESSAGE_PAYLOAD)
_RECEIPT_TLVS = frozenset(
    {_TAG_RECEIPTED_MESSAGE_ID, _TAG_MESSAGE_STATE, _TAG_NETWORK_ERROR_CODE, _TAG_MESSAGE_PAYLOAD}
)


def _tlv(pdu: Any, tag: Tag) -> Any:
    getter = getattr(pdu, "tlv", None)
    return getter(tag) if getter is not None else None


def is_receipt(pdu: Any) -> bool:
    """True when a deliver_sm/data_sm is a delivery receipt rather than an MO message.

    esm_class message type SMSC delivery receipt (0x04) or intermediate delivery notification
    (0x20), or a `receipted_message_id` TLV (which only receipts carry).
    """
    kind = _esm_receipt_type(getattr(pdu, "esm_class", 0))
    if kind in (ESM_CLASS_SMSC_RECEIPT, ESM_CLASS_INTERMEDIATE_NOTIFICATION):
        return True
    return _clean_str(_tlv(pdu, Tag.RECEIPTED_MESSAGE_ID)) is not None


_STATE_BY_VALUE: dict[int, MessageState] = {int(s): s for s in MessageState}


def _message_state(value: Any) -> MessageState | None:
    if type(value) is int:
        return _STATE_BY_VALUE.get(value)  # MessageState(value) without the enum call
    if isinstance(value, (bytes, bytearray)) and len(value) == 1:
        value = value[0]
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return MessageState(value)
        except ValueError:
            return None
    return None


def _network_error(value: Any) -> tuple[int, int] | None:
    if isinstance(value, (bytes, bytearray, memoryview)):
        b = bytes(value)
        if len(b) == 3:
            return b[0], int.from_bytes(b[1:3], "big")
    return None


def _text_of(raw: bytes) -> tuple[ReceiptText | None, bool]:
    """(fields, already_decoded) of a receipt body; handles an all-UTF-16BE body."""
    fields = parse_receipt_text(raw)
    if fields is not None:
        return fields, False
    if len(raw) >= 4 and raw[0] == 0 and raw[2] == 0:
        b = raw if len(raw) % 2 == 0 else raw + b"\x00"
        fields = parse_receipt_text(b.decode("utf-16-be", errors="replace"))
        if fields is not None:
            return fields, True
    return None, False


def receipt_from_pdu(pdu: Any, *, lenient: bool = False, details: bool = True) -> Receipt | None:
    """The receipt carried by a deliver_sm / data_sm, or None if it is not a receipt.

    A PDU is a receipt when `is_receipt(pdu)`. With `lenient=True`, a PDU without those
    marks whose text parses as a receipt (has `id:` or `stat:`) is accepted as well, for
    SMSCs that send receipts with esm_class 0. The text comes from `short_message`, or from
    the `message_payload` TLV when short_message is empty. TLVs win over the text for the
    message id and the state. A receipt PDU whose text and TLVs say nothing still gives a
    Receipt (with None fields), so the caller can log it. Never raises on odd values.

    `details=False` leaves `submit_date`, `done_date` and `text` None (not parsed): for a
    caller that needs the id, the state and the error only (the gateway's receipt path,
    where parsing the two dates and the excerpt was a third of the cost).
    """
    # Every receipt of the gateway comes through here, so this is `is_receipt`, `_text_of`
    # and the field reads inlined, each PDU attribute and TLV read once, with the canonical
    # text taken by one regex match right here; any other text goes through `_text_of`.
    esm = getattr(pdu, "esm_class", 0)
    kind = esm & ESM_CLASS_RECEIPT_MASK if type(esm) is int else _esm_receipt_type(esm)
    tlvs = getattr(pdu, "tlvs", None)
    tlv_id = state_value = nec = payload = None
    if type(tlvs) is list:
        # A codec PDU: its four TLVs of interest in one pass (the first of each tag, as
        # Pdu.tlv gives), not a scan per tag.
        found: dict[int, Any] = {}
        for t in tlvs:
            if t.tag in _RECEIPT_TLVS and t.tag not in found:
                found[t.tag] = t.value
        if found:
            tlv_id = found.get(_TAG_RECEIPTED_MESSAGE_ID)
            state_value = found.get(_TAG_MESSAGE_STATE)
            nec = found.get(_TAG_NETWORK_ERROR_CODE)
            payload = found.get(_TAG_MESSAGE_PAYLOAD)
        getter = None
    else:
        getter = getattr(pdu, "tlv", None)
        if getter is not None:
            tlv_id = getter(_TAG_RECEIPTED_MESSAGE_ID)
    if tlv_id is not None:
        tlv_id = _clean_str(tlv_id)
    flagged = kind == ESM_CLASS_SMSC_RECEIPT or kind == ESM_CLASS_INTERMEDIATE_NOTIFICATION
    if tlv_id is not None:
        flagged = True

    raw = getattr(pdu, "short_message", None) or b""
    if not raw:
        if getter is not None:
            payload = getter(_TAG_MESSAGE_PAYLOAD)
        if isinstance(payload, (bytes, bytearray, memoryview)):
            raw = bytes(payload)
        elif isinstance(payload, str):
            raw = payload.encode("latin-1", errors="replace")
    if type(raw) is bytes:
        s = raw.decode("latin-1")
        m = _canonical_match(s.rstrip("\x00") if s[-1:] == "\x00" else s)
    else:
        m = None
    if m is not None:  # parse_receipt_text would take its fast path: the same fields
        fields: ReceiptText | None = ReceiptText(*m.groups())
        decoded = False
    else:
        if isinstance(raw, str):
            raw = raw.encode("latin-1", errors="replace")
        fields, decoded = _text_of(bytes(raw))
    if not flagged and not (lenient and fields is not None):
        return None

    state = None
    if getter is not None:
        state_value = getter(_TAG_MESSAGE_STATE)
        nec = getter(_TAG_NETWORK_ERROR_CODE)
    if state_value is not None:
        state = _message_state(state_value)
    network_error = _network_error(nec) if nec is not None else None
    if fields is None:
        return Receipt(
            tlv_id, state, None, network_error, None, None, None, tlv_id, None,
            kind == ESM_CLASS_INTERMEDIATE_NOTIFICATION,
        )
    if state is None:
        state = stat_to_state(fields.stat)
    if not details:
        return Receipt(
            tlv_id or _clean_str(fields.id), state, fields.err, network_error, None, None,
            fields, tlv_id, None, kind == ESM_CLASS_INTERMEDIATE_NOTIFICATION,
        )
    text = fields.text
    if text is not None and not decoded:
        text = decode_receipt_excerpt(text)
    return Receipt(
        tlv_id or _clean_str(fields.id),
        state,
        fields.err,
        network_error,
        parse_receipt_date(fields.done_date),
        parse_receipt_date(fields.submit_date),
        fields,
        tlv_id,
        text,
        kind == ESM_CLASS_INTERMEDIATE_NOTIFICATION,
    )


# The canonical text with only what receipt_outcome needs captured (id, stat, err): the
# same language as _CANONICAL (the other fields are matched, not kept), 0.15 us cheaper.
# Everything up to the excerpt: the excerpt (`.*`, DOTALL) is anything.
_OUTCOME_HEAD = (
    r"id:(\S+) sub:\S+ dlvrd:\S+ submit date:\d+ done date:\d+ stat:(\S+)"
    r" err:(\S+) [Tt]ext:"
)
_CANONICAL_OUTCOME = re.compile(_OUTCOME_HEAD + ".*", re.DOTALL | re.ASCII)
_outcome_match = _CANONICAL_OUTCOME.fullmatch

_UNSEEN: Any = object()
ReceiptOutcome = tuple[str | None, MessageState | None, str | None, bool, str]


def receipt_outcome(pdu: Any) -> ReceiptOutcome | None:
    """What a gateway applies and stores of a receipt: (message_id, state, error_code,
    intermediate, text), or None when `pdu` is not a receipt. The first four are those of
    `receipt_from_pdu(pdu, details=False)`, `text` is `receipt_text_of(pdu)`.

    The usual receipt (a codec PDU, the canonical text in short_message) is read here with
    no Receipt built: one pass over its TLVs for the two that matter, one match capturing
    three fields (~1 us less per receipt than receipt_from_pdu). Anything else is
    receipt_from_pdu's; tests check the two readings agree."""
    tlvs = getattr(pdu, "tlvs", None)
    sm = getattr(pdu, "short_message", None)
    esm = getattr(pdu, "esm_class", None)
    if type(tlvs) is list and type(sm) is bytes and sm and type(esm) is int:
        s = sm.decode("latin-1")
        if s[-1] == "\x00":
            s = s.rstrip("\x00")
        m = _outcome_match(s)
        if m is not None:
            tlv_id = state_value = _UNSEEN
            for t in tlvs:  # the first of each tag, as Pdu.tlv gives
                tag = t.tag
                if tag == _TAG_RECEIPTED_MESSAGE_ID:
                    if tlv_id is _UNSEEN:
                        tlv_id = t.value
                elif tag == _TAG_MESSAGE_STATE:
                    if state_value is _UNSEEN:
                        state_value = t.value
            if tlv_id is _UNSEEN or tlv_id is None:
                tlv_id = None
            elif type(tlv_id) is str:  # the codec's reading: _clean_str's first case
                tlv_id = tlv_id.strip(_BLANK_NUL) or None
            else:
                tlv_id = _clean_str(tlv_id)
            kind = esm & ESM_CLASS_RECEIPT_MASK
            if (
                tlv_id is None
                and kind != ESM_CLASS_SMSC_RECEIPT
                and kind != ESM_CLASS_INTERMEDIATE_NOTIFICATION
            ):
                return None  # not flagged as a receipt (receipt_from_pdu is not lenient here)
            text_id, stat, err = m.groups()
            state = None
            if type(state_value) is int:  # the codec's reading: _message_state's first case
                state = _STATE_BY_VALUE.get(state_value)
            elif state_value is not _UNSEEN and state_value is not None:
                state = _message_state(state_value)
            if state is None:
                state = stat_to_state(stat)
            return (
                tlv_id or _clean_str(text_id), state, err,
                kind == ESM_CLASS_INTERMEDIATE_NOTIFICATION, s,
            )
    receipt = receipt_from_pdu(pdu, details=False)
    if receipt is None:
        return None
    return (
        receipt.message_id, receipt.state, receipt.error_code, receipt.intermediate,
        receipt_text_of(pdu),
    )


# (sequence_number, message_id, state, error_code, intermediate, text): a deliver_sm
# receipt as `read_receipt_outcome` reads it, its sequence number and its ReceiptOutcome.
ReadOutcome = tuple[int, str | None, MessageState | None, str | None, bool, str]

# A deliver_sm body as pdu.read_receipt takes it (RECEIPT_HEAD_PATTERN, up to sm_length)
# whose short_message starts as the canonical text does, up to its excerpt: one match for
# both. In a bytes pattern \S and \d are the ASCII sets _CANONICAL_OUTCOME's are (re.ASCII),
# and Latin-1 maps each octet to the code point of its value, so the match and its groups
# are those of the text decoded.
_receipt_outcome_match = re.compile(
    P.RECEIPT_HEAD_PATTERN + _OUTCOME_HEAD.encode("ascii"), re.DOTALL
).match
# The usual TLVs' fixed octets, compared as slices (one compare costs less than an index
# per octet, or bytes.startswith's argument parsing): receipted_message_id's tag and its
# length's high octet (under 256 octets); its NUL and message_state's header.
_ID_HEAD = _TAG_RECEIPTED_MESSAGE_ID.to_bytes(2, "big") + b"\0"
_ID_END_STATE_HEAD = b"\0" + P.MESSAGE_STATE_HEAD
_INTERMEDIATE = ESM_CLASS_INTERMEDIATE_NOTIFICATION


def read_receipt_outcome(b: bytes, p: int, end: int, seq: int) -> ReadOutcome | None:
    """The deliver_sm body b[p:end] read straight to its outcome: (seq, *receipt_outcome of
    the strictly decoded PDU), if `pdu.read_receipt` reads it (a plain delivery receipt);
    else None, and the caller decodes it. What `Session` hands an ESME per receipt, with no
    Pdu, short_message or intermediate tuple built.

    The usual receipt (the bundled simulator's, most SMSCs'): the mandatory fields as
    `read_receipt` takes them and the canonical text, by one match; then
    receipted_message_id of under 256 octets, its NUL last, then message_state ending the
    body, read by position. Anything else declines to the general reading, `read_receipt`
    and `receipt_outcome_read`. Tests compare the two with `receipt_outcome` of the strictly
    decoded PDU. Reads nothing past `end` (b may be the session's whole read)."""
    m = _receipt_outcome_match(b, p, end)
    if m is not None:
        t = m.start(1) - 3  # short_message's first octet: its "id:"
        q = t + b[t - 1]  # the end of short_message (sm_length)
        r = end - 6  # the usual receipted_message_id's NUL
        if (
            # The text's head lies within short_message (the match may have run on into
            # the TLVs: declined). It ends with "text:", so trailing NULs are after it, and
            # the fullmatch of the text without them (receipt_outcome) would match the same.
            m.end() <= q
            and r > q + 3  # the id holds one octet at least: the indexes below are in the body
            and b[q : q + 3] == _ID_HEAD  # its tag, its length's high octet
            and b[q + 3] == r - q - 3  # its length's low octet
            and b[r : end - 1] == _ID_END_STATE_HEAD
        ):
            s = b[t:q].decode("latin-1")
            if s[-1] == "\x00":
                s = s.rstrip("\x00")
            # esm_class is a receipt's or an intermediate notification's (the head's
            # pattern): flagged, a receipt whatever its TLVs say. The text's id and stat
            # only when the TLVs leave them needed: a group taken is an object built.
            tlv_id = b[q + 4 : r].decode("latin-1").strip(_BLANK_NUL)
            state = _STATE_BY_VALUE.get(b[end - 1])
            if state is None:
                state = stat_to_state(m.group(2).decode("latin-1"))
            return (
                seq, tlv_id or _clean_str(m.group(1)), state, m.group(3).decode("latin-1"),
                b[t - 10] & ESM_CLASS_RECEIPT_MASK == _INTERMEDIATE, s,
            )
    read = P.read_receipt(b, p, end, seq)
    if read is None:
        return None
    return (seq, *receipt_outcome_read(read))  # type: ignore[misc]


def receipt_outcome_read(read: tuple) -> ReceiptOutcome:
    """`receipt_outcome` of a deliver_sm read as a `pdu.ReceiptRead` (sequence_number,
    esm_class, short_message, receipted_message_id, message_state): the reading of the
    DeliverSm those fields make (what `read_receipt` leaves out, a network_error_code, does
    not change the outcome). Never None: read_receipt reads flagged receipts only."""
    return receipt_outcome(receipt_read_pdu(read))  # type: ignore[return-value]


def receipt_read_pdu(read: tuple) -> Any:
    """The DeliverSm of a `pdu.ReceiptRead`: its fields, the TLVs it read (for the general
    reading, and for logs)."""
    seq, esm, sm, tlv_id, state_value = read
    tlvs = []
    if tlv_id is not None:
        tlvs.append(P.Tlv(_TAG_RECEIPTED_MESSAGE_ID, tlv_id))
    if state_value is not None:
        tlvs.append(P.Tlv(_TAG_MESSAGE_STATE, state_value))
    return P.DeliverSm(sequence_number=seq, esm_class=esm, short_message=sm, tlvs=tlvs)


def receipt_text_of(pdu: Any) -> str:
    """A receipt PDU's text as received, to be stored: short_message, else the
    message_payload TLV, read as Latin-1, without trailing NULs."""
    sm = getattr(pdu, "short_message", None) or pdu.tlv(Tag.MESSAGE_PAYLOAD) or b""
    if isinstance(sm, str):
        return sm.rstrip("\x00")
    return bytes(sm).rstrip(b"\0").decode("latin-1")


# ---------------------------------------------------------------------------------------
# Message ids

IdFormat = Literal["hex", "decimal", "auto", "string"]
ID_FORMATS: tuple[str, ...] = ("hex", "decimal", "auto", "string")

MAX_NUMERIC_ID_LENGTH = 64
_DEC_RE = re.compile(r"[0-9]+")
_HEX_RE = re.compile(r"(?:0[xX])?([0-9a-fA-F]+)")
_HEX_LETTER_RE = re.compile(r"[a-fA-F]")
_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


def _clean_id(raw: str) -> str:
    return raw.strip(_BLANK_NUL)


def _classify(s: str, fmt: str) -> tuple[str, int | None]:
    """('decimal'|'hex', value) for a numeric reading, else ('uuid'|'opaque', None)."""
    if fmt not in ID_FORMATS:
        raise ValueError(f"message id format must be one of {ID_FORMATS}, not {fmt!r}")
    if fmt == "string" or not s or len(s) > MAX_NUMERIC_ID_LENGTH + 2:
        return "opaque", None
    if fmt in ("decimal", "auto") and _DEC_RE.fullmatch(s) and len(s) <= MAX_NUMERIC_ID_LENGTH:
        return "decimal", int(s, 10)
    if fmt in ("hex", "auto"):
        m = _HEX_RE.fullmatch(s)
        if m is not None and len(m.group(1)) <= MAX_NUMERIC_ID_LENGTH:
            if fmt == "hex" or s[:2] in ("0x", "0X") or _HEX_LETTER_RE.search(s):
                return "hex", int(m.group(1), 16)
    if fmt == "auto" and _UUID_RE.fullmatch(s):
        return "uuid", None
    return "opaque", None


def normalise_message_id(raw: str, fmt: IdFormat = "auto") -> str:
    """The id in its own form, normalised: what to log and show next to the SMSC's spelling.

    - decimal reading: digits without leading zeros (`0059113978` -> `59113978`, `000` -> `0`);
    - hex reading: lowercase hex digits without `0x` and leading zeros (`0x038601FA` ->
      `38601fa`);
    - "auto" UUID: lowercased; anything opaque: the id stripped of blanks and NULs (R1).
    The form is kept (hex stays hex): for matching across forms use `receipt_id_key`.
    Raises ValueError only for an unknown `fmt`; any string is accepted.
    """
    s = _clean_id(raw)
    kind, value = _classify(s, fmt)
    if kind == "decimal":
        return str(value)
    if kind == "hex":
        return format(value, "x")
    if kind == "uuid":
        return s.lower()
    return s


def receipt_id_key(raw: str, fmt: IdFormat = "auto") -> str:
    """The canonical key of a message id read in format `fmt` (see the module docstring).

    Numeric readings give the integer in decimal without leading zeros, so a hex receipt id
    and a decimal submit_sm_resp id of the same message get the same key
    (`receipt_id_key('38601fa', 'hex') == receipt_id_key('0059113978', 'decimal') ==
    '59113978'`). Opaque ids give themselves after R1 ("auto" lowercases UUIDs). An empty
    id gives `''`, which must never be looked up. Raises ValueError only for an unknown `fmt`.
    """
    s = raw.strip(_BLANK_NUL)
    # Fast paths for the usual ids, same keys as `_classify`: up to 64 ASCII letters and
    # digits. int() accepts nothing else there (no sign, blank or `_` can occur), `0x`
    # included, which _HEX_RE allows too; a letter beyond f makes it raise: opaque.
    if len(s) <= MAX_NUMERIC_ID_LENGTH and s.isascii():
        if fmt == "hex":
            if s.isalnum():
                try:
                    return str(int(s, 16))
                except ValueError:
                    return s
        elif fmt == "decimal" or fmt == "auto":
            if s.isdigit():
                return str(int(s, 10))
    kind, value = _classify(s, fmt)
    if value is not None:
        return str(value)
    if kind == "uuid":
        return s.lower()
    return s


def same_message_id(
    a: str, b: str, *, a_format: IdFormat = "auto", b_format: IdFormat = "auto"
) -> bool:
    """True when the two ids name the same message (rules R1-R6 of the module docstring).

    With the default formats the ids are read with "auto", which answers every corpus pair
    but is ambiguous for letterless hex ids (see the module docstring); pass the channel's
    formats when they are known.
    """
    ka = receipt_id_key(a, a_format)
    kb = receipt_id_key(b, b_format)
    return bool(ka) and ka == kb
