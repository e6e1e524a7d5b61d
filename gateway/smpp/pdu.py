"""SMPP 3.4 PDU codec: strict, struct-based, byte-identical round trips.

Theory of operation
-------------------
Every PDU type is a msgspec Struct whose fields are the SMPP 3.4 mandatory parameters by
their spec names, plus `sequence_number`, `command_status` and `tlvs`. The layout of each
body is written once, in `_BODIES` below, as a list of (name, kind, limit, status) rows; at
import time that table is compiled into one straight-line decode function and one encode
function per PDU type (the same trick dataclasses use). No per-field interpretation happens
at run time, which is what makes this codec ~10x faster than a generic one.

Field type policy (decoded and encoded types are the same, so decode(x).encode() == x):
- C-Octet String -> `str`, decoded as Latin-1. Latin-1 maps every byte 0x01-0xFF to one code
  point and back, so any byte string an SMSC sends survives a round trip unchanged. ASCII
  content (the normal case) reads naturally.
- Octet String (`short_message`, octet TLVs) -> `bytes`. `sm_length` is not a field: it is
  `len(short_message)`, computed on encode and checked on decode.
- Integers -> `int`. `number_of_dests` / `no_unsuccess` are likewise the list lengths.
- Response bodies: SMPP 3.4 lets an SMSC omit the body of a response that carries an error
  status (and real SMSCs also send body-less deliver_sm_resp). A decoded response whose body is
  empty gets `None` in its first field; encoding a response whose first field is None writes
  no body. Our own responses always carry the body the spec asks for.
- TLVs: `tlvs` is a list of `Tlv(tag, value)` in wire order (duplicates kept). Standard tags
  are typed (see `TLV_TYPES`): integers must have exactly their spec size (else
  ESME_RINVPARLEN); C-string TLVs are `str` with the NUL removed (SMSCs that forget the NUL on
  receipted_message_id are tolerated: `terminated=False` records it so the bytes re-encode
  unchanged); everything else, including unknown and vendor tags, is `bytes`, untouched.

Strictness: a body must be consumed exactly (mandatory fields, then whole TLVs); C-strings
must end with a NUL within their spec maximum; sm_length <= 255; schedule/validity times are
empty or 16 characters; command_length must match and be within `max_length`. Every failure
raises `PduError` with the command_status to answer (ESME_RINVCMDLEN, ESME_RINVCMDID,
ESME_RINVSRCADR, ...) and, when the header was readable, the command_id and sequence_number
so the peer's request can be answered by sequence.

Leniency on the receiving side: `decode` stays strict, but `decode_lenient` /
`decode_frame_lenient` (the session's fallback when the strict decoder refuses a frame) read
responses and deliver_sm / data_sm the way the robustness principle asks of a receiver: no
maximum on C-strings, a response's last C-string may lack its NUL at the end of the body,
time fields of any length, and standard TLVs of a non-standard length kept as raw bytes
(like unknown tags). Separate generated decoders, so the strict fast path costs nothing more.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from typing import Any, ClassVar

import msgspec

from gateway.smpp.constants import RESPONSE_BIT, CommandId, CommandStatus, Tag
from gateway.smpp.errors import PduError

S = CommandStatus

HEADER = struct.Struct(">IIII")
HEADER_SIZE = 16
DEFAULT_MAX_PDU_LENGTH = 64 * 1024
MAX_SEQUENCE = 0x7FFFFFFF
_TLV_HEAD = struct.Struct(">HH")
_U32 = struct.Struct(">I")


class Tlv(msgspec.Struct, frozen=True, gc=False):
    """One optional parameter. `value` is int, str or bytes according to TLV_TYPES."""

    tag: int
    value: int | str | bytes
    terminated: bool = True  # only meaningful for C-string TLVs: was the NUL on the wire?


class DestAddress(msgspec.Struct, frozen=True, gc=False):
    """submit_multi destination: an SME address (dest_flag 1) or a distribution list (2)."""

    dest_flag: int = 1
    ton: int = 0
    npi: int = 0
    address: str = ""
    dl_name: str = ""


class UnsuccessSme(msgspec.Struct, frozen=True, gc=False):
    ton: int = 0
    npi: int = 0
    address: str = ""
    error_status_code: int = 0


# ---------------------------------------------------------------------------------------
# TLV types: INT sizes, CSTR, or OCTETS (anything not listed is OCTETS, i.e. raw bytes).
_INT1, _INT2, _INT4, _CSTR = 1, 2, 4, "cstr"
TLV_TYPES: dict[int, int | str] = {
    Tag.DEST_ADDR_SUBUNIT: _INT1,
    Tag.DEST_NETWORK_TYPE: _INT1,
    Tag.DEST_BEARER_TYPE: _INT1,
    Tag.DEST_TELEMATICS_ID: _INT2,
    Tag.SOURCE_ADDR_SUBUNIT: _INT1,
    Tag.SOURCE_NETWORK_TYPE: _INT1,
    Tag.SOURCE_BEARER_TYPE: _INT1,
    # source_telematics_id: implementations disagree on 1 vs 2 octets, so it stays bytes.
    Tag.QOS_TIME_TO_LIVE: _INT4,
    Tag.PAYLOAD_TYPE: _INT1,
    Tag.ADDITIONAL_STATUS_INFO_TEXT: _CSTR,
    Tag.RECEIPTED_MESSAGE_ID: _CSTR,
    Tag.MS_MSG_WAIT_FACILITIES: _INT1,
    Tag.PRIVACY_INDICATOR: _INT1,
    Tag.USER_MESSAGE_REFERENCE: _INT2,
    Tag.USER_RESPONSE_CODE: _INT1,
    Tag.SOURCE_PORT: _INT2,
    Tag.DESTINATION_PORT: _INT2,
    Tag.SAR_MSG_REF_NUM: _INT2,
    Tag.LANGUAGE_INDICATOR: _INT1,
    Tag.SAR_TOTAL_SEGMENTS: _INT1,
    Tag.SAR_SEGMENT_SEQNUM: _INT1,
    Tag.SC_INTERFACE_VERSION: _INT1,
    Tag.CALLBACK_NUM_PRES_IND: _INT1,
    Tag.NUMBER_OF_MESSAGES: _INT1,
    Tag.DPF_RESULT: _INT1,
    Tag.SET_DPF: _INT1,
    Tag.MS_AVAILABILITY_STATUS: _INT1,
    Tag.DELIVERY_FAILURE_REASON: _INT1,
    Tag.MORE_MESSAGES_TO_SEND: _INT1,
    Tag.MESSAGE_STATE: _INT1,
    Tag.DISPLAY_TIME: _INT1,
    Tag.SMS_SIGNAL: _INT2,
    Tag.MS_VALIDITY: _INT1,
    Tag.ITS_REPLY_TYPE: _INT1,
}


_FIXED_TLV: dict[int, tuple[bytes, int]] = {
    tag: (struct.pack(">HH", tag, kind), kind) for tag, kind in TLV_TYPES.items() if kind != _CSTR
}
_CSTR_TAGS = frozenset(tag for tag, kind in TLV_TYPES.items() if kind == _CSTR)


class _Bad(Exception):
    """Internal: a fast encoder met a bad value; the checked path says which."""


# Receipts make up most TLVs read: receipted_message_id (a C-string) and message_state (one
# octet). Every one-octet integer TLV, header and value, maps to one shared Tlv (Tlv is
# frozen), found by its 5 bytes; receipted_message_id has its own branch.
_INT1_TLVS: dict[bytes, Tlv] = {
    struct.pack(">HHB", tag, 1, v): Tlv(tag, v)
    for tag, kind in TLV_TYPES.items()
    if kind == _INT1
    for v in range(256)
}
_RECEIPTED_MESSAGE_ID = int(Tag.RECEIPTED_MESSAGE_ID)
assert _RECEIPTED_MESSAGE_ID == 0x001E and TLV_TYPES[_RECEIPTED_MESSAGE_ID] == _CSTR


def _decode_tlvs(b: bytes, p: int, end: int, lenient: bool = False) -> list[Tlv]:
    """The TLVs in b[p:end]. Reads nothing at or past `end` (b may hold more after it).
    `lenient`: see _decode_tlvs_lenient."""
    tlvs: list[Tlv] = []
    types = TLV_TYPES
    int1 = _INT1_TLVS
    while p < end:
        if end - p < 4:
            if lenient:  # stray bytes after the last TLV: ignored
                break
            raise PduError(
                f"{end - p} byte(s) after the mandatory fields are too short for a TLV header",
                S.ESME_RINVCMDLEN,
            )
        if b[p + 1] == 0x1E and b[p] == 0:  # receipted_message_id, NUL-terminated
            q = p + 4 + (b[p + 2] << 8 | b[p + 3])
            if p + 4 < q <= end and b[q - 1] == 0:
                tlvs.append(Tlv(_RECEIPTED_MESSAGE_ID, b[p + 4 : q - 1].decode("latin-1")))
                p = q
                continue
        elif end - p >= 5:
            t = int1.get(b[p : p + 5])
            if t is not None:
                tlvs.append(t)
                p += 5
                continue
        tag, length = _TLV_HEAD.unpack_from(b, p)
        p += 4
        q = p + length
        if q > end:
            if lenient:  # the last TLV overruns the body: keep what is there
                tlvs.append(_truncated_tlv(tag, b[p:end]))
                break
            raise PduError(
                f"TLV 0x{tag:04x} declares length {length} but {end - p} byte(s) remain",
                S.ESME_RINVCMDLEN,
            )
        raw = b[p:q]
        kind = types.get(tag)
        if kind is None:
            tlvs.append(Tlv(tag, raw))
        elif kind == _CSTR:
            if length and raw[-1] == 0:
                tlvs.append(Tlv(tag, raw[:-1].decode("latin-1")))
            else:
                tlvs.append(Tlv(tag, raw.decode("latin-1"), False))
        elif length == kind:
            tlvs.append(Tlv(tag, int.from_bytes(raw, "big")))
        elif lenient:
            tlvs.append(Tlv(tag, raw))
        else:
            raise PduError(
                f"TLV 0x{tag:04x} has length {length}, expected {kind}", S.ESME_RINVPARLEN
            )
        p = q
    return tlvs


def _decode_tlvs_lenient(b: bytes, p: int, end: int) -> list[Tlv]:
    """`_decode_tlvs` for received PDUs decoded leniently (`decode_lenient`): a standard
    integer tag whose length is not its spec size (user_message_reference in 1 octet, ...)
    is kept like an unknown tag, `Tlv(tag, raw bytes)`, instead of refusing the PDU. A
    reader tells the two apart by the value's type (`isinstance(t.value, int)`). A last TLV
    that declares more than the body holds keeps what is there (a production SMSC sent
    receipted_message_id with length 65 and 5 octets, "3005" and its NUL: corpus
    cloudhopper-27); 1-3 stray octets after the last TLV are ignored."""
    return _decode_tlvs(b, p, end, True)


def _truncated_tlv(tag: int, rest: bytes) -> Tlv:
    """What a lenient reader keeps of a TLV cut short by the end of the body: a C-string up
    to its NUL (or all of it), anything else as raw bytes."""
    if TLV_TYPES.get(tag) == _CSTR:
        nul = rest.find(0)
        return Tlv(tag, rest[: nul if nul >= 0 else len(rest)].decode("latin-1"), nul >= 0)
    return Tlv(tag, rest)


def _encode_tlvs(tlvs: list[Tlv]) -> bytes:
    """Fast path: precomputed headers for fixed-size tags, no per-TLV validation calls; any
    bad value makes Python raise, and the checked path then names the problem."""
    out: list[bytes] = []
    a = out.append
    fixed = _FIXED_TLV
    try:
        for t in tlvs:
            tag, v = t.tag, t.value
            spec = fixed.get(tag)
            if spec is not None:
                if v.__class__ is not int:
                    raise _Bad
                a(spec[0])
                a(v.to_bytes(spec[1], "big"))
            elif tag in _CSTR_TAGS:
                raw = v.encode("latin-1")
                if t.terminated:
                    raw += b"\0"
                elif raw[-1:] == b"\0":
                    raise _Bad
                a(_TLV_HEAD.pack(tag, len(raw)))
                a(raw)
            else:
                if v.__class__ is not bytes:
                    raise _Bad
                a(_TLV_HEAD.pack(tag, len(v)))
                a(v)
    except (_Bad, AttributeError, TypeError, ValueError, OverflowError, struct.error):
        return _encode_tlvs_checked(tlvs)
    return b"".join(out)


def _encode_tlvs_checked(tlvs: list[Tlv]) -> bytes:
    out = []
    types = TLV_TYPES
    for t in tlvs:
        kind = types.get(t.tag)
        v = t.value
        if kind is None:
            if not isinstance(v, bytes):
                raise PduError(f"TLV 0x{t.tag:04x} needs a bytes value", S.ESME_RINVOPTPARAMVAL)
            raw = v
        elif kind == _CSTR:
            if not isinstance(v, str):
                raise PduError(f"TLV 0x{t.tag:04x} needs a str value", S.ESME_RINVOPTPARAMVAL)
            try:
                raw = v.encode("latin-1")
            except UnicodeEncodeError:
                raise PduError(
                    f"TLV 0x{t.tag:04x} has characters outside Latin-1", S.ESME_RINVOPTPARAMVAL
                ) from None
            if t.terminated:
                raw += b"\0"
            elif raw.endswith(b"\0"):
                # Would read back as a terminated value: refuse rather than not round-trip.
                raise PduError(
                    f"TLV 0x{t.tag:04x}: an unterminated value cannot end with NUL",
                    S.ESME_RINVOPTPARAMVAL,
                )
        else:
            if not isinstance(v, int) or not 0 <= v < (1 << (8 * kind)):
                raise PduError(
                    f"TLV 0x{t.tag:04x} needs an integer of {kind} octet(s)", S.ESME_RINVOPTPARAMVAL
                )
            raw = v.to_bytes(kind, "big")
        if len(raw) > 0xFFFF:
            raise PduError(f"TLV 0x{t.tag:04x} value too long", S.ESME_RINVPARLEN)
        if not isinstance(t.tag, int) or not 0 <= t.tag <= 0xFFFF:
            raise PduError(f"TLV tag {t.tag!r} outside 0..0xFFFF", S.ESME_RINVOPTPARSTREAM)
        out.append(_TLV_HEAD.pack(t.tag, len(raw)))
        out.append(raw)
    return b"".join(out)


# ---------------------------------------------------------------------------------------
# Body layouts (SMPP 3.4 section 4). Kinds:
#   C n   C-Octet String of at most n octets including the NUL  -> str
#   T     time field: C-Octet String, empty or 16 characters     -> str
#   U8    1-octet integer; U32 4-octet integer                   -> int
#   SM    sm_length + short_message                              -> bytes
#         (SMPP 3.4 says at most 254 octets; the 1-octet sm_length allows 255 and real
#         SMSCs send 255 (cloudhopper's decodeSubmitSm255 vector), so 255 is accepted.)
#   DESTS number_of_dests + dest_address list (submit_multi)    -> list[DestAddress]
#   UNSUC no_unsuccess + unsuccess_sme list (submit_multi_resp) -> list[UnsuccessSme]
# The status is what to answer when this field is malformed.
_SUBMIT_TAIL = [
    ("esm_class", "U8"),
    ("protocol_id", "U8"),
    ("priority_flag", "U8"),
    ("schedule_delivery_time", "T", 17, S.ESME_RINVSCHED),
    ("validity_period", "T", 17, S.ESME_RINVEXPIRY),
    ("registered_delivery", "U8"),
    ("replace_if_present_flag", "U8"),
    ("data_coding", "U8"),
    ("sm_default_msg_id", "U8"),
    ("short_message", "SM"),
]
_SM_LAYOUT = [
    ("service_type", "C", 6, S.ESME_RINVSERTYP),
    ("source_addr_ton", "U8"),
    ("source_addr_npi", "U8"),
    ("source_addr", "C", 21, S.ESME_RINVSRCADR),
    ("dest_addr_ton", "U8"),
    ("dest_addr_npi", "U8"),
    ("destination_addr", "C", 21, S.ESME_RINVDSTADR),
    *_SUBMIT_TAIL,
]
# password: the spec says 9 octets with the NUL; SMSC accounts with 9-16 character passwords
# exist (gosmpp's outbind vector), so we accept up to 16. Credentials are checked anyway.
_PASSWORD = ("password", "C", 17, S.ESME_RINVPASWD)
_BIND_LAYOUT = [
    ("system_id", "C", 16, S.ESME_RINVSYSID),
    _PASSWORD,
    ("system_type", "C", 13, S.ESME_RINVSYSTYP),
    ("interface_version", "U8"),
    ("addr_ton", "U8"),
    ("addr_npi", "U8"),
    ("address_range", "C", 41, S.ESME_RINVPARLEN),
]
_BIND_RESP_LAYOUT = [("system_id", "C", 16, S.ESME_RINVSYSID)]
_MSGID_RESP_LAYOUT = [("message_id", "C", 65, S.ESME_RINVMSGID)]

_BODIES: dict[int, tuple[str, list[tuple]]] = {
    CommandId.GENERIC_NACK: ("GenericNack", []),
    CommandId.BIND_RECEIVER: ("BindReceiver", _BIND_LAYOUT),
    CommandId.BIND_RECEIVER_RESP: ("BindReceiverResp", _BIND_RESP_LAYOUT),
    CommandId.BIND_TRANSMITTER: ("BindTransmitter", _BIND_LAYOUT),
    CommandId.BIND_TRANSMITTER_RESP: ("BindTransmitterResp", _BIND_RESP_LAYOUT),
    CommandId.BIND_TRANSCEIVER: ("BindTransceiver", _BIND_LAYOUT),
    CommandId.BIND_TRANSCEIVER_RESP: ("BindTransceiverResp", _BIND_RESP_LAYOUT),
    CommandId.OUTBIND: (
        "Outbind",
        [("system_id", "C", 16, S.ESME_RINVSYSID), _PASSWORD],
    ),
    CommandId.UNBIND: ("Unbind", []),
    CommandId.UNBIND_RESP: ("UnbindResp", []),
    CommandId.ENQUIRE_LINK: ("EnquireLink", []),
    CommandId.ENQUIRE_LINK_RESP: ("EnquireLinkResp", []),
    CommandId.SUBMIT_SM: ("SubmitSm", _SM_LAYOUT),
    CommandId.SUBMIT_SM_RESP: ("SubmitSmResp", _MSGID_RESP_LAYOUT),
    CommandId.DELIVER_SM: ("DeliverSm", _SM_LAYOUT),
    CommandId.DELIVER_SM_RESP: ("DeliverSmResp", _MSGID_RESP_LAYOUT),
    CommandId.DATA_SM: (
        "DataSm",
        [
            ("service_type", "C", 6, S.ESME_RINVSERTYP),
            ("source_addr_ton", "U8"),
            ("source_addr_npi", "U8"),
            ("source_addr", "C", 65, S.ESME_RINVSRCADR),
            ("dest_addr_ton", "U8"),
            ("dest_addr_npi", "U8"),
            ("destination_addr", "C", 65, S.ESME_RINVDSTADR),
            ("esm_class", "U8"),
            ("registered_delivery", "U8"),
            ("data_coding", "U8"),
        ],
    ),
    CommandId.DATA_SM_RESP: ("DataSmResp", _MSGID_RESP_LAYOUT),
    CommandId.QUERY_SM: (
        "QuerySm",
        [
            ("message_id", "C", 65, S.ESME_RINVMSGID),
            ("source_addr_ton", "U8"),
            ("source_addr_npi", "U8"),
            ("source_addr", "C", 21, S.ESME_RINVSRCADR),
        ],
    ),
    CommandId.QUERY_SM_RESP: (
        "QuerySmResp",
        [
            ("message_id", "C", 65, S.ESME_RINVMSGID),
            ("final_date", "T", 17, S.ESME_RINVPARLEN),
            ("message_state", "U8"),
            ("error_code", "U8"),
        ],
    ),
    CommandId.CANCEL_SM: (
        "CancelSm",
        [
            ("service_type", "C", 6, S.ESME_RINVSERTYP),
            ("message_id", "C", 65, S.ESME_RINVMSGID),
            ("source_addr_ton", "U8"),
            ("source_addr_npi", "U8"),
            ("source_addr", "C", 21, S.ESME_RINVSRCADR),
            ("dest_addr_ton", "U8"),
            ("dest_addr_npi", "U8"),
            ("destination_addr", "C", 21, S.ESME_RINVDSTADR),
        ],
    ),
    CommandId.CANCEL_SM_RESP: ("CancelSmResp", []),
    CommandId.REPLACE_SM: (
        "ReplaceSm",
        [
            ("message_id", "C", 65, S.ESME_RINVMSGID),
            ("source_addr_ton", "U8"),
            ("source_addr_npi", "U8"),
            ("source_addr", "C", 21, S.ESME_RINVSRCADR),
            ("schedule_delivery_time", "T", 17, S.ESME_RINVSCHED),
            ("validity_period", "T", 17, S.ESME_RINVEXPIRY),
            ("registered_delivery", "U8"),
            ("sm_default_msg_id", "U8"),
            ("short_message", "SM"),
        ],
    ),
    CommandId.REPLACE_SM_RESP: ("ReplaceSmResp", []),
    CommandId.SUBMIT_MULTI: (
        "SubmitMulti",
        [
            ("service_type", "C", 6, S.ESME_RINVSERTYP),
            ("source_addr_ton", "U8"),
            ("source_addr_npi", "U8"),
            ("source_addr", "C", 21, S.ESME_RINVSRCADR),
            ("dest_addresses", "DESTS"),
            *_SUBMIT_TAIL,
        ],
    ),
    CommandId.SUBMIT_MULTI_RESP: (
        "SubmitMultiResp",
        [("message_id", "C", 65, S.ESME_RINVMSGID), ("unsuccess_smes", "UNSUC")],
    ),
    CommandId.ALERT_NOTIFICATION: (
        "AlertNotification",
        [
            ("source_addr_ton", "U8"),
            ("source_addr_npi", "U8"),
            ("source_addr", "C", 65, S.ESME_RINVSRCADR),
            ("esme_addr_ton", "U8"),
            ("esme_addr_npi", "U8"),
            ("esme_addr", "C", 65, S.ESME_RINVDSTADR),
        ],
    ),
}


class Pdu(msgspec.Struct, gc=False):
    """Base of all PDU types. Subclasses are generated from `_BODIES`."""

    command_id: ClassVar[int]
    command_name: ClassVar[str]
    is_response: ClassVar[bool]
    body_fields: ClassVar[tuple[str, ...]]
    sequence_number: int = 0
    command_status: int = 0
    tlvs: list[Tlv] = []

    def encode(self) -> bytes:  # replaced per subclass
        raise NotImplementedError

    def tlv(self, tag: int, default: Any = None) -> Any:
        """Value of the first TLV with this tag, else `default`."""
        for t in self.tlvs:
            if t.tag == tag:
                return t.value
        return default


# ---------------------------------------------------------------------------------------
# Helpers called by the generated code (kept out of the hot path except on errors).


def _bad_cstr(b: bytes, p: int, end: int, limit: int, name: str, status: int) -> PduError:
    nul = b.find(0, p, end)
    if nul < 0:
        return PduError(f"body ends inside {name} (no NUL terminator)", S.ESME_RINVCMDLEN)
    return PduError(f"{name} is {nul - p} octets, more than {limit - 1}", status)


def _time_ok(s: str) -> bool:
    return len(s) in (0, 16)


def _decode_dests(b: bytes, p: int, end: int) -> tuple[list[DestAddress], int]:
    n = b[p]
    if n > 254:
        raise PduError(f"number_of_dests {n} exceeds 254", S.ESME_RINVNUMDESTS)
    p += 1
    dests = []
    for _ in range(n):
        flag = b[p]
        if flag == 1:
            ton, npi = b[p + 1], b[p + 2]
            i = b.find(0, p + 3, min(end, p + 3 + 21))
            if i < 0:
                raise _bad_cstr(b, p + 3, end, 21, "dest_address", S.ESME_RINVDSTADR)
            dests.append(DestAddress(1, ton, npi, b[p + 3 : i].decode("latin-1")))
            p = i + 1
        elif flag == 2:
            i = b.find(0, p + 1, min(end, p + 1 + 21))
            if i < 0:
                raise _bad_cstr(b, p + 1, end, 21, "dl_name", S.ESME_RINVDLNAME)
            dests.append(DestAddress(2, dl_name=b[p + 1 : i].decode("latin-1")))
            p = i + 1
        else:
            raise PduError(f"dest_flag {flag} is neither 1 nor 2", S.ESME_RINVDESTFLAG)
    return dests, p


def _u8(v: object, name: str) -> bytes:
    if v.__class__ is not int or not 0 <= v <= 255:  # type: ignore[operator]
        raise _bad_int(name)
    return _B1[v]  # type: ignore[index]


def _encode_dests(dests: list[DestAddress]) -> bytes:
    if len(dests) > 254:
        raise PduError("submit_multi takes at most 254 destinations", S.ESME_RINVNUMDESTS)
    out = [bytes((len(dests),))]
    for d in dests:
        if d.dest_flag == 1:
            out.append(b"\x01" + _u8(d.ton, "dest_address ton") + _u8(d.npi, "dest_address npi"))
            out.append(_cstr(d.address, 21, "dest_address", S.ESME_RINVDSTADR))
        elif d.dest_flag == 2:
            out.append(b"\x02")
            out.append(_cstr(d.dl_name, 21, "dl_name", S.ESME_RINVDLNAME))
        else:
            raise PduError(f"dest_flag {d.dest_flag} is neither 1 nor 2", S.ESME_RINVDESTFLAG)
    return b"".join(out)


def _decode_unsuccess(b: bytes, p: int, end: int) -> tuple[list[UnsuccessSme], int]:
    n = b[p]
    p += 1
    out = []
    for _ in range(n):
        ton, npi = b[p], b[p + 1]
        i = b.find(0, p + 2, min(end, p + 2 + 21))
        if i < 0:
            raise _bad_cstr(b, p + 2, end, 21, "unsuccess_sme address", S.ESME_RINVDSTADR)
        (err,) = _U32.unpack_from(b, i + 1)
        out.append(UnsuccessSme(ton, npi, b[p + 2 : i].decode("latin-1"), err))
        p = i + 5
    return out, p


def _encode_unsuccess(smes: list[UnsuccessSme]) -> bytes:
    if len(smes) > 255:
        raise PduError("at most 255 unsuccess_sme entries", S.ESME_RINVNUMDESTS)
    out = [bytes((len(smes),))]
    for u in smes:
        out.append(_u8(u.ton, "unsuccess_sme ton") + _u8(u.npi, "unsuccess_sme npi"))
        out.append(_cstr(u.address, 21, "unsuccess_sme address", S.ESME_RINVDSTADR))
        code = u.error_status_code
        if code.__class__ is not int or not 0 <= code <= 0xFFFFFFFF:
            raise PduError("error_status_code must be a 32-bit unsigned integer", S.ESME_RINVPARLEN)
        out.append(_U32.pack(code))
    return b"".join(out)


def _cstr(s: str, limit: int, name: str, status: int) -> bytes:
    try:
        raw = s.encode("latin-1")
    except AttributeError:
        raise PduError(f"{name} must be a str", status) from None
    except UnicodeEncodeError:
        raise PduError(f"{name} has characters outside Latin-1", status) from None
    if len(raw) >= limit or 0 in raw:
        raise PduError(f"{name} must be at most {limit - 1} octets without NUL", status)
    return raw + b"\0"


def _bad_int(name: str) -> PduError:
    return PduError(f"{name} must be an integer 0..255", S.ESME_RINVPARLEN)


# ---------------------------------------------------------------------------------------
# Code generation: one decoder and one encoder per PDU type.


def _groups(layout: list[tuple]) -> list[list[tuple]]:
    """Split a layout into runs of consecutive U8 fields and single other fields."""
    out: list[list[tuple]] = []
    for row in layout:
        if row[1] == "U8" and out and out[-1][0][1] == "U8":
            out[-1].append(row)
        else:
            out.append([row])
    return out


def _gen_decoder(cls_name: str, layout: list[tuple], is_resp: bool, lenient: bool = False) -> str:
    """Straight-line decoder. Out-of-range indexing (a body that ends early) raises
    IndexError, which decode() turns into ESME_RINVCMDLEN: no bounds test per field.

    `lenient` generates the receiving-side variant (see `decode_lenient`): C-strings have
    no maximum (they run to their NUL within the body), a response's C-string without its
    NUL runs to the end of the body, time fields of any length are kept as given, and
    standard TLVs of a non-standard length are kept raw. It is meant for a frame on its own
    (`decode_frame_lenient`), never in place in a longer buffer."""
    prefix = "_decode_lenient_" if lenient else "_decode_"
    lines = [f"def {prefix}{cls_name}(b, p, end, status, seq):"]
    names = [row[0] for row in layout]
    if is_resp and layout:
        # Body-less response: first field None, the rest at their defaults.
        lines.append("    if p == end:")
        lines.append(f"        return {cls_name}(seq, status, [], None)")
    for group in _groups(layout):
        name, kind = group[0][0], group[0][1]
        if kind == "U8":
            targets = ", ".join(r[0] for r in group)
            values = ", ".join(f"b[p + {k}]" if k else "b[p]" for k in range(len(group)))
            lines.append(f"    {targets}{',' if len(group) == 1 else ''} = {values}; p += {len(group)}")
        elif kind in ("C", "T") and lenient:
            status = int(group[0][3])
            lines.append("    i = b.find(0, p, end)")
            if is_resp:  # a missing NUL at the very end of the body: the field runs to it
                lines.append(f"    if i < 0: {name} = b[p:end].decode('latin-1'); p = end")
                lines.append(f"    else: {name} = b[p:i].decode('latin-1'); p = i + 1")
            else:
                lines.append(f"    if i < 0: raise _bad_cstr(b, p, end, end - p + 1, {name!r}, {status})")
                lines.append(f"    {name} = b[p:i].decode('latin-1'); p = i + 1")
        elif kind in ("C", "T"):
            limit, status = group[0][2], int(group[0][3])
            # Empty strings are the common case (service_type, times): one index test.
            lines.append(f"    if b[p] == 0: {name} = ''; p += 1")
            lines.append("    else:")
            lines.append(f"        i = b.find(0, p, p + {limit} if p + {limit} < end else end)")
            lines.append(f"        if i < 0: raise _bad_cstr(b, p, end, {limit}, {name!r}, {status})")
            lines.append(f"        {name} = b[p:i].decode('latin-1'); p = i + 1")
            if kind == "T":
                lines.append(
                    f"        if len({name}) != 16: raise PduError('{name} must be empty or 16 characters', {status})"
                )
        elif kind == "U32":
            lines.append(f"    ({name},) = _U32.unpack_from(b, p); p += 4")
        elif kind == "SM":
            lines.append("    n = b[p]")
            lines.append(f"    {name} = b[p + 1:p + 1 + n]; p += 1 + n")
            lines.append(f"    if p > end: raise PduError('short_message runs past the end of the PDU', {int(S.ESME_RINVCMDLEN)})")
        elif kind == "DESTS":
            lines.append(f"    {name}, p = _decode_dests(b, p, end)")
        elif kind == "UNSUC":
            lines.append(f"    {name}, p = _decode_unsuccess(b, p, end)")
        else:  # pragma: no cover - table error
            raise AssertionError(kind)
    lines.append("    if p > end: raise IndexError")
    tlv_decoder = "_decode_tlvs_lenient" if lenient else "_decode_tlvs"
    lines.append(f"    tlvs = {tlv_decoder}(b, p, end) if p < end else []")
    args = ", ".join(names)
    lines.append(f"    return {cls_name}(seq, status, tlvs{', ' if args else ''}{args})")
    return "\n".join(lines)


def _gen_encoder(cls_name: str, layout: list[tuple], is_resp: bool, command_id: int) -> str:
    """Straight-line encoder: the body is ONE `bytes % tuple` formatting of a template made
    from the layout (`%c` per octet, `%b\\0` per C-string, `%c%b` for sm_length +
    short_message), so a submit_sm costs one C call plus the string encodes. The fast path
    lets Python raise on a bad value (`%c` refuses > 255, `.encode` a non-str); the except
    clause then runs `_diagnose`, which walks the same layout slowly to name the field."""
    template = b""
    args: list[str] = []
    checks: list[str] = []
    for k, row in enumerate(layout):
        name, kind = row[0], row[1]
        if kind == "U8":
            template += b"%c"
            args.append(f"self.{name}")
        elif kind in ("C", "T"):
            limit = row[2]
            template += b"%b\0"
            checks.append(f"r{k} = self.{name}.encode('latin-1')")
            bad = f"len(r{k}) not in (0, 16)" if kind == "T" else f"len(r{k}) >= {limit}"
            checks.append(f"if {bad} or 0 in r{k}: raise _Bad")
            args.append(f"r{k}")
        elif kind == "U32":
            template += b"%b"
            args.append(f"_U32.pack(self.{name})")
        elif kind == "SM":
            template += b"%c%b"
            checks.append(f"sm = self.{name}")
            checks.append("if sm.__class__ is not bytes or len(sm) > 255: raise _Bad")
            args += ["len(sm)", "sm"]
        elif kind == "DESTS":
            template += b"%b"
            args.append(f"_encode_dests(self.{name})")
        elif kind == "UNSUC":
            template += b"%b"
            args.append(f"_encode_unsuccess(self.{name})")
    _namespace[f"_T_{cls_name}"] = template
    body_expr = f"_T_{cls_name} % ({', '.join(args)},)" if args else "b''"
    lines = [f"def _encode_{cls_name}(self):", "    try:"]
    indent = "        "
    if is_resp and layout:
        lines.append(f"        if self.{layout[0][0]} is None:")
        lines.append("            if self.tlvs: raise _Bad")
        lines.append("            body = b''")
        lines.append("        else:")
        indent = "            "
    lines.extend(indent + c for c in checks)
    lines.append(f"{indent}body = {body_expr}")
    lines.append("        if self.tlvs: body += _encode_tlvs(self.tlvs)")
    lines.append(
        f"        return _HEADER_PACK(16 + len(body), {command_id}, self.command_status, self.sequence_number) + body"
    )
    lines.append("    except (_Bad, AttributeError, TypeError, ValueError, OverflowError, struct.error):")
    lines.append("        raise _diagnose(self) from None")
    return "\n".join(lines)


def _diagnose(pdu: Pdu) -> PduError:
    """The precise PduError for a PDU the fast encoder refused (slow, error path only)."""
    _, layout = _BODIES[pdu.command_id]
    if not (pdu.is_response and layout and getattr(pdu, layout[0][0]) is None):
        for row in layout:
            name, kind = row[0], row[1]
            v = getattr(pdu, name)
            if kind in ("C", "T"):
                if not isinstance(v, str):
                    return PduError(f"{name} must be a str", int(row[3]))
                if kind == "T" and not _time_ok(v):
                    return PduError(f"{name} must be empty or 16 characters", int(row[3]))
                try:
                    _cstr(v, row[2], name, int(row[3]))
                except PduError as e:
                    return e
            elif kind == "U8":
                if v.__class__ is not int or not 0 <= v <= 255:
                    return _bad_int(name)
            elif kind == "U32":
                if v.__class__ is not int or not 0 <= v <= 0xFFFFFFFF:
                    return PduError(f"{name} must be a 32-bit unsigned integer", S.ESME_RINVPARLEN)
            elif kind == "SM":
                if v.__class__ is not bytes:
                    return PduError(f"{name} must be bytes", S.ESME_RINVPARLEN)
                if len(v) > 255:
                    return PduError(
                        "short_message longer than 255 octets; use message_payload", S.ESME_RINVMSGLEN
                    )
    elif pdu.tlvs:
        return PduError("a response without a body cannot carry TLVs", S.ESME_RINVOPTPARSTREAM)
    for field in ("command_status", "sequence_number"):
        v = getattr(pdu, field)
        if v.__class__ is not int or not 0 <= v <= 0xFFFFFFFF:
            return PduError(f"{field} must be a 32-bit unsigned integer", S.ESME_RINVPARLEN)
    return PduError("PDU cannot be encoded", S.ESME_RSYSERR)


_PY_TYPES = {"C": "str", "T": "str", "U8": "int", "U32": "int", "SM": "bytes"}
_DEFAULTS = {"C": "''", "T": "''", "U8": "0", "U32": "0", "SM": "b''", "DESTS": "[]", "UNSUC": "[]"}
_LIST_TYPES = {"DESTS": "list[DestAddress]", "UNSUC": "list[UnsuccessSme]"}

_B1 = [bytes((i,)) for i in range(256)]

DECODERS: dict[int, Any] = {}
# Receiving-side decoders (`decode_lenient`): every response, and the requests an ESME
# receives from an SMSC (deliver_sm, data_sm). Same signature as DECODERS' functions.
LENIENT_DECODERS: dict[int, Any] = {}
LENIENT_REQUESTS = frozenset({CommandId.DELIVER_SM, CommandId.DATA_SM})
PDU_CLASSES: dict[int, type[Pdu]] = {}
_namespace: dict[str, Any] = {
    "PduError": PduError,
    "_bad_cstr": _bad_cstr,
    "_bad_int": _bad_int,
    "_time_ok": _time_ok,
    "_decode_tlvs": _decode_tlvs,
    "_decode_tlvs_lenient": _decode_tlvs_lenient,
    "_encode_tlvs": _encode_tlvs,
    "_decode_dests": _decode_dests,
    "_encode_dests": _encode_dests,
    "_decode_unsuccess": _decode_unsuccess,
    "_encode_unsuccess": _encode_unsuccess,
    "_cstr": _cstr,
    "_U32": _U32,
    "_B1": _B1,
    "_HEADER_PACK": HEADER.pack,
    "struct": struct,
    "_NUL": b"\0",
}


def _build() -> None:
    for command_id, (cls_name, layout) in _BODIES.items():
        is_resp = bool(command_id & RESPONSE_BIT)
        annotations: dict[str, Any] = {}
        defaults: dict[str, Any] = {}
        for i, row in enumerate(layout):
            name, kind = row[0], row[1]
            py_type = _LIST_TYPES.get(kind) or _PY_TYPES[kind]
            if is_resp and i == 0:
                py_type = f"{py_type} | None"
            annotations[name] = eval(py_type, globals())  # noqa: S307 - our own table
            defaults[name] = eval(_DEFAULTS[kind])  # noqa: S307
        cls = msgspec.defstruct(
            cls_name,
            [(n, annotations[n], msgspec.field(default=defaults[n])) for n in annotations],
            bases=(Pdu,),
            gc=False,
            module=__name__,
        )
        cls.command_id = command_id
        cls.command_name = CommandId(command_id).name.lower()
        cls.is_response = is_resp
        cls.body_fields = tuple(row[0] for row in layout)
        _namespace[cls_name] = cls
        _namespace["_Bad"] = _Bad
        _namespace["_diagnose"] = _diagnose
        exec(_gen_decoder(cls_name, layout, is_resp), _namespace)  # noqa: S102
        exec(_gen_encoder(cls_name, layout, is_resp, command_id), _namespace)  # noqa: S102
        cls.encode = _namespace[f"_encode_{cls_name}"]
        DECODERS[command_id] = _namespace[f"_decode_{cls_name}"]
        if is_resp or command_id in LENIENT_REQUESTS:
            exec(_gen_decoder(cls_name, layout, is_resp, lenient=True), _namespace)  # noqa: S102
            LENIENT_DECODERS[command_id] = _namespace[f"_decode_lenient_{cls_name}"]
        PDU_CLASSES[command_id] = cls
        globals()[cls_name] = cls


_build()

# Explicit names for readers and type checkers; the classes themselves come from _BODIES.
GenericNack: type[Pdu]
BindReceiver: type[Pdu]
BindReceiverResp: type[Pdu]
BindTransmitter: type[Pdu]
BindTransmitterResp: type[Pdu]
BindTransceiver: type[Pdu]
BindTransceiverResp: type[Pdu]
Outbind: type[Pdu]
Unbind: type[Pdu]
UnbindResp: type[Pdu]
EnquireLink: type[Pdu]
EnquireLinkResp: type[Pdu]
SubmitSm: type[Pdu]
SubmitSmResp: type[Pdu]
DeliverSm: type[Pdu]
DeliverSmResp: type[Pdu]
DataSm: type[Pdu]
DataSmResp: type[Pdu]
QuerySm: type[Pdu]
QuerySmResp: type[Pdu]
CancelSm: type[Pdu]
CancelSmResp: type[Pdu]
ReplaceSm: type[Pdu]
ReplaceSmResp: type[Pdu]
SubmitMulti: type[Pdu]
SubmitMultiResp: type[Pdu]
AlertNotification: type[Pdu]

BIND_REQUESTS = frozenset(
    {CommandId.BIND_RECEIVER, CommandId.BIND_TRANSMITTER, CommandId.BIND_TRANSCEIVER}
)


# ---------------------------------------------------------------------------------------
# Receipts read without a Pdu (what an ESME receives once per message)

# (sequence_number, esm_class, short_message, receipted_message_id, message_state): a
# deliver_sm receipt as `read_receipt` reads it; the last two None when absent.
ReceiptRead = tuple[int, int, bytes, "str | None", "int | None"]

_MESSAGE_STATE = int(Tag.MESSAGE_STATE)
assert TLV_TYPES[_MESSAGE_STATE] == _INT1
# The other TLVs a receipt may carry: skipped, when the strict decoder takes them (an
# integer tag of its size, by this table; a C-string or octets of any length). The
# receipt path reads message_payload (the text when short_message is empty): never
# skipped (-1 is no length).
_SKIPPED_TLV_SIZE: dict[int, int] = {
    tag: kind for tag, kind in TLV_TYPES.items() if kind.__class__ is int
}
_SKIPPED_TLV_SIZE[int(Tag.MESSAGE_PAYLOAD)] = -1
# esm_class values whose message type (bits 5-2, constants.ESM_CLASS_RECEIPT_MASK) says
# SMSC delivery receipt (0x04) or intermediate notification (0x20).
_RECEIPT_ESM_CLASSES = bytes(v for v in range(256) if v & 0x3C in (0x04, 0x20))
# A deliver_sm's mandatory fields up to sm_length, as the strict decoder takes them
# (service_type, source_addr and destination_addr: a NUL within 6, 21 and 21 octets), with
# a receipt's esm_class and both times empty. Matched within the frame (endpos): it reads
# nothing past it. The pattern (DOTALL) is also the start of receipt.read_receipt_outcome's.
RECEIPT_HEAD_PATTERN = (
    rb"[^\0]{0,5}\0..[^\0]{0,20}\0..[^\0]{0,20}\0"
    rb"(?=[" + b"".join(re.escape(bytes((v,))) for v in _RECEIPT_ESM_CLASSES) + rb"])"
    rb"...\0\0....."  # esm_class .. priority_flag, the times, .. sm_default_msg_id, sm_length
)
RECEIPT_HEAD = re.compile(RECEIPT_HEAD_PATTERN, re.DOTALL).match
_UNPACK_TLV_HEAD = _TLV_HEAD.unpack_from
# The message_state TLV's header: the last TLV of the usual receipt (what
# receipt.read_receipt_outcome reads by position, before declining to read_receipt).
MESSAGE_STATE_HEAD = _TLV_HEAD.pack(_MESSAGE_STATE, 1)


def read_receipt(b: bytes, p: int, end: int, seq: int) -> ReceiptRead | None:
    """The deliver_sm body b[p:end] as a `ReceiptRead`, if it is a plain delivery receipt;
    else None, and the caller decodes it (`_decode_DeliverSm`). What a gateway needs of a
    receipt, read with no Pdu, Tlv list, or str per address built.

    It reads only what the strict decoder takes, to the same values, and declines
    everything else, and the unusual: an esm_class that is not a receipt or intermediate
    notification (0x04 / 0x20 in its message type bits), a schedule_delivery_time or
    validity_period that is not empty (a deliver_sm has none), a receipted_message_id
    without its NUL, a message_payload (the receipt path reads it). Other TLVs
    (network_error_code, source_network_type, vendor tags...) are checked as the decoder
    checks them and skipped: the receipt path reads none of them. So whatever this
    returns, the strict decoder gives a DeliverSm with that esm_class and short_message,
    whose first receipted_message_id and first message_state are these (None: none), and
    no message_payload. C-strings are checked as the decoder checks them (a NUL within
    the spec maximum); sm_length and TLV lengths must fit the body exactly.

    Like the generated decoders it may be given a longer buffer (the session's read); it
    reads nothing past `end`. The session reads the usual receipt (its TLVs and text in
    their usual layout) to its outcome with `receipt.read_receipt_outcome`, which comes
    here for anything else."""
    m = RECEIPT_HEAD(b, p, end)
    if m is None:
        return None
    p = m.end()
    esm = b[p - 10]
    q = p + b[p - 1]  # sm_length
    if q >= end:
        if q > end:
            return None  # short_message runs past the body
        return (seq, esm, b[p:q], None, None)
    sm = b[p:q]
    p = q
    tlv_id = state = None
    while p < end:
        if end - p < 4:
            return None  # a partial TLV header
        tag, length = _UNPACK_TLV_HEAD(b, p)
        q = p + 4 + length
        if q > end:
            return None
        if tag == _RECEIPTED_MESSAGE_ID:
            if not length or b[q - 1]:
                return None  # no NUL: the codec keeps it unterminated
            if tlv_id is None:
                tlv_id = b[p + 4 : q - 1].decode("latin-1")
        elif tag == _MESSAGE_STATE:
            if length != 1:
                return None
            if state is None:
                state = b[p + 4]
        else:
            size = _SKIPPED_TLV_SIZE.get(tag)  # None: any length
            if size is not None and size != length:
                return None
        p = q
    return (seq, esm, sm, tlv_id, state)


class Encoded(msgspec.Struct, gc=False):
    """A PDU whose body is wire bytes already: everything after the 16-octet header, exactly
    as this codec encodes it. For senders that write the same shape many times (the
    simulator's submit_sm_resp and receipts) from a template; whoever builds one is
    responsible for the bytes matching the codec (their tests compare the two). `Session`
    sends it like any PDU: a request gets its sequence number in the header, a resend a new
    one, at the cost of one header pack. `decode()` gives the typed PDU."""

    command_id: int
    body: bytes
    sequence_number: int = 0
    command_status: int = 0

    @property
    def command_name(self) -> str:
        return CommandId(self.command_id).name.lower()

    @property
    def is_response(self) -> bool:
        return bool(self.command_id & RESPONSE_BIT)

    def encode(self) -> bytes:
        return (
            _HEADER_PACK(
                16 + len(self.body), self.command_id, self.command_status, self.sequence_number
            )
            + self.body
        )

    def decode(self) -> Pdu:
        return decode(self.encode())


_HEADER_PACK = HEADER.pack


def peek_header(b: bytes) -> tuple[int, int, int, int]:
    """(command_length, command_id, command_status, sequence_number) of the first 16 bytes."""
    return HEADER.unpack_from(b, 0)


def decode(b: bytes, max_length: int = DEFAULT_MAX_PDU_LENGTH) -> Pdu:
    """Decode exactly one whole PDU. Raises PduError on anything that is not one."""
    if len(b) < HEADER_SIZE:
        raise PduError(f"{len(b)} bytes is shorter than a PDU header", S.ESME_RINVCMDLEN)
    length, command_id, status, seq = HEADER.unpack_from(b, 0)
    if length != len(b) or length < HEADER_SIZE or length > max_length:
        raise PduError(
            f"command_length {length} does not match the {len(b)} bytes of the PDU"
            if length != len(b)
            else f"command_length {length} outside {HEADER_SIZE}..{max_length}",
            S.ESME_RINVCMDLEN,
            command_id=command_id,
            sequence_number=seq,
        )
    return decode_frame(b, length, command_id, status, seq)


def decode_frame(b: bytes, length: int, command_id: int, status: int, seq: int) -> Pdu:
    """Decode one PDU whose header the caller has read and checked already (a stream
    framer does: it needs command_length to cut the frame). `b` is exactly the PDU."""
    decoder = DECODERS.get(command_id)
    if decoder is None:
        raise PduError(
            f"unknown command_id 0x{command_id:08x}",
            S.ESME_RINVCMDID,
            command_id=command_id,
            sequence_number=seq,
        )
    return _run_decoder(decoder, b, length, command_id, status, seq)


def _run_decoder(
    decoder: Callable[..., Pdu], b: bytes, length: int, command_id: int, status: int, seq: int
) -> Pdu:
    """A generated decoder on a whole frame, its failures as PduErrors naming the frame."""
    try:
        return decoder(b, HEADER_SIZE, length, status, seq)
    except PduError as e:
        e.command_id, e.sequence_number = command_id, seq
        raise
    except (IndexError, struct.error):
        raise PduError(
            "body ends inside the mandatory fields",
            S.ESME_RINVCMDLEN,
            command_id=command_id,
            sequence_number=seq,
        ) from None


def decode_frame_lenient(b: bytes, length: int, command_id: int, status: int, seq: int) -> Pdu:
    """`decode_frame` as a receiver that follows the robustness principle: for responses
    and for deliver_sm / data_sm (what an ESME receives from a foreign SMSC), decode what a
    strict decode refuses but can still be read unambiguously:

    - C-strings have no maximum length: they run to their NUL within the body (a
      bind_*_resp system_id of 20 octets, a 70-octet message_id, a 25-digit source_addr);
    - in a response, a C-string whose NUL is missing at the very end of the body runs to
      the end (`submit_sm_resp` "abc123" without its NUL gives message_id "abc123");
    - schedule_delivery_time / validity_period / final_date of any length are kept as given;
    - a standard TLV with a non-standard length is kept as `Tlv(tag, raw bytes)`, exactly
      as an unknown tag is (`user_message_reference` in 1 octet gives `b"\x09"`, not 9);
    - a last TLV running past the end of the body keeps what is there, and 1-3 stray
      octets after the last TLV are ignored (`_decode_tlvs_lenient`).

    Framing errors in the mandatory fields (a body that ends inside a field, sm_length
    running past the end) still raise `PduError`, as does every other command (they
    decode strictly). The result may not re-encode to the same bytes (an added NUL) or at
    all (a raw value for an integer TLV, an over-long field): it is for reading. `b` is the
    frame alone (the lenient decoders are not meant to run in place in a longer buffer).
    Callers try the strict decoder first; this is the fallback on its failure."""
    decoder = LENIENT_DECODERS.get(command_id)
    if decoder is None:
        return decode_frame(b, length, command_id, status, seq)
    return _run_decoder(decoder, b, length, command_id, status, seq)


def decode_lenient(b: bytes, max_length: int = DEFAULT_MAX_PDU_LENGTH) -> Pdu:
    """`decode` with `decode_frame_lenient`'s tolerances for responses, deliver_sm and
    data_sm; the header checks are the same."""
    try:
        return decode(b, max_length)
    except PduError:
        if len(b) < HEADER_SIZE:
            raise
        length, command_id, status, seq = HEADER.unpack_from(b, 0)
        if length != len(b) or length > max_length or command_id not in LENIENT_DECODERS:
            raise
    return decode_frame_lenient(b, length, command_id, status, seq)


def unreadable_response(command_id: int, sequence_number: int, command_status: int) -> Pdu:
    """A response of type `command_id` carrying only its header: what a receiver makes of a
    response whose body it cannot read at all, so the header's command_status still decides
    the outcome of the request (first body field None, as for a body-less response)."""
    cls = PDU_CLASSES[command_id]
    fields = {cls.body_fields[0]: None} if cls.body_fields else {}
    return cls(sequence_number=sequence_number, command_status=command_status, **fields)


def response_class(command_id: int) -> type[Pdu] | None:
    """The *_resp class answering a request command_id, or None for responses/outbind/alerts."""
    if command_id & RESPONSE_BIT:
        return None
    return PDU_CLASSES.get(command_id | RESPONSE_BIT)


def error_response(command_id: int, sequence_number: int, command_status: int) -> Pdu:
    """The refusal of request `command_id`: its *_resp without a body (SMPP 3.4 omits the
    body of a response with a non-zero status), or generic_nack when the command has no
    response or is unknown."""
    cls = response_class(command_id)
    if cls is None:
        return PDU_CLASSES[CommandId.GENERIC_NACK](
            sequence_number=sequence_number, command_status=command_status
        )
    fields = {cls.body_fields[0]: None} if cls.body_fields else {}
    return cls(sequence_number=sequence_number, command_status=command_status, **fields)


def make_response(request: Pdu, command_status: int = 0, **fields: Any) -> Pdu:
    """The response to `request` with its sequence number. Raises for unanswerable commands."""
    cls = response_class(request.command_id)
    if cls is None:
        raise ValueError(f"{request.command_name} has no response")
    return cls(sequence_number=request.sequence_number, command_status=command_status, **fields)
