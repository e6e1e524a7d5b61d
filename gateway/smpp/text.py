"""Message text: GSM 03.38 / Latin-1 / UCS2 encoding, segmentation and decoding (sans-IO).

Everything here is a pure function of its arguments (``ReferenceCounter`` holds a bounded
in-memory table and nothing else); no I/O, no clock, no global state.

Alphabets
---------
* ``Encoding.GSM7`` (data_coding 0): the GSM 03.38 / 3GPP TS 23.038 default alphabet, basic
  table plus the extension table reached through the escape septet 0x1B (``\\f ^ { } \\ [ ~ ]
  | €``). Over SMPP the short_message carries *unpacked* septets: one septet per octet, high
  bit clear. That is what SMSCs expect for data_coding 0 (the SMSC packs for the air
  interface), so ``Encoding.GSM7.encode`` produces unpacked septets and the unit of length is
  the septet; an extension character costs two septets (escape + code). The table is exact:
  0x00 '@', 0x02 '$', 0x11 '_', 0x24 '¤', 0x40 '¡', 0x60 '¿', 0x5B 'Ä', ... There is no
  backtick in GSM 03.38 and no tab or other C0 control besides LF, CR and (extension) FF, so
  those are simply not encodable (no silent substitution: a billing gateway must never
  change the text it is paid to carry). No lookalike aliases are accepted either (U+2126 OHM
  SIGN is not GSM Ω U+03A9, 'ç' is not 'Ç'), so encode/decode round-trips exactly.
  ``pack_septets``/``unpack_septets`` (and the ``*_gsm7_packed`` helpers) implement the
  23.038 septet packing for channels that want packed 7-bit data, including the fill bits
  needed after a UDH (``gsm7_fill_bits``).
* ``Encoding.LATIN1`` (data_coding 3): ISO-8859-1, one octet per character.
* ``Encoding.UCS2`` (data_coding 8): UTF-16BE; a character outside the BMP (emoji, rare CJK)
  is a surrogate pair and costs two code units. The unit of length is the 16-bit code unit.
  Lone surrogates in the input are not valid text and are rejected.

Capacities (units per part; 140 octets of user data)
----------------------------------------------------
============  ======  =================  ==================  ===========  ===============
encoding      single  udh8 (6-octet UDH)  udh16 (7-octet UDH)  sar (no UDH)  payload
============  ======  =================  ==================  ===========  ===============
GSM7 septets  160     153                152                 160          65535 (one PDU)
Latin-1 oct.  140     134                133                 140          65535
UCS2 units    70      67                 66                  70           32767
============  ======  =================  ==================  ===========  ===============

The GSM7 numbers are what fits *after the SMSC packs the septets*: (140 - UDH) * 8 // 7,
e.g. 134 octets = 1072 bits = 153 septets + 1 fill bit. On the SMPP wire the unpacked
short_message of a GSM7 part is therefore up to 160 octets (single) or UDH + 153 octets.
"sar" concatenation carries the reference/total/seqnum in TLVs, so each part keeps the full
single-part capacity. "payload" puts the whole text in one ``message_payload`` TLV (whose
length field is 16 bits: at most 65535 octets) and always counts as one segment.

Splitting
---------
A text whose length in units is at most the single-part capacity is sent as one segment
without UDH/SAR. Otherwise segments are filled greedily, each with as many units as the
per-segment capacity allows, except that a two-unit item (GSM escape + code, UCS2 surrogate
pair) is never cut: if the capacity boundary falls inside one, the boundary moves one unit
earlier and the item starts the next segment. Greedy filling is optimal here (items are 1 or
2 units) so the number of segments is the minimum possible. The walk looks at one octet per
boundary of the encoded text: in unpacked GSM7 an 0x1B octet only ever starts an escape pair,
in UTF-16BE a high surrogate starts a pair. ``segment_count`` builds no segments: it encodes
the text (in C: ``bytes.translate`` / codec calls, well under a microsecond per 100
characters) and returns ``ceil(units / cap)`` when there are no two-unit items, else the
boundary walk (at most 255 steps). The test suite checks ``segment_count == len(split)`` as a
property. At most 255 segments (the UDH and SAR "total" fields are one octet); more raises
``TextTooLong``; text too long for any encoding is rejected before it is encoded.

UDH concatenation headers: ``05 00 03 ref total seq`` (8-bit reference) and
``06 08 04 refhi reflo total seq`` (16-bit reference); segments with a UDH have
``esm_class_bits == ESM_CLASS_UDHI``. References are masked to the field width (8 bits for
udh8, 16 bits for udh16 and for the SAR ``sar_msg_ref_num``). ``ReferenceCounter`` hands out
one reference per message and destination.

Choosing an encoding
--------------------
``choose_encoding`` picks the encoding with the fewest segments; ties go to GSM7, then
UCS2 (Latin-1 is used only when allowed *and* strictly cheaper than the alternatives, since
many handsets render data_coding 3 badly). For text without extension characters GSM7 always
wins when it can carry the text; Latin-1 can beat it only for text full of ``{}[]^~|\\``.
Any character outside GSM and Latin-1 (e.g. a ``【Acme】`` signature) forces UCS2.

Decoding received messages
--------------------------
``decode_short_message`` never raises: undecodable input becomes U+FFFD. A UDH is split off
when UDHI is set and the header length octet fits in the data; if it does not (truncated
UDH), the data is treated as having no UDH and decoded whole, so nothing is lost.
"""

from __future__ import annotations

import codecs
import enum
import re
from collections import OrderedDict
from collections.abc import Mapping
from random import Random
from types import MappingProxyType
from typing import Final, Literal, NoReturn, TypeAlias

import msgspec

from gateway.smpp.constants import (
    DATA_CODING_DEFAULT,
    DATA_CODING_LATIN1,
    DATA_CODING_UCS2,
    ESM_CLASS_UDHI,
    CommandStatus,
)
from gateway.smpp.errors import SmppError

__all__ = [
    "GSM7_BASIC",
    "GSM7_ESCAPE",
    "GSM7_EXTENSION",
    "MAX_PAYLOAD_OCTETS",
    "MAX_SEGMENTS",
    "Concat",
    "Encoding",
    "ReferenceCounter",
    "Segment",
    "TextError",
    "TextTooLong",
    "UndecodableText",
    "UnencodableText",
    "choose_encoding",
    "concat_info",
    "decode_gsm7",
    "decode_gsm7_packed",
    "decode_short_message",
    "encode_gsm7",
    "encode_gsm7_packed",
    "gsm7_fill_bits",
    "is_gsm7",
    "pack_septets",
    "parse_udh",
    "segment_count",
    "split",
    "unpack_septets",
]

Concat: TypeAlias = Literal["udh8", "udh16", "sar", "payload"]

MAX_SEGMENTS: Final = 255
MAX_PAYLOAD_OCTETS: Final = 0xFFFF  # message_payload TLV length is a 16-bit field
GSM7_ESCAPE: Final = 0x1B

_CONCAT_MODES: Final = frozenset({"udh8", "udh16", "sar", "payload"})


# --------------------------------------------------------------------------------------------
# Errors


class TextError(SmppError):
    """Base of the text errors. ``command_status`` is what to answer an ESME with."""

    code = "text_error"
    command_status: int = CommandStatus.ESME_RSUBMITFAIL


class UnencodableText(TextError, ValueError):
    """The text contains a character the requested encoding cannot carry."""

    code = "unencodable_text"

    def __init__(self, encoding: Encoding, position: int, char: str) -> None:
        super().__init__(
            f"character {char!r} (U+{ord(char):04X}) at index {position} "
            f"cannot be encoded in {encoding.name}"
        )
        self.encoding = encoding
        self.position = position
        self.char = char


class UndecodableText(TextError, ValueError):
    """Strict decoding met bytes that are not valid in the alphabet."""

    code = "undecodable_text"

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.position = position


class TextTooLong(TextError):
    """More than 255 segments, or more than a message_payload TLV can hold.

    ``segments`` is a lower bound on the segments the text would need (None for payload).
    """

    code = "text_too_long"
    command_status = CommandStatus.ESME_RINVMSGLEN

    def __init__(self, message: str, *, segments: int | None = None) -> None:
        super().__init__(message)
        self.segments = segments


# --------------------------------------------------------------------------------------------
# GSM 03.38 tables

# Basic character set, index = septet value. 0x1B is the escape to the extension table (not a
# character; the placeholder here is never used as one).
_GSM_BASIC_TABLE: Final = (
    "@£$¥èéùìòÇ\nØø\rÅå"  # 0x00
    "\u0394_\u03a6\u0393\u039b\u03a9\u03a0\u03a8\u03a3\u0398\u039e\x1bÆæßÉ"  # 0x10 ΔΦΓΛΩΠΨΣΘΞ
    " !\"#¤%&'()*+,-./"  # 0x20
    "0123456789:;<=>?"  # 0x30
    "¡ABCDEFGHIJKLMNO"  # 0x40
    "PQRSTUVWXYZÄÖÑÜ§"  # 0x50
    "¿abcdefghijklmno"  # 0x60
    "pqrstuvwxyzäöñüà"  # 0x70
)
assert len(_GSM_BASIC_TABLE) == 128

# Extension table: septet following the escape -> character.
_GSM_EXT_TABLE: Final = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}

GSM7_BASIC: Final[Mapping[str, int]] = MappingProxyType(
    {ch: code for code, ch in enumerate(_GSM_BASIC_TABLE) if code != GSM7_ESCAPE}
)
"""Character -> septet of the GSM 03.38 basic character set (escape excluded)."""

GSM7_EXTENSION: Final[Mapping[str, int]] = MappingProxyType(
    {ch: code for code, ch in _GSM_EXT_TABLE.items()}
)
"""Character -> septet following the 0x1B escape (GSM 03.38 extension table)."""

# Encoding runs in C: text -> "slot" octets -> unpacked septets. In slot form a basic
# character is its septet (0x00-0x7F, never 0x1B), an extension character is 0x80 | code and
# anything else is 0xFF; the few slot octets present are then expanded to 0x1B + code.
# Text within Latin-1 (ASCII, Western European) goes through bytes.translate; other text
# (Greek capitals, €, or not GSM at all) through a charmap EncodingMap. An EncodingMap needs
# U+0000 at index 0, so '@' sits at 0x9B there and _GSM_FROM_CHARMAP moves it back.
_GSM_FROM_LATIN1: Final = bytes(
    GSM7_BASIC.get(chr(cp), 0x80 | GSM7_EXTENSION.get(chr(cp), 0x7F)) for cp in range(256)
)
_charmap_table = ["\ufffe"] * 256
_charmap_table[0] = "\x00"
for _code, _ch in enumerate(_GSM_BASIC_TABLE):
    if _code not in (0x00, GSM7_ESCAPE):
        _charmap_table[_code] = _ch
_charmap_table[0x80 | GSM7_ESCAPE] = "@"
for _code, _ch in _GSM_EXT_TABLE.items():
    _charmap_table[0x80 | _code] = _ch
_GSM_ENCODING_MAP: Final = codecs.charmap_build("".join(_charmap_table))
_GSM_FROM_CHARMAP: Final = bytes(
    0x00 if i == 0x80 | GSM7_ESCAPE else 0xFF if i in (0x00, GSM7_ESCAPE) else i for i in range(256)
)
_GSM_EXT_SLOTS: Final = tuple(
    (bytes((0x80 | code,)), bytes((GSM7_ESCAPE, code))) for code in _GSM_EXT_TABLE
)
del _charmap_table, _code, _ch

# charmap table for decoding escape-free septets; "\ufffe" marks undefined octets.
_GSM_DECODE_TABLE: Final = _GSM_BASIC_TABLE + "\ufffe" * 128


def _char_class(chars: str) -> str:
    return "".join(re.escape(ch) for ch in sorted(chars))


_GSM_EXT_CHARS: Final = "".join(GSM7_EXTENSION)
_GSM_ALL_CHARS: Final = "".join(GSM7_BASIC) + _GSM_EXT_CHARS
_NON_GSM_RE: Final = re.compile(f"[^{_char_class(_GSM_ALL_CHARS)}]")
_ESC_PAIR_RE: Final = re.compile("\x1b.?", re.DOTALL)

# Decoded escape pair -> character. 0x1B + code not in the extension table -> the basic
# character for code (23.038 receiver rule); 0x1B 0x1B -> space (23.038: "display a space");
# 0x1B + invalid octet -> U+FFFD (already substituted); a lone 0x1B at the end -> U+FFFD.
_GSM_ESCAPE_DECODE: Final[dict[str, str]] = {
    "\x1b" + ch: _GSM_EXT_TABLE.get(code, ch) for code, ch in enumerate(_GSM_BASIC_TABLE)
}
_GSM_ESCAPE_DECODE["\x1b\x1b"] = " "
_GSM_ESCAPE_DECODE["\x1b\ufffd"] = "\ufffd"


def is_gsm7(text: str) -> bool:
    """True when every character is in the GSM 03.38 basic or extension table."""
    return _try_gsm7(text) is not None


def _try_gsm7(text: str) -> bytes | None:
    """Unpacked septets, or None when ``text`` is not GSM 03.38."""
    try:
        data = text.encode("latin-1").translate(_GSM_FROM_LATIN1)
    except UnicodeEncodeError:
        try:
            data = codecs.charmap_encode(text, "strict", _GSM_ENCODING_MAP)[0]
        except UnicodeEncodeError:
            return None
        data = data.translate(_GSM_FROM_CHARMAP)
    if data.isascii():
        return data
    for slot, pair in _GSM_EXT_SLOTS:
        if slot in data:
            data = data.replace(slot, pair)
    return data if data.isascii() else None


def encode_gsm7(text: str) -> bytes:
    """Text -> unpacked septets (one per octet); extension characters become 0x1B + code.

    Raises ``UnencodableText`` for any character outside GSM 03.38.
    """
    data = _try_gsm7(text)
    if data is None:
        _raise_unencodable(Encoding.GSM7, text)
    return data


def decode_gsm7(data: bytes, errors: Literal["strict", "replace"] = "strict") -> str:
    """Unpacked septets -> text.

    Octets >= 0x80 are invalid (``UndecodableText`` when strict, U+FFFD when "replace").
    0x1B followed by a code not in the extension table decodes as the basic character for
    that code (23.038 rule for receivers); 0x1B 0x1B decodes as a space (23.038: reserved,
    "display a space"). A trailing lone 0x1B is invalid (strict) or U+FFFD (replace).
    """
    try:
        text = codecs.charmap_decode(data, errors, _GSM_DECODE_TABLE)[0]
    except UnicodeDecodeError as exc:
        raise UndecodableText(f"octet 0x{data[exc.start]:02x} is not a septet", exc.start) from None
    if "\x1b" not in text:
        return text
    if errors == "strict" and (len(text) - len(text.rstrip("\x1b"))) % 2:  # odd run at end
        raise UndecodableText("lone GSM escape at end of data", len(text) - 1)
    # Octets and characters are 1:1 here, so escape pairs are resolved on the text.
    return _ESC_PAIR_RE.sub(_escape_pair, text)


def _escape_pair(m: re.Match[str]) -> str:
    return _GSM_ESCAPE_DECODE.get(m.group(), "\ufffd")


def _raise_unencodable(encoding: Encoding, text: str) -> NoReturn:
    if encoding is Encoding.GSM7:
        m = _NON_GSM_RE.search(text)
        pos = m.start() if m else 0
    else:
        try:
            text.encode("latin-1" if encoding is Encoding.LATIN1 else "utf-16-be")
            pos = 0
        except UnicodeEncodeError as exc:
            pos = exc.start
    raise UnencodableText(encoding, pos, text[pos])


# --------------------------------------------------------------------------------------------
# Septet packing (GSM 03.38 section 6.1.2.1.1)


def gsm7_fill_bits(udh_octets: int) -> int:
    """Fill bits between a UDH of ``udh_octets`` octets (UDHL included) and the first septet.

    6-octet concat UDH -> 1 fill bit, 7-octet -> 0.
    """
    return -(udh_octets * 8) % 7


def pack_septets(septets: bytes, fill_bits: int = 0) -> bytes:
    """Pack 7-bit values (one per octet) LSB first, after ``fill_bits`` zero bits (0..6).

    The result has ``ceil((7 * len(septets) + fill_bits) / 8)`` octets, spare bits zero.
    """
    if not 0 <= fill_bits <= 6:
        raise ValueError("fill_bits must be in 0..6")
    n = len(septets)
    if n and max(septets) > 0x7F:
        raise ValueError("septet values must be < 0x80")
    out = bytearray()
    padded = septets + bytes(-n % 8)
    for i in range(0, len(padded), 8):
        s0, s1, s2, s3, s4, s5, s6, s7 = padded[i : i + 8]
        v = s0 | s1 << 7 | s2 << 14 | s3 << 21 | s4 << 28 | s5 << 35 | s6 << 42 | s7 << 49
        out += v.to_bytes(7, "little")
    total_bits = 7 * n + fill_bits
    length = (total_bits + 7) // 8
    if fill_bits:
        v = int.from_bytes(out, "little") << fill_bits
        return v.to_bytes(len(out) + 1, "little")[:length]
    return bytes(out[:length])


def unpack_septets(data: bytes, count: int | None = None, fill_bits: int = 0) -> bytes:
    """Inverse of ``pack_septets``: packed octets -> septets, one per octet.

    ``count`` is the number of septets (the SMS UDL minus the UDH septets). Without it every
    whole septet in the data is returned, which includes a spurious trailing '@' (0x00) when
    7 spare bits ended the data (a 7-septet message is 7 octets = 8 septet slots): pass
    ``count`` whenever it is known. A ``count`` larger than the data holds is capped; any
    data is accepted.
    """
    if not 0 <= fill_bits <= 6:
        raise ValueError("fill_bits must be in 0..6")
    available = max(0, (len(data) * 8 - fill_bits) // 7)
    if count is None or count > available:
        count = available
    if count <= 0:
        return b""
    if fill_bits:
        v = int.from_bytes(data, "little") >> fill_bits
        data = v.to_bytes(len(data), "little")
    out = bytearray()
    padded = data + bytes(-len(data) % 7)
    for i in range(0, len(padded), 7):
        v = int.from_bytes(padded[i : i + 7], "little")
        out += bytes(
            (
                v & 0x7F,
                v >> 7 & 0x7F,
                v >> 14 & 0x7F,
                v >> 21 & 0x7F,
                v >> 28 & 0x7F,
                v >> 35 & 0x7F,
                v >> 42 & 0x7F,
                v >> 49 & 0x7F,
            )
        )
    return bytes(out[:count])


def encode_gsm7_packed(text: str, fill_bits: int = 0) -> bytes:
    """Text -> packed GSM 7-bit octets. The septet count is ``len(encode_gsm7(text))``."""
    return pack_septets(encode_gsm7(text), fill_bits)


def decode_gsm7_packed(
    data: bytes,
    count: int | None = None,
    fill_bits: int = 0,
    errors: Literal["strict", "replace"] = "strict",
) -> str:
    """Packed GSM 7-bit octets -> text (see ``unpack_septets`` for ``count``)."""
    return decode_gsm7(unpack_septets(data, count, fill_bits), errors)


# --------------------------------------------------------------------------------------------
# Encodings


class Encoding(enum.Enum):
    """An alphabet the gateway sends, with its SMPP data_coding and capacities in units.

    Units: GSM7 septets, Latin-1 octets, UCS2 16-bit code units. Use ``.data_coding`` (the
    member ``.value`` is the whole parameter tuple) and ``from_data_coding`` to look up.
    """

    #        data_coding          single udh8 udh16 octets/unit
    GSM7 = (DATA_CODING_DEFAULT, 160, 153, 152, 1)
    LATIN1 = (DATA_CODING_LATIN1, 140, 134, 133, 1)
    UCS2 = (DATA_CODING_UCS2, 70, 67, 66, 2)

    data_coding: int
    single_capacity: int
    segment_capacity: int
    segment_capacity_udh16: int
    octets_per_unit: int

    def __init__(self, data_coding: int, single: int, udh8: int, udh16: int, octets: int):
        self.data_coding = data_coding
        self.single_capacity = single
        self.segment_capacity = udh8  # the usual 8-bit-reference UDH
        self.segment_capacity_udh16 = udh16
        self.octets_per_unit = octets

    @classmethod
    def from_data_coding(cls, data_coding: int) -> Encoding:
        for enc in cls:
            if enc.data_coding == data_coding:
                return enc
        raise ValueError(f"no Encoding for data_coding {data_coding}")

    def capacity(self, concat: Concat = "udh8") -> int:
        """Units per segment of a multi-part message (whole message for "payload")."""
        if concat == "udh8":
            return self.segment_capacity
        if concat == "udh16":
            return self.segment_capacity_udh16
        if concat == "sar":
            return self.single_capacity
        if concat == "payload":
            return MAX_PAYLOAD_OCTETS // self.octets_per_unit
        raise ValueError(f"unknown concat mode {concat!r}")

    def can_encode(self, text: str) -> bool:
        return _try_encode(text, self) is not None

    def encode(self, text: str) -> bytes:
        """Text -> short_message octets (GSM7 unpacked). Raises ``UnencodableText``."""
        data = _try_encode(text, self)
        if data is None:
            _raise_unencodable(self, text)
        return data

    def decode(self, data: bytes, errors: Literal["strict", "replace"] = "strict") -> str:
        """Octets -> text. Strict UCS2 decoding rejects odd lengths and unpaired surrogates."""
        if self is Encoding.GSM7:
            return decode_gsm7(data, errors)
        if self is Encoding.LATIN1:
            return data.decode("latin-1")
        try:
            return data.decode("utf-16-be", errors)
        except UnicodeDecodeError as exc:
            raise UndecodableText(f"invalid UTF-16BE: {exc.reason}", exc.start) from None

    def units(self, text: str) -> int:
        """Length of ``text`` in this encoding's units. Raises ``UnencodableText``."""
        return len(self.encode(text)) // self.octets_per_unit


def _try_encode(text: str, encoding: Encoding) -> bytes | None:
    if encoding is Encoding.GSM7:
        return _try_gsm7(text)
    try:
        return text.encode("latin-1" if encoding is Encoding.LATIN1 else "utf-16-be")
    except UnicodeEncodeError:  # not Latin-1 / a lone surrogate
        return None


# --------------------------------------------------------------------------------------------
# Segmentation


class Segment(msgspec.Struct, frozen=True, gc=False):
    """One submit_sm worth of text (an immutable msgspec Struct: cheap to build, to compare
    and to serialise).

    ``short_message`` is already encoded and starts with the UDH when UDH concatenation is
    used (``esm_class_bits`` is then ESM_CLASS_UDHI, to be OR-ed into esm_class).
    ``sar`` is (sar_msg_ref_num, sar_total_segments, sar_segment_seqnum) for "sar" mode.
    With "payload" the encoded text is in ``message_payload`` and ``short_message`` is b"".
    ``units`` counts the text units of this segment (UDH excluded); ``text`` is its text.
    """

    short_message: bytes
    data_coding: int
    esm_class_bits: int
    sar: tuple[int, int, int] | None
    message_payload: bytes | None
    units: int
    text: str


def _too_long(segments: int, encoding: Encoding | None, concat: str) -> TextTooLong:
    where = "any encoding" if encoding is None else encoding.name
    return TextTooLong(
        f"text needs at least {segments} segments in {where} ({concat}); "
        f"the limit is {MAX_SEGMENTS}",
        segments=segments,
    )


def _payload_too_long(encoding: Encoding | None) -> TextTooLong:
    where = "any encoding" if encoding is None else encoding.name
    return TextTooLong(
        f"text exceeds the {MAX_PAYLOAD_OCTETS}-octet message_payload limit in {where}"
    )


def _check_length(text: str, concat: str) -> None:
    """Reject text too long for any encoding before spending time encoding it."""
    if concat == "payload":
        if len(text) > MAX_PAYLOAD_OCTETS:  # every character is at least one octet
            raise _payload_too_long(None)
    else:
        cap = Encoding.GSM7.capacity(concat)  # type: ignore[arg-type]  # the largest capacity
        if len(text) > MAX_SEGMENTS * cap:
            raise _too_long(-(-len(text) // cap), None, concat)


def _cuts(data: bytes, chars: int, encoding: Encoding, concat: str) -> list[int]:
    """Unit offsets where the segments of encoded ``data`` start, then the end offset.

    ``chars`` is the length of the text, so ``units == chars`` means no two-unit items.
    Raises ``TextTooLong``.
    """
    if concat == "payload":
        if len(data) > MAX_PAYLOAD_OCTETS:
            raise _payload_too_long(encoding)
        return [0, len(data) // encoding.octets_per_unit]
    total = len(data) // encoding.octets_per_unit
    if total <= encoding.single_capacity:
        return [0, total]
    cap = encoding.capacity(concat)  # type: ignore[arg-type]
    if total > MAX_SEGMENTS * cap:  # each segment holds at most cap units
        raise _too_long(-(-total // cap), encoding, concat)
    if total == chars or encoding is Encoding.LATIN1:
        cuts = list(range(0, total, cap))
    else:
        # Greedy walk on unit offsets; the unit before a candidate boundary tells whether
        # the boundary would cut a two-unit item: in unpacked GSM7, 0x1B only ever starts an
        # escape pair; in UTF-16BE, a high surrogate (first octet 0xD8-0xDB) starts a pair.
        gsm = encoding is Encoding.GSM7
        cuts = [0]
        b = 0
        while total - b > cap:
            b += cap
            if (data[b - 1] == GSM7_ESCAPE) if gsm else (0xD8 <= data[2 * b - 2] <= 0xDB):
                b -= 1
            cuts.append(b)
        if len(cuts) > MAX_SEGMENTS:
            raise _too_long(len(cuts), encoding, concat)
    cuts.append(total)
    return cuts


def _check_concat(concat: str) -> None:
    if concat not in _CONCAT_MODES:
        raise ValueError(f"unknown concat mode {concat!r}; expected one of {sorted(_CONCAT_MODES)}")


def _encode_for(
    text: str, encoding: Encoding | None, concat: str, allow_latin1: bool
) -> tuple[Encoding, bytes]:
    _check_concat(concat)
    _check_length(text, concat)
    if encoding is None:
        return _choose(text, allow_latin1, concat)
    return encoding, encoding.encode(text)


def choose_encoding(text: str, allow_latin1: bool = False, *, concat: Concat = "udh8") -> Encoding:
    """The encoding that carries ``text`` in the fewest segments.

    Ties prefer GSM7, then UCS2: Latin-1 is only chosen when ``allow_latin1`` and it needs
    strictly fewer segments than every other encoding that can carry the text. Raises
    ``UnencodableText`` only for text no encoding can carry (lone surrogates).
    """
    _check_concat(concat)
    return _choose(text, allow_latin1, concat)[0]


def _cost(data: bytes, chars: int, encoding: Encoding, concat: str) -> float:
    try:
        return len(_cuts(data, chars, encoding, concat)) - 1
    except TextTooLong:
        return float("inf")


def _choose(text: str, allow_latin1: bool, concat: str) -> tuple[Encoding, bytes]:
    """(encoding, encoded text) per ``choose_encoding``."""
    n = len(text)
    gsm = _try_gsm7(text)
    if gsm is not None:
        # Without extension characters GSM7 capacity >= Latin-1 capacity in every mode; with
        # them Latin-1 may need fewer segments (every '{' is one octet instead of two septets).
        if allow_latin1 and len(gsm) != n:
            latin1 = _try_encode(text, Encoding.LATIN1)
            if latin1 is not None and _cost(latin1, n, Encoding.LATIN1, concat) < _cost(
                gsm, n, Encoding.GSM7, concat
            ):
                return Encoding.LATIN1, latin1
        return Encoding.GSM7, gsm
    ucs2 = Encoding.UCS2.encode(text)
    if allow_latin1:
        latin1 = _try_encode(text, Encoding.LATIN1)
        if latin1 is not None and _cost(latin1, n, Encoding.LATIN1, concat) < _cost(
            ucs2, n, Encoding.UCS2, concat
        ):
            return Encoding.LATIN1, latin1
    return Encoding.UCS2, ucs2


def segment_count(
    text: str,
    *,
    encoding: Encoding | None = None,
    concat: Concat = "udh8",
    allow_latin1: bool = False,
) -> int:
    """Exactly ``len(split(text, ...))`` with the same arguments, without building segments.

    Raises the same errors as ``split`` (``UnencodableText``, ``TextTooLong``).
    """
    enc, data = _encode_for(text, encoding, concat, allow_latin1)
    if concat == "payload":
        if len(data) > MAX_PAYLOAD_OCTETS:
            raise _payload_too_long(enc)
        return 1
    total = len(data) // enc.octets_per_unit
    if total <= enc.single_capacity:
        return 1
    cap = enc.capacity(concat)
    if total == len(text) or enc is Encoding.LATIN1:  # no two-unit items
        n = -(-total // cap)
        if n > MAX_SEGMENTS:
            raise _too_long(n, enc, concat)
        return n
    return len(_cuts(data, len(text), enc, concat)) - 1


def split(
    text: str,
    *,
    encoding: Encoding | None = None,
    concat: Concat = "udh8",
    reference: int = 0,
    allow_latin1: bool = False,
) -> list[Segment]:
    """Encode ``text`` and cut it into submit_sm-sized segments (see the module docstring).

    ``encoding=None`` uses ``choose_encoding(text, allow_latin1, concat=concat)``.
    ``reference`` is masked to 8 bits for "udh8", 16 bits for "udh16" and "sar".
    """
    enc, data = _encode_for(text, encoding, concat, allow_latin1)
    cuts = _cuts(data, len(text), enc, concat)
    dc = enc.data_coding
    if concat == "payload":
        return [Segment(b"", dc, 0, None, data, cuts[1], text)]
    n = len(cuts) - 1
    if n == 1:
        return [Segment(data, dc, 0, None, None, cuts[1], text)]
    if concat == "udh8":
        head = bytes((5, 0, 3, reference & 0xFF, n))
    elif concat == "udh16":
        head = bytes((6, 8, 4, (reference >> 8) & 0xFF, reference & 0xFF, n))
    else:
        head = b""
    ref16 = reference & 0xFFFF
    k = enc.octets_per_unit
    segments: list[Segment] = []
    c0 = 0  # character offset of the segment start
    for seq in range(1, n + 1):
        u0 = cuts[seq - 1]
        u1 = cuts[seq]
        body = data[u0 * k : u1 * k]
        if enc is Encoding.UCS2:
            part = body.decode("utf-16-be")  # whole surrogate pairs only, so this is exact
        else:  # GSM7: one character per septet except escape pairs
            c1 = c0 + (u1 - u0) - (body.count(b"\x1b") if enc is Encoding.GSM7 else 0)
            part = text[c0:c1]
        c0 += len(part)
        if head:
            segments.append(
                Segment(head + bytes((seq,)) + body, dc, ESM_CLASS_UDHI, None, None, u1 - u0, part)
            )
        else:
            segments.append(Segment(body, dc, 0, (ref16, n, seq), None, u1 - u0, part))
    return segments


# --------------------------------------------------------------------------------------------
# Concatenation references


class ReferenceCounter:
    """Next concatenation reference per destination address, with bounded memory.

    Each destination gets its own counter that increments by one per message and wraps at
    ``2**bits``. A destination seen for the first time (or again after being evicted as the
    least recently used of ``max_destinations``) starts at a random value, so a restart or an
    eviction does not hand the same handset the reference it just received. The default 16
    bits suit udh16 and SAR; ``split`` masks to 8 bits for udh8, which keeps the
    increment-by-one sequence (mod 256). ``seed`` makes the start values reproducible.
    """

    __slots__ = ("_mask", "_max", "_refs", "_rng")

    def __init__(self, max_destinations: int = 100_000, *, bits: int = 16, seed: int | None = None):
        if max_destinations < 1:
            raise ValueError("max_destinations must be >= 1")
        if bits not in (8, 16):
            raise ValueError("bits must be 8 or 16")
        self._max = max_destinations
        self._mask = (1 << bits) - 1
        self._refs: OrderedDict[str, int] = OrderedDict()
        self._rng = Random(seed)

    def next(self, destination: str) -> int:
        refs = self._refs
        ref = refs.get(destination)
        if ref is None:
            ref = self._rng.getrandbits(16) & self._mask
            if len(refs) >= self._max:
                refs.popitem(last=False)
        else:
            ref = (ref + 1) & self._mask
            refs.move_to_end(destination)
        refs[destination] = ref
        return ref

    def __len__(self) -> int:
        return len(self._refs)

    def __contains__(self, destination: object) -> bool:
        return destination in self._refs


# --------------------------------------------------------------------------------------------
# Received messages (deliver_sm / data_sm): MO texts and receipts


def parse_udh(udh: bytes) -> list[tuple[int, bytes]]:
    """Information elements (iei, data) of a UDH given with its UDHL octet.

    Tolerant: stops at the first element that does not fit; never raises.
    """
    out: list[tuple[int, bytes]] = []
    if not udh:
        return out
    end = min(len(udh), 1 + udh[0])
    i = 1
    while i + 2 <= end:
        iei, length = udh[i], udh[i + 1]
        if i + 2 + length > end:
            break
        out.append((iei, udh[i + 2 : i + 2 + length]))
        i += 2 + length
    return out


def concat_info(udh: bytes) -> tuple[int, int, int] | None:
    """(reference, total, seq) from a concatenation IE (0x00 8-bit or 0x08 16-bit ref).

    None when there is no well-formed concatenation element (total 0 or seq outside 1..total
    counts as malformed).
    """
    for iei, value in parse_udh(udh):
        if iei == 0x00 and len(value) == 3:
            ref, total, seq = value
        elif iei == 0x08 and len(value) == 4:
            ref, total, seq = value[0] << 8 | value[1], value[2], value[3]
        else:
            continue
        if total >= 1 and 1 <= seq <= total:
            return ref, total, seq
    return None


_SMPP_CODECS: Final = {
    1: "ascii",  # IA5
    3: "latin-1",
    6: "iso8859_5",  # Cyrillic
    7: "iso8859_8",  # Latin/Hebrew
    8: "utf-16-be",
    0x0A: "iso2022_jp",
    0x0E: "euc_kr",  # KS C 5601
}


def _codec_for(data_coding: int) -> str | None:
    """Python codec for a data_coding; None means GSM 03.38 unpacked."""
    if data_coding == 0:
        return None
    if 0xC0 <= data_coding <= 0xDF:  # message waiting groups, default alphabet
        return None
    if 0xE0 <= data_coding <= 0xEF:  # message waiting group, UCS2
        return "utf-16-be"
    if data_coding >= 0xF0:  # data coding / message class group: bit 2 = 8-bit data
        return "latin-1" if data_coding & 0x04 else None
    return _SMPP_CODECS.get(data_coding, "latin-1")


def decode_short_message(data: bytes, data_coding: int, udhi: bool) -> tuple[bytes | None, str]:
    """Split off the UDH (when ``udhi``) and decode the text of a received message.

    Returns (udh including its length octet, or None; text). data_coding 0 -> GSM 03.38
    unpacked, 1 -> IA5/ASCII, 3 -> Latin-1, 8 -> UTF-16BE, 6/7 -> ISO-8859-5/8, 0x0A ->
    ISO-2022-JP, 0x0E -> KS C 5601 (EUC-KR), 0xC0-0xFF -> per the GSM 03.38 coding groups,
    anything else -> Latin-1 as a lossless best effort. Never raises: undecodable octets
    become U+FFFD, an odd trailing UCS2 octet becomes U+FFFD, and a UDH whose length octet
    overruns the data is treated as no UDH (the whole data is decoded as text).
    """
    udh: bytes | None = None
    if udhi and data and 1 + data[0] <= len(data):
        cut = 1 + data[0]
        udh, data = data[:cut], data[cut:]
    codec = _codec_for(data_coding)
    try:
        if codec is None:
            return udh, decode_gsm7(data, "replace")
        return udh, data.decode(codec, "replace")
    except Exception:  # defensive: a codec bug must not drop an MO message
        return udh, data.decode("latin-1")
