"""The relay loop: peek committed changes, write them to ClickHouse, then advance the slot.

Delivery is at-least-once and idempotent: a batch is inserted before the slot moves past it,
so a crash at any point replays at most that batch, and the replayed rows carry the same
versions (commit LSNs) as the first copies, which `ReplacingMergeTree` (or `FINAL`) folds
away. Within a batch, the changes to one row collapse to its last state.

An UPDATE that left a TOASTed column untouched (pgoutput leaves the value out) gets it from
earlier in the batch or from ClickHouse, never NULL. Which stored versions hold it: the row's
versions from where the batch begins, and, when its key changed, the old key's versions from
before the change. A replayed batch finds its own first attempt among them (background merges
may have kept only that one), which holds the same value as long as the batch carries no change
to it; its versions after the batch's end (or the old key's after the move) may not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg import sql

from pipelines.cdc import pgoutput
from pipelines.cdc.pgoutput import UNCHANGED_TOAST, lsn_to_int
from pipelines.cdc.snapshot import create_slot_and_copy
from pipelines.cdc.tables import TableSpec, published_tables, spec_from_relation, table_spec
from pipelines.cdc.values import SESSION_SETTINGS, TSV_NULL
from pipelines.cdc.warehouse import RawTables

log = logging.getLogger(__name__)
Key = tuple[str, ...]
# A key, and the versions [from, to) of it that hold a row's unchanged TOASTed values (to:
# None, the end of the batch). A row looks in one window per key it had within the batch.
Window = tuple[Key, int, int | None]


@dataclass
class Batch:
    """Changes of whole transactions, collapsed to each row's last state."""

    rows: dict[int, dict[Key, list]] = field(default_factory=dict)  # relation -> key -> row
    # relation -> key -> where ClickHouse holds the unchanged TOASTed values of its row
    lookups: dict[int, dict[Key, tuple[Window, ...]]] = field(default_factory=dict)
    specs: dict[int, TableSpec] = field(default_factory=dict)
    changes: int = 0
    written: int = 0  # rows already written mid-batch (a table's columns changed)
    last_commit: pgoutput.Commit | None = None


@dataclass(frozen=True)
class BatchResult:
    changes: int  # messages decoded
    rows: int  # rows written after collapsing
    end_lsn: int | None  # where the slot now stands
    last_commit_time: datetime | None
    caught_up: bool


class Relay:
    def __init__(
        self,
        dsn: str,
        raw: RawTables,
        *,
        slot: str,
        publication: str,
        batch_changes: int = 50_000,
    ) -> None:
        self.dsn = dsn
        self.raw = raw
        self.slot = slot
        self.publication = publication
        self.batch_changes = batch_changes
        self.specs: dict[int, TableSpec] = {}
        self._conn: psycopg.Connection | None = None
        self._advanced_to = 0
        self._insert_seen = 0  # WAL's insert position before the last peek

    # --- set-up ----------------------------------------------------------------------------
    @property
    def conn(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn, autocommit=True)
            self._conn.execute(SESSION_SETTINGS)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def _slot_exists(self) -> bool:
        return bool(
            self.conn.execute(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (self.slot,)
            ).fetchone()
        )

    def ensure_publication(self) -> None:
        """Every table in the public schema, present and future (new tables need no step)."""
        exists = self.conn.execute(
            "SELECT 1 FROM pg_publication WHERE pubname = %s", (self.publication,)
        ).fetchone()
        if not exists:
            self.conn.execute(
                sql.SQL("CREATE PUBLICATION {} FOR TABLES IN SCHEMA public").format(
                    sql.Identifier(self.publication)
                )
            )

    def start(self) -> None:
        """Publication and slot in place, and the initial copy done exactly once per slot.

        A copy that did not finish (a crash mid-way) leaves a slot without a finished mark:
        the slot is dropped and the copy starts again from scratch.
        """
        self.raw.ensure_database()
        self.raw.ensure_state_table()
        self.ensure_publication()
        if self._slot_exists() and self.raw.snapshot_finished(self.slot):
            return
        if self._slot_exists():
            log.warning("the initial copy did not finish last time; starting it again")
            self.conn.execute("SELECT pg_drop_replication_slot(%s)", (self.slot,))
        self.raw.forget_snapshots(self.slot)
        result = create_slot_and_copy(
            self.dsn, self.raw, slot=self.slot, publication=self.publication
        )
        self.raw.mark_snapshot_finished(self.slot, result.consistent_lsn)
        log.info(
            "initial copy finished",
            extra={"rows": result.rows, "tables": result.tables, "lsn": result.consistent_lsn},
        )

    # --- one batch -------------------------------------------------------------------------
    def _peek(self) -> list[tuple[bytes]]:
        return self.conn.execute(
            "SELECT data FROM pg_logical_slot_peek_binary_changes("
            "%s, NULL, %s, 'proto_version', '1', 'publication_names', %s)",
            (self.slot, self.batch_changes, self.publication),
            binary=True,  # the messages as they are, not as hex text
        ).fetchall()

    def _relation(self, batch: Batch, message: pgoutput.Relation, txn: list) -> None:
        """A table's columns, before its first change in a batch and after each ALTER."""
        spec = spec_from_relation(self.conn, message)
        self.raw.ensure(spec)  # adds columns before rows that carry them are written
        previous = batch.specs.get(message.id)
        if previous is not None and previous != spec:
            if batch.rows.get(message.id):  # earlier transactions' rows: under the old columns
                batch.written += self._write_table(batch, message.id, previous)
            # The open transaction changed the table before an ALTER TABLE: its staged rows
            # take the new columns, as PostgreSQL's rows do.
            for i, (relation_id, key, fields, deleted, moved_from) in enumerate(txn):
                if relation_id == message.id:
                    if moved_from is not None:
                        moved_from = (moved_from[0], _reshaped(moved_from[1], previous, spec))
                    txn[i] = (
                        relation_id,
                        key,
                        _reshaped(fields, previous, spec),
                        deleted,
                        moved_from,
                    )
        batch.specs[message.id] = spec
        self.specs[message.id] = spec

    def _fields(self, spec: TableSpec, values: tuple) -> list:
        return [
            TSV_NULL if value is None else value if value is UNCHANGED_TOAST else convert(value)
            for convert, value in zip(spec.converters, values, strict=True)
        ]

    def _stage(
        self, txn: list, spec_id: int, values: tuple, deleted: bool, old: tuple | None = None
    ) -> None:
        """`old`: an UPDATE's old key; the row under it is gone (it is the same key when
        PostgreSQL sends the key along without a change)."""
        spec = self.specs[spec_id]
        fields = self._fields(spec, values)
        key = spec.key_of(fields)
        moved_from = None
        if old is not None:
            old_fields = self._fields(spec, old)
            moved_from = (spec.key_of(old_fields), old_fields)
        txn.append((spec_id, key, fields, deleted, moved_from))

    def read_batch(self) -> Batch:
        batch = Batch()
        txn: list = []
        truncated: list[int] = []
        for (data,) in self._peek():
            batch.changes += 1
            message = pgoutput.decode(data)
            kind = type(message)
            if kind is pgoutput.Insert:
                self._stage(txn, message.relation_id, message.new, False)
            elif kind is pgoutput.Update:
                self._stage(txn, message.relation_id, message.new, False, message.old)
            elif kind is pgoutput.Delete:
                self._stage(txn, message.relation_id, message.old, True)
            elif isinstance(message, pgoutput.Relation):
                self._relation(batch, message, txn)
            elif isinstance(message, pgoutput.Truncate):
                truncated.extend(message.relation_ids)
                txn = [change for change in txn if change[0] not in message.relation_ids]
            elif kind is pgoutput.Commit:
                self._commit(batch, txn, truncated, message)
                txn, truncated = [], []
        return batch

    def _commit(self, batch: Batch, txn: list, truncated: list[int], commit) -> None:
        for relation_id in truncated:
            batch.written += self._write_table(batch, relation_id, batch.specs[relation_id])
            self.raw.delete_all(batch.specs[relation_id], commit.commit_lsn)
        self._apply(batch, txn, commit.commit_lsn)
        batch.last_commit = commit

    def _apply(self, batch: Batch, changes: list, version: int) -> None:
        """Fold one transaction's changes, in order, into the batch's rows."""
        text = str(version)
        for relation_id, key, fields, deleted, moved_from in changes:
            rows = batch.rows.setdefault(relation_id, {})
            lookups = batch.lookups.setdefault(relation_id, {})
            if UNCHANGED_TOAST in fields:
                source = key if moved_from is None else moved_from[0]
                earlier = rows.get(source)
                windows: tuple[Window, ...] = ((source, 0, None),)  # first change in the batch
                if earlier is not None and earlier[-1] == "0":  # live earlier in the batch
                    fields = _fill_unchanged(fields, earlier)
                    windows = lookups.get(source, ())  # if it, too, waits for ClickHouse's
                if UNCHANGED_TOAST in fields:
                    if moved_from is not None:  # the old key's later versions are not this row
                        *before, (old_key, start, _) = windows
                        windows = (*before, (old_key, start, version), (key, version, None))
                    lookups[key] = windows
            if moved_from is not None:
                old_key, old_fields = moved_from
                rows[old_key] = [*old_fields, text, "1"]
            fields += (text, "1" if deleted else "0")  # the staged list is used once
            rows[key] = fields

    # --- writing ---------------------------------------------------------------------------
    def _write_table(self, batch: Batch, relation_id: int, spec: TableSpec) -> int:
        """Write (and take out of the batch) one table's rows, as `spec` describes them."""
        rows = batch.rows.pop(relation_id, {})
        lookups = batch.lookups.pop(relation_id, {})
        missing = {key: lookups[key] for key, row in rows.items() if UNCHANGED_TOAST in row}
        if missing:
            end = batch.last_commit.commit_lsn + 1  # rows so far come from commits up to it
            keys = {key for windows in missing.values() for key, _, _ in windows}
            stored = self.raw.live_versions(spec, keys)
            for key, windows in missing.items():
                old = _newest_in(windows, stored, end)
                if old is None:
                    raise RuntimeError(
                        f"table {spec.name}: an update left a TOASTed value unchanged for key "
                        f"{key}, but ClickHouse holds no version of the row to take it from "
                        f"(looked in {windows})"
                    )
                rows[key] = _fill_unchanged(rows[key], old)
        self.raw.insert(spec, list(rows.values()))
        return len(rows)

    def _quiet_point(self) -> int | None:
        """A flushed WAL insert position, read before a peek: every record that starts before
        it ends before it, so a peek that then finds nothing has seen every commit up to it.
        Now's, or (while other writes keep WAL ahead of its flush) the previous batch's."""
        insert, flush = self.conn.execute(
            "SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn, "
            "pg_current_wal_flush_lsn() - '0/0'::pg_lsn"
        ).fetchone()
        previous, self._insert_seen = self._insert_seen, int(insert)
        if flush >= insert:
            return int(insert)
        return previous if flush >= previous else None

    def _advance(self, lsn: int) -> None:
        self.conn.execute(
            "SELECT pg_replication_slot_advance(%s, %s::pg_lsn)",
            (self.slot, pgoutput.int_to_lsn(lsn)),
        )
        self._advanced_to = lsn

    def sync_batch(self) -> BatchResult:
        quiet_point = self._quiet_point()
        batch = self.read_batch()
        written = batch.written
        for relation_id in list(batch.rows):
            written += self._write_table(batch, relation_id, batch.specs[relation_id])
        end_lsn = None
        commit_time = None
        if batch.last_commit is not None:
            end_lsn = batch.last_commit.end_lsn
            commit_time = batch.last_commit.commit_time
            self._advance(end_lsn)
        elif batch.changes == 0 and quiet_point is not None and quiet_point > self._advanced_to:
            # Nothing to publish, but WAL moved on (other tables and databases, checkpoints):
            # confirm it, or the slot keeps that WAL, and each peek decodes it again, forever.
            end_lsn = quiet_point
            self._advance(end_lsn)
        return BatchResult(
            changes=batch.changes,
            rows=written,
            end_lsn=end_lsn,
            last_commit_time=commit_time,
            caught_up=batch.changes < self.batch_changes,
        )

    # --- running ---------------------------------------------------------------------------
    def current_wal_lsn(self) -> int:
        return lsn_to_int(self.conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])

    def confirmed_lsn(self) -> int:
        row = self.conn.execute(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
            (self.slot,),
        ).fetchone()
        return lsn_to_int(row[0])

    def sync_until(self, target_lsn: int, on_batch: Callable[[BatchResult], None] = print):
        """Drain until the slot has passed `target_lsn` (or nothing is left to read)."""
        while True:
            result = self.sync_batch()
            on_batch(result)
            if result.caught_up or (result.end_lsn or 0) >= target_lsn:
                break
        self.reconcile_tables()

    def reconcile_tables(self) -> None:
        """Every published table's raw twin, with the table's current columns.

        The stream announces new columns only with the table's next change: a migration
        that adds a column (or a table) and writes nothing there would leave ClickHouse
        without it. Adding it early is safe: rows written later without it get its DEFAULT,
        which is what PostgreSQL's older rows read."""
        for schema, name in published_tables(self.conn, self.publication):
            self.raw.ensure(table_spec(self.conn, schema, name))

    def run(
        self,
        should_stop: Callable[[], bool],
        on_batch,
        idle_sleep: float = 0.2,
        reconcile_every: float = 30.0,
    ) -> None:
        reconciled = time.monotonic()
        while not should_stop():
            result = self.sync_batch()
            on_batch(result)
            if result.caught_up:
                if time.monotonic() - reconciled >= reconcile_every:
                    self.reconcile_tables()
                    reconciled = time.monotonic()
                time.sleep(idle_sleep)


def _reshaped(fields: list, old: TableSpec, new: TableSpec) -> list:
    """A row staged under `old`'s columns, under `new`'s: an added column holds what
    PostgreSQL's older rows read (its constant default, or NULL)."""
    position = {column.name: i for i, column in enumerate(old.columns)}
    reshaped = []
    for column in new.columns:
        if column.name in position:
            reshaped.append(fields[position[column.name]])
        else:
            reshaped.append(TSV_NULL if column.missing_value is None else column.missing_value)
    return reshaped


def _newest_in(
    windows: tuple[Window, ...], stored: dict[Key, list[tuple[int, list]]], end: int
) -> list | None:
    """The newest stored version inside the windows (any of them holds the values sought)."""
    newest = None
    for key, start, stop in windows:
        stop = end if stop is None else stop
        for version, fields in stored.get(key, ()):
            if start <= version < stop and (newest is None or version > newest[0]):
                newest = (version, fields)
    return None if newest is None else newest[1]


def _fill_unchanged(fields: list, source: list) -> list:
    """`fields` with each unchanged-TOAST marker replaced by `source`'s value at its place."""
    return [source[i] if value is UNCHANGED_TOAST else value for i, value in enumerate(fields)]
