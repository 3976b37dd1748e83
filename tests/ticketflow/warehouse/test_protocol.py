"""The HTTP front's protocol rules, without a server."""

from __future__ import annotations

import gzip

import lz4.frame
import pytest
import zstandard

from ticketflow.embedded.warehouse.encodings import BodyDecoder
from ticketflow.embedded.warehouse.protocol import (
    ClickHouseError,
    exception_block,
    output_format,
    parse_insert_head,
    parse_params,
    set_statement,
)


@pytest.mark.parametrize(
    ("text", "statement", "fmt", "data"),
    [
        (
            b"INSERT INTO `t` (`a`, `b`) FORMAT Native\n\x02\x01",
            "INSERT INTO `t` (`a`, `b`)",
            "Native",
            b"\x02\x01",
        ),
        (b"insert into db.t format CSV\r\n1,2\n", "insert into db.t", "CSV", b"1,2\n"),
        (
            b'/* {"app": "dbt"} */ insert into t ("id")\n format CSV\n1\n',
            'insert into t ("id")',
            "CSV",
            b"1\n",
        ),
        (b'INSERT INTO t FORMAT JSONEachRow {"a":1}', "INSERT INTO t", "JSONEachRow", b'{"a":1}'),
        # a Native block whose first byte is a newline (10 columns) keeps that byte
        (b"INSERT INTO t FORMAT Native\n\n\x00", "INSERT INTO t", "Native", b"\n\x00"),
        (b"INSERT INTO t (format) FORMAT TSV\nx\n", "INSERT INTO t (format)", "TSV", b"x\n"),
    ],
)
def test_insert_head_splits_statement_from_data(text, statement, fmt, data):
    head = parse_insert_head(text)
    assert head is not None
    assert (head.statement, head.format, text[head.data_offset :]) == (statement, fmt, data)


@pytest.mark.parametrize(
    "text",
    [
        b"SELECT 1 FORMAT Native",
        b"INSERT INTO t VALUES ('x FORMAT y')",
        b"INSERT INTO t SELECT * FROM s FORMAT Native",
        b"CREATE TABLE t (a Int8) ENGINE = Memory",
    ],
)
def test_statements_without_separate_data_are_not_data_inserts(text):
    assert parse_insert_head(text) is None


def test_params_are_sorted_into_transport_settings_and_bindings():
    params = parse_params(
        [
            ("database", "dbt"),
            ("session_id", "s1"),
            ("session_timeout", "120"),
            ("wait_end_of_query", "1"),
            ("max_threads", "2"),
            ("param_lo", "5"),
            ("default_format", "JSONEachRow"),
        ]
    )
    assert params.database == "dbt"
    assert params.session_id == "s1"
    assert params.session_timeout == 120
    assert params.settings == {"max_threads": "2"}
    assert params.query_params == {"lo": "5"}
    assert params.default_format == "JSONEachRow"


@pytest.mark.parametrize(
    "item",
    [("max threads", "1"), ("database", "x; DROP TABLE t"), ("session_timeout", "-1")],
)
def test_bad_params_are_refused_with_a_clickhouse_code(item):
    with pytest.raises(ClickHouseError) as caught:
        parse_params([item])
    assert str(caught.value).startswith(f"Code: {caught.value.code}. DB::Exception:")
    assert 400 <= caught.value.http_status < 500


def test_set_statement_quotes_values_and_resets_to_default():
    assert set_statement({"a": "it's", "b": None}) == "SET a = 'it\\'s', b = DEFAULT"


def test_output_format_prefers_the_query_clause():
    assert output_format("SELECT 1\n FORMAT Native", "TabSeparated") == "Native"
    assert output_format("SELECT 1", "JSON") == "JSON"


def test_exception_block_matches_clickhouse_framing():
    block = exception_block("abc", "Code: 1. DB::Exception: x")
    assert (
        block == b"__exception__\r\nabc\r\nCode: 1. DB::Exception: x\n26 abc\r\n__exception__\r\n"
    )


def test_engine_errors_keep_code_and_drop_chdb_prefix():
    error = ClickHouseError.from_engine(
        RuntimeError("Streaming query failed: Code: 60. DB::Exception: nope. (UNKNOWN_TABLE)")
    )
    assert error.code == 60
    assert str(error) == "Code: 60. DB::Exception: nope. (UNKNOWN_TABLE)"


def _lz4_frames(*parts: bytes) -> bytes:
    return b"".join(lz4.frame.compress(part) for part in parts)


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("lz4", _lz4_frames),
        ("zstd", lambda *parts: b"".join(zstandard.ZstdCompressor().compress(p) for p in parts)),
        ("gzip", lambda *parts: b"".join(gzip.compress(p) for p in parts)),
    ],
)
def test_bodies_of_many_frames_decode_whole_in_any_chunking(encoding, encode):
    parts = [bytes([i]) * (30_000 + i) for i in range(5)]
    body = encode(*parts)
    for size in (1, 7, 4096, len(body)):
        decoder = BodyDecoder(encoding)
        out = b"".join(decoder.decode(body[i : i + size]) for i in range(0, len(body), size))
        decoder.finish()
        assert out == b"".join(parts)


def test_truncated_body_is_an_error():
    body = _lz4_frames(b"x" * 100_000)
    decoder = BodyDecoder("lz4")
    decoder.decode(body[:-10])
    with pytest.raises(ClickHouseError):
        decoder.finish()


def test_unknown_encoding_is_refused():
    with pytest.raises(ClickHouseError) as caught:
        BodyDecoder("snappy")
    assert caught.value.http_status == 415
