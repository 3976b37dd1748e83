"""Checkout under load: create-order and the full pay flow, over HTTP, against a private platform.

Starts PostgreSQL, the payment processor and the API as `ticketflow up` would (own processes,
free ports, a temporary directory), seeds one organizer with a published event of large capacity
and N buyers (each logs in once), warms up, then drives N concurrent clients for `--seconds` on:

  create-order  POST /orders (one ticket)                            -> orders/s, p50/p99
  pay flow      POST /orders, then POST /orders/{id}/payments with    -> paid orders/s, p50/p99
                pm_card_visa (the processor is called synchronously)

Each client sends its next request when the last one is answered (a closed loop), with an
`Idempotency-Key` as a careful front end does (`--no-idempotency-keys` to leave it out). The
processor's webhooks (sent a second after each payment) reach the API during the run, as they
would in production.

The clients are one asyncio loop of plain HTTP/1.1 keep-alive connections in this process
(stdlib only). On the 2-core machine this was written on, a bare request costs the client about
70 us of CPU (150-200 us with this benchmark's bookkeeping, as printed), against about 600 us
for 8 threads with an httpx.Client each, whose GIL hand-offs would also be counted as server
latency. On two cores shared with the server, the load generator
must stay small to measure the server. The client's own CPU is printed, with each server
process's, and the server-side latencies from the API's /metrics histograms next to the
client-side ones.

The API's checkout rate limit (TICKETFLOW_RATE_LIMIT_CHECKOUT, 30/minute per buyer by default)
is raised for the run through the API process's environment; the output says so. Issue target
on 2 cores: >= 300 paid orders/s, and create-order p99 < 100 ms.

    .venv/bin/python bench/checkout.py [--clients 32] [--seconds 10] [--warmup 3] [--workers N]
        [--ticket-types 1] [--no-idempotency-keys] [--profile api.prof]

32 clients by default: at the target's 300 orders/s and under 100 ms each, Little's law puts
about 30 requests in the server at once.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from api.db import unit_of_work
from api.models import Role, User
from api.security import hash_password
from ticketflow.services import isolated_settings, service_named
from ticketflow.settings import LOCALHOST
from ticketflow.supervisor import Supervisor, run_services

PASSWORD = "bench-password-1"
CHECKOUT_RATE = "1000000/minute"
TARGET_PAID_PER_S = 300
TARGET_CREATE_P99_MS = 100
ROUTES = {"create": "/orders", "pay": "/orders/{order_id}/payments"}
PHASES = (("create-order", "create"), ("pay flow", "pay"), ("bare request", "bare"))

# `python -m api` with cProfile on every thread (sync routes run in anyio's worker threads, which
# a plain `python -m cProfile` would miss); the merged stats are written when it stops.
PROFILED_API = """
import cProfile, pstats, runpy, signal, sys, threading
path, sys.argv = sys.argv[1], ["api", *sys.argv[2:]]
profiles = [cProfile.Profile()]
start_thread = threading.Thread._bootstrap_inner
def profiled(thread):
    profile = cProfile.Profile()
    profiles.append(profile)
    profile.enable()
    try:
        start_thread(thread)
    finally:
        profile.disable()
threading.Thread._bootstrap_inner = profiled
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # uvicorn re-raises it once stopped
profiles[0].enable()
try:
    runpy.run_module("api", run_name="__main__")
finally:
    profiles[0].disable()
    stats = pstats.Stats(profiles[0])
    for profile in profiles[1:]:
        stats.add(profile)
    stats.dump_stats(path)
"""


# --- a small HTTP/1.1 client ---------------------------------------------------------------


class Connection:
    """One keep-alive connection sending JSON POSTs as one signed-in buyer."""

    def __init__(self, port: int, token: str, idempotency_keys: bool):
        self.port = port
        self.head = (
            f"Host: {LOCALHOST}:{port}\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\n"
        )
        self.idempotency_keys = idempotency_keys

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(LOCALHOST, self.port)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        key = f"Idempotency-Key: {uuid.uuid4().hex}\r\n" if self.idempotency_keys else ""
        request = (
            f"POST {path} HTTP/1.1\r\n{self.head}{key}Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(request + body)
        return await self._response()

    async def get(self, path: str) -> tuple[int, bytes]:
        self.writer.write(f"GET {path} HTTP/1.1\r\n{self.head}\r\n".encode())
        return await self._response()

    async def _response(self) -> tuple[int, bytes]:
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


@dataclasses.dataclass
class Phase:
    name: str
    seconds: float = 0.0
    completed: int = 0
    requests: int = 0
    latencies: list[float] = dataclasses.field(default_factory=list)  # one per completed flow
    steps: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    errors: Counter[str] = dataclasses.field(default_factory=Counter)
    server: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    cpu: dict[str, float] = dataclasses.field(default_factory=dict)  # cores used on average

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0


def _error(status: int, body: bytes) -> str:
    try:
        return f"{status} {json.loads(body)['error']['code']}"
    except (ValueError, KeyError, TypeError):
        return str(status)


async def _client(
    connection: Connection, order: bytes, pay: bool, deadline: float, phase: Phase
) -> None:
    payment = json.dumps({"payment_method": "pm_card_visa"}).encode()
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        status, body = await connection.post("/orders", order)
        created = time.perf_counter()
        phase.requests += 1
        if status != 201:
            phase.errors[f"create: {_error(status, body)}"] += 1
            continue
        if pay:
            order_id = json.loads(body)["id"]
            status, body = await connection.post(f"/orders/{order_id}/payments", payment)
            phase.requests += 1
            if status != 201 or b'"order_status":"paid"' not in body:
                phase.errors[f"pay: {_error(status, body)}"] += 1
                continue
        finished = time.perf_counter()
        phase.completed += 1
        phase.latencies.append(finished - started)
        phase.steps.setdefault("create", []).append(created - started)
        if pay:
            phase.steps.setdefault("pay", []).append(finished - created)


async def _bare_client(connection: Connection, deadline: float, phase: Phase) -> None:
    """The least a request can cost: `GET /health` (a sync route, no database)."""
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        status, body = await connection.get("/health")
        phase.requests += 1
        if status != 200:
            phase.errors[f"health: {_error(status, body)}"] += 1
            continue
        phase.completed += 1
        phase.latencies.append(time.perf_counter() - started)


async def _run(
    connections: list[Connection], orders: list[bytes], mode: str, seconds: float, phase: Phase
) -> None:
    """Client i buys ticket type i mod len(orders); mode is "create", "pay" or "bare"."""
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(
        *(
            _bare_client(c, deadline, phase)
            if mode == "bare"
            else _client(c, orders[i % len(orders)], mode == "pay", deadline, phase)
            for i, c in enumerate(connections)
        )
    )
    phase.seconds = time.perf_counter() - started


# --- the platform --------------------------------------------------------------------------


def _seed(settings, buyers: int, ticket_types: int) -> tuple[int, list[int], list[str]]:
    """An organizer's published event with large ticket types, and `buyers` signed-in buyers:
    (event id, ticket type ids, access tokens)."""
    password_hash = hash_password(PASSWORD)  # argon2 is slow on purpose: hash once
    stamp = time.monotonic_ns()
    emails = [f"buyer{n}-{stamp}@bench.example" for n in range(buyers)]
    organizer_email = f"organizer-{stamp}@bench.example"
    engine = create_engine(settings.sqlalchemy_url, poolclass=NullPool)
    with unit_of_work(engine) as session:
        session.add_all(
            User(email=email, password_hash=password_hash, full_name="Bench", role=Role.ATTENDEE)
            for email in [organizer_email, *emails]
        )
    engine.dispose()

    base = f"http://{LOCALHOST}:{settings.api_port}"
    with httpx.Client(base_url=base, timeout=60) as api:

        def log_in(email: str) -> str:
            response = api.post("/auth/login", json={"email": email, "password": PASSWORD})
            response.raise_for_status()
            return response.json()["access_token"]

        organizer = {"Authorization": f"Bearer {log_in(organizer_email)}"}

        def post(path: str, body: dict | None = None) -> dict:
            response = api.post(path, json=body, headers=organizer)
            response.raise_for_status()
            return response.json()

        post("/organizers", {"name": "Bench Arena Ltd"})
        now = datetime.now(UTC)
        event = post(
            "/organizer/events",
            {
                "title": "Stadium On-Sale",
                "category": "music",
                "timezone": "Europe/Berlin",
                "starts_at": (now + timedelta(days=60)).isoformat(),
                "ends_at": (now + timedelta(days=60, hours=4)).isoformat(),
                "sales_start_at": (now - timedelta(hours=1)).isoformat(),
                "sales_end_at": (now + timedelta(days=59)).isoformat(),
            },
        )
        tier = {"price_minor": 5_900, "currency": "EUR", "capacity": 10_000_000}
        ticket_types = [
            post(f"/organizer/events/{event['id']}/ticket-types", tier | {"name": f"Block {n}"})
            for n in range(1, ticket_types + 1)
        ]
        post(f"/organizer/events/{event['id']}/publish")
        tokens = [log_in(email) for email in emails]
    return event["id"], [t["id"] for t in ticket_types], tokens


def _histograms(port: int) -> dict[str, dict]:
    """Cumulative bucket counts (and sum, count) of each checkout route, summed over workers."""
    text = httpx.get(f"http://{LOCALHOST}:{port}/metrics", timeout=30).text
    wanted = {route: step for step, route in ROUTES.items()}
    result: dict[str, dict] = {step: {"buckets": Counter()} for step in ROUTES}
    for family in text_string_to_metric_families(text):
        if family.name != "http_request_duration_seconds":
            continue
        for sample in family.samples:
            step = wanted.get(sample.labels.get("route"))
            if step is None or sample.labels.get("method") != "POST":
                continue
            if sample.name.endswith("_bucket"):
                result[step]["buckets"][float(sample.labels["le"])] += sample.value
            elif sample.name.endswith("_sum"):
                result[step]["sum"] = result[step].get("sum", 0.0) + sample.value
            elif sample.name.endswith("_count"):
                result[step]["count"] = result[step].get("count", 0.0) + sample.value
    return result


def _quantile_from_buckets(buckets: dict[float, float], q: float) -> float:
    """Linear interpolation inside the bucket holding the q-th observation (as Prometheus's
    histogram_quantile does)."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if not total:
        return float("nan")
    rank, previous_bound, previous_count = q * total, 0.0, 0.0
    for bound in bounds:
        if buckets[bound] >= rank:
            if bound == float("inf"):
                return previous_bound
            share = (rank - previous_count) / max(buckets[bound] - previous_count, 1e-9)
            return previous_bound + (bound - previous_bound) * share
        previous_bound, previous_count = bound, buckets[bound]
    return previous_bound


def _server_latency(before: dict, after: dict) -> dict[str, dict[str, float]]:
    result = {}
    for step in ROUTES:
        count = after[step].get("count", 0.0) - before[step].get("count", 0.0)
        if not count:
            continue
        buckets = {
            bound: after[step]["buckets"][bound] - before[step]["buckets"].get(bound, 0.0)
            for bound in after[step]["buckets"]
        }
        result[step] = {
            "mean": (after[step]["sum"] - before[step].get("sum", 0.0)) / count * 1000,
            "p50": _quantile_from_buckets(buckets, 0.50) * 1000,
            "p99": _quantile_from_buckets(buckets, 0.99) * 1000,
        }
    return result


def _cpu_seconds(supervisor: Supervisor) -> dict[str, float]:
    """CPU used so far by each service's process tree, and by this process (the clients)."""
    result = {}
    for item in supervisor.running:
        total = 0.0
        root = psutil.Process(item.process.pid)
        for process in [root, *root.children(recursive=True)]:
            try:
                times = process.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            total += times.user + times.system + times.children_user + times.children_system
        result[item.service.name] = total
    own = psutil.Process().cpu_times()
    result["clients"] = own.user + own.system
    return result


async def _measure(
    settings, supervisor: Supervisor, args: argparse.Namespace, tokens, orders: list[bytes]
) -> list[Phase]:
    connections = [Connection(settings.api_port, t, args.idempotency_keys) for t in tokens]
    await asyncio.gather(*(c.open() for c in connections))
    try:
        warm = Phase("warm-up")
        for mode in ("create", "pay"):
            await _run(connections, orders, mode, args.warmup / 2, warm)
        phases = []
        for name, mode in PHASES:
            phase = Phase(name)
            metrics_before, cpu_before = _histograms(settings.api_port), _cpu_seconds(supervisor)
            await _run(connections, orders, mode, args.seconds, phase)
            cpu_after = _cpu_seconds(supervisor)
            phase.server = _server_latency(metrics_before, _histograms(settings.api_port))
            phase.cpu = {k: (cpu_after[k] - cpu_before[k]) / phase.seconds for k in cpu_after}
            phases.append(phase)
        if warm.errors:
            print(f"warm-up errors: {dict(warm.errors)}")
        return phases
    finally:
        for connection in connections:
            connection.close()


# --- report --------------------------------------------------------------------------------


def _ms(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if q == 0.5:
        return statistics.median(values) * 1000
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1] * 1000


def _report(args: argparse.Namespace, workers: int, phases: list[Phase]) -> None:
    create, flow, bare = phases
    print(
        f"checkout benchmark: {args.clients} clients (closed loop), {args.seconds:.0f} s per "
        f"phase after {args.warmup:.0f} s of warm-up; {args.ticket_types} ticket type(s); "
        f"API with {workers} worker process(es); "
        f"{os.cpu_count()} CPUs; load average before the run {args.load_before:.2f}"
    )
    print(
        f"the API's checkout rate limit was raised to {CHECKOUT_RATE} for this run "
        "(TICKETFLOW_RATE_LIMIT_CHECKOUT; default 30/minute per buyer); Idempotency-Key "
        f"{'sent on every POST' if args.idempotency_keys else 'not sent'}"
    )
    print(
        f"{'phase':<14}{'done/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>8}   "
        "server-side p50 / p99 / mean ms per request (from /metrics)"
    )
    for phase in phases:
        server = "; ".join(
            f"{step} {s['p50']:.1f} / {s['p99']:.1f} / {s['mean']:.1f}"
            for step, s in phase.server.items()
        )
        print(
            f"{phase.name:<14}{phase.rate:>8.1f}{_ms(phase.latencies, 0.5):>9.1f}"
            f"{_ms(phase.latencies, 0.99):>9.1f}{max(phase.latencies, default=0) * 1000:>9.1f}"
            f"{sum(phase.errors.values()):>8}   {server}"
        )
    for step, values in flow.steps.items():
        p50, p99 = _ms(values, 0.5), _ms(values, 0.99)
        print(f"  pay flow, {step} step: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    for phase in phases:
        if phase.errors:
            print(f"  {phase.name} errors: {dict(phase.errors)}")
        cpu = ", ".join(f"{name} {cores:.2f}" for name, cores in phase.cpu.items())
        per_request = phase.cpu["clients"] * phase.seconds / max(phase.requests, 1) * 1e6
        print(
            f"  {phase.name} CPU, in cores: {cpu} (of {os.cpu_count()}; the clients "
            f"{per_request:.0f} us per request)"
        )
    if create.rate:
        print(
            f"ratios: paid orders/s / created orders/s = {flow.rate / create.rate:.2f}; "
            f"pay-flow p50 / create-order p50 = "
            f"{_ms(flow.latencies, 0.5) / _ms(create.latencies, 0.5):.2f}"
        )
    _report_cpu_budget(flow, bare)
    create_p99 = _ms(create.latencies, 0.99)
    print(
        f"target >= {TARGET_PAID_PER_S} paid orders/s: {flow.rate:.0f} "
        f"({'met' if flow.rate >= TARGET_PAID_PER_S else 'NOT met'}); "
        f"target create-order p99 < {TARGET_CREATE_P99_MS} ms: {create_p99:.0f} ms "
        f"({'met' if create_p99 < TARGET_CREATE_P99_MS else 'NOT met'})"
    )


def _report_cpu_budget(flow: Phase, bare: Phase) -> None:
    """CPU per paid order by process, against what the target leaves on this machine."""
    if not flow.completed or not bare.completed:
        return
    cores = os.cpu_count() or 1
    seconds_per_order = flow.seconds / flow.completed
    per_order = {name: used * seconds_per_order * 1000 for name, used in flow.cpu.items()}
    bare_api = bare.cpu["api"] * bare.seconds / bare.completed * 1000
    requests_per_order = 3  # create, pay, and the processor's payment_intent.succeeded webhook
    budget = cores / TARGET_PAID_PER_S * 1000
    print(
        "  CPU per paid order, ms: "
        + ", ".join(f"{name} {ms:.2f}" for name, ms in per_order.items())
        + f"; total {sum(per_order.values()):.2f}"
    )
    floor = requests_per_order * bare_api + per_order.get("payments", 0.0)
    print(
        f"  budget at {TARGET_PAID_PER_S} paid orders/s on {cores} cores: {budget:.2f} ms per "
        f"paid order for everything; a bare request (GET /health) costs the API "
        f"{bare_api:.2f} ms, so {requests_per_order} bare requests plus the processor's own "
        f"{per_order.get('payments', 0.0):.2f} ms already take {floor:.2f} ms "
        f"({floor / budget:.0%} of the budget) before any database work"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32, help="concurrent buyers (default 32)")
    parser.add_argument("--seconds", type=float, default=10, help="per phase (default 10)")
    parser.add_argument("--warmup", type=float, default=3, help="seconds (default 3)")
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("TICKETFLOW_API_WORKERS", "2")),
        help="API worker processes (default: TICKETFLOW_API_WORKERS, else 2)",
    )
    parser.add_argument(
        "--ticket-types",
        type=int,
        default=1,
        help="spread the buyers over this many ticket types (default 1: one hot tier)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="run the API as one worker under cProfile (all threads) and write its stats here",
    )
    parser.add_argument(
        "--no-idempotency-keys", dest="idempotency_keys", action="store_false", default=True
    )
    args = parser.parse_args()
    args.load_before = os.getloadavg()[0]
    if args.profile:
        args.workers = 1  # uvicorn serves in the profiled process itself

    with tempfile.TemporaryDirectory() as tmp:
        settings = isolated_settings(Path(tmp))
        api = service_named(settings, "api")
        api = dataclasses.replace(
            api,
            env={
                **api.env,
                "TICKETFLOW_API_WORKERS": str(args.workers),
                "TICKETFLOW_RATE_LIMIT_CHECKOUT": CHECKOUT_RATE,
            },
        )
        if args.profile:
            argv = [sys.executable, "-c", PROFILED_API, str(args.profile.resolve())]
            api = dataclasses.replace(api, argv=[*argv, "--port", str(settings.api_port)])
        services = [service_named(settings, "postgres"), service_named(settings, "payments"), api]
        with run_services(settings, services) as supervisor:
            event_id, ticket_types, tokens = _seed(settings, args.clients, args.ticket_types)
            orders = [
                json.dumps(
                    {"event_id": event_id, "items": [{"ticket_type_id": t, "quantity": 1}]}
                ).encode()
                for t in ticket_types
            ]
            phases = asyncio.run(_measure(settings, supervisor, args, tokens, orders))
    _report(args, args.workers, phases)
    if args.profile:
        print(
            f"cProfile of the API (wall time per thread, so waits show too): {args.profile}; "
            f"read it with `python -m pstats {args.profile}`"
        )


if __name__ == "__main__":
    main()
