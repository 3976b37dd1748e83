"""Operations telemetry for the API: Prometheus metrics, and JSON logs with request ids."""

from __future__ import annotations

from fastapi import FastAPI

from api.telemetry import logs, metrics


def install(app: FastAPI) -> None:
    """Add `/metrics` and both middlewares (request ids outermost, so even the metrics
    middleware's own failures are logged under the request's id)."""
    app.include_router(metrics.router)
    app.add_middleware(metrics.MetricsMiddleware)
    app.add_middleware(logs.RequestLogMiddleware)
