"""Every mapped type arrives in ClickHouse with the value PostgreSQL holds, through the initial
copy and through the stream alike."""

from __future__ import annotations

from tests.pipelines.conftest import CdcCase, drain
from tests.pipelines.rows import assert_same_rows

SCHEMA = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'it''s complicated');
CREATE TABLE every_type (
    id bigint PRIMARY KEY,
    small int2, regular int4, big int8 NOT NULL DEFAULT 0,
    any_numeric numeric, money numeric(12, 2), wide numeric(40, 10),
    f4 real, f8 double precision,
    flag bool, body text, label varchar(20), ref uuid,
    day date, local_time timestamp, moment timestamptz, doc jsonb, plain_json json,
    mood mood, tags text[], scores int[], stamps timestamptz[], amounts numeric[],
    raw bytea, required_text text NOT NULL DEFAULT ''
);
"""

NASTY_TEXT = "tab\there, newline\nthere, CR\r, back\\slash, 'single' \"double\", ünï 🎟 ,{}[]\\N"
ROW = """
INSERT INTO every_type VALUES (
    %(id)s, -32768, 2147483647, -9223372036854775808,
    '-12345678901234567890.123456789012345678', 1234567890.99,
    '123456789012345678901234567890.0123456789',
    3.4028235e38, 2.2250738585072014e-308,
    true, %(text)s, 'varchar ü', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    '2026-02-28', '2026-11-25 23:59:59.999999', '2026-11-25 12:00:00.5+05:30',
    %(doc)s, '{"b": 1,  "a": [1, 2]}',
    'it''s complicated', %(tags)s, ARRAY[1, NULL, -3],
    ARRAY['2026-01-01 00:00:00+00'::timestamptz, NULL], ARRAY[1.5, NULL, -0.000001],
    %(raw)s, %(text)s
)
"""
EDGE_ROW = """
INSERT INTO every_type (id, any_numeric, f4, f8, flag, body, day, local_time, moment, doc,
                        plain_json, tags, scores, stamps, amounts, raw, required_text)
VALUES (%(id)s, 'NaN', 'NaN', '-Infinity', false, '', '1970-01-01', 'infinity', '-infinity',
        'null', '[]', '{}', '{}', ARRAY['infinity'::timestamptz], ARRAY['NaN'::numeric, 2],
        '', '')
"""


def _insert(cdc: CdcCase, first_id: int) -> None:
    params = {
        "text": NASTY_TEXT,
        "doc": '{"nested": {"text": "a\\tb\\n\'c\'", "n": 1.50, "list": [null, true]}}',
        "tags": ["plain", None, 'quote"d', "it's", "back\\slash", "com,ma", "", "NULL", "tab\t"],
        "raw": bytes(range(256)),
    }
    cdc.sql(ROW, {**params, "id": first_id})
    cdc.sql(EDGE_ROW, {"id": first_id + 1})
    cdc.sql("INSERT INTO every_type (id) VALUES (%s)", (first_id + 2,))  # NULL everywhere


def test_every_mapped_type_through_copy_and_stream(cdc: CdcCase):
    cdc.sql(SCHEMA)
    _insert(cdc, 1)  # before the slot: the initial copy carries these
    relay = cdc.relay()
    relay.start()
    _insert(cdc, 11)  # after: the stream carries these
    cdc.sql(
        "UPDATE every_type SET body = body || ' (updated)', tags = tags || ARRAY['x'], "
        "moment = moment + interval '1 second', money = money + 0.01 WHERE id IN (1, 11)"
    )
    drain(relay)

    counts = assert_same_rows(cdc.dsn, cdc.ch, cdc.name)
    assert counts == {"every_type": 6}
    types = dict(
        cdc.ch.query(
            "SELECT name, type FROM system.columns WHERE database = {db:String} "
            "AND table = 'every_type'",
            parameters={"db": cdc.name},
        ).result_rows
    )
    assert types == {
        "id": "Int64",
        "small": "Nullable(Int16)",
        "regular": "Nullable(Int32)",
        "big": "Int64",
        "any_numeric": "Nullable(Decimal(76, 38))",
        "money": "Nullable(Decimal(12, 2))",
        "wide": "Nullable(Decimal(40, 10))",
        "f4": "Nullable(Float32)",
        "f8": "Nullable(Float64)",
        "flag": "Nullable(Bool)",
        "body": "Nullable(String)",
        "label": "Nullable(String)",
        "ref": "Nullable(UUID)",
        "day": "Nullable(Date32)",
        "local_time": "Nullable(DateTime64(6))",
        "moment": "Nullable(DateTime64(6, 'UTC'))",
        "doc": "Nullable(String)",
        "plain_json": "Nullable(String)",
        "mood": "LowCardinality(Nullable(String))",
        "tags": "Array(Nullable(String))",
        "scores": "Array(Nullable(Int32))",
        "stamps": "Array(Nullable(DateTime64(6, 'UTC')))",
        "amounts": "Array(Nullable(Decimal(76, 38)))",
        "raw": "Nullable(String)",
        "required_text": "String",
        "_peerdb_synced_at": "DateTime64(9)",
        "_peerdb_is_deleted": "Int8",
        "_peerdb_version": "Int64",
    }
    # Spot checks the normalised comparison cannot make on its own.
    body, moment, raw, doc = cdc.ch.query(
        f"SELECT body, toString(moment), raw, doc FROM `{cdc.name}`.every_type FINAL WHERE id = 11"
    ).result_rows[0]
    assert body == NASTY_TEXT + " (updated)"
    assert moment == "2026-11-25 06:30:01.500000"  # 12:00:00.5+05:30 plus one second, in UTC
    assert raw == "\\x" + bytes(range(256)).hex()
    assert doc == cdc.sql("SELECT doc::text FROM every_type WHERE id = 11")[0][0]
