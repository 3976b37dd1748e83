"""The relay's side of ClickHouse: raw tables kept in step with the source, rows written as TSV.

Talks to any ClickHouse server through clickhouse-connect (in the embedded default, the
warehouse process's HTTP interface).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from clickhouse_connect.driver.client import Client

from pipelines.cdc.tables import META_COLUMNS, TableSpec, create_table_sql, plan_changes, quote

_INSERT_SETTINGS = {
    "date_time_input_format": "best_effort",  # PostgreSQL's '2026-11-25 12:00:00.5+00'
    "input_format_null_as_default": 1,  # a delete's non-key columns
}


class RawTables:
    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.database = database
        self._known: dict[str, TableSpec] = {}

    def ensure_database(self) -> None:
        self.client.command(f"CREATE DATABASE IF NOT EXISTS {quote(self.database)}")

    def _existing_columns(self, table: str) -> dict[str, str]:
        rows = self.client.query(
            "SELECT name, type FROM system.columns WHERE database = {db:String} "
            "AND table = {t:String}",
            parameters={"db": self.database, "t": table},
        ).result_rows
        return dict(rows)

    def ensure(self, spec: TableSpec) -> None:
        """Create the raw table, or add and widen columns to match `spec`; raises
        SchemaChangeError for changes that cannot be applied."""
        if self._known.get(spec.name) == spec:
            return
        existing = self._existing_columns(spec.name)
        if not existing:
            self.client.command(create_table_sql(self.database, spec))
        else:
            for statement in plan_changes(spec, existing).statements(self.database, spec.name):
                self.client.command(statement)
        self._known[spec.name] = spec

    def target(self, spec: TableSpec) -> str:
        return f"{quote(self.database)}.{quote(spec.name)}"

    def insert(self, spec: TableSpec, rows: Sequence[Sequence[str]]) -> None:
        """Rows of TSV fields: the spec's columns, then version and is_deleted."""
        if not rows:
            return
        body = "".join("\t".join(row) + "\n" for row in rows).encode()
        self.client.raw_insert(
            f"{self.database}.{spec.name}",
            [*spec.column_names, *META_COLUMNS],
            insert_block=body,
            settings=_INSERT_SETTINGS,
            fmt="TabSeparated",
        )

    def live_versions(
        self, spec: TableSpec, keys: Iterable[tuple[str, ...]]
    ) -> dict[tuple[str, ...], list[tuple[int, list[str]]]]:
        """Every stored version of each key (TSV fields) that is not a deletion, as
        (version, TSV fields in spec order). Not FINAL: the relay picks the version it needs."""
        keys = set(keys)
        if not keys:
            return {}
        key_names = [spec.columns[i].name for i in spec.key_positions]
        wanted = ", ".join("(" + ", ".join(_literal(value) for value in key) + ")" for key in keys)
        key_expr = "(" + ", ".join(f"toString({quote(k)})" for k in key_names) + ")"
        columns = ", ".join(quote(c) for c in spec.column_names)
        text = self.client.raw_query(
            f"SELECT {columns}, _peerdb_version FROM {self.target(spec)} "
            f"WHERE {key_expr} IN ({wanted}) AND _peerdb_is_deleted = 0 FORMAT TabSeparated"
        ).decode()
        versions: dict[tuple[str, ...], list[tuple[int, list[str]]]] = {}
        for line in text.splitlines():
            fields = line.split("\t")
            version = int(fields.pop())
            versions.setdefault(spec.key_of(fields), []).append((version, fields))
        return versions

    def delete_all(self, spec: TableSpec, version: int) -> None:
        """A TRUNCATE: a tombstone, at `version`, for every live row."""
        columns = ", ".join(quote(c) for c in spec.column_names)
        self.client.command(
            f"INSERT INTO {self.target(spec)} ({columns}, _peerdb_version, _peerdb_is_deleted) "
            f"SELECT {columns}, {int(version)}, 1 FROM {self.target(spec)} FINAL "
            "WHERE _peerdb_is_deleted = 0"
        )

    # --- the relay's own state ----------------------------------------------------------
    STATE_TABLE = "_relay_snapshots"

    def ensure_state_table(self) -> None:
        self.client.command(
            f"CREATE TABLE IF NOT EXISTS {quote(self.database)}.{self.STATE_TABLE} "
            "(slot String, consistent_lsn Int64, finished_at DateTime64(6, 'UTC')) "
            "ENGINE = MergeTree ORDER BY (slot, finished_at)"
        )

    def snapshot_finished(self, slot: str) -> bool:
        return bool(
            self.client.command(
                f"SELECT count() FROM {quote(self.database)}.{self.STATE_TABLE} "
                "WHERE slot = {slot:String}",
                parameters={"slot": slot},
            )
        )

    def mark_snapshot_finished(self, slot: str, consistent_lsn: int) -> None:
        self.client.command(
            f"INSERT INTO {quote(self.database)}.{self.STATE_TABLE} "
            "SELECT {slot:String}, {lsn:Int64}, now64(6)",
            parameters={"slot": slot, "lsn": consistent_lsn},
        )

    def forget_snapshots(self, slot: str) -> None:
        self.client.command(
            f"DELETE FROM {quote(self.database)}.{self.STATE_TABLE} WHERE slot = {{slot:String}}",
            parameters={"slot": slot},
        )

    def drop(self, table: str) -> None:
        """Before a fresh snapshot: nothing from an older one may survive."""
        self.client.command(f"DROP TABLE IF EXISTS {quote(self.database)}.{quote(table)} SYNC")
        self._known.pop(table, None)


def _literal(tsv_field: str) -> str:
    """A key's TSV field as a ClickHouse string literal (keys are compared as text). TSV and
    string literals share their backslash escapes, so only the quote needs one."""
    return "'" + tsv_field.replace("'", "\\'") + "'"
