"""The gateway's typed errors. Each has a machine-readable `code`, mapped once to an HTTP
status (tenant/admin API) and an SMPP command_status (for anything answered over SMPP).

Protocol-level errors live in gateway.smpp.errors; this hierarchy is for business and
operational errors above it.
"""

from __future__ import annotations

from gateway.smpp.constants import CommandStatus


class GatewayError(Exception):
    code: str = "internal_error"
    http_status: int = 500
    smpp_status: int = CommandStatus.ESME_RSYSERR

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ConfigError(GatewayError):
    """A config file that cannot be used. `path` is the JSON path of the bad value."""

    code = "invalid_config"
    http_status = 400

    def __init__(self, message: str, path: str = "$", file: str | None = None) -> None:
        where = f"{file}: " if file else ""
        super().__init__(f"{where}{message} at `{path}`" if path else f"{where}{message}")
        self.path = path
        self.file = file
        self.reason = message


class BadRequest(GatewayError):
    code = "bad_request"
    http_status = 400
    smpp_status = CommandStatus.ESME_RINVPARLEN


class InvalidBody(BadRequest):
    code = "invalid_body"
    http_status = 422


class Unauthorized(GatewayError):
    code = "unauthorized"
    http_status = 401
    smpp_status = CommandStatus.ESME_RINVPASWD


class Forbidden(GatewayError):
    code = "forbidden"
    http_status = 403
    smpp_status = CommandStatus.ESME_RX_R_APPN


class NotFound(GatewayError):
    code = "not_found"
    http_status = 404
    smpp_status = CommandStatus.ESME_RINVMSGID


class Conflict(GatewayError):
    code = "conflict"
    http_status = 409


class PayloadTooLarge(GatewayError):
    code = "payload_too_large"
    http_status = 413
    smpp_status = CommandStatus.ESME_RINVMSGLEN


class RateLimited(GatewayError):
    code = "rate_limited"
    http_status = 429
    smpp_status = CommandStatus.ESME_RTHROTTLED


class QuotaExceeded(RateLimited):
    code = "quota_exceeded"


class NoRoute(GatewayError):
    code = "no_route"
    http_status = 422
    smpp_status = CommandStatus.ESME_RINVDSTADR


class MessageRejected(GatewayError):
    """Refused by a business rule (category not allowed, text not encodable, ...)."""

    code = "message_rejected"
    http_status = 422
    smpp_status = CommandStatus.ESME_RX_P_APPN


class Unavailable(GatewayError):
    code = "unavailable"
    http_status = 503
    smpp_status = CommandStatus.ESME_RX_T_APPN


class MethodNotAllowed(GatewayError):
    code = "method_not_allowed"
    http_status = 405
