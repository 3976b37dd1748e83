"""A fake of Stripe behaviours that localstripe lacks, patched onto localstripe at start-up.

localstripe is a stateful fake Stripe server; TicketFlow runs it as the embedded payment
processor. Left as it is, it cannot carry a demo or a benchmark (see shared/FACTS.md), so this
module patches it, in the process that serves it, without touching site-packages:

- persistence: one snapshot file per instance (stock pickles the whole store to one fixed file
  in /tmp on every write, and cannot reload a large file of its own), written every few
  seconds when something changed and once more at shutdown;
- indexes: objects per type, refunds and disputes per charge, so that exporting a charge and
  listing objects no longer scan the whole store (stock slows from ~100 to ~1 payment/s by 5,000);
- fees: Stripe's card pricing (a percentage plus a fixed amount per successful charge) on each
  charge's balance transaction, where stock always says 0;
- lists as Stripe's: charges, refunds, disputes, payouts and balance transactions newest first,
  with `created` bounds (`gt`, `gte`, `lt`, `lte`) on each (stock takes only `created[gt]` on
  charges and no `created` at all elsewhere); `GET /v1/balance/history`, which fails in stock,
  and a health route for the supervisor;
- automatic payouts (`POST /_config/payouts/run`, and optionally every few seconds): one paid
  payout per currency sweeps the available balance, with a real `payout` balance transaction;
  `balance_transactions.list(payout=po_...)` lists what it settled, the payout's own transaction
  included, as Stripe's does. Funds become available `available_after_s` after their
  transaction (0 by default: at once; Stripe's standard is two days), and `GET /v1/balance`
  reports what is available and pending (stock always says 20.00 EUR). Manual payouts
  (`POST /v1/payouts`) are left as stock makes them: EUR only, no balance transaction behind;
- a payment intent's metadata copied onto its charge, as Stripe does at confirmation;
- Stripe's documented test cards: the declines stock lets succeed (`pm_card_visa_chargeDeclined`
  and kin) fail with Stripe's codes, and `pm_card_createDispute` is disputed shortly after it
  succeeds (Dispute objects, `/v1/disputes`, the dispute fee, `charge.dispute.created`);
- the refund webhooks stock never sends: `charge.refunded` and `refund.created`;
- `Idempotency-Key`: a repeated POST replays the first response instead of acting twice.

Stock webhook delivery, kept as it is: each event gets its own asyncio task, its payload frozen
when the event is created; the task sleeps 1 s, then posts to every registered endpoint in turn
(a slow endpoint delays the next ones, for that event only), once, with no retry and aiohttp's
default 5-minute timeout. Events thus arrive about 1 s late, concurrently and in no guaranteed
order, and those still sleeping at shutdown are never sent. One change: the posts share one
keep-alive client session, as Stripe's deliveries reuse connections, where stock opened a new
session (and TCP connection) for every event, which cost the fake about as much CPU as the
payment itself, and the receiving endpoint a connection each.

Only the embedded default uses this; with real Stripe keys nothing here runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import operator
import os
import pickle
import re
import time
import zlib
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import aiohttp
from aiohttp import web
from localstripe import resources, server, webhooks
from localstripe.resources import (
    BalanceTransaction,
    Charge,
    Customer,
    Event,
    List,
    PaymentIntent,
    PaymentMethod,
    Payout,
    Refund,
    Store,
    StripeObject,
    UserError,
    store,
)

from ticketflow.embedded.payments import HEALTH_PATH, PAYOUTS_RUN_PATH

log = logging.getLogger("ticketflow.payments")

DISPUTE_FEE = 1500  # minor units Stripe withdraws with each dispute (15.00 EUR/USD)
DISPUTE_DELAY_S = 0.5  # Stripe disputes a test-card payment shortly after it succeeds
EVIDENCE_WINDOW_S = 7 * 24 * 3600  # `evidence_details.due_by`, counted from the dispute
IDEMPOTENCY_TTL_S = 24 * 3600  # Stripe keeps idempotency keys for at least 24 hours
IDEMPOTENCY_MAX_KEYS = 10_000  # the SDK keys every POST: about 7 MB, in memory and snapshot


@dataclass(frozen=True)
class _Saved:
    """The first response to an idempotent POST, replayed for later uses of its key."""

    at: float
    fingerprint: bytes
    status: int
    body: bytes  # zlib, level 1: a payment's 2.4 KB of JSON keeps in 0.7 KB


@dataclass
class _State:
    snapshot_path: Path | None = None
    snapshot_interval_s: float = 5.0
    dirty: bool = False
    by_type: dict[str, dict[str, StripeObject]] = field(default_factory=lambda: defaultdict(dict))
    refunds_by_charge: dict[str, list[Refund]] = field(default_factory=lambda: defaultdict(list))
    disputes_by_charge: dict[str, list[Dispute]] = field(default_factory=lambda: defaultdict(list))
    idempotent: OrderedDict[tuple[str, str], _Saved] = field(default_factory=OrderedDict)
    in_flight: set[tuple[str, str]] = field(default_factory=set)
    fee_percent: Decimal = Decimal("2.9")
    fee_fixed: int = 30
    # Automatic payouts: transactions not yet paid out (by id, in creation order), the
    # transactions each payout settled (its own last), and the currencies ever held.
    available_after_s: int = 0
    payout_interval_s: float | None = None
    unswept: dict[str, BalanceTransaction] = field(default_factory=dict)
    settled_by_payout: dict[str, list[BalanceTransaction]] = field(
        default_factory=lambda: defaultdict(list)
    )
    currencies: set[str] = field(default_factory=set)


_state = _State()


# --- persistence ---------------------------------------------------------------------------
def snapshot() -> None:
    """Write the whole store atomically (temp file, fsync, rename)."""
    path = _state.snapshot_path
    if path is None:
        return
    started = time.perf_counter()
    state = {
        "store": dict(store),
        "webhooks": dict(webhooks._webhooks),
        "idempotency": dict(_state.idempotent),
    }
    data = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    _state.dirty = False
    log.info(
        "snapshot: %d objects, %d KB, %.3f s",
        len(store),
        len(data) // 1024,
        time.perf_counter() - started,
    )


def load() -> None:
    """Replace the store with the snapshot, if there is one, and rebuild the indexes."""
    dict.clear(store)
    _state.idempotent.clear()
    path = _state.snapshot_path
    if path is not None and path.exists():
        with path.open("rb") as handle:
            # Plain dicts were pickled, so loading never calls Store.__setitem__ (which in
            # stock rewrites the very file being read).
            state = pickle.load(handle)
        dict.update(store, state["store"])
        webhooks._webhooks.update(state["webhooks"])  # registrations survive a restart
        _state.idempotent.update(state.get("idempotency", {}))  # a retry may follow a restart
    _rebuild_indexes()
    _state.dirty = False


def _mark_dirty(_: Store) -> None:
    _state.dirty = True


async def _snapshot_periodically(_: web.Application) -> AsyncIterator[None]:
    async def tick() -> None:
        while True:
            await asyncio.sleep(_state.snapshot_interval_s)
            if _state.dirty:
                try:
                    snapshot()
                except Exception:  # keep trying: the next tick may succeed (disk freed)
                    log.exception("snapshot failed")

    task = asyncio.create_task(tick())
    yield
    task.cancel()
    snapshot()  # at shutdown, whatever changed since the last tick


# --- indexes -------------------------------------------------------------------------------
def _index(key: str, obj: StripeObject) -> None:
    kind, sep, _ = key.partition(":")
    if sep:
        _state.by_type[kind][key] = obj
        if kind == "balance_transaction":
            # A new one (still being built) or one no payout settled yet.
            if getattr(obj, "_payout", None) is None:
                _state.unswept[obj.id] = obj
            else:
                _state.settled_by_payout[obj._payout].append(obj)


def _rebuild_indexes() -> None:
    _state.by_type.clear()
    _state.refunds_by_charge.clear()
    _state.disputes_by_charge.clear()
    _state.unswept.clear()
    _state.settled_by_payout.clear()
    _state.currencies.clear()
    for key, obj in dict.items(store):
        _index(key, obj)
    for refund in _state.by_type["refund"].values():
        _state.refunds_by_charge[refund.charge].append(refund)
    for dispute in _state.by_type["dispute"].values():
        _state.disputes_by_charge[dispute.charge].append(dispute)
    _state.currencies.update(payout.currency for payout in _state.by_type["payout"].values())


def _store_setitem(self: Store, key: str, value: StripeObject) -> None:
    dict.__setitem__(self, key, value)
    if self is store:
        _index(key, value)
        _state.dirty = True


def _store_delitem(self: Store, key: str) -> None:
    obj = dict.pop(self, key)
    if self is store:
        _state.by_type.get(key.partition(":")[0], {}).pop(key, None)
        if isinstance(obj, Refund):
            _state.refunds_by_charge[obj.charge].remove(obj)
        _state.dirty = True


def _store_clear(self: Store) -> None:
    dict.clear(self)
    if self is store:
        _rebuild_indexes()
        _state.idempotent.clear()  # replays would name objects that no longer exist
        _state.dirty = True


# --- lists ---------------------------------------------------------------------------------
def _list_of(url: str, items: list, limit=None, starting_after=None) -> List:
    listing = List(url, limit=limit, starting_after=starting_after)
    listing._list = items
    return listing


@classmethod
def _list_all(cls, url, limit=None, starting_after=None, **filters):
    if filters:
        raise UserError(400, "Unexpected " + ", ".join(filters))
    items = list(_state.by_type.get(cls.object, {}).values())
    return _list_of(url, items, limit, starting_after)


_CREATED_OPS = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
    "eq": operator.eq,
}
_FLOOR_OFFSETS = {"gte": 0, "eq": 0, "gt": 1}  # the earliest `created` each lower bound admits


def _created_bounds(created) -> list[tuple[str, int]]:
    """Stripe's `created` list parameter: a timestamp, or bounds such as `created[gte]`."""
    if created is None:
        return []
    bounds = created if isinstance(created, dict) else {"eq": created}
    parsed = []
    for op, value in bounds.items():
        timestamp = resources.try_convert_to_int(value)
        if op not in _CREATED_OPS or not isinstance(timestamp, int):
            raise UserError(400, f"Invalid created[{op}]: {value}")
        parsed.append((op, timestamp))
    return parsed


def _created_filter(created) -> Callable[[StripeObject], bool]:
    checks = [(_CREATED_OPS[op], timestamp) for op, timestamp in _created_bounds(created)]
    return lambda obj: all(compare(obj.created, bound) for compare, bound in checks)


def _newest_first(kind: str, created=None) -> list[StripeObject]:
    """Stripe's order, within `created` bounds. The index holds creation order, so no sort is
    needed, and the walk back stops at the first object older than a lower bound: an
    incremental import costs what it fetches, not the whole history."""
    bounds = _created_bounds(created)
    keep = _created_filter(created)
    floor = max((ts + _FLOOR_OFFSETS[op] for op, ts in bounds if op in _FLOOR_OFFSETS), default=0)
    items = []
    for obj in reversed(_state.by_type[kind].values()):
        if obj.created < floor:
            break
        if keep(obj):
            items.append(obj)
    return items


@classmethod
def _balance_transaction_list_all(
    cls,
    url,
    created=None,
    type=None,
    currency=None,
    payout=None,
    limit=None,
    starting_after=None,
):
    """Newest first, filtered as Stripe's: a ledger import pages by `created`, payout
    reconciliation lists what a payout settled."""
    if payout is None:
        candidates = _newest_first("balance_transaction", created)
    else:
        candidates = list(reversed(_settled_by(payout)))
    keep = _created_filter(created)
    items = [
        txn
        for txn in candidates
        if keep(txn) and type in (None, txn.type) and currency in (None, txn.currency)
    ]
    return _list_of(url, items, limit, starting_after)


@classmethod
def _charge_list_all(
    cls, url, customer=None, payment_intent=None, created=None, limit=None, starting_after=None
):
    """Newest first, by customer, payment intent and `created` (stock: `created[gt]` only)."""
    if customer is not None:
        Customer._api_retrieve(customer)  # 404 for an unknown customer
    if payment_intent is not None:
        latest = PaymentIntent._api_retrieve(payment_intent).latest_charge
        candidates = [latest] if latest is not None else []
    else:
        candidates = _newest_first("charge", created)
    keep = _created_filter(created)
    items = [
        charge for charge in candidates if keep(charge) and customer in (None, charge.customer)
    ]
    return _list_of(url, items, limit, starting_after)


@classmethod
def _payout_list_all(cls, url, created=None, status=None, limit=None, starting_after=None):
    """Newest first, by `created` and `status`."""
    payouts = _newest_first("payout", created)
    items = [payout for payout in payouts if status in (None, payout.status)]
    return _list_of(url, items, limit, starting_after)


# --- refunds -------------------------------------------------------------------------------
def _refunds_of(charge_id: str) -> list[Refund]:
    refunds = _state.refunds_by_charge.get(charge_id, ())
    return sorted(refunds, key=lambda refund: refund.date, reverse=True)


_stock_refund_init = Refund.__init__


def _refund_init(self: Refund, charge=None, payment_intent=None, amount=None, **kwargs) -> None:
    """As Stripe: no amount refunds what is left; more than is left, or a dispute, refuses."""
    charge_id = charge
    if charge_id is None and isinstance(payment_intent, str):
        latest = PaymentIntent._api_retrieve(payment_intent).latest_charge
        charge_id = latest.id if latest is not None else None
    if isinstance(charge_id, str):
        amount = _refundable(Charge._api_retrieve(charge_id), amount)
    _stock_refund_init(self, charge=charge, payment_intent=payment_intent, amount=amount, **kwargs)
    charge_obj = Charge._api_retrieve(self.charge)
    if self.payment_intent is None:
        self.payment_intent = charge_obj.payment_intent  # Stripe always names it
    _state.refunds_by_charge[self.charge].append(self)
    webhooks.schedule_webhook(Event("charge.refunded", charge_obj))  # charge after the refund
    webhooks.schedule_webhook(Event("refund.created", self))


def _refundable(charge: Charge, amount):
    """The amount to refund, or Stripe's refusal."""
    if charge.disputed:
        raise UserError(
            400,
            f"Charge {charge.id} has been charged back; cannot issue a refund.",
            {"code": "charge_disputed"},
        )
    left = charge.amount - _charge_amount_refunded(charge)
    requested = resources.try_convert_to_int(amount) if amount is not None else left
    if left <= 0:
        raise UserError(400, f"Charge {charge.id} has already been refunded.")
    if isinstance(requested, int) and requested > left:
        raise UserError(
            400, f"Refund amount ({requested}) is greater than unrefunded amount ({left})."
        )
    return requested


@classmethod
def _refund_list_all(
    cls, url, charge=None, payment_intent=None, created=None, limit=None, starting_after=None
):
    """Newest first, by charge or payment intent, and by `created` (stock: no `created`)."""
    if payment_intent is not None:
        latest = PaymentIntent._api_retrieve(payment_intent).latest_charge
        if latest is None:
            return _list_of(url, [], limit, starting_after)
        charge = latest.id
    if charge is None:
        candidates = _newest_first("refund", created)
    else:
        Charge._api_retrieve(charge)  # 404 for an unknown charge
        candidates = _refunds_of(charge)
    keep = _created_filter(created)
    return _list_of(url, [r for r in candidates if keep(r)], limit, starting_after)


def _charge_refunds(self: Charge) -> List:
    return _list_of(f"/v1/charges/{self.id}/refunds", _refunds_of(self.id))


def _charge_amount_refunded(self: Charge) -> int:
    return sum(refund.amount for refund in _state.refunds_by_charge.get(self.id, ()))


# --- Stripe's test cards ---------------------------------------------------------------------
@dataclass(frozen=True)
class _Decline:
    code: str
    decline_code: str
    message: str


_GENERIC_DECLINE = _Decline("card_declined", "generic_decline", "Your card was declined.")
_DECLINES = {  # card number -> how Stripe declines it (docs.stripe.com/testing#declined-payments)
    "4000000000000002": _GENERIC_DECLINE,
    "4000000000009995": _Decline(
        "card_declined", "insufficient_funds", "Your card has insufficient funds."
    ),
    "4000000000009987": _Decline("card_declined", "lost_card", "Your card was declined."),
    "4000000000009979": _Decline("card_declined", "stolen_card", "Your card was declined."),
    "4000000000000069": _Decline("expired_card", "expired_card", "Your card has expired."),
    "4000000000000127": _Decline(
        "incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect."
    ),
    "4000000000000119": _Decline(
        "processing_error",
        "processing_error",
        "An error occurred while processing your card. Try again in a little bit.",
    ),
    "4000000000000341": _GENERIC_DECLINE,  # attaches to a customer, then fails to charge
}
_DISPUTES = {  # card number -> reason of the dispute Stripe opens after the payment succeeds
    "4000000000000259": "fraudulent",
    "4000000000002685": "product_not_received",
}
TEST_PAYMENT_METHODS = {  # Stripe's test PaymentMethod ids -> card number
    "pm_card_visa": "4242424242424242",
    "pm_card_visa_chargeDeclined": "4000000000000002",
    "pm_card_chargeDeclined": "4000000000000002",
    "pm_card_visa_chargeDeclinedInsufficientFunds": "4000000000009995",
    "pm_card_chargeDeclinedInsufficientFunds": "4000000000009995",
    "pm_card_visa_chargeDeclinedLostCard": "4000000000009987",
    "pm_card_chargeDeclinedLostCard": "4000000000009987",
    "pm_card_visa_chargeDeclinedStolenCard": "4000000000009979",
    "pm_card_chargeDeclinedStolenCard": "4000000000009979",
    "pm_card_chargeDeclinedExpiredCard": "4000000000000069",
    "pm_card_chargeDeclinedIncorrectCvc": "4000000000000127",
    "pm_card_chargeDeclinedProcessingError": "4000000000000119",
    "pm_card_chargeCustomerFail": "4000000000000341",
    "pm_card_createDispute": "4000000000000259",
    "pm_card_createDisputeProductNotReceived": "4000000000002685",
}


@classmethod
def _test_payment_method(cls, id: str) -> PaymentMethod | None:
    """A new PaymentMethod for a Stripe test id (stock knows three, one of them wrongly)."""
    number = TEST_PAYMENT_METHODS.get(id)
    if number is None:
        return None
    card = {"number": number, "exp_month": "12", "exp_year": "2030", "cvc": "123"}
    return PaymentMethod(type="card", card=card)


def _card_number(payment_method_id: str | None) -> str | None:
    if not payment_method_id:
        return None
    try:
        payment_method = PaymentMethod._api_retrieve(payment_method_id)
    except UserError:
        return None
    return getattr(payment_method, "_card_number", None)


_stock_charging_is_declined = PaymentMethod._charging_is_declined
_stock_payment_intent_init = PaymentIntent.__init__
_stock_payment_intent_confirm = PaymentIntent._api_confirm.__func__
_stock_report_failure = PaymentIntent._report_failure
_stock_last_payment_error = PaymentIntent.last_payment_error


def _charging_is_declined(self) -> bool:
    """Stripe's decline cards; stock declines only three numbers, and not 4000000000000002."""
    number = getattr(self, "_card_number", None)
    return number in _DECLINES or _stock_charging_is_declined(self)


def _decline_of(charge: Charge) -> _Decline:
    return _DECLINES.get(_card_number(charge.payment_method), _GENERIC_DECLINE)


def _set_auth_failure(self: Charge) -> None:
    decline = _decline_of(self)
    self.status = "failed"
    self.failure_code = decline.code
    self.failure_message = decline.message


def _raise_failure(self: Charge) -> None:
    """Stripe's card error: HTTP 402, type `card_error`, with `decline_code`."""
    decline = _decline_of(self)
    error = UserError(
        402,
        self.failure_message,
        {"code": self.failure_code, "decline_code": decline.decline_code, "charge": self.id},
    )
    error.body["error"]["type"] = "card_error"
    raise error


def _report_failure(self: PaymentIntent) -> None:
    """As Stripe, the card error names the failed PaymentIntent, so a caller can find it."""
    try:
        _stock_report_failure(self)
    except UserError as error:
        error.body["error"]["payment_intent"] = self._export()
        raise


def _last_payment_error(self: PaymentIntent) -> dict | None:
    error = _stock_last_payment_error.fget(self)
    if error is not None and error.get("charge"):
        error["decline_code"] = _decline_of(self.latest_charge).decline_code
        error["type"] = "card_error"
    return error


def _payment_intent_init(self: PaymentIntent, *args, payment_method=None, **kwargs) -> None:
    """Resolve a test id once: stock makes a new PaymentMethod at each of its three lookups."""
    if payment_method in TEST_PAYMENT_METHODS:
        payment_method = PaymentMethod._try_get_canonical_test_article(payment_method).id
    _stock_payment_intent_init(self, *args, payment_method=payment_method, **kwargs)


@classmethod
def _payment_intent_confirm(cls, id, payment_method=None, **kwargs):
    """Confirm with a payment method given now, as a front end does with the client secret
    (stock answers "Not implemented")."""
    if payment_method is not None:
        intent = cls._api_retrieve(id)
        if intent.latest_charge is not None or intent.status == "canceled":
            # A retry after a decline needs a new charge on the same intent: still stock's 500.
            raise UserError(400, "This PaymentIntent cannot be confirmed in its state.")
        if payment_method in TEST_PAYMENT_METHODS:
            payment_method = PaymentMethod._try_get_canonical_test_article(payment_method).id
        intent.payment_method = PaymentMethod._api_retrieve(payment_method).id  # -> confirmable
    return _stock_payment_intent_confirm(cls, id, **kwargs)


# --- disputes ------------------------------------------------------------------------------
class Dispute(StripeObject):
    """A chargeback, as Stripe opens one on a payment made with a dispute test card."""

    object = "dispute"
    _id_prefix = "du_"

    def __init__(self, charge: Charge, reason: str) -> None:
        super().__init__()
        self.amount = charge.amount
        self.charge = charge.id
        self.currency = charge.currency
        self.payment_intent = charge.payment_intent
        self.reason = reason
        self.status = "needs_response"
        self.is_charge_refundable = False
        self.evidence = {}
        self.evidence_details = {
            "due_by": self.created + EVIDENCE_WINDOW_S,
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        }
        self.metadata = {}
        self.balance_transactions = [_dispute_withdrawal(self)]
        _state.disputes_by_charge[charge.id].append(self)

    @classmethod
    def _api_list_all(
        cls, url, charge=None, payment_intent=None, created=None, limit=None, starting_after=None
    ):
        """Newest first; by charge or intent through the index, then by `created`."""
        if charge is None and payment_intent is not None:
            latest = PaymentIntent._api_retrieve(payment_intent).latest_charge
            charge = latest.id if latest is not None else ""
        if charge is None:
            candidates = _newest_first("dispute", created)
        else:
            candidates = list(reversed(_state.disputes_by_charge.get(charge, ())))
        keep = _created_filter(created)
        items = [
            dispute
            for dispute in candidates
            if keep(dispute) and payment_intent in (None, dispute.payment_intent)
        ]
        return _list_of(url, items, limit, starting_after)


def _dispute_withdrawal(dispute: Dispute) -> BalanceTransaction:
    """The adjustment Stripe books when a dispute opens: the amount goes back, plus the fee."""
    txn = BalanceTransaction.__new__(BalanceTransaction)
    StripeObject.__init__(txn)  # stock's __init__ accepts only charges and refunds
    txn.amount = -dispute.amount
    txn.available_on = txn.created
    txn.currency = dispute.currency
    txn.description = f"Chargeback withdrawal for {dispute.charge}"
    txn.exchange_rate = 1.0
    txn.fee = DISPUTE_FEE
    txn.fee_details = [_stripe_fee(DISPUTE_FEE, dispute.currency, "Dispute fee")]
    txn.reporting_category = "dispute"
    txn.source = dispute.id
    txn.status = "available"
    txn.type = "adjustment"
    return txn


def _open_dispute(charge_id: str, reason: str) -> None:
    """Dispute the charge and tell the webhooks, as Stripe does after a dispute test card."""
    try:
        charge = Charge._api_retrieve(charge_id)
        dispute = Dispute(charge, reason)
        charge.disputed = True
        webhooks.schedule_webhook(Event("charge.dispute.created", dispute))
        webhooks.schedule_webhook(Event("charge.dispute.funds_withdrawn", dispute))
    except Exception:  # a timer callback: nobody else would see the error
        log.exception("could not open the dispute on %s", charge_id)


_stock_trigger_payment = Charge._trigger_payment
_stock_initialize_charge = Charge._initialize_charge


def _initialize_charge(self: Charge, *args, **kwargs) -> None:
    """As Stripe, a payment intent's charge starts with the intent's metadata (copied once)."""
    if self.payment_intent is not None and not self.metadata:
        self.metadata = dict(PaymentIntent._api_retrieve(self.payment_intent).metadata or {})
    _stock_initialize_charge(self, *args, **kwargs)


def _trigger_payment(self: Charge, on_success=None) -> None:
    """Stock's payment, then, for a dispute test card, the dispute Stripe opens after it."""
    reason = _DISPUTES.get(_card_number(self.payment_method))

    def succeeded() -> None:
        if on_success is not None:
            on_success()
        if reason is not None:
            loop = asyncio.get_running_loop()
            loop.call_later(DISPUTE_DELAY_S, _open_dispute, self.id, reason)

    _stock_trigger_payment(self, succeeded)


# --- fees ----------------------------------------------------------------------------------
def card_fee(amount: int) -> int:
    """Stripe's card pricing in minor units: a percentage, rounded half up, plus a fixed fee."""
    percent_part = (Decimal(amount) * _state.fee_percent / 100).quantize(
        Decimal(1), rounding=ROUND_HALF_UP
    )
    return int(percent_part) + _state.fee_fixed


def _stripe_fee(amount: int, currency: str, description: str) -> dict:
    return {
        "amount": amount,
        "application": None,
        "currency": currency,
        "description": description,
        "type": "stripe_fee",
    }


_stock_balance_transaction_init = BalanceTransaction.__init__


def _balance_transaction_init(self: BalanceTransaction, *args, **kwargs) -> None:
    _stock_balance_transaction_init(self, *args, **kwargs)
    if self.type == "charge" and self.amount > 0:
        self.fee = card_fee(self.amount)
        self.fee_details = [_stripe_fee(self.fee, self.currency, "Stripe processing fees")]
        # Incoming funds wait before a payout may take them; debits (refunds) count at once.
        self.available_on = self.created + _state.available_after_s
    # A refund's balance transaction keeps fee 0: Stripe does not return the fee on refunds.


def _balance_transaction_status(self: BalanceTransaction) -> str:
    """Stripe's: `pending` until `available_on`, then `available` (stock's fixed value, set in
    its constructor, is ignored)."""
    return "available" if self.available_on <= time.time() else "pending"


# --- automatic payouts -----------------------------------------------------------------------
_NOT_AUTOMATIC = (
    "Balance transaction history can only be filtered on automatic transfers, not manual."
)


def run_payouts() -> list[Payout]:
    """Stripe's automatic payout, now: per currency, one paid payout of the available balance,
    settling every transaction that is available and that no payout settled yet. A currency
    whose available balance is not positive keeps its transactions for a later payout."""
    now = time.time()
    due: dict[str, list[BalanceTransaction]] = defaultdict(list)
    for txn in _state.unswept.values():  # the one scan: what is not paid out yet
        if txn.available_on <= now:
            due[txn.currency].append(txn)
    payouts = []
    for currency, txns in sorted(due.items()):
        amount = sum(txn.net for txn in txns)
        if amount <= 0:
            continue
        payout = _automatic_payout(amount, currency)
        for txn in (*txns, _payout_withdrawal(payout)):
            txn._payout = payout.id
            del _state.unswept[txn.id]
            _state.settled_by_payout[payout.id].append(txn)
        _state.currencies.add(currency)
        for event in ("payout.created", "payout.paid", "payout.reconciliation_completed"):
            webhooks.schedule_webhook(Event(event, payout))
        payouts.append(payout)
    return payouts


def _automatic_payout(amount: int, currency: str) -> Payout:
    payout = Payout.__new__(Payout)
    StripeObject.__init__(payout)  # stock's __init__ makes manual, EUR-only payouts
    payout.amount = amount
    payout.arrival_date = payout.created  # paid at once: the fake has no bank in between
    payout.automatic = True
    payout.balance_transaction = None
    payout.currency = currency
    payout.description = "STRIPE PAYOUT"
    payout.destination = f"ba_{resources.random_id(24)}"
    payout.failure_balance_transaction = None
    payout.failure_code = None
    payout.failure_message = None
    payout.metadata = {}
    payout.method = "standard"
    payout.original_payout = None
    payout.reconciliation_status = "completed"
    payout.reversed_by = None
    payout.source_type = "card"
    payout.statement_descriptor = ""
    payout.status = "paid"
    payout.type = "bank_account"
    return payout


def _payout_withdrawal(payout: Payout) -> BalanceTransaction:
    """The payout's own balance transaction: the amount leaves the balance."""
    txn = BalanceTransaction.__new__(BalanceTransaction)
    StripeObject.__init__(txn)  # stock's __init__ accepts only charges and refunds
    txn.amount = -payout.amount
    txn.available_on = txn.created
    txn.currency = payout.currency
    txn.description = "STRIPE PAYOUT"
    txn.exchange_rate = None
    txn.fee = 0
    txn.fee_details = []
    txn.reporting_category = "payout"
    txn.source = payout.id
    txn.type = "payout"
    payout.balance_transaction = txn.id
    return txn


def _settled_by(payout_id: str) -> list[BalanceTransaction]:
    payout = Payout._api_retrieve(payout_id)  # 404 for an unknown payout
    if not payout.automatic:
        raise UserError(400, _NOT_AUTOMATIC)
    return _state.settled_by_payout.get(payout_id, [])


def _balance() -> dict:
    """`GET /v1/balance`: per currency, what no payout has settled yet, available or pending."""
    now = time.time()
    amounts = {currency: {"available": 0, "pending": 0} for currency in _state.currencies}
    for txn in _state.unswept.values():
        part = "available" if txn.available_on <= now else "pending"
        amounts.setdefault(txn.currency, {"available": 0, "pending": 0})[part] += txn.net

    def funds(part: str) -> list[dict]:
        return [
            {"amount": sums[part], "currency": currency, "source_types": {"card": sums[part]}}
            for currency, sums in sorted(amounts.items())
        ]

    return {
        "object": "balance",
        "available": funds("available"),
        "pending": funds("pending"),
        "livemode": False,
    }


async def _pay_out_periodically(_: web.Application) -> AsyncIterator[None]:
    async def tick() -> None:
        while True:
            await asyncio.sleep(_state.payout_interval_s)
            try:
                run_payouts()
            except Exception:  # keep the schedule: the next run may succeed
                log.exception("automatic payout failed")

    task = asyncio.create_task(tick())
    yield
    task.cancel()


# --- idempotency -----------------------------------------------------------------------------
_KEY_IN_USE = (
    "There is currently another in-progress request using this Idempotent Key (that probably "
    "means you submitted twice, and the other request is still going through): {key}. "
    "Please try again later."
)
_KEY_REUSED = (
    "Keys for idempotent requests can only be used with the same parameters they were first "
    "used with. Try using a key other than '{key}' if you meant to execute a different request."
)


@web.middleware
async def _idempotency(request: web.Request, handler):
    """Stripe's idempotent POST: the first response under a key is the only one acted on."""
    key = request.headers.get("Idempotency-Key")
    if request.method != "POST" or not key or not request.path.startswith("/v1/"):
        return await handler(request)
    scope = (server.get_api_key(request) or "", key)
    fingerprint = hashlib.sha256(request.path.encode() + b"?" + await request.read()).digest()
    _forget_old_keys(time.time())
    saved = _state.idempotent.get(scope)
    if saved is not None:
        return _replay(saved, fingerprint, key)
    if scope in _state.in_flight:  # only for a handler that yields: stock ones never do
        raise UserError(409, _KEY_IN_USE.format(key=key), {"code": "idempotency_key_in_use"})
    _state.in_flight.add(scope)
    try:
        response = await _response_of(handler, request)
    finally:
        _state.in_flight.discard(scope)
    body = zlib.compress(response.body if isinstance(response.body, bytes) else b"", 1)
    _state.idempotent[scope] = _Saved(time.time(), fingerprint, response.status, body)
    response.headers["Idempotency-Key"] = key
    return response


async def _response_of(handler, request: web.Request) -> web.StreamResponse:
    """The response, errors included: Stripe saves those too (a crash is not saved)."""
    try:
        return await handler(request)
    except UserError as error:
        return error.to_response()


def _replay(saved: _Saved, fingerprint: bytes, key: str) -> web.Response:
    if saved.fingerprint != fingerprint:
        error = UserError(400, _KEY_REUSED.format(key=key))
        error.body["error"]["type"] = "idempotency_error"
        raise error
    headers = {"Idempotency-Key": key, "Idempotent-Replayed": "true"}
    body = zlib.decompress(saved.body)
    return web.Response(
        body=body, status=saved.status, content_type="application/json", headers=headers
    )


def _forget_old_keys(now: float) -> None:
    """Drop keys past Stripe's 24 hours or beyond the cap: amortised O(1), oldest first."""
    saved = _state.idempotent
    while saved and (
        len(saved) > IDEMPOTENCY_MAX_KEYS or next(iter(saved.values())).at < now - IDEMPOTENCY_TTL_S
    ):
        saved.popitem(last=False)


# --- webhook delivery -------------------------------------------------------------------------
_webhook_client: aiohttp.ClientSession | None = None


async def _send_webhook(event: Event) -> None:
    """Stock's `_send_webhook` (the same payload, signature, delay, order and single attempt),
    over the shared session."""
    payload = json.dumps(event._export(), indent=2, sort_keys=True).encode("utf-8")
    signed_payload = b"%d.%s" % (event.created, payload)
    await asyncio.sleep(1)
    access = logging.getLogger("aiohttp.access")
    for webhook in list(webhooks._webhooks.values()):
        if webhook.events is not None and event.type not in webhook.events:
            continue
        signature = hmac.new(
            webhook.secret.encode("utf-8"), signed_payload, hashlib.sha256
        ).hexdigest()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": f"t={event.created},v1={signature}",
        }
        try:
            async with _webhook_session().post(webhook.url, data=payload, headers=headers) as r:
                if 200 <= r.status < 300:
                    access.info('webhook "%s" successfully delivered', event.type)
                else:
                    access.info('webhook "%s" failed with response code %d', event.type, r.status)
        except aiohttp.ClientError as error:
            access.info('webhook "%s" failed: %s', event.type, error)


def _webhook_session() -> aiohttp.ClientSession:
    global _webhook_client
    if _webhook_client is None or _webhook_client.closed:
        _webhook_client = aiohttp.ClientSession()
    return _webhook_client


async def _close_webhook_session(_: web.Application) -> AsyncIterator[None]:
    yield
    if _webhook_client is not None:
        await _webhook_client.close()


# --- routes ----------------------------------------------------------------------------------
_CONFIRM_PATH = re.compile(r"^/v1/payment_intents/\w+/confirm$")


@web.middleware
async def _extra_routes(request: web.Request, handler):
    if request.method == "GET" and request.path == "/v1/balance/history":
        # Stock registers this list without its URL and answers 500.
        return server.api_list_all(BalanceTransaction, "/v1/balance/history")(request)
    if request.method == "POST" and _CONFIRM_PATH.match(request.path):
        # Stock's route holds the original classmethod, bound at import: call ours.
        return await server.api_extra(PaymentIntent._api_confirm, "")(request)
    if request.method == "GET" and request.path == "/v1/balance":
        return server.json_response(_balance())  # stock's route holds a fixed 20.00 EUR
    if request.method == "GET" and request.path == HEALTH_PATH:
        return web.json_response({"status": "ok", "objects": len(store)})
    return await handler(request)


async def _forget_webhook(request: web.Request) -> web.Response:
    """`DELETE /_config/webhooks/{id}`, which stock lacks: stop sending to an endpoint."""
    webhooks._webhooks.pop(request.match_info["id"], None)
    _state.dirty = True
    return web.Response()


async def _run_payouts(_: web.Request) -> web.Response:
    """`POST /_config/payouts/run` (fake-only, like all of `/_config`): Stripe's automatic
    payouts, now; answers the payouts made, as a list."""
    payouts = run_payouts()
    return server.json_response(
        {
            "object": "list",
            "data": [payout._export() for payout in payouts],
            "has_more": False,
            "url": PAYOUTS_RUN_PATH,
        }
    )


def _add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/disputes", server.api_list_all(Dispute, "/v1/disputes"))
    app.router.add_get("/v1/disputes/{id}", server.api_retrieve(Dispute, "/v1/disputes/{id}"))
    app.router.add_delete("/_config/webhooks/{id}", _forget_webhook)
    app.router.add_post(PAYOUTS_RUN_PATH, _run_payouts)


# --- wiring ----------------------------------------------------------------------------------
def install(
    snapshot_path: Path,
    *,
    fee_percent: Decimal,
    fee_fixed: int,
    available_after_s: int = 0,
    payout_interval_s: float | None = None,
) -> web.Application:
    """Patch localstripe, load the snapshot, and return the app to serve.

    `available_after_s`: how long a charge's funds stay pending before a payout may take them.
    `payout_interval_s`: run automatic payouts this often (None: only when asked to, through
    `POST /_config/payouts/run`).
    """
    _state.snapshot_path = snapshot_path
    _state.fee_percent = fee_percent
    _state.fee_fixed = fee_fixed
    _state.available_after_s = available_after_s
    _state.payout_interval_s = payout_interval_s

    Store.dump_to_disk = _mark_dirty  # called by stock on every write and after every request
    Store.try_load_from_disk = lambda self: load()
    Store.__setitem__ = _store_setitem
    Store.__delitem__ = _store_delitem
    Store.clear = _store_clear
    StripeObject._api_list_all = _list_all
    BalanceTransaction._api_list_all = _balance_transaction_list_all
    BalanceTransaction.__init__ = _balance_transaction_init
    BalanceTransaction.status = property(_balance_transaction_status, lambda self, value: None)
    BalanceTransaction._payout = None  # the payout that settled it (pickled with it)
    Payout._api_list_all = _payout_list_all
    Payout.reconciliation_status = "not_applicable"  # manual payouts, as Stripe's
    Refund.__init__ = _refund_init
    Refund._api_list_all = _refund_list_all
    Charge._api_list_all = _charge_list_all
    Charge._initialize_charge = _initialize_charge
    Charge.refunds = property(_charge_refunds)
    Charge.amount_refunded = property(_charge_amount_refunded)
    Charge.disputed = False  # a class default, so charges from older snapshots have it too
    Charge._trigger_payment = _trigger_payment
    Charge._set_auth_failure = _set_auth_failure
    Charge._raise_failure = _raise_failure
    PaymentMethod._try_get_canonical_test_article = _test_payment_method
    PaymentMethod._charging_is_declined = _charging_is_declined
    PaymentIntent.__init__ = _payment_intent_init
    PaymentIntent._api_confirm = _payment_intent_confirm
    PaymentIntent._report_failure = _report_failure
    PaymentIntent.last_payment_error = property(_last_payment_error)

    _add_routes(server.app)
    # Innermost, after auth and error handling: idempotency sees the key's API key and the
    # handler's own errors.
    server.app.middlewares.extend((_idempotency, _extra_routes))
    webhooks._send_webhook = _send_webhook  # what stock's schedule_webhook() calls
    server.app.cleanup_ctx.append(_close_webhook_session)
    server.app.cleanup_ctx.append(_snapshot_periodically)
    if payout_interval_s:
        server.app.cleanup_ctx.append(_pay_out_periodically)
    load()
    return server.app
