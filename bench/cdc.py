"""The CDC relay: snapshot rows/s, streaming rows/s draining a backlog, and end-to-end lag.

Starts a private platform (PostgreSQL, the warehouse, the payment processor and the API, as
`ticketflow up` would: own processes, free ports, a temporary directory) and measures, in one run:

  snapshot   the initial copy (Relay.start(), in this process) of a table of --snapshot-rows
             rows (ticket-like: bigint, uuid, enum, text, numeric, timestamptz, text[])
  streaming  the relay (in this process) draining a backlog of --backlog row changes written
             while it was stopped: checkout-like transactions (an order and two lines
             inserted, the order updated) with some deletions -> row changes/s (inserts,
             updates and deletes read from the slot) and rows written/s (after the relay folds
             a row's changes within a batch)
  lag        the relay as `ticketflow up` runs it (its own process, on the API's database)
             while buyers place and pay --rate orders/s through the API over HTTP (the client
             and the seeding of bench/checkout.py, paced here instead of a closed loop): for
             each order, from its creation's commit (the API's 201) to its row in ClickHouse
             (polled every --poll-ms by `_peerdb_version`) -> p50/p99

Figures repeated --repeat times are medians. Targets (issue, 2 cores): streaming >= 50,000
rows/s; lag p99 <= 2 s at 300 orders/s.

    .venv/bin/python bench/cdc.py [--snapshot-rows 500000] [--backlog 200000] [--repeat 3]
                                  [--rate 300] [--seconds 20] [--clients 48]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import checkout  # bench/checkout.py: the buyers' HTTP client and the event they buy from
import clickhouse_connect
import psutil
import psycopg

from pipelines.cdc.relay import Relay
from pipelines.cdc.warehouse import RawTables
from ticketflow.services import isolated_settings, service_named
from ticketflow.settings import LOCALHOST, Settings
from ticketflow.supervisor import run_services

TARGET_ROWS_PER_S = 50_000
TARGET_LAG_P99_S = 2.0
TARGET_ORDERS_PER_S = 300

TICKETS = """
CREATE TYPE ticket_status AS ENUM ('valid', 'void', 'checked_in');
CREATE TABLE tickets (
    id bigint PRIMARY KEY, order_id bigint NOT NULL, ticket_type_id bigint NOT NULL,
    status ticket_status NOT NULL, code uuid NOT NULL, holder_name text NOT NULL,
    price numeric(10, 2) NOT NULL, issued_at timestamptz NOT NULL, checked_in_at timestamptz,
    tags text[]
);
INSERT INTO tickets
SELECT n, n / 3, n % 40, (ARRAY['valid', 'void', 'checked_in'])[1 + n % 3]::ticket_status,
       md5(n::text)::uuid, 'Holder ' || n, (n % 9000) / 100.0,
       timestamptz '2026-01-01' + n * interval '1 second',
       CASE WHEN n % 3 = 2 THEN timestamptz '2026-06-01' + n * interval '1 second' END,
       CASE WHEN n % 5 = 0 THEN ARRAY['vip', 'early'] END
FROM generate_series(1, %(rows)s) AS n;
"""
ORDERS = """
CREATE TABLE orders (
    id bigint PRIMARY KEY, user_id bigint NOT NULL, event_id bigint NOT NULL,
    status text NOT NULL, currency varchar(3) NOT NULL, subtotal_minor int NOT NULL,
    total_minor int NOT NULL, expires_at timestamptz NOT NULL, paid_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE order_items (
    id bigint PRIMARY KEY, order_id bigint NOT NULL, ticket_type_id bigint NOT NULL,
    quantity int NOT NULL, unit_price_minor int NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- One committed transaction per order: 3 inserts and an update; every 10th order deletes
-- an older one (3 deletions). About 4.3 row changes per transaction.
CREATE PROCEDURE place_orders(first bigint, count int) LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN first .. first + count - 1 LOOP
        INSERT INTO orders VALUES (i, i % 1000, i % 50, 'pending', 'EUR', 5900, 5900,
                                   now() + interval '15 minutes', NULL, now());
        INSERT INTO order_items VALUES (2 * i, i, i % 7, 1, 5900, now()),
                                       (2 * i + 1, i, i % 7, 2, 2500, now());
        UPDATE orders SET status = 'paid', paid_at = now() WHERE id = i;
        IF i % 10 = 0 THEN
            DELETE FROM order_items WHERE order_id = i - 5;
            DELETE FROM orders WHERE id = i - 5;
        END IF;
        COMMIT;
    END LOOP;
END $$;
"""
CHANGES_PER_ORDER = 4.3


def _database(settings: Settings, name: str) -> str:
    with psycopg.connect(settings.effective_database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return settings.effective_database_url.rsplit("/", 1)[0] + f"/{name}"


def _fresh_relay(settings: Settings, dsn: str, name: str) -> Relay:
    """A relay whose slot and raw database start from nothing."""
    client = clickhouse_connect.get_client(dsn=settings.effective_clickhouse_url)
    client.command(f"DROP DATABASE IF EXISTS `{name}`")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE slot_name = %s",
            (name,),
        )
    return Relay(dsn, RawTables(client, name), slot=name, publication=name)


# --- snapshot and streaming ----------------------------------------------------------------


def measure_snapshot(settings: Settings, rows: int, repeat: int) -> list[float]:
    dsn = _database(settings, "cdc_snapshot")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(TICKETS.replace("%(rows)s", str(int(rows))))
        conn.execute("VACUUM ANALYZE tickets")
    rates = []
    for _ in range(repeat):
        relay = _fresh_relay(settings, dsn, "cdc_snapshot")
        started = time.perf_counter()
        relay.start()
        rates.append(rows / (time.perf_counter() - started))
        assert relay.raw.client.command("SELECT count() FROM cdc_snapshot.tickets") == rows
        relay.close()
    _fresh_relay(settings, dsn, "cdc_snapshot").close()  # drops the slot: no WAL kept for it
    return rates


@dataclasses.dataclass
class Drain:
    changes: int  # row changes read from the slot (I/U/D messages)
    rows: int  # rows written to ClickHouse
    messages: int
    seconds: float


def measure_streaming(settings: Settings, backlog: int, repeat: int) -> list[Drain]:
    dsn = _database(settings, "cdc_stream")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(ORDERS)
    relay = _fresh_relay(settings, dsn, "cdc_stream")
    relay.start()
    orders = int(backlog / CHANGES_PER_ORDER) + 1
    drains, first = [], 1
    for _ in range(repeat):
        with psycopg.connect(dsn, autocommit=True) as conn:  # the relay is not reading
            conn.execute("CALL place_orders(%s, %s)", (first, orders))
        first += orders
        counts = Counter()
        started = time.perf_counter()
        while True:
            result = relay.sync_batch()
            counts["messages"] += result.changes
            counts["rows"] += result.rows
            if result.caught_up:
                break
        seconds = time.perf_counter() - started
        changes = _row_changes(first - orders, orders)
        drains.append(Drain(changes, counts["rows"], counts["messages"], seconds))
    relay.close()
    _fresh_relay(settings, dsn, "cdc_stream").close()
    return drains


def _row_changes(first: int, orders: int) -> int:
    """What place_orders(first, orders) changed: 4 rows per order, 3 per 10th order."""
    deleting = sum(1 for i in range(first, first + orders) if i % 10 == 0)
    return orders * 4 + deleting * 3


# --- lag under checkout load ---------------------------------------------------------------


@dataclasses.dataclass
class Load:
    created: dict[int, float] = dataclasses.field(default_factory=dict)  # order id -> commit
    paid: int = 0
    errors: Counter[str] = dataclasses.field(default_factory=Counter)
    seconds: float = 0.0
    behind: float = 0.0  # how late the last order started, against its schedule


async def _flow(connection, order: bytes, pay: bool, measured: bool, load: Load) -> None:
    status, body = await connection.post("/orders", order)
    committed = time.perf_counter()  # the API answers after its transaction committed
    if status != 201:
        load.errors[f"create: {checkout._error(status, body)}"] += 1
        return
    order_id = json.loads(body)["id"]
    if measured:
        load.created[order_id] = committed
    if pay:
        payment = b'{"payment_method": "pm_card_visa"}'
        status, body = await connection.post(f"/orders/{order_id}/payments", payment)
        if status != 201:
            load.errors[f"pay: {checkout._error(status, body)}"] += 1
        elif measured:
            load.paid += 1


async def _paced(settings, tokens, orders: list[bytes], args, load: Load) -> None:
    """Start a flow every 1/rate seconds on a free connection (open loop, bounded by the
    number of buyers; buyer i buys ticket type i mod len(orders)); the first --warmup
    seconds are not measured."""
    connections = [checkout.Connection(settings.api_port, t, True) for t in tokens]
    await asyncio.gather(*(c.open() for c in connections))
    idle: asyncio.Queue = asyncio.Queue()
    for i, connection in enumerate(connections):
        idle.put_nowait((connection, orders[i % len(orders)]))
    tasks = set()
    started = time.perf_counter()
    end = started + args.warmup + args.seconds
    n = 0
    while (due := started + n / args.rate) < end:
        if (wait := due - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        buyer = await idle.get()  # all buyers busy: the rate falls behind what was asked
        now = time.perf_counter()
        if now >= end:
            break
        load.behind = now - due
        task = asyncio.create_task(_flow(*buyer, args.pay, now >= started + args.warmup, load))
        task.add_done_callback(lambda _, b=buyer: idle.put_nowait(b))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        n += 1
    await asyncio.gather(*tasks)
    load.seconds = args.seconds
    for connection in connections:
        connection.close()


# The rows one paid order writes, straight into the API's tables in two transactions as
# checkout does (the order and its item; then the payment and the order paid, which the
# ticket_type_sales trigger counts).
CREATE_ORDER = """
WITH placed AS (
    INSERT INTO orders (user_id, event_id, status, currency, subtotal_minor, discount_minor,
                        total_minor, expires_at)
    VALUES (%(user)s, %(event)s, 'pending', 'EUR', 5900, 0, 5900, now() + interval '15 min')
    RETURNING id
)
INSERT INTO order_items (order_id, ticket_type_id, quantity, unit_price_minor)
SELECT id, %(ticket_type)s, 1, 5900 FROM placed RETURNING order_id
"""
PAY_ORDER = """
WITH paid AS (
    INSERT INTO payments (order_id, provider, provider_payment_id, amount_minor, currency,
                          status, fee_minor, disputed, succeeded_at)
    VALUES (%(order)s, 'stripe', 'pi_bench_' || %(order)s, 5900, 'EUR', 'succeeded', 201,
            false, now())
)
UPDATE orders SET status = 'paid', paid_at = now() WHERE id = %(order)s
"""


def _sql_paced(dsn: str, args, load: Load, workers: int = 6) -> None:
    """Place and pay --sql-rate orders/s with SQL from `workers` connections, on a shared
    schedule; the first --warmup seconds are not measured."""
    with psycopg.connect(dsn) as conn:
        users = [u for (u,) in conn.execute("SELECT id FROM users ORDER BY id DESC LIMIT 50")]
        event, ticket_type = conn.execute(
            "SELECT event_id, id FROM ticket_types ORDER BY id DESC LIMIT 1"
        ).fetchone()
    schedule = iter(range(10**9))
    lock = threading.Lock()
    started = time.perf_counter()
    end = started + args.warmup + args.seconds

    def place_and_pay() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while True:
                with lock:
                    n = next(schedule)
                if (due := started + n / args.sql_rate) >= end:
                    return
                if (wait := due - time.perf_counter()) > 0:
                    time.sleep(wait)
                load.behind = max(time.perf_counter() - due, 0.0)
                params = {"user": users[n % len(users)], "event": event, "ticket_type": ticket_type}
                (order,) = conn.execute(CREATE_ORDER, params).fetchone()
                committed = time.perf_counter()
                conn.execute(PAY_ORDER, {"order": order})
                if due >= started + args.warmup:
                    load.created[order] = committed
                    load.paid += 1

    threads = [threading.Thread(target=place_and_pay) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    load.seconds = args.seconds


class Watcher(threading.Thread):
    """Polls ClickHouse for orders rows newer than the newest version seen: versions are
    commit LSNs and the relay writes in their order, so nothing visible is skipped."""

    def __init__(self, url: str, database: str, poll_seconds: float) -> None:
        super().__init__(daemon=True)
        self.client = clickhouse_connect.get_client(dsn=url)
        self.database = database
        self.poll_seconds = poll_seconds
        self.seen: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        newest = 0
        while not self.stop.is_set():
            rows = self.client.query(
                f"SELECT id, _peerdb_version FROM `{self.database}`.orders "
                f"WHERE _peerdb_version > {newest}"
            ).result_rows
            now = time.perf_counter()
            for order_id, version in rows:
                self.seen.setdefault(order_id, now)
                newest = max(newest, version)
            time.sleep(self.poll_seconds)


def _wait_for_table(url: str, database: str, table: str, timeout: float = 120) -> None:
    client = clickhouse_connect.get_client(dsn=url)
    deadline = time.monotonic() + timeout
    while not client.command(
        "SELECT count() FROM system.tables WHERE database = {d:String} AND name = {t:String}",
        parameters={"d": database, "t": table},
    ):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the relay did not create {database}.{table}")
        time.sleep(0.1)


def _cpu(process: psutil.Process, with_children: bool = True) -> float:
    total = 0.0
    children = process.children(recursive=True) if with_children else []
    for each in [process, *children]:
        try:
            times = each.cpu_times()
        except psutil.NoSuchProcess:
            continue
        # children_*: the ones it has reaped (PostgreSQL's backends of closed connections)
        total += times.user + times.system + times.children_user + times.children_system
    return total


def measure_lag(settings: Settings, supervisor, args) -> dict[str, dict]:
    """Lag under the API's load (`api`) and, at --sql-rate, under SQL-written orders (`sql`)."""
    event_id, ticket_types, tokens = checkout._seed(settings, args.clients, args.ticket_types)
    orders = [
        json.dumps({"event_id": event_id, "items": [{"ticket_type_id": t, "quantity": 1}]}).encode()
        for t in ticket_types
    ]
    url, raw = settings.effective_clickhouse_url, settings.cdc_database
    results = {}
    with run_services(settings, [service_named(settings, "cdc")]) as relay:
        _wait_for_table(url, raw, "orders")  # the initial copy is done
        watcher = Watcher(url, raw, args.poll_ms / 1000)
        watcher.start()
        processes = {
            item.service.name: psutil.Process(item.process.pid)
            for item in [*supervisor.running, *relay.running]
        }
        processes["bench"] = psutil.Process()
        phases = {"api": lambda load: asyncio.run(_paced(settings, tokens, orders, args, load))}
        if args.sql_rate:
            dsn = settings.effective_database_url
            phases["sql"] = lambda load: _sql_paced(dsn, args, load)
        for name, drive in phases.items():
            load = Load()
            # the bench's children are the services, counted on their own
            cpu_before = {k: _cpu(p, k != "bench") for k, p in processes.items()}
            started = time.perf_counter()
            drive(load)
            elapsed = time.perf_counter() - started
            cpu = {
                k: (_cpu(p, k != "bench") - cpu_before[k]) / elapsed for k, p in processes.items()
            }
            deadline = time.monotonic() + 60
            while set(load.created) - set(watcher.seen) and time.monotonic() < deadline:
                time.sleep(0.1)
            seen = dict(watcher.seen)
            results[name] = {
                "load": load,
                "lags": [seen[i] - t for i, t in load.created.items() if i in seen],
                "missing": len(set(load.created) - set(seen)),
                "cpu": cpu,
            }
        watcher.stop.set()
        watcher.join()
        with urllib.request.urlopen(
            f"http://{LOCALHOST}:{settings.cdc_metrics_port}/metrics"
        ) as reply:
            results["relay_rows"] = _metric(reply.read().decode(), "cdc_rows_total")
    return results


def _metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


# --- report --------------------------------------------------------------------------------


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshot-rows", type=int, default=500_000)
    parser.add_argument("--backlog", type=int, default=200_000, help="row changes per drain")
    parser.add_argument("--repeat", type=int, default=3, help="snapshots and drains")
    parser.add_argument("--rate", type=float, default=300, help="API orders asked per second")
    parser.add_argument(
        "--sql-rate", type=float, default=300, help="SQL orders per second (0: no SQL phase)"
    )
    parser.add_argument("--seconds", type=float, default=20, help="measured load")
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--clients", type=int, default=48, help="buyers (connections)")
    parser.add_argument("--ticket-types", type=int, default=1, help="as bench/checkout.py's")
    parser.add_argument("--poll-ms", type=float, default=20)
    parser.add_argument("--workers", type=int, default=2, help="API worker processes")
    parser.add_argument("--no-pay", dest="pay", action="store_false", default=True)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]

    with tempfile.TemporaryDirectory() as tmp:
        settings = isolated_settings(Path(tmp))
        api = service_named(settings, "api")
        api = dataclasses.replace(
            api,
            env={
                **api.env,
                "TICKETFLOW_API_WORKERS": str(args.workers),
                "TICKETFLOW_RATE_LIMIT_CHECKOUT": checkout.CHECKOUT_RATE,
            },
        )
        names = ("postgres", "warehouse", "payments")
        services = [*(service_named(settings, n) for n in names), api]
        with run_services(settings, services) as supervisor:
            snapshot = measure_snapshot(settings, args.snapshot_rows, args.repeat)
            drains = measure_streaming(settings, args.backlog, args.repeat)
            lag = measure_lag(settings, supervisor, args)

    print(
        f"CDC relay benchmark: {os.cpu_count()} CPUs, load average before the run "
        f"{load_before:.2f}; medians of {args.repeat} runs where repeated"
    )
    print(
        f"snapshot   {args.snapshot_rows:,} rows: "
        f"{statistics.median(snapshot):,.0f} rows/s (runs: "
        + ", ".join(f"{r:,.0f}" for r in snapshot)
        + ")"
    )
    changes = statistics.median(d.changes / d.seconds for d in drains)
    rows = statistics.median(d.rows / d.seconds for d in drains)
    drain = drains[len(drains) // 2]
    print(
        f"streaming  backlog of {drain.changes:,} row changes ({drain.messages:,} messages, "
        f"{drain.rows:,} rows written after folding): {changes:,.0f} row changes/s, "
        f"{rows:,.0f} rows written/s (drains: "
        + ", ".join(f"{d.seconds:.2f} s" for d in drains)
        + ")"
    )
    api, sql = lag["api"], lag.get("sql")
    _print_lag(
        "lag (API)",
        api,
        f"buyers placing and paying orders over HTTP (asked for {args.rate:.0f}/s, "
        f"{args.clients} buyers)",
        args,
    )
    if sql:
        why = (
            f"the API reached {_rate(api):.0f}/s here"
            if _rate(api) < 0.95 * TARGET_ORDERS_PER_S
            else "a control"
        )
        _print_lag(
            "lag (SQL)",
            sql,
            f"orders placed and paid with SQL straight into the API's tables at "
            f"{args.sql_rate:.0f}/s ({why})",
            args,
        )
    print(f"  the relay's stream wrote {lag['relay_rows']:,.0f} rows in all")
    at_rate = [r for r in (api, sql) if r and _rate(r) >= 0.95 * TARGET_ORDERS_PER_S]
    verdict = "no run reached 300 orders/s"
    if at_rate:
        p99 = _quantile(at_rate[0]["lags"], 0.99)
        verdict = f"{p99:.2f} s at {_rate(at_rate[0]):.0f} orders/s " + (
            "(met)" if p99 <= TARGET_LAG_P99_S else "(NOT met)"
        )
    print(
        f"target streaming >= {TARGET_ROWS_PER_S:,} rows/s: {changes:,.0f} row changes/s, "
        f"{rows:,.0f} rows written/s "
        f"({'met' if min(changes, rows) >= TARGET_ROWS_PER_S else 'NOT met'}); "
        f"target lag p99 <= {TARGET_LAG_P99_S:.0f} s at {TARGET_ORDERS_PER_S} orders/s: " + verdict
    )


def _rate(result: dict) -> float:
    return len(result["load"].created) / result["load"].seconds


def _print_lag(label: str, result: dict, what: str, args) -> None:
    load, lags = result["load"], result["lags"]
    print(
        f"{label:<10} {what}: {_rate(result):.0f} orders/s placed, "
        f"{load.paid / load.seconds:.0f}/s paid over {load.seconds:.0f} s (after "
        f"{args.warmup:.0f} s of warm-up); commit -> visible in ClickHouse: "
        f"p50 {_quantile(lags, 0.5):.3f} s, p99 {_quantile(lags, 0.99):.3f} s, "
        f"max {max(lags, default=float('nan')):.3f} s ({len(lags)} orders, polled every "
        f"{args.poll_ms:.0f} ms, never seen {result['missing']}); errors "
        f"{dict(load.errors) or 0}; start of the last order {load.behind:.2f} s late"
    )
    print(
        "  CPU, in cores: "
        + ", ".join(f"{name} {cores:.2f}" for name, cores in result["cpu"].items())
    )


if __name__ == "__main__":
    main()
