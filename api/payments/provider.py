"""What the order logic needs from a payment processor, in the processor's neutral terms.

`services/payments.py` speaks only this interface; `stripe_provider.py` is the one module that
imports `stripe`. A second processor (PayPal, say) is one more module implementing
`PaymentProvider`, with nothing in the order logic changed.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


class ProviderStatus(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PENDING = "pending"  # the buyer still has to act (3-D Secure, a wallet...)


@dataclass(frozen=True)
class ProviderPayment:
    id: str
    order_id: int | None  # from the metadata we attached
    status: ProviderStatus
    amount_minor: int
    currency: str  # upper-case ISO 4217
    charge_id: str | None = None
    balance_transaction_id: str | None = None
    fee_minor: int | None = None
    failure_code: str | None = None
    client_secret: str | None = None  # for a front end that confirms the payment itself


@dataclass(frozen=True)
class ProviderRefund:
    id: str
    payment_id: str
    amount_minor: int
    currency: str
    status: ProviderStatus  # PENDING: the processor has not finished it yet


@dataclass(frozen=True)
class ProviderDispute:
    id: str
    payment_id: str
    amount_minor: int  # taken back from us
    fee_minor: int  # the processor's dispute fee
    currency: str


class WebhookKind(enum.StrEnum):
    PAYMENT_SUCCEEDED = "payment_succeeded"
    PAYMENT_FAILED = "payment_failed"
    REFUNDED = "refunded"  # one or more refunds on a payment (made here or at the processor)
    DISPUTE_OPENED = "dispute_opened"
    IGNORED = "ignored"


@dataclass(frozen=True)
class WebhookEvent:
    id: str
    type: str  # the processor's own name for it
    kind: WebhookKind
    payment: ProviderPayment | None = None
    refunds: tuple[ProviderRefund, ...] = ()
    dispute: ProviderDispute | None = None


class ProcessorRefused(Exception):
    """The processor answered and said no: nothing happened there, so it is final."""


class PaymentProvider(Protocol):
    name: str

    def create_payment(
        self,
        *,
        order_id: int,
        amount_minor: int,
        currency: str,
        payment_method: str | None,
        idempotency_key: str,
    ) -> ProviderPayment:
        """Create (and, given a payment method, confirm) a payment for the order."""
        ...

    def retrieve_payment(self, payment_id: str) -> ProviderPayment: ...

    def refund(
        self, *, payment_id: str, amount_minor: int, idempotency_key: str
    ) -> ProviderRefund: ...

    def parse_webhook(self, payload: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        """Verify the signature and translate; raises InvalidSignature when it does not hold."""
        ...
