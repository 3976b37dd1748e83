"""What each `raw.stripe_*` table holds: typed columns taken from one Stripe object, then the
whole object as JSON (`_raw`) and when it was read (`_ingested_at`).

Money is Int64 minor units, currencies upper-case ISO 4217, times UTC. Every table is a
`ReplacingMergeTree(_ingested_at)` ordered by `id`: an object listed again (the overlap of
incremental runs, a payout's transactions written again with their payout) replaces its row
rather than adding one, once merged; read with `FINAL`.

Fields that Stripe changes after creation (a charge's `amount_refunded` and `disputed`, a
transaction's `status`, a dispute's `status`) are as of the last time the object was listed.
The refunds, disputes and balance transactions that record those changes are rows of their own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

ID = "String"
REF = "Nullable(String)"  # the id of another object, when there is one
MONEY = "Int64"
CURRENCY = "LowCardinality(String)"
STATE = "LowCardinality(String)"
TIME = "DateTime64(0, 'UTC')"
FLAG = "Bool"
IDS = "Array(String)"
FEE_DETAILS = (
    "Array(Tuple(type String, amount Int64, currency String, description Nullable(String)))"
)


# The key the API puts its order id under (api/payments/stripe_provider.py).
ORDER_METADATA_KEY = "ticketflow_order_id"


def _field(name: str) -> Callable[[Mapping], object]:
    return lambda obj: obj.get(name)


def _ref(name: str) -> Callable[[Mapping], str | None]:
    """An expandable field: an id, or the expanded object whose id it is."""

    def value(obj: Mapping) -> str | None:
        ref = obj.get(name)
        return ref.get("id") if isinstance(ref, Mapping) else ref

    return value


def _money(name: str) -> Callable[[Mapping], int]:
    return lambda obj: int(obj[name])


def _currency(obj: Mapping) -> str:
    return str(obj["currency"]).upper()


def _time(name: str) -> Callable[[Mapping], datetime | None]:
    def value(obj: Mapping) -> datetime | None:
        seconds = obj.get(name)
        return None if seconds is None else datetime.fromtimestamp(int(seconds), UTC)

    return value


def _fee_details(obj: Mapping) -> list[tuple]:
    return [
        (fee["type"], int(fee["amount"]), str(fee["currency"]).upper(), fee.get("description"))
        for fee in obj.get("fee_details") or ()
    ]


def _order_id(obj: Mapping) -> str | None:
    """TicketFlow's order, which the API puts in the payment intent's metadata (Stripe copies
    it onto the charge)."""
    return (obj.get("metadata") or {}).get(ORDER_METADATA_KEY)


def _embedded_ids(name: str) -> Callable[[Mapping], list[str]]:
    return lambda obj: [item["id"] for item in obj.get(name) or ()]


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    # How to read it from the Stripe object; None: not in the object, the ingestion supplies it.
    value: Callable[[Mapping], object] | None


@dataclass(frozen=True)
class RawTable:
    kind: str  # as the SDK names the list: `client.v1.<kind>.list()`
    columns: tuple[Column, ...]

    @property
    def name(self) -> str:
        return f"stripe_{self.kind}"

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns] + ["_raw", "_ingested_at"]

    @property
    def column_types(self) -> list[str]:
        return [c.type for c in self.columns] + ["String", "DateTime64(6, 'UTC')"]

    def create_sql(self, database: str) -> str:
        pairs = zip(self.column_names, self.column_types, strict=True)
        columns = [f"{quote(name)} {type_}" for name, type_ in pairs]
        return (
            f"CREATE TABLE IF NOT EXISTS {quote(database)}.{quote(self.name)} (\n  "
            + ",\n  ".join(columns)
            + "\n) ENGINE = ReplacingMergeTree(_ingested_at) ORDER BY id"
        )

    def row(self, obj: Mapping, **supplied: object) -> tuple:
        """The row for one Stripe object (a plain dict), but for `_ingested_at`, which the
        writer stamps per batch; `supplied` gives the columns that are not in the object."""
        values = [supplied[c.name] if c.value is None else c.value(obj) for c in self.columns]
        raw = json.dumps(obj, separators=(",", ":"), sort_keys=True, default=str)
        return (*values, raw)


def quote(identifier: str) -> str:
    return "`" + identifier.replace("\\", "\\\\").replace("`", "\\`") + "`"


BALANCE_TRANSACTIONS = RawTable(
    "balance_transactions",
    (
        Column("id", ID, _field("id")),
        Column("type", STATE, _field("type")),
        Column("reporting_category", STATE, _field("reporting_category")),
        Column("source", REF, _ref("source")),
        Column("amount", MONEY, _money("amount")),
        Column("fee", MONEY, _money("fee")),
        Column("net", MONEY, _money("net")),
        Column("currency", CURRENCY, _currency),
        Column("fee_details", FEE_DETAILS, _fee_details),
        Column("status", STATE, _field("status")),
        Column("available_on", TIME, _time("available_on")),
        Column("created", TIME, _time("created")),
        Column("exchange_rate", "Nullable(Float64)", _field("exchange_rate")),
        # The automatic payout that settled it: Stripe's object does not say, the payout's
        # list of transactions does (NULL until that payout is ingested).
        Column("payout", REF, None),
    ),
)

CHARGES = RawTable(
    "charges",
    (
        Column("id", ID, _field("id")),
        Column("payment_intent", REF, _ref("payment_intent")),
        Column("amount", MONEY, _money("amount")),
        Column("amount_refunded", MONEY, _money("amount_refunded")),
        Column("currency", CURRENCY, _currency),
        Column("status", STATE, _field("status")),
        Column("balance_transaction", REF, _ref("balance_transaction")),
        Column("disputed", FLAG, lambda obj: bool(obj.get("disputed"))),
        Column("created", TIME, _time("created")),
        Column("metadata_order_id", "Nullable(String)", _order_id),
    ),
)

REFUNDS = RawTable(
    "refunds",
    (
        Column("id", ID, _field("id")),
        Column("charge", REF, _ref("charge")),
        Column("payment_intent", REF, _ref("payment_intent")),
        Column("amount", MONEY, _money("amount")),
        Column("currency", CURRENCY, _currency),
        Column("status", STATE, _field("status")),
        Column("balance_transaction", REF, _ref("balance_transaction")),
        Column("created", TIME, _time("created")),
    ),
)

DISPUTES = RawTable(
    "disputes",
    (
        Column("id", ID, _field("id")),
        Column("charge", REF, _ref("charge")),
        Column("payment_intent", REF, _ref("payment_intent")),
        Column("amount", MONEY, _money("amount")),
        Column("currency", CURRENCY, _currency),
        Column("status", STATE, _field("status")),
        Column("reason", STATE, _field("reason")),
        Column("created", TIME, _time("created")),
        # The withdrawal (and any reinstatement) Stripe booked for it, embedded in the dispute.
        Column("balance_transaction_ids", IDS, _embedded_ids("balance_transactions")),
    ),
)

PAYOUTS = RawTable(
    "payouts",
    (
        Column("id", ID, _field("id")),
        Column("amount", MONEY, _money("amount")),
        Column("currency", CURRENCY, _currency),
        Column("status", STATE, _field("status")),
        Column("automatic", FLAG, lambda obj: bool(obj.get("automatic"))),
        Column("reconciliation_status", STATE, lambda obj: obj.get("reconciliation_status") or ""),
        Column("arrival_date", TIME, _time("arrival_date")),
        Column("created", TIME, _time("created")),
        Column("balance_transaction", REF, _ref("balance_transaction")),
        # What `balance_transactions.list(payout=id)` lists once the payout is reconciled: the
        # transactions it settled and its own (so their nets sum to 0). Empty for a manual
        # payout (Stripe cannot say) or one not reconciled yet.
        Column("balance_transaction_ids", IDS, None),
    ),
)

TABLES = (BALANCE_TRANSACTIONS, CHARGES, REFUNDS, DISPUTES, PAYOUTS)
