"""Typed errors of the protocol layer. Each carries the command_status to answer with."""

from __future__ import annotations

from gateway.smpp.constants import CommandStatus, status_name


class SmppError(Exception):
    """Base of every error raised by gateway.smpp."""

    code: str = "smpp_error"


class PduError(SmppError):
    """Bytes that are not a valid SMPP 3.4 PDU.

    `command_status` is what an SMSC/ESME should answer (generic_nack or the *_resp);
    `command_id` / `sequence_number` are filled when the header could be read, so the answer
    can echo them.
    """

    code = "invalid_pdu"

    def __init__(
        self,
        message: str,
        command_status: int = CommandStatus.ESME_RSYSERR,
        *,
        command_id: int | None = None,
        sequence_number: int | None = None,
    ) -> None:
        super().__init__(f"{message} ({status_name(command_status)})")
        self.reason = message
        self.command_status = int(command_status)
        self.command_id = command_id
        self.sequence_number = sequence_number


class ProtocolError(SmppError):
    """A well-formed PDU that is not allowed here (wrong bind state, unexpected response)."""

    code = "protocol_violation"

    def __init__(self, message: str, command_status: int = CommandStatus.ESME_RINVBNDSTS) -> None:
        super().__init__(f"{message} ({status_name(command_status)})")
        self.command_status = int(command_status)
