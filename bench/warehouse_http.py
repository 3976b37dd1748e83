"""Warehouse HTTP front vs in-process chdb: small-query latency and 1M-row insert throughput.

Starts a private warehouse process (free port, temporary directory) and runs the same work with
the same clickhouse-connect API twice: over HTTP to the warehouse, and on an in-process chdb
client (`get_client(dsn="chdb:///...")`, another temporary directory). Prints medians and the
HTTP/in-process ratio. Targets (issue 2): small query < 5 ms over HTTP; 1M-row insert over HTTP
at most 2x the in-process time.

    .venv/bin/python bench/warehouse_http.py [--rows 1000000] [--repeat 5] [--queries 300]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import clickhouse_connect
import numpy as np
import pandas as pd

from ticketflow.services import isolated_settings, service_named
from ticketflow.supervisor import run_services

TABLE_DDL = (
    "CREATE TABLE {name} (id UInt64, event_id UInt32, amount_minor Int64, currency String, "
    "sold_at DateTime64(6, 'UTC')) ENGINE = MergeTree ORDER BY id"
)


def frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame(
        {
            "id": np.arange(rows, dtype="uint64"),
            "event_id": rng.integers(1, 500, rows, dtype="uint32"),
            "amount_minor": rng.integers(500, 25_000, rows, dtype="int64"),
            "currency": rng.choice(["EUR", "USD", "GBP"], rows),
            "sold_at": pd.Timestamp("2026-11-01", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 86_400 * 30, rows), unit="s"),
        }
    )


def median_ms(func, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def measure(client, data: pd.DataFrame, repeat: int, queries: int) -> dict[str, float]:
    inserts = []
    for i in range(repeat):
        name = f"bench_{i}"
        client.command(f"DROP TABLE IF EXISTS {name}")
        client.command(TABLE_DDL.format(name=name))
        started = time.perf_counter()
        client.insert_df(name, data)
        inserts.append(time.perf_counter() - started)
        assert client.command(f"SELECT count() FROM {name}") == len(data)
    small = "SELECT sum(amount_minor) FROM bench_0 WHERE id = 4242"
    client.query(small)  # warm
    return {
        "insert_s": statistics.median(inserts),
        "small_query_ms": median_ms(lambda: client.query(small).result_rows, queries),
        "select_1_ms": median_ms(lambda: client.query("SELECT 1").result_rows, queries),
        "read_all_s": median_ms(lambda: client.query_df("SELECT * FROM bench_0"), repeat) / 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    data = frame(args.rows)

    with tempfile.TemporaryDirectory() as tmp:
        local = clickhouse_connect.get_client(dsn=f"chdb:///{Path(tmp, 'inprocess')}")
        in_process = measure(local, data, args.repeat, args.queries)

        settings = isolated_settings(Path(tmp, "platform"))
        with run_services(settings, [service_named(settings, "warehouse")]):
            port = settings.warehouse_port
            results = {"in-process chdb": in_process}
            for label, compress in (("HTTP (lz4, default)", True), ("HTTP (uncompressed)", False)):
                client = clickhouse_connect.get_client(
                    host="127.0.0.1", port=port, compress=compress
                )
                results[label] = measure(client, data, args.repeat, args.queries)

    base = results["in-process chdb"]
    print(
        f"rows per insert: {args.rows:,}; medians of {args.repeat} inserts, {args.queries} queries"
    )
    print(
        f"{'path':<22}{'insert s':>10}{'rows/s':>13}{'ratio':>7}"
        f"{'point q ms':>12}{'SELECT 1 ms':>13}{'read all s':>12}{'ratio':>7}"
    )
    for label, r in results.items():
        print(
            f"{label:<22}{r['insert_s']:>10.3f}{args.rows / r['insert_s']:>13,.0f}"
            f"{r['insert_s'] / base['insert_s']:>7.2f}{r['small_query_ms']:>12.2f}"
            f"{r['select_1_ms']:>13.2f}{r['read_all_s']:>12.3f}"
            f"{r['read_all_s'] / base['read_all_s']:>7.2f}"
        )
    http = results["HTTP (lz4, default)"]
    print(
        f"target insert ratio <= 2.0: {http['insert_s'] / base['insert_s']:.2f} "
        f"({'met' if http['insert_s'] <= 2 * base['insert_s'] else 'NOT met'}); "
        f"target small query < 5 ms: {http['small_query_ms']:.2f} ms "
        f"({'met' if http['small_query_ms'] < 5 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
