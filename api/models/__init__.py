"""SQLAlchemy models; importing this package registers every table on `Base.metadata`."""

from api.models.accounts import Organizer, OrganizerMember, Role, User
from api.models.base import Base
from api.models.catalog import (
    DiscountKind,
    Event,
    EventMedia,
    EventStatus,
    PromoCode,
    Quota,
    TicketType,
    Venue,
    quota_ticket_types,
)
from api.models.money import (
    IdempotencyKey,
    LedgerEntry,
    LedgerKind,
    Payment,
    PaymentStatus,
    ProcessedWebhook,
    Refund,
    RefundStatus,
)
from api.models.sales import (
    HOLDING_STATUSES,
    CheckIn,
    Order,
    OrderItem,
    OrderStatus,
    Ticket,
    TicketStatus,
    TicketTypeSales,
)

__all__ = [
    "HOLDING_STATUSES",
    "Base",
    "CheckIn",
    "DiscountKind",
    "Event",
    "EventMedia",
    "EventStatus",
    "IdempotencyKey",
    "LedgerEntry",
    "LedgerKind",
    "Order",
    "OrderItem",
    "OrderStatus",
    "Organizer",
    "OrganizerMember",
    "Payment",
    "PaymentStatus",
    "ProcessedWebhook",
    "PromoCode",
    "Quota",
    "Refund",
    "RefundStatus",
    "Role",
    "Ticket",
    "TicketStatus",
    "TicketType",
    "TicketTypeSales",
    "User",
    "Venue",
    "quota_ticket_types",
]
