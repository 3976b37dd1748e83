"""Prometheus metrics: HTTP traffic per route template, business counters, and `/metrics`.

Under several uvicorn workers each process keeps its own numbers; with
`PROMETHEUS_MULTIPROC_DIR` set (before prometheus_client is imported) they go to files there
and `/metrics` adds up every worker's files, so any worker can answer a scrape.
"""

from __future__ import annotations

import os
import time
from typing import Literal

from fastapi import APIRouter, Request, Response
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.exposition import choose_encoder
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.telemetry.asgi import method_label, route_template

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests answered.", ["method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds", "Time to answer an HTTP request.", ["method", "route"]
)

ORDERS_PLACED = Counter("orders_placed_total", "Orders placed.")
PAYMENTS = Counter("payments_total", "Payments by outcome.", ["status"])
REFUNDS = Counter("refunds_total", "Refunds issued.")
CHECK_INS = Counter("check_ins_total", "Check-in scans by result.", ["result"])

# Known outcomes start at zero, so a rate() over them exists before the first event.
for _status in ("succeeded", "failed"):
    PAYMENTS.labels(_status)


def record_order_placed() -> None:
    ORDERS_PLACED.inc()


def record_payment(status: Literal["succeeded", "failed"]) -> None:
    PAYMENTS.labels(status).inc()


def record_refund() -> None:
    REFUNDS.inc()


def record_check_in(result: str) -> None:
    """`result` must come from a small fixed vocabulary ("admitted", "already_used", ...)."""
    CHECK_INS.labels(result).inc()


def _multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


class MetricsMiddleware:
    """Pure ASGI (BaseHTTPMiddleware costs a task and a stream per request).

    Also tells prometheus_client when this worker shuts down, so per-process live gauges
    of a dead worker stop being reported.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, _marking_process_dead(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # unless the app starts a response, the server answers 500
        started = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            method, route = method_label(scope), route_template(scope)
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_DURATION.labels(method, route).observe(time.perf_counter() - started)


def _marking_process_dead(send: Send) -> Send:
    async def send_lifespan(message: Message) -> None:
        if message["type"] == "lifespan.shutdown.complete" and _multiprocess_dir():
            multiprocess.mark_process_dead(os.getpid())
        await send(message)

    return send_lifespan


def _registry() -> CollectorRegistry:
    if not _multiprocess_dir():
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


router = APIRouter(tags=["operations"], include_in_schema=False)


@router.get("/metrics")
def metrics(request: Request) -> Response:
    """Every metric in the text exposition format (OpenMetrics when the scraper asks)."""
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(_registry()), media_type=content_type)
