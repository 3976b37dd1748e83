"""All of TicketFlow's settings, read once from the environment (and a `.env` file).

Unset service URLs mean "use the embedded default": `ticketflow up` then starts that part itself
on 127.0.0.1. Set `DATABASE_URL`, `CLICKHOUSE_URL` or `STRIPE_API_KEY` and nothing embedded
starts for that part.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCALHOST = "127.0.0.1"
# The key the stripe SDK sends to the embedded localstripe; localstripe accepts any sk_test_ key.
EMBEDDED_STRIPE_KEY = "sk_test_ticketflow_embedded"
# The secret the embedded processor signs its webhooks with (registered by the API at start).
EMBEDDED_WEBHOOK_SECRET = "whsec_ticketflow_embedded"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TICKETFLOW_", env_file=".env", extra="ignore", populate_by_name=True
    )

    data_dir: Path = Field(default=Path("var"), description="Where embedded parts keep data.")

    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "TICKETFLOW_DATABASE_URL")
    )
    postgres_port: int = 5433

    clickhouse_url: str | None = Field(
        default=None, validation_alias=AliasChoices("CLICKHOUSE_URL", "TICKETFLOW_CLICKHOUSE_URL")
    )
    warehouse_port: int = 8123

    stripe_api_key: str | None = Field(
        default=None, validation_alias=AliasChoices("STRIPE_API_KEY", "TICKETFLOW_STRIPE_API_KEY")
    )
    payments_port: int = 8420
    # The embedded processor charges Stripe's card pricing: percent of the amount plus a fixed
    # fee in minor units, per successful charge.
    payments_fee_percent: Decimal = Decimal("2.9")
    payments_fee_fixed: int = 30

    # --- the API ------------------------------------------------------------------------
    api_port: int = 8000
    api_workers: int = Field(default=2, ge=1, description="uvicorn worker processes")
    # Signs access tokens. Unset: a random secret kept in `<data_dir>/secrets/jwt`.
    jwt_secret: str | None = None
    access_token_minutes: int = Field(default=60, ge=1)
    hold_minutes: int = Field(default=15, ge=1, description="how long checkout holds tickets")
    media_max_bytes: int = 5 * 1024 * 1024
    # Per-client limits, in the `limits` library's notation ("10/minute", "5 per second").
    rate_limit_login: str = "10/minute"
    rate_limit_checkout: str = "30/minute"
    # Verifies `Stripe-Signature`. Unset with embedded payments: the embedded secret below.
    stripe_webhook_secret: str | None = None
    log_level: str = "INFO"

    # --- the CDC relay (PostgreSQL -> ClickHouse) -------------------------------------------
    cdc_slot: str = "ticketflow_cdc"
    cdc_publication: str = "ticketflow_cdc"
    cdc_database: str = Field(default="raw", description="ClickHouse database of raw tables")
    cdc_batch_changes: int = Field(default=50_000, ge=100)
    cdc_metrics_port: int = 9187
    # Warn when the slot keeps more WAL than this (the relay is down or too slow).
    cdc_retained_wal_warn_mb: int = Field(default=1024, ge=1)

    # --- orchestration ------------------------------------------------------------------
    dagster_port: int = Field(default=3000, description="the embedded `dagster dev` web UI")

    # --- dashboards ---------------------------------------------------------------------
    dashboards_port: int = Field(default=8501, description="the Streamlit dashboards")
    # Where the dashboards sign people in (the API's base URL). Unset: this machine's API.
    dashboards_api_url: str | None = None

    @field_validator(
        "database_url",
        "clickhouse_url",
        "stripe_api_key",
        "jwt_secret",
        "stripe_webhook_secret",
        "dashboards_api_url",
        mode="before",
    )
    @classmethod
    def _empty_means_unset(cls, value: object) -> object:
        """`DATABASE_URL=` in a `.env` file means "not set", i.e. embedded."""
        return None if isinstance(value, str) and not value.strip() else value

    # --- derived -------------------------------------------------------------------------
    @property
    def data_path(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def embedded_postgres(self) -> bool:
        return self.database_url is None

    @property
    def embedded_warehouse(self) -> bool:
        return self.clickhouse_url is None

    @property
    def embedded_payments(self) -> bool:
        return self.stripe_api_key is None

    @property
    def effective_database_url(self) -> str:
        """A libpq URL (psycopg 3 / SQLAlchemy `postgresql+psycopg://` after a scheme swap)."""
        if self.database_url:
            return self.database_url
        return f"postgresql://postgres@{LOCALHOST}:{self.postgres_port}/postgres"

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL for SQLAlchemy with the psycopg 3 driver."""
        url = self.effective_database_url
        for scheme in ("postgresql://", "postgres://"):
            if url.startswith(scheme):
                return "postgresql+psycopg://" + url.removeprefix(scheme)
        return url

    @property
    def effective_clickhouse_url(self) -> str:
        if self.clickhouse_url:
            return self.clickhouse_url
        return f"http://{LOCALHOST}:{self.warehouse_port}"

    @property
    def stripe_api_base(self) -> str | None:
        """Where the stripe SDK is pointed; None means Stripe itself."""
        return None if self.stripe_api_key else f"http://{LOCALHOST}:{self.payments_port}"

    @property
    def effective_stripe_api_key(self) -> str:
        return self.stripe_api_key or EMBEDDED_STRIPE_KEY

    @property
    def effective_webhook_secret(self) -> str:
        if self.stripe_webhook_secret:
            return self.stripe_webhook_secret
        if self.embedded_payments:
            return EMBEDDED_WEBHOOK_SECRET
        raise RuntimeError("set TICKETFLOW_STRIPE_WEBHOOK_SECRET to verify Stripe's webhooks")

    @property
    def media_path(self) -> Path:
        return self.data_path / "media"

    @property
    def effective_jwt_secret(self) -> str:
        """The configured secret, or one generated once per data directory (mode 0600)."""
        if self.jwt_secret:
            return self.jwt_secret
        path = self.data_path / "secrets" / "jwt"
        if not path.exists():
            # Written aside, then linked into place: two workers starting at once agree.
            path.parent.mkdir(parents=True, exist_ok=True)
            draft = path.with_name(f"jwt.{os.getpid()}")
            fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_urlsafe(48))
            with contextlib.suppress(FileExistsError):
                os.link(draft, path)
            draft.unlink()
        return path.read_text().strip()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
