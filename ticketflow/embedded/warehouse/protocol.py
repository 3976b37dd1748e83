"""ClickHouse's HTTP interface, the parts a client relies on, as pure functions.

What a request means (which URL parameters are settings, which bind query parameters, where an
INSERT's statement ends and its data begins) and how answers look (formats, summaries, error
codes, the mid-stream exception block). No I/O here, so each rule is easy to test alone.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

# URL parameters that steer the HTTP exchange rather than the engine. ClickHouse's HTTP handler
# consumes these itself; passing them to the engine as settings is wrong (some it rejects).
TRANSPORT_PARAMS = frozenset(
    {
        "query",
        "database",
        "default_format",
        "session_id",
        "session_timeout",
        "session_check",
        "query_id",
        "user",
        "password",
        "quota_key",
        "role",
        "compress",
        "decompress",
        "buffer_size",
        "wait_end_of_query",
        "stacktrace",
        "client_protocol_version",
        "enable_http_compression",
        "http_zlib_compression_level",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "cancel_http_readonly_queries_on_client_close",
    }
)

DEFAULT_SESSION_TIMEOUT_S = 60
MAX_SESSION_TIMEOUT_S = 3600

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# ClickHouse error codes this front raises itself (names as the server spells them).
SYNTAX_ERROR = 62
UNKNOWN_SETTING = 115
NOT_IMPLEMENTED = 48
BAD_ARGUMENTS = 36
SESSION_NOT_FOUND = 372
SESSION_IS_LOCKED = 373
READONLY = 164
CANNOT_DECOMPRESS = 271
QUERY_IS_TOO_LARGE = 101
UNKNOWN_EXCEPTION = 1002

_CODE_NAMES = {
    SYNTAX_ERROR: "SYNTAX_ERROR",
    UNKNOWN_SETTING: "UNKNOWN_SETTING",
    NOT_IMPLEMENTED: "NOT_IMPLEMENTED",
    BAD_ARGUMENTS: "BAD_ARGUMENTS",
    SESSION_NOT_FOUND: "SESSION_NOT_FOUND",
    SESSION_IS_LOCKED: "SESSION_IS_LOCKED",
    READONLY: "READONLY",
    CANNOT_DECOMPRESS: "CANNOT_DECOMPRESS",
    QUERY_IS_TOO_LARGE: "QUERY_IS_TOO_LARGE",
    UNKNOWN_EXCEPTION: "UNKNOWN_EXCEPTION",
}


class ClickHouseError(Exception):
    """An error answered the way ClickHouse answers it: `Code: N. DB::Exception: ...`."""

    def __init__(self, code: int, message: str, http_status: int = 500):
        super().__init__(message)
        self.code = code
        self.http_status = http_status

    @classmethod
    def of(cls, code: int, text: str, http_status: int = 400) -> ClickHouseError:
        name = _CODE_NAMES.get(code, "UNKNOWN")
        return cls(code, f"Code: {code}. DB::Exception: {text}. ({name})", http_status)

    @classmethod
    def from_engine(cls, exc: BaseException) -> ClickHouseError:
        """Wrap an error raised by chdb, keeping the engine's own text and code."""
        text = str(exc)
        start = text.find("Code: ")
        if start > 0:  # chdb prefixes streaming errors with its own words
            text = text[start:]
        match = re.match(r"Code: (\d+)\.", text)
        code = int(match.group(1)) if match else UNKNOWN_EXCEPTION
        return cls(code, text.rstrip() if match else f"Code: {code}. DB::Exception: {text}")


@dataclass
class RequestParams:
    query: str = ""
    database: str | None = None
    default_format: str = "TabSeparated"
    session_id: str | None = None
    session_timeout: int = DEFAULT_SESSION_TIMEOUT_S
    session_check: bool = False
    query_id: str | None = None
    readonly: bool = False  # only statements that read (the `readonly` setting, or a GET)
    settings: dict[str, str] = field(default_factory=dict)
    query_params: dict[str, str] = field(default_factory=dict)


def parse_params(items: list[tuple[str, str]], method: str = "POST") -> RequestParams:
    """Sort URL parameters into transport, engine settings and `param_*` bindings.

    `readonly` is enforced by the front rather than set on the engine session (where it could
    not be unset again), and a GET is read-only, as on a ClickHouse server.
    """
    params = RequestParams(readonly=method == "GET")
    for name, value in items:
        if name == "readonly":
            params.readonly = params.readonly or value != "0"
        elif name.startswith("param_"):
            params.query_params[name.removeprefix("param_")] = value
        elif name in TRANSPORT_PARAMS:
            _apply_transport(params, name, value)
        elif _IDENTIFIER.match(name):
            params.settings[name] = value
        else:
            raise ClickHouseError.of(UNKNOWN_SETTING, f"Unknown setting '{name}'")
    return params


def _apply_transport(params: RequestParams, name: str, value: str) -> None:
    if name == "query":
        params.query = value
    elif name == "database":
        if not _IDENTIFIER.match(value):
            raise ClickHouseError.of(BAD_ARGUMENTS, f"Invalid database name '{value}'")
        params.database = value
    elif name == "default_format" and value:
        params.default_format = value
    elif name == "session_id" and value:
        params.session_id = value
    elif name == "session_timeout":
        try:
            timeout = int(value)
        except ValueError:
            raise ClickHouseError.of(BAD_ARGUMENTS, f"Invalid session_timeout '{value}'") from None
        if not 0 < timeout <= MAX_SESSION_TIMEOUT_S:
            raise ClickHouseError.of(
                BAD_ARGUMENTS, f"Session timeout must be in (0, {MAX_SESSION_TIMEOUT_S}] seconds"
            )
        params.session_timeout = timeout
    elif name == "session_check":
        params.session_check = value == "1"
    elif name == "query_id" and value:
        params.query_id = value
    # The rest (compression, progress headers, wait_end_of_query, ...) need no action here:
    # responses are sent uncompressed, streamed, with errors reported in-band (see app.py).


def quote_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def set_statement(assignments: dict[str, str]) -> str:
    """`SET a = 'x', b = DEFAULT` for settings already checked to be identifiers."""
    parts = [
        f"{name} = {'DEFAULT' if value is None else quote_literal(value)}"
        for name, value in assignments.items()
    ]
    return "SET " + ", ".join(parts)


# --- statements -------------------------------------------------------------------------------

_LEADING_COMMENTS = r"(?:\s|/\*.*?\*/|--[^\n]*\n)*"
# `INSERT INTO <target> [(columns)] [SETTINGS ...] FORMAT <name>`, with the data after it.
# The target and column list may not contain string literals or VALUES/SELECT: such are
# plain queries and run whole.
_INSERT_WITH_FORMAT = re.compile(
    _LEADING_COMMENTS + r"(?P<statement>INSERT\s+INTO\s+(?P<target>[^']*?))"
    r"\s+FORMAT\s+(?P<format>[A-Za-z0-9_]+)(?=[ \t\f\r\n;]|\Z)",
    re.IGNORECASE | re.DOTALL,
)
_NOT_A_DATA_INSERT = re.compile(r"\b(VALUES|SELECT|WITH)\b", re.IGNORECASE)
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+([A-Za-z0-9_]+)\s*;?\s*\Z", re.IGNORECASE)


@dataclass(frozen=True)
class InsertHead:
    statement: str  # without FORMAT, as chdb's send_insert wants it
    format: str
    data_offset: int  # where the data starts in the text that was parsed


def parse_insert_head(data: bytes) -> InsertHead | None:
    """Split `INSERT ... FORMAT X<ws>data` the way ClickHouse does, or None if not such an insert.

    `data` is the start of the request's query text and possibly binary data after it. After
    the format name, ClickHouse skips blanks and then at most one line break.
    """
    text = data.decode("latin-1")  # one char per byte: offsets stay byte offsets
    match = _INSERT_WITH_FORMAT.match(text)
    if match is None or _NOT_A_DATA_INSERT.search(match.group("target")):
        return None
    pos = match.end()
    while pos < len(text) and text[pos] in " \t\f":
        pos += 1
    if text.startswith("\r\n", pos):
        pos += 2
    elif pos < len(text) and text[pos] in "\r\n;":
        pos += 1
    statement = match.group("statement").strip().encode("latin-1").decode()
    return InsertHead(statement, match.group("format"), pos)


def output_format(sql: str, default_format: str) -> str:
    """The format the answer will be in: the query's own FORMAT clause wins."""
    match = _TRAILING_FORMAT.search(sql)
    return match.group(1) if match else default_format


def content_type(fmt: str) -> str:
    lowered = fmt.lower()
    if lowered.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if lowered.startswith("csv"):
        return "text/csv; charset=UTF-8; header=absent"
    if lowered.startswith("json") or lowered == "ndjson":
        return "application/json; charset=UTF-8"
    if lowered in ("pretty", "prettycompact", "vertical", "markdown"):
        return "text/plain; charset=UTF-8"
    return "application/octet-stream"


def summary_header(*, written_rows: int = 0, written_bytes: int = 0, elapsed_s: float = 0.0) -> str:
    """`X-ClickHouse-Summary`, whose numbers ClickHouse sends as strings."""
    return json.dumps(
        {
            "read_rows": "0",
            "read_bytes": "0",
            "written_rows": str(written_rows),
            "written_bytes": str(written_bytes),
            "total_rows_to_read": "0",
            "result_rows": "0",
            "result_bytes": "0",
            "elapsed_ns": str(int(elapsed_s * 1e9)),
        },
        separators=(",", ":"),
    )


def exception_block(tag: str, message: str) -> bytes:
    """The in-band error ClickHouse (25.11+) writes when a query fails after data was sent."""
    text = message.rstrip("\n") + "\n"
    size = len(text.encode())
    return f"__exception__\r\n{tag}\r\n{text}{size} {tag}\r\n__exception__\r\n".encode()
