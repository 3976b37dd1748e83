"""Domain errors: each carries the HTTP status and the machine-readable `code` it maps to.

Services raise these and never import FastAPI; the app turns them into
`{"error": {"code": ..., "message": ..., "details": ...}}` with the status.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType


class DomainError(Exception):
    status = 400
    code = "bad_request"
    # Response headers the error needs (e.g. `Retry-After`); read-only, as subclasses share it.
    headers: Mapping[str, str] = MappingProxyType({})

    def __init__(self, message: str, **details: object):
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(DomainError):
    """Unknown id, or one the caller may not see (never leak that it exists)."""

    status = 404
    code = "not_found"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class SoldOut(Conflict):
    code = "sold_out"


class OverOrderLimit(Conflict):
    code = "over_order_limit"


class SalesClosed(Conflict):
    code = "sales_closed"


class Busy(DomainError):
    """A lock could not be had in time; the same request may simply be retried."""

    status = 503
    code = "busy"
    headers = MappingProxyType({"Retry-After": "1"})


class InvalidInput(DomainError):
    """Checked by a service, not by the schema; shaped like schema errors (`fields`)."""

    status = 422
    code = "invalid_input"

    def __init__(self, message: str, **details: object):
        field = details.get("field")
        if field is not None and "fields" not in details:
            location = ["header", field] if field == "Idempotency-Key" else ["body", field]
            details["fields"] = [{"location": location, "message": message, "type": "value_error"}]
        super().__init__(message, **details)


class Unauthorized(DomainError):
    """No valid access token, or wrong e-mail or password."""

    status = 401
    code = "unauthorized"


class Forbidden(DomainError):
    """Signed in, but the role may not do this (ownership failures are NotFound instead)."""

    status = 403
    code = "forbidden"


class HoldExpired(Conflict):
    code = "hold_expired"


class OrderNotPayable(Conflict):
    code = "order_not_payable"


class RefundTooLarge(Conflict):
    code = "refund_exceeds_paid"


class AlreadyCheckedIn(Conflict):
    code = "already_checked_in"


class TicketNotValid(Conflict):
    code = "ticket_not_valid"


class InvalidState(Conflict):
    """The object is not in a state that allows this (say, publishing a cancelled event)."""

    code = "invalid_state"


class IdempotencyKeyReused(DomainError):
    status = 422
    code = "idempotency_key_reused"


class RequestInProgress(Conflict):
    """The same Idempotency-Key is still being served; retry shortly for its answer."""

    code = "request_in_progress"


class InvalidSignature(DomainError):
    status = 400
    code = "invalid_signature"


class PaymentProviderError(DomainError):
    """The processor could not be reached or answered with an error of its own."""

    status = 502
    code = "payment_provider_error"
