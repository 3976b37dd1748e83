"""`python -m api`: bring the schema up to date, then serve the API on 127.0.0.1.

With the embedded payment processor, the API first asks it to send its webhooks here (the
event types it handles).

With `TICKETFLOW_API_WORKERS` > 1 uvicorn runs that many worker processes; their metrics
meet in `<data_dir>/run/prometheus`, emptied at each start so old workers' counts vanish.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil

import uvicorn

from api import migrate
from api.payments.stripe_provider import WEBHOOK_EVENTS
from api.telemetry.logs import configure_logging, logging_config
from ticketflow.embedded.payments import register_webhook
from ticketflow.settings import LOCALHOST, Settings, get_settings

log = logging.getLogger("api")


def _share_metrics_between_workers(settings: Settings) -> None:
    """Must run before any worker imports prometheus_client (workers inherit the variable)."""
    directory = settings.data_path / "run" / "prometheus"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


def _receive_embedded_webhooks(settings: Settings, port: int) -> None:
    """Ask the embedded processor to send its events here. Without it payments still work
    (the API reads each payment's outcome when it is made), so a failure only warns."""
    try:
        register_webhook(
            settings.stripe_api_base,
            "ticketflow-api",
            url=f"http://{LOCALHOST}:{port}/webhooks/stripe",
            secret=settings.effective_webhook_secret,
            events=WEBHOOK_EVENTS,  # the others would only be answered "ignored"
        )
    except OSError as exc:
        log.warning(
            "the embedded payment processor at %s did not take our webhook (%s); refunds and "
            "disputes made at the processor will not reach the API until it restarts",
            settings.stripe_api_base,
            exc,
        )


def main() -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=settings.api_port)
    parser.add_argument("--host", default=LOCALHOST)
    args = parser.parse_args()
    configure_logging(settings.log_level)
    migrate.upgrade(settings.sqlalchemy_url)
    if settings.embedded_payments:
        _receive_embedded_webhooks(settings, args.port)
    if settings.api_workers > 1:
        _share_metrics_between_workers(settings)
    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=settings.api_workers,
        log_config=logging_config(settings.log_level),
        log_level=settings.log_level.lower(),
        access_log=False,  # api.telemetry.logs writes the access lines
    )


if __name__ == "__main__":
    main()
