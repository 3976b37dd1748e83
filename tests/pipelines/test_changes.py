"""Inserts, updates, deletes, key changes, rollbacks, a large transaction, TRUNCATE and TOASTed
values, each ending in row-for-row equality with PostgreSQL."""

from __future__ import annotations

import secrets

import psycopg

from pipelines.cdc import pgoutput
from pipelines.cdc.pgoutput import UNCHANGED_TOAST
from tests.pipelines.conftest import CdcCase, drain
from tests.pipelines.rows import assert_same_rows

ORDERS = """
CREATE TABLE orders (
    id bigint PRIMARY KEY, buyer text NOT NULL, total_minor int NOT NULL,
    status text NOT NULL DEFAULT 'pending', note text
);
CREATE TABLE order_lines (
    order_id bigint, line int, sku text NOT NULL, quantity int NOT NULL,
    PRIMARY KEY (order_id, line)
);
"""


def test_inserts_updates_and_deletes(cdc: CdcCase):
    cdc.sql(ORDERS)
    relay = cdc.relay(batch_changes=100)  # many small batches: a row's changes span them
    relay.start()
    with psycopg.connect(cdc.dsn) as conn:
        for n in range(1, 301):
            with conn.transaction():
                conn.execute(
                    "INSERT INTO orders (id, buyer, total_minor) VALUES (%s, %s, %s)",
                    (n, f"buyer {n}", n * 100),
                )
                conn.execute(
                    "INSERT INTO order_lines SELECT %s, line, 'sku-' || line, line "
                    "FROM generate_series(1, 3) AS line",
                    (n,),
                )
        conn.execute("UPDATE orders SET status = 'paid', note = 'card' WHERE id % 3 = 0")
        conn.execute("UPDATE orders SET note = NULL WHERE id % 6 = 0")  # set back to NULL
        conn.execute("DELETE FROM order_lines WHERE order_id % 5 = 0 AND line = 2")
        conn.execute("DELETE FROM orders WHERE id % 7 = 0")
        conn.commit()
        with conn.transaction():  # one row, many times in one transaction
            for step in range(10):
                conn.execute("UPDATE orders SET total_minor = %s WHERE id = 1", (step,))
            conn.execute("DELETE FROM orders WHERE id = 2")
            conn.execute("INSERT INTO orders (id, buyer, total_minor) VALUES (2, 'again', 1)")
    batches = drain(relay)

    assert len(batches) > 10
    counts = assert_same_rows(cdc.dsn, cdc.ch, cdc.name)
    assert counts == {"orders": 300 - 42, "order_lines": 900 - 60}
    deleted = cdc.ch.command(
        f"SELECT count() FROM `{cdc.name}`.orders FINAL WHERE _peerdb_is_deleted = 1"
    )
    assert deleted == 42  # tombstones, as PeerDB keeps them


def test_primary_key_updates(cdc: CdcCase):
    cdc.sql(ORDERS)
    cdc.sql("INSERT INTO orders SELECT n, 'b', n FROM generate_series(1, 20) AS n")
    relay = cdc.relay()
    relay.start()
    cdc.sql("UPDATE orders SET id = id + 1000 WHERE id <= 5")  # rows from the initial copy
    cdc.sql("INSERT INTO orders VALUES (50, 'b', 50)")
    cdc.sql("UPDATE orders SET id = 51 WHERE id = 50")  # a row from this same batch
    cdc.sql("INSERT INTO order_lines VALUES (7, 1, 'a', 1), (7, 2, 'b', 1)")
    cdc.sql("UPDATE order_lines SET line = line + 10 WHERE order_id = 7")  # part of the key
    drain(relay)
    cdc.sql("UPDATE orders SET id = 500 WHERE id = 1001")  # to a key never used
    cdc.sql("UPDATE orders SET id = 1 WHERE id = 500")  # back to one with a tombstone
    drain(relay)

    assert assert_same_rows(cdc.dsn, cdc.ch, cdc.name) == {"orders": 21, "order_lines": 2}


def test_rolled_back_changes_never_appear(cdc: CdcCase):
    cdc.sql(ORDERS)
    relay = cdc.relay()
    relay.start()
    with psycopg.connect(cdc.dsn) as conn:
        conn.execute("INSERT INTO orders VALUES (1, 'kept', 100)")
        conn.commit()
        conn.execute("INSERT INTO orders VALUES (2, 'rolled back', 200)")
        conn.execute("UPDATE orders SET buyer = 'rolled back' WHERE id = 1")
        conn.execute("INSERT INTO order_lines VALUES (2, 1, 'ghost', 1)")
        conn.rollback()
        with conn.transaction():  # a committed transaction with a rolled-back savepoint
            conn.execute("INSERT INTO orders VALUES (3, 'kept too', 300)")
            try:
                with conn.transaction():
                    conn.execute("INSERT INTO orders VALUES (4, 'savepoint', 400)")
                    conn.execute("UPDATE orders SET buyer = 'savepoint' WHERE id = 3")
                    conn.execute("INSERT INTO orders VALUES (4, 'duplicate key', 0)")
            except psycopg.errors.UniqueViolation:
                pass
    drain(relay)

    assert assert_same_rows(cdc.dsn, cdc.ch, cdc.name) == {"orders": 2, "order_lines": 0}
    everything = cdc.ch.query(f"SELECT id, buyer FROM `{cdc.name}`.orders ORDER BY id")
    assert everything.result_rows == [(1, "kept"), (3, "kept too")]  # no version at all
    assert cdc.count("order_lines") == 0


def test_a_large_transaction(cdc: CdcCase):
    cdc.sql(ORDERS)
    relay = cdc.relay(batch_changes=10_000)
    relay.start()
    with psycopg.connect(cdc.dsn) as conn:  # 100,000 inserts and 20,000 updates, one commit
        conn.execute(
            "INSERT INTO orders SELECT n, 'buyer ' || n, n FROM generate_series(1, 100000) AS n"
        )
        conn.execute("UPDATE orders SET status = 'paid' WHERE id % 5 = 0")
        conn.commit()
    batches = drain(relay)

    # A transaction is never split: one batch carries all of it, past the batch size.
    assert [b.changes for b in batches if b.changes] == [120_003]  # with BEGIN, RELATION, COMMIT
    assert batches[0].rows == 100_000
    assert assert_same_rows(cdc.dsn, cdc.ch, cdc.name) == {"orders": 100_000, "order_lines": 0}
    assert cdc.count("orders") == 100_000  # collapsed in the batch: one version per row


def test_truncate(cdc: CdcCase):
    cdc.sql(ORDERS)
    cdc.sql("INSERT INTO orders SELECT n, 'copied', n FROM generate_series(1, 50) AS n")
    relay = cdc.relay()
    relay.start()
    cdc.sql("INSERT INTO orders SELECT n, 'streamed', n FROM generate_series(51, 60) AS n")
    cdc.sql("INSERT INTO order_lines VALUES (1, 1, 'a', 1)")
    drain(relay)
    assert cdc.count("orders", final=True) == 60

    # Pending rows of earlier transactions in the same batch, the TRUNCATE, rows after it in
    # its own transaction, and later transactions.
    cdc.sql("INSERT INTO orders VALUES (61, 'before the truncate', 61)")
    with psycopg.connect(cdc.dsn) as conn:
        conn.execute("INSERT INTO orders VALUES (62, 'truncated in the same transaction', 62)")
        conn.execute("TRUNCATE orders, order_lines")
        conn.execute("INSERT INTO orders VALUES (1, 'after, same transaction', 1)")
        conn.commit()
    cdc.sql("INSERT INTO orders VALUES (2, 'after', 2)")
    drain(relay)

    assert assert_same_rows(cdc.dsn, cdc.ch, cdc.name) == {"orders": 2, "order_lines": 0}


def _incompressible(size: int = 30_000) -> str:
    return secrets.token_hex(size // 2)  # random text: pglz cannot shrink it under the limit


def _peek_updates(cdc: CdcCase, relay) -> list[pgoutput.Update]:
    with psycopg.connect(cdc.dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, NULL, "
            "'proto_version', '1', 'publication_names', %s)",
            (relay.slot, relay.publication),
        ).fetchall()
    messages = [pgoutput.decode(data) for (data,) in rows]
    return [m for m in messages if isinstance(m, pgoutput.Update)]


def test_toasted_values_survive_updates_of_other_columns(cdc: CdcCase):
    cdc.sql(
        "CREATE TABLE documents (id bigint PRIMARY KEY, title text NOT NULL, body text, "
        "revision int NOT NULL DEFAULT 0)"
    )
    bodies = {n: _incompressible() for n in range(1, 8)}
    cdc.sql("INSERT INTO documents (id, title, body) VALUES (1, 'copied', %s)", (bodies[1],))
    relay = cdc.relay()
    relay.start()
    for n in (2, 3):  # written in this batch, updated in a later one
        cdc.sql("INSERT INTO documents (id, title, body) VALUES (%s, 'early', %s)", (n, bodies[n]))
    drain(relay)

    toasted = cdc.sql("SELECT count(*) FROM documents WHERE pg_column_toast_chunk_id(body) > 0")
    assert toasted == [(3,)]  # stored out of line, so an UPDATE leaves it out of the stream
    cdc.sql("UPDATE documents SET revision = revision + 1, title = 'updated' WHERE id <= 3")
    for n in (4, 5):  # written and updated in the same batch, in separate transactions
        cdc.sql("INSERT INTO documents (id, title, body) VALUES (%s, 'late', %s)", (n, bodies[n]))
        cdc.sql("UPDATE documents SET revision = 1 WHERE id = %s", (n,))
    with psycopg.connect(cdc.dsn) as conn:
        insert = "INSERT INTO documents (id, title, body) VALUES (%s, 'one txn', %s)"
        conn.execute(insert, (6, bodies[6]))
        conn.commit()
        conn.execute("UPDATE documents SET revision = 2 WHERE id = 6")  # twice in one txn
        conn.execute("UPDATE documents SET revision = 3 WHERE id = 6")
        conn.commit()
        conn.execute(insert, (7, bodies[7]))  # inserted and updated in one transaction
        conn.execute("UPDATE documents SET revision = 4 WHERE id = 7")
        conn.commit()
    cdc.sql("UPDATE documents SET revision = 9 WHERE id = 1")  # twice in the batch, never whole

    updates = _peek_updates(cdc, relay)
    assert len(updates) == 9 and all(UNCHANGED_TOAST in u.new for u in updates)
    drain(relay)

    assert assert_same_rows(cdc.dsn, cdc.ch, cdc.name) == {"documents": 7}
    nulls = cdc.ch.command(f"SELECT count() FROM `{cdc.name}`.documents WHERE body IS NULL")
    assert nulls == 0  # not even in an older version

    # Later batches: the row's value now comes from ClickHouse again.
    cdc.sql("UPDATE documents SET revision = revision + 10")
    drain(relay)
    cdc.sql("UPDATE documents SET body = NULL WHERE id = 2")  # a real NULL stays NULL
    drain(relay)
    assert assert_same_rows(cdc.dsn, cdc.ch, cdc.name) == {"documents": 7}


def test_toasted_values_survive_a_primary_key_update(cdc: CdcCase):
    cdc.sql("CREATE TABLE documents (id bigint PRIMARY KEY, body text, revision int)")
    cdc.sql(
        "INSERT INTO documents VALUES (1, %s, 0), (2, %s, 0)",
        (_incompressible(), _incompressible()),
    )
    relay = cdc.relay()
    relay.start()
    cdc.sql("UPDATE documents SET id = 10 WHERE id = 1")  # the old row lives in ClickHouse
    cdc.sql("INSERT INTO documents VALUES (3, %s, 0)", (_incompressible(),))
    cdc.sql("UPDATE documents SET id = 30 WHERE id = 3")  # the old row is in this batch
    cdc.sql("UPDATE documents SET id = 20 WHERE id = 2")
    cdc.sql("UPDATE documents SET id = 21 WHERE id = 20")  # a chain within the batch
    updates = _peek_updates(cdc, relay)
    assert len(updates) == 4 and all(UNCHANGED_TOAST in u.new for u in updates)
    drain(relay)

    assert assert_same_rows(cdc.dsn, cdc.ch, cdc.name) == {"documents": 3}
