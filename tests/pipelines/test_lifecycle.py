"""The relay's life: the initial copy against a moving source, restarts that resume from the
slot, crashes during the copy and between a write and the slot's advance, tables it refuses,
and what it reports (`_relay_status`, Prometheus gauges)."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import threading
import time

import psycopg
import pytest
from prometheus_client import REGISTRY

from pipelines.cdc.status import STATUS_TABLE, StatusReporter
from pipelines.cdc.tables import SchemaChangeError
from pipelines.cdc.warehouse import RawTables
from tests.pipelines.conftest import CdcCase, drain
from tests.pipelines.rows import assert_same_rows

ACCOUNTS = (
    "CREATE TABLE accounts (id bigint PRIMARY KEY, owner text NOT NULL, balance bigint NOT NULL)"
)


def _snapshot_marks(cdc: CdcCase) -> list[tuple]:
    return cdc.ch.query(
        f"SELECT slot, consistent_lsn FROM `{cdc.name}`._relay_snapshots"
    ).result_rows


def test_the_initial_copy_and_the_stream_meet_exactly_while_writes_go_on(cdc: CdcCase):
    cdc.sql(ACCOUNTS)
    cdc.sql("INSERT INTO accounts SELECT n, 'owner ' || n, 1000 FROM generate_series(1, 100000) n")
    stop = threading.Event()
    written = [0]  # transactions committed so far

    def write() -> None:  # transfers, openings and closings, committed one by one
        with psycopg.connect(cdc.dsn, autocommit=True) as conn:
            n = 0
            while not stop.is_set():
                written[0] = n
                n += 1
                a, b = 1 + (n * 7919) % 100_000, 1 + (n * 104729) % 100_000
                with conn.transaction():
                    conn.execute("UPDATE accounts SET balance = balance - 1 WHERE id = %s", (a,))
                    conn.execute("UPDATE accounts SET balance = balance + 1 WHERE id = %s", (b,))
                conn.execute("INSERT INTO accounts VALUES (%s, 'new', 0)", (100_000 + n,))
                if n % 10 == 0:
                    conn.execute("DELETE FROM accounts WHERE id = %s", (100_000 + n - 5,))

    writer = threading.Thread(target=write)
    writer.start()
    try:
        time.sleep(0.2)
        relay = cdc.relay()
        before = written[0]
        relay.start()
        during = written[0] - before
        time.sleep(0.2)
    finally:
        stop.set()
        writer.join()
    drain(relay)

    assert during > 10  # the source really moved while the slot was made and the copy ran
    assert assert_same_rows(cdc.dsn, cdc.ch, cdc.name)["accounts"] > 100_000
    ((slot, consistent_lsn),) = _snapshot_marks(cdc)
    assert slot == cdc.name
    versions = cdc.ch.query(
        f"SELECT _peerdb_version = {consistent_lsn} AS copied, count(), "
        f"min(_peerdb_version) > {consistent_lsn} FROM `{cdc.name}`.accounts GROUP BY copied"
    ).result_rows
    copied = {copied: (count, above) for copied, count, above in versions}
    assert copied[True][0] >= 100_000  # the copy carries the slot's start as its version
    assert copied[False][1]  # every streamed change comes after it


def test_a_restart_resumes_from_the_slot_without_copying_again(cdc: CdcCase):
    cdc.sql(ACCOUNTS)
    cdc.sql("INSERT INTO accounts SELECT n, 'copied', 0 FROM generate_series(1, 1000) n")
    first = cdc.relay()
    first.start()
    cdc.sql("UPDATE accounts SET balance = 1 WHERE id <= 10")
    drain(first)
    first.close()
    checkpoint = first.confirmed_lsn()
    stored = cdc.count("accounts")
    versions = cdc.ch.query(f"SELECT id, _peerdb_version FROM `{cdc.name}`.accounts").result_rows

    cdc.sql("UPDATE accounts SET balance = 2 WHERE id <= 5")  # while the relay is down
    second = cdc.relay()  # as a new process would: no state but the slot and ClickHouse
    assert second.confirmed_lsn() == checkpoint
    second.start()
    assert cdc.count("accounts") == stored  # no second copy
    again = cdc.ch.query(f"SELECT id, _peerdb_version FROM `{cdc.name}`.accounts").result_rows
    assert sorted(again) == sorted(versions)
    assert len(_snapshot_marks(cdc)) == 1
    batches = drain(second)

    assert sum(b.rows for b in batches) == 5  # only what happened since
    assert cdc.count("accounts") == stored + 5
    assert second.confirmed_lsn() > checkpoint
    assert assert_same_rows(cdc.dsn, cdc.ch, cdc.name) == {"accounts": 1000}


def test_a_crash_between_writing_and_advancing_replays_the_batch_harmlessly(
    cdc: CdcCase, monkeypatch
):
    cdc.sql("CREATE TABLE documents (id bigint PRIMARY KEY, body text, revision int)")
    cdc.sql(ACCOUNTS)
    cdc.sql(
        "INSERT INTO documents VALUES (1, %s, 0), (2, %s, 0)",
        (secrets.token_hex(15_000), secrets.token_hex(15_000)),
    )
    first = cdc.relay()
    first.start()
    # One batch: TOASTed bodies left out of updates, one of them under a changed key whose
    # old key then gets a new row; then a second table, whose write "crashes" after the
    # first table's went through.
    cdc.sql("UPDATE documents SET revision = 1 WHERE id = 1")
    cdc.sql("UPDATE documents SET id = 20, revision = 1 WHERE id = 2")
    cdc.sql("INSERT INTO documents VALUES (2, 'the old key again, a new body', 0)")
    cdc.sql("INSERT INTO accounts VALUES (1, 'a', 0)")
    insert = RawTables.insert

    def crash_on_accounts(raw, spec, rows):
        if spec.name == "accounts":
            raise ConnectionError("the relay died here")
        insert(raw, spec, rows)

    monkeypatch.setattr(RawTables, "insert", crash_on_accounts)
    with pytest.raises(ConnectionError):
        drain(first)
    first.close()
    monkeypatch.setattr(RawTables, "insert", insert)
    assert cdc.count("documents") == 2 + 3  # the copy, then rows 1, 20 and the new 2

    # Before the restart, more of the same rows change, so the replayed batch is longer than
    # the first attempt; and a merge leaves only the newest version of each key behind: the
    # first attempt's (for 2, the new row, which must not lend its body to 20).
    cdc.sql("UPDATE documents SET id = 10, revision = 2 WHERE id = 1")
    cdc.sql("UPDATE documents SET revision = 2 WHERE id = 20")
    cdc.ch.command(f"OPTIMIZE TABLE `{cdc.name}`.documents FINAL")
    assert cdc.count("documents") == 3

    drain(cdc.relay())  # the batch again, from the slot's unmoved position

    assert assert_same_rows(cdc.dsn, cdc.ch, cdc.name) == {"documents": 3, "accounts": 1}


def test_a_crash_during_the_initial_copy_leads_to_a_clean_copy(cdc: CdcCase):
    # Tables are copied in name order, the second in inserts of 100,000 rows: the relay
    # process is killed with the first table copied and the second one partly.
    cdc.sql("CREATE TABLE a_first (id bigint PRIMARY KEY, note text)")
    cdc.sql("CREATE TABLE b_second (id bigint PRIMARY KEY, note text)")
    cdc.sql("INSERT INTO a_first SELECT n, 'a' FROM generate_series(1, 5000) n")
    cdc.sql("INSERT INTO b_second SELECT n, 'b' FROM generate_series(1, 300000) n")
    relay = cdc.start_relay_process("sync")
    deadline = time.monotonic() + 60
    while not 0 < _stored(cdc, "b_second") < 300_000:
        assert relay.poll() is None, relay.communicate()
        assert time.monotonic() < deadline, "the copy never reached the second table"
        time.sleep(0.01)
    os.killpg(relay.pid, signal.SIGKILL)
    relay.wait()
    assert _stored(cdc, "a_first") == 5000
    assert not _snapshot_marks(cdc)  # the copy never finished

    cdc.sql("UPDATE a_first SET note = 'changed between the two runs' WHERE id <= 10")
    cdc.sql("INSERT INTO b_second VALUES (300001, 'b')")
    done = cdc.run_relay_command("sync")
    assert done.returncode == 0, done.stderr

    counts = assert_same_rows(cdc.dsn, cdc.ch, cdc.name)
    assert counts == {"a_first": 5000, "b_second": 300_001}
    assert cdc.count("a_first") == 5000  # copied afresh (with the updates), once
    assert cdc.count("b_second") == 300_001  # nothing left of the first attempt
    assert len(_snapshot_marks(cdc)) == 1


def _stored(cdc: CdcCase, table: str) -> int:
    try:
        return cdc.count(table)
    except Exception:  # not created yet
        return 0


def test_a_table_without_a_primary_key_stops_the_relay(cdc: CdcCase):
    cdc.sql("CREATE TABLE first (id int PRIMARY KEY)")
    relay = cdc.relay()
    relay.start()
    cdc.sql("CREATE TABLE audit_log (message text, at timestamptz DEFAULT now())")
    cdc.sql("INSERT INTO audit_log (message) VALUES ('one'), ('two')")  # would fold into one
    with pytest.raises(SchemaChangeError, match=r"public\.audit_log has no primary key"):
        drain(relay)


def _gauge(name: str) -> float:
    return REGISTRY.get_sample_value(name)


def test_status_table_and_gauges(cdc: CdcCase, caplog):
    cdc.sql(ACCOUNTS)
    relay = cdc.relay(batch_changes=100)
    relay.start()
    idle_every = 2.0
    status = StatusReporter(relay, retained_wal_warn_bytes=1, write_every_seconds=idle_every)
    status.ensure_table()
    with psycopg.connect(cdc.dsn, autocommit=True) as conn:
        for n in range(1, 201):  # 200 transactions of 3 messages: several batches
            conn.execute("INSERT INTO accounts VALUES (%s, 'x', 0)", (n,))
    committed_at = time.time()
    time.sleep(1.0)
    rows_before = _gauge("cdc_rows_total") or 0.0

    with caplog.at_level(logging.WARNING, logger="pipelines.cdc.status"):
        first = relay.sync_batch()
        behind = status.record(first)
    assert not first.caught_up
    assert behind.lag_seconds >= 1.0  # as of the last synced commit, a second old
    assert behind.lag_bytes > 0
    assert _gauge("cdc_lag_seconds") == behind.lag_seconds
    assert "the replication slot keeps" in caplog.text  # over the (tiny) warning threshold

    progress = []
    relay.sync_until(relay.current_wal_lsn(), on_batch=lambda r: progress.append(status.record(r)))
    caught_up = status.record(relay.sync_batch())
    progress.append(caught_up)
    # (bytes: nothing but what the server writes on its own, now and then, is left)
    assert caught_up.lag_seconds == 0.0 and caught_up.lag_bytes < 65_536
    assert _gauge("cdc_rows_total") - rows_before == 200
    assert _gauge("cdc_last_synced_lsn") == relay.confirmed_lsn()
    assert _gauge("cdc_lag_seconds") == 0.0
    assert _gauge("cdc_lag_bytes") == caught_up.lag_bytes
    assert _gauge("cdc_retained_wal_bytes") > 0
    assert abs(_gauge("cdc_last_commit_timestamp_seconds") - committed_at) < 2

    def status_rows():
        return cdc.ch.query(
            "SELECT slot, confirmed_lsn, lag_seconds, lag_bytes, rows, data_as_of, last_commit_at "
            f"FROM `{cdc.name}`.{STATUS_TABLE} ORDER BY recorded_at"
        ).result_rows

    rows = status_rows()
    assert len(rows) >= 3
    assert {row[0] for row in rows} == {cdc.name}
    assert sum(row[4] for row in rows) == 200
    assert rows[0][2] >= 1.0  # the row written while behind says so
    # Catching up is written at once, even by a batch without rows: the table's last row is
    # the first caught-up batch (later idle ones wait for the interval).
    first_caught_up = next(p for p in progress if p.lag_seconds == 0.0)
    _, confirmed, lag_seconds, lag_bytes, _, as_of, last_commit = rows[-1]
    assert (confirmed, lag_seconds) == (first_caught_up.confirmed_lsn, 0.0)
    assert lag_bytes < 65_536
    assert as_of > last_commit  # caught up: the data is current as of the check

    # Idle: nothing more within the interval; after it, a row with where the slot is now.
    status.record(relay.sync_batch())
    assert len(status_rows()) == len(rows)
    time.sleep(idle_every)
    idle = status.record(relay.sync_batch())
    after = status_rows()
    assert len(after) == len(rows) + 1
    assert (after[-1][1], after[-1][2], after[-1][4]) == (relay.confirmed_lsn(), 0.0, 0)
    assert idle.confirmed_lsn == relay.confirmed_lsn()


def test_an_idle_slot_follows_wal_written_elsewhere(cdc: CdcCase):
    cdc.sql(ACCOUNTS)
    cdc.sql("CREATE SCHEMA private; CREATE TABLE private.scratch (n int)")  # not published
    relay = cdc.relay()
    relay.start()
    cdc.sql("INSERT INTO accounts VALUES (1, 'a', 0)")
    drain(relay)
    synced = relay.confirmed_lsn()
    cdc.sql("INSERT INTO private.scratch SELECT generate_series(1, 20000)")
    written = relay.current_wal_lsn()

    for _ in range(50):  # at once, or at the next poll when other WAL is not flushed yet
        idle = relay.sync_batch()
        assert (idle.changes, idle.rows, idle.caught_up) == (0, 0, True)
        if relay.confirmed_lsn() >= written:
            break
        time.sleep(0.05)
    assert relay.confirmed_lsn() >= written > synced + 100_000  # the WAL is not kept for us
    cdc.sql("INSERT INTO accounts VALUES (2, 'b', 0)")
    drain(relay)
    assert assert_same_rows(cdc.dsn, cdc.ch, cdc.name) == {"accounts": 2}


def test_catching_up_is_written_at_once_by_a_batch_without_rows(cdc: CdcCase):
    cdc.sql(ACCOUNTS)
    relay = cdc.relay(batch_changes=3)  # BEGIN, RELATION, INSERT, COMMIT fill one batch
    relay.start()
    status = StatusReporter(relay, retained_wal_warn_bytes=2**40)  # writes idle rows every 5 s
    status.ensure_table()
    cdc.sql("INSERT INTO accounts VALUES (1, 'x', 0)")

    full = relay.sync_batch()
    assert (full.rows, full.caught_up) == (1, False)
    assert status.record(full).lag_seconds > 0.0
    empty = relay.sync_batch()
    assert (empty.rows, empty.caught_up) == (0, True)
    status.record(empty)

    rows = cdc.ch.query(
        f"SELECT rows, lag_seconds FROM `{cdc.name}`.{STATUS_TABLE} ORDER BY recorded_at"
    ).result_rows
    assert [row[0] for row in rows] == [1, 0]
    assert rows[0][1] > 0.0 and rows[1][1] == 0.0
