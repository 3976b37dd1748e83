"""The warehouse process, reached the way every other process reaches it: ClickHouse's HTTP
interface, through clickhouse-connect's own client (and raw HTTP where the wire matters)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import clickhouse_connect
import lz4.frame
import numpy as np
import pandas as pd
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, StreamFailureError

from ticketflow.services import service_named
from ticketflow.supervisor import run_services


def _url(settings) -> str:
    return f"http://127.0.0.1:{settings.warehouse_port}"


def _post(settings, body: bytes, params: str = "", headers: dict | None = None):
    request = urllib.request.Request(
        f"{_url(settings)}/?{params}", data=body, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def _table(ch, columns: str, order_by: str) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    ch.command(f"CREATE TABLE {name} ({columns}) ENGINE = MergeTree ORDER BY {order_by}")
    return name


def test_ping_answers_like_clickhouse(warehouse):
    with urllib.request.urlopen(f"{_url(warehouse)}/ping") as response:
        assert response.read() == b"Ok.\n"


def test_client_connects_and_sees_utc(ch):
    assert ch.server_version.startswith("26.")
    assert str(ch.server_tz) == "UTC"


@pytest.mark.parametrize("compress", [True, "lz4", "zstd", "gzip", False])
def test_insert_and_query_round_trip_every_type_we_use(warehouse, compress):
    client = clickhouse_connect.get_client(
        host="127.0.0.1", port=warehouse.warehouse_port, compress=compress
    )
    name = _table(
        client,
        "id UInt64, amount_minor Int64, price Decimal(18, 2), name String, "
        "at DateTime64(6, 'UTC'), tags Array(String), note Nullable(String)",
        "id",
    )
    at = datetime(2026, 11, 25, 12, 30, 1, 123456, tzinfo=UTC)
    naive_utc = at.replace(tzinfo=None)  # what clickhouse-connect returns for UTC columns
    rows = [
        [1, -250, Decimal("12.50"), "Zoë", at, ["a", "b"], None],
        [2, 9_007_199_254_740_993, Decimal("0.01"), "", at, [], "x"],
    ]
    summary = client.insert(
        name, rows, column_names=["id", "amount_minor", "price", "name", "at", "tags", "note"]
    )
    assert summary.written_rows == 2
    got = client.query(f"SELECT * FROM {name} ORDER BY id").result_rows
    assert [list(row) for row in got] == [
        [1, -250, Decimal("12.50"), "Zoë", naive_utc, ["a", "b"], None],
        [2, 9_007_199_254_740_993, Decimal("0.01"), "", naive_utc, [], "x"],
    ]


def test_dataframe_insert_and_query_of_a_million_rows(ch):
    name = _table(ch, "id UInt64, amount_minor Int64, label String", "id")
    n = 1_000_000
    frame = pd.DataFrame(
        {
            "id": np.arange(n, dtype="uint64"),
            "amount_minor": np.arange(n, dtype="int64") * 3 - 7,
            "label": [f"row-{i}" for i in range(n)],
        }
    )
    assert ch.insert_df(name, frame).written_rows == n
    totals = ch.query(f"SELECT count(), sum(amount_minor) FROM {name}").first_row
    assert totals == (n, int(frame.amount_minor.sum()))
    back = ch.query_df(f"SELECT * FROM {name} ORDER BY id")
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)


def test_raw_inserts_in_text_and_binary_formats(ch):
    name = _table(ch, "id UInt32, name String", "id")
    ch.raw_insert(name, ["id", "name"], b'{"id":1,"name":"json"}\n', fmt="JSONEachRow")
    ch.raw_insert(name, ["id", "name"], b"2,csv\n", fmt="CSV")
    row_binary = (3).to_bytes(4, "little") + bytes([3]) + b"bin"
    ch.raw_insert(name, ["id", "name"], row_binary, fmt="RowBinary")
    assert ch.query(f"SELECT id, name FROM {name} ORDER BY id").result_rows == [
        (1, "json"),
        (2, "csv"),
        (3, "bin"),
    ]
    assert ch.raw_query(f"SELECT id FROM {name} ORDER BY id", fmt="CSV") == b"1\n2\n3\n"


def test_insert_with_statement_in_query_parameter_and_data_as_body(warehouse, ch):
    name = _table(ch, "id UInt32", "id")
    status, _, _ = _post(warehouse, b"1\n2\n", f"query=INSERT+INTO+{name}+FORMAT+TSV")
    assert status == 200
    assert ch.command(f"SELECT sum(id) FROM {name}") == 3


def test_server_side_parameters_and_database_parameter(warehouse, ch):
    ch.command("CREATE DATABASE IF NOT EXISTS scoped")
    ch.command("CREATE TABLE IF NOT EXISTS scoped.items (id UInt32) ENGINE = MergeTree ORDER BY id")
    ch.command("TRUNCATE TABLE scoped.items")
    ch.command("INSERT INTO scoped.items VALUES (1), (5), (9)")
    scoped = clickhouse_connect.get_client(
        host="127.0.0.1", port=warehouse.warehouse_port, database="scoped"
    )
    assert scoped.command("SELECT currentDatabase()") == "scoped"
    result = scoped.query(
        "SELECT id FROM items WHERE id >= {lo:UInt32} ORDER BY id", parameters={"lo": 5}
    )
    assert result.result_rows == [(5,), (9,)]


def test_url_settings_apply_to_the_query(warehouse):
    client = clickhouse_connect.get_client(
        host="127.0.0.1", port=warehouse.warehouse_port, settings={"max_threads": 1}
    )
    assert client.command("SELECT getSetting('max_threads')") == 1
    status, _, body = _post(
        warehouse, b"SELECT getSetting('max_block_size')", "max_block_size=1234"
    )
    assert (status, body) == (200, b"1234\n")


def test_errors_are_clickhouse_errors_with_code_header(warehouse, ch):
    with pytest.raises(DatabaseError) as caught:
        ch.query("SELECT * FROM no_such_table")
    assert "code: 60" in str(caught.value)

    status, headers, body = _post(warehouse, b"SELECT * FROM no_such_table")
    assert status == 500
    assert headers["X-ClickHouse-Exception-Code"] == "60"
    assert body.startswith(b"Code: 60. DB::Exception:")

    status, headers, body = _post(warehouse, b"SELECT 1; SELECT 2")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (400, "62")

    status, headers, body = _post(warehouse, b"SELECT 1", "no_such_setting=1")
    assert status == 500 and headers["X-ClickHouse-Exception-Code"] == "115"


def test_error_after_rows_were_sent_reaches_the_client(ch):
    result = ch.query("SELECT throwIf(number = 1500000) FROM numbers(3000000)")
    with pytest.raises(StreamFailureError) as caught:
        _ = result.result_rows  # the client reads the stream lazily
    assert "Code: 395" in str(caught.value)


def test_large_result_streams_in_chunks(warehouse):
    request = urllib.request.Request(
        f"{_url(warehouse)}/",
        data=b"SELECT number, toString(number) FROM numbers(3000000) FORMAT TSV",
    )
    with urllib.request.urlopen(request) as response:
        assert response.headers["Transfer-Encoding"] == "chunked"
        lines = response.read().count(b"\n")
    assert lines == 3_000_000


def test_truncated_compressed_insert_is_refused_and_inserts_nothing(warehouse, ch):
    name = _table(ch, "id UInt32", "id")
    body = lz4.frame.compress(f"INSERT INTO {name} FORMAT TSV\n".encode() + b"1\n" * 200_000)
    status, headers, _ = _post(warehouse, body[:-64], headers={"Content-Encoding": "lz4"})
    assert status == 400 and headers["X-ClickHouse-Exception-Code"] == "271"
    assert ch.command(f"SELECT count() FROM {name}") == 0
    status, _, _ = _post(warehouse, body, headers={"Content-Encoding": "lz4"})
    assert status == 200
    assert ch.command(f"SELECT count() FROM {name}") == 200_000


def test_sessions_are_isolated_and_concurrent_clients_stay_correct(warehouse):
    """Two clients at once: own SETs and temporary tables, correct results for both."""
    shared = _table(
        clickhouse_connect.get_client(host="127.0.0.1", port=warehouse.warehouse_port),
        "writer UInt8, n UInt32",
        "(writer, n)",
    )
    failures: list[BaseException] = []

    def work(writer: int) -> None:
        try:
            client = clickhouse_connect.get_client(host="127.0.0.1", port=warehouse.warehouse_port)
            client.command(f"SET max_block_size = {1000 + writer}")
            client.command("CREATE TEMPORARY TABLE mine (v UInt32)")
            client.command(f"INSERT INTO mine SELECT {writer} FROM numbers(10)")
            for batch in range(20):
                rows = [[writer, batch * 1000 + i] for i in range(1000)]
                client.insert(shared, rows, column_names=["writer", "n"])
                count = client.command(f"SELECT count() FROM {shared} WHERE writer = {writer}")
                assert count == (batch + 1) * 1000
                assert client.command("SELECT getSetting('max_block_size')") == 1000 + writer
                assert client.command("SELECT sum(v) FROM mine") == 10 * writer
        except BaseException as exc:  # reported in the main thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_a_second_process_inserts_and_queries_over_http(warehouse, ch):
    name = _table(ch, "id UInt64", "id")
    script = textwrap.dedent(
        f"""
        import clickhouse_connect, json
        c = clickhouse_connect.get_client(host="127.0.0.1", port={warehouse.warehouse_port})
        c.insert("{name}", [[i] for i in range(1000)], column_names=["id"])
        print(json.dumps(c.query("SELECT count(), sum(id) FROM {name}").first_row))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [1000, 499500]
    assert ch.command(f"SELECT count() FROM {name}") == 1000


def test_data_survives_a_stop_and_start(private_settings):
    settings = private_settings
    warehouse = service_named(settings, "warehouse")
    with run_services(settings, [warehouse]):
        client = clickhouse_connect.get_client(host="127.0.0.1", port=settings.warehouse_port)
        client.command("CREATE TABLE kept (id UInt32) ENGINE = MergeTree ORDER BY id")
        client.insert("kept", [[1], [2], [3]], column_names=["id"])
    with run_services(settings, [warehouse]):
        client = clickhouse_connect.get_client(host="127.0.0.1", port=settings.warehouse_port)
        assert client.command("SELECT sum(id) FROM kept") == 6


@pytest.mark.parametrize(
    ("fmt", "parse"),
    [
        ("JSON", lambda body: json.loads(body)["rows"]),
        ("CSVWithNames", lambda body: body.count(b"\n") - 1 if body.startswith(b'"n"\n') else -1),
        ("TSV", lambda body: body.count(b"\n")),
    ],
)
def test_multi_chunk_results_are_one_document_in_every_format(warehouse, fmt, parse):
    sql = f"SELECT number AS n FROM numbers(1000000) FORMAT {fmt}".encode()
    status, _, body = _post(warehouse, sql)
    assert status == 200
    assert parse(body) == 1_000_000


def test_arrow_results_are_whole(ch):
    assert ch.query_arrow("SELECT number AS n FROM numbers(1000000)").num_rows == 1_000_000
    empty = ch.raw_query("SELECT number AS n FROM numbers(10) WHERE n > 100", fmt="JSON")
    assert json.loads(empty)["meta"] == [{"name": "n", "type": "UInt64"}]  # header kept


def test_url_settings_and_database_apply_to_one_request_only(warehouse):
    session = f"session_id=s-{uuid.uuid4().hex}"
    assert _post(warehouse, b"SET max_block_size = 777", session)[0] == 200
    status, _, body = _post(
        warehouse, b"SELECT getSetting('max_block_size')", f"{session}&max_block_size=5"
    )
    assert (status, body) == (200, b"5\n")
    _, _, body = _post(warehouse, b"SELECT getSetting('max_block_size')", session)
    assert body == b"777\n"  # the session's own SET is back
    _post(warehouse, b"CREATE DATABASE IF NOT EXISTS other", session)
    _, _, body = _post(warehouse, b"SELECT currentDatabase()", f"{session}&database=other")
    assert body == b"other\n"
    _, _, body = _post(warehouse, b"SELECT currentDatabase()", session)
    assert body == b"default\n"


def test_readonly_requests_and_gets_cannot_write(warehouse, ch):
    name = _table(ch, "id UInt32", "id")
    status, headers, _ = _post(warehouse, f"INSERT INTO {name} VALUES (1)".encode(), "readonly=1")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (403, "164")
    status, _, body = _post(warehouse, b"SELECT 1", "readonly=1")
    assert (status, body) == (200, b"1\n")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{_url(warehouse)}/?query=DROP+TABLE+{name}")
    assert caught.value.code == 403
    assert ch.command(f"SELECT count() FROM {name}") == 0  # still there, still empty


def test_a_busy_session_refuses_a_second_request(warehouse):
    session = f"session_id=s-{uuid.uuid4().hex}"
    request = urllib.request.Request(
        f"{_url(warehouse)}/?{session}",
        data=b"SELECT number FROM numbers(50000000) FORMAT TSV",
    )
    with urllib.request.urlopen(request) as slow:
        slow.read(1024)  # the stream is open and the session busy
        status, headers, _ = _post(warehouse, b"SELECT 1", session)
        assert (status, headers["X-ClickHouse-Exception-Code"]) == (409, "373")
    # Hanging up ends the stream and frees the session.
    for _ in range(50):
        status, _, body = _post(warehouse, b"SELECT 1", session)
        if status == 200:
            break
        time.sleep(0.1)
    assert (status, body) == (200, b"1\n")
