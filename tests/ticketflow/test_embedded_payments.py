"""The embedded payment processor: localstripe, driven by the real stripe SDK."""

from __future__ import annotations

import pickle

import httpx
import pytest
import stripe

from ticketflow.embedded.payments.fake_stripe import card_fee
from ticketflow.services import service_named
from ticketflow.supervisor import run_services


def _client(settings) -> stripe.StripeClient:
    return stripe.StripeClient(
        settings.effective_stripe_api_key,
        base_addresses={"api": settings.stripe_api_base},
        max_network_retries=0,
    )


def _pay(client: stripe.StripeClient, amount: int):
    return client.v1.payment_intents.create(
        params={
            "amount": amount,
            "currency": "eur",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "expand": ["latest_charge.balance_transaction"],
        }
    )


def test_payment_has_stripe_card_fee_and_refund_returns_none_of_it(payments):
    client = _client(payments)
    intent = _pay(client, 10_000)
    assert intent.status == "succeeded"
    txn = intent.latest_charge.balance_transaction
    assert (txn.amount, txn.fee, txn.net) == (10_000, 320, 9_680)  # 2.9 % + 30
    assert txn.fee_details[0].type == "stripe_fee"

    refund = client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 2_500})
    assert refund.status == "succeeded"
    charge = client.v1.charges.retrieve(intent.latest_charge.id)
    assert (charge.amount_refunded, charge.refunded) == (2_500, False)
    history = client.v1.balance_transactions.list(params={"limit": 100})
    refund_txn = next(t for t in history.data if t.source == refund.id)
    assert (refund_txn.amount, refund_txn.fee, refund_txn.net) == (-2_500, 0, -2_500)


def test_refunds_cannot_exceed_what_was_paid(payments):
    client = _client(payments)
    intent = _pay(client, 1_000)
    client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 800})
    with pytest.raises(stripe.InvalidRequestError, match="greater than unrefunded amount"):
        client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 800})
    rest = client.v1.refunds.create(params={"payment_intent": intent.id})  # what is left
    assert rest.amount == 200
    with pytest.raises(stripe.InvalidRequestError, match="already been refunded"):
        client.v1.refunds.create(params={"payment_intent": intent.id})


def test_card_fee_rounds_half_up_in_minor_units():
    assert card_fee(1_000) == 59  # 29.0 + 30
    assert card_fee(1_017) == 59  # 29.493 -> 29
    assert card_fee(1_018) == 60  # 29.522 -> 30


def test_payments_survive_a_stop_and_start(private_settings):
    payments = service_named(private_settings, "payments")
    base = private_settings.stripe_api_base
    with run_services(private_settings, [payments]):
        client = _client(private_settings)
        intent = _pay(client, 4_200)
        client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 1_000})
        hook = {"url": "http://127.0.0.1:9/hook", "secret": "whsec_x", "events[]": "*"}
        response = httpx.post(f"{base}/_config/webhooks/main", data=hook)
        assert response.status_code == 200
    with run_services(private_settings, [payments]):
        client = _client(private_settings)
        again = client.v1.payment_intents.retrieve(intent.id)
        assert (again.status, again.amount) == ("succeeded", 4_200)
        charge = client.v1.charges.retrieve(again.latest_charge.id)
        assert charge.amount_refunded == 1_000  # the refund index was rebuilt
        with pytest.raises(stripe.InvalidRequestError, match="greater than unrefunded"):
            client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 4_000})

    state = pickle.loads(
        (private_settings.data_path / "payments" / "localstripe.pickle").read_bytes()
    )
    assert "main" in state["webhooks"]  # localstripe keeps these outside its store
    assert (private_settings.data_path / "payments" / "localstripe.pickle").exists()
