"""`--record FILE`: every received submit_sm (and submit_multi / data_sm) as one JSON line.

The file is test evidence of what a client sent, so addresses are written in full (unlike
log lines, which are masked). Lines are buffered and flushed every second and on close.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from gateway.smpp.constants import ESM_CLASS_UDHI, status_name
from gateway.smpp.text import decode_short_message
from simulators.smsc.receipts import user_data


class Recorder:
    def __init__(self, path: str) -> None:
        self.path = path
        self._file = open(path, "ab", buffering=1 << 20)  # noqa: SIM115 - closed in close()
        self._enc = msgspec.json.Encoder()
        self.lines = 0

    def write(self, account: str, pdu: Any, status: int | None, message_id: str | None) -> None:
        """One line; `status` None means the simulator did not answer (never_answer)."""
        data = user_data(pdu)
        udh, text = decode_short_message(
            data, pdu.data_coding, bool(pdu.esm_class & ESM_CLASS_UDHI)
        )
        rec: dict[str, Any] = {
            "t": round(time.time(), 6),
            "account": account,
            "command": pdu.command_name,
            "sequence_number": pdu.sequence_number,
            "status": "NO_RESPONSE" if status is None else status_name(status),
            "message_id": message_id,
            "service_type": pdu.service_type,
            "source_addr_ton": pdu.source_addr_ton,
            "source_addr_npi": pdu.source_addr_npi,
            "source_addr": pdu.source_addr,
            "esm_class": pdu.esm_class,
            "registered_delivery": pdu.registered_delivery,
            "data_coding": pdu.data_coding,
            "short_message": data.hex(),
            "udh": udh.hex() if udh else None,
            "text": text,
            "tlvs": [
                {"tag": t.tag, "value": t.value.hex() if isinstance(t.value, bytes) else t.value}
                for t in pdu.tlvs
            ],
        }
        if hasattr(pdu, "dest_addresses"):
            rec["dest_addresses"] = [d.address or d.dl_name for d in pdu.dest_addresses]
        else:
            rec["dest_addr_ton"] = pdu.dest_addr_ton
            rec["dest_addr_npi"] = pdu.dest_addr_npi
            rec["destination_addr"] = pdu.destination_addr
        self._file.write(self._enc.encode(rec) + b"\n")
        self.lines += 1

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
