"""PostgreSQL tables and their ClickHouse twins, in PeerDB's raw-table layout.

Each source table `public.x` lands in `<raw database>.x`:
`ReplacingMergeTree(_peerdb_version)` ordered by the primary key, with `_peerdb_version`
(the commit LSN), `_peerdb_is_deleted` (0/1) and `_peerdb_synced_at` after the typed columns.
A team that outgrows the relay can point PeerDB or ClickPipes at the same tables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from operator import itemgetter

import psycopg

from pipelines.cdc.values import TSV_NULL, Converter, converter_for, parse_pg_array

META_COLUMNS = ("_peerdb_version", "_peerdb_is_deleted")


class SchemaChangeError(RuntimeError):
    """A source change the relay cannot apply without writing wrong data; it stops."""


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    clickhouse_type: str
    convert: Converter
    is_key: bool
    # The value (a TSV field) that rows older than the column hold: PostgreSQL's fast default
    # of `ADD COLUMN ... DEFAULT <constant>`, which it never writes into those rows.
    missing_value: str | None = None


@dataclass(frozen=True)
class TableSpec:
    schema: str
    name: str
    columns: tuple[ColumnSpec, ...]

    @cached_property
    def key_positions(self) -> tuple[int, ...]:
        return tuple(i for i, column in enumerate(self.columns) if column.is_key)

    @cached_property
    def key_of(self) -> Callable[[list], tuple]:
        """A row's key fields, as a tuple (called for every change: kept cheap)."""
        if len(self.key_positions) == 1:
            (position,) = self.key_positions
            return lambda fields: (fields[position],)
        return itemgetter(*self.key_positions)

    @cached_property
    def converters(self) -> tuple[Converter, ...]:
        return tuple(column.convert for column in self.columns)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


def _numeric(type_modifier: int) -> str:
    if type_modifier < 4:
        return "Decimal(76, 38)"  # unconstrained numeric
    precision, scale = ((type_modifier - 4) >> 16) & 0xFFFF, (type_modifier - 4) & 0xFFFF
    return f"Decimal({precision}, {scale})" if precision <= 76 else "Decimal(76, 38)"


_SCALAR_TYPES = {
    "int2": "Int16",
    "int4": "Int32",
    "int8": "Int64",
    "oid": "UInt32",
    "float4": "Float32",
    "float8": "Float64",
    "bool": "Bool",
    "uuid": "UUID",
    "date": "Date32",
    "timestamptz": "DateTime64(6, 'UTC')",
    "timestamp": "DateTime64(6)",
}


def clickhouse_type(
    type_name: str, type_kind: str, type_modifier: int, element: str | None, nullable: bool
) -> str:
    """ClickHouse's type for a PostgreSQL column (pg_type.typname / typtype)."""
    if element is not None:
        inner = clickhouse_type(element, "b", -1, None, nullable=True)
        return f"Array({inner})"
    if type_name == "numeric":
        base = _numeric(type_modifier)
    elif type_kind == "e":
        base = "LowCardinality(String)" if not nullable else "LowCardinality(Nullable(String))"
        return base
    else:
        base = _SCALAR_TYPES.get(type_name, "String")  # text, json(b), enums, time, inet...
    return f"Nullable({base})" if nullable else base


_CATALOG = """
SELECT a.attname, t.typname, t.typtype, a.atttypmod, et.typname AS element,
       NOT a.attnotnull AS nullable,
       coalesce(a.attnum = ANY(i.indkey), false) AS is_key,
       CASE WHEN a.atthasmissing THEN a.attmissingval::text END AS missing
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
  AND a.attgenerated = ''
ORDER BY a.attnum
"""


def table_spec(conn: psycopg.Connection, schema: str, name: str) -> TableSpec:
    """The table as PostgreSQL describes it now (stored generated columns are not published)."""
    rows = conn.execute(_CATALOG, (f'"{schema}"."{name}"',)).fetchall()
    columns = []
    for column, type_name, kind, modifier, element, nullable, is_key, missing in rows:
        ch_type = clickhouse_type(type_name, kind, modifier, element, nullable and not is_key)
        convert = converter_for(type_name, element)
        missing_value = _missing(missing, convert, element)
        columns.append(ColumnSpec(column, ch_type, convert, is_key, missing_value))
    if not any(c.is_key for c in columns):
        raise SchemaChangeError(f"{schema}.{name} has no primary key; the relay needs one")
    return TableSpec(schema, name, tuple(columns))


def published_tables(conn: psycopg.Connection, publication: str) -> list[tuple[str, str]]:
    return conn.execute(
        "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s "
        "ORDER BY schemaname, tablename",
        (publication,),
    ).fetchall()


def quote(identifier: str) -> str:
    return "`" + identifier.replace("\\", "\\\\").replace("`", "\\`") + "`"


def create_table_sql(database: str, spec: TableSpec) -> str:
    columns = [f"{quote(c.name)} {c.clickhouse_type}" for c in spec.columns]
    columns += [
        "`_peerdb_synced_at` DateTime64(9) DEFAULT now64(9)",
        "`_peerdb_is_deleted` Int8 DEFAULT 0",
        "`_peerdb_version` Int64",
    ]
    order_by = ", ".join(quote(c.name) for c in spec.columns if c.is_key)
    return (
        f"CREATE TABLE IF NOT EXISTS {quote(database)}.{quote(spec.name)} (\n  "
        + ",\n  ".join(columns)
        + f"\n) ENGINE = ReplacingMergeTree(_peerdb_version) ORDER BY ({order_by})"
    )


@dataclass(frozen=True)
class SchemaPlan:
    """What the ClickHouse table needs to take the source's current columns."""

    add: tuple[ColumnSpec, ...] = ()
    make_nullable: tuple[ColumnSpec, ...] = ()

    def statements(self, database: str, table: str) -> list[str]:
        target = f"{quote(database)}.{quote(table)}"
        return [
            f"ALTER TABLE {target} ADD COLUMN IF NOT EXISTS {quote(c.name)} {c.clickhouse_type}"
            + _default(c)
            for c in self.add
        ] + [
            f"ALTER TABLE {target} MODIFY COLUMN {quote(c.name)} {c.clickhouse_type}"
            for c in self.make_nullable
        ]


def _default(column: ColumnSpec) -> str:
    """ClickHouse computes a column's DEFAULT for parts written before the column existed:
    exactly the rows PostgreSQL gives its fast default without logging a change."""
    if column.missing_value is None:
        return ""
    literal = "'" + column.missing_value.replace("'", "\\'") + "'"  # TSV shares the escapes
    if "DateTime64" in column.clickhouse_type:
        return f" DEFAULT parseDateTime64BestEffort({literal}, 6)"
    return f" DEFAULT CAST({literal} AS {column.clickhouse_type})"


def _base(ch_type: str) -> tuple[str, bool]:
    """('String', True) for 'LowCardinality(Nullable(String))'."""
    text = ch_type.replace(" ", "")
    low_cardinality = text.startswith("LowCardinality(")
    if low_cardinality:
        text = text[len("LowCardinality(") : -1]
    nullable = text.startswith("Nullable(")
    if nullable:
        text = text[len("Nullable(") : -1]
    return text, nullable


def plan_changes(spec: TableSpec, existing: dict[str, str]) -> SchemaPlan:
    """Compare the source's columns with the ClickHouse table's (`existing`: name -> type).

    New columns are added; a column that became nullable is widened. A changed type, or a
    new key column, raises SchemaChangeError: the relay stops rather than write values the
    old column cannot mean.
    """
    add, widen = [], []
    for column in spec.columns:
        current = existing.get(column.name)
        if current is None:
            if column.is_key:
                raise SchemaChangeError(
                    f"table {spec.name}, column {column.name}: a new primary-key column; "
                    "re-create the raw table and re-snapshot it"
                )
            add.append(column)
            continue
        (old, old_nullable), (new, new_nullable) = _base(current), _base(column.clickhouse_type)
        if old != new:
            raise SchemaChangeError(
                f"table {spec.name}, column {column.name}: its type changed "
                f"(ClickHouse has {current}, PostgreSQL now maps to {column.clickhouse_type}); "
                "the relay stopped rather than write wrong data"
            )
        if new_nullable and not old_nullable:
            widen.append(column)
    return SchemaPlan(tuple(add), tuple(widen))


_TYPES_BY_OID = """
SELECT t.oid, t.typname, t.typtype, et.typname
FROM pg_type t LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
WHERE t.oid = ANY(%s)
"""


def spec_from_relation(conn: psycopg.Connection, relation) -> TableSpec:
    """The table as a pgoutput Relation message describes it (the columns its rows carry),
    with nullability from the catalog (columns dropped since count as nullable)."""
    types = {
        oid: (name, kind, element)
        for oid, name, kind, element in conn.execute(
            _TYPES_BY_OID, ([c.type_oid for c in relation.columns],)
        )
    }
    catalog = {
        name: (not_null, missing)
        for name, not_null, missing in conn.execute(
            "SELECT attname, attnotnull, CASE WHEN atthasmissing THEN attmissingval::text END "
            "FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
            "AND NOT attisdropped",
            (f'"{relation.namespace}"."{relation.name}"',),
        )
    }
    if not any(column.is_key for column in relation.columns):
        raise SchemaChangeError(
            f"{relation.namespace}.{relation.name} has no primary key; the relay needs one"
        )
    columns = []
    for column in relation.columns:
        type_name, kind, element = types[column.type_oid]
        not_null, missing = catalog.get(column.name, (False, None))
        nullable = not not_null and not column.is_key
        ch_type = clickhouse_type(type_name, kind, column.type_modifier, element, nullable)
        convert = converter_for(type_name, element)
        columns.append(
            ColumnSpec(
                column.name, ch_type, convert, column.is_key, _missing(missing, convert, element)
            )
        )
    return TableSpec(relation.namespace, relation.name, tuple(columns))


def _missing(attmissingval: str | None, convert: Converter, element: str | None) -> str | None:
    """attmissingval is a one-element array ('{DE}'); arrays' own defaults are left out."""
    if attmissingval is None or element is not None:
        return None
    (value,) = parse_pg_array(attmissingval)
    field = TSV_NULL if value is None else convert(value)
    return None if field == TSV_NULL else field
