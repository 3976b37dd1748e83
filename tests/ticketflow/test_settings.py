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
        "dagster",
        "dashboards",
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
    assert [s.name for s in embedded_services(settings)] == [
        "payments",
        "api",
        "cdc",
        "dagster",
        "dashboards",
    ]


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


def test_dagster_and_its_dbt_use_the_platforms_warehouse_and_data_dir(monkeypatch):
    monkeypatch.setenv("CLICKHOUSE_URL", "https://reporter:s%40cret@ch.internal:8443")
    monkeypatch.setenv("TICKETFLOW_DATA_DIR", "/srv/tf")
    monkeypatch.setenv("TICKETFLOW_DAGSTER_PORT", "3100")
    dagster = next(s for s in embedded_services(Settings()) if s.name == "dagster")
    assert dagster.port == 3100 and dagster.url == "http://127.0.0.1:3100"
    assert dagster.argv[-4:] == ["--home", "/srv/tf/dagster", "--port", "3100"]
    assert dagster.env["CLICKHOUSE_URL"] == "https://reporter:s%40cret@ch.internal:8443"
    assert {k: v for k, v in dagster.env.items() if k.startswith("TICKETFLOW_CLICKHOUSE_")} == {
        "TICKETFLOW_CLICKHOUSE_HOST": "ch.internal",
        "TICKETFLOW_CLICKHOUSE_PORT": "8443",
        "TICKETFLOW_CLICKHOUSE_USER": "reporter",
        "TICKETFLOW_CLICKHOUSE_PASSWORD": "s@cret",
        "TICKETFLOW_CLICKHOUSE_SECURE": "true",
    }


def test_the_dashboards_sign_in_through_the_api_they_are_told(monkeypatch):
    from dashboards.signin import api_url

    monkeypatch.setenv("TICKETFLOW_API_PORT", "8100")
    assert api_url(Settings()) == "http://127.0.0.1:8100"
    monkeypatch.setenv("TICKETFLOW_DASHBOARDS_API_URL", "https://api.tickets.example/")
    assert api_url(Settings()) == "https://api.tickets.example"
    monkeypatch.setenv("TICKETFLOW_DASHBOARDS_API_URL", "")
    assert api_url(Settings()) == "http://127.0.0.1:8100"
