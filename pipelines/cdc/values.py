"""PostgreSQL text values -> ClickHouse TabSeparated fields, one converter per column type.

Both the snapshot and the stream see PostgreSQL's text output of each value; the relay sends
rows to ClickHouse as TSV, so most values only need TSV escaping. The exceptions: booleans
('t'/'f'), arrays ('{a,"b c",NULL}' -> "['a','b c',NULL]"), and infinite timestamps and
numeric's NaN and infinities, which ClickHouse's DateTime64 and Decimal cannot hold (they become
NULL, or the type's default).
"""

from __future__ import annotations

from collections.abc import Callable

TSV_NULL = "\\N"
# The text formats these converters read, whatever the server's defaults say; run on every
# connection that reads values (the copy's and the stream's).
SESSION_SETTINGS = (
    "SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; SET IntervalStyle = 'postgres'; "
    "SET extra_float_digits = 1; SET bytea_output = 'hex'"
)
_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})

Converter = Callable[[str], str]


def tsv_text(value: str) -> str:
    return value.translate(_TSV_ESCAPES)


def _plain(value: str) -> str:
    """Numbers, uuids, dates: their text needs no escaping."""
    return value


def _boolean(value: str) -> str:
    return "true" if value == "t" else "false"


def _timestamp(value: str) -> str:
    if value in ("infinity", "-infinity"):
        return TSV_NULL
    return value


def _decimal(value: str) -> str:
    if value in ("NaN", "Infinity", "-Infinity"):
        return TSV_NULL
    return value


def _quoted(value: str) -> str:
    """A string element inside an array field: TSV escapes, in single quotes."""
    return "'" + tsv_text(value).replace("'", "\\'") + "'"


def parse_pg_array(text: str) -> list[str | None]:
    """Elements of a one-dimensional PostgreSQL array literal, as text (None for NULL)."""
    if not text.startswith("{"):
        text = text[text.index("=") + 1 :]  # '[0:2]={...}': explicit bounds
    body = text[1:-1]
    elements: list[str | None] = []
    i, n = 0, len(body)
    while i < n:
        if body[i] == '"':
            i += 1
            chars = []
            while body[i] != '"':
                if body[i] == "\\":
                    i += 1
                chars.append(body[i])
                i += 1
            elements.append("".join(chars))
            i += 1  # closing quote
        else:
            end = body.find(",", i)
            end = n if end == -1 else end
            token = body[i:end]
            elements.append(None if token == "NULL" else token)
            i = end
        i += 1  # the comma
    return elements


def _array_of(element: Converter, quote: bool) -> Converter:
    # An element ClickHouse cannot hold (an infinite timestamp) is NULL, not the text '\N'.
    may_be_null = element in (_timestamp, _decimal)

    def convert(value: str) -> str:
        parts = []
        for item in parse_pg_array(value):
            converted = None if item is None else element(item)
            if converted is None or (may_be_null and converted == TSV_NULL):
                parts.append("NULL")
            else:
                parts.append(_quoted(converted) if quote else converted)
        return "[" + ",".join(parts) + "]"

    return convert


NUMERIC_TYPES = {"int2", "int4", "int8", "float4", "float8", "numeric", "oid"}
_SCALARS: dict[str, Converter] = {
    **dict.fromkeys(NUMERIC_TYPES, _plain),
    "numeric": _decimal,
    "bool": _boolean,
    "uuid": _plain,
    "date": _timestamp,
    "timestamptz": _timestamp,
    "timestamp": _timestamp,
}


def converter_for(type_name: str, element_type: str | None = None) -> Converter:
    """`type_name` is pg_type.typname; arrays give their element's in `element_type`."""
    if element_type is not None:
        element = _SCALARS.get(element_type, _plain)
        quote = element_type not in NUMERIC_TYPES and element_type != "bool"
        return _array_of(element, quote)
    return _SCALARS.get(type_name, tsv_text)
