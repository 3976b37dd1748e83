"""Stripe, through the official SDK: the only module that imports `stripe`.

In the embedded default the SDK talks to the local fake processor (`ticketflow up payments`);
with `STRIPE_API_KEY` set it talks to Stripe. Retries are off: a failed call surfaces as
`PaymentProviderError` and the caller's own retry (with the same idempotency key) is safe.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from urllib.parse import urlsplit

import requests
import stripe

from api.errors import InvalidInput, InvalidSignature, PaymentProviderError
from api.payments.provider import (
    ProcessorRefused,
    ProviderDispute,
    ProviderPayment,
    ProviderRefund,
    ProviderStatus,
    WebhookEvent,
    WebhookKind,
)
from ticketflow.settings import Settings

_KINDS = {
    "payment_intent.succeeded": WebhookKind.PAYMENT_SUCCEEDED,
    "payment_intent.payment_failed": WebhookKind.PAYMENT_FAILED,
    "charge.refunded": WebhookKind.REFUNDED,
    "charge.dispute.created": WebhookKind.DISPUTE_OPENED,
}
# The event types a webhook endpoint for this API needs (it answers others "ignored").
WEBHOOK_EVENTS = tuple(_KINDS)
_EXPAND = ["latest_charge.balance_transaction"]
_REFUND_STATUS = {
    "succeeded": ProviderStatus.SUCCEEDED,
    "failed": ProviderStatus.FAILED,
    "canceled": ProviderStatus.FAILED,
}
# Names our payments among everything on the account: a payment without it (another app's,
# one made in Stripe's dashboard) is never taken for one of our orders.
ORDER_METADATA_KEY = "ticketflow_order_id"


def _field(obj: dict | str | None, name: str):
    """A key of a (plain-dict) Stripe object; None for a missing or unexpanded object."""
    return obj.get(name) if isinstance(obj, dict) else None


def _order_id(intent) -> int | None:
    value = (_field(intent, "metadata") or {}).get(ORDER_METADATA_KEY)
    return int(value) if value and str(value).isdigit() else None


def _status(stripe_status: str, *, declined: bool) -> ProviderStatus:
    """`requires_payment_method` is both "not confirmed yet" and "declined, try another card":
    the last payment error tells them apart."""
    if stripe_status == "succeeded":
        return ProviderStatus.SUCCEEDED
    if stripe_status == "canceled" or declined:
        return ProviderStatus.FAILED
    return ProviderStatus.PENDING


def _payment(intent: dict) -> ProviderPayment:
    charge = _field(intent, "latest_charge")
    txn = _field(charge, "balance_transaction")  # an id unless expanded
    error = _field(intent, "last_payment_error")
    return ProviderPayment(
        id=_field(intent, "id"),
        order_id=_order_id(intent),
        status=_status(_field(intent, "status"), declined=error is not None),
        amount_minor=int(_field(intent, "amount")),
        currency=str(_field(intent, "currency")).upper(),
        charge_id=charge if isinstance(charge, str) else _field(charge, "id"),
        balance_transaction_id=txn if isinstance(txn, str) else _field(txn, "id"),
        fee_minor=None if _field(txn, "fee") is None else int(txn["fee"]),
        failure_code=_field(error, "code") or _field(error, "decline_code"),
        client_secret=_field(intent, "client_secret"),
    )


def _refund(refund) -> ProviderRefund:
    return ProviderRefund(
        id=_field(refund, "id"),
        payment_id=_field(refund, "payment_intent"),
        amount_minor=int(_field(refund, "amount")),
        currency=str(_field(refund, "currency")).upper(),
        status=_REFUND_STATUS.get(_field(refund, "status"), ProviderStatus.PENDING),
    )


def _dispute(dispute: dict) -> ProviderDispute:
    """Stripe takes the disputed amount and a dispute fee at once, in the dispute's
    balance transactions."""
    txns = dispute.get("balance_transactions") or []
    return ProviderDispute(
        id=dispute["id"],
        payment_id=dispute["payment_intent"],
        amount_minor=int(dispute["amount"]),
        fee_minor=sum(int(t.get("fee", 0)) for t in txns if isinstance(t, dict)),
        currency=str(dispute["currency"]).upper(),
    )


def _loopback_client() -> stripe.HTTPClient:
    """The SDK's requests client for a processor on this machine (the embedded one). No proxy
    applies to a loopback address, so it does not look for one in the environment, which
    requests does on every call (a third of the SDK's CPU per payment here); one pool serves
    every worker thread."""
    session = requests.Session()
    session.trust_env = False
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=64))
    return stripe.RequestsClient(session=session)


class StripeProvider:
    name = "stripe"

    def __init__(self, api_key: str, api_base: str | None, webhook_secret: str):
        addresses = {"api": api_base} if api_base else {}
        options = {}
        if api_base and urlsplit(api_base).hostname in ("127.0.0.1", "localhost", "::1"):
            options["http_client"] = _loopback_client()
        self._client = stripe.StripeClient(
            api_key, base_addresses=addresses, max_network_retries=0, **options
        )
        self._webhook_secret = webhook_secret

    def create_payment(
        self,
        *,
        order_id: int,
        amount_minor: int,
        currency: str,
        payment_method: str | None,
        idempotency_key: str,
    ) -> ProviderPayment:
        params = {
            "amount": amount_minor,
            "currency": currency.lower(),
            "metadata": {ORDER_METADATA_KEY: str(order_id)},
            "expand": _EXPAND,
        }
        if payment_method:
            params |= {"payment_method": payment_method, "confirm": True}
        try:
            # The SDK's request, answered as plain JSON: building its objects for the intent,
            # its charge and balance transaction costs the caller more CPU than the call.
            intent = self._client.raw_request(
                "post", "/v1/payment_intents", **params, idempotency_key=idempotency_key
            ).data
        except stripe.CardError as exc:
            # A decline: the intent exists and says why; report it as a failed payment.
            intent = self._retrieve_after_error(exc)
        except stripe.InvalidRequestError as exc:
            raise InvalidInput(
                f"the processor refused the request: {exc.user_message}", field="payment_method"
            ) from exc
        except stripe.StripeError as exc:
            raise PaymentProviderError(f"Stripe refused the payment: {exc.user_message}") from exc
        return _payment(intent)

    def _retrieve_after_error(self, exc: stripe.CardError) -> dict:
        intent = _field(exc.error.to_dict() if exc.error else None, "payment_intent")
        if intent is None:
            raise PaymentProviderError(f"the card was declined: {exc.user_message}") from exc
        return self._client.v1.payment_intents.retrieve(
            _field(intent, "id"), params={"expand": _EXPAND}
        ).to_dict()

    def retrieve_payment(self, payment_id: str) -> ProviderPayment:
        try:
            intent = self._client.v1.payment_intents.retrieve(
                payment_id, params={"expand": _EXPAND}
            )
        except stripe.StripeError as exc:
            raise PaymentProviderError(f"could not read the payment: {exc.user_message}") from exc
        return _payment(intent.to_dict())

    def refund(self, *, payment_id: str, amount_minor: int, idempotency_key: str) -> ProviderRefund:
        try:
            refund = self._client.v1.refunds.create(
                params={"payment_intent": payment_id, "amount": amount_minor},
                options={"idempotency_key": idempotency_key},
            )
        except (stripe.InvalidRequestError, stripe.CardError) as exc:
            raise ProcessorRefused(f"Stripe refused the refund: {exc.user_message}") from exc
        except stripe.StripeError as exc:  # unreachable or unclear: it may have happened
            raise PaymentProviderError(f"Stripe did not confirm the refund: {exc}") from exc
        return _refund(refund.to_dict())

    def parse_webhook(self, payload: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        # The SDK's own check of the signature and its age (what `Webhook.construct_event`
        # does), then plain JSON: the SDK's event objects cost more than the rest of the
        # webhook's handling.
        signature = headers.get("stripe-signature", "")
        try:
            stripe.WebhookSignature.verify_header(
                payload, signature, self._webhook_secret, stripe.Webhook.DEFAULT_TOLERANCE
            )
            event = json.loads(payload)
            event_id, event_type, obj = event["id"], event["type"], event["data"]["object"]
        except (stripe.SignatureVerificationError, ValueError, KeyError, TypeError) as exc:
            raise InvalidSignature("the webhook signature does not verify") from exc
        kind = _KINDS.get(event_type, WebhookKind.IGNORED)
        if kind in (WebhookKind.PAYMENT_SUCCEEDED, WebhookKind.PAYMENT_FAILED):
            return WebhookEvent(event_id, event_type, kind, payment=_payment(obj))
        if kind == WebhookKind.REFUNDED:
            refunds = tuple(
                _refund(r | {"payment_intent": obj.get("payment_intent")})
                for r in (obj.get("refunds") or {}).get("data", [])
            )
            return WebhookEvent(event_id, event_type, kind, refunds=refunds)
        if kind == WebhookKind.DISPUTE_OPENED:
            return WebhookEvent(event_id, event_type, kind, dispute=_dispute(obj))
        return WebhookEvent(event_id, event_type, kind)


@lru_cache(maxsize=4)
def _provider(api_key: str, api_base: str | None, webhook_secret: str) -> StripeProvider:
    return StripeProvider(api_key, api_base, webhook_secret)


def provider_for(settings: Settings) -> StripeProvider:
    return _provider(
        settings.effective_stripe_api_key,
        settings.stripe_api_base,
        settings.effective_webhook_secret,
    )
