"""The initial copy: every published table's rows as of the slot's start, then streaming.

The slot is created over a replication connection with an exported snapshot; the copy reads
through that snapshot, so it holds exactly what was committed before the slot's consistent
point and the stream holds exactly what came after. Copied rows get the consistent point as
their version, below every streamed change's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg
from psycopg import sql

from pipelines.cdc.pgoutput import lsn_to_int
from pipelines.cdc.tables import TableSpec, published_tables, table_spec
from pipelines.cdc.values import SESSION_SETTINGS, TSV_NULL
from pipelines.cdc.warehouse import RawTables

log = logging.getLogger(__name__)
ROWS_PER_INSERT = 100_000


@dataclass(frozen=True)
class SnapshotResult:
    consistent_lsn: int
    rows: int
    tables: int


def _copy_table(conn: psycopg.Connection, spec: TableSpec, raw: RawTables, version: int) -> int:
    columns = sql.SQL(", ").join(sql.Identifier(name) for name in spec.column_names)
    query = sql.SQL("COPY (SELECT {} FROM {}.{}) TO STDOUT").format(
        columns, sql.Identifier(spec.schema), sql.Identifier(spec.name)
    )
    converters = [c.convert for c in spec.columns]
    meta = [str(version), "0"]
    rows, total = [], 0
    with conn.cursor().copy(query) as copy:
        for record in copy.rows():
            rows.append(
                [
                    TSV_NULL if value is None else convert(value)
                    for convert, value in zip(converters, record, strict=True)
                ]
                + meta
            )
            if len(rows) >= ROWS_PER_INSERT:
                raw.insert(spec, rows)
                total += len(rows)
                rows = []
    raw.insert(spec, rows)
    return total + len(rows)


def create_slot_and_copy(
    dsn: str, raw: RawTables, *, slot: str, publication: str
) -> SnapshotResult:
    """Create the slot and copy every published table through its exported snapshot."""
    with psycopg.connect(dsn, autocommit=True, replication="database") as replication:
        _, consistent_point, snapshot_name, _ = replication.execute(
            sql.SQL("CREATE_REPLICATION_SLOT {} LOGICAL pgoutput (SNAPSHOT 'export')").format(
                sql.Identifier(slot)
            )
        ).fetchone()
        version = lsn_to_int(consistent_point)
        # The exported snapshot lives while the replication connection stays open and idle.
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(SESSION_SETTINGS)
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot_name)))
            tables = published_tables(conn, publication)
            total = 0
            for schema, name in tables:
                spec = table_spec(conn, schema, name)
                raw.drop(spec.name)
                raw.ensure(spec)
                copied = _copy_table(conn, spec, raw, version)
                log.info("snapshot copied", extra={"table": name, "rows": copied})
                total += copied
            conn.execute("COMMIT")
    return SnapshotResult(version, total, len(tables))
