"""Domain errors: each carries the HTTP status and the machine-readable `code` it maps to.

Services raise these and never import FastAPI; the app turns them into
`{"error": {"code": ..., "message": ..., "details": ...}}` with the status.
"""

from __future__ import annotations


class DomainError(Exception):
    status = 400
    code = "bad_request"

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


class InvalidInput(DomainError):
    status = 422
    code = "invalid_input"
