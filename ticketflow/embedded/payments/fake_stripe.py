"""A fake of Stripe behaviours that localstripe lacks, patched onto localstripe at start-up.

localstripe is a stateful fake Stripe server; TicketFlow runs it as the embedded payment
processor. Left as it is, it cannot carry a demo or a benchmark (see shared/FACTS.md), so this
module patches it, in the process that serves it, without touching site-packages:

- persistence: one snapshot file per instance (stock pickles the whole store to one fixed file
  in /tmp on every write, and cannot reload a large file of its own), written every few
  seconds when something changed and once more at shutdown;
- indexes: objects per type and refunds per charge, so that exporting a charge and listing
  objects no longer scan the whole store (stock slows from ~100 to ~1 payment/s by 5,000);
- fees: Stripe's card pricing (a percentage plus a fixed amount per successful charge) on each
  charge's balance transaction, where stock always says 0;
- `GET /v1/balance/history`, which fails in stock, and a health route for the supervisor.

Only the embedded default uses this; with real Stripe keys nothing here runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from aiohttp import web
from localstripe import resources, server, webhooks
from localstripe.resources import (
    BalanceTransaction,
    Charge,
    List,
    PaymentIntent,
    PaymentMethod,
    Refund,
    Store,
    StripeObject,
    store,
)

from ticketflow.embedded.payments import HEALTH_PATH

log = logging.getLogger("ticketflow.payments")


@dataclass
class _State:
    snapshot_path: Path | None = None
    snapshot_interval_s: float = 5.0
    dirty: bool = False
    by_type: dict[str, dict[str, StripeObject]] = field(default_factory=lambda: defaultdict(dict))
    refunds_by_charge: dict[str, list[Refund]] = field(default_factory=lambda: defaultdict(list))
    fee_percent: Decimal = Decimal("2.9")
    fee_fixed: int = 30


_state = _State()


# --- persistence ---------------------------------------------------------------------------
def snapshot() -> None:
    """Write the whole store atomically (temp file, fsync, rename)."""
    path = _state.snapshot_path
    if path is None:
        return
    started = time.perf_counter()
    state = {"store": dict(store), "webhooks": dict(webhooks._webhooks)}
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
    path = _state.snapshot_path
    if path is not None and path.exists():
        with path.open("rb") as handle:
            # Plain dicts were pickled, so loading never calls Store.__setitem__ (which in
            # stock rewrites the very file being read).
            state = pickle.load(handle)
        dict.update(store, state["store"])
        webhooks._webhooks.update(state["webhooks"])  # registrations survive a restart
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


def _rebuild_indexes() -> None:
    _state.by_type.clear()
    _state.refunds_by_charge.clear()
    for key, obj in dict.items(store):
        _index(key, obj)
    for refund in _state.by_type["refund"].values():
        _state.refunds_by_charge[refund.charge].append(refund)


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
        _state.dirty = True


def _list_of(url: str, items: list, limit=None, starting_after=None) -> List:
    listing = List(url, limit=limit, starting_after=starting_after)
    listing._list = items
    return listing


@classmethod
def _list_all(cls, url, limit=None, starting_after=None, **filters):
    if filters:
        raise resources.UserError(400, "Unexpected " + ", ".join(filters))
    items = list(_state.by_type.get(cls.object, {}).values())
    return _list_of(url, items, limit, starting_after)


def _refunds_of(charge_id: str) -> list[Refund]:
    refunds = _state.refunds_by_charge.get(charge_id, ())
    return sorted(refunds, key=lambda refund: refund.date, reverse=True)


_stock_refund_init = Refund.__init__
_stock_refund_list_all = Refund._api_list_all.__func__


def _refund_init(self: Refund, charge=None, payment_intent=None, amount=None, **kwargs) -> None:
    """As Stripe: no amount refunds what is left; more than is left is refused."""
    charge_id = charge
    if charge_id is None and isinstance(payment_intent, str):
        latest = PaymentIntent._api_retrieve(payment_intent).latest_charge
        charge_id = latest.id if latest is not None else None
    if isinstance(charge_id, str):
        charge_obj = Charge._api_retrieve(charge_id)
        left = charge_obj.amount - _charge_amount_refunded(charge_obj)
        requested = resources.try_convert_to_int(amount) if amount is not None else left
        if left <= 0:
            raise resources.UserError(400, f"Charge {charge_id} has already been refunded.")
        if isinstance(requested, int) and requested > left:
            raise resources.UserError(
                400, f"Refund amount ({requested}) is greater than unrefunded amount ({left})."
            )
        amount = requested
    _stock_refund_init(self, charge=charge, payment_intent=payment_intent, amount=amount, **kwargs)
    _state.refunds_by_charge[self.charge].append(self)


@classmethod
def _refund_list_all(cls, url, charge=None, payment_intent=None, limit=None, starting_after=None):
    if charge is None and payment_intent is None:
        return _stock_refund_list_all(cls, url, limit=limit, starting_after=starting_after)
    if payment_intent is not None:
        charge = PaymentIntent._api_retrieve(payment_intent).latest_charge.id
    Charge._api_retrieve(charge)  # 404 for an unknown charge
    return _list_of(url, _refunds_of(charge), limit, starting_after)


def _charge_refunds(self: Charge) -> List:
    return _list_of(f"/v1/charges/{self.id}/refunds", _refunds_of(self.id))


def _charge_amount_refunded(self: Charge) -> int:
    return sum(refund.amount for refund in _state.refunds_by_charge.get(self.id, ()))


# Stock resolves a test token such as `pm_card_visa` into a new PaymentMethod on every use,
# three times per payment; resolving it once up front leaves one per payment.
_TEST_TOKENS = ("pm_card_visa", "pm_card_visa_chargeDeclined", "pm_card_chargeCustomerFail")
_stock_payment_intent_init = PaymentIntent.__init__


def _payment_intent_init(self: PaymentIntent, *args, payment_method=None, **kwargs) -> None:
    if payment_method in _TEST_TOKENS:
        payment_method = PaymentMethod._try_get_canonical_test_article(payment_method).id
    _stock_payment_intent_init(self, *args, payment_method=payment_method, **kwargs)


# --- fees ----------------------------------------------------------------------------------
def card_fee(amount: int) -> int:
    """Stripe's card pricing in minor units: a percentage, rounded half up, plus a fixed fee."""
    percent_part = (Decimal(amount) * _state.fee_percent / 100).quantize(
        Decimal(1), rounding=ROUND_HALF_UP
    )
    return int(percent_part) + _state.fee_fixed


_stock_balance_transaction_init = BalanceTransaction.__init__


def _balance_transaction_init(self: BalanceTransaction, *args, **kwargs) -> None:
    _stock_balance_transaction_init(self, *args, **kwargs)
    if self.type == "charge" and self.amount > 0:
        self.fee = card_fee(self.amount)
        self.fee_details = [
            {
                "amount": self.fee,
                "application": None,
                "currency": self.currency,
                "description": "Stripe processing fees",
                "type": "stripe_fee",
            }
        ]
    # A refund's balance transaction keeps fee 0: Stripe does not return the fee on refunds.


# --- routes ----------------------------------------------------------------------------------
@web.middleware
async def _extra_routes(request: web.Request, handler):
    if request.method == "GET" and request.path == "/v1/balance/history":
        # Stock registers this list without its URL and answers 500.
        return server.api_list_all(BalanceTransaction, "/v1/balance/history")(request)
    if request.method == "GET" and request.path == HEALTH_PATH:
        return web.json_response({"status": "ok", "objects": len(store)})
    return await handler(request)


# --- wiring ----------------------------------------------------------------------------------
def install(snapshot_path: Path, *, fee_percent: Decimal, fee_fixed: int) -> web.Application:
    """Patch localstripe, load the snapshot, and return the app to serve."""
    _state.snapshot_path = snapshot_path
    _state.fee_percent = fee_percent
    _state.fee_fixed = fee_fixed

    Store.dump_to_disk = _mark_dirty  # called by stock on every write and after every request
    Store.try_load_from_disk = lambda self: load()
    Store.__setitem__ = _store_setitem
    Store.__delitem__ = _store_delitem
    Store.clear = _store_clear
    StripeObject._api_list_all = _list_all
    Refund.__init__ = _refund_init
    Refund._api_list_all = _refund_list_all
    Charge.refunds = property(_charge_refunds)
    Charge.amount_refunded = property(_charge_amount_refunded)
    PaymentIntent.__init__ = _payment_intent_init
    BalanceTransaction.__init__ = _balance_transaction_init

    server.app.middlewares.append(_extra_routes)  # innermost: after auth and error handling
    server.app.cleanup_ctx.append(_snapshot_periodically)
    load()
    return server.app
