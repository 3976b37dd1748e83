"""The embedded PostgreSQL: TCP on 127.0.0.1, logical decoding on, data kept across restarts."""

from __future__ import annotations

import psycopg

from ticketflow.services import service_named
from ticketflow.supervisor import run_services


def test_server_is_ready_for_logical_decoding(postgres):
    with psycopg.connect(postgres.effective_database_url, autocommit=True) as conn:
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('wal_level', 'max_replication_slots', 'max_wal_senders', 'listen_addresses', "
                "'TimeZone', 'port')"
            ).fetchall()
        )
        assert settings == {
            "wal_level": "logical",
            "max_replication_slots": "10",
            "max_wal_senders": "10",
            "listen_addresses": "127.0.0.1",
            "TimeZone": "UTC",
            "port": str(postgres.postgres_port),
        }
        version = conn.execute("SHOW server_version_num").fetchone()[0]
        assert int(version) >= 180000
        # pgoutput, the plugin the CDC relay uses, is available.
        conn.execute("CREATE TABLE IF NOT EXISTS probe (id int PRIMARY KEY)")
        conn.execute("DROP PUBLICATION IF EXISTS probe_pub")
        conn.execute("CREATE PUBLICATION probe_pub FOR TABLE probe")
        conn.execute("SELECT pg_create_logical_replication_slot('probe_slot', 'pgoutput', true)")
        conn.execute("INSERT INTO probe VALUES (1)")
        changes = conn.execute(
            "SELECT count(*) FROM pg_logical_slot_get_binary_changes('probe_slot', NULL, NULL, "
            "'proto_version', '1', 'publication_names', 'probe_pub')"
        ).fetchone()[0]
        assert changes >= 3  # BEGIN, RELATION, INSERT, COMMIT


def test_data_survives_a_stop_and_start(private_settings):
    postgres = service_named(private_settings, "postgres")
    url = private_settings.effective_database_url
    with run_services(private_settings, [postgres]), psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE kept (id int PRIMARY KEY)")
        conn.execute("INSERT INTO kept SELECT generate_series(1, 100)")
    with run_services(private_settings, [postgres]), psycopg.connect(url) as conn:
        assert conn.execute("SELECT sum(id) FROM kept").fetchone()[0] == 5050
