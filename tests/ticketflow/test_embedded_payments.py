"""The embedded payment processor: localstripe, driven by the real stripe SDK."""

from __future__ import annotations

import asyncio
import json
import pickle
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import stripe
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from localstripe import server

from ticketflow.embedded.payments import fake_stripe
from ticketflow.embedded.payments.fake_stripe import DISPUTE_FEE, card_fee
from ticketflow.services import service_named
from ticketflow.supervisor import run_services


def _client(settings, api_key: str | None = None) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key or settings.effective_stripe_api_key,
        base_addresses={"api": settings.stripe_api_base},
        max_network_retries=0,
    )


def _pay(client: stripe.StripeClient, amount: int, payment_method: str = "pm_card_visa", **opts):
    return client.v1.payment_intents.create(
        params={
            "amount": amount,
            "currency": "eur",
            "payment_method": payment_method,
            "confirm": True,
            "expand": ["latest_charge.balance_transaction"],
        },
        options=opts,
    )


def _eventually(check: Callable[[], object], timeout: float = 10.0):
    """Poll until `check()` is truthy: disputes open a moment after their payment."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return result


class _Hooks:
    """A webhook endpoint on 127.0.0.1 that keeps each delivery whose signature verifies."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.received: list[tuple[float, str, stripe.Event]] = []  # (monotonic, header, event)
        self.rejected: list[str] = []
        self._changed = threading.Condition()

    def deliver(self, body: bytes, signature: str) -> int:
        try:
            event = stripe.Webhook.construct_event(body, signature, self.secret)
        except (ValueError, stripe.SignatureVerificationError) as error:
            self.rejected.append(str(error))
            return 400
        with self._changed:
            self.received.append((time.monotonic(), signature, event))
            self._changed.notify_all()
        return 200

    def wait_for(
        self, type: str, timeout: float = 10.0, **fields
    ) -> tuple[float, str, stripe.Event]:
        """The first delivery of `type` whose data.object has these field values."""

        def match():
            for received in self.received:
                event = received[2]
                obj = event.data.object
                if event.type == type and all(
                    getattr(obj, k, None) == v for k, v in fields.items()
                ):
                    return received
            return None

        with self._changed:
            found = self._changed.wait_for(match, timeout)
        assert found, f"no {type} {fields} within {timeout} s; rejected: {self.rejected}"
        return found


@pytest.fixture
def webhook_endpoint(payments) -> Iterator[Callable[..., _Hooks]]:
    """Register endpoints (for the given event types) served by a local receiver."""
    base = payments.stripe_api_base
    started: list[tuple[str, ThreadingHTTPServer]] = []

    def listen(*events: str) -> _Hooks:
        hooks = _Hooks(secret=f"whsec_{uuid.uuid4().hex}")

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(hooks.deliver(body, self.headers["Stripe-Signature"]))
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        receiver = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=receiver.serve_forever, daemon=True).start()
        hook_id = uuid.uuid4().hex
        form = {
            "url": f"http://127.0.0.1:{receiver.server_port}/stripe",
            "secret": hooks.secret,
            "events[]": list(events),
        }
        assert httpx.post(f"{base}/_config/webhooks/{hook_id}", data=form).status_code == 200
        started.append((hook_id, receiver))
        return hooks

    yield listen
    for hook_id, receiver in started:
        assert httpx.delete(f"{base}/_config/webhooks/{hook_id}").status_code == 200
        receiver.shutdown()
        receiver.server_close()


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
        intent = _pay(client, 4_200, idempotency_key="order-42")
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
        assert _pay(client, 4_200, idempotency_key="order-42").id == intent.id  # key kept
        with pytest.raises(stripe.InvalidRequestError, match="greater than unrefunded"):
            client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 4_000})

    state = pickle.loads(
        (private_settings.data_path / "payments" / "localstripe.pickle").read_bytes()
    )
    assert "main" in state["webhooks"]  # localstripe keeps these outside its store
    assert (private_settings.data_path / "payments" / "localstripe.pickle").exists()


# --- webhooks on refunds -----------------------------------------------------------------------
def test_refund_sends_charge_refunded_with_the_refunded_charge(payments, webhook_endpoint):
    hooks = webhook_endpoint("charge.refunded", "refund.created")
    client = _client(payments)
    intent = _pay(client, 5_000)
    charge_id = intent.latest_charge.id

    asked = time.monotonic()
    refund = client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 1_200})
    received, signature, event = hooks.wait_for("charge.refunded", id=charge_id)

    charge = event.data.object
    assert (charge.object, charge.amount_refunded, charge.refunded) == ("charge", 1_200, False)
    assert [r.id for r in charge.refunds.data] == [refund.id]
    assert received - asked >= 0.9  # localstripe sleeps 1 s before each delivery
    assert signature.startswith(f"t={event.created},v1=")  # signed with the event's time
    _, _, refund_event = hooks.wait_for("refund.created", id=refund.id)
    assert (refund_event.data.object.amount, refund_event.data.object.payment_intent) == (
        1_200,
        intent.id,
    )
    assert hooks.rejected == []


def test_webhooks_are_sent_concurrently_each_about_a_second_later(payments, webhook_endpoint):
    hooks = webhook_endpoint("payment_intent.succeeded")
    client = _client(payments)
    asked = time.monotonic()
    intents = [_pay(client, 1_000 + n) for n in range(5)]
    arrivals = [hooks.wait_for("payment_intent.succeeded", id=i.id)[0] for i in intents]
    assert min(arrivals) - asked >= 0.9
    assert max(arrivals) - min(arrivals) < 0.9  # one task per event, not one after another


# --- declined cards ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("payment_method", "code", "decline_code"),
    [
        ("pm_card_visa_chargeDeclined", "card_declined", "generic_decline"),
        ("pm_card_chargeDeclined", "card_declined", "generic_decline"),
        ("pm_card_visa_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
        ("pm_card_visa_chargeDeclinedLostCard", "card_declined", "lost_card"),
        ("pm_card_visa_chargeDeclinedStolenCard", "card_declined", "stolen_card"),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
        ("pm_card_chargeDeclinedIncorrectCvc", "incorrect_cvc", "incorrect_cvc"),
        ("pm_card_chargeDeclinedProcessingError", "processing_error", "processing_error"),
        ("pm_card_chargeCustomerFail", "card_declined", "generic_decline"),
    ],
)
def test_declined_card_fails_the_intent_as_stripe_does(
    payments, payment_method, code, decline_code
):
    client = _client(payments)
    with pytest.raises(stripe.CardError) as caught:
        _pay(client, 1_000, payment_method)

    error = caught.value.error
    assert (error.type, error.code, error.decline_code) == ("card_error", code, decline_code)
    intent = client.v1.payment_intents.retrieve(error.payment_intent.id)
    assert intent.status == "requires_payment_method"
    assert intent.last_payment_error.decline_code == decline_code
    assert (intent.latest_charge.status, intent.latest_charge.failure_code) == ("failed", code)
    assert intent.latest_charge.balance_transaction is None  # no money moved, no fee


def test_declined_payment_sends_payment_failed(payments, webhook_endpoint):
    hooks = webhook_endpoint("payment_intent.payment_failed")
    client = _client(payments)
    with pytest.raises(stripe.CardError) as caught:
        _pay(client, 1_000, "pm_card_visa_chargeDeclinedInsufficientFunds")

    intent_id = caught.value.error.payment_intent.id
    _, _, event = hooks.wait_for("payment_intent.payment_failed", id=intent_id)
    assert event.data.object.status == "requires_payment_method"
    assert event.data.object.last_payment_error.decline_code == "insufficient_funds"


# --- disputes ------------------------------------------------------------------------------------
def test_dispute_card_is_charged_back_with_the_dispute_fee(payments, webhook_endpoint):
    hooks = webhook_endpoint("charge.dispute.created")
    client = _client(payments)
    intent = _pay(client, 8_000, "pm_card_createDispute")
    charge_id = intent.latest_charge.id
    assert (intent.status, intent.latest_charge.disputed) == ("succeeded", False)

    _, _, event = hooks.wait_for("charge.dispute.created", charge=charge_id)
    dispute = event.data.object
    assert dispute.id.startswith("du_")
    assert (dispute.object, dispute.amount, dispute.currency, dispute.payment_intent) == (
        "dispute",
        8_000,
        "eur",
        intent.id,
    )
    assert (dispute.reason, dispute.status) == ("fraudulent", "needs_response")
    [txn] = dispute.balance_transactions
    assert (txn.type, txn.reporting_category, txn.source) == ("adjustment", "dispute", dispute.id)
    assert (txn.amount, txn.fee, txn.net) == (-8_000, DISPUTE_FEE, -8_000 - DISPUTE_FEE)
    assert [(f.type, f.amount) for f in txn.fee_details] == [("stripe_fee", DISPUTE_FEE)]
    assert client.v1.balance_transactions.retrieve(txn.id).reporting_category == "dispute"
    assert client.v1.charges.retrieve(charge_id).disputed is True
    with pytest.raises(stripe.InvalidRequestError, match="charged back"):
        client.v1.refunds.create(params={"payment_intent": intent.id})


def test_disputes_are_served_to_the_sdk_with_filters_and_pages(payments, monkeypatch):
    client = _client(payments)
    since = int(time.time())
    intents = [_pay(client, 2_000 + n, "pm_card_createDispute") for n in range(3)]
    charge_ids = [i.latest_charge.id for i in intents]
    ours = lambda listing: [d for d in listing.data if d.charge in charge_ids]  # noqa: E731
    _eventually(lambda: len(ours(client.v1.disputes.list(params={"limit": 100}))) == 3)

    by_charge = client.v1.disputes.list(params={"charge": charge_ids[1]})
    assert [d.payment_intent for d in by_charge.data] == [intents[1].id]
    by_intent = client.v1.disputes.list(params={"payment_intent": intents[2].id})
    assert [d.charge for d in by_intent.data] == [charge_ids[2]]
    assert client.v1.disputes.list(params={"created": {"gt": since + 3600}}).data == []
    recent = client.v1.disputes.list(params={"created": {"gte": since}, "limit": 100})
    assert [d.charge for d in ours(recent)] == charge_ids[::-1]  # newest first

    first = client.v1.disputes.list(params={"created": {"gte": since}, "limit": 2})
    second = client.v1.disputes.list(
        params={"created": {"gte": since}, "limit": 2, "starting_after": first.data[-1].id}
    )
    assert first.has_more
    assert {d.id for d in first.data}.isdisjoint(d.id for d in second.data)

    # The module-level style the API may use works as well.
    monkeypatch.setattr(stripe, "api_key", payments.effective_stripe_api_key)
    monkeypatch.setattr(stripe, "api_base", payments.stripe_api_base)
    dispute = stripe.Dispute.list(charge=charge_ids[0]).data[0]
    assert stripe.Dispute.retrieve(dispute.id).amount == 2_000


# --- balance transactions ------------------------------------------------------------------------
def test_balance_history_is_newest_first_with_categories_and_fees(payments):
    client = _client(payments)
    since = int(time.time())
    intent = _pay(client, 3_000)
    refund = client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 500})

    history = client.v1.balance_transactions.list(params={"created": {"gte": since}, "limit": 100})
    mine = [t for t in history.data if t.source in (intent.latest_charge.id, refund.id)]
    assert [(t.type, t.reporting_category) for t in mine] == [
        ("refund", "refund"),
        ("charge", "charge"),
    ]
    for txn in mine:
        assert txn.fee == sum(f.amount for f in txn.fee_details)
        assert txn.net == txn.amount - txn.fee
    refunds_only = client.v1.balance_transactions.list(params={"type": "refund", "limit": 100})
    assert {t.type for t in refunds_only.data} == {"refund"}
    assert client.v1.balance_transactions.list(params={"created": {"gt": since + 3600}}).data == []


# --- idempotency ---------------------------------------------------------------------------------
def _total(client: stripe.StripeClient, kind: str) -> int:
    return getattr(client.v1, kind).list(params={"limit": 1}).total_count


def test_a_repeated_idempotency_key_replays_the_first_response(payments):
    client = _client(payments)
    key = f"order-{uuid.uuid4()}"
    first = _pay(client, 1_500, idempotency_key=key)
    counts = {kind: _total(client, kind) for kind in ("payment_intents", "balance_transactions")}

    again = _pay(client, 1_500, idempotency_key=key)
    assert again.id == first.id
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert {kind: _total(client, kind) for kind in counts} == counts  # nothing new was made

    with pytest.raises(stripe.IdempotencyError, match="same parameters"):
        _pay(client, 1_501, idempotency_key=key)
    other_account = _client(payments, api_key="sk_test_another_account")
    assert _pay(other_account, 1_500, idempotency_key=key).id != first.id  # keys are per API key


def test_an_idempotent_refund_or_decline_happens_once(payments):
    client = _client(payments)
    intent = _pay(client, 2_000)
    params = {"payment_intent": intent.id, "amount": 700}
    refunds = [client.v1.refunds.create(params=params, options={"idempotency_key": "r1"})]
    refunds.append(client.v1.refunds.create(params=params, options={"idempotency_key": "r1"}))
    assert refunds[0].id == refunds[1].id
    assert client.v1.charges.retrieve(intent.latest_charge.id).amount_refunded == 700

    declined = []
    for _ in range(2):
        with pytest.raises(stripe.CardError) as caught:
            _pay(client, 1_000, "pm_card_visa_chargeDeclined", idempotency_key="d1")
        declined.append(caught.value)
    assert declined[0].error.payment_intent.id == declined[1].error.payment_intent.id
    assert declined[1].headers["Idempotent-Replayed"] == "true"


def test_a_key_in_use_by_a_request_still_running_is_refused():
    """Stock handlers never yield mid-request, so this needs a handler of its own."""

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.2)
        return web.json_response({"id": "pi_slow"})

    async def scenario() -> list[int]:
        app = web.Application(middlewares=[server.error_middleware, fake_stripe._idempotency])
        app.router.add_post("/v1/payment_intents", slow)
        headers = {"Authorization": "Bearer sk_test_x", "Idempotency-Key": uuid.uuid4().hex}
        async with TestClient(TestServer(app)) as http:
            post = lambda: http.post("/v1/payment_intents", data="a=1", headers=headers)  # noqa: E731
            first, second = await asyncio.gather(post(), post())
            statuses = sorted([first.status, second.status])
            bodies = [json.loads(await r.text()) for r in (first, second)]
            third = await post()
            assert json.loads(await third.text()) == {"id": "pi_slow"}
            assert third.headers["Idempotent-Replayed"] == "true"
        assert any(b.get("error", {}).get("code") == "idempotency_key_in_use" for b in bodies)
        return statuses

    assert asyncio.run(scenario()) == [200, 409]


def test_idempotency_keys_are_forgotten_after_a_day_or_beyond_the_cap(monkeypatch):
    """The real pruning function on the real store type. The store is swapped for an empty
    one, the cap lowered to 3 and the clock given as an argument, so that a day's age and
    the cap are reached without a day's wait or a hundred thousand requests."""
    saved = OrderedDict()
    monkeypatch.setattr(fake_stripe._state, "idempotent", saved)
    monkeypatch.setattr(fake_stripe, "IDEMPOTENCY_MAX_KEYS", 3)
    now = 1_000_000.0
    for n, age in enumerate([90_000, 80_000, 10, 5, 1]):  # oldest first, as they were saved
        saved["sk_test_x", f"k{n}"] = fake_stripe._Saved(now - age, b"", 200, b"")
    fake_stripe._forget_old_keys(now)
    assert [key for _, key in saved] == ["k2", "k3", "k4"]  # k0 past 24 h, k1 over the cap


# --- lists by `created` --------------------------------------------------------------------------
_LISTS = ("charges", "refunds", "disputes", "payouts", "balance_transactions")


def _listed_ids(client: stripe.StripeClient, kind: str, created: dict) -> list[str]:
    listing = getattr(client.v1, kind).list(params={"created": created, "limit": 100})
    return [obj.id for obj in listing.auto_paging_iter()]


def test_every_list_takes_created_bounds_newest_first(payments):
    client = _client(payments)
    paid = _pay(client, 2_100, "pm_card_createDispute")
    refund = client.v1.refunds.create(params={"payment_intent": _pay(client, 900).id, "amount": 1})
    _eventually(lambda: client.v1.disputes.list(params={"charge": paid.latest_charge.id}).data)
    _pay_in(client, 1_000, "dkk")  # a currency of this test's own: a payout surely follows
    [payout] = [p for p in _run_payouts(payments) if p["currency"] == "dkk"]
    ours = {
        "charges": client.v1.charges.retrieve(paid.latest_charge.id),
        "refunds": refund,
        "disputes": client.v1.disputes.list(params={"charge": paid.latest_charge.id}).data[0],
        "payouts": client.v1.payouts.retrieve(payout["id"]),
        "balance_transactions": client.v1.balance_transactions.retrieve(refund.balance_transaction),
    }
    for kind, obj in ours.items():
        at = obj.created
        assert obj.id in _listed_ids(client, kind, {"gte": at}), kind
        assert obj.id in _listed_ids(client, kind, {"lte": at}), kind
        assert obj.id in _listed_ids(client, kind, {"gte": at, "lte": at}), kind
        assert obj.id not in _listed_ids(client, kind, {"gt": at}), kind
        assert obj.id not in _listed_ids(client, kind, {"lt": at}), kind
        listing = getattr(client.v1, kind).list(params={"limit": 100}).auto_paging_iter()
        created = [listed.created for listed in listing]
        assert created == sorted(created, reverse=True), kind  # newest first, as Stripe's
    with pytest.raises(stripe.InvalidRequestError, match="created"):
        client.v1.charges.list(params={"created": {"after": 1}})


def test_a_charge_starts_with_its_payment_intents_metadata(payments):
    """Stripe copies the intent's metadata onto the charge when the intent is confirmed."""
    client = _client(payments)
    intent = client.v1.payment_intents.create(
        params={
            "amount": 1_000,
            "currency": "eur",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "metadata": {"order_id": "4711"},
        }
    )
    assert client.v1.charges.retrieve(intent.latest_charge.id).metadata.order_id == "4711"


# --- automatic payouts ---------------------------------------------------------------------------
def _pay_in(client: stripe.StripeClient, amount: int, currency: str):
    return client.v1.payment_intents.create(
        params={
            "amount": amount,
            "currency": currency,
            "payment_method": "pm_card_visa",
            "confirm": True,
            "expand": ["latest_charge.balance_transaction"],
        }
    )


def _run_payouts(settings) -> list[dict]:
    response = httpx.post(f"{settings.stripe_api_base}/_config/payouts/run")
    assert response.status_code == 200
    return response.json()["data"]


def _balance_of(client: stripe.StripeClient, currency: str) -> dict[str, int]:
    balance = client.v1.balance.retrieve()
    return {
        part: sum(f.amount for f in getattr(balance, part) if f.currency == currency)
        for part in ("available", "pending")
    }


def test_a_payout_sweeps_each_currencys_available_balance(payments, webhook_endpoint):
    # Currencies no other test uses, so that the sums below are this test's alone.
    hooks = webhook_endpoint("payout.paid")
    client = _client(payments)
    first, second = _pay_in(client, 10_000, "sek"), _pay_in(client, 4_000, "sek")
    refund = client.v1.refunds.create(params={"payment_intent": first.id, "amount": 1_500})
    other = _pay_in(client, 3_000, "nok")
    sek_net = 10_000 - card_fee(10_000) + 4_000 - card_fee(4_000) - 1_500
    assert _balance_of(client, "sek") == {"available": sek_net, "pending": 0}

    by_currency = {payout["currency"]: payout for payout in _run_payouts(payments)}
    sek, nok = by_currency["sek"], by_currency["nok"]
    assert (sek["amount"], nok["amount"]) == (sek_net, 3_000 - card_fee(3_000))
    assert (sek["status"], sek["automatic"], sek["reconciliation_status"]) == (
        "paid",
        True,
        "completed",
    )
    own = client.v1.balance_transactions.retrieve(sek["balance_transaction"])
    assert (own.type, own.reporting_category, own.source) == ("payout", "payout", sek["id"])
    assert (own.amount, own.fee, own.net, own.currency) == (-sek_net, 0, -sek_net, "sek")

    settled = client.v1.balance_transactions.list(params={"payout": sek["id"], "limit": 100})
    refund_txn = refund.balance_transaction
    charge_txns = [p.latest_charge.balance_transaction.id for p in (first, second)]
    assert {t.id for t in settled.data} == {own.id, refund_txn, *charge_txns}
    assert sum(t.net for t in settled.data) == 0  # the payout's own transaction included
    assert [
        t.source for t in client.v1.balance_transactions.list(params={"payout": nok["id"]}).data
    ] == [nok["id"], other.latest_charge.id]  # newest first
    assert _balance_of(client, "sek") == {"available": 0, "pending": 0}

    again = _run_payouts(payments)
    assert not [p for p in again if p["currency"] in ("sek", "nok")]  # nothing left to pay
    _, _, event = hooks.wait_for("payout.paid", id=sek["id"])
    assert event.data.object.amount == sek_net


def test_a_manual_payout_settles_nothing_that_can_be_listed(payments):
    client = _client(payments)
    payout = client.v1.payouts.create(params={"amount": 100, "currency": "eur"})
    assert (payout.automatic, payout.reconciliation_status) == (False, "not_applicable")
    with pytest.raises(stripe.InvalidRequestError, match="automatic"):
        client.v1.balance_transactions.list(params={"payout": payout.id})


def test_funds_wait_for_their_payout_which_runs_by_itself_and_persists(private_settings):
    payments = service_named(private_settings, "payments")
    scheduled = replace(
        payments, argv=[*payments.argv, "--available-after", "2", "--payout-interval", "0.5"]
    )
    with run_services(private_settings, [scheduled]):
        client = _client(private_settings)
        txn = _pay_in(client, 5_000, "eur").latest_charge.balance_transaction
        assert (txn.status, txn.available_on) == ("pending", txn.created + 2)
        assert _balance_of(client, "eur") == {"available": 0, "pending": txn.net}
        assert client.v1.payouts.list().data == []  # pending funds are not paid out

        payout = _eventually(lambda: client.v1.payouts.list().data, timeout=6)[0]
        assert (payout.amount, payout.automatic) == (txn.net, True)
        assert payout.created >= txn.available_on
        settled = client.v1.balance_transactions.list(params={"payout": payout.id})
        assert {t.id: t.status for t in settled.data} == {
            payout.balance_transaction: "available",
            txn.id: "available",
        }
    with run_services(private_settings, [payments]):
        client = _client(private_settings)
        again = client.v1.balance_transactions.list(params={"payout": payout.id})
        assert {t.id for t in again.data} == {payout.balance_transaction, txn.id}
        assert _balance_of(client, "eur") == {"available": 0, "pending": 0}
        assert _run_payouts(private_settings) == []
