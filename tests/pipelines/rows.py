"""Row-for-row equality of every table: PostgreSQL against FINAL-deduplicated ClickHouse.

Both sides are read as Python objects and brought to one comparable form per PostgreSQL type,
following the relay's mapping: timestamps in UTC (ClickHouse gives them naive), bytea as its
`\\x...` text, a NULL array as `[]` (ClickHouse arrays cannot be NULL), float4 at Float32's
precision, and what ClickHouse cannot hold (infinite timestamps, numeric NaN) as NULL.
json/jsonb are compared as PostgreSQL's text, so `'null'` and SQL NULL stay apart.
"""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
from clickhouse_connect.driver.client import Client
from psycopg.types.datetime import DateLoader, TimestampLoader, TimestamptzLoader
from psycopg.types.string import TextLoader


def _finite_only(loader: type) -> type:
    class Finite(loader):
        def load(self, data):
            if bytes(data) in (b"infinity", b"-infinity"):
                return None  # the relay writes NULL: ClickHouse has no infinite time
            return super().load(data)

    return Finite


def connect(dsn: str) -> psycopg.Connection:
    """A connection that reads the way the comparison needs (UTC, infinities, json as text)."""
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute("SET TimeZone = 'UTC'")
    conn.adapters.register_loader("timestamptz", _finite_only(TimestamptzLoader))
    conn.adapters.register_loader("timestamp", _finite_only(TimestampLoader))
    conn.adapters.register_loader("date", _finite_only(DateLoader))
    conn.adapters.register_loader("json", TextLoader)
    conn.adapters.register_loader("jsonb", TextLoader)
    return conn


_COLUMNS = """
SELECT a.attname, coalesce(et.typname, t.typname), et.typname IS NOT NULL,
       coalesce(a.attnum = ANY(i.indkey), false)
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
  AND a.attgenerated = ''
ORDER BY a.attnum
"""


def _scalar(type_name: str, value):
    if value is None:
        return None
    if type_name == "float4":
        value = struct.unpack("f", struct.pack("f", value))[0]
    if type_name in ("float4", "float8") and math.isnan(value):
        return "NaN"
    if type_name == "numeric":
        value = Decimal(value)
        return value if value.is_finite() else None
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    return value


def normalise(type_name: str, is_array: bool, value):
    if is_array:
        return [_scalar(type_name, item) for item in value or []]
    return _scalar(type_name, value)


def table_rows(conn: psycopg.Connection, ch: Client, database: str, table: str):
    """(column names, PostgreSQL's rows, ClickHouse's rows), normalised and sorted by key."""
    columns = conn.execute(_COLUMNS, (f'public."{table}"',)).fetchall()
    names = [name for name, *_ in columns]
    keys = [i for i, (*_, is_key) in enumerate(columns) if is_key]

    def normalised(rows):
        result = [
            tuple(normalise(t, arr, v) for (_, t, arr, _), v in zip(columns, row, strict=True))
            for row in rows
        ]
        return sorted(result, key=lambda row: tuple(str(row[i]) for i in keys))

    quoted_pg = ", ".join(f'"{name}"' for name in names)
    source = normalised(conn.execute(f'SELECT {quoted_pg} FROM public."{table}"').fetchall())
    quoted_ch = ", ".join(f"`{name}`" for name in names)
    target = normalised(
        ch.query(
            f"SELECT {quoted_ch} FROM `{database}`.`{table}` FINAL WHERE _peerdb_is_deleted = 0"
        ).result_rows
    )
    return names, source, target


def public_tables(conn: psycopg.Connection) -> list[str]:
    return [
        name
        for (name,) in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        )
    ]


def assert_same_rows(dsn: str, ch: Client, database: str, tables: list[str] | None = None):
    """Every table (default: all of `public`) holds the same rows on both sides; returns the
    row count of each table."""
    counts = {}
    with connect(dsn) as conn:
        for table in tables if tables is not None else public_tables(conn):
            names, source, target = table_rows(conn, ch, database, table)
            if source != target:
                raise AssertionError(_describe(table, names, source, target))
            counts[table] = len(source)
    return counts


def _describe(table: str, names: list[str], source: list, target: list) -> str:
    source_text, target_text = set(map(repr, source)), set(map(repr, target))
    only_pg = [row for row in source if repr(row) not in target_text]
    only_ch = [row for row in target if repr(row) not in source_text]
    return (
        f"table {table} differs ({len(source)} rows in PostgreSQL, {len(target)} in "
        f"ClickHouse); columns {names}\n  only in PostgreSQL (first 3): {_short(only_pg)}\n"
        f"  only in ClickHouse (first 3): {_short(only_ch)}"
    )


def _short(rows: list) -> str:
    """The first rows, long values (TOASTed bodies) cut to their ends."""
    cut = [
        tuple(f"{v[:20]}...{v[-20:]} ({len(v)})" if isinstance(v, str) and len(v) > 60 else v
              for v in row)
        for row in rows[:3]
    ]  # fmt: skip
    return repr(cut)
