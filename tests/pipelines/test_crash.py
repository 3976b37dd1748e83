"""The relay process is killed (SIGKILL) at random moments while a writer commits more than
20,000 changes; restarted each time, then drained once more, ClickHouse (FINAL, deletions
left out) holds exactly PostgreSQL's rows in every table.

The seed of each run is printed; set CDC_CRASH_SEED to replay one.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import threading
import time
import urllib.request
from dataclasses import dataclass, field

import psycopg
import pytest

from tests.pipelines.conftest import CdcCase
from tests.pipelines.rows import assert_same_rows
from ticketflow.ports import free_port

pytestmark = pytest.mark.slow

SCHEMA = """
CREATE TYPE order_status AS ENUM ('pending', 'paid', 'refunded');
CREATE TABLE accounts (
    id bigint PRIMARY KEY, owner text NOT NULL, balance_minor bigint NOT NULL,
    flags text[], updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE orders (
    id bigint PRIMARY KEY, account_id bigint NOT NULL, status order_status NOT NULL,
    total numeric(12, 2) NOT NULL, ref uuid NOT NULL DEFAULT gen_random_uuid(),
    note text, placed_on date NOT NULL DEFAULT current_date
);
CREATE TABLE order_lines (
    order_id bigint, line int, sku text NOT NULL, quantity int NOT NULL, meta jsonb,
    PRIMARY KEY (order_id, line)
);
CREATE TABLE documents (id bigint PRIMARY KEY, title text NOT NULL, body text, revision int);
CREATE TABLE sessions (token text PRIMARY KEY, account_id bigint, seen_at timestamp);
"""
ACCOUNTS = 2000
TARGET_CHANGES = 22_000
WRITE_SECONDS = 12  # the writer's pace: the kills land while it writes
KILLS = 6


@dataclass
class Writer:
    """Commits a stream of mixed transactions at a steady pace; counts the row changes that
    were committed."""

    dsn: str
    rng: random.Random
    committed: int = 0
    rolled_back: int = 0
    transactions: int = 0
    next_order: int = 1
    orders: list[int] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def run(self) -> None:
        try:
            started = time.monotonic()
            with psycopg.connect(self.dsn) as conn:
                while self.committed < TARGET_CHANGES and not self.stop.is_set():
                    self.one_transaction(conn)
                    ahead = self.committed / TARGET_CHANGES * WRITE_SECONDS
                    time.sleep(max(ahead - (time.monotonic() - started), 0.0))
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.done.set()

    def one_transaction(self, conn: psycopg.Connection) -> None:
        roll = self.rng.random()
        if roll < 0.06:
            self.rolled_back += self.place_orders(conn, 3, remember=False)
            conn.rollback()
            return
        if roll < 0.35:
            changes = self.place_orders(conn, self.rng.randint(1, 4))
        elif roll < 0.55:
            ids = self.rng.sample(range(1, ACCOUNTS + 1), 20)
            changes = conn.execute(
                "UPDATE accounts SET balance_minor = balance_minor + 1, updated_at = now(), "
                "flags = CASE WHEN id %% 2 = 0 THEN ARRAY['vip', NULL, 'a\"b'] END "
                "WHERE id = ANY(%s)",
                (ids,),
            ).rowcount
        elif roll < 0.67 and self.orders:
            order = self.orders.pop(self.rng.randrange(len(self.orders)))
            changes = conn.execute("DELETE FROM order_lines WHERE order_id = %s", (order,)).rowcount
            changes += conn.execute("DELETE FROM orders WHERE id = %s", (order,)).rowcount
        elif roll < 0.75 and self.orders:
            order = self.rng.choice(self.orders)  # a key change
            changes = conn.execute(
                "UPDATE order_lines SET line = line + 100 WHERE order_id = %s", (order,)
            ).rowcount
            changes += conn.execute(
                "UPDATE orders SET status = 'paid', note = E'paid\\ttab' WHERE id = %s", (order,)
            ).rowcount
        elif roll < 0.85:
            changes = self.documents(conn)
        elif roll < 0.93:
            changes = self.place_orders(conn, 2)
            try:  # a savepoint rolled back inside a committed transaction
                with conn.transaction():
                    self.rolled_back += self.place_orders(conn, 2, remember=False)
                    conn.execute("INSERT INTO accounts VALUES (1, 'duplicate', 0)")
            except psycopg.errors.UniqueViolation:
                pass
        elif roll < 0.96:
            changes = conn.execute(
                "INSERT INTO order_lines SELECT -%s, n, 'bulk', 1, NULL "
                "FROM generate_series(1, 400) n",
                (self.transactions,),
            ).rowcount  # a larger transaction
            changes += conn.execute(
                "DELETE FROM order_lines WHERE order_id = -%s AND line > 300",
                (self.transactions,),
            ).rowcount
        else:
            changes = conn.execute("DELETE FROM sessions").rowcount
            conn.execute("TRUNCATE sessions")
            changes += conn.execute(
                "INSERT INTO sessions SELECT md5(random()::text), n, localtimestamp "
                "FROM generate_series(1, 50) n"
            ).rowcount
        conn.commit()
        self.committed += changes
        self.transactions += 1

    def place_orders(self, conn: psycopg.Connection, count: int, remember: bool = True) -> int:
        changes = 0
        for _ in range(count):
            order, self.next_order = self.next_order, self.next_order + 1
            account = self.rng.randint(1, ACCOUNTS)
            changes += conn.execute(
                "INSERT INTO orders (id, account_id, status, total, note) "
                "VALUES (%s, %s, 'pending', %s, %s)",
                (order, account, f"{self.rng.randint(100, 99999) / 100:.2f}", "n\\o'te"),
            ).rowcount
            lines = [
                (order, n, f"sku-{n}", n, json.dumps({"n": n, "gift": n % 2 == 0}))
                for n in range(1, self.rng.randint(2, 4))
            ]
            with conn.cursor() as cursor:
                cursor.executemany("INSERT INTO order_lines VALUES (%s, %s, %s, %s, %s)", lines)
            changes += len(lines)
            changes += conn.execute(
                "UPDATE accounts SET balance_minor = balance_minor - 1 WHERE id = %s", (account,)
            ).rowcount
            if remember:
                self.orders.append(order)
        return changes

    def documents(self, conn: psycopg.Connection) -> int:
        document = self.rng.randint(1, 40)
        if self.rng.random() < 0.2:  # a new TOASTed body now and then
            body = secrets.token_hex(12_000)
            return conn.execute(
                "INSERT INTO documents VALUES (%s, 'doc', %s, 0) ON CONFLICT (id) "
                "DO UPDATE SET body = excluded.body, revision = documents.revision + 1",
                (document, body),
            ).rowcount
        if self.rng.random() < 0.15:  # the key moves, the body stays where it is
            moved = conn.execute(
                "UPDATE documents SET id = id + 1000 WHERE id = %s AND NOT EXISTS "
                "(SELECT 1 FROM documents WHERE id = %s)",
                (document, document + 1000),
            ).rowcount
            return moved
        return conn.execute(
            "UPDATE documents SET revision = revision + 1, title = 'edited' WHERE id = %s",
            (document,),
        ).rowcount


def _metrics(port: int, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as reply:
                return reply.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _confirmed(cdc: CdcCase) -> int:
    rows = cdc.sql(
        "SELECT confirmed_flush_lsn - '0/0'::pg_lsn FROM pg_replication_slots WHERE slot_name = %s",
        (cdc.name,),
    )
    return int(rows[0][0]) if rows else 0


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(cdc: CdcCase):
    seed = int(os.environ.get("CDC_CRASH_SEED", secrets.randbelow(2**32)))
    print(f"CDC_CRASH_SEED={seed}")
    rng = random.Random(seed + 1)  # the kills' (the writer has its own)
    cdc.sql(SCHEMA)
    cdc.sql(
        "INSERT INTO accounts (id, owner, balance_minor) "
        f"SELECT n, 'owner ' || n, 10000 FROM generate_series(1, {ACCOUNTS}) n"
    )
    cdc.sql("INSERT INTO documents SELECT n, 'doc', %s, 0 FROM generate_series(1, 20) n",
            (secrets.token_hex(12_000),))  # fmt: skip

    writer = Writer(cdc.dsn, random.Random(seed))
    thread = threading.Thread(target=writer.run)
    thread.start()
    positions = []  # the slot's position after each kill that came while the writer wrote
    try:
        kills = 0
        while kills < KILLS or not writer.done.is_set():
            writing = not writer.done.is_set()
            port = free_port()
            relay = cdc.start_relay_process(
                "run", TICKETFLOW_CDC_BATCH_CHANGES="500", TICKETFLOW_CDC_METRICS_PORT=str(port)
            )
            if kills == 1:  # the running relay serves its gauges
                text = _metrics(port)
                assert "cdc_lag_seconds" in text and "cdc_rows_total" in text
            time.sleep(rng.uniform(1.0, 3.0))  # starting takes about a second of it
            assert relay.poll() is None, relay.communicate()
            os.killpg(relay.pid, signal.SIGKILL)
            relay.wait()
            kills += 1
            if writing:
                positions.append(_confirmed(cdc))
        relay = cdc.start_relay_process("run", TICKETFLOW_CDC_BATCH_CHANGES="500")
        thread.join(timeout=120)
        assert not thread.is_alive(), "the writer did not finish"
        time.sleep(rng.uniform(0.0, 1.0))
        os.killpg(relay.pid, signal.SIGKILL)  # once more, after the last commit
        relay.wait()
    finally:
        writer.stop.set()  # when something above failed
        thread.join()
    if writer.error:
        raise writer.error
    assert writer.committed >= 20_000 and writer.rolled_back > 0

    done = cdc.run_relay_command("sync")
    assert done.returncode == 0, done.stderr

    counts = assert_same_rows(cdc.dsn, cdc.ch, cdc.name)
    assert set(counts) == {"accounts", "orders", "order_lines", "documents", "sessions"}
    assert counts["accounts"] == ACCOUNTS
    # The kills hit a relay at work: the slot moved on between most of them.
    assert len(positions) >= KILLS - 1 and len(set(positions)) >= len(positions) - 1
    print(f"{writer.committed} changes in {writer.transactions} transactions, {kills} kills")
