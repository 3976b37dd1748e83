"""Settings: one place, environment first, `.env` honoured, unset URLs mean embedded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ticketflow.services import embedded_services
from ticketflow.settings import Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """No TicketFlow setting from the outside, no `.env` but the test's own."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("TICKETFLOW_") or name in (
            "DATABASE_URL",
            "CLICKHOUSE_URL",
            "STRIPE_API_KEY",
        ):
            monkeypatch.delenv(name)


def test_defaults_are_the_embedded_platform():
    settings = Settings()
    assert settings.embedded_postgres and settings.embedded_warehouse and settings.embedded_payments
    assert settings.effective_database_url == "postgresql://postgres@127.0.0.1:5433/postgres"
    assert settings.effective_clickhouse_url == "http://127.0.0.1:8123"
    assert settings.stripe_api_base == "http://127.0.0.1:8420"
    assert [s.name for s in embedded_services(settings)] == [
        "postgres",
        "warehouse",
        "payments",
        "api",
        "cdc",
    ]


def test_conventional_names_and_prefix_both_work(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db.internal/tickets")
    monkeypatch.setenv("TICKETFLOW_CLICKHOUSE_URL", "https://ch.internal:8443")
    monkeypatch.setenv("TICKETFLOW_PAYMENTS_PORT", "9999")
    settings = Settings()
    assert settings.effective_database_url == "postgresql://app@db.internal/tickets"
    assert settings.effective_clickhouse_url == "https://ch.internal:8443"
    assert settings.payments_port == 9999
    # Parts that point elsewhere are not started; the platform's own processes are.
    assert [s.name for s in embedded_services(settings)] == ["payments", "api", "cdc"]


def test_dotenv_file_is_honoured():
    Path(".env").write_text("STRIPE_API_KEY=sk_live_example\nTICKETFLOW_DATA_DIR=/srv/tf\n")
    settings = Settings()
    assert settings.stripe_api_base is None  # the real Stripe
    assert settings.effective_stripe_api_key == "sk_live_example"
    assert settings.data_path == Path("/srv/tf")


def test_empty_values_mean_embedded():
    Path(".env").write_text("DATABASE_URL=\nSTRIPE_API_KEY=\n")
    settings = Settings()
    assert settings.embedded_postgres and settings.embedded_payments
    assert [s.name for s in embedded_services(settings)][:3] == [
        "postgres",
        "warehouse",
        "payments",
    ]
