"""Stripe ingestion: balance transactions, charges, refunds, disputes and payouts from the
payment processor into ClickHouse `raw.stripe_*` tables, incrementally by `created`.

Plain functions (the Dagster asset wraps `ingest_from_settings`); `python -m
pipelines.stripe_ingest` runs it once.
"""

from pipelines.stripe_ingest.ingest import (
    KindResult,
    ingest_from_settings,
    ingest_stripe,
    stripe_client,
    warehouse_client,
)
from pipelines.stripe_ingest.tables import TABLES, RawTable

__all__ = [
    "TABLES",
    "KindResult",
    "RawTable",
    "ingest_from_settings",
    "ingest_stripe",
    "stripe_client",
    "warehouse_client",
]
