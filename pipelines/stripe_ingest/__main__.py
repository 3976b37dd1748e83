"""`python -m pipelines.stripe_ingest [--database NAME]`: one ingestion run, then its summary."""

from __future__ import annotations

import argparse

from pipelines.stripe_ingest.ingest import ingest_from_settings
from ticketflow.settings import get_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--database", help="ClickHouse database of the tables (default: TICKETFLOW_CDC_DATABASE)"
    )
    args = parser.parse_args()
    for kind, result in ingest_from_settings(get_settings(), database=args.database).items():
        cursor = result.cursor.isoformat() if result.cursor else "-"
        print(f"{kind:22} {result.rows:>8} rows   cursor {cursor}")


if __name__ == "__main__":
    main()
